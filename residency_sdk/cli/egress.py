"""Egress commands: ``egress check`` (may a tenant's data go to this URL?) and
``egress allowlist`` (the endpoints to allow at the network layer).

``egress check`` decides, so it is audited (``egress_check``); ``egress allowlist`` only
reads the map, so it is not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.markup import escape

from residency_sdk.cli.common import (
    EXIT_BLOCKED,
    EXIT_USAGE,
    AuditOption,
    JsonOption,
    MapOption,
    NoAuditOption,
    OutputOption,
    console,
    emit_document,
    fail,
    load_residency,
    print_json,
    residency_errors,
    wants_json,
)
from residency_sdk.cli.core import AgreementsFileOption, cli_tenant, decision_dict
from residency_sdk.egress.allowlist import FORMATS, egress_allowlist, render
from residency_sdk.egress.guard import EgressDecision
from residency_sdk.errors import InvalidCountry, NoRoute, UnknownDataClass, UnknownMechanism

egress_app = typer.Typer(help="Decide and list where tenants' data may be sent over HTTP "
                              "(compute endpoints, processors).", no_args_is_help=True)

_BAD_INPUT = (InvalidCountry, NoRoute, UnknownDataClass, UnknownMechanism)


def register(app: typer.Typer) -> None:
    """Add the ``egress`` command group to ``app``."""
    egress_app.command("check")(check)
    egress_app.command("allowlist")(allowlist)
    app.add_typer(egress_app, name="egress")


def check(
    country: Annotated[str, typer.Option("--country", "-c", help="Tenant jurisdiction.")],
    url: Annotated[str, typer.Option("--url", help="The URL the request would go to.")],
    data_class: Annotated[str, typer.Option(
        "--data-class", "-d", help="What the request carries: phi, personal, anonymised.")]
    = "phi",
    mechanism: Annotated[
        list[str] | None, typer.Option("--mechanism", "-m", help="A signed mechanism flag.")
    ] = None,
    agreements_file: AgreementsFileOption = None,
    map_path: MapOption = None,
    as_json: JsonOption = False, output: OutputOption = None,
    audit: AuditOption = None,
    no_audit: NoAuditOption = False,
) -> None:
    """Decide whether a request carrying a tenant's data may go to URL. Exit 1 when blocked.

    Allowed: a compute endpoint of the tenant's own location (placement decides), or a
    processor the map declares, when the transfer rules allow its country (with the
    processor's agreements), its data classes include the class and, for phi, it holds a
    BAA. Nothing is sent; the decision is audited (egress_check)."""
    as_json = wants_json(as_json, output)
    res = load_residency(map_path, as_json, audit=audit, no_audit=no_audit)
    with residency_errors(as_json):
        try:
            tenant = cli_tenant("cli", country, mechanism, agreements_file)
            verdict = res.check_egress(tenant, url, data_class, purpose="cli check")
        except _BAD_INPUT as exc:
            _usage(str(exc), as_json, error_type=type(exc).__name__)
    processor = res.map.processors.get(verdict.processor) if verdict.processor else None
    if as_json:
        print_json({"ok": verdict.allowed, "egress": _verdict_dict(verdict),
                    "processor_name": processor.name if processor else None})
    else:
        head = "[bold green]ALLOWED[/]" if verdict.allowed else "[bold red]BLOCKED[/]"
        console.print(f"{head} {escape(verdict.data_class)} data to {escape(verdict.url)}",
                      highlight=False)
        if verdict.kind == "compute":
            what = f"compute endpoint of location {res.policy.location_of(tenant).id}"
        elif processor is not None:
            what = f"processor {processor.id} ({processor.name})"
        else:
            what = "none"
        details = [f"kind: {what}"]
        if verdict.country:
            details.append(f"country: {verdict.country}")
        if verdict.decision is not None and verdict.decision.mechanism:
            details.append(f"via: {verdict.decision.mechanism}")
        say("  " + ", ".join(details))
        for reason in verdict.reasons:
            say(f"  - {reason}")
        for agreement in verdict.agreements:
            say(f"  rests on: {agreement}")
        for warning in verdict.decision.warnings if verdict.decision else ():
            say(f"  warning: {warning}", style="yellow")
    if not verdict.allowed:
        raise typer.Exit(EXIT_BLOCKED)


def allowlist(
    map_path: MapOption = None,
    location: Annotated[str | None, typer.Option(
        "--location", "-l", help="Only this location's compute endpoints (processors are "
        "always listed).")] = None,
    fmt: Annotated[str, typer.Option(
        "--format", "-f", help=f"Output format: {', '.join(FORMATS)}.")] = "txt",
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Write to this file instead of stdout.", dir_okay=False)] = None,
) -> None:
    """The endpoints tenants' data may be sent to, for the network layer.

    Every compute endpoint of every location (or of --location) and every processor
    host. txt: one host:port a line (firewall rules, NetworkPolicy, cloud egress rules);
    json: with kind, owner, country, data classes and source; squid: an egress-proxy
    snippet ending in 'http_access deny all'. Reads the map only: not audited."""
    if fmt not in FORMATS:
        _usage(f"unknown --format {fmt!r}: use one of {', '.join(FORMATS)}", False)
    res = load_residency(map_path, False, audited=False)  # decides nothing
    region_map = res.map
    loc_id = None
    if location is not None:
        wanted = location.strip()
        loc_id = wanted if wanted in region_map.locations else wanted.upper()
        if loc_id not in region_map.locations:
            _usage(f"unknown --location {location!r}: region map {region_map.name!r} has "
                   f"{', '.join(sorted(region_map.locations))}", False)
    with residency_errors(as_json=False):
        endpoints = egress_allowlist(region_map, location=loc_id)
        text = render(endpoints, fmt, map_name=region_map.name, location=loc_id)
    hosts = len({e.host_port for e in endpoints})
    emit_document(text, out, f"egress allow-list written to {out} ({fmt}, {hosts} host(s))")


def say(text: str, style: str | None = None) -> None:
    """Print ``text`` as is (no rich markup or highlighting: URLs and reasons are data)."""
    console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)


def _verdict_dict(v: EgressDecision) -> dict[str, Any]:
    return {"allowed": v.allowed, "url": v.url, "host": v.host, "data_class": v.data_class,
            "kind": v.kind, "processor": v.processor, "country": v.country,
            "reasons": list(v.reasons), "agreements": list(v.agreements),
            "decision": decision_dict(v.decision) if v.decision is not None else None}


def _usage(message: str, as_json: bool, **extra: Any) -> NoReturn:
    fail(message, as_json=as_json, code=EXIT_USAGE, **extra)
