"""What the test suite needs installed or running, and what a test does when it is missing.

Under CI (``CI`` set, as every CI service does) a missing component fails the test: a
green run must never hide a test that did not run. Locally the test is skipped with the
way to install it. The only skip allowed under CI is a documented limit of an emulator
(:func:`emulator_limit`), whose message names the limit and where it is documented.

Use :func:`require` instead of ``pytest.importorskip`` and :func:`missing` instead of
``pytest.skip`` for anything not installed or not startable (``tests/conftest.py`` puts
this folder on ``sys.path``, so ``from components import require`` works everywhere).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest

_NOT_CI = ("", "0", "false", "no")


def in_ci() -> bool:
    """True when the run is a CI run (``CI`` set to anything but empty, 0, false, no)."""
    return os.environ.get("CI", "").strip().lower() not in _NOT_CI


def missing(what: str, install_hint: str) -> NoReturn:
    """``what`` is missing: fail under CI, else skip (module level too) saying how to
    install it."""
    message = f"{what}; install: {install_hint}"
    if in_ci():
        pytest.fail(f"{message} (CI is set: a missing component fails the run)",
                    pytrace=False)
    pytest.skip(message, allow_module_level=True)


def require(module: str, install_hint: str) -> ModuleType:
    """Import ``module`` (a dotted name); when it cannot be imported, :func:`missing`."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing(f"{module} cannot be imported ({exc})", install_hint)


def emulator_limit(emulator: str, limit: str, documented_in: str) -> NoReturn:
    """Skip, under CI too, because ``emulator`` cannot do what the test needs: ``limit``
    says what, ``documented_in`` where the limit is written down."""
    pytest.skip(f"emulator limit: {emulator} {limit} (documented in {documented_in})")
