"""Helpers for the adapter contract suite: payloads (no object is ever held whole), an RSS
sampler, and the ``memory`` backend's harness."""

from __future__ import annotations

import hashlib
import io
import threading
from pathlib import Path
from typing import Any

import psutil
import yaml

from residency_sdk.storage.memory import MemoryStore


class ChunkedSource(io.RawIOBase):
    """A non-seekable stream of ``size`` deterministic bytes, generated chunk by chunk.

    ``sha256`` is the digest of everything produced so far, so a test can compare what went
    up with what came back without ever holding the object in memory.
    """

    def __init__(self, size: int, seed: int = 7, block: int = 1024 * 1024) -> None:
        super().__init__()
        self.size = size
        self.produced = 0
        self._block = hashlib.shake_256(str(seed).encode()).digest(block)
        self._sha = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self.size - self.produced)
        if want <= 0:
            return 0
        out = bytearray()
        pos = self.produced
        while len(out) < want:
            start = pos % len(self._block)
            take = min(len(self._block) - start, want - len(out))
            out += self._block[start:start + take]
            pos += take
        buffer[:want] = out
        self._sha.update(bytes(buffer[:want]))
        self.produced += want
        return want

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


class PeakRSS:
    """Samples this process's RSS every 10 ms while active; ``peak`` is the maximum seen."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.baseline = self.process.memory_info().rss
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(0.01)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def growth_mb(self) -> float:
        return float(self.peak - self.baseline) / 1e6


class MemoryHarness:
    """The ``memory`` backend of the contract suite: :class:`MemoryStore` standing in for
    each location's default backend (the target ``Residency.load(storage=...)`` would give
    it), with the same interface as ``storage_harness.ProviderHarness``.

    Like a real provider, opening a target twice gives two handles on one bucket: stores
    are shared per (provider, account, bucket), so a target with its key removed still
    sees the bucket's objects. No emulator, no environment, no files (but the map).
    """

    provider = "memory"

    def __init__(self) -> None:
        self.stores: dict[tuple[str, str | None, str], MemoryStore] = {}
        self._lock = threading.Lock()

    def write_map(self, tmp_path: Path, extra: dict[str, Any] | None = None) -> Path:
        """An overlay of the default map (``extra`` deep-merged per location's default
        backend, as for the other harnesses); return its path."""
        locations: dict[str, Any] = {}
        for loc_id, overlay in (extra or {}).items():
            provider = _default_location(loc_id).default_provider
            locations[loc_id] = {"backends": {provider: overlay}}
        doc: dict[str, Any] = {"extends": "default", "name": "test-memory"}
        if locations:
            doc["locations"] = locations
        path = tmp_path / "map-memory.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def target(self, map_path: Path, location: str = "DE") -> Any:
        """The default storage target of ``location`` in the map at ``map_path``."""
        from residency_sdk.regionmap import load_region_map

        loc = load_region_map(map_path).locations[location]
        return loc.backends[loc.default_provider]

    def open(self, target: Any) -> Any:
        """The shared :class:`MemoryStore` of ``target``'s bucket."""
        bucket = (target.provider, target.account, target.bucket)
        with self._lock:
            store = self.stores.get(bucket)
            if store is None:
                store = self.stores[bucket] = MemoryStore(target)
            return store

    def opener(self, target: Any, location: str) -> Any:
        """A ``StoreOpener`` for ``Residency.load(storage=...)``."""
        return self.open(target)

    def residency(self, tmp_path: Path, **kwargs: Any) -> Any:
        """``Residency.load`` of this harness's map with every store in memory."""
        from residency_sdk import Residency

        kwargs.setdefault("storage", self.opener)
        return Residency.load(self.write_map(tmp_path), **kwargs)


def _default_location(loc_id: str) -> Any:
    from residency_sdk.regionmap import load_region_map

    return load_region_map(None).locations[loc_id]
