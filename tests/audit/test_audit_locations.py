"""Audit stays in its location (issue 12): a map gives each location its own audit sink,
and events about a tenant land only in its location's log.

Audit events name tenants, staff and studies: they are personal data too. Before this,
every event of a process went to one file wherever the process ran.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

import residency_sdk as rs
from residency_sdk.audit import AuditLog, verify_log
from residency_sdk.audit.route import LocationRouter, locator
from residency_sdk.erasure import audit_log_events
from residency_sdk.errors import AuditUnavailable, MapError
from residency_sdk.events import AuditEvent
from residency_sdk.policy import ResidencyPolicy
from residency_sdk.storage.memory import MemoryStore

CHARITE = rs.Tenant(id="charite-berlin", country="DE", agreements=frozenset({"scc"}))
MAYO = rs.Tenant(id="mayo-rochester", country="US", agreements=frozenset({"baa"}))
LEEDS = rs.Tenant(id="nhs-leeds", country="GB", agreements=frozenset({"uk_addendum"}))


def _memory(target: Any, location: str) -> MemoryStore:
    return MemoryStore(target)


def _map(tmp_path: Path, *, default: bool = True, **extra: Any) -> Path:
    doc: dict[str, Any] = {
        "extends": "default", "name": "audit-per-location",
        "locations": {"DE": {"audit": {"sink": "logs/de-audit.db",
                                       "anchors": ["anchors/de"]}},
                      "US": {"audit": {"sink": str(tmp_path / "logs" / "us-audit.db")}}},
        **extra}
    if default:
        doc["audit"] = {"sink": "logs/default-audit.db"}
    path = tmp_path / "map.yaml"
    (tmp_path / "logs").mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


def _tenants_in(log: Path) -> Counter[str | None]:
    return Counter(e.tenant_id for e in audit_log_events(log))


def _work(res: rs.Residency, tenant: rs.Tenant) -> None:
    store = res.storage_for(tenant, actor="dr-who")
    store.put("scan.dcm", b"phi")
    store.get("scan.dcm")
    list(store.list())
    res.check_transfer(tenant, "AU")
    store.delete("scan.dcm")


def test_each_tenants_events_land_only_in_its_locations_log(tmp_path: Path) -> None:
    res = rs.Residency.load(_map(tmp_path), storage=_memory)
    assert isinstance(res.audit_sinks[0], LocationRouter)
    _work(res, CHARITE)
    _work(res, MAYO)
    _work(res, LEEDS)  # GB has no sink of its own: the map's default
    res.close()
    logs = tmp_path / "logs"
    de, us, default = (_tenants_in(logs / f"{n}-audit.db") for n in ("de", "us", "default"))
    assert set(de) == {CHARITE.id} and de[CHARITE.id] >= 10
    assert set(us) == {MAYO.id} and us[MAYO.id] >= 10
    assert set(default) == {LEEDS.id}
    for name in ("de", "us", "default"):
        result = verify_log(logs / f"{name}-audit.db")
        assert result.ok and result.outcome_unknown == (), (name, result.to_dict())
    # The DE log's checkpoints went to DE's anchor folder (at close).
    assert any((tmp_path / "anchors" / "de").rglob("*.json"))


def test_a_transfer_is_recorded_in_the_tenants_own_location(tmp_path: Path) -> None:
    res = rs.Residency.load(_map(tmp_path), storage=_memory)
    store = res.storage_for(CHARITE)
    evidence = rs.deid.external_evidence(b"counts", tenant_id=CHARITE.id,
                                         method="aggregate counts", tool="test")
    store.put("counts.csv", b"counts", data_class="anonymised", evidence=evidence)
    res.transfer(CHARITE, "counts.csv", to="US", data_class="anonymised")
    res.close()
    logs = tmp_path / "logs"
    transfers = [(e.outcome, e.destination_location) for e in
                 audit_log_events(logs / "de-audit.db") if e.operation == "transfer"]
    assert transfers == [("intent", "US"), ("ok", "US")]
    assert not list(audit_log_events(logs / "us-audit.db"))


def test_retention_and_erasure_events_stay_in_the_location(tmp_path: Path) -> None:
    res = rs.Residency.load(_map(tmp_path), storage=_memory, state_dir=tmp_path / "state")
    res.storage_for(MAYO).put("scan.dcm", b"phi")
    res.erase(MAYO)
    res.close()
    us = [(e.operation, e.outcome) for e in audit_log_events(tmp_path / "logs" / "us-audit.db")]
    assert ("erase", "intent") in us and ("erase", "ok") in us
    assert not [e for e in audit_log_events(tmp_path / "logs" / "de-audit.db")
                if e.tenant_id == MAYO.id]


def test_audit_off_is_recorded_in_every_locations_log(tmp_path: Path) -> None:
    res = rs.Residency.load(_map(tmp_path), storage=_memory, audit=False)
    _work(res, CHARITE)
    res.close()
    for name in ("de", "us", "default"):
        events = list(audit_log_events(tmp_path / "logs" / f"{name}-audit.db"))
        assert [e.operation for e in events] == ["audit_off"], name


def test_without_a_default_in_the_map_the_loads_default_sink_takes_the_rest(
        tmp_path: Path) -> None:
    fallback = tmp_path / "fallback.db"
    res = rs.Residency.load(_map(tmp_path, default=False), storage=_memory,
                            audit=str(fallback))
    _work(res, LEEDS)
    _work(res, CHARITE)
    res.close()
    assert set(_tenants_in(fallback)) == {LEEDS.id}
    assert set(_tenants_in(tmp_path / "logs" / "de-audit.db")) == {CHARITE.id}


def test_the_router_fails_closed(tmp_path: Path) -> None:
    policy = ResidencyPolicy.load(_map(tmp_path))
    with AuditLog(tmp_path / "de-only.db") as de:
        router = LocationRouter({"DE": de}, None, locator(policy))
        router.append(AuditEvent(operation="placement", outcome="allowed",
                                 tenant_id=CHARITE.id, tenant_country="DE"))
        with pytest.raises(AuditUnavailable, match=r"location US.*no audit sink"):
            router.append(AuditEvent(operation="placement", outcome="allowed",
                                     tenant_id=MAYO.id, tenant_country="US"))
        with pytest.raises(AuditUnavailable, match="names no tenant"):
            router.append(AuditEvent(operation="placement", outcome="allowed"))
        # A retention deletion names a tenant but no country: placed where it happened.
        router.append(AuditEvent(operation="retention_delete", outcome="intent",
                                 tenant_id="x", source_location="DE"))
        # Through the client: nothing about the US tenant can be done, not even opening
        # its store (the placement decision cannot be recorded).
        res = rs.Residency(policy, storage=_memory, audit_sinks=[router])
        with pytest.raises(AuditUnavailable):
            res.storage_for(MAYO)
        with pytest.raises(AuditUnavailable):
            res.check_transfer(MAYO, "DE")
        router.flush()
    assert [e.tenant_id for e in audit_log_events(tmp_path / "de-only.db")] == [
        CHARITE.id, "x"]


@pytest.mark.parametrize(("audit", "path", "message"), [
    ({"sink": "a.db", "colour": "red"}, "audit.colour", "Extra inputs"),
    ({"anchors": ["x"]}, "audit.sink", "Field required"),
    ({"sink": "postgresql://me:secret@db.example/audit"}, "audit.sink", "password"),
    ({"sink": "s3://bucket/log"}, "audit.sink", "postgresql://"),
    ({"sink": "a.db", "anchors": ["ftp://host/x"]}, "audit.anchors.0", "s3://"),
    ({"sink": "a.db", "anchors": ["s3://key:secret@bucket/x"]}, "audit.anchors.0",
     "credentials"),
])
def test_the_maps_audit_sections_are_validated(tmp_path: Path, audit: dict[str, Any],
                                               path: str, message: str) -> None:
    for where in ("top", "location"):
        doc: dict[str, Any] = {"extends": "default", "name": "bad"}
        if where == "top":
            doc["audit"] = audit
            expected = path
        else:
            doc["locations"] = {"DE": {"audit": audit}}
            expected = f"locations.DE.{path}"
        bad = tmp_path / f"{where}.yaml"
        bad.write_text(yaml.safe_dump(doc))
        with pytest.raises(MapError, match=message) as caught:
            rs.Residency.load(bad, storage=_memory, audit=False)
        assert expected in str(caught.value), str(caught.value)
        assert "secret" not in str(caught.value)


def test_erasure_at_a_destination_is_recorded_in_that_locations_trail(
        tmp_path: Path) -> None:
    """Issue 13: erasing a tenant's copy in another location is audited in that
    location's own log; the receipt stays in the tenant's location."""
    res = rs.Residency.load(_map(tmp_path), storage=_memory, state_dir=tmp_path / "state")
    # An Austrian clinic: § 393 SGB V keeps German health data out of SCC transfers
    # (LEGAL_FACTS 12); Austria is routed to the DE location all the same.
    tenant = rs.Tenant(id="vienna-erase", country="AT", agreements=frozenset({"scc"}))
    res.storage_for(tenant).put("scan.dcm", b"phi")
    res.transfer(tenant, "scan.dcm", to="US")
    receipt = res.erase(tenant)
    assert receipt.complete and receipt.locations == ("DE", "US")
    res.close()
    logs = tmp_path / "logs"
    us = [e for e in audit_log_events(logs / "us-audit.db") if e.operation == "erase"]
    de = [e for e in audit_log_events(logs / "de-audit.db") if e.operation == "erase"]
    backends = f"erasure:{receipt.request_id}"
    # Each backend's intent and outcome where the backend is (US: primary and failover).
    assert {(e.source_location, e.outcome) for e in us if e.purpose == backends} == {
        ("US", "intent"), ("US", "ok")}
    assert {(e.source_location, e.outcome) for e in de if e.purpose == backends} == {
        ("DE", "intent"), ("DE", "ok")}
    assert all(e.source_location == "US" for e in us)
    # The receipt (and nothing of the DE backends) in DE's trail only.
    receipt_events = [e for e in de if e.purpose == f"erasure_receipt:{receipt.request_id}"]
    assert [e.event_id for e in receipt_events] == [receipt.receipt_event_id]
    assert not [e for e in us if e.purpose and e.purpose.startswith("erasure_receipt")]
    for name in ("de", "us"):
        assert verify_log(logs / f"{name}-audit.db").ok
