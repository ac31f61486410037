"""Every command honours the settings (residency.toml, [tool.residency], RESIDENCY_*) and
the global --config option; options beat variables, which beat the file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from residency_sdk.cli import app

runner = CliRunner()


def invoke(*args: str, **kwargs: Any) -> Any:
    return runner.invoke(app, list(args), **kwargs)


def overlay(folder: Path, name: str) -> Path:
    """A region map named ``name`` (the packaged one, renamed) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(f"extends: default\nname: {name}\n", encoding="utf-8")
    return path


def map_name(*args: str, **kwargs: Any) -> str:
    result = invoke(*args, "map", "show", "--json", **kwargs)
    assert result.exit_code == 0, result.output
    return str(json.loads(result.stdout)["name"])


def test_config_option_sets_the_map_relative_to_the_file(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.chdir(tmp_path)  # no residency.toml or pyproject.toml here
    overlay(tmp_path / "conf", "from-file")
    config = tmp_path / "conf" / "residency.toml"
    config.write_text('map = "from-file.yaml"\n', encoding="utf-8")
    assert map_name() == "default"
    assert map_name("--config", str(config)) == "from-file"
    # The option applies to this run only.
    assert "RESIDENCY_CONFIG" not in os.environ
    assert map_name() == "default"


def test_option_beats_variable_beats_file(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "residency.toml").write_text(
        f'map = "{overlay(tmp_path, "from-file")}"\n', encoding="utf-8")
    assert map_name() == "from-file"  # ./residency.toml is read
    monkeypatch.setenv("RESIDENCY_MAP", str(overlay(tmp_path, "from-env")))
    assert map_name() == "from-env"
    result = invoke("map", "show", "--json", "--map", str(overlay(tmp_path, "from-option")))
    assert json.loads(result.stdout)["name"] == "from-option"


def test_pyproject_table_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text(
        f'[project]\nname = "x"\n\n[tool.residency]\nmap = "{overlay(tmp_path, "pyproj")}"\n',
        encoding="utf-8")
    assert map_name() == "pyproj"


def test_local_root_audit_and_state_dir_from_the_config(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RESIDENCY_STATE_DIR", raising=False)
    config = tmp_path / "residency.toml"
    config.write_text('local_root = "data"\naudit = "trail/audit.db"\nstate_dir = "state"\n',
                      encoding="utf-8")
    (tmp_path / "trail").mkdir()
    stored = invoke("put", "scan.dcm", "-", "-t", "c1", "-c", "DE", input=b"bytes")
    assert stored.exit_code == 0, stored.output
    assert list((tmp_path / "data").rglob("*")), "the object went to the configured root"
    listed = invoke("ls", "-t", "c1", "-c", "DE", "--json")
    assert [o["key"] for o in json.loads(listed.stdout)["objects"]] == ["scan.dcm"]
    verified = invoke("audit", "verify", str(tmp_path / "trail" / "audit.db"), "--json")
    assert verified.exit_code == 0 and json.loads(verified.stdout)["events"] >= 2
    request = invoke("erasure", "request", "-t", "c1", "-c", "DE", "--json")
    assert request.exit_code == 0, request.output
    request_id = json.loads(request.stdout)["request"]["id"]
    assert list((tmp_path / "state").rglob(f"*{request_id}*"))
    status = invoke("erasure", "status", "--json")
    assert [r["id"] for r in json.loads(status.stdout)["requests"]] == [request_id]


def test_keys_take_the_local_root_from_the_environment(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    root = tmp_path / "root"
    assert invoke("put", "k", "-", "-t", "c1", "-c", "DE", "--local-root", str(root),
                  input=b"x").exit_code == 0
    monkeypatch.setenv("RESIDENCY_LOCAL_ROOT", str(root))
    listed = invoke("keys", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)["keyring"]["location"] == "DE"


def test_a_bad_config_is_a_usage_error_naming_the_setting(tmp_path: Path) -> None:
    config = tmp_path / "residency.toml"
    config.write_text('mapp = "x.yaml"\n', encoding="utf-8")
    result = invoke("--config", str(config), "resolve", "--country", "DE")
    assert result.exit_code == 2
    assert "'mapp'" in result.stderr and "did you mean 'map'" in result.stderr
    assert "Traceback" not in result.output


def test_a_missing_config_file_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke("--config", str(tmp_path / "none.toml"), "resolve", "--country", "DE")
    assert result.exit_code == 2 and "does not exist" in result.stderr
