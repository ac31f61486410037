"""The service's state for one process: the ``Residency`` facade, the clinics' async
stores and guarded HTTP clients. Opened by the app's lifespan at start-up and closed at
shutdown (stores, clients, then the Residency, which makes the audit log durable)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import httpx
from fastapi import HTTPException

import residency_sdk as rs

from .config import ServiceConfig, TenantRecord

if TYPE_CHECKING:
    from residency_sdk.storage.async_store import AsyncTenantStore

ACTOR = "imaging-service"


class Service:
    """What the handlers share: built by :meth:`open` in the lifespan, never at import.

    Stores and clients are made on first use, one per (clinic, purpose), so connections
    are reused; the registry bounds how many there are. The event loop is the only thread
    that touches the caches, so they need no lock."""

    def __init__(self, config: ServiceConfig, res: rs.Residency) -> None:
        self.config = config
        self.res = res
        self._stores: dict[tuple[str, str], AsyncTenantStore] = {}
        self._clients: dict[tuple[str, str], httpx.AsyncClient] = {}

    @classmethod
    def open(cls, config: ServiceConfig) -> Service:
        """Load the region map and open the audit trail (blocking: run it in a thread)."""
        res = rs.Residency.load(
            config.map_path, local_root=config.local_root,
            audit=str(config.audit_path) if config.audit_path else None)
        return cls(config, res)

    async def aclose(self) -> None:
        """Close the stores and clients, then the Residency: its audit sinks commit what
        is queued and close, so the log is complete when the process exits."""
        stores, self._stores = list(self._stores.values()), {}
        clients, self._clients = list(self._clients.values()), {}
        try:
            for store in stores:
                await store.aclose()
            for client in clients:
                await client.aclose()
        finally:
            await anyio.to_thread.run_sync(self.res.close)

    # --- per clinic -------------------------------------------------------------------

    def tenant(self, tenant_id: str | None) -> rs.Tenant:
        """The registered clinic ``tenant_id`` (403 when it is not registered)."""
        record: TenantRecord | None = self.config.tenants.get(tenant_id or "")
        if record is None:
            raise HTTPException(403, detail={
                "error": "unknown_tenant",
                "message": f"clinic {tenant_id!r} is not registered with this service; send "
                           "your clinic id in the X-Tenant-ID header"})
        return record.tenant()

    def store(self, tenant: rs.Tenant, purpose: str) -> AsyncTenantStore:
        """``tenant``'s async store, its operations audited with ``purpose``."""
        key = (tenant.id, purpose)
        store = self._stores.get(key)
        if store is None:
            store = self.res.astorage_for(tenant, actor=ACTOR, purpose=purpose)
            self._stores[key] = store
        return store

    def http(self, tenant: rs.Tenant, purpose: str) -> httpx.AsyncClient:
        """``tenant``'s guarded async client for ``purpose``: each request may go only
        where the region map and the transfer rules allow this clinic's data (else
        EgressBlocked, before a byte is sent), and is audited."""
        key = (tenant.id, purpose)
        client = self._clients.get(key)
        if client is None:
            client = self.res.async_compute_for(tenant, purpose=purpose, actor=ACTOR,
                                                timeout=self.config.inference_timeout,
                                                follow_redirects=False)
            self._clients[key] = client
        return client

    # --- the calls out ----------------------------------------------------------------

    def compute_url(self, placement: rs.Placement, study_id: str) -> str:
        """The model server of the placement's location, as the region map declares it.
        Fail closed: a location without a model is refused, never served from another
        location (and the guard would refuse another location's endpoint anyway)."""
        compute = placement.compute
        if compute is None:
            raise HTTPException(503, detail={
                "error": "no_compute_in_location",
                "message": f"no inference endpoint is declared for residency location "
                           f"{placement.location}; the study is stored but will not be sent "
                           "to a model in another location",
                "location": placement.location, "study_id": study_id})
        return compute.endpoint.rstrip("/")

    async def infer(self, tenant: rs.Tenant, placement: rs.Placement, study_id: str,
                    key: str, size: int) -> dict[str, Any]:
        """Send the stored study ``key`` (``size`` bytes) to the location's model,
        streamed from the store, and return the model's answer."""
        url = self.compute_url(placement, study_id)
        # Read from the store chunk by chunk as the request sends it (the get is audited
        # when the first chunk is read: a call the guard refuses reads nothing).
        chunks = self.store(tenant, "inference").iter_bytes(key)
        try:
            # The study is phi, the guard's default class: it may go only to the compute
            # endpoint of the clinic's location.
            response = await self.http(tenant, "inference").post(
                f"{url}/v1/infer", content=chunks, headers={
                    "content-type": "application/dicom", "content-length": str(size),
                    "x-study-id": study_id, "x-residency-location": placement.location})
            response.raise_for_status()
            result: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise HTTPException(502, detail={
                "error": "inference_failed", "study_id": study_id,
                "message": f"the model in {placement.location} did not answer: "
                           f"{type(exc).__name__}; the study is stored, retry later"}) from None
        finally:
            # Also when the request stopped reading it half-way (no connection, an error).
            await chunks.aclose()
        return result

    async def draft_report(self, tenant: rs.Tenant, study_id: str,
                           summary: dict[str, Any]) -> dict[str, Any]:
        """Send ``summary`` (findings, no image, no identifiers) to the report-drafting
        processor as ``personal`` data; EgressBlocked when the clinic's rules refuse."""
        url = self.config.report_drafter_url
        if url is None:
            raise HTTPException(503, detail={
                "error": "report_drafting_off",
                "message": "no report drafter is configured (IMAGING_REPORT_DRAFTER)"})
        try:
            response = await self.http(tenant, "report_drafting").post(
                f"{url}/v1/draft", json=summary,
                extensions={"residency_data_class": "personal"})
            response.raise_for_status()
            draft: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise HTTPException(502, detail={
                "error": "report_draft_failed", "study_id": study_id,
                "message": f"the report drafter did not answer: {type(exc).__name__}; "
                           "retry later"}) from None
        return draft
