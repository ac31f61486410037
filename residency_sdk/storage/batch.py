"""Batches over one tenant's store: the bounded-concurrency engine behind
:meth:`TenantStore.put_many <residency_sdk.storage.tenant_store.TenantStore.put_many>` and
:meth:`~residency_sdk.storage.tenant_store.TenantStore.get_many`.

- **Bounded.** ``concurrency`` worker threads (fewer for a shorter input), each running
  one operation at a time (the adapters' SDK clients are thread-safe). A worker takes
  the next item from the input only when it is free, so an iterator of a million items
  (or of open files) is consumed lazily and never materialised: at most ``concurrency``
  items are held at once (three times that for ``put_many``, see below).
- **Per item.** Every item ends as one :class:`BatchResult` (its key, ``ok``, the value
  or the error). A failure, including a residency refusal, is that item's result and
  does not stop the others. Each item is one ordinary ``put``/``get`` of the tenant
  store, so it is audited exactly like one (a durable intent, then its outcome).
- **Written ahead a window at a time** (``put_many``, :class:`WriteAhead`). The items are
  checked and their intents recorded ``concurrency`` at a time, in one durable commit
  that also carries the outcomes of the items finished since the previous one: a commit
  (an fsync) per window rather than two per object. No item starts before its own intent
  is durable; the last outcomes are committed before ``put_many`` returns. A crash may
  lose the outcomes not yet committed (the trail then shows those intents without an
  outcome, which reconciliation treats as "may have happened"), never an intent. A
  window is what the input has ready (it is read ahead on a thread of its own), never
  a wait for more: an input that yields slowly, or only once earlier items are stored,
  gets windows of one item. At most ``3 x concurrency`` items are held: those in
  flight, a window written ahead and those read ahead.
- **Input order.** Results come back as a list in the order of the input, whatever the
  order in which they finished.
- **Fail closed.** If the audit trail itself fails (:class:`AuditUnavailable`), no new
  item is started: the ones in flight finish (their outcomes recorded as far as the
  trail allows) and :class:`AuditUnavailable` is raised for the batch. The same happens
  when iterating the input, or the ``progress`` callback, raises: its exception is
  raised once the items in flight have finished, so no operation is left running.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Generic, TypeAlias, TypeVar

from residency_sdk.errors import AuditUnavailable, InputError

if TYPE_CHECKING:
    from residency_sdk.deid.evidence import Evidence
    from residency_sdk.events import AuditEmitter, AuditEvent

T = TypeVar("T")

MIN_CONCURRENCY = 1
MAX_CONCURRENCY = 256
DEFAULT_CONCURRENCY = 8

BatchProgress: TypeAlias = Callable[[int, "int | None", str], None]
"""Called once per finished item (ok or not) as ``progress(done, total, key)``: ``done``
items finished so far, ``total`` the number of items when the input has a length (else
None), ``key`` the item just finished. Called from the batch's worker threads, one call
at a time; keep it quick (no item starts or finishes while it runs)."""

PUT_OPTIONS = frozenset({"data_class", "metadata", "category", "evidence"})
"""The options an item of ``put_many`` may carry: the keyword arguments of ``put``."""


@dataclass(frozen=True, slots=True)
class PutItem:
    """One object for :meth:`TenantStore.put_many`: ``put``'s arguments, typed."""

    key: str
    data: bytes | BinaryIO
    data_class: str = "phi"
    metadata: dict[str, str] | None = None
    category: str | None = None
    evidence: Evidence | None = None


PutItemLike: TypeAlias = (
    "PutItem | tuple[str, bytes | BinaryIO] | tuple[str, bytes | BinaryIO, Mapping[str, Any]]")
"""What ``put_many`` accepts per item: a :class:`PutItem`, ``(key, data)`` or
``(key, data, options)`` where ``options`` holds any of :data:`PUT_OPTIONS`."""


@dataclass(frozen=True, slots=True)
class BatchResult(Generic[T]):
    """The outcome of one item of a batch: ``value`` when ``ok``, else ``error``."""

    key: str
    """The item's key (tenant-relative, as given)."""
    index: int
    """The item's position in the input (0-based)."""
    value: T | None = None
    """What the operation returned (a ``StoredObject`` for put, the bytes for get)."""
    error: Exception | None = None
    """Why the item failed: a :class:`~residency_sdk.errors.ResidencyError` (refused,
    not found, backend unavailable...), or :class:`InputError` for a malformed item."""

    @property
    def ok(self) -> bool:
        """True when the item succeeded."""
        return self.error is None

    def unwrap(self) -> T:
        """The value; raises the item's error when it failed."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


def check_concurrency(value: object) -> int:
    """``value`` when it is a whole number from 1 to 256; else :class:`InputError`."""
    if isinstance(value, bool) or not isinstance(value, int) \
            or not MIN_CONCURRENCY <= value <= MAX_CONCURRENCY:
        raise InputError(
            f"concurrency={value!r} is not a whole number from {MIN_CONCURRENCY} to "
            f"{MAX_CONCURRENCY}: pass how many operations may be in flight at once, e.g. "
            f"concurrency={DEFAULT_CONCURRENCY}")
    return value


def total_of(items: object) -> int | None:
    """The number of items when the input knows it (a list, a tuple...), else None."""
    return len(items) if isinstance(items, Sized) else None


def put_item(raw: object) -> PutItem:
    """One ``put_many`` input as a :class:`PutItem`; :class:`InputError` naming what is
    wrong with a malformed one."""
    if isinstance(raw, PutItem):
        return raw
    if not isinstance(raw, (tuple, list)) or len(raw) not in (2, 3):
        raise InputError(
            f"put_many item {_shown(raw)} is not (key, data), (key, data, options) or a "
            "PutItem: pass one of those per object")
    key, data = raw[0], raw[1]
    options = raw[2] if len(raw) == 3 else {}
    if not isinstance(key, str):
        raise InputError(f"put_many item key {_shown(key)} is not a string: pass the "
                         "object's key relative to the tenant, e.g. 'studies/1/img.dcm'")
    if not isinstance(options, Mapping):
        raise InputError(f"put_many options for {key!r} are a {type(options).__name__}, "
                         f"not a dict: pass a dict of {', '.join(sorted(PUT_OPTIONS))}")
    unknown = sorted(str(name) for name in options if name not in PUT_OPTIONS)
    if unknown:
        raise InputError(f"put_many options for {key!r} name {', '.join(unknown)}, which put "
                         f"does not take: use only {', '.join(sorted(PUT_OPTIONS))}")
    return PutItem(key, data, **options)


def item_key(raw: object, index: int) -> str:
    """The key to report for a malformed input item (its first element when it is a
    string, else its position)."""
    if isinstance(raw, (tuple, list)) and raw and isinstance(raw[0], str):
        return raw[0]
    return f"<item {index}>"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def failing(error: Exception) -> Callable[[], Any]:
    """An operation that fails with ``error`` (a malformed item's result)."""

    def fail() -> Any:
        raise error

    return fail


Job: TypeAlias = tuple[str, Callable[[], T]]
"""One item of a batch: its key and the operation that produces its value."""


def run_bounded(jobs: Iterable[Job[T]], *, concurrency: int,
                progress: BatchProgress | None = None,
                total: int | None = None) -> list[BatchResult[T]]:
    """Run ``jobs`` with at most ``concurrency`` in flight; one result per job, in input
    order (see the module docstring for what stops a batch)."""
    source = iter(jobs)
    batch = _Batch(source, progress, total)
    width = concurrency if total is None else max(1, min(concurrency, total))
    # Each worker takes the next job when it is free: no per-item future, waiter or
    # wake-up of the calling thread (they cost more CPU than the bookkeeping they save).
    workers = [threading.Thread(target=batch.work, name=f"residency-batch-{i}")
               for i in range(width)]
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            worker.join()
    except BaseException as exc:  # interrupted: start nothing more, let the rest finish
        batch.stop(exc)
        raise
    finally:
        close = getattr(source, "close", None)  # a generator: its cleanup runs now
        if close is not None and not any(w.is_alive() for w in workers):
            close()
    return batch.outcome()


class _Batch(Generic[T]):
    """The state one batch's workers share, under one lock."""

    def __init__(self, source: Iterator[Job[T]], progress: BatchProgress | None,
                 total: int | None) -> None:
        self._source = source
        self._progress = progress
        self._total = total
        self._lock = threading.Lock()  # results, progress and the flags
        self._taking = threading.Lock()  # the input: taking an item may take a while
        self._results: dict[int, BatchResult[T]] = {}
        self._started = 0
        self._stopped: BaseException | None = None  # the input or progress raised
        self._broken: AuditUnavailable | None = None

    def stop(self, cause: BaseException) -> None:
        with self._lock:
            self._stopped = self._stopped or cause

    def _take(self) -> tuple[int, Job[T]] | None:
        with self._taking:
            if self._stopped is not None or self._broken is not None:
                return None
            try:
                job = next(self._source, None)
            except BaseException as exc:  # raised by the caller's iterator
                self.stop(exc)
                return None
            if job is None:
                return None
            self._started += 1
            return self._started - 1, job

    def work(self) -> None:
        while (taken := self._take()) is not None:
            index, (key, call) = taken
            try:
                result: BatchResult[T] = BatchResult(key, index, value=call())
            except Exception as exc:
                result = BatchResult(key, index, error=exc)
            except BaseException as exc:  # KeyboardInterrupt and the like end the batch
                self.stop(exc)
                return
            with self._lock:
                self._results[index] = result
                if isinstance(result.error, AuditUnavailable) and self._broken is None:
                    self._broken = result.error
                if self._progress is not None and self._stopped is None:
                    try:
                        self._progress(len(self._results), self._total, key)
                    except BaseException as exc:  # raised once the batch has finished
                        self._stopped = exc

    def outcome(self) -> list[BatchResult[T]]:
        if self._stopped is not None:
            raise self._stopped
        if self._broken is not None:
            raise AuditUnavailable(
                f"the audit trail failed during a batch, so no further item was started: "
                f"{len(self._results)} item(s) finished (each recorded as far as the trail "
                f"allowed), the rest of the input was not attempted. Restore the audit log "
                f"and run the remaining items again: {self._broken}") from self._broken
        return [self._results[i] for i in range(self._started)]


@dataclass(frozen=True, slots=True)
class Prepared(Generic[T]):
    """An item whose check passed: its intent event (built, not yet recorded; None when
    nothing listens), how to run it once that intent is durable (``perform(intent,
    record)``, handing its outcome event to ``record``), and what to close afterwards."""

    intent: AuditEvent | None
    perform: Callable[[AuditEvent | None, Callable[[AuditEvent], None]], T]
    close: Callable[[], None]


Stage: TypeAlias = tuple[str, Callable[[], Prepared[T]]]
"""One item for :class:`WriteAhead`: its key and what checks it and builds its intent
(raising the refusal, already recorded, when the check fails)."""


class WriteAhead(Generic[T]):
    """Turns a batch's items into jobs whose intents are committed a window at a time.

    :meth:`jobs` takes the items the input has ready (up to ``window``), prepares each
    (check, intent event), then records the window's intents in one durable commit
    together with the outcomes the finished items handed to :meth:`record`, and only then
    hands the items out to run; when the batch stops, the items it staged but never
    handed out get a "not started" outcome. :meth:`close` (always call it, after the
    batch) commits the outcomes still pending.
    """

    def __init__(self, audit: AuditEmitter, window: int) -> None:
        self._audit = audit
        self._window = window
        self._lock = threading.Lock()
        self._outcomes: list[AuditEvent] = []
        # A window's items in input order: prepared, or the exception that refused it;
        # then the intent recorded for it.
        self._waiting: deque[tuple[str, Prepared[T] | Exception, AuditEvent | None]] = deque()

    def record(self, event: AuditEvent) -> None:
        """Keep a finished item's outcome for the next commit (any worker thread)."""
        with self._lock:
            self._outcomes.append(event)

    def _emit_outcomes(self) -> None:
        """Queue the kept outcomes in the sinks (committed with the next commit); those
        a failing sink did not take are kept for the next try."""
        with self._lock:
            taken, self._outcomes = self._outcomes, []
        for done, event in enumerate(taken):
            try:
                self._audit.emit(event)
            except BaseException:
                with self._lock:
                    self._outcomes[:0] = taken[done:]
                raise

    def jobs(self, stages: Iterable[Stage[T]]) -> Iterator[Job[T]]:
        """The items as jobs for :func:`run_bounded`, in input order, each started only
        after its intent is durable.

        A window is what the input has ready, up to ``window`` items: the input is read
        ahead on a thread of its own (at most ``window`` items waiting), and a window
        never waits for more than its first item. An input that produces slowly, or
        only once earlier items are done, gets windows of one item, not a stall."""
        feed: _ReadAhead[Stage[T]] = _ReadAhead(stages, self._window)
        try:
            while window := feed.take(self._window):
                for key, prepare in window:
                    try:
                        self._waiting.append((key, prepare(), None))
                    except Exception as exc:  # refused (and recorded) by its check
                        self._waiting.append((key, exc, None))
                try:
                    self._commit_waiting()
                except AuditUnavailable as exc:
                    while self._waiting:
                        key, item, _ = self._waiting.popleft()
                        if isinstance(item, Prepared):
                            item.close()
                        yield key, failing(item if isinstance(item, Exception) else exc)
                    return
                while self._waiting:
                    key, item, intent = self._waiting.popleft()
                    yield key, (self._job(item, intent) if isinstance(item, Prepared)
                                else failing(item))
        finally:
            feed.close()
            self._abandon_waiting()

    def _commit_waiting(self) -> None:
        intents = [item.intent for _, item, _ in self._waiting
                   if isinstance(item, Prepared) and item.intent is not None]
        if not intents:
            return
        self._emit_outcomes()
        recorded = iter(self._audit.intents(intents))
        self._waiting = deque(
            (key, item, next(recorded)
             if isinstance(item, Prepared) and item.intent is not None else None)
            for key, item, _ in self._waiting)

    def _job(self, prepared: Prepared[T], intent: AuditEvent | None) -> Callable[[], T]:
        def run() -> T:
            try:
                return prepared.perform(intent, self.record)
            finally:
                prepared.close()
        return run

    def _abandon_waiting(self) -> None:
        """The batch stopped with items staged: they never start. Those whose intent is
        durable get an ``error`` outcome saying so."""
        while self._waiting:
            _, item, intent = self._waiting.popleft()
            if isinstance(item, Prepared):
                item.close()
            if intent is not None:
                # Unrecordable now, the intent stays without an outcome: "may have
                # happened", which is what reconciliation assumes of it anyway.
                with contextlib.suppress(AuditUnavailable):
                    self._audit.outcome(
                        intent, outcome="error",
                        error="not started: the batch stopped before this item's turn")

    def close(self) -> None:
        """Commit the outcomes not yet committed (raises :class:`AuditUnavailable` when
        the trail cannot take them; they stay queued in the sinks for their next
        commit)."""
        if self._audit.enabled:
            self._emit_outcomes()
            self._audit.flush()  # also what an earlier, failed commit left queued


_END = object()


class _Raised:
    """What the input raised, passed from the read-ahead thread to the batch."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _ReadAhead(Generic[T]):
    """Reads an iterator on a daemon thread into a queue of at most ``depth`` items, so
    the batch can take what is ready without waiting for more. What the iterator raises
    is raised by :meth:`take` once the items before it are taken."""

    def __init__(self, source: Iterable[T], depth: int) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._closed = threading.Event()
        self._done = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._read, args=(iter(source),),
                                        name="residency-batch-input", daemon=True)
        self._thread.start()

    def _read(self, source: Iterator[T]) -> None:
        try:
            for item in source:
                if not self._put(item):
                    return
        except BaseException as exc:  # the caller's iterator: re-raised by take()
            self._put(_Raised(exc))
            return
        self._put(_END)

    def _put(self, item: object) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def take(self, most: int) -> list[T]:
        """The next items: waits for the first, then takes up to ``most`` that are
        ready; [] at the end of the input."""
        if self._error is not None:
            error, self._error = self._error, None
            self._done = True
            raise error
        if self._done:
            return []
        taken: list[T] = []
        item = self._queue.get()
        while True:
            if item is _END:
                self._done = True
                return taken
            if isinstance(item, _Raised):
                if taken:  # hand out what came before it; raised at the next take
                    self._error = item.error
                    return taken
                self._done = True
                raise item.error
            taken.append(item)  # type: ignore[arg-type]
            if len(taken) >= most:
                return taken
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return taken

    def close(self) -> None:
        """Stop reading (the thread ends at its next item; a blocked input keeps it, a
        daemon, until then)."""
        self._closed.set()
