"""Steps 1 and 2 of an erasure on one planned backend: empty it of the tenant's data, then
verify it is empty (:func:`empty_backend`).

Every object under the tenant's prefix is deleted, conditionally on the object examined
(one re-uploaded in between is examined again), except what a legal hold keeps; then the
residue no listing shows is purged (``purge_residue``), and a fresh listing must show
nothing left. The per-object step and the bounded workers are the shared sweep engine
(:mod:`residency_sdk.sweep`). The backend's ``erase`` intent is durable in the audit trail
before anything on it is touched; its outcome follows, in the backend's location.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from residency_sdk.erasure.request import BackendProgress, ErasureRequest, stated_reasons
from residency_sdk.errors import BackendUnavailable, ResidencyError
from residency_sdk.events import AuditEmitter, AuditEvent
from residency_sdk.model import StorageTarget, Tenant
from residency_sdk.storage.keys import tenant_prefix
from residency_sdk.storage.pool import StorePool
from residency_sdk.sweep import Clock, ItemResult, Workers, examine

if TYPE_CHECKING:
    from residency_sdk.storage.base import ObjectStore

_SAVE_EVERY = 500
"""Objects listed (and deleted) per page; the progress is saved after each page."""
_EXAMINE_ATTEMPTS = 3
"""How often an object re-uploaded between its head and its conditional delete is
examined again before the backend is left for the next run."""


def empty_backend(request: ErasureRequest, tenant: Tenant, progress: BackendProgress,
                  target: StorageTarget, *, stores: StorePool, audit: AuditEmitter,
                  clock: Clock, workers: int, actor: str | None,
                  on_deleted: Callable[[str, str], None] | None,
                  save: Callable[[ErasureRequest], None]) -> None:
    """Delete everything of ``tenant`` on one planned backend and verify it is empty,
    recording the outcome in ``progress`` (``verified``, ``blocked`` by a legal hold, or
    ``failed`` with its error) and in the audit trail, its intent durable first.

    ``workers`` threads delete in parallel; ``on_deleted(backend, stored_key)`` is
    called after each object deleted; ``save(request)`` keeps the progress after each
    page of deletions; ``actor`` (else the request's) is named in the audit events.
    """
    prefix = tenant_prefix(tenant)
    location = progress.location or request.location
    now = clock()
    # Written ahead: nothing on this backend is touched until the intent is durable.
    intent = audit.intent(_backend_event(request, tenant, progress, target, "intent", actor))
    progress.error = None
    progress.unreachable = False
    held: dict[str, str] = {}
    changed: list[str] = []
    try:
        store = stores.get(target, location)
        skip: set[str] = set()  # held, changed again and again, or gone already
        last_deleted: set[str] = set()
        with Workers(workers, "erasure") as pool:
            # List a page, delete it, list again: deleting while paging through one
            # listing is not safe on every backend, and memory stays bounded.
            while True:
                page = list(itertools.islice(
                    (i.key for i in store.list(prefix) if i.key not in skip),
                    _SAVE_EVERY))
                if not page or not set(page).isdisjoint(last_deleted):
                    break  # done; or deleted but listed again: verification reports it
                last_deleted = set()
                for result in pool.imap(lambda k: _examine(store, k, now), page):
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
                        if on_deleted is not None:
                            on_deleted(progress.backend, result.key)
                save(request)
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
        _emit_outcome(audit, request, tenant, progress, target, "error", intent, actor)
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
        progress.verified_at = clock()
    _emit_outcome(audit, request, tenant, progress, target,
                  "ok" if progress.status == "verified" else "error", intent, actor)


def _examine(store: ObjectStore, key: str, now: datetime) -> ItemResult:
    """:func:`~residency_sdk.sweep.examine` with deletion conditional on the object
    examined; an object re-uploaded in between (``changed``) is the tenant's too, so
    it is examined again, a few times. Old versions are not purged key by key: the
    ``purge_residue`` of the whole prefix that follows removes them in one listing."""
    result = examine(store, key, now, versions=False)
    for _ in range(_EXAMINE_ATTEMPTS - 1):
        action: str = result.action
        if action != "changed":
            break
        result = examine(store, key, now, versions=False)
    return result


def _emit_outcome(audit: AuditEmitter, request: ErasureRequest, tenant: Tenant,
                  progress: BackendProgress, target: StorageTarget,
                  outcome: Literal["ok", "error"], intent: AuditEvent,
                  actor: str | None) -> None:
    audit.emit(_backend_event(request, tenant, progress, target, outcome, actor,
                              intent_id=intent.event_id))


def _backend_event(request: ErasureRequest, tenant: Tenant, progress: BackendProgress,
                   target: StorageTarget, outcome: Literal["ok", "error", "intent"],
                   actor: str | None, intent_id: str | None = None) -> AuditEvent:
    # source_location is the backend's: a destination's erasure is in its own trail.
    return AuditEvent(
        operation="erase", outcome=outcome, actor=actor or request.actor,
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
                 *stated_reasons(request)),
        error=progress.error if outcome != "intent" else None, intent_id=intent_id)
