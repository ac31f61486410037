"""The chain (format ``residency.audit.log/v2``): canonical events, SHA-256 links, HMAC seals.

A log is created with an identity, its ``meta``: a random ``log_id``, the creation time,
the chain kind (``sha256`` or ``hmac-sha256``) and, when keyed, the key's id (never the
key). The first link hangs off a genesis hash over that identity::

    G      = SHA-256( "residency.audit genesis\n<log_id>\n<created>\n<chain>\n<key_id>" )
    hash_n = SHA-256( "<n>\n<hash_(n-1)>\n" || event_n )         hash_0 = G
    mac_n  = HMAC-SHA-256( key, "<n>\n<hash_n>" )                   (keyed logs only)

so every link binds the log it belongs to. A keyed log also stores ``genesis_mac``
(HMAC over G), which only the key holder can produce: a keyed log emptied and refilled by
someone without the key never verifies. The recorded head ``(seq, hash, counter)`` exists
from creation (``(0, G, 0)``); ``counter`` grows by one with every commit, and the head's
MAC binds the log id, the counter, the position and the hash, so an old head written back
(a rollback) is refused by a running writer and by verification against any later anchor.

``event_n`` is the event's canonical JSON (UTF-8 bytes), stored verbatim, so verifying a
log never re-serialises an event. Because ``hash_n`` covers ``hash_(n-1)``, editing,
deleting, reordering or inserting any event breaks every later link; because ``mac_n``
needs the key, an attacker who rewrites the whole file cannot forge a valid keyed chain.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from residency_sdk.audit.store import Head, Row
from residency_sdk.errors import AuditFormatError, AuditKeyError
from residency_sdk.events import AuditEvent

LOG_FORMAT = "residency.audit.log/v2"
"""The ``format`` value in a log's meta."""

LOG_FORMAT_V1 = "residency.audit.log/v1"

GENESIS = "0" * 64
"""The ``prev_hash`` of the first line of a JSON Lines file (which has no identity of its
own). A SQLite or PostgreSQL log starts from its own :func:`genesis_hash` instead."""

HMAC_KEY_ENV = "RESIDENCY_AUDIT_HMAC_KEY"
"""Environment variable the CLI and :class:`~residency_sdk.audit.AuditLog` read the key from."""

MIN_KEY_BYTES = 16
_KEY_CHECK_MESSAGE = b"residency.audit key check v1"
_KEY_ID_MESSAGE = b"residency.audit key id"


def canonical(event: AuditEvent) -> str:
    """The canonical JSON of ``event``: schema field order, compact, UTF-8, time in UTC.

    The form is pydantic's JSON of the frozen, versioned ``residency.audit/v1`` model
    (deterministic for a schema version), with the time converted to UTC and always written
    with six fractional digits (``2026-11-01T08:00:00.000000Z``), so that stored times sort
    as strings. A naive time is refused because its instant is unknown.
    """
    if not isinstance(event, AuditEvent):
        raise AuditFormatError(
            f"expected a residency_sdk.AuditEvent, got {type(event).__name__}: build one with "
            "residency_sdk.AuditEvent(operation=..., outcome=...)")
    when = event.time
    offset = when.utcoffset()
    if offset is None:
        raise AuditFormatError(
            f"audit event {event.event_id} has a naive time {when.isoformat()!r}: pass a "
            "timezone-aware datetime (e.g. datetime.now(UTC))")
    if offset:
        when = when.astimezone(UTC)
        event = event.model_copy(update={"time": when})
    text = event.to_json()
    if not when.microsecond:
        # pydantic drops a zero fraction; restore it so every stored time has one width.
        stamp = when.strftime("%Y-%m-%dT%H:%M:%S")
        text = text.replace(f'"time":"{stamp}Z"', f'"time":"{stamp}.000000Z"', 1)
    return text


def link_hash(seq: int, prev_hash: str, payload: str) -> str:
    """``hash_seq`` of the chain (hex), over the position, the previous hash and the event."""
    return hashlib.sha256(f"{seq}\n{prev_hash}\n{payload}".encode()).hexdigest()


def link_rows(payloads: Sequence[str], seq: int, prev_hash: str,
              seal: Callable[[int, str], str] | None) -> list[Row]:
    """Chain ``payloads`` after position ``seq`` whose hash is ``prev_hash``: one row
    ``(seq, payload, prev_hash, hash, mac)`` each, every hash covering the one before it
    (:func:`link_hash`, inlined: this loop is every commit's hot path), sealed with
    ``seal(seq, hash)`` when the log is keyed."""
    rows: list[Row] = []
    sha256 = hashlib.sha256
    prev = prev_hash
    for payload in payloads:
        seq += 1
        digest = sha256(f"{seq}\n{prev}\n{payload}".encode()).hexdigest()
        rows.append((seq, payload, prev, digest, seal(seq, digest) if seal else None))
        prev = digest
    return rows


_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


class Sealer:
    """HMAC-SHA-256 under one key, with the key's pads hashed once.

    Equal to ``hmac.new(key, message, "sha256").hexdigest()`` (RFC 2104); the hmac module
    re-derives the pads for every message, which dominates the cost of sealing or checking
    millions of short links.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:  # SHA-256's block size
            key = hashlib.sha256(key).digest()
        padded = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(padded.translate(_IPAD))
        self._outer = hashlib.sha256(padded.translate(_OPAD))

    def hexdigest(self, message: bytes) -> str:
        """The hex HMAC of ``message``."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()

    def link(self, seq: int, hash_: str) -> str:
        """The MAC of link ``seq`` (same value as :func:`link_mac`)."""
        return self.hexdigest(f"{seq}\n{hash_}".encode("ascii"))


def link_mac(key: bytes, seq: int, hash_: str) -> str:
    """HMAC-SHA-256 (hex) sealing link ``seq`` whose hash is ``hash_``."""
    return hmac.new(key, f"{seq}\n{hash_}".encode("ascii"), hashlib.sha256).hexdigest()


def key_check(key: bytes) -> str:
    """A value stored in the log to recognise the right key; it does not reveal the key."""
    return hmac.new(key, _KEY_CHECK_MESSAGE, hashlib.sha256).hexdigest()


def macs_equal(a: str | None, b: str) -> bool:
    """Constant-time comparison of two hex MACs (None never matches)."""
    return a is not None and hmac.compare_digest(a, b)


def coerce_key(key: bytes | str | None, *, use_env: bool = True) -> bytes | None:
    """The HMAC key as bytes: ``key`` itself, else ``$RESIDENCY_AUDIT_HMAC_KEY``, else None.

    A ``str`` key is UTF-8 encoded. Keys shorter than 16 bytes are refused.
    """
    if key is None and use_env:
        key = os.environ.get(HMAC_KEY_ENV) or None
    if key is None:
        return None
    raw = key.encode() if isinstance(key, str) else bytes(key)
    if len(raw) < MIN_KEY_BYTES:
        raise AuditKeyError(
            f"audit HMAC key is {len(raw)} bytes: use at least {MIN_KEY_BYTES} random bytes "
            f"(e.g. `python -c \"import secrets; print(secrets.token_hex(32))\"` into "
            f"{HMAC_KEY_ENV})")
    return raw


def key_id(key: bytes) -> str:
    """A short public name of ``key`` (16 hex digits of an HMAC under it): checkpoints and
    meta carry it so a reader knows which key sealed them; it does not reveal the key."""
    return hmac.new(key, _KEY_ID_MESSAGE, hashlib.sha256).hexdigest()[:16]


def genesis_hash(log_id: str, created: str, chain: str, key_id_: str | None) -> str:
    """``G``: the ``prev_hash`` of event 1, over the log's identity."""
    text = f"residency.audit genesis\n{log_id}\n{created}\n{chain}\n{key_id_ or ''}"
    return hashlib.sha256(text.encode()).hexdigest()


def genesis_mac(key: bytes, genesis: str) -> str:
    """HMAC sealing the genesis hash (stored in a keyed log's meta)."""
    return hmac.new(key, f"genesis\n{genesis}".encode("ascii"), hashlib.sha256).hexdigest()


def head_mac(key: bytes, log_id: str, counter: int, seq: int, hash_: str) -> str:
    """HMAC sealing the recorded head. Its message differs from any link's, so a link's MAC
    cannot be copied onto the head; it binds the log id (no head moved between logs) and
    the commit counter (no older head of this log passed off as the current one)."""
    message = f"head\n{log_id}\n{counter}\n{seq}\n{hash_}".encode("ascii")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class LogInfo:
    """What an audit log says about itself (its meta)."""

    log_id: str
    chain: str
    """``"sha256"`` or ``"hmac-sha256"``."""
    created: str
    key_id: str | None = None
    key_check: str | None = None
    genesis_mac: str | None = None

    @property
    def keyed(self) -> bool:
        """True when every link carries an HMAC."""
        return self.chain == "hmac-sha256"

    @property
    def genesis(self) -> str:
        """``G``, the ``prev_hash`` of event 1 and the hash of the empty log's head."""
        return genesis_hash(self.log_id, self.created, self.chain, self.key_id)

    def genesis_head(self, key: bytes | None) -> Head:
        """The head the log is created with: ``(0, G, counter 0)``."""
        g = self.genesis
        return Head(0, g, 0, head_mac(key, self.log_id, 0, 0, g) if key else None)

    @classmethod
    def from_meta(cls, meta: Mapping[str, str], name: str) -> LogInfo:
        """Read a log's meta; :class:`AuditFormatError` when it is not a v2 residency log."""
        fmt = meta.get("format")
        if fmt == LOG_FORMAT_V1:
            raise AuditFormatError(
                f"{name!r} is a version 1 audit log ({LOG_FORMAT_V1}), which this release "
                "does not append to or verify: verify it with residency-sdk 0.1 "
                "(`residency audit verify`), export a checkpoint and archive it unchanged, "
                "then start a new log (another file name) for this release")
        if fmt != LOG_FORMAT:
            why = "its meta is empty (it was emptied)" if not meta else f"format {fmt!r}"
            raise AuditFormatError(
                f"{name!r} is not a residency audit log ({why}; expected {LOG_FORMAT!r}): "
                "point at a log written by residency_sdk.audit.AuditLog")
        try:
            info = cls(log_id=meta["log_id"], chain=meta["chain"], created=meta["created"],
                       key_id=meta.get("key_id") or None, key_check=meta.get("key_check"),
                       genesis_mac=meta.get("genesis_mac"))
        except KeyError as exc:
            raise AuditFormatError(
                f"audit log {name!r} has no {exc.args[0]!r} in its meta: it was altered; "
                "run `residency audit verify` and restore it from a backup") from None
        if info.chain not in ("sha256", "hmac-sha256"):
            raise AuditFormatError(
                f"audit log {name!r} has chain kind {info.chain!r}: expected sha256 or "
                "hmac-sha256; the meta was altered")
        return info


def new_meta(key: bytes | None) -> dict[str, str]:
    """The meta of a new log: a fresh log id, the time now, the chain kind, key id, seals."""
    log_id = uuid.uuid4().hex
    created = datetime.now(UTC).isoformat()
    meta = {"format": LOG_FORMAT, "log_id": log_id, "created": created,
            "chain": "hmac-sha256" if key else "sha256"}
    if key:
        kid = key_id(key)
        meta["key_id"] = kid
        meta["key_check"] = key_check(key)
        meta["genesis_mac"] = genesis_mac(key, genesis_hash(log_id, created, meta["chain"], kid))
    return meta


def check_key(info: LogInfo, key: bytes | None, name: str) -> None:
    """Refuse a key that does not fit the log (missing, unexpected, or wrong)."""
    if info.keyed and key is None:
        raise AuditKeyError(
            f"audit log {name!r} is HMAC-keyed: provide its key (hmac_key= or "
            f"{HMAC_KEY_ENV})")
    if not info.keyed and key is not None:
        raise AuditKeyError(
            f"audit log {name!r} was created without an HMAC key but a key was given: "
            f"unset {HMAC_KEY_ENV} or use a new log for keyed auditing")
    if key is not None and not macs_equal(info.key_check, key_check(key)):
        raise AuditKeyError(
            f"the HMAC key given is not the key audit log {name!r} was created with: "
            f"use the original key ({HMAC_KEY_ENV})")
