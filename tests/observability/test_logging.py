"""Logging: stdlib loggers under ``residency_sdk.*``, decisions at INFO, retries at WARNING,
never contents, object keys or credentials.

The retry test puts a loopback proxy in front of moto that answers the first request with
503 SlowDown and forwards the rest; the secrets test runs put/get/head/list/transfer and
guarded egress against Azurite and a loopback compute endpoint with every logger of the
process at DEBUG, and searches every record for the secrets it handled.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from emulators import AZURITE_KEY, RewritingProxy

import residency_sdk as rs
from residency_sdk.observability import ROOT_LOGGER, RedactingFilter, logger, origin
from residency_sdk.storage.retry import RetryPolicy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "egress"))

from egress_loopback import CountingServer

DE = rs.Tenant(id="charite-berlin", country="DE")
FAST = RetryPolicy(max_attempts=3, max_elapsed=20, initial_backoff=0.01, max_backoff=0.05)


def _records(caplog: pytest.LogCaptureFixture, name: str, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == name and r.levelno == level]


# --- library etiquette ----------------------------------------------------------------


def test_loggers_live_under_residency_sdk_with_a_null_handler() -> None:
    assert logger("storage.retry").name == "residency_sdk.storage.retry"
    assert logger("residency_sdk.events").name == "residency_sdk.events"
    assert any(isinstance(h, logging.NullHandler)
               for h in logging.getLogger(ROOT_LOGGER).handlers)


def test_an_unconfigured_application_prints_nothing() -> None:
    # Without the NullHandler, logging's last-resort handler would print warnings to
    # stderr of an application that never asked for logs.
    code = ("from residency_sdk.observability import logger;"
            "logger('storage.retry').warning('a retry'); logger('events').error('x')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stderr == ""


def test_origin_keeps_scheme_host_and_port_only() -> None:
    assert origin("https://user:pw@host.example:8443/v1/x?sig=abc#f") == \
        "https://host.example:8443"
    assert origin("http://[::1]:9000/p?q=1") == "http://[::1]:9000"


def test_the_redacting_filter_cuts_query_strings_from_any_record() -> None:
    record = logging.LogRecord("httpx", logging.INFO, __file__, 1, 'HTTP Request: %s %s "%d"',
                               ("GET", "https://acct.blob.example/c/b?sv=1&sig=SECRET", 200),
                               None)
    assert RedactingFilter().filter(record)
    assert record.getMessage() == \
        'HTTP Request: GET https://acct.blob.example/c/b?<redacted> "200"'
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "no url %s", ("here",), None)
    RedactingFilter().filter(plain)
    assert plain.args == ("here",)  # records without a query are left as they are


# --- decisions at INFO ---------------------------------------------------------------


def test_a_blocked_transfer_is_logged_at_info_with_its_reasons(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    res = rs.Residency.load(local_root=tmp_path / "root", audit=False, audit_off_reason="test")
    try:
        res.storage_for(DE).put("patient-jane-doe.dcm", b"pixel data")
        caplog.set_level(logging.INFO, logger=ROOT_LOGGER)
        with pytest.raises(rs.TransferBlocked) as err:
            res.transfer(DE, "patient-jane-doe.dcm", "US")
    finally:
        res.close()
    decisions = _records(caplog, "residency_sdk.events", logging.INFO)
    assert len(decisions) == 1, [r.getMessage() for r in decisions]
    record = decisions[0]
    fields: dict[str, Any] = record.residency  # type: ignore[attr-defined]
    assert fields["outcome"] == "blocked" and fields["operation"] == "transfer_check"
    assert (fields["tenant_id"], fields["data_class"], fields["from"], fields["to"]) == \
        (DE.id, "phi", "DE", "US")
    assert fields["regimes"] == list(err.value.decision.regimes)
    message = record.getMessage()
    assert "blocked" in message and DE.id in message and "DE->US" in message
    for reason in err.value.decision.reasons:
        assert reason in message
    assert all("jane-doe" not in r.getMessage() for r in caplog.records)


def test_an_allowed_decision_is_logged_at_info_without_reasons(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    res = rs.Residency.load(local_root=tmp_path / "root", audit=False, audit_off_reason="test",
                            audit_hooks=[lambda event: None])
    caplog.set_level(logging.INFO, logger=ROOT_LOGGER)
    try:
        decision = res.check_transfer(DE, "FR")
    finally:
        res.close()
    assert decision.allowed
    [record] = _records(caplog, "residency_sdk.events", logging.INFO)
    assert record.residency["outcome"] == "allowed"  # type: ignore[attr-defined]
    assert "reasons" not in record.getMessage()


def test_decisions_are_silent_below_the_configured_level(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    res = rs.Residency.load(local_root=tmp_path / "root", audit=False, audit_off_reason="test",
                            audit_hooks=[lambda event: None])
    caplog.set_level(logging.WARNING, logger=ROOT_LOGGER)
    try:
        res.check_transfer(DE, "US")
    finally:
        res.close()
    assert not [r for r in caplog.records if r.name.startswith(ROOT_LOGGER)]


# --- retries at WARNING --------------------------------------------------------------


class FlakyProxy(RewritingProxy):
    """A TCP proxy to an emulator whose first ``faults`` connections get 503 SlowDown
    (then closed); later connections are forwarded untouched."""

    def __init__(self, upstream_port: int, faults: int) -> None:
        super().__init__(upstream_port, {})
        self.faults = faults
        self.refused = 0

    def handle(self, conn: socket.socket) -> None:
        if self.faults > 0:
            self.faults -= 1
            threading.Thread(target=self._slow_down, args=(conn,), daemon=True).start()
            return
        super().handle(conn)

    def _slow_down(self, conn: socket.socket) -> None:
        head = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                head += chunk
            body = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
                    b"<Message>Please reduce your request rate.</Message></Error>")
            conn.sendall(b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                         % (len(body), body))
            self.refused += 1
        conn.close()


@pytest.mark.emulator
def test_a_retried_s3_call_logs_a_warning(emulators: Any, monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    from storage_harness import ProviderHarness

    harness = ProviderHarness("aws", emulators, monkeypatch, tmp_path)
    target = harness.target(harness.write_map(tmp_path))
    key = f"logging-{uuid.uuid4().hex[:10]}/patient-jane-doe.dcm"
    data = b"object bytes " + uuid.uuid4().bytes
    harness.open(target).put(key, data)
    caplog.set_level(logging.WARNING, logger=ROOT_LOGGER)
    with FlakyProxy(emulators.get("aws").port, faults=1) as proxy:
        store = harness.open(target.model_copy(update={"endpoint": proxy.endpoint}),
                             verify_on_open=False)
        store.policy = FAST
        assert store.get(key) == data  # retried through the fault, then served
    assert proxy.refused == 1
    [record] = _records(caplog, "residency_sdk.storage.retry", logging.WARNING)
    fields = record.residency  # type: ignore[attr-defined]
    assert fields["backend"] == store.name and fields["attempt"] == 1
    assert fields["max_attempts"] == FAST.max_attempts
    assert fields["operation"] == "get" and fields["error"]
    message = record.getMessage()
    assert store.name in message and "retrying" in message and "attempt 1 of 3" in message
    assert "jane-doe" not in message and "SlowDown" not in message.replace(fields["error"], "")


# --- nothing secret in any record ----------------------------------------------------


@pytest.fixture
def compute() -> Iterator[CountingServer]:
    server = CountingServer("de-compute")
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.emulator
def test_no_secret_in_any_log_record_at_debug(emulators: Any, monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path, compute: CountingServer,
                                              caplog: pytest.LogCaptureFixture) -> None:
    from storage_harness import ProviderHarness

    harness = ProviderHarness("azure", emulators, monkeypatch, tmp_path)
    connection_string = harness_connection_string()
    doc = yaml.safe_load(harness.write_map(tmp_path).read_text(encoding="utf-8"))
    doc["locations"]["DE"]["compute"] = [{"provider": "azure", "region": "germanywestcentral",
                                          "endpoint": compute.url}]
    map_path = tmp_path / "map-with-compute.yaml"
    map_path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")

    marker = f"PIXELS-{uuid.uuid4().hex}"
    payload = marker.encode() * 64
    key = f"patient-jane-doe-{uuid.uuid4().hex[:8]}.dcm"
    token = f"Bearer TOKEN-{uuid.uuid4().hex}"
    sas = f"sig=SAS-{uuid.uuid4().hex}"
    tenant = rs.Tenant(id=f"t-{uuid.uuid4().hex[:10]}", country="DE")

    caplog.set_level(logging.DEBUG)  # every logger of the process, third parties too
    # httpx logs each request's full URL at INFO; the documented filter cuts the query.
    caplog.handler.addFilter(RedactingFilter())
    res = rs.Residency.load(map_path, audit=str(tmp_path / "audit.db"))
    try:
        store = res.storage_for(tenant, actor="test")
        store.put(key, payload)
        assert store.get(key) == payload
        store.head(key)
        assert [o.key for o in store.list()] == [key]
        res.transfer(tenant, key, "FR")
        with pytest.raises(rs.TransferBlocked):
            res.transfer(tenant, key, "US")
        with res.compute_for(tenant, purpose="inference") as client:
            response = client.post(f"{compute.url}/v1/infer/{key}?{sas}", content=payload,
                                   headers={"Authorization": token})
            assert response.status_code == 200, (response.headers, response.text[:500])
            with pytest.raises(rs.EgressBlocked):
                client.post(f"https://undeclared.example/upload?{sas}", content=payload,
                            headers={"Authorization": token})
    finally:
        res.close()
    assert compute.requests and compute.requests[0].headers["authorization"] == token

    ours = [r for r in caplog.records if r.name.startswith(ROOT_LOGGER)]
    levels = {r.levelno for r in ours}
    assert logging.INFO in levels and logging.DEBUG in levels, "the run did log"
    secrets = {"account key": AZURITE_KEY, "connection string": connection_string,
               "authorization header": token.split(" ", 1)[1], "SAS query": sas,
               "object bytes": marker}
    for record in caplog.records:
        text = _everything_in(record)
        for what, secret in secrets.items():
            assert secret not in text, f"{what} in a record of {record.name}: {text[:300]}"
    for record in ours:  # a key may name a patient: the SDK never logs it
        assert "jane-doe" not in _everything_in(record), record.getMessage()


def harness_connection_string() -> str:
    import os

    return os.environ["RESIDENCY_AZURE_CONNECTION_STRING"]


def _everything_in(record: logging.LogRecord) -> str:
    """The formatted message, the raw args and every extra attribute of ``record``."""
    parts = [record.getMessage(), repr(record.args), repr(record.__dict__)]
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)
