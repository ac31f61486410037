# ruff: noqa: S608 - the SQL is assembled from module constants only; values are bound
"""The transfer-audit report: what crossed which border, what was blocked, what is wrong.

Aggregation is SQL (SQLite, over the stored canonical JSON), never a Python loop over
events: the log is opened read-only in one snapshot; one pass groups the window's events
by every field but time, size, key and checksum into a small in-memory summary; each
section is a ``GROUP BY`` over that summary. Violations are listed per event: only when
the summary shows any can exist does a second pass read the suspect events. Chain
verification runs alongside the first pass and its status heads the report.

Violations the report finds, whatever the code that wrote the log believed:

- ``cross_border_without_mechanism``: an allowed cross-border event with no mechanism;
- ``phi_on_backend_without_baa``: ``phi`` handled on a backend whose provider has no BAA
  in the region map (or a backend the map does not know);
- ``placement_without_mechanism``: a placement allowed across a border with no mechanism,
  or data written to a location after the tenant's placement there was blocked (the
  placement needed a mechanism the tenant lacked).
"""

from __future__ import annotations

import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from residency_sdk.audit.log import connect, read_info
from residency_sdk.audit.verify import VerifyResult, verify_log
from residency_sdk.errors import AuditFormatError
from residency_sdk.regions import FAILOVER_SUFFIX

if TYPE_CHECKING:
    from residency_sdk.regionmap import RegionMap

REPORT_SCHEMA = "residency.audit.report/v1"
MAX_LISTED_VIOLATIONS = 1000
_CHUNK = 100_000  # events grouped per pass of the summary (see _summarise_window)

# JSON field -> column of the temporary table (``op`` is short: it is in most queries).
_COLUMNS = {"operation": "op", "outcome": "outcome", "actor": "actor",
            "tenant_id": "tenant_id", "tenant_country": "tenant_country",
            "data_class": "data_class", "source_location": "source_location",
            "destination_location": "destination_location",
            "destination_country": "destination_country", "is_transfer": "is_transfer",
            "provider": "provider", "bucket": "bucket", "size": "size",
            "mechanism": "mechanism", "reasons": "reasons"}
# The canonical form writes every time as YYYY-MM-DDTHH:MM:SS.ffffffZ: string order is
# time order, so windows and first/last seen compare the stored strings directly.
_OK = "('allowed', 'ok')"
_WRITES = "('put', 'copy', 'transfer')"
_STORAGE_OPS = "('placement', 'put', 'get', 'head', 'list', 'delete', 'copy', 'transfer', 'erase')"


def _extract(name: str) -> str:
    # ->> (SQLite >= 3.38) is markedly faster than json_extract on large logs.
    if sqlite3.sqlite_version_info >= (3, 38):
        return f"event ->> '$.{name}'"
    return f"json_extract(event, '$.{name}')"


@dataclass
class AuditReport:
    """The transfer-audit report of one log over one time window."""

    log_path: str
    generated_at: str
    since: str | None
    until: str | None
    map_name: str | None
    chain: VerifyResult
    totals: dict[str, Any]
    operations: list[dict[str, Any]]
    flows: list[dict[str, Any]]
    blocked: list[dict[str, Any]]
    violations: list[dict[str, Any]]
    violation_counts: dict[str, int]
    tenants: list[dict[str, Any]]
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
        """True when the chain verifies and there is no violation."""
        return self.chain.ok and self.violation_total == 0

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (``schema`` ``residency.audit.report/v1``)."""
        return {
            "schema": REPORT_SCHEMA, "log": self.log_path, "generated_at": self.generated_at,
            "since": self.since, "until": self.until, "region_map": self.map_name,
            "ok": self.ok, "chain": self.chain.to_dict(), "totals": self.totals,
            "operations": self.operations, "flows": self.flows, "blocked": self.blocked,
            "violation_counts": self.violation_counts, "violations": self.violations,
            "tenants": self.tenants, "notes": self.notes,
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


def build_report(log_path: str | Path, *, since: str | datetime | date | None = None,
                 until: str | datetime | date | None = None,
                 region_map: RegionMap | None = None, hmac_key: bytes | str | None = None,
                 use_env_key: bool = True) -> AuditReport:
    """Verify the log and aggregate its events in ``[since, until)`` into a report.

    ``region_map`` (default: the packaged map) says which backends hold a BAA.
    """
    lo, hi = parse_time(since, name="--since"), parse_time(until, name="--until")
    if lo and hi and lo >= hi:
        raise AuditFormatError(f"--since {lo} is not before --until {hi}: swap them")
    if region_map is None:
        from residency_sdk.regionmap import load_region_map

        region_map = load_region_map(None)
    backends = _backends(region_map)
    conn = connect(log_path, readonly=True)
    try:
        read_info(conn, log_path)
        # The report's snapshot is taken first and bounded by its last event; verification
        # starts after, so it covers at least every event the report counts.
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("BEGIN")
        upto = conn.execute("SELECT coalesce(max(seq), 0) FROM audit_events").fetchone()[0]
        # The summarising pass runs in SQLite's C code, which releases the GIL: let it
        # overlap with the Python-side hash walk of verification.
        with ThreadPoolExecutor(1, thread_name_prefix="audit-report") as pool:
            extracted = pool.submit(_summarise_window, conn, lo, hi, upto)
            try:
                chain = verify_log(log_path, hmac_key=hmac_key, use_env_key=use_env_key)
            finally:
                extracted.result()
        sections = _aggregate(conn, lo, hi, upto, backends)
        conn.execute("COMMIT")
    finally:
        conn.close()
    notes = list(chain.notes)
    if not chain.ok:
        notes.append("the chain is broken: the figures below come from a log that was "
                     "altered and cannot be trusted")
    elif chain.head_seq < upto:
        notes.append(f"the log shrank from {upto} to {chain.head_seq} events while the "
                     "report was built: events were removed")
    return AuditReport(
        log_path=str(log_path), generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        since=lo, until=hi, map_name=region_map.name, chain=chain, notes=notes,
        stated_endpoints=[{"path": e.path, "endpoint": e.endpoint, "country": e.country,
                           "source": e.source} for e in region_map.stated_endpoints],
        **sections)


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


def _window_rows(columns: str, where: str = "") -> str:
    """The window's events with their fields extracted (a subquery over the stored JSON)."""
    return f"""(SELECT * FROM (
            SELECT seq, {_extract('time')} AS time, {columns} FROM audit_events
            WHERE seq <= :upto) e
        WHERE (:lo IS NULL OR time >= :lo) AND (:hi IS NULL OR time < :hi) {where})"""


def _summarise_window(conn: sqlite3.Connection, lo: str | None, hi: str | None,
                      upto: int) -> None:
    """The one pass over every event: group events that differ only in time, size, key
    and checksum. Every section is then a query over this summary, which is as small as
    the variety of the events (hundreds of rows for a million events)."""
    # One multi-path json_extract parses each event once and yields a single grouping key
    # (a JSON array), far cheaper to sort than fifteen separate columns. Grouping runs per
    # range of positions: sorting many small runs beats one sort of a million rows.
    paths = ", ".join(f"'$.{name}'" for name in _COLUMNS)
    conn.execute("DROP TABLE IF EXISTS temp.grouped")
    conn.execute("CREATE TEMP TABLE grouped (k TEXT, events INTEGER, bytes INTEGER, "
                 "first_seen TEXT, last_seen TEXT)")
    for start in range(0, upto, _CHUNK):
        conn.execute(f"""
            INSERT INTO temp.grouped
            SELECT k, count(*), coalesce(sum(size), 0), min(time), max(time)
            FROM (SELECT json_extract(event, {paths}) AS k, {_extract('size')} AS size,
                         {_extract('time')} AS time
                  FROM audit_events WHERE seq > :start AND seq <= :end) e
            WHERE (:lo IS NULL OR time >= :lo) AND (:hi IS NULL OR time < :hi)
            GROUP BY k""", {"start": start, "end": min(start + _CHUNK, upto), "lo": lo,
                            "hi": hi})
    decoded = ", ".join(f"json_extract(k, '$[{i}]') AS {col}"
                        for i, col in enumerate(_COLUMNS.values()))
    conn.execute("DROP TABLE IF EXISTS temp.summary")
    conn.execute(f"""
        CREATE TEMP TABLE summary AS SELECT {decoded}, events, bytes, first_seen, last_seen
        FROM (SELECT k, sum(events) AS events, sum(bytes) AS bytes,
                     min(first_seen) AS first_seen, max(last_seen) AS last_seen
              FROM temp.grouped GROUP BY k)""")
    conn.execute("DROP TABLE temp.grouped")


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


def _violations(conn: sqlite3.Connection, lo: str | None, hi: str | None,
                upto: int) -> tuple[dict[str, int], list[dict[str, Any]]]:
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
    where = (f"AND (({_NO_MECHANISM}) OR ({_PHI_OFF_BAA.format(t='e')}) OR "
             "tenant_id IN (SELECT tenant_id FROM temp.suspects))")
    conn.execute(f"CREATE TEMP TABLE ev AS SELECT * FROM {_window_rows(cols, where)}",
                 {"upto": upto, "lo": lo, "hi": hi})
    conn.execute(_VIOLATIONS)
    conn.execute("DROP TABLE temp.suspects")
    counts = dict(conn.execute("SELECT kind, count(*) FROM violations GROUP BY kind").fetchall())
    listed = _dicts(conn.execute(
        f"SELECT * FROM violations ORDER BY seq, kind LIMIT {MAX_LISTED_VIOLATIONS}"))
    return counts, listed


def _aggregate(conn: sqlite3.Connection, lo: str | None, hi: str | None, upto: int,
               backends: list[tuple[str, str, str, int]]) -> dict[str, Any]:
    conn.execute("DROP TABLE IF EXISTS temp.backends")
    conn.execute("CREATE TEMP TABLE backends (provider TEXT, bucket TEXT, location TEXT, "
                 "baa INTEGER, PRIMARY KEY (provider, bucket))")
    conn.executemany("INSERT OR IGNORE INTO temp.backends VALUES (?, ?, ?, ?)", backends)
    counts, violations = _violations(conn, lo, hi, upto)

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
               coalesce(destination_location, destination_country, '?') AS destination,
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
