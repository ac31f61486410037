"""The ``residency`` app: a root group that imports a command's module only when that
command runs (help and shell completion load them all), so ``residency resolve`` does not
pay for the audit, report, infra or de-identification code."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from functools import cache
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from residency_sdk.cli import common
from residency_sdk.errors import ResidencyError

COMMAND_MODULES: dict[str, str] = {
    "resolve": "core", "transfer": "core", "map": "core",
    "demo": "demo",
    "audit": "audit",
    "infra": "infra",
    "put": "storage", "get": "storage", "ls": "storage", "rm": "storage",
    "retention": "retention", "erasure": "retention",
    "tenant": "tenant",
    "verify": "verify",
    "keys": "keys",
    "deid": "deid", "export": "deid",
    "rules": "rules",
    "egress": "egress",
}
"""Every top-level command (in the order help lists them) and the module of
``residency_sdk.cli`` whose ``register(app)`` adds it."""


@cache
def _module_commands(module: str) -> dict[str, Any]:
    """The click commands ``residency_sdk.cli.<module>`` registers, built once."""
    registrar: common.Registrar = importlib.import_module(f"residency_sdk.cli.{module}").register
    holder = typer.Typer(pretty_exceptions_enable=False)
    registrar(holder)
    return dict(typer.main.get_group(holder).commands)


class _LazyCommands(MutableMapping[str, Any]):
    """The root group's commands: every name of :data:`COMMAND_MODULES` (listing them
    imports nothing), each built from its module when looked up."""

    def __getitem__(self, name: str) -> Any:
        command = _module_commands(COMMAND_MODULES[name]).get(name)
        if command is None:
            raise KeyError(name)
        return command

    def __iter__(self) -> Iterator[str]:
        return iter(COMMAND_MODULES)

    def __len__(self) -> int:
        return len(COMMAND_MODULES)

    def __setitem__(self, name: str, command: Any) -> None:
        raise TypeError(f"add {name!r} to COMMAND_MODULES (and its module's register)")

    def __delitem__(self, name: str) -> None:
        raise TypeError(f"remove {name!r} from COMMAND_MODULES")


class LazyGroup(TyperGroup):
    """The root group: commands are looked up in :data:`COMMAND_MODULES` and built from
    their module on first use (so typo suggestions, help and completion see them all);
    errors that leave a command uncaught are reported in one line with the exit code of
    their kind (never a traceback)."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _LazyCommands()

    def invoke(self, ctx: Any) -> Any:
        """Run the command; a :class:`ResidencyError` or :class:`OSError` it let through
        becomes a one-line message and its exit code (a closed pipe is click's)."""
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise
        except (ResidencyError, OSError) as exc:
            common.report_uncaught(exc)


def _print_version(value: bool) -> None:
    if value:
        from residency_sdk._version import __version__

        typer.echo(f"residency-sdk {__version__}")
        raise typer.Exit(common.EXIT_OK)


app = typer.Typer(
    name="residency",
    cls=LazyGroup,
    help="Keep regulated health data in the country where it must live.\n\n"
         "Exit codes: 0 ok; 1 blocked, refused or a violation; 2 usage (bad option, input "
         "or config); 3 a backend, the audit trail or a file could not be reached.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(
        "--config", metavar="FILE", exists=True, dir_okay=False,
        help="The config file (residency.toml) for this run, instead of $RESIDENCY_CONFIG "
             "or ./residency.toml. Options beat $RESIDENCY_* variables, which beat the "
             "file.")] = None,
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_print_version,
        help="Print the residency-sdk version and exit.")] = False,
) -> None:
    del version  # handled by its callback
    common.start_command(ctx)
    common.use_config_file(ctx, config)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="residency")
