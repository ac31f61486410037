"""Tracing: OpenTelemetry spans around storage operations, transfers and guarded requests.

The spans are recorded by opentelemetry-sdk's ``InMemorySpanExporter``. In-process tests
give the SDK a tracer of their own provider (the global provider can be set only once
per process); one subprocess checks the real path through the global provider, another
that everything works with opentelemetry blocked from import.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from components import require

import residency_sdk as rs
from residency_sdk import observability

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "egress"))

from egress_loopback import CountingServer

sdk_trace = require("opentelemetry.sdk.trace", "pip install -e '.[test]'")
sdk_export = require("opentelemetry.sdk.trace.export", "pip install -e '.[test]'")
in_memory = require("opentelemetry.sdk.trace.export.in_memory_span_exporter",
                    "pip install -e '.[test]'")

DE = rs.Tenant(id="charite-berlin", country="DE")
KEY = "patient-jane-doe.dcm"
PAYLOAD = b"PIXELS-OF-JANE-DOE" * 16


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The spans the SDK records in this test."""
    memory = in_memory.InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(sdk_export.SimpleSpanProcessor(memory))
    monkeypatch.setattr(observability, "_tracer", provider.get_tracer("residency_sdk"))
    yield memory
    provider.shutdown()


@pytest.fixture
def compute() -> Iterator[CountingServer]:
    server = CountingServer("de-compute")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def res(tmp_path: Path, compute: CountingServer) -> Iterator[rs.Residency]:
    doc = {"extends": "default", "name": "tracing-test", "locations": {"DE": {"compute": [
        {"provider": "azure", "region": "germanywestcentral", "endpoint": compute.url}]}}}
    path = tmp_path / "map.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    residency = rs.Residency.load(path, local_root=tmp_path / "root",
                                  audit=str(tmp_path / "audit.db"))
    try:
        yield residency
    finally:
        residency.close()


def _named(exporter: Any, name: str) -> list[Any]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def _no_contents(span: Any) -> None:
    for value in span.attributes.values():
        assert "jane-doe" not in str(value).lower() and "PIXELS" not in str(value)


def test_a_put_and_a_get_are_spans_with_tenant_location_and_outcome(
        exporter: Any, res: rs.Residency) -> None:
    store = res.storage_for(DE)
    store.put(KEY, PAYLOAD)
    assert store.get(KEY) == PAYLOAD
    [put] = _named(exporter, "residency.storage.put")
    assert dict(put.attributes) == {
        "residency.operation": "put", "residency.tenant_id": DE.id,
        "residency.location": "DE", "residency.provider": "local",
        "residency.data_class": "phi", "residency.outcome": "ok"}
    [get] = _named(exporter, "residency.storage.get")
    assert get.attributes["residency.outcome"] == "ok"
    assert "residency.data_class" not in get.attributes  # a read declares none
    for span in (put, get):
        _no_contents(span)


def test_a_listing_is_a_span_too(exporter: Any, res: rs.Residency) -> None:
    store = res.storage_for(DE)
    store.put(KEY, PAYLOAD)
    assert [o.key for o in store.list("")] == [KEY]
    [listed] = _named(exporter, "residency.storage.list")
    assert listed.attributes["residency.outcome"] == "ok"
    assert listed.attributes["residency.tenant_id"] == DE.id
    _no_contents(listed)


def test_each_put_many_item_is_one_span_refused_or_stored(
        exporter: Any, res: rs.Residency) -> None:
    store = res.storage_for(DE)
    results = store.put_many([("a.dcm", PAYLOAD), ("../escape.dcm", PAYLOAD),
                              ("b.dcm", PAYLOAD)], concurrency=2)
    assert [r.ok for r in results] == [True, False, True]
    puts = _named(exporter, "residency.storage.put")
    assert sorted(s.attributes["residency.outcome"] for s in puts) == ["error", "ok", "ok"]
    for span in puts:
        _no_contents(span)


def test_a_failed_operation_is_an_error_span_naming_the_exception_type_only(
        exporter: Any, res: rs.Residency) -> None:
    with pytest.raises(rs.ObjectNotFound):
        res.storage_for(DE).get(KEY)
    [get] = _named(exporter, "residency.storage.get")
    assert get.attributes["residency.outcome"] == "error"
    assert get.attributes["residency.error"] == "ObjectNotFound"
    assert get.status.status_code.name == "ERROR"
    assert not get.events  # no exception event: its message names the key
    _no_contents(get)


def test_a_transfer_is_a_span_and_a_blocked_one_says_so(exporter: Any,
                                                        res: rs.Residency) -> None:
    res.storage_for(DE).put(KEY, PAYLOAD)
    res.transfer(DE, KEY, "FR")
    with pytest.raises(rs.TransferBlocked):
        res.transfer(DE, KEY, "US")
    done, blocked = _named(exporter, "residency.transfer")
    assert dict(done.attributes) == {
        "residency.operation": "transfer", "residency.tenant_id": DE.id,
        "residency.destination": "FR", "residency.data_class": "phi",
        "residency.location": "DE", "residency.outcome": "ok"}
    assert blocked.attributes["residency.outcome"] == "blocked"
    assert blocked.attributes["residency.error"] == "TransferBlocked"
    assert blocked.attributes["residency.destination"] == "US"
    for span in (done, blocked):
        _no_contents(span)


def test_a_guarded_request_is_a_span_without_path_or_query(
        exporter: Any, res: rs.Residency, compute: CountingServer) -> None:
    with res.compute_for(DE, purpose="inference") as client:
        response = client.post(f"{compute.url}/v1/{KEY}?sig=SECRET", content=PAYLOAD)
        assert response.status_code == 200
        with pytest.raises(rs.EgressBlocked):
            client.post("https://undeclared.example/upload?sig=SECRET", content=PAYLOAD)
    allowed, blocked = _named(exporter, "residency.egress")
    assert dict(allowed.attributes) == {
        "residency.operation": "egress", "residency.tenant_id": DE.id,
        "residency.location": "DE", "residency.endpoint": compute.url,
        "residency.method": "POST", "residency.data_class": "phi",
        "residency.kind": "compute", "residency.country": "DE", "residency.status": 200,
        "residency.outcome": "ok"}
    assert blocked.attributes["residency.outcome"] == "blocked"
    assert blocked.attributes["residency.endpoint"] == "https://undeclared.example"
    assert blocked.attributes["residency.error"] == "EgressBlocked"
    for span in (allowed, blocked):
        _no_contents(span)
        assert all("SECRET" not in str(v) for v in span.attributes.values())


def test_an_async_guarded_request_is_a_span_too(exporter: Any, res: rs.Residency,
                                                 compute: CountingServer) -> None:
    import asyncio

    async def call() -> int:
        async with res.async_compute_for(DE, purpose="inference") as client:
            response = await client.get(f"{compute.url}/v1/ping")
            await response.aread()
            return response.status_code

    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(call()) == 200
    finally:
        loop.close()
    [span] = _named(exporter, "residency.egress")
    assert span.attributes["residency.outcome"] == "ok"
    assert span.attributes["residency.method"] == "GET"


# --- the real global provider, and no opentelemetry at all ----------------------------

_RUN = """
import sys, json
{prelude}
import residency_sdk as rs
from residency_sdk import observability
tenant = rs.Tenant(id="charite-berlin", country="DE")
res = rs.Residency.load(local_root=sys.argv[1], audit=sys.argv[1] + "/audit.db")
store = res.storage_for(tenant)
store.put("k", b"v")
assert store.get("k") == b"v"
res.transfer(tenant, "k", "FR")
try:
    res.transfer(tenant, "k", "US")
except rs.TransferBlocked:
    pass
else:
    raise SystemExit("not blocked")
with observability.span("custom", tenant_id="t"):
    observability.annotate(extra=1)
res.close()
{epilogue}
"""


def _run(tmp_path: Path, prelude: str, epilogue: str) -> str:
    code = textwrap.dedent(_RUN).format(prelude=prelude, epilogue=epilogue)
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_spans_reach_the_global_tracer_provider(tmp_path: Path) -> None:
    prelude = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
memory = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(memory))
"""
    # The provider is installed after the SDK's first span: the API's proxy tracer the
    # SDK holds follows it.
    epilogue = """
trace.set_tracer_provider(provider)
res = rs.Residency.load(local_root=sys.argv[1], audit=sys.argv[1] + "/audit.db")
res.storage_for(tenant).put("k2", b"v")
res.close()
print(json.dumps([[s.name, s.instrumentation_scope.name] for s in memory.get_finished_spans()]))
"""
    spans = json.loads(_run(tmp_path, prelude, epilogue).strip().splitlines()[-1])
    assert spans == [["residency.storage.put", "residency_sdk"]]


def test_everything_works_with_opentelemetry_blocked(tmp_path: Path) -> None:
    out = _run(tmp_path, "sys.modules['opentelemetry'] = None",
               "print(observability._get_tracer() is None, "
               "any(m.startswith('opentelemetry') and sys.modules[m] is not None "
               "for m in sys.modules))")
    assert out.split() == ["True", "False"]


def test_import_residency_sdk_does_not_import_opentelemetry() -> None:
    code = ("import sys, residency_sdk, residency_sdk.client, residency_sdk.observability;"
            "assert not [m for m in sys.modules if m.startswith('opentelemetry')]")
    subprocess.run([sys.executable, "-c", code], check=True)
