"""Deleting on buckets that keep versions: "no copies are retained" holds right after the
retention sweep and the erasure, not a lifecycle day later.

On S3 (moto server, versioning on) an object written twice and expired is swept, and the
provider's own listing (``ListObjectVersions``) must show no version and no delete marker
of it on the primary and on the failover bucket, while a neighbouring key's history is
untouched; an old version under an S3 legal hold is reported ``held`` (item, counters,
``retention_delete`` outcome), never "deleted"; an erasure leaves no version on either
bucket.

The emulators of the other clouds keep no versions (docs/retention-erasure.md, "Versioned
buckets"): gcp-storage-emulator accepts ``versions=true`` and ignores it (it lists live
objects only and ignores ``generation=`` on reads), and Azurite 3.37 implements neither
blob versions nor soft delete (it accepts ``include=versions,deleted`` and returns current
blobs). So on them the tests check what the adapter asks the emulator (its own HTTP
requests, seen through the SDK's request hooks), and a blob snapshot, which Azurite does
keep, is checked gone through Azurite's own listing. What the adapter does with the
versions a real service lists is checked against a small loopback server speaking the
GCS JSON and Azure Blob REST listing formats: the real SDKs talk to it over HTTP, and it
records every DELETE (generation, version id, snapshot, permanent delete).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

import pytest
from emulators import AZURITE_ACCOUNT, azurite_credential_string

import residency_sdk as rs
from residency_sdk.erasure import audit_log_events
from residency_sdk.marks import CATEGORY_META
from residency_sdk.model import StorageTarget
from residency_sdk.regions import failover_bucket
from residency_sdk.storage.base import ObjectStore, Residue
from residency_sdk.storage.factory import open_store
from residency_sdk.storage.keys import tenant_prefix
from residency_sdk.storage.memory import MemoryStore

UPLOAD = {CATEGORY_META: "imaging_upload"}  # 24 hours in the default map
AUDIT = {CATEGORY_META: "audit"}  # six years: never expires in these tests
OLD = b"first upload of the study"
NEW = b"second upload of the study (the latest content)"
aws_only = pytest.mark.parametrize("provider_harness", ["aws"], indirect=True)
gcp_only = pytest.mark.parametrize("provider_harness", ["gcp"], indirect=True)
azure_only = pytest.mark.parametrize("provider_harness", ["azure"], indirect=True)


def _later(hours: float) -> Any:
    start = datetime.now(UTC)
    return lambda: start + timedelta(hours=hours)


def _created_now(category: dict[str, str]) -> dict[str, str]:
    """Metadata a raw write needs to be judged by the sweep (the facade adds it itself)."""
    return {**category, "residency_created_at": datetime.now(UTC).isoformat()}


def _events(tmp_path: Path, key: str, operation: str = "retention_delete") -> list[Any]:
    return [e for e in audit_log_events(tmp_path / "audit.db")
            if e.operation == operation and e.object_key == key]


# --- S3 on moto: versioned primary and failover buckets -------------------------------


class VersionedS3:
    """A versioned primary bucket in US (us-east-1) and its in-country failover
    (us-west-2) on moto, a Residency whose map points the US aws backend at them, and raw
    boto3 clients to look at what S3 itself keeps."""

    def __init__(self, harness: Any, tmp_path: Path, *, lock: bool = False,
                 versioning: bool = True) -> None:
        self.name = f"residency-ver-{uuid.uuid4().hex[:10]}"
        self.failover = failover_bucket(self.name)
        self.clients = {self.name: harness.aws_client("s3", "us-east-1"),
                        self.failover: harness.aws_client("s3", "us-west-2")}
        for bucket, region in ((self.name, "us-east-1"), (self.failover, "us-west-2")):
            s3 = self.clients[bucket]
            kwargs: dict[str, Any] = {"Bucket": bucket}
            if region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
            if lock:  # object lock turns versioning on with it
                kwargs["ObjectLockEnabledForBucket"] = True
            s3.create_bucket(**kwargs)
            if versioning and not lock:
                self.enable_versioning(bucket)
            s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {
                    "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": harness.kms_keys["US"]}}]})
        map_path = harness.write_map(tmp_path, extra={"US": {"bucket": self.name}})
        self.res = rs.Residency.load(map_path, audit=str(tmp_path / "audit.db"))
        location = self.res.map.locations["US"]
        self.targets = {"primary": location.backend("aws")}
        failover = location.failover_for(self.targets["primary"])
        assert failover is not None and failover.bucket == self.failover
        self.targets["failover"] = failover
        self.tenant = rs.Tenant(id=f"clinic-{uuid.uuid4().hex[:10]}", country="US")
        self.prefix = tenant_prefix(self.tenant)

    def enable_versioning(self, bucket: str) -> None:
        s3 = self.clients[bucket]
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        assert s3.get_bucket_versioning(Bucket=bucket).get("Status") == "Enabled"

    def bucket(self, role: str) -> str:
        return self.targets[role].bucket

    def raw(self, role: str) -> ObjectStore:
        return self.res.store(self.targets[role], "US")

    def versions(self, role: str, key: str) -> tuple[list[str], list[str]]:
        """``(version ids, delete marker ids)`` S3 keeps of exactly ``key``."""
        bucket = self.bucket(role)
        page = self.clients[bucket].list_object_versions(Bucket=bucket, Prefix=key)
        return ([v["VersionId"] for v in page.get("Versions", []) if v["Key"] == key],
                [m["VersionId"] for m in page.get("DeleteMarkers", []) if m["Key"] == key])

    def sweep(self, hours: float = 25, **kwargs: Any) -> Any:
        return self.res.retention_sweep("US", providers=["aws"], clock=_later(hours),
                                        **kwargs).run()


@pytest.fixture
def versioned(provider_harness: Any, tmp_path: Path) -> Iterator[VersionedS3]:
    buckets = VersionedS3(provider_harness, tmp_path)
    try:
        yield buckets
    finally:
        buckets.res.close()


@pytest.fixture
def locked(provider_harness: Any, tmp_path: Path) -> Iterator[VersionedS3]:
    buckets = VersionedS3(provider_harness, tmp_path, lock=True)
    try:
        yield buckets
    finally:
        buckets.res.close()


@pytest.mark.emulator
@aws_only
@pytest.mark.parametrize("role", ["primary", "failover"])
def test_sweep_leaves_no_version_and_no_delete_marker_of_an_expired_object(
        versioned: VersionedS3, role: str, tmp_path: Path) -> None:
    """Two uploads of an expired study on a versioned bucket (primary or failover): after
    the sweep S3 lists neither upload and no delete marker of the key, the neighbouring
    key (same string prefix, not expired) keeps both its versions, and the report and the
    ``retention_delete`` outcome count what went."""
    b = versioned
    store = b.raw(role)
    key = f"{b.prefix}uploads/ct.dcm"
    neighbour = f"{b.prefix}uploads/ct.dcm.report"  # starts with the swept key
    store.put(key, OLD, metadata=_created_now(UPLOAD))
    store.put(key, NEW, metadata=_created_now(UPLOAD))
    store.put(neighbour, b"report v1", metadata=_created_now(AUDIT))
    store.put(neighbour, b"report v2", metadata=_created_now(AUDIT))
    assert [len(ids) for ids in b.versions(role, key)] == [2, 0]  # both uploads readable

    early = b.sweep(hours=23)  # not expired yet: nothing of it is touched
    assert early.ok, early.to_dict()
    assert [len(ids) for ids in b.versions(role, key)] == [2, 0]

    report = b.sweep()

    assert report.ok, report.to_dict()
    (item,) = [i for i in report.items if i.key == key]
    assert (item.action, item.versions_deleted) == ("deleted", 3)  # 2 uploads + marker
    (state,) = [s for s in report.backends if s.role == role]
    assert (state.deleted, state.versions_deleted, state.held) == (1, 3, 0)
    assert report.to_dict()["totals"]["versions_deleted"] == 3
    assert b.versions(role, key) == ([], [])  # S3's own listing: nothing left
    assert len(b.versions(role, neighbour)[0]) == 2
    assert store.get(neighbour) == b"report v2"
    other = "failover" if role == "primary" else "primary"
    assert b.versions(other, key) == ([], [])
    b.res.audit.flush()
    intent, outcome = _events(tmp_path, key)
    assert (intent.outcome, outcome.outcome, outcome.error) == ("intent", "ok", None)
    assert outcome.intent_id == intent.event_id
    assert outcome.bucket == b.bucket(role)
    assert "3 old version(s) and delete marker(s) of the key deleted with it" in \
        outcome.reasons


@pytest.mark.emulator
@aws_only
def test_an_upload_from_before_versioning_was_enabled_is_purged_too(
        provider_harness: Any, tmp_path: Path) -> None:
    """An object written while the bucket was unversioned has the version id ``null``;
    once versioning is on and the key is written again, that ``null`` version is a
    noncurrent copy like any other, and the sweep deletes it with the rest."""
    b = VersionedS3(provider_harness, tmp_path, versioning=False)
    try:
        store = b.raw("primary")
        key = f"{b.prefix}uploads/ct.dcm"
        store.put(key, OLD, metadata=_created_now(UPLOAD))
        b.enable_versioning(b.name)
        store.put(key, NEW, metadata=_created_now(UPLOAD))
        versions, _ = b.versions("primary", key)
        assert "null" in versions and len(versions) == 2

        report = b.sweep()

        assert [(i.action, i.versions_deleted) for i in report.items if i.key == key] == [
            ("deleted", 3)]
        assert b.versions("primary", key) == ([], [])
    finally:
        b.res.close()


@pytest.mark.emulator
@aws_only
def test_dry_run_and_kept_objects_keep_every_version(versioned: VersionedS3) -> None:
    """The purge follows a deletion only: a dry run and an object the policy keeps (or
    holds) leave S3 holding every version they had."""
    b = versioned
    store = b.raw("primary")
    expired, kept, marked = (f"{b.prefix}{name}" for name in ("a.dcm", "b.log", "c.dcm"))
    for key, meta in ((expired, UPLOAD), (kept, AUDIT),
                      (marked, {**UPLOAD, "legal_hold": "true"})):
        store.put(key, OLD, metadata=_created_now(meta))
        store.put(key, NEW, metadata=_created_now(meta))

    dry = b.sweep(dry_run=True)
    assert {i.key: i.action for i in dry.items if i.key.startswith(b.prefix)} == {
        expired: "would_delete", marked: "held"}
    real = b.sweep()
    assert {i.key: i.action for i in real.items if i.key.startswith(b.prefix)} == {
        expired: "deleted", marked: "held"}
    assert b.versions("primary", expired) == ([], [])
    assert [len(ids) for ids in b.versions("primary", kept)] == [2, 0]
    assert [len(ids) for ids in b.versions("primary", marked)] == [2, 0]


class ReuploadAfterDelete(ObjectStore):
    """The real adapter, except that right after it deletes ``key`` the clinic uploads
    the key again (``fresh``): the upload lands between the sweep's delete and its
    purge of the key's old versions."""

    def __init__(self, inner: ObjectStore, key: str, fresh: bytes) -> None:
        self.inner, self.key, self.fresh = inner, key, fresh
        self.target: StorageTarget = inner.target
        self.landed = False

    def delete(self, key: str, *, if_match: Any = None) -> bool:
        existed = self.inner.delete(key, if_match=if_match)
        if key == self.key and not self.landed:
            self.landed = True
            self.inner.put(key, self.fresh, metadata=_created_now(UPLOAD))
        return existed

    def put(self, key: str, data: Any, *, metadata: dict[str, str] | None = None,
            progress: Any = None) -> Any:
        return self.inner.put(key, data, metadata=metadata, progress=progress)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def open(self, key: str) -> Any:
        return self.inner.open(key)

    def head(self, key: str) -> Any:
        return self.inner.head(key)

    def list(self, prefix: str = "") -> Any:
        return self.inner.list(prefix)

    def hold_reason(self, info: Any, now: datetime) -> str | None:
        return self.inner.hold_reason(info, now)

    def purge_versions(self, key: str) -> Residue:
        return self.inner.purge_versions(key)

    def tenant_key_id(self, tenant_id: str) -> str | None:
        return self.inner.tenant_key_id(tenant_id)

    def close(self) -> None:
        self.inner.close()


@pytest.mark.emulator
@aws_only
def test_a_reupload_landing_between_the_delete_and_the_purge_stays_current(
        versioned: VersionedS3, provider_harness: Any, tmp_path: Path) -> None:
    """The purge deletes only what S3 lists as noncurrent (and delete markers): a study
    uploaded again right after the sweep's delete is the current version and survives,
    byte for byte; the two expired uploads and the marker go."""
    b = versioned
    key = f"{b.prefix}uploads/ct.dcm"
    fresh = b"uploaded again by the clinic right after the sweep deleted the study"
    wrappers: list[ReuploadAfterDelete] = []

    def opener(target: StorageTarget, location: str) -> ObjectStore:
        wrappers.append(ReuploadAfterDelete(open_store(target, location=location), key,
                                            fresh))
        return wrappers[-1]

    map_path = provider_harness.write_map(tmp_path, extra={"US": {"bucket": b.name}})
    res = rs.Residency.load(map_path, audit=str(tmp_path / "raced.db"), storage=opener)
    store = res.store(b.targets["primary"], "US")
    store.put(key, OLD, metadata=_created_now(UPLOAD))
    store.put(key, NEW, metadata=_created_now(UPLOAD))
    try:
        report = res.retention_sweep("US", providers=["aws"], clock=_later(25)).run()
    finally:
        res.close()

    assert [w.landed for w in wrappers if w.target.bucket == b.name] == [True]
    assert [(i.action, i.versions_deleted) for i in report.items if i.key == key] == [
        ("deleted", 3)]
    (current,), markers = b.versions("primary", key)
    assert markers == []
    s3 = b.clients[b.name]
    assert s3.head_object(Bucket=b.name, Key=key)["VersionId"] == current
    assert s3.get_object(Bucket=b.name, Key=key)["Body"].read() == fresh


@pytest.mark.emulator
@aws_only
def test_an_old_version_under_legal_hold_makes_the_item_held_and_the_audit_says_so(
        locked: VersionedS3, tmp_path: Path) -> None:
    """The first upload is under an S3 legal hold, the second is not: the sweep deletes
    the second and reports the item ``held`` (not deleted), the outcome is an error
    naming the held version; the held upload is then the current object, reported held
    by every sweep until the hold is lifted, and the next sweep leaves nothing."""
    b = locked
    store = b.raw("primary")
    key = f"{b.prefix}uploads/ct.dcm"
    store.put(key, OLD, metadata=_created_now(UPLOAD))
    (first,), _ = b.versions("primary", key)
    s3 = b.clients[b.name]
    s3.put_object_legal_hold(Bucket=b.name, Key=key, VersionId=first,
                             LegalHold={"Status": "ON"})
    store.put(key, NEW, metadata=_created_now(UPLOAD))  # current, not locked

    report = b.sweep()

    (item,) = [i for i in report.items if i.key == key]
    assert item.action == "held", item
    assert f"S3 refused deleting version {first}" in (item.detail or "")
    assert item.versions_deleted == 2  # the second upload and the delete marker
    (state,) = [s for s in report.backends if s.role == "primary"]
    assert (state.deleted, state.held, state.expired) == (0, 1, 1)
    assert b.versions("primary", key) == ([first], [])
    assert s3.head_object(Bucket=b.name, Key=key)["VersionId"] == first
    assert store.get(key) == OLD  # the held bytes, kept by the provider
    b.res.audit.flush()
    intent, outcome = _events(tmp_path, key)
    assert (intent.outcome, outcome.outcome) == ("intent", "error")
    assert (outcome.error or "").startswith("held: ")
    assert first in (outcome.error or "")
    assert "2 old version(s) and delete marker(s) of the key deleted with it" in \
        outcome.reasons

    again = b.sweep()  # never silently kept: reported on every sweep
    assert [(i.action, "legal hold is ON" in (i.detail or "")) for i in again.items
            if i.key == key] == [("held", True)]
    s3.put_object_legal_hold(Bucket=b.name, Key=key, VersionId=first,
                             LegalHold={"Status": "OFF"})
    lifted = b.sweep()
    assert [(i.action, i.versions_deleted) for i in lifted.items if i.key == key] == [
        ("deleted", 2)]  # the first upload and the new delete marker
    assert b.versions("primary", key) == ([], [])


@pytest.mark.emulator
@aws_only
def test_erasure_leaves_no_version_on_versioned_primary_and_failover(
        versioned: VersionedS3, tmp_path: Path) -> None:
    """A tenant's objects with old versions and delete markers on both buckets: after the
    erasure S3 lists nothing of the tenant on either, another tenant's history stays."""
    b = versioned
    other = f"tenants/{b.tenant.id}x/a.dcm"  # another tenant whose id starts the same
    for role in ("primary", "failover"):
        store = b.raw(role)
        for name in ("a.dcm", "b.dcm"):
            store.put(b.prefix + name, OLD)
            store.put(b.prefix + name, NEW)
        store.delete(b.prefix + "b.dcm")  # a delete marker over two versions
        store.put(other, OLD)
        store.put(other, NEW)
        assert [len(ids) for ids in b.versions(role, b.prefix + "b.dcm")] == [2, 1]

    receipt = b.res.erase(b.tenant, providers=["aws"], state_dir=tmp_path / "state")

    assert receipt.complete
    for role in ("primary", "failover"):
        bucket = b.bucket(role)
        page = b.clients[bucket].list_object_versions(Bucket=bucket, Prefix=b.prefix)
        assert not page.get("Versions") and not page.get("DeleteMarkers"), (role, page)
        assert len(b.versions(role, other)[0]) == 2
    by_role = {backend.role: backend for backend in receipt.backends}
    # a.dcm: 2 uploads + the erasure's marker; b.dcm: 2 uploads + 1 marker
    assert by_role["primary"].versions_deleted == by_role["failover"].versions_deleted == 6


class PurgeFails(MemoryStore):
    """A store whose version purge fails after the delete went through (a listing the
    credentials may not make, a backend gone meanwhile)."""

    def purge_versions(self, key: str) -> Residue:
        raise rs.BackendUnavailable(f"listing the versions of {key!r} timed out")


def test_a_failed_version_purge_is_an_error_that_says_the_object_went(
        tmp_path: Path) -> None:
    """When the purge after a delete fails, the item is an ``error`` (the report is not
    ok), never "deleted", and both its detail and the ``retention_delete`` outcome say
    the object was deleted while its old versions may still be readable."""
    res = rs.Residency.load(audit=str(tmp_path / "audit.db"),
                            storage=lambda target, location: PurgeFails(target))
    tenant = rs.Tenant(id=f"clinic-{uuid.uuid4().hex[:10]}", country="DE")
    store = res.storage_for(tenant)
    store.put("uploads/ct.dcm", NEW, data_class="phi", metadata=UPLOAD)
    key = f"{tenant_prefix(tenant)}uploads/ct.dcm"

    report = res.retention_sweep("DE", providers=[store.target.provider],
                                 clock=_later(25)).run()

    assert not report.ok
    (item,) = [i for i in report.items if i.key == key]
    assert item.action == "error"
    assert "the current object was deleted, but purging its old versions failed" in \
        (item.detail or "")
    assert report.total("errors") == 1 and report.total("deleted") == 0
    assert not store.exists("uploads/ct.dcm")
    res.audit.flush()
    intent, outcome = _events(tmp_path, key)
    assert (intent.outcome, outcome.outcome) == ("intent", "error")
    assert (outcome.error or "").startswith(
        "BackendUnavailable: the object was deleted, but purging its old versions failed")
    assert "0 old version(s) and delete marker(s) of the key deleted with it" in \
        outcome.reasons


# --- the emulators without versions: what the adapter asks them ----------------------


def _versions_asked(query: dict[str, list[str]]) -> bool:
    """A GCS listing asked for every generation (the library sends ``versions=True``)."""
    return [v.lower() for v in query.get("versions", [])] == ["true"]


def _record_gcs(store: ObjectStore, requests: list[tuple[str, str, dict[str, list[str]]]]
                ) -> None:
    """Record every request the GCS adapter's HTTP session answers: method, decoded
    path, query."""
    def hook(response: Any, *args: Any, **kwargs: Any) -> None:
        parts = urlsplit(response.request.url)
        requests.append((response.request.method, unquote(parts.path),
                         parse_qs(parts.query)))

    store.client._http.hooks["response"].append(hook)  # type: ignore[attr-defined]


@pytest.mark.emulator
@gcp_only
def test_gcs_sweep_lists_the_deleted_objects_generations_after_deleting_it(
        provider_harness: Any, tmp_path: Path) -> None:
    """gcp-storage-emulator keeps no generations, so what is checked is the request: on
    the primary and the failover bucket, the DELETE of the expired object is followed by
    a listing of exactly its name with ``versions=true``; the object kept and the dry run
    send none."""
    res = rs.Residency.load(provider_harness.write_map(tmp_path),
                            audit=str(tmp_path / "audit.db"))
    tenant = rs.Tenant(id=f"clinic-{uuid.uuid4().hex[:10]}", country="DE")
    location = res.map.locations["DE"]
    requests: list[tuple[str, str, dict[str, list[str]]]] = []
    keys = {}
    for role, target in location.targets(["gcp"]):
        store = res.store(target, "DE")
        _record_gcs(store, requests)
        keys[role] = f"{tenant_prefix(tenant)}{role}/ct.dcm"
        store.put(keys[role], NEW, metadata=_created_now(UPLOAD))
        store.put(keys[role] + ".report", b"kept", metadata=_created_now(AUDIT))
    assert set(keys) == {"primary", "failover"}

    def versioned_listings(prefix: str) -> list[int]:
        return [n for n, (method, _path, query) in enumerate(requests)
                if method == "GET" and _versions_asked(query)
                and query.get("prefix", [""])[0].startswith(prefix)]

    res.retention_sweep("DE", providers=["gcp"], clock=_later(25), dry_run=True).run()
    assert versioned_listings(tenant_prefix(tenant)) == []
    report = res.retention_sweep("DE", providers=["gcp"], clock=_later(25)).run()

    assert report.ok, report.to_dict()
    for role, key in keys.items():
        assert [(i.action, i.versions_deleted) for i in report.items if i.key == key] == [
            ("deleted", 0)]
        (delete,) = [n for n, (method, path, _q) in enumerate(requests)
                     if method == "DELETE" and path.endswith("/o/" + key)]
        listed = [n for n in versioned_listings(key) if requests[n][2]["prefix"] == [key]]
        assert listed and listed[0] > delete, (role, requests[delete:])
        bucket = location.targets(["gcp"])[0 if role == "primary" else 1][1].bucket
        assert requests[listed[0]][1].endswith(f"/b/{bucket}/o")
    assert not [n for n in versioned_listings(tenant_prefix(tenant))
                if requests[n][2]["prefix"][0].endswith(".report")]


@pytest.mark.emulator
@gcp_only
def test_gcs_erasure_lists_the_tenants_generations_to_purge_and_verify(
        provider_harness: Any, tmp_path: Path) -> None:
    """Erasure on GCS purges the tenant's noncurrent generations and its verification
    looks for any left: two listings of the tenant prefix with ``versions=true`` on each
    bucket after the objects are deleted (the emulator has none to find)."""
    res = rs.Residency.load(provider_harness.write_map(tmp_path),
                            audit=str(tmp_path / "audit.db"))
    tenant = rs.Tenant(id=f"clinic-{uuid.uuid4().hex[:10]}", country="DE")
    requests: list[tuple[str, str, dict[str, list[str]]]] = []
    buckets = []
    for _role, target in res.map.locations["DE"].targets(["gcp"]):
        _record_gcs(res.store(target, "DE"), requests)
        buckets.append(target.bucket)
    res.storage_for(tenant).put("a.dcm", NEW, data_class="personal")

    receipt = res.erase(tenant, providers=["gcp"], state_dir=tmp_path / "state")

    assert receipt.complete
    prefix = tenant_prefix(tenant)
    for bucket in buckets:
        listings = [path for method, path, query in requests
                    if method == "GET" and path.endswith(f"/b/{bucket}/o")
                    and _versions_asked(query) and query.get("prefix") == [prefix]]
        assert len(listings) == 2, (bucket, requests)


def _record_azure(requests: list[tuple[str, str, dict[str, list[str]]]]) -> Any:
    def hook(request: Any) -> None:
        parts = urlsplit(request.http_request.url)
        requests.append((request.http_request.method, unquote(parts.path),
                         parse_qs(parts.query)))
    return hook


@pytest.mark.emulator
@azure_only
def test_azure_sweep_removes_snapshots_and_asks_for_versions_of_what_it_deleted(
        provider_harness: Any, tmp_path: Path) -> None:
    """Azurite keeps snapshots (not versions): an expired blob with a snapshot is swept
    and Azurite's own listing shows neither, while a kept blob keeps its snapshot. After
    the DELETE the adapter lists exactly that name including versions, snapshots and
    soft-deleted blobs (what a real account keeps)."""
    from residency_sdk.storage.azure import AzureStore

    requests: list[tuple[str, str, dict[str, list[str]]]] = []

    def opener(target: StorageTarget, location: str) -> ObjectStore:
        return AzureStore(target, raw_request_hook=_record_azure(requests))

    res = rs.Residency.load(provider_harness.write_map(tmp_path),
                            audit=str(tmp_path / "audit.db"), storage=opener)
    tenant = rs.Tenant(id=f"clinic-{uuid.uuid4().hex[:10]}", country="DE")
    target = res.map.locations["DE"].backend("azure")
    store = res.store(target, "DE")
    assert isinstance(store, AzureStore)
    key = f"{tenant_prefix(tenant)}uploads/ct.dcm"
    kept = key + ".report"
    container = store.service.get_container_client(target.bucket)
    for name, meta in ((key, UPLOAD), (kept, AUDIT)):
        store.put(name, OLD, metadata=_created_now(meta))
        container.get_blob_client(name).create_snapshot()
        store.put(name, NEW, metadata=_created_now(meta))

    def snapshots(name: str) -> list[str]:
        return [b.snapshot for b in container.list_blobs(name_starts_with=name,
                                                         include=["snapshots"])
                if b.name == name and b.snapshot]

    assert len(snapshots(key)) == len(snapshots(kept)) == 1

    report = res.retention_sweep("DE", providers=["azure"], clock=_later(25)).run()

    assert report.ok, report.to_dict()
    assert [i.action for i in report.items if i.key == key] == ["deleted"]
    assert snapshots(key) == [] and not store.exists(key)
    assert len(snapshots(kept)) == 1 and store.get(kept) == NEW
    blob_path = f"/{target.bucket}/{key}"
    (delete,) = [n for n, (method, path, _q) in enumerate(requests)
                 if method == "DELETE" and path.endswith(blob_path)]
    listed = [n for n, (method, _path, query) in enumerate(requests)
              if method == "GET" and query.get("comp") == ["list"]
              and query.get("prefix") == [key]
              and "versions" in query.get("include", [""])[0].split(",")]
    assert listed and listed[0] > delete, requests[delete:]
    include = requests[listed[0]][2]["include"][0].split(",")
    assert {"versions", "snapshots", "deleted"} <= set(include)


@pytest.mark.emulator
@azure_only
def test_azure_erasure_removes_snapshots_and_lists_versions_to_purge_and_verify(
        provider_harness: Any, tmp_path: Path) -> None:
    """Erasure on Azurite: a tenant blob with a snapshot is erased with it (Azurite's own
    listing shows no snapshot), and on the primary and the failover container the tenant
    prefix is listed twice including versions, snapshots and soft-deleted blobs after the
    blobs are deleted: the purge and the verification."""
    from residency_sdk.storage.azure import AzureStore

    requests: list[tuple[str, str, dict[str, list[str]]]] = []

    def opener(target: StorageTarget, location: str) -> ObjectStore:
        return AzureStore(target, raw_request_hook=_record_azure(requests))

    res = rs.Residency.load(provider_harness.write_map(tmp_path),
                            audit=str(tmp_path / "audit.db"), storage=opener)
    tenant = rs.Tenant(id=f"clinic-{uuid.uuid4().hex[:10]}", country="DE")
    prefix = tenant_prefix(tenant)
    targets = [t for _role, t in res.map.locations["DE"].targets(["azure"])]
    assert len(targets) == 2
    res.storage_for(tenant).put("a.dcm", OLD, data_class="personal")
    primary = res.store(targets[0], "DE")
    assert isinstance(primary, AzureStore)
    container = primary.service.get_container_client(targets[0].bucket)
    container.get_blob_client(prefix + "a.dcm").create_snapshot()
    assert len([b for b in container.list_blobs(name_starts_with=prefix,
                                                include=["snapshots"])]) == 2

    receipt = res.erase(tenant, providers=["azure"], state_dir=tmp_path / "state")

    assert receipt.complete
    assert [b.name for b in container.list_blobs(name_starts_with=prefix,
                                                 include=["snapshots"])] == []
    for target in targets:
        listings = [path for method, path, query in requests
                    if method == "GET" and path.endswith(f"/{target.bucket}")
                    and query.get("prefix") == [prefix]
                    and "versions" in query.get("include", [""])[0].split(",")]
        assert len(listings) == 2, (target.bucket, listings)


# --- what the adapters do with versions a real service lists ---------------------------


class VersionServer:
    """A loopback HTTP server answering the listing and delete requests of the GCS JSON
    API and the Azure Blob REST API from a table of versions, recording every request.

    ``entries``: dicts with ``name`` and, for GCS, ``generation`` and ``live``; for Azure,
    ``version`` / ``snapshot``, ``current`` and ``deleted``. ``refuse`` maps an entry's
    id (generation, version id or snapshot) to the HTTP status a delete of it gets (a
    hold, an immutability policy, a permanent delete the account does not allow). An
    Azure delete soft-deletes (marks ``deleted``), as an account with soft delete does;
    a permanent one removes the entry.
    """

    def __init__(self, entries: list[dict[str, Any]],
                 refuse: dict[str, int] | None = None) -> None:
        self.entries = entries
        self.refuse = refuse or {}
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.handle(self)

            def do_DELETE(self) -> None:
                server.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> VersionServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def deletes(self) -> list[tuple[str, dict[str, list[str]]]]:
        return [(path, query) for method, path, query in self.requests if method == "DELETE"]

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        path, query = unquote(parts.path), parse_qs(parts.query)
        with self.lock:
            self.requests.append((request.command, path, query))
            if path.startswith("/storage/v1/"):
                status, headers, body = self._gcs(request.command, path, query)
            else:
                status, headers, body = self._azure(request.command, path, query)
        request.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(body)

    # GCS JSON API: GET /storage/v1/b/B/o?prefix=&versions=true, DELETE .../o/NAME?generation=
    def _gcs(self, method: str, path: str, query: dict[str, list[str]]
             ) -> tuple[int, dict[str, str], bytes]:
        json_type = {"Content-Type": "application/json"}
        if method == "GET" and not path.endswith("/o"):  # the library reads the bucket
            return 200, json_type, json.dumps({"kind": "storage#bucket", "name": "fake",
                                               "location": "EUROPE-WEST3"}).encode()
        if method == "GET":
            prefix = query.get("prefix", [""])[0]
            items = [{"kind": "storage#object", "name": e["name"], "bucket": "fake",
                      "generation": str(e["generation"]), "size": "1",
                      **({} if e["live"] else {"timeDeleted": "2026-12-01T00:00:00Z"})}
                     for e in self.entries if e["name"].startswith(prefix)]
            return 200, json_type, json.dumps({"kind": "storage#objects",
                                               "items": items}).encode()
        name = path.split("/o/", 1)[1]
        generation = query.get("generation", [""])[0]
        if generation in self.refuse:
            error = {"error": {"code": self.refuse[generation],
                               "message": f"Object '{name}' is under active Temporary hold"}}
            return self.refuse[generation], json_type, json.dumps(error).encode()
        found = [e for e in self.entries
                 if e["name"] == name and str(e["generation"]) == generation]
        if not found:
            return 404, json_type, b'{"error": {"code": 404, "message": "Not Found"}}'
        self.entries.remove(found[0])
        return 204, {}, b""

    # Azure: GET /ACCOUNT/CONTAINER?comp=list&include=..., DELETE /ACCOUNT/CONTAINER/NAME
    def _azure(self, method: str, path: str, query: dict[str, list[str]]
               ) -> tuple[int, dict[str, str], bytes]:
        headers = {"x-ms-version": "2025-11-05", "x-ms-request-id": str(uuid.uuid4())}
        if method == "GET":
            prefix = query.get("prefix", [""])[0]
            return 200, {**headers, "Content-Type": "application/xml"}, \
                self._azure_listing(prefix)
        name = path.split("/", 3)[3]
        ident = query.get("versionid", query.get("snapshot", [""]))[0]
        if ident in self.refuse and ("deletetype" in query or self.refuse[ident] != 409):
            code = "BlobImmutableDueToLegalHold" if self.refuse[ident] != 409 \
                else "PermanentDeleteNotAllowed"
            return self.refuse[ident], {**headers, "x-ms-error-code": code}, b""
        found = [e for e in self.entries if e["name"] == name
                 and ident in (e.get("version"), e.get("snapshot"))]
        if not found:
            return 404, {**headers, "x-ms-error-code": "BlobNotFound"}, b""
        if "deletetype" in query:
            self.entries.remove(found[0])
        else:
            found[0]["deleted"] = True
        return 202, headers, b""

    def _azure_listing(self, prefix: str) -> bytes:
        when = format_datetime(datetime(2026, 12, 1, tzinfo=UTC), usegmt=True)
        blobs = []
        for e in self.entries:
            if not e["name"].startswith(prefix):
                continue
            fields = [f"<Name>{escape(e['name'])}</Name>"]
            if e.get("deleted"):
                fields.append("<Deleted>true</Deleted>")
            if e.get("snapshot"):
                fields.append(f"<Snapshot>{e['snapshot']}</Snapshot>")
            if e.get("version"):
                fields.append(f"<VersionId>{e['version']}</VersionId>")
                if e.get("current"):
                    fields.append("<IsCurrentVersion>true</IsCurrentVersion>")
            fields.append(f"<Properties><Last-Modified>{when}</Last-Modified>"
                          "<Etag>0x8D0000000000001</Etag><Content-Length>1</Content-Length>"
                          "<BlobType>BlockBlob</BlobType></Properties>")
            blobs.append(f"<Blob>{''.join(fields)}</Blob>")
        return ('<?xml version="1.0" encoding="utf-8"?><EnumerationResults '
                f'ServiceEndpoint="{self.url}/devstoreaccount1/" ContainerName="fake">'
                f"<Prefix>{escape(prefix)}</Prefix><Blobs>{''.join(blobs)}</Blobs>"
                "<NextMarker /></EnumerationResults>").encode()


def _gcs_store(url: str) -> Any:
    from residency_sdk.storage.gcs import GCSStore

    return GCSStore(StorageTarget(
        provider="gcp", region="europe-west3", bucket="fake", country="DE", endpoint=url,
        kms_key="projects/p/locations/europe-west3/keyRings/r/cryptoKeys/k"),
        verify_on_open=False)  # the fake serves versions only, not bucket metadata


def _azure_store(url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    from residency_sdk.storage.azure import API_VERSION_ENV, AzureStore

    monkeypatch.setenv("RESIDENCY_AZURE_CONNECTION_STRING", azurite_credential_string())
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    monkeypatch.setenv(API_VERSION_ENV, "2025-11-05")
    return AzureStore(StorageTarget(
        provider="azure", region="germanywestcentral", bucket="fake", country="DE",
        account=AZURITE_ACCOUNT, endpoint=f"{url}/{AZURITE_ACCOUNT}",
        encryption_scope="scope"))


KEY = "tenants/t1/uploads/ct.dcm"


def test_gcs_purge_versions_deletes_each_noncurrent_generation_of_exactly_the_key() -> None:
    """GCS lists generations with ``versions=true``: the adapter deletes the noncurrent
    ones of exactly the key, each by ``generation=``, never the live generation (a
    re-upload) nor another name's; a generation under a hold is reported held."""
    entries = [{"name": KEY, "generation": 1, "live": False},
               {"name": KEY, "generation": 2, "live": False},
               {"name": KEY, "generation": 3, "live": True},  # uploaded again meanwhile
               {"name": KEY, "generation": 5, "live": False},  # under a temporary hold
               {"name": KEY + ".report", "generation": 4, "live": False}]
    with VersionServer(entries, refuse={"5": 403}) as server:
        store = _gcs_store(server.url)
        try:
            residue = store.purge_versions(KEY)
        finally:
            store.close()
    (listing,) = [q for method, path, q in server.requests
                  if method == "GET" and path.endswith("/o")]
    assert _versions_asked(listing) and listing["prefix"] == [KEY]
    assert [(path.rsplit("/o/", 1)[1], q["generation"]) for path, q in server.deletes()] == [
        (KEY, ["1"]), (KEY, ["2"]), (KEY, ["5"])]
    assert residue.versions_deleted == 2
    assert list(residue.held) == [KEY]
    assert "GCS refused deleting generation 5" in residue.held[KEY]
    assert "Temporary hold" in residue.held[KEY]


def test_gcs_erasure_purge_and_verification_cover_noncurrent_generations() -> None:
    """For erasure, ``purge_residue`` deletes every noncurrent generation under the
    tenant prefix except names kept (held), and ``residue_left`` (the verification's
    listing) names what remains as ``name#generation``."""
    prefix = "tenants/t1/"
    entries = [{"name": prefix + "a", "generation": 1, "live": False},
               {"name": prefix + "b", "generation": 2, "live": False},
               {"name": prefix + "held", "generation": 3, "live": False},
               {"name": prefix + "live", "generation": 4, "live": True}]
    with VersionServer(entries) as server:
        store = _gcs_store(server.url)
        try:
            before = store.residue_left(prefix)
            residue = store.purge_residue(prefix, keep=frozenset({prefix + "held"}))
            after = store.residue_left(prefix)
            kept = store.residue_left(prefix, keep=frozenset({prefix + "held"}))
        finally:
            store.close()
    assert before == [f"{prefix}a#1", f"{prefix}b#2", f"{prefix}held#3"]
    assert residue == Residue(versions_deleted=2)
    assert after == [f"{prefix}held#3"] and kept == []
    assert sorted(q["generation"][0] for _p, q in server.deletes()) == ["1", "2"]


def test_azure_purge_versions_deletes_versions_and_snapshots_then_permanently(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Azure lists previous versions, snapshots and soft-deleted ones with
    ``include=versions,snapshots,deleted``: the adapter deletes each previous version
    (``versionid=``) and snapshot (``snapshot=``) of exactly the key, then deletes
    permanently (``deletetype=permanent``) what soft delete kept; never the current
    version nor another name's. A permanent delete the account refuses, and a version
    under a legal hold, are reported held."""
    entries: list[dict[str, Any]] = [
        {"name": KEY, "version": "v1"},
        {"name": KEY, "version": "v2", "current": True},  # uploaded again
        {"name": KEY, "snapshot": "s1"},
        {"name": KEY, "version": "v0", "deleted": True},  # soft-deleted earlier
        {"name": KEY, "version": "v9", "deleted": True},  # cannot be purged
        {"name": KEY, "version": "vh"},  # legal hold on this version
        {"name": KEY + ".report", "version": "vx"}]
    with VersionServer(entries, refuse={"v9": 409, "vh": 403}) as server:
        store = _azure_store(server.url, monkeypatch)
        try:
            residue = store.purge_versions(KEY)
            left = store.residue_left("tenants/t1/")
        finally:
            store.close()
    listings = [q for method, _p, q in server.requests if method == "GET"]
    assert listings and all(q["prefix"] == [KEY] for q in listings[:2])
    assert set(listings[0]["include"][0].split(",")) >= {"versions", "snapshots", "deleted"}
    sent = [(path.rsplit("/", 1)[1],
             q.get("versionid", q.get("snapshot", [""]))[0], "deletetype" in q)
            for path, q in server.deletes()]
    assert [s for s in sent if not s[2]] == [
        ("ct.dcm", "v1", False), ("ct.dcm", "s1", False), ("ct.dcm", "vh", False)]
    assert sorted(s[1] for s in sent if s[2]) == ["s1", "v0", "v1", "v9"]
    assert not [s for s in sent if s[1] in ("v2", "vx")]
    assert residue.versions_deleted == 3  # v1, s1 and v0 are gone for good
    assert "Azure refused deleting version vh" in residue.held[KEY]
    assert "soft-deleted version v9 is kept restorable" in residue.held[KEY]
    assert sorted(left) == sorted([f"{KEY}?versionid=v9 (soft-deleted)",
                                   f"{KEY}?versionid=vh", f"{KEY}.report?versionid=vx"])


def test_azure_erasure_purge_skips_kept_names_and_reports_a_soft_deleted_blob(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``purge_residue`` under the tenant prefix leaves names in ``keep`` alone and
    reports a soft-deleted base blob (an account with soft delete and no versioning:
    Azure cannot delete it permanently) held, so the erasure is not called complete."""
    prefix = "tenants/t1/"
    entries: list[dict[str, Any]] = [{"name": prefix + "a", "version": "va"},
               {"name": prefix + "held", "version": "vh"},
               {"name": prefix + "gone", "deleted": True}]
    with VersionServer(entries) as server:
        store = _azure_store(server.url, monkeypatch)
        try:
            residue = store.purge_residue(prefix, keep=frozenset({prefix + "held"}))
            left = store.residue_left(prefix, keep=frozenset({prefix + "held"}))
        finally:
            store.close()
    assert residue.versions_deleted == 1
    assert list(residue.held) == [prefix + "gone"]
    assert "soft-deleted blob" in residue.held[prefix + "gone"]
    assert left == [f"{prefix}gone (soft-deleted)"]
    assert not [p for p, _q in server.deletes() if p.endswith("/held")]
