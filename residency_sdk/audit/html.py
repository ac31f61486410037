"""The HTML transfer-audit report: one self-contained file, printable.

No external asset: the styles and a tiny table-sorting script are inline, the flow
diagram is SVG drawn here (origin -> storage location -> destination, band widths by
volume), and a Content-Security-Policy forbids loading anything else.
"""

from __future__ import annotations

import base64
import hashlib
from collections import defaultdict
from collections.abc import Sequence
from html import escape
from typing import Any

from residency_sdk.audit._format import chain_status, human_bytes, recorded
from residency_sdk.audit.combine import (
    LOCATION_HEADERS,
    CombinedReport,
    chains_line,
    location_rows,
)
from residency_sdk.audit.report import AuditReport

_SCRIPT = """
(function () {
  function key(cell) {
    var v = cell.getAttribute('data-v');
    return v === null ? cell.textContent.trim().toLowerCase() : parseFloat(v);
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    table.querySelectorAll('th').forEach(function (th) {
      th.addEventListener('click', function () {
        var body = table.tBodies[0], i = th.cellIndex;
        var asc = th.getAttribute('aria-sort') !== 'ascending';
        table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
        Array.prototype.slice.call(body.rows).sort(function (a, b) {
          var x = key(a.cells[i]), y = key(b.cells[i]);
          return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
        }).forEach(function (row) { body.appendChild(row); });
      });
    });
  });
  document.body.setAttribute('data-ready', 'sortable');
})();
"""
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()

_STYLE = """
:root { --ok: #1a7f37; --bad: #cf222e; --ink: #1f2328; --muted: #656d76; --line: #d0d7de; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink);
       margin: 24px auto; max-width: 1180px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.meta { color: var(--muted); margin-bottom: 14px; }
.banner { padding: 10px 14px; border-radius: 6px; margin: 8px 0; font-weight: 600; }
.banner.ok { background: #dafbe1; color: var(--ok); border: 1px solid #aceebb; }
.banner.bad { background: #ffebe9; color: var(--bad); border: 1px solid #ffcecb; }
.banner.warn { background: #fff8c5; color: #7d4e00; border: 1px solid #eed888; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin: 12px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.card b { display: block; font-size: 20px; } .card span { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 10px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 8px; text-align: left;
         vertical-align: top; }
th { background: #f6f8fa; cursor: pointer; user-select: none; white-space: nowrap; }
th[aria-sort=ascending]::after { content: " \\25B2"; }
th[aria-sort=descending]::after { content: " \\25BC"; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.violation td, tr.unaudited td { background: #fff5f5; }
.none { color: var(--muted); font-style: italic; }
.missing { color: var(--bad); font-weight: 600; }
svg text { font: 12px system-ui, sans-serif; fill: var(--ink); }
svg .link { fill: none; stroke-opacity: .42; }
svg .link:hover { stroke-opacity: .7; }
@media print {
  body { margin: 0; max-width: none; font-size: 10pt; }
  th { cursor: auto; background: #eee !important; }
  th::after { content: "" !important; }
  tr, .card, svg { page-break-inside: avoid; }
  .banner { border-width: 2px; }
  a { color: inherit; text-decoration: none; }
}
"""

_PALETTE = ("#0969da", "#8250df", "#bf3989", "#1a7f37", "#9a6700", "#cf222e", "#0550ae",
            "#6639ba", "#116329", "#953800")


def _num(value: int | None, text: str | None = None) -> str:
    v = int(value or 0)
    return f'<td class="n" data-v="{v}">{escape(text if text is not None else f"{v:,}")}</td>'


def _td(value: Any) -> str:
    if value is None or value == [] or value == "":
        return '<td class="none">—</td>'
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    return f"<td>{escape(str(value))}</td>"


def _table(caption: str, headers: Sequence[str], rows: list[str], empty: str) -> str:
    if not rows:
        return f'<p class="none">{escape(empty)}</p>'
    head = "".join(f"<th scope=col>{escape(h)}</th>" for h in headers)
    return (f'<table class="sortable" aria-label="{escape(caption)}"><thead><tr>{head}</tr>'
            f"</thead><tbody>{''.join(rows)}</tbody></table>")


def flow_svg(flows: list[dict[str, Any]]) -> str:
    """A Sankey-style SVG: origin country -> storage location -> destination.

    Band widths are proportional to bytes when the flows moved bytes, else to events.
    """
    if not flows:
        return ('<svg role="img" aria-label="No cross-border flows" width="600" height="40" '
                'xmlns="http://www.w3.org/2000/svg"><text x="0" y="24">No cross-border flow '
                'in this window.</text></svg>')
    by_bytes = sum(int(f["bytes"]) for f in flows) > 0
    unit = "bytes" if by_bytes else "events"

    def real(f: dict[str, Any]) -> int:
        return int(f["bytes"] if by_bytes else f["events"])

    def vol(f: dict[str, Any]) -> int:
        return real(f) or 1  # a flow that moved no bytes still gets a visible hairline

    cols = ("origin", "location", "destination")
    node_vol: dict[tuple[str, str], int] = defaultdict(int)
    node_real: dict[tuple[str, str], int] = defaultdict(int)
    links: dict[tuple[tuple[str, str], tuple[str, str]], int] = defaultdict(int)
    link_real: dict[tuple[tuple[str, str], tuple[str, str]], int] = defaultdict(int)
    for f in flows:
        v = vol(f)
        for c in cols:
            node_vol[(c, str(f[c]))] += v
            node_real[(c, str(f[c]))] += real(f)
        for link in ((("origin", str(f["origin"])), ("location", str(f["location"]))),
                     (("location", str(f["location"])),
                      ("destination", str(f["destination"])))):
            links[link] += v
            link_real[link] += real(f)
    total = sum(vol(f) for f in flows)
    per_col = {c: sorted((n for n in node_vol if n[0] == c), key=lambda n: (-node_vol[n], n))
               for c in cols}
    gap, width, node_w, top = 14, 960, 14, 34
    most = max(len(v) for v in per_col.values())
    usable = max(220, 34 * most)
    scale = usable / total
    height = top + usable + gap * (most - 1) + 20
    xs = {"origin": 150, "location": width // 2 - node_w // 2, "destination": width - 170}
    pos: dict[tuple[str, str], float] = {}
    for c in cols:
        y = float(top)
        for n in per_col[c]:
            pos[n] = y
            y += max(2.0, node_vol[n] * scale) + gap
    colour = {n: _PALETTE[i % len(_PALETTE)] for i, n in enumerate(per_col["origin"])}
    out_off: dict[tuple[str, str], float] = defaultdict(float)
    in_off: dict[tuple[str, str], float] = defaultdict(float)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" id="flow-diagram" role="img" '
             f'viewBox="0 0 {width} {height}" width="100%" '
             f'aria-label="Cross-border flows by {unit}">']
    for i, label in enumerate(("Origin country", "Storage location", "Destination")):
        x = (xs[cols[i]] + node_w / 2)
        parts.append(f'<text x="{x:.0f}" y="16" text-anchor="middle" font-weight="600">'
                     f"{label}</text>")
    # Origin colour follows the band through the location, so each origin stays traceable.
    origin_of_location: dict[str, str] = {}
    for f in sorted(flows, key=lambda f: -vol(f)):
        origin_of_location.setdefault(str(f["location"]), str(f["origin"]))
    for (src, dst), v in sorted(links.items(), key=lambda kv: (kv[0][0][0] != "origin",
                                                                pos[kv[0][0]], pos[kv[0][1]])):
        w = max(1.5, v * scale)
        x1, x2 = xs[src[0]] + node_w, xs[dst[0]]
        y1 = pos[src] + out_off[src] + w / 2
        y2 = pos[dst] + in_off[dst] + w / 2
        out_off[src] += v * scale
        in_off[dst] += v * scale
        mid = (x1 + x2) / 2
        key = src if src[0] == "origin" else ("origin", origin_of_location.get(src[1], ""))
        moved = link_real[(src, dst)]
        amount = human_bytes(moved) if by_bytes else f"{moved:,} events"
        parts.append(
            f'<path class="link" d="M{x1},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} '
            f'{x2},{y2:.1f}" stroke="{colour.get(key, "#888")}" stroke-width="{w:.1f}">'
            f"<title>{escape(src[1])} → {escape(dst[1])}: {escape(amount)}</title></path>")
    for n, y in pos.items():
        h = max(2.0, node_vol[n] * scale)
        x = xs[n[0]]
        amount = human_bytes(node_real[n]) if by_bytes else f"{node_real[n]:,}"
        parts.append(f'<rect class="node" x="{x}" y="{y:.1f}" width="{node_w}" height="{h:.1f}" '
                     f'fill="{colour.get(n, "#57606a")}"><title>{escape(n[1])}: '
                     f"{escape(amount)}</title></rect>")
        if n[0] == "origin":
            lx, anchor = x - 6, "end"
        else:
            lx, anchor = x + node_w + 6, "start"
        parts.append(f'<text x="{lx}" y="{y + h / 2 + 4:.1f}" text-anchor="{anchor}">'
                     f"{escape(n[1])} ({escape(amount)})</text>")
    parts.append("</svg>")
    return "".join(parts)


def to_html(report: AuditReport) -> str:
    """The report as one self-contained HTML document."""
    t = report.totals
    chain_cls = "ok" if report.chain_state.ok else "bad"
    viol_cls = "ok" if report.violation_total == 0 else "bad"
    off, unknown = t["unaudited_periods"], t["outcome_unknown"]
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(report.violation_counts.items()))
    cards = "".join(
        f'<div class="card"><b>{escape(value)}</b><span>{escape(label)}</span></div>'
        for label, value in (
            ("events", f"{t['events']:,}"), ("tenants", f"{t['tenants']:,}"),
            ("cross-border allowed", f"{t['cross_border_allowed']:,}"),
            ("cross-border volume", human_bytes(t["cross_border_bytes"])),
            ("blocked", f"{t['blocked']:,}"), ("violations", f"{report.violation_total:,}"),
            ("outcome unknown", f"{unknown:,}"), ("unaudited periods", f"{off:,}")))
    flows = [
        "<tr>" + _td(f["origin"]) + _td(f["location"]) + _td(f["destination"])
        + _td(f["data_class"])
        + (_td(f["mechanism"]) if f["mechanism"] else '<td class="missing">none</td>')
        + _num(f["events"])
        + _num(f["bytes"], human_bytes(f["bytes"])) + _td(f["first_seen"])
        + _td(f["last_seen"]) + "</tr>" for f in report.flows]
    blocked = [
        "<tr>" + _td(b["actor"]) + _td(b["tenant_id"]) + _td(b["origin"]) + _td(b["destination"])
        + _td(b["data_class"]) + _td(b["operation"]) + _td("; ".join(b["reasons"]))
        + _num(b["events"]) + _td(b["last_seen"]) + "</tr>" for b in report.blocked]
    violations = [
        '<tr class="violation">' + _num(v["seq"]) + _td(v["kind"]) + _td(v["time"])
        + _td(v["tenant_id"]) + _td(v["actor"]) + _td(v["detail"]) + "</tr>"
        for v in report.violations]
    tenants = [
        "<tr>" + _td(r["tenant_id"]) + _td(r["country"]) + _td(r["held_in"]) + _td(r["went_to"])
        + _num(r["events"]) + _num(r["blocked"])
        + _num(r["bytes_written"], human_bytes(r["bytes_written"])) + "</tr>"
        for r in report.tenants]
    unaudited = [
        '<tr class="unaudited">' + _num(u["seq"]) + _td(u["time"]) + _td(u["actor"])
        + _td(u["location"]) + _td(recorded(u)) + "</tr>" for u in report.unaudited_periods]
    deid = [
        "<tr>" + _num(a["seq"]) + _td(a["time"]) + _td(a["tenant_id"]) + _td(a["location"])
        + _td(a["destination"]) + _td(a["object_key"])
        + (_td(a["deid"]) if a["deid"] else '<td class="missing">none recorded</td>') + "</tr>"
        for a in report.anonymised_transfers]
    unknowns = [
        "<tr>" + _num(u["seq"]) + _td(u["time"]) + _td(u["actor"]) + _td(u["tenant_id"])
        + _td(u["operation"]) + _td(u["object_key"]) + "</tr>" for u in report.outcome_unknown]
    off_banner = (
        f'<div class="banner bad" id="unaudited-status">Unaudited periods: {off:,}: audit '
        "was switched off in this log; what those processes did next is not recorded</div>"
        if off else '<div class="banner ok" id="unaudited-status">Unaudited periods: none '
        "(audit was never switched off in this log)</div>")
    unknown_banner = (
        f'<div class="banner warn" id="outcome-unknown-status">Outcome unknown: {unknown:,} '
        "operation(s) started with no recorded outcome</div>" if unknown else "")
    where = (f" · location <code>{escape(report.location)}</code>" if report.location
             else "")
    stated = [
        "<tr>" + _td(e["path"]) + _td(e["endpoint"]) + _td(e["country"]) + _td(e["source"])
        + "</tr>" for e in report.stated_endpoints]
    notes = "".join(f'<p class="meta">{escape(n)}</p>' for n in report.notes)
    csp = (f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
           f"script-src 'sha256-{_SCRIPT_HASH}'")
    window = f"{report.since or 'start'} → {report.until or 'now'}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Transfer-audit report</title><style>{_STYLE}</style></head>
<body>
<h1>Transfer-audit report</h1>
<div class="meta">Log <code>{escape(report.log_path)}</code>{where} · window {escape(window)} ·
region map <code>{escape(str(report.map_name))}</code> ·
generated {escape(report.generated_at)}</div>
<div class="banner {chain_cls}" id="chain-status" data-status="{report.chain_state.status}">
Chain {escape(chain_status(report))}</div>
{off_banner}
{unknown_banner}
<div class="banner {viol_cls}" id="violation-status">Violations: {report.violation_total:,}
({escape(counts)})</div>
{notes}<div class="cards">{cards}</div>
<h2>Unaudited periods</h2>
{_table("Unaudited periods", ["event", "when", "who", "location", "recorded"], unaudited,
        "None: audit was never switched off in this log.")}
<h2>Cross-border flows</h2>
{flow_svg(report.flows)}
{_table("Cross-border flows", ["origin", "location", "destination", "data class", "mechanism",
        "events", "bytes", "first seen", "last seen"], flows,
        "No cross-border flow in this window.")}
<h2>Blocked attempts</h2>
{_table("Blocked attempts", ["who", "tenant", "origin", "to", "data class", "operation", "why",
        "events", "last seen"], blocked, "No blocked attempt in this window.")}
<h2>De-identified transfers</h2>
{_table("De-identified transfers", ["event", "time", "tenant", "from", "to", "key",
        "evidence"], deid, "No transfer of de-identified data in this window.")}
<h2>Outcome unknown</h2>
{_table("Outcome unknown", ["event", "time", "who", "tenant", "operation", "key"], unknowns,
        "None: every operation started has its outcome.")}
<h2>Violations</h2>
{_table("Violations", ["event", "kind", "time", "tenant", "who", "detail"], violations,
        "No violation.")}
<h2>Tenants</h2>
{_table("Tenants", ["tenant", "country", "data held in", "went to", "events", "blocked",
        "bytes written"], tenants, "No tenant events in this window.")}
<h2>Endpoints located on the region map's word</h2>
{_table("Endpoints located on the region map's word", ["map entry", "endpoint", "country",
        "source"], stated, "None: every endpoint is an in-region form of its provider.")}
<script>{_SCRIPT}</script>
</body></html>
"""


def combined_to_html(report: CombinedReport) -> str:
    """The combined (several locations, aggregates only) report as one self-contained
    HTML document."""
    t = report.totals
    off, unknown = t["unaudited_periods"], t["outcome_unknown"]
    chain_cls = "ok" if report.chains_ok else "bad"
    viol_cls = "ok" if report.violation_total == 0 else "bad"
    counts = ", ".join(f"{k}: {v}" for k, v in report.violation_counts.items())
    numeric = {"events", "blocked", "cross-border allowed", "unaudited periods",
               "outcome unknown", "violations"}
    locations = [
        "<tr>" + "".join(_num(v) if h in numeric else _td(v)
                         for h, v in zip(LOCATION_HEADERS, row, strict=True)) + "</tr>"
        for row in location_rows(report)]
    operations = [
        "<tr>" + _td(o["operation"]) + _td(o["outcome"]) + _num(o["events"])
        + _num(o["bytes"], human_bytes(o["bytes"])) + "</tr>" for o in report.operations]
    flows = [
        "<tr>" + _td(f["origin"]) + _td(f["location"]) + _td(f["destination"])
        + _td(f["data_class"])
        + (_td(f["mechanism"]) if f["mechanism"] else '<td class="missing">none</td>')
        + _num(f["events"]) + _num(f["bytes"], human_bytes(f["bytes"]))
        + _td(f["first_seen"]) + _td(f["last_seen"]) + "</tr>" for f in report.flows]
    kinds = ["<tr>" + _td(k) + _num(v) + "</tr>" for k, v in report.violation_counts.items()]
    notes = "".join(f'<p class="meta">{escape(n)}</p>' for n in report.notes)
    csp = (f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
           f"script-src 'sha256-{_SCRIPT_HASH}'")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Combined transfer-audit report</title><style>{_STYLE}</style></head>
<body>
<h1>Combined transfer-audit report</h1>
<div class="meta">{len(report.inputs)} location report(s) ·
generated {escape(report.generated_at)}</div>
<div class="banner {chain_cls}" id="chain-status">Chains: {escape(chains_line(report))}</div>
<div class="banner {'bad' if off else 'ok'}" id="unaudited-status">Unaudited periods:
{off:,}</div>
<div class="banner {'warn' if unknown else 'ok'}" id="outcome-unknown-status">Outcome
unknown: {unknown:,}</div>
<div class="banner {viol_cls}" id="violation-status">Violations: {report.violation_total:,}
({escape(counts)})</div>
{notes}
<h2>Locations</h2>
{_table("Locations", LOCATION_HEADERS, locations, "No report.")}
<h2>Operations</h2>
{_table("Operations", ["operation", "outcome", "events", "bytes"], operations, "None.")}
<h2>Cross-border flows</h2>
{flow_svg(report.flows)}
{_table("Cross-border flows", ["origin", "location", "destination", "data class", "mechanism",
        "events", "bytes", "first seen", "last seen"], flows, "No cross-border flow.")}
<h2>Violations by kind</h2>
{_table("Violations by kind", ["kind", "events"], kinds, "None.")}
<script>{_SCRIPT}</script>
</body></html>
"""
