"""The behavioural contract every storage adapter keeps, run against each one.

Parametrised over local, aws (moto), gcp (gcp-storage-emulator), azure (Azurite) and
memory (:class:`~residency_sdk.storage.memory.MemoryStore`, the in-process test store) by
this module's ``provider_harness`` fixture. The four real backends' stores are built from
the region map's targets through the production factory; the memory one stands in for
each location's default backend. Where backends legitimately differ (encryption, paging,
memory held), each one has its own explicit expectation.
"""

from __future__ import annotations

import base64
import hashlib
import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers_storage import ChunkedSource, MemoryHarness, PeakRSS
from storage_harness import PROVIDERS, ProviderHarness

from residency_sdk.errors import ObjectNotFound
from residency_sdk.storage.base import ObjectStore

pytestmark = pytest.mark.emulator

MB = 1024 * 1024
BACKENDS = (*PROVIDERS, "memory")


@pytest.fixture(params=BACKENDS)
def provider_harness(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
                     tmp_path: Path) -> ProviderHarness | MemoryHarness:
    """The conftest harness (local, aws, gcp, azure) plus ``memory``, which needs no
    emulator (overrides conftest's ``provider_harness`` in this module only)."""
    if request.param == "memory":
        return MemoryHarness()
    emulators = request.getfixturevalue("emulators")
    return ProviderHarness(request.param, emulators, monkeypatch, tmp_path)


@pytest.fixture
def store(provider_harness: Any, tmp_path: Path) -> Iterator[ObjectStore]:
    target = provider_harness.target(provider_harness.write_map(tmp_path))
    opened = provider_harness.open(target)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def prefix() -> str:
    return f"contract-{uuid.uuid4().hex[:12]}/"


def test_round_trip_bytes(store: ObjectStore, prefix: str) -> None:
    key = prefix + "notes/a.txt"
    info = store.put(key, b"hello residency", metadata={"study": "123"})
    assert info.size == 15
    assert info.checksum and ":" in info.checksum
    assert store.get(key) == b"hello residency"
    head = store.head(key)
    assert head.size == 15
    assert head.metadata.get("study") == "123"
    assert store.exists(key)


def test_round_trip_empty_object(store: ObjectStore, prefix: str) -> None:
    store.put(prefix + "empty", b"")
    assert store.get(prefix + "empty") == b""
    assert store.head(prefix + "empty").size == 0


def test_round_trip_file_object_multipart(store: ObjectStore, prefix: str) -> None:
    # 20 MiB crosses the 16 MiB multipart threshold: multipart / resumable / block upload.
    source = ChunkedSource(20 * MB + 123)
    seen: list[int] = []
    info = store.put(prefix + "scan.dcm", source, progress=seen.append)  # type: ignore[arg-type]
    assert info.size == 20 * MB + 123
    assert sum(seen) == 20 * MB + 123
    digest = hashlib.sha256()
    with store.open(prefix + "scan.dcm") as reader:
        while chunk := reader.read(MB):
            digest.update(chunk)
    assert digest.hexdigest() == source.sha256
    assert hashlib.sha256(store.get(prefix + "scan.dcm")).hexdigest() == source.sha256


def test_round_trip_seekable_file(store: ObjectStore, prefix: str, tmp_path: Path) -> None:
    path = tmp_path / "upload.bin"
    path.write_bytes(b"\x00\x01binary\xff" * 1000)
    with path.open("rb") as fh:
        store.put(prefix + "file.bin", fh)
    assert store.get(prefix + "file.bin") == path.read_bytes()


@pytest.mark.slow
def test_stream_200mb_with_bounded_memory(store: ObjectStore, prefix: str) -> None:
    size = 200 * MB
    source = ChunkedSource(size, seed=200)
    with PeakRSS() as up:
        info = store.put(prefix + "large.bin", source)  # type: ignore[arg-type]
    assert info.size == size
    digest = hashlib.sha256()
    received = 0
    with PeakRSS() as down, store.open(prefix + "large.bin") as reader:
        while chunk := reader.read(4 * MB):
            digest.update(chunk)
            received += len(chunk)
    assert received == size
    assert digest.hexdigest() == source.sha256
    # Chunks in flight are bounded (8 MiB x (concurrency + 1)); the object is 200 MB.
    # The memory store keeps the object in this process by design: it may hold it once
    # (plus the same bounded slack), never a second copy.
    up_limit = 120 + (size / 1e6 if store_holds_objects_in_process(store) else 0)
    assert up.growth_mb < up_limit, f"upload grew RSS by {up.growth_mb:.0f} MB"
    assert down.growth_mb < 120, f"download grew RSS by {down.growth_mb:.0f} MB"
    store.delete(prefix + "large.bin")


def store_holds_objects_in_process(store: ObjectStore) -> bool:
    from residency_sdk.storage.memory import MemoryStore

    return isinstance(store, MemoryStore)


def test_listing_past_one_page(store: ObjectStore, prefix: str) -> None:
    keys = [f"{prefix}list/{i:02d}" for i in range(7)]
    for key in keys:
        store.put(key, key.encode())
    store.put(f"{prefix}other/x", b"not listed")
    if hasattr(store, "page_size"):
        store.page_size = 3  # type: ignore[attr-defined]
    listed = sorted(info.key for info in store.list(prefix + "list/"))
    assert listed == keys
    sizes = {info.key: info.size for info in store.list(prefix + "list/")}
    assert sizes[keys[0]] == len(keys[0])


def test_listing_is_paginated(provider_harness: Any, store: ObjectStore, prefix: str) -> None:
    """Cloud adapters list in pages of ``page_size`` (asked for on every request); the
    memory and local stores have no pages: one walk of the whole listing, in key order."""
    provider = provider_harness.provider
    if provider in ("memory", "local"):
        for i in (3, 0, 4, 1, 2):
            store.put(f"{prefix}p/{i}", b"x")
        assert not hasattr(store, "page_size")
        assert [i.key for i in store.list(prefix + "p/")] == [f"{prefix}p/{i}"
                                                              for i in range(5)]
        return
    for i in range(5):
        store.put(f"{prefix}p/{i}", b"x")
    if provider == "gcp":
        # gcp-storage-emulator ignores maxResults and answers with one page (documented in
        # docs/storage.md): what can be checked is that every request asks for the page
        # size, and that the listing is complete.
        urls: list[str] = []
        store.client._http.hooks["response"].append(  # type: ignore[attr-defined]
            lambda response, *a, **kw: urls.append(response.request.url))
        store.page_size = 2  # type: ignore[attr-defined]
        assert sorted(i.key for i in store.list(prefix + "p/")) == [f"{prefix}p/{i}"
                                                                    for i in range(5)]
        lists = [u for u in urls if "/o?" in u and "alt=media" not in u]
        assert lists and all("maxResults=2" in u for u in lists), lists
        return
    if provider == "aws":
        calls: list[Any] = []
        store.client.meta.events.register(  # type: ignore[attr-defined]
            "before-parameter-build.s3.ListObjectsV2",
            lambda params, **kw: calls.append(params["MaxKeys"]))
        lister: Any = store
    else:
        from residency_sdk.storage.azure import AzureStore

        calls = []
        lister = AzureStore(store.target, raw_request_hook=lambda r: calls.append(
            r.http_request.url) if "comp=list" in r.http_request.url else None)
    lister.page_size = 2
    assert sorted(i.key for i in lister.list(prefix + "p/")) == [f"{prefix}p/{i}"
                                                                 for i in range(5)]
    assert len(calls) == 3  # 2 + 2 + 1
    if provider == "aws":
        assert calls == [2, 2, 2]
    else:
        assert all("maxresults=2" in url for url in calls)


def test_delete(store: ObjectStore, prefix: str) -> None:
    key = prefix + "to-delete"
    store.put(key, b"x")
    assert store.delete(key) is True
    assert store.delete(key) is False
    assert not store.exists(key)
    assert [i.key for i in store.list(prefix)] == []
    with pytest.raises(ObjectNotFound):
        store.get(key)


def test_missing_key_raises_typed_not_found(store: ObjectStore, prefix: str) -> None:
    key = prefix + "never-written"
    with pytest.raises(ObjectNotFound) as excinfo:
        store.get(key)
    assert key in str(excinfo.value)
    with pytest.raises(ObjectNotFound):
        store.head(key)
    with pytest.raises(ObjectNotFound):
        store.open(key)
    assert store.exists(key) is False


def test_copy_to_other_store(provider_harness: Any, tmp_path: Path, prefix: str) -> None:
    map_path = provider_harness.write_map(tmp_path)
    source = provider_harness.open(provider_harness.target(map_path, "DE"))
    dest = provider_harness.open(provider_harness.target(map_path, "FR"))
    source.put(prefix + "c", b"copied bytes", metadata={"k": "v"})
    info = source.copy_to(dest, prefix + "c")
    assert info.size == 12
    assert dest.get(prefix + "c") == b"copied bytes"
    assert dest.head(prefix + "c").metadata.get("k") == "v"


def _sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_encryption_parameters_sent_and_reported(provider_harness: Any, store: ObjectStore,
                                                 prefix: str) -> None:
    provider = provider_harness.provider
    target = store.target
    if provider == "aws":
        # What went on the wire: the headers of each prepared HTTP request.
        sent: list[tuple[str, dict[str, str]]] = []
        for op in ("PutObject", "CreateMultipartUpload"):
            store.client.meta.events.register(  # type: ignore[attr-defined]
                f"before-send.s3.{op}",
                lambda request, op=op, **kw: sent.append((op, {
                    k.lower(): (v.decode() if isinstance(v, bytes) else v)
                    for k, v in request.headers.items()})))
        store.put(prefix + "small", b"phi")
        store.put(prefix + "large", ChunkedSource(17 * MB))  # type: ignore[arg-type]
        assert [op for op, _ in sent] == ["PutObject", "CreateMultipartUpload"]
        for _, headers in sent:
            assert headers["x-amz-server-side-encryption"] == "aws:kms"
            assert headers["x-amz-server-side-encryption-aws-kms-key-id"] == target.kms_key
        for key in ("small", "large"):
            head = store.head(prefix + key)
            assert head.encryption == "aws:kms"
            assert head.kms_key == target.kms_key  # moto's HeadObject reports the key
    elif provider == "gcp":
        urls: list[str] = []
        store.client._http.hooks["response"].append(  # type: ignore[attr-defined]
            lambda response, *a, **kw: urls.append(response.request.url))
        store.put(prefix + "small", b"phi")
        store.put(prefix + "large", ChunkedSource(17 * MB))  # type: ignore[arg-type]
        uploads = [u for u in urls if "/upload/" in u and "uploadType=" in u
                   and "upload_id=" not in u]
        assert len(uploads) == 2
        from urllib.parse import parse_qs, urlsplit

        for url in uploads:
            assert parse_qs(urlsplit(url).query)["kmsKeyName"] == [target.kms_key]
        # The emulator never reports kms_key_name (TEST_INFRA.md): nothing more to assert.
    elif provider == "azure":
        from residency_sdk.storage.azure import AzureStore

        headers: list[dict[str, str]] = []
        hooked = AzureStore(target, raw_request_hook=lambda r: headers.append(
            {"method": r.http_request.method, "url": r.http_request.url,
             **dict(r.http_request.headers)}))
        hooked.put(prefix + "small", b"phi")
        hooked.put(prefix + "large", ChunkedSource(17 * MB))  # type: ignore[arg-type]
        writes = [h for h in headers if h["method"] == "PUT" and "comp=properties" not in
                  h["url"]]
        assert writes, "no upload request seen"
        blocks = [h for h in writes if "comp=block" in h["url"] and "blocklist" not in h["url"]]
        assert blocks, "the large object should go up as blocks"
        for request in writes:
            assert request.get("x-ms-encryption-scope") == target.encryption_scope
        hooked.close()
        # Azurite drops encryption scopes silently (TEST_INFRA.md).
    elif provider == "local":
        info = store.put(prefix + "small", b"phi")
        assert info.encryption == "local:aes-256-gcm"
        assert store.head(prefix + "small").encryption == "local:aes-256-gcm"
    elif provider == "memory":
        # Nothing is encrypted in memory, and it must not claim otherwise, even though the
        # target it stands in for names a key (or an encryption scope).
        assert target.kms_key or target.encryption_scope
        info = store.put(prefix + "small", b"phi")
        head = store.head(prefix + "small")
        assert (info.encryption, info.kms_key) == (None, None)
        assert (head.encryption, head.kms_key) == (None, None)
    else:
        pytest.fail(f"no encryption expectation for the {provider} backend")


def test_put_refuses_target_without_customer_managed_key(provider_harness: Any,
                                                         store: ObjectStore,
                                                         prefix: str) -> None:
    from residency_sdk.errors import EncryptionError

    if provider_harness.provider in ("local", "memory"):
        # Neither uses the target's key: local encrypts with its own in-location key,
        # memory encrypts nothing and says so. A bare target is accepted by both.
        bare = provider_harness.open(store.target.model_copy(
            update={"kms_key": None, "encryption_scope": None}))
        info = bare.put(prefix + "unencrypted", b"phi")
        expected = "local:aes-256-gcm" if provider_harness.provider == "local" else None
        assert info.encryption == expected
        assert bare.head(prefix + "unencrypted").encryption == expected
        assert bare.get(prefix + "unencrypted") == b"phi"
        assert store.exists(prefix + "unencrypted")  # the same bucket, as for a cloud
        return
    field = "encryption_scope" if provider_harness.provider == "azure" else "kms_key"
    bare = provider_harness.open(store.target.model_copy(update={field: None}))
    with pytest.raises(EncryptionError, match=field):
        bare.put(prefix + "unencrypted", b"phi")
    assert not store.exists(prefix + "unencrypted")


def test_repr_has_no_secrets(provider_harness: Any, store: ObjectStore) -> None:
    import os

    text = repr(store)
    for name in ("AWS_SECRET_ACCESS_KEY", "RESIDENCY_AZURE_CONNECTION_STRING"):
        value = os.environ.get(name)
        if value:
            assert value not in text
    assert "AccountKey" not in text
    assert "Eby8vdM02" not in text


def test_data_from_io_bytesio(store: ObjectStore, prefix: str) -> None:
    store.put(prefix + "bio", io.BytesIO(b"from a BytesIO"))
    assert store.get(prefix + "bio") == b"from a BytesIO"
