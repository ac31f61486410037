"""Step 3 of an erasure on one planned backend: destroy the tenant's key material
(crypto-shredding, :func:`destroy_key`).

:meth:`ObjectStore.destroy_tenant_key
<residency_sdk.storage.base.ObjectStore.destroy_tenant_key>` shreds the local key file or
schedules a KMS key for deletion, so backups and stray copies the provider keeps become
unreadable. Run only once every planned backend is verified empty (a held copy must stay
readable). Resumable: the key id is recorded and the state saved before the destroying
call, so a re-run after a crash tells a key it destroyed from one that never existed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from residency_sdk.erasure.plan import PlannedBackend
from residency_sdk.erasure.request import ErasureRequest, KeyProgress, KeyState, stated_reasons
from residency_sdk.errors import AuditUnavailable, ResidencyError
from residency_sdk.events import AuditEmitter, AuditEvent
from residency_sdk.model import Tenant
from residency_sdk.storage.pool import StorePool
from residency_sdk.sweep import Clock


def destroy_key(request: ErasureRequest, tenant: Tenant, item: PlannedBackend, *,
                stores: StorePool, audit: AuditEmitter, clock: Clock, actor: str | None,
                save: Callable[[ErasureRequest], None]) -> None:
    """Destroy the tenant's key material on one backend (idempotent, resumable), recording
    its fate in ``request.keys`` and in the audit trail, its intent durable first.

    ``save(request)`` keeps the state just before the destroying call; ``actor`` (else
    the request's) is named in the audit events.
    """
    progress = request.keys.get(item.name)
    if progress is None:
        progress = request.keys[item.name] = KeyProgress(
            backend=item.name, location=item.location, provider=item.target.provider)
    if progress.done:
        return
    intent = audit.intent(_key_event(request, tenant, item, progress, "intent", actor))
    # An earlier run may have destroyed it and died before saving: then the key id
    # it recorded first tells "destroyed" from "never had one" below.
    resumed = progress.status in ("destroying", "failed")
    progress.error = None
    try:
        store = stores.get(item.target, item.location)
        if progress.key_id is None:
            progress.key_id = store.tenant_key_id(tenant.id)
        progress.status = "destroying"
        save(request)
        result = store.destroy_tenant_key(tenant.id)
    except AuditUnavailable:
        raise
    except ResidencyError as exc:
        progress.status = "failed"
        progress.error = f"{type(exc).__name__}: {exc}"
        audit.emit(_key_event(request, tenant, item, progress, "error", actor,
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
    progress.finished_at = clock()
    audit.emit(_key_event(request, tenant, item, progress, "ok", actor, intent.event_id))
    save(request)


def _key_event(request: ErasureRequest, tenant: Tenant, item: PlannedBackend,
               progress: KeyProgress, outcome: Literal["ok", "error", "intent"],
               actor: str | None, intent_id: str | None = None) -> AuditEvent:
    return AuditEvent(
        operation="erase", outcome=outcome, actor=actor or request.actor,
        purpose=f"erasure_keys:{request.id}", tenant_id=tenant.id,
        tenant_country=tenant.country, source_location=item.location,
        provider=item.target.provider, region=item.target.region,
        bucket=item.target.bucket,
        served_by="failover" if item.role == "failover" else "primary",
        reasons=((f"{item.name}: destroying the tenant's key material"
                  if outcome == "intent" else f"{item.name}: {progress.summary()}"),
                 *stated_reasons(request)),
        error=progress.error if outcome == "error" else None, intent_id=intent_id)
