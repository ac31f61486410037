"""The audit log writer: one append-only, hash-chained log, group-committed.

``AuditLog("audit.db")`` keeps the chain in a SQLite (WAL) file;
``AuditLog("postgresql://...")`` in PostgreSQL tables shared by a fleet. The writer knows
nothing about either: it links events (:mod:`residency_sdk.audit.chain`) and hands them
to a :class:`~residency_sdk.audit.store.ChainStore`, whose commit is one durable
transaction under the log's write lock.

**Group commit.** Appenders queue their events in order. A durable appender that finds
no commit in flight becomes the leader: it takes everything queued (its own events and
every other thread's), commits it in one transaction (one fsync) and wakes the others; an
appender that finds a commit in flight waits for it, then leads the next one if its events
were not in it. Events appended with ``durable=False`` return at once; a background
flusher thread commits them after gathering for ``group_window`` (20 ms by default), and
any later durable append or :meth:`AuditLog.flush` commits them first, because events are
committed in the order they were appended.

**Failure.** A commit that fails keeps its events queued (the next commit retries them)
and raises :class:`~residency_sdk.errors.AuditUnavailable` to the leader and to every
waiter; while the failure lasts every append raises it too. Nothing is dropped silently.

**Fail closed.** The writer refuses (:class:`~residency_sdk.errors.ChainRefused`) to
extend a log whose head record is missing (emptied), older than one it has seen (rolled
back), or not the last event (truncated, or rows added behind its back).
"""

from __future__ import annotations

import atexit
import collections
import copy
import logging
import math
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self

from residency_sdk.audit._checkpoint import Checkpoint
from residency_sdk.audit.chain import (
    HMAC_KEY_ENV,
    LOG_FORMAT,
    LogInfo,
    Sealer,
    canonical,
    check_key,
    coerce_key,
    head_mac,
    link_rows,
    macs_equal,
    new_meta,
)
from residency_sdk.audit.sqlite_store import SQLiteChainStore, translate
from residency_sdk.audit.store import ChainStore, Head, Row
from residency_sdk.errors import (
    AuditError,
    AuditFormatError,
    AuditLogClosed,
    AuditUnavailable,
    ChainRefused,
    InputError,
)
from residency_sdk.events import AuditEvent, DeferredText

if TYPE_CHECKING:
    from residency_sdk.audit.anchors import Anchor, Anchorer

__all__ = ["DEFAULT_GROUP_WINDOW", "HMAC_KEY_ENV", "LOG_FORMAT", "AuditLog", "LogInfo",
           "check_key", "open_store"]

_log = logging.getLogger("residency_sdk.audit")

MAX_COMMIT_EVENTS = 50_000
"""The most events one transaction takes; a longer queue is committed in several."""

_RETRY_MIN, _RETRY_MAX = 0.05, 2.0  # the flusher's back-off after a failed commit (s)
_ANCHOR_TICK = 1.0  # how often the flusher gives the anchorer a chance to publish (s)
_GATHER_MAX = 0.002  # the longest a commit waits for tight-loop appenders to return (s)
DEFAULT_GROUP_WINDOW = 0.002
"""How long (s) the flusher lets ``durable=False`` events gather before committing them
(unless :data:`_FLUSH_BATCH` are queued, or a durable append or flush comes first)."""
_MAX_GROUP_WINDOW = 1.0


def checked_wait(name: str, value: object, *, default: float) -> float:
    """``value`` as how long (s) queued events may wait for their commit: a number from 0
    to 1 s, else :class:`~residency_sdk.errors.InputError` naming ``name`` and the fix."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0 <= value <= _MAX_GROUP_WINDOW:
        raise InputError(
            f"{name}={value!r} is not a number of seconds from 0 to {_MAX_GROUP_WINDOW:g}: "
            f"pass how long queued audit events may wait for their commit (default "
            f"{default:g})")
    return float(value)
_FLUSH_BATCH = 2_000  # events queued that are committed without waiting for the window

_LOGS: weakref.WeakSet[AuditLog] = weakref.WeakSet()
_FORK_GENERATION = [0]  # bumped in every forked child (cheaper than os.getpid())


def open_store(spec: str | os.PathLike[str] | ChainStore, *,
               busy_timeout: float = 60.0) -> ChainStore:
    """The :class:`ChainStore` for ``spec``: a ``postgresql://`` (or ``postgres://``) URL
    opens PostgreSQL tables, anything else is the path of a SQLite file; a store object is
    returned as is."""
    if not isinstance(spec, str | os.PathLike):
        if callable(getattr(spec, "commit", None)) and callable(getattr(spec, "read", None)):
            return spec
        raise AuditFormatError(
            f"audit log {spec!r} is neither a path, a postgresql:// URL nor a ChainStore: "
            "pass e.g. 'audit.db' or 'postgresql://user@host/db'")
    text = os.fspath(spec)
    if text.startswith(("postgresql://", "postgres://")):
        # Imported here: psycopg is an optional extra, and most processes log to a file.
        from residency_sdk.audit.postgres_store import PostgresChainStore

        return PostgresChainStore(text)
    if "://" in text:
        raise AuditFormatError(
            f"audit log {text!r}: unknown URL scheme; use a file path or a postgresql:// URL")
    return SQLiteChainStore(text, busy_timeout=busy_timeout)


_DONE, _LEAD = "done", "lead"


class _Waiter:
    """One durable appender asleep until a commit: a lock it blocks on, released by the
    leader once its events are durable (``_DONE``), failed (``error``), or when it is to
    lead the next commit (``_LEAD``)."""

    __slots__ = ("error", "lock", "state", "target")

    def __init__(self, target: int) -> None:
        self.target = target
        self.state: str | None = None
        self.error: AuditUnavailable | None = None
        self.lock = threading.Lock()
        self.lock.acquire()


class AuditLog:
    """Append-only, tamper-evident audit log (implements
    :class:`~residency_sdk.events.AuditSink`).

    ``spec`` is a file path (SQLite, created on first use) or a ``postgresql://`` URL.
    With ``hmac_key`` (or ``$RESIDENCY_AUDIT_HMAC_KEY``) every link and the head are
    sealed with HMAC-SHA-256; a log's keyed-ness is fixed when it is created.

    ``append(event)`` returns once the event is on disk, sharing one commit with every
    thread appending at the same time; ``append(event, durable=False)`` returns at once
    and the event is committed within ``group_window`` seconds (2 ms by default: one
    commit, one fsync, for every event of that window), or within the ``within=`` its
    append gave (a longer wait for events whose writer chose fewer commits over a
    narrower crash window), and before any later durable append returns.
    ``anchors`` (anchor objects or specs for
    :func:`~residency_sdk.audit.anchors.open_anchor`) receive a checkpoint of the head
    every ``anchor_every`` events or ``anchor_seconds`` seconds, and at :meth:`close`.

    Safe to share between threads; several processes (or hosts, with PostgreSQL) may
    append to the same log at once: one chain, serialised commits. A forked child
    appends through its own connection; events the parent had queued stay the parent's.
    """

    takes_deferred_text: ClassVar[bool] = True
    """:meth:`append_canonical` takes a :class:`~residency_sdk.events.DeferredText` and
    ``within=``."""

    def __init__(self, spec: str | os.PathLike[str] | ChainStore, *,
                 hmac_key: bytes | str | None = None,
                 anchors: Sequence[Anchor | str] = (), anchor_every: int = 1000,
                 anchor_seconds: float = 60.0, busy_timeout: float = 60.0,
                 group_window: float = DEFAULT_GROUP_WINDOW) -> None:
        self.group_window = checked_wait("group_window", group_window,
                                         default=DEFAULT_GROUP_WINDOW)
        """How long ``durable=False`` events gather before the flusher commits them (s)."""
        key = coerce_key(hmac_key)
        self._key = key
        self._store = open_store(spec, busy_timeout=busy_timeout)
        self.name: str = self._store.name
        """What messages show: the file path, or the URL without its password."""
        self.path: Path | None = (self._store.path if isinstance(self._store, SQLiteChainStore)
                                  else None)
        try:
            stored = self._store.initialise(
                new_meta(key), lambda meta: LogInfo.from_meta(meta, self.name).genesis_head(key))
            self.info: LogInfo = LogInfo.from_meta(stored, self.name)
            check_key(self.info, key, self.name)
            head = self._read_head()
            self._anchorer = self._make_anchorer(anchors, anchor_every, anchor_seconds)
        except BaseException:
            self._store.close()
            raise
        self._sealer = Sealer(key) if key is not None else None
        self._genesis = self.info.genesis
        self.commits = 0
        """Transactions committed by this writer (each is one fsync, however many events)."""
        self.anchor_error: Exception | None = None
        """The last anchoring failure (None once an anchor is published again). Anchoring
        runs in the background after commits: the events are durable either way, but
        until an anchor is published a rollback past the last anchor goes unnoticed."""
        self._last_head = head
        self._seen_counter = head.counter
        self._seen_seq = head.seq
        self._closed = False
        self._init_runtime()
        _LOGS.add(self)

    # --- public API --------------------------------------------------------------------

    def append(self, event: AuditEvent, *, durable: bool = True,
               within: float | None = None) -> None:
        """Add ``event`` to the chain; on disk when this returns, unless ``durable=False``:
        then committed within ``within`` seconds (default: the log's ``group_window``),
        sooner when another event or a durable append needs a commit first.

        Raises :class:`AuditUnavailable` when the store cannot record it (the event stays
        queued and is retried by the next commit) and :class:`AuditFormatError` for
        something that is not a valid event (nothing is queued).
        """
        self._enqueue((canonical(event),), durable, within)

    def append_canonical(self, text: str | DeferredText, *, durable: bool = True,
                         within: float | None = None) -> None:
        """:meth:`append` for an event already in its canonical JSON form (exactly
        :func:`~residency_sdk.audit.chain.canonical` of a valid event: what
        :class:`~residency_sdk.audit.template.EventTemplate` makes), or one that will be
        (a :class:`~residency_sdk.events.DeferredText`, rendered by whichever thread
        commits it: the caller pays for queueing its values only)."""
        self._enqueue((text,), durable, within)

    def append_many(self, events: Sequence[AuditEvent], *, durable: bool = True) -> None:
        """Add several events, in order (one commit when durable)."""
        self._enqueue([canonical(e) for e in events], durable)

    def commit_soon(self) -> None:
        """Start committing what is queued now instead of letting it gather: someone will
        :meth:`flush` in a moment (a read about to hand back its data), and the commit
        should overlap what they do meanwhile rather than follow it."""
        if self._closed or self._closing or self._generation != _FORK_GENERATION[0]:
            return
        self._urgent = True
        with self._lock:
            self._kick_flusher()

    def flush(self) -> None:
        """Commit every queued event; they are on disk when this returns (nothing to do
        once the log is closed: closing committed them)."""
        with self._lock:
            if self._closed:
                return
            if self._generation != _FORK_GENERATION[0]:
                self._reset_after_fork()
            waiter = self._commit_or_sleep(self._taken + len(self._queue))
        self._sleep(waiter)

    def close(self) -> None:
        """Commit what is queued, anchor the head one last time, release the store.

        Further appends raise :class:`AuditLogClosed`. If the queued events cannot be
        committed, the log is closed anyway and :class:`AuditUnavailable` says how many
        events were not recorded.
        """
        error: AuditError | None = None
        with self._lock:
            if self._closed:
                return
            if self._generation != _FORK_GENERATION[0]:
                self._reset_after_fork()
            self._closing = True  # appends from now on are refused
        try:
            # Until nothing is left: an append that passed its check just before
            # _closing was set may still add to the queue (it re-checks and raises).
            while True:
                with self._lock:
                    if not self._queue:
                        break
                    waiter = self._commit_or_sleep(self._taken + len(self._queue))
                self._sleep(waiter)
        except AuditError as exc:
            error = AuditUnavailable(
                f"audit log {self.name!r} closed with {len(self._queue)} event(s) not "
                f"recorded: {exc}")
        with self._lock:
            self._closed = True
            self._stopping = True
            self._flusher_cond.notify_all()
            flusher = self._flusher
        if flusher is not None and flusher is not threading.current_thread():
            flusher.join(30)
        try:
            if self._anchorer is not None and error is None:
                self._anchorer.close(self._make_checkpoint)
        finally:
            self._store.close()
            _LOGS.discard(self)
        if error is not None:
            raise error

    def head(self) -> Head:
        """The log's recorded head (position, hash, commit counter) as stored now."""
        self._check_open()
        return self._read_head()

    def checkpoint(self) -> Checkpoint:
        """A checkpoint of the last head this writer committed (sealed when keyed)."""
        return self._make_checkpoint()

    def __len__(self) -> int:
        return self.head().seq

    @property
    def keyed(self) -> bool:
        """True when the log seals every link with HMAC-SHA-256."""
        return self.info.keyed

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:  # never shows the key (nor a URL's password: name hides it)
        return f"AuditLog({self.name!r}, keyed={self.info.keyed})"

    # --- queue and group commit --------------------------------------------------------

    def _init_runtime(self) -> None:
        """Locks, queue and counters: at construction and again in a forked child."""
        self._lock = threading.Lock()
        self._flusher_cond = threading.Condition(self._lock)  # the flusher waits here
        # Appends with durable=False add to the deque without taking the lock (deque
        # appends are atomic): the hot path of every audited decision. Commits pop
        # from the left under the lock.
        self._queue: collections.deque[str | DeferredText] = collections.deque()
        self._taken = 0  # events popped into commits (in flight or durable)
        self._durable = 0  # of those, how many are committed
        self._committing = False
        self._sleepers: list[_Waiter] = []  # durable appenders waiting for a commit
        self._failure: AuditUnavailable | None = None
        # Per thread appending durably: [when its last append returned, smoothed time
        # between appends, the event count it waits for]; a gathering leader predicts
        # who is about to append from it.
        self._threads: dict[int, list[Any]] = {}
        self._gathering = False  # a waiter gathers: the last expected arrival commits
        self._gather_owner: _Waiter | None = None
        self._gather_deadline = 0.0
        self._expect: set[int] = set()
        self._gather_seconds = 0.0
        self._flusher: threading.Thread | None = None
        self._flusher_idle = False
        self._lingering = False
        # The shortest wait (s) a queued durable=False event allows (inf: none said; the
        # flusher then waits group_window). Reset when a commit empties the queue.
        self._patience = math.inf
        # A queued intent (a read's) is committed at once: its reader waits for it.
        self._urgent = False
        self._stopping = False
        self._closing = False
        self._anchor_pending = False
        self._generation: int = _FORK_GENERATION[0]

    def _reset_after_fork(self) -> None:
        # The parent's threads do not exist here and its lock may have been held at
        # fork(): start over. Events the parent queued are the parent's to commit.
        self._init_runtime()

    def _check_open(self) -> None:
        if self._generation != _FORK_GENERATION[0]:  # in case a fork skipped the hook
            self._reset_after_fork()
        if self._closed or self._closing:
            raise AuditLogClosed(f"audit log {self.name!r} is closed: open a new AuditLog")

    def _enqueue(self, payloads: Sequence[str | DeferredText], durable: bool,
                 within: float | None = None) -> None:
        if not durable:
            if self._failure is not None or self._closing or self._closed \
                    or self._generation != _FORK_GENERATION[0]:
                with self._lock:
                    self._check_open()
                    if self._failure is not None:
                        # Not queued: the caller learns now that this is not recorded.
                        raise copy.copy(self._failure)
            self._queue.extend(payloads)  # no lock: see _init_runtime
            if self._closing:  # closed meanwhile: its final commit may have missed these
                raise AuditLogClosed(
                    f"audit log {self.name!r} is closed: open a new AuditLog")
            window = self.group_window if within is None else (
                within if within <= _MAX_GROUP_WINDOW else _MAX_GROUP_WINDOW)  # NaN too
            hurried = window < self._patience
            if hurried:  # a lingering flusher must now commit sooner (see _linger)
                self._patience = window
            # The flusher sets _flusher_idle before it looks at the queue a last time,
            # and this reads it after appending, so one of the two sees the other.
            if self._flusher_idle or self._flusher is None or (self._lingering and (
                    hurried or len(self._queue) >= _FLUSH_BATCH)):
                with self._lock:
                    self._kick_flusher(hurried)
            return
        with self._lock:
            self._check_open()
            self._queue.extend(payloads)
            target = self._taken + len(self._queue)
            ident = threading.get_ident()
            me = self._threads.get(ident)
            now = time.monotonic()
            if me is None:
                me = self._threads[ident] = [now, 1.0, target]
            else:  # how long this thread worked since its last durable append returned
                me[1] = 0.5 * me[1] + 0.5 * (now - me[0])
                me[2] = target
            try:
                if self._gathering and ident in self._expect:
                    self._expect.discard(ident)
                    if not self._expect:  # the last one expected: it commits the batch
                        self._gathering = False
                        self._gather_owner = None
                        self._commit_batch()
                waiter = self._commit_or_sleep(target)
            except BaseException:
                me[0] = time.monotonic()
                raise
        try:
            self._sleep(waiter)
        finally:
            me[0] = time.monotonic()

    def _commit_or_sleep(self, target: int) -> _Waiter | None:
        """Holding the lock: commit until the first ``target`` queued events are durable
        (None), or return the waiter to sleep on while a commit is in flight or gathering.

        Gathering: right after a commit the threads it woke have not yet appended their
        next event; committing now would split the appenders into two groups taking
        turns (half-full commits). So when threads that append durably in a tight loop
        are about to come back, this thread sleeps instead, for at most about one
        commit's duration, and the last of them to arrive commits everyone's events (or
        this thread does, when the time is up). Threads that do other work between
        appends (an upload) are not waited for.
        """
        while self._durable < target:
            if self._committing:
                waiter = _Waiter(target)
                self._sleepers.append(waiter)
                return waiter
            if len(self._threads) > 1:
                now = time.monotonic()
                window = self._gather_seconds
                self._expect = self._expected(now, window)
                if len(self._threads) > 256:  # forget threads that stopped appending
                    self._threads = {k: v for k, v in self._threads.items()
                                     if v[2] > self._durable or now - v[0] < 1.0}
                if self._expect:
                    self._committing = self._gathering = True
                    self._gather_deadline = now + window
                    waiter = self._gather_owner = _Waiter(target)
                    self._sleepers.append(waiter)
                    return waiter
            self._committing = True
            self._commit_batch()
        return None

    def _sleep(self, waiter: _Waiter | None) -> None:
        """Without the lock: wait until a commit says our events are durable, failed, or
        that we commit next. Waking touches only this waiter's own lock, so the threads
        one commit wakes do not queue up again on the shared lock."""
        while waiter is not None:
            if waiter is self._gather_owner:
                timeout = max(self._gather_deadline - time.monotonic(), 0.0)
                if not waiter.lock.acquire(timeout=timeout):
                    with self._lock:
                        if self._gather_owner is waiter and waiter.state is None \
                                and waiter.error is None:
                            # Time is up and nobody took the batch: commit it here.
                            self._gathering = False
                            self._gather_owner = None
                            self._sleepers.remove(waiter)
                            self._commit_batch()
                            waiter = self._commit_or_sleep(waiter.target)
                            continue
                    waiter.lock.acquire()  # taken over meanwhile: wait for that commit
            else:
                waiter.lock.acquire()
            if waiter.state is _DONE:
                return
            if waiter.error is not None:
                raise copy.copy(waiter.error)
            with self._lock:  # _LEAD: no commit in flight and ours is not done yet
                waiter = self._commit_or_sleep(waiter.target)

    def _expected(self, now: float, window: float) -> set[int]:
        """Threads that append durably in a tight loop (less than ``window`` between one
        append's return and the next) and are not waiting: their last append returned,
        or its commit is done and they are waking up, so they will be back soon."""
        durable = self._durable
        return {ident for ident, (last, think, target) in self._threads.items()
                if target <= durable and think < window and now - last < 4 * window}

    def _lead(self) -> None:
        """Commit what is queued now, if no commit is in flight (the flusher)."""
        self._committing = True
        self._commit_batch()

    def _commit_batch(self) -> None:
        """Commit what is queued (up to :data:`MAX_COMMIT_EVENTS`). Called holding the
        lock with ``_committing`` set; the lock is released during the transaction so
        others can queue, and every sleeper whose events are now durable is woken."""
        queue = self._queue
        batch = [queue.popleft() for _ in range(min(len(queue), MAX_COMMIT_EVENTS))]
        if not queue:
            self._patience = math.inf
        self._taken += len(batch)
        error: BaseException | None = None
        head: Head | None = None
        self._lock.release()
        started = time.monotonic()
        try:
            # Deferred texts are joined here, outside the lock and the transaction.
            texts = [p if isinstance(p, str) else p.render() for p in batch]
            head = self._store.commit(lambda h, last: self._extend(texts, h, last))
        except BaseException as exc:  # re-raised below; the events are requeued
            error = exc
        finally:
            self._lock.acquire()
        self._gather_seconds = min(time.monotonic() - started, _GATHER_MAX)
        self._committing = False
        if error is not None or head is None:
            self._queue.extendleft(reversed(batch))  # kept, in order, for the next commit
            self._taken -= len(batch)
            failure = self._as_unavailable(error)
            self._failure = failure
            for waiter in self._sleepers:
                waiter.error = failure
                waiter.lock.release()
            self._sleepers = []
            if self._queue:
                self._kick_flusher()  # it retries with back-off
            if isinstance(error, Exception) or error is None:
                raise copy.copy(failure) from None
            raise error  # KeyboardInterrupt, SystemExit: as they are
        self._durable += len(batch)
        self._failure = None
        self.commits += 1
        self._last_head = head
        self._seen_counter = max(self._seen_counter, head.counter)
        self._seen_seq = max(self._seen_seq, head.seq)
        if self._sleepers:
            durable, waiting = self._durable, []
            for waiter in self._sleepers:
                if waiter.target <= durable:
                    waiter.state = _DONE
                    waiter.lock.release()
                else:
                    waiting.append(waiter)
            if waiting:  # their events were queued after this batch: one of them leads
                leader = waiting.pop(0)
                leader.state = _LEAD
                leader.lock.release()
            self._sleepers = waiting
        if self._queue and not self._sleepers:
            self._kick_flusher()  # events queued (durable=False) during this commit
        if self._anchorer is not None:
            self._anchor_pending = True
            self._kick_flusher()

    def _as_unavailable(self, error: BaseException | None) -> AuditUnavailable:
        if isinstance(error, AuditUnavailable):
            return error
        if isinstance(error, sqlite3.Error):  # a store that let one through
            translated = translate(error, self.name, "append to")
            if isinstance(translated, AuditUnavailable):
                return translated
            error = translated
        what = f"{type(error).__name__}: {error}" if error is not None else "no head returned"
        return AuditUnavailable(
            f"audit log {self.name!r} cannot record events ({what}); fix the store, then "
            "the queued events are committed by the next append or flush()")

    def _extend(self, payloads: Sequence[str], head: Head | None,
                last: tuple[int, str] | None) -> tuple[list[Row], Head]:
        """Link ``payloads`` after the stored head (inside the store's transaction),
        refusing a head this writer cannot trust."""
        name, info, key = self.name, self.info, self._key
        if head is None:
            raise ChainRefused(
                f"audit log {name!r}: its head record is missing, so the log was emptied "
                "(wiped); nothing is appended to it. Keep it as evidence, run `residency "
                "audit verify` with its anchors, and start a new log only after "
                "investigating", seq=1, kind="head_missing")
        if head.counter < self._seen_counter or head.seq < self._seen_seq:
            raise ChainRefused(
                f"audit log {name!r} was rolled back: its head is event {head.seq} (commit "
                f"{head.counter}) but this writer already saw event {self._seen_seq} (commit "
                f"{self._seen_counter}); nothing is appended. Run `residency audit verify` "
                "with its anchors and restore the log", seq=head.seq + 1, kind="rolled_back")
        if key is not None and not macs_equal(
                head.mac, head_mac(key, info.log_id, head.counter, head.seq, head.hash)):
            raise ChainRefused(
                f"audit log {name!r}: its head record (event {head.seq}) has a wrong HMAC: "
                "it was rewritten without the key; nothing is appended. Run `residency "
                "audit verify`", seq=head.seq + 1, kind="head_mac_mismatch")
        last_seq, last_hash = last if last is not None else (0, self._genesis)
        if (last_seq, last_hash) != (head.seq, head.hash):
            if last_seq < head.seq:
                kind, what = "truncated", (f"its last event is {last_seq} but its head is "
                                           f"event {head.seq}: the tail was cut off")
            elif last_seq > head.seq:
                kind, what = "unrecorded_events", (
                    f"events {head.seq + 1}..{last_seq} follow its head (event {head.seq}): "
                    "they were added outside the writer")
            else:
                kind, what = "head_mismatch", "its head hash is not its last event's"
            raise ChainRefused(
                f"audit log {name!r}: {what}; the log was truncated or rewritten, so nothing "
                "more is appended: run `residency audit verify` and investigate",
                seq=min(last_seq, head.seq) + 1, kind=kind)
        seal = self._sealer.link if self._sealer is not None else None
        rows = link_rows(payloads, head.seq, head.hash, seal)
        seq, prev = (rows[-1][0], rows[-1][3]) if rows else (head.seq, head.hash)
        counter = head.counter + 1
        mac = head_mac(key, info.log_id, counter, seq, prev) if key is not None else None
        return rows, Head(seq, prev, counter, mac)

    # --- the flusher thread: durable=False events, retries, anchoring -------------------

    def _kick_flusher(self, hurried: bool = False) -> None:
        """Called holding the lock: make sure the flusher runs and will look at the queue
        (a lingering one too when an event now ``hurried`` it)."""
        if self._flusher is None or not self._flusher.is_alive():
            if self._stopping:
                return
            self._flusher = threading.Thread(target=self._flusher_main, daemon=True,
                                             name=f"residency-audit-flush:{self.name}")
            self._flusher.start()
        elif self._flusher_idle or self._urgent or (
                self._lingering and (hurried or len(self._queue) >= _FLUSH_BATCH)):
            self._flusher_cond.notify()

    def _flusher_main(self) -> None:
        backoff = 0.0
        lingered = False
        with self._lock:
            while not self._stopping and self._generation == _FORK_GENERATION[0]:
                if self._queue and not self._committing:
                    if self._failure is not None and backoff:
                        self._idle(backoff)
                        if self._stopping or not self._queue or self._committing:
                            continue
                    elif not lingered and not self._urgent and len(self._queue) < _FLUSH_BATCH:
                        self._linger()
                        lingered = True
                        continue
                    lingered = False
                    self._urgent = False
                    try:
                        self._lead()
                        backoff = 0.0
                    except Exception as exc:  # appenders see it as _failure
                        if not backoff:  # once per outage, not at every retry
                            _log.warning("%s (retrying in the background)", exc)
                        backoff = min(max(backoff * 2, _RETRY_MIN), _RETRY_MAX)
                    continue
                if self._anchor_pending and self._anchorer is not None:
                    self._anchor_pending = False
                    self._lock.release()
                    try:
                        self._run_anchorer()
                    finally:
                        self._lock.acquire()
                    continue
                timed_out = not self._idle(_ANCHOR_TICK if self._anchorer is not None
                                           else None, until_queued=True)
                if timed_out and self._anchorer is not None and self.commits:
                    self._anchor_pending = True  # let a time-based anchor fall due

    def _linger(self) -> None:
        """Holding the lock: let a burst gather, one commit (one fsync) for many queued
        events instead of one each, for as long as the most impatient of them allows."""
        self._lingering = True
        start = time.monotonic()
        try:
            while self._queue and not (self._urgent or self._stopping
                                       or len(self._queue) >= _FLUSH_BATCH):
                patience = self._patience if self._patience < math.inf else self.group_window
                left = start + patience - time.monotonic()
                if left <= 0:
                    return
                self._flusher_cond.wait(left)
        finally:
            self._lingering = False

    def _idle(self, timeout: float | None, *, until_queued: bool = False) -> bool:
        self._flusher_idle = True
        try:
            if until_queued and self._queue and not self._committing:
                return True  # appended lock-free just before the flag was set
            return self._flusher_cond.wait(timeout)
        finally:
            self._flusher_idle = False

    def _run_anchorer(self) -> None:
        anchorer = self._anchorer
        if anchorer is None:
            return
        try:
            anchorer.after_commit(self._make_checkpoint, self._last_head.seq)
            self.anchor_error = None
        except Exception as exc:  # the events are durable: say it loudly
            self.anchor_error = exc
            _log.warning("audit log %r: anchoring failed (%s: %s); the log itself is "
                         "durable, fix the anchor so its head is anchored again",
                         self.name, type(exc).__name__, exc)

    # --- helpers -----------------------------------------------------------------------

    def _read_head(self) -> Head:
        with self._store.read() as snap:
            head = snap.head()
        if head is None:
            raise ChainRefused(
                f"audit log {self.name!r}: its head record is missing, so the log was "
                "emptied (wiped); nothing is appended to it. Keep it as evidence, run "
                "`residency audit verify` with its anchors, and start a new log only after "
                "investigating", seq=1, kind="head_missing")
        return head

    def _make_checkpoint(self) -> Checkpoint:
        head = self._last_head
        cp = Checkpoint(log_id=self.info.log_id, seq=head.seq, hash=head.hash,
                        counter=head.counter, created=datetime.now(UTC).isoformat(),
                        key_id=self.info.key_id)
        return cp.sealed_with(self._key) if self._key is not None else cp

    def _make_anchorer(self, anchors: Sequence[Anchor | str], every: int,
                       seconds: float) -> Anchorer | None:
        if not anchors:
            return None
        from residency_sdk.audit.anchors import Anchorer, open_anchor

        opened = [open_anchor(a) if isinstance(a, str) else a for a in anchors]
        return Anchorer(opened, every_events=every, every_seconds=seconds)


def _after_fork_in_child() -> None:
    _FORK_GENERATION[0] += 1
    for log in list(_LOGS):
        log._reset_after_fork()


def _flush_at_exit() -> None:
    # durable=False events queued in the last milliseconds before exit: commit them.
    for log in list(_LOGS):
        if not log.closed and log._generation == _FORK_GENERATION[0]:
            try:
                log.flush()
            except AuditError as exc:
                _log.error("audit log %r: events not recorded at exit: %s", log.name, exc)


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_flush_at_exit)
