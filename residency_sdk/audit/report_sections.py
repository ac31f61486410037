# ruff: noqa: S608 - the SQL is assembled from module constants only; values are bound
"""The report's aggregate sections, each a ``GROUP BY`` over the summary.

Two things are counted apart, once each:

- **movements**: data that crossed a border: an object transferred to another location,
  an object written into a location in another country than the tenant's (a placement
  abroad), a request sent to a processor or endpoint in another country. Counted from the
  completed operation (``ok``), never from the decision that allowed it;
- **decisions**: the checks made (``transfer_check``, ``placement``, ``egress_check``),
  allowed and blocked.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from residency_sdk.audit.report_sql import DECISIONS, OK, WRITES, dicts, seconds, split

_MOVES = "('put', 'copy', 'transfer', 'egress')"
MOVED = f"is_transfer = 1 AND outcome IN {OK} AND op IN {_MOVES}"
"""A summary row (or an event) that is a movement across a border."""

# What kind of movement, where the data left from and where it arrived.
_KIND = ("CASE WHEN op = 'egress' THEN CASE WHEN processor IS NOT NULL THEN 'processor' "
         "ELSE 'compute' END WHEN op = 'transfer' OR op = 'copy' THEN 'transfer' "
         "ELSE 'placement' END")
_DESTINATION = ("CASE WHEN op = 'egress' THEN coalesce(destination_country, '?') || "
                "coalesce(' (processor ' || processor || ')', ' (compute)') "
                "WHEN op IN ('transfer', 'copy') THEN "
                "coalesce(destination_location, destination_country, '?') "
                "ELSE 'stored in ' || coalesce(source_location, '?') END")


def operations(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Events per operation and outcome (intents excluded), with their bytes."""
    return dicts(conn.execute("""
        SELECT op AS operation, outcome, sum(events) AS events, sum(bytes) AS bytes
        FROM summary GROUP BY op, outcome ORDER BY op, outcome"""))


def movements(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """One row per flow: origin country (the tenant's), the residency location the data
    is held in, where it went, data class and legal basis; objects and bytes moved, who
    moved them and why, and the rule facts the basis rests on."""
    rows = dicts(conn.execute(f"""
        SELECT {_KIND} AS kind, coalesce(tenant_country, '?') AS origin,
               coalesce(source_location, '?') AS location, {_DESTINATION} AS destination,
               processor, coalesce(data_class, '?') AS data_class, mechanism, agreements,
               min(basis_min) AS basis_min, max(basis_max) AS basis_max,
               sum(events) AS events, sum(bytes) AS bytes,
               {seconds('min(first_seen)')} AS first_seen,
               {seconds('max(last_seen)')} AS last_seen,
               group_concat(DISTINCT op) AS operations,
               group_concat(DISTINCT coalesce(actor, '(not given)')) AS actors,
               group_concat(DISTINCT coalesce(purpose, '(not given)')) AS purposes
        FROM summary WHERE {MOVED}
        GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
        ORDER BY bytes DESC, events DESC, 1, 2, 3, 4"""))
    for row in rows:
        row["operations"] = split(row["operations"])
        row["actors"], row["purposes"] = split(row["actors"]), split(row["purposes"])
        row["agreements"] = json.loads(row["agreements"] or "[]")
        row["basis"] = recorded_basis(row.pop("basis_min"), row.pop("basis_max"))
    return rows


def recorded_basis(low: str | None, high: str | None) -> list[dict[str, Any]]:
    """The basis a group of events recorded: one list, or both when the rules changed
    within the window (the entries of either, each once)."""
    rows = basis_rows(low, allowed=True)
    for entry in basis_rows(high, allowed=True) if high != low else []:
        if entry not in rows:
            rows.append(entry)
    return rows


def basis_rows(basis: str | None, *, allowed: bool) -> list[dict[str, Any]]:
    """The recorded verdicts (JSON) that allowed (or blocked) a decision, as report rows:
    regime, basis, source, as_of and the agreement with its contract reference."""
    return [{"regime": b.get("regime"), "basis": b.get("basis"), "source": b.get("source"),
             "as_of": b.get("as_of"), "review_by": b.get("review_by"),
             "agreement": b.get("agreement")}
            for b in json.loads(basis or "[]") if bool(b.get("allowed")) is allowed]


def decisions(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """The checks made, allowed and blocked, grouped by what was asked: operation,
    outcome, origin, location, destination, data class and basis."""
    rows = dicts(conn.execute(f"""
        SELECT op AS operation, outcome, coalesce(tenant_country, '?') AS origin,
               coalesce(source_location, '?') AS location,
               coalesce(destination_country, destination_location, '?') AS destination,
               processor, coalesce(data_class, '?') AS data_class, mechanism,
               sum(events) AS decisions,
               group_concat(DISTINCT coalesce(actor, '(not given)')) AS actors,
               group_concat(DISTINCT coalesce(purpose, '(not given)')) AS purposes,
               {seconds('min(first_seen)')} AS first_seen,
               {seconds('max(last_seen)')} AS last_seen
        FROM summary WHERE op IN {DECISIONS}
        GROUP BY 1, 2, 3, 4, 5, 6, 7, 8 ORDER BY 1, 2, decisions DESC, 3, 4, 5"""))
    for row in rows:
        row["actors"], row["purposes"] = split(row["actors"]), split(row["purposes"])
    return rows


def retention_deletions(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Objects deleted at the end of their retention period, per location, tenant,
    category and outcome."""
    rows = dicts(conn.execute(f"""
        SELECT coalesce(source_location, '?') AS location, tenant_id,
               purpose, outcome, sum(events) AS objects, sum(bytes) AS bytes,
               {seconds('min(first_seen)')} AS first_seen,
               {seconds('max(last_seen)')} AS last_seen
        FROM summary WHERE op = 'retention_delete'
        GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"""))
    for row in rows:
        purpose = row.pop("purpose") or ""
        row["category"] = purpose.partition(":")[2] or None
    return rows


def unscoped_agreements(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Per tenant and agreement, how many allowed decisions rested on an unscoped
    agreement (a bare mechanism flag: every destination, no counterparty, no expiry)."""
    counts: dict[tuple[str, str], int] = {}
    for tenant, agreements, events in conn.execute(
            f"SELECT tenant_id, agreements, events FROM summary WHERE op IN {DECISIONS} "
            "AND agreements LIKE '%[unscoped]%'"):
        for label in json.loads(agreements or "[]"):
            if label.endswith("[unscoped]"):
                key = (tenant or "(no tenant)", label)
                counts[key] = counts.get(key, 0) + int(events)
    return [{"tenant_id": t, "agreement": a, "decisions": n}
            for (t, a), n in sorted(counts.items())]


def tenants(conn: sqlite3.Connection, held: list[dict[str, Any]],
            blocked_by_tenant: dict[str, int]) -> list[dict[str, Any]]:
    """Per tenant: its country, what it did, where its data is held (objects written and
    not erased, see :func:`~residency_sdk.audit.report_events.objects_held`) and every
    place its data went."""
    rows = dicts(conn.execute(f"""
        SELECT tenant_id, max(tenant_country) AS country, sum(events) AS events,
               coalesce(sum(CASE WHEN op IN {DECISIONS} AND outcome = 'allowed'
                            THEN events END), 0) AS decisions_allowed,
               coalesce(sum(CASE WHEN op IN {DECISIONS} AND outcome = 'blocked'
                            THEN events END), 0) AS decisions_blocked,
               coalesce(sum(CASE WHEN {MOVED} THEN events END), 0) AS movements,
               coalesce(sum(CASE WHEN {MOVED} THEN bytes END), 0) AS bytes_moved,
               coalesce(sum(CASE WHEN op IN {WRITES} AND outcome IN {OK}
                            THEN bytes END), 0) AS bytes_written,
               coalesce(sum(CASE WHEN op = 'erase' AND outcome = 'ok'
                            AND purpose LIKE 'erasure_receipt:%' THEN events END),
                        0) AS erasures_completed,
               group_concat(DISTINCT CASE WHEN {MOVED} AND op <> 'put'
                   THEN {_DESTINATION} END) AS went_to
        FROM summary WHERE tenant_id IS NOT NULL GROUP BY tenant_id ORDER BY tenant_id"""))
    by_tenant: dict[str, list[dict[str, Any]]] = {}
    for entry in held:
        by_tenant.setdefault(entry["tenant_id"], []).append(
            {k: entry[k] for k in ("location", "provider", "bucket", "objects", "bytes")})
    for row in rows:
        row["went_to"] = split(row["went_to"])
        row["held"] = by_tenant.get(row["tenant_id"], [])
        row["held_in"] = sorted({h["location"] for h in row["held"]})
        row["blocked_attempts"] = blocked_by_tenant.get(row["tenant_id"], 0)
    return rows
