"""The guarded facade users hold: a tenant-bound store that enforces residency.

:meth:`Residency.storage_for <residency_sdk.router.Residency.storage_for>` returns a
:class:`TenantStore` bound to the tenant's placement. It validates every key into the
tenant's own prefix, refuses writes whose placement lacks a mechanism
(:class:`PlacementBlocked`) or that put ``phi`` on a backend without a BAA
(:class:`BAARequired`), fails over only to the location's in-country failover backend,
and emits one :class:`AuditEvent` per operation (never contents, never credentials).
:func:`transfer` is what ``Residency.transfer`` delegates to; tenant erasure is
:mod:`residency_sdk.erasure` (``Residency.erase``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, TypeVar

from residency_sdk.errors import (
    BAARequired,
    BackendNotConfigured,
    BackendUnavailable,
    ObjectNotFound,
    PlacementBlocked,
    ResidencyError,
    StorageError,
    TransferBlocked,
    UnknownRetentionCategory,
)
from residency_sdk.events import AuditEvent
from residency_sdk.lifecycle import (
    CATEGORY_META,
    EXPIRES_META,
    expires_at,
    expiry_of,
)
from residency_sdk.model import DATA_CLASSES, Decision, Placement, StorageTarget, Tenant
from residency_sdk.storage import keys
from residency_sdk.storage.base import ObjectInfo, ObjectStore, ProgressCallback
from residency_sdk.storage.factory import failover_target, open_store

if TYPE_CHECKING:
    from residency_sdk.router import Residency

T = TypeVar("T")
ServedBy = Literal["primary", "failover"]

StoreOpener = Callable[[StorageTarget, str], ObjectStore]
"""Opens the store of a target in a location (``(target, location_id) -> ObjectStore``).
The default opens local targets under ``local_root`` and cloud targets with their adapter;
pass your own to :meth:`Residency.load` (``storage=``) to wrap or instrument stores."""

META_DATA_CLASS = "residency_data_class"
META_CREATED_AT = "residency_created_at"
META_TENANT = "residency_tenant"
META_SOURCE_LOCATION = "residency_source_location"
_RESERVED_META = "residency_"
# Lower-case identifiers: valid as S3 metadata (lower-cased on the wire), GCS metadata and
# Azure metadata names (C# identifiers), so one metadata dict works on every backend.
_META_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_META_VALUE = re.compile(r"^[\x20-\x7e]{0,1024}$")


@dataclass(frozen=True, slots=True)
class StoredObject(ObjectInfo):
    """An :class:`ObjectInfo` as the facade reports it: ``key`` is the tenant-relative key,
    plus where the object is stored and which backend (primary or failover) served."""

    stored_key: str = ""
    tenant_id: str = ""
    location: str = ""
    provider: str = ""
    region: str = ""
    bucket: str = ""
    served_by: ServedBy = "primary"

    @property
    def data_class(self) -> str | None:
        """The data class the object was stored as."""
        return self.metadata.get(META_DATA_CLASS)

    @property
    def created_at(self) -> datetime | None:
        """When the object was stored through the facade (used by retention)."""
        value = self.metadata.get(META_CREATED_AT)
        return datetime.fromisoformat(value) if value else None

    @property
    def category(self) -> str | None:
        """The retention category the object was stored with (None: not governed)."""
        return self.metadata.get(CATEGORY_META)

    @property
    def expires_at(self) -> datetime | None:
        """When the object's retention period ends (None without a category)."""
        return expiry_of(self.metadata)


class StorePool:
    """Opens each (target, location) store once and shares it (adapters are thread-safe)."""

    def __init__(self, local_root: Path | None, opener: StoreOpener | None) -> None:
        self.local_root = local_root
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

    def close(self) -> None:
        """Close every store opened so far."""
        with self._lock:
            stores, self._stores = list(self._stores.values()), {}
        for store in stores:
            store.close()


def backend_for(res: Residency, location: str, provider: str | None) -> StorageTarget:
    """The storage target of ``provider`` in ``location``. By default the location's
    default provider, or ``local`` when the Residency was loaded with ``local_root``."""
    loc = res.map.locations[location]
    if provider is None:
        provider = "local" if res.local_root is not None else loc.default_provider
    target = loc.backends.get(provider)
    if target is None:
        raise BackendNotConfigured(
            f"location {location} has no {provider!r} backend (it has: "
            f"{', '.join(sorted(loc.backends))}): add one under locations.{location}.backends "
            "in the region map or choose another provider")
    return target


def require_baa(target: StorageTarget, location: str, data_class: str) -> None:
    """Raise :class:`BAARequired` for ``phi`` aimed at a target with ``baa: false``."""
    if data_class == "phi" and not target.baa:
        raise BAARequired(
            f"phi refused on the {target.provider} backend {target.bucket!r} of location "
            f"{location}: its map entry has baa: false. Sign a Business Associate Agreement "
            "with the provider and set `baa: true`, or store non-phi data only")


def _stricter(a: str, b: str) -> str:
    """The stricter of two data classes (phi > personal > anonymised)."""
    order = {name: i for i, name in enumerate(DATA_CLASSES)}
    return a if order.get(a, -1) <= order.get(b, -1) else b


def _check_user_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise StorageError(f"metadata must be a dict of str to str, got {metadata!r}")
    for name, value in metadata.items():
        if not isinstance(name, str) or not _META_NAME.fullmatch(name):
            raise StorageError(f"invalid metadata name {name!r}: use lower-case letters, "
                               "digits and '_', starting with a letter (max 63)")
        if name.startswith(_RESERVED_META):
            raise StorageError(f"metadata name {name!r} is reserved: names starting with "
                               f"{_RESERVED_META!r} are set by residency-sdk")
        if not isinstance(value, str) or not _META_VALUE.fullmatch(value):
            raise StorageError(f"invalid metadata value for {name!r}: use printable ASCII, "
                               "at most 1024 characters")
    return dict(metadata)


def _rewinder(data: bytes | BinaryIO) -> Callable[[], bool]:
    """A function that puts ``data`` back at its start for a failover attempt; it returns
    False when the source is a stream that cannot be read twice."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return lambda: True
    try:
        start = data.tell() if data.seekable() else None
    except (AttributeError, OSError, ValueError):
        start = None
    if start is None:
        return lambda: False

    def rewind() -> bool:
        data.seek(start)
        return True

    return rewind


class TenantStore:
    """One tenant's objects in its residency location (what users hold).

    Keys are relative to the tenant's prefix (``tenants/<tenant_id>/``), validated, and
    can never reach another tenant's objects.
    """

    def __init__(self, res: Residency, tenant: Tenant, placement: Placement,
                 target: StorageTarget, *, actor: str | None = None,
                 purpose: str | None = None) -> None:
        self._res = res
        self.tenant = tenant
        self.placement = placement
        self.location = placement.location
        self.target = target
        self.failover = failover_target(target, regions=res.regions)
        self.actor = actor
        self.purpose = purpose
        self._decisions: dict[str, Decision] = {}

    def __repr__(self) -> str:
        t = self.target
        return (f"TenantStore(tenant={self.tenant.id!r}, location={self.location!r}, "
                f"provider={t.provider!r}, bucket={t.bucket!r})")

    # --- plumbing ------------------------------------------------------------------------

    def _store(self, role: ServedBy) -> ObjectStore:
        target = self.target if role == "primary" else self.failover
        assert target is not None
        return self._res.store(target, self.location)

    def _target(self, role: ServedBy) -> StorageTarget:
        return self.target if role == "primary" or self.failover is None else self.failover

    def _with_failover(self, op: Callable[[ObjectStore], T],
                       rewind: Callable[[], bool] | None = None) -> tuple[T, ServedBy]:
        """Run ``op`` on the primary; on :class:`BackendUnavailable` (after the adapter's
        retries) run it on the in-country failover, when the location has one."""
        try:
            return op(self._store("primary")), "primary"
        except BackendUnavailable as exc:
            if self.failover is None:
                raise
            if rewind is not None and not rewind():
                raise BackendUnavailable(
                    f"{exc}; the failover backend was not tried because the data is a "
                    "stream that cannot be read twice (pass bytes or a seekable file)") from exc
            try:
                return op(self._store("failover")), "failover"
            except BackendUnavailable as again:
                raise BackendUnavailable(
                    f"primary and in-country failover backends of {self.location} both "
                    f"failed: {exc}; {again}") from again
            except ObjectNotFound as missing:
                # The failover holds only what was written while the primary was down: its
                # "not found" says nothing about the object, which may well be on the
                # primary. Reporting it as missing would invite re-creating or giving up
                # on data that exists.
                raise BackendUnavailable(
                    f"{exc}; the in-country failover of {self.location} does not hold the "
                    "object (it only has what was written while the primary was down) - "
                    "read it again when the primary is back") from missing

    def _emit(self, operation: Any, outcome: Any, *, served: ServedBy | None = None,
              key: str | None = None, info: ObjectInfo | None = None,
              data_class: str | None = None, error: BaseException | str | None = None,
              decision: Decision | None = None, **extra: Any) -> None:
        if not self._res.audit_hooks:
            return
        target = self._target(served or "primary")
        fields_: dict[str, Any] = {
            "operation": operation, "outcome": outcome, "actor": self.actor,
            "purpose": self.purpose, "tenant_id": self.tenant.id,
            "tenant_country": self.tenant.country, "data_class": data_class,
            "source_location": self.location, "provider": target.provider,
            "region": target.region, "bucket": target.bucket, "served_by": served,
            "object_key": key, "size": info.size if info else None,
            "checksum": info.checksum if info else None,
            "error": (f"{type(error).__name__}: {error}" if isinstance(error, BaseException)
                      else error),
        }
        if decision is not None:
            fields_.update(is_transfer=decision.is_transfer, mechanism=decision.mechanism,
                           regimes=decision.regimes, reasons=decision.reasons,
                           destination_country=decision.destination)
        fields_.update(extra)
        self._res.emit(AuditEvent(**fields_))

    def _audited(self, operation: str, key: str | None, run: Callable[[], tuple[T, ServedBy]],
                 *, data_class: str | None = None,
                 describe: Callable[[T], ObjectInfo | None] = lambda _: None) -> T:
        try:
            result, served = run()
        except Exception as exc:  # audited whatever failed, then re-raised unchanged
            outcome = "blocked" if isinstance(exc, (TransferBlocked, BAARequired)) else "error"
            # An invalid key is recorded cut to the key limit: it was never validated.
            shown = key[: keys.MAX_KEY_BYTES] if isinstance(key, str) else None
            self._emit(operation, outcome, key=shown, data_class=data_class, error=exc)
            raise
        self._emit(operation, "ok", served=served, key=key, info=describe(result),
                   data_class=data_class)
        return result

    def _report(self, info: ObjectInfo, served: ServedBy) -> StoredObject:
        target = self._target(served)
        values = {f.name: getattr(info, f.name) for f in fields(ObjectInfo)}
        values["key"] = keys.relative_key(self.tenant, info.key)
        return StoredObject(**values, stored_key=info.key, tenant_id=self.tenant.id,
                            location=self.location, provider=target.provider,
                            region=target.region, bucket=target.bucket, served_by=served)

    def _placement_decision(self, data_class: str) -> Decision:
        decision = self._decisions.get(data_class)
        if decision is None:
            decision = self._res.check_placement(self.tenant, data_class)
            self._decisions[data_class] = decision
        return decision

    def check_write(self, data_class: str) -> str:
        """Refuse a write of ``data_class`` that residency forbids; return the class.

        Raises :class:`PlacementBlocked` when storing the tenant's data in its location is
        itself a transfer it has no mechanism for, and :class:`BAARequired` for ``phi`` on
        a backend whose target has ``baa: false``.
        """
        dc = self._res.rules.check_data_class(data_class)
        decision = self._placement_decision(dc)
        if not decision.allowed:
            raise PlacementBlocked(decision, (
                f"tenant {self.tenant.id!r} ({self.tenant.country}) may not store {dc} data "
                f"in location {self.location}: " + "; ".join(decision.reasons)))
        require_baa(self.target, self.location, dc)
        return dc

    # --- the data operations ----------------------------------------------------------

    def check_category(self, category: str | None,
                       metadata: dict[str, str] | None = None) -> str | None:
        """The retention category of a write, validated against the location's retention.

        ``category`` may be given as the argument or as ``metadata["category"]`` (the same
        value if both). Returns None for a write without a category (not governed by
        retention). Raises :class:`UnknownRetentionCategory` for a category the map has no
        period for in this location: no lifecycle rule would ever delete such an object.
        """
        from_meta = (metadata or {}).get(CATEGORY_META)
        if category is not None and from_meta is not None and category != from_meta:
            raise StorageError(
                f"retention category given twice with different values: category="
                f"{category!r}, metadata[{CATEGORY_META!r}]={from_meta!r}: give it once")
        chosen = category if category is not None else from_meta
        if chosen is None:
            return None
        known = sorted(self._res.map.locations[self.location].retention)
        if not isinstance(chosen, str) or chosen not in known:
            raise UnknownRetentionCategory(
                f"unknown retention category {chosen!r} for location {self.location} in "
                f"region map {self._res.map.name!r}: use one of {', '.join(known) or 'none'}, "
                f"or add it under `retention` (locations.{self.location}.retention)")
        return chosen

    def put(self, key: str, data: bytes | BinaryIO, data_class: str = "phi",
            metadata: dict[str, str] | None = None,
            progress: ProgressCallback | None = None, *,
            category: str | None = None) -> StoredObject:
        """Store ``data`` (bytes or a binary file object, streamed) under ``key``.

        ``data_class`` and the creation time are stored as object metadata. ``category``
        (or ``metadata["category"]``) names the map's retention category: it is validated
        (:class:`UnknownRetentionCategory`), stored with the object's expiry time, and
        marked where the cloud's lifecycle engine selects it (S3 object tag, Azure blob
        index tag, GCS custom time; see :mod:`residency_sdk.lifecycle`). Refused with
        :class:`PlacementBlocked` / :class:`BAARequired` before any byte is sent.
        """
        def run() -> tuple[StoredObject, ServedBy]:
            stored = keys.tenant_key(self.tenant, key)
            dc = self.check_write(data_class)
            user_meta = _check_user_metadata(metadata)
            cat = self.check_category(category, user_meta)
            now = datetime.now(UTC)
            meta = {**user_meta, META_DATA_CLASS: dc, META_CREATED_AT: now.isoformat(),
                    META_TENANT: self.tenant.id}
            if cat is not None:
                period = self._res.map.locations[self.location].retention[cat].period
                meta[CATEGORY_META] = cat
                meta[EXPIRES_META] = expires_at(now, period).isoformat()
            info, served = self._with_failover(
                lambda s: s.put(stored, data, metadata=meta, progress=progress),
                rewind=_rewinder(data))
            return self._report(info, served), served

        return self._audited("put", key, run, data_class=data_class, describe=lambda i: i)

    def get(self, key: str) -> bytes:
        """The whole object (checksum verified). For large objects use :meth:`open`."""
        stored = keys.tenant_key(self.tenant, key)
        data: bytes = self._audited(
            "get", key, lambda: self._with_failover(lambda s: s.get(stored)),
            describe=lambda d: ObjectInfo(key=stored, size=len(d)))
        return data

    def open(self, key: str) -> BinaryIO:
        """A streaming reader over the object; the checksum is verified at its end."""
        stored = keys.tenant_key(self.tenant, key)
        reader: BinaryIO = self._audited(
            "get", key, lambda: self._with_failover(lambda s: s.open(stored)))
        return reader

    def head(self, key: str) -> StoredObject:
        """Size, checksum, encryption, metadata and where the object is stored."""
        def run() -> tuple[StoredObject, ServedBy]:
            info, served = self._with_failover(
                lambda s: s.head(keys.tenant_key(self.tenant, key)))
            return self._report(info, served), served

        return self._audited("head", key, run, describe=lambda i: i)

    def exists(self, key: str) -> bool:
        """True if the tenant has an object under ``key``."""
        stored = keys.tenant_key(self.tenant, key)
        found: bool = self._audited("head", key,
                                    lambda: self._with_failover(lambda s: s.exists(stored)))
        return found

    def delete(self, key: str) -> bool:
        """Delete one object; True if it existed. (``Residency.erase`` erases the whole
        tenant, failover backend included.)"""
        stored = keys.tenant_key(self.tenant, key)
        deleted: bool = self._audited("delete", key,
                                      lambda: self._with_failover(lambda s: s.delete(stored)))
        return deleted

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        """The tenant's objects whose key starts with ``prefix`` (relative keys).

        One audit event is emitted when the backend first answers (or fails)."""
        stored_prefix = keys.tenant_list_prefix(self.tenant, prefix)

        def first_page(store: ObjectStore) -> tuple[Iterator[ObjectInfo], ObjectInfo | None]:
            items = iter(store.list(stored_prefix))
            return items, next(items, None)

        try:
            (items, first), served = self._with_failover(first_page)
        except ResidencyError as exc:
            self._emit("list", "error", key=prefix or None, error=exc)
            raise
        self._emit("list", "ok", served=served, key=prefix or None)
        return self._iter_reported(items, first, served)

    def _iter_reported(self, items: Iterator[ObjectInfo], first: ObjectInfo | None,
                       served: ServedBy) -> Iterator[StoredObject]:
        if first is None:
            return
        yield self._report(first, served)
        for info in items:
            yield self._report(info, served)


# --- Residency-level operations --------------------------------------------------------


def storage_for(res: Residency, tenant: Tenant, *, provider: str | None = None,
                actor: str | None = None, purpose: str | None = None,
                audit_placement: bool = True) -> TenantStore:
    """A :class:`TenantStore` bound to ``tenant``'s placement (see Residency.storage_for)."""
    placement = res.resolve(tenant)
    target = backend_for(res, placement.location, provider)
    store = TenantStore(res, tenant, placement, target, actor=actor, purpose=purpose)
    if audit_placement and res.audit_hooks:
        # The binding is audited against the strictest class; each write is checked for
        # its own class when it happens.
        decision = _silent_placement(res, tenant)
        store._emit("placement", "allowed" if decision.allowed else "blocked",
                    data_class="phi", decision=decision)
    return store


def _silent_placement(res: Residency, tenant: Tenant) -> Decision:
    location_country = res.map.locations[res.resolve(tenant).location].country
    return res._decide(tenant, location_country, "phi", tenant.country)


def resolve_destination(res: Residency, to: str) -> str:
    """The location id for a transfer destination: a location id, or the country of
    exactly one location. Anything else is refused: copies only go to residency locations."""
    wanted = to.strip().upper() if isinstance(to, str) else to
    if wanted in res.map.locations:
        return str(wanted)
    matches = [lid for lid, loc in res.map.locations.items() if loc.country == wanted]
    if len(matches) == 1:
        return matches[0]
    raise BackendNotConfigured(
        f"transfer destination {to!r} is not a residency location of map {res.map.name!r} "
        f"(locations: {', '.join(sorted(res.map.locations))}): objects are only copied into "
        "a location the map defines")


def transfer(res: Residency, tenant: Tenant, key: str, to: str, data_class: str = "phi", *,
             actor: str | None = None, purpose: str | None = None,
             provider: str | None = None) -> StoredObject:
    """Copy one object of ``tenant`` into location ``to`` if the transfer is lawful.

    The decision comes first: a blocked transfer raises :class:`TransferBlocked` before any
    byte is read or written, so nothing is copied. The stricter of ``data_class`` and the
    class the object was stored as decides.
    """
    source = storage_for(res, tenant, provider=provider, actor=actor, purpose=purpose,
                         audit_placement=False)
    stored = keys.tenant_key(tenant, key)
    dest_location = resolve_destination(res, to)
    if dest_location == source.location:
        raise StorageError(f"object {key!r} of tenant {tenant.id!r} already lives in "
                           f"location {dest_location}: nothing to transfer")
    dest_country = res.map.locations[dest_location].country
    source_country = res.map.locations[source.location].country
    dest = TenantStore(res, tenant, source.placement,
                       backend_for(res, dest_location, provider), actor=actor, purpose=purpose)
    dest.location = dest_location

    def emit(outcome: str, decision: Decision | None, *, served: ServedBy | None = None,
             info: ObjectInfo | None = None, error: BaseException | None = None,
             dc: str | None = None) -> None:
        dest._emit("transfer", outcome, served=served, key=key, info=info, error=error,
                   data_class=dc or data_class, decision=decision,
                   source_location=source.location, destination_location=dest_location,
                   destination_country=dest_country)

    def decide(dc: str) -> Decision:
        decision = res.check_transfer(tenant, dest_country, dc, source=source_country,
                                      actor=actor, purpose=purpose)
        if not decision.allowed:
            error = TransferBlocked(decision)
            emit("blocked", decision, error=error, dc=dc)
            raise error
        return decision

    decision = decide(res.rules.check_data_class(data_class))
    try:
        info, _ = source._with_failover(lambda s: s.head(stored))
        dc = _stricter(decision.data_class, info.metadata.get(META_DATA_CLASS) or "phi")
        if dc != decision.data_class:
            decision = decide(dc)
        require_baa(dest.target, dest_location, dc)
        meta = {**info.metadata, META_SOURCE_LOCATION: source.location}

        def copy(target_store: ObjectStore) -> ObjectInfo:
            reader, _ = source._with_failover(lambda s: s.open(stored))
            with reader:
                return target_store.put(stored, reader, metadata=meta)

        copied, served = dest._with_failover(copy)
    except ResidencyError as exc:
        emit("blocked" if isinstance(exc, BAARequired) else "error", decision, error=exc)
        raise
    result = dest._report(copied, served)
    emit("ok", decision, served=served, info=result, dc=dc)
    return result
