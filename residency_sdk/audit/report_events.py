# ruff: noqa: S608 - the SQL is assembled from module constants only; values are bound
"""The report's per-event lists: blocked attempts, erasures, objects held, intents without
an outcome, unaudited periods and de-identified transfers.

Blocked attempts, erasures, objects and de-identified transfers read the rows the
summarising pass kept (:func:`residency_sdk.audit.report_sql.summarise`); unaudited
periods and intents past a break are passes of their own, pre-filtered by a substring
test and made only when the summary shows there is something to find. Lists hold the
first ``limit`` rows; their counts are always complete.
"""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING, Any

from residency_sdk.audit.report_sql import (
    DECISIONS,
    HAS_AUDIT_OFF,
    HAS_INTENT,
    HAS_INTENT_ID,
    IN_SCOPE,
    IN_WINDOW,
    dicts,
    drop,
    extract,
    extracted,
    seconds,
    window_rows,
)

if TYPE_CHECKING:
    from residency_sdk.audit.verify import VerifyResult

# --- blocked attempts ----------------------------------------------------------------

# A blocked decision that a blocked data operation names in ``decision_id`` is the same
# attempt as that operation: the operation's row stands for both.
_ATTEMPTS = f"""FROM temp.blocked_ev b WHERE NOT (b.op IN {DECISIONS} AND EXISTS (
    SELECT 1 FROM temp.blocked_ev o WHERE o.decision_id = b.event_id))"""


def blocked_attempts(conn: sqlite3.Connection, q: dict[str, Any], limit: int
                     ) -> tuple[dict[str | None, int], list[dict[str, Any]]]:
    """One row per blocked attempt in the window and scope (the first ``limit``), each
    with who, what, when, why (the blocking regimes' reasons only) and what would unblock
    it; and the complete count per tenant (None: attempts naming no tenant)."""
    # temp.blocked_ev: kept by the summarising pass (report_sql.summarise).
    conn.execute("CREATE INDEX temp.blocked_decision ON blocked_ev (decision_id)")
    try:
        counts = dict(conn.execute(f"SELECT tenant_id, count(*) {_ATTEMPTS} GROUP BY 1"))
        rows = dicts(conn.execute(f"""
            SELECT seq, {seconds('time')} AS time, actor, purpose, tenant_id,
                   tenant_country AS origin, source_location AS location,
                   coalesce(destination_location, destination_country) AS destination,
                   processor, endpoint, data_class, op AS operation, object_key, reasons,
                   basis, error
            {_ATTEMPTS} ORDER BY seq LIMIT {int(limit)}"""))
    finally:
        conn.execute("DROP TABLE temp.blocked_ev")
    return counts, [_why(row) for row in rows]


def _why(row: dict[str, Any]) -> dict[str, Any]:
    """A blocked row's reasons: the blocking regimes' own (not those of regimes that
    allowed it), what would unblock it (per blocking regime, the agreements any one of
    which satisfies it: every entry is needed), and the rule sources the block rests
    on."""
    basis = json.loads(row.pop("basis") or "[]")
    blocking = [b for b in basis if not b.get("allowed")]
    reasons = [b["reason"] for b in blocking if b.get("reason")]
    if not reasons:  # an event written before the trail kept verdicts, or a refusal
        reasons = list(json.loads(row.get("reasons") or "[]"))  # that is not a rule's
    error = row.pop("error")
    if not reasons and error:
        reasons = [error.split(": ", 1)[-1]]
    row["reasons"] = reasons
    # Every blocking regime must be satisfied: one entry each, any one of its flags.
    row["unblock_with"] = [f"{b.get('regime')}: {' or '.join(b['unblock_with'])}"
                           for b in blocking if b.get("unblock_with")]
    row["sources"] = [{"regime": b.get("regime"), "source": b.get("source"),
                       "as_of": b.get("as_of")} for b in blocking if b.get("source")]
    return row


# --- erasure requests and receipts ---------------------------------------------------

def erasures(conn: sqlite3.Connection, q: dict[str, Any],
             limit: int) -> tuple[int, list[dict[str, Any]]]:
    """Erasure requests in the window and scope, one row per request: its tenant, the
    backends it cleared (or failed on), and its receipt (the SHA-256 recorded when the
    request completed), or none yet."""
    rows = dicts(conn.execute(f"""
        SELECT seq, {seconds('time')} AS time, outcome, actor, purpose, tenant_id,
               source_location AS location, provider, bucket, size, checksum, reasons, error
        FROM temp.erase_ev ORDER BY seq"""))
    conn.execute("DROP TABLE temp.erase_ev")
    requests: dict[str, dict[str, Any]] = {}
    for row in rows:
        purpose = row["purpose"] or ""
        kind, _, request_id = purpose.partition(":")
        entry = requests.setdefault(request_id or f"event {row['seq']}", {
            "request_id": request_id or None, "tenant_id": row["tenant_id"],
            "locations": [], "actors": [], "first_seen": row["time"],
            "backends": [], "keys": [], "receipt": None, "errors": [], "bytes": 0})
        entry["last_seen"] = row["time"]
        for key, value in (("locations", row["location"]), ("actors", row["actor"])):
            if value and value not in entry[key]:
                entry[key].append(value)
        detail = "; ".join(json.loads(row["reasons"] or "[]"))
        if kind == "erasure_receipt":
            entry["receipt"] = {"seq": row["seq"], "time": row["time"],
                                "digest": row["checksum"], "detail": detail}
        elif kind == "erasure_keys":  # the tenant's key material destroyed or scheduled
            entry["keys"].append({"seq": row["seq"], "time": row["time"],
                                  "outcome": row["outcome"], "location": row["location"],
                                  "detail": detail})
        else:
            entry["backends"].append({"seq": row["seq"], "time": row["time"],
                                      "outcome": row["outcome"], "provider": row["provider"],
                                      "bucket": row["bucket"], "location": row["location"],
                                      "bytes": row["size"] or 0, "detail": detail})
            entry["bytes"] += int(row["size"] or 0)
        if row["error"]:
            entry["errors"].append(row["error"])
    listed = list(requests.values())
    for entry in listed:
        entry["status"] = ("complete" if entry["receipt"] is not None
                           else "failed" if entry["errors"] else "in progress")
    return len(listed), listed[:limit]


# --- objects held --------------------------------------------------------------------

# An erasure's backend event clears the tenant's objects of that bucket written before it
# only once the backend was verified empty: the status the SDK writes at the end of the
# event's first reason. Never a match anywhere in the reasons: the later ones are the
# caller's own words (the request's reason and purpose), which may say anything.
_VERIFIED_EMPTY = "%, status verified"
# Retention deletions name the stored key (tenants/<id>/...), writes the tenant's.
_KEY = ("CASE WHEN op = 'retention_delete' AND object_key LIKE 'tenants/' || tenant_id "
        "|| '/%' THEN substr(object_key, length(tenant_id) + 10) ELSE object_key END")


def objects_held(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Per tenant and backend, the objects written and not deleted or erased by the end
    of the window (``until``; whatever ``since`` says: data written before the window is
    still held in it), with their bytes as last written. The SDK's own records of a
    tenant (under ``_residency/``: its record, lineage) are not the clinic's data and are
    not counted. Reads ``temp.object_ev``, kept by the summarising pass."""
    try:
        return dicts(conn.execute(f"""
            WITH ev AS (
                SELECT tenant_id, bucket, {_KEY} AS object_key, op, size, seq, location,
                       provider
                FROM temp.object_ev
                WHERE tenant_id IS NOT NULL AND bucket IS NOT NULL
                  AND (op = 'erase' OR (object_key IS NOT NULL
                                        AND object_key NOT LIKE '\\_residency/%' ESCAPE '\\'))
                  AND (op <> 'erase' OR (
                      purpose LIKE 'erasure:%'
                      AND json_extract(reasons, '$[0]') LIKE '{_VERIFIED_EMPTY}'))),
            latest AS (
                SELECT tenant_id, bucket, object_key, max(seq) AS seq, op, size, location,
                       provider
                FROM ev WHERE op <> 'erase' GROUP BY tenant_id, bucket, object_key),
            erased AS (SELECT tenant_id, bucket, max(seq) AS seq FROM ev
                       WHERE op = 'erase' GROUP BY tenant_id, bucket)
            SELECT l.tenant_id, l.location, l.provider, l.bucket, count(*) AS objects,
                   coalesce(sum(l.size), 0) AS bytes
            FROM latest l LEFT JOIN erased e
              ON e.tenant_id = l.tenant_id AND e.bucket = l.bucket
            WHERE l.op IN ('put', 'copy', 'transfer') AND (e.seq IS NULL OR l.seq > e.seq)
            GROUP BY l.tenant_id, l.location, l.provider, l.bucket
            ORDER BY l.tenant_id, l.location, l.provider, l.bucket"""))
    finally:
        drop(conn, "object_ev")


# --- intents without an outcome ------------------------------------------------------

_UNKNOWN_COLUMNS = (("outcome", "outcome"), ("actor", "actor"), ("tenant_id", "tenant_id"),
                    ("tenant_country", "tenant_country"),
                    ("source_location", "source_location"), ("operation", "op"),
                    ("object_key", "object_key"), ("event_id", "event_id"))


def _listed_unknown(conn: sqlite3.Connection, q: dict[str, Any], unknown: str,
                    limit: int) -> tuple[int, list[dict[str, Any]]]:
    count = conn.execute(f"SELECT count(*) {unknown}", q).fetchone()[0]
    rows = dicts(conn.execute(
        f"SELECT seq, {seconds('time')} AS time, actor, tenant_id, op AS operation, "
        f"object_key, event_id {unknown} ORDER BY seq LIMIT {int(limit)}", q))
    return int(count), rows


def unknown_of_verifier(conn: sqlite3.Connection, q: dict[str, Any], chain: VerifyResult,
                        limit: int) -> tuple[int, list[dict[str, Any]]]:
    """The verifier's intents without an outcome (its walk saw every event, so no pass
    is needed here), kept to the window and scope and read by position."""
    seqs = [(u[0],) for u in chain.outcome_unknown if 0 < u[0] <= q["upto"]]
    if not seqs:
        return 0, []
    conn.execute("DROP TABLE IF EXISTS temp.unanswered")
    conn.execute("CREATE TEMP TABLE unanswered (seq INTEGER PRIMARY KEY)")
    conn.executemany("INSERT OR IGNORE INTO temp.unanswered VALUES (?)", seqs)
    try:
        # CROSS JOIN keeps the few positions as the outer loop: one lookup each.
        return _listed_unknown(conn, q, f"""FROM (
            SELECT e.seq, {extract('time')} AS time, {extracted(_UNKNOWN_COLUMNS)}
            FROM temp.unanswered u CROSS JOIN audit_events e ON e.seq = u.seq)
            WHERE outcome = 'intent' AND {IN_WINDOW} AND {IN_SCOPE}""", limit)
    finally:
        conn.execute("DROP TABLE temp.unanswered")


def outcome_unknown(conn: sqlite3.Connection, q: dict[str, Any],
                    limit: int) -> tuple[int, list[dict[str, Any]]]:
    """Intents in the window (and scope) that no event of the log names in its
    ``intent_id``: the operation started and its outcome was never recorded. A pass of
    its own, for when the verifier's walk stopped at a break before the end."""
    conn.execute("DROP TABLE IF EXISTS temp.intents")
    conn.execute("DROP TABLE IF EXISTS temp.answered")
    conn.execute(f"""CREATE TEMP TABLE intents AS SELECT * FROM
                     {window_rows(extracted(_UNKNOWN_COLUMNS), "AND outcome = 'intent'",
                                  prefilter=f"AND {HAS_INTENT}")}""", q)
    # An outcome is appended after its intent: only later positions can answer one.
    conn.execute(f"""
        CREATE TEMP TABLE answered AS SELECT DISTINCT {extract('intent_id')} AS id
        FROM audit_events WHERE seq > (SELECT coalesce(min(seq), 0) FROM temp.intents)
          AND seq <= :upto AND {HAS_INTENT_ID}""", q)
    conn.execute("CREATE INDEX temp.answered_id ON answered (id)")
    try:
        return _listed_unknown(conn, q, "FROM temp.intents i WHERE NOT EXISTS "
                               "(SELECT 1 FROM temp.answered a WHERE a.id = i.event_id)",
                               limit)
    finally:
        conn.execute("DROP TABLE temp.intents")
        conn.execute("DROP TABLE temp.answered")


# --- unaudited periods and de-identified transfers -----------------------------------


def unaudited(conn: sqlite3.Connection, q: dict[str, Any],
              limit: int) -> list[dict[str, Any]]:
    """Every ``audit_off`` event of the snapshot, whatever the window or scope."""
    cols = extracted((name, name) for name in (
        "operation", "actor", "purpose", "tenant_id", "source_location", "reasons", "error"))
    rows = dicts(conn.execute(f"""
        SELECT seq, {seconds('time')} AS time, actor, purpose, tenant_id,
               source_location AS location, reasons, error
        FROM (SELECT seq, {extract('time')} AS time, {cols} FROM audit_events
              WHERE seq > 0 AND seq <= :upto AND {HAS_AUDIT_OFF})
        WHERE operation = 'audit_off' ORDER BY seq LIMIT {int(limit)}""", q))
    for row in rows:
        row["reasons"] = json.loads(row["reasons"]) if row["reasons"] else []
    return rows


def anonymised_transfers(conn: sqlite3.Connection,
                         limit: int) -> tuple[int, list[dict[str, Any]]]:
    """Completed transfers of ``anonymised`` data, each with the summary of its
    de-identification evidence (``deid``; None for a transfer recorded before the SDK
    verified anonymised data, which an auditor should look at). Reads ``temp.deid_ev``,
    kept by the summarising pass."""
    try:
        count = conn.execute("SELECT count(*) FROM temp.deid_ev").fetchone()[0]
        listed = dicts(conn.execute(
            f"""SELECT seq, {seconds('time')} AS time, actor, purpose, tenant_id,
                       tenant_country AS origin, source_location AS location,
                       coalesce(destination_location, destination_country) AS destination,
                       data_class, object_key, size, deid
                FROM temp.deid_ev ORDER BY seq LIMIT {int(limit)}"""))
    finally:
        conn.execute("DROP TABLE temp.deid_ev")
    return int(count), listed
