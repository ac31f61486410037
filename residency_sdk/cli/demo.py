"""``residency demo``: the main job on the embedded default, no cloud account needed.

Routes sample tenants from the seed table, shows where their data goes, and attempts
transfers (allowed and blocked).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import typer
from rich.table import Table

from residency_sdk.cli.common import JsonOption, MapOption, console, load_residency, print_json
from residency_sdk.model import Tenant
from residency_sdk.router import Residency

SAMPLE_TENANTS = (
    Tenant(id="charite-berlin", country="DE"),
    Tenant(id="ap-hp-paris", country="FR"),
    Tenant(id="akh-wien", country="AT"),
    Tenant(id="usz-zurich", country="CH"),
    Tenant(id="nhs-leeds", country="GB", agreements=frozenset({"uk_addendum"})),
    Tenant(id="mayo-rochester", country="US", agreements=frozenset({"baa"})),
    Tenant(id="rpa-sydney", country="AU"),
    Tenant(id="auckland-city", country="NZ", agreements=frozenset({"nz_model_clauses"})),
    Tenant(id="acibadem-istanbul", country="TR",
           agreements=frozenset({"kvkk_standard_contract"})),
    Tenant(id="ankara-clinic", country="TR"),
)

SAMPLE_TRANSFERS = (
    ("charite-berlin", "US", "personal"),
    ("charite-berlin", "GB", "phi"),
    ("akh-wien", "FR", "phi"),
    ("usz-zurich", "DE", "phi"),
    ("nhs-leeds", "US", "phi"),
    ("mayo-rochester", "DE", "phi"),
    ("rpa-sydney", "US", "anonymised"),
    ("acibadem-istanbul", "US", "phi"),
)


@dataclass
class DemoSummary:
    """What the demo did, for the closing summary and ``--json``."""

    placements: list[dict[str, Any]] = field(default_factory=list)
    transfers: list[dict[str, Any]] = field(default_factory=list)
    sections: dict[str, Any] = field(default_factory=dict)


def register(app: typer.Typer) -> None:
    """Add ``demo`` to ``app``."""
    app.command("demo")(demo)


def demo(map_path: MapOption = None, as_json: JsonOption = False) -> None:
    """Route sample clinics, attempt transfers and print a summary (no cloud needed)."""
    res = load_residency(map_path, as_json)
    summary = DemoSummary()
    show_routing(res, summary, quiet=as_json)
    show_transfers(res, summary, quiet=as_json)
    if as_json:
        print_json({"placements": summary.placements, "transfers": summary.transfers,
                    **summary.sections})
        return
    blocked = sum(1 for t in summary.transfers if not t["allowed"])
    refused = sum(1 for p in summary.placements if not p["placement_allowed"])
    console.rule("Summary")
    console.print(f"{len(summary.placements)} tenants routed to "
                  f"{len({p['location'] for p in summary.placements})} locations; "
                  f"{refused} placement(s) refused for a missing mechanism; "
                  f"{len(summary.transfers)} transfers attempted, {blocked} blocked.")


def _tenant(tenant_id: str) -> Tenant:
    return next(t for t in SAMPLE_TENANTS if t.id == tenant_id)


def show_routing(res: Residency, summary: DemoSummary, *, quiet: bool) -> None:
    """Resolve every sample tenant and record where its data goes."""
    table = Table(title="Where each clinic's data lives")
    for col in ("tenant", "country", "location", "storage", "placement"):
        table.add_column(col)
    for tenant in SAMPLE_TENANTS:
        placement = res.resolve(tenant)
        decision = res.check_placement(tenant)
        s = placement.storage
        verdict = ("ok" if not decision.is_transfer else
                   f"transfer via {decision.mechanism}" if decision.allowed else
                   "REFUSED: needs " + " or ".join(placement.required_mechanisms[0]))
        summary.placements.append({"tenant": tenant.id, "country": tenant.country,
                                   "location": placement.location, "provider": s.provider,
                                   "region": s.region, "placement_allowed": decision.allowed})
        table.add_row(tenant.id, tenant.country, placement.location,
                      f"{s.provider} {s.region}", verdict)
    if not quiet:
        console.print(table)


def show_transfers(res: Residency, summary: DemoSummary, *, quiet: bool) -> None:
    """Attempt the sample cross-border transfers and record each decision."""
    table = Table(title="Cross-border transfer attempts")
    for col in ("tenant", "data", "from", "to", "decision", "why"):
        table.add_column(col)
    for tenant_id, to, data_class in SAMPLE_TRANSFERS:
        decision = res.check_transfer(_tenant(tenant_id), to, data_class)
        summary.transfers.append({"tenant": tenant_id, "to": to, "data_class": data_class,
                                  "allowed": decision.allowed,
                                  "mechanism": decision.mechanism})
        table.add_row(tenant_id, data_class, decision.source, to,
                      f"[green]allowed ({decision.mechanism})[/]" if decision.allowed
                      else "[red]BLOCKED[/]", decision.reasons[-1])
    if not quiet:
        console.print(table)
