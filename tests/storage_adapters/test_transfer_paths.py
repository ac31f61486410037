"""The fast transfer paths keep every check: what goes on the wire and what is verified.

- Azure: bytes in memory up to 64 MiB go up in one Put Blob (the service's MD5 of what it
  received is compared with ours); streams go as blocks, each with its Content-MD5, and
  the commit records the whole-object MD5 (no extra Set Blob Properties request);
  ``get()`` reads ranges in parallel and hashes them in order.
- GCS: bytes in memory up to 100 MiB go up in one data request (one resumable chunk).
- S3: ``get()`` reads the body whole and hashes it once, per part.

Corruption is planted by loopback proxies in front of the emulators: bytes rewritten in
the client's requests (corrupted on the way up) or in the service's answers (on the way
down). Every such case must end in :class:`IntegrityError`, with nothing left stored.
"""

from __future__ import annotations

import base64
import hashlib
import io
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import google_crc32c
import pytest
from emulators import RewritingProxy
from storage_harness import ProviderHarness

from residency_sdk.errors import IntegrityError, StorageError
from residency_sdk.storage._streaming import HashingSink, md5

pytestmark = pytest.mark.emulator

MB = 1024 * 1024
MARK = b"ORIGINAL-BYTES-HERE"
BAD = b"CORRUPTED-IN-WIRE!!"
SCOPE = "residency-de"


class RequestRewritingProxy(RewritingProxy):
    """:class:`RewritingProxy` rewriting what the client sends instead of the answers: a
    body corrupted on its way to the service."""

    def _pump(self, src: Any, dst: Any, rewrite: bool) -> None:
        super()._pump(src, dst, not rewrite)


def _payload(size: int, marks: tuple[int, ...] = ()) -> bytes:
    data = bytearray(random.Random(size).randbytes(size))
    for at in marks:
        data[at:at + len(MARK)] = MARK
    return bytes(data)


class _ShortReads(io.RawIOBase):
    """A non-seekable stream that never returns more than 300,000 bytes per read."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        piece = self._data.read(min(len(buffer), 300_000))
        buffer[:len(piece)] = piece
        return len(piece)


def _b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


@pytest.fixture
def harness(request: pytest.FixtureRequest, emulators: Any, monkeypatch: pytest.MonkeyPatch,
            tmp_path: Path) -> ProviderHarness:
    return ProviderHarness(request.param, emulators, monkeypatch, tmp_path)


@pytest.fixture
def closing() -> Iterator[list[Any]]:
    opened: list[Any] = []
    yield opened
    for store in opened:
        store.close()


def _port(harness: ProviderHarness) -> int:
    return harness.emulators.get(harness.provider).port


# --- Azure -------------------------------------------------------------------------------


class _Requests:
    """azure-core's raw request hook: ``(method, url, headers)`` of every request."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str]]] = []

    def __call__(self, request: Any) -> None:
        http = request.http_request
        self.seen.append((http.method, http.url, {k.lower(): v for k, v in
                                                  http.headers.items()}))


def _azure(harness: ProviderHarness, tmp_path: Path, closing: list[Any], *,
           port: int | None = None, **options: Any) -> tuple[Any, _Requests]:
    from residency_sdk.storage.azure import AzureStore

    target = harness.target(harness.write_map(tmp_path, {"DE": {"encryption_scope": SCOPE}}))
    if port is not None:
        target = target.model_copy(
            update={"endpoint": f"http://127.0.0.1:{port}/devstoreaccount1"})
    hook = _Requests()
    store = AzureStore(target, raw_request_hook=hook, **options)
    closing.append(store)
    return store, hook


@pytest.mark.parametrize("harness", ["azure"], indirect=True)
def test_azure_bytes_go_up_in_one_put_blob_with_the_scope(
        harness: ProviderHarness, tmp_path: Path, closing: list[Any]) -> None:
    store, hook = _azure(harness, tmp_path, closing)
    data = _payload(17 * MB)  # above the former 16 MiB threshold, below 64 MiB
    key = f"speed/{uuid.uuid4().hex}"
    info = store.put(key, data)
    writes = [(url, h) for method, url, h in hook.seen if method == "PUT"]
    assert len(writes) == 1, writes  # one Put Blob: no blocks, no Set Blob Properties
    url, headers = writes[0]
    assert "comp=" not in url
    assert headers["x-ms-encryption-scope"] == SCOPE
    assert info.checksum == f"md5:{_b64md5(data)}"
    assert store.head(key).checksum == info.checksum  # recorded: every read verifies it
    assert store.get(key) == data


@pytest.mark.parametrize("harness", ["azure"], indirect=True)
def test_azure_stream_blocks_carry_their_md5_and_the_commit_records_the_whole(
        harness: ProviderHarness, tmp_path: Path, closing: list[Any]) -> None:
    store, hook = _azure(harness, tmp_path, closing, chunk_size=MB, max_concurrency=3)
    size = 4 * MB + 12345
    data = _payload(size)
    key = f"speed/{uuid.uuid4().hex}"
    info = store.put(key, _ShortReads(data))
    puts = [(url, h) for method, url, h in hook.seen if method == "PUT"]
    blocks = [(url, h) for url, h in puts if "comp=block&" in url or url.endswith("comp=block")]
    commits = [(url, h) for url, h in puts if "comp=blocklist" in url]
    assert len(blocks) == 5 and len(commits) == 1, [u for u, _ in puts]
    assert len(puts) == 6  # no Set Blob Properties after the commit
    expected = [_b64md5(data[i:i + MB]) for i in range(0, size, MB)]
    assert sorted(h["content-md5"] for _, h in blocks) == sorted(expected)
    assert commits[0][1]["x-ms-blob-content-md5"] == _b64md5(data)
    for _, headers in blocks + commits:
        assert headers["x-ms-encryption-scope"] == SCOPE
    assert info.checksum == f"md5:{_b64md5(data)}" == store.head(key).checksum
    assert store.get(key) == data


@pytest.mark.parametrize("harness", ["azure"], indirect=True)
@pytest.mark.parametrize("how", ["put-blob", "blocks"])
def test_azure_upload_corrupted_on_the_way_up_is_refused_and_not_kept(
        harness: ProviderHarness, tmp_path: Path, closing: list[Any], how: str) -> None:
    data = _payload(3 * MB, marks=(2 * MB + 7,))
    key = f"speed/{uuid.uuid4().hex}"
    direct, _ = _azure(harness, tmp_path, closing)
    with RequestRewritingProxy(_port(harness), {MARK: BAD}) as proxy:
        store, _ = _azure(harness, tmp_path, closing, port=proxy.port, chunk_size=MB,
                          multipart_threshold=4 * MB if how == "put-blob" else MB)
        with pytest.raises(IntegrityError) as excinfo:
            store.put(key, data)
        assert proxy.hits == 1
    # Put Blob: Azurite stored the corrupted body and reported its MD5, which is not
    # ours (blob deleted). Blocks: Azurite checked the block's Content-MD5 and refused.
    assert ("checksum mismatch" if how == "put-blob" else "rejected") in str(excinfo.value)
    assert not direct.exists(key)


@pytest.mark.parametrize("harness", ["azure"], indirect=True)
def test_azure_parallel_get_detects_a_corrupted_range(
        harness: ProviderHarness, tmp_path: Path, closing: list[Any]) -> None:
    data = _payload(4 * MB + 999, marks=(3 * MB + 5,))
    key = f"speed/{uuid.uuid4().hex}"
    direct, _ = _azure(harness, tmp_path, closing)
    direct.put(key, data)
    with RewritingProxy(_port(harness), {MARK: BAD}) as proxy:
        store, hook = _azure(harness, tmp_path, closing, port=proxy.port, chunk_size=MB,
                             download_concurrency=4)
        with pytest.raises(IntegrityError, match="checksum mismatch"):
            store.get(key)
        assert proxy.hits >= 1
    ranges = [h.get("x-ms-range") for method, _, h in hook.seen if method == "GET"]
    assert len(ranges) >= 5, ranges  # 1 MiB ranges, read in parallel
    fresh, _ = _azure(harness, tmp_path, closing, chunk_size=MB, download_concurrency=4)
    assert fresh.get(key) == data


def test_hashing_sink_hashes_in_stream_order_whatever_the_write_order() -> None:
    data = random.Random(3).randbytes(5 * MB)
    pieces = [(i, data[i:i + MB]) for i in range(0, len(data), MB)]
    sink = HashingSink(md5())
    for offset, piece in [pieces[2], pieces[0], pieces[4], pieces[1], pieces[3]]:
        sink.seek(offset)
        sink.write(piece)
    assert sink.digest() == hashlib.md5(data, usedforsecurity=False).digest()
    assert sink.getvalue() == data


def test_hashing_sink_refuses_a_gap_or_a_range_written_twice() -> None:
    gap = HashingSink(md5())
    gap.write(b"a" * 10)
    gap.seek(20)
    gap.write(b"b" * 10)
    with pytest.raises(StorageError, match="gap at offset 10"):
        gap.digest()
    twice = HashingSink(md5())
    twice.write(b"a" * 10)
    twice.seek(5)
    with pytest.raises(StorageError, match="written twice"):
        twice.write(b"b" * 10)


# --- GCS ---------------------------------------------------------------------------------


def _gcs(harness: ProviderHarness, tmp_path: Path, closing: list[Any], *,
         port: int | None = None) -> tuple[Any, list[tuple[str, str]]]:
    from residency_sdk.storage.gcs import GCSStore

    target = harness.target(harness.write_map(tmp_path))
    if port is not None:
        target = target.model_copy(update={"endpoint": f"http://127.0.0.1:{port}"})
    store = GCSStore(target)
    closing.append(store)
    seen: list[tuple[str, str]] = []
    store.client._http.hooks["response"].append(
        lambda response, **_: seen.append((response.request.method, response.request.url)))
    return store, seen


@pytest.mark.parametrize("harness", ["gcp"], indirect=True)
def test_gcs_bytes_go_up_in_one_data_request_naming_the_kms_key(
        harness: ProviderHarness, tmp_path: Path, closing: list[Any]) -> None:
    from urllib.parse import parse_qs, urlsplit

    store, seen = _gcs(harness, tmp_path, closing)
    data = _payload(17 * MB)
    key = f"speed/{uuid.uuid4().hex}"
    info = store.put(key, data)
    uploads = [(m, u) for m, u in seen if "/upload/" in u]
    assert [m for m, _ in uploads] == ["POST", "PUT"], uploads  # start + one chunk
    query = parse_qs(urlsplit(uploads[0][1]).query)
    assert query["uploadType"] == ["resumable"]
    assert query["kmsKeyName"] == [store.target.kms_key]
    assert info.checksum == "crc32c:" + base64.b64encode(
        google_crc32c.Checksum(data).digest()).decode()
    assert store.get(key) == data


@pytest.mark.parametrize("harness", ["gcp"], indirect=True)
def test_gcs_one_chunk_upload_corrupted_on_the_way_up_is_refused_and_not_kept(
        harness: ProviderHarness, tmp_path: Path, closing: list[Any]) -> None:
    data = _payload(17 * MB, marks=(9 * MB,))
    key = f"speed/{uuid.uuid4().hex}"
    direct, _ = _gcs(harness, tmp_path, closing)
    with RequestRewritingProxy(_port(harness), {MARK: BAD}) as proxy:
        store, _ = _gcs(harness, tmp_path, closing, port=proxy.port)
        with pytest.raises(IntegrityError, match="checksum mismatch"):
            store.put(key, data)
        assert proxy.hits == 1
    assert not direct.exists(key)


# --- S3 ----------------------------------------------------------------------------------


def test_s3_whole_object_crc32c_is_combined_from_the_parts() -> None:
    from residency_sdk.storage.s3 import Crc32c, _crc32c_of

    data = random.Random(5).randbytes(3 * MB + 17)
    whole, parts = _crc32c_of(data, MB)
    assert whole == Crc32c(data).digest()
    assert parts == [Crc32c(data[i:i + MB]).digest() for i in range(0, len(data), MB)]
    assert _crc32c_of(data, None) == (Crc32c(data).digest(), [])


@pytest.mark.parametrize("harness", ["aws"], indirect=True)
def test_s3_get_of_a_multipart_object_detects_corruption(
        harness: ProviderHarness, tmp_path: Path, closing: list[Any]) -> None:
    from residency_sdk.storage.s3 import S3Store

    target = harness.target(harness.write_map(tmp_path))
    direct = S3Store(target, chunk_size=5 * MB, multipart_threshold=5 * MB)
    closing.append(direct)
    data = _payload(11 * MB, marks=(10 * MB + 3,))  # in the third part
    key = f"speed/{uuid.uuid4().hex}"
    direct.put(key, data)  # three parts: 5, 5 and 1 MiB
    with RewritingProxy(_port(harness), {MARK: BAD}) as proxy:
        store = S3Store(target.model_copy(
            update={"endpoint": f"http://127.0.0.1:{proxy.port}"}), verify_on_open=False)
        closing.append(store)
        with pytest.raises(IntegrityError, match="checksum mismatch"):
            store.get(key)
        assert proxy.hits == 1
    assert direct.get(key) == data


@pytest.mark.parametrize("harness", ["aws"], indirect=True)
def test_s3_small_put_sends_its_own_crc32c_and_botocore_does_not_hash_the_body_again(
        harness: ProviderHarness, tmp_path: Path, closing: list[Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.httpchecksum

    from residency_sdk.storage.s3 import S3Store

    target = harness.target(harness.write_map(tmp_path))
    store = S3Store(target)
    closing.append(store)
    sent: list[dict[str, str]] = []
    store._client.meta.events.register(
        "before-send.s3.PutObject", lambda request, **_: sent.append(dict(request.headers)))
    hashed: list[int] = []
    real_update = botocore.httpchecksum.CrtCrc32cChecksum.update
    monkeypatch.setattr(botocore.httpchecksum.CrtCrc32cChecksum, "update",
                        lambda self, chunk: (hashed.append(len(chunk)),
                                             real_update(self, chunk))[1])
    data = _payload(3 * MB, marks=(7,))
    info = store.put(f"speed/{uuid.uuid4().hex}", data)
    expected = base64.b64encode(google_crc32c.Checksum(data).digest()).decode()
    assert [h.get("x-amz-checksum-crc32c") for h in sent] == [expected.encode()]
    assert hashed == []  # one CRC32C pass over the body: ours
    assert info.checksum == f"crc32c:{expected}"


@pytest.mark.parametrize("harness", ["aws"], indirect=True)
def test_s3_multipart_object_has_a_full_object_crc32c_that_any_reader_can_check(
        harness: ProviderHarness, tmp_path: Path, closing: list[Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import residency_sdk.storage.s3 as s3_module
    from residency_sdk.storage.s3 import S3Store

    target = harness.target(harness.write_map(tmp_path))
    store = S3Store(target, chunk_size=5 * MB, multipart_threshold=5 * MB)
    closing.append(store)
    data = _payload(11 * MB, marks=(3,))
    key = f"speed/{uuid.uuid4().hex}"
    store.put(key, data)  # three parts
    head = store._client.head_object(Bucket=target.bucket, Key=key, ChecksumMode="ENABLED")
    whole = base64.b64encode(google_crc32c.Checksum(data).digest()).decode()
    assert (head.get("ChecksumType"), head.get("ChecksumCRC32C")) == ("FULL_OBJECT", whole)
    # botocore checks a full-object value as it reads: get() does not hash again.
    ours: list[int] = []
    real = s3_module.crc32c
    monkeypatch.setattr(s3_module, "crc32c",
                        lambda chunk, *a: (ours.append(len(chunk)), real(chunk, *a))[1])
    assert store.get(key) == data
    assert ours == []
