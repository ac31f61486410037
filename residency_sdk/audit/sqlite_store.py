"""The embedded audit store: one chain in one SQLite file (WAL, ``synchronous=FULL``).

Tables: ``audit_meta(key, value)``, ``audit_events(seq, event, prev_hash, hash, mac)``
(``seq`` is the 1-based position in the chain) and ``audit_head(id=1, seq, hash, counter,
mac)``. The head row is written with the meta in the transaction that creates the log, so
a log whose head is missing was emptied, never "new".

Every commit is one ``BEGIN IMMEDIATE`` transaction: SQLite's write lock serialises the
writers of every process, so the chain never forks, and with ``synchronous=FULL`` the WAL
is on disk when :meth:`SQLiteChainStore.commit` returns. Readers use a separate read-only
connection whose transaction is a consistent snapshot (WAL readers never block writers).

sqlite3 errors never escape: a full disk, an I/O error or a lock held past the busy
timeout raise :class:`~residency_sdk.errors.AuditUnavailable`; a file that is not a
(current) residency audit log raises :class:`~residency_sdk.errors.AuditFormatError`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from residency_sdk.audit.store import ChainSnapshot, Extend, Head, Row
from residency_sdk.errors import AuditFormatError, AuditUnavailable

_DDL = (
    "CREATE TABLE audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # seq is the 1-based position in the chain; the table is append-only by contract.
    "CREATE TABLE audit_events ("
    " seq INTEGER PRIMARY KEY, event TEXT NOT NULL, prev_hash TEXT NOT NULL,"
    " hash TEXT NOT NULL, mac TEXT)",
    # The head is kept apart from the events so a cut tail is noticed; counter grows with
    # every commit so an older head written back is noticed too.
    "CREATE TABLE audit_head ("
    " id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL,"
    " counter INTEGER NOT NULL, mac TEXT)",
)

# fork(): SQLite keeps per-process state about open files (its POSIX lock bookkeeping,
# the WAL index node) that a child would inherit without the locks it describes; a child
# that opened the same file again could then believe it holds locks it does not, and the
# parent closing its last connection could reset the WAL under the child. So every
# store's write connection is closed before fork() (waiting for a commit in flight: the
# store's lock is held across the fork), and each process reopens its own afterwards.
# Bumped in every forked child: comparing an int is cheaper than os.getpid() (a system
# call) on every commit.
_FORK_GENERATION = [0]
_STORES: weakref.WeakSet[SQLiteChainStore] = weakref.WeakSet()
_HELD: list[SQLiteChainStore] = []
# A connection that crossed a fork anyway (os.fork from C skips the hooks) is never used
# nor closed in the child; keeping a reference stops the garbage collector closing it.
_INHERITED: list[sqlite3.Connection] = []


def _before_fork() -> None:
    for store in list(_STORES):
        store._lock.acquire()
        _HELD.append(store)
        if store._conn is not None and store._generation == _FORK_GENERATION[0]:
            with contextlib.suppress(sqlite3.Error):
                store._conn.close()
            store._conn = None


def _after_fork_in_parent() -> None:
    while _HELD:
        _HELD.pop()._lock.release()


def _after_fork_in_child() -> None:
    _FORK_GENERATION[0] += 1
    while _HELD:
        store = _HELD.pop()
        store._lock = threading.Lock()  # the parent's threads are gone
        store._generation = _FORK_GENERATION[0]


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)

_FORMAT_ERRORS = frozenset({"SQLITE_NOTADB", "SQLITE_CORRUPT", "SQLITE_CORRUPT_VTAB",
                            "SQLITE_CORRUPT_SEQUENCE", "SQLITE_CORRUPT_INDEX"})


class SQLiteChainStore:
    """One audit chain in a SQLite file (the :class:`~residency_sdk.audit.store.ChainStore`
    of ``AuditLog("audit.db")``).

    Nothing is created until :meth:`initialise`; reading a missing file raises
    :class:`AuditFormatError`. Safe to share between threads (calls on the write
    connection are serialised here, as SQLite's own lock would anyway) and across
    ``fork()``: a child process opens its own connection.
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 60.0) -> None:
        self.path = Path(path)
        self.name = str(path)
        self.busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._generation = _FORK_GENERATION[0]
        _STORES.add(self)

    # --- the ChainStore protocol -------------------------------------------------------

    def initialise(self, meta: Mapping[str, str],
                   genesis: Callable[[Mapping[str, str]], Head]) -> dict[str, str]:
        """Create the log (tables, ``meta``, the genesis head) unless it exists; return the
        stored meta. Creation is one transaction under the write lock, so two processes
        creating the same file at once end with one log."""
        with self._lock:
            try:
                conn = self._connection()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    tables = {r[0] for r in conn.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'table'")}
                    if "audit_meta" not in tables:
                        if tables:
                            raise AuditFormatError(
                                f"{self.name!r} is a SQLite database but not a residency "
                                f"audit log (tables: {', '.join(sorted(tables))}): use a "
                                "new file")
                        for ddl in _DDL:
                            conn.execute(ddl)
                        conn.executemany("INSERT INTO audit_meta (key, value) VALUES (?, ?)",
                                         meta.items())
                        head = genesis(meta)
                        conn.execute(
                            "INSERT INTO audit_head (id, seq, hash, counter, mac) "
                            "VALUES (1, ?, ?, ?, ?)", (head.seq, head.hash, head.counter,
                                                       head.mac))
                        stored = dict(meta)
                    else:
                        stored = dict(conn.execute("SELECT key, value FROM audit_meta"))
                    conn.execute("COMMIT")
                except BaseException:
                    _rollback(conn)
                    raise
            except sqlite3.Error as exc:
                self._raise(exc, "create or open")
        return stored

    def commit(self, extend: Extend) -> Head:
        """Append under the write lock: read the head and the last event, call ``extend``,
        insert its rows, store its head and commit (fsync) before returning."""
        with self._lock:
            try:
                conn = self._connection()
                conn.execute("BEGIN IMMEDIATE")  # the one write lock of every process
                try:
                    row = conn.execute(
                        "SELECT seq, hash, counter, mac FROM audit_head WHERE id = 1"
                    ).fetchone()
                    head = Head(int(row[0]), str(row[1]), int(row[2]), row[3]) if row else None
                    last_row = conn.execute(
                        "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1"
                    ).fetchone()
                    last = (int(last_row[0]), str(last_row[1])) if last_row else None
                    rows, new_head = extend(head, last)
                    conn.executemany(
                        "INSERT INTO audit_events (seq, event, prev_hash, hash, mac) "
                        "VALUES (?, ?, ?, ?, ?)", rows)
                    conn.execute(
                        "INSERT INTO audit_head (id, seq, hash, counter, mac) "
                        "VALUES (1, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                        "seq = excluded.seq, hash = excluded.hash, "
                        "counter = excluded.counter, mac = excluded.mac",
                        (new_head.seq, new_head.hash, new_head.counter, new_head.mac))
                    conn.execute("COMMIT")
                except BaseException:
                    _rollback(conn)
                    raise
            except sqlite3.Error as exc:
                self._raise(exc, "append to")
        return new_head

    @contextmanager
    def read(self) -> Iterator[ChainSnapshot]:
        """A consistent snapshot, on a read-only connection (never creates the file)."""
        if not self.path.is_file():
            raise AuditFormatError(f"no audit log at {self.name!r}: check the path")
        try:
            uri = self.path.resolve().as_uri() + "?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=self.busy_timeout,
                                   isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            self._raise(exc, "open")
        try:
            try:
                conn.execute("BEGIN")
                # A deferred read transaction takes its snapshot at the first read.
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.Error as exc:
                self._raise(exc, "read")
            yield _Snapshot(conn, self)
        finally:
            conn.close()

    def close(self) -> None:
        """Close the write connection (in the process that opened it)."""
        with self._lock:
            if self._conn is not None and self._generation == _FORK_GENERATION[0]:
                self._conn.close()
            self._conn = None

    def __repr__(self) -> str:
        return f"SQLiteChainStore({self.name!r})"

    # --- internals ---------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._generation != _FORK_GENERATION[0]:  # a connection must not cross fork()
            if self._conn is not None:
                _INHERITED.append(self._conn)
            self._conn, self._generation = None, _FORK_GENERATION[0]
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout,
                                   isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                # FULL: the WAL is fsynced at every commit, so commit() returning means
                # the events are on disk.
                conn.execute("PRAGMA synchronous=FULL")
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _raise(self, exc: sqlite3.Error, doing: str) -> NoReturn:
        raise translate(exc, self.name, doing) from None


def _rollback(conn: sqlite3.Connection) -> None:
    # After SQLITE_FULL or an I/O error SQLite may already have rolled back.
    if conn.in_transaction:
        # The original error is what the caller needs to see, not the rollback's.
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def translate(exc: sqlite3.Error, name: str, doing: str) -> AuditFormatError | AuditUnavailable:
    """The residency error for a sqlite3 error (never let a raw one reach a user)."""
    code = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    if code in _FORMAT_ERRORS or "not a database" in text or "malformed" in text:
        return AuditFormatError(
            f"{name!r} is not a residency audit log, or is damaged ({text}): point at a "
            "log written by residency_sdk.audit.AuditLog, or restore this one from a backup")
    if isinstance(exc, sqlite3.OperationalError) and "no such " in text:
        return AuditFormatError(
            f"{name!r} is not a residency audit log ({text}): point at a log written by "
            "residency_sdk.audit.AuditLog")
    if code.startswith("SQLITE_FULL") or "full" in text:
        fix = "free disk space on its volume (or raise the database's size limit)"
    elif code.startswith("SQLITE_BUSY") or code.startswith("SQLITE_LOCKED") or "locked" in text:
        fix = ("another process holds its write lock past the busy timeout: find it, or "
               "raise busy_timeout")
    elif code.startswith("SQLITE_READONLY") or "readonly" in text:
        fix = "make the file and its folder writable by this process"
    elif code.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
        fix = "check that its folder exists and is writable"
    elif code.startswith("SQLITE_IOERR") or "I/O error" in text:
        fix = ("writing to its volume failed: check that the volume has free space (and "
               "the process's file size limit) and that the disk is healthy")
    else:
        fix = "check the disk and the file's permissions"
    return AuditUnavailable(
        f"audit log {name!r}: cannot {doing} it ({text}): {fix}; until then operations "
        "that must be audited are refused")


class _Snapshot:
    """One read transaction on a read-only connection."""

    def __init__(self, conn: sqlite3.Connection, store: SQLiteChainStore) -> None:
        self._conn = conn
        self._store = store

    def meta(self) -> dict[str, str]:
        """The log's meta table."""
        try:
            return dict(self._conn.execute("SELECT key, value FROM audit_meta"))
        except sqlite3.Error as exc:
            self._store._raise(exc, "read")

    def head(self) -> Head | None:
        """The recorded head, None when the row is missing."""
        try:
            row = self._conn.execute(
                "SELECT seq, hash, counter, mac FROM audit_head WHERE id = 1").fetchone()
        except sqlite3.Error as exc:
            self._store._raise(exc, "read")
        return Head(int(row[0]), str(row[1]), int(row[2]), row[3]) if row else None

    def rows(self, start: int = 1) -> Iterator[Row]:
        """Events with ``seq >= start`` in chain order, streamed in batches."""
        try:
            cur = self._conn.execute(
                "SELECT seq, event, prev_hash, hash, mac FROM audit_events WHERE seq >= ? "
                "ORDER BY seq", (max(start, 1),))
            while True:
                batch = cur.fetchmany(4096)
                if not batch:
                    return
                yield from batch
        except sqlite3.Error as exc:
            self._store._raise(exc, "read")

    def outside_chain(self) -> list[int]:
        """Positions of stored rows that cannot be in the chain (``seq <= 0``)."""
        try:
            return [int(r[0]) for r in self._conn.execute(
                "SELECT seq FROM audit_events WHERE seq <= 0 ORDER BY seq")]
        except sqlite3.Error as exc:
            self._store._raise(exc, "read")

    @property
    def connection(self) -> sqlite3.Connection:
        """The snapshot's read-only connection (for SQL aggregation in the same snapshot)."""
        return self._conn
