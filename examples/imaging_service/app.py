"""The imaging service: clinics upload studies; studies stay in the clinic's residency
location; inference runs on that location's compute endpoint; results are stored beside
the study; sending a study abroad happens only when the transfer rules allow it.

Every outbound HTTP call goes through ``res.compute_for(tenant, ...)``: an httpx client
that may reach only the clinic's location's compute endpoints and the processors the
region map declares (when the transfer rules allow them for the data sent), and audits
each request. A refused call is ``451 Unavailable For Legal Reasons`` with the reasons.

Run it (see README.md)::

    uvicorn --factory imaging_service.app:create_app_from_env --app-dir examples

HTTP API (the clinic is identified by the ``X-Tenant-ID`` header; its country comes from
the service's tenant registry, never from the request):

``POST /studies``                    upload a study (raw body, or multipart field ``file``)
``GET /studies/{study_id}``          where the study is stored, and its inference result
``POST /studies/{study_id}/transfer`` ``{"to": "US", "data_class": "phi"}``: copy the study
                                     to another residency location if lawful; 451 if not
``POST /studies/{study_id}/report-draft`` ``{"modality": "CT"}``: send a summary of the
                                     findings (``personal`` data, never the image) to the
                                     report-drafting processor; store and return the draft;
                                     451 when the clinic's transfer rules refuse it
``GET /healthz``                     liveness
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

import residency_sdk as rs

from .config import ServiceConfig, TenantRecord

MAX_STUDY_BYTES = 512 * 1024 * 1024
_STUDY_ID = re.compile(r"^[0-9a-f]{32}$")
ACTOR = "imaging-service"


class TransferRequest(BaseModel):
    """Body of ``POST /studies/{id}/transfer``."""

    to: str
    data_class: str = "phi"
    purpose: str = "second-opinion"


class ReportDraftRequest(BaseModel):
    """Body of ``POST /studies/{id}/report-draft`` (optional)."""

    modality: str = "CT"


class Service:
    """The service's state: the residency facade, the registry and the guarded HTTP
    clients (one per clinic and purpose, made on first use)."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.res = rs.Residency.load(
            config.map_path, local_root=config.local_root,
            audit=str(config.audit_path) if config.audit_path else None)
        self._clients: dict[tuple[str, str], httpx.Client] = {}
        self._clients_lock = threading.Lock()

    def http(self, tenant: rs.Tenant, purpose: str) -> httpx.Client:
        """``tenant``'s guarded client for ``purpose``: each request may go only where the
        region map and the transfer rules allow this clinic's data (else EgressBlocked,
        before a byte is sent), and is audited with ``purpose`` and the service's actor.
        Kept per clinic so connections are reused (the registry bounds their number)."""
        key = (tenant.id, purpose)
        with self._clients_lock:
            client = self._clients.get(key)
            if client is None:
                client = self.res.compute_for(tenant, purpose=purpose, actor=ACTOR,
                                              timeout=self.config.inference_timeout,
                                              follow_redirects=False)
                self._clients[key] = client
            return client

    def close(self) -> None:
        with self._clients_lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()
        self.res.close()

    def tenant(self, tenant_id: str | None) -> rs.Tenant:
        record: TenantRecord | None = self.config.tenants.get(tenant_id or "")
        if record is None:
            raise HTTPException(403, detail={
                "error": "unknown_tenant",
                "message": f"clinic {tenant_id!r} is not registered with this service; send "
                           "your clinic id in the X-Tenant-ID header"})
        return record.tenant()

    def compute_url(self, placement: rs.Placement) -> str:
        """The model server of the placement's location, as the region map declares it.
        Fail closed: a location without a model is refused, never served from another
        location (and the guard would refuse another location's endpoint anyway)."""
        compute = placement.compute
        if compute is None:
            raise HTTPException(503, detail={
                "error": "no_compute_in_location",
                "message": f"the region map declares no inference endpoint for location "
                           f"{placement.location}; the study is stored but will not be sent "
                           "to a model in another location",
                "location": placement.location})
        return compute.endpoint.rstrip("/")

    def infer(self, tenant: rs.Tenant, placement: rs.Placement, study_id: str,
              data: bytes) -> dict[str, Any]:
        url = self.compute_url(placement)
        try:
            # The study is phi, the guard's default class: it may go only to the compute
            # endpoint of the clinic's location.
            response = self.http(tenant, "inference").post(f"{url}/v1/infer", content=data,
                                                           headers={
                "content-type": "application/dicom", "x-study-id": study_id,
                "x-residency-location": placement.location})
            response.raise_for_status()
            result: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise HTTPException(502, detail={
                "error": "inference_failed", "study_id": study_id,
                "message": f"the model in {placement.location} did not answer: "
                           f"{type(exc).__name__}; the study is stored, retry later"}) from None
        return result

    def draft_report(self, tenant: rs.Tenant, study_id: str,
                     summary: dict[str, Any]) -> dict[str, Any]:
        """Send ``summary`` (findings, no image, no identifiers) to the report-drafting
        processor as ``personal`` data; EgressBlocked when the clinic's rules refuse."""
        url = self.config.report_drafter_url
        if url is None:
            raise HTTPException(503, detail={
                "error": "report_drafting_off",
                "message": "no report drafter is configured (IMAGING_REPORT_DRAFTER)"})
        try:
            response = self.http(tenant, "report_drafting").post(
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


def _tenant(request: Request,
            x_tenant_id: Annotated[str | None, Header()] = None) -> rs.Tenant:
    """The calling clinic, from ``X-Tenant-ID`` and the service's tenant registry."""
    service: Service = request.app.state.service
    return service.tenant(x_tenant_id)


TenantDep = Annotated[rs.Tenant, Depends(_tenant)]


def create_app(config: ServiceConfig) -> FastAPI:
    """The FastAPI application for ``config``."""
    service = Service(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            service.close()

    app = FastAPI(title="Imaging AI service (residency-sdk example)", version="1.0",
                  lifespan=lifespan)
    app.state.service = service

    @app.exception_handler(rs.EgressBlocked)
    async def egress_blocked(_: Request, exc: rs.EgressBlocked) -> JSONResponse:
        # Refused before a byte was sent: the reasons say which rule and how to unblock.
        decision = exc.decision
        return JSONResponse(status_code=451, content={"detail": {
            "error": "egress_blocked", "host": exc.host, "url": exc.url,
            "reasons": list(exc.reasons),
            "unblock_with": [list(alts) for alts in decision.unblock_with]
            if decision is not None else [],
            "message": str(exc)}})

    @app.exception_handler(rs.ResidencyError)
    async def residency_error(_: Request, exc: rs.ResidencyError) -> JSONResponse:
        status = 404 if isinstance(exc, rs.ObjectNotFound) else 400
        return JSONResponse(status_code=status, content={
            "detail": {"error": type(exc).__name__, "message": str(exc)}})

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "map": service.res.map.name}

    @app.post("/studies", status_code=201)
    async def upload(request: Request, tenant: TenantDep) -> dict[str, Any]:
        data = await _study_bytes(request)
        # Storage and the model call block: run them off the event loop.
        stored: dict[str, Any] = await run_in_threadpool(_store_and_infer, service, tenant,
                                                         data)
        return stored

    @app.get("/studies/{study_id}")
    def get_study(study_id: str, tenant: TenantDep) -> dict[str, Any]:
        _check_study_id(study_id)
        store = service.res.storage_for(tenant, actor=ACTOR, purpose="results")
        info = store.head(f"studies/{study_id}/original.dcm")
        result = None
        if store.exists(f"studies/{study_id}/result.json"):
            result = json.loads(store.get(f"studies/{study_id}/result.json"))
        return {"study_id": study_id, "location": info.location, "provider": info.provider,
                "region": info.region, "bucket": info.bucket, "size": info.size,
                "checksum": info.checksum, "result": result}

    @app.post("/studies/{study_id}/transfer")
    def transfer(study_id: str, body: TransferRequest, tenant: TenantDep) -> Any:
        _check_study_id(study_id)
        try:
            copied = service.res.transfer(tenant, f"studies/{study_id}/original.dcm",
                                          to=body.to, data_class=body.data_class,
                                          actor=ACTOR, purpose=body.purpose)
        except rs.TransferBlocked as exc:
            decision = exc.decision
            # 451 Unavailable For Legal Reasons: the law (as the transfer rules state it),
            # not the server, refuses; the reasons say what would make it lawful.
            return JSONResponse(status_code=451, content={"detail": {
                "error": "transfer_blocked", "study_id": study_id,
                "from": decision.source, "to": decision.destination,
                "data_class": decision.data_class, "regimes": list(decision.regimes),
                "reasons": list(decision.reasons),
                "unblock_with": [list(alts) for alts in decision.unblock_with]}})
        return {"study_id": study_id, "copied_to": copied.location,
                "provider": copied.provider, "region": copied.region,
                "bucket": copied.bucket}

    @app.post("/studies/{study_id}/report-draft")
    def report_draft(study_id: str, tenant: TenantDep,
                     body: ReportDraftRequest | None = None) -> dict[str, Any]:
        _check_study_id(study_id)
        store = service.res.storage_for(tenant, actor=ACTOR, purpose="report_drafting")
        result_key = f"studies/{study_id}/result.json"
        if not store.exists(result_key):
            raise HTTPException(404, detail={"error": "no_result",
                                             "message": f"study {study_id!r} has no "
                                                        "inference result to draft from"})
        model = json.loads(store.get(result_key))["model"]
        # What leaves: the modality and the model's findings. Not the image, not the study
        # id, not the checksum of the study.
        summary = {"modality": (body or ReportDraftRequest()).modality,
                   "model": model.get("model"), "findings": model.get("findings", [])}
        draft = service.draft_report(tenant, study_id, summary)
        key = f"studies/{study_id}/report-draft.json"
        store.put(key, json.dumps({"summary": summary, "draft": draft}).encode(),
                  data_class="phi", category=service.config.result_category)
        return {"study_id": study_id, "draft": draft, "sent": summary, "stored_at": key}

    return app


def _store_and_infer(service: Service, tenant: rs.Tenant, data: bytes) -> dict[str, Any]:
    placement = service.res.resolve(tenant)
    study_id = uuid.uuid4().hex
    store = service.res.storage_for(tenant, actor=ACTOR, purpose="diagnosis")
    stored = store.put(f"studies/{study_id}/original.dcm", data, data_class="phi",
                       category="imaging_upload")
    result = service.infer(tenant, placement, study_id, data)
    result_doc = {"study_id": study_id, "sha256": hashlib.sha256(data).hexdigest(),
                  "model": result}
    store.put(f"studies/{study_id}/result.json", json.dumps(result_doc).encode(),
              data_class="phi", category=service.config.result_category)
    return {"study_id": study_id, "location": placement.location,
            "provider": stored.provider, "region": stored.region, "bucket": stored.bucket,
            "key": f"studies/{study_id}/original.dcm", "size": stored.size,
            "result": result_doc}


async def _study_bytes(request: Request) -> bytes:
    """The uploaded study: the multipart field ``file``, or the raw request body."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(400, detail={"error": "no_file",
                                             "message": "multipart upload needs a 'file' field"})
        data = await upload.read()
    else:
        data = await request.body()
    if not data:
        raise HTTPException(400, detail={"error": "empty_study",
                                         "message": "the study is empty: send the DICOM bytes"})
    if len(data) > MAX_STUDY_BYTES:
        raise HTTPException(413, detail={"error": "study_too_large",
                                         "message": f"studies are limited to {MAX_STUDY_BYTES} "
                                                    "bytes"})
    return data


def _check_study_id(study_id: str) -> None:
    if not _STUDY_ID.fullmatch(study_id):
        raise HTTPException(404, detail={"error": "unknown_study",
                                         "message": f"no study {study_id!r}"})


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory``: configuration from ``IMAGING_*`` variables."""
    return create_app(ServiceConfig.from_env())
