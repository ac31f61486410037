"""The infra plan: what one residency location needs provisioned, per cloud provider.

Pure Python (no Pulumi import). Built from the compiled region map, so the Pulumi program
(``infra/``), the Terraform export (:mod:`residency_sdk.infra.terraform`) and the router all
read one source: the bucket the router sends data to is the bucket the plan creates, in the
region the router believes, encrypted with the key the storage adapters ask for.

Everything that would put data outside the location's country is refused here, before any
renderer runs: failover regions abroad, keys in another country, and Azure geo-redundant
SKUs (their secondary region is chosen by Azure's region pairing, not by the map).

The plan also carries the clouds' own location guardrails (:class:`GuardrailPlan`, one per
provider): an AWS Service Control Policy, a GCP ``gcp.resourceLocations`` organisation
policy and an Azure "Allowed locations" policy assignment, each allowing exactly the
location's regions of that provider as the map names them. A guardrail whose attachment
point (AWS OU or account, GCP folder) is not configured is skipped with a note, never
silently.
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
GCS_DATA_SOFT_DELETE_SECONDS = 0
"""GCS soft-delete retention of data buckets: off. A soft-deleted GCS object can be
restored but removed by no API call until its retention ends (Google's default: 7 days),
so an erasure or retention sweep would leave the data restorable for a week. Versioning
and the lifecycle's noncurrent-version expiry remain the backstop against accidents."""

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

GuardrailKind = Literal["service_control_policy", "org_policy", "policy_assignment"]
AWS_ORG_TARGET_KEY = "residency:awsOrgTargetId"
"""Stack config key: the OU (``ou-…``) or member account (12 digits) the SCP is attached to."""
GCP_FOLDER_KEY = "residency:gcpFolderId"
"""Stack config key: the folder (``123…`` or ``folders/123…``) the org policy is set on."""
_AWS_OU = re.compile(r"^ou-[0-9a-z]{4,32}-[0-9a-z]{8,32}$")
_AWS_ACCOUNT = re.compile(r"^[0-9]{12}$")
_AWS_ROOT = re.compile(r"^r-[0-9a-z]{4,32}$")
_GCP_FOLDER = re.compile(r"^(?:folders/)?(?P<id>[0-9]{1,20})$")


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
    soft_delete_seconds: int | None = None
    """GCS soft-delete retention, in seconds: 0 turns soft delete off (data buckets, so a
    deletion leaves nothing restorable); None keeps the bucket's default (the audit
    bucket, whose locked retention policy forbids deleting anyway)."""


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
    allow_permanent_delete: bool = False
    """Azure: the account's blob delete retention policy allows ``deletetype=permanent``
    on soft-deleted versions and snapshots, which the sweep and erasure use so nothing
    they delete stays restorable for the soft-delete window."""
    app_role: str | None = None
    """Azure: name of the custom role (data actions in
    :data:`residency_sdk.infra.documents.AZURE_APP_DATA_ACTIONS`), assignable within the
    location's resource group, that the application identity the SDK runs under is
    assigned on the account."""


@dataclass(frozen=True, slots=True)
class GuardrailPlan:
    """The cloud's own refusal of every region but the location's, for one provider.

    ``allowed_regions`` are the map's regions of this location and provider, in map order:
    the backend's region, its in-country ``failover_region``, then any ``compute`` region
    of the provider. ``target`` is where the guardrail applies: the AWS OU or account id
    (:data:`AWS_ORG_TARGET_KEY`), the GCP folder ``folders/<id>`` (:data:`GCP_FOLDER_KEY`),
    or the Azure resource group the stack creates. ``None`` means not configured: the
    guardrail is skipped and ``note`` says so and how to enable it."""

    provider: CloudProvider
    kind: GuardrailKind
    name: str
    allowed_regions: tuple[str, ...]
    target: str | None
    config_key: str | None = None
    """The stack config key (and CLI option) that supplies ``target``; None for Azure,
    whose target is the stack's own resource group."""
    note: str | None = None

    @property
    def enforced(self) -> bool:
        """True when the guardrail is rendered (it has a target)."""
        return self.target is not None

    def summary(self) -> dict[str, Any]:
        """The guardrail as the stacks and the Terraform export report it (the
        ``guardrails`` output), so a skipped one is visible after deployment too."""
        return {"kind": self.kind, "name": self.name, "status":
                "enforced" if self.enforced else "skipped", "target": self.target,
                "allowed_regions": list(self.allowed_regions), "config_key": self.config_key,
                "note": self.note}


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
    guardrails: tuple[GuardrailPlan, ...] = field(default_factory=tuple)

    def provider(self, name: str) -> ProviderPlan:
        """The plan of provider ``name``; :class:`InfraError` when the location has none."""
        for plan in self.providers:
            if plan.provider == name:
                return plan
        raise InfraError(
            f"location {self.location} has no {name!r} backend in region map "
            f"{self.map_name!r}: add one under locations.{self.location}.backends"
        )

    def guardrail(self, name: str) -> GuardrailPlan:
        """The location guardrail of provider ``name`` (one per provider of the plan)."""
        self.provider(name)  # the same error when the location has no such backend
        return next(g for g in self.guardrails if g.provider == name)

    def notes(self) -> list[str]:
        """What the plan leaves out and why (skipped guardrails); shown by ``infra plan``,
        ``infra export`` and logged by the Pulumi program."""
        return [g.note for g in self.guardrails if g.note and not g.enforced]

    def guardrail_summary(self) -> dict[str, dict[str, Any]]:
        """Every guardrail by provider, as the ``guardrails`` stack/Terraform output."""
        return {g.provider: g.summary() for g in self.guardrails}

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
                    soft_delete_days=SOFT_DELETE_DAYS,
                    permanent_delete=p.allow_permanent_delete)
            if p.app_role:
                row("role_definition", p.app_role, purpose="application identity of the SDK",
                    assignable_scope=p.resource_group, assign_on=p.account)
            if p.encryption_scope:
                row("encryption_scope", p.encryption_scope, key=p.key.name)
            for bucket in (p.data, p.audit):
                row("bucket", bucket.name, purpose=bucket.purpose, versioning=bucket.versioning,
                    encryption=f"customer-managed key {p.key.name}",
                    public_access="blocked", min_tls=p.min_tls,
                    lifecycle=[f"{_selector(r)} -> delete after {r.days}d"
                               for r in bucket.expiry],
                    noncurrent_version_days=bucket.noncurrent_version_days,
                    lock_days=bucket.lock_days,
                    **({"soft_delete_seconds": bucket.soft_delete_seconds}
                       if bucket.soft_delete_seconds is not None else {}))
        return rows


def build_plan(
    region_map: RegionMap, location: str, *, azure_redundancy: str | None = None,
    aws_org_target: str | None = None, gcp_folder: str | None = None,
) -> InfraPlan:
    """The infra plan of ``location`` (a location id of ``region_map``, any case).

    ``azure_redundancy`` picks the storage SKU (``ZRS`` by default, or ``LRS``); a
    geo-redundant SKU raises :class:`InfraCrossesBorder`, like any failover region or key
    outside the location's country.

    ``aws_org_target`` (an OU id ``ou-…`` or a 12-digit member account id) and
    ``gcp_folder`` (``123…`` or ``folders/123…``) are where the AWS Service Control Policy
    and the GCP resource-locations policy apply; without them those guardrails are skipped
    with a note. An organisation root is refused: one location's guardrail there would
    lock every other location out.
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
    targets: dict[str, str | None] = {"aws": _aws_org_target(aws_org_target),
                                      "gcp": _gcp_folder(gcp_folder)}
    planned = {p.provider for p in providers}
    for cloud, value in targets.items():
        if value is not None and cloud not in planned:
            key = AWS_ORG_TARGET_KEY if cloud == "aws" else GCP_FOLDER_KEY
            raise InfraError(
                f"{key} is set but location {loc.id} has no {cloud} backend in region map "
                f"{region_map.name!r}: there is nothing of {cloud} to guard; unset it"
            )
    guardrails = tuple(_guardrail(p, loc, prefix, regions, targets.get(p.provider))
                       for p in providers)
    return InfraPlan(
        map_name=region_map.name, location=loc.id, country=loc.country,
        regime=regime.id if regime else "none", prefix=prefix, data_classes=data_classes,
        providers=tuple(providers), guardrails=guardrails,
    )


def _aws_org_target(value: str | None) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    if _AWS_ROOT.fullmatch(value):
        raise InfraError(
            f"{AWS_ORG_TARGET_KEY} {value!r} is the organisation root: one location's "
            "region-deny SCP there would deny every other location's regions in every "
            "account; attach it to the location's OU (ou-…) or member account (12 digits)"
        )
    if not (_AWS_OU.fullmatch(value) or _AWS_ACCOUNT.fullmatch(value)):
        raise InfraError(
            f"{AWS_ORG_TARGET_KEY} {value!r} is neither an OU id (ou-xxxx-xxxxxxxx) nor a "
            "12-digit AWS account id"
        )
    return value


def _gcp_folder(value: str | None) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    m = _GCP_FOLDER.fullmatch(value)
    if m is None:
        raise InfraError(
            f"{GCP_FOLDER_KEY} {value!r} is not a folder id (digits, or folders/<digits>); "
            "an organisation-level policy would constrain every other location too: set it "
            "on the location's folder"
        )
    return f"folders/{m['id']}"


def _allowed_regions(provider: CloudProvider, loc: Location,
                     regions: dict[str, dict[str, str]]) -> tuple[str, ...]:
    """The map's regions of ``loc`` for ``provider``: the backend's region, its failover
    region, then the provider's compute regions; each re-checked to be in the country."""
    target = loc.backends[provider]
    found: list[str] = []
    for region in (target.region, target.failover_region,
                   *(c.region for c in loc.compute if c.provider == provider)):
        if region is None or region in found:
            continue
        if regions.get(provider, {}).get(region) != loc.country:
            raise InfraCrossesBorder(
                f"{provider} region {region!r} of location {loc.id} is not in {loc.country}: "
                "a location guardrail allows only the location's own regions"
            )
        found.append(region)
    return tuple(found)


def _guardrail(p: ProviderPlan, loc: Location, prefix: str,
               regions: dict[str, dict[str, str]], target: str | None) -> GuardrailPlan:
    allowed = _allowed_regions(p.provider, loc, regions)
    where = ", ".join(allowed)
    if p.provider == "aws":
        note = None if target else (
            f"AWS region guardrail for {loc.id} skipped: no OU or account to attach the "
            f"Service Control Policy to. Set {AWS_ORG_TARGET_KEY} (stack config) or "
            f"--aws-org-target to an OU id or member account id so AWS itself refuses "
            f"requests outside {where}."
        )
        return GuardrailPlan(provider="aws", kind="service_control_policy",
                             name=f"{prefix}-{loc.id.lower()}-region-deny",
                             allowed_regions=allowed, target=target,
                             config_key=AWS_ORG_TARGET_KEY, note=note)
    if p.provider == "gcp":
        note = None if target else (
            f"GCP resource-locations guardrail for {loc.id} skipped: no folder to set the "
            f"organisation policy on. Set {GCP_FOLDER_KEY} (stack config) or --gcp-folder "
            f"to the folder holding the location's projects so Google Cloud itself refuses "
            f"resources outside {where}."
        )
        return GuardrailPlan(provider="gcp", kind="org_policy", name="gcp.resourceLocations",
                             allowed_regions=allowed, target=target,
                             config_key=GCP_FOLDER_KEY, note=note)
    return GuardrailPlan(provider="azure", kind="policy_assignment",
                         name=_azure_name_dash(f"{prefix}-{loc.id.lower()}-allowed-locations", 64),
                         allowed_regions=allowed, target=p.resource_group)


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
        common["data"] = replace(data, soft_delete_seconds=GCS_DATA_SOFT_DELETE_SECONDS)
        return ProviderPlan(redundancy="region", key=key, **common)
    account = target.account or _azure_name(f"{prefix}{loc.id}", 24)
    short = _azure_name(f"{prefix}{loc.id}", 19)
    return ProviderPlan(
        redundancy=sku,
        key=KeyPlan(name=f"{base}-cmk", rotation_days=KEY_ROTATION_DAYS, region=target.region),
        account=account, encryption_scope=target.encryption_scope,
        resource_group=f"{base}-rg", key_vault=f"{short}-kv", identity=f"{base}-storage-id",
        allow_permanent_delete=True, app_role=f"{base}-app",
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


def _azure_name_dash(value: str, limit: int) -> str:
    return re.sub(r"[^a-z0-9-]", "", value.lower())[:limit].rstrip("-")
