"""Assembles the ``residency`` app from the command-group modules."""

from __future__ import annotations

import typer

from residency_sdk.cli import audit as audit_cli
from residency_sdk.cli import common, core, demo
from residency_sdk.cli import deid as deid_cli
from residency_sdk.cli import egress as egress_cli
from residency_sdk.cli import infra as infra_cli
from residency_sdk.cli import keys as keys_cli
from residency_sdk.cli import retention as retention_cli
from residency_sdk.cli import rules as rules_cli
from residency_sdk.cli import storage as storage_cli
from residency_sdk.cli import tenant as tenant_cli
from residency_sdk.cli import verify as verify_cli

app = typer.Typer(
    name="residency",
    help="Keep regulated health data in the country where it must live.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(ctx: typer.Context) -> None:
    # Remember the running command's context: Residency objects the command loads are
    # closed (their audit logs flushed) when it ends, however it ends.
    common.COMMAND.set(ctx)


core.register(app)
demo.register(app)
audit_cli.register(app)
infra_cli.register(app)
storage_cli.register(app)
retention_cli.register(app)
tenant_cli.register(app)
verify_cli.register(app)
keys_cli.register(app)
deid_cli.register(app)
rules_cli.register(app)
egress_cli.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
