"""The embedded local backend: encryption at rest, atomic writes, integrity, streaming."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from residency_sdk.errors import (
    BackendUnavailable,
    IntegrityError,
    InvalidKey,
    ObjectNotFound,
    StorageError,
)
from residency_sdk.model import StorageTarget
from residency_sdk.regionmap import load_region_map
from residency_sdk.storage.factory import open_store
from residency_sdk.storage.local import ENCRYPTION, LocalStore

MB = 1024 * 1024


class PatternReader(io.RawIOBase):
    """A file object yielding ``size`` deterministic pseudo-random bytes, generated chunk
    by chunk (a 200 MB object never exists in memory)."""

    def __init__(self, size: int, seed: bytes = b"seed") -> None:
        self.size = size
        self.pos = 0
        self._block = hashlib.sha256(seed).digest() * 2048  # 64 KiB repeating block

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self.size - self.pos, len(self._block))
        start = self.pos % len(self._block)
        piece = (self._block[start:] + self._block[:start])[:n]
        buffer[:n] = piece
        self.pos += n
        return n


def pattern_sha256(size: int) -> str:
    digest = hashlib.sha256()
    reader = PatternReader(size)
    while chunk := reader.read(4 * MB):
        digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture
def target() -> StorageTarget:
    return load_region_map().locations["DE"].backends["local"]


@pytest.fixture
def store(tmp_path: Path, target: StorageTarget) -> LocalStore:
    return LocalStore(target, tmp_path / "root")


def blob_of(store: LocalStore, key: str) -> Path:
    keydir = store.bucket_dir.joinpath(*key.split("/"))
    meta = json.loads((keydir / "@meta").read_text())
    return keydir / meta["blob"]


def test_round_trip_head_list_delete(store: LocalStore) -> None:
    info = store.put("a/b.txt", b"hello", metadata={"origin": "scanner-1"})
    assert info.size == 5
    assert info.checksum == "sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert info.encryption == ENCRYPTION and info.kms_key and info.kms_key.startswith("local-de-")
    assert store.get("a/b.txt") == b"hello"
    head = store.head("a/b.txt")
    assert head.metadata == {"origin": "scanner-1"} and head.checksum == info.checksum
    store.put("a", b"")  # a key and a longer key under it coexist
    store.put("@weird/@@x", b"1")
    assert store.get("a") == b""
    assert [i.key for i in store.list()] == ["@weird/@@x", "a", "a/b.txt"]
    assert [i.key for i in store.list("a/")] == ["a/b.txt"]
    assert [i.key for i in store.list("a")] == ["a", "a/b.txt"]
    assert list(store.list("zzz/")) == []
    assert store.exists("a/b.txt") and not store.exists("a/c")
    assert store.delete("a/b.txt") is True
    assert store.delete("a/b.txt") is False
    with pytest.raises(ObjectNotFound):
        store.get("a/b.txt")
    with pytest.raises(ObjectNotFound):
        store.head("nope")
    store.delete("a")
    store.delete("@weird/@@x")
    # Erased keys leave no directory named after them.
    assert [p.name for p in store.bucket_dir.iterdir()] == ["@lock"]


def test_overwrite_replaces_the_object_and_removes_the_old_blob(store: LocalStore) -> None:
    store.put("k", b"first")
    old_blob = blob_of(store, "k")
    store.put("k", b"second")
    assert store.get("k") == b"second"
    assert not old_blob.exists()
    assert len([p for p in old_blob.parent.iterdir() if p.name.startswith("@v-")]) == 1


def test_copy_to_another_store(tmp_path: Path, store: LocalStore) -> None:
    gb = load_region_map().locations["GB"].backends["local"]
    other = LocalStore(gb, tmp_path / "root")
    store.put("x/y", b"payload" * 1000, metadata={"m": "1"})
    info = store.copy_to(other, "x/y")
    assert other.get("x/y") == b"payload" * 1000 and info.metadata == {"m": "1"}
    # Each location has its own key, kept inside its own folder.
    assert other.head("x/y").kms_key != store.head("x/y").kms_key
    assert (tmp_path / "root" / "GB" / ".keys").is_dir()


def test_encrypted_at_rest(store: LocalStore) -> None:
    secret = b"PATIENT-NAME: Jane Doe; DOB 1970-01-01; " * 1000
    store.put("records/jane.txt", secret)
    for path in store.location_dir.rglob("*"):
        if path.is_file() and ".keys" not in path.parts:
            data = path.read_bytes()
            assert b"Jane Doe" not in data and b"PATIENT" not in data
    assert store.get("records/jane.txt") == secret


def test_key_file_is_private_and_inside_the_location(tmp_path: Path, store: LocalStore) -> None:
    store.put("k", b"v")
    keys = list((tmp_path / "root").rglob("*.json"))
    assert len(keys) == 1
    assert keys[0].parent == store.location_dir / ".keys"
    assert stat.S_IMODE(keys[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((store.location_dir / ".keys").stat().st_mode) == 0o700
    # A key file others can read is refused rather than used.
    keys[0].chmod(0o644)
    fresh = LocalStore(store.target, tmp_path / "root")
    with pytest.raises(StorageError, match="chmod 600"):
        fresh.get("k")


def test_corrupted_blob_is_detected(store: LocalStore) -> None:
    store.put("scan.dcm", os.urandom(3 * MB))
    blob = blob_of(store, "scan.dcm")
    with blob.open("r+b") as fh:
        fh.seek(2 * MB)
        byte = fh.read(1)
        fh.seek(2 * MB)
        fh.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(IntegrityError, match="failed authentication"):
        store.get("scan.dcm")


def test_truncated_blob_is_detected(store: LocalStore) -> None:
    store.put("scan.dcm", os.urandom(2 * MB + 10))
    blob = blob_of(store, "scan.dcm")
    with blob.open("r+b") as fh:  # cut exactly after the first sealed chunk
        header = len(blob.read_bytes()) - (2 * MB + 10) - 3 * 16
        fh.truncate(header + MB + 16)
    with pytest.raises(IntegrityError):
        store.get("scan.dcm")


def test_checksum_mismatch_against_the_sidecar_is_detected(store: LocalStore) -> None:
    store.put("k", b"content")
    meta_path = blob_of(store, "k").parent / "@meta"
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = hashlib.sha256(b"other").hexdigest()
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(IntegrityError, match="checksum mismatch"):
        store.get("k")


def test_blob_moved_to_another_key_does_not_decrypt(store: LocalStore) -> None:
    store.put("alice", b"alice's scan")
    store.put("bob", b"bob's scan")
    alice, bob = blob_of(store, "alice"), blob_of(store, "bob")
    bob.write_bytes(alice.read_bytes())  # the key is bound into each chunk's tag
    with pytest.raises(IntegrityError):
        store.get("bob")


class FailingReader(io.RawIOBase):
    def __init__(self, good: int) -> None:
        self.left = good

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.left <= 0:
            raise OSError("source disk died")
        n = min(len(buffer), self.left)
        buffer[:n] = b"x" * n
        self.left -= n
        return n


def test_failed_write_leaves_the_previous_object_and_no_debris(store: LocalStore) -> None:
    store.put("k", b"old version")
    with pytest.raises(StorageError, match="reading the data") as caught:
        store.put("k", FailingReader(3 * MB))
    # The caller's source failed, not the backend: this must not trigger a failover.
    assert not isinstance(caught.value, BackendUnavailable)
    assert store.get("k") == b"old version"
    names = sorted(p.name for p in blob_of(store, "k").parent.iterdir())
    assert names[0] == "@meta" and len(names) == 2 and names[1].startswith("@v-")
    with pytest.raises(StorageError):
        store.put("fresh/key", FailingReader(10))
    assert not store.exists("fresh/key")
    assert not (store.bucket_dir / "fresh").exists()


def test_text_mode_files_and_bad_metadata_are_refused(store: LocalStore, tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("text")
    with path.open() as fh, pytest.raises(StorageError, match="binary"):
        store.put("k", fh)  # type: ignore[arg-type]
    with pytest.raises(StorageError, match="metadata"):
        store.put("k", b"x", metadata={"a": 1})  # type: ignore[dict-item]
    assert not store.exists("k")


def test_short_reads_from_the_source_are_handled(store: LocalStore) -> None:
    class Trickle(io.RawIOBase):
        def __init__(self) -> None:
            self.data = io.BytesIO(os.urandom(3 * MB + 7))

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            chunk = self.data.read(min(len(buffer), 4093))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    source = Trickle()
    store.put("trickle", source)
    assert store.get("trickle") == source.data.getvalue()


def test_open_streams_and_reads_exact_sizes(store: LocalStore) -> None:
    payload = os.urandom(5 * MB + 123)
    seen: list[int] = []
    store.put("big", payload, progress=seen.append)
    assert sum(seen) == len(payload)
    with store.open("big") as reader:
        first = reader.read(3 * MB)  # a full-size read, as multipart uploaders expect
        assert len(first) == 3 * MB
        rest = reader.read()
    assert first + rest == payload


def test_streaming_200_mb_keeps_memory_bounded(tmp_path: Path) -> None:
    # Through the guarded facade, so neither layer may buffer the object.
    import residency_sdk as rs

    size = 200 * MB
    res = rs.Residency.load(local_root=tmp_path / "root")
    store = res.storage_for(rs.Tenant(id="big-clinic", country="DE"))
    progressed: list[int] = []
    tracemalloc.start()
    try:
        info = store.put("huge/volume.nii", PatternReader(size), progress=progressed.append)
        _, peak_put = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        digest = hashlib.sha256()
        total = 0
        with store.open("huge/volume.nii") as reader:
            while chunk := reader.read(MB):
                digest.update(chunk)
                total += len(chunk)
        _, peak_get = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    expected = pattern_sha256(size)
    assert info.size == size and info.checksum == f"sha256:{expected}"
    assert sum(progressed) == size
    assert total == size and digest.hexdigest() == expected
    # About two 1 MiB chunks in flight, whatever the object size.
    assert peak_put < 16 * MB, peak_put
    assert peak_get < 16 * MB, peak_get


def test_factory_needs_a_root_for_local(target: StorageTarget) -> None:
    from residency_sdk.errors import BackendNotConfigured

    with pytest.raises(BackendNotConfigured, match="local_root"):
        open_store(target, local_root=None)


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.text(min_size=1, max_size=60))
def test_no_key_writes_outside_the_bucket(tmp_path: Path, target: StorageTarget,
                                          key: str) -> None:
    root = tmp_path / "h"
    store = LocalStore(target, root)
    try:
        store.put(key, b"v")
    except InvalidKey:
        return
    assert store.get(key) == b"v"
    bucket = store.bucket_dir.resolve()
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath, name).resolve()
            # The location's keys folder: its keys, and a tenant key for "tenants/<id>/..."
            assert path.is_relative_to(bucket) or path.is_relative_to(root / "DE" / ".keys")
    store.delete(key)


def test_concurrent_writers_and_readers_never_see_half_an_object(store: LocalStore) -> None:
    from concurrent.futures import ThreadPoolExecutor

    versions = [bytes([i]) * (MB + i * 4099) for i in range(8)]
    store.put("hot", versions[0])

    def write(i: int) -> None:
        for _ in range(3):
            store.put("hot", versions[i])
            store.put(f"cold/{i}", versions[i])

    def read(_: int) -> None:
        for _ in range(10):
            assert store.get("hot") in versions  # whole old or whole new, never mixed

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(write, i) for i in range(8)]
        futures += [pool.submit(read, i) for i in range(4)]
        for future in futures:
            future.result()
    assert store.get("hot") in versions
    assert all(store.get(f"cold/{i}") == versions[i] for i in range(8))
    keydir = blob_of(store, "hot").parent
    assert len([p for p in keydir.iterdir() if p.name.startswith("@v-")]) == 1


def test_file_name_limits_become_invalid_key(store: LocalStore) -> None:
    # Valid everywhere (255-byte segment), but "@" is escaped to "@@" on disk: 256 bytes.
    with pytest.raises(InvalidKey, match="too long"):
        store.put("@" + "a" * 254, b"v")
    assert store.put("a" * 255, b"v").size == 1


# --- links in the data root (issue 11, hole 4; the doors are in tests/hostile) -----------


def test_a_linked_data_root_is_resolved_once_and_used(tmp_path: Path,
                                                      target: StorageTarget) -> None:
    # A root that is itself a link (/data -> /mnt/disk) is common: resolved when opened.
    (tmp_path / "disk").mkdir()
    (tmp_path / "data").symlink_to(tmp_path / "disk", target_is_directory=True)
    store = LocalStore(target, tmp_path / "data")
    assert store.root == (tmp_path / "disk").resolve()
    store.put("a/b", b"v")
    assert store.get("a/b") == b"v" and [i.key for i in store.list()] == ["a/b"]
    assert (tmp_path / "disk" / "DE" / target.bucket / "a" / "b" / "@meta").is_file()


def test_a_data_root_swapped_for_a_link_after_opening_is_refused(
        tmp_path: Path, target: StorageTarget) -> None:
    from residency_sdk.errors import UnsafePath

    store = LocalStore(target, tmp_path / "root")
    store.put("k", b"v")
    (tmp_path / "root").rename(tmp_path / "moved")
    (tmp_path / "root").symlink_to(tmp_path / "moved", target_is_directory=True)
    with pytest.raises(UnsafePath, match="became a symbolic link"):
        store.get("k")
    with pytest.raises(UnsafePath):
        store.put("k2", b"v")
    assert not (tmp_path / "moved" / "DE" / target.bucket / "k2").exists()


def test_stray_files_in_the_tree_are_not_objects_and_never_block(store: LocalStore) -> None:
    store.put("a/b", b"v")
    # A plain file where a key directory belongs: nothing is stored there.
    (store.bucket_dir / "c").write_bytes(b"stray")
    assert not store.exists("c/d") and store.delete("c/d") is False
    assert [i.key for i in store.list()] == ["a/b"]
    # A FIFO planted as a sidecar is refused at once, not waited on.
    keydir = store.bucket_dir / "a" / "b"
    (keydir / "@meta").unlink()
    os.mkfifo(keydir / "@meta")
    with pytest.raises(IntegrityError, match="not a regular file"):
        store.head("a/b")
