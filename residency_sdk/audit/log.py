"""The embedded audit log: an append-only, hash-chained SQLite (WAL) file.

One file holds one chain. Appends from several threads and several processes are
serialised by SQLite's write lock (``BEGIN IMMEDIATE``): each transaction reads the head,
links its events to it and commits, so the chain never forks. Each event is stored as its
canonical JSON with its chain fields (``seq``, ``prev_hash``, ``hash``, and ``mac`` when
the log is keyed). The key itself is never stored, only a check value that recognises it.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from residency_sdk.audit.chain import (
    GENESIS,
    HMAC_KEY_ENV,
    Sealer,
    canonical,
    coerce_key,
    head_mac,
    key_check,
    macs_equal,
)
from residency_sdk.errors import (
    AuditFormatError,
    AuditKeyError,
    AuditLogClosed,
    ChainBroken,
)
from residency_sdk.events import AuditEvent

LOG_FORMAT = "residency.audit.log/v1"
DEFAULT_BATCH_SIZE = 10_000

_DDL = (
    "CREATE TABLE IF NOT EXISTS audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # seq is the 1-based position in the chain; the table is append-only by contract.
    "CREATE TABLE IF NOT EXISTS audit_events ("
    " seq INTEGER PRIMARY KEY, event TEXT NOT NULL, prev_hash TEXT NOT NULL,"
    " hash TEXT NOT NULL, mac TEXT)",
    # The head is kept apart from the events so a truncated tail is noticed.
    "CREATE TABLE IF NOT EXISTS audit_head ("
    " id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL,"
    " mac TEXT)",
)


@dataclass(frozen=True, slots=True)
class LogInfo:
    """What an audit log says about itself (from its ``audit_meta`` table)."""

    log_id: str
    chain: str  # "sha256" or "hmac-sha256"
    created: str
    key_check: str | None

    @property
    def keyed(self) -> bool:
        """True when every link carries an HMAC."""
        return self.chain == "hmac-sha256"


def connect(path: str | Path, *, readonly: bool, timeout: float = 60.0) -> sqlite3.Connection:
    """Open an audit database (read-only for verification and reports)."""
    p = Path(path)
    if readonly:
        if not p.is_file():
            raise AuditFormatError(f"no audit log at {str(p)!r}: check the path")
        uri = p.resolve().as_uri() + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None,
                               check_same_thread=False)
    else:
        conn = sqlite3.connect(p, timeout=timeout, isolation_level=None,
                               check_same_thread=False)
    return conn


def read_info(conn: sqlite3.Connection, path: str | Path) -> LogInfo:
    """The log's identity and chain kind; :class:`AuditFormatError` for a foreign file."""
    try:
        rows = dict(conn.execute("SELECT key, value FROM audit_meta").fetchall())
    except sqlite3.DatabaseError as exc:
        raise AuditFormatError(
            f"{str(path)!r} is not a residency audit log ({exc}): point at a file written "
            "by residency_sdk.audit.AuditLog") from None
    if rows.get("format") != LOG_FORMAT:
        raise AuditFormatError(
            f"{str(path)!r} has audit format {rows.get('format')!r}, expected {LOG_FORMAT!r}: "
            "upgrade residency-sdk or point at the right file")
    return LogInfo(log_id=rows["log_id"], chain=rows["chain"], created=rows["created"],
                   key_check=rows.get("key_check"))


def check_key(info: LogInfo, key: bytes | None, path: str | Path) -> None:
    """Refuse a key that does not fit the log (missing, unexpected, or wrong)."""
    if info.keyed and key is None:
        raise AuditKeyError(
            f"audit log {str(path)!r} is HMAC-keyed: provide its key (hmac_key= or "
            f"{HMAC_KEY_ENV})")
    if not info.keyed and key is not None:
        raise AuditKeyError(
            f"audit log {str(path)!r} was created without an HMAC key but a key was given: "
            f"unset {HMAC_KEY_ENV} or use a new log file for keyed auditing")
    if key is not None and not macs_equal(info.key_check, key_check(key)):
        raise AuditKeyError(
            f"the HMAC key given is not the key audit log {str(path)!r} was created with: "
            f"use the original key ({HMAC_KEY_ENV})")


class AuditLog:
    """Append-only, tamper-evident audit log in a SQLite (WAL) file.

    ``AuditLog("audit.db")`` creates the file on first use. With ``hmac_key`` (or
    ``$RESIDENCY_AUDIT_HMAC_KEY``) every link is sealed with HMAC-SHA-256; a log's keyed-ness
    is fixed when it is created.

    Durability: by default each :meth:`append` commits (fsync) before returning. With
    ``batched=True`` events are buffered and written in one transaction by :meth:`flush`
    (automatically every ``batch_size`` events, and on :meth:`close`); they are durable once
    ``flush`` returns. Safe to share between threads; several processes may append to the
    same file at once (one chain, serialised appends).
    """

    def __init__(self, path: str | Path, *, hmac_key: bytes | str | None = None,
                 batched: bool = False, batch_size: int = DEFAULT_BATCH_SIZE,
                 busy_timeout: float = 60.0) -> None:
        if batch_size < 1:
            raise AuditFormatError(f"batch_size must be at least 1, got {batch_size!r}")
        self.path = Path(path)
        self.batched = batched
        self.batch_size = batch_size
        self._key = coerce_key(hmac_key)
        self._sealer = Sealer(self._key) if self._key else None
        self._timeout = busy_timeout
        self._lock = threading.Lock()
        self._buffer: list[str] = []
        self._closed = False
        self._pid = os.getpid()
        self._conn = self._open()
        self.info = read_info(self._conn, self.path)
        check_key(self.info, self._key, self.path)

    # --- public API --------------------------------------------------------------------

    def append(self, event: AuditEvent) -> None:
        """Add ``event`` to the chain (durable on return unless the log is batched)."""
        payload = canonical(event)
        with self._lock:
            if self._closed:
                self._ensure_open()
            if not self.batched:
                self._write((payload,))
                return
            buffer = self._buffer
            buffer.append(payload)
            if len(buffer) >= self.batch_size:
                self._flush_locked()

    def append_many(self, events: Sequence[AuditEvent]) -> None:
        """Add several events in one transaction (durable on return unless batched)."""
        payloads = [canonical(e) for e in events]
        with self._lock:
            self._ensure_open()
            if self.batched:
                self._buffer.extend(payloads)
                if len(self._buffer) >= self.batch_size:
                    self._flush_locked()
            elif payloads:
                self._write(payloads)

    def flush(self) -> None:
        """Write buffered events (batched mode); they are durable when this returns."""
        with self._lock:
            self._ensure_open()
            self._flush_locked()

    def close(self) -> None:
        """Flush and release the database. Further appends raise :class:`AuditLogClosed`."""
        with self._lock:
            if self._closed:
                return
            try:
                if os.getpid() == self._pid:
                    self._flush_locked()
            finally:
                self._closed = True
                if os.getpid() == self._pid:
                    self._conn.close()

    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last durable event (``(0, GENESIS)`` when empty)."""
        with self._lock:
            self._ensure_open()
            row = self._connection().execute(
                "SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def __len__(self) -> int:
        return self.head()[0]

    @property
    def keyed(self) -> bool:
        """True when the log seals every link with HMAC-SHA-256."""
        return self.info.keyed

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:  # never shows the key
        return (f"AuditLog({str(self.path)!r}, keyed={self.info.keyed}, "
                f"batched={self.batched})")

    # --- internals ---------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            conn = connect(self.path, readonly=False, timeout=self._timeout)
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk (WAL fsynced) before append/flush returns.
            conn.execute("PRAGMA synchronous=FULL")
            self._initialise(conn)
        except sqlite3.DatabaseError as exc:
            raise AuditFormatError(
                f"cannot open audit log {str(self.path)!r}: {exc}; point at a residency "
                "audit log or a new file") from None
        return conn

    def _initialise(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            tables = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "audit_meta" not in tables:
                if tables:
                    raise AuditFormatError(
                        f"{str(self.path)!r} is a SQLite database but not a residency audit "
                        f"log (tables: {', '.join(sorted(tables))}): use a new file")
                for ddl in _DDL:
                    conn.execute(ddl)
                meta = {
                    "format": LOG_FORMAT,
                    "log_id": uuid.uuid4().hex,
                    "chain": "hmac-sha256" if self._key else "sha256",
                    "created": datetime.now(UTC).isoformat(),
                }
                if self._key:
                    meta["key_check"] = key_check(self._key)
                conn.executemany("INSERT INTO audit_meta (key, value) VALUES (?, ?)",
                                 meta.items())
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _connection(self) -> sqlite3.Connection:
        # A SQLite connection must not cross fork(): a child process opens its own.
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            self._buffer = []
            self._conn = self._open()
        return self._conn

    def _ensure_open(self) -> None:
        if self._closed:
            raise AuditLogClosed(f"audit log {str(self.path)!r} is closed: open a new AuditLog")

    def _flush_locked(self) -> None:
        if self._buffer:
            self._write(self._buffer)
            self._buffer = []

    def _write(self, payloads: Sequence[str]) -> None:
        conn = self._connection()
        key = self._key
        conn.execute("BEGIN IMMEDIATE")  # the one write lock serialises every appender
        try:
            head = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
            seq, prev = (int(head[0]), str(head[1])) if head else (0, GENESIS)
            last = conn.execute(
                "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1").fetchone()
            if (tuple(last) if last else (0, GENESIS)) != (seq, prev):
                raise ChainBroken(
                    f"audit log {str(self.path)!r}: its last event {tuple(last or ())!r} is not "
                    f"the recorded head (seq {seq}); the log was truncated or rewritten, so "
                    "nothing more is appended: run `residency audit verify` and investigate",
                    seq=(last[0] + 1) if last else 1, kind="truncated")
            rows = []
            sha256 = hashlib.sha256
            seal = self._sealer.link if self._sealer is not None else None
            for payload in payloads:
                seq += 1
                # link_hash, inlined: this loop is the batched append's hot path.
                digest = sha256(f"{seq}\n{prev}\n{payload}".encode()).hexdigest()
                rows.append((seq, payload, prev, digest, seal(seq, digest) if seal else None))
                prev = digest
            conn.executemany(
                "INSERT INTO audit_events (seq, event, prev_hash, hash, mac) "
                "VALUES (?, ?, ?, ?, ?)", rows)
            conn.execute(
                "INSERT INTO audit_head (id, seq, hash, mac) VALUES (1, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, "
                "mac = excluded.mac",
                (seq, prev, head_mac(key, seq, prev) if key else None))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def iter_rows(conn: sqlite3.Connection, *, start: int = 1,
              batch: int = 4096) -> Iterator[tuple[int, str, str, str, str | None]]:
    """Stream ``(seq, event, prev_hash, hash, mac)`` in chain order from ``start``."""
    cur = conn.execute(
        "SELECT seq, event, prev_hash, hash, mac FROM audit_events WHERE seq >= ? ORDER BY seq",
        (start,))
    while True:
        rows = cur.fetchmany(batch)
        if not rows:
            return
        yield from rows
