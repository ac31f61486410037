"""Tracked erasure requests: requested, executed per backend, verified, receipted.

This is the one implementation of tenant erasure: ``res.erase(tenant)``
(:meth:`ErasureTracker.erase`) records a request and runs it, returning an
:class:`ErasureReceipt`; the CLI's ``residency erasure request/run/status`` and
:class:`ErasureTracker` work on the same requests.

A request records a tenant's erasure (deletion on request, or all data within 30 days of
contract termination) with its deadline. :meth:`ErasureTracker.run` works through every
backend of the tenant's location (each provider's primary and in-country failover):

1. delete every object under the tenant's prefix (``tenants/<id>/``), except what a legal
   hold keeps (the ``legal_hold`` metadata marker, or the provider's own lock such as S3
   object lock); then purge the residue no listing shows (the store's ``purge_residue``
   capability: on S3 noncurrent versions, delete markers and incomplete multipart uploads;
   locally the leftovers of interrupted writes), so a versioned bucket keeps no copy;
2. verify: a fresh listing of the prefix must show nothing left (held objects excepted);
3. when every backend is verified, write a receipt (what was deleted where and when) and
   record it in the audit trail as an ``erase`` event whose ``checksum`` is the receipt's
   SHA-256, so :func:`verify_receipt` can prove the stored receipt is the audited one.

Every backend's erasure is written ahead in the audit trail: an ``erase`` intent is
durable before the backend is touched, the per-backend result is its outcome (if the
intent cannot be recorded, nothing is deleted and :class:`AuditUnavailable` is raised,
the request staying open).

State is one JSON file per request under ``<state_dir>/erasure/``, rewritten atomically
after each backend and every few deletions, so re-running an interrupted erasure finishes
it: verified backends are skipped, the others are listed and emptied again (deletion is
idempotent). Held objects leave the request ``blocked``, open, and visible in
:meth:`ErasureTracker.status` against its deadline.

The per-object step and the bounded workers are the shared sweep engine
(:mod:`residency_sdk.sweep`); this module keeps only the erasure policy.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from residency_sdk.errors import (
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
from residency_sdk.regionmap import Location, Role
from residency_sdk.storage.keys import tenant_prefix
from residency_sdk.storage.pool import StorePool
from residency_sdk.sweep import (
    DEFAULT_WORKERS,
    BackendRecord,
    Clock,
    Workers,
    atomic_write_json,
    check_workers,
    examine,
    utc_now,
)

DEFAULT_DEADLINE_DAYS = 30
_REQUEST_ID = re.compile(r"^er-[0-9]{8}-[0-9a-f]{8}$")
_SAVE_EVERY = 500

RequestStatus = Literal["requested", "in_progress", "blocked", "completed"]
BackendStatus = Literal["pending", "verified", "blocked", "failed"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BackendProgress(BackendRecord):
    """The erasure's progress on one backend."""

    status: BackendStatus = "pending"
    deleted: int = 0
    bytes: int = 0
    versions_deleted: int = 0
    held: list[str] = Field(default_factory=list)
    remaining: int | None = None
    error: str | None = None
    unreachable: bool = False
    """True when the last attempt failed because the backend could not be reached."""
    verified_at: datetime | None = None


class ErasureRequest(_Model):
    """One tracked erasure request (its JSON form is the state file)."""

    id: str
    tenant_id: str
    tenant_country: str
    location: str
    map_name: str
    providers: list[str] | None = None
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
    completed_at: datetime | None = None
    receipt: dict[str, Any] | None = None
    receipt_sha256: str | None = None
    receipt_event_id: str | None = None

    @property
    def is_open(self) -> bool:
        """True until every backend is verified empty and the receipt is recorded."""
        return self.status != "completed"

    def overdue(self, now: datetime) -> bool:
        """True when the request is still open after its deadline."""
        return self.is_open and now > self.deadline

    def time_left(self, now: datetime) -> timedelta:
        """Time until the deadline (negative once passed)."""
        return self.deadline - now


def receipt_digest(receipt: dict[str, Any]) -> str:
    """SHA-256 (hex) of a receipt's canonical JSON (sorted keys, compact)."""
    canonical = json.dumps(receipt, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ErasureTracker:
    """Creates, runs and reports tracked erasure requests kept under ``state_dir``.

    Built from the policy (where the tenant lives), the store pool (adapters) and the
    audit emitter (per-backend results and the receipt); ``Residency.erasure_tracker``
    builds one from a client.
    """

    def __init__(self, policy: ResidencyPolicy, stores: StorePool, audit: AuditEmitter,
                 state_dir: str | Path, *, clock: Clock = utc_now,
                 actor: str | None = None,
                 progress: Callable[[str, str], None] | None = None,
                 workers: int = DEFAULT_WORKERS) -> None:
        self.workers = check_workers(workers, ErasureError)
        """Threads deleting in parallel (HEAD and DELETE round trips dominate)."""
        self.policy = policy
        self.stores = stores
        self.audit = audit
        self.dir = Path(state_dir) / "erasure"
        self.clock = clock
        self.actor = actor
        self.progress = progress
        """Called ``(backend, stored_key)`` after each object deleted."""

    # --- requests ----------------------------------------------------------------------

    def request(self, tenant: Tenant, *, terminated_at: datetime | None = None,
                deadline_days: int = DEFAULT_DEADLINE_DAYS, reason: str | None = None,
                providers: Iterable[str] | None = None,
                purpose: str | None = None) -> ErasureRequest:
        """Record an erasure request for ``tenant``; its deadline is ``deadline_days``
        after ``terminated_at`` (contract termination), or after now when not given.
        ``providers`` narrows the backends (default: every backend that may hold the
        location's data, :meth:`StorePool.data_providers
        <residency_sdk.storage.pool.StorePool.data_providers>`)."""
        if not isinstance(tenant, Tenant):
            raise ErasureError(f"expected a residency_sdk.Tenant, got {tenant!r}")
        if not isinstance(deadline_days, int) or not 0 < deadline_days <= 3650:
            raise ErasureError(f"deadline_days must be a whole number of days from 1 to 3650, "
                               f"got {deadline_days!r}")
        now = self.clock()
        start = _aware(terminated_at) if terminated_at is not None else now
        location = self.policy.location_of(tenant)
        chosen = list(providers) if providers is not None else None
        self._targets(location, chosen)  # refuse unknown providers now
        request = ErasureRequest(
            id=f"er-{now:%Y%m%d}-{secrets.token_hex(4)}", tenant_id=tenant.id,
            tenant_country=tenant.country, location=location.id,
            map_name=self.policy.map.name, providers=chosen, requested_at=now,
            terminated_at=start if terminated_at is not None else None,
            deadline=start + timedelta(days=deadline_days), reason=reason, purpose=purpose,
            actor=self.actor)
        self._save(request)
        return request

    def get(self, request_id: str) -> ErasureRequest:
        """The request ``request_id``; :class:`ErasureError` when there is none."""
        if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
            raise ErasureError(f"invalid erasure request id {request_id!r}: ids look like "
                               "'er-20261122-1a2b3c4d' (see `residency erasure status`)")
        path = self.dir / f"{request_id}.json"
        try:
            return ErasureRequest.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            raise ErasureError(f"no erasure request {request_id!r} in {self.dir}: check the "
                               "id and --state-dir") from None
        except ValidationError as exc:
            raise ErasureError(f"erasure state file {path} is corrupt: {exc.errors()[0]['msg']}"
                               "; restore it from backup") from None

    def requests(self, *, open_only: bool = False) -> list[ErasureRequest]:
        """Every request (oldest deadline first); only open ones with ``open_only``."""
        found = [self.get(p.stem) for p in sorted(self.dir.glob("er-*.json"))]
        if open_only:
            found = [r for r in found if r.is_open]
        return sorted(found, key=lambda r: (r.deadline, r.id))

    def find_open(self, tenant: Tenant,
                  providers: Iterable[str] | None = None) -> ErasureRequest | None:
        """The oldest open request erasing ``tenant`` from its current location with the
        same ``providers`` under this map, or None: what a repeated erasure resumes."""
        location = self.policy.resolve(tenant).location
        chosen = list(providers) if providers is not None else None
        for request in sorted(self.requests(open_only=True), key=lambda r: r.requested_at):
            if (request.tenant_id, request.location, request.map_name, request.providers) \
                    == (tenant.id, location, self.policy.map.name, chosen):
                return request
        return None

    def status(self) -> list[dict[str, Any]]:
        """Open requests against their deadline, as plain data (for the CLI)."""
        now = self.clock()
        return [{"id": r.id, "tenant_id": r.tenant_id, "location": r.location,
                 "status": r.status, "deadline": r.deadline.isoformat(),
                 "days_left": round(r.time_left(now).total_seconds() / 86400, 1),
                 "overdue": r.overdue(now),
                 "held": sum(len(b.held) for b in r.backends.values()),
                 "errors": [b.error for b in r.backends.values() if b.error]}
                for r in self.requests(open_only=True)]

    # --- execution ---------------------------------------------------------------------

    def run(self, request_id: str) -> ErasureRequest:
        """Execute (or finish) request ``request_id``; return its new state.

        Backends already verified are skipped. An exception (even KeyboardInterrupt)
        saves the progress made before propagating, so a re-run finishes the job.
        """
        request = self.get(request_id)
        if request.status == "completed":
            return request
        if request.map_name != self.policy.map.name:
            raise ErasureError(
                f"erasure request {request.id} was made with region map {request.map_name!r}, "
                f"not {self.policy.map.name!r}: run it with the same --map")
        request.status = "in_progress"
        request.attempts += 1
        tenant = Tenant(id=request.tenant_id, country=request.tenant_country)
        targets = self._targets(self.policy.location(request.location), request.providers)
        names = []
        for role, target in targets:
            naming = BackendProgress.naming(role, target)
            names.append(naming["backend"])
            request.backends.setdefault(naming["backend"], BackendProgress(**naming))
        self._save(request)
        try:
            for (_role, target), name in zip(targets, names, strict=True):
                progress = request.backends[name]
                if progress.status == "verified":
                    continue
                self._erase_backend(request, tenant, progress, target)
                self._save(request)
        except BaseException:
            request.last_run_at = self.clock()
            self._save(request)
            raise
        request.last_run_at = self.clock()
        states = {b.status for b in request.backends.values()}
        if states == {"verified"}:
            self._complete(request, tenant)
        else:
            request.status = "blocked" if "blocked" in states and "failed" not in states \
                else "in_progress"
        self._save(request)
        return request

    def _targets(self, location: Location,
                 providers: Iterable[str] | None) -> list[tuple[Role, StorageTarget]]:
        chosen = (tuple(providers) if providers is not None
                  else self.stores.data_providers(location))
        return location.targets(chosen)

    def _erase_backend(self, request: ErasureRequest, tenant: Tenant,
                       progress: BackendProgress, target: StorageTarget) -> None:
        prefix = tenant_prefix(tenant)
        now = self.clock()
        # Written ahead: nothing on this backend is touched until the intent is durable.
        intent = self.audit.intent(self._backend_event(request, tenant, progress, target,
                                                       "intent"))
        progress.error = None
        progress.unreachable = False
        held: dict[str, str] = {}
        try:
            store = self.stores.get(target, request.location)
            skip: set[str] = set()  # held, or gone before we got to it
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
                    for result in workers.imap(lambda k: examine(store, k, now), page):
                        if result.error is not None:
                            raise result.error
                        if result.action == "held":
                            held[result.key] = result.detail or "held"
                            skip.add(result.key)
                        elif result.action == "gone":
                            skip.add(result.key)
                        else:
                            last_deleted.add(result.key)
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
                              f"{remaining[0]!r}; run the erasure again")
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
        return AuditEvent(
            operation="erase", outcome=outcome, actor=self.actor or request.actor,
            purpose=f"erasure:{request.id}", tenant_id=tenant.id,
            tenant_country=tenant.country, source_location=request.location,
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

    def _complete(self, request: ErasureRequest, tenant: Tenant) -> None:
        finished = self.clock()
        receipt = {
            "request_id": request.id, "tenant_id": request.tenant_id,
            "tenant_country": request.tenant_country, "location": request.location,
            "map": request.map_name, "requested_at": request.requested_at.isoformat(),
            "deadline": request.deadline.isoformat(), "completed_at": finished.isoformat(),
            "on_time": finished <= request.deadline,
            "reason": request.reason, "purpose": request.purpose,
            "backends": [{"backend": b.backend, "provider": b.provider, "region": b.region,
                          "bucket": b.bucket, "deleted": b.deleted, "bytes": b.bytes,
                          "versions_deleted": b.versions_deleted,
                          "verified_at": b.verified_at.isoformat() if b.verified_at else None}
                         for b in request.backends.values()],
        }
        digest = receipt_digest(receipt)
        event = AuditEvent(
            operation="erase", outcome="ok", actor=self.actor or request.actor,
            purpose=f"erasure_receipt:{request.id}", tenant_id=tenant.id,
            tenant_country=tenant.country, source_location=request.location,
            size=sum(b.bytes for b in request.backends.values()), checksum=f"sha256:{digest}",
            reasons=(f"erasure request {request.id} complete: "
                     f"{sum(b.deleted for b in request.backends.values())} objects deleted "
                     f"from {len(request.backends)} backend(s), verified empty",
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
              terminated_at: datetime | None = None) -> ErasureReceipt:
        """Erase ``tenant`` as a tracked request and return the receipt
        (``Residency.erase``).

        An open request for the same tenant, location and providers (an earlier erasure
        that could not finish) is resumed instead of starting a new one. When the erasure
        cannot finish the request stays open and :class:`ErasureUnavailable` (a backend
        could not be reached), :class:`ErasureBlocked` (legal hold) or
        :class:`ErasureIncomplete` (objects still listed) is raised, carrying ``.receipt``
        and ``.request_id``.
        """
        request = self.find_open(tenant, providers)
        if request is None:
            request = self.request(tenant, terminated_at=terminated_at, reason=reason,
                                   providers=providers, purpose=purpose)
        done = self.run(request.id)
        receipt = ErasureReceipt.from_request(done)
        if receipt.complete:
            return receipt
        raise _incomplete(done, receipt)


# --- Residency.erase: the one-call tracked erasure ------------------------------------


@dataclass(frozen=True, slots=True)
class BackendErasure:
    """What an erasure did on one backend (a provider's primary or failover)."""

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

    @classmethod
    def from_progress(cls, progress: BackendProgress) -> BackendErasure:
        """The result recorded in a request's state."""
        return cls(backend=progress.backend, provider=progress.provider,
                   region=progress.region, bucket=progress.bucket, role=progress.role,
                   status=progress.status, objects=progress.deleted, bytes=progress.bytes,
                   versions_deleted=progress.versions_deleted, held=tuple(progress.held),
                   remaining=progress.remaining, error=progress.error,
                   verified_at=progress.verified_at)


@dataclass(frozen=True, slots=True)
class ErasureReceipt:
    """What ``res.erase(tenant)`` returns (and erasure errors carry as ``.receipt``).

    ``objects`` / ``bytes`` count every deletion of the request over all its runs;
    ``started`` is when the request was made, ``finished`` when it completed (or, while it
    is open, when its last run ended). ``complete`` is True once every backend was verified
    empty and the receipt recorded in the audit trail (``receipt_sha256``,
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

    @classmethod
    def from_request(cls, request: ErasureRequest) -> ErasureReceipt:
        """The receipt of ``request`` in its current state."""
        return cls(request_id=request.id, tenant_id=request.tenant_id,
                   tenant_country=request.tenant_country, location=request.location,
                   status=request.status, started=request.requested_at,
                   finished=(request.completed_at or request.last_run_at
                             or request.requested_at),
                   deadline=request.deadline,
                   backends=tuple(BackendErasure.from_progress(b)
                                  for b in request.backends.values()),
                   attempts=request.attempts, receipt_sha256=request.receipt_sha256,
                   receipt_event_id=request.receipt_event_id)

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
                "status": self.status, "complete": self.complete, "objects": self.objects,
                "bytes": self.bytes, "started": iso(self.started),
                "finished": iso(self.finished), "deadline": iso(self.deadline),
                "attempts": self.attempts, "receipt_sha256": self.receipt_sha256,
                "receipt_event_id": self.receipt_event_id,
                "backends": [{"backend": b.backend, "provider": b.provider,
                              "region": b.region, "bucket": b.bucket, "role": b.role,
                              "status": b.status, "objects": b.objects, "bytes": b.bytes,
                              "versions_deleted": b.versions_deleted, "held": list(b.held),
                              "remaining": b.remaining, "error": b.error,
                              "verified_at": iso(b.verified_at)} for b in self.backends]}


def _incomplete(request: ErasureRequest, receipt: ErasureReceipt) -> ErasureIncomplete:
    backends = list(request.backends.values())
    failed = "; ".join(f"{b.backend}: {b.error}" for b in backends if b.error)
    rerun = (f"request {request.id} stays open: finish it by calling res.erase for the "
             f"tenant again or `residency erasure run {request.id}`")
    if any(b.unreachable for b in backends):
        return ErasureUnavailable(
            f"erasure of tenant {request.tenant_id!r} is incomplete: a backend could not be "
            f"reached ({failed}); {rerun} once it is reachable",
            receipt=receipt, request_id=request.id)
    if any(b.status == "failed" for b in backends):
        return ErasureIncomplete(
            f"erasure of tenant {request.tenant_id!r} is incomplete ({failed}); {rerun}",
            receipt=receipt, request_id=request.id)
    return ErasureBlocked(
        f"erasure of tenant {request.tenant_id!r} is blocked: {len(receipt.held)} object(s) "
        f"under legal hold were kept ({'; '.join(receipt.held[:3])}); {rerun} once the "
        "hold is lifted",
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
