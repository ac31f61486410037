"""`residency erasure request|run|status` (issue 13, point 4 and the termination deadline):
a request carries the options it was made with, so `erasure run ID` needs only the state
folder; every hint the CLI prints can be pasted back as it is; `status` shows what is
left against the deadline and `--fail-on-overdue` gives cron a non-zero exit."""

from __future__ import annotations

import json
import re
import shlex
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

import residency_sdk as rs
from residency_sdk.cli.app import app
from residency_sdk.erasure import audit_log_events, verify_receipt
from residency_sdk.marks import LEGAL_HOLD_META

runner = CliRunner()


def _seed(root: Path, tenant_id: str, *, held: bool = False) -> rs.Residency:
    res = rs.Residency.load(local_root=root, audit=False)
    store = res.storage_for(rs.Tenant(id=tenant_id, country="DE"))
    store.put("studies/1.dcm", b"img", data_class="phi")
    if held:
        store.put("studies/held.dcm", b"kept", data_class="phi",
                  metadata={LEGAL_HOLD_META: "true"})
    return res


def _hint(output: str) -> list[str]:
    """The `residency erasure run ...` command the CLI told the user to run, as argv."""
    found = re.search(r"`(residency erasure run [^`]+)`", output)
    assert found, output
    argv = shlex.split(found.group(1))
    assert argv[:3] == ["residency", "erasure", "run"]
    return argv[1:]


def test_run_needs_nothing_but_the_state_dir(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # As in the issue: `--local-root ./data` (relative) at request time; the run happens
    # later, elsewhere, with only the command the CLI printed.
    monkeypatch.chdir(tmp_path)
    tenant = f"clinic-{uuid.uuid4().hex[:8]}"
    _seed(tmp_path / "data", tenant).close()
    made = runner.invoke(app, ["erasure", "request", "-t", tenant, "-c", "DE",
                               "--local-root", "./data", "--state-dir", "state"])
    assert made.exit_code == 0, made.output
    argv = _hint(made.output)
    assert "--local-root" not in argv  # the request carries it
    assert str((tmp_path / "state").resolve()) in argv  # relative: made absolute
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    ran = runner.invoke(app, [*argv, "--json"])

    assert ran.exit_code == 0, ran.output
    request = json.loads(ran.output)["request"]
    assert request["status"] == "completed"
    assert request["options"]["local_root"] == str((tmp_path / "data").resolve())
    assert [b["location"] for b in request["backends"].values()] == ["DE"]
    assert not list((tmp_path / "data").rglob(f"tenants/{tenant}/*"))
    # The audit trail is the request's too: <local root>/.residency-state/audit.db.
    audit = tmp_path / "data" / ".residency-state" / "audit.db"
    done = rs.Residency.load(local_root=tmp_path / "data", audit=False).erasure_tracker(
        tmp_path / "state").get(request["id"])
    verify_receipt(done, audit_log_events(audit))


def test_run_with_options_that_contradict_the_request_is_refused(tmp_path: Path) -> None:
    tenant = f"clinic-{uuid.uuid4().hex[:8]}"
    _seed(tmp_path / "data", tenant).close()
    state = tmp_path / "state"
    made = runner.invoke(app, ["erasure", "request", "-t", tenant, "-c", "DE", "--json",
                               "--local-root", str(tmp_path / "data"), "--state-dir",
                               str(state)])
    assert made.exit_code == 0, made.output
    doc = json.loads(made.output)
    request_id = doc["request"]["id"]
    assert _hint(f"`{doc['run']}`") == ["erasure", "run", request_id, "--state-dir",
                                        str(state.resolve())]
    other = tmp_path / "other"
    ran = runner.invoke(app, ["erasure", "run", request_id, "--state-dir", str(state),
                              "--local-root", str(other), "--json"])
    assert ran.exit_code == 1
    error = json.loads(ran.output)["error"]
    assert str(other) in error and str((tmp_path / "data").resolve()) in error
    assert "--local-root" in error  # says what to drop
    assert list((tmp_path / "data").rglob(f"tenants/{tenant}/*"))  # nothing was erased
    other_map = tmp_path / "other.yaml"
    other_map.write_text("extends: default\nname: other\n")
    ran = runner.invoke(app, ["erasure", "run", request_id, "--state-dir", str(state),
                              "--map", str(other_map), "--json"])
    assert ran.exit_code == 1
    assert "--map" in json.loads(ran.output)["error"]
    assert list((tmp_path / "data").rglob(f"tenants/{tenant}/*"))
    # The same local root, spelled differently, is no contradiction.
    ran = runner.invoke(app, ["erasure", "run", request_id, "--state-dir", str(state),
                              "--local-root", str(tmp_path / "data" / ".." / "data"),
                              "--json"])
    assert ran.exit_code == 0, ran.output


def test_status_shows_what_is_left_and_fails_only_when_asked(tmp_path: Path) -> None:
    root, state = tmp_path / "data", tmp_path / "state"
    tenant = f"clinic-{uuid.uuid4().hex[:8]}"
    _seed(root, tenant, held=True).close()
    late = runner.invoke(app, ["erasure", "request", "-t", tenant, "-c", "DE",
                               "--terminated", "2020-01-01", "--local-root", str(root),
                               "--state-dir", str(state), "--json"])
    request_id = json.loads(late.output)["request"]["id"]
    ran = runner.invoke(app, ["erasure", "run", request_id, "--state-dir", str(state)])
    assert ran.exit_code == 1 and "blocked" in ran.output
    assert "held" in ran.output and _hint(ran.output)[2] == request_id  # how to resume

    shown = runner.invoke(app, ["erasure", "status", "--state-dir", str(state), "--json"])
    assert shown.exit_code == 0, shown.output  # overdue alone is not a failure
    [row] = json.loads(shown.output)["requests"]
    assert row["id"] == request_id and row["overdue"] is True and row["days_left"] < 0
    assert row["status"] == "blocked"
    assert [(x["location"], x["status"], x["held"]) for x in row["left"]] == [
        ("DE", "blocked", 1)]
    assert row["keys"] == "pending"
    assert _hint(f"`{row['run']}`")[2] == request_id

    text = runner.invoke(app, ["erasure", "status", "--state-dir", str(state)])
    assert text.exit_code == 0, text.output
    assert "overdue" in text.output and "DE" in text.output and "held" in text.output

    failing = runner.invoke(app, ["erasure", "status", "--state-dir", str(state),
                                  "--fail-on-overdue"])
    assert failing.exit_code == 1, failing.output
    assert "overdue" in failing.output


def test_fail_on_overdue_passes_when_nothing_is_overdue(tmp_path: Path) -> None:
    root, state = tmp_path / "data", tmp_path / "state"
    tenant = f"clinic-{uuid.uuid4().hex[:8]}"
    _seed(root, tenant).close()
    made = runner.invoke(app, ["erasure", "request", "-t", tenant, "-c", "DE",
                               "--local-root", str(root), "--state-dir", str(state)])
    assert made.exit_code == 0, made.output
    ok = runner.invoke(app, ["erasure", "status", "--state-dir", str(state), "--json",
                             "--fail-on-overdue"])
    assert ok.exit_code == 0, ok.output
    [row] = json.loads(ok.output)["requests"]
    assert row["overdue"] is False and row["status"] == "requested"
