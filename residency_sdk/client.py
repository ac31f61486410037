"""The client users hold: :class:`Residency` = the policy, the store pool, the audit trail.

:class:`~residency_sdk.policy.ResidencyPolicy` answers where data lives and whether it may
move (pure, cached). :class:`Residency` adds what touches the world: it audits every
decision, opens tenant stores, copies between locations, erases tenants and sweeps
retention, handing each of those the narrow pieces it needs (the policy, the
:class:`~residency_sdk.storage.pool.StorePool`, the
:class:`~residency_sdk.events.AuditEmitter`), never itself.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from residency_sdk.agreements import Derogation
from residency_sdk.countries import normalise_country
from residency_sdk.deid_records import DeidRecords
from residency_sdk.egress.guard import EgressDecision, EgressGuard
from residency_sdk.errors import (
    AuditUnavailable,
    ErasureError,
    InputError,
    InvalidLocalLocation,
    InvalidSource,
    ResidencyError,
    TransferBlocked,
)
from residency_sdk.events import AuditEmitter, AuditEvent, AuditHook, AuditSink, is_sink
from residency_sdk.lineage import Lineage
from residency_sdk.model import Decision, StorageTarget, Tenant
from residency_sdk.policy import (
    PLACEMENT_CLASS,
    Clock,
    PlacementTable,
    ResidencyPolicy,
    day_of,
    utc_day,
)
from residency_sdk.regionmap import RegionMap, Role
from residency_sdk.regions import RegionTable
from residency_sdk.rules import TransferRules
from residency_sdk.storage.base import ObjectStore
from residency_sdk.storage.pool import StoreOpener, StorePool
from residency_sdk.tenants import MoveReceipt, TenantRegistry, move_tenant

# Erasure, retention and the tenant store are imported by the methods that use them:
# a process that only decides (``residency resolve``) does not pay for loading them.
if TYPE_CHECKING:
    import httpx

    from residency_sdk.audit.anchors import Anchor
    from residency_sdk.config import Settings
    from residency_sdk.deid.evidence import Option
    from residency_sdk.deid.keys import DeidKey
    from residency_sdk.egress.transport import AuditDurability
    from residency_sdk.erasure import ErasureReceipt, ErasureTracker
    from residency_sdk.export import ExportReceipt
    from residency_sdk.regionmap import AuditTarget
    from residency_sdk.retention import RetentionSweep
    from residency_sdk.storage.async_store import AsyncTenantStore
    from residency_sdk.storage.local import RotationReport
    from residency_sdk.storage.tenant_store import StoredObject, TenantStore

STATE_DIR_NAME = ".residency-state"
"""The default state folder's name, under ``local_root``."""
AUDIT_ENV = "RESIDENCY_AUDIT"
"""The audit sink (a path or a ``postgresql://`` URL) when ``Residency.load`` gets none."""
AUDIT_ANCHORS_ENV = "RESIDENCY_AUDIT_ANCHORS"
"""Anchors (comma-separated specs) of the audit sink opened from the argument, the
environment or the default file."""
STATE_DIR_ENV = "RESIDENCY_STATE_DIR"
"""The state folder when neither ``state_dir`` nor ``local_root`` is given."""
AUDIT_FILE_NAME = "audit.db"
"""The default audit log's name, in the state folder."""


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
                 state_dir: str | Path | None = None,
                 audit_sinks: Iterable[AuditSink] = (), clock: Clock | None = None) -> None:
        """The low-level form: audits only to the ``audit_hooks`` (callables) and
        ``audit_sinks`` given, nothing by default. Applications use :meth:`load`, which
        opens the audit trail (see there). ``clock`` (returning an aware datetime) is the
        time decisions are taken at; default the system clock."""
        if isinstance(region_map, ResidencyPolicy):
            self.policy = region_map
            if clock is not None:
                self.policy.clock = clock
        else:
            if rules is None:
                raise TypeError("Residency(region_map, rules): the transfer rules are "
                                "needed with a region map (or pass a ResidencyPolicy)")
            self.policy = ResidencyPolicy(region_map, rules, clock=clock)
        """The pure policy: region map and transfer rules."""
        self.audit = AuditEmitter(audit_hooks, audit_sinks)
        """Where every audit event goes."""
        self._owned_sinks: list[AuditSink] = []
        # resolve() and resolve_country() (from PlacementTable) read the policy's table.
        self.map = self.policy.map
        """The compiled region map."""
        self.placements = self.policy.placements
        self._known_decisions = self.policy.decision_cache
        self.stores = StorePool(local_root, storage)
        """Opens and shares the adapters of every backend."""
        self.tenants = TenantRegistry(self.policy, self.stores, self.audit)
        """Binds each tenant id to one country (see :mod:`residency_sdk.tenants`)."""
        self.lineage = Lineage(self.policy, self.stores, self.audit)
        """Where each tenant's data went (see :mod:`residency_sdk.lineage`): what
        :meth:`erase` plans from."""
        self.deid_records = DeidRecords(self.policy, self.stores, self.audit)
        """Tenants' de-identification keys and evidence, kept in their locations (see
        :mod:`residency_sdk.deid_records`)."""
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
             state_dir: str | Path | None = None,
             audit_off_reason: str | None = None,
             clock: Clock | None = None) -> Residency:
        """Load a region map, with the audit trail on. ``clock`` (an aware datetime
        source) is the time transfer decisions are taken at; default the system clock.

        Arguments left None come from the settings (:func:`residency_sdk.config.load_settings`:
        ``RESIDENCY_*`` variables, ``residency.toml``, ``[tool.residency]``): ``path``
        from ``map`` (else the packaged default map), ``local_root`` (when ``storage`` is
        None), the audit sink from ``audit``, its anchors from ``audit_anchors``, the
        state folder of the default audit log from ``state_dir``.

        Every decision and data operation is recorded in an audit sink, chosen by
        ``audit``:

        - an :class:`~residency_sdk.events.AuditSink` (an ``AuditLog``), or any object with
          an ``append(event)`` method;
        - a path to an audit log file, or a ``postgresql://`` URL;
        - None (the default): the ``audit`` setting (``$RESIDENCY_AUDIT``: a path or
          URL), else the file ``audit.db`` in the state folder: ``state_dir``, else
          ``<local_root>/.residency-state``, else the ``state_dir`` setting
          (``$RESIDENCY_STATE_DIR``), else ``<local_root setting>/.residency-state``, else
          ``${XDG_STATE_HOME:-~/.local/state}/residency-sdk``;
        - ``False``: nothing is recorded from now on, and the sink that would have been
          used records that, once (an ``audit_off`` event with the user, pid, host, time
          and ``audit_off_reason``), so the report of any later log shows the unaudited
          period.

        A sink opened here gets the anchors of the ``audit_anchors`` setting
        (``$RESIDENCY_AUDIT_ANCHORS``, comma-separated: a folder, ``s3://``, ``gs://`` or
        ``azure://`` URLs). When the region map gives locations their own ``audit:``
        sink, events about their tenants go there (and stay in the location), the rest
        to the map's top-level ``audit:`` or the sink above. The sinks are opened now, so
        a misconfigured one fails here (:class:`AuditUnavailable`, or the sink's own
        error), and :meth:`close` closes them. ``audit_hooks`` (callables) receive every
        event as well.

        ``local_root`` makes every location store objects in its ``local`` backend under
        that folder (the embedded default, no cloud needed); ``storage`` replaces how
        stores are opened (``(target, location_id) -> ObjectStore``, for example
        ``lambda target, location: MemoryStore(target)`` in unit tests). ``state_dir`` is
        the durable folder for tracked erasure requests (default
        ``<local_root>/.residency-state``; see :meth:`erase`).
        """
        from residency_sdk.config import load_settings  # pydantic-settings only when loading

        settings = load_settings()
        policy = ResidencyPolicy.load(path if path is not None else settings.map, clock=clock)
        folder = state_folder(state_dir, local_root, settings=settings)
        if state_dir is None and local_root is None:
            # The configured state folder keeps tracked erasures too, beside the audit
            # log (an explicit local_root= keeps its own, as state_folder() does).
            state_dir = settings.state_dir
        if local_root is None and storage is None:
            local_root = settings.local_root
        if audit is False:
            record_audit_off(policy, folder, audit_off_reason, settings=settings)
            sinks: list[AuditSink] = []
            owned: list[AuditSink] = []
        else:
            sink, owned = open_audit(policy, None if audit is True else audit, folder,
                                     settings=settings)
            sinks = [sink]
        try:
            res = cls(policy, audit_hooks=audit_hooks, local_root=local_root,
                      storage=storage, state_dir=state_dir, audit_sinks=sinks)
        except BaseException:
            _close_all(owned)
            raise
        res._owned_sinks = owned
        return res

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
                       purpose: str | None = None, at: datetime | date | None = None,
                       counterparty: str | None = None,
                       derogation: Derogation | None = None,
                       own_use: bool = False) -> Decision:
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
                if self.audit.enabled:
                    self.audit.emit(AuditEvent(
                        operation="transfer_check", outcome="blocked", actor=actor,
                        purpose=purpose, tenant_id=tenant.id, tenant_country=tenant.country,
                        data_class=str(data_class)[:64], is_transfer=True,
                        reasons=(str(exc),), error=f"InvalidSource: {exc}"))
                raise
        extra = None if counterparty is None and derogation is None and not own_use \
            else (counterparty, derogation, own_use)
        try:
            # The policy's cache, read inline: a repeated question costs no extra call.
            # The tuple is ResidencyPolicy.decision_key's (a test holds the two equal).
            decision = self._known_decisions.get(
                (tenant.country, tenant.agreements, tenant.out_of_scope, to, data_class,
                 source, utc_day(self.policy.clock) if at is None else day_of(at), extra))
        except (AttributeError, TypeError):  # junk arguments: decide() names the problem
            decision = None
        if decision is None:
            decision = self.policy.decide(tenant, to, data_class, source, at=at,
                                          counterparty=counterparty, derogation=derogation,
                                          own_use=own_use)
        if self.audit.enabled:
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
                         purpose: str | None = None, at: datetime | date | None = None,
                         counterparty: str | None = None,
                         derogation: Derogation | None = None,
                         own_use: bool = False) -> Decision:
        """Like :meth:`check_transfer`, but raise :class:`TransferBlocked` when blocked."""
        decision = self.check_transfer(tenant, to, data_class, source=source, actor=actor,
                                       purpose=purpose, at=at, counterparty=counterparty,
                                       derogation=derogation, own_use=own_use)
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
        from residency_sdk.storage.tenant_store import open_tenant_store

        return open_tenant_store(self.policy, self.stores, self.audit, tenant,
                                 provider=provider, actor=actor, purpose=purpose,
                                 registry=self.tenants, lineage=self.lineage,
                                 deid=self.deid_records)

    def astorage_for(self, tenant: Tenant, *, provider: str | None = None,
                     purpose: str | None = None,
                     actor: str | None = None) -> AsyncTenantStore:
        """:meth:`storage_for` for ``async`` code (FastAPI handlers): an
        :class:`~residency_sdk.storage.async_store.AsyncTenantStore` whose operations are
        awaited (``await store.put(...)``, ``async for info in store.list()``), run in
        worker threads over the same store, checks and audit events. ``put`` also takes
        an ``AsyncIterable[bytes]`` body, streamed with bounded memory. Emits one
        ``placement`` event, as :meth:`storage_for`."""
        # Imported here: anyio loads only for async users, not with the package.
        from residency_sdk.storage.async_store import AsyncTenantStore

        return AsyncTenantStore(self.storage_for(tenant, provider=provider, actor=actor,
                                                 purpose=purpose))

    def transfer(self, tenant: Tenant, key: str, to: str, data_class: str = "phi", *,
                 actor: str | None = None, purpose: str | None = None,
                 provider: str | None = None,
                 derogation: Derogation | None = None) -> StoredObject:
        """Copy ``tenant``'s object ``key`` into location ``to`` only if
        :meth:`check_transfer` allows it; otherwise raise :class:`TransferBlocked` and copy
        nothing. ``to`` must be a residency location of the map.

        A transfer decided as ``anonymised`` verifies the object first (its evidence, and
        a DICOM object's content): one that fails is decided as ``phi`` (refused with
        :class:`NotAnonymised` where ``phi`` may not go); see
        :func:`~residency_sdk.storage.tenant_store.transfer`. ``derogation`` is one given
        for this copy (explicit consent, with its reference)."""
        from residency_sdk.storage.tenant_store import transfer

        return transfer(self.policy, self.stores, self.audit, tenant, key, to, data_class,
                        actor=actor, purpose=purpose, provider=provider,
                        derogation=derogation,
                        registry=self.tenants, lineage=self.lineage,
                        deid=self.deid_records)

    # --- compute and egress ------------------------------------------------------------

    @property
    def egress(self) -> EgressGuard:
        """The egress guard (made on first use): which HTTP calls tenants' data may make."""
        guard: EgressGuard | None = self.__dict__.get("_egress")
        if guard is None:
            guard = EgressGuard(self.policy)
            self.__dict__["_egress"] = guard
        return guard

    def compute_for(self, tenant: Tenant, *, purpose: str, actor: str | None = None,
                    audit_durability: AuditDurability = "before_response",
                    audit_group_window: float | None = None,
                    **options: Any) -> httpx.Client:
        """An ``httpx.Client`` for ``tenant``'s inference and processor calls.

        Every request (each redirect hop too) may go only to the compute endpoints of the
        tenant's location or to a processor the map declares and the rules allow for the
        data class the request carries (``extensions={"residency_data_class": ...}`` or
        the ``X-Residency-Data-Class`` header, stripped before sending; none means
        ``phi``). Anything else raises :class:`EgressBlocked` before a byte is sent. Each
        request is audited (``egress``: endpoint, processor, data class, bytes, status,
        decision, ``purpose``, ``actor``; never bodies or headers). ``options`` go to
        ``httpx.Client`` (``transport=`` is wrapped; ``mounts``/``proxy`` are refused).

        ``audit_durability`` says when each request's intent is durable:
        ``"before_response"`` (committed while the request is in flight; the response is
        handed back once it is durable), ``"before_send"`` (before the first byte leaves;
        one commit per call) or ``"group"`` (with the log's next group commit, within
        ``audit_group_window`` seconds, 0.1 by default; nobody waits, and a crash loses
        the records of that window's calls). See :mod:`residency_sdk.egress.transport`.
        """
        from residency_sdk.egress.transport import guarded_client  # httpx: on first use

        _require_purpose(purpose)
        self.policy.resolve(tenant)
        return guarded_client(self.egress, tenant, self.audit, purpose=purpose, actor=actor,
                              audit_durability=audit_durability,
                              audit_group_window=audit_group_window, **options)

    def async_compute_for(self, tenant: Tenant, *, purpose: str, actor: str | None = None,
                          audit_durability: AuditDurability = "before_response",
                          audit_group_window: float | None = None,
                          **options: Any) -> httpx.AsyncClient:
        """Like :meth:`compute_for`, an ``httpx.AsyncClient``."""
        from residency_sdk.egress.transport import async_guarded_client

        _require_purpose(purpose)
        self.policy.resolve(tenant)
        return async_guarded_client(self.egress, tenant, self.audit, purpose=purpose,
                                    actor=actor, audit_durability=audit_durability,
                                    audit_group_window=audit_group_window, **options)

    def check_egress(self, tenant: Tenant, url: str, data_class: str = "phi", *,
                     actor: str | None = None, purpose: str | None = None) -> EgressDecision:
        """Whether a request with ``tenant``'s ``data_class`` data may go to ``url``, and
        why (audited as ``egress_check``; nothing is sent)."""
        decision = self.egress.check(tenant, url, data_class)
        if self.audit.enabled:
            location = self.policy.resolve(tenant).location
            d = decision.decision
            self.audit.emit(AuditEvent.model_validate({
                "operation": "egress_check",
                "outcome": "allowed" if decision.allowed else "blocked", "actor": actor,
                "purpose": purpose, "tenant_id": tenant.id, "tenant_country": tenant.country,
                "data_class": decision.data_class, "source_location": location,
                "destination_country": decision.country, "endpoint": decision.url[:2000],
                "processor": decision.processor, "mechanism": d.mechanism if d else None,
                "regimes": d.regimes if d else (), "reasons": decision.reasons,
                "agreements": decision.agreements}))
        return decision

    # --- de-identification -------------------------------------------------------------

    def deid_key(self, tenant: Tenant, *, actor: str | None = None) -> DeidKey:
        """``tenant``'s de-identification key (UID mapping, per-patient date offsets),
        made on first use and kept in the tenant's location; its writes and each
        process's first read are audited (purpose ``deid_key``). It never leaves the
        location: de-identify where the data lives (:meth:`export_anonymised`,
        ``residency deid``). Erasure destroys it."""
        return self.deid_records.key(tenant, actor=actor)

    def export_anonymised(self, tenant: Tenant, keys: Iterable[str], *, to: str,
                          options: Iterable[Option] = (), pixels_cleaned: bool = False,
                          actor: str | None = None, purpose: str | None = None,
                          provider: str | None = None) -> ExportReceipt:
        """De-identify ``tenant``'s DICOM objects ``keys`` inside its location, verify
        them, and transfer only the de-identified copies (``deid/<key>``) to location
        ``to``: the originals never leave. ``options`` are the profile options
        (``retain_longitudinal_modified_dates``, ``clean_descriptors``,
        ``retain_device_identity``); ``pixels_cleaned`` states that burned-in text was
        removed from the pixels (else such images are refused). Every step is audited
        with ``actor`` and ``purpose`` (default ``research_export``); returns the
        receipt (see :mod:`residency_sdk.export`)."""
        from residency_sdk.export import EXPORT_PURPOSE, checked_keys, export_anonymised

        purpose = purpose or EXPORT_PURPOSE
        chosen = checked_keys(keys)  # refused before the key or any object is read
        destination = self.policy.destination(to)  # an unknown location fails first
        store = self.storage_for(tenant, provider=provider, actor=actor, purpose=purpose)
        if destination.id == store.location:
            raise InputError(
                f"export_anonymised: tenant {tenant.id!r}'s data already lives in location "
                f"{destination.id}: export to another location")
        return export_anonymised(
            store, self.deid_key(tenant, actor=actor), chosen, destination=destination.id,
            options=options, pixels_cleaned=pixels_cleaned,
            transfer=lambda key: self.transfer(tenant, key, destination.id, "anonymised",
                                               actor=actor, purpose=purpose,
                                               provider=provider))

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
        erased as a tracked erasure request of that location only (``scope="location"``:
        the new location's data, the other locations' keys and the tenant's lineage are
        kept; ``state_dir`` is needed, as for :meth:`erase`; ``providers`` narrows the
        backends as there). Moving again after a crash finishes the move.
        """
        tracker = self.erasure_tracker(state_dir, actor=actor)
        return move_tenant(
            self.policy, self.stores, self.audit, self.tenants, tenant, to_country,
            providers=providers, actor=actor, purpose=purpose, lineage=self.lineage,
            deid=self.deid_records,
            # Only the old location: the moved copies, the other locations' keys and the
            # lineage a later erasure plans from must survive the move.
            erase_old=lambda old: tracker.erase(old, providers=providers, purpose=purpose,
                                                reason=f"tenant moved to {to_country}",
                                                scope="location"))

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
        """Close every storage client this Residency opened, and the audit sinks
        :meth:`load` opened (their queued events are made durable first); sinks passed
        in are flushed, not closed."""
        try:
            self.stores.close()
        finally:
            owned, self._owned_sinks = self._owned_sinks, []
            try:
                _each_sink([s for s in self.audit.sinks
                            if not any(s is o for o in owned)], "flush")
            finally:
                _close_all(owned)

    # --- long-running operations -------------------------------------------------------

    def erasure_tracker(self, state_dir: str | Path | None = None,
                        **options: Any) -> ErasureTracker:
        """The :class:`ErasureTracker` of this client's requests, kept in ``state_dir``
        (default: the one given to :meth:`load`), planning from this client's lineage and
        dropping its tenant records. ``options`` as the tracker's (``clock``, ``actor``,
        ``progress``, ``workers``)."""
        options.setdefault("lineage", self.lineage)
        options.setdefault("registry", self.tenants)
        options.setdefault("deid", self.deid_records)
        from residency_sdk.erasure import ErasureTracker

        return ErasureTracker(self.policy, self.stores, self.audit,
                              self._state_dir(state_dir), **options)

    def retention_sweep(self, location: str, **options: Any) -> RetentionSweep:
        """A :class:`RetentionSweep` of ``location`` (options as its constructor:
        ``dry_run``, ``providers``, ``state_dir``, ``clock``, ``progress``, ...)."""
        from residency_sdk.retention import RetentionSweep

        return RetentionSweep(self.policy, self.stores, self.audit, location, **options)

    def erase(self, tenant: Tenant, *, providers: Iterable[str] | None = None,
              actor: str | None = None, purpose: str | None = None,
              reason: str | None = None, terminated_at: datetime | None = None,
              state_dir: str | Path | None = None) -> ErasureReceipt:
        """Erase every object of ``tenant`` as a tracked erasure request and return its
        receipt (objects, bytes, start and finish, per-backend results, request id).

        The request is recorded and run on every backend of the tenant's location (each
        provider's primary and in-country failover; ``providers`` defaults to ``local``
        with ``local_root``, else every cloud backend) and on every location and provider
        the tenant's :attr:`lineage` says its data reached (transfers, writes to another
        provider; ``providers`` never removes one), verified by a fresh listing; then the
        tenant's key material is destroyed on each backend (crypto-shredding what
        backups keep), its lineage and tenant records dropped, and the receipt's SHA-256
        recorded in the audit trail (see :mod:`residency_sdk.erasure`). Objects under a
        legal hold are kept, and so is every key while they are.

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

    def rotate_location_key(self, location: str, *,
                            actor: str | None = None) -> RotationReport:
        """Rotate the embedded local backend's key of ``location``: a new location key
        becomes current and every tenant key there is re-wrapped under it (no object is
        re-encrypted; see :meth:`LocalStore.rotate_location_key
        <residency_sdk.storage.local.LocalStore.rotate_location_key>`). Audited ahead as
        a ``key_rotate`` event in the location's trail; needs ``local_root``."""
        from residency_sdk.storage.local import LocalStore

        loc = self.policy.location(location)
        if self.local_root is None or "local" not in loc.backends:
            raise InvalidLocalLocation(
                f"location {loc.id}: key rotation is for the embedded local backend: load "
                "the Residency with local_root=PATH (CLI: --local-root DIR); cloud keys "
                "rotate in the provider's KMS (see docs/crypto-shredding.md)")
        target = loc.backend("local")
        store = self.stores.get(target, loc.id)
        if not isinstance(store, LocalStore):
            raise InvalidLocalLocation(
                f"location {loc.id}: its local backend is not the embedded local store "
                f"({type(store).__name__}): nothing to rotate")
        intent = self.audit.intent(AuditEvent(
            operation="key_rotate", outcome="intent", actor=actor, source_location=loc.id,
            provider=target.provider, region=target.region, bucket=target.bucket,
            reasons=(f"rotate the location key of {loc.id} and re-wrap its tenant keys",)))
        try:
            report = store.rotate_location_key()
        except Exception as exc:
            self.audit.outcome(intent, outcome="error", error=f"{type(exc).__name__}: {exc}")
            raise
        self.audit.outcome(intent, outcome="ok", reasons=(
            f"current key {report.current_key_id} (was {report.previous_key_id or 'none'}); "
            f"{len(report.rewrapped)} tenant key(s) re-wrapped; "
            f"{len(report.location_keys)} location key(s) kept",))
        return report

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

    @property
    def audit_sinks(self) -> tuple[AuditSink, ...]:
        """The audit sinks that receive every audit event (the one :meth:`load` opened,
        or a :class:`~residency_sdk.audit.route.LocationRouter` over several)."""
        return self.audit.sinks

    def add_audit_hook(self, hook: AuditHook | AuditSink) -> None:
        """Send every later audit event to ``hook`` (a callable or an
        :class:`AuditSink`) as well."""
        self.audit.add(hook)

    def emit(self, event: AuditEvent, *, durable: bool = False) -> None:
        """Deliver ``event`` to every audit sink and hook. A failure raises
        :class:`AuditUnavailable`: an operation that cannot be audited must not pass
        silently."""
        self.audit.emit(event, durable=durable)


# --- opening the audit trail ---------------------------------------------------------


def state_folder(state_dir: str | Path | None = None,
                 local_root: str | Path | None = None, *,
                 settings: Settings | None = None) -> Path:
    """Where the default audit log lives: ``state_dir``, else
    ``<local_root>/.residency-state``, else the ``state_dir`` setting
    (``$RESIDENCY_STATE_DIR``, a config file), else ``<local_root setting>/.residency-state``,
    else ``${XDG_STATE_HOME:-~/.local/state}/residency-sdk``. ``settings`` default: read
    now (:func:`~residency_sdk.config.load_settings`)."""
    if state_dir is not None:
        return Path(state_dir)
    if local_root is not None:
        return Path(local_root) / STATE_DIR_NAME
    settings = settings if settings is not None else _settings()
    if settings.state_dir is not None:
        return settings.state_dir
    if settings.local_root is not None:
        return settings.local_root / STATE_DIR_NAME
    xdg = os.environ.get("XDG_STATE_HOME")
    if xdg and Path(xdg).is_absolute():  # the XDG spec ignores relative values
        return Path(xdg) / "residency-sdk"
    try:
        home = Path.home()
    except (RuntimeError, KeyError):  # no HOME and no passwd entry (a bare container)
        raise AuditUnavailable(
            f"no state folder for the default audit log: set {STATE_DIR_ENV} (or "
            f"{AUDIT_ENV} to a log file or postgresql:// URL, or state_dir / audit in "
            "residency.toml), or pass audit=..., state_dir= or local_root= to "
            "Residency.load") from None
    return home / ".local" / "state" / "residency-sdk"


def _settings() -> Settings:
    from residency_sdk.config import load_settings  # pydantic-settings only when needed

    return load_settings()


class _HookSink:
    """An object with only ``append(event)`` (a JSON Lines sink, a list) as a sink."""

    def __init__(self, target: Any) -> None:
        self._append = target.append
        self.name = describe(target)

    def append(self, event: AuditEvent, *, durable: bool = True) -> None:
        self._append(event)

    def flush(self) -> None:
        """Nothing is queued: each append is as recorded as the object makes it."""

    def close(self) -> None:
        """Left to whoever created the object."""


def describe(target: Any) -> str:
    """A sink named for messages (a path or a redacted URL, never a password)."""
    from residency_sdk._endpoints import redact_url

    name = getattr(target, "name", None)
    if isinstance(name, str) and name:
        return redact_url(name)
    path = getattr(target, "path", None)
    return str(path) if path is not None else type(target).__name__


def _anchors(specs: Iterable[str], where: str) -> list[Anchor]:
    specs = [s.strip() for s in specs if s.strip()]
    if not specs:
        return []
    from residency_sdk.audit.anchors import open_anchor  # only when anchors are used

    anchors = []
    for spec in specs:
        try:
            anchors.append(open_anchor(spec))
        except ResidencyError:
            raise
        except Exception as exc:
            raise AuditUnavailable(f"cannot open audit anchor {spec!r} ({where}): "
                                   f"{type(exc).__name__}: {exc}") from None
    return anchors


def _open_log(spec: str | Path, anchors: list[Anchor], where: str) -> AuditSink:
    """Open the audit log at ``spec`` (a path or a PostgreSQL URL)."""
    from residency_sdk._endpoints import redact_url
    from residency_sdk.audit import AuditLog  # imported lazily: SQLite setup on demand

    shown = redact_url(str(spec))
    try:
        if anchors:
            log: AuditSink = AuditLog(spec, anchors=anchors)
        else:
            log = AuditLog(spec)
    except ResidencyError:
        raise
    except Exception as exc:  # a driver or OS error: named, never raw
        raise AuditUnavailable(
            f"cannot open the audit log {shown} ({where}): {type(exc).__name__}: {exc}; "
            f"fix the path or URL (or choose another with audit=... / {AUDIT_ENV})") from None
    return log


def _is_location(spec: Any) -> bool:
    return isinstance(spec, (str, Path, os.PathLike))


def open_audit(policy: ResidencyPolicy, audit: Any, folder: Path, *,
               settings: Settings | None = None) -> tuple[AuditSink, list[AuditSink]]:
    """The audit sink ``Residency.load`` writes to, and the sinks it opened (to close).

    ``audit`` as :meth:`Residency.load` takes it (not False). With per-location sinks in
    the map, the result is a :class:`~residency_sdk.audit.route.LocationRouter`.
    ``settings`` default: read now."""
    opened: list[AuditSink] = []
    try:
        default = _default_sink(policy, audit, folder, opened,
                                settings if settings is not None else _settings())
        by_location = policy.map.audit_by_location
        if not by_location:
            return default, opened
        from residency_sdk.audit.route import LocationRouter, locator

        logs: dict[str, AuditSink] = {}
        sinks: dict[str, AuditSink] = {}
        for location, target in by_location.items():
            if target.sink not in logs:
                logs[target.sink] = _open_target(target, f"location {location}", opened)
            sinks[location] = logs[target.sink]
        return LocationRouter(sinks, default, locator(policy)), opened
    except BaseException:
        _close_all(opened)
        raise


def _open_target(target: AuditTarget, where: str, opened: list[AuditSink]) -> AuditSink:
    log = _open_log(target.sink, _anchors(target.anchors, where), where)
    opened.append(log)
    return log


def _default_sink(policy: ResidencyPolicy, audit: Any, folder: Path,
                  opened: list[AuditSink], settings: Settings) -> AuditSink:
    """The sink named by ``audit``, else the ``audit`` setting (``$RESIDENCY_AUDIT``),
    else the map's top-level ``audit:``, else ``<state folder>/audit.db``."""
    env_anchors = (settings.audit_anchors or "").split(",")
    if audit is not None and not _is_location(audit):
        if is_sink(audit):
            return audit  # type: ignore[no-any-return]
        if callable(getattr(audit, "append", None)):
            return _HookSink(audit)
        raise AuditUnavailable(
            f"audit={audit!r} is not an audit sink: pass a path, a postgresql:// URL, an "
            "AuditLog (or any object with append(event)), None for the default, or False")
    if audit is not None:
        spec, where = audit, "audit="
    elif settings.audit is not None and settings.audit.strip():
        spec, where = settings.audit.strip(), f"${AUDIT_ENV} or the audit setting"
    elif policy.map.audit is not None:
        return _open_target(policy.map.audit, "the region map's audit:", opened)
    else:
        spec, where = folder / AUDIT_FILE_NAME, "the default audit log"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AuditUnavailable(
                f"cannot create the state folder {folder} for the default audit log "
                f"({exc.strerror or exc}): set {STATE_DIR_ENV} to a writable folder, "
                f"{AUDIT_ENV} to a log file or postgresql:// URL, or pass audit=...") \
                from None
    log = _open_log(spec, _anchors(env_anchors, f"${AUDIT_ANCHORS_ENV} or the audit_anchors "
                                           "setting"), where)
    opened.append(log)
    return log


def audit_off_event(reason: str | None) -> AuditEvent:
    """The ``audit_off`` event: who switched auditing off, where, when and why."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in the environment or the passwd database
        user = f"uid {os.getuid()}"
    return AuditEvent(
        operation="audit_off", outcome="ok", actor=user, purpose="audit_off",
        reasons=(f"audit switched off: {reason or 'Residency.load(audit=False)'}",
                 f"pid {os.getpid()}", f"host {socket.gethostname()}"))


def record_audit_off(policy: ResidencyPolicy, folder: Path, reason: str | None, *,
                     settings: Settings | None = None) -> None:
    """Append, durably, one ``audit_off`` event to the sink(s) ``Residency.load`` would
    have used; :class:`AuditUnavailable` when even that cannot be written."""
    event = audit_off_event(reason)
    sink, opened = open_audit(policy, None, folder, settings=settings)
    try:
        from residency_sdk.audit.route import LocationRouter

        targets = sink.all_sinks() if isinstance(sink, LocationRouter) else [sink]
        for target in targets:  # every location's trail shows the unaudited period
            try:
                target.append(event, durable=True)
            except AuditUnavailable:
                raise
            except Exception as exc:
                raise AuditUnavailable(
                    f"audit=False: the audit_off event could not be recorded in "
                    f"{describe(target)} ({type(exc).__name__}: {exc}); running unaudited "
                    "needs that record: fix the sink") from None
    finally:
        _close_all(opened)


def _each_sink(sinks: Iterable[AuditSink], method: str) -> None:
    first: BaseException | None = None
    for sink in sinks:
        try:
            getattr(sink, method)()
        except Exception as exc:  # every sink gets its turn; the first failure is raised
            first = first or exc
    if first is not None:
        if isinstance(first, ResidencyError):
            raise first
        raise AuditUnavailable(f"audit sink could not {method}: "
                               f"{type(first).__name__}: {first}") from first


def _close_all(sinks: Iterable[AuditSink]) -> None:
    _each_sink(sinks, "close")


def _require_purpose(purpose: object) -> None:
    if not isinstance(purpose, str) or not purpose.strip():
        raise InputError(f"purpose={purpose!r}: say why the data is sent (e.g. "
                         "'inference', 'report drafting'); it is recorded with each request")
