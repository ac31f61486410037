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


def _stale_map(tmp_path: Path, section: str, name: str) -> Path:
    """The default map with one rule fact (``section``, ``name``) past its review date."""
    default = load_region_map(None)
    rules = yaml.safe_load(default.rules_file.read_text(encoding="utf-8"))
    rules[section][name]["review_by"] = "2020-01-01"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules), encoding="utf-8")
    (tmp_path / "map.yaml").write_text(yaml.safe_dump({
        "version": 1, "name": "stale-rules", "extends": "default",
        "transfer_rules": "rules.yaml"}), encoding="utf-8")
    return tmp_path / "map.yaml"


def test_rules_past_their_review_date_are_noted(tmp_path: Path) -> None:
    region_map = load_region_map(_stale_map(tmp_path, "regimes", "kvkk"))
    path = tmp_path / "audit.db"
    res = rs.Residency.load(tmp_path / "map.yaml", audit=str(path))
    res.check_transfer(rs.Tenant(id="t", country="DE"), "GB", "phi")
    res.close()
    stale = build_report(path, region_map=region_map)
    due = stale.rules_past_review
    # The regime and the mechanisms it accepts (their review date is the regime's).
    assert {r["what"] for r in due} == {
        "regime kvkk", "regime kvkk accepts kvkk_standard_contract for personal, phi",
        "regime kvkk accepts bcr for personal, phi",
        "regime kvkk accepts explicit_consent for personal"}
    assert all(r["review_by"] == "2020-01-01" and r["source"] for r in due)
    assert stale.totals["rules_past_review"] == len(due) >= 1
    assert "rule past review: regime kvkk (review by 2020-01-01; source: Law No. 6698" in \
        "\n".join(stale.notes)
    assert "**Rules past review ⚠️" in render(stale, "md")
    assert 'id="review-status"' in render(stale, "html")
    fresh = build_report(path)
    assert not fresh.rules_past_review and not [
        n for n in fresh.notes if n.startswith("rule past review")]
    # The decision DE -> GB rested on the GDPR adequacy entry for GB: counted on its fact.
    [gb] = [r for r in fresh.rules if r["what"].startswith("regime gdpr adequacy")
            and "GB" in r["what"]]
    assert gb["decisions"] == 1


def test_cli_fails_on_review_due_only_when_asked(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from residency_sdk.cli.app import app

    stale = _stale_map(tmp_path, "mechanisms", "scc")
    path = tmp_path / "audit.db"
    rs.Residency.load(audit=str(path)).close()
    base = ["audit", "report", str(path), "--map", str(stale)]
    runner = CliRunner()
    assert runner.invoke(app, base).exit_code == 0
    gated = runner.invoke(app, [*base, "--fail-on-review-due"])
    assert gated.exit_code == 1 and "mechanism scc" in gated.stdout
    assert runner.invoke(app, ["audit", "report", str(path), "--fail-on-review-due"]
                         ).exit_code == 0
