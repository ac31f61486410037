"""The transfer-audit report flags what the rules review asks a privacy officer to act
on: decisions that rested on unscoped agreements (bare mechanism flags), and rule facts
past their review date."""

from __future__ import annotations

from pathlib import Path

import yaml

import residency_sdk as rs
from residency_sdk.audit.render import render
from residency_sdk.audit.report import build_report
from residency_sdk.regionmap import load_region_map


def test_decisions_resting_on_unscoped_agreements_are_listed_per_tenant(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    res = rs.Residency.load(audit=str(path))
    bare = rs.Tenant(id="klinik-bare", country="AT", agreements={"scc"})
    scoped = rs.Tenant(id="klinik-scoped", country="AT", agreements={rs.Agreement(
        "scc", destinations=["US"], reference="SCC-9", signed_on="2026-01-01")})
    for _ in range(2):
        res.check_transfer(bare, "US", "personal")
    res.check_transfer(scoped, "US", "personal")
    res.check_transfer(bare, "CN", "phi", actor="dr-a")  # allowed on the bare scc too
    res.close()
    report = build_report(path)
    assert report.unscoped_agreements == [
        {"tenant_id": "klinik-bare", "agreement": "scc[unscoped]", "decisions": 3}]
    assert any("klinik-bare: 3 decision(s) rested on the unscoped agreement scc[unscoped]"
               in note for note in report.notes)
    assert report.to_dict()["unscoped_agreements"][0]["decisions"] == 3
    assert "scope it" in render(report, "md")


def test_rules_past_their_review_date_are_noted(tmp_path: Path) -> None:
    default = load_region_map(None)
    rules = yaml.safe_load(default.rules_file.read_text(encoding="utf-8"))
    rules["regimes"]["kvkk"]["review_by"] = "2020-01-01"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules), encoding="utf-8")
    (tmp_path / "map.yaml").write_text(yaml.safe_dump({
        "version": 1, "name": "stale-rules", "extends": "default",
        "transfer_rules": "rules.yaml"}), encoding="utf-8")
    region_map = load_region_map(tmp_path / "map.yaml")
    path = tmp_path / "audit.db"
    res = rs.Residency.load(tmp_path / "map.yaml", audit=str(path))
    res.check_transfer(rs.Tenant(id="t", country="DE"), "GB", "phi")
    res.close()
    stale = build_report(path, region_map=region_map)
    assert [n for n in stale.notes if n.startswith("rule past review")] == [
        "rule past review: regime kvkk was due for review on 2020-01-01: check it against "
        f"its source and update as_of/review_by in {tmp_path / 'rules.yaml'}"]
    assert not [n for n in build_report(path).notes if n.startswith("rule past review")]
