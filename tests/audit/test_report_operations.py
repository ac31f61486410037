"""The v3 transfer-audit report of a log written by driving the real SDK on local storage.

One log, built once: every figure below is counted by hand from the operations listed in
:func:`log`. The assertions are the ones a double count (a decision counted as a movement,
a blocked decision and the operation naming it counted as two attempts, an SDK record
counted as the tenant's data) would break.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import residency_sdk as rs
from residency_sdk.audit import AuditLog
from residency_sdk.audit.chain import HMAC_KEY_ENV
from residency_sdk.audit.render import CSV_COLUMNS, render
from residency_sdk.audit.report import AuditReport, build_report
from residency_sdk.errors import PlacementBlocked, TransferBlocked
from residency_sdk.events import AuditEvent
from residency_sdk.marks import CATEGORY_META
from residency_sdk.model import Tenant

CHARITE = Tenant(id="charite", country="DE")
ACIBADEM = Tenant(id="acibadem", country="TR", agreements=frozenset({"kvkk_standard_contract"}))
ANKARA = Tenant(id="ankara", country="TR")
AKH = Tenant(id="akh-wien", country="AT")
USZ = Tenant(id="usz", country="CH")
VIVANTES = Tenant(id="vivantes", country="DE")
HELIOS = Tenant(id="helios", country="DE")
SANA = Tenant(id="sana", country="DE")

SCRIPT = "<script>alert(1)</script>"
ODD_KEY = "-scan|*[x](javascript:e).dcm"  # '//' is refused in keys: no http:// here
DE_BUCKET, GB_BUCKET = "residency-de-local-data", "residency-gb-local-data"
SECOND = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The operations, each with its own actor and purpose:

    - charite (DE): put a.bin 1000 B and b.bin 300 B; a.bin copied to GB (1 movement,
      1000 B); a.bin to US blocked (1 attempt); b.bin deleted.
    - acibadem (TR, kvkk_standard_contract): put tr.bin 500 B in DE (1 placement
      movement); tr.bin to US blocked by GDPR alone (KVKK allowed it).
    - ankara (TR, no agreement): 2 puts refused (2 attempts), then a standalone blocked
      check_transfer to US (1 attempt) by a hostile-looking actor.
    - akh-wien (AT): put at.bin 200 B in DE (1 placement movement via eea).
    - usz (CH): put ch.bin 250 B in CH (in country: no movement).
    - vivantes (DE): put v.bin 400 B, then erased to completion.
    - helios (DE): put uploads/ct.dcm 700 B (imaging_upload), retention-deleted.
    - sana (DE): put only.bin 100 B, then deleted.
    """
    root = tmp_path_factory.mktemp("report-ops")
    path = root / "audit.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(HMAC_KEY_ENV, raising=False)
        res = rs.Residency.load(None, local_root=root / "data", audit=str(path))
        try:
            _drive(res)
        finally:
            res.close()
    yield path


def _drive(res: rs.Residency) -> None:
    charite = res.storage_for(CHARITE, actor="dr-ingest", purpose="care:ingest")
    charite.put("a.bin", b"a" * 1000, "phi")
    charite.put("b.bin", b"b" * 300, "phi")
    res.transfer(CHARITE, "a.bin", "GB", "phi", actor="dr-referral", purpose="care:referral")
    with pytest.raises(TransferBlocked):
        res.transfer(CHARITE, "a.bin", "US", "phi", actor="dr-us", purpose="research:us")
    assert charite.delete("b.bin")

    acibadem = res.storage_for(ACIBADEM, actor="svc-tr", purpose="care:tr")
    acibadem.put("tr.bin", b"t" * 500, "phi")
    with pytest.raises(TransferBlocked):
        res.transfer(ACIBADEM, "tr.bin", "US", "phi", actor="svc-tr-us", purpose="research:tr")

    ankara = res.storage_for(ANKARA, actor="svc-ankara", purpose="care:ankara")
    for key in ("x.bin", ODD_KEY):
        with pytest.raises(PlacementBlocked):
            ankara.put(key, b"k" * 50, "phi")
    assert not res.check_transfer(ANKARA, "US", "phi", actor=SCRIPT, purpose="@check").allowed

    res.storage_for(AKH, actor="svc-at", purpose="care:at").put("at.bin", b"w" * 200, "phi")
    res.storage_for(USZ, actor="svc-ch", purpose="care:ch").put("ch.bin", b"c" * 250, "phi")

    res.storage_for(VIVANTES, actor="svc-viv", purpose="care:viv").put(
        "v.bin", b"v" * 400, "phi")
    receipt = res.erase(VIVANTES, actor="dpo", purpose="gdpr:art17", reason="contract ended")
    assert receipt.status == "completed"

    res.storage_for(HELIOS, actor="svc-helios", purpose="care:helios").put(
        "uploads/ct.dcm", b"h" * 700, "phi", metadata={CATEGORY_META: "imaging_upload"})
    start = datetime.now(UTC)
    sweep = res.retention_sweep("DE", providers=["local"], actor="sweeper",
                                clock=lambda: start + timedelta(hours=25)).run()
    assert [i.key for i in sweep.items if i.action == "deleted"] == [
        "tenants/helios/uploads/ct.dcm"]

    sana = res.storage_for(SANA, actor="svc-sana", purpose="care:sana")
    sana.put("only.bin", b"s" * 100, "phi")
    assert sana.delete("only.bin")


@pytest.fixture(scope="module")
def report(log: Path) -> AuditReport:
    return build_report(log)


def _tenant(report: AuditReport, tenant_id: str) -> dict[str, Any]:
    (row,) = [t for t in report.tenants if t["tenant_id"] == tenant_id]
    return row


# --- counts -----------------------------------------------------------------------------


def test_movements_are_completed_operations_only(report: AuditReport) -> None:
    t = report.totals
    # GB copy 1000 + TR placement 500 + AT placement 200; no transfer_check, no placement
    # decision, no in-country put (DE, CH) and no blocked attempt counted.
    assert (t["movements"], t["movement_bytes"]) == (3, 1700)
    assert report.chain_state.ok and t["violations"] == 0


def test_decisions_are_counted_apart(report: AuditReport) -> None:
    t = report.totals
    # placements: charite, acibadem, akh, usz, vivantes, helios, sana allowed; ankara
    # blocked. transfer_check: GB allowed; charite->US, acibadem->US, ankara->US blocked.
    assert (t["decisions_allowed"], t["decisions_blocked"]) == (8, 4)
    assert {d["operation"] for d in report.decisions} == {"placement", "transfer_check"}


def test_one_row_per_blocked_attempt(report: AuditReport) -> None:
    assert report.totals["blocked"] == 5
    assert [(b["operation"], b["tenant_id"], b["actor"], b["purpose"], b["object_key"],
             b["destination"]) for b in report.blocked] == [
        ("transfer", "charite", "dr-us", "research:us", "a.bin", "US"),
        ("transfer", "acibadem", "svc-tr-us", "research:tr", "tr.bin", "US"),
        ("put", "ankara", "svc-ankara", "care:ankara", "x.bin", "DE"),
        ("put", "ankara", "svc-ankara", "care:ankara", ODD_KEY, "DE"),
        ("transfer_check", "ankara", SCRIPT, "@check", None, "US"),
    ]
    assert {t["tenant_id"]: t["blocked_attempts"] for t in report.tenants} == {
        "acibadem": 1, "akh-wien": 0, "ankara": 3, "charite": 1, "helios": 0, "sana": 0,
        "usz": 0, "vivantes": 0}


def test_blocked_rows_say_why_with_sources(report: AuditReport) -> None:
    for row in report.blocked:
        assert row["reasons"] and row["unblock_with"], row
        assert row["sources"] and all(s["source"] and s["as_of"] and s["regime"]
                                      for s in row["sources"]), row
        assert SECOND.match(row["time"]), row["time"]
    by_tenant = {(b["tenant_id"], b["operation"]): b for b in report.blocked}
    tr_us = by_tenant[("acibadem", "transfer")]
    # GDPR blocked it; KVKK allowed it (kvkk_standard_contract): KVKK's words stay out.
    assert len(tr_us["reasons"]) == 1 and tr_us["reasons"][0].startswith("EU GDPR")
    assert not any("KVKK" in r for r in tr_us["reasons"])
    assert [s["regime"] for s in tr_us["sources"]] == ["gdpr"]
    unblock = " ".join(tr_us["unblock_with"])  # the blocking regime's flags only
    assert all(flag in unblock for flag in ("dpf_eu", "scc", "bcr"))
    assert "kvkk" not in unblock
    put = by_tenant[("ankara", "put")]
    assert [s["regime"] for s in put["sources"]] == ["kvkk"]
    assert "kvkk_standard_contract" in " ".join(put["unblock_with"])


# --- flows --------------------------------------------------------------------------------


def test_flows_rows(report: AuditReport) -> None:
    got = [(f["kind"], f["origin"], f["location"], f["destination"], f["mechanism"],
            f["operations"], f["actors"], f["purposes"], f["events"], f["bytes"])
           for f in report.flows]
    assert got == [
        ("transfer", "DE", "DE", "GB", "adequacy", ["transfer"], ["dr-referral"],
         ["care:referral"], 1, 1000),
        ("placement", "TR", "DE", "stored in DE", "kvkk_standard_contract", ["put"],
         ["svc-tr"], ["care:tr"], 1, 500),
        ("placement", "AT", "DE", "stored in DE", "eea", ["put"], ["svc-at"], ["care:at"],
         1, 200),
    ]
    for flow in report.flows:
        assert flow["location"] not in ("TR", "AT", "NZ")
        assert flow["basis"] and all(b["source"] and b["regime"] and b["as_of"]
                                     for b in flow["basis"]), flow
        assert SECOND.match(flow["first_seen"]) and SECOND.match(flow["last_seen"])
    gb = report.flows[0]
    assert ("gdpr", "adequacy") in [(b["regime"], b["basis"]) for b in gb["basis"]]
    tr = report.flows[1]
    assert [(b["regime"], b["agreement"]) for b in tr["basis"]] == [
        ("kvkk", "kvkk_standard_contract[unscoped]")]


def test_per_tenant_movements(report: AuditReport) -> None:
    assert {t["tenant_id"]: (t["country"], t["movements"], t["bytes_moved"], t["went_to"])
            for t in report.tenants} == {
        "acibadem": ("TR", 1, 500, []), "akh-wien": ("AT", 1, 200, []),
        "ankara": ("TR", 0, 0, []), "charite": ("DE", 1, 1000, ["GB"]),
        "helios": ("DE", 0, 0, []), "sana": ("DE", 0, 0, []), "usz": ("CH", 0, 0, []),
        "vivantes": ("DE", 0, 0, [])}
    assert report.totals["tenants"] == 8


# --- held in ------------------------------------------------------------------------------


def test_held_in(report: AuditReport) -> None:
    held_in = {t["tenant_id"]: t["held_in"] for t in report.tenants}
    assert held_in["ankara"] == []  # every write refused
    assert held_in["akh-wien"] == ["DE"]  # never "AT"
    assert held_in["acibadem"] == ["DE"]  # never "TR"
    assert held_in["usz"] == ["CH"]
    assert held_in["charite"] == ["DE", "GB"]
    assert _tenant(report, "vivantes")["held"] == []  # erased, backend verified empty
    gb = [h for h in _tenant(report, "charite")["held"] if h["location"] == "GB"]
    assert [(h["bucket"], h["objects"], h["bytes"]) for h in gb] == [(GB_BUCKET, 1, 1000)]


def test_held_objects_are_the_tenants_not_the_sdks_records(report: AuditReport) -> None:
    """Objects written and not deleted: the SDK's own records under ``_residency/``
    (tenant record, lineage) are not the tenant's objects held."""
    held = {t["tenant_id"]: [(h["location"], h["bucket"], h["objects"], h["bytes"])
                             for h in t["held"]] for t in report.tenants}
    assert held["sana"] == []  # its only object was deleted
    assert held["helios"] == []  # its only object was retention-deleted
    assert held["charite"] == [("DE", DE_BUCKET, 1, 1000), ("GB", GB_BUCKET, 1, 1000)]
    assert held["acibadem"] == [("DE", DE_BUCKET, 1, 500)]
    # a.bin in DE and GB, tr.bin, at.bin, ch.bin
    assert report.totals["objects_held"] == 5


# --- erasures, retention, rules -----------------------------------------------------------


def test_erasure_row(report: AuditReport) -> None:
    assert report.totals["erasure_requests"] == 1
    (row,) = report.erasures
    assert (row["tenant_id"], row["status"], row["locations"], row["actors"]) == (
        "vivantes", "complete", ["DE"], ["dpo"])
    assert row["request_id"].startswith("er-")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", row["receipt"]["digest"])
    assert {(b["location"], b["provider"], b["bucket"], b["outcome"])
            for b in row["backends"]} == {("DE", "local", DE_BUCKET, "ok")}
    assert sum(b["bytes"] for b in row["backends"]) == 400
    assert _tenant(report, "vivantes")["erasures_completed"] == 1


def test_report_with_an_erasure_renders_in_every_format(report: AuditReport) -> None:
    for fmt in ("md", "csv", "html"):
        assert "vivantes" in render(report, fmt), fmt


def test_retention_deletions(report: AuditReport) -> None:
    assert [(d["location"], d["tenant_id"], d["category"], d["outcome"], d["objects"],
             d["bytes"]) for d in report.retention_deletions] == [
        ("DE", "helios", "imaging_upload", "ok", 1, 700)]
    assert report.totals["retention_deletions"] == 1


def test_rules_in_force(report: AuditReport) -> None:
    assert report.rules
    for rule in report.rules:
        assert rule["source"] and isinstance(rule["past_review"], bool), rule
    used = {r["what"]: r["decisions"] for r in report.rules if r["decisions"]}
    # One allowed transfer_check rested on GB's adequacy (the completed copy is not a
    # second decision); one allowed placement on the KVKK contract (the blocked TR->US
    # check, where KVKK allowed and GDPR blocked, rested on nothing).
    assert used["regime gdpr adequacy entry 2 (GB)"] == 1
    assert used["regime kvkk accepts kvkk_standard_contract for personal, phi"] == 1


# --- filters ------------------------------------------------------------------------------


def test_tenant_filter(log: Path) -> None:
    charite = build_report(log, tenant="charite")
    t = charite.totals
    assert (t["movements"], t["movement_bytes"], t["blocked"]) == (1, 1000, 1)
    assert (t["decisions_allowed"], t["decisions_blocked"]) == (2, 1)
    assert [r["tenant_id"] for r in charite.tenants] == ["charite"]
    assert [b["tenant_id"] for b in charite.blocked] == ["charite"]
    assert [(f["destination"], f["bytes"]) for f in charite.flows] == [("GB", 1000)]
    assert charite.erasures == [] and charite.retention_deletions == []
    ankara = build_report(log, tenant="ankara")
    assert (ankara.totals["movements"], ankara.totals["blocked"]) == (0, 3)
    assert [r["held_in"] for r in ankara.tenants] == [[]]


def test_location_filter(log: Path) -> None:
    de = build_report(log, location="DE")
    assert "usz" not in {t["tenant_id"] for t in de.tenants}
    assert (de.totals["movements"], de.totals["movement_bytes"]) == (3, 1700)
    assert de.totals["blocked"] == 5
    ch = build_report(log, location="CH")
    assert [(t["tenant_id"], t["held_in"]) for t in ch.tenants] == [("usz", ["CH"])]
    assert (ch.totals["movements"], ch.totals["blocked"], ch.flows) == (0, 0, [])


def test_relative_and_past_windows(log: Path, report: AuditReport) -> None:
    recent = build_report(log, since="1h")
    for key in ("movements", "movement_bytes", "blocked", "decisions_allowed",
                "decisions_blocked", "erasure_requests"):
        assert recent.totals[key] == report.totals[key], key
    assert build_report(log, since="30d").totals["movements"] == 3
    past = build_report(log, since="2020-01-01", until="2020-Q4")
    assert (past.totals["movements"], past.totals["blocked"], past.blocked) == (0, 0, [])
    assert past.tenants == [] and past.erasures == [] and past.flows == []


def _moved(time: datetime, size: int) -> AuditEvent:
    return AuditEvent(time=time, operation="transfer", outcome="ok", actor="svc",
                      purpose="care", tenant_id="charite", tenant_country="DE",
                      data_class="phi", source_location="DE", destination_location="GB",
                      destination_country="GB", is_transfer=True, mechanism="adequacy",
                      provider="local", bucket=GB_BUCKET, object_key=f"k{size}", size=size)


def test_calendar_windows(tmp_path: Path) -> None:
    path = tmp_path / "dated.db"
    with AuditLog(path) as dated:
        dated.append_many([
            _moved(datetime(2026, 10, 15, 9, 0, tzinfo=UTC), 100),
            _moved(datetime(2026, 11, 20, 10, 11, 12, 987654, tzinfo=UTC), 300),
            _moved(datetime(2026, 12, 5, 8, 0, tzinfo=UTC), 500),
        ])

    def moved(**window: str) -> tuple[int, int]:
        t = build_report(path, **window).totals  # type: ignore[arg-type]
        return t["movements"], t["movement_bytes"]

    assert moved(since="2026-11", until="2026-11") == (1, 300)
    assert moved(since="2026-11-01", until="2026-11-30") == (1, 300)
    assert moved(since="2026-Q4") == (3, 900)
    assert moved(until="2026-10") == (1, 100)
    nov = build_report(path, since="2026-11", until="2026-11")
    assert nov.flows[0]["first_seen"] == "2026-11-20T10:11:12Z"
    assert nov.totals["first_seen"] == "2026-11-20T10:11:12Z"


# --- renderings ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ankara_report(log: Path) -> AuditReport:
    """The hostile actor and key, without the erasure section (rendered apart above)."""
    return build_report(log, tenant="ankara")


def _section_rows(md: str, title: str) -> list[str]:
    lines = md.split("\n")
    start = lines.index(f"## {title}")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
               len(lines))
    return [line for line in lines[start:end] if line.startswith("|")]


def test_markdown_escapes_log_values(ankara_report: AuditReport) -> None:
    md = render(ankara_report, "md")
    assert "<script" not in md and "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    assert "-scan\\|\\*\\[x\\](javascript:e).dcm" in md
    assert "[x](javascript" not in md
    rows = _section_rows(md, "Blocked attempts")
    assert len(rows) == 2 + 3  # header, rule, one line per blocked attempt
    cells = [len(re.split(r"(?<!\\)\|", row)) for row in rows]
    assert len(set(cells)) == 1, rows


def test_csv_is_rectangular_and_formula_safe(ankara_report: AuditReport) -> None:
    rows = list(csv.reader(io.StringIO(render(ankara_report, "csv"))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert all(len(row) == len(CSV_COLUMNS) for row in rows)
    for row in rows[1:]:
        assert not any(cell.startswith(("=", "+", "-", "@")) for cell in row), row
    blocked = [dict(zip(CSV_COLUMNS, r, strict=True)) for r in rows if r[0] == "blocked"]
    assert len(blocked) == 3
    assert "'" + ODD_KEY in [b["object_key"] for b in blocked]
    check = next(b for b in blocked if b["operation"] == "transfer_check")
    assert (check["actor"], check["purpose"]) == (SCRIPT, "'@check")


def test_html_autoescapes(ankara_report: AuditReport) -> None:
    html = render(ankara_report, "html")
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_json_round_trip(report: AuditReport) -> None:
    data = json.loads(render(report, "json"))
    assert data["schema"] == "residency.audit.report/v3"
    assert data["totals"]["movements"] == 3 and len(data["blocked"]) == 5
    assert SECOND.match(data["generated_at"])
