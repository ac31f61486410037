"""`residency retention sweep` and `residency erasure request|run|status` end to end on the
embedded local backend (the CLI runs in-process through typer's runner)."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

import residency_sdk as rs
from residency_sdk.cli.app import app
from residency_sdk.erasure import audit_log_events, verify_receipt
from residency_sdk.marks import CATEGORY_META

runner = CliRunner()


def _seed(root: Path) -> Any:
    res = rs.Residency.load(local_root=root)
    store = res.storage_for(rs.Tenant(id="clinic-cli", country="DE"))
    store.put("uploads/old.dcm", b"img", data_class="phi",
              metadata={CATEGORY_META: "imaging_upload"})
    return store


def _age(root: Path, hours: float) -> None:
    """Backdate the creation time in the local store's sidecars by ``hours`` (the CLI
    runs on the real clock, so the object is made old instead)."""
    for meta in root.rglob("@meta"):
        doc = json.loads(meta.read_text())
        created = datetime.fromisoformat(doc["metadata"]["residency_created_at"])
        doc["metadata"]["residency_created_at"] = (created - timedelta(hours=hours)).isoformat()
        meta.write_text(json.dumps(doc))


def test_sweep_dry_run_then_real_json(tmp_path: Path) -> None:
    root = tmp_path / "data"
    store = _seed(root)
    _age(root, 25)
    common = ["--location", "DE", "--local-root", str(root), "--state-dir",
              str(tmp_path / "state"), "--json"]
    dry = runner.invoke(app, ["retention", "sweep", "--dry-run", *common])
    assert dry.exit_code == 0, dry.output
    doc = json.loads(dry.output)
    assert doc["dry_run"] is True
    assert [i["action"] for i in doc["sweeps"][0]["items"]] == ["would_delete"]
    assert store.exists("uploads/old.dcm")

    audit = tmp_path / "audit.db"
    real = runner.invoke(app, ["retention", "sweep", *common, "--audit", str(audit)])
    assert real.exit_code == 0, real.output
    doc = json.loads(real.output)
    assert doc["ok"] is True and doc["sweeps"][0]["totals"]["deleted"] == 1
    assert not store.exists("uploads/old.dcm")
    # The CLI audits the deletion ahead: its intent, then its outcome.
    assert [e.outcome for e in audit_log_events(audit)
            if e.operation == "retention_delete"] == ["intent", "ok"]


def test_sweep_human_output_and_unknown_location(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _seed(root)
    ok = runner.invoke(app, ["retention", "sweep", "-l", "DE", "--local-root", str(root),
                             "--state-dir", str(tmp_path / "state")])
    assert ok.exit_code == 0, ok.output
    assert "retention sweep" in ok.output and "done" in ok.output
    bad = runner.invoke(app, ["retention", "sweep", "-l", "XX", "--local-root", str(root),
                              "--state-dir", str(tmp_path / "state"), "--json"])
    assert bad.exit_code == 1
    assert "unknown location 'XX'" in json.loads(bad.output)["error"]


def test_erasure_request_run_status(tmp_path: Path) -> None:
    root = tmp_path / "data"
    store = _seed(root)
    state, audit = tmp_path / "state", tmp_path / "audit.db"
    made = runner.invoke(app, ["erasure", "request", "-t", "clinic-cli", "-c", "DE",
                               "--terminated", "2026-11-01", "--deadline-days", "30",
                               "--local-root", str(root), "--state-dir", str(state), "--json"])
    assert made.exit_code == 0, made.output
    request = json.loads(made.output)["request"]
    assert request["deadline"].startswith("2026-12-01")

    status = runner.invoke(app, ["erasure", "status", "--state-dir", str(state), "--json"])
    rows = json.loads(status.output)["requests"]
    assert [r["id"] for r in rows] == [request["id"]]

    ran = runner.invoke(app, ["erasure", "run", request["id"], "--local-root", str(root),
                              "--state-dir", str(state), "--audit", str(audit), "--json"])
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.output)["request"]["status"] == "completed"
    assert not store.exists("uploads/old.dcm")
    done = rs.Residency.load(local_root=root).erasure_tracker(state).get(request["id"])
    verify_receipt(done, audit_log_events(audit))

    status = runner.invoke(app, ["erasure", "status", "--state-dir", str(state), "--json"])
    assert status.exit_code == 0 and json.loads(status.output)["requests"] == []


def test_overdue_request_makes_status_fail(tmp_path: Path) -> None:
    state = tmp_path / "state"
    made = runner.invoke(app, ["erasure", "request", "-t", "clinic-late", "-c", "FR",
                               "--terminated", "2020-01-01", "--local-root",
                               str(tmp_path / "data"), "--state-dir", str(state), "--json"])
    assert made.exit_code == 0, made.output
    # Overdue fails the command only when asked (--fail-on-overdue, for cron/CI).
    status = runner.invoke(app, ["erasure", "status", "--state-dir", str(state)])
    assert status.exit_code == 0 and "overdue" in status.output
    status = runner.invoke(app, ["erasure", "status", "--state-dir", str(state),
                                 "--fail-on-overdue"])
    assert status.exit_code == 1
    assert "overdue" in status.output


def test_unreachable_backend_keeps_erasure_open(tmp_path: Path) -> None:
    # Loaded without local_root, the local backend cannot be opened: the erasure must not
    # claim success (fail closed) and must say why.
    res = rs.Residency.load()
    tracker = res.erasure_tracker(tmp_path / "state")
    request = tracker.request(rs.Tenant(id="clinic-x", country="DE"), providers=["local"])
    result = tracker.run(request.id)
    assert result.status == "in_progress" and result.is_open
    [backend] = result.backends.values()
    assert backend.status == "failed" and "local_root" in (backend.error or "")


def test_bad_termination_date_is_a_clear_error(tmp_path: Path) -> None:
    out = runner.invoke(app, ["erasure", "request", "-t", "c1", "-c", "DE", "--terminated",
                              "last tuesday", "--state-dir", str(tmp_path), "--json"])
    assert out.exit_code == 1
    assert "invalid --terminated" in json.loads(out.output)["error"]
    assert os.listdir(tmp_path) == []  # nothing recorded
