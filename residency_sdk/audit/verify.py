"""Verification: walk the whole chain and report the first broken event.

The walk streams rows from SQLite and hashes them with :mod:`hashlib` (C); it never
re-serialises an event. It stops at the first break and says where (``seq``, 1-based) and
what is wrong. Checks, in order, for each event: its position follows the previous one (no
gap: a deletion), its ``prev_hash`` is the previous event's hash (reordering, insertion),
its hash covers its content (an edited field), and, for a keyed log, its HMAC (a chain
rebuilt without the key). At the end the recorded head must be the last event (a
truncated tail), and an optional sealed checkpoint must still match.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from residency_sdk.audit._checkpoint import Checkpoint
from residency_sdk.audit.chain import GENESIS, Sealer, coerce_key, head_mac, macs_equal
from residency_sdk.audit.log import check_key, connect, iter_rows, read_info
from residency_sdk.errors import ChainBroken

Row = tuple[int, str, str, str, str | None]


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first broken event: its position, a short code, and what is wrong in words."""

    seq: int
    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of verifying one audit log (or JSON Lines file)."""

    path: str
    keyed: bool
    hmac_checked: bool
    events: int
    head_seq: int
    head_hash: str
    log_id: str | None = None
    broken: ChainBreak | None = None
    checkpoint_seq: int | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True when the whole chain verifies."""
        return self.broken is None

    @property
    def verified_through(self) -> int:
        """The last position that verifies (every event before the break)."""
        return self.events if self.broken is None else self.broken.seq - 1

    def raise_for_break(self) -> None:
        """Raise :class:`ChainBroken` (with ``seq`` and ``kind``) unless the chain verifies."""
        if self.broken is not None:
            raise ChainBroken(f"audit log {self.path!r}: event {self.broken.seq}: "
                              f"{self.broken.message}", seq=self.broken.seq,
                              kind=self.broken.kind)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        out = asdict(self)
        out["ok"] = self.ok
        out["verified_through"] = self.verified_through
        out["notes"] = list(self.notes)
        return out


@dataclass(slots=True)
class _Walk:
    count: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS
    broken: ChainBreak | None = None
    checkpoint_hash: str | None = None


def check_rows(rows: Iterable[Row], key: bytes | None, *,
               checkpoint_seq: int | None = None) -> _Walk:
    """Walk ``rows`` in order and stop at the first break (shared by SQLite and JSONL)."""
    walk = _Walk()
    sha256 = hashlib.sha256
    seal = Sealer(key).link if key is not None else None
    compare = hmac.compare_digest
    expected = 1
    prev = GENESIS
    for seq, event, prev_hash, digest, mac in rows:
        if seq != expected:
            walk.broken = ChainBreak(expected, "missing_events", (
                f"events {expected}..{seq - 1} are missing (deleted): the next stored event is "
                f"{seq}" if seq > expected else
                f"position {seq} appears again after {expected - 1} (duplicated or reordered)"))
            break
        if prev_hash != prev:
            walk.broken = ChainBreak(seq, "prev_hash_mismatch", (
                f"prev_hash does not match the hash of event {seq - 1}: an event was inserted, "
                "deleted or reordered here"))
            break
        if sha256(f"{seq}\n{prev_hash}\n{event}".encode()).hexdigest() != digest:
            walk.broken = ChainBreak(seq, "hash_mismatch", (
                "the stored hash does not cover the stored event: its content was edited"))
            break
        if seal is not None and (mac is None or not compare(mac, seal(seq, digest))):
            walk.broken = ChainBreak(seq, "mac_mismatch", (
                "HMAC missing or wrong: the chain from here was rebuilt without the key "
                "(or the event was forged)"))
            break
        if seq == checkpoint_seq:
            walk.checkpoint_hash = digest
        prev = digest
        expected += 1
        walk.count += 1
    walk.last_seq = expected - 1
    walk.last_hash = prev
    return walk


def _check_checkpoint(walk: _Walk, cp: Checkpoint) -> ChainBreak | None:
    if walk.broken is not None:
        return walk.broken
    if walk.last_seq < cp.seq:
        return ChainBreak(walk.last_seq + 1, "truncated", (
            f"the sealed checkpoint of {cp.created} records {cp.seq} events but the log ends "
            f"at {walk.last_seq}: events {walk.last_seq + 1}..{cp.seq} were removed"))
    if walk.checkpoint_hash != cp.hash:
        return ChainBreak(cp.seq, "checkpoint_mismatch", (
            f"event {cp.seq} no longer has the hash sealed in the checkpoint of {cp.created}: "
            "the log was rewritten up to here"))
    return None


def verify_log(path: str | Path, *, hmac_key: bytes | str | None = None,
               use_env_key: bool = True, checkpoint: Checkpoint | None = None) -> VerifyResult:
    """Verify the audit log at ``path`` and report the first broken event, if any.

    ``hmac_key`` (default ``$RESIDENCY_AUDIT_HMAC_KEY``) checks every HMAC of a keyed log;
    without it only the SHA-256 chain is checked and the result says so. Raises
    :class:`AuditFormatError` for a file that is not an audit log and
    :class:`AuditKeyError` for a key that is not the log's.
    """
    key = coerce_key(hmac_key, use_env=use_env_key)
    conn = connect(path, readonly=True)
    try:
        info = read_info(conn, path)
        notes: list[str] = []
        if info.keyed and key is None:
            notes.append("HMACs not checked: no key given (set RESIDENCY_AUDIT_HMAC_KEY)")
        elif key is not None and not info.keyed:
            # Whoever can rewrite the file could also strip the seals: never pass it.
            return VerifyResult(
                path=str(path), keyed=False, hmac_checked=False, events=0, head_seq=0,
                head_hash=GENESIS, log_id=info.log_id,
                broken=ChainBreak(1, "not_keyed", (
                    "a key was given but the log carries no HMACs: it was created without "
                    "a key, or rewritten without one")))
        elif key is not None:
            check_key(info, key, path)
        if checkpoint is not None:
            checkpoint.check_log(info.log_id, key)
        conn.execute("BEGIN")  # one snapshot: the walk and the head agree
        walk = check_rows(iter_rows(conn), key if info.keyed else None,
                          checkpoint_seq=checkpoint.seq if checkpoint else None)
        head = conn.execute("SELECT seq, hash, mac FROM audit_head WHERE id = 1").fetchone()
        conn.execute("COMMIT")
    finally:
        conn.close()
    broken = walk.broken or _check_head(walk, head, key if info.keyed else None)
    if checkpoint is not None:
        broken = _check_checkpoint(walk, checkpoint) if broken is None else broken
    return VerifyResult(
        path=str(path), keyed=info.keyed, hmac_checked=info.keyed and key is not None,
        events=walk.count, head_seq=walk.last_seq, head_hash=walk.last_hash,
        log_id=info.log_id, broken=broken,
        checkpoint_seq=checkpoint.seq if checkpoint else None, notes=tuple(notes))


def _check_head(walk: _Walk, head: tuple[int, str, str | None] | None,
                key: bytes | None) -> ChainBreak | None:
    last = walk.last_seq
    if head is None:
        if last == 0:
            return None
        return ChainBreak(last, "head_missing", "the recorded head is missing")
    seq, digest, mac = int(head[0]), str(head[1]), head[2]
    if seq > last:
        return ChainBreak(last + 1, "truncated", (
            f"the log ends at event {last} but its recorded head is event {seq}: events "
            f"{last + 1}..{seq} were removed"))
    if seq < last:
        return ChainBreak(seq + 1, "unrecorded_events", (
            f"events {seq + 1}..{last} follow the recorded head (event {seq}): they were "
            "added outside the audit log writer"))
    if digest != walk.last_hash:
        return ChainBreak(seq, "head_mismatch", "the recorded head hash is not the last event's")
    if key is not None and not macs_equal(mac, head_mac(key, seq, digest)):
        return ChainBreak(seq + 1, "head_mac_mismatch", (
            f"the recorded head (event {seq}) has a wrong HMAC: it was rewritten without the "
            f"key, so events after {seq} may have been removed"))
    return None


def require_valid(path: str | Path, **kwargs: Any) -> VerifyResult:
    """Like :func:`verify_log`, raising :class:`ChainBroken` on any break."""
    result = verify_log(path, **kwargs)
    result.raise_for_break()
    return result
