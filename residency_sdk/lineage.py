"""Where a tenant's data has been: the lineage an erasure plans from.

Every time the SDK writes a tenant's data somewhere (a tenant store's ``put``, a
``transfer`` to another location, the copies of a ``move_tenant``) it first records, in
the tenant's own location, that the tenant's data reached that location and provider (a
*footprint*); a copy also gets a *copy record* naming the key, the source and the
destination. Both are written ahead of the data (if they cannot be written, the data is
not), to the same stores as the tenant's record (the location's default backend and its
in-country failover, so a fleet shares them), and both writes are audited like every
data operation (``put`` events with purpose ``lineage``). The copy itself is audited as
the ``transfer`` event it always was.

Layout, in the tenant's location (``_residency/`` is never a tenant key and never swept)::

    _residency/lineage/<tenant>/reached/<LOCATION>/<provider>   one footprint (JSON)
    _residency/lineage/<tenant>/copies/<time>-<random>          one copy record (JSON)

:meth:`Lineage.trace` reads them from *every* location (a tenant that moved keeps its
older lineage where it was recorded), so ``res.erase`` plans every location and provider
the tenant's data reached, and says which locations could not be asked. A footprint is
recorded once per tenant, location and provider; a process trusts one it confirmed for
:data:`CONFIRMED_FOR` seconds, then looks again (an erasure elsewhere may have dropped
it). A provider covers its primary and in-country failover backends.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from residency_sdk.errors import (
    BackendUnavailable,
    IntegrityError,
    ObjectNotFound,
    ResidencyError,
)
from residency_sdk.events import AuditEmitter
from residency_sdk.marks import CREATED_META, TENANT_META
from residency_sdk.model import Tenant
from residency_sdk.policy import ResidencyPolicy
from residency_sdk.records import SdkRecords
from residency_sdk.regionmap import Location
from residency_sdk.storage.base import ObjectStore
from residency_sdk.storage.keys import SDK_PREFIX, tenant_prefix
from residency_sdk.storage.pool import StorePool

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
LINEAGE_PREFIX = f"{SDK_PREFIX}lineage/"
CONFIRMED_FOR = 30.0
"""Seconds a process trusts a footprint it confirmed before looking it up again (one
HEAD on the tenant's record store per tenant, location and provider per interval)."""
LINEAGE_PURPOSE = "lineage"
"""The purpose of the audit events of lineage writes."""
Via = Literal["put", "transfer", "move"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Footprint(_Record):
    """A tenant's data reached ``provider`` in ``location`` (first recorded ``at``)."""

    tenant_id: str
    location: str
    provider: str
    at: datetime
    via: Via


class CopyRecord(_Record):
    """One copy the SDK made of a tenant's object: ``key`` (relative to the tenant's
    prefix) from ``source_location`` to ``provider``/``bucket`` in
    ``destination_location``, recorded ``at`` (before the copy started)."""

    tenant_id: str
    key: str
    source_location: str
    destination_location: str
    provider: str
    bucket: str
    at: datetime
    via: Via


@dataclass(frozen=True, slots=True)
class Trace:
    """What :meth:`Lineage.trace` found of one tenant: every footprint and copy record,
    and the locations that could not be asked (``unreachable``: location id -> error).
    An erasure planned from a trace with unreachable locations cannot be complete."""

    tenant_id: str
    footprints: tuple[Footprint, ...]
    copies: tuple[CopyRecord, ...]
    unreachable: dict[str, str]

    def reached(self) -> set[tuple[str, str]]:
        """``(location, provider)`` pairs the tenant's data reached."""
        return {(f.location, f.provider) for f in self.footprints}


def lineage_prefix(tenant_id: str) -> str:
    """``_residency/lineage/<tenant>/``: where one tenant's lineage is kept."""
    tenant_prefix(tenant_id)  # the same invariants as the data prefix
    return f"{LINEAGE_PREFIX}{tenant_id}/"


def footprint_key(tenant_id: str, location: str, provider: str) -> str:
    """Where the footprint of ``tenant_id`` in ``location``/``provider`` is kept."""
    return f"{lineage_prefix(tenant_id)}reached/{location}/{provider}"


class Lineage:
    """Records and reads where tenants' data went; one per client, thread-safe."""

    def __init__(self, policy: ResidencyPolicy, stores: StorePool,
                 audit: AuditEmitter | None = None, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._policy = policy
        self._stores = stores
        self._records = SdkRecords(stores, audit)
        self._clock = clock
        self._known: dict[tuple[str, str, str], float] = {}
        """Footprints this process confirmed, with when (monotonic seconds)."""
        self._lock = threading.Lock()

    # --- recording -------------------------------------------------------------------

    def reached(self, tenant: Tenant, location: str, provider: str, *, via: Via = "put",
                actor: str | None = None) -> None:
        """Record, before the write, that ``tenant``'s data is about to reach
        ``provider`` in ``location``; raises (a :class:`ResidencyError`) when it cannot
        be recorded, and then the write must not happen.

        A footprint this process confirmed is trusted for :data:`CONFIRMED_FOR` seconds,
        then looked up again: an erasure completed by another process drops the tenant's
        lineage, and a long-running writer must notice within that time that its next
        write needs a new footprint (else a later erasure would not plan that place)."""
        known = (tenant.id, location, provider)
        confirmed = self._known.get(known)
        if confirmed is not None and time.monotonic() - confirmed < CONFIRMED_FOR:
            return
        home = self._policy.location_of(tenant)
        key = footprint_key(tenant.id, location, provider)
        stores = self._stores.record_stores(home)
        if not _exists(stores[0], key):
            record = Footprint(tenant_id=tenant.id, location=location, provider=provider,
                               at=self._clock(), via=via)
            self._write(home, tenant, key, record.model_dump_json().encode("utf-8"), actor)
        with self._lock:
            self._known[known] = time.monotonic()

    def copied(self, tenant: Tenant, key: str, *, source_location: str,
               destination_location: str, provider: str, bucket: str, via: Via = "transfer",
               actor: str | None = None) -> CopyRecord:
        """Record, before it starts, a copy of ``tenant``'s object ``key`` (relative to its
        prefix) into ``destination_location`` (and the footprint it leaves there)."""
        self.reached(tenant, destination_location, provider, via=via, actor=actor)
        now = self._clock()
        record = CopyRecord(tenant_id=tenant.id, key=key, source_location=source_location,
                            destination_location=destination_location, provider=provider,
                            bucket=bucket, at=now, via=via)
        name = f"{lineage_prefix(tenant.id)}copies/{now:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}"
        self._write(self._policy.location_of(tenant), tenant, name,
                    record.model_dump_json().encode("utf-8"), actor)
        return record

    def _write(self, home: Location, tenant: Tenant, key: str, data: bytes,
               actor: str | None) -> None:
        """Write one lineage object on the location's record stores (primary and
        failover: one must succeed), audited ahead like a data write."""
        meta = {CREATED_META: self._clock().isoformat(), TENANT_META: tenant.id}
        self._records.audited("put", home, tenant, key,
                              lambda: self._records.write(home, key, data, meta),
                              purpose=LINEAGE_PURPOSE, actor=actor, data_class="personal")

    # --- reading ---------------------------------------------------------------------

    def trace(self, tenant_id: str) -> Trace:
        """Every footprint and copy record of ``tenant_id``, from every location of the
        map; locations that could not be asked are listed in ``unreachable``."""
        prefix = lineage_prefix(tenant_id)
        footprints: dict[tuple[str, str], Footprint] = {}
        copies: list[CopyRecord] = []
        unreachable: dict[str, str] = {}
        for location in self._policy.map.locations.values():
            try:
                found = self._read_all(location, prefix)
            except ResidencyError as exc:
                unreachable[location.id] = f"{type(exc).__name__}: {exc}"
                continue
            for key, data in found:
                where = f"{location.id}:{key}"
                if key.startswith(f"{prefix}reached/"):
                    fp = _parse(Footprint, data, where)
                    seen = footprints.get((fp.location, fp.provider))
                    if seen is None or fp.at < seen.at:
                        footprints[(fp.location, fp.provider)] = fp
                elif key.startswith(f"{prefix}copies/"):
                    copies.append(_parse(CopyRecord, data, where))
        for copy in copies:  # a copy names where it went even if a footprint is missing
            footprints.setdefault((copy.destination_location, copy.provider), Footprint(
                tenant_id=tenant_id, location=copy.destination_location,
                provider=copy.provider, at=copy.at, via=copy.via))
        return Trace(tenant_id, tuple(sorted(footprints.values(),
                                             key=lambda f: (f.location, f.provider))),
                     tuple(sorted(copies, key=lambda c: c.at)), unreachable)

    def _read_all(self, location: Location, prefix: str) -> list[tuple[str, bytes]]:
        """The lineage objects under ``prefix`` in ``location``: the primary's, else the
        failover's (primary unreachable); both unreachable raises."""
        first: BackendUnavailable | None = None
        for store in self._stores.record_stores(location):
            try:
                found = []
                for info in store.list(prefix):
                    try:
                        found.append((info.key, store.get(info.key)))
                    except ObjectNotFound:
                        continue
                return found
            except BackendUnavailable as exc:
                if first is not None:
                    raise BackendUnavailable(
                        f"lineage in location {location.id}: primary and failover both "
                        f"failed: {first}; {exc}") from exc
                first = exc
        assert first is not None
        raise first

    def forget(self, tenant: Tenant, locations: Iterable[str] | None = None, *,
               actor: str | None = None) -> int:
        """Delete ``tenant``'s lineage (in ``locations``, default every location), once
        an erasure has removed everything it pointed to; returns objects deleted."""
        prefix = lineage_prefix(tenant.id)
        chosen = set(locations) if locations is not None else None
        deleted = 0
        for location in self._policy.map.locations.values():
            if chosen is not None and location.id not in chosen:
                continue
            for store in self._stores.record_stores(location):
                keys = [info.key for info in store.list(prefix)]
                for key in keys:
                    def drop(store: ObjectStore = store, key: str = key) -> bool:
                        return store.delete(key)
                    if self._records.audited("delete", location, tenant, key, drop,
                                             purpose=LINEAGE_PURPOSE, actor=actor,
                                             data_class="personal"):
                        deleted += 1
        with self._lock:
            self._known = {k: t for k, t in self._known.items() if k[0] != tenant.id}
        return deleted


def _exists(store: ObjectStore, key: str) -> bool:
    try:
        return store.exists(key)
    except BackendUnavailable:
        return False  # written (or refused) on the failover by _write


def _parse(model: type[M], data: bytes, where: str) -> M:
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        raise IntegrityError(f"lineage record {where} is corrupt: {exc.errors()[0]['msg']}; "
                             "restore it from the audit trail's transfer events") from None
