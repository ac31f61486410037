"""The transfer rules as a table a privacy officer can review, and what changed between
two versions of them.

:func:`build_matrix` asks the rules one question per cell: may a tenant of ``origin``,
holding no agreement, move its ``data_class`` data from ``origin`` to ``destination``?
The answer, its legal basis or what would unblock it, and the rule facts it rests on
(source, as_of, review_by) are rendered as Markdown, a self-contained HTML page, JSON or
CSV. :func:`diff_matrices` lists every cell whose outcome differs between two matrices.

Every text that comes from a rules file is escaped for the format it lands in.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from residency_sdk._yamlio import load_yaml_file
from residency_sdk.countries import normalise_country
from residency_sdk.errors import MapError
from residency_sdk.policy import ResidencyPolicy
from residency_sdk.regionmap import load_region_map
from residency_sdk.rules import TransferRules, load_transfer_rules

SCHEMA = "residency.rules-matrix/v1"
DIFF_SCHEMA = "residency.rules-diff/v1"
MATRIX_FORMATS = ("md", "html", "json", "csv")
DIFF_FORMATS = ("md", "json", "csv", "text")

Unblock = tuple[tuple[str, ...], ...]
"""Per blocking regime, the mechanism flags any one of which would allow the move."""


class Fact(NamedTuple):
    """A rule fact a cell rests on: the regime (or overlay), its source and dates."""

    regime: str
    source: str
    as_of: str | None
    review_by: str | None


@dataclass(frozen=True, slots=True)
class MatrixCell:
    """The rules' answer for one origin, destination and data class."""

    origin: str
    destination: str
    data_class: str
    allowed: bool
    is_transfer: bool
    basis: str | None
    unblock_with: Unblock
    regimes: tuple[str, ...]
    facts: tuple[Fact, ...]
    reasons: tuple[str, ...]

    @property
    def key(self) -> tuple[str, str, str]:
        """``(origin, destination, data_class)``."""
        return (self.origin, self.destination, self.data_class)

    @property
    def outcome(self) -> tuple[bool, str | None, Unblock]:
        """What a diff compares: allowed, basis and what would unblock."""
        return (self.allowed, self.basis, self.unblock_with)

    def short(self) -> str:
        """``✓ adequacy``, ``✓ no transfer`` or ``✗ scc|bcr`` (``+`` joins regimes)."""
        if self.allowed:
            return f"✓ {self.basis or ('allowed' if self.is_transfer else 'no transfer')}"
        return "✗ " + (" + ".join("|".join(alts) or "none" for alts in self.unblock_with)
                       or "none")

    def describe(self) -> str:
        """``allowed via adequacy`` or ``blocked (unblock: scc or bcr)``, in words."""
        if self.allowed:
            if self.basis:
                return f"allowed via {self.basis}"
            return "allowed" if self.is_transfer else "allowed (no transfer)"
        needs = unblock_text(self.unblock_with)
        return f"blocked (unblock: {needs})" if needs else "blocked (no mechanism can allow it)"

    def to_json(self) -> dict[str, Any]:
        """The cell as JSON-able data."""
        return {"origin": self.origin, "destination": self.destination,
                "data_class": self.data_class, "allowed": self.allowed,
                "is_transfer": self.is_transfer, "basis": self.basis,
                "unblock_with": [list(alts) for alts in self.unblock_with],
                "regimes": list(self.regimes), "facts": [f._asdict() for f in self.facts],
                "reasons": list(self.reasons)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MatrixCell:
        """The cell :meth:`to_json` wrote."""
        return cls(origin=data["origin"], destination=data["destination"],
                   data_class=data["data_class"], allowed=data["allowed"],
                   is_transfer=data["is_transfer"], basis=data["basis"],
                   unblock_with=tuple(tuple(alts) for alts in data["unblock_with"]),
                   regimes=tuple(data["regimes"]),
                   facts=tuple(Fact(**f) for f in data["facts"]),
                   reasons=tuple(data["reasons"]))


@dataclass(frozen=True, slots=True)
class RulesMatrix:
    """Every cell of origins x destinations x data classes, and where the rules came from."""

    cells: tuple[MatrixCell, ...]
    origins: tuple[str, ...]
    destinations: tuple[str, ...]
    data_classes: tuple[str, ...]
    rules_file: str
    rules_as_of: str
    map_name: str

    def cell(self, origin: str, destination: str, data_class: str) -> MatrixCell:
        """The cell of ``origin`` -> ``destination`` for ``data_class`` (KeyError if none)."""
        for cell in self.cells:
            if cell.key == (origin, destination, data_class):
                return cell
        raise KeyError((origin, destination, data_class))

    def facts(self) -> tuple[Fact, ...]:
        """Every rule fact the cells rest on, once each, sorted."""
        unique = {fact for cell in self.cells for fact in cell.facts}
        return tuple(sorted(unique, key=lambda f: (f.regime, f.source, f.as_of or "",
                                                   f.review_by or "")))

    def to_json(self) -> dict[str, Any]:
        """The matrix as JSON-able data, tagged with :data:`SCHEMA`."""
        return {"schema": SCHEMA, "map_name": self.map_name, "rules_file": self.rules_file,
                "rules_as_of": self.rules_as_of, "origins": list(self.origins),
                "destinations": list(self.destinations),
                "data_classes": list(self.data_classes),
                "cells": [cell.to_json() for cell in self.cells]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RulesMatrix:
        """The matrix :meth:`to_json` wrote (MapError for another schema)."""
        if data.get("schema") != SCHEMA:
            raise MapError(f"not a rules matrix: schema is {data.get('schema')!r}, "
                           f"expected {SCHEMA!r}")
        return cls(cells=tuple(MatrixCell.from_json(c) for c in data["cells"]),
                   origins=tuple(data["origins"]), destinations=tuple(data["destinations"]),
                   data_classes=tuple(data["data_classes"]), rules_file=data["rules_file"],
                   rules_as_of=data["rules_as_of"], map_name=data["map_name"])

    def to_csv(self) -> str:
        """One row per cell; alternatives joined with `` or ``, regimes with `` and ``."""
        rows = [(c.origin, c.destination, c.data_class, _yes_no(c.allowed),
                 _yes_no(c.is_transfer), c.basis or "", unblock_text(c.unblock_with),
                 "; ".join(c.regimes), "; ".join(fact_text(f) for f in c.facts),
                 "; ".join(c.reasons)) for c in self.cells]
        return _csv(("origin", "destination", "data_class", "allowed", "is_transfer",
                     "basis", "unblock_with", "regimes", "facts", "reasons"), rows)

    def to_markdown(self) -> str:
        """One table per data class (rows: origins, columns: destinations), then the facts."""
        by_key = {cell.key: cell for cell in self.cells}
        lines = ["# Transfer rules matrix", "",
                 f"Map `{_md(self.map_name)}`, rules {_md(self.rules_file)} "
                 f"(as of {_md(self.rules_as_of)}).", "",
                 "A tenant of the row's country, holding no agreement, moves data from its "
                 "own country to the column's. `✓ basis`: allowed on that basis. "
                 "`✗ a|b`: blocked until one of a or b is signed; `+` joins what separate "
                 "regimes each require; `none`: no mechanism can allow it.", ""]
        for dc in self.data_classes:
            lines += [f"## {_md(dc)}", "",
                      _md_row(["from \\ to", *map(_md, self.destinations)]),
                      _md_row(["---"] * (len(self.destinations) + 1))]
            for origin in self.origins:
                shown = [_md(by_key[(origin, d, dc)].short()) if (origin, d, dc) in by_key
                         else "" for d in self.destinations]
                lines.append(_md_row([f"**{_md(origin)}**", *shown]))
            lines.append("")
        lines += ["## Facts", "", _md_row(["Regime", "Source", "As of", "Review by"]),
                  _md_row(["---"] * 4)]
        lines += [_md_row([_md(f.regime), _md(f.source), _md(f.as_of or ""),
                           _md(f.review_by or "")]) for f in self.facts()]
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        """One self-contained page (inline CSS, no script, no external asset)."""
        e = _html
        by_key = {cell.key: cell for cell in self.cells}
        parts = [f"<h1>Transfer rules matrix</h1><p>Map <code>{e(self.map_name)}</code>, "
                 f"rules <code>{e(self.rules_file)}</code>, as of {e(self.rules_as_of)}.</p>"
                 "<p>A tenant of the row's country, holding no agreement, moves data from "
                 "its own country to the column's. ✓ basis: allowed on that basis; ✗ a|b: "
                 "blocked until one of a or b is signed (+ joins what separate regimes each "
                 "require). Hover a cell for the reasons.</p>"]
        for dc in self.data_classes:
            head = "".join(f"<th>{e(d)}</th>" for d in self.destinations)
            parts.append(f"<h2>{e(dc)}</h2><div class=\"scroll\"><table><thead><tr>"
                         f"<th>from \\ to</th>{head}</tr></thead><tbody>")
            for origin in self.origins:
                row = []
                for d in self.destinations:
                    cell = by_key.get((origin, d, dc))
                    if cell is None:
                        row.append("<td></td>")
                        continue
                    css = "ok" if cell.allowed else "no"
                    reasons = e("\n".join(cell.reasons))
                    row.append(f"<td class=\"{css}\" title=\"{reasons}\">"
                               f"{e(cell.short())}</td>")
                parts.append(f"<tr><th>{e(origin)}</th>{''.join(row)}</tr>")
            parts.append("</tbody></table></div>")
        facts = "".join(f"<tr><td>{e(f.regime)}</td><td>{e(f.source)}</td>"
                        f"<td>{e(f.as_of or '')}</td><td>{e(f.review_by or '')}</td></tr>"
                        for f in self.facts())
        parts.append("<h2>Facts</h2><table class=\"facts\"><thead><tr><th>Regime</th>"
                     "<th>Source</th><th>As of</th><th>Review by</th></tr></thead>"
                     f"<tbody>{facts}</tbody></table>")
        return _page("Transfer rules matrix", "".join(parts))


def default_origins(policy: ResidencyPolicy) -> tuple[str, ...]:
    """Every country the map routes, sorted."""
    return tuple(sorted(policy.map.routes))


def default_destinations(policy: ResidencyPolicy) -> tuple[str, ...]:
    """Every country with a regime or named by an adequacy entry or overlay list, sorted."""
    rules = policy.rules
    found = set(rules.regime_of)
    for regime in rules.regimes.values():
        for entry in regime.adequacy:
            found |= entry.countries
    found |= _overlay_countries(rules)
    return tuple(sorted(found))


def build_matrix(policy: ResidencyPolicy, *, origins: Iterable[str] | None = None,
                 destinations: Iterable[str] | None = None,
                 data_classes: Iterable[str] | None = None) -> RulesMatrix:
    """Decide every origin x destination x data class cell of ``policy``'s rules.

    Defaults: :func:`default_origins`, :func:`default_destinations` and every data class
    of the rules, sorted. Given values are normalised (InvalidCountry, UnknownDataClass
    for a bad one) and kept in the order given, without repeats.
    """
    rules = policy.rules
    from_ = _unique(normalise_country(c) for c in origins) if origins is not None \
        else default_origins(policy)
    to = _unique(normalise_country(c) for c in destinations) if destinations is not None \
        else default_destinations(policy)
    classes = _unique(rules.check_data_class(dc) for dc in data_classes) \
        if data_classes is not None else tuple(sorted(rules.data_classes))
    cells = []
    for dc in classes:
        for origin in from_:
            for destination in to:
                decision = rules.decide(tenant_country=origin, source=origin,
                                        destination=destination, data_class=dc,
                                        agreements=frozenset())
                cells.append(MatrixCell(
                    origin=origin, destination=destination, data_class=dc,
                    allowed=decision.allowed, is_transfer=decision.is_transfer,
                    basis=decision.mechanism, unblock_with=decision.unblock_with,
                    regimes=decision.regimes,
                    facts=tuple(dict.fromkeys(
                        Fact(v.regime, v.source, v.as_of, v.review_by)
                        for v in decision.verdicts if v.source is not None)),
                    reasons=decision.reasons))
    return RulesMatrix(cells=tuple(cells), origins=from_, destinations=to,
                       data_classes=classes, rules_file=rules.file,
                       rules_as_of=rules.document.as_of, map_name=policy.map.name)


def load_policy_for_diff(path: Path) -> ResidencyPolicy:
    """The policy of a region map file, or of a transfer rules file paired with the
    packaged default map. MapError when ``path`` is neither."""
    raw = load_yaml_file(path)
    if isinstance(raw, dict) and "regimes" in raw:
        region_map = load_region_map()
        return ResidencyPolicy(region_map, load_transfer_rules(path, region_map.groups))
    if isinstance(raw, dict) and {"routes", "locations", "extends"} & raw.keys():
        return ResidencyPolicy.load(path)
    raise MapError("neither a region map (routes:, locations:) nor a transfer rules file "
                   "(regimes:)", file=str(path))


def matrices_for_diff(old: ResidencyPolicy, new: ResidencyPolicy
                      ) -> tuple[RulesMatrix, RulesMatrix]:
    """Both policies' matrices over the same origins and destinations (the union of their
    defaults), so a country that left every list shows as a changed cell, not a gap."""
    origins = sorted({*default_origins(old), *default_origins(new)})
    destinations = sorted({*default_destinations(old), *default_destinations(new)})
    return (build_matrix(old, origins=origins, destinations=destinations),
            build_matrix(new, origins=origins, destinations=destinations))


# --- diff ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CellChange:
    """A cell whose outcome differs between two matrices (``old`` or ``new`` None: the
    cell is only in the other)."""

    origin: str
    destination: str
    data_class: str
    old: MatrixCell | None
    new: MatrixCell | None

    @property
    def kind(self) -> str:
        """``added``, ``removed`` or ``changed``."""
        return "added" if self.old is None else "removed" if self.new is None else "changed"

    def describe(self) -> str:
        """``DE -> US phi: blocked (unblock: scc or bcr) -> allowed via dpf_eu``."""
        before = self.old.describe() if self.old else "not in the old matrix"
        after = self.new.describe() if self.new else "not in the new matrix"
        return f"{self.origin} -> {self.destination} {self.data_class}: {before} -> {after}"

    def to_json(self) -> dict[str, Any]:
        """The change as JSON-able data."""
        return {"origin": self.origin, "destination": self.destination,
                "data_class": self.data_class, "change": self.kind,
                "description": self.describe(),
                "old": self.old.to_json() if self.old else None,
                "new": self.new.to_json() if self.new else None}


def diff_matrices(old: RulesMatrix, new: RulesMatrix) -> tuple[CellChange, ...]:
    """Every cell whose allowed, basis or unblock_with differs, and every cell in only one
    matrix; in ``new``'s cell order, then the cells only ``old`` has."""
    before = {cell.key: cell for cell in old.cells}
    after = {cell.key: cell for cell in new.cells}
    changes = []
    for key in dict.fromkeys([*after, *before]):
        was, now = before.get(key), after.get(key)
        if was is None or now is None or was.outcome != now.outcome:
            changes.append(CellChange(*key, old=was, new=now))
    return tuple(changes)


def diff_to_text(changes: Sequence[CellChange], *, old_label: str = "old",
                 new_label: str = "new") -> str:
    """One line per change (:meth:`CellChange.describe`)."""
    if not changes:
        return f"no cell changed between {old_label} and {new_label}\n"
    head = f"{len(changes)} cell(s) changed between {old_label} and {new_label}:"
    return "\n".join([head, *(change.describe() for change in changes)]) + "\n"


def diff_to_json(changes: Sequence[CellChange], *, old_label: str = "old",
                 new_label: str = "new") -> dict[str, Any]:
    """The changes as JSON-able data, tagged with :data:`DIFF_SCHEMA`."""
    return {"schema": DIFF_SCHEMA, "old": old_label, "new": new_label,
            "changed": len(changes), "changes": [change.to_json() for change in changes]}


def diff_to_csv(changes: Sequence[CellChange]) -> str:
    """One row per change, the old and new outcome side by side."""
    def outcome(cell: MatrixCell | None) -> tuple[str, str, str]:
        if cell is None:
            return ("", "", "")
        return (_yes_no(cell.allowed), cell.basis or "", unblock_text(cell.unblock_with))

    rows = [(c.origin, c.destination, c.data_class, c.kind, *outcome(c.old),
             *outcome(c.new), c.describe()) for c in changes]
    return _csv(("origin", "destination", "data_class", "change", "old_allowed",
                 "old_basis", "old_unblock_with", "new_allowed", "new_basis",
                 "new_unblock_with", "description"), rows)


def diff_to_markdown(changes: Sequence[CellChange], *, old_label: str = "old",
                     new_label: str = "new") -> str:
    """A table of the changed cells, old and new outcome side by side."""
    lines = ["# Transfer rules diff", "",
             f"Old: {_md(old_label)}  ", f"New: {_md(new_label)}", ""]
    if not changes:
        return "\n".join([*lines, "No cell changed."]) + "\n"
    lines += [f"{len(changes)} cell(s) changed.", "",
              _md_row(["From", "To", "Data class", "Old", "New"]), _md_row(["---"] * 5)]
    lines += [_md_row([_md(c.origin), _md(c.destination), _md(c.data_class),
                       _md(c.old.describe() if c.old else "—"),
                       _md(c.new.describe() if c.new else "—")]) for c in changes]
    return "\n".join(lines) + "\n"


def render_matrix(matrix: RulesMatrix, fmt: str) -> str:
    """``matrix`` as text in ``fmt`` (one of :data:`MATRIX_FORMATS`)."""
    if fmt == "json":
        return _json_text(matrix.to_json())
    renderers = {"md": matrix.to_markdown, "html": matrix.to_html, "csv": matrix.to_csv}
    if fmt not in renderers:
        raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(MATRIX_FORMATS)}")
    return renderers[fmt]()


def render_diff(changes: Sequence[CellChange], fmt: str, *, old_label: str = "old",
                new_label: str = "new") -> str:
    """``changes`` as text in ``fmt`` (one of :data:`DIFF_FORMATS`)."""
    labels = {"old_label": old_label, "new_label": new_label}
    if fmt == "md":
        return diff_to_markdown(changes, **labels)
    if fmt == "json":
        return _json_text(diff_to_json(changes, **labels))
    if fmt == "csv":
        return diff_to_csv(changes)
    if fmt == "text":
        return diff_to_text(changes, **labels)
    raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(DIFF_FORMATS)}")


# --- text helpers ----------------------------------------------------------------------


def unblock_text(unblock: Unblock) -> str:
    """``scc or bcr and baa``: alternatives with `` or ``, each regime's with `` and ``."""
    return " and ".join(" or ".join(alts) or "none" for alts in unblock)


def fact_text(fact: Fact) -> str:
    """``gdpr: <source> (as of 2026-11-01, review by 2027-05-01)``."""
    dates = ", ".join(part for part in (fact.as_of and f"as of {fact.as_of}",
                                        fact.review_by and f"review by {fact.review_by}")
                      if part)
    return f"{fact.regime}: {fact.source}" + (f" ({dates})" if dates else "")


def _overlay_countries(rules: TransferRules) -> set[str]:
    # Sector overlays (where the rules have them) name allowed or blocked destinations.
    found: set[str] = set()
    for overlay in getattr(rules, "overlays", {}).values():
        for name in ("allowed", "blocked"):
            found |= set(getattr(overlay, name, None) or ())
    return found


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def _csv(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([_no_formula(value) for value in row] for row in rows)
    return out.getvalue()


def _no_formula(value: str) -> str:
    # A spreadsheet runs a cell that starts with one of these as a formula.
    return f"'{value}" if value.startswith(("=", "+", "-", "@", "\t", "\r")) else value


def _json_text(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


_MD_ESCAPES = str.maketrans({"\\": "\\\\", "|": "\\|", "&": "&amp;", "<": "&lt;",
                             ">": "&gt;", "[": "\\[", "]": "\\]", "`": "\\`",
                             "\n": " ", "\r": " "})


def _md(text: str) -> str:
    """``text`` safe inside a Markdown table cell: no HTML, no link, no column break."""
    return text.translate(_MD_ESCAPES)


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _html(text: str) -> str:
    return html.escape(text, quote=True)


_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; white-space: nowrap; }
thead th { position: sticky; top: 0; background: #eee; }
tbody th { background: #f6f6f6; text-align: left; }
td.ok { background: #e6f4ea; }
td.no { background: #fce8e6; }
table.facts td { white-space: normal; }
.scroll { overflow-x: auto; }
"""


def _page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "style-src 'unsafe-inline'\">"
            f"<title>{_html(title)}</title><style>{_CSS}</style></head>"
            f"<body>{body}</body></html>\n")
