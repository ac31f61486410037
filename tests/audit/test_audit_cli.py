"""``residency audit verify|report|checkpoint`` and the demo hook ``show_report``."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import KEY
from report_fixture import write_fixture_log
from typer.testing import CliRunner

from residency_sdk.audit.chain import HMAC_KEY_ENV
from residency_sdk.cli.app import app
from residency_sdk.cli.audit import show_report

runner = CliRunner()


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, ["audit", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def _tamper(path: Path, seq: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("UPDATE audit_events SET event = replace(event, '\"outcome\":\"ok\"', "
                 "'\"outcome\":\"error\"') WHERE seq = ?", (seq,))
    conn.commit()
    conn.close()


def test_verify_ok_and_broken(make_log: Callable[..., Path]) -> None:
    path = make_log(6)
    code, out, _ = run("verify", str(path))
    assert code == 0 and "6 events verify" in out
    code, out, _ = run("verify", str(path), "--json")
    assert code == 0 and json.loads(out)["ok"] is True
    _tamper(path, 4)
    code, _, err = run("verify", str(path))
    assert code == 1 and "first broken event is 4" in err and "hash_mismatch" in err
    code, out, _ = run("verify", str(path), "--json")
    data = json.loads(out)
    assert code == 1 and data["broken"] == {
        "seq": 4, "kind": "hash_mismatch",
        "message": "the stored hash does not cover the stored event: its content was edited"}


def test_verify_keyed_log_with_key_from_environment(make_log: Callable[..., Path]) -> None:
    path = make_log(3, hmac_key=KEY)
    code, out, _ = run("verify", str(path), "--json", env={HMAC_KEY_ENV: KEY.decode()})
    assert code == 0 and json.loads(out)["hmac_checked"] is True
    code, out, _ = run("verify", str(path), "--json",
                       env={HMAC_KEY_ENV: "another-key-of-enough-length"})
    assert code == 2 and json.loads(out)["error_type"] == "AuditKeyError"


def test_verify_refuses_what_is_not_a_log(tmp_path: Path) -> None:
    code, _, err = run("verify", str(tmp_path / "nope.db"))
    assert code == 2 and "no audit log" in err


def test_report_formats_and_gate(tmp_path: Path) -> None:
    path = write_fixture_log(tmp_path / "fixture.db")
    code, out, _ = run("report", str(path), "--until", "2026-11-02")
    assert code == 0 and out.startswith("# Transfer-audit report")
    code, out, _ = run("report", str(path), "--format", "json", "--since", "2026-11-01T08:02Z",
                       "--until", "2026-11-01T08:08Z")
    assert code == 0 and json.loads(out)["totals"]["events"] == 6  # events 2..7
    code, _, err = run("report", str(path), "--fail-on-violation", "--format", "csv")
    assert code == 1
    for fmt in ("md", "html", "json", "csv"):
        target = tmp_path / f"report.{fmt}"
        code, _, err = run("report", str(path), "--format", fmt, "--out", str(target))
        assert code == 0 and target.stat().st_size > 500 and "violation(s)" in err
    code, _, _ = run("report", str(path), "--format", "docx")
    assert code == 2


def test_report_gate_passes_a_clean_log_and_fails_a_broken_one(
        make_log: Callable[..., Path]) -> None:
    path = make_log(5)  # puts on the DE AWS backend: BAA, in-country, no violation
    code, out, _ = run("report", str(path), "--fail-on-violation", "--json")
    assert code == 0 and json.loads(out)["ok"] is True
    _tamper(path, 2)
    code, out, _ = run("report", str(path), "--fail-on-violation")
    assert code == 1 and "BROKEN at event 2" in out


def test_checkpoint_export_and_verify(make_log: Callable[..., Path], tmp_path: Path) -> None:
    path = make_log(5)
    cp = tmp_path / "cp.json"
    code, out, _ = run("checkpoint", "export", str(path), "--out", str(cp), "--json")
    assert code == 0 and json.loads(out)["seq"] == 5
    code, _, _ = run("checkpoint", "verify", str(path), str(cp))
    assert code == 0
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM audit_events WHERE seq > 3")
    conn.execute("UPDATE audit_head SET seq = 3, hash = (SELECT hash FROM audit_events "
                 "WHERE seq = 3)")
    conn.commit()
    conn.close()
    code, _, _ = run("verify", str(path))
    assert code == 0  # consistent on its own...
    code, out, _ = run("checkpoint", "verify", str(path), str(cp), "--json")
    assert code == 1 and json.loads(out)["broken"]["kind"] == "rolled_back"  # ...not to the seal
    code, _, _ = run("verify", str(path), "--checkpoint", str(cp))
    assert code == 1
    (tmp_path / "junk.json").write_text("{}")
    code, _, err = run("checkpoint", "verify", str(path), str(tmp_path / "junk.json"))
    assert code == 2 and "not a residency audit checkpoint" in err


def test_show_report_for_the_demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_fixture_log(tmp_path / "fixture.db")
    figures = show_report(path, quiet=True)
    assert capsys.readouterr().out == ""
    # The packaged map puts every backend under a BAA: events 9, 10, 12 and 13 violate.
    assert figures == {"log": str(path), "chain": "verified", "chain_ok": True, "events": 15,
                       "tenants": 6, "movements": 3, "decisions_allowed": 4,
                       "decisions_blocked": 3, "blocked": 3, "violations": 4,
                       "flows": 2, "outcome_unknown": 0, "unaudited_periods": 0}
    show_report(path, quiet=False)
    assert "Data movements by flow" in capsys.readouterr().out


def test_a_sealed_report_verifies_until_it_is_edited(tmp_path: Path) -> None:
    """`audit report LOG --signing-key` seals html and json; `audit report verify` accepts
    them with the public key and refuses them once a figure is changed."""
    from residency_sdk.audit.seal import SIGNING_KEY_ENV

    path = write_fixture_log(tmp_path / "fixture.db")
    key = tmp_path / "report.pem"
    code, _, err = run("report", "keygen", "--out", str(key))
    assert code == 0 and key.exists() and (tmp_path / "report.pem.pub").exists(), err
    html, data = tmp_path / "r.html", tmp_path / "r.json"
    code, _, err = run("report", str(path), "--format", "html", "--out", str(html),
                       "--signing-key", str(key), "--until", "2026-11-02")
    assert code == 0 and "sealed" in err, err
    code, _, _ = run("report", str(path), "--format", "json", "--out", str(data),
                     env={SIGNING_KEY_ENV: str(key)})  # the key from the configuration
    assert code == 0 and json.loads(data.read_text())["seal"]["algorithm"] == "Ed25519"
    public = str(tmp_path / "report.pem.pub")
    for target in (html, data):
        code, out, _ = run("report", "verify", str(target), "--public-key", public, "--json")
        assert code == 0 and json.loads(out)["ok"] is True, out
    page = html.read_text(encoding="utf-8")
    # One figure of a table (a blocked attempt's event number), nothing else.
    edited = page.replace('<td class="n" data-v="6">6</td>', '<td class="n" data-v="6">7</td>', 1)
    assert edited != page
    html.write_text(edited, encoding="utf-8")
    figures = json.loads(data.read_text())
    figures["totals"]["violations"] = 0
    data.write_text(json.dumps(figures), encoding="utf-8")
    for target in (html, data):
        code, _, err = run("report", "verify", str(target), "--public-key", public)
        assert code == 1 and "sealed report FAILED" in err and "digest" in err, err
    code, _, err = run("report", str(path), "--format", "md", "--signing-key", str(key))
    assert code == 2 and "cannot be sealed" in err
    code, _, err = run("report", str(path), "--period", "2026-Q4", "--since", "2026-11-01")
    assert code == 2 and "--period" in err


def test_report_filters_by_tenant_and_period(tmp_path: Path) -> None:
    path = write_fixture_log(tmp_path / "fixture.db")
    code, out, _ = run("report", str(path), "--tenant", "charite-berlin", "--format", "json",
                       "--period", "2026-11")
    data = json.loads(out)
    assert code == 0 and data["tenant"] == "charite-berlin"
    assert [t["tenant_id"] for t in data["tenants"]] == ["charite-berlin"]
    assert data["totals"]["events"] == 8  # events 1..7 and the late put of 3 November
    assert (data["since"], data["until"]) == ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")
    code, out, _ = run("report", str(path), "--format", "json", "--since", "2026-11-02")
    assert json.loads(out)["totals"]["events"] == 1  # only the late put
    code, _, err = run("report", str(path), "--since", "2026-13")
    assert code == 2 and "invalid --since '2026-13'" in err and "2026-Q3" in err


def test_report_shows_progress_when_asked(tmp_path: Path) -> None:
    path = write_fixture_log(tmp_path / "fixture.db")
    code, out, _ = run("report", str(path), "--progress", "--format", "json")
    assert code == 0 and json.loads(out)["totals"]["events"] == 15  # stdout stays the report


def test_progress_is_reported_as_the_events_are_summarised(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import residency_sdk.audit.report_sql as report_sql
    from residency_sdk.audit.report import build_report

    path = write_fixture_log(tmp_path / "fixture.db")
    monkeypatch.setattr(report_sql, "CHUNK", 4)
    seen: list[tuple[int, int]] = []
    build_report(path, progress=lambda done, total: seen.append((done, total)))
    # Four ranges of positions, summarised by parallel connections in any order.
    done = [d for d, _ in seen]
    assert len(seen) == 4 and done == sorted(done) and done[-1] == 15
    assert {total for _, total in seen} == {15}
