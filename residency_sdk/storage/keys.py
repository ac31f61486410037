"""Object keys and tenant prefixes: what a key may look like, on every backend.

One rule set for all adapters, so a key that works on one backend works on every other
and can never climb out of a directory or into another tenant's prefix:

- UTF-8, normalised to Unicode NFC (``"é"`` typed two ways is one key);
- at most :data:`MAX_KEY_BYTES` bytes for the whole stored key (S3's limit), each
  ``/``-separated segment at most :data:`MAX_SEGMENT_BYTES` (a file-name limit);
- relative: no leading ``/``, no empty segment (``a//b``, trailing ``/``), no ``.`` or
  ``..`` segment, no backslash, no trailing ``.`` (Azure and Windows drop it);
- no control characters (NUL, newline, DEL, C1), no lone surrogates, no Unicode
  noncharacters and no bidirectional overrides (a key must read as what it is).

Tenant objects live under ``tenants/<tenant_id>/``; :func:`tenant_key` is the only way
the facade builds a stored key, and :func:`relative_key` refuses any stored key outside
the tenant's prefix.
"""

from __future__ import annotations

import unicodedata

from residency_sdk.errors import InvalidKey
from residency_sdk.model import Tenant

MAX_KEY_BYTES = 1024
MAX_SEGMENT_BYTES = 255
TENANTS_ROOT = "tenants"
SDK_PREFIX = "_residency/"
"""Where the SDK keeps its own records in a bucket (tenant country records): never a
tenant's key (those live under ``tenants/``), never swept by retention."""

# Bidirectional embeddings/overrides/isolates and the BOM: they make a key display as
# something other than what it is.
_BIDI_AND_BOM = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                          "\u2066\u2067\u2068\u2069\ufeff")


def _bad_char(ch: str) -> str | None:
    cat = unicodedata.category(ch)
    if cat == "Cc":
        return "a control character"
    if cat == "Cs":
        return "a lone surrogate"
    if ch in _BIDI_AND_BOM:
        return "a bidirectional-override or byte-order-mark character"
    code = ord(ch)
    if 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE:
        return "a Unicode noncharacter"
    if ch == "\\":
        return "a backslash (use '/' to separate segments)"
    return None


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidKey(f"{what} must be a string, got {type(value).__name__}")
    if value.isascii() and value.isprintable() and "\\" not in value:
        return value  # the usual key: no character below can occur, NFC changes nothing
    for ch in value:
        problem = _bad_char(ch)
        if problem:
            raise InvalidKey(f"{what} {value!r} contains {problem} (U+{ord(ch):04X})")
    return unicodedata.normalize("NFC", value)


def _check_segments(text: str, original: object, what: str, *, partial_last: bool) -> None:
    if text.startswith("/"):
        raise InvalidKey(f"{what} {original!r} is absolute: keys are relative, without a "
                         "leading '/'")
    segments = text.split("/")
    if partial_last:
        segments = segments[:-1]  # a prefix may end in '/' or in part of a segment
    for segment in segments:
        if segment == "":
            raise InvalidKey(f"{what} {original!r} has an empty segment ('//' or a "
                             "trailing '/')")
        if segment in (".", ".."):
            raise InvalidKey(f"{what} {original!r} has a {segment!r} segment: keys never "
                             "navigate directories")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise InvalidKey(f"{what} {original!r} has a segment longer than "
                             f"{MAX_SEGMENT_BYTES} bytes")


def validate_key(key: object, *, max_bytes: int = MAX_KEY_BYTES) -> str:
    """Return ``key`` NFC-normalised if it is a safe object key; raise InvalidKey if not."""
    text = _check_text(key, "key")
    if not text:
        raise InvalidKey("key must not be empty")
    _check_segments(text, key, "key", partial_last=False)
    if text.endswith("."):
        raise InvalidKey(f"key {key!r} ends with '.', which Azure Blob and Windows drop")
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise InvalidKey(f"key {key!r} is {size} bytes in UTF-8; the limit here is "
                         f"{max_bytes} bytes")
    return text


def validate_prefix(prefix: object, *, max_bytes: int = MAX_KEY_BYTES) -> str:
    """Return a listing prefix NFC-normalised: like a key, but it may be empty, end in
    ``/`` or stop in the middle of a segment."""
    text = _check_text(prefix, "prefix")
    if text:
        _check_segments(text, prefix, "prefix", partial_last=True)
        last = text.rsplit("/", 1)[-1]
        if last == "..":
            raise InvalidKey(f"prefix {prefix!r} ends in a '..' segment")
    if len(text.encode("utf-8")) > max_bytes:
        raise InvalidKey(f"prefix {prefix!r} is longer than {max_bytes} bytes")
    return text


def tenant_prefix(tenant: Tenant | str) -> str:
    """``tenants/<tenant_id>/``: the prefix holding every object of one tenant."""
    tenant_id = tenant.id if isinstance(tenant, Tenant) else tenant
    # Tenant ids are validated by the Tenant model; re-check the invariants the prefix
    # relies on, so a hand-built id can never widen or escape it.
    if not isinstance(tenant_id, str) or not tenant_id or "/" in tenant_id or ".." in tenant_id:
        raise InvalidKey(f"invalid tenant id {tenant_id!r} for a storage prefix")
    checked = _check_text(tenant_id, "tenant id")
    _check_segments(checked, tenant_id, "tenant id", partial_last=False)
    return f"{TENANTS_ROOT}/{checked}/"


def tenant_of_key(key: str) -> str | None:
    """The tenant id a stored key belongs to (``tenants/<id>/...``), or None for any other
    key (the SDK's own records under ``_residency/``, raw adapter keys). Adapters use it to
    pick the tenant's own encryption key."""
    root = f"{TENANTS_ROOT}/"
    if not key.startswith(root):
        return None
    tenant_id, sep, rest = key[len(root):].partition("/")
    if not sep or not rest or not tenant_id or tenant_id in (".", ".."):
        return None
    return tenant_id


def tenant_key(tenant: Tenant | str, key: object) -> str:
    """The stored key of a tenant's object: its prefix plus the validated relative key."""
    prefix = tenant_prefix(tenant)
    return prefix + validate_key(key, max_bytes=MAX_KEY_BYTES - len(prefix.encode("utf-8")))


def tenant_list_prefix(tenant: Tenant | str, prefix: object = "") -> str:
    """The stored-key prefix to list a tenant's objects whose key starts with ``prefix``."""
    base = tenant_prefix(tenant)
    return base + validate_prefix(prefix, max_bytes=MAX_KEY_BYTES - len(base.encode("utf-8")))


def relative_key(tenant: Tenant | str, stored_key: str) -> str:
    """The tenant-relative key of ``stored_key``; InvalidKey if it is another tenant's."""
    prefix = tenant_prefix(tenant)
    if not stored_key.startswith(prefix) or len(stored_key) == len(prefix):
        raise InvalidKey(f"stored key {stored_key!r} is outside the tenant prefix {prefix!r}")
    return stored_key[len(prefix):]
