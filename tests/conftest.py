"""Shared fixtures: storage emulators on loopback and a per-provider test harness.

``emulators`` (session) starts moto server, gcp-storage-emulator and Azurite on free
127.0.0.1 ports the first time a test needs each one, and stops them by PID at the end.
An emulator that cannot start fails the run when ``CI`` is set and skips the tests that
need it otherwise (``tests/components.py``, the suite's one rule for missing components).

``postgres_server``/``postgres_url`` (session) start a real PostgreSQL on a free 127.0.0.1
port the first time a test needs it (``tests/pgserver.py``) and stop it by PID; same
convention: a failure under ``CI``, a skip otherwise.

``hermetic_state`` (session, autouse) points ``RESIDENCY_STATE_DIR`` at a temp folder so
the default audit log (audit is on by default) never lands in ``~``; each test gets its
own subfolder of it.

``provider_harness`` is parametrised over ``local``, ``aws``, ``gcp`` and ``azure``: it
provisions, on the emulator, every location's primary and in-country failover bucket with
the location's region, KMS encryption and public-access block, sets the environment
(dummy AWS credentials, the Azurite connection string) and writes a region map overlay
(``extends: default``) pointing that provider's backends at the emulator.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from components import missing
from pgserver import PostgresServer, PostgresUnavailable, start_postgres
from storage_harness import PROVIDERS, Emulators, ProviderHarness

__all__ = ["Emulators", "ProviderHarness"]


@pytest.fixture(scope="session")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulators]:
    """The session's emulators (started on first use)."""
    registry = Emulators(tmp_path_factory.mktemp("emulators"))
    try:
        yield registry
    finally:
        registry.stop_all()


_AUDIT_ENV = ("RESIDENCY_STATE_DIR", "XDG_STATE_HOME", "RESIDENCY_AUDIT",
              "RESIDENCY_AUDIT_ANCHORS")
# Settings Residency.load and the CLI honour (residency_sdk.config): none may leak in from
# the developer's shell.
_SETTINGS_ENV = ("RESIDENCY_MAP", "RESIDENCY_LOCAL_ROOT", "RESIDENCY_CONFIG")


@pytest.fixture(scope="session", autouse=True)
def hermetic_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's state folder: audit is on by default, so every default audit log
    (``Residency.load()`` without ``audit=``, the CLI) lands here, never under ``~``.

    Set in ``os.environ`` (not monkeypatch) so subprocesses (the CLI, crash workers)
    inherit it; an ambient ``RESIDENCY_AUDIT``/``RESIDENCY_AUDIT_ANCHORS`` is removed.
    """
    folder = tmp_path_factory.mktemp("residency-state")
    saved = {name: os.environ.get(name) for name in (*_AUDIT_ENV, *_SETTINGS_ENV)}
    os.environ["RESIDENCY_STATE_DIR"] = str(folder)
    os.environ["XDG_STATE_HOME"] = str(folder / "xdg")
    os.environ.pop("RESIDENCY_AUDIT", None)
    os.environ.pop("RESIDENCY_AUDIT_ANCHORS", None)
    for name in _SETTINGS_ENV:
        os.environ.pop(name, None)
    try:
        yield folder
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(autouse=True)
def _state_per_test(hermetic_state: Path, request: pytest.FixtureRequest,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Each test its own default audit log (created only if the test loads one): a test
    # that sets an HMAC key must not meet an unkeyed log another test created.
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:60]
    digest = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:8]
    monkeypatch.setenv("RESIDENCY_STATE_DIR", str(hermetic_state / f"{name}-{digest}"))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL on a free 127.0.0.1 port for the session (``tests/pgserver.py``),
    stopped by PID at the end. Missing or unstartable: a failure under ``CI``, else a skip."""
    try:
        server = start_postgres()
    except PostgresUnavailable as exc:
        missing(f"PostgreSQL unavailable: {exc}",
                "apt-get install postgresql (15; ../shared/design/TEST_INFRA.md)")
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """``postgresql://postgres@127.0.0.1:PORT/postgres`` of the session's server."""
    return postgres_server.url


@pytest.fixture(params=PROVIDERS)
def provider_harness(request: pytest.FixtureRequest, emulators: Emulators,
                     monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ProviderHarness:
    """One provider (local, aws, gcp, azure) ready against its emulator."""
    return ProviderHarness(request.param, emulators, monkeypatch, tmp_path)
