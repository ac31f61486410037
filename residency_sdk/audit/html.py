"""The HTML transfer-audit report: one self-contained file, printable, rendered from a
Jinja2 template (``templates/report.html.j2``) with autoescaping.

No external asset: the styles and a tiny table-sorting script are inline, the flow
diagram is SVG drawn here (origin -> residency location -> destination, band widths by
volume), a logo is embedded as a ``data:`` URI, and a Content-Security-Policy forbids
loading anything else.
"""

from __future__ import annotations

import base64
import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from residency_sdk.audit._format import chain_status, human_bytes, recorded
from residency_sdk.audit.combine import (
    LOCATION_HEADERS,
    CombinedReport,
    chains_line,
    location_rows,
)
from residency_sdk.audit.report import AuditReport
from residency_sdk.errors import AuditFormatError

if TYPE_CHECKING:
    import jinja2

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
.explain { color: var(--muted); margin: 0 0 8px; max-width: 900px; }
.note { background: #fff8c5; border-left: 3px solid #d4a72c; padding: 4px 10px; margin: 4px 0; }
.src { font-size: 12px; color: var(--muted); }
td code { overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
td.sources { min-width: 220px; max-width: 340px; }
td.when { white-space: nowrap; font-size: 12px; }
td { overflow-wrap: break-word; }
tr.review td, tr.blocked td { background: #fffbea; }
header.brand { display: flex; align-items: center; gap: 12px; min-height: 8px; }
header.brand .logo { max-height: 48px; max-width: 220px; }
header.brand .brand-name { font-size: 16px; font-weight: 600; }
footer { margin-top: 28px; }
.missing { color: var(--bad); font-weight: 600; }
svg text { font: 12px system-ui, sans-serif; fill: var(--ink); }
svg .link { fill: none; stroke-opacity: .42; }
svg .link:hover { stroke-opacity: .7; }
@page { size: A4 landscape; margin: 10mm; }
@media print {
  body { margin: 0; max-width: none; font-size: 9pt; }
  .scroll { overflow: visible; }
  table { font-size: 8pt; } td { overflow-wrap: anywhere; }
  h2 { page-break-after: avoid; }
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


@dataclass(frozen=True)
class Branding:
    """A company's name and logo on the HTML (and PDF) report, and optionally its own
    template folder (holding ``report.html.j2``, a copy of the packaged one)."""

    name: str | None = None
    logo: str | None = None
    """The logo as a ``data:`` URI (see :func:`logo_data_uri`): the report stays one
    self-contained file and its Content-Security-Policy loads nothing else."""
    template_dir: Path | None = None


_LOGO_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".svg": "image/svg+xml", ".gif": "image/gif", ".webp": "image/webp"}
_LOGO_MAX = 512 * 1024


def logo_data_uri(path: str | Path) -> str:
    """The image file at ``path`` (PNG, JPEG, SVG, GIF or WebP, at most 512 KiB) as a
    ``data:`` URI for :class:`Branding`."""
    where = Path(path)
    kind = _LOGO_TYPES.get(where.suffix.lower())
    if kind is None:
        raise AuditFormatError(f"logo {str(where)!r} is not an image this report embeds: use "
                               f"one of {', '.join(sorted(_LOGO_TYPES))}")
    try:
        data = where.read_bytes()
    except OSError as exc:
        raise AuditFormatError(f"cannot read logo {str(where)!r}: {exc.strerror or exc}: "
                               "give an existing image file") from None
    if len(data) > _LOGO_MAX:
        raise AuditFormatError(f"logo {str(where)!r} is {len(data):,} bytes: use an image of "
                               f"at most {_LOGO_MAX // 1024} KiB (it is embedded in the report)")
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


def _environment(branding: Branding) -> jinja2.Environment:
    import jinja2  # loaded when an HTML report is drawn, not with every command

    loaders: list[jinja2.BaseLoader] = [jinja2.PackageLoader("residency_sdk.audit", "templates")]
    if branding.template_dir is not None:
        if not (Path(branding.template_dir) / _TEMPLATE).is_file():
            raise AuditFormatError(
                f"template folder {str(branding.template_dir)!r} has no {_TEMPLATE}: copy the "
                "packaged one (residency_sdk/audit/templates/) there and edit it")
        loaders.insert(0, jinja2.FileSystemLoader(str(branding.template_dir)))
    env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=False)
    env.filters["num"] = lambda v: f"{int(v or 0):,}"
    env.filters["size"] = human_bytes
    env.filters["recorded"] = recorded
    return env


_TEMPLATE = "report.html.j2"


def to_html(report: AuditReport, branding: Branding | None = None) -> str:
    """The report as one self-contained HTML document (inline styles, an inline SVG
    diagram, a hashed inline script, no external asset), rendered from a Jinja2 template
    with autoescaping. It embeds the report's JSON (``residency-report-data``) and a slot
    for its seal (:func:`residency_sdk.audit.seal.seal_html`)."""
    import jinja2
    from markupsafe import Markup

    from residency_sdk.audit.seal import SEAL_SLOT_HTML, embed_report_json

    branding = branding or Branding()
    data = report.to_dict()
    csp = (f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
           f"script-src 'sha256-{_SCRIPT_HASH}'")
    # The only markup passed in: module constants, the SVG (every label escaped where it
    # is drawn) and the report's JSON with <, > and & as \u escapes (inert in a script).
    trusted = {"style": _STYLE, "script": _SCRIPT, "diagram": flow_svg(report.flows),
               "report_json": embed_report_json(data), "seal_slot": SEAL_SLOT_HTML,
               "csp": csp}
    try:
        template = _environment(branding).get_template(_TEMPLATE)
        return template.render(
            r=data, t=data["totals"], brand=branding,
            chain_line=chain_status(report),
            **{name: Markup(value) for name, value in trusted.items()})  # noqa: S704
    except jinja2.TemplateError as exc:
        raise AuditFormatError(f"cannot render the HTML report: template error: {exc}: fix "
                               f"{_TEMPLATE} in the template folder") from None


def combined_to_html(report: CombinedReport) -> str:
    """The combined (several locations, aggregates only) report as one self-contained
    HTML document."""
    t = report.totals
    off, unknown = t["unaudited_periods"], t["outcome_unknown"]
    chain_cls = "ok" if report.chains_ok else "bad"
    viol_cls = "ok" if report.violation_total == 0 else "bad"
    counts = ", ".join(f"{k}: {v}" for k, v in report.violation_counts.items())
    numeric = {"events", "blocked", "data movements", "unaudited periods",
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
