"""Shared CLI plumbing: exit codes, JSON vs rich output, error reporting."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from residency_sdk.client import Residency
from residency_sdk.errors import ResidencyError

EXIT_OK = 0
EXIT_BLOCKED = 1  # blocked transfer, invalid input, failed verification
EXIT_USAGE = 2  # typer/click use this for usage errors too

console = Console()
err_console = Console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
MapOption = Annotated[
    Path | None,
    typer.Option("--map", help="Region map file (default: the packaged map).", dir_okay=False),
]


def print_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout, nothing else."""
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def fail(message: str, *, as_json: bool, code: int = EXIT_BLOCKED, **extra: Any) -> NoReturn:
    """Report an error (as JSON on stdout, or in red on stderr) and exit with ``code``."""
    if as_json:
        print_json({"ok": False, "error": message, **extra})
    else:
        err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def residency_errors(as_json: bool) -> Iterator[None]:
    """Turn a :class:`ResidencyError` into a clear message and exit status 1."""
    try:
        yield
    except ResidencyError as exc:
        fail(str(exc), as_json=as_json, error_type=type(exc).__name__)


def load_residency(map_path: Path | None, as_json: bool, **kwargs: Any) -> Residency:
    """Load the region map named on the command line, reporting errors cleanly."""
    with residency_errors(as_json):
        return Residency.load(map_path, **kwargs)
    raise AssertionError("unreachable")  # pragma: no cover


Registrar = Callable[[typer.Typer], None]
