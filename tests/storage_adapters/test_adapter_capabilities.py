"""The provider capabilities every adapter answers for itself (storage/base.py):
``hold_reason``, ``purge_residue``, ``residue_left`` and ``describe_bucket``, plus the
precise errors the adapters translate provider refusals into.

S3 behaviour runs against moto (versioned and object-lock buckets, multipart uploads);
the error mapping is also checked offline with constructed SDK errors and botocore's
Stubber, so the exact code S3 answers is under the test's control.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from botocore.stub import Stubber

from residency_sdk.errors import (
    AccessDenied,
    BackendNotConfigured,
    BucketNotFound,
    CapabilityUnavailable,
    InvalidLocalLocation,
    NoSuchBackend,
    ObjectNotFound,
)
from residency_sdk.model import StorageTarget
from residency_sdk.storage.base import BucketFacts, ObjectInfo, Residue
from residency_sdk.storage.local import LocalStore
from residency_sdk.storage.s3 import S3Store

REGION = "eu-central-1"
MB = 1024 * 1024


# --- helpers -----------------------------------------------------------------------------


def _s3_target(**changes: Any) -> StorageTarget:
    """An aws target on a loopback endpoint nothing listens on: for offline tests."""
    fields: dict[str, Any] = {"provider": "aws", "region": REGION, "bucket": "offline",
                              "country": "DE", "kms_key": "alias/offline",
                              "endpoint": "http://127.0.0.1:9"}
    return StorageTarget(**{**fields, **changes})


def _local_target() -> StorageTarget:
    return StorageTarget(provider="local", region="local-de", bucket="data", country="DE")


def _client_error(code: str, status: int, operation: str = "GetObject") -> Any:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": f"{code} (test)"},
         "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


@pytest.fixture
def offline_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Store]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    store = S3Store(_s3_target(), verify_on_open=False)  # Stubber answers only what it is told
    try:
        yield store
    finally:
        store.close()


def _versions(s3: Any, bucket: str, prefix: str) -> tuple[set[tuple[str, str]],
                                                             set[tuple[str, str]]]:
    """``(versions, delete markers)`` under ``prefix`` as ``(key, version id)`` pairs."""
    page = s3.list_object_versions(Bucket=bucket, Prefix=prefix)
    return ({(v["Key"], v["VersionId"]) for v in page.get("Versions", [])},
            {(m["Key"], m["VersionId"]) for m in page.get("DeleteMarkers", [])})


class S3Bucket:
    """A fresh moto bucket of its own (versioned, or with object lock), an S3Store on it
    and a raw boto3 client to set up and inspect what the adapter must not hide."""

    def __init__(self, harness: Any, tmp_path: Path, *, lock: bool) -> None:
        self.name = f"residency-cap-{uuid.uuid4().hex[:10]}"
        self.s3 = harness.aws_client("s3", REGION)
        if lock:  # object lock turns versioning on with it
            self.s3.create_bucket(Bucket=self.name, ObjectLockEnabledForBucket=True,
                                  CreateBucketConfiguration={"LocationConstraint": REGION})
            self.s3.put_bucket_encryption(Bucket=self.name, ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {
                    "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": harness.kms_keys["DE"]}}]})
        else:
            harness.make_bucket(self.name, REGION, kms_key=harness.kms_keys["DE"])
            self.s3.put_bucket_versioning(Bucket=self.name,
                                          VersioningConfiguration={"Status": "Enabled"})
        target = harness.target(harness.write_map(tmp_path, extra={"DE": {"bucket": self.name}}))
        assert target.bucket == self.name
        self.store: S3Store = harness.open(target)

    def version_of(self, key: str) -> str:
        return str(self.s3.head_object(Bucket=self.name, Key=key)["VersionId"])


@pytest.fixture
def versioned(provider_harness: Any, tmp_path: Path) -> Iterator[S3Bucket]:
    bucket = S3Bucket(provider_harness, tmp_path, lock=False)
    try:
        yield bucket
    finally:
        bucket.store.close()


@pytest.fixture
def locked(provider_harness: Any, tmp_path: Path) -> Iterator[S3Bucket]:
    bucket = S3Bucket(provider_harness, tmp_path, lock=True)
    try:
        yield bucket
    finally:
        bucket.store.close()


aws_only = pytest.mark.parametrize("provider_harness", ["aws"], indirect=True)


# --- S3: purge_residue / residue_left ------------------------------------------------------


@pytest.mark.emulator
@aws_only
def test_s3_purge_removes_old_versions_markers_and_incomplete_uploads(
        versioned: S3Bucket) -> None:
    b, store = versioned, versioned.store
    prefix = "tenants/t1/"
    store.put(prefix + "a", b"a-v1")
    old_a = b.version_of(prefix + "a")
    store.put(prefix + "a", b"a-v2")  # a-v1 is now noncurrent
    store.put(prefix + "b", b"b-v1")
    old_b = b.version_of(prefix + "b")
    store.delete(prefix + "b")  # b-v1 noncurrent under a delete marker
    store.put(prefix + "live", b"only version")
    store.put("tenants/t10/a", b"other-v1")  # shares the string prefix "tenants/t1"
    store.put("tenants/t10/a", b"other-v2")
    upload = b.s3.create_multipart_upload(Bucket=b.name, Key=prefix + "crashed.dcm",
                                          ServerSideEncryption="aws:kms",
                                          SSEKMSKeyId=store.target.kms_key)
    b.s3.upload_part(Bucket=b.name, Key=prefix + "crashed.dcm", UploadId=upload["UploadId"],
                     PartNumber=1, Body=b"p" * (5 * MB))
    _, markers = _versions(b.s3, b.name, prefix)
    [(_, marker_b)] = markers

    before = store.residue_left(prefix)
    assert sorted(before) == sorted([f"{prefix}a?versionId={old_a}",
                                     f"{prefix}b?versionId={old_b}",
                                     f"{prefix}b?versionId={marker_b}"])

    residue = store.purge_residue(prefix)

    assert residue == Residue(versions_deleted=3, uploads_aborted=1)
    assert store.residue_left(prefix) == []
    versions, markers = _versions(b.s3, b.name, prefix)
    assert {k for k, _ in versions} == {prefix + "a", prefix + "live"}  # current ones only
    assert not markers
    assert store.get(prefix + "a") == b"a-v2"
    assert not b.s3.list_multipart_uploads(Bucket=b.name, Prefix=prefix).get("Uploads")
    # Another tenant whose id merely starts the same keeps its history.
    other, _ = _versions(b.s3, b.name, "tenants/t10/")
    assert len(other) == 2
    # A second run finds nothing: purging is idempotent.
    assert store.purge_residue(prefix) == Residue()


@pytest.mark.emulator
@aws_only
def test_s3_purge_leaves_keys_in_keep_alone(versioned: S3Bucket) -> None:
    b, store = versioned, versioned.store
    prefix = "tenants/t2/"
    for key in ("held", "free"):
        store.put(prefix + key, b"v1")
        store.put(prefix + key, b"v2")
    old_held = b.version_of(prefix + "held")  # v2: becomes noncurrent below
    store.put(prefix + "held", b"v3")
    upload = b.s3.create_multipart_upload(Bucket=b.name, Key=prefix + "held",
                                          ServerSideEncryption="aws:kms",
                                          SSEKMSKeyId=store.target.kms_key)
    keep = frozenset({prefix + "held"})

    residue = store.purge_residue(prefix, keep=keep)

    assert residue == Residue(versions_deleted=1)
    assert store.residue_left(prefix, keep=keep) == []
    assert f"{prefix}held?versionId={old_held}" in store.residue_left(prefix)
    versions, _ = _versions(b.s3, b.name, prefix + "held")
    assert len(versions) == 3
    uploads = b.s3.list_multipart_uploads(Bucket=b.name, Prefix=prefix).get("Uploads", [])
    assert [u["UploadId"] for u in uploads] == [upload["UploadId"]]


@pytest.mark.emulator
@aws_only
def test_s3_purge_keeps_a_version_under_legal_hold_and_reports_it_held(
        locked: S3Bucket) -> None:
    b, store = locked, locked.store
    prefix = "tenants/t3/"
    store.put(prefix + "held.dcm", b"evidence")
    held_version = b.version_of(prefix + "held.dcm")
    b.s3.put_object_legal_hold(Bucket=b.name, Key=prefix + "held.dcm",
                               VersionId=held_version, LegalHold={"Status": "ON"})
    store.put(prefix + "held.dcm", b"newer")  # the held version is now noncurrent
    store.put(prefix + "free.dcm", b"v1")
    store.put(prefix + "free.dcm", b"v2")

    residue = store.purge_residue(prefix)

    assert residue.versions_deleted == 1
    assert residue.held == {
        prefix + "held.dcm": f"S3 refused deleting version {held_version}: AccessDenied"}
    versions, _ = _versions(b.s3, b.name, prefix)
    assert (prefix + "held.dcm", held_version) in versions
    assert store.residue_left(prefix) == [f"{prefix}held.dcm?versionId={held_version}"]
    assert store.residue_left(prefix, keep=frozenset(residue.held)) == []


# --- S3: hold_reason -----------------------------------------------------------------------


@pytest.mark.emulator
@aws_only
def test_s3_hold_reason_reads_legal_hold_and_retention(locked: S3Bucket) -> None:
    b, store = locked, locked.store
    now = datetime.now(UTC)
    infos = {name: store.put(f"tenants/t4/{name}", b"x") for name in ("hold", "lock", "plain")}
    b.s3.put_object_legal_hold(Bucket=b.name, Key="tenants/t4/hold",
                               LegalHold={"Status": "ON"})
    until = now + timedelta(days=30)
    b.s3.put_object_retention(Bucket=b.name, Key="tenants/t4/lock", Retention={
        "Mode": "COMPLIANCE", "RetainUntilDate": until})

    assert store.hold_reason(infos["hold"], now) == "S3 object lock legal hold is ON"
    reason = store.hold_reason(infos["lock"], now)
    assert reason is not None
    assert reason.startswith("S3 object lock COMPLIANCE retention until ")
    reported = datetime.fromisoformat(reason.rsplit(" ", 1)[-1])
    assert reported.tzinfo is not None and abs(reported - until) < timedelta(seconds=1)
    assert store.hold_reason(infos["plain"], now) is None
    # A retention date already passed holds nothing (naive "now" is read as UTC).
    later = (until + timedelta(days=1)).replace(tzinfo=None)
    assert store.hold_reason(infos["lock"], later) is None
    with pytest.raises(ObjectNotFound):
        store.hold_reason(ObjectInfo(key="tenants/t4/missing", size=0), now)


def test_s3_hold_reason_counts_an_unreadable_lock_as_a_hold(offline_s3: S3Store) -> None:
    info = ObjectInfo(key="tenants/t5/a", size=1)
    with Stubber(offline_s3.client) as stub:
        stub.add_client_error("head_object", service_error_code="AccessDenied",
                              http_status_code=403)
        reason = offline_s3.hold_reason(info, datetime.now(UTC))
    assert reason == "object lock state unreadable (AccessDenied); kept to be safe"


def test_s3_hold_reason_lets_a_missing_object_raise(offline_s3: S3Store) -> None:
    with Stubber(offline_s3.client) as stub:
        stub.add_client_error("head_object", service_error_code="404", http_status_code=404)
        with pytest.raises(ObjectNotFound):
            offline_s3.hold_reason(ObjectInfo(key="tenants/t5/gone", size=1),
                                   datetime.now(UTC))


def test_s3_purge_translates_a_failed_listing(offline_s3: S3Store) -> None:
    with Stubber(offline_s3.client) as stub:
        stub.add_client_error("list_object_versions", service_error_code="AccessDenied",
                              http_status_code=403)
        with pytest.raises(AccessDenied, match="access denied for list-versions"):
            offline_s3.purge_residue("tenants/t6/")


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["AccessDenied", "403", "InvalidAccessKeyId",
                                  "SignatureDoesNotMatch"])
def test_s3_refusals_translate_to_access_denied(offline_s3: S3Store, code: str) -> None:
    error = offline_s3._translate(_client_error(code, 403), "get", "k")
    assert isinstance(error, AccessDenied)
    assert isinstance(error, PermissionError)
    assert f"access denied for get 'k' ({code})" in str(error)


def test_s3_missing_credentials_translate_to_access_denied(offline_s3: S3Store) -> None:
    error = offline_s3._translate(botocore.exceptions.NoCredentialsError(), "put", "k")
    assert isinstance(error, AccessDenied)
    assert "no AWS credentials found" in str(error)


def test_s3_missing_bucket_translates_to_bucket_not_found(offline_s3: S3Store) -> None:
    error = offline_s3._translate(_client_error("NoSuchBucket", 404), "put", "k")
    assert isinstance(error, BucketNotFound)
    assert isinstance(error, BackendNotConfigured)


@pytest.mark.emulator
@aws_only
def test_s3_missing_bucket_raises_bucket_not_found(provider_harness: Any,
                                                   tmp_path: Path) -> None:
    missing = f"residency-missing-{uuid.uuid4().hex[:8]}"
    target = provider_harness.target(provider_harness.write_map(
        tmp_path, extra={"DE": {"bucket": missing}}))
    store = provider_harness.open(target)
    try:
        with pytest.raises(BucketNotFound, match="does not exist; provision it"):
            list(store.list("tenants/"))
        with pytest.raises(BackendNotConfigured):
            store.put("tenants/x/a", b"data")
        assert store.describe_bucket() == BucketFacts(exists=False)
    finally:
        store.close()


def test_adapters_refuse_a_target_of_another_provider(tmp_path: Path) -> None:
    gcp = _s3_target(provider="gcp")
    with pytest.raises(NoSuchBackend, match="S3Store needs an aws target, got 'gcp'"):
        S3Store(gcp)
    with pytest.raises(InvalidLocalLocation, match="LocalStore serves provider 'local'"):
        LocalStore(gcp, tmp_path)
    with pytest.raises(InvalidLocalLocation, match="invalid location name"):
        LocalStore(_local_target(), tmp_path, location="../escape")


def test_gcs_and_azure_refusals_translate_to_access_denied(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import google.api_core.exceptions as gexc
    from azure.core.exceptions import ClientAuthenticationError

    from residency_sdk.storage.azure import AzureStore
    from residency_sdk.storage.gcs import GCSStore

    gcs = GCSStore(StorageTarget(provider="gcp", region="europe-west3", bucket="offline",
                                 country="DE", endpoint="http://127.0.0.1:9"))
    try:
        error = gcs._translate(gexc.Forbidden("no storage.objects.get"), "get", "k")
        assert isinstance(error, AccessDenied)
        assert "access denied for get 'k'" in str(error)
        with pytest.raises(NoSuchBackend, match="GCSStore needs a gcp target"):
            GCSStore(_s3_target())
    finally:
        gcs.close()

    monkeypatch.setenv("RESIDENCY_AZURE_CONNECTION_STRING",
                       "DefaultEndpointsProtocol=http;AccountName=acct;AccountKey=a2V5;"
                       "BlobEndpoint=http://127.0.0.1:9/acct")
    azure = AzureStore(StorageTarget(provider="azure", region="germanywestcentral",
                                     bucket="offline", country="DE", account="acct",
                                     endpoint="http://127.0.0.1:9/acct"))
    try:
        error = azure._translate(ClientAuthenticationError("bad key"), "put", "k")
        assert isinstance(error, AccessDenied)
        assert "access denied for put 'k'" in str(error)
        with pytest.raises(NoSuchBackend, match="AzureStore needs an azure target"):
            AzureStore(_s3_target())
    finally:
        azure.close()


# --- describe_bucket ---------------------------------------------------------------------


def test_local_store_cannot_describe_a_bucket(tmp_path: Path) -> None:
    store = LocalStore(_local_target(), tmp_path)
    with pytest.raises(CapabilityUnavailable, match="only cloud backends can be verified"):
        store.describe_bucket()


@pytest.mark.emulator
@pytest.mark.parametrize("provider_harness", ["aws", "gcp", "azure"], indirect=True)
def test_cloud_adapters_describe_their_bucket(provider_harness: Any, tmp_path: Path) -> None:
    store = provider_harness.open(provider_harness.target(provider_harness.write_map(tmp_path)))
    try:
        facts = store.describe_bucket()
    finally:
        store.close()
    assert isinstance(facts, BucketFacts)
    assert facts.exists
    assert facts.public_access_blocked is True


@pytest.mark.emulator
@pytest.mark.parametrize("provider_harness", ["gcp", "azure"], indirect=True)
def test_a_missing_bucket_is_described_as_missing(provider_harness: Any,
                                                  tmp_path: Path) -> None:
    missing = f"residency-missing-{uuid.uuid4().hex[:8]}"
    target = provider_harness.target(provider_harness.write_map(
        tmp_path, extra={"DE": {"bucket": missing}}))
    store = provider_harness.open(target)
    try:
        assert store.describe_bucket() == BucketFacts(exists=False)
        with pytest.raises(BucketNotFound, match="does not exist; provision"):
            store.put("tenants/x/a", b"data")
    finally:
        store.close()


# --- local purge_residue -------------------------------------------------------------------


def test_local_purge_residue_returns_a_residue(tmp_path: Path) -> None:
    store = LocalStore(_local_target(), tmp_path)
    store.put("tenants/t7/a", b"committed")
    store.put("tenants/t7/held", b"committed too")
    keydir = store.bucket_dir / "tenants" / "t7"
    (keydir / "a" / "@tmp-000000000000000000000001").write_bytes(b"partial")
    (keydir / "held" / "@tmp-000000000000000000000002").write_bytes(b"partial")
    crashed = keydir / "crashed"
    crashed.mkdir()
    (crashed / "@tmp-000000000000000000000003").write_bytes(b"partial")

    residue = store.purge_residue("tenants/t7/", keep=frozenset({"tenants/t7/held"}))

    assert residue == Residue(files_removed=2)
    assert not crashed.exists()
    assert "@tmp-000000000000000000000001" not in os.listdir(keydir / "a")
    assert "@tmp-000000000000000000000002" in os.listdir(keydir / "held")
    assert store.get("tenants/t7/a") == b"committed"
    assert store.purge_residue("tenants/nobody/") == Residue()
    # The capabilities a directory does not have answer with their safe defaults.
    assert store.residue_left("tenants/t7/") == []
    assert store.hold_reason(store.head("tenants/t7/a"), datetime.now(UTC)) is None
