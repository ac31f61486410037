"""The transfer-audit report, checked against figures computed by hand for a fixture log."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest
from report_fixture import GDPR_US, KVKK, at, fixture_map, write_fixture_log

import residency_sdk as rs
from residency_sdk.audit.render import render, to_csv, to_markdown
from residency_sdk.audit.report import AuditReport, build_report
from residency_sdk.errors import AuditFormatError


@pytest.fixture
def report(tmp_path: Path) -> AuditReport:
    path = write_fixture_log(tmp_path / "fixture.db")
    return build_report(path, until="2026-11-02", region_map=fixture_map(tmp_path))


def test_chain_status_heads_the_report(report: AuditReport) -> None:
    assert report.chain.ok and report.chain.events == 15
    assert report.map_name == "audit-fixture"
    assert report.until == "2026-11-02T00:00:00.000000Z" and report.since is None


def test_totals(report: AuditReport) -> None:
    assert report.totals == {
        "events": 14, "first_seen": at(1), "last_seen": at(14), "tenants": 6,
        "blocked": 3,  # events 6, 7, 8
        "cross_border_allowed": 6,  # events 3, 4, 5, 10, 13, 14
        "cross_border_bytes": 4500,  # 1000 + 3000 + 500
        "violations": 5,
    }


def test_cross_border_flows(report: AuditReport) -> None:
    assert report.flows == [
        {"origin": "DE", "location": "DE", "destination": "GB", "data_class": "phi",
         "mechanism": "adequacy", "events": 3, "bytes": 4000, "first_seen": at(3),
         "last_seen": at(5), "operations": ["transfer", "transfer_check"]},
        {"origin": "CH", "location": "CH", "destination": "US", "data_class": "phi",
         "mechanism": None, "events": 1, "bytes": 500, "first_seen": at(10),
         "last_seen": at(10), "operations": ["transfer"]},
        {"origin": "AU", "location": "AU", "destination": "US", "data_class": "anonymised",
         "mechanism": "anonymised", "events": 1, "bytes": 0, "first_seen": at(14),
         "last_seen": at(14), "operations": ["transfer_check"]},
        {"origin": "NZ", "location": "AU", "destination": "AU", "data_class": "phi",
         "mechanism": None, "events": 1, "bytes": 0, "first_seen": at(13),
         "last_seen": at(13), "operations": ["placement"]},
    ]


def test_blocked_attempts_say_who_and_why(report: AuditReport) -> None:
    assert report.blocked == [
        {"actor": "dr-b", "tenant_id": "charite-berlin", "origin": "DE", "location": "DE",
         "destination": "US", "data_class": "phi", "operation": "transfer_check",
         "reasons": [GDPR_US], "events": 2, "first_seen": at(6), "last_seen": at(7)},
        {"actor": "svc-ingest", "tenant_id": "ankara-clinic", "origin": "TR", "location": "DE",
         "destination": "DE", "data_class": "phi", "operation": "placement",
         "reasons": [KVKK], "events": 1, "first_seen": at(8), "last_seen": at(8)},
    ]


def test_planted_violations_are_found(report: AuditReport) -> None:
    assert report.violation_counts == {"cross_border_without_mechanism": 1,
                                       "phi_on_backend_without_baa": 2,
                                       "placement_without_mechanism": 2}
    found = [(v["seq"], v["kind"], v["tenant_id"], v["destination"]) for v in report.violations]
    assert found == [
        (9, "placement_without_mechanism", "ankara-clinic", "DE"),
        (10, "cross_border_without_mechanism", "usz-zurich", "US"),
        (11, "phi_on_backend_without_baa", "mayo-rochester", "US"),
        (12, "phi_on_backend_without_baa", "rpa-sydney", "AU"),
        (13, "placement_without_mechanism", "auckland-city", "AU"),
    ]
    details = {v["seq"]: v["detail"] for v in report.violations}
    assert details[9] == f"data written to DE after the placement there was blocked: {KVKK}"
    assert details[11].endswith("provider has no BAA for location US")
    assert details[12].endswith("backend not in the region map (BAA unknown)")
    assert not report.ok


def test_per_tenant_summary(report: AuditReport) -> None:
    rows = {r["tenant_id"]: (r["country"], r["events"], r["blocked"], r["bytes_written"],
                             r["held_in"], r["went_to"]) for r in report.tenants}
    assert rows == {
        "ankara-clinic": ("TR", 2, 1, 700, ["DE"], []),
        "auckland-city": ("NZ", 1, 0, 0, ["AU"], []),
        "charite-berlin": ("DE", 7, 2, 6000, ["DE", "GB"], ["GB"]),
        "mayo-rochester": ("US", 1, 0, 4096, ["US"], []),
        "rpa-sydney": ("AU", 2, 0, 0, ["AU"], ["US"]),
        "usz-zurich": ("CH", 1, 0, 500, ["US"], ["US"]),
    }


def test_time_window(tmp_path: Path) -> None:
    path = write_fixture_log(tmp_path / "fixture.db")
    everything = build_report(path, region_map=fixture_map(tmp_path))
    assert everything.totals["events"] == 15 and everything.totals["last_seen"] == at(15)
    charite = next(r for r in everything.tenants if r["tenant_id"] == "charite-berlin")
    assert charite["bytes_written"] == 6000 + 99999
    middle = build_report(path, since="2026-11-01T08:06:00Z", until="2026-11-01T08:09:00Z")
    assert middle.totals["events"] == 3 and middle.totals["blocked"] == 3  # events 6, 7, 8
    assert middle.flows == [] and middle.violation_counts["placement_without_mechanism"] == 0
    with pytest.raises(AuditFormatError, match="not before"):
        build_report(path, since="2026-11-02", until="2026-11-01")
    with pytest.raises(AuditFormatError, match="invalid --since"):
        build_report(path, since="last tuesday")


def test_default_map_knows_every_baa_backend(tmp_path: Path) -> None:
    # With the packaged map (every backend under a BAA) only the unknown bucket is flagged.
    path = write_fixture_log(tmp_path / "fixture.db")
    report = build_report(path)
    assert [v["seq"] for v in report.violations
            if v["kind"] == "phi_on_backend_without_baa"] == [12]


def test_broken_chain_is_reported_first(tmp_path: Path) -> None:
    path = write_fixture_log(tmp_path / "fixture.db")
    conn = sqlite3.connect(path)
    conn.execute("UPDATE audit_events SET event = replace(event, '\"size\":3000', "
                 "'\"size\":30') WHERE seq = 5")
    conn.commit()
    conn.close()
    report = build_report(path, region_map=fixture_map(tmp_path))
    assert report.chain.broken is not None and report.chain.broken.seq == 5
    assert not report.ok and any("cannot be trusted" in n for n in report.notes)
    md = to_markdown(report)
    assert md.index("BROKEN at event 5") < md.index("## Cross-border flows")


def test_markdown(report: AuditReport) -> None:
    md = to_markdown(report)
    assert md.startswith("# Transfer-audit report")
    assert "**Chain ✅** verified: 15 events" in md
    assert "**Violations ❌ 5**" in md
    assert "| DE | DE | GB | phi | adequacy | 3 | 3.9 KiB |" in md
    assert "| CH | CH | US | phi | **none** | 1 | 500 B |" in md
    assert "| 9 | placement_without_mechanism |" in md


def test_json_and_csv(report: AuditReport) -> None:
    data = json.loads(render(report, "json"))
    assert data["schema"] == "residency.audit.report/v1" and data["ok"] is False
    assert data["chain"]["ok"] is True and data["totals"]["violations"] == 5
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    sections = [r["section"] for r in rows]
    assert sections.count("flow") == 4 and sections.count("blocked") == 2
    assert sections.count("violation") == 5 and sections.count("tenant") == 6
    assert rows[0]["section"] == "chain" and rows[0]["kind"] == "ok"
    flow = next(r for r in rows if r["section"] == "flow")
    assert (flow["origin"], flow["destination"], flow["bytes"]) == ("DE", "GB", "4000")
    with pytest.raises(AuditFormatError, match="unknown report format"):
        render(report, "pdf")


def test_report_of_real_decisions(tmp_path: Path) -> None:
    """Drive real decisions through Residency and check the report agrees."""
    path = tmp_path / "audit.db"
    res = rs.Residency.load(audit=str(path))
    de = rs.Tenant(id="charite-berlin", country="DE")
    us = rs.Tenant(id="mayo-rochester", country="US", agreements={"baa"})
    res.check_transfer(de, "US", "phi", actor="dr-a")  # blocked
    res.check_transfer(de, "GB", "phi", actor="dr-a")  # adequacy
    res.check_transfer(de, "GB", "phi", actor="dr-b")  # adequacy
    res.check_transfer(us, "DE", "phi", actor="svc")  # baa
    res.check_transfer(de, "DE", "phi", actor="svc")  # not a transfer
    report = build_report(path)
    assert report.ok and report.totals["events"] == 5
    assert [(f["origin"], f["destination"], f["mechanism"], f["events"])
            for f in report.flows] == [("DE", "GB", "adequacy", 2), ("US", "DE", "baa", 1)]
    assert [(b["actor"], b["destination"]) for b in report.blocked] == [("dr-a", "US")]


def test_failover_buckets_count_as_their_primary(tmp_path: Path) -> None:
    from residency_sdk.audit import AuditLog
    from residency_sdk.audit.report import FAILOVER_SUFFIX
    from residency_sdk.events import AuditEvent
    from residency_sdk.regions import FAILOVER_SUFFIX as STORAGE_SUFFIX

    assert FAILOVER_SUFFIX == STORAGE_SUFFIX
    path = tmp_path / "failover.db"
    with AuditLog(path) as log:
        for bucket in ("residency-de-gcp-data-failover", "residency-de-gcp-data-spare"):
            log.append(AuditEvent(operation="put", outcome="ok", tenant_id="charite-berlin",
                                  tenant_country="DE", data_class="phi", source_location="DE",
                                  provider="gcp", region="europe-west10", bucket=bucket,
                                  served_by="failover", size=1))
    report = build_report(path)
    assert [(v["seq"], v["bucket"]) for v in report.violations] == [
        (2, "residency-de-gcp-data-spare")]


def test_summary_in_small_chunks_gives_the_same_report(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import residency_sdk.audit.report as report_module

    path = write_fixture_log(tmp_path / "fixture.db")
    whole = build_report(path, region_map=fixture_map(tmp_path)).to_dict()
    monkeypatch.setattr(report_module, "_CHUNK", 4)  # 15 events: four passes
    chunked = build_report(path, region_map=fixture_map(tmp_path)).to_dict()
    for key in ("totals", "operations", "flows", "blocked", "violations", "tenants"):
        assert chunked[key] == whole[key], key


def test_report_of_an_empty_log(tmp_path: Path) -> None:
    from residency_sdk.audit import AuditLog

    path = tmp_path / "empty.db"
    AuditLog(path).close()
    report = build_report(path)
    assert report.ok and report.totals["events"] == 0 and report.flows == []
    assert "No cross-border flow" in to_markdown(report)


def test_endpoints_placed_by_the_maps_word_are_shown_to_the_auditor(tmp_path: Path) -> None:
    """Issue 11: an endpoint accepted on ``endpoint_country`` + ``endpoint_source`` rather
    than as a provider's in-region form is listed, with its source, in every format."""
    from residency_sdk.regionmap import load_region_map

    log = tmp_path / "audit.db"
    write_fixture_log(log)
    overlay = tmp_path / "map.yaml"
    overlay.write_text(
        "extends: default\nname: stated\nlocations:\n  DE:\n    backends:\n      aws:\n"
        "        endpoint: https://s3-proxy.clinic-net.example\n"
        "        endpoint_country: DE\n"
        "        endpoint_source: 'Contract 17, annex 2: proxy hosted in Frankfurt'\n")
    report = build_report(log, region_map=load_region_map(overlay))
    [entry] = [e for e in report.stated_endpoints if e["path"].startswith("locations.DE.back")]
    assert entry["country"] == "DE" and "Contract 17" in entry["source"]
    assert "s3-proxy.clinic-net.example" in entry["endpoint"]
    assert "Contract 17, annex 2" in to_markdown(report)
    assert "Contract 17, annex 2" in render(report, "html")
    assert any(e["path"] == entry["path"] for e in json.loads(render(report, "json"))
               ["stated_endpoints"])
    rows = [r for r in csv.DictReader(io.StringIO(to_csv(report)))
            if r["section"] == "stated_endpoint"]
    assert any("Contract 17" in r["detail"] for r in rows)
