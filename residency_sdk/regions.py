"""The one cloud region table (provider -> region -> country) and in-country failover.

Every question "which country is this cloud region in?" is answered here: by the map
compiler when it checks backends, by the infra plan, and by ``residency verify`` when it
judges what a provider reports. The table is the packaged ``cloud_regions.yaml`` plus the
regions a map's own ``cloud_regions`` **adds**; :attr:`RegionMap.regions
<residency_sdk.regionmap.RegionMap.regions>` holds the one a map compiled with.

The packaged table is authoritative: a map can add a region it does not know (such a
region is *unreviewed*: its country is the map's word only, and ``residency map validate``
says so), but can never change the country of a region it knows. Otherwise one overlay
line (``cloud_regions: {aws: {us-east-2: DE}}``) would let a "German" bucket live in Ohio.

A backend's failover target is derived here too, once, when the map is compiled
(:attr:`Location.failovers <residency_sdk.regionmap.Location.failovers>`): same provider,
key, account and BAA flag, the ``failover_region`` and the bucket ``<bucket>-failover``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path

from residency_sdk._yamlio import load_yaml_file
from residency_sdk.errors import MapError, ResidencyViolation
from residency_sdk.model import PROVIDERS, StorageTarget

RegionTable = dict[str, dict[str, str]]
"""provider -> cloud region -> ISO country code."""

FAILOVER_SUFFIX = "-failover"


def packaged_maps_dir() -> Path:
    """The folder holding the packaged ``default.yaml``, rules and cloud region table."""
    return Path(str(files("residency_sdk.region_maps")))


@cache
def _builtin() -> RegionTable:
    raw = load_yaml_file(packaged_maps_dir() / "cloud_regions.yaml")
    return {p: dict(raw.get(p, {})) for p in PROVIDERS if p != "local"}


@dataclass(frozen=True, slots=True)
class UnreviewedRegion:
    """A region a map's ``cloud_regions`` adds that the packaged table does not know.

    Its country is the map's word only (nobody reviewed it against the provider's region
    list): ``residency map validate`` warns about it and ``--strict`` refuses it.
    ``provider_knows`` is True when the provider's SDK data (botocore's endpoints data for
    AWS) confirms the region exists; it never confirms the country."""

    provider: str
    region: str
    country: str
    path: str
    provider_knows: bool = False


def builtin_region_table() -> RegionTable:
    """A fresh copy of the packaged, reviewed region table (``cloud_regions.yaml``)."""
    return {p: dict(regions) for p, regions in _builtin().items()}


def regions_in(provider: str, country: str) -> list[str]:
    """The packaged table's regions of ``provider`` in ``country`` (for fix hints)."""
    return sorted(r for r, c in _builtin().get(provider, {}).items() if c == country)


def relabel_message(provider: str, region: str, real: str, claimed: str) -> str:
    """The refusal of a map entry that moves a known region to another country."""
    alternatives = regions_in(provider, claimed)
    hint = (f"; {provider} regions in {claimed}: {', '.join(alternatives)}"
            if alternatives else "")
    return (f"{provider} region {region!r} is in {real} (built-in region table), not "
            f"{claimed}: a map may add regions the table lacks but never change the country "
            f"of a known one. Remove `cloud_regions.{provider}.{region}` and give the "
            f"location a region that really is in {claimed}{hint}")


def region_table(overlay: Mapping[str, Mapping[str, str]] | None = None) -> RegionTable:
    """The packaged region table, plus the regions ``overlay`` (a map's ``cloud_regions``)
    adds.

    Returns a fresh copy: callers may not change the packaged table. The packaged
    countries stay authoritative: an overlay entry that gives a known region (compared
    case-insensitively) another country raises :class:`MapError`; one that repeats the
    known country changes nothing."""
    table = builtin_region_table()
    for provider, regions in (overlay or {}).items():
        known = table.setdefault(str(provider), {})
        for raw_region, raw_country in regions.items():
            region = raw_region.strip().lower()
            country = raw_country.strip().upper()
            real = _builtin().get(str(provider), {}).get(region)
            if real is not None and real != country:
                raise MapError(relabel_message(str(provider), region, real, country),
                               path=f"cloud_regions.{provider}.{raw_region}", value=raw_country)
            known.setdefault(region, country)
    return table


def unreviewed_regions(overlay: Mapping[str, Mapping[str, str]] | None,
                       ) -> tuple[UnreviewedRegion, ...]:
    """The entries of ``overlay`` (a map's ``cloud_regions``) the packaged table lacks."""
    found = []
    for provider, regions in (overlay or {}).items():
        builtin = _builtin().get(str(provider), {})
        for raw_region, raw_country in regions.items():
            region = raw_region.strip().lower()
            if region in builtin:
                continue
            aws_known = _aws_regions_from_botocore() if provider == "aws" else None
            found.append(UnreviewedRegion(
                provider=str(provider), region=region, country=raw_country.strip().upper(),
                path=f"cloud_regions.{provider}.{raw_region}",
                provider_knows=aws_known is not None and region in aws_known))
    return tuple(found)


def country_of(table: Mapping[str, Mapping[str, str]], provider: str,
               region: str) -> str | None:
    """The country of ``provider``'s ``region`` (case-insensitive), or None if unknown."""
    regions = table.get(provider, {})
    found = regions.get(region)
    if found is None:
        lowered = region.lower()
        found = next((c for r, c in regions.items() if r.lower() == lowered), None)
    return found


def failover_bucket(bucket: str) -> str:
    """The failover bucket name for ``bucket``: deterministic, within the 63-char limit."""
    return bucket[: 63 - len(FAILOVER_SUFFIX)] + FAILOVER_SUFFIX


def failover_target(target: StorageTarget, *,
                    regions: Mapping[str, Mapping[str, str]] | None = None,
                    ) -> StorageTarget | None:
    """The in-country failover target of ``target``, or None when none is configured.

    ``regions`` is the region table (default: the packaged one). A failover region in
    another country, or one whose country is unknown, is refused with
    :class:`ResidencyViolation`: failover never crosses a border.
    """
    region = target.failover_region
    if not region:
        return None
    if target.provider != "local":
        country = country_of(regions if regions is not None else region_table(),
                             target.provider, region)
        if country != target.country:
            where = f"is in {country}" if country else "has no known country"
            raise ResidencyViolation(
                f"{target.provider} failover region {region!r} {where}, not {target.country}: "
                "failover never leaves the location's country")
    return target.model_copy(update={"region": region,
                                     "bucket": failover_bucket(target.bucket),
                                     "failover_region": None})


@cache
def _aws_regions_from_botocore() -> frozenset[str] | None:
    """AWS region codes from botocore's bundled endpoints data, when boto3 is installed."""
    if importlib.util.find_spec("botocore") is None:
        return None
    import botocore.loaders

    data = botocore.loaders.Loader().load_data("endpoints")
    return frozenset(
        region for partition in data.get("partitions", []) for region in partition["regions"]
    )


def aws_region_exists(region: str) -> bool:
    """True unless botocore is installed and does not know ``region``."""
    known = _aws_regions_from_botocore()
    return True if known is None else region in known
