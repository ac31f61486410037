"""Retention and erasure commands: ``retention sweep``, ``erasure request|run|status``.

An erasure request carries the options it was made with (region map file, local root):
``erasure run ID`` needs only ``--state-dir`` (where the request is kept), and every
command the CLI tells the user to run can be pasted back as printed.
"""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from residency_sdk.cli.common import (
    EXIT_BLOCKED,
    AuditOption,
    JsonOption,
    MapOption,
    NoAuditOption,
    OutputOption,
    console,
    load_residency,
    parse_when,
    print_json,
    residency_errors,
    settings,
    wants_json,
)
from residency_sdk.client import Residency
from residency_sdk.erasure import (
    DEFAULT_DEADLINE_DAYS,
    ErasureRequest,
    load_request,
    load_requests,
    run_command,
    status_row,
)
from residency_sdk.errors import ErasureError
from residency_sdk.model import Tenant
from residency_sdk.regions import packaged_maps_dir
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
    Path | None,
    typer.Option("--state-dir", help="Where sweep checkpoints and erasure requests are kept "
                                     "(default: the `state_dir` setting: "
                                     "$RESIDENCY_STATE_DIR or the config file; else "
                                     "./.residency-state).", file_okay=False),
]
ProviderOption = Annotated[
    list[str] | None,
    typer.Option("--provider", "-p", help="Only this provider's backends (repeatable)."),
]
DEFAULT_STATE_DIR = Path(".residency-state")


def state_dir_or_setting(state_dir: Path | None) -> Path:
    """``--state-dir`` when given, else the ``state_dir`` setting, else
    :data:`DEFAULT_STATE_DIR`."""
    if state_dir is not None:
        return state_dir
    return settings().state_dir or DEFAULT_STATE_DIR


def register(app: typer.Typer) -> None:
    """Add the retention and erasure command groups to ``app``."""
    app.add_typer(retention_app, name="retention")
    app.add_typer(erasure_app, name="erasure")


def _load(map_path: Path | None, as_json: bool, local_root: Path | None,
          audit: str | None, no_audit: bool = False, *, audited: bool = True,
          use_settings: bool = True) -> Residency:
    kwargs: dict[str, Any] = {}
    if local_root is not None:
        kwargs["local_root"] = local_root
    return load_residency(map_path, as_json, audit=audit, no_audit=no_audit,
                          audited=audited, use_settings=use_settings, **kwargs)


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
    state_dir: StateDirOption = None,
    audit: AuditOption = None,
    no_audit: NoAuditOption = False,
    as_json: JsonOption = False, output: OutputOption = None,
) -> None:
    """Delete what has outlived its retention period on every backend of a location.

    Every deletion is audited ahead of time."""
    as_json = wants_json(as_json, output)
    state_dir = state_dir_or_setting(state_dir)
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
                   "would delete" if dry_run else "deleted", "held", "changed", "unknown",
                   "status"):
        table.add_column(column, overflow="fold")
    for report in reports:
        for b in report.backends:
            status = "[green]done[/]" if b.done and not b.error and not b.errors \
                else f"[red]{escape(b.error or str(b.errors) + ' error(s)')}[/]"
            deleted = b.would_delete if dry_run else b.deleted
            table.add_row(escape(report.location), escape(b.backend), str(b.examined),
                          str(b.expired),
                          str(deleted), str(b.held), str(b.changed), str(b.unknown_category),
                          status)
    console.print(table)
    for report in reports:
        for item in report.items:
            # changed: uploaded again after it was examined; kept, judged next sweep.
            if item.action in ("held", "changed", "unknown_category", "error"):
                console.print(f"  {item.action}: {item.key}: {item.detail}", highlight=False,
                              markup=False)


# --- erasure -----------------------------------------------------------------------------


def _request_dict(r: ErasureRequest) -> dict[str, Any]:
    return r.model_dump(mode="json")


def _state_hint(state_dir: Path) -> Path | None:
    """``--state-dir`` for a printed command: none for the default folder, else the
    folder made absolute (the command may be run from anywhere)."""
    return None if state_dir == DEFAULT_STATE_DIR else state_dir


def _run_hint(request_id: str, state_dir: Path, audit: str | None) -> str:
    """The command that runs or finishes ``request_id``, ready to paste."""
    command = run_command(request_id, _state_hint(state_dir))
    if audit is not None:  # the run belongs in the same trail as the request
        from residency_sdk._endpoints import redact_url

        command += f" --audit {shlex.quote(redact_url(audit))}"
    return command


def _say_command(lead: str, command: str) -> None:
    # soft_wrap: a long path must stay on one line, or it cannot be pasted back.
    console.print(f"{lead}\n  `{command}`", highlight=False, soft_wrap=True, markup=False)


def _request_options(request: ErasureRequest, map_path: Path | None,
                     local_root: Path | None) -> tuple[Path | None, Path | None]:
    """The map file and local root to run ``request`` with: the ones it was made with.
    An explicit ``--map``/``--local-root`` must name the same ones (a contradiction
    raises :class:`ErasureError`); requests recorded before options were kept use what
    the command line says."""
    options = request.options
    if options is None:
        return map_path, local_root
    made_map = Path(options.map_path) if options.map_path is not None else None
    made_root = Path(options.local_root) if options.local_root is not None else None
    packaged = (packaged_maps_dir() / "default.yaml").resolve()
    given_map = None if map_path is None or map_path.resolve() == packaged \
        else map_path.resolve()
    if map_path is not None and given_map != made_map:
        raise ErasureError(
            f"--map {map_path} contradicts erasure request {request.id}, which was made with "
            f"{made_map or 'the packaged default map'}: drop --map (the request carries its "
            "map)")
    if local_root is not None and (made_root is None or local_root.resolve() != made_root):
        made = f"local root {made_root}" if made_root else "no local root (cloud backends)"
        raise ErasureError(
            f"--local-root {local_root} contradicts erasure request {request.id}, which was "
            f"made with {made}: drop --local-root (the request carries it)")
    return made_map, made_root


@erasure_app.command("request")
def erasure_request(
    tenant: Annotated[str, typer.Option("--tenant", "-t", help="Tenant id.")],
    country: Annotated[str, typer.Option("--country", "-c", help="Tenant jurisdiction (ISO).")],
    terminated: Annotated[
        str | None,
        typer.Option("--terminated", help="Contract termination date (ISO 8601, or today, "
                     "yesterday, 30d); the deadline counts from it (default: now)."),
    ] = None,
    deadline_days: Annotated[
        int, typer.Option("--deadline-days", help="Days allowed to finish the erasure.")
    ] = DEFAULT_DEADLINE_DAYS,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (ticket, clause).")] = None,
    provider: ProviderOption = None,
    map_path: MapOption = None,
    local_root: LocalRootOption = None,
    state_dir: StateDirOption = None,
    audit: AuditOption = None,
    no_audit: NoAuditOption = False,
    as_json: JsonOption = False, output: OutputOption = None,
) -> None:
    """Record an erasure request for a tenant, with its deadline.

    The request keeps the map and local root given here: `erasure run ID` needs only
    --state-dir. It covers the tenant's location and every location and provider its
    data reached (the tenant's lineage); --provider narrows the providers of its own
    location only."""
    as_json = wants_json(as_json, output)
    state_dir = state_dir_or_setting(state_dir)
    res = _load(map_path, as_json, local_root, audit, no_audit)
    with residency_errors(as_json):
        when = None if terminated is None else parse_when(
            terminated, name="--terminated", example="2026-11-30")
        request = res.erasure_tracker(state_dir).request(
            Tenant(id=tenant, country=country), terminated_at=when,
            deadline_days=deadline_days, reason=reason, providers=provider)
    hint = _run_hint(request.id, state_dir, audit)
    if as_json:
        print_json({"ok": True, "request": _request_dict(request), "run": hint})
    else:
        console.print(f"erasure request [bold]{escape(request.id)}[/] for tenant "
                      f"{escape(request.tenant_id)} in {escape(request.location)}: deadline "
                      f"{request.deadline:%Y-%m-%d %H:%M} UTC.", highlight=False)
        _say_command("Run it with:", hint)


@erasure_app.command("run")
def erasure_run(
    request_id: Annotated[str, typer.Argument(help="The request id (er-...).")],
    map_path: MapOption = None,
    local_root: LocalRootOption = None,
    state_dir: StateDirOption = None,
    audit: AuditOption = None,
    no_audit: NoAuditOption = False,
    as_json: JsonOption = False, output: OutputOption = None,
) -> None:
    """Execute (or finish) an erasure request: delete everywhere the tenant's data went,
    verify, destroy its keys, record the receipt.

    Only --state-dir is needed: the map and local root come from the request (an explicit
    --map or --local-root must name the same). Every step is audited ahead of time."""
    as_json = wants_json(as_json, output)
    state_dir = state_dir_or_setting(state_dir)
    with residency_errors(as_json):
        stored = load_request(state_dir, request_id)
        map_path, local_root = _request_options(stored, map_path, local_root)
        if audit is None and not no_audit:
            audit = settings().audit
    # The request carries its map and local root: settings must not replace them.
    res = _load(map_path, as_json, local_root, audit, no_audit, use_settings=False)
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
    hint = None if ok else _run_hint(request.id, state_dir, audit)
    if as_json:
        print_json({"ok": ok, "request": _request_dict(request), "run": hint})
    else:
        _print_run(request)
        console.print(f"erasure {escape(request.id)}: [bold]{request.status}[/]"
                      + (f" (receipt sha256 {request.receipt_sha256})" if ok else ""),
                      highlight=False)
        if hint is not None:
            _say_command("Once the cause above is fixed, finish it with:", hint)
    if not ok:
        raise typer.Exit(EXIT_BLOCKED)


def _print_run(request: ErasureRequest) -> None:
    for b in request.backends.values():
        colour = "green" if b.status == "verified" else "red"
        console.print(f"  [{colour}]{b.status}[/] " + escape(
            f"{b.backend}: {b.found} found, {b.deleted} deleted"
            f"{', ' + str(len(b.held)) + ' held' if b.held else ''}"
            f"{', ' + b.error if b.error else ''}"), highlight=False)
    for location, why in sorted(request.lineage_unreachable.items()):
        console.print("  [red]unreachable[/] " + escape(f"lineage in {location}: {why}"),
                      highlight=False)
    for k in request.keys.values():
        colour = "red" if k.status == "failed" else "green" if k.done else "yellow"
        console.print(f"  [{colour}]key[/] " + escape(f"{k.backend}: {k.summary()}"),
                      highlight=False)
    if request.cleanup_error:
        console.print("  [red]cleanup[/] " + escape(request.cleanup_error), highlight=False)


@erasure_app.command("status")
def erasure_status(
    show_all: Annotated[bool, typer.Option("--all", help="Completed requests too.")] = False,
    fail_on_overdue: Annotated[
        bool, typer.Option("--fail-on-overdue",
                           help="Exit 1 when an open request is past its deadline (for "
                                "cron and CI).")] = False,
    map_path: Annotated[
        Path | None,
        typer.Option("--map", hidden=True, dir_okay=False,
                     help="Ignored: requests carry their own map (accepted for old scripts)."),
    ] = None,
    state_dir: StateDirOption = None,
    as_json: JsonOption = False, output: OutputOption = None,
) -> None:
    """Show open erasure requests against their deadline and what is left of each: the
    backends not yet verified (per location), held objects, unreadable lineage, whether
    the tenant's keys are destroyed, and the command that finishes it.

    Exits 0 whatever it shows, unless --fail-on-overdue is given and a request is past
    its deadline (exit 1)."""
    as_json = wants_json(as_json, output)
    del map_path  # reads request files only; each names its own map
    state_dir = state_dir_or_setting(state_dir)
    with residency_errors(as_json):
        now = datetime.now(UTC)
        requests = load_requests(state_dir, open_only=not show_all)
    hint_dir = _state_hint(state_dir)
    rows = [status_row(r, now, hint_dir) for r in requests]
    overdue = [r for r in rows if r["overdue"]]
    failing = fail_on_overdue and bool(overdue)
    if as_json:
        print_json({"ok": not failing, "overdue": len(overdue), "requests": rows})
    else:
        _print_status(rows)
        if overdue:
            console.print(f"[red]{len(overdue)} request(s) overdue[/]: "
                          + escape(", ".join(r["id"] for r in overdue)), highlight=False)
    if failing:
        raise typer.Exit(EXIT_BLOCKED)


def _print_status(rows: list[dict[str, Any]]) -> None:
    table = Table(box=box.SIMPLE_HEAD, title="erasure requests")
    for column in ("id", "tenant", "loc", "status", "deadline", "days left", "left", "keys"):
        table.add_column(column, overflow="fold")
    for r in rows:
        days = f"[red]{r['days_left']} overdue[/]" if r["overdue"] else str(r["days_left"])
        left = [f"{x['backend']} {x['status']}" + (f" ({x['held']} held)" if x["held"] else "")
                for x in r["left"]]
        left += [f"{loc} lineage unreadable" for loc in r["lineage_unreachable"]]
        table.add_row(*(escape(str(cell)) for cell in (
            r["id"], r["tenant_id"], r["location"], r["status"], r["deadline"][:10])),
            days, escape("\n".join(left) or "-"), escape(str(r["keys"])))
    console.print(table)
    for r in rows:
        if r["run"] is not None:
            _say_command(f"finish {r['id']} with:", r["run"])
