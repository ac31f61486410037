"""Each cloud adapter asks for the location's key on the wire, and refuses a write the
service reports under another key (or none).

No emulator enforces encryption (TEST_INFRA.md), so two things are observed directly:

- **what the SDK sent**: a recording TCP proxy between the adapter and the emulator keeps
  the raw request bytes, independently of the client libraries' own hooks;
- **what the service reported**: :class:`~emulators.RewritingProxy` rewrites the
  emulator's answer (same length, so HTTP framing holds) so that S3, GCS or Azure reports
  another KMS key / encryption scope, a different algorithm, or nothing at all. The write
  must then fail with an :class:`~residency_sdk.errors.EncryptionError` naming the key,
  and the object must be gone (checked with the emulator's own client, not the adapter).

A positive control goes through the same proxy with the location's own key reported, so
a failure above is caused by the reported key, not by the proxy.
"""

from __future__ import annotations

import re
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from emulators import RewritingProxy
from helpers_storage import ChunkedSource
from storage_harness import ProviderHarness

from residency_sdk.errors import EncryptionError, ResidencyError

pytestmark = pytest.mark.emulator

MB = 1024 * 1024
LARGE = 17 * MB  # above every adapter's multipart threshold: multipart / resumable / blocks
# A 12-character scope: with "x-ms-encryption-scope: " it has the length of Azurite's
# "x-ms-request-server-encrypted: true", which the proxy replaces.
AZURE_SCOPE = "residency-de"
AZURE_OTHER_SCOPE = "residency-fr"
_REQUEST = re.compile(rb"(GET|PUT|POST|HEAD|DELETE) (\S+) HTTP/1\.1\r\n(.*?)\r\n\r\n", re.S)


class _Tee:
    """A socket whose received bytes are also handed to ``sink`` (for the request side)."""

    def __init__(self, sock: socket.socket, sink: Callable[[bytes], None]) -> None:
        self._sock = sock
        self._sink = sink

    def fileno(self) -> int:
        return self._sock.fileno()

    def recv(self, size: int) -> bytes:
        data = self._sock.recv(size)
        self._sink(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class RecordingProxy(RewritingProxy):
    """:class:`RewritingProxy` that also keeps every byte the client sent upstream."""

    def __init__(self, upstream_port: int, replace: dict[bytes, bytes] | None = None) -> None:
        super().__init__(upstream_port, replace or {})
        self._sent = bytearray()
        self._lock = threading.Lock()

    def _record(self, data: bytes) -> None:
        with self._lock:
            self._sent += data

    def _pump(self, src: Any, dst: Any, rewrite: bool) -> None:
        super()._pump(src if rewrite else _Tee(src, self._record), dst, rewrite)

    def requests(self) -> list[tuple[str, str, dict[str, str]]]:
        """``(method, target, headers)`` of each request seen (headers lower-cased)."""
        with self._lock:
            raw = bytes(self._sent)
        out = []
        for m in _REQUEST.finditer(raw):
            headers = {}
            for line in m.group(3).split(b"\r\n"):
                name, _, value = line.partition(b":")
                headers[name.strip().lower().decode()] = value.strip().decode()
            out.append((m.group(1).decode(), m.group(2).decode(), headers))
        return out


@pytest.fixture
def harness(request: pytest.FixtureRequest, emulators: Any, monkeypatch: pytest.MonkeyPatch,
            tmp_path: Path) -> ProviderHarness:
    return ProviderHarness(request.param, emulators, monkeypatch, tmp_path)


def _via(harness: ProviderHarness, target: Any, port: int) -> Any:
    """The adapter of ``target`` reached through the proxy on ``port`` (production factory,
    its bucket-location check included: the proxy forwards it unchanged)."""
    suffix = "/devstoreaccount1" if harness.provider == "azure" else ""
    return harness.open(target.model_copy(
        update={"endpoint": f"http://127.0.0.1:{port}{suffix}"}))


def _port(harness: ProviderHarness) -> int:
    return harness.emulators.get(harness.provider).port


def _key() -> str:
    # Long: the GCS rewrite below needs room in the answer for a full key name.
    return f"proofs-{uuid.uuid4().hex[:10]}/" + "k" * 90


@pytest.fixture
def closing() -> Iterator[list[Any]]:
    opened: list[Any] = []
    yield opened
    for store in opened:
        store.close()


# --- S3 (moto) ------------------------------------------------------------------------


def _s3_target(harness: ProviderHarness, tmp_path: Path) -> Any:
    return harness.target(harness.write_map(tmp_path))


def _s3_exists(harness: ProviderHarness, target: Any, key: str) -> bool:
    s3 = harness.aws_client("s3", target.region)
    listed = s3.list_objects_v2(Bucket=target.bucket, Prefix=key).get("Contents", [])
    return any(o["Key"] == key for o in listed)


@pytest.mark.parametrize("harness", ["aws"], indirect=True)
@pytest.mark.parametrize("size", [3, LARGE], ids=["single", "multipart"])
def test_s3_put_fails_when_s3_reports_another_kms_key_and_the_object_is_deleted(
        harness: ProviderHarness, tmp_path: Path, size: int, closing: list[Any]) -> None:
    target = _s3_target(harness, tmp_path)
    wanted = target.kms_key
    other = harness.aws_kms_key(target.region)  # a real key of the same region and account
    assert len(other) == len(wanted) and other != wanted
    key = _key()
    data: Any = b"phi" if size == 3 else ChunkedSource(size)
    with RewritingProxy(_port(harness), {wanted.encode(): other.encode()}) as proxy:
        store = _via(harness, target, proxy.port)
        closing.append(store)
        with pytest.raises(EncryptionError) as excinfo:
            store.put(key, data)
        assert proxy.hits >= 1  # S3's answer really named the other key
    message = str(excinfo.value)
    assert isinstance(excinfo.value, ResidencyError)
    assert f"key {other!r}" in message and f"aws:kms with {wanted!r}" in message
    assert not _s3_exists(harness, target, key)


@pytest.mark.parametrize("harness", ["aws"], indirect=True)
@pytest.mark.parametrize(("reported", "shown"), [
    # S3 reports SSE-S3 (AES256): encrypted, but not with the location's KMS key.
    (b"x-amz-server-side-encryption:  AES256", "'AES256'"),
    # S3 reports no server-side encryption at all (the header is renamed away).
    (b"x-amz-server-side-encryptiox: aws:kms", "None"),
], ids=["sse-s3", "none"])
def test_s3_put_fails_when_s3_does_not_report_aws_kms(
        harness: ProviderHarness, tmp_path: Path, reported: bytes, shown: str,
        closing: list[Any]) -> None:
    target = _s3_target(harness, tmp_path)
    key = _key()
    with RewritingProxy(_port(harness), {b"x-amz-server-side-encryption: aws:kms": reported}
                        ) as proxy:
        store = _via(harness, target, proxy.port)
        closing.append(store)
        with pytest.raises(EncryptionError) as excinfo:
            store.put(key, b"phi")
        assert proxy.hits >= 1
    message = str(excinfo.value)
    assert f"encryption {shown}" in message and f"aws:kms with {target.kms_key!r}" in message
    assert not _s3_exists(harness, target, key)


@pytest.mark.parametrize("harness", ["aws"], indirect=True)
def test_s3_put_through_the_proxy_succeeds_when_s3_reports_the_location_key(
        harness: ProviderHarness, tmp_path: Path, closing: list[Any]) -> None:
    target = _s3_target(harness, tmp_path)
    key = _key()
    wanted = target.kms_key.encode()
    with RewritingProxy(_port(harness), {wanted: wanted}) as proxy:
        store = _via(harness, target, proxy.port)
        closing.append(store)
        info = store.put(key, b"phi")
        assert proxy.hits >= 1
    assert (info.encryption, info.kms_key) == ("aws:kms", target.kms_key)
    head = harness.aws_client("s3", target.region).head_object(Bucket=target.bucket, Key=key)
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", target.kms_key)


@pytest.mark.parametrize("harness", ["aws"], indirect=True)
def test_s3_write_requests_on_the_wire_ask_for_sse_kms_with_the_location_key(
        harness: ProviderHarness, tmp_path: Path, closing: list[Any]) -> None:
    target = _s3_target(harness, tmp_path)
    key = _key()
    with RecordingProxy(_port(harness)) as proxy:
        store = _via(harness, target, proxy.port)
        closing.append(store)
        store.put(key + "-small", b"phi")
        store.put(key + "-large", ChunkedSource(LARGE))
        sent = proxy.requests()
    # PutObject, and CreateMultipartUpload (POST ?uploads): where S3 takes the SSE headers.
    creates = [(m, t, h) for m, t, h in sent
               if (m == "PUT" and "uploadId=" not in t and "-small" in t)
               or (m == "POST" and ("?uploads&" in t or t.endswith("?uploads")))]
    assert len(creates) == 2, [(m, t) for m, t, _ in sent]
    for _, _, headers in creates:
        assert headers["x-amz-server-side-encryption"] == "aws:kms"
        assert headers["x-amz-server-side-encryption-aws-kms-key-id"] == target.kms_key


# --- GCS (gcp-storage-emulator) --------------------------------------------------------


def _gcs_report(target: Any, key: str, value: str) -> dict[bytes, bytes]:
    """Replace the object's ``selfLink`` in the emulator's answer with a ``kmsKeyName``
    (padded with JSON whitespace to the same length): GCS reporting ``value``."""
    original = f'"selfLink": "/storage/v1/b/{target.bucket}/o/{key}"'
    forged = f'"kmsKeyName": "{value}"'
    assert len(forged) <= len(original)
    return {original.encode(): forged.ljust(len(original)).encode()}


def _gcs_exists(harness: ProviderHarness, target: Any, key: str) -> bool:
    return harness.gcs_client().bucket(target.bucket).blob(key).exists()


@pytest.mark.parametrize("harness", ["gcp"], indirect=True)
def test_gcs_upload_requests_on_the_wire_name_the_location_kms_key(
        harness: ProviderHarness, tmp_path: Path, closing: list[Any]) -> None:
    target = harness.target(harness.write_map(tmp_path))
    key = _key()
    with RecordingProxy(_port(harness)) as proxy:
        store = _via(harness, target, proxy.port)
        closing.append(store)
        store.put(key + "-small", b"phi")
        store.put(key + "-large", ChunkedSource(LARGE))
        sent = proxy.requests()
    # The requests that create an object: a multipart upload, and the start of a
    # resumable one (its later chunks go to the session URI, which carries no key).
    starts = [t for m, t, _ in sent if m == "POST" and t.startswith("/upload/")]
    kinds = sorted(parse_qs(urlsplit(t).query)["uploadType"][0] for t in starts)
    assert kinds == ["multipart", "resumable"], starts
    for t in starts:
        assert parse_qs(urlsplit(t).query)["kmsKeyName"] == [target.kms_key], unquote(t)


@pytest.mark.parametrize("harness", ["gcp"], indirect=True)
def test_gcs_put_fails_when_gcs_reports_another_kms_key_and_the_object_is_deleted(
        harness: ProviderHarness, tmp_path: Path, closing: list[Any]) -> None:
    target = harness.target(harness.write_map(tmp_path))
    key = _key()
    other = "projects/residency-fr/locations/europe-west9/keyRings/residency/cryptoKeys/data"
    with RewritingProxy(_port(harness), _gcs_report(target, key, other)) as proxy:
        store = _via(harness, target, proxy.port)
        closing.append(store)
        with pytest.raises(EncryptionError) as excinfo:
            store.put(key, b"phi")
        assert proxy.hits >= 1
    assert f"KMS key {other!r}, not {target.kms_key!r}" in str(excinfo.value)
    assert not _gcs_exists(harness, target, key)


@pytest.mark.parametrize("harness", ["gcp"], indirect=True)
def test_gcs_put_through_the_proxy_accepts_a_version_of_the_location_key(
        harness: ProviderHarness, tmp_path: Path, closing: list[Any]) -> None:
    target = harness.target(harness.write_map(tmp_path))
    key = _key()
    version = f"{target.kms_key}/cryptoKeyVersions/3"
    with RewritingProxy(_port(harness), _gcs_report(target, key, version)) as proxy:
        store = _via(harness, target, proxy.port)
        closing.append(store)
        info = store.put(key, b"phi")
        assert proxy.hits >= 1
    assert (info.encryption, info.kms_key) == ("gcs:kms", version)
    assert _gcs_exists(harness, target, key)


@pytest.mark.parametrize("harness", ["gcp"], indirect=True)
def test_gcs_put_fails_when_a_non_emulated_service_reports_no_kms_key(
        harness: ProviderHarness, tmp_path: Path, closing: list[Any]) -> None:
    # Only an emulator on loopback is excused for reporting no key (it never does,
    # TEST_INFRA.md); the same answer from a real endpoint must fail closed.
    target = harness.target(harness.write_map(tmp_path))
    key = _key()
    store = harness.open(target)
    closing.append(store)
    store.emulated = False
    with pytest.raises(EncryptionError, match=re.escape(f"KMS key None, not {target.kms_key!r}")):
        store.put(key, b"phi")
    assert not _gcs_exists(harness, target, key)


# --- Azure (Azurite) -------------------------------------------------------------------


def _azure_target(harness: ProviderHarness, tmp_path: Path) -> Any:
    target = harness.target(harness.write_map(
        tmp_path, {"DE": {"encryption_scope": AZURE_SCOPE}}))
    assert target.encryption_scope == AZURE_SCOPE
    return target


def _azure_report(scope: str) -> dict[bytes, bytes]:
    """Azurite's ``x-ms-request-server-encrypted: true`` becomes an encryption-scope header:
    Azure reporting the blob stored in ``scope``."""
    original = b"x-ms-request-server-encrypted: true"
    forged = f"x-ms-encryption-scope: {scope}".encode()
    assert len(forged) == len(original)
    return {original: forged}


def _azure_exists(harness: ProviderHarness, target: Any, key: str) -> bool:
    from azure.storage.blob import BlobServiceClient
    from emulators import azurite_connection_string

    service = BlobServiceClient.from_connection_string(
        azurite_connection_string(_port(harness)))
    try:
        return bool(service.get_blob_client(target.bucket, key).exists())
    finally:
        service.close()


@pytest.mark.parametrize("harness", ["azure"], indirect=True)
def test_azure_write_requests_on_the_wire_carry_the_location_encryption_scope(
        harness: ProviderHarness, tmp_path: Path, closing: list[Any]) -> None:
    target = _azure_target(harness, tmp_path)
    key = _key()
    with RecordingProxy(_port(harness)) as proxy:
        store = _via(harness, target, proxy.port)
        closing.append(store)
        store.put(key + "-small", b"phi")
        store.put(key + "-large", ChunkedSource(LARGE))
        sent = proxy.requests()
    # Every request that writes data or commits a blob: Put Blob, Put Block, Put Block List.
    writes = [(t, h) for m, t, h in sent if m == "PUT" and key in t
              and "comp=properties" not in t]
    assert any("comp=block&" in t for t, _ in writes)
    assert any("comp=blocklist" in t for t, _ in writes)
    assert any("comp=" not in t and "-small" in t for t, _ in writes)
    for t, headers in writes:
        assert headers.get("x-ms-encryption-scope") == AZURE_SCOPE, t


@pytest.mark.parametrize("harness", ["azure"], indirect=True)
@pytest.mark.parametrize("size", [3, LARGE], ids=["single", "blocks"])
def test_azure_put_fails_when_azure_reports_another_encryption_scope_and_the_blob_is_deleted(
        harness: ProviderHarness, tmp_path: Path, size: int, closing: list[Any]) -> None:
    target = _azure_target(harness, tmp_path)
    key = _key()
    data: Any = b"phi" if size == 3 else ChunkedSource(size)
    with RewritingProxy(_port(harness), _azure_report(AZURE_OTHER_SCOPE)) as proxy:
        store = _via(harness, target, proxy.port)
        closing.append(store)
        with pytest.raises(EncryptionError) as excinfo:
            store.put(key, data)
        assert proxy.hits >= 1
    assert (f"encryption scope {AZURE_OTHER_SCOPE!r}, not {AZURE_SCOPE!r}"
            in str(excinfo.value))
    assert not _azure_exists(harness, target, key)


@pytest.mark.parametrize("harness", ["azure"], indirect=True)
def test_azure_put_through_the_proxy_succeeds_when_azure_reports_the_location_scope(
        harness: ProviderHarness, tmp_path: Path, closing: list[Any]) -> None:
    target = _azure_target(harness, tmp_path)
    key = _key()
    with RewritingProxy(_port(harness), _azure_report(AZURE_SCOPE)) as proxy:
        store = _via(harness, target, proxy.port)
        closing.append(store)
        info = store.put(key, b"phi")
        assert proxy.hits >= 1
    assert (info.encryption, info.kms_key) == ("azure:encryption-scope", AZURE_SCOPE)
    assert _azure_exists(harness, target, key)


@pytest.mark.parametrize("harness", ["azure"], indirect=True)
def test_azure_put_fails_when_a_non_emulated_service_reports_no_encryption_scope(
        harness: ProviderHarness, tmp_path: Path, closing: list[Any]) -> None:
    # Azurite drops scopes silently (TEST_INFRA.md), which only a loopback emulator is
    # excused for; the same answer from a real account must fail closed.
    target = _azure_target(harness, tmp_path)
    key = _key()
    store = harness.open(target)
    closing.append(store)
    store.emulated = False
    with pytest.raises(EncryptionError,
                       match=re.escape(f"encryption scope None, not {AZURE_SCOPE!r}")):
        store.put(key, b"phi")
    assert not _azure_exists(harness, target, key)
