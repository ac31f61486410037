"""Safe, bounded YAML loading for region maps and rule files.

PyYAML's SafeLoader never builds arbitrary objects, but it still expands aliases (a
"billion laughs" bomb builds a tiny graph that every consumer walks exponentially) and
silently keeps the last of two duplicate keys (two routes for one country would vanish
into one). This loader refuses both, and caps the file size.

Speed: when PyYAML has libyaml (``yaml.__with_libyaml__``, true for its binary wheels),
the text is scanned and parsed in C (``CParser``: about 8x faster on the packaged maps)
while the nodes are still composed and constructed by PyYAML's Python classes, through
the same bounded ``compose_node`` and ``construct_mapping`` as the pure-Python loader.
PyYAML's own ``CSafeLoader`` is not used as is: it composes in C, where neither bound
could be applied, and a deeply nested document overflows its C stack (a crash, not an
error) instead of raising ``RecursionError``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from residency_sdk.errors import MapError

MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_ALIASES = 200


class _Bounds:
    """The two bounds, mixed into a loader before its composer and constructor."""

    _aliases_seen = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):  # type: ignore[attr-defined]
            self._aliases_seen += 1
            if self._aliases_seen > MAX_ALIASES:
                event = self.peek_event()  # type: ignore[attr-defined]
                raise yaml.constructor.ConstructorError(
                    None, None, f"more than {MAX_ALIASES} aliases (a YAML bomb?)", event.start_mark
                )
        return super().compose_node(parent, index)  # type: ignore[misc]

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[attr-defined]
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)  # type: ignore[misc]
        return mapping


class _BoundedSafeLoader(_Bounds, yaml.SafeLoader):
    """The pure-Python loader (PyYAML without libyaml)."""


def _bounded_c_loader() -> type | None:
    if not getattr(yaml, "__with_libyaml__", False):
        return None
    from yaml._yaml import CParser

    class _BoundedCLoader(_Bounds, CParser, Composer, SafeConstructor, Resolver):
        """libyaml's scanner and parser under the Python composer and constructor."""

        # CParser has composer methods of its own (composing in C): the Python ones win.
        check_node = Composer.check_node
        get_node = Composer.get_node
        get_single_node = Composer.get_single_node

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

    return _BoundedCLoader


_LOADER: type = _bounded_c_loader() or _BoundedSafeLoader


def load_yaml_text(text: str, *, source: str) -> Any:
    """Parse YAML ``text`` safely; errors become :class:`MapError` naming ``source``."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise MapError(f"invalid YAML: text is not valid Unicode ({exc.reason})",
                       file=source) from None
    if size > MAX_FILE_BYTES:
        raise MapError(f"file is larger than {MAX_FILE_BYTES} bytes", file=source)
    try:
        return yaml.load(text, Loader=_LOADER)  # noqa: S506 - bounded safe loader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise MapError(f"invalid YAML: {exc.problem or exc}", file=source, path=where) from None
    except yaml.YAMLError as exc:
        raise MapError(f"invalid YAML: {exc}", file=source) from None
    except RecursionError:
        raise MapError("YAML nesting is too deep", file=source) from None


def load_yaml_file(path: Path) -> Any:
    """Read and parse one YAML file with the same limits as :func:`load_yaml_text`."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise MapError(f"cannot read file: {exc.strerror}", file=str(path)) from None
    if size > MAX_FILE_BYTES:
        raise MapError(f"file is larger than {MAX_FILE_BYTES} bytes", file=str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MapError(f"cannot read file as UTF-8 text: {exc}", file=str(path)) from None
    return load_yaml_text(text, source=str(path))
