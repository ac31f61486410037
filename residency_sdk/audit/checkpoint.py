"""Sealed checkpoints: the head of the chain at a moment, exported for a third party.

A checkpoint names the log (``log_id``), a position and the hash of the event there. Since
every hash covers all earlier events, anyone holding the checkpoint can later prove the log
was not rewritten up to that position: :func:`verify_checkpoint` walks the chain and
compares. With the log's HMAC key the checkpoint is also sealed (HMAC-SHA-256 over its
canonical JSON), so the checkpoint itself cannot be forged by someone without the key.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from residency_sdk.audit._checkpoint import Checkpoint
from residency_sdk.audit.chain import coerce_key
from residency_sdk.audit.verify import VerifyResult, verify_log
from residency_sdk.errors import AuditFormatError


def export_checkpoint(log_path: str | Path, *, hmac_key: bytes | str | None = None,
                      use_env_key: bool = True) -> Checkpoint:
    """Verify the log, then return a checkpoint of its head (sealed when keyed).

    Raises :class:`ChainBroken` rather than seal a broken log, and
    :class:`AuditFormatError` for an empty one.
    """
    key = coerce_key(hmac_key, use_env=use_env_key)
    result = verify_log(log_path, hmac_key=key, use_env_key=False)
    result.raise_for_break()
    if result.head_seq == 0 or result.log_id is None:
        raise AuditFormatError(f"audit log {str(log_path)!r} is empty: nothing to checkpoint")
    cp = Checkpoint(log_id=result.log_id, seq=result.head_seq, hash=result.head_hash,
                    created=datetime.now(UTC).isoformat())
    return cp.sealed_with(key) if key is not None and result.keyed else cp


def verify_checkpoint(log_path: str | Path, checkpoint: Checkpoint, *,
                      hmac_key: bytes | str | None = None,
                      use_env_key: bool = True) -> VerifyResult:
    """Verify the log and that it still holds ``checkpoint``'s hash at its position."""
    return verify_log(log_path, hmac_key=hmac_key, use_env_key=use_env_key,
                      checkpoint=checkpoint)
