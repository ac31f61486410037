"""Sealed checkpoints: the head of the chain at a moment, exported for a third party.

A checkpoint (``residency.audit.checkpoint/v2``) names the log (``log_id``), a position,
the hash of the event there and the head's commit counter. Since every hash covers all
earlier events, anyone holding the checkpoint can later prove the log was neither
rewritten up to that position nor rolled back below it: :func:`verify_checkpoint`. A
checkpoint of a keyed log is sealed (HMAC-SHA-256 over its canonical JSON), and an
unsealed one is refused for a keyed log, so it cannot be forged without the key.
Anchors (:mod:`residency_sdk.audit.anchors`) publish them automatically.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from residency_sdk.audit._checkpoint import Checkpoint
from residency_sdk.audit.chain import HMAC_KEY_ENV, coerce_key
from residency_sdk.audit.store import ChainStore
from residency_sdk.audit.verify import VerifyResult, verify_log
from residency_sdk.errors import AuditKeyError


def export_checkpoint(spec: str | os.PathLike[str] | ChainStore, *,
                      hmac_key: bytes | str | None = None,
                      use_env_key: bool = True) -> Checkpoint:
    """Verify the log, then return a checkpoint of its head (sealed when keyed).

    Raises :class:`ChainBroken` rather than checkpoint a broken log, and
    :class:`AuditKeyError` for a keyed log without its key (its checkpoint must be
    sealed). An empty log gives the checkpoint of its genesis (position 0).
    """
    key = coerce_key(hmac_key, use_env=use_env_key)
    result = verify_log(spec, hmac_key=key, use_env_key=False)
    result.raise_for_break()
    if result.keyed and key is None:
        raise AuditKeyError(
            f"audit log {result.path!r} is HMAC-keyed: its checkpoints are sealed with its "
            f"key; set {HMAC_KEY_ENV}")
    assert result.log_id is not None and result.head_counter is not None
    cp = Checkpoint(log_id=result.log_id, seq=result.head_seq, hash=result.head_hash,
                    counter=result.head_counter, created=datetime.now(UTC).isoformat(),
                    key_id=result.key_id)
    return cp.sealed_with(key) if key is not None else cp


def verify_checkpoint(spec: str | os.PathLike[str] | ChainStore, checkpoint: Checkpoint, *,
                      hmac_key: bytes | str | None = None,
                      use_env_key: bool = True) -> VerifyResult:
    """Verify the log and that it still holds ``checkpoint`` (its hash at its position,
    a head no older than it)."""
    return verify_log(spec, hmac_key=hmac_key, use_env_key=use_env_key,
                      checkpoint=checkpoint)
