"""Tampering with a log in every way is detected, at the right position."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import KEY, event

from residency_sdk.audit import AuditLog, export_checkpoint, require_valid, verify_log
from residency_sdk.audit.chain import canonical, head_mac, link_hash, link_mac
from residency_sdk.errors import AuditFormatError, AuditKeyError, ChainBroken

Db = Callable[[Path], sqlite3.Connection]
N = 10


def rows(conn: sqlite3.Connection) -> dict[int, tuple[str, str, str, str | None]]:
    return {r[0]: r[1:] for r in conn.execute(
        "SELECT seq, event, prev_hash, hash, mac FROM audit_events ORDER BY seq")}


def rechain(conn: sqlite3.Connection, start: int, key: bytes | None = None) -> None:
    """Recompute every hash from ``start`` on, as an attacker who knows the algorithm
    would; with ``key=None`` the MACs are left as they were (the attacker lacks the key)."""
    current = rows(conn)
    prev = current[start - 1][2] if start > 1 else "0" * 64
    for seq in sorted(s for s in current if s >= start):
        text, _, _, mac = current[seq]
        digest = link_hash(seq, prev, text)
        conn.execute("UPDATE audit_events SET prev_hash = ?, hash = ?, mac = ? WHERE seq = ?",
                     (prev, digest, link_mac(key, seq, digest) if key else mac, seq))
        prev = digest
    last = max(current)
    conn.execute("UPDATE audit_head SET seq = ?, hash = ?, mac = ? WHERE id = 1",
                 (last, prev, head_mac(key, last, prev) if key else None))


def check(path: Path, seq: int, kind: str, **kwargs: object) -> None:
    result = verify_log(path, **kwargs)  # type: ignore[arg-type]
    assert result.broken is not None, "tampering went unnoticed"
    assert (result.broken.seq, result.broken.kind) == (seq, kind), result.broken
    assert result.verified_through == seq - 1
    with pytest.raises(ChainBroken) as info:
        require_valid(path, **kwargs)
    assert (info.value.seq, info.value.kind) == (seq, kind)
    assert f"event {seq}" in str(info.value)


def test_untouched_log_verifies(make_log: Callable[..., Path]) -> None:
    assert verify_log(make_log(N)).ok


def test_edited_field(make_log: Callable[..., Path], db: Db) -> None:
    path = make_log(N)
    conn = db(path)
    conn.execute("UPDATE audit_events SET event = replace(event, '\"size\":1004', "
                 "'\"size\":4') WHERE seq = 5")
    assert conn.total_changes == 1
    check(path, 5, "hash_mismatch")


def test_edited_field_with_its_own_hash_recomputed(make_log: Callable[..., Path],
                                                   db: Db) -> None:
    path = make_log(N)
    conn = db(path)
    text, prev, _, _ = rows(conn)[5]
    forged = text.replace('"outcome":"ok"', '"outcome":"error"')
    conn.execute("UPDATE audit_events SET event = ?, hash = ? WHERE seq = 5",
                 (forged, link_hash(5, prev, forged)))
    check(path, 6, "prev_hash_mismatch")


def test_deleted_event(make_log: Callable[..., Path], db: Db) -> None:
    path = make_log(N)
    db(path).execute("DELETE FROM audit_events WHERE seq = 4")
    check(path, 4, "missing_events")


def test_deleted_event_with_positions_renumbered(make_log: Callable[..., Path],
                                                 db: Db) -> None:
    path = make_log(N)
    conn = db(path)
    conn.execute("DELETE FROM audit_events WHERE seq = 4")
    for seq in range(5, N + 1):
        conn.execute("UPDATE audit_events SET seq = ? WHERE seq = ?", (seq - 1, seq))
    conn.execute("UPDATE audit_head SET seq = seq - 1")
    check(path, 4, "prev_hash_mismatch")


def test_reordered_events(make_log: Callable[..., Path], db: Db) -> None:
    path = make_log(N)
    conn = db(path)
    conn.execute("UPDATE audit_events SET seq = -1 WHERE seq = 3")
    conn.execute("UPDATE audit_events SET seq = 3 WHERE seq = 7")
    conn.execute("UPDATE audit_events SET seq = 7 WHERE seq = -1")
    check(path, 3, "prev_hash_mismatch")


def test_reordered_contents(make_log: Callable[..., Path], db: Db) -> None:
    path = make_log(N)
    conn = db(path)
    current = rows(conn)
    conn.execute("UPDATE audit_events SET event = ? WHERE seq = 3", (current[7][0],))
    conn.execute("UPDATE audit_events SET event = ? WHERE seq = 7", (current[3][0],))
    check(path, 3, "hash_mismatch")


def _insert_forged(conn: sqlite3.Connection, at: int, key: bytes | None) -> None:
    """Insert a well-formed event at position ``at``, shifting later ones."""
    for seq in range(N, at - 1, -1):
        conn.execute("UPDATE audit_events SET seq = ? WHERE seq = ?", (seq + 1, seq))
    prev = rows(conn)[at - 1][2]
    forged = canonical(event(99, operation="delete", actor="intruder"))
    digest = link_hash(at, prev, forged)
    mac = link_mac(b"attacker-guess-0123456789", at, digest) if key else None
    conn.execute("INSERT INTO audit_events VALUES (?, ?, ?, ?, ?)",
                 (at, forged, prev, digest, mac))
    conn.execute("UPDATE audit_head SET seq = seq + 1")


def test_inserted_event(make_log: Callable[..., Path], db: Db) -> None:
    path = make_log(N)
    _insert_forged(db(path), 6, None)
    # Without a key a well-formed insertion is consistent with what precedes it; the
    # first link it breaks is the next event's.
    check(path, 7, "prev_hash_mismatch")


def test_inserted_event_in_keyed_log(make_log: Callable[..., Path], db: Db) -> None:
    path = make_log(N, hmac_key=KEY)
    _insert_forged(db(path), 6, KEY)
    check(path, 6, "mac_mismatch", hmac_key=KEY)


def test_truncated_tail(make_log: Callable[..., Path], db: Db) -> None:
    path = make_log(N)
    db(path).execute("DELETE FROM audit_events WHERE seq > 7")
    check(path, 8, "truncated")


def test_truncated_tail_with_head_rewritten_is_caught_by_checkpoint(
        make_log: Callable[..., Path], db: Db) -> None:
    path = make_log(N)
    cp = export_checkpoint(path)
    conn = db(path)
    seq7_hash = rows(conn)[7][2]
    conn.execute("DELETE FROM audit_events WHERE seq > 7")
    conn.execute("UPDATE audit_head SET seq = 7, hash = ?", (seq7_hash,))
    assert verify_log(path).ok  # an unkeyed log alone cannot know what it lost
    check(path, 8, "truncated", checkpoint=cp)


def test_truncated_keyed_log_with_head_rolled_back(make_log: Callable[..., Path],
                                                   db: Db) -> None:
    path = make_log(N, hmac_key=KEY)
    conn = db(path)
    _, _, seq7_hash, seq7_mac = rows(conn)[7]
    conn.execute("DELETE FROM audit_events WHERE seq > 7")
    conn.execute("UPDATE audit_head SET seq = 7, hash = ?, mac = ?", (seq7_hash, seq7_mac))
    check(path, 8, "head_mac_mismatch", hmac_key=KEY)


def test_rechained_without_the_key(make_log: Callable[..., Path], db: Db) -> None:
    path = make_log(N, hmac_key=KEY)
    conn = db(path)
    text = rows(conn)[4][0]
    conn.execute("UPDATE audit_events SET event = ? WHERE seq = 4",
                 (text.replace('"data_class":"phi"', '"data_class":"anonymised"'),))
    rechain(conn, 4)
    assert verify_log(path).ok  # the SHA-256 chain alone was rebuilt consistently...
    check(path, 4, "mac_mismatch", hmac_key=KEY)  # ...but not the HMACs


def test_rechained_with_guessed_key(make_log: Callable[..., Path], db: Db) -> None:
    path = make_log(N, hmac_key=KEY)
    conn = db(path)
    conn.execute("DELETE FROM audit_events WHERE seq = 2")
    for seq in range(3, N + 1):
        conn.execute("UPDATE audit_events SET seq = ? WHERE seq = ?", (seq - 1, seq))
    rechain(conn, 2, key=b"attacker-guess-0123456789")
    check(path, 2, "mac_mismatch", hmac_key=KEY)


def test_seals_stripped(make_log: Callable[..., Path], db: Db) -> None:
    path = make_log(N, hmac_key=KEY)
    conn = db(path)
    conn.execute("UPDATE audit_meta SET value = 'sha256' WHERE key = 'chain'")
    conn.execute("DELETE FROM audit_meta WHERE key = 'key_check'")
    conn.execute("UPDATE audit_events SET mac = NULL")
    check(path, 1, "not_keyed", hmac_key=KEY)


def test_events_added_behind_the_writers_back(make_log: Callable[..., Path], db: Db) -> None:
    path = make_log(N)
    conn = db(path)
    prev = rows(conn)[N][2]
    forged = canonical(event(50))
    conn.execute("INSERT INTO audit_events VALUES (?, ?, ?, ?, NULL)",
                 (N + 1, forged, prev, link_hash(N + 1, prev, forged)))
    check(path, N + 1, "unrecorded_events")


def test_edit_detected_by_checkpoint_after_full_rechain(make_log: Callable[..., Path],
                                                        db: Db) -> None:
    path = make_log(N)
    cp = export_checkpoint(path)
    conn = db(path)
    text = rows(conn)[2][0]
    conn.execute("UPDATE audit_events SET event = ? WHERE seq = 2",
                 (text.replace('"actor":"svc-1"', '"actor":"nobody"'),))
    rechain(conn, 2)
    assert verify_log(path).ok
    check(path, N, "checkpoint_mismatch", checkpoint=cp)


def test_appending_to_a_truncated_log_is_refused(make_log: Callable[..., Path],
                                                 db: Db) -> None:
    path = make_log(N)
    db(path).execute("DELETE FROM audit_events WHERE seq > 7")
    with AuditLog(path) as log, pytest.raises(ChainBroken, match="truncated") as info:
        log.append(event(11))
    assert info.value.kind == "truncated"
    check(path, 8, "truncated")  # the refused append added nothing


def test_checkpoint_seal_and_identity(make_log: Callable[..., Path], tmp_path: Path) -> None:
    path = make_log(N, hmac_key=KEY)
    cp = export_checkpoint(path, hmac_key=KEY)
    assert cp.seal is not None and cp.seq == N
    assert verify_log(path, hmac_key=KEY, checkpoint=cp).ok
    forged = cp.model_copy(update={"seq": 3})
    with pytest.raises(AuditKeyError, match="seal"):
        verify_log(path, hmac_key=KEY, checkpoint=forged)
    other = make_log(3, name="other.db")
    with pytest.raises(AuditFormatError, match="checkpoint is for audit log"):
        verify_log(other, checkpoint=export_checkpoint(path, hmac_key=KEY))
    cp_file = tmp_path / "cp.json"
    cp.write(cp_file)
    assert json.loads(cp_file.read_text())["schema"] == "residency.audit.checkpoint/v1"
