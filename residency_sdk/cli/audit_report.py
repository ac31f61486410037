"""``residency audit report``: build the transfer-audit report of a log (the default
command: ``audit report LOG ...``), check a sealed one (``audit report verify``) and make
the key that seals them (``audit report keygen``).

The signing key is named by ``--signing-key`` or ``$RESIDENCY_REPORT_SIGNING_KEY`` (a
path, never the key itself on the command line); verifiers need only the public key.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from typer.core import TyperGroup

from residency_sdk.audit._format import chain_status
from residency_sdk.audit.render import FORMATS, SEALABLE, render_document
from residency_sdk.audit.report import MAX_LISTED, AuditReport, build_report
from residency_sdk.cli import report_seal
from residency_sdk.cli.common import (
    EXIT_BACKEND,
    EXIT_BLOCKED,
    EXIT_USAGE,
    JsonOption,
    MapOption,
    OutputOption,
    err_console,
    fail,
    map_or_setting,
    print_json,
    residency_errors,
    wants_json,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from residency_sdk.audit.html import Branding

_SUBCOMMANDS = ("verify", "keygen")


class _ReportGroup(TyperGroup):
    """``audit report LOG ...`` builds a report (the hidden ``build`` command);
    ``audit report verify|keygen ...`` are subcommands. A log literally named ``verify``
    or ``keygen`` is given as ``./verify``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer's own Context
        if args and args[0] not in (*_SUBCOMMANDS, "build", "--help", "-h"):
            args = ["build", *args]
        return super().parse_args(ctx, args)


report_app = typer.Typer(
    cls=_ReportGroup, no_args_is_help=True,
    help="The transfer-audit report: `audit report LOG --format html --out FILE` builds it "
         "(the same as `audit report build LOG ...`; see `audit report build --help` for every "
         "option), `audit report verify REPORT --public-key KEY` checks a sealed one, "
         "`audit report keygen --out KEY` makes the signing key.")

ReportLogArg = Annotated[str, typer.Argument(
    metavar="LOG", help="The audit log: a SQLite file or a postgresql:// URL (password from "
                        "PGPASSWORD or ~/.pgpass, never the command line).")]
_WHEN = ("a date (2026-11-01), a timestamp (2026-11-01T12:00:00Z), a month (2026-11), a "
         "quarter (2026-Q3), a year (2026), an ISO week (2026-W45) or a period back from "
         "now (30d, 12h, 2w); UTC")


def register(audit_app: typer.Typer) -> None:
    """Add ``report`` (build, verify, keygen) to the ``audit`` group."""
    report_app.command("build")(build)
    report_app.command("verify")(report_seal.verify)
    report_app.command("keygen")(report_seal.keygen)
    audit_app.add_typer(report_app, name="report")


def build(
    log: ReportLogArg,
    since: Annotated[str | None, typer.Option(
        "--since", help=f"Start of the window (inclusive): {_WHEN}.")] = None,
    until: Annotated[str | None, typer.Option(
        "--until", help="End of the window (exclusive; a date, month, quarter or year is "
                        "included whole).")] = None,
    period: Annotated[str | None, typer.Option(
        "--period", help="The whole window at once: 2026-Q3, 2026-11, 2026, 30d "
                         "(instead of --since/--until).")] = None,
    location: Annotated[str | None, typer.Option(
        "--location", help="Only events of this residency location (that happened there, "
                           "or whose tenant lives there), e.g. DE.")] = None,
    tenant: Annotated[str | None, typer.Option(
        "--tenant", help="Only events of this tenant (its id).")] = None,
    fmt: Annotated[str, typer.Option(
        "--format", "-f", help=f"Output format: {', '.join(FORMATS)}.")] = "md",
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Write the report to this file instead of stdout.",
        dir_okay=False)] = None,
    signing_key: Annotated[Path | None, typer.Option(
        "--signing-key", help="Seal the report (html, json, pdf) with this Ed25519 private "
                              "key (default: $RESIDENCY_REPORT_SIGNING_KEY).",
        dir_okay=False)] = None,
    anchors: Annotated[list[str] | None, typer.Option(
        "--anchors", help="Check the chain against this anchor and name it in the report "
                          "(as `audit verify --anchors`); repeat for several.")] = None,
    brand_name: Annotated[str | None, typer.Option(
        "--brand-name", help="Company name on the html/pdf report.")] = None,
    logo: Annotated[Path | None, typer.Option(
        "--logo", help="Company logo on the html/pdf report (PNG, JPEG, SVG; <= 512 KiB).",
        dir_okay=False)] = None,
    template_dir: Annotated[Path | None, typer.Option(
        "--template-dir", help="A folder with your own report.html.j2 (start from the "
                               "packaged one).", file_okay=False)] = None,
    limit: Annotated[int, typer.Option(
        "--limit", min=0, help="Event-level rows listed per section (counts are always "
                               "complete).")] = MAX_LISTED,
    fail_on_violation: Annotated[bool, typer.Option(
        "--fail-on-violation",
        help="Exit 1 on any violation or a chain that is not verified.")] = False,
    fail_on_review_due: Annotated[bool, typer.Option(
        "--fail-on-review-due",
        help="Exit 1 when a rule fact the decisions rest on is past its review date.")] = False,
    progress: Annotated[bool | None, typer.Option(
        "--progress/--no-progress", help="Show progress on stderr (default: when stderr "
                                         "is a terminal).")] = None,
    map_path: MapOption = None,
    as_json: JsonOption = False, output: OutputOption = None,
) -> None:
    """Build the transfer-audit report of LOG (the default command: `audit report LOG`
    is the same): summary, data movements by flow, decisions,
    per tenant, blocked attempts, violations, erasures, retention deletions, rules in force,
    chain and anchors."""
    as_json = wants_json(as_json, output)
    if as_json:
        fmt = "json" if out is None else fmt
    if fmt not in FORMATS:
        fail(f"unknown --format {fmt!r}: use one of {', '.join(FORMATS)}", as_json=as_json,
             code=EXIT_USAGE)
    if period is not None and (since is not None or until is not None):
        fail("--period sets both ends of the window: drop --since/--until, or --period",
             as_json=as_json, code=EXIT_USAGE)
    if fmt == "pdf" and out is None and sys.stdout.isatty():
        fail("a PDF report is binary: write it with --out FILE", as_json=as_json,
             code=EXIT_USAGE)
    with residency_errors(as_json):
        key = _signing_key(signing_key, fmt)
        branding = _branding(brand_name, logo, template_dir)
        if period is not None:
            from residency_sdk.audit.period import parse_period

            start, end = parse_period(period)
            since, until = start.isoformat(), end.isoformat()
        region_map = None
        map_path = map_or_setting(map_path)
        if map_path is not None:
            from residency_sdk.regionmap import load_region_map

            region_map = load_region_map(map_path)
        result = _build(log, progress, since=since, until=until, region_map=region_map,
                        location=location, tenant=tenant, anchors=anchors or (), limit=limit)
        document = render_document(result, fmt, branding=branding, signing_key=key)
    _emit(document, out, as_json, result, fmt, sealed=key is not None)
    due = result.rules_past_review
    if (fail_on_violation and not result.ok) or (fail_on_review_due and due):
        raise typer.Exit(EXIT_BLOCKED)


def _signing_key(path: Path | None, fmt: str) -> Ed25519PrivateKey | None:
    """The key named by ``--signing-key`` (refused for a format that cannot be sealed),
    else by the environment (for the formats that can)."""
    from residency_sdk.audit import seal
    from residency_sdk.errors import AuditFormatError

    if path is not None:
        if fmt not in SEALABLE:
            raise AuditFormatError(f"--signing-key: a {fmt} report cannot be sealed; use "
                                   f"--format {' or '.join(SEALABLE)}")
        return seal.load_signing_key(path)
    return seal.signing_key_from_env() if fmt in SEALABLE else None


def _branding(name: str | None, logo: Path | None,
              template_dir: Path | None) -> Branding | None:
    from residency_sdk.audit.html import Branding, logo_data_uri

    if name is None and logo is None and template_dir is None:
        return None
    return Branding(name=name, logo=logo_data_uri(logo) if logo is not None else None,
                    template_dir=template_dir)


def _build(log: str, show: bool | None, **kwargs: Any) -> AuditReport:
    """``build_report`` with a progress bar on stderr when asked (or when stderr is a
    terminal), advanced as the summarising pass goes through the log."""
    if show is None:
        show = err_console.is_terminal
    if not show:
        return build_report(log, **kwargs)
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeRemainingColumn(), console=err_console,
                  transient=True) as bar:
        task = bar.add_task("summarising events", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return build_report(log, progress=advance, **kwargs)


def _emit(document: bytes, out: Path | None, as_json: bool, result: AuditReport, fmt: str,
          *, sealed: bool) -> None:
    # Bytes, never text mode: a newline translated on the way out would break the seal.
    if out is None:
        sys.stdout.buffer.write(document)
        sys.stdout.flush()
        return
    try:
        out.write_bytes(document)
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}: check the folder exists and is "
             "writable", as_json=as_json, code=EXIT_BACKEND)
    t = result.totals
    if as_json:
        print_json({"ok": result.ok, "out": str(out), "format": fmt, "sealed": sealed,
                    "chain": result.chain_state.status, "chain_ok": result.chain_state.ok,
                    "violations": result.violation_total,
                    "rules_past_review": len(result.rules_past_review),
                    "unaudited_periods": t["unaudited_periods"],
                    "outcome_unknown": t["outcome_unknown"]})
        return
    err_console.print(
        f"report written to {out} ({fmt}{', sealed' if sealed else ''}); chain "
        f"{chain_status(result)}; {result.violation_total} violation(s); "
        f"{t['unaudited_periods']} unaudited period(s); "
        f"{len(result.rules_past_review)} rule fact(s) past review",
        markup=False, highlight=False, soft_wrap=True, emoji=False)
