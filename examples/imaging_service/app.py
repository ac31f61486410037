"""The imaging service: clinics upload studies; studies stay in the clinic's residency
location; inference runs on that location's compute endpoint; results are stored beside
the study; sending a study abroad happens only when the transfer rules allow it.

Built the way a FastAPI service uses residency-sdk:

- **async handlers on the async store** (``res.astorage_for``) and the guarded async HTTP
  client (``res.async_compute_for``), so no request holds a worker thread while it waits;
- **streamed bodies**: an upload goes from the socket to the store chunk by chunk (never
  ``await request.body()``), a download from the store to the socket; memory stays at a
  few chunks whatever the study's size (:mod:`.streams`);
- **a lifespan** that opens the ``Residency`` at start-up and closes it (stores, clients,
  audit log) at shutdown: nothing is created at import (:mod:`.service`);
- **HTTP status by error kind**, from one table (:mod:`.errors`): 451 for residency
  refusals with the reasons, 503 with ``Retry-After`` when storage or the audit trail is
  down, 4xx for bad input, never a traceback.

Run it (see README.md)::

    uvicorn --factory imaging_service.app:create_app_from_env --app-dir examples

HTTP API (the clinic is identified by the ``X-Tenant-ID`` header; its country comes from
the service's tenant registry, never from the request):

``POST /studies``                    upload a study (raw body, or multipart field ``file``)
``GET /studies/{study_id}``          where the study is stored, and its inference result
``GET /studies/{study_id}/original`` the study's bytes, streamed
``POST /studies/{study_id}/transfer`` ``{"to": "US", "data_class": "phi"}``: copy the study
                                     to another residency location if lawful; 451 if not
``POST /studies/{study_id}/report-draft`` ``{"modality": "CT"}``: send a summary of the
                                     findings (``personal`` data, never the image) to the
                                     report-drafting processor; store and return the draft;
                                     451 when the clinic's transfer rules refuse it
``GET /healthz``                     liveness
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

import residency_sdk as rs

from .config import ServiceConfig
from .errors import install_error_handlers
from .service import ACTOR, Service
from .streams import study_body

_STUDY_ID = re.compile(r"^[0-9a-f]{32}$")


class TransferRequest(BaseModel):
    """Body of ``POST /studies/{id}/transfer``."""

    to: str
    data_class: str = "phi"
    purpose: str = "second-opinion"


class ReportDraftRequest(BaseModel):
    """Body of ``POST /studies/{id}/report-draft`` (optional)."""

    modality: str = "CT"


def _service(request: Request) -> Service:
    """The process's :class:`Service`, from the lifespan's state."""
    service: Service = request.state.service
    return service


ServiceDep = Annotated[Service, Depends(_service)]


def _tenant(service: ServiceDep,
            x_tenant_id: Annotated[str | None, Header()] = None) -> rs.Tenant:
    """The calling clinic, from ``X-Tenant-ID`` and the service's tenant registry."""
    return service.tenant(x_tenant_id)


TenantDep = Annotated[rs.Tenant, Depends(_tenant)]


def _study_id(study_id: str) -> str:
    """The path's study id, checked before it becomes part of an object key."""
    if not _STUDY_ID.fullmatch(study_id):
        raise HTTPException(404, detail={"error": "unknown_study",
                                         "message": f"no study {study_id!r}"})
    return study_id


StudyId = Annotated[str, Depends(_study_id)]


def create_app(config: ServiceConfig) -> FastAPI:
    """The FastAPI application for ``config``. The Residency is opened when the app
    starts (its lifespan), not here."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Service]]:
        service = await anyio.to_thread.run_sync(Service.open, config)
        try:
            yield {"service": service}
        finally:
            await service.aclose()

    app = FastAPI(title="Imaging AI service (residency-sdk example)", version="2.0",
                  lifespan=lifespan)
    install_error_handlers(app, retry_after=config.retry_after)

    @app.get("/healthz")
    async def healthz(service: ServiceDep) -> dict[str, str]:
        return {"status": "ok", "map": service.res.map.name}

    @app.post("/studies", status_code=201)
    async def upload(request: Request, service: ServiceDep,
                     tenant: TenantDep) -> dict[str, Any]:
        # Where the study goes is decided before a byte of it is read (NoRoute: 451).
        placement = service.res.resolve(tenant)
        body = await study_body(request, config.max_study_bytes)
        study_id = uuid.uuid4().hex
        key = f"studies/{study_id}/original.dcm"
        store = service.store(tenant, "diagnosis")
        try:
            stored = await store.put(key, body, data_class="phi", category="imaging_upload")
        except Exception:
            if body.problem is not None:  # the body's fault, whatever the store made of it
                raise body.problem from None
            raise
        result = await service.infer(tenant, placement, study_id, key, stored.size)
        result_doc = {"study_id": study_id, "sha256": body.sha256, "model": result}
        await store.put(f"studies/{study_id}/result.json", json.dumps(result_doc).encode(),
                        data_class="phi", category=config.result_category)
        return {"study_id": study_id, "location": placement.location,
                "provider": stored.provider, "region": stored.region, "bucket": stored.bucket,
                "key": key, "size": stored.size, "sha256": body.sha256, "result": result_doc}

    @app.get("/studies/{study_id}")
    async def get_study(study_id: StudyId, service: ServiceDep,
                        tenant: TenantDep) -> dict[str, Any]:
        store = service.store(tenant, "results")
        info = await store.head(f"studies/{study_id}/original.dcm")
        result = None
        if await store.exists(f"studies/{study_id}/result.json"):
            result = json.loads(await store.get(f"studies/{study_id}/result.json"))
        return {"study_id": study_id, "location": info.location, "provider": info.provider,
                "region": info.region, "bucket": info.bucket, "size": info.size,
                "checksum": info.checksum, "result": result}

    @app.get("/studies/{study_id}/original")
    async def download(study_id: StudyId, service: ServiceDep,
                       tenant: TenantDep) -> StreamingResponse:
        key = f"studies/{study_id}/original.dcm"
        # Answer 404 (or 503) before the response starts; the bytes follow in chunks.
        info = await service.store(tenant, "results").head(key)
        return StreamingResponse(service.store(tenant, "results").iter_bytes(key),
                                 media_type="application/dicom",
                                 headers={"content-length": str(info.size)})

    @app.post("/studies/{study_id}/transfer")
    async def transfer(study_id: StudyId, body: TransferRequest, service: ServiceDep,
                       tenant: TenantDep) -> dict[str, Any]:
        # A copy between locations blocks; TransferBlocked becomes 451 with the reasons.
        def copy() -> rs.StoredObject:
            return service.res.transfer(tenant, f"studies/{study_id}/original.dcm",
                                        to=body.to, data_class=body.data_class,
                                        actor=ACTOR, purpose=body.purpose)

        copied = await anyio.to_thread.run_sync(copy)
        return {"study_id": study_id, "copied_to": copied.location,
                "provider": copied.provider, "region": copied.region,
                "bucket": copied.bucket}

    @app.post("/studies/{study_id}/report-draft")
    async def report_draft(study_id: StudyId, service: ServiceDep, tenant: TenantDep,
                           body: ReportDraftRequest | None = None) -> dict[str, Any]:
        store = service.store(tenant, "report_drafting")
        result_key = f"studies/{study_id}/result.json"
        if not await store.exists(result_key):
            raise HTTPException(404, detail={"error": "no_result",
                                             "message": f"study {study_id!r} has no "
                                                        "inference result to draft from"})
        model = json.loads(await store.get(result_key))["model"]
        # What leaves: the modality and the model's findings. Not the image, not the study
        # id, not the checksum of the study.
        summary = {"modality": (body or ReportDraftRequest()).modality,
                   "model": model.get("model"), "findings": model.get("findings", [])}
        draft = await service.draft_report(tenant, study_id, summary)
        key = f"studies/{study_id}/report-draft.json"
        await store.put(key, json.dumps({"summary": summary, "draft": draft}).encode(),
                        data_class="phi", category=config.result_category)
        return {"study_id": study_id, "draft": draft, "sent": summary, "stored_at": key}

    return app


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory``: configuration from ``IMAGING_*`` variables."""
    return create_app(ServiceConfig.from_env())
