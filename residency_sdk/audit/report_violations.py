# ruff: noqa: S608 - the SQL is assembled from module constants only; values are bound
"""Violations the report finds, whatever the code that wrote the log believed.

- ``cross_border_without_mechanism``: an allowed cross-border event with no mechanism;
- ``phi_on_backend_without_baa``: ``phi`` handled on a backend whose provider has no BAA
  in the region map (or a backend the map does not know);
- ``placement_without_mechanism``: a placement allowed across a border with no mechanism,
  or data written to a location after the tenant's placement there was blocked (the
  placement needed a mechanism the tenant lacked).

They should never happen: the summary says whether any can exist, and only then is a
second pass made, over the suspect events alone.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from residency_sdk.audit.report_sql import (
    COLUMNS,
    OK,
    STORAGE_OPS,
    WRITES,
    dicts,
    extracted,
    seconds,
    window_rows,
)

KINDS = ("cross_border_without_mechanism", "phi_on_backend_without_baa",
         "placement_without_mechanism")

# Conditions on one event (or one summary row) for each kind of violation.
NO_MECHANISM = f"is_transfer = 1 AND outcome IN {OK} AND coalesce(mechanism, '') = ''"
PHI_OFF_BAA = (f"data_class = 'phi' AND provider IS NOT NULL AND outcome IN {OK} "
                f"AND op IN {STORAGE_OPS} AND NOT EXISTS (SELECT 1 FROM temp.backends b "
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
    FROM ev WHERE {NO_MECHANISM} AND op <> 'placement'
    UNION ALL
    SELECT 'phi_on_backend_without_baa', ev.seq, ev.time, ev.tenant_id, ev.actor, ev.op,
           ev.data_class, {_LOC}, ev.provider, ev.bucket,
           'phi ' || ev.op || ' on ' || ev.provider || ' ' || coalesce(ev.bucket, '?') ||
           coalesce(': provider has no BAA for location ' || (
               SELECT b.location FROM temp.backends b
               WHERE b.provider = ev.provider AND b.bucket = ev.bucket),
               ': backend not in the region map (BAA unknown)')
    FROM ev WHERE {PHI_OFF_BAA.format(t="ev")}
    UNION ALL
    SELECT 'placement_without_mechanism', seq, time, tenant_id, actor, op, data_class,
           coalesce(destination_location, destination_country), provider, bucket,
           'placement across a border (' || coalesce(tenant_country, '?') || ' -> ' ||
           coalesce(destination_location, destination_country, '?') ||
           ') allowed with no transfer mechanism'
    FROM ev WHERE op = 'placement' AND {NO_MECHANISM}
    UNION ALL
    SELECT 'placement_without_mechanism', w.seq, w.time, w.tenant_id, w.actor, w.op,
           w.data_class, w.loc, w.provider, w.bucket,
           'data written to ' || w.loc || ' after the placement there was blocked: ' ||
           coalesce((SELECT group_concat(value, '; ') FROM json_each(pl.reasons)), '')
    FROM (SELECT *, max(CASE WHEN op = 'placement' THEN seq END) OVER (
                    PARTITION BY tenant_id, loc ORDER BY seq ROWS UNBOUNDED PRECEDING
                ) AS last_placement
          FROM (SELECT *, {_LOC} AS loc FROM ev WHERE tenant_id IS NOT NULL
                AND (op = 'placement' OR (op IN {WRITES} AND outcome IN {OK})))
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
      AND w.op IN {WRITES} AND w.outcome IN {OK}"""


def violations(conn: sqlite3.Connection, q: dict[str, Any],
               limit: int) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Per-event violations. They should never happen: the summary says whether any
    can exist, and only then is a second pass made, over the suspect events alone."""
    suspects = [r[0] for r in conn.execute(_SUSPECT_TENANTS)]
    flagged = conn.execute(
        f"SELECT count(*) FROM summary WHERE {NO_MECHANISM} OR "
        f"{PHI_OFF_BAA.format(t='summary')}").fetchone()[0]
    conn.execute("DROP TABLE IF EXISTS temp.violations")
    conn.execute("DROP TABLE IF EXISTS temp.ev")
    if not flagged and not suspects:
        return dict.fromkeys(KINDS, 0), []
    cols = extracted([*COLUMNS.items(), ("reasons", "reasons"), ("size", "size")])
    conn.execute("CREATE TEMP TABLE suspects (tenant_id TEXT PRIMARY KEY)")
    conn.executemany("INSERT INTO temp.suspects VALUES (?)", [(t,) for t in suspects])
    where = (f"AND coalesce(outcome, '') <> 'intent' AND (({NO_MECHANISM}) OR "
             f"({PHI_OFF_BAA.format(t='e')}) OR "
             "tenant_id IN (SELECT tenant_id FROM temp.suspects))")
    conn.execute(f"CREATE TEMP TABLE ev AS SELECT * FROM {window_rows(cols, where)}", q)
    conn.execute(_VIOLATIONS)
    conn.execute("DROP TABLE temp.suspects")
    counts = dict(conn.execute("SELECT kind, count(*) FROM violations GROUP BY kind").fetchall())
    for kind in KINDS:
        counts.setdefault(kind, 0)
    listed = dicts(conn.execute(
        f"SELECT seq, {seconds('time')} AS time, kind, tenant_id, actor, op, data_class, "
        f"destination, provider, bucket, detail FROM violations ORDER BY seq, kind "
        f"LIMIT {int(limit)}"))
    return counts, listed


