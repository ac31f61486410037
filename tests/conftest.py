"""Shared fixtures: storage emulators on loopback and a per-provider test harness.

``emulators`` (session) starts moto server, gcp-storage-emulator and Azurite on free
127.0.0.1 ports the first time a test needs each one, and stops them by PID at the end.
An emulator that cannot start fails the run when ``CI`` is set and skips the tests that
need it otherwise.

``provider_harness`` is parametrised over ``local``, ``aws``, ``gcp`` and ``azure``: it
provisions, on the emulator, every location's primary and in-country failover bucket with
the location's region, KMS encryption and public-access block, sets the environment
(dummy AWS credentials, the Azurite connection string) and writes a region map overlay
(``extends: default``) pointing that provider's backends at the emulator.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

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


@pytest.fixture(params=PROVIDERS)
def provider_harness(request: pytest.FixtureRequest, emulators: Emulators,
                     monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ProviderHarness:
    """One provider (local, aws, gcp, azure) ready against its emulator."""
    return ProviderHarness(request.param, emulators, monkeypatch, tmp_path)
