"""Audit commands: ``audit verify``, ``audit report``, ``audit checkpoint export|verify``.

The HMAC key of a keyed log comes from ``$RESIDENCY_AUDIT_HMAC_KEY`` (never a command-line
argument, which would land in shell history and process listings).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from residency_sdk.audit._checkpoint import load_checkpoint
from residency_sdk.audit._format import chain_status, human_bytes
from residency_sdk.audit.checkpoint import export_checkpoint
from residency_sdk.audit.jsonl import verify_jsonl
from residency_sdk.audit.render import FORMATS, render
from residency_sdk.audit.report import AuditReport, build_report
from residency_sdk.audit.verify import VerifyResult, verify_log
from residency_sdk.cli.common import (
    EXIT_BLOCKED,
    EXIT_USAGE,
    JsonOption,
    MapOption,
    console,
    err_console,
    fail,
    print_json,
    residency_errors,
)

audit_app = typer.Typer(help="Verify the tamper-evident audit log and report on it.",
                        no_args_is_help=True)
checkpoint_app = typer.Typer(help="Export and verify sealed checkpoints of an audit log.",
                             no_args_is_help=True)

LogArg = Annotated[Path, typer.Argument(help="The audit log (SQLite file).", dir_okay=False)]
AnyLogArg = Annotated[Path, typer.Argument(
    help="The audit log: a SQLite file, or a .jsonl file from JsonlSink.", dir_okay=False)]


def register(app: typer.Typer) -> None:
    """Add the ``audit`` command group to ``app``."""
    audit_app.command("verify")(verify)
    audit_app.command("report")(report)
    checkpoint_app.command("export")(checkpoint_export)
    checkpoint_app.command("verify")(checkpoint_verify)
    audit_app.add_typer(checkpoint_app, name="checkpoint")
    app.add_typer(audit_app, name="audit")


def _print_result(result: VerifyResult, as_json: bool) -> None:
    if as_json:
        print_json(result.to_dict())
        return
    broken = result.broken
    if broken is None:
        console.print(f"[bold green]ok[/] {result.path}: {result.events:,} events verify "
                      f"(head {result.head_hash})", highlight=False, soft_wrap=True)
        for note in result.notes:
            console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    else:
        err_console.print(
            f"[bold red]BROKEN[/] {result.path}: first broken event is {broken.seq} "
            f"({broken.kind}): {broken.message}; events 1.."
            f"{result.verified_through} verify", highlight=False, soft_wrap=True)


def verify(
    log: AnyLogArg,
    checkpoint: Annotated[Path | None, typer.Option(
        "--checkpoint", help="Also prove the log still holds this sealed checkpoint.",
        dir_okay=False)] = None,
    as_json: JsonOption = False,
) -> None:
    """Check the whole hash chain of LOG; exit 1 and name the first broken event if any."""
    with residency_errors(as_json):
        if log.suffix == ".jsonl":
            if checkpoint is not None:
                fail("--checkpoint applies to SQLite audit logs, not JSON Lines files",
                     as_json=as_json, code=EXIT_USAGE)
            result = verify_jsonl(log)
        else:
            cp = load_checkpoint(checkpoint) if checkpoint is not None else None
            result = verify_log(log, checkpoint=cp)
    _print_result(result, as_json)
    if not result.ok:
        raise typer.Exit(EXIT_BLOCKED)


def report(
    log: LogArg,
    since: Annotated[str | None, typer.Option(
        "--since", help="Start of the window (ISO 8601, inclusive; UTC if no zone).")] = None,
    until: Annotated[str | None, typer.Option(
        "--until", help="End of the window (ISO 8601, exclusive).")] = None,
    fmt: Annotated[str, typer.Option(
        "--format", "-f", help=f"Output format: {', '.join(FORMATS)}.")] = "md",
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Write the report to this file instead of stdout.",
        dir_okay=False)] = None,
    fail_on_violation: Annotated[bool, typer.Option(
        "--fail-on-violation", help="Exit 1 on any violation or a broken chain.")] = False,
    map_path: MapOption = None,
    as_json: JsonOption = False,
) -> None:
    """The transfer-audit report: chain, flows, blocked attempts, violations, tenants."""
    if as_json:
        fmt = "json" if out is None else fmt
    if fmt not in FORMATS:
        fail(f"unknown --format {fmt!r}: use one of {', '.join(FORMATS)}", as_json=as_json,
             code=EXIT_USAGE)
    with residency_errors(as_json):
        region_map = None
        if map_path is not None:
            from residency_sdk.regionmap import load_region_map

            region_map = load_region_map(map_path)
        result = build_report(log, since=since, until=until, region_map=region_map)
        text = render(result, fmt)
    if out is not None:
        out.write_text(text, encoding="utf-8")
        if as_json:
            print_json({"ok": result.ok, "out": str(out), "format": fmt,
                        "chain_ok": result.chain.ok, "violations": result.violation_total})
        else:
            err_console.print(f"report written to {out} ({fmt}); chain "
                              f"{chain_status(result)}; {result.violation_total} violation(s)",
                              highlight=False, soft_wrap=True)
    else:
        sys.stdout.write(text)
    if fail_on_violation and not result.ok:
        raise typer.Exit(EXIT_BLOCKED)


def checkpoint_export(
    log: LogArg,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Write the checkpoint to this file (default: stdout).",
        dir_okay=False)] = None,
    as_json: JsonOption = False,
) -> None:
    """Verify LOG and export a checkpoint of its head (HMAC-sealed when the log is keyed)."""
    with residency_errors(as_json):
        cp = export_checkpoint(log)
    if out is None:
        sys.stdout.write(cp.to_json())
        return
    cp.write(out)
    if as_json:
        print_json({"ok": True, "out": str(out), "seq": cp.seq, "hash": cp.hash,
                    "sealed": cp.seal is not None})
    else:
        console.print(f"checkpoint of event {cp.seq} ({cp.hash}) written to {out}"
                      f"{' (sealed)' if cp.seal else ''}", highlight=False, soft_wrap=True)


def checkpoint_verify(
    log: LogArg,
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint file.", dir_okay=False)],
    as_json: JsonOption = False,
) -> None:
    """Prove LOG was not rewritten up to CHECKPOINT (exit 1 if it was)."""
    with residency_errors(as_json):
        result = verify_log(log, checkpoint=load_checkpoint(checkpoint))
    _print_result(result, as_json)
    if not result.ok:
        raise typer.Exit(EXIT_BLOCKED)


def show_report(log_path: str | Path, *, quiet: bool) -> dict[str, Any]:
    """Print the transfer-audit report of ``log_path`` (unless ``quiet``); return its figures.

    Used at the end of ``residency demo`` to show what the demo just did.
    """
    result: AuditReport = build_report(log_path)
    if not quiet:
        console.rule("Transfer-audit report")
        for part in rich_report(result):
            console.print(part)
    t = result.totals
    return {"log": str(log_path), "chain_ok": result.chain.ok, "events": t["events"],
            "tenants": t["tenants"], "cross_border_allowed": t["cross_border_allowed"],
            "blocked": t["blocked"], "violations": result.violation_total,
            "flows": len(result.flows)}


def rich_report(report: AuditReport) -> list[Any]:
    """The report as rich renderables for a terminal (the Markdown form, laid out)."""
    c, t = report.chain, report.totals
    chain = (f"[bold green]chain {chain_status(report)}[/]" if c.ok
             else f"[bold red]chain {chain_status(report)}[/]")
    viol = (f"[bold {'green' if report.violation_total == 0 else 'red'}]"
            f"{report.violation_total} violation(s)[/]")
    parts: list[Any] = [
        chain,
        f"{t['events']:,} events · {t['tenants']} tenants · {t['cross_border_allowed']:,} "
        f"cross-border allowed ({human_bytes(t['cross_border_bytes'])}) · {t['blocked']:,} "
        f"blocked · {viol}",
    ]
    flows = Table(title="Cross-border flows", box=box.SIMPLE_HEAD)
    for col in ("origin", "location", "destination", "class", "mechanism", "events", "bytes"):
        flows.add_column(col, justify="right" if col in ("events", "bytes") else "left",
                         overflow="fold")
    for f in report.flows:
        flows.add_row(f["origin"], f["location"], f["destination"], f["data_class"],
                      f["mechanism"] or "[bold red]none[/]", f"{f['events']:,}",
                      human_bytes(f["bytes"]))
    blocked = Table(title="Blocked attempts", box=box.SIMPLE_HEAD, expand=True)
    for col in ("who", "tenant", "to", "class", "events"):
        blocked.add_column(col, no_wrap=True)
    blocked.add_column("why", ratio=1)  # the reasons take whatever width is left
    for b in report.blocked:
        blocked.add_row(b["actor"], b["tenant_id"], b["destination"] or "—", b["data_class"],
                        f"{b['events']:,}", "; ".join(b["reasons"]))
    parts += [flows if report.flows else "No cross-border flow.",
              blocked if report.blocked else "No blocked attempt."]
    if report.violations:
        violations = Table(title="Violations", box=box.SIMPLE_HEAD, style="red")
        for col in ("event", "kind", "tenant", "detail"):
            violations.add_column(col, overflow="fold")
        for v in report.violations:
            violations.add_row(str(v["seq"]), v["kind"], v["tenant_id"] or "—", v["detail"])
        parts.append(violations)
    tenants = Table(title="Tenants", box=box.SIMPLE_HEAD)
    for col in ("tenant", "country", "held in", "went to", "events", "blocked"):
        tenants.add_column(col)
    for r in report.tenants:
        tenants.add_row(r["tenant_id"], r["country"] or "—", ", ".join(r["held_in"]) or "—",
                        ", ".join(r["went_to"]) or "—", f"{r['events']:,}", str(r["blocked"]))
    parts.append(tenants)
    return parts
