"""The chain: canonical event encoding, SHA-256 links and HMAC-SHA-256 seals.

Link ``n`` of the chain is::

    hash_n = SHA-256( "<n>\\n<hash_(n-1)>\\n" || event_n )      hash_0 = 64 zeros
    mac_n  = HMAC-SHA-256(key, "<n>\\n<hash_n>")                  (keyed logs only)

``event_n`` is the event's canonical JSON (UTF-8 bytes), stored verbatim, so verifying a
log never re-serialises an event. Because ``hash_n`` covers ``hash_(n-1)``, editing,
deleting, reordering or inserting any event breaks every later link; because ``mac_n``
needs the key, an attacker who rewrites the whole file cannot forge a valid keyed chain.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from datetime import UTC

from residency_sdk.errors import AuditFormatError, AuditKeyError
from residency_sdk.events import AuditEvent

GENESIS = "0" * 64
"""The ``prev_hash`` of the first event."""

HMAC_KEY_ENV = "RESIDENCY_AUDIT_HMAC_KEY"
"""Environment variable the CLI and :class:`~residency_sdk.audit.AuditLog` read the key from."""

MIN_KEY_BYTES = 16
_KEY_CHECK_MESSAGE = b"residency.audit key check v1"


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


def head_mac(key: bytes, seq: int, hash_: str) -> str:
    """HMAC sealing the recorded head; a different message from any link's MAC, so an
    attacker cannot roll the head back to an earlier event by copying that event's MAC."""
    return hmac.new(key, f"head\n{seq}\n{hash_}".encode("ascii"), hashlib.sha256).hexdigest()
