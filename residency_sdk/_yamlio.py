"""Safe, bounded YAML loading for region maps and rule files.

PyYAML's SafeLoader never builds arbitrary objects, but it still expands aliases (a
"billion laughs" bomb builds a tiny graph that every consumer walks exponentially) and
silently keeps the last of two duplicate keys (two routes for one country would vanish
into one). This loader refuses both, and caps the file size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from residency_sdk.errors import MapError

MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_ALIASES = 200


class _BoundedSafeLoader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases_seen = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases_seen += 1
            if self._aliases_seen > MAX_ALIASES:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise yaml.constructor.ConstructorError(
                    None, None, f"more than {MAX_ALIASES} aliases (a YAML bomb?)", event.start_mark
                )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml_text(text: str, *, source: str) -> Any:
    """Parse YAML ``text`` safely; errors become :class:`MapError` naming ``source``."""
    if len(text.encode("utf-8", errors="replace")) > MAX_FILE_BYTES:
        raise MapError(f"file is larger than {MAX_FILE_BYTES} bytes", file=source)
    try:
        return yaml.load(text, Loader=_BoundedSafeLoader)  # noqa: S506 - bounded SafeLoader subclass
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
