"""Payload helpers for the adapter contract suite (no object is ever held whole)."""

from __future__ import annotations

import hashlib
import io
import threading
from typing import Any

import psutil


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
        return (self.peak - self.baseline) / 1e6
