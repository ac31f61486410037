# ruff: noqa: S608 - the SQL is assembled from module constants only; values are bound
"""The transfer-audit report: what crossed which border, what was blocked, what is wrong.

Aggregation is SQL (SQLite, over the stored canonical JSON), never a Python loop over
events: the log is opened read-only in one snapshot; one pass groups the window's events
by every field but time, size, key and checksum into a small in-memory summary; each
section is a ``GROUP BY`` over that summary. Violations, outcome-unknown intents and
unaudited periods are listed per event: only when the summary shows any can exist is a
second pass made over the suspect events. Chain verification runs alongside the first pass
and its status heads the report.

Any log can be reported on: a SQLite file is read in place; any other store (a
``postgresql://`` URL) is read in one snapshot and its events streamed into a private
temporary SQLite file, over which the same queries run.

Violations the report finds, whatever the code that wrote the log believed:

- ``cross_border_without_mechanism``: an allowed cross-border event with no mechanism;
- ``phi_on_backend_without_baa``: ``phi`` handled on a backend whose provider has no BAA
  in the region map (or a backend the map does not know);
- ``placement_without_mechanism``: a placement allowed across a border with no mechanism,
  or data written to a location after the tenant's placement there was blocked (the
  placement needed a mechanism the tenant lacked).

Event schema v2: an ``intent`` event (written before a data operation) is never counted
as an operation, a movement or a blocked attempt; an intent no event names in its
``intent_id`` is listed as "outcome unknown". Every ``audit_off`` event of the log is
listed under "Unaudited periods", whatever the window or location asked for.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from residency_sdk.audit.chain import HMAC_KEY_ENV, LogInfo
from residency_sdk.audit.verify import VerifyResult, unknown_note, verify_log
from residency_sdk.errors import AuditFormatError, AuditUnavailable
from residency_sdk.regions import FAILOVER_SUFFIX

if TYPE_CHECKING:
    from residency_sdk.audit.store import ChainSnapshot
    from residency_sdk.regionmap import RegionMap

REPORT_SCHEMA = "residency.audit.report/v2"
"""v2: ``location``, ``chain.status``, ``outcome_unknown``, ``unaudited_periods``; intents
are no longer counted as events of their operation."""
MAX_LISTED_VIOLATIONS = 1000
MAX_LISTED = 1000
"""Event-level rows listed per section (outcome unknown, unaudited periods, rows outside
the chain); the counts are always complete."""
_CHUNK = 100_000  # events grouped per pass of the summary (see _summarise_window)
_COPY_BATCH = 5_000  # rows per insert when a non-SQLite log is copied for the report

# JSON field -> column of the temporary table (``op`` is short: it is in most queries).
_COLUMNS = {"operation": "op", "outcome": "outcome", "actor": "actor",
            "tenant_id": "tenant_id", "tenant_country": "tenant_country",
            "data_class": "data_class", "source_location": "source_location",
            "destination_location": "destination_location",
            "destination_country": "destination_country", "is_transfer": "is_transfer",
            "provider": "provider", "bucket": "bucket", "size": "size",
            "mechanism": "mechanism", "reasons": "reasons", "processor": "processor"}
# The canonical form writes every time as YYYY-MM-DDTHH:MM:SS.ffffffZ: string order is
# time order, so windows and first/last seen compare the stored strings directly.
_OK = "('allowed', 'ok')"
_WRITES = "('put', 'copy', 'transfer')"
_STORAGE_OPS = "('placement', 'put', 'get', 'head', 'list', 'delete', 'copy', 'transfer', 'erase')"
_IN_WINDOW = "coalesce((:lo IS NULL OR time >= :lo) AND (:hi IS NULL OR time < :hi), 0)"
# An event belongs to a location when it happened there or its tenant lives there.
_IN_LOCATION = ("(:loc IS NULL OR coalesce(source_location, '') = :loc OR "
                "coalesce(tenant_country, '') IN (SELECT country FROM temp.loc_countries))")
# Substrings of the canonical JSON (compact, and a JSON string value cannot contain an
# unescaped quote) that every matching event contains: a cheap pre-filter, confirmed by
# parsing, so per-event passes parse only the few events they are about.
_HAS_INTENT = "instr(event, '\"outcome\":\"intent\"') > 0"
_HAS_INTENT_ID = "instr(event, '\"intent_id\":\"') > 0"
_HAS_AUDIT_OFF = "instr(event, '\"operation\":\"audit_off\"') > 0"
_HAS_ANONYMISED = "instr(event, '\"data_class\":\"anonymised\"') > 0"


def _extract(name: str) -> str:
    # ->> (SQLite >= 3.38) is markedly faster than json_extract on large logs.
    if sqlite3.sqlite_version_info >= (3, 38):
        return f"event ->> '$.{name}'"
    return f"json_extract(event, '$.{name}')"


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
    """The transfer-audit report of one log over one time window (and one location)."""

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
    blocked: list[dict[str, Any]]
    violations: list[dict[str, Any]]
    violation_counts: dict[str, int]
    tenants: list[dict[str, Any]]
    location: str | None = None
    """The residency location the events were filtered to (None: every event)."""
    outcome_unknown: list[dict[str, Any]] = field(default_factory=list)
    """Intents in the window that no event completes (the first :data:`MAX_LISTED`;
    ``totals["outcome_unknown"]`` counts them all)."""
    unaudited_periods: list[dict[str, Any]] = field(default_factory=list)
    """Every ``audit_off`` event of the log, whatever the window or location (the first
    :data:`MAX_LISTED`; ``totals["unaudited_periods"]`` counts them all)."""
    anonymised_transfers: list[dict[str, Any]] = field(default_factory=list)
    """Transfers of ``anonymised`` data in the window, each with the summary of its
    de-identification evidence (``deid``: profile, edition, options, attribute counts,
    SHA-256 of input and output; None when none was recorded: a transfer made before the
    SDK verified anonymised data) (the first :data:`MAX_LISTED`;
    ``totals["anonymised_transfers"]`` counts them all)."""
    unscoped_agreements: list[dict[str, Any]] = field(default_factory=list)
    """Per tenant and agreement label, the decisions in the window that rested on an
    unscoped agreement (a bare mechanism flag): each a contract to scope."""
    notes: list[str] = field(default_factory=list)
    stated_endpoints: list[dict[str, str]] = field(default_factory=list)
    """Endpoints the region map places by its own word (``endpoint_country`` and
    ``endpoint_source``) rather than by a provider's in-region form: an auditor's to check."""

    @property
    def violation_total(self) -> int:
        """How many violating events the window holds (every kind)."""
        return sum(self.violation_counts.values())

    @property
    def ok(self) -> bool:
        """True when the chain verifies (a keyed log: with its key) and there is no
        violation."""
        return self.chain_state.ok and self.violation_total == 0

    def _chain_dict(self) -> dict[str, Any]:
        chain = {**self.chain.to_dict(), **self.chain_state.to_dict()}
        # The verifier lists the whole log's unanswered intents (tenants, object keys, of
        # every location and time): the report's own section is the window's and the
        # location's, and nothing of another location may ride along.
        chain.pop("outcome_unknown", None)
        return chain

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (``schema`` ``residency.audit.report/v2``)."""
        return {
            "schema": REPORT_SCHEMA, "log": self.log_path, "generated_at": self.generated_at,
            "since": self.since, "until": self.until, "location": self.location,
            "region_map": self.map_name, "ok": self.ok,
            "chain": self._chain_dict(),
            "totals": self.totals, "operations": self.operations, "flows": self.flows,
            "blocked": self.blocked, "violation_counts": self.violation_counts,
            "violations": self.violations, "tenants": self.tenants,
            "outcome_unknown": self.outcome_unknown,
            "unaudited_periods": self.unaudited_periods,
            "anonymised_transfers": self.anonymised_transfers,
            "unscoped_agreements": self.unscoped_agreements, "notes": self.notes,
            "stated_endpoints": self.stated_endpoints,
        }


def parse_time(value: str | datetime | date | None, *, name: str) -> str | None:
    """``value`` as the report's normalised UTC time string; naive values are UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise AuditFormatError(
                f"invalid {name} time {value!r}: use ISO 8601, e.g. 2026-11-01 or "
                "2026-11-01T12:00:00Z") from None
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _Read:
    """What one read of the log produced."""

    name: str
    chain: VerifyResult
    upto: int
    counts: dict[str, int]
    sections: dict[str, Any]


def build_report(log_path: str | Path, *, since: str | datetime | date | None = None,
                 until: str | datetime | date | None = None,
                 region_map: RegionMap | None = None, hmac_key: bytes | str | None = None,
                 use_env_key: bool = True, location: str | None = None) -> AuditReport:
    """Verify the log and aggregate its events in ``[since, until)`` into a report.

    ``log_path`` is a SQLite audit file or a ``postgresql://`` URL. ``region_map``
    (default: the packaged map) says which backends hold a BAA and, with ``location``,
    which tenants live in that residency location: the report then counts only the
    events that happened there (``source_location``) or whose tenant lives there.
    """
    lo, hi = parse_time(since, name="--since"), parse_time(until, name="--until")
    if lo and hi and lo >= hi:
        raise AuditFormatError(f"--since {lo} is not before --until {hi}: swap them")
    if region_map is None:
        from residency_sdk.regionmap import load_region_map

        region_map = load_region_map(None)
    countries = _location_countries(region_map, location) if location is not None else []
    query = {"lo": lo, "hi": hi, "loc": location}
    backends = _backends(region_map)

    read = _read(log_path, query, countries, backends,
                 lambda: verify_log(log_path, hmac_key=hmac_key, use_env_key=use_env_key))
    chain = read.chain
    state = chain_state(chain)
    # The verifier's note on unanswered intents covers the whole log (and stops at a
    # break); the report's own section and count are the window's and the location's.
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
    past_review = _rules_past_review(region_map)
    notes.extend(f"rule past review: {item}" for item in past_review)
    notes.extend(f"tenant {row['tenant_id']}: {row['decisions']} decision(s) rested on the "
                 f"unscoped agreement {row['agreement']} (every destination, no counterparty, "
                 "no expiry): scope it" for row in read.sections["unscoped_agreements"])
    return AuditReport(
        log_path=read.name, generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        since=lo, until=hi, map_name=region_map.name, chain=chain, chain_state=state,
        location=location, notes=notes,
        stated_endpoints=[{"path": e.path, "endpoint": e.endpoint, "country": e.country,
                           "source": e.source} for e in region_map.stated_endpoints],
        **read.sections)


def _rules_past_review(region_map: RegionMap) -> list[str]:
    """The map's transfer-rule facts whose review date has passed (the decisions the
    report shows rest on them)."""
    from residency_sdk.rules import load_transfer_rules

    rules = load_transfer_rules(region_map.rules_file, region_map.groups)
    return rules.facts_past_review(datetime.now(UTC).date())


def _location_countries(region_map: RegionMap, location: str) -> list[str]:
    """The countries whose tenants the map routes to ``location``."""
    if location not in region_map.locations:
        raise AuditFormatError(
            f"unknown location {location!r} in region map {region_map.name!r}: use one of "
            f"{', '.join(sorted(region_map.locations))} (or --map for another map)")
    return sorted(c for c, route in region_map.routes.items() if route.location == location)


def _read(log: str | Path, query: dict[str, Any], countries: list[str],
          backends: list[tuple[str, str, str, int]],
          verify: Callable[[], VerifyResult]) -> _Read:
    """Read one snapshot of the log and run every query over it.

    A SQLite log is queried in place, on the snapshot's own read-only connection. Any
    other store (PostgreSQL) is streamed into a private temporary SQLite file first: the
    report's queries are SQLite's, and a server need not know them.
    """
    from residency_sdk.audit.log import open_store
    from residency_sdk.audit.sqlite_store import translate

    store = open_store(log)
    name = store.name  # a URL without its password
    with ExitStack() as stack:
        stack.callback(store.close)
        snapshot = stack.enter_context(store.read())
        LogInfo.from_meta(snapshot.meta(), name)  # refuse what is not a log before any SQL
        conn = getattr(snapshot, "connection", None)
        pool = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="audit-report"))
        folder = None
        try:
            if isinstance(conn, sqlite3.Connection):
                conn.execute("PRAGMA temp_store = MEMORY")
                upto = conn.execute(
                    "SELECT coalesce(max(seq), 0) FROM audit_events").fetchone()[0]
                q = {**query, "upto": upto}
                _prepare(conn, countries, backends)
                # The summarising pass runs in SQLite's C code, which releases the GIL:
                # let it overlap with the Python-side hash walk of verification, which
                # starts after the report's snapshot, so it covers every event counted.
                summarised = pool.submit(_summarise_window, conn, q)
                try:
                    chain = verify()
                finally:
                    counts = summarised.result()
            else:
                verifying = pool.submit(verify)
                # 0o700, removed on exit: audit events are personal data, even in a copy.
                folder = stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="residency-report-"))
                conn = sqlite3.connect(Path(folder) / "events.db", isolation_level=None,
                                       check_same_thread=False)
                stack.callback(conn.close)
                q = {**query, "upto": _copy_rows(conn, snapshot)}
                _prepare(conn, countries, backends)
                counts = _summarise_window(conn, q)
                chain = verifying.result()
            sections = _sections(conn, q, counts, chain)
        except sqlite3.Error as exc:
            if folder is None:
                raise translate(exc, name, "report on") from None
            raise AuditUnavailable(
                f"cannot build the report of {name}: the temporary copy of its events in "
                f"{folder} failed ({exc}); free space there or point TMPDIR elsewhere"
            ) from None
    return _Read(name, chain, int(q["upto"]), counts, sections)


def _copy_rows(conn: sqlite3.Connection, snapshot: ChainSnapshot) -> int:
    """Copy the snapshot's chain rows (``seq >= 1``) into ``audit_events``; the last seq."""
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("CREATE TABLE audit_events (seq INTEGER PRIMARY KEY, event TEXT NOT NULL)")
    conn.execute("BEGIN")
    last = 0
    batch: list[tuple[int, str]] = []
    for row in snapshot.rows(1):
        batch.append((row[0], row[1]))
        if len(batch) >= _COPY_BATCH:
            conn.executemany("INSERT INTO audit_events VALUES (?, ?)", batch)
            last = batch[-1][0]
            batch = []
    if batch:
        conn.executemany("INSERT INTO audit_events VALUES (?, ?)", batch)
        last = batch[-1][0]
    conn.execute("COMMIT")
    return last


def _prepare(conn: sqlite3.Connection, countries: Iterable[str],
             backends: list[tuple[str, str, str, int]]) -> None:
    """The small lookup tables the queries join: the location's countries, the backends."""
    conn.execute("DROP TABLE IF EXISTS temp.loc_countries")
    conn.execute("CREATE TEMP TABLE loc_countries (country TEXT PRIMARY KEY)")
    conn.executemany("INSERT OR IGNORE INTO temp.loc_countries VALUES (?)",
                     [(c,) for c in countries])
    conn.execute("DROP TABLE IF EXISTS temp.backends")
    conn.execute("CREATE TEMP TABLE backends (provider TEXT, bucket TEXT, location TEXT, "
                 "baa INTEGER, PRIMARY KEY (provider, bucket))")
    conn.executemany("INSERT OR IGNORE INTO temp.backends VALUES (?, ?, ?, ?)", backends)


def _backends(region_map: RegionMap) -> list[tuple[str, str, str, int]]:
    rows: list[tuple[str, str, str, int]] = []
    for loc_id, location in region_map.locations.items():
        for target in location.backends.values():
            # The in-country failover bucket shares its primary's provider and BAA.
            for bucket in (target.bucket, target.bucket + FAILOVER_SUFFIX):
                rows.append((target.provider, bucket, loc_id, int(target.baa)))
    return rows


def _dicts(cur: sqlite3.Cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _split(value: str | None) -> list[str]:
    return sorted(set(value.split(","))) if value else []


def _window_rows(columns: str, where: str = "", *, prefilter: str = "") -> str:
    """The window's events with their fields extracted (a subquery over the stored JSON),
    in the asked location."""
    return f"""(SELECT * FROM (
            SELECT seq, {_extract('time')} AS time, {columns} FROM audit_events
            WHERE seq > 0 AND seq <= :upto {prefilter}) e
        WHERE {_IN_WINDOW} AND {_IN_LOCATION} {where})"""


def _summarise_window(conn: sqlite3.Connection, q: dict[str, Any]) -> dict[str, int]:
    """The one pass over every event: group events that differ only in time, size, key
    and checksum. Every section is then a query over this summary, which is as small as
    the variety of the events (hundreds of rows for a million events).

    Returns the counts only the whole log can give: ``unaudited_periods`` (``audit_off``
    events anywhere in the log) and ``intents`` (intent events in the window and
    location, which the summary then drops: an intent is not an operation)."""
    # One multi-path json_extract parses each event once and yields a single grouping key
    # (a JSON array), far cheaper to sort than fifteen separate columns. Grouping runs per
    # range of positions: sorting many small runs beats one sort of a million rows.
    # With a window, events outside it are skipped before they are parsed, except
    # audit_off ones (a cheap substring test): no window may hide that audit was off.
    # Without one (the common, large case) the plain query is measurably faster.
    paths = ", ".join(f"'$.{name}'" for name in _COLUMNS)
    time = _extract("time")
    if q["lo"] is None and q["hi"] is None:
        in_window, where = "1", ""
    else:
        in_window = _IN_WINDOW.replace("time", f"({time})")
        where = f"WHERE w OR {_HAS_AUDIT_OFF}"
    conn.execute("DROP TABLE IF EXISTS temp.grouped")
    conn.execute("CREATE TEMP TABLE grouped (k TEXT, w INTEGER, events INTEGER, "
                 "bytes INTEGER, first_seen TEXT, last_seen TEXT)")
    for start in range(0, q["upto"], _CHUNK):
        conn.execute(f"""
            INSERT INTO temp.grouped
            SELECT k, w, count(*), coalesce(sum(size), 0), min(time), max(time)
            FROM (SELECT json_extract(event, {paths}) AS k, {_extract('size')} AS size,
                         {time} AS time, {in_window} AS w, event
                  FROM audit_events WHERE seq > :start AND seq <= :end) e
            {where}
            GROUP BY k, w""", {**q, "start": start, "end": min(start + _CHUNK, q["upto"])})
    decoded = ", ".join(f"json_extract(k, '$[{i}]') AS {col}"
                        for i, col in enumerate(_COLUMNS.values()))
    conn.execute("DROP TABLE IF EXISTS temp.summary")
    conn.execute(f"""
        CREATE TEMP TABLE summary AS SELECT {decoded}, w, events, bytes, first_seen, last_seen
        FROM (SELECT k, w, sum(events) AS events, sum(bytes) AS bytes,
                     min(first_seen) AS first_seen, max(last_seen) AS last_seen
              FROM temp.grouped GROUP BY k, w)""")
    conn.execute("DROP TABLE temp.grouped")
    unaudited = conn.execute(
        "SELECT coalesce(sum(events), 0) FROM summary WHERE op = 'audit_off'").fetchone()[0]
    conn.execute(f"DELETE FROM summary WHERE NOT (w AND {_IN_LOCATION})", q)
    intents = conn.execute(
        "SELECT coalesce(sum(events), 0) FROM summary WHERE outcome = 'intent'").fetchone()[0]
    conn.execute("DELETE FROM summary WHERE outcome = 'intent'")
    return {"unaudited_periods": int(unaudited), "intents": int(intents),
            "outcome_unknown": 0}


_UNKNOWN_COLUMNS = (("outcome", "outcome"), ("actor", "actor"), ("tenant_id", "tenant_id"),
                    ("tenant_country", "tenant_country"),
                    ("source_location", "source_location"), ("operation", "op"),
                    ("object_key", "object_key"), ("event_id", "event_id"))


def _listed_unknown(conn: sqlite3.Connection, q: dict[str, Any],
                    unknown: str) -> tuple[int, list[dict[str, Any]]]:
    count = conn.execute(f"SELECT count(*) {unknown}", q).fetchone()[0]
    rows = _dicts(conn.execute(
        f"SELECT seq, time, actor, tenant_id, op AS operation, object_key, event_id "
        f"{unknown} ORDER BY seq LIMIT {MAX_LISTED}", q))
    return int(count), rows


def _unknown_of_verifier(conn: sqlite3.Connection, q: dict[str, Any],
                         chain: VerifyResult) -> tuple[int, list[dict[str, Any]]]:
    """The verifier's intents without an outcome (its walk saw every event, so no pass
    is needed here), kept to the window and location and read by position."""
    seqs = [(u[0],) for u in chain.outcome_unknown if 0 < u[0] <= q["upto"]]
    if not seqs:
        return 0, []
    conn.execute("DROP TABLE IF EXISTS temp.unanswered")
    conn.execute("CREATE TEMP TABLE unanswered (seq INTEGER PRIMARY KEY)")
    conn.executemany("INSERT OR IGNORE INTO temp.unanswered VALUES (?)", seqs)
    cols = ", ".join(f"{_extract(name)} AS {col}" for name, col in _UNKNOWN_COLUMNS)
    try:
        # CROSS JOIN keeps the few positions as the outer loop: one lookup each.
        return _listed_unknown(conn, q, f"""FROM (
            SELECT e.seq, {_extract('time')} AS time, {cols}
            FROM temp.unanswered u CROSS JOIN audit_events e ON e.seq = u.seq)
            WHERE outcome = 'intent' AND {_IN_WINDOW} AND {_IN_LOCATION}""")
    finally:
        conn.execute("DROP TABLE temp.unanswered")


def _outcome_unknown(conn: sqlite3.Connection,
                     q: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    """Intents in the window (and location) that no event of the log names in its
    ``intent_id``: the operation started and its outcome was never recorded. A pass of
    its own, for when the verifier's walk stopped at a break before the end."""
    cols = ", ".join(f"{_extract(name)} AS {col}" for name, col in _UNKNOWN_COLUMNS)
    conn.execute("DROP TABLE IF EXISTS temp.intents")
    conn.execute("DROP TABLE IF EXISTS temp.answered")
    conn.execute(f"""CREATE TEMP TABLE intents AS SELECT * FROM
                     {_window_rows(cols, "AND outcome = 'intent'",
                                   prefilter=f"AND {_HAS_INTENT}")}""", q)
    # An outcome is appended after its intent: only later positions can answer one.
    conn.execute(f"""
        CREATE TEMP TABLE answered AS SELECT DISTINCT {_extract('intent_id')} AS id
        FROM audit_events WHERE seq > (SELECT coalesce(min(seq), 0) FROM temp.intents)
          AND seq <= :upto AND {_HAS_INTENT_ID}""", q)
    conn.execute("CREATE INDEX temp.answered_id ON answered (id)")
    try:
        return _listed_unknown(conn, q, "FROM temp.intents i WHERE NOT EXISTS "
                               "(SELECT 1 FROM temp.answered a WHERE a.id = i.event_id)")
    finally:
        conn.execute("DROP TABLE temp.intents")
        conn.execute("DROP TABLE temp.answered")


def _unaudited(conn: sqlite3.Connection, q: dict[str, Any]) -> list[dict[str, Any]]:
    """Every ``audit_off`` event of the snapshot, whatever the window or location."""
    cols = ", ".join(f"{_extract(name)} AS {name}" for name in (
        "operation", "actor", "purpose", "tenant_id", "source_location", "reasons", "error"))
    rows = _dicts(conn.execute(f"""
        SELECT seq, time, actor, purpose, tenant_id, source_location AS location, reasons,
               error
        FROM (SELECT seq, {_extract('time')} AS time, {cols} FROM audit_events
              WHERE seq > 0 AND seq <= :upto AND {_HAS_AUDIT_OFF})
        WHERE operation = 'audit_off' ORDER BY seq LIMIT {MAX_LISTED}""", q))
    for row in rows:
        row["reasons"] = json.loads(row["reasons"]) if row["reasons"] else []
    return rows


_DEID_COLUMNS = (("operation", "op"), ("outcome", "outcome"), ("actor", "actor"),
                 ("purpose", "purpose"), ("tenant_id", "tenant_id"),
                 ("tenant_country", "tenant_country"), ("data_class", "data_class"),
                 ("source_location", "source_location"),
                 ("destination_location", "destination_location"),
                 ("destination_country", "destination_country"),
                 ("object_key", "object_key"), ("size", "size"), ("deid", "deid"))
_DEID_TRANSFER = f"op = 'transfer' AND outcome IN {_OK} AND data_class = 'anonymised'"


def _anonymised_transfers(conn: sqlite3.Connection,
                          q: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    """Completed transfers of ``anonymised`` data, each with the summary of its
    de-identification evidence (``deid``; None for a transfer recorded before the SDK
    verified anonymised data, which an auditor should look at). Counted from the summary;
    the events are listed by a pass (pre-filtered by a substring test) made only when the
    summary shows any: a log without them pays nothing."""
    count = conn.execute(
        f"SELECT coalesce(sum(events), 0) FROM summary WHERE {_DEID_TRANSFER}").fetchone()[0]
    if not count:
        return 0, []
    cols = ", ".join(f"{_extract(name)} AS {col}" for name, col in _DEID_COLUMNS)
    rows = _window_rows(cols, f"AND {_DEID_TRANSFER}", prefilter=f"AND {_HAS_ANONYMISED}")
    listed = _dicts(conn.execute(
        f"""SELECT seq, time, actor, purpose, tenant_id, tenant_country AS origin,
                   source_location AS location,
                   coalesce(destination_location, destination_country) AS destination,
                   data_class, object_key, size, deid
            FROM {rows} ORDER BY seq LIMIT {MAX_LISTED}""", q))
    return int(count), listed


def _sections(conn: sqlite3.Connection, q: dict[str, Any], counts: dict[str, int],
              chain: VerifyResult) -> dict[str, Any]:
    """Every section of the report, from the summary (and, when the summary says some
    exist, a per-event pass for violations, outcome-unknown intents, unaudited periods)."""
    sections = _aggregate(conn, q)
    unknown: list[dict[str, Any]] = []
    if counts["intents"]:
        # The verifier walked every event and kept the unanswered intents: use them,
        # unless its walk stopped at a break (then this report finds them itself).
        counts["outcome_unknown"], unknown = (
            _unknown_of_verifier(conn, q, chain) if chain.broken is None
            else _outcome_unknown(conn, q))
    unaudited = _unaudited(conn, q) if counts["unaudited_periods"] else []
    deid_count, deid_rows = _anonymised_transfers(conn, q)
    unscoped = _unscoped_agreements(conn, q)
    sections["totals"].update(intents=counts["intents"],
                              outcome_unknown=counts["outcome_unknown"],
                              unaudited_periods=counts["unaudited_periods"],
                              anonymised_transfers=deid_count)
    return {**sections, "outcome_unknown": unknown, "unaudited_periods": unaudited,
            "anonymised_transfers": deid_rows, "unscoped_agreements": unscoped}


def _unscoped_agreements(conn: sqlite3.Connection,
                         q: dict[str, Any]) -> list[dict[str, Any]]:
    """Per tenant and agreement, how many allowed decisions rested on an unscoped
    agreement (a bare mechanism flag: every destination, no counterparty, no expiry)."""
    cols = ", ".join(f"{_extract(name)} AS {col}" for name, col in (
        ("tenant_id", "tenant_id"), ("tenant_country", "tenant_country"),
        ("source_location", "source_location"), ("agreements", "agreements")))
    rows = _window_rows(cols, prefilter="AND event LIKE '%[unscoped]%'")
    counts: dict[tuple[str, str], int] = {}
    for tenant, agreements in conn.execute(f"SELECT tenant_id, agreements FROM {rows}", q):
        for label in json.loads(agreements or "[]"):
            if label.endswith("[unscoped]"):
                key = (tenant or "(no tenant)", label)
                counts[key] = counts.get(key, 0) + 1
    return [{"tenant_id": t, "agreement": a, "decisions": n}
            for (t, a), n in sorted(counts.items())]


# Conditions on one event (or one summary row) for each kind of violation.
_NO_MECHANISM = f"is_transfer = 1 AND outcome IN {_OK} AND coalesce(mechanism, '') = ''"
_PHI_OFF_BAA = (f"data_class = 'phi' AND provider IS NOT NULL AND outcome IN {_OK} "
                f"AND op IN {_STORAGE_OPS} AND NOT EXISTS (SELECT 1 FROM temp.backends b "
                "WHERE b.provider = {t}.provider AND b.bucket = {t}.bucket AND b.baa = 1)")
# Where an event puts data: a transfer's destination, else the location the tenant store
# is bound to (the storage facade's source_location).
_LOC = "coalesce(destination_location, source_location)"

_VIOLATIONS = f"""
    CREATE TEMP TABLE violations AS
    SELECT 'cross_border_without_mechanism' AS kind, seq, time, tenant_id, actor, op,
           data_class, coalesce(destination_location, destination_country) AS destination,
           provider, bucket, 'allowed cross-border ' || op || ' from ' ||
           coalesce(source_location, '?') || ' to ' ||
           coalesce(destination_location, destination_country, '?') ||
           ' with no transfer mechanism' AS detail
    FROM ev WHERE {_NO_MECHANISM} AND op <> 'placement'
    UNION ALL
    SELECT 'phi_on_backend_without_baa', ev.seq, ev.time, ev.tenant_id, ev.actor, ev.op,
           ev.data_class, {_LOC}, ev.provider, ev.bucket,
           'phi ' || ev.op || ' on ' || ev.provider || ' ' || coalesce(ev.bucket, '?') ||
           coalesce(': provider has no BAA for location ' || (
               SELECT b.location FROM temp.backends b
               WHERE b.provider = ev.provider AND b.bucket = ev.bucket),
               ': backend not in the region map (BAA unknown)')
    FROM ev WHERE {_PHI_OFF_BAA.format(t="ev")}
    UNION ALL
    SELECT 'placement_without_mechanism', seq, time, tenant_id, actor, op, data_class,
           coalesce(destination_location, destination_country), provider, bucket,
           'placement across a border (' || coalesce(tenant_country, '?') || ' -> ' ||
           coalesce(destination_location, destination_country, '?') ||
           ') allowed with no transfer mechanism'
    FROM ev WHERE op = 'placement' AND {_NO_MECHANISM}
    UNION ALL
    SELECT 'placement_without_mechanism', w.seq, w.time, w.tenant_id, w.actor, w.op,
           w.data_class, w.loc, w.provider, w.bucket,
           'data written to ' || w.loc || ' after the placement there was blocked: ' ||
           coalesce((SELECT group_concat(value, '; ') FROM json_each(pl.reasons)), '')
    FROM (SELECT *, max(CASE WHEN op = 'placement' THEN seq END) OVER (
                    PARTITION BY tenant_id, loc ORDER BY seq ROWS UNBOUNDED PRECEDING
                ) AS last_placement
          FROM (SELECT *, {_LOC} AS loc FROM ev WHERE tenant_id IS NOT NULL
                AND (op = 'placement' OR (op IN {_WRITES} AND outcome IN {_OK})))
          WHERE (tenant_id, loc) IN (SELECT tenant_id, {_LOC} FROM ev
                                     WHERE op = 'placement' AND outcome = 'blocked')) w
    JOIN ev pl ON pl.seq = w.last_placement
    WHERE w.op <> 'placement' AND pl.outcome = 'blocked'"""

# Tenants that wrote to a location where a placement of theirs was blocked: only their
# events need the per-event, time-ordered check.
_SUSPECT_TENANTS = f"""
    SELECT DISTINCT w.tenant_id FROM summary w JOIN summary p
      ON p.tenant_id = w.tenant_id
     AND coalesce(p.destination_location, p.source_location) =
         coalesce(w.destination_location, w.source_location)
    WHERE p.op = 'placement' AND p.outcome = 'blocked'
      AND w.op IN {_WRITES} AND w.outcome IN {_OK}"""


def _violations(conn: sqlite3.Connection,
                q: dict[str, Any]) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Per-event violations. They should never happen: the summary says whether any
    can exist, and only then is a second pass made, over the suspect events alone."""
    suspects = [r[0] for r in conn.execute(_SUSPECT_TENANTS)]
    flagged = conn.execute(
        f"SELECT count(*) FROM summary WHERE {_NO_MECHANISM} OR "
        f"{_PHI_OFF_BAA.format(t='summary')}").fetchone()[0]
    conn.execute("DROP TABLE IF EXISTS temp.violations")
    conn.execute("DROP TABLE IF EXISTS temp.ev")
    if not flagged and not suspects:
        return {}, []
    cols = ", ".join(f"{_extract(name)} AS {col}" for name, col in _COLUMNS.items())
    conn.execute("CREATE TEMP TABLE suspects (tenant_id TEXT PRIMARY KEY)")
    conn.executemany("INSERT INTO temp.suspects VALUES (?)", [(t,) for t in suspects])
    where = (f"AND coalesce(outcome, '') <> 'intent' AND (({_NO_MECHANISM}) OR "
             f"({_PHI_OFF_BAA.format(t='e')}) OR "
             "tenant_id IN (SELECT tenant_id FROM temp.suspects))")
    conn.execute(f"CREATE TEMP TABLE ev AS SELECT * FROM {_window_rows(cols, where)}", q)
    conn.execute(_VIOLATIONS)
    conn.execute("DROP TABLE temp.suspects")
    counts = dict(conn.execute("SELECT kind, count(*) FROM violations GROUP BY kind").fetchall())
    listed = _dicts(conn.execute(
        f"SELECT * FROM violations ORDER BY seq, kind LIMIT {MAX_LISTED_VIOLATIONS}"))
    return counts, listed


def _aggregate(conn: sqlite3.Connection, q: dict[str, Any]) -> dict[str, Any]:
    counts, violations = _violations(conn, q)

    by_kind = _dicts(conn.execute(f"""
        SELECT op AS operation, outcome, sum(events) AS events, sum(bytes) AS bytes,
               min(first_seen) AS first_seen, max(last_seen) AS last_seen,
               coalesce(sum(CASE WHEN is_transfer = 1 AND outcome IN {_OK} THEN events END),
                        0) AS cross_border,
               coalesce(sum(CASE WHEN is_transfer = 1 AND outcome IN {_OK} THEN bytes END),
                        0) AS cross_border_bytes
        FROM summary GROUP BY op, outcome ORDER BY op, outcome"""))
    flows = _dicts(conn.execute(f"""
        SELECT coalesce(tenant_country, '?') AS origin,
               coalesce(source_location, '?') AS location,
               CASE WHEN processor IS NOT NULL
                    THEN coalesce(destination_country, '?') || ' (processor ' || processor || ')'
                    ELSE coalesce(destination_location, destination_country, '?')
               END AS destination,
               coalesce(data_class, '?') AS data_class, mechanism,
               sum(events) AS events, sum(bytes) AS bytes,
               min(first_seen) AS first_seen, max(last_seen) AS last_seen,
               group_concat(DISTINCT op) AS operations
        FROM summary WHERE is_transfer = 1 AND outcome IN {_OK}
        GROUP BY 1, 2, 3, 4, 5 ORDER BY bytes DESC, events DESC, 1, 2, 3, 4"""))
    blocked = _dicts(conn.execute("""
        SELECT coalesce(actor, '(unknown)') AS actor, tenant_id, tenant_country AS origin,
               source_location AS location,
               coalesce(destination_location, destination_country) AS destination,
               data_class, op AS operation, reasons, sum(events) AS events,
               min(first_seen) AS first_seen, max(last_seen) AS last_seen
        FROM summary WHERE outcome = 'blocked'
        GROUP BY 1, 2, 3, 4, 5, 6, 7, 8 ORDER BY events DESC, 1, 2, 5"""))
    tenants = _dicts(conn.execute(f"""
        SELECT tenant_id, max(tenant_country) AS country, sum(events) AS events,
               coalesce(sum(CASE WHEN outcome = 'blocked' THEN events END), 0) AS blocked,
               coalesce(sum(CASE WHEN op IN {_WRITES} AND outcome IN {_OK}
                            THEN bytes END), 0) AS bytes_written,
               group_concat(DISTINCT CASE
                   WHEN op IN {_STORAGE_OPS} AND outcome IN {_OK} THEN {_LOC}
                   WHEN op = 'transfer_check' THEN source_location END) AS held_in,
               group_concat(DISTINCT CASE WHEN is_transfer = 1 AND outcome IN {_OK}
                   AND op <> 'placement'
                   THEN coalesce(destination_location, destination_country) END) AS went_to
        FROM summary WHERE tenant_id IS NOT NULL GROUP BY tenant_id ORDER BY tenant_id"""))
    for row in blocked:
        row["reasons"] = json.loads(row["reasons"]) if row["reasons"] else []
    for row in flows:
        row["operations"] = _split(row["operations"])
    for row in tenants:
        row["held_in"], row["went_to"] = _split(row["held_in"]), _split(row["went_to"])
    for kind in ("cross_border_without_mechanism", "phi_on_backend_without_baa",
                 "placement_without_mechanism"):
        counts.setdefault(kind, 0)
    # The totals add up the few per-operation groups; no further pass over the events.
    totals = {
        "events": sum(r["events"] for r in by_kind),
        "first_seen": min((r["first_seen"] for r in by_kind), default=None),
        "last_seen": max((r["last_seen"] for r in by_kind), default=None),
        "tenants": len(tenants),
        "blocked": sum(r["events"] for r in by_kind if r["outcome"] == "blocked"),
        "cross_border_allowed": sum(r.pop("cross_border") for r in by_kind),
        "cross_border_bytes": sum(r.pop("cross_border_bytes") for r in by_kind),
        "violations": sum(counts.values()),
    }
    operations = [{k: r[k] for k in ("operation", "outcome", "events", "bytes")}
                  for r in by_kind]
    return {"totals": totals, "operations": operations, "flows": flows, "blocked": blocked,
            "violations": violations, "violation_counts": counts, "tenants": tenants}
