"""Render an :class:`~residency_sdk.audit.report.AuditReport` as Markdown, JSON or CSV
(or HTML, drawn by :mod:`residency_sdk.audit.html`).

Rendering only formats the (small) aggregated result; all counting happened in SQL.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from typing import Any

from residency_sdk.audit._format import chain_mark, chain_status, human_bytes, recorded
from residency_sdk.audit.combine import COMBINED_FORMATS, CombinedReport, combined_markdown
from residency_sdk.audit.html import combined_to_html, to_html
from residency_sdk.audit.report import AuditReport
from residency_sdk.errors import AuditFormatError

FORMATS = ("md", "html", "json", "csv")


def render(report: AuditReport, fmt: str) -> str:
    """The report in ``fmt`` (``md``, ``html``, ``json`` or ``csv``)."""
    if fmt == "md":
        return to_markdown(report)
    if fmt == "json":
        return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        return to_csv(report)
    if fmt == "html":
        return to_html(report)
    raise AuditFormatError(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}")


def render_combined(report: CombinedReport, fmt: str) -> str:
    """The combined report of several locations (aggregates only) as ``md``, ``html`` or
    ``json``."""
    if fmt == "json":
        return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"
    if fmt == "md":
        return combined_markdown(report)
    if fmt == "html":
        return combined_to_html(report)
    raise AuditFormatError(
        f"unknown combined report format {fmt!r}: use one of {', '.join(COMBINED_FORMATS)}")


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "—"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def to_markdown(report: AuditReport) -> str:
    """GitHub-flavoured Markdown, for pull requests and terminals."""
    t = report.totals
    window = f"{report.since or 'start'} → {report.until or 'now'}"
    where = f" · location {report.location}" if report.location else ""
    vmark = "✅" if report.violation_total == 0 else "❌"
    off, unknown = t["unaudited_periods"], t["outcome_unknown"]
    out = [
        "# Transfer-audit report", "",
        f"Log `{report.log_path}`{where} · window {window} · region map `{report.map_name}` · "
        f"generated {report.generated_at}", "",
        f"**Chain {chain_mark(report)}** {chain_status(report)}", "",
        (f"**Unaudited periods ❌ {off}**: audit was switched off {off} time(s) in this log; "
         "what those processes did next is not recorded (see below)" if off else
         "**Unaudited periods ✅ 0**: audit was never switched off in this log"), "",
        (f"**Outcome unknown ⚠️ {unknown}**: operation(s) started with no recorded outcome"
         if unknown else "**Outcome unknown ✅ 0**"), "",
        f"**Violations {vmark} {report.violation_total}** " + ", ".join(
            f"{k}: {v}" for k, v in sorted(report.violation_counts.items())), "",
    ]
    out += [f"> {note}" for note in report.notes] + ([""] if report.notes else [])
    if report.unaudited_periods:
        out += ["## Unaudited periods", "",
                "Audit was switched off here (the whole log, whatever the window or location "
                "asked for): from that moment that process's operations went unrecorded.", ""]
        out += _table(["event", "when", "who", "location", "recorded"],
                      [[u["seq"], u["time"], u["actor"], u["location"], recorded(u)]
                       for u in report.unaudited_periods])
        out += [""]
    out += ["## Summary", "", *_table(
        ["events", "tenants", "cross-border allowed", "cross-border bytes", "blocked",
         "outcome unknown", "unaudited periods", "first seen", "last seen"],
        [[t["events"], t["tenants"], t["cross_border_allowed"],
          human_bytes(t["cross_border_bytes"]), t["blocked"], unknown, off,
          t["first_seen"], t["last_seen"]]]), ""]
    out += ["## Cross-border flows", ""]
    out += _table(["origin", "location", "destination", "data class", "mechanism", "events",
                   "bytes", "first seen", "last seen"],
                  [[f["origin"], f["location"], f["destination"], f["data_class"],
                    f["mechanism"] or "**none**", f["events"], human_bytes(f["bytes"]),
                    f["first_seen"], f["last_seen"]] for f in report.flows]) \
        if report.flows else ["No cross-border flow in this window."]
    out += ["", "## Blocked attempts", ""]
    out += _table(["who", "tenant", "origin", "to", "data class", "operation", "why",
                   "events", "last seen"],
                  [[b["actor"], b["tenant_id"], b["origin"], b["destination"], b["data_class"],
                    b["operation"], "; ".join(b["reasons"]), b["events"], b["last_seen"]]
                   for b in report.blocked]) \
        if report.blocked else ["No blocked attempt in this window."]
    out += ["", "## De-identified transfers", ""]
    out += _table(["event", "time", "tenant", "from", "to", "key", "evidence"],
                  [[a["seq"], a["time"], a["tenant_id"], a["location"], a["destination"],
                    a["object_key"], a["deid"] or "**none recorded**"]
                   for a in report.anonymised_transfers]) \
        if report.anonymised_transfers else ["No transfer of de-identified data in this window."]
    out += ["", "## Outcome unknown", ""]
    out += _table(["event", "time", "who", "tenant", "operation", "key"],
                  [[u["seq"], u["time"], u["actor"], u["tenant_id"], u["operation"],
                    u["object_key"]] for u in report.outcome_unknown]) \
        if report.outcome_unknown else ["None: every operation started has its outcome."]
    out += ["", "## Violations", ""]
    out += _table(["event", "kind", "time", "tenant", "who", "detail"],
                  [[v["seq"], v["kind"], v["time"], v["tenant_id"], v["actor"], v["detail"]]
                   for v in report.violations]) \
        if report.violations else ["None."]
    out += ["", "## Tenants", ""]
    out += _table(["tenant", "country", "data held in", "went to", "events", "blocked",
                   "bytes written"],
                  [[r["tenant_id"], r["country"], r["held_in"], r["went_to"], r["events"],
                    r["blocked"], human_bytes(r["bytes_written"])] for r in report.tenants]) \
        if report.tenants else ["No tenant events in this window."]
    out += ["", "## Endpoints located on the region map's word", ""]
    out += _table(["map entry", "endpoint", "country", "source"],
                  [[e["path"], e["endpoint"], e["country"], e["source"]]
                   for e in report.stated_endpoints]) \
        if report.stated_endpoints else ["None: every endpoint is an in-region form of its "
                                         "provider (or a local emulator)."]
    return "\n".join(out) + "\n"


_CSV_COLUMNS = (
    "section", "kind", "seq", "time", "origin", "location", "destination", "tenant_id",
    "country", "actor", "data_class", "operation", "mechanism", "events", "bytes",
    "first_seen", "last_seen", "held_in", "went_to", "blocked", "detail", "object_key",
)


def to_csv(report: AuditReport) -> str:
    """One CSV for tooling: a ``section`` column (chain, unaudited, flow, blocked,
    outcome_unknown, violation, tenant, stated_endpoint, deid); the chain row's ``kind`` is
    its status (``verified``, ``broken``, ``unverified``); a ``deid`` row is a transfer of
    de-identified data, ``detail`` its evidence summary."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    c = report.chain
    w.writerow({"section": "chain", "kind": report.chain_state.status,
                "seq": c.broken.seq if c.broken else c.head_seq, "events": c.events,
                "location": report.location, "detail": chain_status(report)})
    for u in report.unaudited_periods:
        w.writerow({"section": "unaudited", "kind": "audit_off", "seq": u["seq"],
                    "time": u["time"], "actor": u["actor"], "location": u["location"],
                    "tenant_id": u["tenant_id"], "detail": recorded(u)})
    for f in report.flows:
        w.writerow({"section": "flow", **f, "operation": ";".join(f["operations"])})
    for b in report.blocked:
        w.writerow({"section": "blocked", **b, "detail": "; ".join(b["reasons"])})
    for a in report.anonymised_transfers:
        w.writerow({"section": "deid", "kind": "transfer", **a, "operation": "transfer",
                    "bytes": a["size"], "detail": a["deid"]})
    for u in report.outcome_unknown:
        w.writerow({"section": "outcome_unknown", "kind": "intent", **u,
                    "detail": f"intent {u['event_id']} has no outcome"})
    for v in report.violations:
        w.writerow({"section": "violation", **v, "operation": v["op"]})
    for r in report.tenants:
        w.writerow({"section": "tenant", **r, "bytes": r["bytes_written"],
                    "held_in": ";".join(r["held_in"]), "went_to": ";".join(r["went_to"])})
    for e in report.stated_endpoints:
        w.writerow({"section": "stated_endpoint", "kind": e["path"], "country": e["country"],
                    "location": e["endpoint"], "detail": e["source"]})
    return buf.getvalue()
