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

Adapters read the marks from the object metadata the tenant store writes (see
:mod:`residency_sdk.marks`), so copies (transfer, failover, ``copy_to``) carry them too. The
retention sweep (:mod:`residency_sdk.retention`) stays the exact, auditable fallback: cloud
lifecycle engines count whole days and run asynchronously.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from residency_sdk.marks import CATEGORY_META, expiry_of, is_held

AUDIT_CATEGORY = "audit"
"""The map's retention category of audit records: it sets the audit bucket's lock; objects
written through the facade with it are marked and expire like any other category."""
TAG_KEY = "residency-retention"
"""S3 object tag / Azure blob index tag whose value is the retention category."""
GCS_DAYS_SINCE_CUSTOM_TIME = 1
"""The ``daysSinceCustomTime`` of the GCS expiry rule; the object's custom time is its
expiry minus this many days, so the rule becomes true when the retention period ends."""


def tags_for(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """The lifecycle tags (S3 object tags, Azure blob index tags) for an object's metadata:
    ``{TAG_KEY: category}`` when it names a category and is not on legal hold, else
    nothing."""
    category = (metadata or {}).get(CATEGORY_META)
    return {TAG_KEY: category} if category and not is_held(metadata) else {}


def gcs_custom_time(metadata: Mapping[str, str] | None) -> datetime | None:
    """The GCS ``customTime`` for an object's metadata: its expiry minus
    :data:`GCS_DAYS_SINCE_CUSTOM_TIME` days (None for objects without an expiry)."""
    expiry = None if is_held(metadata) else expiry_of(metadata)
    return None if expiry is None else expiry - timedelta(days=GCS_DAYS_SINCE_CUSTOM_TIME)


def gcs_rule_eligible_at(custom_time: datetime, days_since_custom_time: int) -> datetime:
    """When a GCS ``daysSinceCustomTime`` rule starts selecting an object (GCS evaluates it
    at day granularity and acts asynchronously, so deletion follows within about a day)."""
    return custom_time + timedelta(days=days_since_custom_time)
