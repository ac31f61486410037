"""The PostgreSQL chain store against a real PostgreSQL 15 started by the suite.

Store-level tests drive :class:`PostgresChainStore` through the ``ChainStore`` seam with a
small chain of their own (SHA-256 links in the v2 form), so they hold whatever the writer
above does; the end-to-end tests go through ``AuditLog(url)`` and ``verify_log(url)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from components import missing, require
from conftest import KEY, event
from emulators import LoopbackListener
from pgserver import PASSWORD_ROLE, PostgresServer, free_port, start_postgres

from residency_sdk.audit import AuditLog, verify_log
from residency_sdk.audit.chain import canonical
from residency_sdk.audit.postgres_store import (
    COPY_THRESHOLD,
    PostgresChainStore,
    redact_url,
)
from residency_sdk.audit.store import Head, Row
from residency_sdk.errors import AuditFormatError, AuditUnavailable, ChainRefused

psycopg = require("psycopg", "pip install 'residency-sdk[postgres]'")
POSTGRES_HINT = ("apt-get install postgresql (15; the suite starts its own server as the "
                 "postgres user: tests/pgserver.py)")

GENESIS = hashlib.sha256(b"test genesis").hexdigest()
META = {"format": "residency.audit.log/v2", "log_id": "a" * 32, "chain": "sha256",
        "created": "2026-12-01T00:00:00+00:00"}


def genesis(meta: Any) -> Head:
    return Head(0, GENESIS, 0, None)


def link(seq: int, prev: str, payload: str) -> str:
    return hashlib.sha256(f"{seq}\n{prev}\n{payload}".encode()).hexdigest()


def extender(payloads: list[str], seen: list[Any] | None = None) -> Callable[..., Any]:
    """An ``extend`` that links ``payloads`` onto the head (and records what it saw)."""

    def extend(head: Head | None, last: tuple[int, str] | None) -> tuple[list[Row], Head]:
        if seen is not None:
            seen.append((head, last))
        assert head is not None, "head row missing"
        assert (last or (0, GENESIS)) == (head.seq, head.hash), "head is not the last row"
        seq, prev, rows = head.seq, head.hash, []
        for payload in payloads:
            seq += 1
            digest = link(seq, prev, payload)
            rows.append((seq, payload, prev, digest, None))
            prev = digest
        return rows, Head(seq, prev, head.counter + 1, None)

    return extend


def assert_linear(store: PostgresChainStore) -> tuple[Head, list[Row]]:
    """The stored chain links from genesis to the head without a gap; returns both."""
    with store.read() as snap:
        head = snap.head()
        rows = list(snap.rows())
    assert head is not None
    prev = GENESIS
    for expected_seq, (seq, payload, prev_hash, hash_, _mac) in enumerate(rows, start=1):
        assert seq == expected_seq
        assert prev_hash == prev
        assert hash_ == link(seq, prev, payload)
        prev = hash_
    assert (head.seq, head.hash) == (len(rows), prev)
    return head, rows


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database of the session's server (dropped afterwards)."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresChainStore]:
    s = PostgresChainStore(pg_url)
    s.initialise(META, genesis)
    yield s
    s.close()


def sql(url: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run SQL directly, as a DBA (or an attacker with the database's password) would."""
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement.encode(), params or None)
        return list(cur.fetchall()) if cur.description else []


# --- creation ----------------------------------------------------------------------------


def test_initialise_creates_tables_meta_and_genesis_head_once(pg_url: str) -> None:
    calls: list[Any] = []

    def counted_genesis(meta: Any) -> Head:
        calls.append(dict(meta))
        return Head(0, GENESIS, 0, "seal")

    store = PostgresChainStore(pg_url)
    assert store.initialise(META, counted_genesis) == META
    other = {**META, "log_id": "b" * 32}
    assert PostgresChainStore(pg_url).initialise(other, counted_genesis) == META  # kept
    assert calls == [META]
    assert sql(pg_url, "SELECT id, seq, hash, counter, mac FROM residency_audit_head") == [
        (1, 0, GENESIS, 0, "seal")]
    columns = sql(pg_url, "SELECT table_name, column_name, data_type FROM "
                  "information_schema.columns WHERE table_name LIKE 'residency_audit_%' "
                  "ORDER BY table_name, ordinal_position")
    assert columns == [
        ("residency_audit_events", "seq", "bigint"), ("residency_audit_events", "event", "text"),
        ("residency_audit_events", "prev_hash", "text"),
        ("residency_audit_events", "hash", "text"), ("residency_audit_events", "mac", "text"),
        ("residency_audit_head", "id", "integer"), ("residency_audit_head", "seq", "bigint"),
        ("residency_audit_head", "hash", "text"), ("residency_audit_head", "counter", "bigint"),
        ("residency_audit_head", "mac", "text"),
        ("residency_audit_meta", "key", "text"), ("residency_audit_meta", "value", "text")]
    with pytest.raises(psycopg.errors.CheckViolation):  # one head row, ever
        sql(pg_url, "INSERT INTO residency_audit_head VALUES (2, 0, 'x', 0, NULL)")


def _initialise_worker(url: str, log_id: str, barrier: Any, out: Any) -> None:
    store = PostgresChainStore(url)
    barrier.wait()
    try:
        out.put(store.initialise({**META, "log_id": log_id}, genesis)["log_id"])
    except Exception as exc:  # reported to the parent, which fails the test
        out.put(f"error: {exc!r}")
    finally:
        store.close()


def test_concurrent_initialise_from_many_processes_creates_one_log(pg_url: str) -> None:
    ctx = multiprocessing.get_context("fork")
    n = 8
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_initialise_worker, args=(pg_url, f"{i:032x}", barrier, out))
             for i in range(n)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert len(set(results)) == 1, results  # every process sees the same, single log
    winner = results[0]
    assert winner in {f"{i:032x}" for i in range(n)}
    assert sql(pg_url, "SELECT value FROM residency_audit_meta WHERE key = 'log_id'") == [
        (winner,)]
    assert sql(pg_url, "SELECT count(*) FROM residency_audit_head") == [(1,)]


def test_a_log_without_meta_but_with_events_is_not_recreated(store: PostgresChainStore,
                                                             pg_url: str) -> None:
    store.commit(extender(["e1", "e2"]))
    sql(pg_url, "DELETE FROM residency_audit_meta")
    with pytest.raises(AuditFormatError, match="no residency_audit_meta"):
        PostgresChainStore(pg_url).initialise(META, genesis)


def test_tables_of_another_layout_are_refused(pg_url: str) -> None:
    sql(pg_url, "CREATE TABLE residency_audit_events (seq text PRIMARY KEY, body jsonb)")
    with pytest.raises(AuditFormatError, match="residency_audit_events is not a residency"):
        PostgresChainStore(pg_url).initialise(META, genesis)


def test_one_log_per_schema_chosen_in_the_url(postgres_server: PostgresServer,
                                              pg_url: str) -> None:
    sql(pg_url, "CREATE SCHEMA audit_de")
    sql(pg_url, "CREATE SCHEMA audit_fr")
    de = PostgresChainStore(pg_url + "?options=-csearch_path%3Daudit_de")
    fr = PostgresChainStore(pg_url + "?options=-csearch_path%3Daudit_fr")
    de.initialise(META, genesis)
    fr.initialise({**META, "log_id": "f" * 32}, genesis)
    de.commit(extender(["de-1", "de-2"]))
    fr.commit(extender(["fr-1"]))
    assert assert_linear(de)[0].seq == 2
    assert assert_linear(fr)[0].seq == 1
    tables = sql(pg_url, "SELECT schemaname, count(*) FROM pg_tables WHERE tablename LIKE "
                 "'residency_audit_%' GROUP BY schemaname ORDER BY schemaname")
    assert tables == [("audit_de", 3), ("audit_fr", 3)]
    missing = PostgresChainStore(pg_url + "?options=-csearch_path%3Daudit_xx")
    with pytest.raises(AuditUnavailable, match="create the schema"):
        missing.initialise(META, genesis)


# --- commits -----------------------------------------------------------------------------


def test_commit_links_rows_moves_the_head_and_counts_commits(store: PostgresChainStore
                                                             ) -> None:
    seen: list[Any] = []
    head = store.commit(extender(["one"], seen))
    assert seen == [(Head(0, GENESIS, 0, None), None)]
    assert (head.seq, head.counter) == (1, 1)
    # one row (INSERT), a pipelined batch (executemany) and a COPY batch
    many = [f"ev-{i}" for i in range(COPY_THRESHOLD + 5)]
    store.commit(extender(["two", "three"], seen))
    head = store.commit(extender(many, seen))
    assert seen[1][1] == (1, seen[1][0].hash)
    assert seen[2][1] == (3, seen[2][0].hash)
    assert (head.seq, head.counter) == (3 + len(many), 3)
    stored_head, rows = assert_linear(store)
    assert stored_head == head
    assert [r[1] for r in rows] == ["one", "two", "three", *many]


def test_a_failing_extend_writes_nothing(store: PostgresChainStore, pg_url: str) -> None:
    store.commit(extender(["kept"]))

    def broken(head: Head | None, last: Any) -> Any:
        raise RuntimeError("refused by the writer")

    with pytest.raises(RuntimeError, match="refused by the writer"):
        store.commit(broken)

    def duplicated(head: Head | None, last: Any) -> Any:  # the same seq twice
        rows, new = extender(["lost"])(head, last)
        return rows * 2, new

    with pytest.raises(AuditFormatError):  # the driver's error, translated; all rolled back
        store.commit(duplicated)
    head, rows = assert_linear(store)
    assert (head.seq, head.counter, [r[1] for r in rows]) == (1, 1, ["kept"])
    store.commit(extender(["after"]))  # the store still works
    assert assert_linear(store)[0].seq == 2


def _commit_worker(url: str, worker: int, threads: int, commits: int, out: Any) -> None:
    store = PostgresChainStore(url)
    errors: list[str] = []

    def run(t: int) -> None:
        try:
            for c in range(commits):
                store.commit(extender([f"w{worker}-t{t}-c{c}-{k}" for k in range(3)]))
        except Exception as exc:
            errors.append(repr(exc))

    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    store.close()
    out.put(errors)


def test_concurrent_writers_in_processes_and_threads_keep_one_linear_chain(
        store: PostgresChainStore, pg_url: str) -> None:
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs, threads, commits = 3, 4, 25
    workers = [ctx.Process(target=_commit_worker, args=(pg_url, w, threads, commits, out))
               for w in range(procs)]
    for p in workers:
        p.start()
    errors = [out.get(timeout=120) for _ in workers]
    for p in workers:
        p.join(timeout=60)
    assert errors == [[]] * procs
    head, rows = assert_linear(store)
    assert head.counter == procs * threads * commits
    assert len(rows) == len({r[1] for r in rows}) == procs * threads * commits * 3


def test_a_forked_child_gets_its_own_connection(store: PostgresChainStore) -> None:
    store.commit(extender(["parent-1"]))  # the parent's connection is open now
    pid = os.fork()
    if pid == 0:  # the child: append through the inherited store, then leave at once
        code = 1
        try:
            store.commit(extender(["child-1"]))
            store.close()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    store.commit(extender(["parent-2"]))  # the parent's session survived the child
    assert [r[1] for r in assert_linear(store)[1]] == ["parent-1", "child-1", "parent-2"]


def test_a_child_leaving_a_read_block_does_not_end_the_parents_snapshot(
        store: PostgresChainStore) -> None:
    store.commit(extender([f"e{i}" for i in range(3)]))
    with store.read() as snap:
        pid = os.fork()
        if pid == 0:  # the child leaves the block, which closes its copy of the connection
            try:
                snap._conn.close()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        assert snap.head() is not None and len(list(snap.rows())) == 3


def test_commits_are_durable_even_if_the_role_turns_synchronous_commit_off(
        store: PostgresChainStore, pg_url: str) -> None:
    dbname = pg_url.rsplit("/", 1)[1]
    sql(pg_url, f'ALTER DATABASE "{dbname}" SET synchronous_commit = off')
    fresh = PostgresChainStore(pg_url)
    with fresh.read() as snap:
        assert snap._conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
    with psycopg.connect(pg_url) as conn:  # the database default really is off
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("off",)


# --- snapshots ---------------------------------------------------------------------------


def test_a_snapshot_is_consistent_while_writers_go_on(store: PostgresChainStore,
                                                      pg_url: str) -> None:
    store.commit(extender([f"a{i}" for i in range(50)]))
    with store.read() as snap:
        head = snap.head()
        writer = PostgresChainStore(pg_url)
        writer.commit(extender(["written during the read"]))  # not blocked by the reader
        writer.close()
        rows = list(snap.rows())
        assert snap.head() == head
        assert snap.meta() == META
        assert [r[0] for r in snap.rows(start=48)] == [48, 49, 50]
    assert head is not None and head.seq == 50 and len(rows) == 50
    assert assert_linear(store)[0].seq == 51


def test_rows_stream_through_a_server_side_cursor(store: PostgresChainStore) -> None:
    store.commit(extender([f"e{i}" for i in range(5000)]))
    with store.read() as snap:
        stream = snap.rows()
        first = next(stream)
        cursors = snap._conn.execute("SELECT name FROM pg_cursors").fetchall()
        rest = sum(1 for _ in stream)
    assert first[0] == 1 and rest == 4999
    assert [c[0] for c in cursors] == ["residency_audit_rows_1"]


def test_rows_outside_the_chain_are_reported(store: PostgresChainStore, pg_url: str) -> None:
    store.commit(extender(["e1", "e2"]))
    sql(pg_url, "INSERT INTO residency_audit_events VALUES (0, 'x', 'y', 'z', NULL), "
        "(-5, 'x', 'y', 'z', NULL)")
    with store.read() as snap:
        assert snap.outside_chain() == [-5, 0]
        assert [r[0] for r in snap.rows()] == [1, 2]


def test_a_wiped_log_reads_as_headless_not_as_new(store: PostgresChainStore,
                                                  pg_url: str) -> None:
    store.commit(extender(["e1", "e2"]))
    sql(pg_url, "DELETE FROM residency_audit_events")
    sql(pg_url, "DELETE FROM residency_audit_head")
    # reopening does not start a fresh chain: the meta is still there
    assert PostgresChainStore(pg_url).initialise({**META, "log_id": "c" * 32},
                                                 genesis) == META
    with store.read() as snap:
        assert snap.head() is None
        assert list(snap.rows()) == []
    seen: list[Any] = []
    with pytest.raises(AssertionError, match="head row missing"):
        store.commit(extender(["after the wipe"], seen))
    assert seen == [(None, None)]
    sql(pg_url, "DROP TABLE residency_audit_head")
    with store.read() as snap:  # a dropped table reads as a missing head too
        assert snap.head() is None and snap.meta() == META


def test_reading_a_database_without_a_log_is_a_format_error(pg_url: str) -> None:
    with pytest.raises(AuditFormatError, match="no residency audit log"), \
            PostgresChainStore(pg_url).read():
        pass


# --- failures and secrets ----------------------------------------------------------------


def test_server_down_is_unavailable_and_the_store_recovers() -> None:
    try:
        server = start_postgres()
    except Exception as exc:  # the session fixture decides skip/fail; this needs its own
        missing(f"PostgreSQL unavailable: {exc}", POSTGRES_HINT)
    try:
        url = server.create_database()
        store = PostgresChainStore(url, connect_timeout=3)
        store.initialise(META, genesis)
        store.commit(extender(["before"]))
        server.stop()
        with pytest.raises(AuditUnavailable, match=r"audit database postgresql://postgres@"):
            store.commit(extender(["while down"]))
        with pytest.raises(AuditUnavailable, match="running and reachable"):
            store.commit(extender(["while down"]))  # reconnecting fails too
        with pytest.raises(AuditUnavailable), store.read():
            pass
        server.start()
        store.commit(extender(["after"]))  # reconnected
        assert [r[1] for r in assert_linear(store)[1]] == ["before", "after"]
        store.close()
    finally:
        server.destroy()


def test_no_password_in_names_or_messages(postgres_server: PostgresServer,
                                          pg_url: str) -> None:
    secret = "Sup3r-s3cret-pw"
    postgres_server.execute(f"DROP ROLE IF EXISTS {PASSWORD_ROLE}")
    postgres_server.execute(f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{secret}'")
    dbname = pg_url.rsplit("/", 1)[1]
    good = postgres_server.url_for(dbname, user=PASSWORD_ROLE, password=secret)
    wrong = postgres_server.url_for(dbname, user=PASSWORD_ROLE, password=secret + "x")
    unreachable = f"postgresql://{PASSWORD_ROLE}:{secret}@127.0.0.1:{free_port()}/{dbname}"
    in_query = f"postgresql://127.0.0.1:{free_port()}/{dbname}?user=u&password={secret}"
    for url, why in ((wrong, "password authentication failed"),
                     (unreachable, "Connection refused"), (in_query, "Connection refused")):
        store = PostgresChainStore(url, connect_timeout=2)
        assert secret not in store.name and secret not in repr(store)
        assert "***" in store.name
        with pytest.raises(AuditUnavailable, match=why) as caught:
            store.initialise(META, genesis)
        assert secret not in str(caught.value)
    store = PostgresChainStore(good)
    assert store.name == postgres_server.url_for(dbname, user=PASSWORD_ROLE, password="***")
    with pytest.raises(AuditUnavailable, match=r"refused.*grant") as caught:
        store.initialise(META, genesis)  # no CREATE privilege on the schema
    assert secret not in str(caught.value)
    assert redact_url("postgres://u:p@h/d?password=p&sslmode=require") == (
        "postgres://u:***@h/d?password=***&sslmode=require")


def test_a_least_privileged_writer_appends_but_cannot_rewrite(
        store: PostgresChainStore, postgres_server: PostgresServer, pg_url: str) -> None:
    dbname = pg_url.rsplit("/", 1)[1]
    role = f"writer_{dbname[-8:]}"
    postgres_server.execute(f"CREATE ROLE {role} LOGIN")
    for grant in (f"GRANT SELECT ON residency_audit_meta, residency_audit_events, "
                  f"residency_audit_head TO {role}",
                  f"GRANT INSERT ON residency_audit_events TO {role}",
                  f"GRANT UPDATE ON residency_audit_head TO {role}"):
        sql(pg_url, grant)
    url = postgres_server.url_for(dbname, user=role)
    writer = PostgresChainStore(url)
    assert writer.initialise({**META, "log_id": "d" * 32}, genesis) == META
    writer.commit(extender(["by the writer role"]))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        sql(url, "DELETE FROM residency_audit_events")
    assert assert_linear(store)[0].seq == 1
    writer.close()


def test_not_a_postgres_url_is_refused() -> None:
    with pytest.raises(AuditFormatError, match="not a PostgreSQL URL"):
        PostgresChainStore("mysql://u:pw@h/db")
    with pytest.raises(AuditFormatError, match="not a valid PostgreSQL URL") as caught:
        PostgresChainStore("postgresql://u:pw@h:notaport/db?sslmode=x&&=")
    assert "pw" not in str(caught.value).replace("password", "")


# --- end to end: AuditLog and verify_log on a URL ----------------------------------------


def test_auditlog_on_a_url_appends_and_verifies(pg_url: str) -> None:
    first = event(0)
    with AuditLog(pg_url, hmac_key=KEY) as log:
        assert log.name == pg_url and log.keyed
        log.append(first)
        log.append_many([event(i) for i in range(1, 40)])
        log.append(event(40), durable=False)
        log.flush()
        assert log.head().seq == 41
    result = verify_log(pg_url, hmac_key=KEY)
    assert result.status == "verified" and result.events == 41, result
    assert verify_log(pg_url, use_env_key=False).status == "unverified"
    with AuditLog(pg_url, hmac_key=KEY) as again:  # reopened: the same log goes on
        again.append(event(41))
    assert verify_log(pg_url, hmac_key=KEY).events == 42
    rows = sql(pg_url, "SELECT event FROM residency_audit_events WHERE seq = 1")
    assert rows == [(canonical(first),)]  # stored verbatim, the bytes that were hashed


def test_auditlog_url_with_password_never_shows_it(postgres_server: PostgresServer) -> None:
    secret = "An0ther-s3cret"
    url = f"postgresql://app:{secret}@127.0.0.1:{free_port()}/audit"
    with pytest.raises(AuditUnavailable) as caught:
        AuditLog(url)
    assert secret not in str(caught.value) and "app:***@" in str(caught.value)


@pytest.fixture
def filled(pg_url: str) -> str:
    """A keyed log of 20 events in two commits (checkpoint after the first)."""
    with AuditLog(pg_url, hmac_key=KEY) as log:
        log.append_many([event(i) for i in range(10)])
        log.append_many([event(i) for i in range(10, 20)])
    assert verify_log(pg_url, hmac_key=KEY).ok
    return pg_url


def _broken(url: str, **kwargs: Any) -> Any:
    result = verify_log(url, hmac_key=KEY, **kwargs)
    assert result.status == "broken", result
    assert result.broken is not None
    return result.broken


def test_an_edited_row_breaks_verification(filled: str) -> None:
    sql(filled, "UPDATE residency_audit_events SET event = replace(event, 'charite-berlin', "
        "'charite-munich') WHERE seq = 7")
    assert (_broken(filled).seq, _broken(filled).kind) == (7, "hash_mismatch")


def test_a_deleted_row_breaks_verification(filled: str) -> None:
    sql(filled, "DELETE FROM residency_audit_events WHERE seq = 12")
    assert _broken(filled).seq == 12


def test_a_cut_tail_breaks_verification_and_stops_writers(filled: str) -> None:
    writer = AuditLog(filled, hmac_key=KEY)
    sql(filled, "DELETE FROM residency_audit_events WHERE seq > 15")
    assert _broken(filled).kind == "truncated"
    with pytest.raises(ChainRefused, match=r"truncated|cut off"):
        writer.append(event(99))
    with contextlib.suppress(AuditUnavailable):
        writer.close()


def test_a_row_outside_the_chain_breaks_verification(filled: str) -> None:
    sql(filled, "INSERT INTO residency_audit_events SELECT 0, event, prev_hash, hash, mac "
        "FROM residency_audit_events WHERE seq = 1")
    assert _broken(filled).kind == "outside_chain"


def test_a_wiped_log_never_verifies_and_is_never_appended_to(filled: str) -> None:
    sql(filled, "DELETE FROM residency_audit_events")
    sql(filled, "DELETE FROM residency_audit_head")
    assert _broken(filled).kind == "head_missing"
    with pytest.raises(ChainRefused, match="wiped"):
        AuditLog(filled, hmac_key=KEY)
    assert sql(filled, "SELECT count(*) FROM residency_audit_events") == [(0,)]


def test_a_rolled_back_log_is_caught_by_its_checkpoint_and_its_writer(filled: str) -> None:
    writer = AuditLog(filled, hmac_key=KEY)
    old_head = sql(filled, "SELECT seq, hash, counter, mac FROM residency_audit_head")[0]
    writer.append_many([event(i) for i in range(20, 30)])
    checkpoint = writer.checkpoint()
    assert verify_log(filled, hmac_key=KEY, anchors=[checkpoint]).ok
    # An attacker with the database's password: drop the newest events, write the old
    # (validly sealed) head back. Without an anchor this is a consistent older log.
    sql(filled, "DELETE FROM residency_audit_events WHERE seq > 20")
    sql(filled, "UPDATE residency_audit_head SET seq = %s, hash = %s, counter = %s, mac = %s",
        old_head)
    assert _broken(filled, anchors=[checkpoint]).kind == "rolled_back"
    with pytest.raises(ChainRefused, match="rolled back"):
        writer.append(event(99))
    with contextlib.suppress(AuditUnavailable):
        writer.close()


def test_auditlog_keeps_events_while_the_server_is_down() -> None:
    try:
        server = start_postgres()
    except Exception as exc:
        missing(f"PostgreSQL unavailable: {exc}", POSTGRES_HINT)
    try:
        url = server.create_database()
        log = AuditLog(url, hmac_key=KEY)
        log.append(event(0))
        server.stop()
        with pytest.raises(AuditUnavailable, match="running and reachable"):
            log.append(event(1))  # not durable: the caller learns it at once
        server.start()
        log.append(event(2))  # the queued event 1 goes first, then 2
        log.close()
        result = verify_log(url, hmac_key=KEY)
        assert result.ok and result.events == 3
        stored = [json.loads(r[0])["object_key"] for r in sql(
            url, "SELECT event FROM residency_audit_events ORDER BY seq")]
        assert stored == [event(i).object_key for i in range(3)]
    finally:
        server.destroy()


class CommitCutter(LoopbackListener):
    """A TCP proxy to PostgreSQL. Once armed, it cuts the connection that sends the
    writer's final ``...; COMMIT``: with ``deliver=True`` after passing it to the server
    (the commit happens, its acknowledgement is lost), else before (it never arrives)."""

    def __init__(self, upstream_port: int, *, deliver: bool) -> None:
        super().__init__()
        self.upstream_port = upstream_port
        self.deliver = deliver
        self.armed = threading.Event()
        self.cuts = 0

    def handle(self, conn: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        cut = threading.Event()
        threading.Thread(target=self._pump, args=(conn, upstream, cut, True),
                         daemon=True).start()
        threading.Thread(target=self._pump, args=(upstream, conn, cut, False),
                         daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, cut: threading.Event,
              from_client: bool) -> None:
        try:
            while not cut.is_set():
                data = src.recv(65536)
                if not data or cut.is_set():
                    break  # nothing from the server passes once the cut is decided
                if from_client and self.armed.is_set() and b"; COMMIT" in data:
                    self.armed.clear()
                    cut.set()
                    self.cuts += 1
                    if self.deliver:
                        dst.sendall(data)
                        time.sleep(0.3)  # the server commits; its answer is dropped
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


@pytest.mark.parametrize("deliver", [True, False], ids=["answer-lost", "commit-lost"])
def test_a_commit_cut_off_in_the_network_is_recorded_exactly_once(pg_url: str,
                                                                  deliver: bool) -> None:
    port, dbname = pg_url.rsplit(":", 1)[1].split("/")
    with CommitCutter(int(port), deliver=deliver) as proxy:
        url = f"postgresql://postgres@127.0.0.1:{proxy.port}/{dbname}"
        log = AuditLog(url, hmac_key=KEY)
        log.append(event(0))
        proxy.armed.set()
        if deliver:
            log.append(event(1))  # committed: the store finds its head and says so
        else:
            with pytest.raises(AuditUnavailable):
                log.append(event(1))  # not committed: kept and retried by the next one
        assert proxy.cuts == 1
        log.append(event(2))
        log.close()
    result = verify_log(pg_url, hmac_key=KEY)
    assert result.ok and result.events == 3, result
    keys = [json.loads(r[0])["object_key"] for r in sql(
        pg_url, "SELECT event FROM residency_audit_events ORDER BY seq")]
    assert keys == [event(i).object_key for i in range(3)]  # each once, in order
