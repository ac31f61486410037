"""The infra plan: what one residency location needs provisioned, per cloud provider.

Pure Python (no Pulumi import). Built from the compiled region map, so the Pulumi program
(``infra/``), the Terraform export (:mod:`residency_sdk.infra.terraform`) and the router all
read one source: the bucket the router sends data to is the bucket the plan creates, in the
region the router believes, encrypted with the key the storage adapters ask for.

Everything that would put data outside the location's country is refused here, before any
renderer runs: failover regions abroad, keys in another country, and Azure geo-redundant
SKUs (their secondary region is chosen by Azure's region pairing, not by the map).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from residency_sdk.errors import InfraCrossesBorder, InfraError
from residency_sdk.lifecycle import AUDIT_CATEGORY, GCS_DAYS_SINCE_CUSTOM_TIME, TAG_KEY
from residency_sdk.model import StorageTarget
from residency_sdk.regionmap import Location, RegionMap, RetentionSpec
from residency_sdk.rules import load_transfer_rules

CloudProvider = Literal["aws", "gcp", "azure"]
CLOUD_PROVIDERS: tuple[CloudProvider, ...] = ("aws", "gcp", "azure")

KEY_ROTATION_DAYS = 90
"""Key rotation period on every provider (Checkov CKV_GCP_43 asks for at most 90 days)."""
DEFAULT_AUDIT_LOCK_DAYS = 2192
"""Audit retention when the map has no ``audit`` category: 6 years (HIPAA 164.316(b)(2))."""
NONCURRENT_VERSION_DAYS = 30
"""Overwritten or deleted data versions are kept this long, then removed."""
SOFT_DELETE_DAYS = 7
"""Azure blob/container soft-delete window (Azure allows 1-365)."""

AZURE_IN_COUNTRY_SKUS = ("ZRS", "LRS")
# Geo-redundant SKUs copy every blob to the Azure-paired region, which the region map does
# not name or control; residency-sdk provisions only regions the map names.
AZURE_GEO_SKUS = ("GRS", "RAGRS", "GZRS", "RAGZRS")

_LABEL_VALUE = re.compile(r"[^a-z0-9_-]+")
_GCP_KEY = re.compile(
    r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/keyRings/(?P<ring>[^/]+)"
    r"/cryptoKeys/(?P<key>[^/]+)$"
)
_AWS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:(?P<region>[a-z0-9-]+):")


@dataclass(frozen=True, slots=True)
class ExpiryRule:
    """Objects of one map retention category are deleted ``days`` after creation. Cloud
    lifecycle engines count whole days, so hours round up.

    ``tag`` is the ``(key, value)`` object tag (S3) / blob index tag (Azure) the rule
    selects: the storage adapters write exactly this tag on every object stored with the
    category (:mod:`residency_sdk.lifecycle`). None selects every object of the bucket (the
    audit bucket). GCS cannot filter on tags: there one rule on the objects' custom time
    (:func:`gcs_lifecycle_conditions`) serves every tagged category."""

    category: str
    days: int
    period_hours: int
    source: str
    noncurrent_days: int = 1
    """Versions made noncurrent by the expiry are removed this many days later, so a
    versioned bucket does not keep what the retention promise says is gone."""
    tag: tuple[str, str] | None = None

    def selects(self, tags: dict[str, str]) -> bool:
        """True if an object carrying ``tags`` is selected by this rule."""
        return self.tag is None or tags.get(self.tag[0]) == self.tag[1]


@dataclass(frozen=True, slots=True)
class BucketPlan:
    """A bucket (AWS, GCP) or blob container (Azure) with its protection settings."""

    name: str
    purpose: Literal["data", "audit"]
    expiry: tuple[ExpiryRule, ...]
    noncurrent_version_days: int
    versioning: bool = True
    lock_days: int | None = None
    """Compliance-mode write-once retention (audit buckets only)."""


@dataclass(frozen=True, slots=True)
class KeyPlan:
    """The customer-managed key that encrypts both buckets of one provider."""

    name: str
    rotation_days: int
    region: str
    alias: str | None = None
    """AWS: the alias the S3 adapter writes with (``alias/...``)."""
    key_ring: str | None = None
    """GCP: the key ring holding the key."""
    project: str | None = None
    """GCP: the project named in the map's key path."""


@dataclass(frozen=True, slots=True)
class ProviderPlan:
    """Everything one provider needs in one location."""

    provider: CloudProvider
    location: str
    country: str
    region: str
    failover_region: str | None
    redundancy: str
    key: KeyPlan
    data: BucketPlan
    audit: BucketPlan
    labels: dict[str, str]
    min_tls: str = "1.2"
    account: str | None = None
    """Azure: the storage account the blob adapter connects to."""
    encryption_scope: str | None = None
    """Azure: the encryption scope the blob adapter writes with."""
    resource_group: str | None = None
    key_vault: str | None = None
    identity: str | None = None


@dataclass(frozen=True, slots=True)
class InfraPlan:
    """The plan for one location: one :class:`ProviderPlan` per cloud backend in the map."""

    map_name: str
    location: str
    country: str
    regime: str
    prefix: str
    data_classes: tuple[str, ...]
    providers: tuple[ProviderPlan, ...] = field(default_factory=tuple)

    def provider(self, name: str) -> ProviderPlan:
        """The plan of provider ``name``; :class:`InfraError` when the location has none."""
        for plan in self.providers:
            if plan.provider == name:
                return plan
        raise InfraError(
            f"location {self.location} has no {name!r} backend in region map "
            f"{self.map_name!r}: add one under locations.{self.location}.backends"
        )

    def to_dict(self) -> dict[str, Any]:
        """The plan as plain JSON-able data."""
        return asdict(self)

    def resources(self) -> list[dict[str, Any]]:
        """The plan flattened to one row per provisioned resource (what ``infra plan``
        prints); every row names its provider, kind, name and region."""
        rows: list[dict[str, Any]] = []
        for p in self.providers:
            def row(kind: str, name: str, **settings: Any) -> None:
                rows.append({"provider": p.provider, "kind": kind, "name": name,  # noqa: B023
                             "region": p.region, "settings": settings})  # noqa: B023
            if p.resource_group:
                row("resource_group", p.resource_group)
            if p.key_vault:
                row("key_vault", p.key_vault, purge_protection=True, soft_delete=True)
            if p.identity:
                row("managed_identity", p.identity, purpose="storage account -> key vault")
            row("kms_key", p.key.name, rotation_days=p.key.rotation_days,
                alias=p.key.alias, key_ring=p.key.key_ring)
            if p.account:
                row("storage_account", p.account, redundancy=p.redundancy,
                    min_tls=p.min_tls, https_only=True, shared_key=False,
                    public_blobs=False, infrastructure_encryption=True,
                    soft_delete_days=SOFT_DELETE_DAYS)
            if p.encryption_scope:
                row("encryption_scope", p.encryption_scope, key=p.key.name)
            for bucket in (p.data, p.audit):
                row("bucket", bucket.name, purpose=bucket.purpose, versioning=bucket.versioning,
                    encryption=f"customer-managed key {p.key.name}",
                    public_access="blocked", min_tls=p.min_tls,
                    lifecycle=[f"{_selector(r)} -> delete after {r.days}d"
                               for r in bucket.expiry],
                    noncurrent_version_days=bucket.noncurrent_version_days,
                    lock_days=bucket.lock_days)
        return rows


def build_plan(
    region_map: RegionMap, location: str, *, azure_redundancy: str | None = None
) -> InfraPlan:
    """The infra plan of ``location`` (a location id of ``region_map``, any case).

    ``azure_redundancy`` picks the storage SKU (``ZRS`` by default, or ``LRS``); a
    geo-redundant SKU raises :class:`InfraCrossesBorder`, like any failover region or key
    outside the location's country.
    """
    loc_id = location.strip().upper() if isinstance(location, str) else location
    loc = region_map.locations.get(loc_id)
    if loc is None:
        known = ", ".join(sorted(region_map.locations)) or "none"
        raise InfraError(
            f"unknown residency location {location!r} in region map {region_map.name!r}: "
            f"use one of {known}, or add it under `locations`"
        )
    sku = _azure_sku(azure_redundancy, loc.id)
    rules = load_transfer_rules(region_map.rules_file, region_map.groups)
    regime = rules.regime_of.get(loc.country)
    prefix = region_map.document.naming.prefix
    data_classes = tuple(sorted(rules.data_classes))
    labels = {
        "residency-location": _label(loc.id),
        "residency-country": _label(loc.country),
        "residency-regime": _label(regime.id if regime else "none"),
        "residency-data-classes": _label("-".join(data_classes)),
        "residency-map": _label(region_map.name),
        "managed-by": "residency-sdk",
    }
    regions = region_map.regions
    providers = []
    for name in CLOUD_PROVIDERS:
        target = loc.backends.get(name)
        if target is None:
            continue
        _check_in_country(target, loc, regions)
        providers.append(_provider_plan(name, target, loc, prefix, labels, sku))
    if not providers:
        raise InfraError(
            f"location {loc.id} has no cloud backend (aws, gcp or azure) in region map "
            f"{region_map.name!r}: nothing to provision"
        )
    return InfraPlan(
        map_name=region_map.name, location=loc.id, country=loc.country,
        regime=regime.id if regime else "none", prefix=prefix, data_classes=data_classes,
        providers=tuple(providers),
    )


def _azure_sku(value: str | None, loc_id: str) -> str:
    sku = (value or "ZRS").strip().upper().replace("-", "").replace("_", "")
    if sku in AZURE_GEO_SKUS:
        raise InfraCrossesBorder(
            f"Azure redundancy {value!r} for location {loc_id} copies data to the Azure-paired "
            "region, which the region map does not name or control: use ZRS or LRS (in-region "
            "copies only) and name any in-country failover region in the map"
        )
    if sku not in AZURE_IN_COUNTRY_SKUS:
        raise InfraError(f"unknown Azure redundancy {value!r}: use ZRS or LRS")
    return sku


def _check_in_country(target: StorageTarget, loc: Location,
                      regions: dict[str, dict[str, str]]) -> None:
    """Re-check every region the plan would use; the map loader checks too, but a plan may
    be built from a map assembled in code, and a key path can name its own location."""
    table = regions.get(target.provider, {})
    used = [("region", target.region), ("failover region", target.failover_region)]
    used.append(("key location", _key_region(target)))
    for what, region in used:
        if region is None:
            continue
        country = table.get(region) if region != "global" else None
        if country != loc.country:
            raise InfraCrossesBorder(
                f"{target.provider} {what} {region!r} of location {loc.id} is in "
                f"{country or 'no known country'}, not in {loc.country}: residency never "
                f"crosses a border; pick a {target.provider} region in {loc.country} "
                f"(locations.{loc.id}.backends.{target.provider})"
            )


def _key_region(target: StorageTarget) -> str | None:
    key = target.kms_key or ""
    if target.provider == "gcp" and (m := _GCP_KEY.match(key)):
        return m["location"]
    if target.provider == "aws" and (m := _AWS_KEY_ARN.match(key)):
        return m["region"]
    return None


def _provider_plan(name: CloudProvider, target: StorageTarget, loc: Location, prefix: str,
                   labels: dict[str, str], sku: str) -> ProviderPlan:
    base = f"{prefix}-{loc.id.lower()}-{name}"
    data = BucketPlan(name=target.bucket, purpose="data", expiry=_data_expiry(loc.retention),
                      noncurrent_version_days=NONCURRENT_VERSION_DAYS)
    lock_days, audit_expiry = _audit_retention(loc.retention)
    audit = BucketPlan(name=f"{base}-audit", purpose="audit", expiry=audit_expiry,
                       noncurrent_version_days=lock_days, lock_days=lock_days)
    common: dict[str, Any] = dict(
        provider=name, location=loc.id, country=loc.country, region=target.region,
        failover_region=target.failover_region, data=data, audit=audit, labels=dict(labels),
    )
    if name == "aws":
        alias = target.kms_key if (target.kms_key or "").startswith("alias/") else None
        key = KeyPlan(name=f"{base}-key", rotation_days=KEY_ROTATION_DAYS, region=target.region,
                      alias=alias or f"alias/{base}")
        return ProviderPlan(redundancy="single-region (S3 stores across AZs in the region)",
                            key=key, **common)
    if name == "gcp":
        m = _GCP_KEY.match(target.kms_key or "")
        key = KeyPlan(name=m["key"] if m else "data", rotation_days=KEY_ROTATION_DAYS,
                      region=target.region, key_ring=m["ring"] if m else f"{base}-ring",
                      project=m["project"] if m else None)
        # GCS refuses Object Versioning on a bucket with a retention policy; the locked
        # policy already makes every audit object undeletable and unchangeable.
        common["audit"] = replace(audit, versioning=False)
        return ProviderPlan(redundancy="region", key=key, **common)
    account = target.account or _azure_name(f"{prefix}{loc.id}", 24)
    short = _azure_name(f"{prefix}{loc.id}", 19)
    return ProviderPlan(
        redundancy=sku,
        key=KeyPlan(name=f"{base}-cmk", rotation_days=KEY_ROTATION_DAYS, region=target.region),
        account=account, encryption_scope=target.encryption_scope,
        resource_group=f"{base}-rg", key_vault=f"{short}-kv", identity=f"{base}-storage-id",
        **common,
    )


def _data_expiry(retention: dict[str, RetentionSpec]) -> tuple[ExpiryRule, ...]:
    # Every category, audit included: the facade accepts any category of the map, and
    # audit-category objects written through it land in the data bucket too.
    rules = []
    for category, spec in sorted(retention.items()):
        hours = int(spec.period.total_seconds() // 3600)
        rules.append(ExpiryRule(category=category, tag=(TAG_KEY, category),
                                days=max(1, math.ceil(hours / 24)), period_hours=hours,
                                source=spec.source))
    return tuple(rules)


def _audit_retention(retention: dict[str, RetentionSpec]) -> tuple[int, tuple[ExpiryRule, ...]]:
    spec = retention.get(AUDIT_CATEGORY)
    if spec is None:
        days, source = DEFAULT_AUDIT_LOCK_DAYS, "residency-sdk default: 6 years"
    else:
        days, source = max(1, math.ceil(spec.period.total_seconds() / 86400)), spec.source
    # Expire only after the lock ends: deleting earlier is impossible anyway (compliance
    # mode) and keeping audit data longer than its retention is itself a privacy risk.
    return days, (ExpiryRule(category=AUDIT_CATEGORY, days=days + 1,
                             period_hours=days * 24, source=source),)


def gcs_lifecycle_conditions(spec: BucketPlan) -> list[dict[str, Any]]:
    """The Delete-rule conditions of a GCS bucket (snake_case, as both the Pulumi and the
    Terraform Google providers name them).

    GCS lifecycle rules can filter neither on metadata nor on tags, so every tagged
    category shares one rule: ``days_since_custom_time`` selects objects whose custom time
    (their expiry minus that many days, set by the GCS adapter) has passed. Untagged rules
    (the audit bucket) select by age. Zero-valued conditions are never emitted: the Google
    providers drop them, which would leave a rule selecting every object.
    """
    conditions: list[dict[str, Any]] = []
    tagged = [r for r in spec.expiry if r.tag is not None]
    for r in spec.expiry:
        if r.tag is None:
            conditions.append({"age": r.days})
            conditions.append({"days_since_noncurrent_time": r.noncurrent_days,
                               "with_state": "ARCHIVED"})
    if tagged:
        conditions.append({"days_since_custom_time": GCS_DAYS_SINCE_CUSTOM_TIME})
        conditions.append({"days_since_custom_time": GCS_DAYS_SINCE_CUSTOM_TIME,
                           "days_since_noncurrent_time": min(r.noncurrent_days for r in tagged),
                           "with_state": "ARCHIVED"})
    conditions.append({"days_since_noncurrent_time": spec.noncurrent_version_days,
                       "with_state": "ARCHIVED"})
    return conditions


def _selector(rule: ExpiryRule) -> str:
    return f"tag {rule.tag[0]}={rule.tag[1]}" if rule.tag else "*"


def _label(value: str) -> str:
    return _LABEL_VALUE.sub("_", value.lower())[:63] or "none"


def _azure_name(value: str, limit: int) -> str:
    return re.sub(r"[^a-z0-9]", "", value.lower())[:limit]
