"""One transfer-audit report for several residency locations, from their aggregates only.

Audit events name tenants, staff and studies: they are personal data and stay in their
location. Each location builds its own report (``residency audit report LOG --location DE
--format json``); :func:`combine_reports` then reads only the aggregate sections of those
JSON reports (totals, operations, cross-border flows, violation counts, the chain status of
each log, the unaudited-period and outcome-unknown counts) and never an event-level row:
blocked attempts (with their actors), tenants, violations in detail, outcome-unknown
intents and unaudited periods in detail are not read, so they cannot leave their location.
Each field read is picked by name and checked for its type, so an input carrying more
(a hand-edited file) still cannot carry it across.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn

from residency_sdk.audit._format import human_bytes, md_text
from residency_sdk.audit.report import REPORT_SCHEMA
from residency_sdk.errors import AuditFormatError

COMBINED_SCHEMA = "residency.audit.combined/v1"
COMBINED_FORMATS = ("md", "html", "json")
"""What :func:`residency_sdk.audit.render.render_combined` writes."""
AGGREGATES_ONLY = (
    "Built from each location's aggregate figures only (totals, operations, cross-border "
    "flows, violation counts, chain status, unaudited-period and outcome-unknown counts). "
    "No event-level row (who, which tenant, which object, which event) was copied from any "
    "location's report: those stay in that location's own report.")

_TOTALS = ("events", "tenants", "blocked", "movements", "movement_bytes",
           "violations", "intents", "outcome_unknown", "unaudited_periods")
_SUMMED = tuple(k for k in _TOTALS if k != "tenants")  # a tenant may be in two reports
_CHAIN_STATUSES = ("verified", "broken", "unverified")


@dataclass
class CombinedReport:
    """Several locations' reports combined from their aggregate sections."""

    generated_at: str
    inputs: list[dict[str, Any]]
    """One entry per report: its log, location, window, region map, chain status and
    totals (aggregates only)."""
    totals: dict[str, Any]
    operations: list[dict[str, Any]]
    flows: list[dict[str, Any]]
    violation_counts: dict[str, int]
    notes: list[str] = field(default_factory=list)

    @property
    def violation_total(self) -> int:
        """Violating events across every location."""
        return sum(self.violation_counts.values())

    @property
    def chains_ok(self) -> bool:
        """True when every input's chain verified."""
        return all(i["chain"]["status"] == "verified" for i in self.inputs)

    @property
    def ok(self) -> bool:
        """True when every chain verified and no location has a violation."""
        return self.chains_ok and self.violation_total == 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (``schema`` ``residency.audit.combined/v1``)."""
        return {"schema": COMBINED_SCHEMA, "generated_at": self.generated_at,
                "ok": self.ok, "aggregates_only": True, "inputs": self.inputs,
                "totals": self.totals, "operations": self.operations, "flows": self.flows,
                "violation_counts": self.violation_counts, "notes": self.notes}


class _Reader:
    """Reads one input report's aggregate fields, by name and type, naming the input in
    every error."""

    def __init__(self, report: object, source: str) -> None:
        self.source = source
        if not isinstance(report, Mapping):
            self.fail(f"is a {type(report).__name__}, not a JSON report object")
        schema = report.get("schema")
        if schema != REPORT_SCHEMA:
            self.fail(f"has schema {schema!r}, expected {REPORT_SCHEMA!r}")
        self.report = report

    def fail(self, what: str) -> NoReturn:
        raise AuditFormatError(
            f"report {self.source} {what}: combine takes the JSON reports of this release "
            "(`residency audit report LOG --location L --format json`)")

    def get(self, where: Mapping[str, Any], key: str, kind: type | tuple[type, ...],
            path: str, *, optional: bool = False) -> Any:
        value = where.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(f"has no valid {path}.{key} ({value!r})")
        return value

    def section(self, key: str, kind: type) -> Any:
        return self.get(self.report, key, kind, "report")

    def counts(self, where: Mapping[str, Any], path: str, keys: Sequence[str]) -> dict[str, int]:
        return {k: int(self.get(where, k, int, path)) for k in keys}


def _read_input(reader: _Reader) -> tuple[dict[str, Any], list[dict[str, Any]],
                                          list[dict[str, Any]], dict[str, int]]:
    totals_in = reader.section("totals", dict)
    chain_in = reader.section("chain", dict)
    status = reader.get(chain_in, "status", str, "chain")
    if status not in _CHAIN_STATUSES:
        reader.fail(f"has an unknown chain status {status!r}")
    chain = {
        "status": status,
        "kind": reader.get(chain_in, "kind", str, "chain", optional=True),
        "message": reader.get(chain_in, "message", str, "chain", optional=True),
        "events": reader.get(chain_in, "events", int, "chain"),
        "log_id": reader.get(chain_in, "log_id", str, "chain", optional=True),
        "keyed": bool(chain_in.get("keyed")),
        "hmac_checked": bool(chain_in.get("hmac_checked")),
        "outside_chain_rows": int(reader.get(chain_in, "outside_chain_rows", int, "chain",
                                             optional=True) or 0),
    }
    totals: dict[str, Any] = reader.counts(totals_in, "totals", _TOTALS)
    for key in ("first_seen", "last_seen"):
        totals[key] = reader.get(totals_in, key, str, "totals", optional=True)
    entry = {
        "log": reader.get(reader.report, "log", str, "report"),
        "location": reader.get(reader.report, "location", str, "report", optional=True),
        "since": reader.get(reader.report, "since", str, "report", optional=True),
        "until": reader.get(reader.report, "until", str, "report", optional=True),
        "region_map": reader.get(reader.report, "region_map", str, "report", optional=True),
        "generated_at": reader.get(reader.report, "generated_at", str, "report"),
        "chain": chain, "totals": totals,
    }
    operations = []
    for i, row in enumerate(reader.section("operations", list)):
        path = f"operations[{i}]"
        if not isinstance(row, Mapping):
            reader.fail(f"has an invalid {path}")
        operations.append({"operation": reader.get(row, "operation", str, path),
                           "outcome": reader.get(row, "outcome", str, path),
                           **reader.counts(row, path, ("events", "bytes"))})
    flows = []
    for i, row in enumerate(reader.section("flows", list)):
        path = f"flows[{i}]"
        if not isinstance(row, Mapping):
            reader.fail(f"has an invalid {path}")
        ops = reader.get(row, "operations", list, path)
        if not all(isinstance(o, str) for o in ops):
            reader.fail(f"has an invalid {path}.operations")
        flows.append({
            **{k: reader.get(row, k, str, path)
               for k in ("origin", "location", "destination", "data_class")},
            "mechanism": reader.get(row, "mechanism", str, path, optional=True),
            **reader.counts(row, path, ("events", "bytes")),
            "first_seen": reader.get(row, "first_seen", str, path, optional=True),
            "last_seen": reader.get(row, "last_seen", str, path, optional=True),
            "operations": sorted(set(ops))})
    counts_in = reader.section("violation_counts", dict)
    violation_counts = reader.counts(counts_in, "violation_counts", sorted(counts_in))
    return entry, operations, flows, violation_counts


def _earliest(values: Sequence[str | None]) -> str | None:
    return min((v for v in values if v), default=None)


def _latest(values: Sequence[str | None]) -> str | None:
    return max((v for v in values if v), default=None)


def combine_reports(reports: Sequence[Mapping[str, Any]], *,
                    sources: Sequence[str] | None = None) -> CombinedReport:
    """One report for several locations from their JSON reports' aggregates only.

    ``reports`` are the dicts of ``residency audit report --format json`` (or
    :meth:`AuditReport.to_dict`), one per location; ``sources`` names them in error
    messages (file names). Event-level sections of the inputs are never read.
    """
    if not reports:
        raise AuditFormatError("no report to combine: give at least one JSON report")
    names = list(sources) if sources is not None else [f"#{i + 1}" for i in range(len(reports))]
    inputs: list[dict[str, Any]] = []
    operations: dict[tuple[str, str], dict[str, Any]] = {}
    flows: dict[tuple[Any, ...], dict[str, Any]] = {}
    violation_counts: dict[str, int] = {}
    seen: dict[tuple[Any, ...], str] = {}
    for report, name in zip(reports, names, strict=True):
        entry, ops, fls, counts = _read_input(_Reader(report, name))
        identity = (entry["chain"]["log_id"] or entry["log"], entry["location"],
                    entry["since"], entry["until"])
        if identity in seen:
            raise AuditFormatError(
                f"reports {seen[identity]} and {name} cover the same log, location and "
                "window: combining them would count every event twice; give each once")
        seen[identity] = name
        inputs.append(entry)
        for op in ops:
            merged = operations.setdefault((op["operation"], op["outcome"]),
                                           {**op, "events": 0, "bytes": 0})
            merged["events"] += op["events"]
            merged["bytes"] += op["bytes"]
        for flow in fls:
            key = tuple(flow[k] for k in ("origin", "location", "destination", "data_class",
                                          "mechanism"))
            merged = flows.setdefault(key, {**flow, "events": 0, "bytes": 0,
                                            "operations": []})
            merged["events"] += flow["events"]
            merged["bytes"] += flow["bytes"]
            merged["first_seen"] = _earliest([merged["first_seen"], flow["first_seen"]])
            merged["last_seen"] = _latest([merged["last_seen"], flow["last_seen"]])
            merged["operations"] = sorted({*merged["operations"], *flow["operations"]})
        for kind, n in counts.items():
            violation_counts[kind] = violation_counts.get(kind, 0) + n
    totals: dict[str, Any] = {k: sum(i["totals"][k] for i in inputs) for k in _SUMMED}
    totals["first_seen"] = _earliest([i["totals"]["first_seen"] for i in inputs])
    totals["last_seen"] = _latest([i["totals"]["last_seen"] for i in inputs])
    totals["reports"] = len(inputs)
    return CombinedReport(
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"), inputs=inputs,
        totals=totals,
        operations=sorted(operations.values(), key=lambda r: (r["operation"], r["outcome"])),
        flows=sorted(flows.values(), key=lambda f: (-f["bytes"], -f["events"], f["origin"],
                                                     f["location"], f["destination"],
                                                     f["data_class"])),
        violation_counts=dict(sorted(violation_counts.items())), notes=_notes(inputs))


def _label(entry: Mapping[str, Any]) -> str:
    return f"{entry['location'] or 'all locations'} ({entry['log']})"


def _notes(inputs: list[dict[str, Any]]) -> list[str]:
    notes = [AGGREGATES_ONLY]
    for entry in inputs:
        status = entry["chain"]["status"]
        if status != "verified":
            notes.append(f"the chain of {_label(entry)} is {status.upper()}: its figures "
                         "cannot be trusted")
        off = entry["totals"]["unaudited_periods"]
        if off:
            notes.append(f"{_label(entry)}: audit was switched off {off} time(s); see that "
                         "location's report for when and by whom")
    windows = {(e["since"], e["until"]) for e in inputs}
    if len(windows) > 1:
        notes.append("the reports cover different windows: " + "; ".join(
            f"{_label(e)} {e['since'] or 'start'} → {e['until'] or 'now'}" for e in inputs))
    maps = {e["region_map"] for e in inputs}
    if len(maps) > 1:
        notes.append("the reports were built with different region maps: "
                     + ", ".join(sorted(str(m) for m in maps)))
    by_log: dict[str, list[str]] = {}
    for e in inputs:
        by_log.setdefault(e["chain"]["log_id"] or e["log"], []).append(
            e["location"] or "all locations")
    for log_id, locations in sorted(by_log.items()):
        if len(locations) > 1:
            notes.append(f"log {log_id} is in {len(locations)} reports ("
                         f"{', '.join(locations)}): an event matching more than one of "
                         "those locations is counted once per report")
    return notes


# --- rendering --------------------------------------------------------------------------


def chains_line(report: CombinedReport) -> str:
    """One line on every input's chain."""
    statuses = [i["chain"]["status"] for i in report.inputs]
    if all(s == "verified" for s in statuses):
        return f"all {len(statuses)} chains verify"
    parts = [f"{statuses.count(s)} {s}" for s in _CHAIN_STATUSES if statuses.count(s)]
    return f"{', '.join(parts)} (of {len(statuses)})"


def _md_cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        return ", ".join(md_text(v) for v in value) or "—"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return md_text(value)


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
            *("| " + " | ".join(_md_cell(v) for v in row) + " |" for row in rows)]


def location_rows(report: CombinedReport) -> list[list[Any]]:
    """One row per input: location, log, window, chain, and its aggregate figures."""
    return [[i["location"] or "all", i["log"],
             f"{i['since'] or 'start'} → {i['until'] or 'now'}",
             i["chain"]["status"] + (f" ({i['chain']['kind']})"
                                     if i["chain"]["status"] == "broken" else ""),
             i["totals"]["events"], i["totals"]["blocked"],
             i["totals"]["movements"], i["totals"]["unaudited_periods"],
             i["totals"]["outcome_unknown"], i["totals"]["violations"]]
            for i in report.inputs]


LOCATION_HEADERS = ("location", "log", "window", "chain", "events", "blocked",
                    "data movements", "unaudited periods", "outcome unknown",
                    "violations")


def combined_markdown(report: CombinedReport) -> str:
    """GitHub-flavoured Markdown of the combined report."""
    t = report.totals
    locations = ", ".join(i["location"] or "all" for i in report.inputs)
    off, unknown = t["unaudited_periods"], t["outcome_unknown"]
    out = [
        "# Combined transfer-audit report", "",
        f"{len(report.inputs)} location report(s): {locations} · generated "
        f"{report.generated_at}", "",
        f"**Chains {'✅' if report.chains_ok else '❌'}** {chains_line(report)}", "",
        (f"**Unaudited periods ❌ {off}**: audit was switched off {off} time(s)" if off
         else "**Unaudited periods ✅ 0**"), "",
        (f"**Outcome unknown ⚠️ {unknown}**" if unknown else "**Outcome unknown ✅ 0**"), "",
        f"**Violations {'✅' if report.violation_total == 0 else '❌'} "
        f"{report.violation_total}** " + ", ".join(
            f"{k}: {v}" for k, v in report.violation_counts.items()), "",
    ]
    out += [f"> {note}" for note in report.notes] + [""]
    out += ["## Locations", "", *_md_table(LOCATION_HEADERS, location_rows(report)), ""]
    out += ["## Summary", "", *_md_table(
        ["events", "data movements", "bytes moved", "blocked attempts", "outcome unknown",
         "unaudited periods", "first seen", "last seen"],
        [[t["events"], t["movements"], human_bytes(t["movement_bytes"]),
          t["blocked"], unknown, off, t["first_seen"], t["last_seen"]]]), ""]
    out += ["## Operations", ""]
    out += _md_table(["operation", "outcome", "events", "bytes"],
                     [[o["operation"], o["outcome"], o["events"], human_bytes(o["bytes"])]
                      for o in report.operations]) if report.operations else ["None."]
    out += ["", "## Cross-border flows", ""]
    out += _md_table(["origin", "location", "destination", "data class", "mechanism",
                      "events", "bytes", "first seen", "last seen"],
                     [[f["origin"], f["location"], f["destination"], f["data_class"],
                       f["mechanism"] or "**none**", f["events"], human_bytes(f["bytes"]),
                       f["first_seen"], f["last_seen"]] for f in report.flows]) \
        if report.flows else ["No cross-border flow."]
    out += ["", "## Violations by kind", ""]
    out += _md_table(["kind", "events"], list(report.violation_counts.items())) \
        if report.violation_counts else ["None."]
    return "\n".join(out) + "\n"
