"""Shared CLI plumbing: exit codes, JSON vs rich output, error reporting, settings, the
audit options every command that touches data or decides shares.

Exit codes (the one table, :func:`exit_code_for`): 0 ok; 1 blocked, refused or a
violation; 2 usage (a bad option or input, a bad config); 3 a backend, the audit trail or
a file could not be reached, read or written.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from residency_sdk.errors import (
    AccessDenied,
    AuditUnavailable,
    BackendUnavailable,
    ChainBroken,
    ErasureUnavailable,
    InfraCrossesBorder,
    InputError,
    IntegrityError,
    ReportRenderError,
    ResidencyError,
)

if TYPE_CHECKING:
    from residency_sdk.cli.console import PipeSafeConsole
    from residency_sdk.client import Residency
    from residency_sdk.config import Settings

    console: PipeSafeConsole
    """stdout, for people (made on first use: see :func:`stdout_console`)."""
    err_console: PipeSafeConsole
    """stderr, for people (made on first use: see :func:`stderr_console`)."""

EXIT_OK = 0
EXIT_BLOCKED = 1  # blocked transfer, refusal, violation, failed verification
EXIT_USAGE = 2  # click uses 2 for its own usage errors too
EXIT_BACKEND = 3  # a backend, the audit trail or a file could not be reached or written

_EXIT_CODES: tuple[tuple[tuple[type[BaseException], ...], int], ...] = (
    # Most specific first: the first row an error is an instance of gives its code.
    ((ChainBroken,), EXIT_BLOCKED),  # a tampered log (ChainRefused too) is a violation
    ((ErasureUnavailable, BackendUnavailable, AuditUnavailable, AccessDenied,
      IntegrityError, ReportRenderError, OSError), EXIT_BACKEND),
    ((InfraCrossesBorder,), EXIT_BLOCKED),  # a plan that would cross a border
    ((InputError,), EXIT_USAGE),
    ((ResidencyError,), EXIT_BLOCKED),
)


def exit_code_for(exc: BaseException) -> int:
    """The exit status of a command that ended with ``exc`` (see the module docstring)."""
    for kinds, code in _EXIT_CODES:
        if isinstance(exc, kinds):
            return code
    return EXIT_BLOCKED


def error_message(exc: BaseException) -> str:
    """One line for the user: an OS error names the file and the fix, not an errno."""
    if isinstance(exc, OSError) and not isinstance(exc, ResidencyError):
        where = exc.filename if exc.filename is not None else "a file"
        return (f"cannot use {where}: {exc.strerror or exc}: check the path exists, is of "
                "the right kind (a file or a folder) and is readable/writable")
    return str(exc)


COMMAND: ContextVar[typer.Context | None] = ContextVar("residency_command", default=None)
"""The running command's context (set by the app's callback)."""
_JSON_MODE: ContextVar[bool] = ContextVar("residency_json_output", default=False)
"""Whether the running command was asked for JSON (errors reported outside the command
then come as JSON too)."""

@cache
def stdout_console() -> PipeSafeConsole:
    """The console on stdout. Made on first use, so that a command printing JSON never
    imports rich (``console`` is this, for the modules that always print)."""
    from residency_sdk.cli.console import PipeSafeConsole

    return PipeSafeConsole()


@cache
def stderr_console() -> PipeSafeConsole:
    """The console on stderr, made on first use (``err_console`` is this)."""
    from residency_sdk.cli.console import PipeSafeConsole

    return PipeSafeConsole(stderr=True)


def __getattr__(name: str) -> Any:
    # `console` and `err_console` are made when first imported or used, not with this module.
    if name == "console":
        return stdout_console()
    if name == "err_console":
        return stderr_console()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def rule(title: str) -> None:
    """A titled horizontal rule on stdout (80 columns when piped, not a million)."""
    from rich.markup import escape
    from rich.rule import Rule

    console = stdout_console()
    console.print(Rule(escape(title)), width=None if console.is_terminal else 80)


class OutputFormat(StrEnum):
    """What a command prints on stdout: a table for people, or JSON for programs."""

    table = "table"
    json = "json"


JsonOption = Annotated[bool, typer.Option(
    "--json", help="Print machine-readable JSON (short for --output json).")]
OutputOption = Annotated[OutputFormat | None, typer.Option(
    "--output", help="table (for people, the default) or json (for programs).",
    case_sensitive=False)]


def wants_json(as_json: bool, output: OutputFormat | None) -> bool:
    """Whether to print JSON, from ``--json`` and ``--output``; contradicting values are
    a usage error (exit 2)."""
    if output is None:
        chosen = as_json
    elif as_json and output is OutputFormat.table:
        raise typer.BadParameter("--json and --output table contradict each other: give one",
                                 param_hint="--output")
    else:
        chosen = output is OutputFormat.json
    _JSON_MODE.set(chosen)
    return chosen


MapOption = Annotated[
    Path | None,
    typer.Option("--map", help="Region map file (default: the `map` setting: $RESIDENCY_MAP "
                               "or the config file; else the packaged map).",
                 dir_okay=False),
]
AuditOption = Annotated[
    str | None,
    typer.Option("--audit", metavar="SINK",
                 help="Audit sink: a log file or a postgresql:// URL (default: the `audit` "
                      "setting: $RESIDENCY_AUDIT or the config file; else audit.db in the "
                      "state folder: <local root>/.residency-state, $RESIDENCY_STATE_DIR or "
                      "~/.local/state/residency-sdk). Every command that touches data or "
                      "decides is audited."),
]
NoAuditOption = Annotated[
    bool,
    typer.Option("--no-audit",
                 help="Run unaudited; the default sink records that it was switched off "
                      "(who, where, when), so later reports show the gap."),
]


def settings() -> Settings:
    """The settings now (``--config``, ``RESIDENCY_*``, ``residency.toml``,
    ``[tool.residency]``): what every option left unset defaults to. A bad config file is
    a :class:`~residency_sdk.errors.ConfigError` (exit 2)."""
    from residency_sdk.config import load_settings

    return load_settings()


def map_or_setting(map_path: Path | None) -> Path | None:
    """``--map`` when given, else the ``map`` setting (None: the packaged map)."""
    return map_path if map_path is not None else settings().map


def local_root_or_setting(local_root: Path | None) -> Path | None:
    """``--local-root`` when given, else the ``local_root`` setting."""
    return local_root if local_root is not None else settings().local_root


def parse_when(text: str, *, name: str, example: str) -> datetime:
    """A date or time option (``--at``, ``--terminated``) as an aware UTC datetime: ISO
    8601 (naive means UTC) or a human form the report's ``--since`` takes (``today``,
    ``yesterday``, ``30d``, a month, a quarter: its first instant). An
    :class:`InputError` naming the option otherwise (exit 2)."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        from residency_sdk.audit.period import parse_bound

        try:
            parsed = parse_bound(text, name=name)
        except InputError:
            raise InputError(f"invalid {name} {text!r}: expected a date such as {example}, "
                             "today, yesterday or 30d (30 days ago)") from None
        assert parsed is not None  # only None for None
        return parsed
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def print_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout, nothing else."""
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def fail(message: str, *, as_json: bool, code: int = EXIT_BLOCKED, **extra: Any) -> NoReturn:
    """Report an error (as JSON on stdout, or in red on stderr) and exit with ``code``.
    ``message`` is plain text: any ``[...]`` in it prints as written."""
    if as_json:
        print_json({"ok": False, "error": message, **extra})
    else:
        from rich.markup import escape

        stderr_console().print(f"[bold red]error:[/] {escape(message)}", highlight=False,
                          soft_wrap=True, emoji=False)
    raise typer.Exit(code)


def fail_with(exc: BaseException, *, as_json: bool) -> NoReturn:
    """Report ``exc`` in one line and exit with its code (see :func:`exit_code_for`)."""
    fail(error_message(exc), as_json=as_json, code=exit_code_for(exc),
         error_type=type(exc).__name__)


@contextmanager
def residency_errors(as_json: bool) -> Iterator[None]:
    """Turn a :class:`ResidencyError` or an :class:`OSError` into a one-line message and
    the exit status of its kind."""
    try:
        yield
    except (ResidencyError, OSError) as exc:
        fail_with(exc, as_json=as_json)


def report_uncaught(exc: BaseException) -> NoReturn:
    """Report an error that left a command outside :func:`residency_errors`, in the
    output form the command was asked for."""
    fail_with(exc, as_json=_JSON_MODE.get())


def load_residency(map_path: Path | None, as_json: bool, *, audit: str | Path | None = None,
                   no_audit: bool = False, audited: bool = True,
                   use_settings: bool = True, **kwargs: Any) -> Residency:
    """Load the region map named on the command line, reporting errors cleanly.

    Options left unset come from the settings (``map``, ``audit``, ``local_root``)
    unless ``use_settings`` is False (a command that was told them another way). The
    audit trail is on (``--audit SINK``, else the default sink); ``no_audit``
    (``--no-audit``) switches it off, which the default sink records. ``audited=False``
    is for commands that neither touch data nor decide (nothing to audit, no sink
    opened)."""
    if audit is not None and no_audit:
        fail("--audit and --no-audit contradict each other: give one", as_json=as_json,
             code=EXIT_USAGE)
    from residency_sdk.client import Residency

    with residency_errors(as_json):
        if use_settings:
            current = settings()
            map_path = map_path if map_path is not None else current.map
            if audit is None and not no_audit:
                audit = current.audit
            if kwargs.get("local_root") is None and current.local_root is not None:
                kwargs["local_root"] = current.local_root
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
            fail(f"closing: {exc}", as_json=False, code=exit_code_for(exc),
                 error_type=type(exc).__name__)

    context.call_on_close(close)


def _command() -> str:
    """The command being run (``residency put``), for the audit_off record."""
    context = COMMAND.get()
    sub = context.invoked_subcommand if context is not None else None
    return f"residency {sub}" if sub else "residency"


def start_command(ctx: typer.Context) -> None:
    """Remember the running command's context (Residency objects it loads are closed, their
    audit logs flushed, when it ends, however it ends); its output is for people until
    :func:`wants_json` says otherwise."""
    COMMAND.set(ctx)
    _JSON_MODE.set(False)


def use_config_file(ctx: typer.Context, path: Path | None) -> None:
    """Make ``path`` (``--config``) the config file of this run, for the CLI and the SDK
    alike (as ``$RESIDENCY_CONFIG``), until the command ends."""
    if path is None:
        return
    from residency_sdk.config import CONFIG_ENV

    before = os.environ.get(CONFIG_ENV)
    os.environ[CONFIG_ENV] = str(path)

    def restore() -> None:
        if before is None:
            os.environ.pop(CONFIG_ENV, None)
        else:
            os.environ[CONFIG_ENV] = before

    ctx.call_on_close(restore)


Registrar = Callable[[typer.Typer], None]


def write_text_file(path: Path, text: str, *, as_json: bool = False) -> None:
    """Write ``text`` to ``path``; an unwritable path (a missing folder, a directory) is a
    clean error (exit 3), not a traceback."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}: check the folder exists and is "
             "writable", as_json=as_json, code=EXIT_BACKEND, error_type=type(exc).__name__)


def emit_document(text: str, out: Path | None, summary: str) -> None:
    """Write a rendered document to stdout as is, or to ``out`` with ``summary`` on
    stderr (an unwritable ``out`` is a clean error, not a traceback)."""
    if out is None:
        sys.stdout.write(text)
        return
    write_text_file(out, text)
    stderr_console().print(summary, markup=False, highlight=False, soft_wrap=True, emoji=False)
