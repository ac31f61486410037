"""The ``residency`` command line: one typer app, one module per command group."""

from residency_sdk.cli.app import app as app
from residency_sdk.cli.app import main as main
