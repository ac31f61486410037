"""Object marks: the metadata residency-sdk writes with every object, in one place.

Every object the tenant store writes carries its data class, tenant, creation time and,
when governed by retention, its category and expiry; a copy made by a transfer carries
the location it came from; anyone may put an object under a legal hold. Retention,
erasure, lifecycle rules and the facade read these marks through the helpers below, so a
mark's name, format and meaning are defined once.

Names are lower-case identifiers: valid as S3 metadata (lower-cased on the wire), GCS
metadata and Azure metadata names (C# identifiers), so one metadata dict works on every
backend. Names starting with ``residency_`` are reserved for the SDK.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from residency_sdk.errors import StorageError

DATA_CLASS_META = "residency_data_class"
"""The data class the object was stored as (``phi``, ``personal``, ``anonymised``)."""
CREATED_META = "residency_created_at"
"""When the object was stored (ISO 8601, UTC): what retention counts from."""
TENANT_META = "residency_tenant"
"""The tenant id the object belongs to."""
SOURCE_LOCATION_META = "residency_source_location"
"""On a copy made by a transfer: the location the object was copied from."""
CATEGORY_META = "category"
"""The retention category (a key of the map's ``retention:``); set by the caller."""
EXPIRES_META = "residency_expires_at"
"""When the object's retention period ends (ISO 8601, UTC), from the category's period."""
LEGAL_HOLD_META = "legal_hold"
"""Set to ``true`` by the caller, keeps the object whatever retention or erasure says."""
RESERVED_PREFIX = "residency_"

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_VALUE = re.compile(r"^[\x20-\x7e]{0,1024}$")
_TRUE = frozenset({"true", "1", "yes", "on"})


def check_user_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Validate the metadata a caller passes with a write; return a copy.

    Raises :class:`StorageError` naming the offending name or value: names are lower-case
    identifiers (max 63), values printable ASCII (max 1024), and ``residency_`` names are
    the SDK's own."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise StorageError(f"metadata must be a dict of str to str, got {metadata!r}")
    for name, value in metadata.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise StorageError(f"invalid metadata name {name!r}: use lower-case letters, "
                               "digits and '_', starting with a letter (max 63)")
        if name.startswith(RESERVED_PREFIX):
            raise StorageError(f"metadata name {name!r} is reserved: names starting with "
                               f"{RESERVED_PREFIX!r} are set by residency-sdk")
        if not isinstance(value, str) or not _VALUE.fullmatch(value):
            raise StorageError(f"invalid metadata value for {name!r}: use printable ASCII, "
                               "at most 1024 characters")
    return dict(metadata)


def write_marks(user: Mapping[str, str], *, data_class: str, tenant_id: str,
                created: datetime, category: str | None = None,
                period: timedelta | None = None) -> dict[str, str]:
    """The metadata of a new object: the caller's (already checked) plus the SDK's marks."""
    meta = {**user, DATA_CLASS_META: data_class, CREATED_META: created.isoformat(),
            TENANT_META: tenant_id}
    if category is not None and period is not None:
        meta[CATEGORY_META] = category
        meta[EXPIRES_META] = expires_at(created, period).isoformat()
    return meta


def copied_from(metadata: Mapping[str, str], location: str) -> dict[str, str]:
    """The metadata of a copy of an object of ``location``: the same marks plus where the
    copy came from."""
    return {**metadata, SOURCE_LOCATION_META: location}


def data_class_of(metadata: Mapping[str, str] | None) -> str | None:
    """The data class an object was stored as, or None when unmarked."""
    return (metadata or {}).get(DATA_CLASS_META)


def category_of(metadata: Mapping[str, str] | None) -> str | None:
    """The retention category of an object, or None when it is not governed."""
    return (metadata or {}).get(CATEGORY_META) or None


def tenant_of(metadata: Mapping[str, str] | None, key: str = "") -> str | None:
    """The tenant an object belongs to: its mark, else the ``tenants/<id>/`` key prefix."""
    marked = (metadata or {}).get(TENANT_META)
    if marked:
        return marked
    parts = key.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "tenants" else None


def is_held(metadata: Mapping[str, str] | None) -> bool:
    """True if ``metadata`` carries the legal hold marker (``legal_hold=true``)."""
    return (metadata or {}).get(LEGAL_HOLD_META, "").strip().lower() in _TRUE


def hold_marker_reason(metadata: Mapping[str, str] | None) -> str | None:
    """The words a sweep records for an object kept by the marker, or None."""
    if is_held(metadata):
        return f"legal hold marker ({LEGAL_HOLD_META}=true) in object metadata"
    return None


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def created_at(metadata: Mapping[str, str] | None,
               last_modified: datetime | None = None) -> datetime | None:
    """When the object was created: its mark, else the backend's ``last_modified``."""
    raw = (metadata or {}).get(CREATED_META)
    if raw:
        with contextlib.suppress(ValueError):
            return _utc(datetime.fromisoformat(raw))
    return None if last_modified is None else _utc(last_modified)


def expires_at(created: datetime, period: timedelta) -> datetime:
    """When an object created at ``created`` with a retention ``period`` expires (UTC)."""
    return (_utc(created) + period).astimezone(UTC)


def expiry_of(metadata: Mapping[str, str] | None) -> datetime | None:
    """The expiry recorded in ``metadata`` (None when absent or unreadable)."""
    raw = (metadata or {}).get(EXPIRES_META)
    if not raw:
        return None
    try:
        return _utc(datetime.fromisoformat(raw))
    except ValueError:
        return None
