"""Lazy command modules: a command imports its own module only; help and shell completion
still list (and load) every command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import typer
from typer.testing import CliRunner

from residency_sdk.cli import app
from residency_sdk.cli.app import COMMAND_MODULES, _module_commands

# Run the CLI in a fresh interpreter and report, at exit, the modules it imported.
_WRAPPER = """
import atexit, json, sys
REPORT = sys.argv[1]
def _report():
    with open(REPORT, "w") as fh:
        json.dump(sorted(sys.modules), fh)
atexit.register(_report)
sys.argv = ["residency", *sys.argv[2:]]
from residency_sdk.cli import main
main()
"""

HEAVY = ("jinja2", "cryptography", "httpx", "boto3", "botocore", "azure", "google",
         "s3transfer", "pydicom", "weasyprint")


def imported_by(tmp_path: Path, *args: str) -> tuple[int, set[str]]:
    """Exit code and imported modules of ``residency ARGS`` in a new process."""
    report = tmp_path / "modules.json"
    env = {**os.environ, "RESIDENCY_STATE_DIR": str(tmp_path / "state")}
    result = subprocess.run([sys.executable, "-c", _WRAPPER, str(report), *args],
                            capture_output=True, text=True, check=False, env=env,
                            cwd=tmp_path)
    assert report.exists(), result.stderr
    return result.returncode, set(json.loads(report.read_text()))


def test_resolve_imports_only_its_own_command_module(tmp_path: Path) -> None:
    code, modules = imported_by(tmp_path, "resolve", "--country", "DE", "--json")
    assert code == 0
    cli_modules = {m.rsplit(".", 1)[1] for m in modules if m.startswith("residency_sdk.cli.")}
    assert "core" in cli_modules  # the command ran from its module
    others = set(COMMAND_MODULES.values()) - {"core"}
    assert not cli_modules & (others | {"audit_report", "report_seal"}), cli_modules
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert heavy == []
    # JSON output needs no rich console (people's output does: see the next test).
    assert not any(m.split(".")[0] == "rich" for m in modules)


def test_output_for_people_uses_rich(tmp_path: Path) -> None:
    code, modules = imported_by(tmp_path, "resolve", "--country", "DE")
    assert code == 0 and "rich.console" in modules
    assert "residency_sdk.cli.audit" not in modules


def test_another_command_loads_its_module_not_resolves(tmp_path: Path) -> None:
    code, modules = imported_by(tmp_path, "egress", "allowlist")
    assert code == 0
    assert "residency_sdk.cli.egress" in modules
    # egress reuses core's helpers, but nothing of audit, infra, storage or deid.
    for name in ("audit", "infra", "storage", "deid", "retention", "keys", "demo"):
        assert f"residency_sdk.cli.{name}" not in modules


def test_the_registry_names_every_command_each_module_registers() -> None:
    for module in set(COMMAND_MODULES.values()):
        for name in _module_commands(module):
            assert COMMAND_MODULES.get(name) == module, (module, name)
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    for name in group.list_commands(None):
        assert group.get_command(None, name) is not None, name


def test_help_lists_every_command(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run([sys.executable, "-m", "residency_sdk.cli", "--help"],
                            capture_output=True, text=True, check=False, env=env)
    assert result.returncode == 0, result.stderr
    listed = {line.strip("│ ").split(" ")[0] for line in result.stdout.splitlines()}
    assert set(COMMAND_MODULES) <= listed


def test_shell_completion_offers_every_command(tmp_path: Path) -> None:
    env = {**os.environ, "_RESIDENCY_COMPLETE": "complete_bash", "COMP_WORDS": "residency ",
           "COMP_CWORD": "1"}
    result = subprocess.run([sys.executable, "-c", "from residency_sdk.cli import main; main()"],
                            capture_output=True, text=True, check=False, env=env)
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == set(COMMAND_MODULES)
    # A sub-command's options complete too (its module is loaded for it).
    env.update(COMP_WORDS="residency audit verify --", COMP_CWORD="3")
    result = subprocess.run([sys.executable, "-c", "from residency_sdk.cli import main; main()"],
                            capture_output=True, text=True, check=False, env=env)
    assert "--anchors" in result.stdout.split() and "--output" in result.stdout.split()


def test_show_completion_prints_a_script() -> None:
    result = subprocess.run([sys.executable, "-m", "residency_sdk.cli", "--show-completion",
                             "bash"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "_RESIDENCY_COMPLETE" in result.stdout.upper()


def test_a_misspelt_command_is_a_usage_error_with_a_suggestion() -> None:
    result = CliRunner().invoke(app, ["reslove", "--country", "DE"])
    assert result.exit_code == 2 and "Did you mean 'resolve'" in result.stderr
