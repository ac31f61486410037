"""Each link of the audit chain covers the previous link's hash (``prev_hash``), not only
its own position and event.

Were ``prev_hash`` left out of the hash, an attacker could edit an event, recompute that
one link's hash and re-link the next row to it: every later link would still verify.
These tests prove the link binds its predecessor, for the SQLite log (the writer's own
inlined hashing and ``verify_log``) and for the JSON Lines sink (``link_hash`` and
``verify_jsonl``).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

from conftest import event

from residency_sdk.audit import AuditLog, verify_log
from residency_sdk.audit.chain import link_hash
from residency_sdk.audit.jsonl import JsonlSink, verify_jsonl

Db = Callable[[Path], sqlite3.Connection]


def _rows(conn: sqlite3.Connection) -> dict[int, tuple[str, str, str]]:
    return {r[0]: (r[1], r[2], r[3]) for r in conn.execute(
        "SELECT seq, event, prev_hash, hash FROM audit_events ORDER BY seq")}


def test_link_hash_changes_with_the_previous_hash_alone() -> None:
    payload = event(1).to_json()
    a, b = "a" * 64, "b" * 64
    assert link_hash(7, a, payload) != link_hash(7, b, payload)
    # The documented formula, recomputed here: SHA-256 of "<seq>\n<prev_hash>\n<event>".
    assert link_hash(7, a, payload) == hashlib.sha256(
        f"7\n{a}\n{payload}".encode()).hexdigest()


def test_the_same_event_in_two_logs_gets_different_hashes_through_their_genesis(
        tmp_path: Path, db: Db) -> None:
    # Same position, same canonical event: only prev_hash (each log's own genesis) differs.
    same = event(3)
    hashes = []
    for name in ("one.db", "two.db"):
        with AuditLog(tmp_path / name) as log:
            log.append(same)
        ((text, prev, digest),) = _rows(db(tmp_path / name)).values()
        assert digest == hashlib.sha256(f"1\n{prev}\n{text}".encode()).hexdigest()
        hashes.append((text, prev, digest))
    (text1, prev1, hash1), (text2, prev2, hash2) = hashes
    assert text1 == text2 and prev1 != prev2
    assert hash1 != hash2


def test_identical_events_at_two_positions_are_each_bound_to_their_predecessor(
        tmp_path: Path, db: Db) -> None:
    same = event(4)
    with AuditLog(tmp_path / "a.db") as log:
        log.append(event(0))
        log.append(same)
        log.append(same)
    rows = _rows(db(tmp_path / "a.db"))
    (text2, prev2, hash2), (text3, prev3, hash3) = rows[2], rows[3]
    assert text2 == text3 and hash2 != hash3
    assert prev3 == hash2 and prev2 == rows[1][2]
    for seq, (text, prev, digest) in rows.items():
        assert digest == hashlib.sha256(f"{seq}\n{prev}\n{text}".encode()).hexdigest()


def test_edited_event_rehashed_and_relinked_is_caught_by_the_next_link(
        tmp_path: Path, db: Db) -> None:
    path = tmp_path / "a.db"
    with AuditLog(path) as log:
        log.append_many([event(i) for i in range(6)])
    assert verify_log(path).ok
    conn = db(path)
    rows = _rows(conn)
    text, prev, _ = rows[3]
    forged = text.replace('"outcome":"ok"', '"outcome":"error"')
    assert forged != text
    # The attacker rehashes the edited link with the chain's own function and re-links
    # the next row to it; row 4's own hash is left, since recomputing it (and every
    # later one) is what the chain forces.
    forged_hash = link_hash(3, prev, forged)
    conn.execute("UPDATE audit_events SET event = ?, hash = ? WHERE seq = 3",
                 (forged, forged_hash))
    conn.execute("UPDATE audit_events SET prev_hash = ? WHERE seq = 4", (forged_hash,))
    assert conn.total_changes == 2

    result = verify_log(path)
    assert result.broken is not None, "a re-linked row went unnoticed"
    assert (result.broken.seq, result.broken.kind) == (4, "hash_mismatch"), result.broken


def test_jsonl_edited_line_rehashed_and_relinked_is_caught_by_the_next_line(
        tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with JsonlSink(path, fsync=False) as sink:
        for i in range(5):
            sink.append(event(i))
    assert verify_jsonl(path).ok
    lines = path.read_text().splitlines(keepends=True)
    heads = [json.loads(line[:line.index(',"event":')] + "}") for line in lines]
    payloads = [line[line.index(',"event":') + len(',"event":'):-2] for line in lines]
    assert heads[1]["prev_hash"] == heads[0]["hash"]
    assert heads[1]["hash"] == hashlib.sha256(
        f"2\n{heads[0]['hash']}\n{payloads[1]}".encode()).hexdigest()

    forged = payloads[2].replace('"outcome":"ok"', '"outcome":"error"')
    assert forged != payloads[2]
    forged_hash = link_hash(3, heads[2]["prev_hash"], forged)
    heads[2]["hash"] = forged_hash
    heads[3]["prev_hash"] = forged_hash  # line 4 re-linked; its own hash left as it was
    payloads[2] = forged
    path.write_text("".join(
        json.dumps(h, separators=(",", ":"))[:-1] + ',"event":' + p + "}\n"
        for h, p in zip(heads, payloads, strict=True)))

    result = verify_jsonl(path)
    assert result.broken is not None, "a re-linked line went unnoticed"
    assert (result.broken.seq, result.broken.kind) == (4, "hash_mismatch"), result.broken
