"""The transfer-audit report: what crossed which border, on what basis, what was blocked,
where each tenant's data is held, what was erased, and whether the trail can be trusted.

It is what a privacy officer signs and hands to an auditor, so every figure is counted
once and every row answers who, what, when, why and on what basis:

- **movements** (data that crossed a border: objects and bytes, per flow) and
  **decisions** (checks allowed and blocked) are separate counts;
- **blocked attempts** are one row each (a blocked decision and the blocked operation that
  names it in ``decision_id`` are one attempt), with the blocking reasons and what would
  unblock them;
- **held in** is where objects were written and not deleted or erased;
- every section also carries the rule facts (source, ``as_of``, review date) the
  decisions rested on, as recorded on the day.

Aggregation is SQL (see :mod:`residency_sdk.audit.report_sql`): one summarising pass,
sections as ``GROUP BY`` over its summary, per-event lists only where the summary shows
something to list. Chain verification runs alongside and its status heads the report.

Event schema: an ``intent`` event (written before a data operation) is never counted as an
operation, a movement or a blocked attempt; an intent no event completes is listed as
"outcome unknown". Every ``audit_off`` event of the log is listed under "Unaudited
periods", whatever the window, location or tenant asked for.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from residency_sdk._version import __version__
from residency_sdk.audit import report_events as per_event
from residency_sdk.audit import report_sections as sections
from residency_sdk.audit.chain import HMAC_KEY_ENV
from residency_sdk.audit.period import format_bound, parse_bound
from residency_sdk.audit.report_sql import Progress, backends_of, count_intents, read_log
from residency_sdk.audit.report_violations import violations
from residency_sdk.audit.verify import VerifyResult, unknown_note, verify_log
from residency_sdk.errors import AuditFormatError

if TYPE_CHECKING:
    from residency_sdk.audit.anchors import Anchor
    from residency_sdk.regionmap import RegionMap

REPORT_SCHEMA = "residency.audit.report/v3"
"""v3: movements and decisions counted apart, one row per blocked attempt, "held in" from
objects written and not erased, basis and sources on every row, erasures, retention
deletions, rules in force, anchors, tenant filter, times to the second. See
``docs/audit.md`` for every field."""
MAX_LISTED = 1000
"""Event-level rows listed per section by default (the counts are always complete)."""


@dataclass(frozen=True, slots=True)
class ChainState:
    """What the report says about the chain, in one place for every rendering.

    ``status`` is the verifier's: ``verified`` (every link, and every HMAC of a keyed
    log, checked), ``broken`` (``kind`` and ``message`` say where and how; rows stored
    outside the chain are a break) or ``unverified`` (a keyed log checked without its key:
    its HMACs, the only defence against a rewrite, were not checked). Only ``verified``
    is ``ok``.
    """

    status: str
    kind: str | None
    message: str
    outside_chain_rows: int = 0

    @property
    def ok(self) -> bool:
        """True only when the chain verified."""
        return self.status == "verified"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (merged into the report's ``chain`` section)."""
        return {"status": self.status, "ok": self.ok, "kind": self.kind,
                "message": self.message, "outside_chain_rows": self.outside_chain_rows}


def chain_state(chain: VerifyResult) -> ChainState:
    """The report's reading of a :class:`VerifyResult`."""
    outside = len(chain.outside_chain)
    if chain.broken is not None:
        return ChainState("broken", chain.broken.kind, chain.broken.message, outside)
    if chain.status == "unverified":
        return ChainState("unverified", "unverified", (
            f"the log is HMAC-keyed but was checked without its key: its {chain.events:,} "
            "events' SHA-256 links hold, but their HMACs (what stops a rewrite) were not "
            f"checked; set {HMAC_KEY_ENV} to verify"), outside)
    how = "HMAC-SHA-256 checked" if chain.hmac_checked else "SHA-256, not keyed"
    return ChainState(chain.status, None,
                      f"{chain.events:,} events, head {chain.head_hash[:16]}… ({how})", outside)


@dataclass
class AuditReport:
    """The transfer-audit report of one log over one window (and one location or
    tenant). :meth:`to_dict` is its versioned JSON form (:data:`REPORT_SCHEMA`)."""

    log_path: str
    generated_at: str
    since: str | None
    until: str | None
    map_name: str | None
    chain: VerifyResult
    chain_state: ChainState
    totals: dict[str, Any]
    operations: list[dict[str, Any]]
    flows: list[dict[str, Any]]
    """Movements by flow (see :func:`~residency_sdk.audit.report_sections.movements`)."""
    decisions: list[dict[str, Any]]
    blocked: list[dict[str, Any]]
    """One row per blocked attempt (the first ``limit``)."""
    violations: list[dict[str, Any]]
    violation_counts: dict[str, int]
    tenants: list[dict[str, Any]]
    location: str | None = None
    """The residency location the events were filtered to (None: every event)."""
    tenant: str | None = None
    """The tenant the events were filtered to (None: every tenant)."""
    outcome_unknown: list[dict[str, Any]] = field(default_factory=list)
    unaudited_periods: list[dict[str, Any]] = field(default_factory=list)
    """Every ``audit_off`` event of the log, whatever the window or scope."""
    anonymised_transfers: list[dict[str, Any]] = field(default_factory=list)
    unscoped_agreements: list[dict[str, Any]] = field(default_factory=list)
    erasures: list[dict[str, Any]] = field(default_factory=list)
    """Erasure requests, one row each, with the backends cleared and the receipt."""
    retention_deletions: list[dict[str, Any]] = field(default_factory=list)
    rules: list[dict[str, Any]] = field(default_factory=list)
    """Rules in force: every dated fact of the transfer rules and the map's processors,
    with how many decisions in the window rested on it and whether it is past review."""
    anchors: list[dict[str, Any]] = field(default_factory=list)
    """The anchors the chain was checked against (their references)."""
    notes: list[str] = field(default_factory=list)
    stated_endpoints: list[dict[str, str]] = field(default_factory=list)
    """Endpoints the region map places by its own word (``endpoint_country`` and
    ``endpoint_source``) rather than by a provider's in-region form: an auditor's to check."""
    limit: int = MAX_LISTED

    @property
    def violation_total(self) -> int:
        """How many violating events the window holds (every kind)."""
        return sum(self.violation_counts.values())

    @property
    def rules_past_review(self) -> list[dict[str, Any]]:
        """The rule facts whose review date has passed."""
        return [r for r in self.rules if r["past_review"]]

    @property
    def ok(self) -> bool:
        """True when the chain verifies (a keyed log: with its key) and there is no
        violation."""
        return self.chain_state.ok and self.violation_total == 0

    def _chain_dict(self) -> dict[str, Any]:
        chain = {**self.chain.to_dict(), **self.chain_state.to_dict()}
        # The verifier lists the whole log's unanswered intents (tenants, object keys, of
        # every location and time): the report's own section is the window's and scope's,
        # and nothing of another location may ride along.
        chain.pop("outcome_unknown", None)
        return chain

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (``schema`` :data:`REPORT_SCHEMA`)."""
        return {
            "schema": REPORT_SCHEMA, "generator": f"residency-sdk {__version__}",
            "log": self.log_path, "generated_at": self.generated_at,
            "since": self.since, "until": self.until, "location": self.location,
            "tenant": self.tenant, "region_map": self.map_name, "ok": self.ok,
            "listed_rows_limit": self.limit,
            "chain": self._chain_dict(), "anchors": self.anchors,
            "totals": self.totals, "operations": self.operations, "flows": self.flows,
            "decisions": self.decisions, "blocked": self.blocked,
            "violation_counts": self.violation_counts, "violations": self.violations,
            "tenants": self.tenants, "erasures": self.erasures,
            "retention_deletions": self.retention_deletions, "rules": self.rules,
            "outcome_unknown": self.outcome_unknown,
            "unaudited_periods": self.unaudited_periods,
            "anonymised_transfers": self.anonymised_transfers,
            "unscoped_agreements": self.unscoped_agreements, "notes": self.notes,
            "stated_endpoints": self.stated_endpoints,
        }


def parse_time(value: str | datetime | date | None, *, name: str,
               end: bool = False) -> str | None:
    """``value`` as the report's stored-time string (see
    :func:`~residency_sdk.audit.period.parse_bound` for the accepted forms)."""
    bound = parse_bound(value, name=name, end=end)
    return None if bound is None else format_bound(bound)


def build_report(log_path: str | Path, *, since: str | datetime | date | None = None,
                 until: str | datetime | date | None = None,
                 region_map: RegionMap | None = None, hmac_key: bytes | str | None = None,
                 use_env_key: bool = True, location: str | None = None,
                 tenant: str | None = None,
                 anchors: Sequence[Anchor | str] = (), limit: int = MAX_LISTED,
                 progress: Progress | None = None) -> AuditReport:
    """Verify the log and aggregate its events in ``[since, until)`` into a report.

    ``log_path`` is a SQLite audit file or a ``postgresql://`` URL. ``since``/``until``
    take dates, timestamps, months, quarters (``2026-Q3``), years and periods back from
    now (``30d``); a calendar period given as ``until`` is included whole. ``region_map``
    (default: the packaged map) says which backends hold a BAA, whose rules are in force
    and, with ``location``, which tenants live in that residency location: the report then
    counts only the events that happened there or whose tenant lives there. ``tenant``
    keeps one tenant's events. ``anchors`` are checked like ``audit verify --anchors``
    and named in the report. ``limit`` caps each event-level list (counts stay complete).
    ``progress(done, total)`` is called as the events are summarised.
    """
    lo = parse_time(since, name="--since")
    hi = parse_time(until, name="--until", end=True)
    if lo and hi and lo >= hi:
        raise AuditFormatError(f"--since {lo} is not before --until {hi}: swap them")
    if not isinstance(limit, int) or limit < 0:
        raise AuditFormatError(f"invalid row limit {limit!r}: use a whole number >= 0")
    if tenant is not None and (not isinstance(tenant, str) or not tenant.strip()):
        raise AuditFormatError(f"invalid tenant {tenant!r}: give a tenant id")
    if region_map is None:
        from residency_sdk.regionmap import load_region_map

        region_map = load_region_map(None)
    countries = _location_countries(region_map, location) if location is not None else []
    query = {"lo": lo, "hi": hi, "loc": location, "tenant": tenant}

    def build(conn: sqlite3.Connection, q: dict[str, Any], counts: dict[str, int],
              chain: VerifyResult, held: list[dict[str, Any]]) -> dict[str, Any]:
        return _sections(conn, q, counts, chain, held, limit)

    read = read_log(log_path, query, countries, backends_of(region_map),
                    lambda: verify_log(log_path, hmac_key=hmac_key, use_env_key=use_env_key,
                                       anchors=anchors),
                    build, per_event.objects_held, progress)
    chain = read.chain
    state = chain_state(chain)
    # The verifier's note on unanswered intents covers the whole log (and stops at a
    # break); the report's own section and count are the window's and the scope's.
    whole_log = unknown_note(chain.outcome_unknown)
    notes = [n for n in chain.notes if n != whole_log]
    if state.status == "broken":
        notes.append("the chain is broken: the figures below come from a log that was "
                     "altered and cannot be trusted")
    elif state.status == "unverified":
        notes.append("the chain is unverified (a keyed log read without its key): the "
                     "figures below cannot be trusted until it is verified with the key")
    elif chain.head_seq < read.upto:
        notes.append(f"the log shrank from {read.upto} to {chain.head_seq} events while the "
                     "report was built: events were removed")
    found = read.sections
    rules = _rules_in_force(region_map, found.pop("basis_used"))
    found["totals"]["rules_past_review"] = sum(r["past_review"] for r in rules)
    notes.extend(f"rule past review: {r['what']} (review by {r['review_by']}; source: "
                 f"{r['source']})" for r in rules if r["past_review"])
    notes.extend(f"tenant {row['tenant_id']}: {row['decisions']} decision(s) rested on the "
                 f"unscoped agreement {row['agreement']} (every destination, no counterparty, "
                 "no expiry): scope it" for row in found["unscoped_agreements"])
    return AuditReport(
        log_path=read.name, generated_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        since=_shown(lo), until=_shown(hi), map_name=region_map.name, chain=chain,
        chain_state=state, location=location, tenant=tenant, notes=notes, rules=rules,
        anchors=[{"anchor": str(a), "checkpoints_checked": chain.checkpoints_checked,
                  "anchored_seq": chain.anchored_seq} for a in anchors],
        stated_endpoints=[{"path": e.path, "endpoint": e.endpoint, "country": e.country,
                           "source": e.source} for e in region_map.stated_endpoints],
        limit=limit, **found)


def _shown(bound: str | None) -> str | None:
    """A stored-time bound shown to the second (bounds are whole seconds or dates)."""
    if bound is None:
        return None
    return bound[:19] + "Z" if bound.endswith(".000000Z") else bound


def _location_countries(region_map: RegionMap, location: str) -> list[str]:
    """The countries whose tenants the map routes to ``location``."""
    if location not in region_map.locations:
        raise AuditFormatError(
            f"unknown location {location!r} in region map {region_map.name!r}: use one of "
            f"{', '.join(sorted(region_map.locations))} (or --map for another map)")
    return sorted(c for c, route in region_map.routes.items() if route.location == location)


def _rules_in_force(region_map: RegionMap,
                    basis_used: dict[str, int]) -> list[dict[str, Any]]:
    """Every dated fact of the map's transfer rules and of its processors: source, as_of,
    review date, whether it is past review today, and how many decisions of the report's
    window rested on a fact of that source (as the trail recorded it)."""
    from residency_sdk.rules import load_transfer_rules

    today = datetime.now(UTC).date()
    rules = load_transfer_rules(region_map.rules_file, region_map.groups)
    rows = [{"what": f.what, "source": f.source, "as_of": f.as_of, "review_by": f.review_by,
             "past_review": f.past_review(today), "decisions": basis_used.get(f.source, 0)}
            for f in rules.facts()]
    for pid, processor in sorted(region_map.processors.items()):
        rows.append({"what": f"processor {pid} ({processor.name}, {processor.country})",
                     "source": processor.source, "as_of": processor.as_of,
                     "review_by": None, "past_review": False,
                     "decisions": basis_used.get(processor.source, 0)})
    return rows


def _sections(conn: sqlite3.Connection, q: dict[str, Any], counts: dict[str, int],
              chain: VerifyResult, held: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """Every section: aggregates from the summary, event-level lists from their passes."""
    if "intents" not in counts:
        counts["intents"] = count_intents(conn, q, chain)
    violation_counts, violation_rows = violations(conn, q, limit)
    blocked_counts, blocked_rows = per_event.blocked_attempts(conn, q, limit)
    erasure_count, erasure_rows = per_event.erasures(conn, q, limit)
    unknown: list[dict[str, Any]] = []
    if counts["intents"]:
        # The verifier walked every event and kept the unanswered intents: use them,
        # unless its walk stopped at a break (then this report finds them itself).
        counts["outcome_unknown"], unknown = (
            per_event.unknown_of_verifier(conn, q, chain, limit) if chain.broken is None
            else per_event.outcome_unknown(conn, q, limit))
    unaudited = per_event.unaudited(conn, q, limit) if counts["unaudited_periods"] else []
    deid_count, deid_rows = per_event.anonymised_transfers(conn, limit)
    operations = sections.operations(conn)
    flows = sections.movements(conn)
    decided = sections.decisions(conn)
    retention = sections.retention_deletions(conn)
    tenants = sections.tenants(conn, held, {t: n for t, n in blocked_counts.items() if t})
    totals = {
        "events": sum(r["events"] for r in operations),
        "first_seen": _first(conn, "min(first_seen)"),
        "last_seen": _first(conn, "max(last_seen)"),
        "tenants": len(tenants),
        "movements": sum(f["events"] for f in flows),
        "movement_bytes": sum(f["bytes"] for f in flows),
        "decisions_allowed": sum(d["decisions"] for d in decided
                                 if d["outcome"] == "allowed"),
        "decisions_blocked": sum(d["decisions"] for d in decided
                                 if d["outcome"] == "blocked"),
        "blocked": sum(blocked_counts.values()),
        "violations": sum(violation_counts.values()),
        "intents": counts["intents"], "outcome_unknown": counts["outcome_unknown"],
        "unaudited_periods": counts["unaudited_periods"],
        "anonymised_transfers": deid_count, "erasure_requests": erasure_count,
        "retention_deletions": sum(r["objects"] for r in retention if r["outcome"] == "ok"),
        "objects_held": sum(h["objects"] for h in held),
    }
    return {"totals": totals, "operations": operations, "flows": flows,
            "decisions": decided, "blocked": blocked_rows, "violations": violation_rows,
            "violation_counts": violation_counts, "tenants": tenants,
            "outcome_unknown": unknown, "unaudited_periods": unaudited,
            "anonymised_transfers": deid_rows,
            "unscoped_agreements": sections.unscoped_agreements(conn),
            "erasures": erasure_rows, "retention_deletions": retention,
            "basis_used": _basis_used(conn)}


def _first(conn: sqlite3.Connection, aggregate: str) -> str | None:
    value = conn.execute(f"SELECT {aggregate} FROM summary").fetchone()[0]  # noqa: S608
    return None if value is None else str(value)[:19] + "Z"


def _basis_used(conn: sqlite3.Connection) -> dict[str, int]:
    """Per rule source, how many allowed decisions in the summary rested on it."""
    used: dict[str, int] = {}
    for low, high, events in conn.execute(
            "SELECT basis_min, basis_max, sum(events) FROM summary WHERE outcome = 'allowed' "
            "AND basis_max IS NOT NULL AND basis_max <> '[]' GROUP BY 1, 2"):
        for source in {e["source"] for e in sections.recorded_basis(low, high)
                       if e["source"]}:
            used[source] = used.get(source, 0) + int(events)
    return used
