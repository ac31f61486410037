"""What is specific to :class:`MemoryStore`, the in-process store for users' unit tests.

The shared adapter contract runs on it in ``test_adapter_contract.py`` (backend
``memory``); here: thread safety, bounded streaming, snapshot listings, the listing order
of the backend it stands in for, honest encryption reporting, atomic puts, verified reads,
and ``Residency.load(storage=...)`` end to end.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from helpers_storage import ChunkedSource

from residency_sdk.errors import (
    CapabilityUnavailable,
    IntegrityError,
    InvalidKey,
    ObjectNotFound,
    StorageError,
)
from residency_sdk.model import StorageTarget
from residency_sdk.storage.base import ObjectStore, Residue
from residency_sdk.storage.memory import CHUNK_SIZE, MemoryStore

MB = 1024 * 1024


def _target(provider: str = "aws", **update: Any) -> StorageTarget:
    region = {"aws": "eu-central-1", "gcp": "europe-west3", "azure": "germanywestcentral",
              "local": "local-de"}[provider]
    fields: dict[str, Any] = {"provider": provider, "region": region,
                              "bucket": f"residency-de-{provider}-data", "country": "DE",
                              "kms_key": "alias/residency-de" if provider == "aws" else None}
    return StorageTarget(**{**fields, **update})


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore(_target())


@pytest.fixture
def fast_thread_switching() -> Iterator[None]:
    """Switch threads every 10 µs instead of 5 ms, so unguarded shared state breaks."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


# --- construction ----------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["aws", "gcp", "azure", "local"])
def test_stands_in_for_any_provider(provider: str) -> None:
    target = _target(provider)
    store = MemoryStore(target)
    assert isinstance(store, ObjectStore)
    assert store.target is target
    assert repr(store) == f"MemoryStore({provider}:residency-de-{provider}-data)"
    store.put("k", b"v")
    assert store.get("k") == b"v"


@pytest.mark.parametrize("chunk_size", [0, -1, 64 * MB + 1, True, 1.5])
def test_rejects_a_bad_chunk_size(chunk_size: Any) -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        MemoryStore(_target(), chunk_size=chunk_size)


def test_instances_do_not_share_objects_and_close_keeps_them() -> None:
    one, two = MemoryStore(_target()), MemoryStore(_target())
    one.put("k", b"one")
    assert not two.exists("k")
    one.close()
    assert one.get("k") == b"one"


# --- thread safety -----------------------------------------------------------------------

THREADS = 8
ROUNDS = 150
SHARED_SLOTS = 10


def _payload(thread: int, i: int) -> bytes:
    return f"<{thread}:{i}>".encode() * (1 + (i * 7 + thread) % 23)  # 8 to ~230 bytes


def test_concurrent_puts_gets_deletes_from_8_threads(fast_thread_switching: None) -> None:
    # Small chunks: most objects span several chunks, so a torn object would show.
    store = MemoryStore(_target(), chunk_size=16)
    candidates = {slot: {_payload(t, i) for t in range(THREADS) for i in range(ROUNDS)
                         if i % SHARED_SLOTS == slot} for slot in range(SHARED_SLOTS)}
    barrier = threading.Barrier(THREADS)
    failures: list[BaseException] = []

    def work(t: int) -> None:
        try:
            barrier.wait()
            for i in range(ROUNDS):
                key = f"t{t}/k{i:03d}"
                store.put(key, _payload(t, i), metadata={"thread": str(t)})
                assert store.get(key) == _payload(t, i)
                slot = f"shared/s{i % SHARED_SLOTS}"
                store.put(slot, io.BytesIO(_payload(t, i)))
                assert store.get(slot) in candidates[i % SHARED_SLOTS]
                if i % 2:
                    assert store.delete(key) is True
                    assert store.exists(key) is False
                    assert store.delete(key) is False
                # Only this thread writes under t<t>/: its listing is exactly known.
                own = [info.key for info in store.list(f"t{t}/")]
                assert own == [f"t{t}/k{j:03d}" for j in range(i + 1) if j % 2 == 0]
                if i % 5 == 0:  # a whole listing while the other threads write
                    assert sum(1 for _ in store.list()) >= len(own)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == [], failures[:3]

    kept = {f"t{t}/k{i:03d}": _payload(t, i) for t in range(THREADS) for i in range(ROUNDS)
            if i % 2 == 0}
    listed = {info.key: info for info in store.list()}
    assert sorted(listed) == sorted([*kept, *(f"shared/s{s}" for s in range(SHARED_SLOTS))])
    for key, data in kept.items():
        assert store.get(key) == data
        assert listed[key].size == len(data)
        assert listed[key].checksum == f"sha256:{hashlib.sha256(data).hexdigest()}"
        assert listed[key].metadata == {"thread": key[1:key.index("/")]}
    for slot in range(SHARED_SLOTS):
        data = store.get(f"shared/s{slot}")
        assert data in candidates[slot]
        assert listed[f"shared/s{slot}"].checksum == \
            f"sha256:{hashlib.sha256(data).hexdigest()}"


# --- streaming ---------------------------------------------------------------------------


class RecordingSource(ChunkedSource):
    """A non-seekable :class:`ChunkedSource` that records every size it is asked for and
    hands out at most ``trickle`` bytes per read (short reads are legal)."""

    def __init__(self, size: int, *, trickle: int | None = None) -> None:
        super().__init__(size)
        self.requests: list[int | None] = []
        self.trickle = trickle

    def read(self, size: int | None = -1) -> bytes:
        self.requests.append(size)
        wanted = -1 if size is None else size
        if wanted >= 0 and self.trickle is not None:
            wanted = min(wanted, self.trickle)
        data = super().read(wanted)
        assert data is not None
        return data


def test_streaming_put_reads_bounded_chunks_of_a_non_seekable_reader(store: MemoryStore) -> None:
    size = 3 * CHUNK_SIZE + 12345
    source = RecordingSource(size)
    assert not source.seekable()
    seen: list[int] = []
    info = store.put("big.bin", source, progress=seen.append)  # type: ignore[arg-type]
    assert source.produced == size
    assert source.requests, "the source was never read"
    assert all(r is not None and 0 < r <= CHUNK_SIZE for r in source.requests), \
        f"unbounded reads: {[r for r in source.requests if r is None or r <= 0][:5]}"
    assert seen == [CHUNK_SIZE, CHUNK_SIZE, CHUNK_SIZE, 12345]
    assert info.size == size
    assert info.checksum == f"sha256:{source.sha256}"
    assert hashlib.sha256(store.get("big.bin")).hexdigest() == source.sha256
    digest = hashlib.sha256()
    with store.open("big.bin") as reader:
        assert not reader.seekable()
        while chunk := reader.read(MB // 3):
            assert len(chunk) <= MB // 3
            digest.update(chunk)
    assert digest.hexdigest() == source.sha256


def test_streaming_put_tops_up_short_reads_into_full_chunks() -> None:
    store = MemoryStore(_target(), chunk_size=64 * 1024)
    size = 200 * 1024 + 7
    source = RecordingSource(size, trickle=5000)
    seen: list[int] = []
    info = store.put("trickle.bin", source, progress=seen.append)  # type: ignore[arg-type]
    assert seen == [64 * 1024, 64 * 1024, 64 * 1024, 8 * 1024 + 7]
    assert all(r is not None and 0 < r <= 64 * 1024 for r in source.requests)
    assert info.checksum == f"sha256:{source.sha256}"
    assert hashlib.sha256(store.get("trickle.bin")).hexdigest() == source.sha256


def test_open_reader_is_forward_only_and_sees_the_object_as_it_was(store: MemoryStore) -> None:
    store.put("doc", b"0123456789" * 1000)
    with store.open("doc") as reader:
        assert reader.read(5) == b"01234"
        store.put("doc", b"replaced")
        store.delete("doc")
        assert reader.read(5) == b"56789"
        rest = reader.read()
    assert len(rest) == 10000 - 10
    assert reader.closed
    with pytest.raises(ValueError, match="closed"):
        reader.read(1)
    with pytest.raises(ObjectNotFound):
        store.open("doc")


def test_open_reader_fills_each_read_across_chunks() -> None:
    store = MemoryStore(_target(), chunk_size=3)
    store.put("k", b"abcdefghij")
    with store.open("k") as reader:
        assert [reader.read(4), reader.read(4), reader.read(4), reader.read(4)] == \
            [b"abcd", b"efgh", b"ij", b""]


# --- listing -----------------------------------------------------------------------------


def test_listing_while_deleting_and_writing_yields_the_snapshot(store: MemoryStore) -> None:
    keys = [f"l/{i:02d}" for i in range(20)]
    for key in keys:
        store.put(key, key.encode())
    yielded = []
    for n, info in enumerate(store.list("l/")):
        yielded.append(info.key)
        assert store.delete(info.key) is (info.key != "l/15")
        if n == 0:
            assert store.delete("l/15") is True  # not yet yielded
            store.put("l/99", b"written during the listing")
    assert yielded == keys  # the snapshot of the call, in key order, nothing skipped
    assert [i.key for i in store.list("l/")] == ["l/99"]


def test_listing_is_taken_when_called_not_when_first_iterated(store: MemoryStore) -> None:
    store.put("p/a", b"1")
    listing = store.list("p/")
    store.put("p/b", b"2")
    store.delete("p/a")
    assert [i.key for i in listing] == ["p/a"]


def test_listing_filters_by_prefix(store: MemoryStore) -> None:
    for key in ("a/1", "a/2", "ab", "b/1"):
        store.put(key, b"x")
    assert [i.key for i in store.list("a/")] == ["a/1", "a/2"]
    assert [i.key for i in store.list("a")] == ["a/1", "a/2", "ab"]
    assert [i.key for i in store.list("zz")] == []


ORDER_KEYS = ["a", "a/b", "a-c", "a/b/c", "b", "a0", "Z", "é", "a/a"]


def test_cloud_stand_in_lists_in_code_point_order() -> None:
    store = MemoryStore(_target("gcp"))
    for key in ORDER_KEYS:
        store.put(key, b"x")
    listed = [i.key for i in store.list()]
    assert listed == sorted(ORDER_KEYS, key=lambda k: k.encode("utf-8"))
    assert listed.index("a-c") < listed.index("a/b")  # '-' (0x2d) sorts before '/' (0x2f)


def test_local_stand_in_lists_in_the_local_stores_order(tmp_path: Path) -> None:
    from residency_sdk.storage.local import LocalStore

    target = _target("local")
    memory, local = MemoryStore(target), LocalStore(target, tmp_path)
    for key in ORDER_KEYS:
        memory.put(key, b"x")
        local.put(key, b"x")
    expected = [i.key for i in local.list()]
    assert expected.index("a/b") < expected.index("a-c")  # the directory tree's order
    assert [i.key for i in memory.list()] == expected
    assert [i.key for i in memory.list("a")] == [i.key for i in local.list("a")]


# --- what is reported ----------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["aws", "gcp", "azure", "local"])
def test_reports_no_encryption_whatever_the_target_names(provider: str) -> None:
    store = MemoryStore(_target(provider, kms_key="alias/residency-de",
                                encryption_scope="residency-de"))
    put = store.put("k", b"phi")
    infos = [put, store.head("k"), *store.list()]
    assert [(i.encryption, i.kms_key) for i in infos] == [(None, None)] * 3


def test_checksum_time_etag_and_metadata(store: MemoryStore) -> None:
    before = datetime.now(UTC)
    meta = {"study": "123"}
    first = store.put("k", b"abc", metadata=meta)
    after = datetime.now(UTC)
    assert first.checksum == "sha256:" + hashlib.sha256(b"abc").hexdigest()
    assert first.last_modified is not None and first.last_modified.tzinfo is not None
    assert first.last_modified.utcoffset() is not None
    assert not first.last_modified.utcoffset()  # UTC
    assert before <= first.last_modified <= after
    meta["study"] = "changed after the put"
    head = store.head("k")
    assert head.metadata == {"study": "123"}
    head.metadata["study"] = "changed on a returned info"
    assert store.head("k").metadata == {"study": "123"}
    assert head == dataclasses.replace(first, metadata=head.metadata)
    second = store.put("k", b"abc")
    assert first.etag and second.etag and first.etag != second.etag
    assert second.metadata == {}


# --- failures ------------------------------------------------------------------------------


class FailingSource(io.RawIOBase):
    """Hands out ``good`` bytes, then raises OSError."""

    def __init__(self, good: int) -> None:
        super().__init__()
        self.left = good

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.left <= 0:
            raise OSError("connection reset by peer")
        n = min(len(buffer), self.left)
        buffer[:n] = b"x" * n
        self.left -= n
        return n


def test_failed_put_leaves_nothing_and_keeps_the_previous_object() -> None:
    store = MemoryStore(_target(), chunk_size=1024)
    with pytest.raises(StorageError, match="connection reset"):
        store.put("new", FailingSource(5000))  # type: ignore[arg-type]
    assert not store.exists("new")
    store.put("old", b"previous")
    with pytest.raises(StorageError):
        store.put("old", FailingSource(5000))  # type: ignore[arg-type]

    def refuse(_: int) -> None:
        raise RuntimeError("progress callback failed")

    with pytest.raises(RuntimeError, match="progress callback"):
        store.put("old", b"y" * 5000, progress=refuse)
    assert store.get("old") == b"previous"
    assert [i.key for i in store.list()] == ["old"]
    assert store.purge_residue("") == Residue()
    assert store.residue_left("") == []


def test_reads_verify_the_stored_checksum(store: MemoryStore) -> None:
    # White-box: only a bug in the store itself could change an entry's bytes.
    store.put("k", b"original bytes")
    entry = store._objects["k"]
    store._objects["k"] = dataclasses.replace(entry, chunks=(b"tampered bytes",))
    with pytest.raises(IntegrityError, match="checksum mismatch"):
        store.get("k")
    with store.open("k") as reader, pytest.raises(IntegrityError, match="checksum mismatch"):
        reader.read()
    store._objects["k"] = dataclasses.replace(entry, chunks=(b"original",))
    with pytest.raises(IntegrityError):
        store.get("k")


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "../up", "a/./b", "trailing/", "dot.",
                                 "back\\slash", "nul\x00"])
def test_invalid_keys_are_refused_everywhere(store: MemoryStore, key: str) -> None:
    calls: list[Callable[[], object]] = [
        lambda: store.put(key, b"x"), lambda: store.get(key), lambda: store.head(key),
        lambda: store.open(key), lambda: store.delete(key), lambda: store.exists(key)]
    for call in calls:
        with pytest.raises(InvalidKey):
            call()
    assert list(store.list()) == []


def test_invalid_prefix_data_and_metadata_are_refused(store: MemoryStore) -> None:
    with pytest.raises(InvalidKey):
        store.list("../")
    with pytest.raises(StorageError, match="bytes or a binary file"):
        store.put("k", "text is not bytes")  # type: ignore[arg-type]
    with pytest.raises(StorageError, match="bytes or a binary file"):
        store.put("k", io.StringIO("text"))  # type: ignore[arg-type]
    with pytest.raises(StorageError, match="metadata"):
        store.put("k", b"x", metadata={"n": 1})  # type: ignore[dict-item]
    assert not store.exists("k")


def test_missing_objects_raise_object_not_found(store: MemoryStore) -> None:
    for call in (store.get, store.head, store.open):
        with pytest.raises(ObjectNotFound, match="memory store aws:residency-de-aws-data"):
            call("missing")
    assert store.delete("missing") is False


def test_capabilities(store: MemoryStore) -> None:
    store.put("k", b"x", metadata={"legal_hold": "true"})
    assert store.hold_reason(store.head("k"), datetime.now(UTC)) is None  # no native holds
    with pytest.raises(CapabilityUnavailable, match="in-memory"):
        store.describe_bucket()


# --- end to end ------------------------------------------------------------------------------


def test_residency_load_with_memory_storage(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from residency_sdk import Residency, Tenant

    monkeypatch.chdir(tmp_path)
    opened: list[MemoryStore] = []

    def opener(target: StorageTarget, location: str) -> MemoryStore:
        opened.append(MemoryStore(target))
        return opened[-1]

    res = Residency.load(storage=opener)
    try:
        tenant_store = res.storage_for(Tenant(id="clinic-17", country="DE"))
        tenant_store.put("notes/a.txt", b"hello", data_class="personal")
        assert tenant_store.get("notes/a.txt") == b"hello"
        assert [o.key for o in tenant_store.list()] == ["notes/a.txt"]
    finally:
        res.close()
    # The tenant's first write asked every location whether its id is bound elsewhere
    # (one store each, plus in-country failovers) and recorded its country in DE.
    [home] = [m for m in opened if m.target == res.backend("DE")]
    assert [i.key for i in home.list()] == ["_residency/lineage/clinic-17/reached/DE/azure",
                                            "_residency/tenant-records/clinic-17.json",
                                            "tenants/clinic-17/notes/a.txt"]
    assert home.target.country == "DE"
    elsewhere = [i.key for m in opened if m is not home for i in m.list()]
    # ... the in-country failover keeps a copy of the SDK's records, nothing else
    assert all(k.startswith(("_residency/tenant-records/", "_residency/lineage/clinic-17/"))
               for k in elsewhere)
    assert list(tmp_path.iterdir()) == []  # nothing on disk
