"""Helpers for the batch and async store tests: a thread-safe recording audit sink and an
object store wrapper that counts (and can hold) the operations in flight."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from residency_sdk.errors import AuditUnavailable
from residency_sdk.events import AuditEvent
from residency_sdk.model import StorageTarget
from residency_sdk.storage.base import ObjectInfo, ObjectStore, ProgressCallback
from residency_sdk.storage.factory import open_store


class RecordingSink:
    """An audit sink keeping every event (thread-safe); ``broken`` makes every append fail
    as a full disk would."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.broken = False
        self._lock = threading.Lock()

    def append(self, event: AuditEvent, *, durable: bool = True) -> None:
        if self.broken:
            raise AuditUnavailable("audit log disk full (injected)")
        with self._lock:
            self.events.append(event)

    def flush(self) -> None:
        if self.broken:
            raise AuditUnavailable("audit log disk full (injected)")

    def close(self) -> None:
        """Nothing to release."""

    def of(self, operation: str, outcome: str | None = None,
           key: str | None = None) -> list[AuditEvent]:
        """Events of ``operation`` on tenant objects (the SDK's own records apart)."""
        with self._lock:
            events = list(self.events)
        # The SDK's own records (tenant binding, lineage) carry a purpose; the tests'
        # stores have none.
        return [e for e in events if e.operation == operation and e.purpose is None
                and (outcome is None or e.outcome == outcome)
                and (key is None or e.object_key == key)]


class InFlight:
    """Counts the data operations (put/get on ``tenants/`` keys) running in the wrapped
    stores at once. With ``gate``, each one waits (up to ``patience`` seconds) until
    ``gate`` are running together, so a bound that is really reached is observed without
    relying on timing; ``hold`` (an Event) keeps every operation waiting until it is
    set."""

    def __init__(self, gate: int = 0, patience: float = 5.0) -> None:
        self.gate = gate
        self.patience = patience
        self.running = 0
        self.peak = 0
        self.calls = 0
        self.hold: threading.Event | None = None
        self.entered = threading.Event()
        self._cond = threading.Condition()

    def around(self, key: str, call: Callable[[], Any]) -> Any:
        if not key.startswith("tenants/"):
            return call()
        with self._cond:
            self.running += 1
            self.calls += 1
            self.peak = max(self.peak, self.running)
            self._cond.notify_all()
            if self.gate:
                self._cond.wait_for(lambda: self.running >= self.gate, timeout=self.patience)
        self.entered.set()
        try:
            if self.hold is not None:
                self.hold.wait(timeout=30)
            return call()
        finally:
            with self._cond:
                self.running -= 1


class CountingStore(ObjectStore):
    """An :class:`ObjectStore` that delegates to ``inner`` and reports its put/get/open
    calls to an :class:`InFlight`."""

    def __init__(self, inner: ObjectStore, flight: InFlight) -> None:
        self.inner = inner
        self.target = inner.target
        self.flight = flight

    def put(self, key: str, data: bytes | BinaryIO, *, metadata: dict[str, str] | None = None,
            progress: ProgressCallback | None = None) -> ObjectInfo:
        return self.flight.around(key, lambda: self.inner.put(
            key, data, metadata=metadata, progress=progress))  # type: ignore[no-any-return]

    def get(self, key: str) -> bytes:
        return self.flight.around(key, lambda: self.inner.get(key))  # type: ignore[no-any-return]

    def open(self, key: str) -> BinaryIO:
        return self.inner.open(key)

    def head(self, key: str) -> ObjectInfo:
        return self.inner.head(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str, *, if_match: ObjectInfo | None = None) -> bool:
        return self.inner.delete(key, if_match=if_match)

    def close(self) -> None:
        self.inner.close()


def counting_opener(flight: InFlight, local_root: Any = None,
                    ) -> Callable[[StorageTarget, str], ObjectStore]:
    """A store opener (``Residency.load(storage=...)``) wrapping the production one."""

    def opener(target: StorageTarget, location: str) -> ObjectStore:
        return CountingStore(open_store(target, local_root=local_root, location=location),
                             flight)

    return opener
