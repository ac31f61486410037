# ruff: noqa: S608 - the SQL is assembled from module constants only; values are bound
"""The transfer-audit report's reading of a log: one snapshot, one summarising pass.

The log's last position is fixed in one snapshot. A SQLite log is read in place (by
several read-only connections: the log is append-only); any other store (a
``postgresql://`` URL) is streamed into a private temporary SQLite file first. One pass,
parsing each event once, groups the events by every field but the per-event ones into a
small ``summary`` table (as small as the variety of the events), which the aggregate
sections (:mod:`residency_sdk.audit.report_sections`) query, and keeps the events listed
one by one (blocked attempts, erasures, objects, de-identified transfers) for
:mod:`residency_sdk.audit.report_events`. The rare lists (unaudited periods, intents past
a break) are passes of their own, pre-filtered by a substring test.

Every query binds the same parameters: ``lo``/``hi`` (the window, stored-time strings),
``loc`` (a residency location), ``tenant`` and ``upto`` (the snapshot's last position).
"""

from __future__ import annotations

import bisect
import os
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from residency_sdk.audit.chain import LogInfo
from residency_sdk.errors import AuditUnavailable
from residency_sdk.regions import FAILOVER_SUFFIX

if TYPE_CHECKING:
    from residency_sdk.audit.store import ChainSnapshot
    from residency_sdk.audit.verify import VerifyResult
    from residency_sdk.regionmap import RegionMap

CHUNK = 250_000
"""Events grouped per statement of the summarising pass (and per progress step)."""
_COPY_BATCH = 5_000  # rows per insert when a non-SQLite log is copied for the report

COLUMNS = {"operation": "op", "outcome": "outcome", "actor": "actor", "purpose": "purpose",
           "tenant_id": "tenant_id", "tenant_country": "tenant_country",
           "data_class": "data_class", "source_location": "source_location",
           "destination_location": "destination_location",
           "destination_country": "destination_country", "is_transfer": "is_transfer",
           "provider": "provider", "bucket": "bucket", "mechanism": "mechanism",
           "processor": "processor", "agreements": "agreements"}
"""JSON field -> column of the summary: what events are grouped by. Never a per-event
value (time, size, key, checksum, ids, reasons, error): the summary must stay small. The
recorded ``basis`` (long: its rule sources) follows from these fields on a given day, so
it is carried as ``min(basis)`` and ``max(basis)`` of each group rather than grouped by:
two values differ only when the rules changed within the window, and both are shown."""

OK = "('allowed', 'ok')"
WRITES = "('put', 'copy', 'transfer')"
DECISIONS = "('placement', 'transfer_check', 'egress_check')"
STORAGE_OPS = ("('placement', 'put', 'get', 'head', 'list', 'delete', 'copy', 'transfer', "
               "'erase')")
# The canonical form writes every time as YYYY-MM-DDTHH:MM:SS.ffffffZ: string order is
# time order, so windows and first/last seen compare the stored strings directly.
IN_WINDOW = "coalesce((:lo IS NULL OR time >= :lo) AND (:hi IS NULL OR time < :hi), 0)"
# An event belongs to a location when it happened there or its tenant lives there; to a
# tenant when it names it.
IN_SCOPE = ("(:loc IS NULL OR coalesce(source_location, '') = :loc OR "
            "coalesce(tenant_country, '') IN (SELECT country FROM temp.loc_countries)) "
            "AND (:tenant IS NULL OR tenant_id = :tenant)")
# The canonical JSON is compact and a JSON string value cannot hold an unescaped quote: a
# fixed substring is a cheap pre-filter (confirmed by parsing), never a false negative.
# The operation and the outcome come before the actor in every schema version, and
# '"actor":' cannot occur inside a string value (its quotes would be escaped): the text up
# to it is the event's opening fields, a short prefix to test instead of the whole event.
_OPENING = "substr(event, 1, instr(event, '\"actor\":'))"


def has(text: str) -> str:
    """SQL: the stored event contains ``text`` (a pre-filter)."""
    return f"instr(event, '{text}') > 0"


def opens_with(text: str) -> str:
    """SQL: the event's opening fields (schema, id, time, operation, outcome) contain
    ``text`` (a pre-filter on the operation or outcome)."""
    return f"instr({_OPENING}, '{text}') > 0"


HAS_INTENT = opens_with('"outcome":"intent"')
HAS_AUDIT_OFF = opens_with('"operation":"audit_off"')
HAS_INTENT_ID = has('"intent_id":"')


def extract(name: str) -> str:
    """SQL extracting the JSON field ``name`` of the stored event."""
    # ->> (SQLite >= 3.38) is markedly faster than json_extract on large logs.
    if sqlite3.sqlite_version_info >= (3, 38):
        return f"event ->> '$.{name}'"
    return f"json_extract(event, '$.{name}')"


def extracted(pairs: Iterable[tuple[str, str]]) -> str:
    """SQL columns ``field AS column`` for each pair."""
    return ", ".join(f"{extract(name)} AS {col}" for name, col in pairs)


def window_rows(columns: str, where: str = "", *, prefilter: str = "") -> str:
    """The window's events with their fields extracted (a subquery over the stored JSON),
    in the asked scope (location, tenant)."""
    return f"""(SELECT * FROM (
            SELECT seq, {extract('time')} AS time, {columns} FROM audit_events
            WHERE seq > 0 AND seq <= :upto {prefilter}) e
        WHERE {IN_WINDOW} AND {IN_SCOPE} {where})"""


def dicts(cur: sqlite3.Cursor) -> list[dict[str, Any]]:
    """The rows of ``cur`` as dicts keyed by column name."""
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def split(value: str | None) -> list[str]:
    """A ``group_concat`` as a sorted list of distinct values."""
    return sorted(set(value.split(","))) if value else []


def seconds(column: str) -> str:
    """SQL: a stored time shown to the second (``2026-11-01T08:00:00Z``)."""
    return f"(substr({column}, 1, 19) || 'Z')"


@dataclass
class Snapshot:
    """What one read of the log produced."""

    name: str
    chain: VerifyResult
    upto: int
    counts: dict[str, int]
    sections: dict[str, Any]


Progress = Callable[[int, int], None]
"""``progress(done, total)``: events summarised so far, of the snapshot's total."""
Sections = Callable[[sqlite3.Connection, dict[str, Any], dict[str, int], "VerifyResult",
                     list[dict[str, Any]]], dict[str, Any]]
"""Builds every section: (connection, query, counts, verification, objects held)."""
Held = Callable[[sqlite3.Connection], list[dict[str, Any]]]
"""Reduces the pass's ``object_ev`` to the objects held (run where the pass's files are
attached, possibly on a connection of its own)."""


def read_log(log: str | Path, query: dict[str, Any], countries: list[str],
             backends: list[tuple[str, str, str, int]], verify: Callable[[], VerifyResult],
             sections: Sections, held: Held, progress: Progress | None = None) -> Snapshot:
    """Read one snapshot of ``log`` and build every section over it.

    Verification runs alongside the summarising pass (SQLite's C code releases the GIL),
    starting after the report's snapshot is taken, so it covers every event counted.
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
        pool = stack.enter_context(ThreadPoolExecutor(2, thread_name_prefix="audit-report"))
        folder = None
        try:
            if isinstance(conn, sqlite3.Connection):
                upto = conn.execute(
                    "SELECT coalesce(max(seq), 0) FROM audit_events").fetchone()[0]
                file = _main_file(conn)
                verifying = pool.submit(verify)
            else:
                verifying = pool.submit(verify)
                # 0o700, removed on exit: audit events are personal data, even in a copy.
                folder = stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="residency-report-"))
                file = str(Path(folder) / "events.db")
                copy = sqlite3.connect(file, isolation_level=None)
                try:
                    upto = _copy_rows(copy, snapshot)
                finally:
                    copy.close()
            q = {**query, "upto": upto}

            def reader() -> sqlite3.Connection:
                # The log is append-only: any connection reads the same events up to
                # `upto`, so the work can be shared outside the snapshot's transaction.
                opened = sqlite3.connect(f"{Path(file).resolve().as_uri()}?mode=ro", uri=True,
                                         isolation_level=None, check_same_thread=False)
                # Temporary tables and sorts spill to files past the page cache: the
                # report's memory stays bounded whatever the size of the log.
                opened.execute("PRAGMA temp_store = FILE")
                prepare(opened, countries, backends)
                return opened

            # 0o700, removed on exit (after the connections that use it are closed): the
            # pass keeps audit events there, personal data.
            scratch = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="residency-report-")))
            report = reader()
            stack.callback(report.close)
            # Verification (its own snapshot, taken after this one: it covers every event
            # counted) runs alongside; the summarising pass shares the other cores.
            counts = summarise(report, q, progress, workers=[reader] * _WORKERS,
                               scratch=scratch)
            if any(scratch.glob("part*.db")):
                # The objects' reduction reads the workers' files on a connection of its
                # own, alongside the other sections (and verification, if still running).
                held_later = pool.submit(_apart, reader, scratch, held)
                chain = verifying.result()
                built = sections(report, q, counts, chain, held_later.result())
            else:
                chain = verifying.result()
                built = sections(report, q, counts, chain, held(report))
        except sqlite3.Error as exc:
            if folder is None:
                raise translate(exc, name, "report on") from None
            raise AuditUnavailable(
                f"cannot build the report of {name}: the temporary copy of its events in "
                f"{folder} failed ({exc}); free space there or point TMPDIR elsewhere"
            ) from None
    return Snapshot(name, chain, int(q["upto"]), counts, built)


_WORKERS = max(1, min(4, (os.cpu_count() or 1)))
"""Connections sharing the summarising pass (verification takes a thread of its own)."""


def _main_file(conn: sqlite3.Connection) -> str:
    """The file of ``conn``'s main database."""
    for _, db, file in conn.execute("PRAGMA database_list"):
        if db == "main" and file:
            return str(file)
    raise AuditUnavailable("the audit log has no file to read the report from")


def _copy_rows(conn: sqlite3.Connection, snapshot: ChainSnapshot) -> int:
    """Copy the snapshot's chain rows (``seq >= 1``) into ``audit_events``; the last seq."""
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA temp_store = FILE")
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


def prepare(conn: sqlite3.Connection, countries: Iterable[str],
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


def backends_of(region_map: RegionMap) -> list[tuple[str, str, str, int]]:
    """(provider, bucket, location, BAA) of every backend of the map, failover included."""
    rows: list[tuple[str, str, str, int]] = []
    for loc_id, location in region_map.locations.items():
        for target in location.backends.values():
            # The in-country failover bucket shares its primary's provider and BAA.
            for bucket in (target.bucket, target.bucket + FAILOVER_SUFFIX):
                rows.append((target.provider, bucket, loc_id, int(target.baa)))
    return rows


EXTRA = ("object_key", "event_id", "decision_id", "reasons", "error", "endpoint", "checksum",
         "deid")
"""Per-event fields the pass keeps (as the JSON array ``x``) for the few events listed one
by one: blocked attempts, erasures, objects written and deleted."""


def k_field(name: str) -> str:
    """SQL: field ``name`` (a key of :data:`COLUMNS`) of a pass row's grouping key."""
    return f"(k ->> '$[{list(COLUMNS).index(name)}]')"


def x_field(name: str) -> str:
    """SQL: per-event field ``name`` (of :data:`EXTRA`) of a pass row."""
    return f"(x ->> '$[{EXTRA.index(name)}]')"


# Pass rows that the per-event sections list (the only ones whose ``x`` is extracted).
_LISTED = ("(outcome = 'blocked' OR (outcome = 'ok' AND op IN ('put', 'copy', 'transfer', "
           "'delete', 'retention_delete', 'erase')) OR (op = 'erase' AND outcome <> 'intent'))")
# The pass rows' scope test (IN_SCOPE, reading the grouping key instead of columns).
_ROW_SCOPE = (IN_SCOPE.replace("source_location", k_field("source_location"))
              .replace("tenant_country", k_field("tenant_country"))
              .replace("tenant_id", k_field("tenant_id")))

# What the pass keeps of each chunk, besides the summary: the rows the per-event sections
# list (see residency_sdk.audit.report_events), each filled from the same parse.
_KEEP = {
    "blocked_ev": f"""SELECT seq, time, {', '.join(f'{k_field(c)} AS {COLUMNS[c]}' for c in
                                                    COLUMNS)},
                      {', '.join(f'{x_field(c)} AS {c}' for c in EXTRA)}, basis
                      FROM temp.chunk WHERE outcome = 'blocked' AND w AND {_ROW_SCOPE}""",
    "erase_ev": f"""SELECT seq, time, size, {', '.join(f'{k_field(c)} AS {COLUMNS[c]}'
                                                      for c in COLUMNS)},
                    {', '.join(f'{x_field(c)} AS {c}' for c in EXTRA)}
                    FROM temp.chunk WHERE op = 'erase' AND outcome <> 'intent' AND w
                    AND {_ROW_SCOPE}""",
    "deid_ev": f"""SELECT seq, time, size, {', '.join(f'{k_field(c)} AS {COLUMNS[c]}'
                                                     for c in COLUMNS)},
                   {x_field('object_key')} AS object_key, {x_field('deid')} AS deid
                   FROM temp.chunk WHERE op = 'transfer' AND outcome = 'ok' AND w
                   AND {k_field('data_class')} = 'anonymised' AND {_ROW_SCOPE}""",
    # Objects as at the end of the window: writes and deletions before it, whatever its
    # start (data written before the window is still held in it).
    "object_ev": f"""SELECT seq, size, op,
                     {k_field('tenant_id')} AS tenant_id, {k_field('bucket')} AS bucket,
                     {k_field('provider')} AS provider, {k_field('purpose')} AS purpose,
                     coalesce({k_field('destination_location')},
                              {k_field('source_location')}) AS location,
                     {x_field('object_key')} AS object_key, {x_field('reasons')} AS reasons
                     FROM temp.chunk WHERE outcome = 'ok'
                     AND op IN ('put', 'copy', 'transfer', 'delete', 'retention_delete',
                                'erase')
                     AND (:hi IS NULL OR time < :hi) AND {_ROW_SCOPE}""",
}


def summarise(conn: sqlite3.Connection, q: dict[str, Any],
              progress: Progress | None = None, *,
              workers: Sequence[Callable[[], sqlite3.Connection]] = (),
              scratch: Path | None = None) -> dict[str, int]:
    """The one pass over every event, parsing each once.

    It groups events that differ only in per-event values (:data:`COLUMNS` is the
    grouping) into ``temp.summary``, which every aggregate section queries and which is
    as small as the variety of the events; and it keeps, from the same parse, the events
    listed one by one (``temp.blocked_ev``, ``temp.erase_ev``, ``temp.object_ev``).
    Intents are recognised by their opening fields and never parsed (unless a window or
    scope asks which ones count): an intent is not an operation.

    ``workers`` open further read-only connections to the same log (its lookup tables
    prepared): the ranges of positions are then shared between them, each writing its
    part into a file in the private folder ``scratch`` that ``conn`` (outside any
    transaction) attaches. The
    log is append-only, so every connection reads the same events up to ``q["upto"]``.

    Returns the counts only the whole log can give: ``unaudited_periods`` (``audit_off``
    events anywhere in the log, whatever the window) and, when a window or scope
    filters, ``intents`` (intent events in the window and scope; else the caller takes
    them from the verifier, :func:`count_intents`)."""
    # Grouping runs per range of positions: sorting many small runs beats one sort of a
    # million rows, and the chunk table stays small.
    total = int(q["upto"])
    ranges = [(start, min(start + CHUNK, total)) for start in range(0, total, CHUNK)]
    for table in ("grouped", "chunk", "summary", *_KEEP):
        conn.execute(f"DROP TABLE IF EXISTS temp.{table}")
    lock = threading.Lock()
    done = [0]

    def tick(start: int, end: int) -> None:
        with lock:
            done[0] += end - start
            if progress is not None:
                progress(done[0], total)

    intents: int | None
    if len(workers) < 2 or len(ranges) < 2 or scratch is None:
        intents = _scan(conn, "temp", q, ranges, tick)
    else:
        intents = _scan_in_parallel(conn, q, ranges, tick, workers, scratch)
    decoded = ", ".join(f"json_extract(k, '$[{i}]') AS {col}"
                        for i, col in enumerate(COLUMNS.values()))
    conn.execute("DROP TABLE IF EXISTS temp.summary")
    conn.execute(f"""
        CREATE TEMP TABLE summary AS SELECT {decoded}, w, events, bytes, first_seen,
                                            last_seen, basis_min, basis_max
        FROM (SELECT k, w, sum(events) AS events, sum(bytes) AS bytes,
                     min(first_seen) AS first_seen, max(last_seen) AS last_seen,
                     min(basis_min) AS basis_min, max(basis_max) AS basis_max
              FROM temp.grouped GROUP BY k, w)""")
    drop(conn, "grouped")
    unaudited = conn.execute(
        "SELECT coalesce(sum(events), 0) FROM summary WHERE op = 'audit_off'").fetchone()[0]
    conn.execute(f"DELETE FROM summary WHERE NOT (w AND {IN_SCOPE})", q)
    counts = {"unaudited_periods": int(unaudited), "outcome_unknown": 0}
    if intents is not None:
        counts["intents"] = intents
    return counts


_GROUPED = ("(k TEXT, w INTEGER, events INTEGER, bytes INTEGER, first_seen TEXT, "
            "last_seen TEXT, basis_min TEXT, basis_max TEXT)")
_CHUNK_COLUMNS = "(seq, k, op, outcome, time, size, basis, x, w)"


def _scan(conn: sqlite3.Connection, db: str, q: dict[str, Any],
          ranges: Sequence[tuple[int, int]], tick: Callable[[int, int], None]) -> int | None:
    """Summarise ``ranges`` of positions into ``db``'s ``grouped`` and kept tables
    (``temp`` or an attached scratch file); the intents counted in the window and scope
    (None when nothing filters: the verifier's walk counts them then, see
    :func:`count_intents`)."""
    paths = ", ".join(f"'$.{name}'" for name in COLUMNS)
    extra = ", ".join(f"'$.{name}'" for name in EXTRA)
    time = extract("time")
    filtered = any(q[name] is not None for name in ("lo", "hi", "loc", "tenant"))
    in_window = "1" if q["lo"] is None and q["hi"] is None else IN_WINDOW
    conn.execute(f"CREATE TABLE {db}.grouped {_GROUPED}")
    conn.execute(f"CREATE TEMP TABLE chunk {_CHUNK_COLUMNS}")
    for table, select in _KEEP.items():  # empty, with the columns the sections read
        conn.execute(f"CREATE TABLE {db}.{table} AS SELECT * FROM ({select}) LIMIT 0",
                     {**q, "start": 0, "end": 0})
    conn.execute("DROP TABLE temp.chunk")
    intents = 0
    for start, end in ranges:
        bounds = {**q, "start": start, "end": end}
        # Every event but intents is parsed once (every field read from the same parse:
        # SQLite caches it for the row), and only a listed one keeps its per-event fields.
        conn.execute(f"""
            CREATE TEMP TABLE chunk AS SELECT seq, k, op, outcome, time, size, basis,
                CASE WHEN {_LISTED} THEN json_extract(event, {extra}) END AS x,
                {in_window} AS w FROM (
                SELECT seq, event, json_extract(event, {paths}) AS k,
                       {extract('operation')} AS op, {extract('outcome')} AS outcome,
                       {time} AS time, {extract('size')} AS size,
                       {extract('basis')} AS basis
                FROM audit_events
                WHERE seq > :start AND seq <= :end AND NOT {HAS_INTENT})""", bounds)
        conn.execute(f"""
            INSERT INTO {db}.grouped
            SELECT k, w, count(*), coalesce(sum(size), 0), min(time), max(time),
                   min(basis), max(basis)
            FROM temp.chunk WHERE w OR op = 'audit_off' GROUP BY k, w""")
        for table, select in _KEEP.items():
            conn.execute(f"INSERT INTO {db}.{table} {select}", bounds)
        conn.execute("DROP TABLE temp.chunk")
        if filtered:
            intents += _intents(conn, bounds)
        tick(start, end)
    return int(intents) if filtered else None


def count_intents(conn: sqlite3.Connection, q: dict[str, Any], chain: VerifyResult) -> int:
    """The intents up to ``q["upto"]`` when nothing filters: from the verifier's walk,
    which tested every event for one anyway, unless it stopped at a break (then by a
    pass over the events' opening fields)."""
    if chain.broken is None and chain.head_seq >= q["upto"]:
        return bisect.bisect_right(chain.intent_positions, q["upto"])
    return _intents(conn, {**q, "start": 0, "end": q["upto"]})


def _intents(conn: sqlite3.Connection, bounds: dict[str, Any]) -> int:
    """The intents among ``bounds``' positions that are in the window and scope: counted
    by their opening fields alone when nothing filters, else parsed."""
    if all(bounds[name] is None for name in ("lo", "hi", "loc", "tenant")):
        return int(conn.execute(
            f"SELECT count(*) FROM audit_events WHERE seq > :start AND seq <= :end "
            f"AND {HAS_INTENT}", bounds).fetchone()[0])
    return int(conn.execute(f"""
        SELECT count(*) FROM (
            SELECT {extract('time')} AS time, {extract('tenant_id')} AS tenant_id,
                   {extract('tenant_country')} AS tenant_country,
                   {extract('source_location')} AS source_location
            FROM audit_events WHERE seq > :start AND seq <= :end AND {HAS_INTENT})
        WHERE {IN_WINDOW} AND {IN_SCOPE}""", bounds).fetchone()[0])


def _scan_in_parallel(conn: sqlite3.Connection, q: dict[str, Any],
                      ranges: Sequence[tuple[int, int]], tick: Callable[[int, int], None],
                      workers: Sequence[Callable[[], sqlite3.Connection]],
                      scratch: Path) -> int | None:
    """:func:`_scan` on several connections at once (SQLite's C code releases the GIL),
    each into its own file in ``scratch``, which ``conn`` attaches: the large results
    are read through views (never copied), the small ones copied into temporary tables."""
    files = [str(scratch / f"part{i}.db") for i in range(len(workers))]

    def work(i: int) -> int | None:
        part = workers[i]()
        try:
            part.execute("ATTACH DATABASE ? AS scratch", (files[i],))
            part.execute("PRAGMA scratch.journal_mode = OFF")
            part.execute("PRAGMA scratch.synchronous = OFF")
            # Interleaved, so each worker gets early and late positions alike.
            return _scan(part, "scratch", q, ranges[i::len(workers)], tick)
        finally:
            part.close()

    with ThreadPoolExecutor(len(workers), thread_name_prefix="audit-report") as pool:
        parts = list(pool.map(work, range(len(workers))))
    attach_parts(conn, scratch, ("grouped", *_KEEP))
    return None if any(part is None for part in parts) else sum(p or 0 for p in parts)


def attach_parts(conn: sqlite3.Connection, scratch: Path,
                 tables: Sequence[str] = ("object_ev",)) -> None:
    """Make the parallel pass's ``tables`` (in ``scratch``) temporary tables or views of
    ``conn``, which must be outside a transaction."""
    files = sorted(scratch.glob("part*.db"))
    for i, file in enumerate(files):
        conn.execute(f"ATTACH DATABASE ? AS part{i}", (str(file),))
    for table in tables:
        union = " UNION ALL ".join(f"SELECT * FROM part{i}.{table}" for i in range(len(files)))
        kind = "VIEW" if table in _READ_ONCE else "TABLE"
        conn.execute(f"CREATE TEMP {kind} {table} AS {union}")


_READ_ONCE = ("grouped", "object_ev")
"""Results read once by one query: a view over the workers' files rather than a copy."""


def drop(conn: sqlite3.Connection, name: str) -> None:
    """Drop the temporary table or view ``name`` (the pass makes either, see
    :func:`_scan_in_parallel`)."""
    row = conn.execute("SELECT type FROM sqlite_temp_master WHERE name = ?", (name,)).fetchone()
    if row is not None:
        conn.execute(f"DROP {'VIEW' if row[0] == 'view' else 'TABLE'} temp.{name}")


def _apart(reader: Callable[[], sqlite3.Connection], scratch: Path,
           held: Held) -> list[dict[str, Any]]:
    """``held`` on a connection of its own over the parallel pass's files."""
    conn = reader()
    try:
        attach_parts(conn, scratch)
        return held(conn)
    finally:
        conn.close()
