"""``residency demo``: the main job on the embedded default, no cloud account needed.

Routes sample tenants from the seed table, shows where their data goes, attempts
transfers (allowed and blocked), stores and reads objects in each clinic's location on the
encrypted local backend, and ends with the transfer-audit report of everything it did.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from residency_sdk.cli.common import (
    AuditOption,
    JsonOption,
    MapOption,
    OutputOption,
    console,
    load_residency,
    print_json,
    rule,
    wants_json,
)
from residency_sdk.client import Residency
from residency_sdk.errors import PlacementBlocked, TransferBlocked
from residency_sdk.model import Tenant

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


WorkdirOption = Annotated[
    Path | None,
    typer.Option("--workdir", file_okay=False,
                 help="Folder for the demo's local storage and audit log "
                      "(default: a new temporary folder)."),
]


def demo(map_path: MapOption = None, workdir: WorkdirOption = None,
         as_json: JsonOption = False, output: OutputOption = None,
         audit_sink: AuditOption = None) -> None:
    """Route sample clinics, store their data in-country, attempt transfers and print the
    transfer-audit report (local encrypted storage, no cloud account needed).

    Audited to WORKDIR/audit.db, or the log given with --audit."""
    as_json = wants_json(as_json, output)
    from residency_sdk.cli.audit import show_report

    root = workdir or Path(tempfile.mkdtemp(prefix="residency-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    audit_log: Any = audit_sink if audit_sink is not None else root / "audit.db"
    res = load_residency(map_path, as_json, audit=audit_log, local_root=root / "data")
    summary = DemoSummary()
    try:
        show_routing(res, summary, quiet=as_json)
        show_transfers(res, summary, quiet=as_json)
        show_storage(res, summary, quiet=as_json, root=root / "data")
    finally:
        res.close()
    summary.sections["audit"] = show_report(audit_log, quiet=as_json)
    if as_json:
        print_json({"workdir": str(root), "placements": summary.placements,
                    "transfers": summary.transfers, **summary.sections})
        return
    blocked = sum(1 for t in summary.transfers if not t["allowed"])
    refused = sum(1 for p in summary.placements if not p["placement_allowed"])
    audit = summary.sections["audit"]
    rule("Summary")
    console.print(f"{len(summary.placements)} tenants routed to "
                  f"{len({p['location'] for p in summary.placements})} locations; "
                  f"{refused} placement(s) refused for a missing mechanism; "
                  f"{len(summary.transfers)} transfers decided, {blocked} blocked; "
                  f"{audit['events']} audit events, chain "
                  f"{'valid' if audit['chain_ok'] else 'BROKEN'}, "
                  f"{audit['violations']} violation(s).")
    console.print(f"Data and audit log kept in {root} (try: residency audit report "
                  f"{audit_log} --format html --out report.html)", markup=False,
                  highlight=False, soft_wrap=True)


def _tenant(tenant_id: str) -> Tenant:
    return next(t for t in SAMPLE_TENANTS if t.id == tenant_id)


def show_routing(res: Residency, summary: DemoSummary, *, quiet: bool) -> None:
    """Resolve every sample tenant and record where its data goes."""
    table = Table(title="Where each clinic's data lives", box=box.SIMPLE_HEAD)
    for col in ("tenant", "from", "lives in", "cloud backend in the map", "placement"):
        table.add_column(col, overflow="fold")
    for tenant in SAMPLE_TENANTS:
        placement = res.resolve(tenant)
        decision = res.check_placement(tenant, actor="demo", purpose="demo:routing")
        s = placement.storage
        verdict = ("in country" if not decision.is_transfer else
                   f"[green]transfer via {escape(str(decision.mechanism))}[/]"
                   if decision.allowed else
                   "[red]REFUSED[/]: needs "
                   + escape(" or ".join(placement.required_mechanisms[0])))
        summary.placements.append({"tenant": tenant.id, "country": tenant.country,
                                   "location": placement.location, "provider": s.provider,
                                   "region": s.region, "placement_allowed": decision.allowed})
        table.add_row(escape(tenant.id), escape(tenant.country), escape(placement.location),
                      escape(f"{s.provider} {s.region}"), verdict)
    if not quiet:
        console.print(table)


def show_transfers(res: Residency, summary: DemoSummary, *, quiet: bool) -> None:
    """Attempt the sample cross-border transfers and record each decision."""
    table = Table(title="Cross-border transfer decisions", box=box.SIMPLE_HEAD)
    for col in ("tenant", "data", "route", "decision"):
        table.add_column(col, overflow="fold")
    for tenant_id, to, data_class in SAMPLE_TRANSFERS:
        decision = res.check_transfer(_tenant(tenant_id), to, data_class, actor="demo",
                                      purpose="demo")
        summary.transfers.append({"tenant": tenant_id, "to": to, "data_class": data_class,
                                  "allowed": decision.allowed,
                                  "mechanism": decision.mechanism,
                                  "reasons": list(decision.reasons)})
        if decision.allowed:
            verdict = f"[green]allowed[/] via {escape(str(decision.mechanism))}"
        else:
            needs = " and ".join("|".join(alts) for alts in decision.unblock_with)
            verdict = "[bold red]BLOCKED[/] " + escape(
                f"({', '.join(decision.regimes)}): needs {needs}")
        table.add_row(escape(tenant_id), escape(data_class), escape(f"{decision.source} -> {to}"),
                      verdict)
    if not quiet:
        console.print(table)


# --- storage in the demo ---------------------------------------------------------------

_DEMO_KEY = "studies/demo-001/ct-slice-001.dcm"


def _sample_image(tenant_id: str) -> bytes:
    # Synthetic, obviously fake bytes shaped like a DICOM preamble; never real data.
    return b"\0" * 128 + b"DICM" + f"synthetic sample for {tenant_id}".encode() * 64


def show_storage(res: Residency, summary: DemoSummary, *, quiet: bool, root: Path) -> None:
    """Store and read sample objects on the local backend under ``root``, then attempt a
    blocked and an allowed cross-border copy; record it in ``summary.sections["storage"]``.
    """
    from residency_sdk.storage.keys import tenant_key

    # The same audit trail as `res` (its sinks stay open: `res` owns and closes them).
    local = Residency(res.policy, audit_hooks=res.audit_hooks, audit_sinks=res.audit_sinks,
                      local_root=root)
    by_id = {t.id: t for t in SAMPLE_TENANTS}
    section: dict[str, Any] = {"root": str(root), "objects": [], "refused": [],
                               "transfers": []}
    table = Table(title=f"{_DEMO_KEY} stored per clinic (local backend, AES-256-GCM)",
                  caption=escape(f"under {root}"))
    for col in ("tenant", "location", "bytes", "read back"):
        table.add_column(col)
    for tenant_id in ("charite-berlin", "mayo-rochester", "acibadem-istanbul",
                      "ankara-clinic"):
        tenant = by_id[tenant_id]
        store = local.storage_for(tenant, actor="demo", purpose="demo")
        try:
            info = store.put(_DEMO_KEY, _sample_image(tenant.id), data_class="phi")
        except PlacementBlocked as exc:
            section["refused"].append({"tenant": tenant.id, "location": store.location,
                                       "error": str(exc)})
            needs = " or ".join(store.placement.required_mechanisms[0])
            table.add_row(escape(tenant.id), escape(store.location), "-",
                          f"[red]REFUSED: needs {escape(needs)}[/]")
            continue
        same = store.get(_DEMO_KEY) == _sample_image(tenant.id)
        section["objects"].append({"tenant": tenant.id, "location": info.location,
                                   "key": info.key, "size": info.size,
                                   "checksum": info.checksum, "encryption": info.encryption,
                                   "read_back_ok": same})
        table.add_row(escape(tenant.id), escape(info.location), str(info.size),
                      "[green]ok, checksum verified[/]" if same else "[red]MISMATCH[/]")
    transfers = Table(title="Cross-border copies of stored objects")
    for col in ("tenant", "from", "to", "result", "at destination"):
        transfers.add_column(col)
    charite = by_id["charite-berlin"]
    for to in ("US", "GB"):
        dest_store = local.store(local.backend(to), to)
        try:
            copied = local.transfer(charite, _DEMO_KEY, to=to, data_class="phi",
                                    actor="demo", purpose="demo")
            result = f"copied ({copied.size} bytes)"
            allowed = True
        except TransferBlocked as exc:
            needs = " and ".join(" or ".join(alts) for alts in exc.decision.unblock_with)
            result = escape(f"BLOCKED (needs {needs})" if needs else "BLOCKED")
            allowed = False
        present = dest_store.exists(tenant_key(charite, _DEMO_KEY))
        section["transfers"].append({"tenant": charite.id, "from": "DE", "to": to,
                                     "allowed": allowed, "present_at_destination": present})
        transfers.add_row(charite.id, "DE", to,
                          f"[green]{result}[/]" if allowed else f"[red]{result}[/]",
                          "object present" if present else "nothing copied")
    local.close()
    summary.sections["storage"] = section
    if not quiet:
        console.print(table)
        console.print(transfers)
