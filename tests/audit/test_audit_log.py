"""The audit log writer: the v2 chain, durability modes, failures, keys, bad input, wiring."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import KEY, event
from typer.testing import CliRunner

import residency_sdk as rs
from residency_sdk.audit import AuditLog, SQLiteChainStore, open_store, verify_log
from residency_sdk.audit.chain import HMAC_KEY_ENV, LogInfo, canonical, key_id, link_hash
from residency_sdk.audit.verify import VerifyResult
from residency_sdk.cli.app import app
from residency_sdk.errors import (
    AuditError,
    AuditFormatError,
    AuditKeyError,
    AuditLogClosed,
    AuditUnavailable,
    ResidencyError,
)
from residency_sdk.events import EVENT_SCHEMA


def stored(path: Path) -> list[tuple[int, str, str, str, str | None]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT seq, event, prev_hash, hash, mac FROM audit_events "
                            "ORDER BY seq").fetchall()
    finally:
        conn.close()


def meta_of(path: Path) -> dict[str, str]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT key, value FROM audit_meta"))
    finally:
        conn.close()


def test_append_chains_events_from_the_logs_own_genesis(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with AuditLog(path) as log:
        genesis = log.head()
        assert (genesis.seq, genesis.counter) == (0, 0)
        for i in range(5):
            log.append(event(i))
        assert len(log) == 5 and log.head().counter == 5
    meta = meta_of(path)
    assert meta["format"] == "residency.audit.log/v2" and meta["chain"] == "sha256"
    info = LogInfo.from_meta(meta, str(path))
    assert genesis.hash == info.genesis != "0" * 64  # bound to this log's identity
    rows = stored(path)
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5]
    prev = info.genesis
    for seq, text, prev_hash, digest, mac in rows:
        assert prev_hash == prev
        assert digest == link_hash(seq, prev_hash, text)
        assert mac is None
        prev = digest
    first = json.loads(rows[2][1])
    assert first["schema"] == EVENT_SCHEMA == "residency.audit/v3"
    assert first["object_key"] == "charite-berlin/scan-2.dcm" and first["size"] == 1002
    result = verify_log(path)
    assert result.ok and result.events == 5 and result.head_hash == prev
    assert not result.keyed and not result.hmac_checked and result.head_counter == 5


def test_reopened_log_continues_the_same_chain(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with AuditLog(path) as log:
        log.append(event(0))
        first_id = log.info.log_id
    with AuditLog(path) as log:
        log.append(event(1))
        assert log.head().seq == 2 and log.info.log_id == first_id
    assert verify_log(path).events == 2


def test_durable_append_makes_every_earlier_event_durable(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    log = AuditLog(path)
    for i in range(20):
        log.append(event(i), durable=False)
    log.append(event(20))  # durable: so is everything appended before it
    keys = [json.loads(r[1])["object_key"] for r in stored(path)]
    assert keys[:21] == [f"charite-berlin/scan-{i}.dcm" for i in range(21)]
    log.close()
    assert verify_log(path).events == 21


def test_non_durable_events_are_committed_promptly_in_order(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with AuditLog(path) as log:
        start = time.monotonic()
        log.append(event(0), durable=False)
        while verify_log(path).events < 1:  # the flusher commits it, nobody flushes
            assert time.monotonic() - start < 5, "a durable=False event was not committed"
            time.sleep(0.001)
        latency = time.monotonic() - start
        log.append_many([event(i) for i in range(1, 50)], durable=False)
        log.flush()
        assert verify_log(path).events == 50
    sizes = [json.loads(r[1])["size"] for r in stored(path)]
    assert sizes == [1000 + i for i in range(50)]
    assert latency < 1.0, latency  # typically a few milliseconds


def test_non_durable_events_gather_for_the_group_window(tmp_path: Path) -> None:
    """One commit per window, not per event: events appended within ``group_window``
    share a commit, which comes after the window, not before it."""
    path = tmp_path / "a.db"
    with AuditLog(path, group_window=0.4) as log:
        start = time.monotonic()
        for i in range(5):
            log.append(event(i), durable=False)
        time.sleep(0.1)
        early = verify_log(path).events  # inside the window: nothing committed yet
        while verify_log(path).events < 5:
            assert time.monotonic() - start < 5, "the window's events were not committed"
            time.sleep(0.01)
        waited = time.monotonic() - start
        log.flush()  # the commit's bookkeeping may trail its rows by a moment
        assert early == 0 and log.commits == 1
        assert waited >= 0.35, waited
    with AuditLog(path, group_window=0) as log:  # no window: committed at once
        start = time.monotonic()
        log.append(event(5), durable=False)
        while verify_log(path).events < 6:
            assert time.monotonic() - start < 5
            time.sleep(0.001)


def test_an_event_may_allow_a_longer_wait_until_an_impatient_one_comes(
        tmp_path: Path) -> None:
    """``within=`` lets an event wait longer than the log's window (fewer commits); an
    event with the default window queued behind it hurries the commit for both."""
    path = tmp_path / "a.db"
    with AuditLog(path, group_window=0.01) as log:
        start = time.monotonic()
        log.append(event(0), durable=False, within=0.8)
        log.append_canonical(canonical(event(1)), durable=False, within=0.8)
        time.sleep(0.3)
        assert verify_log(path).events == 0  # a 10 ms window would have committed them
        log.append(event(2), durable=False)  # the log's own window: 10 ms
        while verify_log(path).events < 3:
            assert time.monotonic() - start < 0.7, "the impatient event did not hurry it"
            time.sleep(0.005)
        log.flush()  # the commit's bookkeeping may trail its rows by a moment
        assert log.commits == 1
        log.append(event(3), durable=False, within=0.3)
        while verify_log(path).events < 4:  # alone, it waits its own window
            assert time.monotonic() - start < 10
            time.sleep(0.01)
        assert time.monotonic() - start > 0.5
        log.append(event(4), durable=False, within=float("nan"))  # at most the 1 s cap
        log.append(event(5), durable=False, within=-1)  # no wait at all
        while verify_log(path).events < 6:
            assert time.monotonic() - start < 10
            time.sleep(0.005)


def test_a_durable_append_or_flush_does_not_wait_for_the_window(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with AuditLog(path, group_window=1.0) as log:
        start = time.monotonic()
        log.append(event(0), durable=False)
        log.append(event(1))  # durable: commits the queued event with it
        log.append(event(2), durable=False)
        log.flush()
        assert time.monotonic() - start < 0.5
        assert verify_log(path).events == 3


@pytest.mark.parametrize("window", [-0.1, 1.5, "20ms", True, None, float("nan")])
def test_a_bad_group_window_is_refused_naming_it(tmp_path: Path, window: object) -> None:
    with pytest.raises(rs.InputError, match=r"group_window=.*seconds from 0 to 1"):
        AuditLog(tmp_path / "a.db", group_window=window)  # type: ignore[arg-type]
    assert not (tmp_path / "a.db").exists()  # refused before the log is created


def test_close_commits_what_is_queued(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    log = AuditLog(path)
    log.append_many([event(i) for i in range(7)], durable=False)
    log.close()
    assert verify_log(path).events == 7


def test_concurrent_durable_appends_share_commits(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    log = AuditLog(path)
    per_thread = 200

    def work(t: int) -> None:
        for i in range(per_thread):
            log.append(event(i, actor=f"thread-{t}"))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    commits = log.commits
    log.close()
    result = verify_log(path)
    assert result.ok and result.events == 8 * per_thread
    assert commits < 8 * per_thread, "every event paid for its own commit"
    by_thread: dict[str, list[int]] = {}
    for _, text, _, _, _ in stored(path):
        data = json.loads(text)
        by_thread.setdefault(data["actor"], []).append(data["size"])
    assert all(sizes == sorted(sizes) for sizes in by_thread.values())  # each in its order


def test_threads_share_one_log_without_waiting(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    log = AuditLog(path)

    def work(t: int) -> None:
        for i in range(250):
            log.append(event(i, actor=f"thread-{t}"), durable=False)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    result = verify_log(path)
    assert result.ok and result.events == 2000


class _Space:
    """Space left in the log's database, as its own SQLite connection sees it."""

    def __init__(self, log: AuditLog) -> None:
        self._store = log._store  # type: ignore[attr-defined]

    def execute(self, sql: str) -> None:
        with self._store._lock:  # not in the middle of the flusher's commit
            self._store._connection().execute(sql)


def _fill(log: AuditLog) -> _Space:
    """Make the log's own SQLite connection report a full database (SQLITE_FULL) from its
    next growth on: the same error a full disk gives, on the real commit path (a full
    disk itself is tested in a subprocess, test_audit_concurrency.py)."""
    space = _Space(log)
    space.execute("PRAGMA max_page_count = 1")  # SQLite keeps at least the current size
    return space


def test_failed_commit_keeps_its_events_and_raises_audit_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    log = AuditLog(path)
    log.append(event(0))
    conn = _fill(log)
    accepted: list[int] = []
    refused: AuditUnavailable | None = None
    for i in range(1, 20_000):
        try:
            log.append(event(i), durable=False)  # returns at once: queued in order...
        except AuditUnavailable as exc:  # ...until a commit failed: refused, not queued
            refused = exc
            break
        accepted.append(i)
        if i % 50 == 0:
            try:
                log.flush()
            except AuditUnavailable as exc:  # the queued events stay queued
                refused = exc
                break
    assert refused is not None, "the database never filled up"
    with pytest.raises(AuditUnavailable) as failed:
        log.append(event(15_000))  # durable: queued, then the commit fails
    accepted.append(15_000)  # its event stays queued, like those of the failed commits
    with pytest.raises(AuditUnavailable):  # while it lasts, durable=False says so too...
        log.append(event(15_001), durable=False)  # ...and this one is not queued
    error = failed.value
    assert not isinstance(error, sqlite3.Error) and not isinstance(
        error.__cause__, sqlite3.Error)
    assert str(path) in str(error) and "full" in str(error) and "free disk space" in str(error)
    with pytest.raises(AuditUnavailable):
        log.flush()
    conn.execute("PRAGMA max_page_count = 1073741823")  # space again
    log.flush()
    log.append(event(16_000))
    log.close()
    sizes = [json.loads(r[1])["size"] - 1000 for r in stored(path)]
    assert sizes == [0, *accepted, 16_000]  # nothing lost, nothing reordered, no duplicate
    assert verify_log(path).ok


def test_failure_reaches_every_waiting_thread(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    log = AuditLog(path)
    _fill(log)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(100):
                log.append(event(i, actor=f"t{t}"))
        except BaseException as exc:  # collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(errors) == 6 and all(type(e) is AuditUnavailable for e in errors), errors
    _Space(log).execute("PRAGMA max_page_count = 1073741823")
    log.close()
    result = verify_log(path)
    assert result.ok and 6 <= result.events <= 600  # every queued event, none twice


def test_flusher_retries_a_failed_commit_in_the_background(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    log = AuditLog(path)
    log.append(event(0))
    conn = _fill(log)
    queued = 1
    for i in range(1, 20_000):
        try:
            log.append(event(i), durable=False)
        except AuditUnavailable:  # event i was refused (not queued)
            break
        queued += 1
        if i % 50 == 0:
            with contextlib.suppress(AuditUnavailable):
                log.flush()
    else:
        pytest.fail("the database never filled up")
    conn.execute("PRAGMA max_page_count = 1073741823")
    deadline = time.monotonic() + 10
    while log._queue or log._failure is not None:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the queued events were never retried"
        time.sleep(0.01)
    assert verify_log(path).events == queued
    log.close()


def test_intents_without_an_outcome_are_listed_not_broken(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with AuditLog(path) as log:
        done = event(1, outcome="intent", operation="delete", object_key="charite-berlin/a")
        log.append(done)
        log.append(event(2, operation="delete", intent_id=done.event_id), durable=False)
        lost = event(3, outcome="intent", object_key="charite-berlin/b.dcm")
        log.append(lost)
        log.append(event(4))
    result = verify_log(path)
    assert result.ok and result.status == "verified"
    assert result.outcome_unknown == (
        (3, lost.event_id, "put", "charite-berlin", "charite-berlin/b.dcm"),)
    assert any("1 intent(s) without an outcome" in n for n in result.notes)
    assert result.to_dict()["outcome_unknown"][0]["event_id"] == lost.event_id
    out = CliRunner().invoke(app, ["audit", "verify", str(path)])
    assert out.exit_code == 0 and "1 intent(s) without an outcome" in out.stdout


def test_keyed_log_seals_every_link_and_never_stores_the_key(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    with AuditLog(path, hmac_key=KEY) as log:
        assert log.keyed and "k" * 16 not in repr(log)
        assert log.info.key_id == key_id(KEY) and log.head().mac
        log.append_many([event(i) for i in range(3)])
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("k.db"))
    assert KEY not in raw
    meta = meta_of(path)
    assert meta["chain"] == "hmac-sha256" and meta["key_id"] == key_id(KEY)
    assert meta["genesis_mac"] and meta["key_check"]
    assert all(r[4] for r in stored(path))
    checked = verify_log(path, hmac_key=KEY)
    assert checked.ok and checked.hmac_checked and checked.key_id == key_id(KEY)
    unchecked: VerifyResult = verify_log(path)
    assert unchecked.status == "unverified" and not unchecked.ok and unchecked.notes


def test_key_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HMAC_KEY_ENV, KEY.decode())
    path = tmp_path / "k.db"
    with AuditLog(path) as log:
        log.append(event(0))
        assert log.keyed
    assert verify_log(path).hmac_checked


@pytest.mark.parametrize(("create_key", "open_key", "match"), [
    (KEY, None, "is HMAC-keyed"),
    (None, KEY, "created without an HMAC key"),
    (KEY, b"x" * 32, "not the key"),
])
def test_key_mismatch_is_refused(tmp_path: Path, create_key: bytes | None,
                                 open_key: bytes | None, match: str) -> None:
    path = tmp_path / "k.db"
    AuditLog(path, hmac_key=create_key).close()
    with pytest.raises(AuditKeyError, match=match):
        AuditLog(path, hmac_key=open_key)


def test_short_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AuditKeyError, match="at least 16"):
        AuditLog(tmp_path / "k.db", hmac_key="short")


def test_bad_input_is_refused_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with AuditLog(path) as log:
        log.append(event(0))
        with pytest.raises(AuditFormatError, match="AuditEvent"):
            log.append({"operation": "put"})  # type: ignore[arg-type]
        with pytest.raises(AuditFormatError, match="naive time"):
            log.append(event(1, time=datetime(2026, 1, 1)), durable=False)
        log.append(event(2))
    assert verify_log(path).events == 2


def test_times_are_stored_in_utc(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    plus2 = timezone(timedelta(hours=2))
    with AuditLog(path) as log:
        log.append(event(0, time=datetime(2026, 6, 1, 12, 0, tzinfo=plus2)))
    (row,) = stored(path)
    assert json.loads(row[1])["time"] == "2026-06-01T10:00:00.000000Z"


def test_foreign_files_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE patients (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(AuditFormatError, match="not a residency audit log"):
        AuditLog(other)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(AuditFormatError, match="not a residency audit log"):
        AuditLog(junk)
    with pytest.raises(AuditFormatError, match="not a residency audit log"):
        verify_log(junk)
    with pytest.raises(AuditFormatError, match="no audit log"):
        verify_log(tmp_path / "missing.db")
    with pytest.raises(AuditFormatError, match="not a residency audit log"):
        verify_log(other)
    with pytest.raises(AuditUnavailable, match="folder"):
        AuditLog(tmp_path / "no-such-folder" / "a.db")
    with pytest.raises(AuditFormatError, match="URL scheme"):
        AuditLog("mysql://db/audit")
    assert issubclass(AuditFormatError, AuditError) and issubclass(AuditError, ResidencyError)


def test_version_1_log_is_refused_with_the_way_forward(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("CREATE TABLE audit_head (id INTEGER PRIMARY KEY, seq INTEGER, hash TEXT, "
                 "mac TEXT)")
    conn.executemany("INSERT INTO audit_meta VALUES (?, ?)", [
        ("format", "residency.audit.log/v1"), ("log_id", "a" * 32), ("chain", "sha256"),
        ("created", "2026-01-01T00:00:00+00:00")])
    conn.commit()
    conn.close()
    for attempt in (lambda: AuditLog(path), lambda: verify_log(path)):
        with pytest.raises(AuditFormatError, match="version 1") as info:
            attempt()
        assert "new log" in str(info.value) and "archive" in str(info.value)


def test_closed_log_refuses_appends(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.db")
    log.close()
    log.close()  # idempotent
    with pytest.raises(AuditLogClosed):
        log.append(event(0))
    with pytest.raises(AuditLogClosed):
        log.append(event(0), durable=False)


def test_open_store_dispatches_on_the_spec(tmp_path: Path) -> None:
    store = open_store(tmp_path / "a.db")
    assert isinstance(store, SQLiteChainStore) and store.name == str(tmp_path / "a.db")
    assert not (tmp_path / "a.db").exists()  # nothing created before it is used
    assert open_store(store) is store
    from residency_sdk.audit.postgres_store import PostgresChainStore

    pg = open_store("postgresql://auditor:s3cret@127.0.0.1:1/audit")
    assert isinstance(pg, PostgresChainStore) and "s3cret" not in pg.name
    assert isinstance(open_store("postgres://auditor@127.0.0.1:1/audit"), PostgresChainStore)


def test_residency_load_wires_the_log(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    res = rs.Residency.load(audit=str(path))
    de = rs.Tenant(id="charite-berlin", country="DE")
    res.check_transfer(de, "US", "phi", actor="dr-house", purpose="second opinion")
    res.check_transfer(de, "GB", "phi", actor="dr-house")
    res.emit(event(0))
    res.close()  # decisions are queued (durable=False): close makes them durable
    result = verify_log(path)
    found = [json.loads(r[1]) for r in stored(path)]
    first = next(e for e in found if e["operation"] == "transfer_check")
    assert result.ok and len([e for e in found if e["operation"] == "transfer_check"]) == 2
    assert first["outcome"] == "blocked"
    assert first["actor"] == "dr-house" and first["purpose"] == "second opinion"
    assert first["destination_country"] == "US" and first["tenant_id"] == "charite-berlin"


def test_empty_log_verifies(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    AuditLog(path).close()
    result = verify_log(path)
    assert result.ok and result.events == 0 and result.head_counter == 0
    assert result.head_hash == LogInfo.from_meta(meta_of(path), "x").genesis


@pytest.mark.parametrize("key", [KEY, b"x" * 64, b"y" * 65, bytes(range(200))])
def test_sealer_is_rfc2104_hmac_sha256(key: bytes) -> None:
    import hashlib
    import hmac

    from residency_sdk.audit.chain import Sealer, link_mac

    sealer = Sealer(key)
    for message in (b"", b"1\nabc", b"z" * 1000):
        assert sealer.hexdigest(message) == hmac.new(key, message, hashlib.sha256).hexdigest()
    assert sealer.link(7, "ab" * 32) == link_mac(key, 7, "ab" * 32)
