"""Retention and erasure commands: ``retention sweep``, ``erasure request|run|status``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from residency_sdk.cli.common import (
    EXIT_BLOCKED,
    AuditOption,
    JsonOption,
    MapOption,
    NoAuditOption,
    console,
    fail,
    load_residency,
    print_json,
    residency_errors,
)
from residency_sdk.client import Residency
from residency_sdk.erasure import DEFAULT_DEADLINE_DAYS, ErasureRequest
from residency_sdk.model import Tenant
from residency_sdk.retention import SweepItem, SweepReport

retention_app = typer.Typer(help="Enforce the map's retention periods.", no_args_is_help=True)
erasure_app = typer.Typer(help="Tracked erasure requests (deletion with a deadline).",
                          no_args_is_help=True)

LocalRootOption = Annotated[
    Path | None,
    typer.Option("--local-root", help="Use the embedded local backend under DIR.",
                 file_okay=False),
]
StateDirOption = Annotated[
    Path,
    typer.Option("--state-dir", help="Where sweep checkpoints and erasure requests are kept.",
                 file_okay=False),
]
ProviderOption = Annotated[
    list[str] | None,
    typer.Option("--provider", "-p", help="Only this provider's backends (repeatable)."),
]
DEFAULT_STATE_DIR = Path(".residency-state")


def register(app: typer.Typer) -> None:
    """Add the retention and erasure command groups to ``app``."""
    app.add_typer(retention_app, name="retention")
    app.add_typer(erasure_app, name="erasure")


def _load(map_path: Path | None, as_json: bool, local_root: Path | None,
          audit: str | None, no_audit: bool = False, *, audited: bool = True) -> Residency:
    kwargs: dict[str, Any] = {}
    if local_root is not None:
        kwargs["local_root"] = local_root
    return load_residency(map_path, as_json, audit=audit, no_audit=no_audit,
                          audited=audited, **kwargs)


# --- retention ---------------------------------------------------------------------------


@retention_app.command("sweep")
def sweep(
    location: Annotated[
        list[str] | None,
        typer.Option("--location", "-l", help="Location to sweep (repeatable; default: all)."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report, delete nothing.")] = False,
    provider: ProviderOption = None,
    map_path: MapOption = None,
    local_root: LocalRootOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    audit: AuditOption = None,
    no_audit: NoAuditOption = False,
    as_json: JsonOption = False,
) -> None:
    """Delete what has outlived its retention period on every backend of a location.

    Every deletion is audited ahead of time."""
    res = _load(map_path, as_json, local_root, audit, no_audit)
    reports: list[SweepReport] = []
    with residency_errors(as_json):
        locations = [loc.strip().upper() for loc in location] if location \
            else sorted(res.map.locations)
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                      TextColumn("{task.completed} objects"), TimeElapsedColumn(),
                      console=console, disable=as_json, transient=True) as bar:
            for loc in locations:
                task = bar.add_task(f"sweeping {loc}", total=None)

                def advance(item: SweepItem, task: Any = task, loc: str = loc) -> None:
                    bar.update(task, advance=1,
                               description=f"sweeping {loc} {item.backend}")

                reports.append(res.retention_sweep(
                    loc, dry_run=dry_run, providers=provider, state_dir=state_dir,
                    progress=advance).run())
    ok = all(r.ok for r in reports)
    if as_json:
        print_json({"ok": ok, "dry_run": dry_run, "sweeps": [r.to_dict() for r in reports]})
    else:
        _print_sweeps(reports, dry_run)
    if not ok:
        raise typer.Exit(EXIT_BLOCKED)


def _print_sweeps(reports: list[SweepReport], dry_run: bool) -> None:
    table = Table(box=box.SIMPLE_HEAD, title="retention sweep" + (" (dry run)" if dry_run
                                                                   else ""))
    for column in ("loc", "backend", "examined", "expired",
                   "would delete" if dry_run else "deleted", "held", "unknown", "status"):
        table.add_column(column, overflow="fold")
    for report in reports:
        for b in report.backends:
            status = "[green]done[/]" if b.done and not b.error and not b.errors \
                else f"[red]{b.error or str(b.errors) + ' error(s)'}[/]"
            deleted = b.would_delete if dry_run else b.deleted
            table.add_row(report.location, b.backend, str(b.examined), str(b.expired),
                          str(deleted), str(b.held), str(b.unknown_category), status)
    console.print(table)
    for report in reports:
        for item in report.items:
            if item.action in ("held", "unknown_category", "error"):
                console.print(f"  {item.action}: {item.key}: {item.detail}", highlight=False)


# --- erasure -----------------------------------------------------------------------------


def _request_dict(r: ErasureRequest) -> dict[str, Any]:
    return r.model_dump(mode="json")


@erasure_app.command("request")
def erasure_request(
    tenant: Annotated[str, typer.Option("--tenant", "-t", help="Tenant id.")],
    country: Annotated[str, typer.Option("--country", "-c", help="Tenant jurisdiction (ISO).")],
    terminated: Annotated[
        str | None,
        typer.Option("--terminated", help="Contract termination date (ISO 8601); the deadline "
                     "counts from it (default: now)."),
    ] = None,
    deadline_days: Annotated[
        int, typer.Option("--deadline-days", help="Days allowed to finish the erasure.")
    ] = DEFAULT_DEADLINE_DAYS,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (ticket, clause).")] = None,
    provider: ProviderOption = None,
    map_path: MapOption = None,
    local_root: LocalRootOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    audit: AuditOption = None,
    no_audit: NoAuditOption = False,
    as_json: JsonOption = False,
) -> None:
    """Record an erasure request for a tenant, with its deadline."""
    res = _load(map_path, as_json, local_root, audit, no_audit)
    with residency_errors(as_json):
        when = None
        if terminated is not None:
            try:
                when = datetime.fromisoformat(terminated)
            except ValueError:
                fail(f"invalid --terminated {terminated!r}: use an ISO 8601 date such as "
                     "2026-11-30", as_json=as_json)
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
        request = res.erasure_tracker(state_dir).request(
            Tenant(id=tenant, country=country), terminated_at=when,
            deadline_days=deadline_days, reason=reason, providers=provider)
    if as_json:
        print_json({"ok": True, "request": _request_dict(request)})
    else:
        console.print(f"erasure request [bold]{request.id}[/] for tenant {request.tenant_id} "
                      f"in {request.location}: deadline {request.deadline:%Y-%m-%d %H:%M} UTC. "
                      f"Run it with `residency erasure run {request.id}`.", highlight=False)


@erasure_app.command("run")
def erasure_run(
    request_id: Annotated[str, typer.Argument(help="The request id (er-...).")],
    map_path: MapOption = None,
    local_root: LocalRootOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    audit: AuditOption = None,
    no_audit: NoAuditOption = False,
    as_json: JsonOption = False,
) -> None:
    """Execute (or finish) an erasure request: delete, verify, record the receipt.

    Every backend's erasure is audited ahead of time."""
    res = _load(map_path, as_json, local_root, audit, no_audit)
    bar = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                   TextColumn("{task.completed} deleted"), console=console, disable=as_json,
                   transient=True)
    with residency_errors(as_json), bar:
        task = bar.add_task(f"erasing {request_id}", total=None)
        tracker = res.erasure_tracker(
            state_dir,
            progress=lambda backend, _key: bar.update(task, advance=1,
                                                      description=f"erasing {backend}"))
        request = tracker.run(request_id)
    ok = request.status == "completed"
    if as_json:
        print_json({"ok": ok, "request": _request_dict(request)})
    else:
        for b in request.backends.values():
            colour = "green" if b.status == "verified" else "red"
            console.print(f"  [{colour}]{b.status}[/] {b.backend}: {b.deleted} deleted"
                          f"{', ' + str(len(b.held)) + ' held' if b.held else ''}"
                          f"{', ' + b.error if b.error else ''}", highlight=False)
        console.print(f"erasure {request.id}: [bold]{request.status}[/]"
                      + (f" (receipt sha256 {request.receipt_sha256})" if ok else ""),
                      highlight=False)
    if not ok:
        raise typer.Exit(EXIT_BLOCKED)


@erasure_app.command("status")
def erasure_status(
    show_all: Annotated[bool, typer.Option("--all", help="Completed requests too.")] = False,
    map_path: MapOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    as_json: JsonOption = False,
) -> None:
    """Show open erasure requests against their deadline (overdue ones first)."""
    res = _load(map_path, as_json, None, None, audited=False)  # reads request files only
    with residency_errors(as_json):
        tracker = res.erasure_tracker(state_dir)
        now = tracker.clock()
        requests = tracker.requests(open_only=not show_all)
    rows: list[dict[str, Any]] = [{"id": r.id, "tenant_id": r.tenant_id, "location": r.location,
             "status": r.status, "deadline": r.deadline.isoformat(),
             "days_left": round(r.time_left(now).total_seconds() / 86400, 1),
             "overdue": r.overdue(now)} for r in requests]
    overdue = [r for r in rows if r["overdue"]]
    if as_json:
        print_json({"ok": not overdue, "requests": rows})
    else:
        table = Table(box=box.SIMPLE_HEAD, title="erasure requests")
        for column in ("id", "tenant", "loc", "status", "deadline", "days left"):
            table.add_column(column, overflow="fold")
        for r in rows:
            left = f"[red]{r['days_left']} overdue[/]" if r["overdue"] else str(r["days_left"])
            table.add_row(r["id"], r["tenant_id"], r["location"], r["status"],
                          r["deadline"][:10], left)
        console.print(table)
    if overdue:
        raise typer.Exit(EXIT_BLOCKED)
