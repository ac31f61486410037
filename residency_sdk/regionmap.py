"""Region maps: the YAML document, its validation, overlays and the compiled route table.

A region map says which residency location serves each customer jurisdiction and, in each
location, which storage backends and compute targets exist. :func:`load_region_map`
turns a file (optionally ``extends:`` another) into a validated :class:`RegionMap`;
every problem becomes a :class:`~residency_sdk.errors.MapError` naming the file, the
dotted path inside it and the offending value.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from residency_sdk._endpoints import (
    check_endpoint_url,
    compute_endpoint_problem,
    is_loopback_url,
    redact_url,
    regions_named_by_host,
    storage_endpoint_forms,
    storage_endpoint_problem,
)
from residency_sdk._yamlio import load_yaml_file
from residency_sdk.agreements import Agreement
from residency_sdk.countries import iso_alpha2_codes, normalise_country
from residency_sdk.errors import InputError, InsecureEndpoint, MapError, NoSuchBackend
from residency_sdk.model import ComputeTarget, CredentialSource, Provider, StorageTarget
from residency_sdk.regions import (
    RegionTable,
    UnreviewedRegion,
    aws_region_exists,
    builtin_region_table,
    failover_target,
    packaged_maps_dir,
    region_table,
    relabel_message,
    unreviewed_regions,
)

_GROUP_NAME = re.compile(r"^[A-Z][A-Z0-9_]{1,31}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION_CODE = re.compile(r"^[a-z][a-z0-9-]{1,48}[a-z0-9]$")
_ANCHOR_SCHEMES = ("s3", "gs", "azure", "file")


# --- the document (what a YAML file may say) -----------------------------------------


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GroupSpec(_Doc):
    """A named set of countries (or other groups), e.g. ``EU`` or ``EEA``."""

    members: list[str] = Field(min_length=1)
    source: str
    as_of: str


class RetentionSpec(_Doc):
    """How long objects of one data category are kept."""

    days: int | None = Field(default=None, ge=1, le=36500)
    hours: int | None = Field(default=None, ge=1, le=876000)
    source: str
    as_of: str
    legal_basis: str | None = None

    @model_validator(mode="after")
    def _one_unit(self) -> RetentionSpec:
        if (self.days is None) == (self.hours is None):
            raise ValueError("give exactly one of `days` or `hours`")
        return self

    @property
    def period(self) -> timedelta:
        """The retention period as a timedelta."""
        return timedelta(days=self.days) if self.days else timedelta(hours=self.hours or 0)


class BackendSpec(_Doc):
    """One provider's storage in a location. ``bucket`` may use ``{prefix}``,
    ``{location}`` and ``{provider}`` placeholders; it defaults to the map's naming rule."""

    region: str | None = None
    failover_region: str | None = None
    bucket: str | None = None
    kms_key: str | None = None
    encryption_scope: str | None = None
    account: str | None = None
    endpoint: str | None = Field(
        default=None, description="An in-region endpoint of the provider for `region` "
        "(see docs/region-map.md), a loopback emulator, or any https endpoint with "
        "endpoint_country and endpoint_source")
    endpoint_country: str | None = Field(
        default=None, description="Where a non-standard endpoint serves from (with "
        "endpoint_source); must be the location's country. Otherwise the endpoint must be "
        "an in-region form")
    endpoint_source: str | None = Field(
        default=None, description="How you know the endpoint serves from endpoint_country")
    credentials: CredentialSource = CredentialSource()
    baa: bool = False
    tenant_keys: bool = Field(
        default=True, description="aws: a KMS key per tenant, made on its first write and "
        "destroyed when it is erased (crypto-shredding; needs kms:CreateKey and friends, "
        "see docs/crypto-shredding.md). false: every object under kms_key. Other "
        "providers ignore it")


class ComputeSpec(_Doc):
    """A compute endpoint (inference service) inside a location."""

    provider: Provider
    region: str
    endpoint: str = Field(
        description="A host the provider places in `region` (e.g. "
        "runtime.sagemaker.REGION.amazonaws.com, REGION-aiplatform.googleapis.com, "
        "NAME.REGION.inference.ml.azure.com), a loopback emulator, or any https endpoint "
        "with endpoint_country and endpoint_source")
    endpoint_country: str | None = Field(
        default=None, description="Where the endpoint serves from (with endpoint_source); "
        "must be the location's country")
    endpoint_source: str | None = Field(
        default=None, description="How you know the endpoint serves from endpoint_country")


class AuditSinkSpec(_Doc):
    """Where audit events are kept: per location (events about its tenants stay in it)
    or, at the top level, for events about no tenant and locations without their own."""

    sink: str = Field(
        min_length=1, description="An audit log file (relative paths resolve against the "
        "map's folder) or a postgresql:// URL without a password (give it through "
        "PGPASSWORD or ~/.pgpass)")
    anchors: list[str] = Field(
        default=[], description="Where sealed checkpoints are published: a folder, "
        "s3://bucket/prefix?region=R, gs://bucket/prefix or azure://container/prefix?"
        "account_url=U (the location's audit bucket with object lock)")


class LocationSpec(_Doc):
    """A residency location: a country where data lives, with its backends."""

    name: str
    country: str | None = None
    operator: str | None = Field(
        default=None, description="The entity that holds data placed here (the importer "
        "an agreement's counterparty names); default: the map's operator")
    default_provider: Provider
    backends: dict[Provider, BackendSpec] = Field(min_length=1)
    compute: list[ComputeSpec] = []
    retention: dict[str, RetentionSpec] = {}
    audit: AuditSinkSpec | None = None


class RouteSpec(_Doc):
    """A route written in long form, with a note on why it exists."""

    to: str
    note: str | None = None


class NamingSpec(_Doc):
    """How bucket and container names are built."""

    prefix: str = Field(default="residency", pattern=r"^[a-z0-9][a-z0-9-]{0,30}$")
    bucket: str = "{prefix}-{location}-{provider}-data"


class ProcessorSpec(_Doc):
    """A third party the operator sends tenants' data to (a model API, transcription,
    email): calling it is a transfer to ``country``, decided by the transfer rules."""

    name: str = Field(description="The processor's legal name (an agreement's counterparty)")
    hosts: list[str] = Field(min_length=1, description="Hosts it receives data on: HOST or "
                             "HOST:PORT (https), or a loopback address:PORT (tests)")
    country: str = Field(description="Where it processes the data")
    baa: bool = Field(default=False, description="It holds a BAA: may receive phi")
    retention: str = Field(description="Its retention promise, e.g. 'none beyond the request'")
    data_classes: list[str] = Field(min_length=1, description="What it may receive")
    agreements: list[dict[str, Any]] = Field(
        default=[], description="Agreements covering transfers to it (fields as rs.Agreement)")
    source: str = Field(description="Where these facts come from (its DPA, certification)")
    as_of: str


class TransferPolicySpec(_Doc):
    """How this map's operator applies the transfer rules."""

    out_of_scope: dict[str, str] = Field(
        default={}, description="Sector overlay id -> the stated reason every tenant of "
        "this map is outside it (e.g. sgb5_393: 'no SGB V providers among our clients')")
    require_alongside: dict[str, list[str]] = Field(
        default={}, description="Mechanism -> mechanisms one of which must also cover the "
        "transfer (e.g. dpf_eu: [scc], SCCs as a fallback beside the DPF)")
    agreements: list[dict[str, Any]] = Field(
        default=[], description="Agreements the operator holds for every tenant (e.g. its "
        "intra-group SCCs), fields as rs.Agreement")


class RegionMapDocument(_Doc):
    """The schema of a region map file (exported to ``region_maps/schema.json``)."""

    version: Literal[1] = 1
    name: str
    as_of: str | None = None
    source: str | None = None
    operator: str | None = Field(
        default=None, description="The entity (the vendor) that holds tenants' data: the "
        "counterparty of tenants' agreements for placement and copies between locations")
    transfer_policy: TransferPolicySpec = TransferPolicySpec()
    processors: dict[str, ProcessorSpec] = Field(
        default={}, description="Third-party processors tenants' data may be sent to")
    extends: str | None = Field(
        default=None, description="'default' or a path: this file overlays that map"
    )
    transfer_rules: str | None = Field(
        default=None, description="Path to the transfer rules file, relative to this map"
    )
    naming: NamingSpec = NamingSpec()
    groups: dict[str, GroupSpec] = {}
    routes: dict[str, str | RouteSpec] = {}
    locations: dict[str, LocationSpec] = {}
    retention: dict[str, RetentionSpec] = {}
    audit: AuditSinkSpec | None = Field(
        default=None, description="The default audit sink: events about no tenant, and "
        "about tenants of locations without an `audit` section of their own")
    cloud_regions: dict[Provider, dict[str, str]] = Field(
        default={}, description="Regions the built-in table lacks, as provider: {region: "
        "COUNTRY}. They are flagged as unreviewed (`map validate --strict` refuses them); "
        "a region the table knows can never be given another country")


def region_map_json_schema() -> dict[str, Any]:
    """The JSON Schema of a region map, for editors and CI."""
    schema = RegionMapDocument.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "residency-sdk region map"
    return schema


# --- the compiled map (what the router uses) -----------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    """A resolved route: the rule that matched and where it leads."""

    location: str
    matched: str
    specificity: tuple[int, int]


Role = Literal["primary", "failover"]


@dataclass(frozen=True, slots=True)
class AuditTarget:
    """A validated audit sink of the map: ``sink`` is an absolute file path or a
    ``postgresql://`` URL; ``anchors`` the anchor specs its checkpoints go to."""

    sink: str
    anchors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Location:
    """A validated residency location.

    ``backends`` holds each provider's primary target, ``failovers`` the in-country
    failover target of each provider that has one (computed once, when the map is
    compiled)."""

    id: str
    name: str
    country: str
    default_provider: Provider
    backends: dict[str, StorageTarget]
    operator: str | None
    compute: tuple[ComputeTarget, ...]
    retention: dict[str, RetentionSpec]
    failovers: dict[str, StorageTarget]
    audit: AuditTarget | None = None
    """The location's own audit sink (None: the map's default sink)."""

    @property
    def default_storage(self) -> StorageTarget:
        """The storage target of the location's default provider."""
        return self.backends[self.default_provider]

    def backend(self, provider: str) -> StorageTarget:
        """The primary target of ``provider``; :class:`NoSuchBackend` when there is none."""
        target = self.backends.get(provider)
        if target is None:
            raise NoSuchBackend(
                f"location {self.id} has no {provider!r} backend (it has: "
                f"{', '.join(sorted(self.backends))}): add one under locations.{self.id}."
                "backends in the region map or choose another provider")
        return target

    def failover_for(self, target: StorageTarget) -> StorageTarget | None:
        """The in-country failover of ``target`` (a primary of this location), or None."""
        failover = self.failovers.get(target.provider)
        return failover if failover is not None and \
            self.backends.get(target.provider) == target else None

    def targets(self, providers: Iterable[str]) -> list[tuple[Role, StorageTarget]]:
        """Every backend of ``providers`` as ``(role, target)``: each provider's primary,
        then its in-country failover where one is configured."""
        result: list[tuple[Role, StorageTarget]] = []
        for provider in providers:
            result.append(("primary", self.backend(provider)))
            failover = self.failovers.get(provider)
            if failover is not None:
                result.append(("failover", failover))
        return result


@dataclass(frozen=True, slots=True)
class Processor:
    """A compiled processor: ``hosts`` as ``host:port`` (port 443 for https hosts named
    without one), ``loopback`` hosts reached over plain http (tests, local stubs)."""

    id: str
    name: str
    hosts: frozenset[str]
    country: str
    baa: bool
    retention: str
    data_classes: frozenset[str]
    agreements: tuple[dict[str, Any], ...]
    source: str
    as_of: str


@dataclass(frozen=True, slots=True)
class StatedEndpoint:
    """An endpoint accepted on the map's word: ``endpoint_country`` (equal to the
    location's country) and ``endpoint_source`` say where it serves from and how that is
    known. ``endpoint`` is redacted (safe to show)."""

    path: str
    endpoint: str
    country: str
    source: str


@dataclass(frozen=True, slots=True)
class EmulatorEndpoint:
    """A loopback endpoint (a local emulator): allowed, never region-checked."""

    path: str
    endpoint: str


@dataclass(frozen=True, slots=True)
class RegionMap:
    """A validated region map: groups expanded, routes resolved per country, and the
    region table (built-in plus the regions the map's ``cloud_regions`` adds) it was
    checked against.

    ``unreviewed_regions`` are the regions the map added (their country is the map's word
    only); ``stated_endpoints`` the endpoints accepted on ``endpoint_country`` and
    ``endpoint_source``; ``emulator_endpoints`` the loopback ones. ``residency map
    validate`` lists all three."""

    name: str
    file: str
    document: RegionMapDocument
    groups: dict[str, frozenset[str]]
    locations: dict[str, Location]
    routes: dict[str, Route]
    rules_file: Path
    regions: RegionTable
    unreviewed_regions: tuple[UnreviewedRegion, ...] = ()
    stated_endpoints: tuple[StatedEndpoint, ...] = ()
    emulator_endpoints: tuple[EmulatorEndpoint, ...] = ()
    audit: AuditTarget | None = None
    """The map's default audit sink (top-level ``audit:``), or None."""
    processors: dict[str, Processor] = field(default_factory=dict)
    """Third-party processors by id (see :class:`Processor`)."""

    @property
    def audit_by_location(self) -> dict[str, AuditTarget]:
        """The locations that keep their audit events in a sink of their own."""
        return {lid: loc.audit for lid, loc in self.locations.items()
                if loc.audit is not None}

    def route_for(self, country: str) -> Route | None:
        """The route for an already normalised country code, or None."""
        return self.routes.get(country)


# --- loading ---------------------------------------------------------------------------


def load_region_map(path: str | Path | None = None) -> RegionMap:
    """Load, overlay and validate a region map; ``None`` means the packaged default."""
    file = packaged_maps_dir() / "default.yaml" if path is None else Path(path)
    raw, origin_dir = _load_with_overlays(file, depth=0)
    return compile_region_map(raw, file=str(file), base_dir=origin_dir)


def _load_with_overlays(file: Path, depth: int) -> tuple[dict[str, Any], Path]:
    if depth > 4:
        raise MapError("`extends` chain is deeper than 4 maps (a cycle?)", file=str(file))
    raw = load_yaml_file(file)
    if not isinstance(raw, dict):
        raise MapError("a region map must be a YAML mapping", file=str(file), value=raw)
    parent = raw.get("extends")
    if parent is None:
        return raw, file.parent
    if not isinstance(parent, str) or not parent.strip():
        raise MapError("`extends` must be 'default' or a path", file=str(file), path="extends",
                       value=parent)
    parent_file = (
        packaged_maps_dir() / "default.yaml" if parent == "default" else file.parent / parent
    )
    base, base_dir = _load_with_overlays(parent_file, depth + 1)
    merged = _deep_merge(base, {k: v for k, v in raw.items() if k != "extends"})
    # Relative paths in the overlay (transfer_rules) resolve against the overlay's folder
    # only when the overlay sets them itself.
    return merged, (file.parent if "transfer_rules" in raw else base_dir)


def _deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Overlay mappings key by key; ``null`` removes a key; other values replace."""
    merged = dict(base)
    for key, value in overlay.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def compile_region_map(raw: Any, *, file: str, base_dir: Path) -> RegionMap:
    """Validate a parsed map document and build the route table."""
    try:
        doc = RegionMapDocument.model_validate(raw)
    except ValidationError as exc:
        raise _map_error_from_pydantic(exc, file) from None
    except RecursionError:
        raise MapError("document nesting is too deep", file=file) from None
    checker = _Checker(doc, file)
    default_audit = checker.audit_target(doc.audit, "audit")
    groups = checker.expand_groups()
    regions, unreviewed = checker.region_table()
    locations = checker.build_locations(regions)
    routes = checker.build_routes(groups, locations)
    rules_file = (
        base_dir / doc.transfer_rules
        if doc.transfer_rules
        else packaged_maps_dir() / "transfer_rules.yaml"
    )
    return RegionMap(
        name=doc.name, file=file, document=doc, groups=groups, locations=locations,
        routes=routes, rules_file=rules_file, regions=regions,
        unreviewed_regions=unreviewed, stated_endpoints=tuple(checker.stated),
        emulator_endpoints=tuple(checker.emulators), audit=default_audit,
        processors=checker.processors(),
    )


def _map_error_from_pydantic(exc: ValidationError, file: str) -> MapError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    path = ".".join(str(part) for part in first["loc"])
    extra = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    value = first.get("input")
    if isinstance(value, (dict, list)):
        value = None
    return MapError(f"{first['msg']}{extra}", file=file, path=path, value=value)


class _Checker:
    """Cross-reference checks that a schema alone cannot express."""

    def __init__(self, doc: RegionMapDocument, file: str) -> None:
        self.doc = doc
        self.file = file
        self.iso = iso_alpha2_codes()
        self.stated: list[StatedEndpoint] = []
        self.emulators: list[EmulatorEndpoint] = []

    def fail(self, message: str, path: str, value: Any = None) -> MapError:
        return MapError(message, file=self.file, path=path, value=value)

    # audit sinks ----------------------------------------------------------------------
    def audit_target(self, spec: AuditSinkSpec | None, path: str) -> AuditTarget | None:
        """Check an ``audit:`` section; relative sink paths resolve against the map's
        folder, so the sink does not move with the working directory."""
        if spec is None:
            return None
        sink = spec.sink.strip()
        scheme = urlsplit(sink).scheme.lower() if "://" in sink else ""
        if scheme in ("postgresql", "postgres"):
            if urlsplit(sink).password:
                raise self.fail(
                    "a region map must not hold a database password: remove it from the "
                    "URL and give it through PGPASSWORD or ~/.pgpass", f"{path}.sink",
                    redact_url(sink))
        elif scheme:
            raise self.fail("an audit sink is a file path or a postgresql:// URL",
                            f"{path}.sink", redact_url(sink))
        elif not sink:
            raise self.fail("an audit sink path must not be empty", f"{path}.sink", sink)
        else:
            sink = str((Path(self.file).parent / sink).resolve()
                       if not Path(sink).is_absolute() else Path(sink))
        anchors = []
        for i, anchor in enumerate(spec.anchors):
            text = anchor.strip()
            kind = urlsplit(text).scheme.lower() if "://" in text else ""
            if not text or (kind and kind not in _ANCHOR_SCHEMES):
                raise self.fail(
                    "an anchor is a folder, or an s3://, gs:// or azure:// bucket URL",
                    f"{path}.anchors.{i}", redact_url(text) if text else anchor)
            if urlsplit(text).password or (kind and urlsplit(text).username):
                raise self.fail("an anchor URL must not hold credentials (they come from "
                                "the provider's usual credential chain)",
                                f"{path}.anchors.{i}", redact_url(text))
            if not kind and not Path(text).is_absolute():
                text = str((Path(self.file).parent / text).resolve())
            anchors.append(text)
        return AuditTarget(sink, tuple(anchors))

    # groups ---------------------------------------------------------------------------
    def expand_groups(self) -> dict[str, frozenset[str]]:
        for name in self.doc.groups:
            if not _GROUP_NAME.fullmatch(name) or name in self.iso:
                raise self.fail(
                    "group names are 2-32 upper-case letters/digits/_ and must not be a country "
                    "code", f"groups.{name}", name)
        expanded: dict[str, frozenset[str]] = {}

        def expand(name: str, trail: tuple[str, ...]) -> frozenset[str]:
            if name in expanded:
                return expanded[name]
            if name in trail:
                raise self.fail("groups include each other in a cycle", f"groups.{name}",
                                " -> ".join((*trail, name)))
            members: set[str] = set()
            for i, member in enumerate(self.doc.groups[name].members):
                path = f"groups.{name}.members.{i}"
                if member in self.doc.groups:
                    members |= expand(member, (*trail, name))
                elif member in self.iso:
                    members.add(member)
                else:
                    raise self.fail("unknown country code or group: use an ISO 3166-1 alpha-2 "
                                    "code or a group defined under `groups`", path, member)
            expanded[name] = frozenset(members)
            return expanded[name]

        for name in self.doc.groups:
            expand(name, ())
        return expanded

    # cloud regions ----------------------------------------------------------------------
    def region_table(self) -> tuple[RegionTable, tuple[UnreviewedRegion, ...]]:
        """The built-in table plus the regions ``cloud_regions`` adds; refuses entries
        that re-label a known region, malformed codes, and AWS regions the shipped AWS
        region list (botocore's endpoints data) lacks."""
        builtin = builtin_region_table()
        for provider, regions in self.doc.cloud_regions.items():
            for region, country in regions.items():
                path = f"cloud_regions.{provider}.{region}"
                if provider == "local":
                    raise self.fail("the local backend has no cloud regions: remove "
                                    "`cloud_regions.local`", path, region)
                if not _REGION_CODE.fullmatch(region):
                    raise self.fail(
                        "a cloud region code is lower-case ASCII letters, digits and '-', as "
                        "the provider spells it (e.g. europe-west3)", path, region)
                code = country.strip().upper()
                if code not in self.iso:
                    raise self.fail("the country of a cloud region is an ISO 3166-1 alpha-2 "
                                    "code", path, country)
                real = builtin.get(provider, {}).get(region)
                if real is not None and real != code:
                    raise self.fail(relabel_message(provider, region, real, code), path,
                                    country)
                if provider == "aws" and not aws_region_exists(region):
                    raise self.fail(
                        "not an AWS region known to botocore's endpoints data: check the "
                        "spelling, or upgrade residency-sdk if AWS opened the region "
                        "recently (its shipped AWS region list is refreshed from botocore)",
                        path, region)
        overlay = {str(p): r for p, r in self.doc.cloud_regions.items()}
        return region_table(overlay), unreviewed_regions(overlay)

    # locations ------------------------------------------------------------------------
    def processors(self) -> dict[str, Processor]:
        """The map's processors, their hosts and country checked."""
        out: dict[str, Processor] = {}
        for pid, spec in self.doc.processors.items():
            base = f"processors.{pid}"
            try:
                country = normalise_country(spec.country)
            except InputError as exc:
                raise MapError(str(exc), file=self.file, path=f"{base}.country",
                               value=spec.country) from None
            hosts = frozenset(_processor_host(h, self.file, f"{base}.hosts.{i}")
                              for i, h in enumerate(spec.hosts))
            for i, raw in enumerate(spec.agreements):
                try:
                    Agreement(**raw)
                except InputError as exc:
                    raise MapError(str(exc), file=self.file,
                                   path=f"{base}.agreements.{i}") from None
            for i, dc in enumerate(spec.data_classes):
                if dc not in ("phi", "personal", "anonymised"):
                    raise MapError("unknown data class: use phi, personal or anonymised",
                                   file=self.file, path=f"{base}.data_classes.{i}", value=dc)
            out[pid] = Processor(
                id=pid, name=spec.name.strip(), hosts=hosts, country=country, baa=spec.baa,
                retention=spec.retention, data_classes=frozenset(spec.data_classes),
                agreements=tuple(spec.agreements), source=spec.source, as_of=spec.as_of)
        return out

    def build_locations(self, regions: RegionTable) -> dict[str, Location]:
        locations: dict[str, Location] = {}
        for loc_id, spec in self.doc.locations.items():
            base = f"locations.{loc_id}"
            country = spec.country or loc_id
            if country not in self.iso:
                raise self.fail("a location is named by the ISO country code where its data "
                                "lives (or sets `country:`)", f"{base}.country", country)
            if spec.default_provider not in spec.backends:
                raise self.fail(f"default_provider has no entry under {base}.backends",
                                f"{base}.default_provider", spec.default_provider)
            backends: dict[str, StorageTarget] = {
                provider: self._backend(loc_id, country, provider, bspec, regions)
                for provider, bspec in spec.backends.items()
            }
            compute = []
            for i, cspec in enumerate(spec.compute):
                cpath = f"{base}.compute.{i}"
                self._check_region(cspec.provider, cspec.region, country, regions,
                                   f"{cpath}.region")
                stated = self._check_placed_endpoint(
                    cpath, country, regions, provider=cspec.provider, region=cspec.region,
                    endpoint=cspec.endpoint, endpoint_country=cspec.endpoint_country,
                    endpoint_source=cspec.endpoint_source, storage=False)
                compute.append(ComputeTarget(provider=cspec.provider, region=cspec.region,
                                             endpoint=cspec.endpoint,
                                             endpoint_country=stated,
                                             endpoint_source=_stripped(cspec.endpoint_source)))
            retention = {**self.doc.retention, **spec.retention}
            # The region checks above already keep failover in the country; the targets
            # are derived once here so nothing downstream works them out again.
            failovers = {provider: failover for provider, target in backends.items()
                         if (failover := failover_target(target, regions=regions)) is not None}
            locations[loc_id] = Location(
                id=loc_id, name=spec.name, country=country,
                default_provider=spec.default_provider, backends=backends,
                operator=_stripped(spec.operator) or _stripped(self.doc.operator),
                compute=tuple(compute), retention=retention, failovers=failovers,
                audit=self.audit_target(spec.audit, f"{base}.audit"),
            )
        return locations

    def _backend(self, loc_id: str, country: str, provider: Provider, spec: BackendSpec,
                 regions: RegionTable) -> StorageTarget:
        path = f"locations.{loc_id}.backends.{provider}"
        if provider == "local":
            region = f"local-{loc_id.lower()}"
        else:
            if not spec.region:
                raise self.fail(f"a {provider} backend needs a `region`", f"{path}.region")
            region = spec.region
            self._check_region(provider, region, country, regions, f"{path}.region")
            if spec.failover_region is not None:
                if spec.failover_region == region:
                    raise self.fail("failover_region must differ from region",
                                    f"{path}.failover_region", spec.failover_region)
                self._check_region(provider, spec.failover_region, country, regions,
                                   f"{path}.failover_region", failover=True)
        template = spec.bucket or self.doc.naming.bucket
        try:
            bucket = template.format(prefix=self.doc.naming.prefix, location=loc_id.lower(),
                                     provider=provider)
        except (KeyError, IndexError, ValueError):
            raise self.fail("bucket template may only use {prefix}, {location}, {provider}",
                            f"{path}.bucket", template) from None
        if not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise self.fail("bucket/container names are 3-63 lower-case letters, digits, '-' "
                            "or '.'", f"{path}.bucket", bucket)
        stated = self._check_placed_endpoint(
            path, country, regions, provider=provider, region=region, endpoint=spec.endpoint,
            endpoint_country=spec.endpoint_country, endpoint_source=spec.endpoint_source,
            storage=True, account=spec.account, failover_region=spec.failover_region)
        return StorageTarget(
            provider=provider,
            region=region, bucket=bucket, country=country,
            failover_region=spec.failover_region, kms_key=spec.kms_key,
            encryption_scope=spec.encryption_scope, account=spec.account,
            endpoint=spec.endpoint, endpoint_country=stated,
            endpoint_source=_stripped(spec.endpoint_source), credentials=spec.credentials,
            baa=spec.baa, tenant_keys=spec.tenant_keys,
        )

    def _check_placed_endpoint(
            self, base: str, country: str, regions: RegionTable, *, provider: str,
            region: str, endpoint: str | None, endpoint_country: str | None,
            endpoint_source: str | None, storage: bool, account: str | None = None,
            failover_region: str | None = None) -> str | None:
        """Check that ``endpoint`` serves from ``country``; return the stated country.

        Accepted: a loopback emulator (listed, not region-checked); an in-region form of
        ``provider`` for ``region``; or any https endpoint with ``endpoint_country`` equal
        to ``country`` and a non-empty ``endpoint_source`` (listed). Refused whatever the
        map states: a host that names a provider region in another country, and an Azure
        Blob host of another account than the backend's."""
        stated = endpoint_country is not None or endpoint_source is not None
        if endpoint is None:
            if stated:
                raise self.fail(
                    "endpoint_country and endpoint_source describe an `endpoint` and this "
                    "entry has none: remove them, or set the endpoint they describe",
                    f"{base}.endpoint_country", endpoint_country)
            return None
        path = f"{base}.endpoint"
        shown = redact_url(endpoint)
        _check_endpoint(self, endpoint, path)  # https (or loopback http), no credentials
        if storage and provider == "local":
            raise self.fail("the local backend is a directory and has no endpoint: remove "
                            "`endpoint` (and endpoint_country/endpoint_source)", path, shown)
        for named_provider, named in regions_named_by_host(endpoint, regions):
            where = regions[named_provider][named]
            if where != country:
                forms = storage_endpoint_forms(provider, region, account) if storage else []
                hint = f" ({', '.join(forms)}) or none" if forms else ""
                raise self.fail(
                    f"the endpoint host names {named_provider} region {named!r}, which is in "
                    f"{where}, not the location's country {country}: requests sent there leave "
                    f"{country}, whatever endpoint_country says; use an endpoint of "
                    f"{region}{hint}", path, shown)
        if stated:
            return self._stated_endpoint(base, country, endpoint, shown, endpoint_country,
                                         endpoint_source, provider=provider, region=region,
                                         storage=storage, account=account)
        if is_loopback_url(endpoint):
            self.emulators.append(EmulatorEndpoint(path, shown))
            return None
        problem = (storage_endpoint_problem(provider, region, endpoint, account=account,
                                            failover_region=None)
                   if storage else compute_endpoint_problem(provider, region, endpoint))
        if problem is not None:
            raise self.fail(
                f"{problem}. If this endpoint really serves from {country} (a private link, "
                f"a proxy, your own service), say so: endpoint_country: {country} and "
                "endpoint_source: <how you know>", path, shown)
        if storage and failover_region:
            # An in-region form; one pinned to the primary region cannot serve the failover.
            pinned = storage_endpoint_problem(provider, region, endpoint, account=account,
                                              failover_region=failover_region)
            if pinned is not None:
                raise self.fail(pinned, path, shown)
        return None

    def _stated_endpoint(self, base: str, country: str, endpoint: str, shown: str,
                         endpoint_country: str | None, endpoint_source: str | None, *,
                         provider: str, region: str, storage: bool,
                         account: str | None) -> str:
        claimed = (endpoint_country or "").strip().upper()
        cpath = f"{base}.endpoint_country"
        if not claimed:
            raise self.fail(
                f"endpoint_source without endpoint_country: state the ISO code of the country "
                f"the endpoint serves from (it must be the location's country, {country})",
                cpath, endpoint_country)
        if claimed not in self.iso:
            raise self.fail("endpoint_country is an ISO 3166-1 alpha-2 country code", cpath,
                            endpoint_country)
        if claimed != country:
            raise self.fail(
                f"the endpoint is stated to serve from {claimed}, not the location's country "
                f"{country}: a location's data and compute never leave its country; use an "
                f"endpoint in {country}", cpath, endpoint_country)
        source = _stripped(endpoint_source)
        if not source:
            raise self.fail(
                f"endpoint_country needs endpoint_source: say how you know the endpoint "
                f"serves from {country} (a contract, the provider's documentation, a network "
                "design)", f"{base}.endpoint_source", endpoint_source)
        if storage and provider == "azure" and (
                (urlsplit(endpoint).hostname or "").lower().endswith(".blob.core.windows.net")):
            problem = storage_endpoint_problem(provider, region, endpoint, account=account,
                                               failover_region=None)
            if problem is not None:
                raise self.fail(problem, f"{base}.endpoint", shown)
        self.stated.append(StatedEndpoint(f"{base}.endpoint", shown, claimed, source))
        return claimed

    def _check_region(self, provider: str, region: str, country: str,
                      regions: RegionTable, path: str,
                      failover: bool = False) -> None:
        if provider == "local":
            return
        region_country = regions[provider].get(region)  # every cloud provider has a table
        if provider == "aws" and not aws_region_exists(region):
            raise self.fail("not an AWS region known to botocore's endpoints data", path, region)
        if region_country is None:
            raise self.fail(
                f"unknown {provider} region: its country is not in the built-in region table; "
                f"if the provider really has it, add it under `cloud_regions.{provider}` in "
                "your map (it is then listed as unreviewed)", path, region)
        if region_country != country:
            what = "failover region" if failover else "region"
            raise self.fail(
                f"{provider} {what} {region!r} is in {region_country}, not in the location's "
                f"country {country}: residency never crosses a border", path, region)

    # routes ---------------------------------------------------------------------------
    def build_routes(self, groups: dict[str, frozenset[str]],
                     locations: dict[str, Location]) -> dict[str, Route]:
        # Every route that matches each country, then the most specific one wins: a tie
        # is refused only where it would decide (a country's own route settles a tie
        # between its groups wherever it is listed in the file).
        candidates: dict[str, list[Route]] = {}
        for source, target in self.doc.routes.items():
            path = f"routes.{source}"
            location = target if isinstance(target, str) else target.to
            if location not in locations:
                raise self.fail("route leads to a location not defined under `locations`",
                                path, location)
            if source in groups:
                members = groups[source]
                specificity = (0, -len(members))
            elif source in self.iso:
                members = frozenset({source})
                specificity = (1, 0)
            else:
                raise self.fail("unknown country code or group in a route: use an ISO 3166-1 "
                                "alpha-2 code or a group defined under `groups`", path, source)
            for country in sorted(members):
                candidates.setdefault(country, []).append(Route(location, source, specificity))
        routes: dict[str, Route] = {}
        for country, matching in candidates.items():
            best = max(matching, key=lambda route: route.specificity)
            tied = [r for r in matching if r.specificity == best.specificity]
            if len(tied) > 1:
                first, second = tied[0], tied[1]
                raise self.fail(
                    f"country {country} has two routes of the same specificity "
                    f"({first.matched} -> {first.location} and {second.matched} -> "
                    f"{second.location}); give the country its own route or remove one",
                    f"routes.{second.matched}", second.matched)
            routes[country] = best
        return routes


def _processor_host(raw: str, file: str, path: str) -> str:
    """``HOST[:PORT]`` as ``host:port`` (443 when left out); IP literals only loopback."""
    text = raw.strip().lower()
    if not text or "/" in text or "@" in text:
        raise MapError("a processor host is HOST or HOST:PORT (no scheme, path or "
                       "credentials)", file=file, path=path, value=raw)
    if text.startswith("["):  # [IPv6]:PORT
        host, _, rest = text[1:].partition("]")
        sep, port = (":", rest[1:]) if rest.startswith(":") else ("", "")
    else:
        host, sep, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    if not sep:
        host, port = host or text, "443"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise MapError("invalid port", file=file, path=path, value=raw)
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None and not literal.is_loopback:
        raise MapError("a processor is named by its DNS host, not an IP address (an address "
                       "says nothing about who answers there)", file=file, path=path,
                       value=raw)
    return f"{host}:{int(port)}"


def _stripped(text: str | None) -> str | None:
    return text.strip() or None if text is not None else None


def _check_endpoint(checker: _Checker, endpoint: str, path: str) -> None:
    try:
        check_endpoint_url(endpoint)
    except InsecureEndpoint as exc:
        raise checker.fail(str(exc), path, redact_url(endpoint)) from None
