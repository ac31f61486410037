"""The ``residency`` command line: one typer app, one module per command group."""

from residency_sdk.cli.app import app, main

__all__ = ["app", "main"]
