"""The facade users hold: :class:`Residency` routes tenants and decides transfers."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from residency_sdk.countries import normalise_country
from residency_sdk.errors import InvalidTenant, NoRoute, TransferBlocked
from residency_sdk.events import AuditEvent, AuditHook
from residency_sdk.model import Decision, Placement, Tenant
from residency_sdk.regionmap import RegionMap, cloud_region_table, load_region_map
from residency_sdk.rules import TransferRules, load_transfer_rules

if TYPE_CHECKING:
    from datetime import datetime

    from residency_sdk.erasure import ErasureReceipt
    from residency_sdk.model import StorageTarget
    from residency_sdk.storage.base import ObjectStore
    from residency_sdk.storage.facade import StoredObject, StoreOpener, TenantStore

STATE_DIR_NAME = ".residency-state"
"""The default state folder's name, under ``local_root``."""
# The strictest class decides what placement itself needs.
_PLACEMENT_CLASS = "phi"
# Decisions are pure; the bound keeps a flood of distinct junk inputs from growing memory.
_DECISION_CACHE_SIZE = 100_000


class Residency:
    """Routes tenants to residency locations and decides cross-border transfers.

    Build one with :meth:`load`; it is immutable after construction, safe to share between
    threads, and caches every pure answer.
    """

    def __init__(self, region_map: RegionMap, rules: TransferRules,
                 audit_hooks: Iterable[AuditHook] = (), *, local_root: str | Path | None = None,
                 storage: StoreOpener | None = None,
                 state_dir: str | Path | None = None) -> None:
        self.map = region_map
        self.rules = rules
        self._hooks: tuple[AuditHook, ...] = tuple(audit_hooks)
        # Storage: the embedded local backend under local_root, or the map's providers.
        from residency_sdk.storage.facade import StorePool  # no cloud SDK is imported

        self.local_root = Path(local_root) if local_root is not None else None
        self.state_dir: Path | None = (
            Path(state_dir) if state_dir is not None
            else self.local_root / STATE_DIR_NAME if self.local_root is not None else None)
        """Where tracked erasure requests are kept (see :meth:`erase`); None when neither
        ``state_dir`` nor ``local_root`` was given."""
        self._store_pool = StorePool(self.local_root, storage)
        self.regions: dict[str, dict[str, str]] = cloud_region_table(region_map)
        """provider -> cloud region -> country (built-in table plus the map's own)."""
        self._placements: dict[str, Placement] = {
            country: self._build_placement(country) for country in region_map.routes
        }
        self._decisions: dict[tuple[Any, ...], Decision] = {}

    @classmethod
    def load(cls, path: str | Path | None = None, *, audit: Any = None,
             audit_hooks: Iterable[AuditHook] = (), local_root: str | Path | None = None,
             storage: StoreOpener | None = None,
             state_dir: str | Path | None = None) -> Residency:
        """Load a region map (the packaged default when ``path`` is None).

        ``audit`` may be a path to an audit database (``"audit.db"``) or an object with an
        ``append(event)`` method; every decision and data operation is then recorded.
        ``local_root`` makes every location store objects in its ``local`` backend under
        that folder (the embedded default, no cloud needed); ``storage`` replaces how
        stores are opened (``(target, location_id) -> ObjectStore``). ``state_dir`` is
        the durable folder for tracked erasure requests (default
        ``<local_root>/.residency-state``; see :meth:`erase`).
        """
        region_map = load_region_map(path)
        rules = load_transfer_rules(region_map.rules_file, region_map.groups)
        hooks = list(audit_hooks)
        if audit is not None:
            hooks.append(_audit_sink(audit))
        return cls(region_map, rules, hooks, local_root=local_root, storage=storage,
                   state_dir=state_dir)

    # --- routing ---------------------------------------------------------------------

    def resolve(self, tenant: Tenant) -> Placement:
        """Where ``tenant``'s data lives. Raises :class:`NoRoute` when the map has no route."""
        try:
            return self._placements[tenant.country]
        except KeyError:
            raise NoRoute(tenant.country, self.map.name) from None
        except AttributeError:
            raise InvalidTenant(f"expected a residency_sdk.Tenant, got {tenant!r}") from None

    def resolve_country(self, country: str) -> Placement:
        """Like :meth:`resolve`, for a bare country code (normalised first)."""
        code = normalise_country(country)
        try:
            return self._placements[code]
        except KeyError:
            raise NoRoute(code, self.map.name) from None

    # --- transfers -------------------------------------------------------------------

    def check_transfer(self, tenant: Tenant, to: str, data_class: str = "phi", *,
                       source: str | None = None, actor: str | None = None,
                       purpose: str | None = None) -> Decision:
        """Decide whether ``tenant``'s ``data_class`` data may move to country ``to``.

        ``source`` is the country where the data lives now; it defaults to the tenant's
        residency location. The decision is audited (allowed and blocked alike).
        """
        try:
            key = (tenant.country, tenant.agreements, to, data_class, source)
            decision = self._decisions.get(key)
        except (AttributeError, TypeError):  # not a Tenant, or unhashable junk arguments
            key, decision = None, None
        if decision is None:
            decision = self._decide(tenant, to, data_class, source)
            if key is not None and len(self._decisions) < _DECISION_CACHE_SIZE:
                self._decisions[key] = decision
        if self._hooks:
            self.emit(AuditEvent(
                operation="transfer_check", outcome="allowed" if decision.allowed else "blocked",
                actor=actor, purpose=purpose, tenant_id=tenant.id,
                tenant_country=tenant.country, data_class=decision.data_class,
                source_location=decision.source, destination_country=decision.destination,
                is_transfer=decision.is_transfer, mechanism=decision.mechanism,
                regimes=decision.regimes, reasons=decision.reasons))
        return decision

    def require_transfer(self, tenant: Tenant, to: str, data_class: str = "phi", *,
                         source: str | None = None, actor: str | None = None,
                         purpose: str | None = None) -> Decision:
        """Like :meth:`check_transfer`, but raise :class:`TransferBlocked` when blocked."""
        decision = self.check_transfer(tenant, to, data_class, source=source, actor=actor,
                                       purpose=purpose)
        if not decision.allowed:
            raise TransferBlocked(decision)
        return decision

    def check_placement(self, tenant: Tenant, data_class: str = "phi") -> Decision:
        """Decide whether placing ``tenant``'s data in its location is itself lawful."""
        placement = self.resolve(tenant)
        location_country = self.map.locations[placement.location].country
        return self.check_transfer(tenant, location_country, data_class, source=tenant.country)

    # --- storage ---------------------------------------------------------------------

    def storage_for(self, tenant: Tenant, *, provider: str | None = None,
                    actor: str | None = None, purpose: str | None = None) -> TenantStore:
        """A store bound to ``tenant``'s placement: keys live under the tenant's prefix,
        writes are checked against residency, every operation is audited.

        ``provider`` picks a backend of the location (default: the map's default provider,
        or ``local`` when loaded with ``local_root``). Emits one ``placement`` event.
        """
        from residency_sdk.storage.facade import storage_for

        return storage_for(self, tenant, provider=provider, actor=actor, purpose=purpose)

    def transfer(self, tenant: Tenant, key: str, to: str, data_class: str = "phi", *,
                 actor: str | None = None, purpose: str | None = None,
                 provider: str | None = None) -> StoredObject:
        """Copy ``tenant``'s object ``key`` into location ``to`` only if
        :meth:`check_transfer` allows it; otherwise raise :class:`TransferBlocked` and copy
        nothing. ``to`` must be a residency location of the map."""
        from residency_sdk.storage.facade import transfer

        return transfer(self, tenant, key, to, data_class, actor=actor, purpose=purpose,
                        provider=provider)

    def erase(self, tenant: Tenant, *, providers: Iterable[str] | None = None,
              actor: str | None = None, purpose: str | None = None,
              reason: str | None = None, terminated_at: datetime | None = None,
              state_dir: str | Path | None = None) -> ErasureReceipt:
        """Erase every object of ``tenant`` as a tracked erasure request and return its
        receipt (objects, bytes, start and finish, per-backend results, request id).

        The request is recorded, run on every backend of the tenant's location (each
        provider's primary and in-country failover; ``providers`` defaults to ``local``
        with ``local_root``, else every cloud backend), verified by a fresh listing, and
        its receipt's SHA-256 recorded in the audit trail (see
        :mod:`residency_sdk.erasure`). Objects under a legal hold are kept.

        State lives in ``state_dir`` (this call's, else the one given to :meth:`load`,
        else ``<local_root>/.residency-state``); without any, :class:`ErasureError` is
        raised before anything is deleted: request state must outlive the process.

        When the erasure cannot finish the request stays open and
        :class:`ErasureUnavailable` (a :class:`BackendUnavailable`: a backend could not be
        reached), :class:`ErasureBlocked` (legal hold) or :class:`ErasureIncomplete` is
        raised with ``.receipt`` and ``.request_id``; calling ``erase`` again for the
        tenant (or ``ErasureTracker.run(request_id)``) resumes that request.
        """
        from residency_sdk.erasure import erase

        return erase(self, tenant, providers=providers, actor=actor, purpose=purpose,
                     reason=reason, terminated_at=terminated_at, state_dir=state_dir)

    def store(self, target: StorageTarget, location: str) -> ObjectStore:
        """The raw adapter of ``target`` in ``location``, opened once and shared (no
        residency checks, no audit: for sweeps and erasure, not application code)."""
        return self._store_pool.get(target, location)

    def close(self) -> None:
        """Close every storage client this Residency opened."""
        self._store_pool.close()

    # --- audit -----------------------------------------------------------------------

    @property
    def audit_hooks(self) -> tuple[AuditHook, ...]:
        """The callables that receive every audit event."""
        return self._hooks

    def add_audit_hook(self, hook: AuditHook) -> None:
        """Send every later audit event to ``hook`` as well."""
        self._hooks = (*self._hooks, hook)

    def emit(self, event: AuditEvent) -> None:
        """Deliver ``event`` to every audit hook. A failing hook propagates: an operation
        that cannot be audited must not pass silently."""
        for hook in self._hooks:
            hook(event)

    # --- internals -------------------------------------------------------------------

    def _decide(self, tenant: Tenant, to: str, data_class: str, source: str | None) -> Decision:
        if not isinstance(tenant, Tenant):
            raise InvalidTenant(f"expected a residency_sdk.Tenant, got {tenant!r}")
        self.rules.check_agreements(tenant.agreements)
        dc = self.rules.check_data_class(data_class)
        destination = normalise_country(to)
        if source is None:
            placement = self.resolve(tenant)
            origin_of_data = self.map.locations[placement.location].country
        else:
            origin_of_data = normalise_country(source)
        return self.rules.decide(tenant_country=tenant.country, source=origin_of_data,
                                 destination=destination, data_class=dc,
                                 agreements=tenant.agreements)

    def _build_placement(self, country: str) -> Placement:
        route = self.map.routes[country]
        location = self.map.locations[route.location]
        needs = self.rules.decide(tenant_country=country, source=country,
                                  destination=location.country, data_class=_PLACEMENT_CLASS,
                                  agreements=frozenset())
        return Placement(
            country=country, location=location.id, storage=location.default_storage,
            compute=location.compute[0] if location.compute else None,
            backends=tuple(location.backends.values()),
            required_mechanisms=needs.unblock_with if not needs.allowed else (),
            matched_route=route.matched,
        )


def _audit_sink(audit: Any) -> AuditHook:
    if hasattr(audit, "append"):
        return audit.append  # type: ignore[no-any-return]
    from residency_sdk.audit import AuditLog  # imported lazily: SQLite setup on demand

    log = AuditLog(audit)
    return log.append
