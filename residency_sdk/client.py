"""The client users hold: :class:`Residency` = the policy, the store pool, the audit trail.

:class:`~residency_sdk.policy.ResidencyPolicy` answers where data lives and whether it may
move (pure, cached). :class:`Residency` adds what touches the world: it audits every
decision, opens tenant stores, copies between locations, erases tenants and sweeps
retention, handing each of those the narrow pieces it needs (the policy, the
:class:`~residency_sdk.storage.pool.StorePool`, the
:class:`~residency_sdk.events.AuditEmitter`), never itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from residency_sdk.countries import normalise_country
from residency_sdk.erasure import ErasureReceipt, ErasureTracker
from residency_sdk.errors import ErasureError, InvalidSource, TransferBlocked
from residency_sdk.events import AuditEmitter, AuditEvent, AuditHook
from residency_sdk.model import Decision, StorageTarget, Tenant
from residency_sdk.policy import PLACEMENT_CLASS, PlacementTable, ResidencyPolicy
from residency_sdk.regionmap import RegionMap, Role
from residency_sdk.regions import RegionTable
from residency_sdk.retention import RetentionSweep
from residency_sdk.rules import TransferRules
from residency_sdk.storage.base import ObjectStore
from residency_sdk.storage.pool import StoreOpener, StorePool
from residency_sdk.storage.tenant_store import (
    StoredObject,
    TenantStore,
    open_tenant_store,
    transfer,
)
from residency_sdk.tenants import MoveReceipt, TenantRegistry, move_tenant

STATE_DIR_NAME = ".residency-state"
"""The default state folder's name, under ``local_root``."""


class Residency(PlacementTable):
    """Routes tenants to residency locations, decides and audits cross-border transfers,
    and opens the guarded tenant stores.

    Build one with :meth:`load`; it is safe to share between threads, and every pure
    answer is cached by its :attr:`policy`.
    """

    def __init__(self, region_map: RegionMap | ResidencyPolicy,
                 rules: TransferRules | None = None,
                 audit_hooks: Iterable[AuditHook] = (), *, local_root: str | Path | None = None,
                 storage: StoreOpener | None = None,
                 state_dir: str | Path | None = None) -> None:
        if isinstance(region_map, ResidencyPolicy):
            self.policy = region_map
        else:
            if rules is None:
                raise TypeError("Residency(region_map, rules): the transfer rules are "
                                "needed with a region map (or pass a ResidencyPolicy)")
            self.policy = ResidencyPolicy(region_map, rules)
        """The pure policy: region map and transfer rules."""
        self.audit = AuditEmitter(audit_hooks)
        """Where every audit event goes."""
        # resolve() and resolve_country() (from PlacementTable) read the policy's table.
        self.map = self.policy.map
        """The compiled region map."""
        self.placements = self.policy.placements
        self._known_decisions = self.policy.decision_cache
        self.stores = StorePool(local_root, storage)
        """Opens and shares the adapters of every backend."""
        self.tenants = TenantRegistry(self.policy, self.stores)
        """Binds each tenant id to one country (see :mod:`residency_sdk.tenants`)."""
        self.local_root = self.stores.local_root
        self.state_dir: Path | None = (
            Path(state_dir) if state_dir is not None
            else self.local_root / STATE_DIR_NAME if self.local_root is not None else None)
        """Where tracked erasure requests are kept (see :meth:`erase`); None when neither
        ``state_dir`` nor ``local_root`` was given."""

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
        stores are opened (``(target, location_id) -> ObjectStore``, for example
        ``lambda target, location: MemoryStore(target)`` in unit tests). ``state_dir`` is
        the durable folder for tracked erasure requests (default
        ``<local_root>/.residency-state``; see :meth:`erase`).
        """
        policy = ResidencyPolicy.load(path)
        hooks = list(audit_hooks)
        if audit is not None:
            hooks.append(_audit_sink(audit))
        return cls(policy, audit_hooks=hooks, local_root=local_root, storage=storage,
                   state_dir=state_dir)

    # --- the policy, for reading -------------------------------------------------------

    @property
    def rules(self) -> TransferRules:
        """The transfer rules."""
        return self.policy.rules

    @property
    def regions(self) -> RegionTable:
        """provider -> cloud region -> country (built-in table plus the map's own)."""
        return self.policy.regions

    # --- transfers ---------------------------------------------------------------------

    def check_transfer(self, tenant: Tenant, to: str, data_class: str = "phi", *,
                       source: str | None = None, actor: str | None = None,
                       purpose: str | None = None) -> Decision:
        """Decide whether ``tenant``'s ``data_class`` data may move to country ``to``.

        Where the data lives is derived, never taken from the caller: the tenant's
        residency location, whose own placement counts (asking for the location's country
        answers whether the data may be placed there at all). ``source`` may only restate
        what the SDK knows: the location's country, or the tenant's own country when
        asking about placement; anything else raises :class:`InvalidSource`. The decision
        is audited (allowed and blocked alike).
        """
        if source is not None:
            try:
                source = self._known_source(tenant, to, source)
            except InvalidSource as exc:
                if self.audit.hooks:
                    self.audit.emit(AuditEvent(
                        operation="transfer_check", outcome="blocked", actor=actor,
                        purpose=purpose, tenant_id=tenant.id, tenant_country=tenant.country,
                        data_class=str(data_class)[:64], is_transfer=True,
                        reasons=(str(exc),), error=f"InvalidSource: {exc}"))
                raise
        try:
            # The policy's cache, read inline: a repeated question costs no extra call.
            # The tuple is ResidencyPolicy.decision_key's (a test holds the two equal).
            decision = self._known_decisions.get(
                (tenant.country, tenant.agreements, to, data_class, source))
        except (AttributeError, TypeError):  # junk arguments: decide() names the problem
            decision = None
        if decision is None:
            decision = self.policy.decide(tenant, to, data_class, source)
        if self.audit.hooks:
            self.audit.decision("transfer_check", tenant, decision, actor=actor,
                                purpose=purpose)
        return decision

    def _known_source(self, tenant: Tenant, to: str, source: str) -> str | None:
        """``source`` if it restates what the SDK knows (None: the derived default)."""
        code = normalise_country(source)
        location = self.policy.location_of(tenant)
        if code == location.country:
            return None
        if code == tenant.country and normalise_country(to) == location.country:
            return code  # the placement question, asked explicitly
        raise InvalidSource(
            f"source {source!r} for tenant {tenant.id!r}: the SDK keeps its data in location "
            f"{location.id} ({location.country}), not in {code}; a transfer is decided from "
            f"where the data lives. Leave source out (or pass {location.country!r}); ask "
            "res.policy.decide(..., source=...) for a hypothetical")

    def require_transfer(self, tenant: Tenant, to: str, data_class: str = "phi", *,
                         source: str | None = None, actor: str | None = None,
                         purpose: str | None = None) -> Decision:
        """Like :meth:`check_transfer`, but raise :class:`TransferBlocked` when blocked."""
        decision = self.check_transfer(tenant, to, data_class, source=source, actor=actor,
                                       purpose=purpose)
        if not decision.allowed:
            raise TransferBlocked(decision)
        return decision

    def check_placement(self, tenant: Tenant, data_class: str = PLACEMENT_CLASS, *,
                        actor: str | None = None, purpose: str | None = None) -> Decision:
        """Decide whether placing ``tenant``'s data in its location is itself lawful;
        audited as one ``placement`` event, like a tenant store's binding."""
        decision = self.policy.placement_decision(tenant, data_class)
        self.audit.decision("placement", tenant, decision, actor=actor, purpose=purpose,
                            source_location=self.policy.resolve(tenant).location)
        return decision

    # --- storage -----------------------------------------------------------------------

    def storage_for(self, tenant: Tenant, *, provider: str | None = None,
                    actor: str | None = None, purpose: str | None = None) -> TenantStore:
        """A store bound to ``tenant``'s placement: keys live under the tenant's prefix,
        writes are checked against residency, every operation is audited.

        ``provider`` picks a backend of the location (default: the map's default provider,
        or ``local`` when loaded with ``local_root``). Emits one ``placement`` event.
        """
        return open_tenant_store(self.policy, self.stores, self.audit, tenant,
                                 provider=provider, actor=actor, purpose=purpose,
                                 registry=self.tenants)

    def transfer(self, tenant: Tenant, key: str, to: str, data_class: str = "phi", *,
                 actor: str | None = None, purpose: str | None = None,
                 provider: str | None = None) -> StoredObject:
        """Copy ``tenant``'s object ``key`` into location ``to`` only if
        :meth:`check_transfer` allows it; otherwise raise :class:`TransferBlocked` and copy
        nothing. ``to`` must be a residency location of the map."""
        return transfer(self.policy, self.stores, self.audit, tenant, key, to, data_class,
                        actor=actor, purpose=purpose, provider=provider,
                        registry=self.tenants)

    def move_tenant(self, tenant: Tenant, to_country: str, *,
                    providers: Iterable[str] | None = None, actor: str | None = None,
                    purpose: str | None = None,
                    state_dir: str | Path | None = None) -> MoveReceipt:
        """Move ``tenant`` (as bound today, under ``tenant.country``) to ``to_country``:
        the one way to change a tenant's country (opening its id under another country is
        refused with :class:`TenantCountryConflict`).

        The new placement and, when the data changes location, the transfer from the old
        location are checked and audited first (a refusal copies nothing); every object is
        copied and verified, the tenant's record is rebound, and the old location is
        erased as a tracked erasure request (so ``state_dir`` is needed, as for
        :meth:`erase`; ``providers`` narrows the backends as there). Moving again after a
        crash finishes the move.
        """
        tracker = self.erasure_tracker(state_dir, actor=actor)
        return move_tenant(
            self.policy, self.stores, self.audit, self.tenants, tenant, to_country,
            providers=providers, actor=actor, purpose=purpose,
            erase_old=lambda old: tracker.erase(old, providers=providers, purpose=purpose,
                                                reason=f"tenant moved to {to_country}"))

    def backend(self, location: str, provider: str | None = None) -> StorageTarget:
        """The primary storage target of ``provider`` in ``location`` (default: the
        provider a tenant store uses there)."""
        loc = self.policy.location(location)
        return loc.backend(provider or self.stores.default_provider(loc))

    def location_targets(self, location: str, providers: Iterable[str] | None = None,
                         ) -> list[tuple[Role, StorageTarget]]:
        """Every backend of ``location`` as ``(role, target)``: each provider's primary
        and in-country failover. ``providers`` defaults to those that may hold the
        location's data (``local`` with ``local_root``, else every cloud backend)."""
        loc = self.policy.location(location)
        return loc.targets(providers if providers is not None
                           else self.stores.data_providers(loc))

    def data_providers(self, location: str) -> tuple[str, ...]:
        """The providers that may hold ``location``'s data: ``local`` with
        ``local_root``, else every cloud backend (what sweeps and erasure cover)."""
        return self.stores.data_providers(self.policy.location(location))

    def store(self, target: StorageTarget, location: str) -> ObjectStore:
        """The raw adapter of ``target`` in ``location``, opened once and shared (no
        residency checks, no audit: for sweeps and erasure, not application code)."""
        return self.stores.get(target, location)

    def close(self) -> None:
        """Close every storage client this Residency opened."""
        self.stores.close()

    # --- long-running operations -------------------------------------------------------

    def erasure_tracker(self, state_dir: str | Path | None = None,
                        **options: Any) -> ErasureTracker:
        """The :class:`ErasureTracker` of this client's requests, kept in ``state_dir``
        (default: the one given to :meth:`load`). ``options`` as the tracker's
        (``clock``, ``actor``, ``progress``, ``workers``)."""
        return ErasureTracker(self.policy, self.stores, self.audit,
                              self._state_dir(state_dir), **options)

    def retention_sweep(self, location: str, **options: Any) -> RetentionSweep:
        """A :class:`RetentionSweep` of ``location`` (options as its constructor:
        ``dry_run``, ``providers``, ``state_dir``, ``clock``, ``progress``, ...)."""
        return RetentionSweep(self.policy, self.stores, self.audit, location, **options)

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
        tracker = self.erasure_tracker(state_dir, actor=actor)
        return tracker.erase(tenant, providers=providers, purpose=purpose, reason=reason,
                             terminated_at=terminated_at)

    def _state_dir(self, state_dir: str | Path | None) -> Path:
        if state_dir is not None:
            return Path(state_dir)
        if self.state_dir is not None:
            return self.state_dir
        raise ErasureError(
            "tenant erasure is tracked (deadline, progress, receipt) in a state folder and "
            "this Residency has none: pass state_dir=PATH to Residency.load(...) or to "
            "res.erase(...) (a durable folder shared by every process that erases, e.g. on a "
            "persistent volume); nothing was deleted")

    # --- audit -------------------------------------------------------------------------

    @property
    def audit_hooks(self) -> tuple[AuditHook, ...]:
        """The callables that receive every audit event."""
        return self.audit.hooks

    def add_audit_hook(self, hook: AuditHook) -> None:
        """Send every later audit event to ``hook`` as well."""
        self.audit.add(hook)

    def emit(self, event: AuditEvent) -> None:
        """Deliver ``event`` to every audit hook. A failing hook propagates: an operation
        that cannot be audited must not pass silently."""
        self.audit.emit(event)


def _audit_sink(audit: Any) -> AuditHook:
    if hasattr(audit, "append"):
        return audit.append  # type: ignore[no-any-return]
    from residency_sdk.audit import AuditLog  # imported lazily: SQLite setup on demand

    log = AuditLog(audit)
    return log.append
