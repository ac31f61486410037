"""The S3 adapter refuses a write whose CRC32C or encryption, as S3 reports it, is not what it sent.

S3 (moto) is reached through a proxy that rewrites the ``x-amz-checksum-crc32c`` header of
its answer: the put must fail with an :class:`IntegrityError` naming both checksums and the
fix, and the object S3 stored must be gone (checked with the emulator's own client).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from awscrt.checksums import crc32c
from emulators import RewritingProxy
from storage_harness import ProviderHarness

from residency_sdk.errors import EncryptionError, IntegrityError

pytestmark = pytest.mark.emulator

DATA = b"phi"


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


def _b64_crc32c(data: bytes) -> str:
    return base64.b64encode(crc32c(data).to_bytes(4, "big")).decode()


def _put_with_answer_rewritten(harness: ProviderHarness, tmp_path: Path, closing: list[Any],
                               replace: dict[bytes, bytes]) -> tuple[Any, str, Exception, str]:
    target = harness.target(harness.write_map(tmp_path))
    key = f"crc-{uuid.uuid4().hex[:10]}/object"
    with RewritingProxy(harness.emulators.get("aws").port, replace) as proxy:
        store = harness.open(target.model_copy(
            update={"endpoint": f"http://127.0.0.1:{proxy.port}"}))
        closing.append(store)
        with pytest.raises((IntegrityError, EncryptionError)) as excinfo:
            store.put(key, DATA)
        assert proxy.hits >= 1  # S3's answer really was rewritten
    return target, key, excinfo.value, store.name


def _s3_exists(harness: ProviderHarness, target: Any, key: str) -> bool:
    s3 = harness.aws_client("s3", target.region)
    listed = s3.list_objects_v2(Bucket=target.bucket, Prefix=key).get("Contents", [])
    return any(o["Key"] == key for o in listed)


@pytest.mark.parametrize("harness", ["aws"], indirect=True)
def test_s3_put_fails_with_both_checksums_and_deletes_the_object_when_s3_reports_another_crc32c(
        harness: ProviderHarness, tmp_path: Path, closing: list[Any]) -> None:
    sent, other = _b64_crc32c(DATA), _b64_crc32c(b"phj")
    assert len(sent) == len(other) and sent != other
    target, key, exc, name = _put_with_answer_rewritten(
        harness, tmp_path, closing,
        {f"x-amz-checksum-crc32c: {sent}".encode(): f"x-amz-checksum-crc32c: {other}".encode()})
    assert type(exc) is IntegrityError
    assert name == f"s3://{target.bucket} ({target.region})"
    assert str(exc) == (
        f"{name}: checksum mismatch for {key!r}: computed crc32c {sent}, S3 reports "
        f"crc32c:{other}; the object was deleted - upload again")
    assert not _s3_exists(harness, target, key)


@pytest.mark.parametrize("harness", ["aws"], indirect=True)
def test_s3_put_fails_and_deletes_the_object_when_s3_reports_no_crc32c(
        harness: ProviderHarness, tmp_path: Path, closing: list[Any]) -> None:
    sent = _b64_crc32c(DATA)
    target, key, exc, name = _put_with_answer_rewritten(
        harness, tmp_path, closing,
        {b"x-amz-checksum-crc32c:": b"x-amz-checksum-crc32x:"})
    assert type(exc) is IntegrityError
    assert name == f"s3://{target.bucket} ({target.region})"
    assert str(exc) == (
        f"{name}: checksum mismatch for {key!r}: computed crc32c {sent}, S3 reports none; "
        "the object was deleted - upload again")
    assert not _s3_exists(harness, target, key)


@pytest.mark.parametrize("harness", ["aws"], indirect=True)
def test_s3_put_refusing_sse_s3_names_what_s3_reported_the_location_key_and_the_fix_exactly(
        harness: ProviderHarness, tmp_path: Path, closing: list[Any]) -> None:
    target, key, exc, name = _put_with_answer_rewritten(
        harness, tmp_path, closing,
        {b"x-amz-server-side-encryption: aws:kms": b"x-amz-server-side-encryption:  AES256"})
    assert type(exc) is EncryptionError
    assert str(exc) == (
        f"{name}: {key!r} was stored with encryption 'AES256' key {target.kms_key!r}, "
        f"not aws:kms with {target.kms_key!r}; the object was deleted - "
        "check the bucket's KMS configuration")
    assert not _s3_exists(harness, target, key)
