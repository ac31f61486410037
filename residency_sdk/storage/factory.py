"""Open the adapter (:class:`ObjectStore`) for a storage target.

Cloud adapters are imported here, lazily, only when a target of their provider is opened:
``import residency_sdk`` never imports boto3, google-cloud-storage or azure-storage-blob.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from residency_sdk.errors import InvalidLocalLocation, NoSuchBackend, SDKNotInstalled
from residency_sdk.model import StorageTarget
from residency_sdk.storage.base import ObjectStore

# provider -> (module, class, pip extra)
_ADAPTERS: dict[str, tuple[str, str, str]] = {
    "aws": ("residency_sdk.storage.s3", "S3Store", "aws"),
    "gcp": ("residency_sdk.storage.gcs", "GCSStore", "gcp"),
    "azure": ("residency_sdk.storage.azure", "AzureStore", "azure"),
}


def open_store(target: StorageTarget, *, local_root: Path | str | None = None,
               location: str | None = None) -> ObjectStore:
    """The :class:`ObjectStore` serving ``target``.

    ``local`` targets need ``local_root`` (the folder holding one directory per location;
    ``location`` names that directory, by default derived from the target's region).
    Cloud targets load their adapter on first use; a missing SDK raises
    :class:`SDKNotInstalled` naming the extra to install.
    """
    if target.provider == "local":
        if local_root is None:
            raise InvalidLocalLocation(
                f"the local backend of {target.country} needs a root folder: load with "
                "Residency.load(..., local_root=PATH) or pass --local-root DIR")
        from residency_sdk.storage.local import LocalStore

        return LocalStore(target, Path(local_root), location=location)
    try:
        module_name, class_name, extra = _ADAPTERS[target.provider]
    except KeyError:
        raise NoSuchBackend(f"no storage adapter for provider {target.provider!r}: use one of "
                            f"local, {', '.join(sorted(_ADAPTERS))}") from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SDKNotInstalled(
            f"the {target.provider} storage adapter needs an SDK that is not installed "
            f"({exc.name or exc}): pip install 'residency-sdk[{extra}]'") from None
    store: ObjectStore = getattr(module, class_name)(target)
    return store
