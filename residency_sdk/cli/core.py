"""Routing and transfer commands: ``resolve``, ``transfer check``, ``map validate|show|schema``."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from residency_sdk.agreements import Agreement, Derogation, as_agreement
from residency_sdk.cli.common import (
    EXIT_BLOCKED,
    AuditOption,
    JsonOption,
    MapOption,
    NoAuditOption,
    OutputOption,
    fail,
    load_residency,
    parse_when,
    print_json,
    residency_errors,
    stdout_console,
    wants_json,
    write_text_file,
)
from residency_sdk.errors import InputError
from residency_sdk.model import Decision, Placement, Tenant
from residency_sdk.policy import ResidencyPolicy
from residency_sdk.regionmap import load_region_map, region_map_json_schema
from residency_sdk.rules import load_transfer_rules

map_app = typer.Typer(help="Validate and inspect region maps.", no_args_is_help=True)
transfer_app = typer.Typer(help="Decide cross-border transfers.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the routing commands to ``app``."""
    app.command("resolve")(resolve)
    app.add_typer(transfer_app, name="transfer")
    app.add_typer(map_app, name="map")


def placement_dict(p: Placement) -> dict[str, Any]:
    """A placement as plain JSON-able data."""
    return p.model_dump(mode="json")


def decision_dict(d: Decision) -> dict[str, Any]:
    """A decision as plain JSON-able data, with what would unblock it."""
    data = d.model_dump(mode="json")
    data["unblock_with"] = [list(alts) for alts in d.unblock_with]
    return data


AgreementsFileOption = Annotated[Path | None, typer.Option(
    "--agreements-file", help="YAML or JSON list of agreements (mechanism, counterparty, "
    "destinations, data_classes, signed_on, expires_on, reference, notified_on).",
    dir_okay=False)]
OutOfScopeOption = Annotated[list[str] | None, typer.Option(
    "--out-of-scope", help="OVERLAY=REASON: the tenant is outside a sector overlay "
    "(sgb5_393, hds, doj_dsp), for the stated reason.")]


def cli_tenant(tenant_id: str, country: str, mechanisms: list[str] | None,
               agreements_file: Path | None = None,
               out_of_scope: list[str] | None = None) -> Tenant:
    """The tenant a command asks about: bare mechanisms, agreements from a file, and
    overlays it is declared outside of."""
    agreements: set[Agreement] = {Agreement(m) for m in mechanisms or ()}
    if agreements_file is not None:
        agreements |= load_agreements_file(agreements_file)
    declared: dict[str, str] = {}
    for item in out_of_scope or ():
        overlay, sep, reason = item.partition("=")
        if not sep or not overlay.strip() or not reason.strip():
            raise InputError(f"--out-of-scope {item!r}: give OVERLAY=REASON, e.g. "
                             "'sgb5_393=private clinic, not an SGB V provider'")
        declared[overlay.strip()] = reason.strip()
    return Tenant(id=tenant_id, country=country, agreements=frozenset(agreements),
                  out_of_scope=declared)


def load_agreements_file(path: Path) -> set[Agreement]:
    """The agreements listed in a YAML/JSON file (a list, or ``{agreements: [...]}``)."""
    from residency_sdk._yamlio import load_yaml_file

    raw = load_yaml_file(path)
    items = raw.get("agreements") if isinstance(raw, dict) else raw
    if not isinstance(items, list):
        raise InputError(f"{path}: expected a list of agreements (or a mapping with an "
                         "'agreements' list)")
    out: set[Agreement] = set()
    for i, item in enumerate(items):
        try:
            out.add(as_agreement(item))
        except InputError as exc:
            raise InputError(f"{path}: agreement {i}: {exc}") from None
    return out


def resolve(
    country: Annotated[str, typer.Option("--country", "-c", help="Tenant jurisdiction (ISO).")],
    agreement: Annotated[
        list[str] | None, typer.Option("--mechanism", "-m", help="A signed mechanism flag.")
    ] = None,
    agreements_file: AgreementsFileOption = None,
    out_of_scope: OutOfScopeOption = None,
    map_path: MapOption = None,
    as_json: JsonOption = False, output: OutputOption = None,
    audit: AuditOption = None,
    no_audit: NoAuditOption = False,
) -> None:
    """Show where a tenant of COUNTRY keeps its data and what placement itself needs.

    The placement decision is audited."""
    as_json = wants_json(as_json, output)
    res = load_residency(map_path, as_json, audit=audit, no_audit=no_audit)
    with residency_errors(as_json):
        tenant = cli_tenant("cli", country, agreement, agreements_file, out_of_scope)
        placement = res.resolve(tenant)
        decision = res.check_placement(tenant, actor="cli")
    if as_json:
        print_json({"ok": decision.allowed, "placement": placement_dict(placement),
                    "placement_decision": decision_dict(decision)})
    else:
        from rich.markup import escape  # rich only for people: --json never imports it

        console = stdout_console()
        s = placement.storage
        console.print(f"[bold]{escape(tenant.country)}[/] -> location [bold green]"
                      f"{escape(placement.location)}[/] (route "
                      f"{escape(placement.matched_route)})", highlight=False)
        failover = f" failover {s.failover_region}" if s.failover_region else ""
        console.print(escape(f"  storage: {s.provider} {s.region} bucket {s.bucket}{failover}"),
                      highlight=False)
        if placement.compute:
            c = placement.compute
            console.print(escape(f"  compute: {c.provider} {c.region} {c.endpoint}"),
                          highlight=False)
        if placement.required_mechanisms:
            needs = " and ".join(" or ".join(alts) for alts in placement.required_mechanisms)
            verdict = "[green]held[/]" if decision.allowed else "[bold red]missing[/]"
            what = ("placement is a cross-border transfer" if decision.is_transfer
                    else "placement with the vendor")
            console.print(f"  {what}: needs {escape(needs)} ({verdict})", highlight=False)
    if not decision.allowed:
        raise typer.Exit(EXIT_BLOCKED)


@transfer_app.command("check")
def transfer_check(
    country: Annotated[str, typer.Option("--country", "-c", help="Tenant jurisdiction.")],
    to: Annotated[str, typer.Option("--to", help="Destination country.")],
    data_class: Annotated[str, typer.Option("--data-class", "-d")] = "phi",
    mechanism: Annotated[
        list[str] | None, typer.Option("--mechanism", "-m", help="A signed mechanism flag.")
    ] = None,
    source: Annotated[
        str | None, typer.Option("--from", help="Where the data lives now (default: location).")
    ] = None,
    agreements_file: AgreementsFileOption = None,
    out_of_scope: OutOfScopeOption = None,
    derogation: Annotated[str | None, typer.Option(
        "--consent", help="Explicit consent given for this one transfer: its reference "
        "(a derogation, GDPR Art. 49 / FADP Art. 17 / KVKK Art. 9(6)).")] = None,
    counterparty: Annotated[str | None, typer.Option(
        "--counterparty", help="The recipient (default: the map's operator there).")] = None,
    at: Annotated[str | None, typer.Option(
        "--at", help="Decide as on this date (YYYY-MM-DD); default today.")] = None,
    own_use: Annotated[bool, typer.Option(
        "--own-use", help="The recipient uses the data for its own purposes.")] = False,
    map_path: MapOption = None,
    as_json: JsonOption = False, output: OutputOption = None,
    audit: AuditOption = None,
    no_audit: NoAuditOption = False,
) -> None:
    """Decide whether a tenant's data may move to another country. Exit 1 when blocked.

    The decision is audited, with the references of the agreements it rests on."""
    as_json = wants_json(as_json, output)
    res = load_residency(map_path, as_json, audit=audit, no_audit=no_audit)
    with residency_errors(as_json):
        tenant = cli_tenant("cli", country, mechanism, agreements_file, out_of_scope)
        decision = res.check_transfer(
            tenant, to, data_class, source=source, counterparty=counterparty,
            derogation=None if derogation is None else Derogation(reference=derogation),
            at=None if at is None else _parse_date(at), own_use=own_use)
    if as_json:
        print_json({"ok": decision.allowed, "decision": decision_dict(decision)})
    else:
        from rich.markup import escape

        console = stdout_console()
        head = "[bold green]ALLOWED[/]" if decision.allowed else "[bold red]BLOCKED[/]"
        basis = f" via {decision.mechanism}" if decision.mechanism else ""
        console.print(f"{head} " + escape(f"{decision.data_class} {decision.source} -> "
                                          f"{decision.destination}{basis}"), highlight=False)
        for reason in decision.reasons:
            console.print(f"  - {reason}", highlight=False, markup=False)
        for agreement in decision.agreements:
            console.print(f"  rests on: {agreement}", highlight=False, markup=False)
        for warning in decision.warnings:
            console.print(f"  warning: {warning}", style="yellow", highlight=False,
                          markup=False)
    if not decision.allowed:
        raise typer.Exit(EXIT_BLOCKED)


def _parse_date(text: str, name: str = "--at") -> date:
    return parse_when(text, name=name, example="2026-12-31").date()


@map_app.command("validate")
def map_validate(
    path: Annotated[Path, typer.Argument(help="Region map file.", dir_okay=False)],
    strict: Annotated[bool, typer.Option(
        "--strict", help="Also fail (exit 1) when the map adds cloud regions the built-in "
        "table lacks (unreviewed regions: their country is the map's word only).")] = False,
    on_date: Annotated[str | None, typer.Option(
        "--on", help="Check review dates as on this date (YYYY-MM-DD); default today.")]
    = None,
    as_json: JsonOption = False, output: OutputOption = None,
) -> None:
    """Validate a region map and its transfer rules. Exit 1 with the bad path on error.

    Also lists the cloud regions the map adds (unreviewed: a warning, an error with
    --strict), the endpoints accepted on the map's word (endpoint_country and
    endpoint_source) and the loopback emulator endpoints."""
    as_json = wants_json(as_json, output)
    with residency_errors(as_json):
        region_map = load_region_map(path)
        rules = load_transfer_rules(region_map.rules_file, region_map.groups)
        policy = ResidencyPolicy(region_map, rules)
        on = _parse_date(on_date, "--on") if on_date else datetime.now(UTC).date()
    unreviewed = [{"provider": u.provider, "region": u.region, "country": u.country,
                   "path": u.path, "provider_knows_region": u.provider_knows}
                  for u in region_map.unreviewed_regions]
    stated = [{"path": e.path, "endpoint": e.endpoint, "country": e.country,
               "source": e.source} for e in region_map.stated_endpoints]
    emulators = [{"path": e.path, "endpoint": e.endpoint}
                 for e in region_map.emulator_endpoints]
    warnings = [
        f"unreviewed region {u['provider']} {u['region']} (at {u['path']}) is taken to be "
        f"in {u['country']} on this map's word only: it is not in the built-in region "
        "table; check it against the provider's region list, then add it to "
        "region_maps/cloud_regions.yaml (or drop it)" for u in unreviewed]
    past_review = rules.facts_past_review(on)
    unscoped = [f"unscoped agreement {a.label} in transfer_policy.agreements: it covers "
                "every destination and recipient and never expires; give it destinations, a "
                "counterparty, dates and a reference" for a in sorted(
                    policy.map_agreements, key=lambda a: a.label) if not a.scoped]
    for processor in region_map.processors.values():
        for raw in processor.agreements:
            agreement = Agreement(**raw)
            if not agreement.scoped:
                unscoped.append(f"unscoped agreement {agreement.label} of processor "
                                f"{processor.id}: give it destinations, a counterparty "
                                f"({processor.name!r}), dates and a reference")
    processors: list[dict[str, Any]] = [{"id": p.id, "name": p.name, "country": p.country,
                   "hosts": sorted(p.hosts), "baa": p.baa,
                   "data_classes": sorted(p.data_classes), "retention": p.retention,
                   "source": p.source} for p in region_map.processors.values()]
    declared = [f"the whole map is declared out of scope of {rules.overlays[o].name}: "
                f"{reason}" for o, reason in policy.map_out_of_scope]
    warnings += [f"rule past review: {item}" for item in past_review] + unscoped + declared
    if strict and unreviewed:
        names = ", ".join(f"{u['provider']} {u['region']} ({u['path']})" for u in unreviewed)
        fail(f"{path}: --strict refuses unreviewed cloud regions: {names}; their country "
             "is the map's word only. Add them to the built-in table "
             "(region_maps/cloud_regions.yaml) after review, or validate without --strict",
             as_json=as_json, error_type="UnreviewedRegion", file=str(path),
             unreviewed_regions=unreviewed)
    summary = {"ok": True, "file": str(path), "name": region_map.name,
               "locations": sorted(region_map.locations), "countries_routed":
               len(region_map.routes), "regimes": sorted(rules.regimes),
               "unreviewed_regions": unreviewed, "stated_endpoints": stated,
               "emulator_endpoints": emulators, "rules_past_review": past_review,
               "unscoped_agreements": unscoped, "processors": processors,
               "warnings": warnings}
    if as_json:
        print_json(summary)
        return
    from rich.markup import escape

    console = stdout_console()
    console.print(f"[green]valid[/] {escape(str(path))}: {len(region_map.locations)} "
                  f"locations, {len(region_map.routes)} countries routed, "
                  f"{len(rules.regimes)} regimes", highlight=False)
    def say(text: str, style: str | None = None) -> None:
        console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)

    for warning in warnings:
        say(f"warning: {warning}", style="yellow")
    if stated:
        say("endpoints accepted on the map's word (endpoint_country + endpoint_source):")
        for e in stated:
            say(f"  {e['path']}: {e['endpoint']} serves from {e['country']} "
                f"(source: {e['source']})")
    for e in emulators:
        say(f"emulator endpoint (loopback, not region-checked) at {e['path']}: "
            f"{e['endpoint']}")
    for p in processors:
        say(f"processor {p['id']} ({p['name']}) in {p['country']}: "
            f"{', '.join(p['hosts'])}; receives {', '.join(p['data_classes'])}"
            f"{'' if p['baa'] else ' (no BAA: never phi)'}; source: {p['source']}")


@map_app.command("show")
def map_show(map_path: MapOption = None, as_json: JsonOption = False,
             output: OutputOption = None) -> None:
    """Print the routes and locations of a region map."""
    as_json = wants_json(as_json, output)
    res = load_residency(map_path, as_json, audited=False)  # decides nothing
    region_map = res.map
    if as_json:
        print_json({
            "name": region_map.name,
            "routes": {c: {"location": r.location, "matched": r.matched}
                       for c, r in sorted(region_map.routes.items())},
            "locations": {lid: {"name": loc.name, "country": loc.country,
                                "default_provider": loc.default_provider,
                                "backends": {p: t.model_dump(mode="json")
                                             for p, t in loc.backends.items()}}
                          for lid, loc in region_map.locations.items()},
        })
        return
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    console = stdout_console()
    routes = Table(title=f"Routes ({escape(region_map.name)})")
    for col in ("rule", "countries", "location"):
        routes.add_column(col, overflow="fold")
    for rule, target in region_map.document.routes.items():
        loc = target if isinstance(target, str) else target.to
        members = region_map.groups.get(rule, frozenset({rule}))
        overridden = sorted(c for c in members if region_map.routes[c].matched != rule)
        shown = " ".join(sorted(members - set(overridden)))
        if overridden:
            shown += f" (not {' '.join(overridden)}: own route)"
        routes.add_row(escape(rule), escape(shown), escape(loc))
    console.print(routes)
    locations = Table(title="Locations (* = default provider)", box=box.SIMPLE_HEAD,
                      pad_edge=False)
    for col in ("loc", "provider", "region", "failover", "bucket", "BAA"):
        locations.add_column(col, overflow="fold")
    for lid, location in region_map.locations.items():
        for provider, t in location.backends.items():
            marker = "*" if provider == location.default_provider else ""
            locations.add_row(*(escape(cell) for cell in (
                lid, provider + marker, t.region, t.failover_region or "-", t.bucket,
                "yes" if t.baa else "no")))
    console.print(locations)


@map_app.command("schema")
def map_schema(
    out: Annotated[Path | None, typer.Option("--out", help="Write to this file.")] = None,
) -> None:
    """Print (or write) the JSON Schema of region maps."""
    text = json.dumps(region_map_json_schema(), indent=2) + "\n"
    if out is None:
        stdout_console().out(text, highlight=False)
    else:
        write_text_file(out, text)
