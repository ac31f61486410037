"""Integrity and retry behaviour of the cloud adapters, with faults injected on loopback.

Checksum mismatches are planted by a TCP proxy in front of the real emulator that rewrites
bytes in the service's answers (a checksum the service reports, or the payload itself);
retries are exercised against a local HTTP server answering every request with a fixed
status, and against a loopback port nobody listens on.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from pathlib import Path
from typing import Any

import google_crc32c
import pytest
from emulators import FaultServer, RewritingProxy, SilentServer, free_port

from residency_sdk.errors import (
    BackendUnavailable,
    IntegrityError,
    ObjectNotFound,
    StorageError,
)
from residency_sdk.storage.retry import RetryPolicy

pytestmark = pytest.mark.emulator

FAST = RetryPolicy(max_attempts=3, max_elapsed=20, initial_backoff=0.01, max_backoff=0.05)


@pytest.fixture(params=["aws", "gcp", "azure"])
def cloud(request: pytest.FixtureRequest, emulators: Any, monkeypatch: pytest.MonkeyPatch,
          tmp_path: Path) -> Any:
    from storage_harness import ProviderHarness

    return ProviderHarness(request.param, emulators, monkeypatch, tmp_path)


def _target(cloud: Any, tmp_path: Path) -> Any:
    return cloud.target(cloud.write_map(tmp_path))


def _via(cloud: Any, target: Any, port: int) -> Any:
    """The same target reached through 127.0.0.1:``port`` instead of the emulator."""
    suffix = "/devstoreaccount1" if cloud.provider == "azure" else ""
    store = cloud.open(target.model_copy(update={"endpoint": f"http://127.0.0.1:{port}{suffix}"}),
                       verify_on_open=False)  # the fault server would answer the check
    store.policy = FAST
    return store


def _reported_checksum(provider: str, data: bytes) -> bytes:
    """The checksum the service reports for ``data``, as it appears on the wire."""
    if provider in ("aws", "gcp"):
        digest = google_crc32c.Checksum(data).digest()
    else:
        digest = hashlib.md5(data, usedforsecurity=False).digest()
    return base64.b64encode(digest)


def _object_requests(fault: FaultServer) -> list[str]:
    """Requests for objects only: google-cloud-storage 3.x also looks the bucket's
    metadata up once per client (for request routing) and ignores that call's failure."""
    return [p for p in fault.paths if "/storage/v1/b/" not in p or "/o/" in p]


def _flip(value: bytes) -> bytes:
    return (b"B" if value[:1] == b"A" else b"A") + value[1:]


def test_checksum_mismatch_on_upload_leaves_no_object(cloud: Any, tmp_path: Path) -> None:
    target = _target(cloud, tmp_path)
    direct = cloud.open(target)
    key = f"faults-{uuid.uuid4().hex[:10]}/upload"
    data = b"payload whose reported checksum is forged " + uuid.uuid4().bytes
    reported = _reported_checksum(cloud.provider, data)
    port = cloud.emulators.get(cloud.provider).port
    with RewritingProxy(port, {reported: _flip(reported)}) as proxy:
        store = _via(cloud, target, proxy.port)
        with pytest.raises(IntegrityError, match="checksum mismatch"):
            store.put(key, data)
        assert proxy.hits >= 1
    assert not direct.exists(key)


@pytest.mark.parametrize("size", [2000, 17 * 1024 * 1024], ids=["single", "multipart"])
def test_corruption_on_download_is_detected(cloud: Any, tmp_path: Path, size: int) -> None:
    target = _target(cloud, tmp_path)
    direct = cloud.open(target)
    key = f"faults-{uuid.uuid4().hex[:10]}/download"
    # Multipart objects are checked against composite / recorded checksums by the
    # adapter itself; single-part ones partly by the SDK: both must end in IntegrityError.
    half = size // 2
    data = b"x" * half + b"ORIGINAL-BYTES-HERE" + b"y" * half
    direct.put(key, data)
    port = cloud.emulators.get(cloud.provider).port
    with RewritingProxy(port, {b"ORIGINAL-BYTES-HERE": b"CORRUPTED-IN-WIRE!!"}) as proxy:
        store = _via(cloud, target, proxy.port)
        with pytest.raises(IntegrityError):
            store.get(key)
        with pytest.raises(IntegrityError), store.open(key) as reader:
            reader.read()
        assert proxy.hits >= 2
    assert direct.get(key) == data  # the stored object itself is intact


@pytest.mark.parametrize("status", [503, 500, 429])
def test_transient_errors_retried_then_backend_unavailable(cloud: Any, tmp_path: Path,
                                                           status: int) -> None:
    target = _target(cloud, tmp_path)
    with FaultServer(status).running() as fault:
        store = _via(cloud, target, int(fault.endpoint.rsplit(":", 1)[1]))
        with pytest.raises(BackendUnavailable) as excinfo:
            store.get("any/key")
        assert len(_object_requests(fault)) == FAST.max_attempts, fault.paths
        assert store.target.bucket in str(excinfo.value)


@pytest.mark.parametrize(("status", "error"), [(403, StorageError), (404, ObjectNotFound),
                                               (400, StorageError)])
def test_client_errors_are_not_retried(cloud: Any, tmp_path: Path, status: int,
                                       error: type[Exception]) -> None:
    target = _target(cloud, tmp_path)
    with FaultServer(status).running() as fault:
        store = _via(cloud, target, int(fault.endpoint.rsplit(":", 1)[1]))
        with pytest.raises(error) as excinfo:
            store.get("any/key")
        assert not isinstance(excinfo.value, BackendUnavailable)
        assert len(_object_requests(fault)) == 1, fault.paths


def test_unreachable_endpoint_is_bounded(cloud: Any, tmp_path: Path) -> None:
    target = _target(cloud, tmp_path)
    store = _via(cloud, target, free_port())  # nobody listens there
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="3 attempt"):
        store.put("any/key", b"data")
    assert time.monotonic() - started < 15


def test_connection_resets_are_retried(cloud: Any, tmp_path: Path) -> None:
    target = _target(cloud, tmp_path)
    with SilentServer("reset") as server:
        store = _via(cloud, target, server.port)
        with pytest.raises(BackendUnavailable, match="3 attempt"):
            store.get("any/key")
    # Each attempt opened at least one connection; a few SDKs reconnect once inside an
    # attempt for an idempotent GET, which is not a retry of ours.
    assert FAST.max_attempts <= server.connections <= 2 * FAST.max_attempts


def test_timeouts_are_retried(cloud: Any, tmp_path: Path) -> None:
    target = _target(cloud, tmp_path)
    from residency_sdk.storage.azure import AzureStore
    from residency_sdk.storage.gcs import GCSStore
    from residency_sdk.storage.s3 import S3Store

    suffix = "/devstoreaccount1" if cloud.provider == "azure" else ""
    with SilentServer("hang") as server:
        hanging = target.model_copy(
            update={"endpoint": f"http://127.0.0.1:{server.port}{suffix}"})
        store: Any
        if cloud.provider == "aws":
            store = S3Store(hanging, policy=FAST, read_timeout=0.3)
        elif cloud.provider == "gcp":
            store = GCSStore(hanging, policy=FAST, timeout=0.3)
        else:
            store = AzureStore(hanging, policy=FAST, read_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="3 attempt"):
            store.get("any/key")
        assert time.monotonic() - started < 10
        assert server.connections >= FAST.max_attempts


def test_policy_stops_on_total_time() -> None:
    calls: list[float] = []

    def always_timeout() -> None:
        calls.append(time.monotonic())
        raise TimeoutError("slow backend")

    policy = RetryPolicy(max_attempts=100, max_elapsed=0.3, initial_backoff=0.05,
                         max_backoff=0.1)
    with pytest.raises(BackendUnavailable, match="timeout-test"):
        policy.call(always_timeout, backend="timeout-test", operation="get",
                    transient=lambda exc: isinstance(exc, TimeoutError))
    assert 2 <= len(calls) < 100
    assert calls[-1] - calls[0] < 1.0


def test_policy_never_retries_non_transient() -> None:
    calls: list[int] = []

    def bad_request() -> None:
        calls.append(1)
        raise KeyError("client error")

    with pytest.raises(KeyError):
        FAST.call(bad_request, backend="b", operation="put", transient=lambda exc: False)
    assert calls == [1]
