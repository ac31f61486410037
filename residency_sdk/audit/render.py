"""Render an :class:`~residency_sdk.audit.report.AuditReport` as Markdown, JSON, CSV, HTML
(drawn by :mod:`residency_sdk.audit.html`) or PDF (that HTML printed by headless
Chromium, :mod:`residency_sdk.audit.pdf`), sealed when a signing key is given
(:mod:`residency_sdk.audit.seal`).

Rendering only formats the (small) aggregated result; all counting happened in SQL. Every
value that came from the log (actors, keys, reasons) is escaped for its format: HTML by
template autoescaping, Markdown by :func:`~residency_sdk.audit._format.md_text`, CSV
cells against spreadsheet formulas by :func:`~residency_sdk.audit._format.csv_text`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from residency_sdk.audit._format import (
    chain_mark,
    chain_status,
    csv_text,
    human_bytes,
    md_text,
    recorded,
)
from residency_sdk.audit.combine import COMBINED_FORMATS, CombinedReport, combined_markdown
from residency_sdk.audit.html import Branding, combined_to_html, to_html
from residency_sdk.audit.report import AuditReport
from residency_sdk.errors import AuditFormatError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

FORMATS = ("md", "html", "json", "csv", "pdf")
TEXT_FORMATS = ("md", "html", "json", "csv")
SEALABLE = ("html", "json", "pdf")
"""The formats a report can be sealed in (and checked with ``audit report verify``)."""


def render(report: AuditReport, fmt: str, *, branding: Branding | None = None) -> str:
    """The report in a text format: ``md``, ``html``, ``json`` or ``csv`` (unsealed; see
    :func:`render_document` for PDF and sealed reports)."""
    if fmt == "md":
        return to_markdown(report)
    if fmt == "json":
        return _json(report.to_dict())
    if fmt == "csv":
        return to_csv(report)
    if fmt == "html":
        return to_html(report, branding)
    if fmt == "pdf":
        raise AuditFormatError("a PDF report is binary: use render_document(report, 'pdf')")
    raise AuditFormatError(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}")


def render_document(report: AuditReport, fmt: str, *, branding: Branding | None = None,
                    signing_key: Ed25519PrivateKey | None = None) -> bytes:
    """The report as the bytes of a file in ``fmt`` (any of :data:`FORMATS`), sealed with
    ``signing_key`` when one is given (``html``, ``json`` and ``pdf`` only: a CSV or
    Markdown file has no place for a seal)."""
    from residency_sdk.audit import seal

    if fmt not in FORMATS:
        raise AuditFormatError(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}")
    if signing_key is not None and fmt not in SEALABLE:
        raise AuditFormatError(f"a {fmt} report cannot be sealed: use one of "
                               f"{', '.join(SEALABLE)}, or drop the signing key")
    if fmt in ("md", "csv"):
        return render(report, fmt).encode("utf-8")
    data = report.to_dict()
    if fmt == "json":
        return _json(seal.seal_json(data, signing_key) if signing_key else data).encode()
    html = to_html(report, branding)
    if fmt == "html":
        return (seal.seal_html(html, data, signing_key) if signing_key else html).encode()
    from residency_sdk.audit.pdf import html_to_pdf

    pdf = html_to_pdf(html)
    return seal.seal_pdf(pdf, data, signing_key) if signing_key else pdf


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def render_combined(report: CombinedReport, fmt: str) -> str:
    """The combined report of several locations (aggregates only) as ``md``, ``html`` or
    ``json``."""
    if fmt == "json":
        return _json(report.to_dict())
    if fmt == "md":
        return combined_markdown(report)
    if fmt == "html":
        return combined_to_html(report)
    raise AuditFormatError(
        f"unknown combined report format {fmt!r}: use one of {', '.join(COMBINED_FORMATS)}")


# --- Markdown --------------------------------------------------------------------------


class _Markup(str):
    """Markdown this module wrote itself (emphasis on a missing value): never escaped."""

    __slots__ = ()


def _bold(text: str) -> _Markup:
    return _Markup(f"**{text}**")


def _cell(value: Any) -> str:
    if isinstance(value, _Markup):
        return value
    if value is None or value == "":
        return "—"
    if isinstance(value, list | tuple):
        return ", ".join(md_text(v) for v in value) or "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return md_text(value)


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def _section(title: str, explain: str | None, headers: Sequence[str],
             rows: list[Sequence[Any]], empty: str) -> list[str]:
    out = ["", f"## {title}", ""]
    if explain:
        out += [explain, ""]
    return out + (_table(headers, rows) if rows else [empty])


def _sources(entries: Iterable[dict[str, Any]]) -> str:
    return "; ".join(
        " ".join(p for p in (f"{e.get('regime')}:", e.get("basis"), e.get("source")) if p)
        + (f" (as of {e['as_of']})" if e.get("as_of") else "")
        for e in entries if e.get("source"))


def to_markdown(report: AuditReport) -> str:
    """GitHub-flavoured Markdown, for pull requests and terminals. Every value from the
    log is escaped (:func:`~residency_sdk.audit._format.md_text`)."""
    t = report.totals
    scope = "".join(f" · {name} `{md_text(value)}`" for name, value in (
        ("location", report.location), ("tenant", report.tenant)) if value)
    vmark = "✅" if report.violation_total == 0 else "❌"
    off, unknown = t["unaudited_periods"], t["outcome_unknown"]
    out = [
        "# Transfer-audit report", "",
        f"Log `{md_text(report.log_path)}`{scope} · window {report.since or 'start'} → "
        f"{report.until or 'now'} · region map `{md_text(report.map_name)}` · generated "
        f"{report.generated_at}", "",
        f"**Chain {chain_mark(report)}** {md_text(chain_status(report))}", "",
        (f"**Unaudited periods ❌ {off}**: audit was switched off {off} time(s) in this log; "
         "what those processes did next is not recorded (see below)" if off else
         "**Unaudited periods ✅ 0**: audit was never switched off in this log"), "",
        (f"**Outcome unknown ⚠️ {unknown}**: operation(s) started with no recorded outcome"
         if unknown else "**Outcome unknown ✅ 0**"), "",
        f"**Violations {vmark} {report.violation_total}** " + ", ".join(
            f"{k}: {v}" for k, v in sorted(report.violation_counts.items())), "",
    ]
    if t["rules_past_review"]:
        out += [f"**Rules past review ⚠️ {t['rules_past_review']}** (see Rules in force)", ""]
    out += [f"> {md_text(note)}" for note in report.notes] + ([""] if report.notes else [])
    out += ["## Summary", "", *_table(
        ["data movements", "bytes moved", "decisions allowed", "decisions blocked",
         "blocked attempts", "violations", "tenants", "objects held", "erasure requests",
         "retention deletions", "events", "first seen", "last seen"],
        [[t["movements"], human_bytes(t["movement_bytes"]), t["decisions_allowed"],
          t["decisions_blocked"], t["blocked"], t["violations"], t["tenants"],
          t["objects_held"], t["erasure_requests"], t["retention_deletions"], t["events"],
          t["first_seen"], t["last_seen"]]])]
    if report.unaudited_periods:
        out += _section(
            "Unaudited periods", "Audit was switched off here (the whole log, whatever the "
            "window or filter asked for): from that moment that process's operations went "
            "unrecorded.", ["event", "when", "who", "location", "recorded"],
            [[u["seq"], u["time"], u["actor"], u["location"], recorded(u)]
             for u in report.unaudited_periods], "")
    out += _section(
        "Data movements by flow", "Data that crossed a border, once per object or request "
        "that completed (decisions are counted apart).",
        ["kind", "origin", "held in", "to", "data class", "legal basis", "sources", "objects",
         "bytes", "who", "purpose", "first", "last"],
        [[f["kind"], f["origin"], f["location"], f["destination"], f["data_class"],
          " ".join([f["mechanism"], *f["agreements"]]) if f["mechanism"] else _bold("none"),
          _sources(f["basis"]) or "not recorded", f["events"], human_bytes(f["bytes"]),
          f["actors"], f["purposes"], f["first_seen"], f["last_seen"]]
         for f in report.flows], "No data crossed a border in this window.")
    out += _section(
        "Decisions", None, ["check", "outcome", "origin", "location", "to", "data class",
                            "basis", "decisions", "who", "purpose", "last"],
        [[d["operation"], d["outcome"], d["origin"], d["location"], d["destination"],
          d["data_class"], d["mechanism"], d["decisions"], d["actors"], d["purposes"],
          d["last_seen"]]
         for d in report.decisions], "No decision in this window.")
    out += _section(
        "Per tenant", None, ["tenant", "country", "data held in", "objects held", "went to",
                             "movements", "decisions allowed", "blocked attempts",
                             "erasures completed"],
        [[r["tenant_id"], r["country"], [f"{h['location']} ({h['provider']} {h['bucket']})"
                                         for h in r["held"]] or "nothing held",
          sum(h["objects"] for h in r["held"]), r["went_to"], r["movements"],
          r["decisions_allowed"], r["blocked_attempts"], r["erasures_completed"]]
         for r in report.tenants], "No tenant events in this window.")
    listed = (f"The first {len(report.blocked):,} of {t['blocked']:,} are listed."
              if t["blocked"] > len(report.blocked) else None)
    out += _section(
        "Blocked attempts", listed,
        ["event", "when", "who", "purpose", "tenant", "what", "key / endpoint", "from", "to",
         "data class", "why", "would unblock (each needed)", "sources"],
        [[b["seq"], b["time"], b["actor"] or "(not given)", b["purpose"], b["tenant_id"],
          b["operation"], b["object_key"] or b["endpoint"], b["origin"], b["destination"],
          b["data_class"], "; ".join(b["reasons"]) or _bold("no reason recorded"),
          b["unblock_with"], _sources(b["sources"])] for b in report.blocked],
        "No blocked attempt in this window.")
    out += _section(
        "Violations", None, ["event", "kind", "when", "tenant", "who", "detail"],
        [[v["seq"], v["kind"], v["time"], v["tenant_id"], v["actor"], v["detail"]]
         for v in report.violations], "None.")
    out += _section(
        "Erasure requests and receipts", None,
        ["request", "tenant", "status", "locations", "backends", "bytes erased", "receipt",
         "who", "last"],
        [[e["request_id"], e["tenant_id"], e["status"], e["locations"],
          [f"{b['location']} {b['provider']} {b['bucket']}: {b['outcome']}"
           for b in e["backends"]], human_bytes(e["bytes"]),
          e["receipt"]["digest"] if e["receipt"] else _bold("no receipt"), e["actors"],
          e["last_seen"]] for e in report.erasures], "No erasure request in this window.")
    out += _section(
        "Retention deletions", None,
        ["location", "tenant", "category", "outcome", "objects", "bytes", "first", "last"],
        [[d["location"], d["tenant_id"], d["category"], d["outcome"], d["objects"],
          human_bytes(d["bytes"]), d["first_seen"], d["last_seen"]]
         for d in report.retention_deletions],
        "No object reached the end of its retention period in this window.")
    if report.anonymised_transfers:
        out += _section(
            "De-identified transfers", None,
            ["event", "time", "tenant", "from", "to", "key", "evidence"],
            [[a["seq"], a["time"], a["tenant_id"], a["location"], a["destination"],
              a["object_key"], a["deid"] or _bold("none recorded")]
             for a in report.anonymised_transfers], "")
    if report.outcome_unknown:
        out += _section(
            "Outcome unknown", None, ["event", "time", "who", "tenant", "operation", "key"],
            [[u["seq"], u["time"], u["actor"], u["tenant_id"], u["operation"],
              u["object_key"]] for u in report.outcome_unknown], "")
    out += _section(
        "Rules in force", None, ["rule fact", "source", "as of", "review by", "decisions"],
        [[r["what"], r["source"], r["as_of"],
          _bold(f"{md_text(r['review_by'])} (past)") if r["past_review"] else r["review_by"],
          r["decisions"]] for r in report.rules], "No rule facts.")
    c = report.chain
    out += _section(
        "Chain and anchors", None, ["status", "events", "head", "log id", "keyed", "anchors"],
        [[report.chain_state.status, c.events, f"{c.head_hash} (event {c.head_seq})",
          c.log_id, "checked" if c.hmac_checked else ("NOT checked" if c.keyed else "no"),
          [a["anchor"] for a in report.anchors] or "none given"]], "")
    if report.stated_endpoints:
        out += _section(
            "Endpoints located on the region map's word", None,
            ["map entry", "endpoint", "country", "source"],
            [[e["path"], e["endpoint"], e["country"], e["source"]]
             for e in report.stated_endpoints], "")
    return "\n".join(out) + "\n"


# --- CSV -------------------------------------------------------------------------------

CSV_COLUMNS = (
    "section", "seq", "time", "kind", "operation", "outcome", "tenant_id", "origin",
    "location", "destination", "processor", "data_class", "mechanism", "sources",
    "agreements", "actor", "purpose", "objects", "bytes", "first_seen", "last_seen",
    "reasons", "unblock_with", "object_key", "detail",
)
"""The report's one CSV header: every row has exactly these columns (empty when a section
has no such value). ``section`` says what a row is: ``chain``, ``total``, ``flow``,
``decision``, ``tenant``, ``blocked``, ``violation``, ``erasure``, ``retention``,
``rule``, ``outcome_unknown``, ``unaudited``, ``deid``, ``stated_endpoint``, ``note``."""


def to_csv(report: AuditReport) -> str:
    """One CSV for tooling: one header (:data:`CSV_COLUMNS`), one row per listed item, lists
    joined with ``; ``, every text cell safe to open in a spreadsheet."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)

    def row(section: str, **values: Any) -> None:
        unknown = set(values) - set(CSV_COLUMNS)
        if unknown:  # a programming error, never data: fail loudly in tests
            raise AssertionError(f"CSV columns {sorted(unknown)} are not in CSV_COLUMNS")
        w.writerow([section, *(_csv_cell(values.get(col)) for col in CSV_COLUMNS[1:])])

    c = report.chain
    row("chain", seq=c.broken.seq if c.broken else c.head_seq, kind=report.chain_state.status,
        objects=c.events, location=report.location, detail=chain_status(report))
    for name, value in report.totals.items():
        row("total", kind=name, **({"detail": value} if isinstance(value, str) or value is None
                                   else {"objects": value}))
    for f in report.flows:
        row("flow", kind=f["kind"], operation=f["operations"], origin=f["origin"],
            location=f["location"], destination=f["destination"], processor=f["processor"],
            data_class=f["data_class"], mechanism=f["mechanism"], sources=_sources(f["basis"]),
            agreements=f["agreements"], actor=f["actors"], purpose=f["purposes"],
            objects=f["events"], bytes=f["bytes"], first_seen=f["first_seen"],
            last_seen=f["last_seen"])
    for d in report.decisions:
        row("decision", operation=d["operation"], outcome=d["outcome"], origin=d["origin"],
            location=d["location"], destination=d["destination"], processor=d["processor"],
            data_class=d["data_class"], mechanism=d["mechanism"], actor=d["actors"],
            purpose=d["purposes"], objects=d["decisions"], first_seen=d["first_seen"],
            last_seen=d["last_seen"])
    for r in report.tenants:
        row("tenant", tenant_id=r["tenant_id"], origin=r["country"], location=r["held_in"],
            destination=r["went_to"], objects=sum(h["objects"] for h in r["held"]),
            bytes=sum(h["bytes"] for h in r["held"]),
            detail=f"{r['movements']} movement(s), {r['decisions_allowed']} decision(s) "
                   f"allowed, {r['blocked_attempts']} blocked attempt(s), "
                   f"{r['erasures_completed']} erasure(s) completed")
    for b in report.blocked:
        row("blocked", seq=b["seq"], time=b["time"], operation=b["operation"],
            outcome="blocked", tenant_id=b["tenant_id"], origin=b["origin"],
            location=b["location"], destination=b["destination"], processor=b["processor"],
            data_class=b["data_class"], sources=_sources(b["sources"]), actor=b["actor"],
            purpose=b["purpose"], reasons=b["reasons"], unblock_with=b["unblock_with"],
            object_key=b["object_key"] or b["endpoint"])
    for v in report.violations:
        row("violation", seq=v["seq"], time=v["time"], kind=v["kind"], operation=v["op"],
            tenant_id=v["tenant_id"], destination=v["destination"], data_class=v["data_class"],
            actor=v["actor"], detail=v["detail"])
    for e in report.erasures:
        row("erasure", kind=e["status"], operation="erase", tenant_id=e["tenant_id"],
            location=e["locations"], actor=e["actors"], bytes=e["bytes"],
            first_seen=e["first_seen"], last_seen=e["last_seen"],
            detail=e["receipt"]["digest"] if e["receipt"] else None,
            object_key=e["request_id"])
    for d in report.retention_deletions:
        row("retention", operation="retention_delete", outcome=d["outcome"],
            kind=d["category"], tenant_id=d["tenant_id"], location=d["location"],
            objects=d["objects"], bytes=d["bytes"], first_seen=d["first_seen"],
            last_seen=d["last_seen"])
    for r in report.rules:
        row("rule", kind="past_review" if r["past_review"] else "in_force", detail=r["what"],
            sources=r["source"], first_seen=r["as_of"], last_seen=r["review_by"],
            objects=r["decisions"])
    for u in report.outcome_unknown:
        row("outcome_unknown", seq=u["seq"], time=u["time"], operation=u["operation"],
            outcome="intent", tenant_id=u["tenant_id"], actor=u["actor"],
            object_key=u["object_key"], detail=f"intent {u['event_id']} has no outcome")
    for u in report.unaudited_periods:
        row("unaudited", seq=u["seq"], time=u["time"], operation="audit_off",
            actor=u["actor"], location=u["location"], tenant_id=u["tenant_id"],
            detail=recorded(u))
    for a in report.anonymised_transfers:
        row("deid", seq=a["seq"], time=a["time"], operation="transfer",
            tenant_id=a["tenant_id"], origin=a["origin"], location=a["location"],
            destination=a["destination"], data_class=a["data_class"], actor=a["actor"],
            purpose=a["purpose"], bytes=a["size"], object_key=a["object_key"],
            detail=a["deid"])
    for e in report.stated_endpoints:
        row("stated_endpoint", kind=e["path"], destination=e["endpoint"], origin=e["country"],
            sources=e["source"])
    for note in report.notes:
        row("note", detail=note)
    return buf.getvalue()


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return csv_text("; ".join(str(v) for v in value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return value
    return csv_text(value)
