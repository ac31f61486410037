"""Fixtures the adapter tests share: a provider's harness (parametrised indirectly by the
provider's name) and a list whose stores are closed after the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from storage_harness import ProviderHarness


@pytest.fixture
def harness(request: pytest.FixtureRequest, emulators: Any, monkeypatch: pytest.MonkeyPatch,
            tmp_path: Path) -> ProviderHarness:
    return ProviderHarness(request.param, emulators, monkeypatch, tmp_path)


@pytest.fixture
def closing() -> Iterator[list[Any]]:
    opened: list[Any] = []
    yield opened
    for store in opened:
        store.close()
