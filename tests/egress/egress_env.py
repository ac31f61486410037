"""Fixtures of the egress tests (imported by the test modules: a conftest.py here would
shadow the suite's ``conftest`` module): seven loopback servers, a region map declaring
them (compute endpoints of DE and US, four processors), a Residency whose audit events
land in a list, and ``call``: one request through ``compute_for`` (sync) or
``async_compute_for`` (async), parametrised over both."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

import residency_sdk as rs
from residency_sdk.events import AuditEvent

sys.path.insert(0, str(Path(__file__).resolve().parent))

from egress_loopback import CountingServer

TODAY = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SERVER_NAMES = ("de", "us", "undeclared", "drafter", "lapsed", "faraway", "scribe")


@pytest.fixture
def servers() -> Iterator[dict[str, CountingServer]]:
    """One loopback server per role: ``de`` / ``us`` (the compute endpoints of those
    locations), ``undeclared`` (in no map), and the processors ``drafter`` (US, no BAA,
    scoped SCC), ``lapsed`` (US, expired SCC), ``faraway`` (CN, no agreement) and
    ``scribe`` (US, BAA, SCC)."""
    started: dict[str, CountingServer] = {}
    try:
        for name in SERVER_NAMES:
            started[name] = CountingServer(name)
        yield started
    finally:
        for server in started.values():
            server.stop()


def _processor(name: str, server: CountingServer, country: str, *, baa: bool,
               data_classes: list[str], agreements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "hosts": [server.host], "country": country, "baa": baa,
            "retention": "none beyond the request", "data_classes": data_classes,
            "agreements": agreements, "source": "test DPA", "as_of": "2026-11-01"}


@pytest.fixture
def egress_map(tmp_path: Path, servers: dict[str, CountingServer]) -> Path:
    doc = {
        "version": 1, "name": "egress-test", "extends": "default",
        "locations": {
            "DE": {"compute": [{"provider": "azure", "region": "germanywestcentral",
                                "endpoint": servers["de"].url}]},
            "US": {"compute": [{"provider": "aws", "region": "us-east-1",
                                "endpoint": servers["us"].url}]},
        },
        "processors": {
            "drafter": _processor(
                "Drafter Inc.", servers["drafter"], "US", baa=False,
                data_classes=["personal", "anonymised"],
                agreements=[{"mechanism": "scc", "destinations": ["US"],
                             "reference": "SCC-P-1"}]),
            "lapsed": _processor(
                "Lapsed Transcripts LLC", servers["lapsed"], "US", baa=False,
                data_classes=["personal"],
                agreements=[{"mechanism": "scc", "destinations": ["US"],
                             "reference": "SCC-E-1", "signed_on": "2025-01-01",
                             "expires_on": "2026-06-30"}]),
            "faraway": _processor(
                "Faraway Mail Co.", servers["faraway"], "CN", baa=False,
                data_classes=["personal"], agreements=[]),
            "scribe": _processor(
                "Scribe Health Inc.", servers["scribe"], "US", baa=True,
                data_classes=["phi", "personal"],
                agreements=[{"mechanism": "scc", "destinations": ["US"],
                             "reference": "SCC-H-1"}]),
        },
    }
    path = tmp_path / "egress-map.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def events() -> list[AuditEvent]:
    return []


@pytest.fixture
def res(egress_map: Path, events: list[AuditEvent]) -> Iterator[rs.Residency]:
    residency = rs.Residency.load(egress_map, audit=False, audit_off_reason="test",
                                  audit_hooks=[events.append], clock=lambda: TODAY)
    try:
        yield residency
    finally:
        residency.close()


@dataclass
class Caller:
    """Sends requests through the guarded client of one mode (``sync`` or ``async``)."""

    mode: str
    res: rs.Residency
    options: dict[str, Any] = field(default_factory=dict)

    def call(self, tenant: rs.Tenant, method: str, url: str, *, purpose: str = "inference",
             actor: str | None = "svc-infer", client_options: dict[str, Any] | None = None,
             **request: Any) -> httpx.Response:
        """One request in a fresh client (its body read, so its outcome is audited)."""
        options = dict(client_options or {})
        if self.mode == "sync":
            with self.res.compute_for(tenant, purpose=purpose, actor=actor,
                                      **options) as client:
                response = client.request(method, url, **request)
                response.read()
                return response

        async def run() -> httpx.Response:
            async with self.res.async_compute_for(tenant, purpose=purpose, actor=actor,
                                                  **options) as client:
                response = await client.request(method, url, **request)
                await response.aread()
                return response

        # A private loop: asyncio.run would leave the main thread without a current
        # loop, which later tests (Pulumi's runtime) expect to find.
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(run())
        finally:
            loop.close()

    def client(self, tenant: rs.Tenant, **kwargs: Any) -> Any:
        """Only builds the client (for the argument checks)."""
        if self.mode == "sync":
            return self.res.compute_for(tenant, **kwargs)
        return self.res.async_compute_for(tenant, **kwargs)


@pytest.fixture(params=["sync", "async"])
def caller(request: pytest.FixtureRequest, res: rs.Residency) -> Caller:
    return Caller(request.param, res)
