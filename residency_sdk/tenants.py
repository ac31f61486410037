"""One tenant, one country: the per-tenant record that binds a tenant id to its country.

The first write for a tenant records, in its location, which country it was written
under (``_residency/tenant-records/<tenant_id>.json`` in the location's default store).
Before a tenant store first touches data it looks the tenant id up in every location:
a record under another country (or in another location) means the same id is being
opened under a second jurisdiction, which would split its data across two locations, so
the store refuses with :class:`TenantCountryConflict`. The way to change a tenant's
country is :func:`move_tenant` (``residency tenant move``): it checks and audits the
transfer, copies every object, verifies each copy, rebinds the record and erases the old
location.

A record holds only the tenant id, its country and location, and when it was made: no
personal data crosses a border when other locations are asked about an id. Lookups are
cached per process; a location that cannot be asked fails the check closed. Writing or
removing a record is audited ahead of time like any data operation (``put``/``delete``
events with purpose ``tenant_record``), and so is every copy a move makes.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Literal, TypeVar, cast

from residency_sdk.errors import (
    AuditUnavailable,
    BackendUnavailable,
    IntegrityError,
    PlacementBlocked,
    ResidencyError,
    StorageError,
    TenantCountryConflict,
    TransferBlocked,
)
from residency_sdk.events import AuditEmitter, AuditEvent, basis_of
from residency_sdk.lineage import Lineage
from residency_sdk.marks import CREATED_META, TENANT_META, copied_from
from residency_sdk.model import Decision, StorageTarget, Tenant
from residency_sdk.policy import PLACEMENT_CLASS, ResidencyPolicy
from residency_sdk.records import SdkRecords
from residency_sdk.regionmap import Location
from residency_sdk.storage.base import ObjectStore
from residency_sdk.storage.keys import SDK_PREFIX, tenant_prefix
from residency_sdk.storage.pool import StorePool

if TYPE_CHECKING:
    from residency_sdk.deid_records import DeidRecords

T = TypeVar("T")
RECORDS_PREFIX = f"{SDK_PREFIX}tenant-records/"
RECORD_PURPOSE = "tenant_record"
"""The purpose of the audit events of tenant record writes."""
_RECORD_VERSION = 1
_CHUNK = 1024 * 1024


def record_key(tenant_id: str) -> str:
    """Where a tenant's record is kept in its location's default store."""
    tenant_prefix(tenant_id)  # the same validation as the tenant's data prefix
    return f"{RECORDS_PREFIX}{tenant_id}.json"


@dataclass(frozen=True, slots=True)
class TenantRecord:
    """The binding of one tenant id to a country and the location its data lives in."""

    tenant_id: str
    country: str
    location: str
    bound_at: str

    def to_bytes(self) -> bytes:
        """The record's stored form (JSON)."""
        return json.dumps({"version": _RECORD_VERSION, "tenant_id": self.tenant_id,
                           "country": self.country, "location": self.location,
                           "bound_at": self.bound_at}, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> TenantRecord:
        """Parse a stored record; a malformed one fails closed with the place named."""
        try:
            doc = json.loads(data)
            return cls(tenant_id=str(doc["tenant_id"]), country=str(doc["country"]),
                       location=str(doc["location"]), bound_at=str(doc["bound_at"]))
        except (ValueError, KeyError, TypeError):
            raise StorageError(f"tenant record {where} is unreadable: restore it from "
                               "backup or remove it once you know the tenant's country") \
                from None


class TenantRegistry:
    """Finds and writes tenant records through the store pool; one per client. Record
    writes are audited through ``audit`` (written ahead, like every data operation)."""

    def __init__(self, policy: ResidencyPolicy, stores: StorePool,
                 audit: AuditEmitter | None = None) -> None:
        self._policy = policy
        self._stores = stores
        self._records = SdkRecords(stores, audit)
        self._checked: set[tuple[str, str, str]] = set()
        self._bound: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def _record_stores(self, location: Location) -> list[ObjectStore]:
        """The location's default store, then its in-country failover (if any)."""
        return self._stores.record_stores(location)

    def _audited(self, operation: Literal["put", "delete"], location: Location,
                 tenant: Tenant, actor: str | None, run: Callable[[], T]) -> T:
        """Run a record write with its intent durable first and its outcome after."""
        return self._records.audited(operation, location, tenant, record_key(tenant.id), run,
                                     purpose=RECORD_PURPOSE, actor=actor,
                                     data_class="personal")

    def _write(self, location: Location, record: TenantRecord, tenant: Tenant,
               actor: str | None = None) -> None:
        """Write ``record`` on the location's default store and its failover, so a
        lookup during a primary outage still finds it; one of the two must succeed."""
        meta = {CREATED_META: record.bound_at, TENANT_META: record.tenant_id}
        self._audited("put", location, tenant, actor, lambda: self._records.write(
            location, record_key(record.tenant_id), record.to_bytes(), meta))

    def record_in(self, location: Location, tenant_id: str) -> TenantRecord | None:
        """The record of ``tenant_id`` kept in ``location``, or None."""
        key = record_key(tenant_id)
        data = self._records.read(location, key, what="tenant records")
        return None if data is None else TenantRecord.from_bytes(data, f"{location.id}:{key}")

    def records(self, tenant_id: str) -> list[TenantRecord]:
        """Every record of ``tenant_id``, in every location of the map."""
        return [record for location in self._policy.map.locations.values()
                if (record := self.record_in(location, tenant_id)) is not None]

    def check(self, tenant: Tenant, *, write: bool = False) -> None:
        """Refuse ``tenant`` when its id is bound to another country or location.

        The tenant's own location is asked first: a matching record settles it (binding
        asked every other location, so an id is bound in one location only). Without
        one, every other location is asked. A location that cannot be asked fails the
        check closed before a first write (which would bind the id); before a read it is
        passed over, since a read under the wrong country finds nothing to leak. Cached
        per process once it passes. Raises :class:`TenantCountryConflict`."""
        own = self._policy.location_of(tenant)
        cache_key = (tenant.id, tenant.country, own.id)
        if cache_key in self._checked:
            return
        record = self.record_in(own, tenant.id)
        if record is None:
            for location in self._policy.map.locations.values():
                if location.id == own.id:
                    continue
                try:
                    record = self.record_in(location, tenant.id)
                except BackendUnavailable as exc:
                    if write:
                        raise BackendUnavailable(
                            f"cannot confirm that tenant {tenant.id!r} is not bound to "
                            f"another country: location {location.id} did not answer "
                            f"({exc}); its first write waits until it does") from exc
                    continue
                if record is not None:
                    break
        if record is not None and (record.country, record.location) != (tenant.country,
                                                                         own.id):
            raise TenantCountryConflict(
                f"tenant {tenant.id!r} is bound to country {record.country} (its data "
                f"lives in location {record.location}), not {tenant.country} (location "
                f"{own.id}): one tenant id has one country. Move it with `residency "
                f"tenant move --tenant {tenant.id} --from {record.country} --to "
                f"{tenant.country}` (Residency.move_tenant), or use another tenant id")
        if record is not None or write:
            with self._lock:
                self._checked.add(cache_key)

    def bind(self, tenant: Tenant, *, actor: str | None = None) -> None:
        """Write ``tenant``'s record in its location unless it is already there (called
        before the first write of a tenant store; audited as ``actor``)."""
        location = self._policy.location_of(tenant)
        if (tenant.id, location.id) in self._bound:
            return
        self.check(tenant, write=True)
        existing = self.record_in(location, tenant.id)
        if existing is None:
            self._write(location, TenantRecord(tenant.id, tenant.country, location.id,
                                               datetime.now(UTC).isoformat()), tenant, actor)
        elif existing.country != tenant.country:
            raise TenantCountryConflict(
                f"tenant {tenant.id!r} is bound to country {existing.country}, not "
                f"{tenant.country}: move it with `residency tenant move` instead")
        with self._lock:
            self._bound.add((tenant.id, location.id))

    def rebind(self, tenant: Tenant, old: TenantRecord | None, *,
               actor: str | None = None) -> None:
        """Record ``tenant`` under its (new) country and location, then drop ``old``."""
        location = self._policy.location_of(tenant)
        self._write(location, TenantRecord(tenant.id, tenant.country, location.id,
                                           datetime.now(UTC).isoformat()), tenant, actor)
        if old is not None and old.location != location.id:
            old_location = self._policy.location(old.location)
            stores = self._record_stores(old_location)

            def drop() -> None:
                for store in stores:
                    store.delete(record_key(tenant.id))

            self._audited("delete", old_location,
                          Tenant(id=tenant.id, country=old.country), actor, drop)
        with self._lock:
            self._checked = {c for c in self._checked if c[0] != tenant.id}
            self._bound = {b for b in self._bound if b[0] != tenant.id}

    def forget(self, tenant: Tenant, *, actor: str | None = None) -> int:
        """Drop every record of ``tenant.id``, in every location (primary and failover
        copies), once an erasure has removed the tenant's data: a record names the
        tenant. Each removal is audited ahead; returns the records deleted. A location
        that cannot be asked raises (:class:`BackendUnavailable`): run it again."""
        key = record_key(tenant.id)
        deleted = 0
        for location in self._policy.map.locations.values():
            stores = [s for s in self._record_stores(location) if s.exists(key)]
            if not stores:
                continue

            def drop(stores: list[ObjectStore] = stores) -> int:
                return sum(store.delete(key) for store in stores)

            deleted += self._audited("delete", location, tenant, actor, drop)
        with self._lock:
            self._checked = {c for c in self._checked if c[0] != tenant.id}
            self._bound = {b for b in self._bound if b[0] != tenant.id}
        return deleted


# --- moving a tenant to another country --------------------------------------------------


@dataclass(frozen=True, slots=True)
class MoveReceipt:
    """What :func:`move_tenant` did: objects and bytes copied (and verified) from the old
    location to the new, and the erasure request that emptied the old location."""

    tenant_id: str
    from_country: str
    to_country: str
    from_location: str
    to_location: str
    objects: int
    bytes: int
    erasure_request_id: str | None


class _Hashing(io.RawIOBase):
    """A reader that hashes what passes through it (to verify the copy end to end)."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._raw.read(len(buffer))
        self.sha256.update(chunk)
        self.size += len(chunk)
        buffer[: len(chunk)] = chunk
        return len(chunk)


def _digest(reader: BinaryIO) -> str:
    sha = hashlib.sha256()
    with reader:
        for chunk in iter(lambda: reader.read(_CHUNK), b""):
            sha.update(chunk)
    return sha.hexdigest()


def _copy_verified(source: ObjectStore, dest: ObjectStore, key: str,
                   from_location: str) -> int:
    """Copy ``key`` and prove the copy holds the same bytes; return its size."""
    info = source.head(key)
    with source.open(key) as raw:
        hashing = _Hashing(raw)
        dest.put(key, cast(BinaryIO, io.BufferedReader(hashing, _CHUNK)),
                 metadata=copied_from(info.metadata, from_location))
    if _digest(dest.open(key)) != hashing.sha256.hexdigest():
        dest.delete(key)
        raise IntegrityError(f"the copy of {key!r} in {dest.target.bucket!r} does not hold the "
                             "bytes read from the source: nothing was erased; move again")
    return hashing.size


def move_tenant(policy: ResidencyPolicy, stores: StorePool, audit: AuditEmitter,
                registry: TenantRegistry, tenant: Tenant, to_country: str, *,
                erase_old: Any, providers: Iterable[str] | None = None,
                actor: str | None = None, purpose: str | None = None,
                lineage: Lineage | None = None,
                deid: DeidRecords | None = None) -> MoveReceipt:
    """Move ``tenant`` (bound to ``tenant.country``) to ``to_country``.

    The placement of the tenant under its new country must be lawful and, when the data
    changes location, so must the transfer from the old location to the new one (both
    audited; a refusal copies nothing). Every object is copied and verified (SHA-256 of
    what was read against a fresh read of the copy), the record is rebound, then
    ``erase_old(old_tenant)`` (a tracked erasure of the old location) runs; a crash
    before it leaves the copies and both records, and moving again finishes the job.
    ``providers`` narrows the old location's backends copied (default: every backend that
    may hold its data, as for erasure).
    """
    moved = Tenant(id=tenant.id, country=to_country, agreements=tenant.agreements,
                   out_of_scope=tenant.out_of_scope)
    records = registry.records(tenant.id)
    current = [r for r in records if r.country == tenant.country]
    strangers = [r for r in records if r.country not in (tenant.country, moved.country)]
    if strangers:
        raise TenantCountryConflict(
            f"tenant {tenant.id!r} is bound to {strangers[0].country}, not {tenant.country}: "
            f"move it from {strangers[0].country}")
    old_location = policy.location_of(tenant)
    new_location = policy.location_of(moved)
    placement = policy.placement_decision(moved, PLACEMENT_CLASS)
    audit.decision("placement", moved, placement, actor=actor, purpose=purpose,
                   source_location=new_location.id)
    if not placement.allowed:
        raise PlacementBlocked(placement, (
            f"tenant {tenant.id!r} may not be moved to {moved.country}: placing its data in "
            f"location {new_location.id} is blocked: " + "; ".join(placement.reasons)))
    copied = size = 0
    if new_location.id != old_location.id:
        decision = policy.decide(tenant, new_location.country, PLACEMENT_CLASS,
                                 source=old_location.country)
        decision_id = audit.decision("transfer_check", tenant, decision, actor=actor,
                                     purpose=purpose)
        if not decision.allowed:
            raise TransferBlocked(decision)
        prefix = tenant_prefix(tenant)
        chosen = (tuple(providers) if providers is not None
                  else stores.data_providers(old_location))
        for provider in chosen:
            source = stores.get(old_location.backend(provider), old_location.id)
            dest_target = _destination(stores, new_location, provider)
            dest = stores.get(dest_target, new_location.id)
            for key in (info.key for info in source.list(prefix)):
                # Written ahead: the copy starts only once its intent is durable and
                # the tenant's lineage names it (erasure plans from that).
                intent = _intent_copy(audit, tenant, old_location, new_location,
                                      dest_target, key, actor, purpose,
                                      decision, decision_id)
                if lineage is not None:
                    lineage.copied(tenant, key[len(prefix):], source_location=old_location.id,
                                   destination_location=new_location.id,
                                   provider=dest_target.provider, bucket=dest_target.bucket,
                                   via="move", actor=actor)
                try:
                    n = _copy_verified(source, dest, key, old_location.id)
                except AuditUnavailable:
                    raise
                except ResidencyError as exc:
                    audit.outcome(intent, outcome="error",
                                  error=f"{type(exc).__name__}: {exc}")
                    raise
                audit.outcome(intent, outcome="ok", size=n)
                copied += 1
                size += n
        if deid is not None:  # the tenant's UID/date key and evidence go with its data
            deid.move(tenant, moved, actor=actor)
    registry.rebind(moved, current[0] if current else None, actor=actor)
    request_id = None
    if new_location.id != old_location.id:
        receipt = erase_old(tenant)
        request_id = receipt.request_id
    return MoveReceipt(tenant.id, tenant.country, moved.country, old_location.id,
                       new_location.id, copied, size, request_id)


def _destination(stores: StorePool, location: Location, provider: str) -> StorageTarget:
    if provider in location.backends:
        return location.backends[provider]
    return location.backend(stores.default_provider(location))


def _intent_copy(audit: AuditEmitter, tenant: Tenant, old: Location, new: Location,
                 target: StorageTarget, key: str, actor: str | None,
                 purpose: str | None, decision: Decision,
                 decision_id: str | None) -> AuditEvent | None:
    """The durable intent of one copy of a move (None when nothing listens); its
    outcome (``ok`` with the size, or ``error``) follows through ``audit.outcome``.
    Both carry the transfer decision's basis and name it in ``decision_id``."""
    if not audit.enabled:
        return None
    return audit.intent(AuditEvent(
        operation="transfer", outcome="intent", actor=actor,
        purpose=purpose or f"tenant_move:{tenant.id}", tenant_id=tenant.id,
        tenant_country=tenant.country, source_location=old.id,
        destination_location=new.id, destination_country=new.country, is_transfer=True,
        provider=target.provider, region=target.region, bucket=target.bucket,
        object_key=key[len(tenant_prefix(tenant)):], data_class=decision.data_class,
        mechanism=decision.mechanism, regimes=decision.regimes,
        agreements=decision.agreements, basis=basis_of(decision),
        decision_id=decision_id))

