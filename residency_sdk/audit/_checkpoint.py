"""The checkpoint record: the head of an audit log's chain at a moment, and its seal.

A checkpoint names the log (``log_id``), a position and the hash of the event there. With
the log's HMAC key it is also sealed (HMAC-SHA-256 over its canonical JSON), so the
checkpoint itself cannot be forged by someone without the key.

This module holds the record only, so that verification (:mod:`residency_sdk.audit.verify`)
can check a log against a checkpoint; exporting and verifying checkpoints of a log is
:mod:`residency_sdk.audit.checkpoint`, which builds on verification.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from residency_sdk.errors import AuditFormatError, AuditKeyError

CHECKPOINT_SCHEMA = "residency.audit.checkpoint/v2"


class Checkpoint(BaseModel):
    """The head of one audit log at one time (schema ``residency.audit.checkpoint/v2``).

    ``seq`` 0 is the genesis (a log anchored at creation can never be passed off as
    empty); ``counter`` is the head's commit counter, which only grows; ``key_id`` names
    the HMAC key (never the key) of a keyed log.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    schema_: str = Field(default=CHECKPOINT_SCHEMA, alias="schema")
    log_id: str
    seq: int = Field(ge=0)
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    counter: int = Field(default=0, ge=0)
    created: str
    key_id: str | None = None
    seal: str | None = None

    def body(self) -> bytes:
        """The canonical bytes the seal covers (every field but the seal, sorted keys)."""
        data = self.model_dump(by_alias=True, exclude={"seal"})
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    def sealed_with(self, key: bytes) -> Checkpoint:
        """This checkpoint with its HMAC seal."""
        return self.model_copy(update={"seal": _seal(key, self.body())})

    def check_log(self, log_id: str, key: bytes | None) -> None:
        """Refuse a checkpoint of another log, or one whose seal does not verify."""
        if log_id != self.log_id:
            raise AuditFormatError(
                f"checkpoint is for audit log {self.log_id!r}, not {log_id!r}: use the "
                "checkpoint exported from this log")
        if key is not None and self.seal is not None and \
                not hmac.compare_digest(self.seal, _seal(key, self.body())):
            raise AuditKeyError(
                "the checkpoint's seal does not verify with the key given: the checkpoint "
                "was altered, or sealed with another key")

    def to_json(self) -> str:
        """The checkpoint file's content."""
        return self.model_dump_json(by_alias=True, indent=2) + "\n"

    def write(self, path: str | Path) -> None:
        """Write the checkpoint to ``path``."""
        Path(path).write_text(self.to_json(), encoding="utf-8")


def _seal(key: bytes, body: bytes) -> str:
    return hmac.new(key, b"residency.audit.checkpoint\n" + body, hashlib.sha256).hexdigest()


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint file; :class:`AuditFormatError` when it is not one."""
    try:
        data: Any = json.loads(Path(path).read_text(encoding="utf-8"))
        return Checkpoint.model_validate(data)
    except (OSError, ValueError, ValidationError) as exc:
        raise AuditFormatError(
            f"{str(path)!r} is not a residency audit checkpoint ({exc}): use a file written "
            "by `residency audit checkpoint export`") from None
