"""Tracked erasure requests: planned from the tenant's lineage, executed per backend,
verified, keys destroyed last, receipted.

This is the one implementation of tenant erasure: ``res.erase(tenant)``
(:meth:`ErasureTracker.erase`) records a request and runs it, returning an
:class:`ErasureReceipt`; the CLI's ``residency erasure request/run/status`` and
:class:`ErasureTracker` work on the same requests.

A request records a tenant's erasure (deletion on request, or all data within 30 days of
contract termination) with its deadline. Each run of it (:meth:`ErasureTracker.run`)
plans the backends first: every backend of the tenant's location (each provider's
primary and in-country failover; ``providers`` narrows the providers there), plus every
location and provider the tenant's lineage (:mod:`residency_sdk.lineage`) says its data
reached (a ``transfer`` to another location, a write to another provider), read from
every location. The plan only grows: a backend once planned stays planned, an explicit
``providers`` never removes a place the lineage names, and a location whose lineage
cannot be read keeps the request open (named in ``lineage_unreachable``). Then, on each
planned backend:

1. delete every object under the tenant's prefix (``tenants/<id>/``), except what a legal
   hold keeps (the ``legal_hold`` metadata marker, or the provider's own lock such as S3
   object lock); each delete is conditional on the object examined, and an object
   re-uploaded in between is examined again (the new one is the tenant's too); then purge
   the residue no listing shows (the store's ``purge_residue`` capability: on S3
   noncurrent versions, delete markers and incomplete multipart uploads; locally the
   leftovers of interrupted writes), so a versioned bucket keeps no copy;
2. verify: a fresh listing of the prefix must show nothing left (held objects excepted).

When every planned backend is verified (nothing held, every lineage location read):

3. destroy the tenant's key material on every planned backend
   (:meth:`ObjectStore.destroy_tenant_key
   <residency_sdk.storage.base.ObjectStore.destroy_tenant_key>`: the local key file
   shredded, a KMS key scheduled for deletion), so backups and stray copies the provider
   keeps become unreadable; last, because a held copy must stay readable;
4. drop the tenant's lineage and its tenant records in every location (they name it);
5. write a receipt (each location and backend: found, deleted, verified; each key's fate)
   and record it in the audit trail as an ``erase`` event whose ``checksum`` is the
   receipt's SHA-256, so :func:`verify_receipt` can prove the stored receipt is the
   audited one.

A request with ``scope="location"`` (the old location of ``move_tenant``) erases only the
backends of its own location and destroys only their keys: the moved data lives on in the
new location, and so does the lineage a later erasure plans from.

Every step is written ahead in the audit trail: an ``erase`` intent is durable before a
backend (or a key) is touched, its result is the outcome (if the intent cannot be
recorded, nothing is deleted and :class:`AuditUnavailable` is raised, the request staying
open). A backend's events name the backend's location (``source_location``), so a map
with per-location audit sinks keeps each location's erasure in its own trail; the
receipt is recorded in the tenant's location.

State is one JSON file per request under ``<state_dir>/erasure/``, rewritten atomically
after each backend, every few deletions and around each key destruction, so re-running
an interrupted erasure finishes it whatever step it died in: verified backends are
skipped, the others are listed and emptied again (deletion is idempotent), keys already
destroyed are not asked again. The request also keeps the options it was made with (the
region map file, the local root, its state folder: :class:`RequestOptions`), so
``residency erasure run ID --state-dir DIR`` needs nothing else. Held objects leave the
request ``blocked``, open, and visible in :meth:`ErasureTracker.status` against its
deadline.

The per-object step and the bounded workers are the shared sweep engine
(:mod:`residency_sdk.sweep`); this module keeps only the erasure policy.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import secrets
import shlex
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from residency_sdk.errors import (
    AuditUnavailable,
    BackendUnavailable,
    ErasureBlocked,
    ErasureError,
    ErasureIncomplete,
    ErasureUnavailable,
    ResidencyError,
)
from residency_sdk.events import AuditEmitter, AuditEvent
from residency_sdk.model import StorageTarget, Tenant
from residency_sdk.policy import ResidencyPolicy
from residency_sdk.regionmap import RegionMap, Role
from residency_sdk.regions import packaged_maps_dir
from residency_sdk.storage.keys import tenant_prefix
from residency_sdk.storage.pool import StorePool
from residency_sdk.sweep import (
    DEFAULT_WORKERS,
    BackendRecord,
    Clock,
    ItemResult,
    Workers,
    atomic_write_json,
    backend_name,
    check_workers,
    examine,
    utc_now,
)

if TYPE_CHECKING:
    from residency_sdk.lineage import Lineage
    from residency_sdk.storage.base import ObjectStore
    from residency_sdk.tenants import TenantRegistry

DEFAULT_DEADLINE_DAYS = 30
_REQUEST_ID = re.compile(r"^er-[0-9]{8}-[0-9a-f]{8}$")
_SAVE_EVERY = 500
_EXAMINE_ATTEMPTS = 3
"""How often an object re-uploaded between its head and its conditional delete is
examined again before the backend is left for the next run."""

RequestStatus = Literal["requested", "in_progress", "blocked", "completed"]
BackendStatus = Literal["pending", "verified", "blocked", "failed"]
Scope = Literal["tenant", "location"]
"""What a request erases: ``tenant``, everything of the tenant wherever its lineage says
its data went (and then its key material, lineage and records); ``location``, only the
backends of the request's own location (the old location of a move: the moved data, the
other locations' keys and the lineage are kept)."""
KeyState = Literal["pending", "destroying", "destroyed", "scheduled", "absent",
                   "unsupported", "failed"]
_KEY_DONE = frozenset({"destroyed", "scheduled", "absent", "unsupported"})
_WHOLE_LINEAGE = "*"
"""``lineage_unreachable``'s key when the trace failed as a whole (a corrupt record)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BackendProgress(BackendRecord):
    """The erasure's progress on one backend."""

    location: str | None = None
    """The location of the backend (None only in requests recorded before erasure
    planned from lineage: the request's own location)."""
    status: BackendStatus = "pending"
    found: int = 0
    """Objects found under the tenant's prefix (deleted, held or left), over all runs."""
    deleted: int = 0
    bytes: int = 0
    versions_deleted: int = 0
    held: list[str] = Field(default_factory=list)
    remaining: int | None = None
    error: str | None = None
    unreachable: bool = False
    """True when the last attempt failed because the backend could not be reached."""
    verified_at: datetime | None = None


class KeyProgress(_Model):
    """The destruction of the tenant's key material on one backend (crypto-shredding)."""

    backend: str
    location: str
    provider: str
    status: KeyState = "pending"
    """``destroying`` while a call may have destroyed it (saved before the call, so a
    re-run after a crash tells a key it destroyed from one that never existed)."""
    key_id: str | None = None
    effective_at: datetime | None = None
    detail: str = ""
    error: str | None = None
    finished_at: datetime | None = None

    @property
    def done(self) -> bool:
        """True once the key's fate is settled (destroyed, scheduled, absent, or the
        backend keeps no per-tenant key)."""
        return self.status in _KEY_DONE

    def summary(self) -> str:
        """What happened to the key, in words (receipts, CLI)."""
        key = self.key_id or "(id unknown)"
        if self.status == "destroyed":
            return f"key {key} destroyed" + (f" ({self.detail})" if self.detail else "")
        if self.status == "scheduled":
            when = f" on {self.effective_at:%Y-%m-%d}" if self.effective_at else ""
            return f"key {key} disabled, deletion scheduled{when}"
        if self.status == "absent":
            return "no key of the tenant here (never made, or destroyed earlier)"
        if self.status == "unsupported":
            return f"no per-tenant key: {self.detail or 'the backend keeps none'}"
        if self.status == "failed":
            return f"key destruction failed: {self.error}"
        return "key not destroyed yet"


class RequestOptions(_Model):
    """What a request was made with, so running it needs nothing else
    (``residency erasure run ID --state-dir DIR``)."""

    map_path: str | None = None
    """The region map file (absolute); None for the packaged default map."""
    local_root: str | None = None
    """The embedded backend's root folder (absolute); None when data lives in the
    cloud backends."""
    state_dir: str
    """The state folder the request is kept in (absolute)."""


class ErasureRequest(_Model):
    """One tracked erasure request (its JSON form is the state file)."""

    id: str
    tenant_id: str
    tenant_country: str
    location: str
    map_name: str
    providers: list[str] | None = None
    scope: Scope = "tenant"
    options: RequestOptions | None = None
    """The options it was made with (None in requests recorded before they were kept)."""
    requested_at: datetime
    terminated_at: datetime | None = None
    deadline: datetime
    reason: str | None = None
    purpose: str | None = None
    actor: str | None = None
    status: RequestStatus = "requested"
    attempts: int = 0
    last_run_at: datetime | None = None
    backends: dict[str, BackendProgress] = {}
    lineage_unreachable: dict[str, str] = {}
    """Locations whose lineage of the tenant could not be read on the last run (location
    -> why): the erasure cannot know every copy, so it stays open."""
    keys: dict[str, KeyProgress] = {}
    """Per backend: the destruction of the tenant's key material (after every backend is
    verified)."""
    forgotten_at: datetime | None = None
    """When the tenant's lineage and records were dropped (a ``tenant`` scope)."""
    lineage_deleted: int = 0
    records_deleted: int = 0
    cleanup_error: str | None = None
    """Why dropping the lineage and records failed on the last run (None when not)."""
    completed_at: datetime | None = None
    receipt: dict[str, Any] | None = None
    receipt_sha256: str | None = None
    receipt_event_id: str | None = None

    @property
    def is_open(self) -> bool:
        """True until every backend is verified empty and the receipt is recorded."""
        return self.status != "completed"

    @property
    def locations(self) -> tuple[str, ...]:
        """Every location the request covers (its own first, then the others sorted)."""
        others = {b.location or self.location for b in self.backends.values()}
        return (self.location, *sorted(others - {self.location}))

    def overdue(self, now: datetime) -> bool:
        """True when the request is still open after its deadline."""
        return self.is_open and now > self.deadline

    def time_left(self, now: datetime) -> timedelta:
        """Time until the deadline (negative once passed)."""
        return self.deadline - now

    def keys_state(self) -> Literal["pending", "failed", "done"]:
        """Where the key destruction stands: ``done`` once every planned backend's key
        is settled, ``failed`` when one could not be destroyed, else ``pending``."""
        if any(k.status == "failed" for k in self.keys.values()):
            return "failed"
        settled = {name for name, k in self.keys.items() if k.done}
        return "done" if self.backends and settled >= set(self.backends) else "pending"


def receipt_digest(receipt: dict[str, Any]) -> str:
    """SHA-256 (hex) of a receipt's canonical JSON (sorted keys, compact)."""
    canonical = json.dumps(receipt, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def run_command(request_id: str, state_dir: str | Path | None = None) -> str:
    """The shell command that runs (or finishes) request ``request_id``:
    ``residency erasure run ID``, with ``--state-dir`` (absolute) when ``state_dir`` is
    given; safe to paste as it is (quoted for a POSIX shell)."""
    command = f"residency erasure run {request_id}"
    if state_dir is not None:
        command += f" --state-dir {shlex.quote(str(Path(state_dir).resolve()))}"
    return command


def load_request(state_dir: str | Path, request_id: str) -> ErasureRequest:
    """Request ``request_id`` from ``<state_dir>/erasure/``, needing no map or client
    (the CLI reads a request's options before it knows which map to load);
    :class:`ErasureError` when there is none or its state file is corrupt."""
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
        raise ErasureError(f"invalid erasure request id {request_id!r}: ids look like "
                           "'er-20261122-1a2b3c4d' (see `residency erasure status`)")
    folder = Path(state_dir) / "erasure"
    path = folder / f"{request_id}.json"
    try:
        return ErasureRequest.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise ErasureError(f"no erasure request {request_id!r} in {folder}: check the "
                           "id and --state-dir") from None
    except ValidationError as exc:
        raise ErasureError(f"erasure state file {path} is corrupt: {exc.errors()[0]['msg']}"
                           "; restore it from backup") from None


def load_requests(state_dir: str | Path, *, open_only: bool = False) -> list[ErasureRequest]:
    """Every request kept in ``state_dir`` (oldest deadline first); only the open ones
    with ``open_only``."""
    folder = Path(state_dir) / "erasure"
    found = [load_request(state_dir, p.stem) for p in sorted(folder.glob("er-*.json"))]
    if open_only:
        found = [r for r in found if r.is_open]
    return sorted(found, key=lambda r: (r.deadline, r.id))


def status_row(request: ErasureRequest, now: datetime,
               state_dir: str | Path | None = None) -> dict[str, Any]:
    """One request against its deadline, as plain data: what is left per location and
    backend (``left``: every backend not verified, with its status, held objects and
    error), the lineage locations that could not be read, where the key destruction
    stands, and the command that finishes it (``run``; ``--state-dir`` when given)."""
    return {
        "id": request.id, "tenant_id": request.tenant_id, "location": request.location,
        "scope": request.scope, "status": request.status,
        "deadline": request.deadline.isoformat(),
        "days_left": round(request.time_left(now).total_seconds() / 86400, 1),
        "overdue": request.overdue(now),
        "held": sum(len(b.held) for b in request.backends.values()),
        "errors": [b.error for b in request.backends.values() if b.error]
                  + [k.error for k in request.keys.values() if k.error]
                  + ([request.cleanup_error] if request.cleanup_error else []),
        "left": [{"location": b.location or request.location, "backend": b.backend,
                  "status": b.status, "held": len(b.held), "remaining": b.remaining,
                  "error": b.error}
                 for b in request.backends.values() if b.status != "verified"],
        "lineage_unreachable": dict(request.lineage_unreachable),
        "keys": "done" if not request.is_open else request.keys_state(),
        "run": None if not request.is_open else run_command(request.id, state_dir),
    }


def map_file(region_map: RegionMap) -> str | None:
    """The file ``region_map`` was loaded from, absolute; None for the packaged default
    (or a map that is no file: a request then runs with the packaged map's name check)."""
    file = Path(region_map.file)
    try:
        if file.resolve() == (packaged_maps_dir() / "default.yaml").resolve():
            return None
        return str(file.resolve()) if file.is_file() else None
    except OSError:
        return None


class _Planned(NamedTuple):
    """One backend of a request's plan."""

    name: str
    location: str
    role: Role
    target: StorageTarget


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
                 registry: TenantRegistry | None = None) -> None:
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
        _name_locations(request)
        try:
            plan = self._plan(request)
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
                self._erase_backend(request, tenant, progress, item.target)
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

    def _plan(self, request: ErasureRequest) -> list[_Planned]:
        """The backends to erase: the request's location (its ``providers``), then every
        (location, provider) the tenant's lineage names (scope ``tenant``), then every
        backend planned on an earlier run. Records the locations whose lineage could not
        be read, and those the map can no longer reach, in ``lineage_unreachable``."""
        home = self.policy.location(request.location)
        pairs: list[tuple[str, str]] = [
            (home.id, p) for p in (request.providers if request.providers is not None
                                   else self.stores.data_providers(home))]
        unreachable: dict[str, str] = {}
        if request.scope == "tenant" and self.lineage is not None:
            try:
                trace = self.lineage.trace(request.tenant_id)
            except AuditUnavailable:
                raise
            except ResidencyError as exc:
                unreachable[_WHOLE_LINEAGE] = f"{type(exc).__name__}: {exc}"
            else:
                unreachable.update(trace.unreachable)
                pairs += sorted(trace.reached())
        pairs += [(b.location or request.location, b.provider)
                  for b in request.backends.values()]
        plan: dict[str, _Planned] = {}
        for location_id, provider in dict.fromkeys(pairs):
            try:
                targets = self.policy.location(location_id).targets([provider])
            except ResidencyError as exc:
                # The tenant's data went somewhere this map no longer describes: the
                # erasure cannot reach it, so it cannot be complete.
                unreachable[location_id] = (
                    f"the tenant's data reached provider {provider!r} in {location_id}, "
                    f"which region map {self.policy.map.name!r} cannot open ({exc}); restore "
                    "that backend in the map, or erase it there yourself, and run again")
                continue
            for role, target in targets:
                name = f"{location_id}/{backend_name(role, target)}"
                plan.setdefault(name, _Planned(name, location_id, role, target))
        request.lineage_unreachable = unreachable
        return list(plan.values())

    def _examine(self, store: ObjectStore, key: str, now: datetime) -> ItemResult:
        """:func:`~residency_sdk.sweep.examine` with deletion conditional on the object
        examined; an object re-uploaded in between (``changed``) is the tenant's too, so
        it is examined again, a few times."""
        result = examine(store, key, now)
        for _ in range(_EXAMINE_ATTEMPTS - 1):
            action: str = result.action
            if action != "changed":
                break
            result = examine(store, key, now)
        return result

    def _erase_backend(self, request: ErasureRequest, tenant: Tenant,
                       progress: BackendProgress, target: StorageTarget) -> None:
        prefix = tenant_prefix(tenant)
        location = progress.location or request.location
        now = self.clock()
        # Written ahead: nothing on this backend is touched until the intent is durable.
        intent = self.audit.intent(self._backend_event(request, tenant, progress, target,
                                                       "intent"))
        progress.error = None
        progress.unreachable = False
        held: dict[str, str] = {}
        changed: list[str] = []
        try:
            store = self.stores.get(target, location)
            skip: set[str] = set()  # held, changed again and again, or gone already
            last_deleted: set[str] = set()
            with Workers(self.workers, "erasure") as workers:
                # List a page, delete it, list again: deleting while paging through one
                # listing is not safe on every backend, and memory stays bounded.
                while True:
                    page = list(itertools.islice(
                        (i.key for i in store.list(prefix) if i.key not in skip),
                        _SAVE_EVERY))
                    if not page or not set(page).isdisjoint(last_deleted):
                        break  # done; or deleted but listed again: verification reports it
                    last_deleted = set()
                    for result in workers.imap(lambda k: self._examine(store, k, now), page):
                        action: str = result.action
                        if action == "changed":
                            # Re-uploaded every time we looked (its error is the
                            # ObjectChanged): left for the next run, which the
                            # verification below makes sure of.
                            changed.append(result.key)
                            skip.add(result.key)
                            progress.found += 1
                            continue
                        if result.error is not None:
                            raise result.error
                        if action == "held":
                            held[result.key] = result.detail or "held"
                            skip.add(result.key)
                            progress.found += 1
                        elif action == "gone":
                            skip.add(result.key)
                        else:
                            last_deleted.add(result.key)
                            progress.found += 1
                            progress.deleted += 1
                            progress.bytes += result.size
                            if self.progress is not None:
                                self.progress(progress.backend, result.key)
                    self._save(request)
            # Interrupted writes and old versions leave data no listing shows (a local
            # temp file, an incomplete multipart upload, a noncurrent version): it is the
            # tenant's data too.
            residue = store.purge_residue(prefix, keep=frozenset(held))
            progress.versions_deleted += residue.versions_deleted
            held.update(residue.held)
            remaining = [i.key for i in store.list(prefix) if i.key not in held]
            remaining += store.residue_left(prefix, keep=frozenset(held))
        except ResidencyError as exc:
            progress.status = "failed"
            progress.error = f"{type(exc).__name__}: {exc}"
            progress.unreachable = isinstance(exc, BackendUnavailable)
            self._emit_backend(request, tenant, progress, target, "error", intent)
            return
        progress.held = sorted(f"{k} ({why})" for k, why in held.items())
        progress.remaining = len(remaining)
        if remaining:
            progress.status = "failed"
            progress.error = (f"{len(remaining)} object(s) still listed after deletion, e.g. "
                              f"{remaining[0]!r}"
                              + (f" ({len(changed)} re-uploaded while being erased)"
                                 if changed else "") + "; run the erasure again")
        elif held:
            progress.status = "blocked"
        else:
            progress.status = "verified"
            progress.verified_at = self.clock()
        self._emit_backend(request, tenant, progress, target,
                           "ok" if progress.status == "verified" else "error", intent)

    def _emit_backend(self, request: ErasureRequest, tenant: Tenant, progress: BackendProgress,
                      target: StorageTarget, outcome: Literal["ok", "error"],
                      intent: AuditEvent) -> None:
        self.audit.emit(self._backend_event(request, tenant, progress, target, outcome,
                                            intent_id=intent.event_id))

    def _backend_event(self, request: ErasureRequest, tenant: Tenant,
                       progress: BackendProgress, target: StorageTarget,
                       outcome: Literal["ok", "error", "intent"],
                       intent_id: str | None = None) -> AuditEvent:
        # source_location is the backend's: a destination's erasure is in its own trail.
        return AuditEvent(
            operation="erase", outcome=outcome, actor=self.actor or request.actor,
            purpose=f"erasure:{request.id}", tenant_id=tenant.id,
            tenant_country=tenant.country,
            source_location=progress.location or request.location,
            provider=target.provider, region=target.region, bucket=target.bucket,
            served_by="failover" if progress.role == "failover" else "primary",
            size=None if outcome == "intent" else progress.bytes,
            reasons=((f"{progress.backend}: erasure starting (attempt {request.attempts})"
                      if outcome == "intent" else
                      f"{progress.backend}: {progress.deleted} objects, "
                      f"{progress.versions_deleted} old versions deleted, "
                      f"{len(progress.held)} held, status {progress.status}"),
                     *_why(request)),
            error=progress.error if outcome != "intent" else None, intent_id=intent_id)

    # --- after every backend is verified -------------------------------------------------

    def _finish(self, request: ErasureRequest, tenant: Tenant, plan: list[_Planned]) -> None:
        """Every planned backend is verified empty: destroy the tenant's key material on
        each (last: while anything is held or unreached, every key must stay), drop the
        tenant's lineage and records (scope ``tenant``), then record the receipt. A step
        that fails leaves the request open (``in_progress``) for a re-run."""
        request.status = "in_progress"
        for item in plan:
            self._destroy_key(request, tenant, item)
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
            except AuditUnavailable:
                raise
            except ResidencyError as exc:
                request.cleanup_error = (f"dropping the tenant's lineage and records: "
                                         f"{type(exc).__name__}: {exc}")
                return
            request.forgotten_at = self.clock()
            self._save(request)
        self._complete(request, tenant)

    def _destroy_key(self, request: ErasureRequest, tenant: Tenant, item: _Planned) -> None:
        """Destroy the tenant's key material on one backend (idempotent, resumable)."""
        progress = request.keys.get(item.name)
        if progress is None:
            progress = request.keys[item.name] = KeyProgress(
                backend=item.name, location=item.location, provider=item.target.provider)
        if progress.done:
            return
        intent = self.audit.intent(self._key_event(request, tenant, item, progress,
                                                   "intent"))
        # An earlier run may have destroyed it and died before saving: then the key id
        # it recorded first tells "destroyed" from "never had one" below.
        resumed = progress.status in ("destroying", "failed")
        progress.error = None
        try:
            store = self.stores.get(item.target, item.location)
            if progress.key_id is None:
                progress.key_id = store.tenant_key_id(tenant.id)
            progress.status = "destroying"
            self._save(request)
            result = store.destroy_tenant_key(tenant.id)
        except AuditUnavailable:
            raise
        except ResidencyError as exc:
            progress.status = "failed"
            progress.error = f"{type(exc).__name__}: {exc}"
            self.audit.emit(self._key_event(request, tenant, item, progress, "error",
                                            intent.event_id))
            return
        status: KeyState = result.status
        detail = result.detail
        if status == "absent" and resumed and progress.key_id is not None:
            status = "destroyed"
            detail = detail or "by an interrupted earlier run of this request"
        progress.status = status
        progress.key_id = result.key_id or progress.key_id
        progress.effective_at = result.effective_at
        progress.detail = detail
        progress.finished_at = self.clock()
        self.audit.emit(self._key_event(request, tenant, item, progress, "ok",
                                        intent.event_id))
        self._save(request)

    def _key_event(self, request: ErasureRequest, tenant: Tenant, item: _Planned,
                   progress: KeyProgress, outcome: Literal["ok", "error", "intent"],
                   intent_id: str | None = None) -> AuditEvent:
        return AuditEvent(
            operation="erase", outcome=outcome, actor=self.actor or request.actor,
            purpose=f"erasure_keys:{request.id}", tenant_id=tenant.id,
            tenant_country=tenant.country, source_location=item.location,
            provider=item.target.provider, region=item.target.region,
            bucket=item.target.bucket,
            served_by="failover" if item.role == "failover" else "primary",
            reasons=((f"{item.name}: destroying the tenant's key material"
                      if outcome == "intent" else f"{item.name}: {progress.summary()}"),
                     *_why(request)),
            error=progress.error if outcome == "error" else None, intent_id=intent_id)

    def _complete(self, request: ErasureRequest, tenant: Tenant) -> None:
        finished = self.clock()
        backends = sorted(request.backends.values(), key=lambda b: b.backend)
        keys = sorted(request.keys.values(), key=lambda k: k.backend)
        receipt = {
            "request_id": request.id, "tenant_id": request.tenant_id,
            "tenant_country": request.tenant_country, "location": request.location,
            "scope": request.scope, "locations": list(request.locations),
            "map": request.map_name, "requested_at": request.requested_at.isoformat(),
            "deadline": request.deadline.isoformat(), "completed_at": finished.isoformat(),
            "on_time": finished <= request.deadline,
            "reason": request.reason, "purpose": request.purpose,
            "backends": [{"backend": b.backend, "location": b.location or request.location,
                          "provider": b.provider, "region": b.region, "bucket": b.bucket,
                          "role": b.role, "found": b.found, "deleted": b.deleted,
                          "bytes": b.bytes, "versions_deleted": b.versions_deleted,
                          "verified_at": b.verified_at.isoformat() if b.verified_at else None}
                         for b in backends],
            "keys": [{"backend": k.backend, "location": k.location, "provider": k.provider,
                      "status": k.status, "key_id": k.key_id,
                      "effective_at": k.effective_at.isoformat() if k.effective_at else None,
                      "summary": k.summary()} for k in keys],
            "lineage_deleted": request.lineage_deleted,
            "records_deleted": request.records_deleted,
        }
        digest = receipt_digest(receipt)
        shredded = sum(k.status in ("destroyed", "scheduled") for k in keys)
        event = AuditEvent(
            operation="erase", outcome="ok", actor=self.actor or request.actor,
            purpose=f"erasure_receipt:{request.id}", tenant_id=tenant.id,
            tenant_country=tenant.country, source_location=request.location,
            size=sum(b.bytes for b in backends), checksum=f"sha256:{digest}",
            reasons=(f"erasure request {request.id} complete: "
                     f"{sum(b.deleted for b in backends)} objects deleted from "
                     f"{len(backends)} backend(s) in {', '.join(request.locations)}, "
                     f"verified empty; {shredded} tenant key(s) destroyed or scheduled, "
                     f"{sum(k.status == 'unsupported' for k in keys)} backend(s) without a "
                     "per-tenant key",
                     *_why(request)))
        # Durable before the request is marked complete: the receipt names this event.
        self.audit.emit(event, durable=True)
        request.receipt = receipt
        request.receipt_sha256 = digest
        request.receipt_event_id = event.event_id
        request.completed_at = finished
        request.status = "completed"

    def _save(self, request: ErasureRequest) -> None:
        atomic_write_json(self.dir / f"{request.id}.json", request.model_dump(mode="json"))

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
        raise _incomplete(done, receipt, self.state_dir)


# --- Residency.erase: the one-call tracked erasure ------------------------------------


@dataclass(frozen=True, slots=True)
class BackendErasure:
    """What an erasure did on one backend (a provider's primary or failover in one
    location): ``found`` objects there, ``objects`` deleted, ``held`` kept."""

    backend: str
    provider: str
    region: str
    bucket: str
    role: str
    status: BackendStatus
    objects: int
    bytes: int
    versions_deleted: int = 0
    held: tuple[str, ...] = ()
    remaining: int | None = None
    error: str | None = None
    verified_at: datetime | None = None
    location: str = ""
    found: int = 0

    @classmethod
    def from_progress(cls, progress: BackendProgress,
                      location: str = "") -> BackendErasure:
        """The result recorded in a request's state (``location``: the request's, for
        progress recorded before backends named theirs)."""
        return cls(backend=progress.backend, provider=progress.provider,
                   region=progress.region, bucket=progress.bucket, role=progress.role,
                   status=progress.status, objects=progress.deleted, bytes=progress.bytes,
                   versions_deleted=progress.versions_deleted, held=tuple(progress.held),
                   remaining=progress.remaining, error=progress.error,
                   verified_at=progress.verified_at,
                   location=progress.location or location, found=progress.found)


@dataclass(frozen=True, slots=True)
class KeyErasure:
    """What happened to the tenant's key material on one backend (``status``:
    ``destroyed``, ``scheduled`` for deletion at ``effective_at``, ``absent``,
    ``unsupported`` with ``detail`` saying what covers that backend's backups instead;
    ``pending`` or ``failed`` while the request is open)."""

    backend: str
    location: str
    provider: str
    status: KeyState
    key_id: str | None = None
    effective_at: datetime | None = None
    detail: str = ""
    error: str | None = None
    summary: str = ""

    @classmethod
    def from_progress(cls, progress: KeyProgress) -> KeyErasure:
        """The key destruction recorded in a request's state."""
        return cls(backend=progress.backend, location=progress.location,
                   provider=progress.provider, status=progress.status,
                   key_id=progress.key_id, effective_at=progress.effective_at,
                   detail=progress.detail, error=progress.error,
                   summary=progress.summary())


@dataclass(frozen=True, slots=True)
class ErasureReceipt:
    """What ``res.erase(tenant)`` returns (and erasure errors carry as ``.receipt``).

    ``objects`` / ``bytes`` count every deletion of the request over all its runs, in
    every location (``locations``; per backend in ``backends``); ``keys`` says what
    became of the tenant's key material on each backend. ``started`` is when the
    request was made, ``finished`` when it completed (or, while it is open, when its last
    run ended). ``complete`` is True once every backend was verified empty, every key
    settled and the receipt recorded in the audit trail (``receipt_sha256``,
    ``receipt_event_id``; check them with :func:`verify_receipt`).
    """

    request_id: str
    tenant_id: str
    tenant_country: str
    location: str
    status: RequestStatus
    started: datetime
    finished: datetime
    deadline: datetime
    backends: tuple[BackendErasure, ...]
    attempts: int
    receipt_sha256: str | None = None
    receipt_event_id: str | None = None
    keys: tuple[KeyErasure, ...] = ()
    scope: Scope = "tenant"
    lineage_unreachable: tuple[str, ...] = ()
    """Locations whose lineage could not be read (``location: why``)."""

    @classmethod
    def from_request(cls, request: ErasureRequest) -> ErasureReceipt:
        """The receipt of ``request`` in its current state."""
        return cls(request_id=request.id, tenant_id=request.tenant_id,
                   tenant_country=request.tenant_country, location=request.location,
                   status=request.status, started=request.requested_at,
                   finished=(request.completed_at or request.last_run_at
                             or request.requested_at),
                   deadline=request.deadline,
                   backends=tuple(BackendErasure.from_progress(b, request.location)
                                  for b in request.backends.values()),
                   attempts=request.attempts, receipt_sha256=request.receipt_sha256,
                   receipt_event_id=request.receipt_event_id,
                   keys=tuple(KeyErasure.from_progress(k) for k in request.keys.values()),
                   scope=request.scope,
                   lineage_unreachable=tuple(f"{loc}: {why}" for loc, why in
                                             sorted(request.lineage_unreachable.items())))

    @property
    def locations(self) -> tuple[str, ...]:
        """Every location erased: the tenant's own first, then the others sorted."""
        others = {b.location for b in self.backends} - {self.location}
        return (self.location, *sorted(others))

    @property
    def objects(self) -> int:
        """Objects deleted across every backend."""
        return sum(b.objects for b in self.backends)

    @property
    def bytes(self) -> int:
        """Bytes deleted across every backend."""
        return sum(b.bytes for b in self.backends)

    @property
    def complete(self) -> bool:
        """True when every backend is verified empty and the receipt is audited."""
        return self.status == "completed"

    @property
    def held(self) -> tuple[str, ...]:
        """Objects a legal hold kept, as ``backend: key (why)``."""
        return tuple(f"{b.backend}: {h}" for b in self.backends for h in b.held)

    def to_dict(self) -> dict[str, Any]:
        """The receipt as plain JSON-able data."""
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {"request_id": self.request_id, "tenant_id": self.tenant_id,
                "tenant_country": self.tenant_country, "location": self.location,
                "scope": self.scope, "locations": list(self.locations),
                "status": self.status, "complete": self.complete, "objects": self.objects,
                "bytes": self.bytes, "started": iso(self.started),
                "finished": iso(self.finished), "deadline": iso(self.deadline),
                "attempts": self.attempts, "receipt_sha256": self.receipt_sha256,
                "receipt_event_id": self.receipt_event_id,
                "lineage_unreachable": list(self.lineage_unreachable),
                "backends": [{"backend": b.backend, "location": b.location,
                              "provider": b.provider, "region": b.region,
                              "bucket": b.bucket, "role": b.role, "status": b.status,
                              "found": b.found, "objects": b.objects, "bytes": b.bytes,
                              "versions_deleted": b.versions_deleted, "held": list(b.held),
                              "remaining": b.remaining, "error": b.error,
                              "verified_at": iso(b.verified_at)} for b in self.backends],
                "keys": [{"backend": k.backend, "location": k.location,
                          "provider": k.provider, "status": k.status, "key_id": k.key_id,
                          "effective_at": iso(k.effective_at), "detail": k.detail,
                          "error": k.error, "summary": k.summary} for k in self.keys]}


def _incomplete(request: ErasureRequest, receipt: ErasureReceipt,
                state_dir: Path | None = None) -> ErasureIncomplete:
    backends = list(request.backends.values())
    problems = [f"{b.backend}: {b.error}" for b in backends if b.error]
    problems += [f"{'the lineage' if loc == _WHOLE_LINEAGE else 'lineage in ' + loc} "
                 f"could not be read: {why}"
                 for loc, why in sorted(request.lineage_unreachable.items())]
    problems += [f"{k.backend}: {k.summary()}" for k in request.keys.values()
                 if k.status == "failed"]
    if request.cleanup_error:
        problems.append(request.cleanup_error)
    failed = "; ".join(problems)
    rerun = (f"request {request.id} stays open: finish it by calling res.erase for the "
             f"tenant again or `{run_command(request.id, state_dir)}`")
    if request.lineage_unreachable or any(b.unreachable for b in backends):
        where = sorted({b.location or request.location for b in backends if b.unreachable}
                       | (set(request.lineage_unreachable) - {_WHOLE_LINEAGE}))
        if _WHOLE_LINEAGE in request.lineage_unreachable:
            where.append("(the lineage)")
        return ErasureUnavailable(
            f"erasure of tenant {request.tenant_id!r} is incomplete: location(s) "
            f"{', '.join(where)} could not be reached ({failed}); {rerun} once they are",
            receipt=receipt, request_id=request.id)
    if any(b.status == "failed" for b in backends) or problems \
            or not any(b.held for b in backends):
        return ErasureIncomplete(
            f"erasure of tenant {request.tenant_id!r} is incomplete "
            f"({failed or 'keys or records left'}); {rerun}",
            receipt=receipt, request_id=request.id)
    return ErasureBlocked(
        f"erasure of tenant {request.tenant_id!r} is blocked: {len(receipt.held)} object(s) "
        f"under legal hold were kept ({'; '.join(receipt.held[:3])}); every key is kept "
        f"with them; {rerun} once the hold is lifted",
        receipt=receipt, request_id=request.id)


# --- receipts in the audit trail -------------------------------------------------------


def verify_receipt(request: ErasureRequest, events: Iterable[AuditEvent]) -> AuditEvent:
    """Return the audit event recording ``request``'s receipt, after checking that the
    stored receipt hashes to what was audited; :class:`ErasureError` otherwise."""
    if request.receipt is None or request.receipt_event_id is None:
        raise ErasureError(f"erasure request {request.id} has no receipt yet (status "
                           f"{request.status}): run it to completion first")
    digest = receipt_digest(request.receipt)
    if digest != request.receipt_sha256:
        raise ErasureError(f"the stored receipt of {request.id} does not match its recorded "
                           "digest: the state file was altered")
    for event in events:
        if event.event_id != request.receipt_event_id:
            continue
        if event.operation != "erase" or event.tenant_id != request.tenant_id \
                or event.checksum != f"sha256:{digest}":
            raise ErasureError(f"audit event {event.event_id} does not match the receipt of "
                               f"{request.id}: the receipt or the audit trail was altered")
        return event
    raise ErasureError(f"the receipt of erasure request {request.id} (event "
                       f"{request.receipt_event_id}) is not in the audit trail")


def audit_log_events(path: str | Path) -> Iterator[AuditEvent]:
    """Every event of the audit log at ``path`` (a file or a ``postgresql://`` URL), after
    verifying its hash chain."""
    from residency_sdk.audit import require_valid
    from residency_sdk.audit.log import open_store

    require_valid(path)
    store = open_store(path)
    try:
        with store.read() as snapshot:
            for row in snapshot.rows():
                yield AuditEvent.model_validate_json(row[1])
    finally:
        store.close()


# --- helpers ---------------------------------------------------------------------------


def _why(request: ErasureRequest) -> tuple[str, ...]:
    return tuple(f"{name}: {value}" for name, value in
                 (("reason", request.reason), ("purpose", request.purpose)) if value)


def _aware(value: datetime) -> datetime:
    if not isinstance(value, datetime):
        raise ErasureError(f"terminated_at must be a datetime, got {value!r}")
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _name_locations(request: ErasureRequest) -> None:
    """Give the backends of a request recorded before erasure planned from lineage their
    location (the request's own) and location-qualified names."""
    for name, progress in list(request.backends.items()):
        if progress.location is not None:
            continue
        progress.location = request.location
        progress.backend = f"{request.location}/{name}"
        del request.backends[name]
        request.backends[progress.backend] = progress


def _root_words(root: str | None) -> str:
    return f"local_root {root}" if root is not None \
        else "no local root (its data in the cloud backends)"
