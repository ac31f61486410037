"""A call to a third-party processor shows in the transfer-audit report as its own flow
(origin, location, the processor's country and id, data class, basis, bytes sent)."""

from __future__ import annotations

import http.server
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import residency_sdk as rs
from residency_sdk.audit.report import build_report
from residency_sdk.regionmap import load_region_map


class _Echo(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_processor_call_is_its_own_flow_in_the_report(tmp_path: Path, port: int) -> None:
    (tmp_path / "map.yaml").write_text(yaml.safe_dump({
        "version": 1, "name": "egress-report", "extends": "default",
        "processors": {"drafter": {
            "name": "Drafter Inc.", "hosts": [f"127.0.0.1:{port}"], "country": "US",
            "retention": "none beyond the request", "data_classes": ["personal"],
            "agreements": [{"mechanism": "scc", "destinations": ["US"],
                            "reference": "SCC-D-1"}],
            "source": "DPA of 2026-05-01", "as_of": "2026-11-01"}}}), encoding="utf-8")
    log = tmp_path / "audit.db"
    res = rs.Residency.load(tmp_path / "map.yaml", audit=str(log))
    tenant = rs.Tenant(id="klinik-wien", country="AT")
    with res.compute_for(tenant, purpose="report drafting", actor="svc") as http_client:
        for _ in range(3):
            http_client.post(f"http://127.0.0.1:{port}/draft", content=b"x" * 100,
                             extensions={"residency_data_class": "personal"}).read()
    res.close()
    report = build_report(log, region_map=load_region_map(tmp_path / "map.yaml"))
    assert [(f["origin"], f["location"], f["destination"], f["data_class"], f["mechanism"],
             f["events"], f["bytes"], f["operations"]) for f in report.flows] == [
        ("AT", "DE", "US (processor drafter)", "personal", "scc", 3, 300, ["egress"])]
