"""Audit commands: ``audit verify``, ``audit report``, ``audit combine``,
``audit checkpoint export|verify``.

The HMAC key of a keyed log comes from ``$RESIDENCY_AUDIT_HMAC_KEY`` (never a command-line
argument, which would land in shell history and process listings).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from residency_sdk.audit._checkpoint import load_checkpoint
from residency_sdk.audit._format import chain_status, human_bytes, recorded
from residency_sdk.audit.checkpoint import export_checkpoint
from residency_sdk.audit.combine import COMBINED_FORMATS, combine_reports
from residency_sdk.audit.jsonl import verify_jsonl
from residency_sdk.audit.render import render_combined
from residency_sdk.audit.report import AuditReport, build_report
from residency_sdk.audit.verify import VerifyResult, verify_log
from residency_sdk.cli import audit_report
from residency_sdk.cli.common import (
    EXIT_BLOCKED,
    EXIT_USAGE,
    JsonOption,
    OutputOption,
    console,
    err_console,
    fail,
    print_json,
    residency_errors,
    rule,
    wants_json,
    write_text_file,
)
from residency_sdk.errors import AuditFormatError

audit_app = typer.Typer(help="Verify the tamper-evident audit log and report on it.",
                        no_args_is_help=True)
checkpoint_app = typer.Typer(help="Export and verify sealed checkpoints of an audit log.",
                             no_args_is_help=True)

LogArg = Annotated[Path, typer.Argument(help="The audit log (SQLite file).", dir_okay=False)]


def register(app: typer.Typer) -> None:
    """Add the ``audit`` command group to ``app``."""
    audit_app.command("verify")(verify)
    audit_report.register(audit_app)
    audit_app.command("combine")(combine)
    checkpoint_app.command("export")(checkpoint_export)
    checkpoint_app.command("verify")(checkpoint_verify)
    audit_app.add_typer(checkpoint_app, name="checkpoint")
    app.add_typer(audit_app, name="audit")


EXIT_UNVERIFIED = 3
"""``audit verify``: a keyed log checked without its key (neither verified nor broken)."""

SpecArg = Annotated[str, typer.Argument(
    help="The audit log: a SQLite file, a postgresql:// URL (password from PGPASSWORD or "
         "~/.pgpass, never the command line), or a .jsonl file from JsonlSink.")]
AnchorsOption = Annotated[list[str] | None, typer.Option(
    "--anchors", help="An anchor holding the log's sealed checkpoints (a folder, "
                      "s3://bucket/prefix?region=R, gs://bucket/prefix, "
                      "azure://container/prefix?account_url=U); repeat for several.")]


def _print_result(result: VerifyResult, as_json: bool) -> None:
    if as_json:
        print_json(result.to_dict())
        return
    broken, path = result.broken, escape(result.path)
    anchored = (f"; against {result.checkpoints_checked} checkpoint(s), newest event "
                f"{result.anchored_seq}" if result.checkpoints_checked else "")
    if broken is not None:
        err_console.print(
            f"[bold red]BROKEN[/] {path}: first broken event is {broken.seq} "
            f"({broken.kind}): {escape(broken.message)}; events 1.."
            f"{result.verified_through} verify", highlight=False, soft_wrap=True)
    elif result.status == "unverified":
        err_console.print(
            f"[bold yellow]UNVERIFIED[/] {path}: {result.events:,} events; the SHA-256 "
            f"chain holds{anchored} but the log is HMAC-keyed and its HMACs were not "
            f"checked, so a rewrite cannot be ruled out: set RESIDENCY_AUDIT_HMAC_KEY",
            highlight=False, soft_wrap=True)
    else:
        console.print(f"[bold green]ok[/] {path}: {result.events:,} events verify "
                      f"(head {result.head_hash}){anchored}", highlight=False,
                      soft_wrap=True)
    if result.outcome_unknown:
        console.print(f"[yellow]outcome unknown:[/] {len(result.outcome_unknown):,} "
                      "intent(s) without an outcome", highlight=False, soft_wrap=True)
    for note in result.notes:
        if not note.startswith("UNVERIFIED"):
            console.print(f"[yellow]note:[/] {escape(note)}", highlight=False,
                          soft_wrap=True)


def _exit_for(result: VerifyResult) -> None:
    if result.status == "broken":
        raise typer.Exit(EXIT_BLOCKED)
    if result.status == "unverified":
        raise typer.Exit(EXIT_UNVERIFIED)


def verify(
    log: SpecArg,
    checkpoint: Annotated[Path | None, typer.Option(
        "--checkpoint", help="Also prove the log still holds this sealed checkpoint.",
        dir_okay=False)] = None,
    anchors: AnchorsOption = None,
    as_json: JsonOption = False, output: OutputOption = None,
) -> None:
    """Check the whole chain of LOG (and against its anchors). Exit 1 and name the first
    broken event if any; exit 3 when a keyed log is checked without its key."""
    as_json = wants_json(as_json, output)
    with residency_errors(as_json):
        if log.endswith(".jsonl") and "://" not in log:
            if checkpoint is not None or anchors:
                fail("--checkpoint and --anchors apply to audit logs, not JSON Lines files",
                     as_json=as_json, code=EXIT_USAGE)
            result = verify_jsonl(log)
        else:
            cp = load_checkpoint(checkpoint) if checkpoint is not None else None
            opened: list[Any] = []
            if anchors:
                from residency_sdk.audit.anchors import open_anchor

                opened = [open_anchor(spec) for spec in anchors]
            result = verify_log(log, checkpoint=cp, anchors=opened)
    _print_result(result, as_json)
    _exit_for(result)


def combine(
    reports: Annotated[list[Path], typer.Argument(
        help="JSON reports of each location (`residency audit report LOG --location L "
             "--format json`).", dir_okay=False)],
    fmt: Annotated[str, typer.Option(
        "--format", "-f", help=f"Output format: {', '.join(COMBINED_FORMATS)}.")] = "md",
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Write the combined report to this file instead of stdout.",
        dir_okay=False)] = None,
    fail_on_violation: Annotated[bool, typer.Option(
        "--fail-on-violation",
        help="Exit 1 on any violation or any chain that is not verified.")] = False,
    as_json: JsonOption = False, output: OutputOption = None,
) -> None:
    """Combine several locations' JSON reports into one, from their aggregates only (no
    event-level row leaves its location's report)."""
    as_json = wants_json(as_json, output)
    if as_json:
        fmt = "json" if out is None else fmt
    if fmt not in COMBINED_FORMATS:
        fail(f"unknown --format {fmt!r}: use one of {', '.join(COMBINED_FORMATS)}",
             as_json=as_json, code=EXIT_USAGE)
    with residency_errors(as_json):
        loaded = [_load_report(path) for path in reports]
        result = combine_reports(loaded, sources=[str(p) for p in reports])
        text = render_combined(result, fmt)
    if out is not None:
        write_text_file(out, text, as_json=as_json)
        if as_json:
            print_json({"ok": result.ok, "out": str(out), "format": fmt,
                        "reports": len(result.inputs), "violations": result.violation_total,
                        "unaudited_periods": result.totals["unaudited_periods"]})
        else:
            err_console.print(f"combined report of {len(result.inputs)} location(s) written "
                              f"to {out} ({fmt}); {result.violation_total} violation(s)",
                              markup=False, highlight=False, soft_wrap=True)
    else:
        sys.stdout.write(text)
    if fail_on_violation and not result.ok:
        raise typer.Exit(EXIT_BLOCKED)


def _load_report(path: Path) -> Any:  # combine_reports checks what it reads
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AuditFormatError(f"cannot read report {str(path)!r}: {exc.strerror or exc}: "
                               "check the path") from None
    except ValueError as exc:
        raise AuditFormatError(
            f"report {str(path)!r} is not JSON ({exc}): build it with `residency audit "
            "report LOG --format json`") from None


def checkpoint_export(
    log: Annotated[str, typer.Argument(help="The audit log: a SQLite file or a "
                                            "postgresql:// URL.")],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Write the checkpoint to this file (default: stdout).",
        dir_okay=False)] = None,
    as_json: JsonOption = False, output: OutputOption = None,
) -> None:
    """Verify LOG and export a checkpoint of its head (HMAC-sealed when the log is keyed,
    which needs its key)."""
    as_json = wants_json(as_json, output)
    with residency_errors(as_json):
        cp = export_checkpoint(log)
    if out is None:
        sys.stdout.write(cp.to_json())
        return
    with residency_errors(as_json):
        cp.write(out)
    if as_json:
        print_json({"ok": True, "out": str(out), "seq": cp.seq, "hash": cp.hash,
                    "counter": cp.counter, "sealed": cp.seal is not None})
    else:
        console.print(f"checkpoint of event {cp.seq} (commit {cp.counter}, {cp.hash}) "
                      f"written to {escape(str(out))}{' (sealed)' if cp.seal else ''}",
                      highlight=False, soft_wrap=True)


def checkpoint_verify(
    log: Annotated[str, typer.Argument(help="The audit log: a SQLite file or a "
                                            "postgresql:// URL.")],
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint file.", dir_okay=False)],
    as_json: JsonOption = False, output: OutputOption = None,
) -> None:
    """Prove LOG was neither rewritten up to CHECKPOINT nor rolled back below it (exit 1
    if it was, 3 if a keyed log is checked without its key)."""
    as_json = wants_json(as_json, output)
    with residency_errors(as_json):
        result = verify_log(log, checkpoint=load_checkpoint(checkpoint))
    _print_result(result, as_json)
    _exit_for(result)


def show_report(log_path: str | Path, *, quiet: bool) -> dict[str, Any]:
    """Print the transfer-audit report of ``log_path`` (unless ``quiet``); return its figures.

    Used at the end of ``residency demo`` to show what the demo just did.
    """
    result: AuditReport = build_report(log_path)
    if not quiet:
        rule("Transfer-audit report")
        for part in rich_report(result):
            console.print(part)
    t = result.totals
    return {"log": str(log_path), "chain": result.chain_state.status,
            "chain_ok": result.chain_state.ok, "events": t["events"],
            "tenants": t["tenants"], "movements": t["movements"],
            "decisions_allowed": t["decisions_allowed"],
            "decisions_blocked": t["decisions_blocked"], "blocked": t["blocked"],
            "violations": result.violation_total, "flows": len(result.flows),
            "outcome_unknown": t["outcome_unknown"],
            "unaudited_periods": t["unaudited_periods"]}


def _table(title: str, columns: tuple[str, ...], **style: Any) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, **style)
    for col in columns:
        table.add_column(col, overflow="fold")
    return table


def rich_report(report: AuditReport) -> list[Any]:
    """The report as rich renderables for a terminal (the Markdown form, laid out); every
    value from the log is markup-escaped."""
    state, t = report.chain_state, report.totals
    colour = {"verified": "green", "unverified": "yellow"}.get(state.status, "red")
    chain = f"[bold {colour}]chain {escape(chain_status(report))}[/]"
    viol = (f"[bold {'green' if report.violation_total == 0 else 'red'}]"
            f"{report.violation_total} violation(s)[/]")
    off, unknown = t["unaudited_periods"], t["outcome_unknown"]
    parts: list[Any] = [
        chain,
        (f"[bold red]audit was switched off {off} time(s) in this log: unaudited periods "
         "below[/]" if off else "[green]no unaudited period[/]"),
        f"{t['movements']:,} data movement(s) across a border "
        f"({human_bytes(t['movement_bytes'])}) · {t['decisions_allowed']:,} decision(s) "
        f"allowed, {t['decisions_blocked']:,} blocked · {t['blocked']:,} blocked attempt(s) "
        f"· {t['tenants']} tenants · {unknown:,} outcome unknown · {viol}",
    ]
    if report.unaudited_periods:
        periods = _table("Unaudited periods", ("event", "when", "who", "location", "recorded"),
                         style="red")
        for u in report.unaudited_periods:
            periods.add_row(str(u["seq"]), u["time"], escape(u["actor"] or "—"),
                            escape(u["location"] or "—"), escape(recorded(u)))
        parts.append(periods)
    flows = _table("Data movements by flow", ("kind", "origin", "held in", "to", "class",
                                              "basis", "objects", "bytes", "who"))
    for f in report.flows:
        flows.add_row(f["kind"], escape(f["origin"]), escape(f["location"]),
                      escape(f["destination"]), escape(f["data_class"]),
                      escape(f["mechanism"]) if f["mechanism"] else "[bold red]none[/]",
                      f"{f['events']:,}", human_bytes(f["bytes"]),
                      escape(", ".join(f["actors"])))
    # Expanded to the terminal's width; piped, a table is as wide as its content.
    blocked = Table(title="Blocked attempts", box=box.SIMPLE_HEAD,
                    expand=console.is_terminal)
    for col in ("event", "who", "tenant", "what", "to", "class"):
        blocked.add_column(col, no_wrap=True)
    blocked.add_column("why", ratio=1)  # the reasons take whatever width is left
    for b in report.blocked:
        blocked.add_row(str(b["seq"]), escape(b["actor"] or "(not given)"),
                        escape(b["tenant_id"] or "—"), b["operation"],
                        escape(b["destination"] or "—"), escape(b["data_class"] or "—"),
                        escape("; ".join(b["reasons"])))
    parts += [flows if report.flows else "No data crossed a border.",
              blocked if report.blocked else "No blocked attempt."]
    if t["blocked"] > len(report.blocked):
        parts.append(f"(the first {len(report.blocked):,} of {t['blocked']:,} blocked "
                     "attempts are listed)")
    if report.outcome_unknown:
        unknowns = _table("Outcome unknown", ("event", "time", "who", "tenant", "operation",
                                              "key"), style="yellow")
        for u in report.outcome_unknown:
            unknowns.add_row(str(u["seq"]), u["time"], escape(u["actor"] or "—"),
                             escape(u["tenant_id"] or "—"), u["operation"],
                             escape(u["object_key"] or "—"))
        parts.append(unknowns)
    if report.violations:
        violations = _table("Violations", ("event", "kind", "tenant", "detail"), style="red")
        for v in report.violations:
            violations.add_row(str(v["seq"]), v["kind"], escape(v["tenant_id"] or "—"),
                               escape(v["detail"]))
        parts.append(violations)
    tenants = _table("Tenants", ("tenant", "country", "held in", "went to", "movements",
                                 "blocked attempts"))
    for r in report.tenants:
        tenants.add_row(escape(r["tenant_id"]), escape(r["country"] or "—"),
                        escape(", ".join(r["held_in"]) or "—"),
                        escape(", ".join(r["went_to"]) or "—"), f"{r['movements']:,}",
                        str(r["blocked_attempts"]))
    parts.append(tenants)
    if report.rules_past_review:
        parts.append(f"[bold yellow]{len(report.rules_past_review)} rule fact(s) past their "
                     "review date[/] (see the report's Rules in force)")
    return parts
