"""PEP 562 lazy exports: a package names what it exports and where from, and each name is
imported the first time it is asked for (so importing the package loads none of them)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, exports: Mapping[str, str],
                 namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``exports`` maps an exported name to the
    submodule holding it (relative to ``package``), or to ``"module:attribute"`` when it is
    exported under another name. The value found is kept in ``namespace`` (the package's
    ``globals()``), so each name is imported once."""

    def __getattr__(name: str) -> Any:
        target = exports.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = target.partition(":")
        value = getattr(importlib.import_module(f"{package}.{module}"), attribute or name)
        namespace[name] = value
        return value

    return __getattr__
