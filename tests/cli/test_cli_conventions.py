"""CLI conventions: --version, --output json|table beside --json, exit codes by error kind
(0 ok, 1 blocked, 2 usage, 3 backend or I/O), one-line errors, human dates."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from residency_sdk._version import __version__
from residency_sdk.cli import app
from residency_sdk.cli.common import (
    EXIT_BACKEND,
    EXIT_BLOCKED,
    EXIT_OK,
    EXIT_USAGE,
    exit_code_for,
)
from residency_sdk.errors import (
    AccessDenied,
    BucketNotFound,
    ChainRefused,
    EgressBlocked,
    ErasureBlocked,
    ErasureUnavailable,
    InvalidCountry,
    InvalidKey,
    ObjectNotFound,
    ReadInterrupted,
    ResidencyViolation,
)

runner = CliRunner()


def invoke(*args: str, **kwargs: Any) -> Any:
    return runner.invoke(app, list(args), **kwargs)


def one_line_error(text: str) -> str:
    """The error line of stderr, checked to be the only line and no traceback."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def test_version_prints_the_package_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"residency-sdk {__version__}"


def _leaf_commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    group = isinstance(command, typer.core.TyperGroup)
    if not group:
        return [(" ".join(path), command)]
    found = []
    for name in command.list_commands(None):
        found += _leaf_commands(command.get_command(None, name), (*path, name))
    return found


def test_every_command_with_json_takes_output_too() -> None:
    leaves = _leaf_commands(typer.main.get_command(app))
    with_json = [(name, cmd) for name, cmd in leaves
                 if any("--json" in p.opts for p in cmd.params)]
    assert len(with_json) >= 25  # the walk really reached the command modules
    for name, cmd in with_json:
        output = [p for p in cmd.params if "--output" in p.opts]
        assert output, f"`residency {name}` has --json but no --output"


def test_output_json_is_json_and_table_is_the_default() -> None:
    as_flag = invoke("resolve", "--country", "DE", "--json")
    as_option = invoke("resolve", "--country", "DE", "--output", "json")
    assert as_flag.exit_code == as_option.exit_code == 0
    assert json.loads(as_option.stdout) == json.loads(as_flag.stdout)
    table = invoke("resolve", "--country", "DE", "--output", "table")
    assert table.exit_code == 0 and "location DE" in table.stdout
    assert table.stdout == invoke("resolve", "--country", "DE").stdout
    # --json with --output json is not a contradiction.
    assert invoke("resolve", "--country", "DE", "--json", "--output", "json").exit_code == 0


@pytest.mark.parametrize("args", [["--json", "--output", "table"], ["--output", "yaml"]])
def test_contradicting_or_unknown_output_is_a_usage_error(args: list[str]) -> None:
    result = invoke("resolve", "--country", "DE", *args)
    assert result.exit_code == EXIT_USAGE
    assert "--output" in result.stderr and "Traceback" not in result.stderr


def test_exit_0_ok_and_1_blocked() -> None:
    assert invoke("resolve", "--country", "DE").exit_code == EXIT_OK
    blocked = invoke("transfer", "check", "-c", "DE", "--to", "US", "-d", "phi")
    assert blocked.exit_code == EXIT_BLOCKED and "BLOCKED" in blocked.stdout


@pytest.mark.parametrize("args", [
    ["resolve"],  # a required option missing (click's own usage error)
    ["resolve", "--country", "DE", "--bogus"],
    ["resolve", "--country", "XX"],  # not a country: bad input
    ["transfer", "check", "-c", "DE", "--to", "US", "-d", "personl"],
    ["resolve", "--country", "DE", "--map", "/nonexistent/map.yaml"],
    ["transfer", "check", "-c", "DE", "--to", "US", "--at", "not-a-date"],
])
def test_exit_2_usage(args: list[str]) -> None:
    result = invoke(*args)
    assert result.exit_code == EXIT_USAGE, result.output
    assert "Traceback" not in result.output


def test_exit_2_names_the_bad_value_in_one_line() -> None:
    result = invoke("resolve", "--country", "XX")
    assert "'XX'" in one_line_error(result.stderr)


def test_a_directory_where_a_file_is_expected_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke("map", "validate", str(tmp_path))
    said = " ".join(result.stderr.replace("│", " ").split())
    assert result.exit_code == EXIT_USAGE and "is a directory" in said


def test_exit_3_out_into_a_missing_folder_is_one_clean_line(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "schema.json"
    result = invoke("map", "schema", "--out", str(target))
    assert result.exit_code == EXIT_BACKEND
    line = one_line_error(result.stderr)
    assert str(target) in line and "No such file or directory" in line
    assert not target.parent.exists()


def test_exit_3_get_out_into_a_missing_folder(tmp_path: Path) -> None:
    root = str(tmp_path / "root")
    stored = invoke("put", "k", "-", "-t", "c1", "-c", "DE", "--local-root", root,
                    input=b"data")
    assert stored.exit_code == 0, stored.output
    target = tmp_path / "nope" / "k.bin"
    result = invoke("get", "k", "-t", "c1", "-c", "DE", "--local-root", root, "--out",
                    str(target), "--json")
    assert result.exit_code == EXIT_BACKEND
    body = json.loads(result.stdout)
    assert body["ok"] is False and str(target.parent) in body["error"]


def test_exit_3_unreachable_audit_sink() -> None:
    # Nothing listens on port 1 of the loopback: the sink cannot be opened.
    result = invoke("resolve", "--country", "DE", "--audit",
                    "postgresql://residency@127.0.0.1:1/audit")
    assert result.exit_code == EXIT_BACKEND
    assert "unreachable" in one_line_error(result.stderr)


def test_exit_3_unwritable_state_for_the_default_sink(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("RESIDENCY_STATE_DIR", str(blocker / "state"))
    result = invoke("resolve", "--country", "DE")
    assert result.exit_code == EXIT_BACKEND, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("error, code", [
    (EgressBlocked("blocked", url="https://x.example", host="x.example"), EXIT_BLOCKED),
    (ResidencyViolation("bucket in the wrong region"), EXIT_BLOCKED),
    (ObjectNotFound("k", "tenant c"), EXIT_BLOCKED),
    (ErasureBlocked("held"), EXIT_BLOCKED),
    (ChainRefused("rolled back"), EXIT_BLOCKED),
    (InvalidCountry("XX"), EXIT_USAGE),
    (InvalidKey("../x"), EXIT_USAGE),
    (BucketNotFound("no bucket"), EXIT_USAGE),
    (ReadInterrupted("reset"), EXIT_BACKEND),
    (ErasureUnavailable("down"), EXIT_BACKEND),
    (AccessDenied("403"), EXIT_BACKEND),
    (PermissionError(13, "Permission denied", "/x"), EXIT_BACKEND),
])
def test_exit_code_table(error: BaseException, code: int) -> None:
    assert exit_code_for(error) == code


def test_human_dates_where_the_cli_takes_dates(tmp_path: Path) -> None:
    today = invoke("transfer", "check", "-c", "DE", "--to", "FR", "-d", "phi", "--at",
                   "today", "--json")
    assert today.exit_code == 0 and json.loads(today.stdout)["ok"] is True
    request = invoke("erasure", "request", "-t", "c1", "-c", "DE", "--terminated",
                     "yesterday", "--local-root", str(tmp_path / "root"), "--state-dir",
                     str(tmp_path / "state"), "--json")
    assert request.exit_code == 0, request.output
    body = json.loads(request.stdout)["request"]
    # yesterday: the first instant of the day before the request was made (UTC).
    requested = datetime.fromisoformat(body["requested_at"])
    terminated = datetime.fromisoformat(body["terminated_at"])
    assert terminated == datetime.combine(requested.date() - timedelta(days=1), time(),
                                          tzinfo=UTC)
