"""Audit on by default, everywhere (issue 12, point 6).

``Residency.load()`` without ``audit=`` used to record nothing, silently; the command line
wrote no event for ``put``/``get``/``rm``, and sweeps audited only when asked. Now the
sink comes from the argument, else ``$RESIDENCY_AUDIT`` (a path or a URL), else
``audit.db`` in the state folder; switching audit off needs ``audit=False`` /
``--no-audit``, and that is itself recorded (an ``audit_off`` event).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import residency_sdk as rs
from residency_sdk.audit import AuditLog, verify_log
from residency_sdk.cli.app import app
from residency_sdk.erasure import audit_log_events
from residency_sdk.errors import AuditUnavailable
from residency_sdk.events import AuditEvent
from residency_sdk.marks import CATEGORY_META
from residency_sdk.storage.memory import MemoryStore

runner = CliRunner()
DE = rs.Tenant(id="charite-berlin", country="DE")


def _memory(target: Any, location: str) -> MemoryStore:
    return MemoryStore(target)


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own state folder ($RESIDENCY_STATE_DIR), no $RESIDENCY_AUDIT."""
    folder = tmp_path / "state"
    monkeypatch.setenv("RESIDENCY_STATE_DIR", str(folder))
    monkeypatch.delenv("RESIDENCY_AUDIT", raising=False)
    return folder


def _ops(path: Path, **match: Any) -> list[tuple[str, str]]:
    return [(e.operation, e.outcome) for e in audit_log_events(path)
            if all(getattr(e, k) == v for k, v in match.items())]


def _put_and_close(res: rs.Residency) -> None:
    store = res.storage_for(DE, actor="test")
    store.put("scan.dcm", b"phi")
    res.check_transfer(DE, "US")
    res.close()


# --- the SDK -----------------------------------------------------------------------------


def test_load_without_audit_records_to_the_state_folder(state: Path) -> None:
    res = rs.Residency.load(storage=_memory)
    _put_and_close(res)
    log = state / "audit.db"
    assert ("put", "intent") in _ops(log, object_key="scan.dcm")
    assert ("put", "ok") in _ops(log, object_key="scan.dcm")
    assert ("transfer_check", "blocked") in _ops(log, tenant_id=DE.id)
    assert verify_log(log).ok


def test_the_state_folder_follows_state_dir_then_local_root_then_xdg(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESIDENCY_AUDIT", raising=False)
    _put_and_close(rs.Residency.load(storage=_memory, state_dir=tmp_path / "s",
                                     local_root=tmp_path / "root"))
    assert _ops(tmp_path / "s" / "audit.db", object_key="scan.dcm")
    _put_and_close(rs.Residency.load(local_root=tmp_path / "root"))
    assert _ops(tmp_path / "root" / ".residency-state" / "audit.db", object_key="scan.dcm")
    monkeypatch.delenv("RESIDENCY_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    _put_and_close(rs.Residency.load(storage=_memory))
    assert _ops(tmp_path / "xdg" / "residency-sdk" / "audit.db", object_key="scan.dcm")
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    _put_and_close(rs.Residency.load(storage=_memory))
    assert _ops(tmp_path / "home" / ".local" / "state" / "residency-sdk" / "audit.db",
                object_key="scan.dcm")


def test_residency_audit_path_is_honoured(state: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = tmp_path / "chosen.db"
    monkeypatch.setenv("RESIDENCY_AUDIT", str(chosen))
    _put_and_close(rs.Residency.load(storage=_memory))
    assert ("put", "ok") in _ops(chosen, object_key="scan.dcm")
    assert not (state / "audit.db").exists()
    # An explicit argument wins over the environment.
    explicit = tmp_path / "explicit.db"
    _put_and_close(rs.Residency.load(storage=_memory, audit=str(explicit)))
    assert ("put", "ok") in _ops(explicit, object_key="scan.dcm")


def test_residency_audit_url_is_honoured(state: Path, postgres_server: Any,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    url = postgres_server.create_database()
    try:
        monkeypatch.setenv("RESIDENCY_AUDIT", url)
        res = rs.Residency.load(storage=_memory)
        _put_and_close(res)
        result = verify_log(url)
        assert result.ok and result.events >= 4, result.to_dict()  # intent, put, decision
        assert result.outcome_unknown == ()
        assert not (state / "audit.db").exists()
    finally:
        postgres_server.drop_database(url)


def test_audit_false_records_that_audit_was_switched_off(state: Path) -> None:
    res = rs.Residency.load(storage=_memory, audit=False, audit_off_reason="load test")
    assert res.audit_sinks == ()
    _put_and_close(res)
    events = list(audit_log_events(state / "audit.db"))
    [off] = events  # the record of the switch, and nothing after it
    assert (off.operation, off.outcome) == ("audit_off", "ok")
    assert off.actor and any("load test" in r for r in off.reasons)
    assert any(r.startswith("pid ") for r in off.reasons)
    assert any(r.startswith("host ") for r in off.reasons)
    assert off.time <= datetime.now(UTC)


def test_audit_false_fails_when_even_that_cannot_be_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("RESIDENCY_STATE_DIR", str(blocker / "state"))
    monkeypatch.delenv("RESIDENCY_AUDIT", raising=False)
    with pytest.raises(AuditUnavailable, match="RESIDENCY_STATE_DIR"):
        rs.Residency.load(storage=_memory, audit=False)
    # ... and a misconfigured sink fails at load, not at the first operation.
    with pytest.raises(AuditUnavailable, match="state folder"):
        rs.Residency.load(storage=_memory)


def test_a_sink_passed_in_is_used_and_flushed_not_closed(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "mine.db") as log:
        res = rs.Residency.load(storage=_memory, audit=log)
        assert res.audit_sinks == (log,)
        _put_and_close(res)
        log.append(AuditEvent(operation="placement", outcome="allowed"))  # still open
    assert ("put", "ok") in _ops(tmp_path / "mine.db", object_key="scan.dcm")
    # Any object with append(event) is accepted as well (a hook-like sink).
    seen: list[AuditEvent] = []
    res = rs.Residency.load(storage=_memory, audit=seen)
    _put_and_close(res)
    assert ("put", "intent") in [(e.operation, e.outcome) for e in seen]


# --- the command line --------------------------------------------------------------------


def test_cli_put_get_ls_rm_are_audited_by_default(tmp_path: Path) -> None:
    root, src, out = tmp_path / "root", tmp_path / "scan.dcm", tmp_path / "back.dcm"
    src.write_bytes(b"phi from the command line")
    who = ["--tenant", DE.id, "--country", "DE", "--local-root", str(root)]
    for args in (["put", "scan.dcm", str(src)], ["get", "scan.dcm", "--out", str(out)],
                 ["ls"], ["rm", "scan.dcm"]):
        result = runner.invoke(app, [*args, *who])
        assert result.exit_code == 0, result.output
    log = root / ".residency-state" / "audit.db"
    ops = _ops(log, tenant_id=DE.id, actor="cli")
    for op in ("put", "get", "head", "list", "delete"):
        assert (op, "intent") in ops and (op, "ok") in ops, (op, ops)
    assert verify_log(log).outcome_unknown == ()


def test_cli_audit_option_and_no_audit(tmp_path: Path) -> None:
    root, src = tmp_path / "root", tmp_path / "scan.dcm"
    src.write_bytes(b"phi")
    who = ["--tenant", DE.id, "--country", "DE", "--local-root", str(root)]
    chosen = tmp_path / "chosen.db"
    result = runner.invoke(app, ["put", "scan.dcm", str(src), *who, "--audit", str(chosen)])
    assert result.exit_code == 0, result.output
    assert ("put", "ok") in _ops(chosen, object_key="scan.dcm")
    result = runner.invoke(app, ["rm", "scan.dcm", *who, "--no-audit", "--json"])
    assert result.exit_code == 0, result.output
    [off] = list(audit_log_events(root / ".residency-state" / "audit.db"))
    assert off.operation == "audit_off"
    assert any("residency rm" in r and "--no-audit" in r for r in off.reasons)
    both = runner.invoke(app, ["ls", *who, "--audit", str(chosen), "--no-audit"])
    assert both.exit_code == 2
    # A decision from the command line is audited too.
    result = runner.invoke(app, ["transfer", "check", "--country", "DE", "--to", "US",
                                 "--audit", str(chosen)])
    assert result.exit_code == 1  # blocked
    assert ("transfer_check", "blocked") in _ops(chosen, tenant_id="cli")


def _backdate(root: Path, hours: float) -> None:
    for meta in root.rglob("@meta"):
        doc = json.loads(meta.read_text())
        created = datetime.fromisoformat(doc["metadata"]["residency_created_at"])
        doc["metadata"]["residency_created_at"] = (created - timedelta(hours=hours)).isoformat()
        meta.write_text(json.dumps(doc))


def test_cli_retention_sweep_and_erasure_run_audit_by_default(tmp_path: Path) -> None:
    root, state = tmp_path / "root", tmp_path / "state"
    res = rs.Residency.load(local_root=root, audit=False)
    store = res.storage_for(DE)
    store.put("uploads/old.dcm", b"img", metadata={CATEGORY_META: "imaging_upload"})
    store.put("records/keep.pdf", b"pdf")
    res.close()
    _backdate(root, 25)
    log = root / ".residency-state" / "audit.db"
    swept = runner.invoke(app, ["retention", "sweep", "--location", "DE", "--local-root",
                                str(root), "--state-dir", str(state), "--json"])
    assert swept.exit_code == 0, swept.output
    assert _ops(log, operation="retention_delete") == [("retention_delete", "intent"),
                                                        ("retention_delete", "ok")]
    requested = runner.invoke(app, ["erasure", "request", "--tenant", DE.id, "--country",
                                    "DE", "--local-root", str(root), "--state-dir",
                                    str(state), "--json"])
    assert requested.exit_code == 0, requested.output
    request_id = json.loads(requested.output)["request"]["id"]
    ran = runner.invoke(app, ["erasure", "run", request_id, "--local-root", str(root),
                              "--state-dir", str(state), "--json"])
    assert ran.exit_code == 0, ran.output
    erase = _ops(log, operation="erase")
    assert erase[0] == ("erase", "intent") and ("erase", "ok") in erase
    result = verify_log(log)
    assert result.ok and result.outcome_unknown == ()
