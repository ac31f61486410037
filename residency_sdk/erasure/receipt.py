"""The receipt of an erasure: what it records, how the audit trail proves it, what
``res.erase`` returns.

When a request completes, :func:`receipt_record` is what is kept in its state (each
location and backend: found, deleted, verified; each key's fate; the lineage and records
dropped) and :func:`receipt_event` the ``erase`` event recording it in the audit trail,
its ``checksum`` the receipt's SHA-256 (:func:`receipt_digest`); :func:`verify_receipt`
proves a stored receipt is the audited one, reading the trail with
:func:`audit_log_events`. :class:`ErasureReceipt` (with :class:`BackendErasure` and
:class:`KeyErasure`) is a request's state as ``res.erase`` returns it and erasure errors
carry it, complete or not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from residency_sdk.erasure.request import (
    BackendProgress,
    BackendStatus,
    ErasureRequest,
    KeyProgress,
    KeyState,
    RequestStatus,
    Scope,
    stated_reasons,
)
from residency_sdk.errors import ErasureError
from residency_sdk.events import AuditEvent
from residency_sdk.model import Tenant


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


# --- the receipt in the audit trail --------------------------------------------------


def receipt_digest(receipt: dict[str, Any]) -> str:
    """SHA-256 (hex) of a receipt's canonical JSON (sorted keys, compact)."""
    canonical = json.dumps(receipt, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def receipt_record(request: ErasureRequest, finished: datetime) -> dict[str, Any]:
    """The receipt kept when ``request`` completes at ``finished`` (plain JSON-able data,
    backends and keys sorted by name): what :func:`receipt_digest` hashes."""
    backends = sorted(request.backends.values(), key=lambda b: b.backend)
    keys = sorted(request.keys.values(), key=lambda k: k.backend)
    return {
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


def receipt_event(request: ErasureRequest, tenant: Tenant, digest: str,
                  actor: str | None) -> AuditEvent:
    """The ``erase`` event recording the receipt of ``request`` (SHA-256 ``digest``), in
    the tenant's location; ``actor`` (else the request's) is named."""
    backends = list(request.backends.values())
    keys = list(request.keys.values())
    shredded = sum(k.status in ("destroyed", "scheduled") for k in keys)
    return AuditEvent(
        operation="erase", outcome="ok", actor=actor or request.actor,
        purpose=f"erasure_receipt:{request.id}", tenant_id=tenant.id,
        tenant_country=tenant.country, source_location=request.location,
        size=sum(b.bytes for b in backends), checksum=f"sha256:{digest}",
        reasons=(f"erasure request {request.id} complete: "
                 f"{sum(b.deleted for b in backends)} objects deleted from "
                 f"{len(backends)} backend(s) in {', '.join(request.locations)}, "
                 f"verified empty; {shredded} tenant key(s) destroyed or scheduled, "
                 f"{sum(k.status == 'unsupported' for k in keys)} backend(s) without a "
                 "per-tenant key",
                 *stated_reasons(request)))


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
