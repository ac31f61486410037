"""The store pool: opens each backend's adapter once and shares it.

It is the one "store opener" the tenant store, tracked erasure and the retention sweep
are handed, and it knows which backends hold a location's data: with ``local_root``
(the embedded default) every location stores in its ``local`` backend, otherwise in the
map's cloud backends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from residency_sdk.errors import InvalidLocalLocation
from residency_sdk.model import StorageTarget
from residency_sdk.regionmap import Location
from residency_sdk.storage.base import ObjectStore
from residency_sdk.storage.factory import open_store

StoreOpener = Callable[[StorageTarget, str], ObjectStore]
"""Opens the store of a target in a location (``(target, location_id) -> ObjectStore``).
The default opens local targets under ``local_root`` and cloud targets with their adapter;
pass your own to :meth:`Residency.load <residency_sdk.client.Residency.load>` (``storage=``)
to wrap or instrument stores, or to keep objects in memory
(:class:`~residency_sdk.storage.memory.MemoryStore`) in your own unit tests."""


class StorePool:
    """Opens each (target, location) store once and shares it (adapters are thread-safe)."""

    def __init__(self, local_root: str | Path | None = None,
                 opener: StoreOpener | None = None) -> None:
        self.local_root = Path(local_root) if local_root is not None else None
        """The embedded default's root folder, or None when data lives in the clouds."""
        self._opener = opener or self._default_opener
        self._stores: dict[tuple[StorageTarget, str], ObjectStore] = {}
        self._lock = threading.Lock()

    def _default_opener(self, target: StorageTarget, location: str) -> ObjectStore:
        return open_store(target, local_root=self.local_root, location=location)

    def get(self, target: StorageTarget, location: str) -> ObjectStore:
        """The store of ``target`` in ``location``, opened on first use."""
        with self._lock:
            store = self._stores.get((target, location))
            if store is None:
                store = self._opener(target, location)
                self._stores[(target, location)] = store
            return store

    def default_provider(self, location: Location) -> str:
        """The provider a tenant store uses when none is named: ``local`` with
        ``local_root``, else the location's ``default_provider``."""
        return "local" if self.local_root is not None else location.default_provider

    def record_stores(self, location: Location) -> list[ObjectStore]:
        """Where the SDK keeps its own records for ``location`` (tenant records,
        lineage): the default provider's primary store, then its in-country failover."""
        target = location.backend(self.default_provider(location))
        failover = location.failover_for(target)
        return [self.get(t, location.id) for t in (target, failover) if t is not None]

    def data_providers(self, location: Location) -> tuple[str, ...]:
        """The providers that may hold ``location``'s data, which a location-wide sweep
        (retention, tenant erasure) covers when none are named.

        With ``local_root`` everything is stored in the embedded ``local`` backend, so
        only ``local``; otherwise every cloud backend of the location (a ``local``
        backend cannot be opened without a root folder)."""
        if self.local_root is not None:
            return ("local",)
        cloud = tuple(p for p in location.backends if p != "local")
        if not cloud:
            raise InvalidLocalLocation(
                f"location {location.id} has only a 'local' backend, which needs a root "
                "folder: load the Residency with local_root=PATH (CLI: --local-root DIR)")
        return cloud

    def close(self) -> None:
        """Close every store opened so far."""
        with self._lock:
            stores, self._stores = list(self._stores.values()), {}
        for store in stores:
            store.close()
