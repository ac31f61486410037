"""``S3Store.purge_versions`` on a versioned bucket (moto server): what the retention sweep
relies on for "no copies of the image are retained" (MV-4).

Checked against S3's own listing (``ListObjectVersions`` through boto3, never the
adapter): every noncurrent version and delete marker of exactly the key goes; a key that
merely starts with the same characters keeps its whole history; a current version (the
key written again) stays; and versions are deleted before delete markers, so a purge cut
short leaves the key hidden as the sweep left it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import residency_sdk as rs
from residency_sdk.marks import CATEGORY_META
from residency_sdk.storage.keys import tenant_prefix

pytestmark = [pytest.mark.emulator,
              pytest.mark.parametrize("provider_harness", ["aws"], indirect=True)]

UPLOAD = {CATEGORY_META: "imaging_upload"}  # 24 hours in the default map
AUDIT = {CATEGORY_META: "audit"}  # six years: never due in these tests


class Bucket:
    """A fresh versioned bucket on moto that the map's DE aws backend points at."""

    def __init__(self, harness: Any, tmp_path: Path) -> None:
        # DE: its aws backend has no failover bucket, so this one bucket is all there is.
        self.name = f"residency-pv-{uuid.uuid4().hex[:10]}"
        harness.make_bucket(self.name, "eu-central-1", kms_key=harness.kms_keys["DE"])
        self.s3 = harness.aws_client("s3", "eu-central-1")
        self.s3.put_bucket_versioning(Bucket=self.name,
                                      VersioningConfiguration={"Status": "Enabled"})
        map_path = harness.write_map(tmp_path, extra={"DE": {"bucket": self.name}})
        self.res = rs.Residency.load(map_path, audit=str(tmp_path / "audit.db"))
        location = self.res.map.locations["DE"]
        self.target = location.backend("aws")
        assert self.target.bucket == self.name and location.failover_for(self.target) is None
        self.store = self.res.store(self.target, "DE")
        tenant = rs.Tenant(id=f"clinic-{uuid.uuid4().hex[:10]}", country="DE")
        self.prefix = tenant_prefix(tenant)

    def history(self, key: str) -> tuple[list[str], list[str]]:
        """``(version ids, delete marker ids)`` S3 keeps of exactly ``key``."""
        page = self.s3.list_object_versions(Bucket=self.name, Prefix=key)
        return ([v["VersionId"] for v in page.get("Versions", []) if v["Key"] == key],
                [m["VersionId"] for m in page.get("DeleteMarkers", []) if m["Key"] == key])

    def put(self, key: str, body: bytes, category: dict[str, str]) -> None:
        self.store.put(key, body, metadata={
            **category, "residency_created_at": datetime.now(UTC).isoformat()})


@pytest.fixture
def bucket(provider_harness: Any, tmp_path: Path) -> Iterator[Bucket]:
    b = Bucket(provider_harness, tmp_path)
    try:
        yield b
    finally:
        b.res.close()


def test_sweep_purges_every_version_of_the_expired_key_and_nothing_of_its_neighbours(
        bucket: Bucket) -> None:
    key = f"{bucket.prefix}uploads/ct.dcm"
    neighbour = f"{bucket.prefix}uploads/ct.dcm.v2"  # starts with the swept key's name
    for n in range(3):
        bucket.put(key, b"upload %d" % n, UPLOAD)
    bucket.put(neighbour, b"report v1", AUDIT)
    bucket.put(neighbour, b"report v2", AUDIT)
    bucket.s3.delete_object(Bucket=bucket.name, Key=neighbour)  # a marker over both
    neighbour_history = bucket.history(neighbour)
    assert [len(ids) for ids in neighbour_history] == [2, 1]

    start = datetime.now(UTC)
    report = bucket.res.retention_sweep(
        "DE", providers=["aws"], clock=lambda: start + timedelta(hours=25)).run()

    assert report.ok, report.to_dict()
    [item] = [i for i in report.items if i.key == key]
    assert (item.action, item.versions_deleted) == ("deleted", 4)  # 3 uploads + marker
    assert bucket.history(key) == ([], [])  # S3 keeps no copy of the image
    assert bucket.history(neighbour) == neighbour_history  # untouched, marker included


def test_purge_versions_deletes_noncurrent_versions_and_markers_of_exactly_the_key(
        bucket: Bucket) -> None:
    key = f"{bucket.prefix}scans/a.dcm"
    neighbour = f"{bucket.prefix}scans/a.dcm.bak"
    bucket.put(key, b"one", UPLOAD)
    bucket.put(key, b"two", UPLOAD)
    bucket.s3.delete_object(Bucket=bucket.name, Key=key)  # what the sweep's delete leaves
    bucket.put(neighbour, b"bak one", UPLOAD)
    bucket.put(neighbour, b"bak two", UPLOAD)
    neighbour_history = bucket.history(neighbour)

    residue = bucket.store.purge_versions(key)

    assert (residue.versions_deleted, residue.held) == (3, {})
    assert bucket.history(key) == ([], [])
    assert bucket.history(neighbour) == neighbour_history
    assert bucket.store.get(neighbour) == b"bak two"


def test_purge_versions_keeps_the_current_version_of_a_key_written_again(
        bucket: Bucket) -> None:
    key = f"{bucket.prefix}scans/b.dcm"
    bucket.put(key, b"old", UPLOAD)
    bucket.s3.delete_object(Bucket=bucket.name, Key=key)
    bucket.put(key, b"re-uploaded", UPLOAD)  # written again after the sweep's delete
    [current, _old], [_marker] = bucket.history(key)

    residue = bucket.store.purge_versions(key)

    assert residue.versions_deleted == 2
    assert bucket.history(key) == ([current], [])
    assert bucket.store.get(key) == b"re-uploaded"


def test_purge_versions_deletes_versions_before_delete_markers(
        bucket: Bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    """A purge cut short must leave the key hidden (its marker last to go). S3 version ids
    are random, so several keys with several versions each make an order that merely
    happened to be right vanishingly unlikely (1 in 5**4)."""
    client = bucket.store._client
    deleted: list[str] = []
    real_delete = client.delete_object

    def spy(**kwargs: Any) -> Any:
        if "VersionId" in kwargs:
            deleted.append(kwargs["VersionId"])
        return real_delete(**kwargs)

    monkeypatch.setattr(client, "delete_object", spy)
    for n in range(4):
        key = f"{bucket.prefix}order/{n}.dcm"
        for v in range(4):
            bucket.put(key, b"v%d" % v, UPLOAD)
        real_delete(Bucket=bucket.name, Key=key)
        versions, [marker] = bucket.history(key)
        deleted.clear()

        assert bucket.store.purge_versions(key).versions_deleted == 5

        assert sorted(deleted[:-1]) == sorted(versions) and deleted[-1] == marker, n
        assert bucket.history(key) == ([], [])
