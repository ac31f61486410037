"""``residency verify``: check what is really deployed for a location."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from residency_sdk.cli.common import (
    EXIT_BLOCKED,
    JsonOption,
    MapOption,
    OutputOption,
    console,
    load_residency,
    print_json,
    residency_errors,
    wants_json,
)

_STYLE = {"pass": "green", "fail": "bold red", "unknown": "yellow"}


def register(app: typer.Typer) -> None:
    """Add ``verify`` to ``app``."""
    app.command("verify")(verify)


def verify(
    location: Annotated[str, typer.Option("--location", "-l",
                                          help="Location id (or a country routed to one).")],
    provider: Annotated[str | None, typer.Option("--provider", "-p",
                                                 help="Only this provider's backend.")] = None,
    strict: Annotated[bool, typer.Option("--strict",
                                         help="Treat checks the provider cannot answer as "
                                              "failures.")] = False,
    map_path: MapOption = None,
    as_json: JsonOption = False, output: OutputOption = None,
) -> None:
    """Connect to each backend of LOCATION and check bucket, region, encryption and public
    access against the region map. Exits 1 on any violation."""
    as_json = wants_json(as_json, output)
    from residency_sdk.storage.deployment import verify_location

    # Reads deployment settings, no tenant data, decides nothing: nothing to audit.
    res = load_residency(map_path, as_json, audited=False)
    with residency_errors(as_json):
        report = verify_location(res.policy, location, provider=provider)
    ok = report.ok(strict=strict)
    if as_json:
        print_json({**report.to_dict(), "ok": ok, "strict": strict})
    else:
        table = Table(title=escape(f"verify {report.location} ({report.country})"),
                      box=box.SIMPLE)
        for column in ("provider", "bucket", "role", "check", "status", "detail"):
            table.add_column(column, overflow="fold")
        for c in report.checks:
            table.add_row(escape(c.provider), escape(c.bucket), escape(c.role), escape(c.check),
                          f"[{_STYLE[c.status]}]{escape(c.status)}[/]", escape(c.detail))
        console.print(table)
        verdict = "[green]ok[/]" if ok else f"[bold red]{len(report.violations)} violation(s)[/]"
        console.print(f"{escape(report.location)}: {verdict}"
                      + (f", {len(report.unknown)} unknown" if report.unknown else ""),
                      highlight=False)
    if not ok:
        raise typer.Exit(EXIT_BLOCKED)
