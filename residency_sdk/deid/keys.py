"""The tenant's de-identification key and the keyed mappings derived from it.

A :class:`DeidKey` is a secret kept in the tenant's location (created and stored by
``Residency.deid_key``); the de-identifier only consumes it. From it come:

- UID replacement: ``2.25.`` + the first 128 bits of HMAC-SHA256(secret, "uid" + UID) as
  a decimal integer (PS3.5 B.2 UUID-derived UIDs). The same UID always maps to the same
  new UID under one key, so a study re-de-identified tomorrow keeps its StudyInstanceUID
  and every reference to it; another tenant's key gives unrelated UIDs; without the key
  the mapping cannot be reversed or recomputed.
- The per-patient date offset of the "retain longitudinal temporal information with
  modified dates" option: a whole number of days between 1 and 3652 into the past,
  derived from HMAC-SHA256(secret, "date" + issuer + patient id), so every object of one
  patient moves by the same offset (intervals between studies survive) while the offset
  differs between patients and between tenants.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from residency_sdk.errors import InputError

MIN_SECRET_BYTES = 16
"""Shortest secret accepted: 128 bits, the strength of the UID mapping itself."""

MAX_SHIFT_DAYS = 3652
"""Date offsets are drawn from 1..MAX_SHIFT_DAYS days (up to ten years) into the past."""


@dataclass(frozen=True)
class DeidKey:
    """A tenant's keyed-mapping key: ``key_id`` names it (recorded in evidence),
    ``secret`` (at least 16 bytes) never leaves the tenant's location and never appears in
    ``repr``, logs or evidence."""

    key_id: str
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key_id, str) or not self.key_id:
            raise InputError(f"DeidKey.key_id must be a non-empty string, got {self.key_id!r}")
        if not isinstance(self.secret, bytes) or len(self.secret) < MIN_SECRET_BYTES:
            size = len(self.secret) if isinstance(self.secret, bytes) else type(self.secret)
            raise InputError(
                f"DeidKey {self.key_id!r}: secret must be at least {MIN_SECRET_BYTES} bytes "
                f"(got {size}); use Residency.deid_key(tenant), which creates a 32-byte key "
                "in the tenant's location")

    def _mac(self, purpose: bytes, value: bytes) -> bytes:
        # A purpose label keeps the UID and date derivations independent of each other.
        return hmac.new(self.secret, purpose + b"\x00" + value, hashlib.sha256).digest()

    def map_uid(self, uid: str) -> str:
        """The replacement of ``uid`` under this key (``2.25.<decimal>``, at most 44
        characters, a valid UI value)."""
        digest = self._mac(b"uid", uid.strip("\x00 ").encode("ascii", "replace"))
        return "2.25." + str(int.from_bytes(digest[:16], "big"))

    def date_offset_days(self, patient_id: str, issuer: str = "") -> int:
        """Days (negative: into the past) by which one patient's dates are shifted."""
        value = issuer.strip().encode("utf-8") + b"\x00" + patient_id.strip().encode("utf-8")
        digest = self._mac(b"date", value)
        return -(1 + int.from_bytes(digest[:8], "big") % MAX_SHIFT_DAYS)
