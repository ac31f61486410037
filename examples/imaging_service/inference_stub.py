"""A stand-in for a location's model server: answers ``POST /v1/infer`` with a
deterministic "finding" for the study bytes, and remembers what it was sent.

Run one per residency location (``IMAGING_STUB_LOCATION=DE``)::

    IMAGING_STUB_LOCATION=DE uvicorn --factory --app-dir examples \\
        imaging_service.inference_stub:create_stub_from_env --host 127.0.0.1 --port 9001
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from fastapi import FastAPI, Request


def create_stub(location: str) -> FastAPI:
    """A model server that says which location it serves."""
    app = FastAPI(title=f"inference stub ({location})")
    received: list[dict[str, Any]] = []

    @app.post("/v1/infer")
    async def infer(request: Request) -> dict[str, Any]:
        data = await request.body()
        digest = hashlib.sha256(data).hexdigest()
        received.append({"study_id": request.headers.get("x-study-id"), "sha256": digest,
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
