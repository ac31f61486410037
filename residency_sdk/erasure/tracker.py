"""The :class:`ErasureTracker`: it makes tracked erasure requests, runs them step by step
and reports them; ``res.erase`` and the ``residency erasure`` commands go through it.

A run plans the backends (:mod:`~residency_sdk.erasure.plan`), empties and verifies each
(:mod:`~residency_sdk.erasure.deletion`), then, once every one is verified, destroys the
tenant's key material on each (:mod:`~residency_sdk.erasure.key_destruction`), drops the
tenant's lineage and records, and records the receipt
(:mod:`~residency_sdk.erasure.receipt`); the request's state is saved between the steps
(:mod:`~residency_sdk.erasure.request`), so a re-run finishes an interrupted one. What an
erasure covers, step by step: :mod:`residency_sdk.erasure`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from residency_sdk.erasure.deletion import empty_backend
from residency_sdk.erasure.incomplete import incomplete_error
from residency_sdk.erasure.key_destruction import destroy_key
from residency_sdk.erasure.plan import PlannedBackend, plan_backends
from residency_sdk.erasure.receipt import (
    ErasureReceipt,
    receipt_digest,
    receipt_event,
    receipt_record,
)
from residency_sdk.erasure.request import (
    DEFAULT_DEADLINE_DAYS,
    BackendProgress,
    ErasureRequest,
    RequestOptions,
    Scope,
    load_request,
    load_requests,
    map_file,
    name_backend_locations,
    save_request,
)
from residency_sdk.erasure.status import run_command, status_row
from residency_sdk.errors import AuditUnavailable, ErasureError, ResidencyError
from residency_sdk.events import AuditEmitter
from residency_sdk.model import Tenant
from residency_sdk.policy import ResidencyPolicy
from residency_sdk.storage.pool import StorePool
from residency_sdk.sweep import DEFAULT_WORKERS, Clock, check_workers, utc_now

if TYPE_CHECKING:
    from residency_sdk.deid_records import DeidRecords
    from residency_sdk.lineage import Lineage
    from residency_sdk.tenants import TenantRegistry


class ErasureTracker:
    """Creates, runs and reports tracked erasure requests kept under ``state_dir``.

    Built from the policy (where the tenant lives), the store pool (adapters), the audit
    emitter (per-backend results, key destruction and the receipt), and, for erasures
    that plan from lineage and drop the tenant's records, the client's
    :class:`~residency_sdk.lineage.Lineage` and
    :class:`~residency_sdk.tenants.TenantRegistry` (without them a request covers its own
    location only and keeps the records); ``Residency.erasure_tracker`` builds one from
    a client.
    """

    def __init__(self, policy: ResidencyPolicy, stores: StorePool, audit: AuditEmitter,
                 state_dir: str | Path, *, clock: Clock = utc_now,
                 actor: str | None = None,
                 progress: Callable[[str, str], None] | None = None,
                 workers: int = DEFAULT_WORKERS, lineage: Lineage | None = None,
                 registry: TenantRegistry | None = None,
                 deid: DeidRecords | None = None) -> None:
        self.workers = check_workers(workers, ErasureError)
        """Threads deleting in parallel (HEAD and DELETE round trips dominate)."""
        self.policy = policy
        self.stores = stores
        self.audit = audit
        self.state_dir = Path(state_dir)
        """The state folder (requests live in its ``erasure/`` folder)."""
        self.dir = self.state_dir / "erasure"
        self.clock = clock
        self.actor = actor
        self.progress = progress
        """Called ``(backend, stored_key)`` after each object deleted."""
        self.lineage = lineage
        self.registry = registry
        self.deid = deid
        """The tenant's de-identification key and evidence records, dropped with its
        lineage and tenant records (``Residency.erasure_tracker`` passes the client's)."""

    # --- requests ----------------------------------------------------------------------

    def request(self, tenant: Tenant, *, terminated_at: datetime | None = None,
                deadline_days: int = DEFAULT_DEADLINE_DAYS, reason: str | None = None,
                providers: Iterable[str] | None = None,
                purpose: str | None = None, scope: Scope = "tenant") -> ErasureRequest:
        """Record an erasure request for ``tenant``; its deadline is ``deadline_days``
        after ``terminated_at`` (contract termination), or after now when not given.
        ``providers`` narrows the backends of the tenant's location (default: every
        backend that may hold the location's data, :meth:`StorePool.data_providers
        <residency_sdk.storage.pool.StorePool.data_providers>`); whatever it says, every
        location and provider the tenant's lineage names is erased too (``scope``
        ``tenant``, the default; see :data:`Scope`). The request records the map file,
        local root and state folder it was made with (:class:`RequestOptions`)."""
        if not isinstance(tenant, Tenant):
            raise ErasureError(f"expected a residency_sdk.Tenant, got {tenant!r}")
        if not isinstance(deadline_days, int) or not 0 < deadline_days <= 3650:
            raise ErasureError(f"deadline_days must be a whole number of days from 1 to 3650, "
                               f"got {deadline_days!r}")
        if scope not in ("tenant", "location"):
            raise ErasureError(f"scope must be 'tenant' (everywhere the tenant's data went) "
                               f"or 'location' (its own location only), got {scope!r}")
        now = self.clock()
        start = _aware(terminated_at) if terminated_at is not None else now
        location = self.policy.location_of(tenant)
        chosen = list(providers) if providers is not None else None
        location.targets(chosen if chosen is not None
                         else self.stores.data_providers(location))  # refuse unknown ones
        request = ErasureRequest(
            id=f"er-{now:%Y%m%d}-{secrets.token_hex(4)}", tenant_id=tenant.id,
            tenant_country=tenant.country, location=location.id,
            map_name=self.policy.map.name, providers=chosen, scope=scope,
            options=RequestOptions(map_path=map_file(self.policy.map),
                                   local_root=self._local_root(),
                                   state_dir=str(self.state_dir.resolve())),
            requested_at=now, terminated_at=start if terminated_at is not None else None,
            deadline=start + timedelta(days=deadline_days), reason=reason, purpose=purpose,
            actor=self.actor)
        self._save(request)
        return request

    def get(self, request_id: str) -> ErasureRequest:
        """The request ``request_id``; :class:`ErasureError` when there is none."""
        return load_request(self.state_dir, request_id)

    def requests(self, *, open_only: bool = False) -> list[ErasureRequest]:
        """Every request (oldest deadline first); only open ones with ``open_only``."""
        return load_requests(self.state_dir, open_only=open_only)

    def find_open(self, tenant: Tenant, providers: Iterable[str] | None = None,
                  scope: Scope = "tenant") -> ErasureRequest | None:
        """The oldest open request erasing ``tenant`` from its current location with the
        same ``providers`` and ``scope`` under this map and local root, or None: what a
        repeated erasure resumes."""
        location = self.policy.resolve(tenant).location
        chosen = list(providers) if providers is not None else None
        root = self._local_root()
        for request in sorted(self.requests(open_only=True), key=lambda r: r.requested_at):
            if (request.tenant_id, request.location, request.map_name, request.providers,
                    request.scope) != (tenant.id, location, self.policy.map.name, chosen,
                                       scope):
                continue
            if request.options is None or request.options.local_root == root:
                return request
        return None

    def status(self) -> list[dict[str, Any]]:
        """Open requests against their deadline, as plain data (see :func:`status_row`)."""
        now = self.clock()
        return [status_row(r, now, self.state_dir) for r in self.requests(open_only=True)]

    # --- execution ---------------------------------------------------------------------

    def run(self, request_id: str) -> ErasureRequest:
        """Execute (or finish) request ``request_id``; return its new state.

        The plan is made again (it only grows); backends already verified are skipped,
        keys already destroyed are not asked again. An exception (even
        KeyboardInterrupt) saves the progress made before propagating, so a re-run
        finishes the job.
        """
        request = self.get(request_id)
        if request.status == "completed":
            return request
        self._check_options(request)
        request.status = "in_progress"
        request.attempts += 1
        tenant = Tenant(id=request.tenant_id, country=request.tenant_country)
        name_backend_locations(request)
        try:
            plan = plan_backends(request, self.policy, self.stores, self.lineage)
            for item in plan:
                naming = {**BackendProgress.naming(item.role, item.target),
                          "backend": item.name}
                request.backends.setdefault(item.name,
                                            BackendProgress(**naming, location=item.location))
            self._save(request)
            for item in plan:
                progress = request.backends[item.name]
                if progress.status == "verified":
                    continue
                empty_backend(request, tenant, progress, item.target, stores=self.stores,
                              audit=self.audit, clock=self.clock, workers=self.workers,
                              actor=self.actor, on_deleted=self.progress, save=self._save)
                self._save(request)
            states = {b.status for b in request.backends.values()}
            if states == {"verified"} and not request.lineage_unreachable:
                self._finish(request, tenant, plan)
            else:
                request.status = "blocked" if "blocked" in states \
                    and states <= {"verified", "blocked"} \
                    and not request.lineage_unreachable else "in_progress"
        except BaseException:
            request.last_run_at = self.clock()
            self._save(request)
            raise
        request.last_run_at = self.clock()
        self._save(request)
        return request

    def _local_root(self) -> str | None:
        root = self.stores.local_root
        return str(root.resolve()) if root is not None else None

    def _check_options(self, request: ErasureRequest) -> None:
        """Refuse to run ``request`` with another map or local root than it was made
        with: the plan would cover other backends."""
        hint = run_command(request.id, request.options.state_dir if request.options
                           else self.state_dir)
        if request.map_name != self.policy.map.name:
            how = (f"`{hint}` loads it from the request" if request.options is not None
                   else "CLI: --map")
            raise ErasureError(
                f"erasure request {request.id} was made with region map {request.map_name!r}, "
                f"not {self.policy.map.name!r}: run it with the same map ({how})")
        if request.options is None:
            return  # recorded before requests kept their options: the caller's word
        root = self._local_root()
        if request.options.local_root != root:
            made = _root_words(request.options.local_root)
            raise ErasureError(
                f"erasure request {request.id} was made with {made}, but this Residency "
                f"has {_root_words(root)}: load it with the request's local root (or run "
                f"`{hint}`, which takes it from the request)")

    # --- after every backend is verified -------------------------------------------------

    def _finish(self, request: ErasureRequest, tenant: Tenant,
                plan: list[PlannedBackend]) -> None:
        """Every planned backend is verified empty: destroy the tenant's key material on
        each (last: while anything is held or unreached, every key must stay), drop the
        tenant's lineage and records (scope ``tenant``), then record the receipt. A step
        that fails leaves the request open (``in_progress``) for a re-run."""
        request.status = "in_progress"
        for item in plan:
            destroy_key(request, tenant, item, stores=self.stores, audit=self.audit,
                        clock=self.clock, actor=self.actor, save=self._save)
        if request.keys_state() != "done":
            return
        if request.scope == "tenant" and request.forgotten_at is None:
            actor = self.actor or request.actor
            request.cleanup_error = None
            try:
                if self.lineage is not None:
                    request.lineage_deleted += self.lineage.forget(tenant, actor=actor)
                if self.registry is not None:
                    request.records_deleted += self.registry.forget(tenant, actor=actor)
                if self.deid is not None:
                    request.records_deleted += self.deid.forget(tenant, actor=actor)
            except AuditUnavailable:
                raise
            except ResidencyError as exc:
                request.cleanup_error = (f"dropping the tenant's lineage and records: "
                                         f"{type(exc).__name__}: {exc}")
                return
            request.forgotten_at = self.clock()
            self._save(request)
        self._complete(request, tenant)

    def _complete(self, request: ErasureRequest, tenant: Tenant) -> None:
        finished = self.clock()
        receipt = receipt_record(request, finished)
        digest = receipt_digest(receipt)
        event = receipt_event(request, tenant, digest, self.actor)
        # Durable before the request is marked complete: the receipt names this event.
        self.audit.emit(event, durable=True)
        request.receipt = receipt
        request.receipt_sha256 = digest
        request.receipt_event_id = event.event_id
        request.completed_at = finished
        request.status = "completed"

    def _save(self, request: ErasureRequest) -> None:
        save_request(self.state_dir, request)

    # --- one call ------------------------------------------------------------------------

    def erase_tracked(self, tenant: Tenant, *, terminated_at: datetime | None = None,
                      deadline_days: int = DEFAULT_DEADLINE_DAYS, reason: str | None = None,
                      providers: Iterable[str] | None = None) -> ErasureRequest:
        """Request and run a tracked erasure of ``tenant`` in one call and return the
        request itself, never raising for an open one (``res.erase`` is the form that
        returns an :class:`ErasureReceipt` and raises); rerun :meth:`run` with the
        returned id if it is still open (a backend was unreachable, or a legal hold keeps
        objects)."""
        request = self.request(tenant, terminated_at=terminated_at,
                               deadline_days=deadline_days, reason=reason,
                               providers=providers)
        return self.run(request.id)

    def erase(self, tenant: Tenant, *, providers: Iterable[str] | None = None,
              purpose: str | None = None, reason: str | None = None,
              terminated_at: datetime | None = None,
              scope: Scope = "tenant") -> ErasureReceipt:
        """Erase ``tenant`` as a tracked request and return the receipt
        (``Residency.erase``; ``scope="location"`` is what ``move_tenant`` erases the old
        location with).

        An open request for the same tenant, location, providers and scope (an earlier
        erasure that could not finish) is resumed instead of starting a new one. When the
        erasure cannot finish the request stays open and :class:`ErasureUnavailable` (a
        backend, or a location's lineage, could not be reached), :class:`ErasureBlocked`
        (legal hold) or :class:`ErasureIncomplete` (objects still listed, a key not
        destroyed) is raised, carrying ``.receipt`` and ``.request_id``.
        """
        request = self.find_open(tenant, providers, scope)
        if request is None:
            request = self.request(tenant, terminated_at=terminated_at, reason=reason,
                                   providers=providers, purpose=purpose, scope=scope)
        done = self.run(request.id)
        receipt = ErasureReceipt.from_request(done)
        if receipt.complete:
            return receipt
        raise incomplete_error(done, receipt, self.state_dir)


# --- helpers ---------------------------------------------------------------------------


def _aware(value: datetime) -> datetime:
    if not isinstance(value, datetime):
        raise ErasureError(f"terminated_at must be a datetime, got {value!r}")
    return value if value.tzinfo else value.replace(tzinfo=UTC)



def _root_words(root: str | None) -> str:
    return f"local_root {root}" if root is not None \
        else "no local root (its data in the cloud backends)"
