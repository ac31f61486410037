"""How an object is marked so each cloud's lifecycle engine deletes it on time.

Cloud lifecycle rules cannot read object metadata, so the retention category a write
names (``TenantStore.put(..., category=...)``) is also written where the lifecycle engine
of each provider can select it; the infra plan (:mod:`residency_sdk.infra.plan`) renders
rules that select exactly these marks:

- S3: object tag ``residency-retention=<category>``; one lifecycle rule per category
  filters on that tag (``Filter.Tag``) and expires after the category's days.
- Azure Blob: blob index tag ``residency-retention=<category>``; one management-policy
  rule per category filters on it (``blobIndexMatch``).
- GCS: lifecycle rules can filter neither on metadata nor on tags, so the object's
  ``customTime`` is set to its expiry minus :data:`GCS_DAYS_SINCE_CUSTOM_TIME` days and one
  rule ``daysSinceCustomTime: 1`` deletes every marked object once its expiry has passed,
  whatever its category. (A ``daysSinceCustomTime`` of 0 would be simpler, but Terraform's
  and Pulumi's Google providers drop zero-valued lifecycle conditions, which turns the rule
  into one that selects every object.)

Adapters read the marks from the object metadata the facade writes (:data:`CATEGORY_META`
and :data:`EXPIRES_META`), so copies (transfer, failover, ``copy_to``) carry them too. The
retention sweep (:mod:`residency_sdk.retention`) stays the exact, auditable fallback: cloud
lifecycle engines count whole days and run asynchronously.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

CATEGORY_META = "category"
"""Object metadata naming the retention category (a key of the map's ``retention:``)."""
EXPIRES_META = "residency_expires_at"
"""Object metadata: when the object's retention period ends (ISO 8601, UTC); set by the
facade from the creation time and the category's period."""
AUDIT_CATEGORY = "audit"
"""The map's retention category of audit records: it sets the audit bucket's lock; objects
written through the facade with it are marked and expire like any other category."""
LEGAL_HOLD_META = "legal_hold"
"""Object metadata that, set to ``true``, keeps the object: the sweep skips it and the
adapters write no lifecycle mark, so no cloud rule deletes it either."""
TAG_KEY = "residency-retention"
"""S3 object tag / Azure blob index tag whose value is the retention category."""
_TRUE = frozenset({"true", "1", "yes", "on"})
GCS_DAYS_SINCE_CUSTOM_TIME = 1
"""The ``daysSinceCustomTime`` of the GCS expiry rule; the object's custom time is its
expiry minus this many days, so the rule becomes true when the retention period ends."""


def expires_at(created: datetime, period: timedelta) -> datetime:
    """When an object created at ``created`` with a retention ``period`` expires (UTC)."""
    value = created if created.tzinfo else created.replace(tzinfo=UTC)
    return (value + period).astimezone(UTC)


def held(metadata: Mapping[str, str] | None) -> bool:
    """True if ``metadata`` carries the legal hold marker (``legal_hold=true``)."""
    return (metadata or {}).get(LEGAL_HOLD_META, "").strip().lower() in _TRUE


def tags_for(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """The lifecycle tags (S3 object tags, Azure blob index tags) for an object's metadata:
    ``{TAG_KEY: category}`` when it names a category and is not on legal hold, else
    nothing."""
    category = (metadata or {}).get(CATEGORY_META)
    return {TAG_KEY: category} if category and not held(metadata) else {}


def expiry_of(metadata: Mapping[str, str] | None) -> datetime | None:
    """The expiry the facade recorded in ``metadata`` (None when absent or unreadable)."""
    raw = (metadata or {}).get(EXPIRES_META)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def gcs_custom_time(metadata: Mapping[str, str] | None) -> datetime | None:
    """The GCS ``customTime`` for an object's metadata: its expiry minus
    :data:`GCS_DAYS_SINCE_CUSTOM_TIME` days (None for objects without an expiry)."""
    expiry = None if held(metadata) else expiry_of(metadata)
    return None if expiry is None else expiry - timedelta(days=GCS_DAYS_SINCE_CUSTOM_TIME)


def gcs_rule_eligible_at(custom_time: datetime, days_since_custom_time: int) -> datetime:
    """When a GCS ``daysSinceCustomTime`` rule starts selecting an object (GCS evaluates it
    at day granularity and acts asynchronously, so deletion follows within about a day)."""
    return custom_time + timedelta(days=days_since_custom_time)
