"""What an erasure leaves of a tenant on S3 besides its listed objects (MD-5): old
versions, delete markers and incomplete multipart uploads (a crashed upload's parts are
stored and readable by the bucket owner, though no object listing shows them).

``S3Store.purge_residue`` on a versioned bucket of moto server, checked against S3's own
listings (boto3 ``ListObjectVersions`` / ``ListMultipartUploads``, never the adapter):
it aborts every incomplete upload under the prefix except those of kept (held) keys,
counts what it aborted, skips an upload that went away meanwhile, and names the
operation and the key when S3 refuses an abort. The first test runs a whole tracked
erasure to show the residue really goes through the public API.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

import residency_sdk as rs
from residency_sdk.errors import AccessDenied
from residency_sdk.storage.keys import tenant_prefix

pytestmark = [pytest.mark.emulator,
              pytest.mark.parametrize("provider_harness", ["aws"], indirect=True)]


class Bucket:
    """A fresh versioned bucket on moto that the map's DE aws backend (no failover)
    points at, and the adapter for it."""

    def __init__(self, harness: Any, tmp_path: Path) -> None:
        self.name = f"residency-res-{uuid.uuid4().hex[:10]}"
        harness.make_bucket(self.name, "eu-central-1", kms_key=harness.kms_keys["DE"])
        self.s3 = harness.aws_client("s3", "eu-central-1")
        self.s3.put_bucket_versioning(Bucket=self.name,
                                      VersioningConfiguration={"Status": "Enabled"})
        map_path = harness.write_map(tmp_path, extra={"DE": {"bucket": self.name}})
        self.res = rs.Residency.load(map_path, audit=str(tmp_path / "audit.db"))
        self.target = self.res.map.locations["DE"].backend("aws")
        assert self.target.bucket == self.name
        self.store = self.res.store(self.target, "DE")
        self.tenant = rs.Tenant(id=f"clinic-{uuid.uuid4().hex[:10]}", country="DE")
        self.prefix = tenant_prefix(self.tenant)

    def start_upload(self, key: str) -> str:
        """An incomplete multipart upload of ``key`` with one part stored."""
        upload = self.s3.create_multipart_upload(Bucket=self.name, Key=key)["UploadId"]
        self.s3.upload_part(Bucket=self.name, Key=key, UploadId=upload, PartNumber=1,
                            Body=b"part of a scan")
        return str(upload)

    def uploads(self, prefix: str = "") -> list[str]:
        """Keys of the incomplete uploads S3 keeps under ``prefix``."""
        page = self.s3.list_multipart_uploads(Bucket=self.name, Prefix=prefix)
        return sorted(u["Key"] for u in page.get("Uploads", []))

    def history(self, prefix: str) -> list[str]:
        page = self.s3.list_object_versions(Bucket=self.name, Prefix=prefix)
        return sorted(v["Key"] for v in [*page.get("Versions", []),
                                         *page.get("DeleteMarkers", [])])


@pytest.fixture
def bucket(provider_harness: Any, tmp_path: Path) -> Iterator[Bucket]:
    b = Bucket(provider_harness, tmp_path)
    try:
        yield b
    finally:
        b.res.close()


def test_erasure_leaves_no_version_and_no_incomplete_upload_of_the_tenant(
        bucket: Bucket, tmp_path: Path) -> None:
    store = bucket.res.storage_for(bucket.tenant)
    store.put("scans/a.dcm", b"v1", data_class="phi")
    store.put("scans/a.dcm", b"v2", data_class="phi")
    bucket.start_upload(f"{bucket.prefix}scans/crashed.dcm")
    other = f"tenants/clinic-{uuid.uuid4().hex[:10]}/scans/b.dcm"  # another tenant
    bucket.start_upload(other)

    tracker = bucket.res.erasure_tracker(tmp_path / "state")
    done = tracker.run(tracker.request(bucket.tenant, providers=["aws"]).id)

    assert done.status == "completed", done.model_dump()
    assert bucket.uploads(bucket.prefix) == []
    assert bucket.history(bucket.prefix) == []
    assert bucket.uploads() == [other]  # nothing of another tenant is touched


def test_purge_residue_aborts_every_upload_under_the_prefix_but_the_kept_keys(
        bucket: Bucket) -> None:
    p = bucket.prefix
    held = f"{p}a-held.dcm"  # listed first: what follows it must still be aborted
    for key in (held, f"{p}b.dcm", f"{p}c.dcm"):
        bucket.start_upload(key)
    outside = f"{p[:-1]}-other/x.dcm"  # same leading characters, another prefix
    bucket.start_upload(outside)

    residue = bucket.store.purge_residue(p, keep=frozenset({held}))

    assert (residue.uploads_aborted, residue.versions_deleted, residue.held) == (2, 0, {})
    assert bucket.uploads(p) == [held]
    assert outside in bucket.uploads()


def test_purge_residue_counts_old_versions_and_uploads_together(bucket: Bucket) -> None:
    p = bucket.prefix
    bucket.store.put(f"{p}x.dcm", b"one")
    bucket.store.put(f"{p}x.dcm", b"two")
    bucket.store.delete(f"{p}x.dcm")  # 2 versions + 1 marker, none current
    bucket.start_upload(f"{p}y.dcm")

    residue = bucket.store.purge_residue(p)

    assert (residue.versions_deleted, residue.uploads_aborted) == (3, 1)
    assert bucket.history(p) == [] and bucket.uploads(p) == []


def test_an_upload_that_went_away_meanwhile_is_skipped_not_an_error(
        bucket: Bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    p = bucket.prefix
    bucket.start_upload(f"{p}done-meanwhile.dcm")
    bucket.start_upload(f"{p}still-open.dcm")
    client = bucket.store._client
    real_abort = client.abort_multipart_upload

    def completed_by_someone_else_first(**kwargs: Any) -> Any:
        if kwargs["Key"].endswith("done-meanwhile.dcm"):
            real_abort(**kwargs)  # gone before our call: S3 answers NoSuchUpload
        return real_abort(**kwargs)

    monkeypatch.setattr(client, "abort_multipart_upload", completed_by_someone_else_first)

    residue = bucket.store.purge_residue(p)

    assert residue.uploads_aborted == 1  # only what this call aborted
    assert bucket.uploads(p) == []


def test_a_refused_abort_raises_naming_the_operation_and_the_key(
        bucket: Bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    key = f"{bucket.prefix}z.dcm"
    bucket.start_upload(key)
    client = bucket.store._client

    def refuse(**kwargs: Any) -> Any:
        raise botocore.exceptions.ClientError(
            {"Error": {"Code": "AccessDenied", "Message": "no s3:AbortMultipartUpload"}},
            "AbortMultipartUpload")

    monkeypatch.setattr(client, "abort_multipart_upload", refuse)

    with pytest.raises(AccessDenied) as refused:
        bucket.store.purge_residue(bucket.prefix)

    assert str(refused.value) == (
        f"{bucket.store.name}: access denied for abort-upload {key!r} (AccessDenied); "
        "check the credentials and bucket policy")
    assert bucket.uploads(bucket.prefix) == [key]  # refused: still there, not hidden
