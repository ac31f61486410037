"""Settings: RESIDENCY_* variables, residency.toml and [tool.residency], in that order.

Every test works in its own folder (``monkeypatch.chdir``) with real files, and starts
from an environment without any ``RESIDENCY_*`` setting, so what it asserts comes only
from what it wrote.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import residency_sdk as rs
from residency_sdk.config import Settings, load_settings
from residency_sdk.erasure import audit_log_events
from residency_sdk.errors import ConfigError, InputError

SETTINGS = ("MAP", "AUDIT", "LOCAL_ROOT", "STATE_DIR", "AUDIT_ANCHORS", "CONFIG")


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory and no RESIDENCY_* setting in the environment."""
    for name in SETTINGS:
        monkeypatch.delenv(f"RESIDENCY_{name}", raising=False)
    work = tmp_path / "project"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def _pyproject(folder: Path, body: str) -> None:
    (folder / "pyproject.toml").write_text(
        '[project]\nname = "app"\nversion = "1"\n\n[tool.residency]\n' + body,
        encoding="utf-8")


def test_defaults_are_unset(folder: Path) -> None:
    settings = load_settings()
    assert isinstance(settings, Settings)
    assert settings.model_dump() == {"map": None, "audit": None, "local_root": None,
                                     "state_dir": None, "audit_anchors": None}


def test_precedence_argument_env_residency_toml_pyproject_default(
        folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _pyproject(folder, 'map = "/p/map.yaml"\naudit = "/p/audit.db"\n'
                       'local_root = "/p/root"\nstate_dir = "/p/state"\n')
    (folder / "residency.toml").write_text(
        'map = "/t/map.yaml"\naudit = "/t/audit.db"\nlocal_root = "/t/root"\n',
        encoding="utf-8")
    monkeypatch.setenv("RESIDENCY_MAP", "/e/map.yaml")
    monkeypatch.setenv("RESIDENCY_AUDIT", "/e/audit.db")

    settings = load_settings(map=Path("/a/map.yaml"))
    assert settings.map == Path("/a/map.yaml")  # argument beats everything
    assert settings.audit == "/e/audit.db"  # environment beats the files
    assert settings.local_root == Path("/t/root")  # residency.toml beats pyproject
    assert settings.state_dir == Path("/p/state")  # pyproject beats the default
    assert settings.audit_anchors is None  # nobody set it

    # Each layer removed in turn uncovers the next one.
    assert load_settings().map == Path("/e/map.yaml")
    monkeypatch.delenv("RESIDENCY_MAP")
    assert load_settings().map == Path("/t/map.yaml")
    (folder / "residency.toml").unlink()
    assert load_settings().map == Path("/p/map.yaml")
    (folder / "pyproject.toml").unlink()
    assert load_settings().map is None


def test_the_audit_url_stays_out_of_the_repr(folder: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESIDENCY_AUDIT", "postgresql://audit:hunter2@db.internal/residency")
    settings = load_settings()
    assert settings.audit is not None and "hunter2" in settings.audit
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)


def test_an_empty_variable_counts_as_unset(folder: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    (folder / "residency.toml").write_text('audit = "/t/audit.db"\n', encoding="utf-8")
    monkeypatch.setenv("RESIDENCY_AUDIT", "")
    assert load_settings().audit == "/t/audit.db"


def test_config_file_argument_and_residency_config_replace_the_local_file(
        folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (folder / "residency.toml").write_text('map = "/cwd.yaml"\n', encoding="utf-8")
    named = tmp_path / "elsewhere" / "team.toml"
    named.parent.mkdir()
    named.write_text('map = "/named.yaml"\n', encoding="utf-8")
    other = tmp_path / "other.toml"
    other.write_text('map = "/other.yaml"\n', encoding="utf-8")

    monkeypatch.setenv("RESIDENCY_CONFIG", str(named))
    assert load_settings().map == Path("/named.yaml")
    assert load_settings(other).map == Path("/other.yaml")  # the argument beats the variable
    monkeypatch.delenv("RESIDENCY_CONFIG")
    assert load_settings().map == Path("/cwd.yaml")


def test_a_named_config_file_must_exist(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml.*config_file"):
        load_settings(folder / "missing.toml")
    monkeypatch.setenv("RESIDENCY_CONFIG", str(folder / "gone.toml"))
    with pytest.raises(ConfigError, match=r"gone\.toml.*RESIDENCY_CONFIG"):
        load_settings()


def test_settings_are_read_afresh_on_every_call(folder: Path) -> None:
    config = folder / "residency.toml"
    config.write_text('state_dir = "/one"\n', encoding="utf-8")
    assert load_settings().state_dir == Path("/one")
    config.write_text('state_dir = "/two"\n', encoding="utf-8")
    assert load_settings().state_dir == Path("/two")


def test_relative_paths_in_a_file_are_relative_to_that_file(
        folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    config = conf_dir / "residency.toml"
    config.write_text('map = "maps/eu.yaml"\naudit = "logs/audit.db"\n'
                      'local_root = "../data"\nstate_dir = "state"\n'
                      'audit_anchors = ["anchors", "s3://bucket/p?region=eu-central-1"]\n',
                      encoding="utf-8")
    monkeypatch.setenv("RESIDENCY_CONFIG", str(config))
    settings = load_settings()  # the working directory is ``folder``, not ``conf``
    assert settings.map == conf_dir / "maps" / "eu.yaml"
    assert settings.audit == str(conf_dir / "logs" / "audit.db")
    assert settings.local_root == conf_dir / ".." / "data"
    assert settings.state_dir == conf_dir / "state"
    # A folder anchor resolves too; a URL stays as written.
    assert settings.audit_anchors == f"{conf_dir / 'anchors'},s3://bucket/p?region=eu-central-1"

    _pyproject(folder, 'map = "maps/pp.yaml"\n')
    monkeypatch.delenv("RESIDENCY_CONFIG")
    assert load_settings().map == folder / "maps" / "pp.yaml"


def test_urls_and_absolute_paths_are_kept_and_env_paths_are_as_given(
        folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (folder / "residency.toml").write_text(
        'audit = "postgresql://audit@db.internal/residency"\nmap = "/abs/map.yaml"\n',
        encoding="utf-8")
    settings = load_settings()
    assert settings.audit == "postgresql://audit@db.internal/residency"
    assert settings.map == Path("/abs/map.yaml")
    monkeypatch.setenv("RESIDENCY_STATE_DIR", "relative/state")
    assert load_settings().state_dir == Path("relative/state")  # the caller's cwd decides


def test_an_unknown_key_names_the_key_the_file_and_a_close_match(folder: Path) -> None:
    config = folder / "residency.toml"
    config.write_text('map = "m.yaml"\nlocal-root = "/data"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_settings()
    message = str(err.value)
    assert str(config) in message and "'local-root'" in message
    assert "did you mean 'local_root'" in message
    assert err.value.key == "local-root" and err.value.file == str(config)
    assert isinstance(err.value, InputError) and isinstance(err.value, rs.ResidencyError)


def test_an_unknown_key_in_tool_residency_is_refused_too(folder: Path) -> None:
    _pyproject(folder, 'audti = "/x.db"\n')
    with pytest.raises(ConfigError, match=r"pyproject\.toml.*unknown setting 'audti' in "
                                          r"\[tool\.residency\].*did you mean 'audit'"):
        load_settings()


def test_other_tables_of_pyproject_are_not_ours(folder: Path) -> None:
    (folder / "pyproject.toml").write_text(
        '[project]\nname = "app"\n[tool.ruff]\nline-length = 100\n', encoding="utf-8")
    assert load_settings().map is None


def test_malformed_toml_names_the_file_and_the_line(folder: Path) -> None:
    config = folder / "residency.toml"
    config.write_text('map = "m.yaml"\naudit = /no/quotes\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"residency\.toml: malformed TOML: .*line 2"):
        load_settings()
    config.unlink()
    (folder / "pyproject.toml").write_text('[tool.residency\nmap = "x"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"pyproject\.toml: malformed TOML: .*line 1"):
        load_settings()


@pytest.mark.parametrize("body", ['map = 3\n', 'state_dir = ""\n', 'audit = ["a"]\n',
                                  'audit_anchors = [1]\n'])
def test_a_value_of_the_wrong_type_names_the_key(folder: Path, body: str) -> None:
    (folder / "residency.toml").write_text(body, encoding="utf-8")
    key = body.split(" ", 1)[0]
    with pytest.raises(ConfigError, match=rf"residency\.toml: {key} = .*expected") as err:
        load_settings()
    assert err.value.key == key


def test_tool_residency_that_is_not_a_table(folder: Path) -> None:
    (folder / "pyproject.toml").write_text('[tool]\nresidency = "yes"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[tool\.residency\] must be a table"):
        load_settings()


# --- the SDK honours the settings ------------------------------------------------------


def _routing_map(folder: Path, name: str) -> Path:
    """An overlay of the default map that routes France to Germany."""
    path = folder / f"{name}.yaml"
    path.write_text(f"extends: default\nname: {name}\nroutes:\n  FR: DE\n", encoding="utf-8")
    return path


def _loaded(path: Path | None = None) -> rs.Residency:
    return rs.Residency.load(path, audit=False)


def test_load_uses_the_configured_map_else_the_packaged_one(
        folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    france = rs.Tenant(id="clinic-fr", country="FR")
    res = _loaded()
    assert res.map.name == "default" and res.resolve(france).location == "FR"
    res.close()

    _routing_map(folder, "from-file")
    (folder / "residency.toml").write_text('map = "from-file.yaml"\n', encoding="utf-8")
    res = _loaded()
    assert res.map.name == "from-file" and res.resolve(france).location == "DE"
    res.close()

    env_map = _routing_map(folder, "from-env")
    monkeypatch.setenv("RESIDENCY_MAP", str(env_map))
    res = _loaded(None)  # None means "not given"
    assert res.map.name == "from-env"
    res.close()

    res = _loaded(_routing_map(folder, "explicit"))
    assert res.map.name == "explicit"  # the argument wins
    res.close()


def test_a_bad_config_file_stops_load_with_its_error(folder: Path) -> None:
    (folder / "residency.toml").write_text('mapp = "x.yaml"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="did you mean 'map'"):
        rs.Residency.load(audit=False)


def test_load_opens_the_configured_audit_sink_and_state_folder(
        folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESIDENCY_STATE_DIR", raising=False)
    (folder / "residency.toml").write_text('state_dir = "state"\n', encoding="utf-8")
    tenant = rs.Tenant(id="clinic-de", country="DE")
    res = rs.Residency.load()
    res.check_transfer(tenant, "US")
    res.close()
    assert _operations(folder / "state" / "audit.db") == ["transfer_check"]  # next to the file

    (folder / "residency.toml").write_text('state_dir = "state"\naudit = "chosen.db"\n',
                                           encoding="utf-8")
    res = rs.Residency.load()
    res.check_transfer(tenant, "US")
    res.close()
    assert _operations(folder / "chosen.db") == ["transfer_check"]
    assert _operations(folder / "state" / "audit.db") == ["transfer_check"]  # unchanged


def _operations(log: Path) -> list[str]:
    return [event.operation for event in audit_log_events(log)]


def test_load_uses_the_configured_local_root(folder: Path) -> None:
    (folder / "residency.toml").write_text('local_root = "data"\n', encoding="utf-8")
    tenant = rs.Tenant(id="clinic-de", country="DE")
    res = rs.Residency.load(audit=False)
    assert res.local_root == folder / "data"
    res.storage_for(tenant).put("scan.dcm", b"bytes")
    res.close()
    stored = [p for p in (folder / "data").rglob("*scan.dcm*")
              if ".residency-state" not in p.parts]
    assert stored, "the object went under the configured root"
    res = rs.Residency.load(audit=False)  # a new client reads it back from there
    assert res.storage_for(tenant).get("scan.dcm") == b"bytes"
    res.close()


def test_a_custom_storage_opener_is_not_overridden_by_the_local_root_setting(
        folder: Path) -> None:
    from residency_sdk.storage.memory import MemoryStore

    (folder / "residency.toml").write_text('local_root = "data"\n', encoding="utf-8")
    res = rs.Residency.load(audit=False, storage=lambda target, location: MemoryStore(target))
    assert res.local_root is None
    res.storage_for(rs.Tenant(id="clinic-de", country="DE")).put("k", b"v")
    res.close()
    # Only the state folder (the audit_off record) is there: no object went to disk.
    assert [p.name for p in (folder / "data").iterdir()] == [".residency-state"]


def test_import_residency_sdk_does_not_import_pydantic_settings() -> None:
    code = ("import sys, residency_sdk, residency_sdk.client;"
            "assert 'pydantic_settings' not in sys.modules, 'pydantic_settings imported';"
            "assert 'residency_sdk.config' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("where", ["env", "file"])
def test_the_configured_state_dir_keeps_tracked_erasures_beside_the_audit_log(
        folder: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    # Both settings given: the state folder is the one named, for the default audit log
    # and for tracked erasure requests alike (not <local_root>/.residency-state).
    if where == "env":
        monkeypatch.setenv("RESIDENCY_STATE_DIR", str(folder / "state"))
        monkeypatch.setenv("RESIDENCY_LOCAL_ROOT", str(folder / "data"))
    else:
        (folder / "residency.toml").write_text('state_dir = "state"\nlocal_root = "data"\n',
                                               encoding="utf-8")
    res = rs.Residency.load()
    assert res.state_dir == folder / "state"
    tenant = rs.Tenant(id="clinic-de", country="DE")
    res.storage_for(tenant).put("scan.dcm", b"bytes", "personal")
    receipt = res.erase(tenant, reason="patient request", actor="dpo")
    assert receipt.status == "completed"
    assert list((folder / "state").iterdir()) != []
    assert not (folder / "data" / ".residency-state").exists()
    res.close()
    assert "erase" in _operations(folder / "state" / "audit.db")


def test_an_explicit_local_root_still_wins_over_the_state_dir_setting(
        folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESIDENCY_STATE_DIR", str(folder / "state"))
    res = rs.Residency.load(local_root=folder / "mine", audit=False)
    assert res.state_dir == folder / "mine" / ".residency-state"
    res.close()
