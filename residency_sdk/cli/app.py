"""Assembles the ``residency`` app from the command-group modules."""

from __future__ import annotations

import typer

from residency_sdk.cli import core, demo

app = typer.Typer(
    name="residency",
    help="Keep regulated health data in the country where it must live.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
core.register(app)
demo.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
