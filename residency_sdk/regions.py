"""The one cloud region table (provider -> region -> country) and in-country failover.

Every question "which country is this cloud region in?" is answered here: by the map
compiler when it checks backends, by the infra plan, and by ``residency verify`` when it
judges what a provider reports. The table is the packaged ``cloud_regions.yaml`` plus a
map's own ``cloud_regions`` entries; :attr:`RegionMap.regions
<residency_sdk.regionmap.RegionMap.regions>` holds the one a map compiled with.

A backend's failover target is derived here too, once, when the map is compiled
(:attr:`Location.failovers <residency_sdk.regionmap.Location.failovers>`): same provider,
key, account and BAA flag, the ``failover_region`` and the bucket ``<bucket>-failover``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from functools import cache
from importlib.resources import files
from pathlib import Path

from residency_sdk._yamlio import load_yaml_file
from residency_sdk.errors import ResidencyViolation
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


def region_table(overlay: Mapping[str, Mapping[str, str]] | None = None) -> RegionTable:
    """The packaged region table, with ``overlay`` (a map's ``cloud_regions``) on top.

    Returns a fresh copy: callers may not change the packaged table."""
    table = {p: dict(regions) for p, regions in _builtin().items()}
    for provider, regions in (overlay or {}).items():
        table.setdefault(str(provider), {}).update(
            {r: c.strip().upper() for r, c in regions.items()})
    return table


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
