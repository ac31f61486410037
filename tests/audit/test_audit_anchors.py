"""Anchors: sealed checkpoints shipped where the audit-log writer cannot rewrite them.

Local append-only folder; S3 Object Lock (compliance) against a real moto server; GCS and
Azure against their emulators, as far as each emulator goes (what they do not enforce is
asserted on the request the SDK sent, and listed in docs/audit.md "Anchors"); and the
``Anchorer`` schedule with fake anchors and a fake clock.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import stat
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from residency_sdk.audit._checkpoint import Checkpoint
from residency_sdk.audit.anchors import (
    Anchor,
    AnchorConflict,
    Anchorer,
    AzureImmutableAnchor,
    GCSRetentionAnchor,
    LocalAnchorFolder,
    S3ObjectLockAnchor,
    open_anchor,
)
from residency_sdk.errors import (
    AuditFormatError,
    AuditUnavailable,
    ChainBroken,
    EnvironmentOverride,
    InputError,
    InsecureEndpoint,
    SDKNotInstalled,
)

LOG = "0123456789abcdef0123456789abcdef"
OTHER_LOG = "fedcba9876543210fedcba9876543210"
KEY = b"k" * 32


def cp(seq: int, counter: int | None = None, *, log_id: str = LOG, salt: str = "",
       sealed: bool = True) -> Checkpoint:
    """A checkpoint of ``log_id`` at ``seq`` (commit counter ``counter``, default seq)."""
    digest = hashlib.sha256(f"{log_id}/{seq}/{salt}".encode()).hexdigest()
    c = Checkpoint(log_id=log_id, seq=seq, hash=digest,
                   counter=seq if counter is None else counter,
                   created="2026-12-01T10:00:00+00:00", key_id="00112233aabbccdd")
    return c.sealed_with(KEY) if sealed else c


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(autouse=True)
def _no_ambient_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    # An endpoint or connection string in the developer's shell must not change the tests.
    from storage_harness import PROCESS_WIDE_OVERRIDES

    for name in PROCESS_WIDE_OVERRIDES:
        monkeypatch.delenv(name, raising=False)


# --- local folder ------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "anchors"


def test_local_publish_writes_one_read_only_file_per_checkpoint(folder: Path) -> None:
    anchor = LocalAnchorFolder(folder)
    first = cp(5, 2)
    anchor.publish(first)
    path = folder / LOG / f"{2:020d}-{5:020d}.json"
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert Checkpoint.model_validate_json(path.read_bytes()) == first
    assert anchor.checkpoints(LOG) == [first]
    assert [p.name for p in (folder / LOG).iterdir()] == [path.name]  # no temp file left
    assert isinstance(anchor, Anchor)
    assert str(folder) in anchor.name


def test_local_publish_fsyncs_file_and_folder(folder: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    LocalAnchorFolder(folder).publish(cp(1))
    assert "file" in synced
    assert synced[-1] == "dir"  # the folder entry is durable after the file


def test_local_never_overwrites_a_different_checkpoint(folder: Path) -> None:
    anchor = LocalAnchorFolder(folder)
    anchor.publish(cp(7, 3))
    path = folder / LOG / f"{3:020d}-{7:020d}.json"
    before = path.read_bytes()
    with pytest.raises(AuditUnavailable, match="already holds a different checkpoint") as err:
        anchor.publish(cp(7, 3, salt="forked"))  # same position, other hash: a fork
    assert path.name in str(err.value)
    assert path.read_bytes() == before
    # The same head state again (a retry after a lost answer) is not a conflict.
    again = cp(7, 3).model_copy(update={"created": "2026-12-01T11:00:00+00:00"})
    anchor.publish(again.sealed_with(KEY))
    assert anchor.checkpoints(LOG) == [cp(7, 3)]


def test_local_tampered_or_garbage_anchor_is_reported(folder: Path) -> None:
    anchor = LocalAnchorFolder(folder)
    anchor.publish(cp(1))
    anchor.publish(cp(2))
    victim = folder / LOG / f"{2:020d}-{2:020d}.json"
    victim.chmod(0o644)  # the writer's own account can do this on a plain folder
    victim.write_text("{not json")
    with pytest.raises(AuditFormatError, match=re.escape(victim.name)):
        anchor.checkpoints(LOG)
    # Valid JSON, but not what its name says.
    victim.write_text(cp(9, 9).to_json())
    with pytest.raises(AuditFormatError, match=re.escape(victim.name)):
        anchor.checkpoints(LOG)
    # Another log's checkpoint copied in.
    victim.write_text(cp(2, 2, log_id=OTHER_LOG).to_json())
    with pytest.raises(AuditFormatError, match=re.escape(victim.name)):
        anchor.checkpoints(LOG)
    victim.unlink()
    (folder / LOG / "notes.txt").write_text("hello")
    with pytest.raises(AuditFormatError, match=r"notes\.txt"):
        anchor.checkpoints(LOG)


def test_local_symlinks_are_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(AuditUnavailable, match="symbolic link"):
        LocalAnchorFolder(link).publish(cp(1))
    with pytest.raises(AuditUnavailable, match="symbolic link"):
        LocalAnchorFolder(link).checkpoints(LOG)
    assert not any(real.iterdir())

    # The log's folder planted as a link to somewhere else.
    root = tmp_path / "anchors"
    root.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / LOG).symlink_to(elsewhere)
    with pytest.raises(AuditUnavailable, match="symbolic link"):
        LocalAnchorFolder(root).publish(cp(1))
    assert not any(elsewhere.iterdir())

    # A link planted at the name the next anchor will take, and read back.
    root2 = tmp_path / "anchors2"
    anchor = LocalAnchorFolder(root2)
    anchor.publish(cp(1))
    target = tmp_path / "target.json"
    target.write_text(cp(2).to_json())
    (root2 / LOG / f"{2:020d}-{2:020d}.json").symlink_to(target)
    with pytest.raises(AuditUnavailable, match="symbolic link"):
        anchor.publish(cp(2))
    with pytest.raises(AuditFormatError, match="symbolic link"):
        anchor.checkpoints(LOG)


def test_local_checkpoints_are_ordered_and_per_log(folder: Path) -> None:
    anchor = LocalAnchorFolder(folder)
    for seq, counter in [(30, 3), (10, 1), (20, 2), (120, 12)]:
        anchor.publish(cp(seq, counter))
    anchor.publish(cp(5, 1, log_id=OTHER_LOG))
    assert [c.counter for c in anchor.checkpoints(LOG)] == [1, 2, 3, 12]
    assert [c.seq for c in anchor.checkpoints(OTHER_LOG)] == [5]
    assert anchor.checkpoints("00000000000000000000000000000000") == []


def test_local_leftover_temp_file_is_not_an_anchor(folder: Path) -> None:
    anchor = LocalAnchorFolder(folder)
    anchor.publish(cp(1))
    # What a crash between writing and linking leaves: never published, never read.
    (folder / LOG / f".{1:020d}-{9:020d}.json.123.abcd.tmp").write_text("{partial")
    assert anchor.checkpoints(LOG) == [cp(1)]


def test_local_refuses_an_unsafe_log_id(folder: Path) -> None:
    with pytest.raises(AuditFormatError, match="log id"):
        LocalAnchorFolder(folder).publish(cp(1, log_id="../../etc"))
    with pytest.raises(AuditFormatError, match="log id"):
        LocalAnchorFolder(folder).checkpoints("../x")


def test_local_missing_folder_is_reported_on_read(tmp_path: Path) -> None:
    with pytest.raises(AuditUnavailable, match="does not exist"):
        LocalAnchorFolder(tmp_path / "nope").checkpoints(LOG)


# --- open_anchor ------------------------------------------------------------------------


def test_open_anchor_specs(tmp_path: Path) -> None:
    local = open_anchor(str(tmp_path / "a"))
    assert isinstance(local, LocalAnchorFolder)
    s3 = open_anchor("s3://audit-de/anchors/app?region=eu-central-1&retain_days=10")
    assert isinstance(s3, S3ObjectLockAnchor)
    assert (s3.bucket, s3.prefix, s3.region, s3.retain_days) == \
        ("audit-de", "anchors/app", "eu-central-1", 10)
    gcs = open_anchor("gs://audit-de/anchors")
    assert isinstance(gcs, GCSRetentionAnchor)
    assert (gcs.bucket, gcs.prefix) == ("audit-de", "anchors")
    az = open_anchor("azure://audit/anchors?account_url=https://acct.blob.core.windows.net")
    assert isinstance(az, AzureImmutableAnchor)
    assert (az.container, az.prefix, az.account_url) == \
        ("audit", "anchors", "https://acct.blob.core.windows.net")


@pytest.mark.parametrize("spec, match", [
    ("s3://audit-de/anchors", "region"),
    ("s3://audit-de?region=eu-central-1&colour=red", "colour"),
    ("s3:///anchors?region=eu-central-1", "bucket"),
    ("ftp://host/x", "ftp"),
    ("s3://audit-de?region=eu-central-1&retain_days=abc", "retain_days"),
    ("s3://audit-de?region=eu-central-1&retain_days=0", "retain_days"),
    ("", "anchor"),
])
def test_open_anchor_refuses_bad_specs(spec: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        open_anchor(spec)


def test_open_anchor_refuses_plain_http_to_a_remote_host() -> None:
    with pytest.raises(InsecureEndpoint):
        open_anchor("s3://audit-de?region=eu-central-1&endpoint_url=http://example.com")


def test_missing_cloud_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(SDKNotInstalled, match=r"residency-sdk\[aws\]"):
        open_anchor("s3://audit-de?region=eu-central-1")
    monkeypatch.setitem(sys.modules, "google.cloud.storage", None)
    with pytest.raises(SDKNotInstalled, match=r"residency-sdk\[gcp\]"):
        open_anchor("gs://audit-de")
    monkeypatch.setitem(sys.modules, "azure.storage.blob", None)
    with pytest.raises(SDKNotInstalled, match=r"residency-sdk\[azure\]"):
        open_anchor("azure://audit?account_url=https://acct.blob.core.windows.net")


# --- S3 Object Lock against moto ---------------------------------------------------------

REGION = "eu-central-1"


@pytest.fixture
def moto_endpoint(emulators: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """moto's endpoint, with dummy credentials and no endpoint override in the environment."""
    from storage_harness import PROCESS_WIDE_OVERRIDES

    endpoint: str = emulators.endpoint("aws")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    for name in PROCESS_WIDE_OVERRIDES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-creds"))
    return endpoint


def raw_s3(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", region_name=REGION, endpoint_url=endpoint,
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(s3={"addressing_style": "path"},
                                      retries={"total_max_attempts": 1}))


def make_s3_bucket(endpoint: str, *, locked: bool = True) -> str:
    bucket = unique("anchors")
    raw_s3(endpoint).create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION},
        ObjectLockEnabledForBucket=locked)
    return bucket


def s3_anchor(endpoint: str, bucket: str, prefix: str = "audit/app") -> S3ObjectLockAnchor:
    anchor = open_anchor(f"s3://{bucket}/{prefix}?region={REGION}&endpoint_url={endpoint}")
    assert isinstance(anchor, S3ObjectLockAnchor)
    return anchor


def sent_puts(anchor: S3ObjectLockAnchor) -> list[dict[str, str]]:
    """Record the headers of every PutObject the anchor's client sends."""
    seen: list[dict[str, str]] = []

    def hook(request: Any, **_: Any) -> None:
        seen.append({k.lower(): v.decode() if isinstance(v, bytes) else str(v)
                     for k, v in request.headers.items()})

    anchor.client.meta.events.register("before-send.s3.PutObject", hook)
    return seen


@pytest.mark.emulator
def test_s3_publish_is_compliance_locked_and_conditional(moto_endpoint: str) -> None:
    bucket = make_s3_bucket(moto_endpoint)
    anchor = s3_anchor(moto_endpoint, bucket)
    sent = sent_puts(anchor)
    first = cp(40, 4)
    before = datetime.now(UTC)
    anchor.publish(first)

    # What the SDK sent.
    assert len(sent) == 1
    headers = sent[0]
    assert headers["x-amz-object-lock-mode"] == "COMPLIANCE"
    until = datetime.fromisoformat(headers["x-amz-object-lock-retain-until-date"]
                                   .replace("Z", "+00:00"))
    assert until >= before + timedelta(days=2192) - timedelta(minutes=1)
    assert headers["if-none-match"] == "*"
    body = first.to_json().encode()
    import base64
    assert headers["x-amz-checksum-sha256"] == \
        base64.b64encode(hashlib.sha256(body).digest()).decode()

    # What moto reports back. (moto 5 answers GetObjectRetention with a 500, see
    # TEST_INFRA.md: the lock is read from HeadObject, as the SDK itself does.)
    key = f"audit/app/{LOG}/{4:020d}-{40:020d}.json"
    s3 = raw_s3(moto_endpoint)
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] >= before + timedelta(days=2191)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    assert anchor.checkpoints(LOG) == [first]


@pytest.mark.emulator
def test_s3_locked_version_cannot_be_deleted_and_stays_listed(moto_endpoint: str) -> None:
    from botocore.exceptions import ClientError

    bucket = make_s3_bucket(moto_endpoint)
    anchor = s3_anchor(moto_endpoint, bucket)
    anchor.publish(cp(1))
    s3 = raw_s3(moto_endpoint)
    key = f"audit/app/{LOG}/{1:020d}-{1:020d}.json"
    version = s3.list_object_versions(Bucket=bucket, Prefix=key)["Versions"][0]["VersionId"]
    with pytest.raises(ClientError) as err:
        s3.delete_object(Bucket=bucket, Key=key, VersionId=version)
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    # A plain delete only adds a delete marker: the locked version is still read.
    s3.delete_object(Bucket=bucket, Key=key)
    assert anchor.checkpoints(LOG) == [cp(1)]


@pytest.mark.emulator
def test_s3_second_publish_of_a_key_is_refused(moto_endpoint: str) -> None:
    bucket = make_s3_bucket(moto_endpoint)
    anchor = s3_anchor(moto_endpoint, bucket)
    anchor.publish(cp(9, 3))
    with pytest.raises(AuditUnavailable, match="already holds a different checkpoint"):
        anchor.publish(cp(9, 3, salt="forked"))
    anchor.publish(cp(9, 3))  # the same state again: idempotent
    versions = raw_s3(moto_endpoint).list_object_versions(Bucket=bucket)["Versions"]
    assert len(versions) == 1
    assert anchor.checkpoints(LOG) == [cp(9, 3)]


@pytest.mark.emulator
def test_s3_overwritten_key_still_shows_its_older_version(moto_endpoint: str) -> None:
    bucket = make_s3_bucket(moto_endpoint)
    anchor = s3_anchor(moto_endpoint, bucket)
    anchor.publish(cp(1))
    anchor.publish(cp(2))
    key = f"audit/app/{LOG}/{2:020d}-{2:020d}.json"
    until = datetime.now(UTC) + timedelta(days=1)
    s3 = raw_s3(moto_endpoint)
    # Someone with PutObject writes a new version over the anchor (no If-None-Match).
    s3.put_object(Bucket=bucket, Key=key, Body=cp(2, salt="rewritten").to_json().encode(),
                  ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until,
                  ChecksumAlgorithm="SHA256")
    found = anchor.checkpoints(LOG)
    assert cp(2) in found and cp(2, salt="rewritten") in found
    assert [c.counter for c in found] == [1, 2, 2]
    # Garbage written over it is reported, naming the key and version.
    s3.put_object(Bucket=bucket, Key=key, Body=b"garbage", ObjectLockMode="COMPLIANCE",
                  ObjectLockRetainUntilDate=until, ChecksumAlgorithm="SHA256")
    with pytest.raises(AuditFormatError, match=re.escape(key)):
        anchor.checkpoints(LOG)


@pytest.mark.emulator
def test_s3_bucket_without_object_lock_is_refused(moto_endpoint: str) -> None:
    bucket = make_s3_bucket(moto_endpoint, locked=False)
    anchor = s3_anchor(moto_endpoint, bucket)
    with pytest.raises(AuditUnavailable, match="Object Lock") as err:
        anchor.publish(cp(1))
    assert "ObjectLockEnabledForBucket" in str(err.value) or "object_lock" in str(err.value)
    assert "Contents" not in raw_s3(moto_endpoint).list_objects_v2(Bucket=bucket)
    with pytest.raises(AuditUnavailable, match="Object Lock"):
        anchor.checkpoints(LOG)


@pytest.mark.emulator
def test_s3_missing_bucket_and_dead_endpoint_are_audit_unavailable(moto_endpoint: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from emulators import free_port

    with pytest.raises(AuditUnavailable, match="no-such-anchor-bucket"):
        s3_anchor(moto_endpoint, "no-such-anchor-bucket").publish(cp(1))
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(AuditUnavailable):
        s3_anchor(dead, "whatever-bucket").publish(cp(1))
    with pytest.raises(AuditUnavailable):
        s3_anchor(dead, "whatever-bucket").checkpoints(LOG)


@pytest.mark.emulator
def test_s3_ordered_and_per_log(moto_endpoint: str) -> None:
    bucket = make_s3_bucket(moto_endpoint)
    anchor = s3_anchor(moto_endpoint, bucket, prefix="")
    for seq, counter in [(300, 3), (100, 1), (200, 2)]:
        anchor.publish(cp(seq, counter))
    anchor.publish(cp(7, 1, log_id=OTHER_LOG))
    assert [c.seq for c in anchor.checkpoints(LOG)] == [100, 200, 300]
    assert [c.seq for c in anchor.checkpoints(OTHER_LOG)] == [7]


def test_s3_endpoint_from_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    with pytest.raises(EnvironmentOverride, match="AWS_ENDPOINT_URL"):
        open_anchor("s3://audit-de?region=eu-central-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "https://elsewhere.example.com")
    with pytest.raises(EnvironmentOverride, match="AWS_ENDPOINT_URL_S3"):
        open_anchor("s3://audit-de?region=eu-central-1&endpoint_url=http://127.0.0.1:9")


# --- GCS against gcp-storage-emulator ----------------------------------------------------


@pytest.fixture
def gcs_endpoint(emulators: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    for name in ("STORAGE_EMULATOR_HOST", "API_ENDPOINT_OVERRIDE"):
        monkeypatch.delenv(name, raising=False)
    return str(emulators.endpoint("gcp"))


def raw_gcs(endpoint: str) -> Any:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project="test", credentials=AnonymousCredentials(),
                          client_options=ClientOptions(api_endpoint=endpoint))


def make_gcs_bucket(endpoint: str, *, retention: str = "locked") -> str:
    name = unique("anchors")
    bucket = raw_gcs(endpoint).create_bucket(name)
    if retention != "none":
        # Real GCS only locks a policy through lockRetentionPolicy, which the emulator
        # answers 501; the emulator stores `isLocked` from a patch, which is enough to
        # exercise the SDK's check of what the bucket reports.
        bucket._patch_property("retentionPolicy", {
            "retentionPeriod": str(2192 * 86400), "isLocked": retention == "locked"})
        bucket.patch()
    return name


def gcs_anchor(endpoint: str, bucket: str) -> GCSRetentionAnchor:
    anchor = open_anchor(f"gs://{bucket}/audit?endpoint_url={endpoint}")
    assert isinstance(anchor, GCSRetentionAnchor)
    return anchor


@pytest.mark.emulator
def test_gcs_publish_is_conditional_create_in_a_locked_bucket(gcs_endpoint: str) -> None:
    bucket = make_gcs_bucket(gcs_endpoint)
    anchor = gcs_anchor(gcs_endpoint, bucket)
    urls: list[str] = []
    anchor.client._http.hooks["response"].append(
        lambda response, *a, **k: urls.append(f"{response.request.method} {response.url}"))
    for seq, counter in [(20, 2), (10, 1)]:
        anchor.publish(cp(seq, counter))
    uploads = [u for u in urls if u.startswith("POST") and "/upload/" in u]
    assert len(uploads) == 2
    # The emulator does not enforce ifGenerationMatch (TEST_INFRA.md): assert it was sent.
    assert all("ifGenerationMatch=0" in u for u in uploads)
    assert [c.seq for c in anchor.checkpoints(LOG)] == [10, 20]
    blob = raw_gcs(gcs_endpoint).bucket(bucket).get_blob(f"audit/{LOG}/{1:020d}-{10:020d}.json")
    assert blob.download_as_bytes() == cp(10, 1).to_json().encode()


@pytest.mark.emulator
@pytest.mark.parametrize("retention", ["unlocked", "none"])
def test_gcs_bucket_without_locked_retention_is_refused(gcs_endpoint: str,
                                                        retention: str) -> None:
    bucket = make_gcs_bucket(gcs_endpoint, retention=retention)
    anchor = gcs_anchor(gcs_endpoint, bucket)
    with pytest.raises(AuditUnavailable, match="locked retention policy"):
        anchor.publish(cp(1))
    assert list(raw_gcs(gcs_endpoint).list_blobs(bucket)) == []


@pytest.mark.emulator
def test_gcs_garbage_object_is_reported(gcs_endpoint: str) -> None:
    bucket = make_gcs_bucket(gcs_endpoint)
    anchor = gcs_anchor(gcs_endpoint, bucket)
    anchor.publish(cp(1))
    name = f"audit/{LOG}/{2:020d}-{2:020d}.json"
    raw_gcs(gcs_endpoint).bucket(bucket).blob(name).upload_from_string(b"{}")
    with pytest.raises(AuditFormatError, match=re.escape(name)):
        anchor.checkpoints(LOG)


@pytest.mark.emulator
def test_gcs_missing_bucket_is_audit_unavailable(gcs_endpoint: str) -> None:
    with pytest.raises(AuditUnavailable, match="no-such-anchor-bucket"):
        gcs_anchor(gcs_endpoint, "no-such-anchor-bucket").publish(cp(1))


# --- Azure against Azurite -----------------------------------------------------------------


@pytest.fixture
def azure_account_url(emulators: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    from emulators import azurite_credential_string

    url = str(emulators.endpoint("azure"))
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    monkeypatch.setenv("RESIDENCY_AZURE_CONNECTION_STRING", azurite_credential_string())
    return url


def make_container(account_url: str) -> str:
    from azure.storage.blob import BlobServiceClient
    from emulators import AZURITE_ACCOUNT, AZURITE_KEY

    name = unique("anchors")
    with BlobServiceClient(account_url, credential={"account_name": AZURITE_ACCOUNT,
                                                    "account_key": AZURITE_KEY}) as svc:
        svc.create_container(name)
    return name


def azure_anchor(account_url: str, container: str, *,
                 require_immutable: bool = False) -> AzureImmutableAnchor:
    extra = "" if require_immutable else "&require_immutable=false"
    anchor = open_anchor(f"azure://{container}/audit?account_url={account_url}{extra}")
    assert isinstance(anchor, AzureImmutableAnchor)
    return anchor


@pytest.mark.emulator
def test_azure_container_without_immutability_is_refused(azure_account_url: str) -> None:
    container = make_container(azure_account_url)
    anchor = azure_anchor(azure_account_url, container, require_immutable=True)
    with pytest.raises(AuditUnavailable, match="immutability"):
        anchor.publish(cp(1))


@pytest.mark.emulator
def test_azure_publish_never_overwrites(azure_account_url: str) -> None:
    container = make_container(azure_account_url)
    sent: list[tuple[str, str | None]] = []
    anchor = AzureImmutableAnchor(
        container, "audit", account_url=azure_account_url, require_immutable=False,
        raw_request_hook=lambda request: sent.append(
            (request.http_request.method, request.http_request.headers.get("If-None-Match"))))
    anchor.publish(cp(30, 3))
    anchor.publish(cp(10, 1))
    assert [h for m, h in sent if m == "PUT"] == ["*", "*"]
    # Azurite enforces If-None-Match: the second, different checkpoint is refused.
    with pytest.raises(AuditUnavailable, match="already holds a different checkpoint"):
        anchor.publish(cp(30, 3, salt="forked"))
    anchor.publish(cp(30, 3))  # the same state again: idempotent
    assert anchor.checkpoints(LOG) == [cp(10, 1), cp(30, 3)]


@pytest.mark.emulator
def test_azure_garbage_blob_is_reported(azure_account_url: str) -> None:
    from azure.storage.blob import BlobServiceClient
    from emulators import AZURITE_ACCOUNT, AZURITE_KEY

    container = make_container(azure_account_url)
    anchor = azure_anchor(azure_account_url, container)
    anchor.publish(cp(1))
    name = f"audit/{LOG}/{2:020d}-{2:020d}.json"
    with BlobServiceClient(azure_account_url, credential={
            "account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY}) as svc:
        svc.get_blob_client(container, name).upload_blob(b"nope")
    with pytest.raises(AuditFormatError, match=re.escape(name)):
        anchor.checkpoints(LOG)


def test_azure_connection_string_for_another_account_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESIDENCY_AZURE_CONNECTION_STRING",
                       "AccountName=other;AccountKey=a2V5")
    with pytest.raises(EnvironmentOverride, match="other"):
        open_anchor("azure://audit?account_url=https://acct.blob.core.windows.net")


# --- the Anchorer schedule ---------------------------------------------------------------


class FakeAnchor:
    """An in-memory anchor that can be made to fail."""

    def __init__(self, name: str = "fake", fail: int = 0,
                 error: Exception | None = None) -> None:
        self.name = name
        self.published: list[Checkpoint] = []
        self.fail = fail
        self.error = error or AuditUnavailable(f"{name} is down")
        self.calls = 0

    def publish(self, c: Checkpoint) -> None:
        self.calls += 1
        if self.fail:
            self.fail -= 1
            raise self.error
        self.published.append(c)

    def checkpoints(self, log_id: str) -> list[Checkpoint]:
        return [c for c in self.published if c.log_id == log_id]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Head:
    """A log head the test moves, and the make_checkpoint the writer would pass."""

    def __init__(self) -> None:
        self.seq = 0
        self.made = 0

    def make(self) -> Checkpoint:
        self.made += 1
        return cp(self.seq, self.seq)


@pytest.fixture
def head() -> Head:
    return Head()


def commit(anchorer: Anchorer, head: Head, n: int = 1) -> None:
    for _ in range(n):
        head.seq += 1
        anchorer.after_commit(head.make, head.seq)


def test_anchorer_publishes_every_n_events(head: Head) -> None:
    fake = FakeAnchor()
    anchorer = Anchorer([fake], every_events=3, every_seconds=1e9, clock=FakeClock())
    commit(anchorer, head)  # the first commit of a process is anchored
    assert [c.seq for c in fake.published] == [1]
    commit(anchorer, head, 2)
    assert [c.seq for c in fake.published] == [1]
    assert head.made == 1  # not due: no checkpoint is even built
    commit(anchorer, head)
    assert [c.seq for c in fake.published] == [1, 4]
    # A group commit of many events at once.
    head.seq += 10
    anchorer.after_commit(head.make, head.seq)
    assert [c.seq for c in fake.published] == [1, 4, 14]


def test_anchorer_publishes_every_t_seconds_when_the_head_moved(head: Head) -> None:
    fake = FakeAnchor()
    clock = FakeClock()
    anchorer = Anchorer([fake], every_events=1000, every_seconds=60.0, clock=clock)
    commit(anchorer, head)
    clock.now += 59
    commit(anchorer, head)
    assert [c.seq for c in fake.published] == [1]
    clock.now += 1
    commit(anchorer, head)
    assert [c.seq for c in fake.published] == [1, 3]
    clock.now += 120
    anchorer.after_commit(head.make, head.seq)  # due by time, but the head did not move
    assert [c.seq for c in fake.published] == [1, 3]


def test_anchorer_close_publishes_a_final_anchor_if_the_head_moved(head: Head) -> None:
    fake = FakeAnchor()
    anchorer = Anchorer([fake], every_events=100, every_seconds=1e9, clock=FakeClock())
    commit(anchorer, head, 5)
    anchorer.close(head.make)
    assert [c.seq for c in fake.published] == [1, 5]
    anchorer.close(head.make)  # nothing moved since
    assert [c.seq for c in fake.published] == [1, 5]
    fresh = FakeAnchor()
    Anchorer([fresh]).close(head.make)  # a process that only opened the log
    assert [c.seq for c in fresh.published] == [5]


def test_anchorer_publishes_to_every_anchor(head: Head) -> None:
    a, b = FakeAnchor("a"), FakeAnchor("b")
    anchorer = Anchorer([a, b], every_events=2, every_seconds=1e9, clock=FakeClock())
    commit(anchorer, head, 3)
    assert [c.seq for c in a.published] == [c.seq for c in b.published] == [1, 3]


def test_anchorer_retries_then_succeeds(head: Head) -> None:
    flaky = FakeAnchor(fail=2)
    anchorer = Anchorer([flaky], every_events=1, clock=FakeClock())
    commit(anchorer, head)
    assert flaky.calls == 3
    assert [c.seq for c in flaky.published] == [1]


def test_anchorer_failure_names_the_anchor_and_the_fix(head: Head) -> None:
    down = FakeAnchor("s3://audit-de/anchors", fail=100)
    ok = FakeAnchor("folder")
    clock = FakeClock()
    anchorer = Anchorer([down, ok], every_events=10, every_seconds=60.0, clock=clock)
    with pytest.raises(AuditUnavailable, match="s3://audit-de/anchors") as err:
        commit(anchorer, head)
    assert "residency audit verify" in str(err.value) or "fix" in str(err.value)
    assert [c.seq for c in ok.published] == [1]  # the other anchor still got it
    calls = down.calls
    commit(anchorer, head, 5)  # not due again yet: commits are not slowed by retries
    assert down.calls == calls
    clock.now += 60
    with pytest.raises(AuditUnavailable):
        commit(anchorer, head)
    assert down.calls > calls


def test_anchorer_does_not_retry_a_conflict(head: Head, tmp_path: Path) -> None:
    folder = LocalAnchorFolder(tmp_path / "anchors")
    folder.publish(cp(1, 1, salt="an earlier fork"))
    anchorer = Anchorer([folder], every_events=1, clock=FakeClock())
    with pytest.raises(AuditUnavailable, match="different checkpoint") as err:
        commit(anchorer, head)
    # It is a rollback signal too: the writer can tell it from an anchor store outage.
    assert isinstance(err.value, AnchorConflict)
    assert isinstance(err.value, ChainBroken) and err.value.kind == "rolled_back"


def test_anchorer_passes_unexpected_errors_as_audit_unavailable(head: Head) -> None:
    broken = FakeAnchor("weird", fail=100, error=RuntimeError("boom"))
    with pytest.raises(AuditUnavailable, match="weird"):
        commit(Anchorer([broken], every_events=1, clock=FakeClock()), head)


def test_anchorer_refuses_bad_settings() -> None:
    with pytest.raises(InputError):
        Anchorer([FakeAnchor()], every_events=0)
    with pytest.raises(InputError):
        Anchorer([FakeAnchor()], every_seconds=-1)


def test_anchorer_is_thread_safe() -> None:
    fake = FakeAnchor()
    anchorer = Anchorer([fake], every_events=50, every_seconds=1e9)
    lock = threading.Lock()
    state = {"seq": 0}

    def make() -> Checkpoint:
        with lock:
            return cp(state["seq"], state["seq"])

    def worker() -> None:
        for _ in range(2000):
            with lock:
                state["seq"] += 1
                seq = state["seq"]
            anchorer.after_commit(make, seq)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    anchorer.close(make)
    seqs = [c.seq for c in fake.published]
    assert seqs == sorted(set(seqs))  # each published once, in order
    assert seqs[-1] == 16000
    # Never more often than due (how many, below that, depends on the scheduler: a
    # checkpoint taken while other threads commit covers their events too).
    assert len(seqs) <= 16000 // 50 + 2
    published = seqs[:-1]  # the last one is close()'s, due or not
    assert all(b - a >= 50 for a, b in itertools.pairwise(published)), published


def test_anchorer_not_due_builds_no_checkpoint(head: Head) -> None:
    """Not due: the hot path neither builds a checkpoint nor touches an anchor (its cost
    is measured in benchmarks/bench_audit.py, not asserted here)."""
    fake = FakeAnchor()
    anchorer = Anchorer([fake], every_events=10**9, every_seconds=1e9)
    commit(anchorer, head)
    before = len(fake.published)
    built: list[int] = []

    def make() -> Checkpoint:
        built.append(1)
        return head.make()

    for i in range(10_000):
        anchorer.after_commit(make, 2 + i)
    assert built == [] and len(fake.published) == before


def test_anchorer_head_read_failure_is_not_retried_on_every_commit(head: Head) -> None:
    fake = FakeAnchor()
    clock = FakeClock()
    anchorer = Anchorer([fake], every_events=10, every_seconds=60.0, clock=clock)
    calls = {"n": 0}

    def broken() -> Checkpoint:
        calls["n"] += 1
        raise AuditUnavailable("the log's store is down")

    with pytest.raises(AuditUnavailable, match="store is down"):
        anchorer.after_commit(broken, 1)
    for seq in range(2, 8):
        anchorer.after_commit(broken, seq)
    assert calls["n"] == 1
    clock.now += 60
    anchorer.after_commit(head.make, 8)
    assert len(fake.published) == 1


# --- end to end with the writer and verify -----------------------------------------------


@pytest.fixture(params=["folder", "s3"])
def anchor_for_log(request: pytest.FixtureRequest, tmp_path: Path) -> Anchor:
    if request.param == "folder":
        return LocalAnchorFolder(tmp_path / "anchor-folder")
    endpoint: str = request.getfixturevalue("moto_endpoint")
    return s3_anchor(endpoint, make_s3_bucket(endpoint), prefix="audit")


@pytest.mark.parametrize("keyed", [False, True])
def test_log_replaced_by_an_older_copy_is_caught_by_its_anchor(
        anchor_for_log: Anchor, tmp_path: Path, keyed: bool) -> None:
    import shutil

    from conftest import event

    from residency_sdk.audit import AuditLog, verify_log

    key = KEY if keyed else None
    path = tmp_path / "audit.db"
    with AuditLog(path, hmac_key=key, anchors=[anchor_for_log], anchor_every=5) as log:
        log.append_many([event(i) for i in range(3)])
        log_id = log.info.log_id
    older = tmp_path / "older.db"
    shutil.copyfile(path, older)  # closed: the WAL is checkpointed into the file
    with AuditLog(path, hmac_key=key, anchors=[anchor_for_log], anchor_every=5) as log:
        for i in range(3, 12):
            log.append(event(i))
    anchored = anchor_for_log.checkpoints(log_id)
    assert anchored and anchored[-1].seq == 12  # the close anchored the final head
    assert all(c.seal is not None for c in anchored) == keyed

    assert verify_log(path, hmac_key=key, anchors=[anchor_for_log]).ok
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(older, path)  # the whole file rolled back to an earlier state
    assert verify_log(path, hmac_key=key).ok  # on its own, the old copy is a valid log
    result = verify_log(path, hmac_key=key, anchors=[anchor_for_log])
    assert result.status == "broken"
    assert result.broken is not None and result.broken.kind == "rolled_back"
    # The spec works as well as the object.
    if isinstance(anchor_for_log, LocalAnchorFolder):
        spec = str(anchor_for_log.path)
        assert verify_log(path, hmac_key=key, anchors=[spec]).broken.kind == "rolled_back"


def test_writer_restarted_on_a_rolled_back_log_cannot_overwrite_its_anchors(
        tmp_path: Path) -> None:
    import shutil

    from conftest import event

    from residency_sdk.audit import AuditLog, verify_log

    anchor = LocalAnchorFolder(tmp_path / "anchor-folder")
    path = tmp_path / "audit.db"
    with AuditLog(path, anchors=[anchor], anchor_every=2) as log:
        log.append_many([event(i) for i in range(3)])
        log_id = log.info.log_id
    shutil.copyfile(path, tmp_path / "older.db")
    with AuditLog(path, anchors=[anchor], anchor_every=2) as log:
        for i in range(3, 10):  # one commit each: counters 2..8, positions 4..10
            log.append(event(i))
    before = {(c.counter, c.seq): c for c in anchor.checkpoints(log_id)}
    assert (8, 10) in before  # the close anchored the final head
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(tmp_path / "older.db", path)
    # A writer started on the old copy makes the same number of commits with other
    # events: its final checkpoint takes a name already anchored, and is refused instead
    # of replacing the evidence.
    with pytest.raises(AnchorConflict, match="different checkpoint") as err, \
            AuditLog(path, anchors=[anchor], anchor_every=2) as log:
        for i in range(100, 107):
            log.append(event(i))
    assert err.value.kind == "rolled_back"
    for c in anchor.checkpoints(log_id):
        kept = before.get((c.counter, c.seq))
        assert kept is None or kept.hash == c.hash
    result = verify_log(path, anchors=[anchor])
    assert result.status == "broken"
    assert result.broken is not None
    assert result.broken.kind in ("checkpoint_mismatch", "rolled_back")
