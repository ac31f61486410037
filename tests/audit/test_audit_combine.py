"""Combining several locations' transfer-audit reports from their aggregates only."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import KEY, T0, event
from report_fixture import fixture_map, write_fixture_log
from typer.testing import CliRunner

from residency_sdk.audit import AuditLog
from residency_sdk.audit.combine import AGGREGATES_ONLY, CombinedReport, combine_reports
from residency_sdk.audit.render import render, render_combined
from residency_sdk.audit.report import build_report
from residency_sdk.cli.app import app
from residency_sdk.errors import AuditFormatError
from residency_sdk.events import AuditEvent

LOCATIONS = ("DE", "CH", "US", "AU")


def _reports(tmp_path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The fixture log's report per location, and its whole report."""
    path = write_fixture_log(tmp_path / "fixture.db")
    region_map = fixture_map(tmp_path)
    per_location = [build_report(path, until="2026-11-02", region_map=region_map,
                                 location=loc).to_dict() for loc in LOCATIONS]
    whole = build_report(path, until="2026-11-02", region_map=region_map).to_dict()
    return per_location, whole


def test_combined_figures_are_the_sum_of_the_locations(tmp_path: Path) -> None:
    reports, whole = _reports(tmp_path)
    combined = combine_reports(reports)
    t = combined.totals
    # The fixture's locations partition its events, so the sums equal the whole log's.
    for key in ("events", "blocked", "movements", "movement_bytes",
                "violations", "outcome_unknown", "unaudited_periods"):
        assert t[key] == whole["totals"][key], key
    assert (t["first_seen"], t["last_seen"], t["reports"]) == (
        whole["totals"]["first_seen"], whole["totals"]["last_seen"], 4)
    assert combined.violation_counts == whole["violation_counts"]
    assert sorted(combined.operations, key=str) == sorted(whole["operations"], key=str)
    # Flows are combined from their aggregate fields only: never who moved the data.
    fields = ("origin", "location", "destination", "data_class", "mechanism", "events",
              "bytes", "first_seen", "last_seen", "operations")
    assert sorted(combined.flows, key=str) == sorted(
        ({k: f[k] for k in fields} for f in whole["flows"]), key=str)
    assert all("actors" not in f and "purposes" not in f for f in combined.flows)
    assert [(i["location"], i["chain"]["status"], i["totals"]["events"])
            for i in combined.inputs] == [("DE", "verified", 9), ("CH", "verified", 1),
                                          ("US", "verified", 1), ("AU", "verified", 3)]
    assert combined.chains_ok and not combined.ok  # the fixture's planted violations
    assert combined.notes[0] == AGGREGATES_ONLY


def test_flows_of_two_locations_merge(tmp_path: Path) -> None:
    reports, _ = _reports(tmp_path)
    de = reports[0]
    again = json.loads(json.dumps(de))
    again["chain"]["log_id"] = "another-log"  # the same figures from another DE log
    combined = combine_reports([de, again])
    [flow] = [f for f in combined.flows if f["destination"] == "GB"]
    assert (flow["events"], flow["bytes"]) == (4, 8000)  # 2 transfers in each report
    assert flow["operations"] == ["transfer"]


def _secret_log(path: Path) -> Path:
    """Every event-level field an input carries, with values easy to search for."""
    intent = event(1, actor="dr-secret-actor", tenant_id="tenant-secret",
                   object_key="secret-study/scan.dcm", outcome="intent")
    events = [
        intent,
        event(2, actor="dr-secret-actor", tenant_id="tenant-secret",
              object_key="secret-study/other.dcm", purpose="secret-purpose"),
        # a blocked attempt, and a violation (phi on an unknown bucket), with the secrets
        event(3, operation="transfer_check", outcome="blocked", actor="dr-secret-actor",
              tenant_id="tenant-secret", destination_country="US", is_transfer=True,
              reasons=("secret-reason",), provider=None, bucket=None, object_key=None),
        event(4, actor="dr-secret-actor", tenant_id="tenant-secret", bucket="secret-bucket",
              object_key="secret-study/leak.dcm"),
        AuditEvent(time=T0 + timedelta(seconds=5), operation="audit_off", outcome="ok",
                   actor="ops-secret-user", purpose="audit_off",
                   reasons=("audit switched off: secret-why", "pid 4242", "host secret-host")),
    ]
    with AuditLog(path) as log:
        log.append_many(events)
    return path


SECRETS = ("dr-secret-actor", "tenant-secret", "secret-study", "secret-purpose",
           "secret-reason", "secret-bucket", "ops-secret-user", "secret-why", "secret-host",
           "pid 4242")


def test_no_event_level_field_crosses_into_the_combined_report(tmp_path: Path) -> None:
    report = build_report(_secret_log(tmp_path / "de.db"), location="DE")
    data = report.to_dict()
    # The location's own report holds them (so the check below means something)...
    own = render(report, "json")
    assert [s for s in SECRETS if s not in own] == ["secret-purpose"]  # never reported
    assert data["blocked"] and data["violations"] and data["tenants"]
    assert data["outcome_unknown"] and data["unaudited_periods"]
    combined = combine_reports([data])
    outputs = {fmt: render_combined(combined, fmt) for fmt in ("md", "html", "json")}
    # ...and no rendering of the combined report holds any.
    for fmt, text in outputs.items():
        for secret in SECRETS:
            assert secret not in text, (fmt, secret)
        assert "aggregate" in text, fmt
    assert (combined.totals["unaudited_periods"], combined.totals["outcome_unknown"],
            combined.totals["blocked"], combined.totals["violations"]) == (1, 1, 1, 1)
    assert json.loads(outputs["json"])["aggregates_only"] is True


def test_extra_fields_in_an_input_are_never_copied(tmp_path: Path) -> None:
    """A hand-edited input carrying event-level data in its aggregate sections."""
    reports, _ = _reports(tmp_path)
    de = json.loads(json.dumps(reports[0]))
    de["flows"][0]["actor"] = "smuggled-actor"
    de["operations"][0]["object_key"] = "smuggled/key"
    de["totals"]["tenant_ids"] = ["smuggled-tenant"]
    de["chain"]["outcome_unknown"] = [{"object_key": "smuggled/intent"}]
    text = render_combined(combine_reports([de]), "json")
    assert "smuggled" not in text


def test_chain_status_per_log_and_the_gate(tmp_path: Path) -> None:
    path = write_fixture_log(tmp_path / "keyed.db", hmac_key=KEY)
    unverified = build_report(path, region_map=fixture_map(tmp_path), use_env_key=False,
                              location="CH").to_dict()
    verified = build_report(path, region_map=fixture_map(tmp_path), hmac_key=KEY,
                            location="US").to_dict()
    combined = combine_reports([unverified, verified])
    assert [i["chain"]["status"] for i in combined.inputs] == ["unverified", "verified"]
    assert not combined.chains_ok and not combined.ok
    md = render_combined(combined, "md")
    assert "**Chains ❌** 1 verified, 1 unverified (of 2)" in md
    assert "the chain of CH" in md and "UNVERIFIED" in md
    assert any("is in 2 reports" in n for n in combined.notes)


def test_inputs_are_checked(tmp_path: Path) -> None:
    reports, _ = _reports(tmp_path)
    with pytest.raises(AuditFormatError, match="no report to combine"):
        combine_reports([])
    with pytest.raises(AuditFormatError, match="same log, location and window"):
        combine_reports([reports[0], reports[0]], sources=["de.json", "de-again.json"])
    old = {**reports[0], "schema": "residency.audit.report/v1"}
    with pytest.raises(AuditFormatError, match=r"old\.json has schema"):
        combine_reports([old], sources=["old.json"])
    bad = json.loads(json.dumps(reports[0]))
    bad["totals"]["events"] = "many"
    with pytest.raises(AuditFormatError, match=r"totals\.events"):
        combine_reports([bad])
    with pytest.raises(AuditFormatError, match="unknown combined report format"):
        render_combined(combine_reports([reports[0]]), "csv")


def test_different_windows_are_noted(tmp_path: Path) -> None:
    path = write_fixture_log(tmp_path / "fixture.db")
    a = build_report(path, until="2026-11-02", location="DE").to_dict()
    b = build_report(path, location="CH").to_dict()
    combined: CombinedReport = combine_reports([a, b])
    assert any(n.startswith("the reports cover different windows") for n in combined.notes)


def test_cli_combine(tmp_path: Path) -> None:
    reports, whole = _reports(tmp_path)
    files = []
    for loc, data in zip(LOCATIONS, reports, strict=True):
        files.append(tmp_path / f"{loc}.json")
        files[-1].write_text(json.dumps(data), encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(app, ["audit", "combine", *map(str, files)])
    assert result.exit_code == 0 and result.stdout.startswith("# Combined transfer-audit")
    result = runner.invoke(app, ["audit", "combine", *map(str, files), "--format", "json"])
    assert json.loads(result.stdout)["totals"]["events"] == whole["totals"]["events"]
    out = tmp_path / "combined.html"
    result = runner.invoke(app, ["audit", "combine", *map(str, files), "--format", "html",
                                 "--out", str(out)])
    assert result.exit_code == 0 and "<svg" in out.read_text(encoding="utf-8")
    result = runner.invoke(app, ["audit", "combine", *map(str, files), "--fail-on-violation"])
    assert result.exit_code == 1
    result = runner.invoke(app, ["audit", "combine", str(files[0]), "--format", "csv"])
    assert result.exit_code == 2
    (tmp_path / "junk.json").write_text("not json", encoding="utf-8")
    result = runner.invoke(app, ["audit", "combine", str(tmp_path / "junk.json")])
    assert result.exit_code == 2 and "is not JSON" in " ".join(result.stderr.split())
    result = runner.invoke(app, ["audit", "combine", str(tmp_path / "missing.json")])
    assert result.exit_code != 0
