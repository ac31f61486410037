"""Settings read the ecosystem way: ``RESIDENCY_*`` variables and a config file.

:func:`load_settings` returns the :class:`Settings` the SDK and every CLI command start
from. Each setting comes from the first of these that gives it:

1. an explicit argument (a CLI option, a keyword of :func:`load_settings`);
2. the environment variable ``RESIDENCY_<NAME>`` (``RESIDENCY_MAP``, ``RESIDENCY_AUDIT``,
   ``RESIDENCY_LOCAL_ROOT``, ``RESIDENCY_STATE_DIR``, ``RESIDENCY_AUDIT_ANCHORS``; an
   empty value counts as unset);
3. ``residency.toml``: the file named by ``config_file``, else ``$RESIDENCY_CONFIG``,
   else ``./residency.toml`` when it exists;
4. the ``[tool.residency]`` table of ``./pyproject.toml``;
5. the built-in default (None: the SDK's own default applies).

A relative path in a config file is relative to that file's folder, not the working
directory, so a checked-in ``residency.toml`` means the same from anywhere. An unknown
key or malformed TOML raises :class:`~residency_sdk.errors.ConfigError` naming the file
(and the key, or the line): a misspelt setting never silently falls back to a default.

This module imports pydantic-settings, so it is imported only where settings are loaded
(``Residency.load`` and the CLI), never by ``import residency_sdk``.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    PyprojectTomlConfigSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from residency_sdk.errors import ConfigError

ENV_PREFIX = "RESIDENCY_"
"""The prefix of every setting's environment variable."""
CONFIG_ENV = "RESIDENCY_CONFIG"
"""Names the ``residency.toml`` to read instead of ``./residency.toml``."""
CONFIG_FILE_NAME = "residency.toml"
"""The config file read from the working directory when nothing else names one."""
PYPROJECT_TABLE = ("tool", "residency")
"""The table of ``./pyproject.toml`` read as settings."""

_PATH_KEYS = frozenset({"map", "local_root", "state_dir"})
"""Settings that are paths: relative values in a file resolve against its folder."""


class Settings(BaseSettings):
    """Where the SDK finds its region map, audit sink and folders. None means "not set":
    the SDK's built-in default applies (see :meth:`residency_sdk.Residency.load`)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="forbid", frozen=True,
        pyproject_toml_table_header=PYPROJECT_TABLE)

    map: Path | None = None
    """The region map file (default: the packaged map)."""
    # Left out of repr: a postgresql:// URL may carry a password.
    audit: str | None = Field(default=None, repr=False)
    """The audit sink: a log file path or a ``postgresql://`` URL (default: ``audit.db``
    in the state folder)."""
    local_root: Path | None = None
    """The folder of the embedded local backend (default: none, the map's backends)."""
    state_dir: Path | None = None
    """The state folder: default audit log, tracked erasures (default:
    ``<local_root>/.residency-state``, else ``${XDG_STATE_HOME:-~/.local/state}/residency-sdk``)."""
    audit_anchors: str | None = None
    """Anchors of the audit sink, comma-separated specs (a folder, ``s3://``, ``gs://``,
    ``azure://``); a list of specs in a config file."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Argument > environment > ``residency.toml`` > ``[tool.residency]``; no
        ``.env`` or secrets folder (nothing the contract does not name)."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = _config_file(_chosen_file.get())
        if config is not None:
            sources.append(_ResidencyToml(settings_cls, config))
        # ./pyproject.toml (pydantic-settings' default place); absent, it gives nothing.
        sources.append(_PyprojectToml(settings_cls))
        return tuple(sources)


_chosen_file: ContextVar[Path | None] = ContextVar("residency_config_file", default=None)
"""The ``config_file`` of the :func:`load_settings` call in progress (a context variable,
so concurrent calls in threads or tasks never see each other's)."""


def load_settings(config_file: Path | None = None, *, map: Path | None = None,
                  audit: str | None = None, local_root: Path | None = None,
                  state_dir: Path | None = None,
                  audit_anchors: str | None = None) -> Settings:
    """The settings now: read afresh on every call (no cache), so a changed variable or
    file is seen by the next call.

    ``config_file`` replaces ``$RESIDENCY_CONFIG`` and ``./residency.toml`` (it must
    exist). The keywords are explicit values (a CLI option): each beats every other
    source; None leaves the setting to the environment and files.

    Raises :class:`~residency_sdk.errors.ConfigError` for a missing named config file,
    malformed TOML, an unknown key or a value of the wrong type.
    """
    explicit: dict[str, Any] = {name: value for name, value in (
        ("map", map), ("audit", audit), ("local_root", local_root),
        ("state_dir", state_dir), ("audit_anchors", audit_anchors)) if value is not None}
    token = _chosen_file.set(Path(config_file) if config_file is not None else None)
    try:
        return Settings(**explicit)
    except ValidationError as exc:
        raise _config_error(exc) from None
    finally:
        _chosen_file.reset(token)


def _config_file(chosen: Path | None) -> Path | None:
    """The ``residency.toml`` to read, or None: ``chosen``, else ``$RESIDENCY_CONFIG``,
    else ``./residency.toml`` if it exists. A file named explicitly must exist."""
    if chosen is not None:
        return _existing(chosen, "config_file")
    named = os.environ.get(CONFIG_ENV, "").strip()
    if named:
        return _existing(Path(named).expanduser(), f"${CONFIG_ENV}")
    default = Path.cwd() / CONFIG_FILE_NAME
    return default if default.is_file() else None


def _existing(path: Path, where: str) -> Path:
    if not path.is_file():
        raise ConfigError(
            f"the config file named by {where} does not exist or is not a file: create "
            f"it, or fix {where}", file=str(path))
    return path


class _ResidencyToml(TomlConfigSettingsSource):
    """``residency.toml``: every top-level key is a setting."""

    def __init__(self, settings_cls: type[BaseSettings], file: Path) -> None:
        super().__init__(settings_cls, toml_file=file, toml_table_header=())

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        return _settings_from(Path(file_path), _parse(Path(file_path)), "")


class _PyprojectToml(PyprojectTomlConfigSettingsSource):
    """``[tool.residency]`` of ``pyproject.toml``; the rest of the file is not ours."""

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        path = Path(file_path)
        table: Any = _parse(path)
        for part in PYPROJECT_TABLE:
            table = table.get(part, {}) if isinstance(table, dict) else None
        if table is None or not isinstance(table, dict):
            raise ConfigError("[tool.residency] must be a table of settings "
                              f"({', '.join(sorted(Settings.model_fields))})", file=str(path))
        return {"tool": {"residency": _settings_from(path, table, "[tool.residency] ")}}


def _parse(path: Path) -> dict[str, Any]:
    """The TOML document at ``path``; a ConfigError naming the file and line otherwise."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends "(at line L, column C)": the place to fix.
        raise ConfigError(f"malformed TOML: {exc}", file=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason}): save the file as UTF-8",
                          file=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the config file: {exc.strerror or exc}",
                          file=str(path)) from None


def _settings_from(path: Path, table: dict[str, Any], where: str) -> dict[str, Any]:
    """Check the keys and types of one file's settings and resolve its relative paths
    against the file's folder."""
    known = sorted(Settings.model_fields)
    base = path.absolute().parent
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key not in Settings.model_fields:
            close = difflib.get_close_matches(key.replace("-", "_"), known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"unknown setting {key!r} in {where or 'the file'}: "
                              f"{hint}known settings are {', '.join(known)}",
                              file=str(path), key=key)
        if key == "audit_anchors" and isinstance(value, list) \
                and all(isinstance(v, str) for v in value):
            value = ",".join(value)
        if not isinstance(value, str) or not value.strip():
            kind = "a non-empty string or a list of strings" if key == "audit_anchors" \
                else "a non-empty string"
            raise ConfigError(f"{where}{key} = {value!r}: expected {kind}",
                              file=str(path), key=key)
        out[key] = _resolved(key, value.strip(), base)
    return out


def _resolved(key: str, value: str, base: Path) -> str:
    """``value`` with relative paths made relative to ``base``; URLs as written."""
    if key in _PATH_KEYS:
        return str(_against(value, base))
    if key == "audit":
        return value if "://" in value else str(_against(value, base))
    if key == "audit_anchors":
        specs = [s.strip() for s in value.split(",") if s.strip()]
        return ",".join(s if "://" in s else str(_against(s, base)) for s in specs)
    return value


def _against(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _config_error(exc: ValidationError) -> ConfigError:
    """A settings value pydantic refused, named by its setting (an environment variable
    or an explicit argument: file values were checked when read)."""
    first = exc.errors()[0]
    key = ".".join(str(p) for p in first.get("loc", ())) or "?"
    return ConfigError(f"setting {key!r} ({ENV_PREFIX}{key.upper()}): {first.get('msg')}",
                       key=key)
