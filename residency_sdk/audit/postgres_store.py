"""A shared audit chain for a fleet: three PostgreSQL tables, one linear chain.

``PostgresChainStore("postgresql://writer:pw@db.internal:5432/audit")`` implements the
:class:`~residency_sdk.audit.store.ChainStore` seam with psycopg 3, so every instance of a
service on every host appends to one chain that :func:`~residency_sdk.audit.verify_log`
checks exactly like an embedded file. One database (or one schema, chosen with the URL's
``options=-csearch_path=audit_de``) holds one log::

    residency_audit_meta   (key text primary key, value text not null)
    residency_audit_events (seq bigint primary key, event text not null,
                            prev_hash text not null, hash text not null, mac text)
    residency_audit_head   (id int primary key check (id = 1), seq bigint not null,
                            hash text not null, counter bigint not null, mac text)

``event`` is ``text``, not ``jsonb``: the stored bytes are exactly the bytes that were
hashed (``jsonb`` would reorder keys and break every link).

**One chain, serialised on the head row.** Every commit runs
``SELECT ... FROM residency_audit_head WHERE id = 1 FOR UPDATE`` first: the row lock orders
every writer of every process on every host, the transaction then reads the last event,
links its batch to it, inserts the batch and moves the head, and the lock is released only
once the commit is durable. The alternative, one chain per writer merged at verification,
would let writers proceed in parallel, but a verifier would then have to trust a merge
order and per-writer heads (a deleted writer's whole chain is indistinguishable from a
writer that never existed, unless yet another registry is kept). Serialising keeps the
format, the verifier and the anchors identical to the embedded log; the cost is one commit
at a time per database, which group commit (many events per commit) amortises: see
``docs/audit.md``, "A shared sink for fleets".

**Durability.** ``synchronous_commit`` is raised to ``on`` for the session if the server
or role has it ``off``: a commit has returned only when its WAL record is flushed.

**Connections.** One connection per store and process, guarded by a thread lock, opened on
first use, reopened after ``fork()`` (the child never touches the parent's socket) and
after a broken connection. :meth:`PostgresChainStore.read` uses its own short-lived
connection (a ``REPEATABLE READ`` snapshot streamed through a server-side cursor), so a
verification or report never holds up writers.

**Privileges.** Creating the log needs ``CREATE`` on the schema once; afterwards a writer
needs only ``SELECT`` on the three tables, ``INSERT`` on ``residency_audit_events`` and
``UPDATE`` on ``residency_audit_head``. Granting the application role nothing more (no
``UPDATE``/``DELETE`` on events) keeps it from rewriting history even with its password.

Errors: nothing from psycopg reaches the caller. A server that is down, unreachable, out of
space or refusing the role raises :class:`~residency_sdk.errors.AuditUnavailable`; tables
that exist but are not a residency audit log (or were altered) raise
:class:`~residency_sdk.errors.AuditFormatError`. The password never appears in
:attr:`PostgresChainStore.name` or in any message.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

from residency_sdk.audit.store import Extend, Head, Row
from residency_sdk.errors import AuditFormatError, AuditUnavailable

try:
    import psycopg
    from psycopg import errors as pg_errors
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict
except ImportError:  # pragma: no cover - exercised only without the extra
    psycopg = None  # type: ignore[assignment]

META_TABLE = "residency_audit_meta"
EVENTS_TABLE = "residency_audit_events"
HEAD_TABLE = "residency_audit_head"

_DDL = (
    "CREATE TABLE IF NOT EXISTS residency_audit_meta (key text PRIMARY KEY,"
    " value text NOT NULL)",
    # seq is the 1-based position in the chain; the table is append-only by contract (and,
    # with the grants above, by privilege).
    "CREATE TABLE IF NOT EXISTS residency_audit_events (seq bigint PRIMARY KEY,"
    " event text NOT NULL, prev_hash text NOT NULL, hash text NOT NULL, mac text)",
    # The head lives apart from the events (a truncated tail is noticed) and exists from
    # creation (an emptied log is never mistaken for a new one).
    "CREATE TABLE IF NOT EXISTS residency_audit_head (id int PRIMARY KEY CHECK (id = 1),"
    " seq bigint NOT NULL, hash text NOT NULL, counter bigint NOT NULL, mac text)",
)
# Creation is serialised per database and schema with a transaction-scoped advisory lock:
# CREATE TABLE IF NOT EXISTS alone races (two creators can both pass the check), and the
# meta and genesis head must be written by exactly one of them.
_CREATE_LOCK = ("SELECT pg_advisory_xact_lock("
                "hashtextextended(%s || coalesce(current_schema(), ''), 0))")
_LOCK_NAME = "residency.audit.create:"
# Statements are literal (no string building): the table names are fixed.
_SELECT_META = "SELECT key, value FROM residency_audit_meta"
_INSERT_META = "INSERT INTO residency_audit_meta (key, value) VALUES (%s, %s)"
_SELECT_HEAD = "SELECT seq, hash, counter, mac FROM residency_audit_head WHERE id = 1"
_SELECT_LAST = "SELECT seq, hash FROM residency_audit_events ORDER BY seq DESC LIMIT 1"
_COUNT_LEFTOVERS = ("SELECT (SELECT count(*) FROM residency_audit_events),"
                    " (SELECT count(*) FROM residency_audit_head)")
_UPSERT_HEAD = (
    "INSERT INTO residency_audit_head (id, seq, hash, counter, mac) VALUES (1, %s, %s, %s, %s) "
    "ON CONFLICT (id) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash, "
    "counter = EXCLUDED.counter, mac = EXCLUDED.mac")
_UPDATE_HEAD = ("UPDATE residency_audit_head SET seq = %s, hash = %s, counter = %s, mac = %s"
                " WHERE id = 1")
_LOCK_AND_READ = ("BEGIN; SELECT seq, hash, counter, mac FROM residency_audit_head WHERE id = 1"
                  " FOR UPDATE; SELECT seq, hash FROM residency_audit_events"
                  " ORDER BY seq DESC LIMIT 1")
_INSERT_ROWS = "INSERT INTO residency_audit_events (seq, event, prev_hash, hash, mac) VALUES {}"
_ROW = "(%s, %s, %s, %s, %s)"
_COPY_ROWS = "COPY residency_audit_events (seq, event, prev_hash, hash, mac) FROM STDIN"
_STREAM_ROWS = ("SELECT seq, event, prev_hash, hash, mac FROM residency_audit_events "
                "WHERE seq >= %s ORDER BY seq")
_OUTSIDE_CHAIN = "SELECT seq FROM residency_audit_events WHERE seq <= 0 ORDER BY seq"
COPY_THRESHOLD = 16
"""Batches of at least this many rows go in with ``COPY`` (its own round trip), smaller
ones as one multi-row INSERT sent with the head update and ``COMMIT``. Measured on
PostgreSQL 15 with 600-byte events (``docs/audit.md``): the INSERT is 1.15-1.3x faster for
1-8 rows, they are equal at 16, and COPY is 1.4x faster at 64 rows, 2.6x at 256, 3.6x at
1,000."""
_STREAM_BATCH = 2000
_LAYOUT = {
    META_TABLE: {"key": "text", "value": "text"},
    EVENTS_TABLE: {"seq": "bigint", "event": "text", "prev_hash": "text", "hash": "text",
                   "mac": "text"},
    HEAD_TABLE: {"id": "integer", "seq": "bigint", "hash": "text", "counter": "bigint",
                 "mac": "text"},
}
_COLUMNS = (
    "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod)"
    " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
    " WHERE a.attrelid IN (to_regclass(%s), to_regclass(%s), to_regclass(%s))"
    " AND a.attnum > 0 AND NOT a.attisdropped")
_T = TypeVar("_T")

_UNREACHABLE_FIX = (
    "check that the PostgreSQL server is running and reachable from this host, and the "
    "URL's host, port, database, user and password")


def redact_url(url: str) -> str:
    """``url`` with any password (in the authority or a ``password=`` parameter) replaced
    by ``***``: the form shown in names and messages."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, hostport = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{hostport}"
    query = "&".join(
        "password=***" if piece.split("=", 1)[0].lower() == "password" else piece
        for piece in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_OPEN: weakref.WeakSet[Any] = weakref.WeakSet()
"""Every connection this process opened: a forked child abandons them all at once."""


def _abandon_all_in_child() -> None:
    # A child must never end the parent's sessions. psycopg already skips the Terminate
    # message when a child frees an inherited connection, but an explicit close() sends
    # it (a store closed in the child, a read() block left there): done at fork(),
    # before any such code can run.
    for conn in list(_OPEN):
        _abandon(conn)
    _OPEN.clear()


os.register_at_fork(after_in_child=_abandon_all_in_child)


def _abandon(conn: Any) -> None:
    """Drop a connection inherited through ``fork()`` without touching the server.

    Closing it normally would send the protocol's Terminate message down the socket the
    parent still uses, ending the parent's session. Pointing our copy of the descriptor
    at /dev/null first makes the close a local no-op."""
    with contextlib.suppress(Exception):
        fd = conn.fileno()
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)
    with contextlib.suppress(Exception):
        conn.close()


class PostgresChainStore:
    """One audit chain in PostgreSQL, shared by any number of writers on any hosts.

    ``url`` is a ``postgresql://`` (or ``postgres://``) URL; pick a schema with
    ``?options=-csearch_path%3Daudit_de`` (one log per database or schema). The store
    connects lazily; ``connect_timeout`` (seconds) bounds each connection attempt unless
    the URL sets its own. Safe to share between threads; a forked child opens its own
    connection.
    """

    def __init__(self, url: str, *, connect_timeout: float = 10) -> None:
        self.name = redact_url(str(url))
        if psycopg is None:
            raise AuditUnavailable(
                f"audit sink {self.name} needs psycopg: pip install 'residency-sdk[postgres]'")
        if not str(url).startswith(("postgresql://", "postgres://")):
            raise AuditFormatError(
                f"audit sink {self.name!r} is not a PostgreSQL URL: use "
                "postgresql://user:password@host:port/database")
        try:
            params: dict[str, Any] = conninfo_to_dict(str(url))
        except psycopg.Error:
            raise AuditFormatError(
                f"audit sink {self.name!r} is not a valid PostgreSQL URL: use "
                "postgresql://user:password@host:port/database (percent-encode special "
                "characters in the password)") from None
        params.setdefault("connect_timeout", str(max(1, round(connect_timeout))))
        params.setdefault("application_name", "residency-audit")
        # A server that vanishes (host down, network cut) must not block a writer for the
        # kernel's retransmission timeout: TCP keepalives notice within about 30 s.
        params.setdefault("keepalives", "1")
        params.setdefault("keepalives_idle", "15")
        params.setdefault("keepalives_interval", "5")
        params.setdefault("keepalives_count", "3")
        self._params = params
        secrets = {str(params.get("password") or "")}
        parts = urlsplit(str(url))
        if parts.password:
            secrets.add(parts.password)
        self._secrets = tuple(s for s in secrets if s)
        self._conn: Any = None
        self._attempt: Head | None = None  # the head of a commit whose COMMIT was sent
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._lock_pid = os.getpid()

    def __repr__(self) -> str:  # never shows the password
        return f"PostgresChainStore({self.name!r})"

    # --- the ChainStore protocol -------------------------------------------------------

    def initialise(self, meta: Mapping[str, str],
                   genesis: Callable[[Mapping[str, str]], Head]) -> dict[str, str]:
        """Create the log (tables, ``meta`` and the genesis head, in one transaction) unless
        it exists; return the stored meta. Any number of processes on any hosts may call
        this at once: an advisory lock lets exactly one of them create the log, the others
        read what it wrote."""
        with self._guard():
            conn = self._connection()
            try:
                stored = self._stored_meta(conn)
                if stored:
                    self._check_layout(conn)
                    return stored
                with conn.transaction():
                    conn.execute(_CREATE_LOCK, (_LOCK_NAME,))
                    for ddl in _DDL:
                        conn.execute(ddl)
                    self._check_layout(conn)
                    stored = self._read_meta(conn)
                    if stored:  # another creator won the race
                        return stored
                    leftovers = conn.execute(_COUNT_LEFTOVERS).fetchone()
                    if leftovers is not None and any(int(n) for n in leftovers):
                        raise AuditFormatError(
                            f"audit database {self.name} has audit events or a head but no "
                            f"{META_TABLE}: it is not a complete residency audit log (altered?)"
                            "; run `residency audit verify` and point new logs at another "
                            "database or schema")
                    with conn.cursor() as cur:
                        cur.executemany(_INSERT_META, list(meta.items()))
                    head = genesis(meta)
                    conn.execute(_UPSERT_HEAD, (head.seq, head.hash, head.counter, head.mac))
                    return self._read_meta(conn)
            except psycopg.Error as exc:
                self._fail(conn, exc, "creating the audit log in")

    def commit(self, extend: Extend) -> Head:
        """One durable transaction: lock the head row (``FOR UPDATE``: every writer of
        every host waits here, so the chain stays linear), read the head and the last
        event, call ``extend``, insert its rows, store its head, commit.

        Two round trips: ``BEGIN`` + the locking read + the last-event read in one, the
        insert + the head update + ``COMMIT`` in the other. The head row is held for one
        round trip and the WAL flush, which is what bounds a fleet's throughput (every
        commit of every host takes its turn on that row)."""
        with self._guard():
            conn = self._connection()
            self._attempt = None
            try:
                return self._commit(conn, extend)
            except psycopg.Error as exc:
                attempt, self._attempt = self._attempt, None
                if attempt is not None and (conn.broken or isinstance(
                        exc, psycopg.OperationalError)) and self._landed(attempt):
                    return attempt
                self._rollback(conn)
                self._fail(conn, exc, "appending to")
            except BaseException:
                self._rollback(conn)
                raise

    def _landed(self, attempt: Head) -> bool:
        """After the connection failed with ``COMMIT`` sent, whether that commit happened
        (its head is the stored one; no other writer can produce the same hash). Asked
        once on a fresh connection: if the answer is yes, the commit succeeded and
        reporting a failure would make the writer append its events a second time."""
        with contextlib.suppress(Exception):
            conn = self._connect()
            try:
                # FOR UPDATE waits until the old session's transaction has ended either
                # way (committed, or rolled back once the server saw the connection go),
                # so the answer is final; bounded, for a server that has not noticed yet.
                conn.execute("SET lock_timeout = '5s'")
                found = conn.execute(_SELECT_HEAD + " FOR UPDATE").fetchone()
            finally:
                conn.close()
            return found is not None and (int(found[0]), str(found[1]), int(found[2])) == (
                attempt.seq, attempt.hash, attempt.counter)
        return False

    def _commit(self, conn: Any, extend: Extend) -> Head:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.execute("ROLLBACK")  # never extend a transaction left open by a failure
        # Client-side binding: several statements per round trip (the values are quoted
        # by psycopg with the server's own rules, never pasted in).
        cur = psycopg.ClientCursor(conn)
        # The server runs the last-event read after the lock is granted, with a fresh
        # READ COMMITTED snapshot: it sees every row the previous holder committed.
        cur.execute(_LOCK_AND_READ)
        cur.nextset()
        found = cur.fetchone()
        cur.nextset()
        last = cur.fetchone()
        if found is None:
            # No head row to lock (wiped): still serialise with other writers.
            cur.execute(_CREATE_LOCK, (_LOCK_NAME,))
            last = cur.execute(_SELECT_LAST).fetchone()
        head = self._head(found)
        rows, new_head = extend(head, (int(last[0]), str(last[1])) if last is not None
                                else None)
        params: list[Any] = []
        parts: list[sql.Composable] = []
        if len(rows) >= COPY_THRESHOLD:
            with cur.copy(_COPY_ROWS) as copy:
                for row in rows:
                    copy.write_row(row)
        elif rows:
            parts.append(sql.SQL(_INSERT_ROWS).format(
                sql.SQL(", ").join([sql.SQL(_ROW)] * len(rows))))
            params.extend(value for row in rows for value in row)
        # UPDATE, not an upsert, on the normal path: a writer role then needs no INSERT
        # privilege on the head table.
        parts.append(sql.SQL(_UPSERT_HEAD if head is None else _UPDATE_HEAD))
        params.extend((new_head.seq, new_head.hash, new_head.counter, new_head.mac))
        parts.append(sql.SQL("COMMIT"))
        self._attempt = new_head  # from here a lost connection leaves the outcome unknown
        cur.execute(sql.SQL("; ").join(parts), params)
        self._attempt = None
        return new_head

    @staticmethod
    def _rollback(conn: Any) -> None:
        """End a failed transaction (nothing of it is kept); a broken connection is
        replaced by the next call anyway."""
        with contextlib.suppress(Exception):
            if not conn.broken and not conn.closed and (
                    conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE):
                conn.execute("ROLLBACK")

    @contextmanager
    def read(self) -> Iterator[PostgresSnapshot]:
        """A ``REPEATABLE READ``, read-only snapshot of the log on its own connection
        (writers are never blocked); rows are streamed with a server-side cursor."""
        conn: Any = None
        try:
            conn = self._connect()
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            with conn.transaction():
                snapshot = PostgresSnapshot(self, conn)
                yield snapshot
        except psycopg.Error as exc:
            self._fail(conn, exc, "reading")
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()

    def close(self) -> None:
        """Close this process's connection (a forked child's inherited one is dropped
        without touching the parent's session). The store reconnects if used again."""
        with self._guard():
            conn, self._conn = self._conn, None
            if conn is None:
                return
            if self._pid != os.getpid():
                _abandon(conn)
            else:
                with contextlib.suppress(Exception):
                    conn.close()

    # --- internals ---------------------------------------------------------------------

    def _guard(self) -> threading.Lock:
        # A lock held by another thread at fork() stays locked forever in the child.
        pid = os.getpid()
        if self._lock_pid != pid:
            self._lock = threading.Lock()
            self._lock_pid = pid
        return self._lock

    def _connect(self) -> Any:
        try:
            conn = psycopg.connect(**self._params, autocommit=True)
        except psycopg.Error as exc:
            raise AuditUnavailable(
                f"audit database {self.name} is unreachable ({self._detail(exc)}): "
                f"{_UNREACHABLE_FIX}") from None
        _OPEN.add(conn)
        try:
            found = conn.execute("SELECT current_setting('synchronous_commit')").fetchone()
            if found is not None and str(found[0]) == "off":
                conn.execute("SET synchronous_commit TO on")  # durable on return
        except psycopg.Error as exc:
            with contextlib.suppress(Exception):
                conn.close()
            self._fail(None, exc, "connecting to")
        return conn

    def _connection(self) -> Any:
        """This process's live connection (called with the lock held)."""
        pid = os.getpid()
        if self._conn is not None and self._pid != pid:
            _abandon(self._conn)
            self._conn = None
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        if self._conn is None:
            self._conn = self._connect()
            self._pid = pid
        return self._conn

    def _stored_meta(self, conn: Any) -> dict[str, str]:
        """The meta of an existing log, {} when there is none (no DDL, no lock: a writer
        role without CREATE privilege opens an existing log)."""
        found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (META_TABLE,)).fetchone()
        if found is None or not found[0]:
            return {}
        return self._read_meta(conn)

    def _check_layout(self, conn: Any) -> None:
        """Refuse tables of these names that are not a residency audit log's (a column
        missing or of another type): they would fail later, or worse, half work."""
        found: dict[str, dict[str, str]] = {}
        for table, column, type_ in conn.execute(_COLUMNS, tuple(_LAYOUT)).fetchall():
            found.setdefault(str(table), {})[str(column)] = str(type_)
        for table, columns in _LAYOUT.items():
            have = found.get(table, {})
            wrong = sorted(f"{c} {t}" for c, t in columns.items() if have.get(c) != t)
            if wrong:
                raise AuditFormatError(
                    f"audit database {self.name}: table {table} is not a residency audit "
                    f"log's (expected columns {', '.join(wrong)}; found "
                    f"{', '.join(f'{c} {t}' for c, t in sorted(have.items())) or 'no table'})"
                    ": point the log at its own database or schema "
                    "(?options=-csearch_path%3D<schema>)")

    @staticmethod
    def _read_meta(conn: Any) -> dict[str, str]:
        return {str(k): str(v) for k, v in conn.execute(_SELECT_META).fetchall()}

    def _head(self, found: Any) -> Head | None:
        if found is None:
            return None
        seq, hash_, counter, mac = found
        return Head(int(seq), str(hash_), int(counter), None if mac is None else str(mac))

    def _detail(self, exc: BaseException) -> str:
        """The driver's message on one line, with any password scrubbed out."""
        text = " ".join(str(exc).split()) or type(exc).__name__
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _fail(self, conn: Any, exc: Exception, doing: str) -> NoReturn:
        """Translate a driver error into the SDK's (never returns)."""
        if conn is not None and conn is self._conn and (conn.closed or conn.broken):
            self._conn = None  # reconnect on the next call
        detail = self._detail(exc)
        if isinstance(exc, pg_errors.InsufficientPrivilege):
            raise AuditUnavailable(
                f"{doing} audit database {self.name} was refused ({detail}): grant the role "
                f"SELECT on {META_TABLE}, {EVENTS_TABLE} and {HEAD_TABLE}, INSERT on "
                f"{EVENTS_TABLE} and UPDATE on {HEAD_TABLE} (CREATE on the schema to create "
                "the log)") from None
        if isinstance(exc, pg_errors.InvalidSchemaName):
            raise AuditUnavailable(
                f"{doing} audit database {self.name} failed ({detail}): create the schema "
                "named in the URL's search_path, or drop the option") from None
        if isinstance(exc, (pg_errors.UndefinedTable, pg_errors.UndefinedColumn,
                            pg_errors.DataError, pg_errors.IntegrityError,
                            pg_errors.WrongObjectType, pg_errors.DatatypeMismatch)):
            raise AuditFormatError(
                f"audit database {self.name} does not hold a residency audit log as expected "
                f"({detail}): the {META_TABLE}/{EVENTS_TABLE}/{HEAD_TABLE} tables are "
                "missing or were altered; run `residency audit verify` and point the log at "
                "its own database or schema") from None
        if isinstance(exc, (pg_errors.DiskFull, pg_errors.OutOfMemory,
                            pg_errors.TooManyConnections)):
            raise AuditUnavailable(
                f"audit database {self.name} cannot record events ({detail}): free space or "
                "connections on the PostgreSQL server") from None
        raise AuditUnavailable(
            f"{doing} audit database {self.name} failed ({detail}): {_UNREACHABLE_FIX}"
        ) from None


class PostgresSnapshot:
    """One consistent (``REPEATABLE READ``) view of a PostgreSQL audit log."""

    def __init__(self, store: PostgresChainStore, conn: Any) -> None:
        self._store = store
        self._conn = conn
        self._cursors = 0
        present = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL,"
            " to_regclass(%s) IS NOT NULL", (META_TABLE, EVENTS_TABLE, HEAD_TABLE)).fetchone()
        self._meta_present, self._events_present, self._head_present = (
            bool(v) for v in present)
        if not any((self._meta_present, self._events_present, self._head_present)):
            raise AuditFormatError(
                f"no residency audit log in audit database {store.name}: the tables "
                f"{META_TABLE}, {EVENTS_TABLE} and {HEAD_TABLE} do not exist; point at the "
                "database (and search_path schema) the writers use")

    def meta(self) -> dict[str, str]:
        """The log's meta table ({} when it was dropped)."""
        if not self._meta_present:
            return {}
        return self._guarded(lambda: self._store._read_meta(self._conn))

    def head(self) -> Head | None:
        """The recorded head, None when its row (or table) is missing."""
        if not self._head_present:
            return None
        return self._guarded(
            lambda: self._store._head(self._conn.execute(_SELECT_HEAD).fetchone()))

    def rows(self, start: int = 1) -> Iterator[Row]:
        """Events with ``seq >= start`` in ``seq`` order, fetched in batches through a
        server-side cursor (memory stays flat for any log size)."""
        if not self._events_present:
            return
        self._cursors += 1
        try:
            with self._conn.cursor(name=f"residency_audit_rows_{self._cursors}") as cur:
                cur.itersize = _STREAM_BATCH
                cur.execute(_STREAM_ROWS, (start,))
                for seq, event, prev_hash, hash_, mac in cur:
                    yield (int(seq), str(event), str(prev_hash), str(hash_),
                           None if mac is None else str(mac))
        except psycopg.Error as exc:
            self._store._fail(None, exc, "reading")

    def outside_chain(self) -> list[int]:
        """Positions of stored rows that cannot be in the chain (``seq <= 0``)."""
        if not self._events_present:
            return []
        return self._guarded(lambda: [int(r[0]) for r in self._conn.execute(
            _OUTSIDE_CHAIN).fetchall()])

    def _guarded(self, call: Callable[[], _T]) -> _T:
        try:
            return call()
        except psycopg.Error as exc:
            self._store._fail(None, exc, "reading")
