"""Tampering with a log in every way is detected, at the right position.

Each test plays an attacker with write access to the log's file (``db``), and, where it
matters, with and without the HMAC key and with and without anchors (sealed checkpoints
kept outside the log). What cannot be detected is asserted too, so the limits documented
in docs/audit.md ("Verification") stay true.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import KEY, copy_log, event, head_row, write_head
from typer.testing import CliRunner

from residency_sdk.audit import (
    AuditLog,
    Checkpoint,
    export_checkpoint,
    require_valid,
    verify_log,
)
from residency_sdk.audit.anchors import LocalAnchorFolder, open_anchor
from residency_sdk.audit.chain import (
    HMAC_KEY_ENV,
    LogInfo,
    canonical,
    genesis_hash,
    head_mac,
    link_hash,
    link_mac,
)
from residency_sdk.cli.app import app
from residency_sdk.errors import (
    AuditFormatError,
    AuditKeyError,
    AuditUnavailable,
    ChainBroken,
    ChainRefused,
)

Db = Callable[[Path], sqlite3.Connection]
N = 10
GUESS = b"attacker-guess-0123456789"
KEYS = pytest.mark.parametrize("key", [None, KEY], ids=["unkeyed", "keyed"])


def rows(conn: sqlite3.Connection) -> dict[int, tuple[str, str, str, str | None]]:
    return {r[0]: r[1:] for r in conn.execute(
        "SELECT seq, event, prev_hash, hash, mac FROM audit_events ORDER BY seq")}


def info_of(conn: sqlite3.Connection) -> LogInfo:
    return LogInfo.from_meta(dict(conn.execute("SELECT key, value FROM audit_meta")), "x")


def rechain(conn: sqlite3.Connection, start: int, key: bytes | None = None) -> None:
    """Recompute every hash from ``start`` on (and the head), as an attacker who knows the
    algorithm would. With ``key`` the MACs are recomputed too; without, they are left as
    they were (the attacker lacks the key)."""
    info = info_of(conn)
    current = rows(conn)
    prev = current[start - 1][2] if start > 1 else info.genesis
    for seq in sorted(s for s in current if s >= start):
        text, _, _, mac = current[seq]
        digest = link_hash(seq, prev, text)
        conn.execute("UPDATE audit_events SET prev_hash = ?, hash = ?, mac = ? WHERE seq = ?",
                     (prev, digest, link_mac(key, seq, digest) if key else mac, seq))
        prev = digest
    last = max(current, default=0)
    head = head_row(conn)
    counter = head[2] if head else 0
    mac = head_mac(key, info.log_id, counter, last, prev) if key else (head[3] if head else None)
    write_head(conn, (last, prev, counter, mac))


def check(path: Path, seq: int, kind: str, **kwargs: object) -> None:
    """The log is broken first at ``seq`` with ``kind``, through both verification calls."""
    result = verify_log(path, **kwargs)  # type: ignore[arg-type]
    assert result.broken is not None, "tampering went unnoticed"
    assert (result.broken.seq, result.broken.kind) == (seq, kind), result.broken
    assert result.status == "broken" and not result.ok
    assert result.verified_through == max(0, min(result.events, seq - 1))
    with pytest.raises(ChainBroken) as info:
        require_valid(path, **kwargs)
    assert (info.value.seq, info.value.kind) == (seq, kind)
    assert f"event {seq}" in str(info.value)


def anchored(path: Path, anchor_dir: Path, *batches: int,
             key: bytes | None = None) -> list[tuple[int, str, int, str | None]]:
    """Write ``batches`` of events through a writer anchoring to ``anchor_dir`` after
    every commit; return the head row as stored after each batch (what an attacker who
    watched the file could have saved)."""
    heads = []
    anchor = LocalAnchorFolder(anchor_dir)
    with AuditLog(path, hmac_key=key, anchors=[anchor], anchor_every=1) as log:
        done = 0
        for n in batches:
            log.append_many([event(done + i) for i in range(n)])
            done += n
            conn = sqlite3.connect(path)
            head = head_row(conn)
            conn.close()
            assert head is not None
            heads.append(head)
            # Anchoring runs in the writer's background thread, right after the commit.
            deadline = time.monotonic() + 10
            while not _anchored_at(anchor, log.info.log_id, done):
                assert time.monotonic() < deadline, f"event {done} was never anchored"
                time.sleep(0.005)
    return heads


def _anchored_at(anchor: LocalAnchorFolder, log_id: str, seq: int) -> bool:
    try:
        return any(cp.seq == seq for cp in anchor.checkpoints(log_id))
    except AuditUnavailable:  # the folder is created by the first anchor
        return False


# --- untouched ---------------------------------------------------------------------------


def test_untouched_logs_verify(make_log: Callable[..., Path]) -> None:
    plain = verify_log(make_log(N))
    assert plain.ok and plain.status == "verified" and plain.events == N
    keyed_path = make_log(N, hmac_key=KEY, name="keyed.db")
    keyed = verify_log(keyed_path, hmac_key=KEY)
    assert keyed.ok and keyed.hmac_checked and keyed.head_counter == 1
    without_key = verify_log(keyed_path)
    assert without_key.status == "unverified" and not without_key.ok
    assert without_key.broken is None and without_key.events == N
    assert any("UNVERIFIED" in note and HMAC_KEY_ENV in note for note in without_key.notes)


# --- edit ------------------------------------------------------------------------------


@KEYS
def test_edited_field(make_log: Callable[..., Path], db: Db, key: bytes | None) -> None:
    path = make_log(N, hmac_key=key)
    conn = db(path)
    conn.execute("UPDATE audit_events SET event = replace(event, '\"size\":1004', "
                 "'\"size\":4') WHERE seq = 5")
    assert conn.total_changes == 1
    check(path, 5, "hash_mismatch", hmac_key=key)
    check(path, 5, "hash_mismatch")  # the SHA-256 chain alone shows it, key or not


@KEYS
def test_edited_field_with_its_own_hash_recomputed(make_log: Callable[..., Path], db: Db,
                                                   key: bytes | None) -> None:
    path = make_log(N, hmac_key=key)
    conn = db(path)
    text, prev, _, _ = rows(conn)[5]
    forged = text.replace('"outcome":"ok"', '"outcome":"error"')
    conn.execute("UPDATE audit_events SET event = ?, hash = ? WHERE seq = 5",
                 (forged, link_hash(5, prev, forged)))
    check(path, 6, "prev_hash_mismatch")
    if key:  # with the key, the forged event's own seal gives it away first
        check(path, 5, "mac_mismatch", hmac_key=key)


# --- delete ----------------------------------------------------------------------------


@KEYS
def test_deleted_event(make_log: Callable[..., Path], db: Db, key: bytes | None) -> None:
    path = make_log(N, hmac_key=key)
    db(path).execute("DELETE FROM audit_events WHERE seq = 4")
    check(path, 4, "missing_events", hmac_key=key)


@KEYS
def test_deleted_event_with_positions_renumbered(make_log: Callable[..., Path], db: Db,
                                                 key: bytes | None) -> None:
    path = make_log(N, hmac_key=key)
    conn = db(path)
    conn.execute("DELETE FROM audit_events WHERE seq = 4")
    for seq in range(5, N + 1):
        conn.execute("UPDATE audit_events SET seq = ? WHERE seq = ?", (seq - 1, seq))
    conn.execute("UPDATE audit_head SET seq = seq - 1")
    check(path, 4, "prev_hash_mismatch", hmac_key=key)


# --- reorder ---------------------------------------------------------------------------


@KEYS
def test_reordered_events(make_log: Callable[..., Path], db: Db, key: bytes | None) -> None:
    path = make_log(N, hmac_key=key)
    conn = db(path)
    conn.execute("UPDATE audit_events SET seq = -100 WHERE seq = 3")
    conn.execute("UPDATE audit_events SET seq = 3 WHERE seq = 7")
    conn.execute("UPDATE audit_events SET seq = 7 WHERE seq = -100")
    check(path, 3, "prev_hash_mismatch", hmac_key=key)


def test_reordered_contents(make_log: Callable[..., Path], db: Db) -> None:
    path = make_log(N)
    conn = db(path)
    current = rows(conn)
    conn.execute("UPDATE audit_events SET event = ? WHERE seq = 3", (current[7][0],))
    conn.execute("UPDATE audit_events SET event = ? WHERE seq = 7", (current[3][0],))
    check(path, 3, "hash_mismatch")


# --- insert ----------------------------------------------------------------------------


def _insert_forged(conn: sqlite3.Connection, at: int, key: bytes | None) -> None:
    """Insert a well-formed event at position ``at``, shifting later ones."""
    for seq in range(N, at - 1, -1):
        conn.execute("UPDATE audit_events SET seq = ? WHERE seq = ?", (seq + 1, seq))
    prev = rows(conn)[at - 1][2]
    forged = canonical(event(99, operation="delete", actor="intruder"))
    digest = link_hash(at, prev, forged)
    mac = link_mac(GUESS, at, digest) if key else None
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


def test_events_added_behind_the_writers_back(make_log: Callable[..., Path], db: Db) -> None:
    path = make_log(N)
    conn = db(path)
    prev = rows(conn)[N][2]
    forged = canonical(event(50))
    conn.execute("INSERT INTO audit_events VALUES (?, ?, ?, ?, NULL)",
                 (N + 1, forged, prev, link_hash(N + 1, prev, forged)))
    check(path, N + 1, "unrecorded_events")
    log = AuditLog(path)
    with pytest.raises(ChainRefused) as refused:
        log.append(event(12))
    assert refused.value.kind == "unrecorded_events"
    with pytest.raises(AuditUnavailable):
        log.close()


@KEYS
def test_rows_outside_the_chain_are_flagged(make_log: Callable[..., Path], db: Db,
                                           key: bytes | None) -> None:
    path = make_log(N, hmac_key=key)
    conn = db(path)
    for seq in (0, -1):
        forged = canonical(event(70 + seq, operation="delete", actor="hidden"))
        conn.execute("INSERT INTO audit_events VALUES (?, ?, ?, ?, NULL)",
                     (seq, forged, "0" * 64, link_hash(seq, "0" * 64, forged)))
    result = verify_log(path, hmac_key=key)
    assert result.outside_chain == (-1, 0)
    assert result.broken is not None and result.broken.kind == "outside_chain"
    assert result.broken.seq == -1 and "outside the chain" in result.broken.message
    assert result.events == N and result.verified_through == N  # the chain itself holds
    assert verify_log(path).status == "broken"  # without the key as well


# --- truncate --------------------------------------------------------------------------


@KEYS
def test_truncated_tail(make_log: Callable[..., Path], db: Db, key: bytes | None) -> None:
    path = make_log(N, hmac_key=key)
    db(path).execute("DELETE FROM audit_events WHERE seq > 7")
    check(path, 8, "truncated", hmac_key=key)


def test_truncated_keyed_log_with_head_forged_from_a_link(make_log: Callable[..., Path],
                                                          db: Db) -> None:
    path = make_log(N, hmac_key=KEY)
    conn = db(path)
    _, _, seq7_hash, seq7_mac = rows(conn)[7]
    conn.execute("DELETE FROM audit_events WHERE seq > 7")
    conn.execute("UPDATE audit_head SET seq = 7, hash = ?, mac = ?", (seq7_hash, seq7_mac))
    check(path, 8, "head_mac_mismatch", hmac_key=KEY)


def test_truncated_unkeyed_log_with_head_rewritten_is_caught_by_a_checkpoint(
        make_log: Callable[..., Path], db: Db) -> None:
    path = make_log(N)
    cp = export_checkpoint(path)
    conn = db(path)
    seq7_hash = rows(conn)[7][2]
    conn.execute("DELETE FROM audit_events WHERE seq > 7")
    conn.execute("UPDATE audit_head SET seq = 7, hash = ?", (seq7_hash,))
    assert verify_log(path).ok  # an unkeyed log alone cannot know what it lost
    check(path, 8, "rolled_back", checkpoint=cp)
    check(path, 8, "rolled_back", anchors=[cp])


def test_appending_to_a_truncated_log_is_refused(make_log: Callable[..., Path],
                                                 db: Db) -> None:
    path = make_log(N)
    db(path).execute("DELETE FROM audit_events WHERE seq > 7")
    log = AuditLog(path)
    with pytest.raises(ChainRefused, match="truncated") as info:
        log.append(event(11))
    assert info.value.kind == "truncated"
    assert isinstance(info.value, AuditUnavailable)  # the operation must not run
    check(path, 8, "truncated")  # the refused append added nothing
    with pytest.raises(AuditUnavailable, match="1 event"):
        log.close()  # and the event it still holds is reported, not dropped silently


# --- wipe ------------------------------------------------------------------------------


@KEYS
def test_wiped_log_never_verifies_and_is_never_appended_to(
        make_log: Callable[..., Path], db: Db, key: bytes | None) -> None:
    path = make_log(N, hmac_key=key)
    writer = AuditLog(path, hmac_key=key)  # a writer already running
    conn = db(path)
    conn.execute("DELETE FROM audit_events")
    conn.execute("DELETE FROM audit_head")
    result = verify_log(path, hmac_key=key)
    assert result.broken is not None and result.broken.kind == "head_missing"
    assert "the log was emptied" in result.broken.message
    check(path, 1, "head_missing", hmac_key=key)
    check(path, 1, "head_missing")  # without the key too: broken, not "unverified"
    with pytest.raises(ChainRefused, match="log was emptied") as refused:
        writer.append(event(0))
    assert refused.value.kind == "head_missing"
    with pytest.raises(AuditUnavailable):  # any append while the log is wiped
        writer.append(event(1))
    with pytest.raises(ChainRefused, match="log was emptied"):
        AuditLog(path, hmac_key=key)  # a new writer refuses to start a fresh chain
    assert conn.execute("SELECT count(*) FROM audit_events").fetchone()[0] == 0
    with pytest.raises(AuditUnavailable):
        writer.close()  # the refused events are reported, not dropped silently


def test_wiped_keyed_log_given_a_new_genesis_head_without_the_key(
        make_log: Callable[..., Path], db: Db) -> None:
    path = make_log(N, hmac_key=KEY)
    conn = db(path)
    info = info_of(conn)
    conn.execute("DELETE FROM audit_events")
    write_head(conn, (0, info.genesis, 0, head_mac(GUESS, info.log_id, 0, 0, info.genesis)))
    check(path, 1, "head_mac_mismatch", hmac_key=KEY)
    assert verify_log(path).status == "unverified"  # never "verified" without the key


def test_wiped_unkeyed_log_given_a_new_genesis_head_is_caught_by_an_anchor(
        tmp_path: Path, anchor_dir: Path, db: Db) -> None:
    path = tmp_path / "audit.db"
    anchored(path, anchor_dir, N)
    conn = db(path)
    conn.execute("DELETE FROM audit_events")
    write_head(conn, (0, info_of(conn).genesis, 0, None))
    assert verify_log(path).ok  # limit: an unkeyed log alone can be emptied consistently
    check(path, 1, "rolled_back", anchors=[open_anchor(str(anchor_dir))])


def test_emptied_meta_is_refused(make_log: Callable[..., Path], db: Db) -> None:
    path = make_log(N)
    db(path).execute("DELETE FROM audit_meta")
    with pytest.raises(AuditFormatError, match="its meta is empty"):
        verify_log(path)
    with pytest.raises(AuditFormatError, match="its meta is empty"):
        AuditLog(path)


# --- rollback and an older copy ---------------------------------------------------------


@KEYS
def test_rollback_to_an_older_head_is_caught_by_anchors(tmp_path: Path, anchor_dir: Path,
                                                        db: Db, key: bytes | None) -> None:
    path = tmp_path / "audit.db"
    heads = anchored(path, anchor_dir, 5, 5, key=key)
    conn = db(path)
    conn.execute("DELETE FROM audit_events WHERE seq > 5")
    write_head(conn, heads[0])  # the genuine head of event 5, MAC and all
    # Limit: the log alone is a valid earlier state, even with the key...
    assert verify_log(path, hmac_key=key).status == "verified"
    # ...the anchors published after event 10 are what shows the rollback.
    check(path, 6, "rolled_back", hmac_key=key, anchors=[open_anchor(str(anchor_dir))])
    check(path, 6, "rolled_back", anchors=[str(anchor_dir)])  # without the key as well
    assert "rolled back" in verify_log(path, anchors=[str(anchor_dir)]).broken.message  # type: ignore[union-attr]


@KEYS
def test_running_writer_refuses_a_rolled_back_head(tmp_path: Path, db: Db,
                                                   key: bytes | None) -> None:
    path = tmp_path / "audit.db"
    log = AuditLog(path, hmac_key=key)
    log.append_many([event(i) for i in range(5)])
    conn = db(path)
    old_head = head_row(conn)
    assert old_head is not None
    log.append_many([event(5 + i) for i in range(5)])
    conn.execute("DELETE FROM audit_events WHERE seq > 5")
    write_head(conn, old_head)
    with pytest.raises(ChainRefused, match="rolled back") as refused:
        log.append(event(10))
    assert refused.value.kind == "rolled_back"
    assert isinstance(refused.value, AuditUnavailable)
    assert conn.execute("SELECT max(seq) FROM audit_events").fetchone()[0] == 5
    with pytest.raises(AuditUnavailable):
        log.close()


def test_file_replaced_by_an_older_copy_is_caught_by_anchors(tmp_path: Path,
                                                             anchor_dir: Path) -> None:
    path = tmp_path / "audit.db"
    old = tmp_path / "old-copy.db"
    with AuditLog(path, hmac_key=KEY, anchors=[LocalAnchorFolder(anchor_dir)],
                  anchor_every=1) as log:
        log.append_many([event(i) for i in range(4)])
        copy_log(path, old)  # a backup, or an attacker's copy
        log.append_many([event(4 + i) for i in range(6)])
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    os.replace(old, path)
    assert verify_log(path, hmac_key=KEY).ok  # limit: a genuine older state, on its own
    check(path, 5, "rolled_back", hmac_key=KEY, anchors=[str(anchor_dir)])
    check(path, 5, "rolled_back", hmac_key=KEY, checkpoint=export_checkpoint_of(anchor_dir))


def export_checkpoint_of(anchor_dir: Path) -> Checkpoint:
    """The newest checkpoint in an anchor folder (the one holding exactly one log)."""
    (log_dir,) = [p for p in anchor_dir.iterdir() if p.is_dir()]
    return open_anchor(str(anchor_dir)).checkpoints(log_dir.name)[-1]


# --- rechain ---------------------------------------------------------------------------


def test_keyed_log_rechained_without_the_key(make_log: Callable[..., Path], db: Db) -> None:
    path = make_log(N, hmac_key=KEY)
    conn = db(path)
    text = rows(conn)[4][0]
    conn.execute("UPDATE audit_events SET event = ? WHERE seq = 4",
                 (text.replace('"data_class":"phi"', '"data_class":"anonymised"'),))
    rechain(conn, 4)
    unkeyed_view = verify_log(path)  # the SHA-256 chain alone was rebuilt consistently...
    assert unkeyed_view.broken is None and unkeyed_view.status == "unverified"
    assert not unkeyed_view.ok  # ...so without the key the answer is not "ok"
    check(path, 4, "mac_mismatch", hmac_key=KEY)  # ...and with it, the HMACs give it away


def test_keyed_log_rechained_with_a_guessed_key(make_log: Callable[..., Path],
                                                db: Db) -> None:
    path = make_log(N, hmac_key=KEY)
    conn = db(path)
    conn.execute("DELETE FROM audit_events WHERE seq = 2")
    for seq in range(3, N + 1):
        conn.execute("UPDATE audit_events SET seq = ? WHERE seq = ?", (seq - 1, seq))
    rechain(conn, 2, key=GUESS)
    check(path, 2, "mac_mismatch", hmac_key=KEY)


def test_unkeyed_log_rechained_is_caught_by_anchors(tmp_path: Path, anchor_dir: Path,
                                                    db: Db) -> None:
    path = tmp_path / "audit.db"
    anchored(path, anchor_dir, 5, 5)
    conn = db(path)
    text = rows(conn)[2][0]
    conn.execute("UPDATE audit_events SET event = ? WHERE seq = 2",
                 (text.replace('"actor":"svc-1"', '"actor":"nobody"'),))
    rechain(conn, 2)
    assert verify_log(path).ok  # limit: without key or anchors a full rechain passes
    check(path, 5, "checkpoint_mismatch", anchors=[str(anchor_dir)])


def test_keyed_log_rechained_with_the_key_is_caught_by_anchors(tmp_path: Path,
                                                               anchor_dir: Path,
                                                               db: Db) -> None:
    path = tmp_path / "audit.db"
    anchored(path, anchor_dir, 5, 5, key=KEY)
    conn = db(path)
    conn.execute("DELETE FROM audit_events WHERE seq = 3")
    for seq in range(4, N + 1):
        conn.execute("UPDATE audit_events SET seq = ? WHERE seq = ?", (seq - 1, seq))
    rechain(conn, 3, key=KEY)  # an insider holding the key
    assert verify_log(path, hmac_key=KEY).ok  # limit: the key holder can rewrite...
    # ...but not the anchors: event 5's hash changed and event 10 is gone.
    check(path, 5, "checkpoint_mismatch", hmac_key=KEY, anchors=[str(anchor_dir)])


def test_log_identity_rewritten(make_log: Callable[..., Path], db: Db) -> None:
    path = make_log(N, hmac_key=KEY)
    conn = db(path)
    conn.execute("UPDATE audit_meta SET value = ? WHERE key = 'log_id'", ("e" * 32,))
    check(path, 1, "prev_hash_mismatch")  # event 1 hangs off the old identity
    check(path, 1, "genesis_mismatch", hmac_key=KEY)


def test_events_spliced_from_another_log(make_log: Callable[..., Path], db: Db) -> None:
    source = make_log(N, name="source.db")
    target = make_log(3, name="target.db")
    conn = db(target)
    conn.execute("DELETE FROM audit_events")
    src = db(source)
    for seq, (text, prev, digest, mac) in rows(src).items():
        conn.execute("INSERT INTO audit_events VALUES (?, ?, ?, ?, ?)",
                     (seq, text, prev, digest, mac))
    seq, digest, _, _ = head_row(src)  # type: ignore[misc]
    conn.execute("UPDATE audit_head SET seq = ?, hash = ?", (seq, digest))
    check(target, 1, "prev_hash_mismatch")  # every chain starts at its own log's genesis


# --- checkpoints -------------------------------------------------------------------------


def test_forged_checkpoints_are_refused_for_a_keyed_log(make_log: Callable[..., Path],
                                                        anchor_dir: Path) -> None:
    path = make_log(N, hmac_key=KEY)
    cp = export_checkpoint(path, hmac_key=KEY)
    assert cp.seal is not None and cp.seq == N and cp.counter == 1 and cp.key_id
    assert verify_log(path, hmac_key=KEY, checkpoint=cp).ok
    unsealed = cp.model_copy(update={"seal": None, "seq": N + 5})
    check(path, N + 5, "checkpoint_unsealed", hmac_key=KEY, checkpoint=unsealed)
    check(path, N + 5, "checkpoint_unsealed", checkpoint=unsealed)  # without the key too
    LocalAnchorFolder(anchor_dir).publish(unsealed)  # planted in the anchor store
    check(path, N + 5, "checkpoint_unsealed", hmac_key=KEY, anchors=[str(anchor_dir)])
    forged = cp.model_copy(update={"seq": 3})
    with pytest.raises(AuditKeyError, match="seal"):
        verify_log(path, hmac_key=KEY, checkpoint=forged)
    with pytest.raises(AuditKeyError, match="seal"):
        verify_log(path, hmac_key=KEY, checkpoint=cp.sealed_with(GUESS))


def test_checkpoint_identity_and_format(make_log: Callable[..., Path],
                                        tmp_path: Path) -> None:
    path = make_log(N, hmac_key=KEY)
    cp = export_checkpoint(path, hmac_key=KEY)
    other = make_log(3, name="other.db")
    with pytest.raises(AuditFormatError, match="checkpoint is for audit log"):
        verify_log(other, checkpoint=cp)
    with pytest.raises(AuditKeyError, match=HMAC_KEY_ENV):
        export_checkpoint(path)  # a keyed log's checkpoint is sealed: the key is needed
    cp_file = tmp_path / "cp.json"
    cp.write(cp_file)
    data = json.loads(cp_file.read_text())
    assert data["schema"] == "residency.audit.checkpoint/v2"
    assert data["counter"] == 1 and data["key_id"] == cp.key_id and data["seal"]


def test_empty_log_checkpoint_is_its_genesis(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    AuditLog(path).close()
    cp = export_checkpoint(path)
    conn = sqlite3.connect(path)
    info = info_of(conn)
    conn.close()
    assert (cp.seq, cp.counter) == (0, 0)
    assert cp.hash == info.genesis == genesis_hash(info.log_id, info.created, "sha256", None)
    assert verify_log(path, checkpoint=cp).ok


# --- key stripped ------------------------------------------------------------------------


def _strip_seals(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE audit_meta SET value = 'sha256' WHERE key = 'chain'")
    conn.execute("DELETE FROM audit_meta WHERE key IN ('key_check', 'key_id', 'genesis_mac')")
    conn.execute("UPDATE audit_events SET mac = NULL")
    conn.execute("UPDATE audit_head SET mac = NULL")


def test_seals_stripped(make_log: Callable[..., Path], db: Db) -> None:
    path = make_log(N, hmac_key=KEY)
    _strip_seals(db(path))
    check(path, 1, "not_keyed", hmac_key=KEY)
    check(path, 1, "prev_hash_mismatch")  # the genesis named the key: the chain no longer fits


def test_seals_stripped_and_chain_rebuilt(tmp_path: Path, anchor_dir: Path, db: Db) -> None:
    path = tmp_path / "audit.db"
    anchored(path, anchor_dir, N, key=KEY)
    conn = db(path)
    _strip_seals(conn)
    rechain(conn, 1)
    assert verify_log(path).ok  # limit: without the key or anchors, a stripped log passes
    check(path, 1, "not_keyed", hmac_key=KEY)
    check(path, 1, "not_keyed", anchors=[str(anchor_dir)])  # anchors remember the key


# --- the command line ------------------------------------------------------------------


def test_cli_exit_status_for_unverified_broken_and_anchored(tmp_path: Path, anchor_dir: Path,
                                                            db: Db) -> None:
    runner = CliRunner()
    path = tmp_path / "audit.db"
    heads = anchored(path, anchor_dir, 5, 5, key=KEY)
    ok = runner.invoke(app, ["audit", "verify", str(path)], env={HMAC_KEY_ENV: KEY.decode()})
    assert ok.exit_code == 0 and "10 events verify" in ok.stdout
    unverified = runner.invoke(app, ["audit", "verify", str(path)], env={HMAC_KEY_ENV: ""})
    assert unverified.exit_code == 3
    assert "UNVERIFIED" in unverified.stdout + unverified.stderr
    assert HMAC_KEY_ENV in unverified.stdout + unverified.stderr
    as_json = runner.invoke(app, ["audit", "verify", str(path), "--json"],
                            env={HMAC_KEY_ENV: ""})
    data = json.loads(as_json.stdout)
    assert as_json.exit_code == 3 and data["status"] == "unverified" and data["ok"] is False
    conn = db(path)
    conn.execute("DELETE FROM audit_events WHERE seq > 5")
    write_head(conn, heads[0])
    rolled = runner.invoke(app, ["audit", "verify", str(path), "--anchors", str(anchor_dir)],
                           env={HMAC_KEY_ENV: KEY.decode()})
    assert rolled.exit_code == 1 and "rolled_back" in rolled.stderr
    conn.execute("DELETE FROM audit_events")
    conn.execute("DELETE FROM audit_head")
    wiped = runner.invoke(app, ["audit", "verify", str(path)], env={HMAC_KEY_ENV: ""})
    assert wiped.exit_code == 1 and "head_missing" in wiped.stderr
