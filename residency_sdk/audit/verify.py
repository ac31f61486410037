"""Verification: walk the whole chain of one snapshot and report the first break.

Works on any :class:`~residency_sdk.audit.store.ChainStore` (a SQLite file, PostgreSQL
tables) and on JSON Lines files. The walk streams rows and hashes them with
:mod:`hashlib` (C); it never re-serialises an event. It stops at the first break and says
where (``seq``, 1-based) and what is wrong:

1. the genesis: a keyed log's ``genesis_mac`` must verify (its identity was not rewritten);
2. each event: its position follows the previous one (no gap: a deletion), its
   ``prev_hash`` is the previous hash (the first one: the genesis hash ``G``, which binds
   the log id), its hash covers its content (an edit), its HMAC (keyed logs, with the key);
3. the head: it must exist (a missing head means the log was emptied), be the last event
   (a cut tail; rows added behind the writer's back) and, keyed, carry a valid HMAC over
   the log id, commit counter, position and hash;
4. no stored row may sit outside the chain (``seq <= 0``);
5. every checkpoint given (``checkpoint=``, ``anchors=``): sealed when the log is keyed,
   its hash still at its position, and the log's head not older than the newest one
   (rolled back, or replaced by an older copy).

The result is ``"verified"``, ``"broken"``, or ``"unverified"``: a keyed log checked
without its key. An unverified log may have been rewritten by someone without the key
(SHA-256 alone can be recomputed); every SHA-256 check still runs, so a break still shows.

Intents without an outcome (a process stopped between the durable intent and the end
of its operation) are listed in ``outcome_unknown``: not a break, never silence.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from residency_sdk.audit._checkpoint import Checkpoint
from residency_sdk.audit.chain import (
    GENESIS,
    HMAC_KEY_ENV,
    LogInfo,
    Sealer,
    check_key,
    coerce_key,
    genesis_mac,
    head_mac,
    macs_equal,
)
from residency_sdk.audit.log import open_store
from residency_sdk.audit.store import ChainStore, Head, Row
from residency_sdk.errors import AuditKeyError, ChainBroken

if TYPE_CHECKING:
    from residency_sdk.audit.anchors import Anchor

Status = Literal["verified", "broken", "unverified"]
Unknown = tuple[int, str, str, str | None, str | None]
"""An intent without an outcome: ``(seq, event_id, operation, tenant_id, object_key)``."""

_INTENT = '"outcome":"intent"'
_INTENT_ID = '"intent_id":"'
_EVENT_ID = '"event_id":"'


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first break: its position, a short code, and what is wrong in words."""

    seq: int
    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of verifying one audit log (or JSON Lines file).

    ``status`` is ``"verified"`` (every check passed, HMACs included for a keyed log),
    ``"broken"`` (see ``broken``) or ``"unverified"`` (a keyed log checked without its
    key: the SHA-256 chain verifies, but a rewrite by someone without the key cannot be
    ruled out). ``ok`` is true only when verified.
    """

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
    key_id: str | None = None
    head_counter: int | None = None
    outside_chain: tuple[int, ...] = ()
    """Positions of stored rows outside the chain (``seq <= 0``): a break."""
    outcome_unknown: tuple[Unknown, ...] = ()
    """Intents whose operation has no recorded outcome (not a break)."""
    checkpoints_checked: int = 0
    """How many checkpoints (given and from anchors) the log was checked against."""
    anchored_seq: int | None = None
    """The newest checkpoint's position, when any was given."""
    intent_positions: Sequence[int] = field(default=(), repr=False, compare=False)
    """The position of every intent walked, ascending (the report counts the intents of
    its snapshot from them instead of reading every event again)."""

    @property
    def status(self) -> Status:
        """``"verified"``, ``"broken"`` or ``"unverified"``."""
        if self.broken is not None:
            return "broken"
        if self.keyed and not self.hmac_checked:
            return "unverified"
        return "verified"

    @property
    def ok(self) -> bool:
        """True only when the whole log verifies (HMACs included for a keyed log)."""
        return self.status == "verified"

    @property
    def verified_through(self) -> int:
        """The last position that verifies (every event before the break)."""
        if self.broken is None or self.broken.seq <= 0:
            return self.events
        return max(0, min(self.events, self.broken.seq - 1))

    def raise_for_break(self) -> None:
        """Raise :class:`ChainBroken` (with ``seq`` and ``kind``) when broken."""
        if self.broken is not None:
            raise ChainBroken(f"audit log {self.path!r}: event {self.broken.seq}: "
                              f"{self.broken.message}", seq=self.broken.seq,
                              kind=self.broken.kind)

    def raise_unless_verified(self) -> None:
        """Raise :class:`ChainBroken` when broken, :class:`AuditKeyError` when unverified."""
        self.raise_for_break()
        if self.status == "unverified":
            raise AuditKeyError(
                f"audit log {self.path!r} is HMAC-keyed and was checked without its key: "
                f"UNVERIFIED; set {HMAC_KEY_ENV} to its key")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        out = asdict(self)
        out.pop("intent_positions")  # a count for the report, not a fact to publish
        out["status"] = self.status
        out["ok"] = self.ok
        out["verified_through"] = self.verified_through
        out["notes"] = list(self.notes)
        out["outside_chain"] = list(self.outside_chain)
        out["outcome_unknown"] = [
            {"seq": s, "event_id": e, "operation": o, "tenant_id": t, "object_key": k}
            for s, e, o, t, k in self.outcome_unknown]
        return out


@dataclass(slots=True)
class _Walk:
    count: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS
    broken: ChainBreak | None = None
    macs_seen: bool = False
    hashes: dict[int, str] = field(default_factory=dict)
    """The hash at each wanted (checkpointed) position."""
    intents: dict[str, tuple[int, str]] = field(default_factory=dict)
    """Intents not (yet) followed by their outcome: event_id -> (seq, event)."""
    intent_positions: array[int] = field(default_factory=lambda: array("q"))
    """The position of every intent walked, ascending (the report counts them)."""


def check_rows(rows: Iterable[Row], key: bytes | None, *, genesis: str = GENESIS,
               wanted: frozenset[int] | set[int] = frozenset()) -> _Walk:
    """Walk ``rows`` in order from position 1 and stop at the first break (shared by the
    stores and JSON Lines). Records the hash at each position in ``wanted``."""
    walk = _Walk()
    sha256 = hashlib.sha256
    seal = Sealer(key).link if key is not None else None
    compare = hmac.compare_digest
    intents = walk.intents
    hashes = walk.hashes
    if 0 in wanted:
        hashes[0] = genesis
    expected = 1
    prev = genesis
    macs_seen = False
    for seq, event, prev_hash, digest, mac in rows:
        if seq != expected:
            walk.broken = ChainBreak(expected, "missing_events", (
                f"events {expected}..{seq - 1} are missing (deleted): the next stored event is "
                f"{seq}" if seq > expected else
                f"position {seq} appears again after {expected - 1} (duplicated or reordered)"))
            break
        if prev_hash != prev:
            walk.broken = ChainBreak(seq, "prev_hash_mismatch", (
                "prev_hash does not match the hash of event 0 (the log's genesis): events "
                "were inserted or the log was rebuilt, or this is another log's chain"
                if seq == 1 else
                f"prev_hash does not match the hash of event {seq - 1}: an event was "
                "inserted, deleted or reordered here"))
            break
        if sha256(f"{seq}\n{prev_hash}\n{event}".encode()).hexdigest() != digest:
            walk.broken = ChainBreak(seq, "hash_mismatch", (
                "the stored hash does not cover the stored event: its content was edited"))
            break
        if mac is not None:
            macs_seen = True
        if seal is not None and (mac is None or not compare(mac, seal(seq, digest))):
            walk.broken = ChainBreak(seq, "mac_mismatch", (
                "HMAC missing or wrong: the chain from here was rebuilt without the key "
                "(or the event was forged)"))
            break
        if seq in wanted:
            hashes[seq] = digest
        if track_intent(intents, seq, event):
            walk.intent_positions.append(seq)
        prev = digest
        expected += 1
    walk.count = expected - 1
    walk.last_seq = expected - 1
    walk.last_hash = prev
    walk.macs_seen = macs_seen
    return walk


def track_intent(intents: dict[str, tuple[int, str]], seq: int, event: str) -> bool:
    """Remember an intent until its outcome follows (``intents``: event id -> (seq, event));
    True when ``event`` is an intent.

    Found by substring on the canonical JSON, without parsing: this runs for every row.
    Not part of the chain check: an intent without outcome is reported, not a break."""
    if _INTENT in event:
        start = event.find(_EVENT_ID) + len(_EVENT_ID)
        end = event.find('"', start)
        if start >= len(_EVENT_ID) and end > 0:
            intents[event[start:end]] = (seq, event)
        return True
    if _INTENT_ID in event:
        start = event.find(_INTENT_ID) + len(_INTENT_ID)
        end = event.find('"', start)
        if end > 0:
            intents.pop(event[start:end], None)
    return False


def unknown_outcomes(walk: _Walk) -> tuple[Unknown, ...]:
    """The intents the walk saw no outcome for, in chain order."""
    out: list[Unknown] = []
    for event_id, (seq, text) in sorted(walk.intents.items(), key=lambda kv: kv[1][0]):
        try:
            data = json.loads(text)
        except ValueError:
            data = {}
        out.append((seq, event_id, str(data.get("operation", "?")), data.get("tenant_id"),
                    data.get("object_key")))
    return tuple(out)


def unknown_note(unknown: Sequence[Unknown]) -> str | None:
    """The note explaining intents without an outcome, if any."""
    if not unknown:
        return None
    shown = ", ".join(str(u[0]) for u in unknown[:10]) + (", ..." if len(unknown) > 10 else "")
    return (f"{len(unknown)} intent(s) without an outcome (outcome unknown: the process "
            f"stopped between the intent and the end of the operation, or it is still "
            f"running): events {shown}")


def _gather_checkpoints(log_id: str, checkpoint: Checkpoint | None,
                        anchors: Sequence[Checkpoint | Anchor | str]) -> list[Checkpoint]:
    cps: list[Checkpoint] = [checkpoint] if checkpoint is not None else []
    for anchor in anchors:
        if isinstance(anchor, Checkpoint):
            cps.append(anchor)
            continue
        if isinstance(anchor, str):
            from residency_sdk.audit.anchors import open_anchor

            anchor = open_anchor(anchor)
        cps.extend(anchor.checkpoints(log_id))
    return cps


def verify_log(spec: str | os.PathLike[str] | ChainStore, *,
               hmac_key: bytes | str | None = None, use_env_key: bool = True,
               checkpoint: Checkpoint | None = None,
               anchors: Sequence[Checkpoint | Anchor | str] = ()) -> VerifyResult:
    """Verify the audit log ``spec`` (a path or a ``postgresql://`` URL) and report the
    first break, if any.

    ``hmac_key`` (default ``$RESIDENCY_AUDIT_HMAC_KEY``) checks every HMAC of a keyed log;
    without it the result is ``"unverified"``. ``checkpoint`` and ``anchors``
    (checkpoints, anchor objects or anchor specs) are what the log must still hold: each
    checkpoint's hash at its position, and a head no older than the newest. Raises
    :class:`AuditFormatError` for something that is not an audit log and
    :class:`AuditKeyError` for a key that is not the log's or a checkpoint whose seal does
    not verify.
    """
    key = coerce_key(hmac_key, use_env=use_env_key)
    store = open_store(spec)
    try:
        with store.read() as snap:
            info = LogInfo.from_meta(snap.meta(), store.name)
        if key is not None and not info.keyed:
            # Whoever can rewrite the file could also strip the seals: never pass it.
            return VerifyResult(
                path=store.name, keyed=False, hmac_checked=False, events=0, head_seq=0,
                head_hash=info.genesis, log_id=info.log_id,
                broken=ChainBreak(1, "not_keyed", (
                    "a key was given but the log carries no HMACs: it was created without "
                    "a key, or rewritten without one (seals stripped)")))
        if key is not None:
            check_key(info, key, store.name)
        walk_key = key if info.keyed else None
        # Checkpoints are fetched before the snapshot is taken: any checkpoint published
        # so far describes a state the snapshot must contain.
        cps = _gather_checkpoints(info.log_id, checkpoint, anchors)
        for cp in cps:
            cp.check_log(info.log_id, walk_key)
        with store.read() as snap:
            walk = check_rows(snap.rows(), walk_key, genesis=info.genesis,
                              wanted={cp.seq for cp in cps})
            head = snap.head()
            outside = tuple(snap.outside_chain())
    finally:
        store.close()
    broken = (_check_genesis(info, walk_key) or walk.broken
              or _check_head(walk, head, info, walk_key) or _check_outside(outside)
              or _check_checkpoints(walk, head, info, cps))
    notes: list[str] = []
    if info.keyed and key is None:
        notes.append(f"UNVERIFIED: the log is HMAC-keyed and its HMACs were not checked; "
                     f"set {HMAC_KEY_ENV} to its key")
    unknown = unknown_outcomes(walk)
    note = unknown_note(unknown)
    if note:
        notes.append(note)
    newest = max(cps, key=lambda c: (c.counter, c.seq)) if cps else None
    return VerifyResult(
        path=store.name, keyed=info.keyed, hmac_checked=walk_key is not None,
        events=walk.count, head_seq=walk.last_seq, head_hash=walk.last_hash,
        log_id=info.log_id, broken=broken,
        checkpoint_seq=checkpoint.seq if checkpoint is not None else None,
        notes=tuple(notes), key_id=info.key_id,
        head_counter=head.counter if head is not None else None, outside_chain=outside,
        outcome_unknown=unknown, checkpoints_checked=len(cps),
        anchored_seq=newest.seq if newest is not None else None,
        intent_positions=walk.intent_positions)


def _check_genesis(info: LogInfo, key: bytes | None) -> ChainBreak | None:
    if key is not None and not macs_equal(info.genesis_mac, genesis_mac(key, info.genesis)):
        return ChainBreak(1, "genesis_mismatch", (
            "the log's genesis seal does not verify: its identity (log id, creation time, "
            "key id) was rewritten, or the log was re-created without the key"))
    return None


def _check_head(walk: _Walk, head: Head | None, info: LogInfo,
                key: bytes | None) -> ChainBreak | None:
    last = walk.last_seq
    if head is None:
        return ChainBreak(last + 1, "head_missing", (
            "the log's head record is missing: the log was emptied (wiped)"
            if last == 0 else
            f"the log's head record is missing (deleted) after event {last}: events after "
            f"{last} may have been removed"))
    if head.seq > last:
        return ChainBreak(last + 1, "truncated", (
            f"the log ends at event {last} but its recorded head is event {head.seq}: events "
            f"{last + 1}..{head.seq} were removed"))
    if head.seq < last:
        return ChainBreak(head.seq + 1, "unrecorded_events", (
            f"events {head.seq + 1}..{last} follow the recorded head (event {head.seq}): "
            "they were added outside the audit log writer"))
    if head.hash != walk.last_hash:
        return ChainBreak(max(head.seq, 1), "head_mismatch",
                          "the recorded head hash is not the last event's")
    if key is not None and not macs_equal(
            head.mac, head_mac(key, info.log_id, head.counter, head.seq, head.hash)):
        return ChainBreak(head.seq + 1, "head_mac_mismatch", (
            f"the recorded head (event {head.seq}, commit {head.counter}) has a wrong HMAC: "
            f"it was rewritten without the key, so events after {head.seq} may have been "
            "removed"))
    return None


def _check_outside(outside: tuple[int, ...]) -> ChainBreak | None:
    if not outside:
        return None
    shown = ", ".join(map(str, outside[:10])) + (", ..." if len(outside) > 10 else "")
    return ChainBreak(outside[0], "outside_chain", (
        f"{len(outside)} stored row(s) at position(s) {shown}, outside the chain (positions "
        "start at 1): they were written behind the audit log writer's back"))


def _check_checkpoints(walk: _Walk, head: Head | None, info: LogInfo,
                       cps: Sequence[Checkpoint]) -> ChainBreak | None:
    if not cps:
        return None
    if not info.keyed:
        for cp in cps:
            if cp.seal is not None or cp.key_id is not None:
                return ChainBreak(1, "not_keyed", (
                    f"the checkpoint of event {cp.seq} ({cp.created}) was sealed with the "
                    f"log's key (key id {cp.key_id}), but the log now carries no HMACs: its "
                    "seals were stripped and its chain rebuilt"))
    if info.keyed:
        for cp in cps:
            if cp.seal is None:
                return ChainBreak(cp.seq, "checkpoint_unsealed", (
                    f"the checkpoint of event {cp.seq} ({cp.created}) is not sealed, but the "
                    "log is HMAC-keyed: a checkpoint of a keyed log is sealed with its key, "
                    "so this one was forged or altered and is refused"))
    last = walk.last_seq
    for cp in sorted(cps, key=lambda c: c.seq):
        if cp.seq <= last and walk.hashes.get(cp.seq) != cp.hash:
            return ChainBreak(max(cp.seq, 1), "checkpoint_mismatch", (
                f"event {cp.seq} no longer has the hash recorded in the checkpoint of "
                f"{cp.created}: the log was rewritten up to here"))
    counter = head.counter if head is not None else 0
    newest = max(cps, key=lambda c: (c.seq, c.counter))
    highest = max(cps, key=lambda c: (c.counter, c.seq))
    for cp in (newest, highest):
        if last < cp.seq or counter < cp.counter:
            missing = (f"events {last + 1}..{cp.seq} are missing" if last < cp.seq
                       else "an older head was written back")
            return ChainBreak(last + 1, "rolled_back", (
                f"the log's head is event {last} (commit {counter}) but the checkpoint of "
                f"{cp.created} records event {cp.seq} (commit {cp.counter}): the log was "
                f"rolled back, truncated or replaced by an older copy; {missing}"))
    return None


def require_valid(spec: str | os.PathLike[str] | ChainStore, **kwargs: Any) -> VerifyResult:
    """Like :func:`verify_log`, raising :class:`ChainBroken` on any break and
    :class:`AuditKeyError` when a keyed log could not be verified for want of its key."""
    result = verify_log(spec, **kwargs)
    result.raise_unless_verified()
    return result
