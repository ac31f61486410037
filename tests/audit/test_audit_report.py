"""The transfer-audit report, checked against figures computed by hand for a fixture log."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import event
from report_fixture import GDPR_US, KVKK, fixture_map, sec, write_fixture_log

import residency_sdk as rs
from residency_sdk.audit import AuditLog
from residency_sdk.audit.render import render, to_csv, to_markdown
from residency_sdk.audit.report import AuditReport, build_report
from residency_sdk.errors import AuditFormatError
from residency_sdk.events import AuditEvent


@pytest.fixture
def report(tmp_path: Path) -> AuditReport:
    path = write_fixture_log(tmp_path / "fixture.db")
    return build_report(path, until="2026-11-02", region_map=fixture_map(tmp_path))


def test_chain_status_heads_the_report(report: AuditReport) -> None:
    assert report.chain.ok and report.chain.events == 15
    assert report.map_name == "audit-fixture"
    # A date given as --until includes that whole day.
    assert report.until == "2026-11-03T00:00:00Z" and report.since is None


def test_totals_count_movements_and_decisions_apart(report: AuditReport) -> None:
    assert report.totals == {
        "events": 14, "first_seen": sec(1), "last_seen": sec(14), "tenants": 6,
        "movements": 3,  # events 4, 5, 10: objects that crossed a border, not decisions
        "movement_bytes": 4500,  # 1000 + 3000 + 500
        "decisions_allowed": 4,  # events 1, 3, 13, 14
        "decisions_blocked": 3,  # events 6, 7, 8
        "blocked": 3,  # one row per attempt: 6, 7, 8
        "violations": 5, "intents": 0, "outcome_unknown": 0, "unaudited_periods": 0,
        "anonymised_transfers": 0, "erasure_requests": 0, "retention_deletions": 0,
        "objects_held": 6,  # a, a', b, t, z, m (event 15 is after the window)
        "rules_past_review": report.totals["rules_past_review"],
    }


def test_movements_by_flow(report: AuditReport) -> None:
    assert report.flows == [
        {"kind": "transfer", "origin": "DE", "location": "DE", "destination": "GB",
         "processor": None, "data_class": "phi", "mechanism": "adequacy", "agreements": [],
         "basis": [], "events": 2, "bytes": 4000, "first_seen": sec(4),
         "last_seen": sec(5), "operations": ["transfer"], "actors": ["dr-a"],
         "purposes": ["(not given)"]},
        {"kind": "transfer", "origin": "CH", "location": "CH", "destination": "US",
         "processor": None, "data_class": "phi", "mechanism": None, "agreements": [],
         "basis": [], "events": 1, "bytes": 500, "first_seen": sec(10),
         "last_seen": sec(10), "operations": ["transfer"], "actors": ["svc-sync"],
         "purposes": ["(not given)"]},
    ]


def test_decisions_are_listed_apart(report: AuditReport) -> None:
    rows = [(d["operation"], d["outcome"], d["origin"], d["destination"], d["decisions"])
            for d in report.decisions]
    assert rows == [
        ("placement", "allowed", "DE", "DE", 1), ("placement", "allowed", "NZ", "AU", 1),
        ("placement", "blocked", "TR", "DE", 1),
        ("transfer_check", "allowed", "AU", "US", 1),
        ("transfer_check", "allowed", "DE", "GB", 1),
        ("transfer_check", "blocked", "DE", "US", 2),
    ]


def test_one_row_per_blocked_attempt_saying_who_and_why(report: AuditReport) -> None:
    common = {"purpose": None, "processor": None, "endpoint": None, "data_class": "phi",
              "object_key": None, "unblock_with": [], "sources": []}
    assert report.blocked == [
        {"seq": 6, "time": sec(6), "actor": "dr-b", "tenant_id": "charite-berlin",
         "origin": "DE", "location": "DE", "destination": "US",
         "operation": "transfer_check", "reasons": [GDPR_US], **common},
        {"seq": 7, "time": sec(7), "actor": "dr-b", "tenant_id": "charite-berlin",
         "origin": "DE", "location": "DE", "destination": "US",
         "operation": "transfer_check", "reasons": [GDPR_US], **common},
        {"seq": 8, "time": sec(8), "actor": "svc-ingest", "tenant_id": "ankara-clinic",
         "origin": "TR", "location": "DE", "destination": "DE", "operation": "placement",
         "reasons": [KVKK], **common},
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
    rows = {r["tenant_id"]: (r["country"], r["events"], r["blocked_attempts"],
                             r["bytes_written"], r["held_in"], r["went_to"], r["movements"])
            for r in report.tenants}
    assert rows == {
        # Its placement was refused, but event 9 wrote data in DE anyway: held there.
        "ankara-clinic": ("TR", 2, 1, 700, ["DE"], [], 0),
        "auckland-city": ("NZ", 1, 0, 0, [], [], 0),  # a decision, nothing written
        "charite-berlin": ("DE", 7, 2, 6000, ["DE", "GB"], ["GB"], 2),
        "mayo-rochester": ("US", 1, 0, 4096, ["US"], [], 0),
        "rpa-sydney": ("AU", 2, 0, 0, [], [], 0),  # a read and a check: nothing moved
        "usz-zurich": ("CH", 1, 0, 500, ["US"], ["US"], 1),
    }
    charite = next(r for r in report.tenants if r["tenant_id"] == "charite-berlin")
    assert charite["held"] == [
        {"location": "DE", "provider": "azure", "bucket": "residency-de-azure-data",
         "objects": 1, "bytes": 2000},
        {"location": "GB", "provider": "aws", "bucket": "residency-gb-aws-data",
         "objects": 2, "bytes": 4000}]


def test_time_window(tmp_path: Path) -> None:
    path = write_fixture_log(tmp_path / "fixture.db")
    everything = build_report(path, region_map=fixture_map(tmp_path))
    assert everything.totals["events"] == 15 and everything.totals["last_seen"] == sec(15)
    charite = next(r for r in everything.tenants if r["tenant_id"] == "charite-berlin")
    assert charite["bytes_written"] == 6000 + 99999
    middle = build_report(path, since="2026-11-01T08:06:00Z", until="2026-11-01T08:09:00Z")
    assert middle.totals["events"] == 3 and middle.totals["blocked"] == 3  # events 6, 7, 8
    assert middle.flows == [] and middle.violation_counts["placement_without_mechanism"] == 0
    # Held in is as at the end of the window, whatever its start: event 2 is still held.
    held = {r["tenant_id"]: r["held_in"] for r in middle.tenants}
    assert held == {"charite-berlin": ["DE", "GB"], "ankara-clinic": []}
    november = build_report(path, since="2026-11", until="2026-11")
    assert november.totals["events"] == 15  # a month given as both ends is the month
    q4 = build_report(path, since="2026-Q4", until="2026-Q4")
    assert q4.totals["events"] == 15 and q4.since == "2026-10-01T00:00:00Z"
    assert build_report(path, since="2026-Q3", until="2026-Q3").totals["events"] == 0
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
    assert md.index("BROKEN at event 5") < md.index("## Data movements by flow")


def test_markdown(report: AuditReport) -> None:
    md = to_markdown(report)
    assert md.startswith("# Transfer-audit report")
    assert "**Chain ✅** verified: 15 events" in md
    assert "**Violations ❌ 5**" in md
    assert "| transfer | DE | DE | GB | phi | adequacy | not recorded | 2 | 3.9 KiB |" in md
    assert "| transfer | CH | CH | US | phi | **none** | not recorded | 1 | 500 B |" in md
    assert "| 9 | placement\\_without\\_mechanism |" in md
    assert f"| 6 | {sec(6)} | dr-b | — | charite-berlin | transfer\\_check |" in md


def test_json_and_csv(report: AuditReport) -> None:
    data = json.loads(render(report, "json"))
    assert data["schema"] == "residency.audit.report/v3" and data["ok"] is False
    assert data["chain"]["ok"] is True and data["chain"]["status"] == "verified"
    assert data["totals"]["violations"] == 5 and data["location"] is None
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    sections = [r["section"] for r in rows]
    assert sections.count("flow") == 2 and sections.count("blocked") == 3
    assert sections.count("violation") == 5 and sections.count("tenant") == 6
    assert rows[0]["section"] == "chain" and rows[0]["kind"] == "verified"
    flow = next(r for r in rows if r["section"] == "flow")
    assert (flow["origin"], flow["destination"], flow["bytes"]) == ("DE", "GB", "4000")
    with pytest.raises(AuditFormatError, match="binary"):
        render(report, "pdf")
    with pytest.raises(AuditFormatError, match="unknown report format"):
        render(report, "docx")


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
    res.close()  # decisions are queued (durable=False): on disk at close at the latest
    report = build_report(path)
    assert report.ok and report.totals["events"] == 5
    assert report.flows == [] and report.totals["movements"] == 0  # checks move nothing
    assert [(d["origin"], d["destination"], d["mechanism"], d["outcome"], d["decisions"])
            for d in report.decisions] == [
        ("DE", "GB", "adequacy", "allowed", 2), ("DE", "DE", None, "allowed", 1),
        ("US", "DE", "baa", "allowed", 1), ("DE", "US", None, "blocked", 1)]
    [blocked] = report.blocked
    assert (blocked["actor"], blocked["destination"]) == ("dr-a", "US")
    # § 393 SGB V accepts only a DPF certification; GDPR any of three: both are needed.
    assert blocked["unblock_with"] == ["sgb5_393: dpf_eu", "gdpr: dpf_eu or scc or bcr"]
    assert [s["regime"] for s in blocked["sources"]] == ["sgb5_393", "gdpr"]
    assert all(s["source"] and s["as_of"] for s in blocked["sources"])
    assert len(blocked["reasons"]) == 2 and "§ 393 SGB V" in blocked["reasons"][0]


def test_failover_buckets_count_as_their_primary(tmp_path: Path) -> None:
    from residency_sdk.audit import AuditLog
    from residency_sdk.audit.report_sql import FAILOVER_SUFFIX
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
    import residency_sdk.audit.report_sql as report_module

    path = write_fixture_log(tmp_path / "fixture.db")
    whole = build_report(path, region_map=fixture_map(tmp_path)).to_dict()
    monkeypatch.setattr(report_module, "CHUNK", 4)  # 15 events: four passes
    for workers in (1, 2, 3):  # one connection, or several sharing the ranges
        monkeypatch.setattr(report_module, "_WORKERS", workers)
        chunked = build_report(path, region_map=fixture_map(tmp_path)).to_dict()
        for key in ("totals", "operations", "flows", "decisions", "blocked", "violations",
                    "tenants", "erasures", "retention_deletions", "rules"):
            assert chunked[key] == whole[key], (workers, key)


def test_report_of_an_empty_log(tmp_path: Path) -> None:
    from residency_sdk.audit import AuditLog

    path = tmp_path / "empty.db"
    AuditLog(path).close()
    report = build_report(path)
    assert report.ok and report.totals["events"] == 0 and report.flows == []
    assert "No data crossed a border" in to_markdown(report)


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
    assert any("Contract 17" in r["sources"] for r in rows)


# --- issue 12: event schema v2, chain status, rows outside the chain, per location --------


def _log(path: Path, events: list[AuditEvent], *, hmac_key: bytes | None = None) -> Path:
    with AuditLog(path, hmac_key=hmac_key) as log:
        log.append_many(events)
    return path


def _every_format(report: AuditReport) -> dict[str, str]:
    from rich.console import Console

    from residency_sdk.cli.audit import rich_report

    console = Console(record=True, width=200)
    for part in rich_report(report):
        console.print(part)
    return {**{fmt: render(report, fmt) for fmt in ("md", "html", "json", "csv")},
            "terminal": console.export_text()}


def _write_ahead_log(path: Path) -> tuple[Path, list[AuditEvent]]:
    """Intents and outcomes as the write-ahead emitter writes them, with one crash (the
    get of event 5 never got its outcome) and one outcome after the window (event 7)."""
    put = event(1, outcome="intent", object_key="charite-berlin/a.dcm")
    xfer = event(3, operation="transfer", outcome="intent", destination_location="GB",
                 destination_country="GB", is_transfer=True, mechanism="adequacy", size=500)
    lost = event(5, operation="get", outcome="intent", actor="dr-crash",
                 object_key="charite-berlin/lost.dcm")
    delete = event(6, operation="delete", outcome="intent")
    events = [
        put, event(2, object_key="charite-berlin/a.dcm", intent_id=put.event_id),
        xfer, event(4, operation="transfer", destination_location="GB",
                    destination_country="GB", is_transfer=True, mechanism="adequacy",
                    size=500, intent_id=xfer.event_id),
        lost, delete, event(100, operation="delete", intent_id=delete.event_id),
    ]
    return _log(path, events), events


def test_intents_are_never_counted_as_operations_movements_or_blocks(tmp_path: Path) -> None:
    path, _ = _write_ahead_log(tmp_path / "wal.db")
    report = build_report(path)
    t = report.totals
    assert (t["events"], t["intents"], t["outcome_unknown"]) == (3, 4, 1)
    assert (t["blocked"], t["movements"], t["movement_bytes"]) == (0, 1, 500)
    assert [(o["operation"], o["outcome"], o["events"]) for o in report.operations] == [
        ("delete", "ok", 1), ("put", "ok", 1), ("transfer", "ok", 1)]
    assert [(f["destination"], f["events"], f["bytes"]) for f in report.flows] == [
        ("GB", 1, 500)]
    [tenant] = report.tenants
    assert tenant["events"] == 3 and tenant["bytes_written"] == 1002 + 500
    assert report.chain_state.status == "verified" and report.ok


def test_an_intent_without_outcome_is_listed_as_outcome_unknown(tmp_path: Path) -> None:
    path, events = _write_ahead_log(tmp_path / "wal.db")
    report = build_report(path)
    assert report.outcome_unknown == [{
        "seq": 5, "time": events[4].time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "actor": "dr-crash", "tenant_id": "charite-berlin", "operation": "get",
        "object_key": "charite-berlin/lost.dcm", "event_id": events[4].event_id}]
    assert [u[0] for u in report.chain.outcome_unknown] == [5]  # the verifier agrees
    # An outcome after the window still completes its intent: only the crash is unknown.
    windowed = build_report(path, until=events[5].time.replace(second=50))
    assert windowed.totals["events"] == 2 and windowed.totals["intents"] == 4
    assert [u["seq"] for u in windowed.outcome_unknown] == [5]
    out = _every_format(report)
    assert "**Outcome unknown ⚠️ 1**" in out["md"] and "## Outcome unknown" in out["md"]
    assert 'id="outcome-unknown-status"' in out["html"]
    assert json.loads(out["json"])["totals"]["outcome_unknown"] == 1
    rows = [r for r in csv.DictReader(io.StringIO(out["csv"]))
            if r["section"] == "outcome_unknown"]
    assert [(r["seq"], r["object_key"], r["actor"]) for r in rows] == [
        ("5", "charite-berlin/lost.dcm", "dr-crash")]
    for fmt, text in out.items():
        assert "charite-berlin/lost.dcm" in text, fmt


def test_outcome_unknown_is_found_past_a_break(tmp_path: Path) -> None:
    """The verifier's walk stops at a break; the report then finds the unanswered intents
    itself, with the same result."""
    path, _ = _write_ahead_log(tmp_path / "wal.db")
    intact = build_report(path, location="DE")
    conn = sqlite3.connect(path)
    conn.execute("UPDATE audit_events SET event = replace(event, '\"size\":1002', "
                 "'\"size\":1') WHERE seq = 2")
    conn.commit()
    conn.close()
    broken = build_report(path, location="DE")
    assert broken.chain.broken is not None and broken.chain.broken.seq == 2
    # The walk stopped at event 2: it never saw event 5, nor the outcome of event 1.
    assert 5 not in [u[0] for u in broken.chain.outcome_unknown]
    assert broken.outcome_unknown == intact.outcome_unknown
    assert [u["seq"] for u in broken.outcome_unknown] == [5]
    assert build_report(path, location="US").outcome_unknown == []


def test_audit_off_is_shown_in_every_format_whatever_the_window_or_location(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``Residency.load(audit=False)`` records who switched audit off; no report of that
    log may hide it, whatever window or location it is asked for."""
    path = tmp_path / "audit.db"
    _log(path, [event(0)])
    monkeypatch.setenv("RESIDENCY_AUDIT", str(path))
    rs.Residency.load(audit=False, audit_off_reason="load test on staging").close()
    with AuditLog(path) as log:
        log.append(event(1, time=datetime(2100, 1, 1, tzinfo=UTC)))
    for report in (build_report(path), build_report(path, since="2099-01-01"),
                   build_report(path, location="US")):
        assert report.totals["unaudited_periods"] == 1
        [period] = report.unaudited_periods
        assert period["seq"] == 2 and period["actor"]
        assert any("load test on staging" in r for r in period["reasons"])
        assert any(r.startswith("pid ") for r in period["reasons"])
        out = _every_format(report)
        assert "**Unaudited periods ❌ 1**" in out["md"] and "## Unaudited periods" in out["md"]
        assert 'class="banner bad" id="unaudited-status"' in out["html"]
        assert json.loads(out["json"])["unaudited_periods"][0]["seq"] == 2
        assert any(r["section"] == "unaudited" for r in csv.DictReader(io.StringIO(out["csv"])))
        assert "switched off 1 time(s)" in out["terminal"]
        for fmt, text in out.items():
            assert "load test on staging" in text, fmt
    # The window held one event, and the report still listed the period before it.
    assert build_report(path, since="2099-01-01").totals["events"] == 1


def test_a_keyed_log_read_without_its_key_is_unverified(tmp_path: Path) -> None:
    from conftest import KEY

    path = write_fixture_log(tmp_path / "keyed.db", hmac_key=KEY)
    report = build_report(path, region_map=fixture_map(tmp_path), use_env_key=False)
    assert report.chain_state.status == "unverified" and not report.chain_state.ok
    assert not report.ok and report.to_dict()["chain"]["status"] == "unverified"
    out = _every_format(report)
    assert "**Chain ⚠️** UNVERIFIED" in out["md"]
    assert 'id="chain-status" data-status="unverified"' in out["html"]
    assert next(csv.DictReader(io.StringIO(out["csv"])))["kind"] == "unverified"
    assert "chain UNVERIFIED" in out["terminal"]
    keyed = build_report(path, region_map=fixture_map(tmp_path), hmac_key=KEY)
    assert keyed.chain_state.status == "verified" and keyed.chain.hmac_checked


def test_rows_outside_the_chain_break_the_report(tmp_path: Path) -> None:
    """Issue 12, point 7: a row stored at seq <= 0 was ignored by the report."""
    path = write_fixture_log(tmp_path / "fixture.db")
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO audit_events SELECT 0, event, prev_hash, hash, mac "
                 "FROM audit_events WHERE seq = 10")
    conn.execute("INSERT INTO audit_events SELECT -3, event, prev_hash, hash, mac "
                 "FROM audit_events WHERE seq = 11")
    conn.commit()
    conn.close()
    report = build_report(path, region_map=fixture_map(tmp_path))
    data = report.to_dict()
    assert data["chain"]["ok"] is False and data["ok"] is False
    assert data["chain"]["status"] == "broken" and data["chain"]["outside_chain_rows"] == 2
    assert report.chain_state.kind == "outside_chain"
    assert report.totals["events"] == 15  # the rows outside the chain are not counted
    md = to_markdown(report)
    assert "**Chain ❌** BROKEN (outside\\_chain)" in md and "cannot be trusted" in md


def test_per_location(tmp_path: Path) -> None:
    """Events that happened in a location, or whose tenant lives there (TR -> DE)."""
    path = write_fixture_log(tmp_path / "fixture.db")
    de = build_report(path, until="2026-11-02", region_map=fixture_map(tmp_path), location="DE")
    assert de.location == "DE" and de.totals["events"] == 9  # events 1..9
    assert {r["tenant_id"] for r in de.tenants} == {"charite-berlin", "ankara-clinic"}
    assert de.violation_counts["placement_without_mechanism"] == 1  # event 9
    assert de.violation_total == 1 and len(de.blocked) == 3  # one row per attempt
    au = build_report(path, until="2026-11-02", region_map=fixture_map(tmp_path), location="AU")
    # rpa-sydney (AU) and auckland-city (NZ, routed to AU): events 12, 13, 14
    assert au.totals["events"] == 3 and [v["seq"] for v in au.violations] == [12, 13]
    whole = build_report(path, until="2026-11-02", region_map=fixture_map(tmp_path))
    parts = [build_report(path, until="2026-11-02", region_map=fixture_map(tmp_path),
                          location=loc).totals["events"] for loc in ("DE", "CH", "US", "AU")]
    assert sum(parts) == whole.totals["events"]
    assert "· location `DE` ·" in to_markdown(de)
    assert json.loads(render(de, "json"))["location"] == "DE"
    with pytest.raises(AuditFormatError, match="unknown location 'XX'"):
        build_report(path, location="XX")


class _NoSQLiteSnapshot:
    """A snapshot that hides its SQLite connection, as a PostgreSQL one has none."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def meta(self) -> dict[str, str]:
        return dict(self._inner.meta())

    def head(self) -> Any:
        return self._inner.head()

    def rows(self, start: int = 1) -> Iterator[Any]:
        return iter(self._inner.rows(start))

    def outside_chain(self) -> list[int]:
        return list(self._inner.outside_chain())


def test_a_log_without_sql_access_is_copied_and_gives_the_same_report(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The path any non-SQLite store (PostgreSQL) takes: rows streamed into a private
    temporary SQLite file, the same queries run there."""
    import contextlib

    import residency_sdk.audit.log as log_module

    path = write_fixture_log(tmp_path / "fixture.db")
    _log(tmp_path / "x.db", [])  # (nothing: just proves an empty log copies too)
    fast = build_report(path, region_map=fixture_map(tmp_path), location="DE").to_dict()
    real_open = log_module.open_store

    class Store:
        def __init__(self, spec: Any) -> None:
            self._inner = real_open(spec)
            self.name = self._inner.name

        @contextlib.contextmanager
        def read(self) -> Iterator[_NoSQLiteSnapshot]:
            with self._inner.read() as snap:
                yield _NoSQLiteSnapshot(snap)

        def close(self) -> None:
            self._inner.close()

    monkeypatch.setattr(log_module, "open_store", Store)
    copied = build_report(path, region_map=fixture_map(tmp_path), location="DE").to_dict()
    for key in ("totals", "operations", "flows", "blocked", "violations", "violation_counts",
                "tenants", "outcome_unknown", "unaudited_periods"):
        assert copied[key] == fast[key], key
    assert build_report(tmp_path / "x.db").totals["events"] == 0


def test_report_over_postgresql(postgres_server: Any) -> None:
    """A ``postgresql://`` log reports like a file: its snapshot is copied into a private
    temporary SQLite file and verified alongside (a fresh database of the session's
    server)."""
    url = postgres_server.create_database()
    try:
        put = event(1, outcome="intent")
        lost = event(2, operation="get", outcome="intent", object_key="t/lost.dcm")
        with AuditLog(url) as log:
            log.append_many([put, event(1, intent_id=put.event_id), lost])
        report = build_report(url)
        assert report.chain_state.status == "verified" and report.chain.events == 3
        assert (report.totals["events"], report.totals["outcome_unknown"]) == (1, 1)
        assert report.outcome_unknown[0]["object_key"] == "t/lost.dcm"
        assert report.log_path.startswith("postgresql://")
    finally:
        postgres_server.drop_database(url)


def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    from typer.testing import CliRunner

    from residency_sdk.cli.app import app

    result = CliRunner().invoke(app, ["audit", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def test_cli_gate_fails_an_unverified_keyed_log(make_log: Any) -> None:
    from conftest import KEY

    from residency_sdk.audit.chain import HMAC_KEY_ENV

    path = make_log(5, hmac_key=KEY)  # clean: in-country puts on a BAA backend
    code, out, _ = _cli("report", str(path), "--fail-on-violation")
    assert code == 1 and "UNVERIFIED" in out
    code, out, _ = _cli("report", str(path), "--fail-on-violation", "--json")
    assert code == 1 and json.loads(out)["chain"]["status"] == "unverified"
    code, out, _ = _cli("report", str(path), "--fail-on-violation",
                        env={HMAC_KEY_ENV: KEY.decode()})
    assert code == 0 and "**Chain ✅** verified" in out


def test_cli_report_per_location(tmp_path: Path) -> None:
    path = write_fixture_log(tmp_path / "fixture.db")
    code, out, _ = _cli("report", str(path), "--location", "CH", "--format", "json")
    data = json.loads(out)
    assert code == 0 and data["location"] == "CH" and data["totals"]["events"] == 1
    code, _, err = _cli("report", str(path), "--location", "XX")
    assert code == 2 and "unknown location 'XX'" in err


def test_a_location_report_carries_nothing_of_another_location(tmp_path: Path) -> None:
    """One log shared by two locations: the CH report's JSON holds no DE tenant or key,
    not even in the chain section (the verifier's own list is of the whole log)."""
    lost = event(1, operation="get", outcome="intent", object_key="charite-berlin/de.dcm")
    ch = event(2, tenant_id="usz-zurich", tenant_country="CH", source_location="CH",
               object_key="usz-zurich/ch.dcm", outcome="intent")
    path = _log(tmp_path / "shared.db", [lost, ch])
    report = build_report(path, location="CH")
    assert [u["object_key"] for u in report.outcome_unknown] == ["usz-zurich/ch.dcm"]
    for fmt in ("md", "html", "json", "csv"):
        assert "charite-berlin" not in render(report, fmt), fmt


def test_a_log_path_with_uri_characters_is_read_by_every_connection(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parallel pass opens the log again by URI: a folder or file name holding a
    space, '#', '?' or '%' must name the same file, not another or none."""
    import residency_sdk.audit.report_sql as report_module

    folder = tmp_path / "audit logs #1 ?x=%20"
    folder.mkdir()
    path = write_fixture_log(folder / "log?mode=rw#frag%2F.db")
    monkeypatch.setattr(report_module, "CHUNK", 4)
    monkeypatch.setattr(report_module, "_WORKERS", 2)
    report = build_report(path, until="2026-11-02", region_map=fixture_map(tmp_path))
    assert report.chain_state.status == "verified" and report.totals["events"] == 14
    assert report.totals["movements"] == 3 and report.totals["blocked"] == 3


def test_an_erasure_clears_held_data_only_where_the_sdk_verified_the_backend_empty(
        tmp_path: Path) -> None:
    """Side door: the erasure events end with the caller's own reason and purpose. A
    reason reading "status verified" on a backend that failed must not make the report
    say the clinic's data is gone while its copies survive."""
    common = dict(tenant_id="charite-berlin", tenant_country="DE", source_location="DE",
                  provider="local", region="local-de", bucket="residency-de-local-data")
    put = dict(operation="put", outcome="ok", data_class="phi", size=10, **common)
    erase = dict(operation="erase", outcome="ok", purpose="erasure:req-1", **common)
    path = _log(tmp_path / "erase.db", [
        AuditEvent(object_key="a.dcm", **put),
        AuditEvent(reasons=("local: 0 objects, 0 old versions deleted, 1 held, status "
                            "failed", "reason: status verified", "purpose: status verified"),
                   **erase),
        AuditEvent(object_key="b.dcm", **put)])
    [held] = build_report(path).tenants
    assert held["held"][0]["objects"] == 2  # the failed erasure cleared nothing
    with AuditLog(path) as log:
        log.append(AuditEvent(reasons=("local: 2 objects, 0 old versions deleted, 0 held, "
                                       "status verified",), **erase))
    [cleared] = build_report(path).tenants
    assert cleared["held"] == [] and cleared["held_in"] == []
