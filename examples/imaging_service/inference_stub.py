"""Stand-ins for the servers the imaging service calls, each remembering what it was sent:

- a location's model server: answers ``POST /v1/infer`` with a deterministic "finding"
  for the study bytes (run one per residency location, ``IMAGING_STUB_LOCATION=DE``);
- a report drafter: a third-party processor that answers ``POST /v1/draft`` (a small
  JSON summary of a study's findings, never the image) with a draft report.

``GET /v1/received`` lists what each has received (the tests count it)::

    IMAGING_STUB_LOCATION=DE uvicorn --factory --app-dir examples \\
        imaging_service.inference_stub:create_stub_from_env --host 127.0.0.1 --port 9001
    uvicorn --factory --app-dir examples \\
        imaging_service.inference_stub:create_drafter --host 127.0.0.1 --port 9003
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from fastapi import FastAPI, Request


def create_stub(location: str) -> FastAPI:
    """A model server that says which location it serves."""
    app = FastAPI(title=f"inference stub ({location})")
    received: list[dict[str, Any]] = []

    @app.post("/v1/infer")
    async def infer(request: Request) -> dict[str, Any]:
        # Hashed as it arrives: studies can be hundreds of MiB.
        hasher, size = hashlib.sha256(), 0
        async for chunk in request.stream():
            hasher.update(chunk)
            size += len(chunk)
        digest = hasher.hexdigest()
        received.append({"study_id": request.headers.get("x-study-id"), "sha256": digest,
                         "size": size,
                         "location_header": request.headers.get("x-residency-location")})
        # A deterministic fake finding, so tests can check the result was stored intact.
        score = int(digest[:4], 16) / 0xFFFF
        return {"model": "stub-segmenter-1", "served_in": location, "input_sha256": digest,
                "findings": [{"label": "nodule", "score": round(score, 4)}]}

    @app.get("/v1/received")
    def seen() -> list[dict[str, Any]]:
        return received

    return app


def create_stub_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (location from ``IMAGING_STUB_LOCATION``)."""
    return create_stub(os.environ.get("IMAGING_STUB_LOCATION", "DE"))


def create_drafter() -> FastAPI:
    """A report-drafting model run by a third party (a processor in the region map)."""
    app = FastAPI(title="report drafter stub")
    received: list[dict[str, Any]] = []

    @app.post("/v1/draft")
    async def draft(request: Request) -> dict[str, Any]:
        body = await request.body()
        summary = json.loads(body)
        received.append({"summary": summary, "bytes": len(body),
                         "data_class_header": request.headers.get("x-residency-data-class")})
        findings = ", ".join(f"{f['label']} (score {f['score']})"
                             for f in summary.get("findings", [])) or "no findings"
        return {"drafter": "stub-drafter-1",
                "text": f"{summary.get('modality', 'Imaging')} study. Findings: {findings}. "
                        "Draft for radiologist review; not a diagnosis."}

    @app.get("/v1/received")
    def seen() -> list[dict[str, Any]]:
        return received

    return app
