"""``Residency.astorage_for``: the async tenant store against moto (S3), the GCS emulator,
Azurite and the local backend; streamed async bodies with bounded memory; cancellation
that never leaves an operation unaudited; async batches with a real concurrency bound.

The tests drive their own event loop (``asyncio.run``), as a FastAPI server would."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import threading
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from batch_helpers import InFlight, RecordingSink, counting_opener
from storage_harness import ProviderHarness

import residency_sdk as rs
from residency_sdk.storage.async_store import AsyncTenantStore

TENANT = rs.Tenant(id="clinic-async", country="DE")
MiB = 1024 * 1024


def _run(main: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(main())  # type: ignore[arg-type]


async def _chunks(sizes: list[int], seed: bytes = b"s") -> AsyncIterator[bytes]:
    for i, size in enumerate(sizes):
        yield hashlib.shake_256(seed + bytes([i])).digest(size)
        await asyncio.sleep(0)


def _joined(sizes: list[int], seed: bytes = b"s") -> bytes:
    return b"".join(hashlib.shake_256(seed + bytes([i])).digest(s) for i, s in
                    enumerate(sizes))


# --- every provider ----------------------------------------------------------------------


def test_every_operation_awaits_the_same_audited_store_on_each_provider(
        provider_harness: ProviderHarness, tmp_path: Path) -> None:
    sink = RecordingSink()
    res = provider_harness.residency(tmp_path, audit=sink)
    sizes = [300_000, 1, 1_200_000, 65_536]

    async def main() -> None:
        async with res.astorage_for(TENANT, actor="svc-upload") as store:
            assert isinstance(store, AsyncTenantStore) and store.location == "DE"
            a = await store.put("a/bytes.dcm", b"DICM bytes")
            b = await store.put("a/file.dcm", io.BytesIO(b"from a file"), data_class="personal")
            c = await store.put("a/stream.dcm", _chunks(sizes))
            assert (a.size, b.data_class, c.size) == (10, "personal", sum(sizes))
            assert c.provider == store.sync.target.provider
            assert await store.get("a/stream.dcm") == _joined(sizes)
            head = await store.head("a/file.dcm")
            assert (head.key, head.size, head.data_class) == ("a/file.dcm", 11, "personal")
            assert await store.exists("a/bytes.dcm")
            assert not await store.exists("a/none")
            listed = sorted([info.key async for info in store.list("a/")])
            assert listed == ["a/bytes.dcm", "a/file.dcm", "a/stream.dcm"]

            results = await store.put_many(
                [("m/0", b"zero"), ("../bad", b"x"), ("m/2", _chunks([70_000], b"m"))],
                concurrency=2)
            assert [(r.key, r.ok) for r in results] == [
                ("m/0", True), ("../bad", False), ("m/2", True)]
            assert isinstance(results[1].error, rs.InvalidKey)
            got = await store.get_many(["m/2", "m/1", "m/0"])
            assert [g.value for g in got] == [_joined([70_000], b"m"), None, b"zero"]
            assert isinstance(got[1].error, rs.ObjectNotFound)

            assert await store.delete("a/bytes.dcm")
            assert not await store.exists("a/bytes.dcm")
        with pytest.raises(rs.StorageError, match="closed"):
            await store.get("a/file.dcm")

    _run(main)
    # One audited operation per call, exactly as the sync store records them.
    for key in ("a/bytes.dcm", "a/file.dcm", "a/stream.dcm", "m/0", "m/2"):
        assert sorted(e.outcome for e in sink.of("put", key=key)) == ["intent", "ok"]
    assert [e.outcome for e in sink.of("put", key="../bad")] == ["error"]
    assert [e.actor for e in sink.of("put", "ok")] == ["svc-upload"] * 5
    assert sorted(e.outcome for e in sink.of("delete", key="a/bytes.dcm")) == ["intent", "ok"]
    assert sorted(e.outcome for e in sink.of("list")) == ["intent", "ok"]
    res.close()


# --- streamed bodies ---------------------------------------------------------------------


def test_a_64_mib_async_stream_is_stored_with_bounded_memory_and_reads_back_whole(
        tmp_path: Path) -> None:
    res = rs.Residency.load(local_root=tmp_path / "data", audit=RecordingSink())
    digest = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        for _ in range(256):  # 256 x 256 KiB, each chunk a fresh allocation
            chunk = os.urandom(256 * 1024)
            digest.update(chunk)
            yield chunk

    async def main() -> tuple[int, int]:
        store = res.astorage_for(TENANT)
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            info = await store.put("big/study.bin", body())
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        return info.size, peak

    size, peak = _run(main)
    assert size == 64 * MiB
    assert peak < 32 * MiB, f"peak Python allocation {peak / MiB:.1f} MiB for a 64 MiB body"
    back = hashlib.sha256()
    with res.storage_for(TENANT).open("big/study.bin") as reader:
        while block := reader.read(4 * MiB):
            back.update(block)
    assert back.hexdigest() == digest.hexdigest()
    res.close()


def test_an_async_body_that_fails_fails_the_put_with_its_own_error_and_stores_nothing(
        tmp_path: Path) -> None:
    sink = RecordingSink()
    res = rs.Residency.load(local_root=tmp_path / "data", audit=sink)

    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 100_000
        raise ConnectionResetError("client went away")

    async def texts() -> AsyncIterator[Any]:
        yield "not bytes"

    async def main() -> None:
        store = res.astorage_for(TENANT)
        with pytest.raises(ConnectionResetError, match="client went away"):
            await store.put("s/broken", broken())
        with pytest.raises(rs.InputError, match="yielded a str"):
            await store.put("s/text", texts())
        assert not await store.exists("s/broken")

    _run(main)
    assert [e.outcome for e in sink.of("put", key="s/broken")] == ["intent", "error"]
    res.close()


def test_a_refused_put_of_an_async_body_returns_at_once_without_reading_it(
        tmp_path: Path) -> None:
    overlay = tmp_path / "no-baa.yaml"
    overlay.write_text(yaml.safe_dump({
        "extends": "default", "name": "no-baa",
        "locations": {"DE": {"backends": {"local": {"baa": False}}}}}))
    res = rs.Residency.load(overlay, local_root=tmp_path / "data", audit=RecordingSink())
    pulled: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        while True:
            pulled.append(1)
            yield b"y" * 65536
            await anyio.sleep(0)

    async def main() -> None:
        with pytest.raises(rs.BAARequired):
            await res.astorage_for(TENANT).put("s/phi", endless(), data_class="phi")

    _run(main)
    assert len(pulled) * 65536 <= 8 * MiB  # at most the pipe's buffer was ever read
    res.close()


# --- cancellation ------------------------------------------------------------------------


async def _until(predicate: Callable[[], bool]) -> None:
    with anyio.fail_after(20):
        while not predicate():
            await anyio.sleep(0.01)


@pytest.mark.parametrize("how", ["task.cancel", "cancel scope"])
def test_cancelling_a_streamed_put_aborts_it_and_its_outcome_is_still_recorded(
        tmp_path: Path, how: str) -> None:
    sink = RecordingSink()
    res = rs.Residency.load(local_root=tmp_path / "data", audit=sink)
    stalled = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield b"a" * MiB
        stalled.set()
        await asyncio.Event().wait()  # the client stops sending
        yield b"never"

    async def main() -> None:
        store = res.astorage_for(TENANT)
        if how == "task.cancel":
            task = asyncio.create_task(store.put("c/stalled", stalls()))
            await _until(lambda: stalled.is_set() and bool(sink.of("put", "intent")))
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            with anyio.CancelScope() as scope:
                async def cancel_when_stalled() -> None:
                    await _until(lambda: stalled.is_set() and bool(sink.of("put", "intent")))
                    scope.cancel()

                async with anyio.create_task_group() as group:
                    group.start_soon(cancel_when_stalled)
                    await store.put("c/stalled", stalls())
            assert scope.cancelled_caught
        # By the time the cancellation reached us, the put had ended and was recorded.
        assert [e.outcome for e in sink.of("put", key="c/stalled")] == ["intent", "error"]
        assert not await store.exists("c/stalled")

    _run(main)
    res.close()


def test_cancelling_a_put_running_in_its_worker_waits_for_it_and_its_outcome_is_recorded(
        tmp_path: Path) -> None:
    sink = RecordingSink()
    flight = InFlight()
    flight.hold = threading.Event()
    res = rs.Residency.load(local_root=tmp_path / "data", audit=sink,
                            storage=counting_opener(flight, tmp_path / "data"))

    async def main() -> None:
        store = res.astorage_for(TENANT)
        task = asyncio.create_task(store.put("c/held", b"held bytes"))
        await _until(flight.entered.is_set)
        task.cancel()
        for _ in range(20):  # the worker holds the put: the task cannot have ended
            await asyncio.sleep(0.01)
        assert not task.done()
        assert flight.hold is not None
        flight.hold.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The write ran to its end in the worker and was recorded: nothing unaudited.
        assert sorted(e.outcome for e in sink.of("put", key="c/held")) == ["intent", "ok"]
        assert await store.get("c/held") == b"held bytes"

    _run(main)
    res.close()


# --- async batches -----------------------------------------------------------------------


def test_async_put_many_keeps_the_bound_takes_async_items_and_reports_progress(
        tmp_path: Path) -> None:
    flight = InFlight(gate=3)
    sink = RecordingSink()
    res = rs.Residency.load(local_root=tmp_path / "data", audit=sink,
                            storage=counting_opener(flight, tmp_path / "data"))
    calls: list[tuple[int, int | None, str]] = []

    async def items() -> AsyncIterator[tuple[str, Any, dict[str, str]]]:
        for i in range(12):
            yield f"b/{i}", (_chunks([1000 + i], b"b") if i % 2 else b"plain"), \
                {"data_class": "personal"}

    async def main() -> None:
        store = res.astorage_for(TENANT)
        results = await store.put_many(items(), concurrency=3,
                                       progress=lambda *a: calls.append(a))
        assert [r.key for r in results] == [f"b/{i}" for i in range(12)]
        assert all(r.ok for r in results)
        with pytest.raises(rs.InputError, match="from 1 to 256"):
            await store.put_many([], concurrency=0)

    _run(main)
    assert (flight.calls, flight.peak) == (12, 3)
    assert [c[0] for c in calls] == list(range(1, 13)) and {c[1] for c in calls} == {None}
    assert len(sink.of("put", "ok")) == 12 == len(sink.of("put", "intent"))
    res.close()


def test_async_put_many_stops_when_the_audit_trail_fails(tmp_path: Path) -> None:
    sink = RecordingSink()
    res = rs.Residency.load(local_root=tmp_path / "data", audit=sink)
    store = res.astorage_for(TENANT)
    store.sync.put("first", b"bind the tenant")
    sink.broken = True

    async def main() -> None:
        with pytest.raises(rs.AuditUnavailable, match="no further item was started"):
            await store.put_many(((f"x/{i}", b"x") for i in range(500)), concurrency=4)

    _run(main)
    sink.broken = False
    assert not res.storage_for(TENANT).exists("x/0")
    res.close()


# --- streamed reads ----------------------------------------------------------------------


def test_iter_bytes_streams_an_object_in_bounded_chunks_and_audits_one_get(
        tmp_path: Path) -> None:
    sink = RecordingSink()
    res = rs.Residency.load(local_root=tmp_path / "data", audit=sink)
    body = os.urandom(5 * MiB + 123)
    res.storage_for(TENANT).put("s/one.dcm", body)

    async def main() -> list[bytes]:
        store = res.astorage_for(TENANT, actor="svc-download")
        return [chunk async for chunk in store.iter_bytes("s/one.dcm", chunk_size=MiB)]

    chunks = _run(main)
    assert b"".join(chunks) == body
    assert max(len(c) for c in chunks) <= MiB and len(chunks) >= 6
    gets = [e for e in sink.events if e.operation == "get" and e.object_key == "s/one.dcm"
            and e.outcome == "ok"]
    assert len(gets) == 1 and gets[0].actor == "svc-download"
    res.close()


def test_iter_bytes_stopped_early_closes_its_reader_and_refuses_a_bad_chunk_size(
        tmp_path: Path) -> None:
    res = rs.Residency.load(local_root=tmp_path / "data", audit=RecordingSink())
    res.storage_for(TENANT).put("s/two.dcm", os.urandom(3 * MiB))
    closed: list[bool] = []
    real_open = res.storage_for(TENANT).__class__.open

    def spying_open(self: Any, key: str) -> Any:
        reader = real_open(self, key)
        original = reader.close

        def close() -> None:
            closed.append(True)
            original()
        reader.close = close
        return reader

    async def main() -> bytes:
        store = res.astorage_for(TENANT)
        with pytest.raises(rs.InputError, match="chunk_size"):
            async for _ in store.iter_bytes("s/two.dcm", chunk_size=0):
                pass
        stream = store.iter_bytes("s/two.dcm", chunk_size=MiB)
        first = await stream.__anext__()
        await stream.aclose()  # a client that hung up after one chunk
        return first

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(res.storage_for(TENANT).__class__, "open", spying_open)
        first = _run(main)
    assert len(first) == MiB
    assert closed == [True]
    res.close()
