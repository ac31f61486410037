"""The async tenant store: :class:`TenantStore` for ``async`` code (FastAPI handlers).

:meth:`Residency.astorage_for <residency_sdk.client.Residency.astorage_for>` returns an
:class:`AsyncTenantStore` over the same :class:`TenantStore` ``storage_for`` gives: the
same keys, residency checks, failover and audit events, one for one. Each operation runs
the sync store's in a worker thread (anyio's, so it works under asyncio and trio alike)
and the event loop is never blocked.

- **Streamed bodies.** ``put`` takes ``bytes``, a binary file object, or an
  ``AsyncIterable[bytes]`` (``request.stream()``, an async generator): the latter is
  bridged through a bounded buffer (:class:`AsyncBodyPipe`, at most
  :data:`PIPE_BUFFER_BYTES` plus one chunk held) into a file object the adapter reads in
  its worker thread; it is never joined into one ``bytes``.
- **Cancellation.** Cancelling the task awaiting an operation never leaves it
  unaudited. An operation already running in its worker finishes there (its outcome is
  recorded as usual) and the cancellation is delivered when it has. A ``put`` streaming
  an async body is aborted instead: its body fails, so the adapter abandons the upload
  (a multipart upload is aborted, nothing is stored), the put's outcome is recorded as
  ``error``, and then the cancellation is delivered.
- **Batches.** :meth:`AsyncTenantStore.put_many` / :meth:`~AsyncTenantStore.get_many`
  keep at most ``concurrency`` operations in flight; items may come from an iterable or
  an async iterable; results are :class:`~residency_sdk.storage.batch.BatchResult` in
  input order, as for the sync store.
"""

from __future__ import annotations

import builtins
import collections
import io
import threading
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import anyio
import anyio.to_thread

from residency_sdk.errors import AuditUnavailable, InputError, StorageError
from residency_sdk.storage.base import ProgressCallback
from residency_sdk.storage.batch import (
    DEFAULT_CONCURRENCY,
    BatchProgress,
    BatchResult,
    PutItem,
    PutItemLike,
    check_concurrency,
    item_key,
    put_item,
    total_of,
)
from residency_sdk.storage.tenant_store import StoredObject, TenantStore

if TYPE_CHECKING:
    from residency_sdk.deid.evidence import Evidence

T = TypeVar("T")

PIPE_BUFFER_BYTES = 4 * 1024 * 1024
"""How many bytes of an async body may wait for the adapter's worker at most (plus the
one chunk being read): the producer is paused while the buffer is full."""

LIST_PAGE = 256
"""Listed objects fetched per worker-thread hop by :meth:`AsyncTenantStore.list`."""


def _is_async_iterable(data: object) -> bool:
    return hasattr(data, "__aiter__")


class _PipeClosed(Exception):
    """The reading side of a pipe has gone: the producer stops."""


class AsyncBodyPipe(io.RawIOBase):
    """An async producer feeding a blocking reader in a worker thread, with bounded
    memory: :meth:`pump` (event loop) appends the chunks of an async iterable while fewer
    than ``limit`` bytes wait, and otherwise waits (in a thread of its own, so any event
    loop will do) until the reader has taken half of them; :meth:`readinto` (worker
    thread) blocks until bytes, the end, or a failure arrive. Not seekable: a failed
    upload cannot be retried from it."""

    def __init__(self, limit: int = PIPE_BUFFER_BYTES) -> None:
        super().__init__()
        self._limit = limit
        self._chunks: collections.deque[memoryview] = collections.deque()
        self._buffered = 0
        self._cond = threading.Condition()
        self._ended = False
        self._failure: BaseException | None = None
        self._gone = False
        self._consumed = 0

    # --- event loop side -----------------------------------------------------------

    async def pump(self, source: AsyncIterable[bytes]) -> BaseException | None:
        """Feed ``source`` into the pipe until it ends (then mark the end) or the reader
        goes away. Returns the exception ``source`` raised (the reader then fails with
        it), else None; cancellation aborts the pipe and propagates."""
        iterator = source.__aiter__()
        try:
            try:
                async for chunk in iterator:
                    if not isinstance(chunk, (bytes, bytearray, memoryview)):
                        raise InputError(
                            f"an async body yielded a {type(chunk).__name__}, not bytes: "
                            "yield bytes chunks (encode text first)")
                    if chunk:
                        await self._feed(memoryview(chunk).cast("B"))
            except _PipeClosed:
                return None
            except Exception as exc:  # the caller's source failed: the put must fail too
                self.abort(exc)
                return exc
            except BaseException as exc:  # cancelled: the reader must not wait forever
                self.abort(exc)
                raise
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None:
                with anyio.CancelScope(shield=True):
                    await close()
        with self._cond:
            self._ended = True
            self._cond.notify_all()
        return None

    async def _feed(self, chunk: memoryview) -> None:
        while True:
            with self._cond:
                if self._gone or self._failure is not None:
                    raise _PipeClosed
                if self._buffered < self._limit:
                    self._chunks.append(chunk)
                    self._buffered += len(chunk)
                    self._cond.notify_all()
                    return
            # Abandoned on cancellation: abort() wakes the thread left waiting.
            await anyio.to_thread.run_sync(self._wait_for_space, abandon_on_cancel=True)

    def _wait_for_space(self) -> None:
        with self._cond:
            while self._buffered > self._limit // 2 and not self._gone \
                    and self._failure is None:
                self._cond.wait()

    def abort(self, cause: BaseException) -> None:
        """Make the reader fail (the upload is abandoned)."""
        with self._cond:
            if self._failure is None:
                self._failure = cause
            self._chunks.clear()
            self._buffered = 0
            self._cond.notify_all()

    def close_reader(self) -> None:
        """The put ended (done, refused or failed): stop the producer."""
        with self._cond:
            self._gone = True
            self._chunks.clear()
            self._buffered = 0
            self._cond.notify_all()

    # --- worker thread side (a binary file object) ---------------------------------

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._consumed

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` (blocking) until it is full or the body ends: adapters read
        whole parts."""
        out = memoryview(buffer).cast("B")
        filled = 0
        with self._cond:
            while filled < len(out):
                if self._failure is not None:
                    raise StorageError(
                        f"the async body stopped before its end "
                        f"({type(self._failure).__name__}: {self._failure}): nothing "
                        "was stored") from None
                if not self._chunks:
                    if self._ended:
                        break
                    self._cond.wait()
                    continue
                head = self._chunks[0]
                take = min(len(head), len(out) - filled)
                out[filled:filled + take] = head[:take]
                filled += take
                self._buffered -= take
                if take == len(head):
                    self._chunks.popleft()
                else:
                    self._chunks[0] = head[take:]
            self._cond.notify_all()  # the producer may wait for space
        self._consumed += filled
        return filled


READ_CHUNK = 256 * 1024
"""Default chunk of :meth:`AsyncTenantStore.iter_bytes`."""


class AsyncTenantStore:
    """One tenant's objects, awaitable: :class:`TenantStore`'s operations for ``async``
    code, each run in a worker thread (see the module docstring for bodies and
    cancellation). ``async with`` closes it: :meth:`aclose` waits for the operations in
    flight and refuses new ones; the :class:`~residency_sdk.client.Residency` and its
    adapters stay open (close that with ``res.close()``)."""

    def __init__(self, store: TenantStore) -> None:
        self.sync = store
        """The sync store underneath (what ``storage_for`` returns)."""
        self._inflight = 0
        self._idle: anyio.Event | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"Async{self.sync!r}"

    @property
    def tenant(self) -> Any:
        """The tenant the store is bound to."""
        return self.sync.tenant

    @property
    def location(self) -> str:
        """Where this store's objects live."""
        return self.sync.location

    async def __aenter__(self) -> AsyncTenantStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Refuse new operations and wait for those in flight to finish."""
        self._closed = True
        while self._inflight:
            self._idle = self._idle or anyio.Event()
            await self._idle.wait()

    # --- plumbing --------------------------------------------------------------------

    def _enter(self) -> None:
        if self._closed:
            raise StorageError(f"{self!r} is closed: get a new one with "
                               "res.astorage_for(tenant)")
        self._inflight += 1

    def _leave(self) -> None:
        self._inflight -= 1
        if not self._inflight and self._idle is not None:
            self._idle.set()
            self._idle = None

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn`` in a worker thread. Never abandoned: a cancelled caller waits until
        the operation (and its audit outcome) is done, then is cancelled."""
        call = partial(fn, *args, **kwargs)
        box: dict[str, Any] = {}

        async def work() -> None:
            try:
                box["value"] = await anyio.to_thread.run_sync(call)
            except Exception as exc:  # raised below, not wrapped in an ExceptionGroup
                box["error"] = exc

        self._enter()
        try:
            # The thread runs in a child task: a task group waits for its children
            # whatever cancels the host (an anyio scope or asyncio's Task.cancel), and
            # run_sync does not give up on a thread when its own task is cancelled.
            async with anyio.create_task_group() as group:
                group.start_soon(work)
        finally:
            self._leave()
        if "error" in box:
            raise box["error"]
        value: T = box["value"]
        return value

    # --- the data operations -----------------------------------------------------------

    async def put(self, key: str, data: bytes | BinaryIO | AsyncIterable[bytes],
                  data_class: str = "phi", metadata: dict[str, str] | None = None,
                  progress: ProgressCallback | None = None, *,
                  category: str | None = None,
                  evidence: Evidence | None = None) -> StoredObject:
        """:meth:`TenantStore.put`, awaitable; ``data`` may also be an
        ``AsyncIterable[bytes]``, streamed with bounded memory (never joined).
        ``progress`` is called from the worker thread."""
        call = partial(self.sync.put, key, data_class=data_class, metadata=metadata,
                       progress=progress, category=category, evidence=evidence)
        if not _is_async_iterable(data):
            return await self._run(call, data)
        return await self._put_stream(call, data)  # type: ignore[arg-type]

    async def _put_stream(self, call: Callable[[BinaryIO], StoredObject],
                          body: AsyncIterable[bytes]) -> StoredObject:
        pipe = AsyncBodyPipe()
        done: dict[str, Any] = {}

        async def work(pumping: anyio.CancelScope) -> None:
            try:
                done["value"] = await self._run(call, pipe)
            except Exception as exc:  # re-raised below, outside the task group
                done["error"] = exc
            finally:
                # The put ended (stored, refused or failed): stop waiting for the body.
                pipe.close_reader()
                pumping.cancel()

        source_error: BaseException | None = None
        async with anyio.create_task_group() as group:
            with anyio.CancelScope() as pumping:
                group.start_soon(work, pumping)
                # pump() aborts the pipe before a cancellation propagates, so the
                # worker's read fails and the task group's wait for it ends.
                source_error = await pipe.pump(body)
        if source_error is not None:
            raise source_error
        if "error" in done:
            raise done["error"]
        value: StoredObject = done["value"]
        return value

    async def get(self, key: str) -> bytes:
        """:meth:`TenantStore.get`, awaitable: the whole object (checksum verified)."""
        return await self._run(self.sync.get, key)

    async def iter_bytes(self, key: str,
                         chunk_size: int = READ_CHUNK) -> AsyncGenerator[bytes, None]:
        """The object's bytes in chunks of at most ``chunk_size``, for a streamed response
        (``StreamingResponse(store.iter_bytes(key))``): :meth:`TenantStore.open` (audited as
        a ``get``) and every read run in a worker thread, so only one chunk is held at a
        time. The checksum is verified when the end is reached: a corrupted object raises
        :class:`~residency_sdk.errors.IntegrityError` there, after its bytes were yielded,
        so a consumer must treat the stream as failed, not complete. Stopping early (a
        client that hung up) closes the reader."""
        if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
            raise InputError(f"chunk_size must be a positive number of bytes, got "
                             f"{chunk_size!r}: e.g. 262144 (256 KiB)")
        reader: BinaryIO = await self._run(self.sync.open, key)
        try:
            while chunk := await self._run(reader.read, chunk_size):
                yield chunk
        finally:
            # Shielded: a cancelled consumer must still release the reader's connection.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(reader.close)

    async def head(self, key: str) -> StoredObject:
        """:meth:`TenantStore.head`, awaitable."""
        return await self._run(self.sync.head, key)

    async def exists(self, key: str) -> bool:
        """:meth:`TenantStore.exists`, awaitable."""
        return await self._run(self.sync.exists, key)

    async def delete(self, key: str) -> bool:
        """:meth:`TenantStore.delete`, awaitable; True if the object existed."""
        return await self._run(self.sync.delete, key)

    async def list(self, prefix: str = "") -> AsyncIterator[StoredObject]:
        """The tenant's objects under ``prefix`` (``async for``): the listing is audited
        when it starts, as :meth:`TenantStore.list`; pages are fetched in the worker."""
        items = await self._run(lambda: iter(self.sync.list(prefix)))
        while True:
            page = await self._run(_take, items, LIST_PAGE)
            for info in page:
                yield info
            if len(page) < LIST_PAGE:
                return

    # --- batches -------------------------------------------------------------------

    async def put_many(self, items: Iterable[PutItemLike] | AsyncIterable[PutItemLike], *,
                       concurrency: int = DEFAULT_CONCURRENCY,
                       progress: BatchProgress | None = None,
                       ) -> builtins.list[BatchResult[StoredObject]]:
        """:meth:`TenantStore.put_many`, awaitable: at most ``concurrency`` puts in
        flight; ``items`` an iterable or an async iterable (consumed lazily); an item's
        data may be an async iterable too. ``progress`` is called on the event loop."""
        width = check_concurrency(concurrency)

        async def one(raw: object, index: int) -> tuple[str, StoredObject]:
            try:
                item: PutItem = put_item(raw)
            except InputError as exc:
                raise _Keyed(item_key(raw, index), exc) from None
            try:
                return item.key, await self.put(
                    item.key, item.data, item.data_class, item.metadata,
                    category=item.category, evidence=item.evidence)
            except Exception as exc:
                raise _Keyed(item.key, exc) from None

        return await _run_bounded_async(_aiter(items), one, width, progress,
                                        total_of(items))

    async def get_many(self, keys: Iterable[str] | AsyncIterable[str], *,
                       concurrency: int = DEFAULT_CONCURRENCY,
                       progress: BatchProgress | None = None,
                       ) -> builtins.list[BatchResult[bytes]]:
        """:meth:`TenantStore.get_many`, awaitable: one result per key, in input order."""
        width = check_concurrency(concurrency)

        async def one(key: object, index: int) -> tuple[str, bytes]:
            shown = key if isinstance(key, str) else repr(key)
            try:
                return shown, await self.get(key)  # type: ignore[arg-type]
            except Exception as exc:
                raise _Keyed(shown, exc) from None

        return await _run_bounded_async(_aiter(keys), one, width, progress,
                                        total_of(keys))


def _take(items: Any, n: int) -> list[StoredObject]:
    page: list[StoredObject] = []
    for info in items:
        page.append(info)
        if len(page) == n:
            break
    return page


async def _aiter(items: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    if _is_async_iterable(items):
        async for item in items:  # type: ignore[union-attr]
            yield item
    else:
        for item in items:  # type: ignore[union-attr]
            yield item


class _Keyed(Exception):
    """An item's failure with the key to report it under."""

    def __init__(self, key: str, error: Exception) -> None:
        super().__init__(key)
        self.key, self.error = key, error


async def _run_bounded_async(source: AsyncIterator[Any],
                             one: Callable[[Any, int], Any], width: int,
                             progress: BatchProgress | None,
                             total: int | None) -> list[BatchResult[Any]]:
    """The async twin of :func:`~residency_sdk.storage.batch.run_bounded`: at most
    ``width`` items in flight, one result per item in input order; a failing audit trail
    stops new items and raises :class:`AuditUnavailable` once those in flight are done."""
    results: dict[int, BatchResult[Any]] = {}
    slots = anyio.Semaphore(width)
    broken: list[AuditUnavailable] = []
    stopped: list[Exception] = []  # the input or the progress callback raised
    started = 0

    async def run(raw: object, index: int) -> None:
        try:
            key, value = await one(raw, index)
            results[index] = BatchResult(key, index, value=value)
        except _Keyed as failed:
            if isinstance(failed.error, AuditUnavailable) and not broken:
                broken.append(failed.error)
            results[index] = BatchResult(failed.key, index, error=failed.error)
        finally:
            slots.release()
        if progress is not None and not stopped:
            try:
                progress(len(results), total, results[index].key)
            except Exception as exc:  # raised once the items in flight are done
                stopped.append(exc)

    async with anyio.create_task_group() as group:
        try:
            async for raw in source:
                await slots.acquire()
                if broken or stopped:
                    slots.release()
                    break
                group.start_soon(run, raw, started)
                started += 1
        except Exception as exc:  # the input failed: let the items in flight finish
            stopped.append(exc)
    if stopped:
        raise stopped[0]
    if broken:
        raise AuditUnavailable(
            f"the audit trail failed during a batch, so no further item was started: "
            f"{len(results)} item(s) finished (each recorded as far as the trail allowed), "
            f"the rest of the input was not attempted. Restore the audit log and run the "
            f"remaining items again: {broken[0]}") from broken[0]
    return [results[i] for i in range(started)]
