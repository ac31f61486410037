"""The example imaging service's test stack: two inference stubs (DE and AU), a report
drafter stub and the service itself, each started with uvicorn in its own process on a
free loopback port (so the service's memory can be measured and its shutdown observed);
a region map extending the MVision map declares the stubs' URLs as the locations'
compute endpoints and the drafter as a processor. Everything is stored on the embedded
local backend; the audit log is a SQLite file."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from emulators import free_port

import residency_sdk as rs
from residency_sdk.erasure import audit_log_events

REPO = Path(__file__).resolve().parents[2]
MAP = REPO / "region_maps" / "examples" / "mvision.yaml"
TENANTS = {
    "clinic-berlin": {"country": "DE"},
    # An Austrian clinic: § 393 SGB V keeps German health data out of SCC transfers
    # (LEGAL_FACTS 12), so the lawful SCC transfer is an Austrian one, under a scoped SCC.
    "clinic-vienna": {"country": "AT", "agreements": [
        {"mechanism": "scc", "destinations": ["US"], "reference": "SCC-VIE-1",
         "signed_on": "2025-06-01"}]},
    "clinic-istanbul": {"country": "TR", "agreements": ["kvkk_standard_contract"]},
    # A Turkish clinic whose KVKK standard contract covers Germany (where its studies are
    # kept) but not the United States (where the report drafter works).
    "clinic-izmir": {"country": "TR", "agreements": [
        {"mechanism": "kvkk_standard_contract", "destinations": ["DE"],
         "reference": "KVKK-IZM-1", "signed_on": "2026-02-02", "notified_on": "2026-02-04"}]},
    "clinic-sydney": {"country": "AU"},
    "clinic-paris": {"country": "FR"},
    # The MVision map routes no Brazilian clinic anywhere: its studies have no lawful home.
    "clinic-saopaulo": {"country": "BR"},
}


@dataclass
class Server:
    """A uvicorn process (its own session, so it is stopped with its children)."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> int | None:
        """SIGTERM (uvicorn's graceful shutdown: the lifespan's exit runs), then SIGKILL
        after 30 s; the exit status."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        return self.proc.returncode


def start_server(factory: str, env: dict[str, str], log: Path, probe: str) -> Server:
    """``uvicorn --factory <factory>`` on a free loopback port, once ``probe`` answers."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "--factory", "--app-dir", str(REPO / "examples"),
            factory, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                env={**os.environ, **env}, start_new_session=True)
    server = Server(f"http://127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{factory} exited: {log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.url + probe, timeout=1).status_code < 500:
                return server
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{factory} did not answer on port {port}")


def write_map(path: Path, stubs: dict[str, Server], drafter: Server) -> Path:
    """The MVision map, with DE's and AU's compute endpoints at the stubs, France without
    a model, and the drafter stub declared as a US processor holding an SCC."""
    drafter_host = drafter.url.removeprefix("http://")
    doc = {"extends": str(MAP), "name": "mvision-test", "locations": {
        "DE": {"compute": [{"provider": "azure", "region": "germanywestcentral",
                            "endpoint": stubs["DE"].url}]},
        "AU": {"compute": [{"provider": "azure", "region": "australiaeast",
                            "endpoint": stubs["AU"].url}]},
        "FR": {"compute": []}},
        "processors": {"report_drafter": {
            "name": "Example Report Drafting Inc.", "hosts": [drafter_host],
            "country": "US", "baa": False, "retention": "none beyond the request",
            "data_classes": ["personal", "anonymised"],
            "agreements": [{"mechanism": "scc", "counterparty": "Example Report Drafting Inc.",
                            "destinations": ["US"], "reference": "SCC-DRAFT-1",
                            "signed_on": "2026-01-15"}],
            "source": "test DPA", "as_of": "2026-11-01"}}}
    path.write_text(yaml.safe_dump(doc))
    return path


@dataclass
class Stack:
    """The running stack and where its data and audit log are."""

    service: Server
    stubs: dict[str, Server]
    drafter: Server
    local_root: Path
    audit: Path
    map: Path

    def client(self, tenant: str | None, timeout: float = 30) -> httpx.Client:
        headers = {"X-Tenant-ID": tenant} if tenant else {}
        return httpx.Client(base_url=self.service.url, headers=headers, timeout=timeout)

    def received(self, location: str) -> list[dict[str, Any]]:
        return list(httpx.get(self.stubs[location].url + "/v1/received", timeout=5).json())

    def drafted(self) -> list[dict[str, object]]:
        return list(httpx.get(self.drafter.url + "/v1/received", timeout=5).json())

    def residency(self) -> rs.Residency:
        return rs.Residency.load(self.map, local_root=self.local_root)

    def events(self, tenant_id: str, operation: str, until: int = 1,
               key_prefix: str | None = None) -> list[rs.AuditEvent]:
        """The clinic's ``operation`` outcomes, on keys under ``key_prefix`` when given
        (waiting briefly for ``until`` of them: outcomes are group-committed a few
        milliseconds after the response)."""
        deadline = time.monotonic() + 5
        while True:
            events = [e for e in audit_log_events(self.audit)
                      if e.operation == operation and e.tenant_id == tenant_id
                      and e.outcome != "intent" and (
                          key_prefix is None or (e.object_key or "").startswith(key_prefix))]
            if len(events) >= until or time.monotonic() > deadline:
                return events
            time.sleep(0.05)

    def egress_events(self, tenant_id: str, until: int = 1) -> list[rs.AuditEvent]:
        """The clinic's ``egress`` outcomes (see :meth:`events`)."""
        return self.events(tenant_id, "egress", until)


@contextlib.contextmanager
def running_stack(tmp: Path, service_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """Start the stubs and the service (with ``service_env`` added to its environment);
    stop every process at the end."""
    servers: list[Server] = []
    try:
        stubs = {}
        for location in ("DE", "AU"):
            stubs[location] = start_server(
                "imaging_service.inference_stub:create_stub_from_env",
                {"IMAGING_STUB_LOCATION": location}, tmp / f"stub-{location}.log",
                "/v1/received")
            servers.append(stubs[location])
        drafter = start_server("imaging_service.inference_stub:create_drafter", {},
                               tmp / "drafter.log", "/v1/received")
        servers.append(drafter)
        (tmp / "tenants.json").write_text(json.dumps(TENANTS))
        test_map = write_map(tmp / "map.yaml", stubs, drafter)
        env = {"IMAGING_MAP": str(test_map), "IMAGING_LOCAL_ROOT": str(tmp / "data"),
               "IMAGING_AUDIT": str(tmp / "audit.db"),
               "IMAGING_TENANTS": str(tmp / "tenants.json"),
               "IMAGING_REPORT_DRAFTER": drafter.url, **(service_env or {})}
        service = start_server("imaging_service.app:create_app_from_env", env,
                               tmp / "service.log", "/healthz")
        servers.append(service)
        yield Stack(service, stubs, drafter, tmp / "data", tmp / "audit.db", test_map)
    finally:
        for server in reversed(servers):
            server.stop()
