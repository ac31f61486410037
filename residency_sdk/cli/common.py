"""Shared CLI plumbing: exit codes, JSON vs rich output, error reporting, the audit
options every command that touches data or decides shares."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from residency_sdk.client import Residency
from residency_sdk.errors import ResidencyError

EXIT_OK = 0
EXIT_BLOCKED = 1  # blocked transfer, invalid input, failed verification
EXIT_USAGE = 2  # typer/click use this for usage errors too

COMMAND: ContextVar[typer.Context | None] = ContextVar("residency_command", default=None)
"""The running command's context (set by the app's callback)."""

console = Console()
err_console = Console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
MapOption = Annotated[
    Path | None,
    typer.Option("--map", help="Region map file (default: the packaged map).", dir_okay=False),
]
AuditOption = Annotated[
    str | None,
    typer.Option("--audit", metavar="SINK",
                 help="Audit sink: a log file or a postgresql:// URL (default: "
                      "$RESIDENCY_AUDIT, else audit.db in the state folder: "
                      "<local root>/.residency-state, $RESIDENCY_STATE_DIR or "
                      "~/.local/state/residency-sdk). Every command that touches data or "
                      "decides is audited."),
]
NoAuditOption = Annotated[
    bool,
    typer.Option("--no-audit",
                 help="Run unaudited; the default sink records that it was switched off "
                      "(who, where, when), so later reports show the gap."),
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


def load_residency(map_path: Path | None, as_json: bool, *, audit: str | Path | None = None,
                   no_audit: bool = False, audited: bool = True,
                   **kwargs: Any) -> Residency:
    """Load the region map named on the command line, reporting errors cleanly.

    The audit trail is on (``--audit SINK``, else the default sink); ``no_audit``
    (``--no-audit``) switches it off, which the default sink records. ``audited=False``
    is for commands that neither touch data nor decide (nothing to audit, no sink
    opened)."""
    if audit is not None and no_audit:
        fail("--audit and --no-audit contradict each other: give one", as_json=as_json,
             code=EXIT_USAGE)
    with residency_errors(as_json):
        if not audited:
            from residency_sdk.policy import ResidencyPolicy

            return Residency(ResidencyPolicy.load(map_path), **kwargs)
        if no_audit:
            res = Residency.load(map_path, audit=False,
                                 audit_off_reason=f"`{_command()}` run with --no-audit",
                                 **kwargs)
        else:
            res = Residency.load(map_path, audit=str(audit) if audit is not None else None,
                                 **kwargs)
        _close_with_command(res)
        return res
    raise AssertionError("unreachable")  # pragma: no cover


def _close_with_command(res: Residency) -> None:
    """Close ``res`` (its audit log flushed) when the running command ends, however it
    ends (an exit code, an error)."""
    context = COMMAND.get()
    if context is None:
        return

    def close() -> None:
        try:
            res.close()
        except ResidencyError as exc:  # e.g. the audit log could not flush the outcomes
            fail(f"closing: {exc}", as_json=False, error_type=type(exc).__name__)

    context.call_on_close(close)


def _command() -> str:
    """The command being run (``residency put``), for the audit_off record."""
    context = COMMAND.get()
    sub = context.invoked_subcommand if context is not None else None
    return f"residency {sub}" if sub else "residency"


Registrar = Callable[[typer.Typer], None]


def emit_document(text: str, out: Path | None, summary: str) -> None:
    """Write a rendered document to stdout as is, or to ``out`` with ``summary`` on
    stderr (an unwritable ``out`` is a clean error, not a traceback)."""
    from rich.markup import escape

    if out is None:
        sys.stdout.write(text)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(escape(f"cannot write {out}: {exc.strerror or exc}"), as_json=False)
    err_console.print(summary, markup=False, highlight=False, soft_wrap=True, emoji=False)
