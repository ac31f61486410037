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
    assert code == 1 and json.loads(out)["error_type"] == "AuditKeyError"


def test_verify_refuses_what_is_not_a_log(tmp_path: Path) -> None:
    code, _, err = run("verify", str(tmp_path / "nope.db"))
    assert code == 1 and "no audit log" in err


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
    code, _, _ = run("report", str(path), "--format", "pdf")
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
    assert code == 1 and "not a residency audit checkpoint" in err


def test_show_report_for_the_demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_fixture_log(tmp_path / "fixture.db")
    figures = show_report(path, quiet=True)
    assert capsys.readouterr().out == ""
    # The packaged map puts every backend under a BAA: events 9, 10, 12 and 13 violate.
    assert figures == {"log": str(path), "chain": "verified", "chain_ok": True, "events": 15,
                       "tenants": 6, "cross_border_allowed": 6, "blocked": 3, "violations": 4,
                       "flows": 4, "outcome_unknown": 0, "unaudited_periods": 0}
    show_report(path, quiet=False)
    assert "Cross-border flows" in capsys.readouterr().out
