"""The SDK's own records about a tenant, kept in a location: how they are written, read
and audited.

Tenant records (:mod:`residency_sdk.tenants`), lineage (:mod:`residency_sdk.lineage`) and
de-identification keys and evidence (:mod:`residency_sdk.deid_records`) are small objects
under ``_residency/`` in a location's *record stores*: the default backend's primary and
its in-country failover (:meth:`StorePool.record_stores
<residency_sdk.storage.pool.StorePool.record_stores>`), so every process of a fleet
sees the same ones. They share three rules, kept here once:

- a record is written to every record store, and at least one must take it
  (:meth:`SdkRecords.write`); it is read from the primary, else (primary down) from the
  failover, and both down fails closed (:meth:`SdkRecords.read`);
- every write, delete (and, where a caller asks, read) is audited ahead like a data
  operation: a durable intent naming the record and the purpose, then the outcome
  (:meth:`SdkRecords.audited`); an intent that cannot be recorded stops the operation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeVar

from residency_sdk.errors import AuditUnavailable, BackendUnavailable, ObjectNotFound
from residency_sdk.events import AuditEmitter, AuditEvent
from residency_sdk.model import Tenant
from residency_sdk.regionmap import Location
from residency_sdk.storage.pool import StorePool

T = TypeVar("T")
Operation = Literal["put", "get", "delete"]


class SdkRecords:
    """Writes, reads and audits SDK records in locations' record stores."""

    def __init__(self, stores: StorePool, audit: AuditEmitter | None = None) -> None:
        self._stores = stores
        self._audit = audit

    def write(self, location: Location, key: str, data: bytes,
              metadata: dict[str, str]) -> None:
        """Put ``data`` under ``key`` on every record store of ``location``; one must
        succeed (the failover's copy serves lookups while the primary is down)."""
        written, errors = 0, []
        for store in self._stores.record_stores(location):
            try:
                store.put(key, data, metadata=metadata)
                written += 1
            except BackendUnavailable as exc:
                errors.append(exc)
        if not written:
            raise errors[0]

    def read(self, location: Location, key: str, *, what: str = "SDK record") -> bytes | None:
        """The record ``key`` of ``location``: the primary's (None when it has none),
        else, primary down, the failover's; both down raises
        :class:`BackendUnavailable` naming ``what``."""
        first: BackendUnavailable | None = None
        for store in self._stores.record_stores(location):
            try:
                return store.get(key)
            except ObjectNotFound:
                return None
            except BackendUnavailable as exc:
                if first is not None:
                    raise BackendUnavailable(
                        f"{what} of location {location.id}: primary and in-country "
                        f"failover backends both failed: {first}; {exc}") from exc
                first = exc
        assert first is not None
        raise first

    def audited(self, operation: Operation, location: Location, tenant: Tenant, key: str,
                run: Callable[[], T], *, purpose: str, actor: str | None = None,
                data_class: str | None = None) -> T:
        """Run ``run`` (an operation on the record ``key`` of ``location``) with its
        intent durable first and its outcome after; without an audit trail, just run
        it."""
        audit = self._audit
        if audit is None or not audit.enabled:
            return run()
        target = location.backend(self._stores.default_provider(location))
        intent = audit.intent(AuditEvent(
            operation=operation, outcome="intent", actor=actor, purpose=purpose,
            tenant_id=tenant.id, tenant_country=tenant.country, data_class=data_class,
            source_location=location.id, provider=target.provider, region=target.region,
            bucket=target.bucket, object_key=key))
        try:
            result = run()
        except AuditUnavailable:
            raise
        except Exception as exc:
            audit.outcome(intent, outcome="error", error=f"{type(exc).__name__}: {exc}")
            raise
        audit.outcome(intent, outcome="ok")
        return result
