"""Open the store for a storage target; derive a location's in-country failover target.

Cloud adapters are imported here, lazily, only when a target of their provider is opened:
``import residency_sdk`` never imports boto3, google-cloud-storage or azure-storage-blob.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path

from residency_sdk.errors import BackendNotConfigured, ResidencyViolation
from residency_sdk.model import StorageTarget
from residency_sdk.storage.base import ObjectStore

# provider -> (module, class, pip extra)
_ADAPTERS: dict[str, tuple[str, str, str]] = {
    "aws": ("residency_sdk.storage.s3", "S3Store", "aws"),
    "gcp": ("residency_sdk.storage.gcs", "GCSStore", "gcp"),
    "azure": ("residency_sdk.storage.azure", "AzureStore", "azure"),
}

FAILOVER_SUFFIX = "-failover"


def open_store(target: StorageTarget, *, local_root: Path | str | None = None,
               location: str | None = None) -> ObjectStore:
    """The :class:`ObjectStore` serving ``target``.

    ``local`` targets need ``local_root`` (the folder holding one directory per location;
    ``location`` names that directory, by default derived from the target's region).
    Cloud targets load their adapter on first use; a missing SDK raises
    :class:`BackendNotConfigured` naming the extra to install.
    """
    if target.provider == "local":
        if local_root is None:
            raise BackendNotConfigured(
                f"the local backend of {target.country} needs a root folder: load with "
                "Residency.load(..., local_root=PATH) or pass --local-root DIR")
        from residency_sdk.storage.local import LocalStore

        return LocalStore(target, Path(local_root), location=location)
    try:
        module_name, class_name, extra = _ADAPTERS[target.provider]
    except KeyError:
        raise BackendNotConfigured(f"no storage adapter for provider {target.provider!r}") \
            from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendNotConfigured(
            f"the {target.provider} storage adapter needs an SDK that is not installed "
            f"({exc.name or exc}): pip install 'residency-sdk[{extra}]'") from None
    store: ObjectStore = getattr(module, class_name)(target)
    return store


def failover_target(target: StorageTarget, *,
                    regions: Mapping[str, Mapping[str, str]] | None = None,
                    ) -> StorageTarget | None:
    """The in-country failover target of ``target``, or None when none is configured.

    Same provider, key, account and BAA flag, ``region=failover_region`` and the bucket
    ``<bucket>-failover``. ``regions`` maps provider -> region -> country (default: the
    packaged cloud region table); a failover region in another country, or one whose
    country is unknown, is refused with :class:`ResidencyViolation`: failover never
    crosses a border.
    """
    region = target.failover_region
    if not region:
        return None
    if target.provider != "local":
        table = regions if regions is not None else _packaged_regions()
        country = table.get(target.provider, {}).get(region)
        if country != target.country:
            where = f"is in {country}" if country else "has no known country"
            raise ResidencyViolation(
                f"{target.provider} failover region {region!r} {where}, not {target.country}: "
                "failover never leaves the location's country")
    return target.model_copy(update={"region": region,
                                     "bucket": failover_bucket(target.bucket),
                                     "failover_region": None})


def failover_bucket(bucket: str) -> str:
    """The failover bucket name for ``bucket``: deterministic, within the 63-char limit."""
    return bucket[: 63 - len(FAILOVER_SUFFIX)] + FAILOVER_SUFFIX


def _packaged_regions() -> Mapping[str, Mapping[str, str]]:
    from residency_sdk.regionmap import _region_table

    return _region_table({})
