"""The sweep-versus-re-upload race: a retention sweep heads an expired object, and the
clinic uploads the same key again before the sweep's delete. The fresh study must
survive, the item be reported ``changed``, and no ``retention_delete`` "ok" event may
name the fresh object's checksum.

The clinic's re-upload is a real write through the tenant store, made from inside the
sweep right after its HEAD by a wrapping store handed to ``Residency.load(storage=...)``
(the public hook for wrapping stores). Local and memory compare under their lock; moto
and Azurite enforce ``If-Match``. The gcp-storage-emulator ignores ``ifGenerationMatch``
(TEST_INFRA.md), so on gcp the test asserts the DELETE the adapter sent was conditional
on the examined generation, not the fresh one.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, urlsplit

import pytest
from typer.testing import CliRunner

import residency_sdk as rs
from residency_sdk.erasure import audit_log_events
from residency_sdk.marks import CATEGORY_META
from residency_sdk.model import StorageTarget
from residency_sdk.storage.base import (
    BucketFacts,
    KeyDestruction,
    ObjectInfo,
    ObjectStore,
    ProgressCallback,
    Residue,
)
from residency_sdk.storage.factory import open_store
from residency_sdk.storage.memory import MemoryStore
from residency_sdk.sweep import examine

UPLOAD = {CATEGORY_META: "imaging_upload"}  # 24 hours in the default map
OLD = b"old study, expired"
FRESH = b"fresh study, uploaded again by the clinic"


class Race:
    """Re-uploads ``key`` through ``reupload`` right after the first HEAD of it once
    ``armed`` (the clinic's upload landing between the sweep's HEAD and its DELETE)."""

    def __init__(self) -> None:
        self.key: str | None = None
        self.armed = False
        self.reupload: Any = None
        self.examined: ObjectInfo | None = None
        self.fresh: ObjectInfo | None = None
        self._lock = threading.Lock()

    def after_head(self, inner: ObjectStore, info: ObjectInfo) -> None:
        with self._lock:
            if not self.armed or info.key != self.key or self.examined is not None:
                return
            self.examined = info
        self.reupload()
        self.fresh = inner.head(info.key)


class RacingStore(ObjectStore):
    """Every call goes to the real adapter; a HEAD of the raced key triggers the race."""

    def __init__(self, inner: ObjectStore, race: Race) -> None:
        self.inner = inner
        self.target: StorageTarget = inner.target
        self.race = race

    def put(self, key: str, data: bytes | BinaryIO, *, metadata: dict[str, str] | None = None,
            progress: ProgressCallback | None = None) -> ObjectInfo:
        return self.inner.put(key, data, metadata=metadata, progress=progress)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def open(self, key: str) -> BinaryIO:
        return self.inner.open(key)

    def head(self, key: str) -> ObjectInfo:
        info = self.inner.head(key)
        self.race.after_head(self.inner, info)
        return info

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str, *, if_match: ObjectInfo | None = None) -> bool:
        return self.inner.delete(key, if_match=if_match)

    def hold_reason(self, info: ObjectInfo, now: datetime) -> str | None:
        return self.inner.hold_reason(info, now)

    def purge_residue(self, prefix: str, *, keep: frozenset[str] = frozenset()) -> Residue:
        return self.inner.purge_residue(prefix, keep=keep)

    def residue_left(self, prefix: str, *,
                     keep: frozenset[str] = frozenset()) -> Sequence[str]:
        return self.inner.residue_left(prefix, keep=keep)

    def tenant_key_id(self, tenant_id: str) -> str | None:
        return self.inner.tenant_key_id(tenant_id)

    def destroy_tenant_key(self, tenant_id: str) -> KeyDestruction:
        return self.inner.destroy_tenant_key(tenant_id)

    def describe_bucket(self) -> BucketFacts:
        return self.inner.describe_bucket()

    def close(self) -> None:
        self.inner.close()


def _racing_residency(harness: Any, tmp_path: Path, race: Race) -> rs.Residency:
    local_root = harness.local_root if harness.provider == "local" else None

    def opener(target: StorageTarget, location: str) -> ObjectStore:
        return RacingStore(open_store(target, local_root=local_root, location=location), race)

    return rs.Residency.load(harness.write_map(tmp_path), audit=str(tmp_path / "audit.db"),
                             local_root=local_root, storage=opener)


def _later(hours: float) -> Any:
    start = datetime.now(UTC)
    return lambda: start + timedelta(hours=hours)


def _deletion_events(tmp_path: Path, key: str) -> list[Any]:
    return [e for e in audit_log_events(tmp_path / "audit.db")
            if e.operation == "retention_delete" and e.object_key == key]


def test_sweep_never_deletes_a_study_reuploaded_after_its_head(provider_harness: Any,
                                                               tmp_path: Path) -> None:
    race = Race()
    res = _racing_residency(provider_harness, tmp_path, race)
    tenant = rs.Tenant(id=f"clinic-{uuid.uuid4().hex[:10]}", country="DE")
    store = res.storage_for(tenant)
    store.put("uploads/ct.dcm", OLD, data_class="phi", metadata=UPLOAD)
    race.key = f"tenants/{tenant.id}/uploads/ct.dcm"
    race.reupload = lambda: store.put("uploads/ct.dcm", FRESH, data_class="phi",
                                      metadata=UPLOAD)
    provider = provider_harness.provider
    backend = res.stores.get(store.target, store.location)
    assert isinstance(backend, RacingStore)
    deletes: list[str] = []
    if provider == "gcp":
        backend.inner.client._http.hooks["response"].append(  # type: ignore[attr-defined]
            lambda response, *a, **kw: deletes.append(response.request.url)
            if response.request.method == "DELETE" else None)

    race.armed = True
    report = res.retention_sweep("DE", providers=[provider], clock=_later(25)).run()
    race.armed = False
    assert race.examined is not None and race.fresh is not None, "the race did not run"
    assert race.examined.checksum != race.fresh.checksum
    res.audit.flush()
    events = _deletion_events(tmp_path, race.key)

    if provider == "gcp":
        # The emulator does not enforce the condition: what a real GCS refuses is the
        # request, conditional on the examined generation (not the fresh one).
        (url,) = [u for u in deletes if race.key.replace("/", "%2F") in u or race.key in u]
        generation = parse_qs(urlsplit(url).query).get("ifGenerationMatch")
        assert generation == [race.examined.version] != [race.fresh.version]
        return

    assert report.ok, report.to_dict()
    (item,) = [i for i in report.items if i.key == race.key]
    assert item.action == "changed"
    assert "changed since it was examined" in (item.detail or "")
    (state,) = [b for b in report.backends if b.expired]  # the primary (not a failover)
    assert (state.role, state.changed, state.deleted, state.expired) == ("primary", 1, 0, 1)
    assert report.to_dict()["totals"]["changed"] == 1
    # The fresh study survived, byte for byte.
    assert store.get("uploads/ct.dcm") == FRESH
    # The trail: the intent names what was examined; its outcome says nothing was
    # deleted because the object changed; nothing "ok", nothing naming the fresh study.
    assert [(e.outcome, e.checksum) for e in events] == [
        ("intent", race.examined.checksum), ("error", race.examined.checksum)]
    assert events[1].intent_id == events[0].event_id
    assert (events[1].error or "").startswith("ObjectChanged:")
    assert not [e for e in events if e.checksum == race.fresh.checksum]

    # The next sweep examines the fresh study on its own merits and records what it
    # really deleted: the fresh object's checksum and size.
    again = res.retention_sweep("DE", providers=[provider], clock=_later(25)).run()
    assert {i.key: i.action for i in again.items if i.key == race.key} == {
        race.key: "deleted"}
    res.audit.flush()
    ok = [e for e in _deletion_events(tmp_path, race.key) if e.outcome == "ok"]
    assert [(e.checksum, e.size) for e in ok] == [(race.fresh.checksum, len(FRESH))]


@pytest.mark.parametrize("provider_harness", ["aws"], indirect=True)
def test_versioned_s3_bucket_keeps_the_reupload_current(provider_harness: Any,
                                                        tmp_path: Path) -> None:
    """On a versioned bucket the condition is on the current object (not a VersionId:
    deleting the examined version by id would make an older version current)."""
    bucket = f"residency-versioned-{uuid.uuid4().hex[:8]}"
    s3 = provider_harness.aws_client("s3", "eu-central-1")
    s3.create_bucket(Bucket=bucket,
                     CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {
            "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": provider_harness.kms_keys["DE"]}}]})
    race = Race()
    map_path = provider_harness.write_map(tmp_path, extra={"DE": {"bucket": bucket}})

    def opener(target: StorageTarget, location: str) -> ObjectStore:
        return RacingStore(open_store(target, location=location), race)

    res = rs.Residency.load(map_path, audit=str(tmp_path / "audit.db"), storage=opener)
    tenant = rs.Tenant(id=f"clinic-{uuid.uuid4().hex[:10]}", country="DE")
    store = res.storage_for(tenant)
    store.put("uploads/ct.dcm", OLD, data_class="phi", metadata=UPLOAD)
    race.key = f"tenants/{tenant.id}/uploads/ct.dcm"
    race.reupload = lambda: store.put("uploads/ct.dcm", FRESH, data_class="phi",
                                      metadata=UPLOAD)
    race.armed = True
    report = res.retention_sweep("DE", providers=["aws"], clock=_later(25)).run()
    assert race.examined is not None and race.fresh is not None
    assert race.examined.version and race.fresh.version  # S3 VersionIds, reported by head
    assert race.examined.version != race.fresh.version
    assert {i.key: i.action for i in report.items} == {race.key: "changed"}
    head = s3.head_object(Bucket=bucket, Key=race.key)
    assert head["VersionId"] == race.fresh.version
    versions = s3.list_object_versions(Bucket=bucket, Prefix=race.key)
    assert not versions.get("DeleteMarkers")  # nothing hid the fresh study


def test_examine_reports_changed_and_its_audit_hook_hears_the_error() -> None:
    """The engine step itself: head, judge, (race), conditional delete -> ``changed``,
    carrying the ObjectChanged so a caller that only looks at ``error`` fails closed."""
    from residency_sdk.regionmap import load_region_map

    loc = load_region_map(None).locations["DE"]
    inner = MemoryStore(loc.backends[loc.default_provider])
    race = Race()
    store = RacingStore(inner, race)
    inner.put("k", OLD)
    race.key, race.armed = "k", True
    race.reupload = lambda: inner.put("k", FRESH)
    outcomes: list[Any] = []

    def audit(info: ObjectInfo, verdict: Any) -> Any:
        outcomes.append(("intent", info.etag))
        return outcomes.append

    result = examine(store, "k", datetime.now(UTC), audit=audit)
    assert result.action == "changed"
    assert isinstance(result.error, rs.ObjectChanged)
    assert result.info is not None and race.examined is not None
    assert result.info.etag == race.examined.etag
    assert outcomes[0] == ("intent", race.examined.etag)
    assert isinstance(outcomes[1], rs.ObjectChanged)
    assert inner.get("k") == FRESH


def test_cli_reports_a_changed_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``residency retention sweep`` shows the changed object in its table, its notes and
    its JSON, and exits 0 (nothing went wrong: the fresh study was kept)."""
    from residency_sdk.cli.app import app
    from residency_sdk.storage.local import LocalStore

    root = tmp_path / "data"
    res = rs.Residency.load(local_root=root)
    store = res.storage_for(rs.Tenant(id="clinic-cli", country="DE"))
    store.put("uploads/old.dcm", OLD, data_class="phi", metadata=UPLOAD)
    # The CLI runs on the real clock: backdate the creation time in the sidecar.
    (meta,) = [m for m in root.rglob("@meta") if "uploads" in m.parts]
    doc = json.loads(meta.read_text())
    created = datetime.fromisoformat(doc["metadata"]["residency_created_at"])
    doc["metadata"]["residency_created_at"] = (created - timedelta(hours=25)).isoformat()
    meta.write_text(json.dumps(doc))
    raced_key = "tenants/clinic-cli/uploads/old.dcm"
    real_head = LocalStore.head
    fired: list[str] = []

    def head(self: LocalStore, key: str) -> ObjectInfo:
        info = real_head(self, key)
        if key == raced_key and not fired:
            fired.append(key)
            self.put(key, FRESH, metadata=dict(info.metadata))
        return info

    monkeypatch.setattr(LocalStore, "head", head)
    runner = CliRunner()
    common = ["retention", "sweep", "--location", "DE", "--local-root", str(root),
              "--state-dir", str(tmp_path / "state")]
    shown = runner.invoke(app, common)
    assert shown.exit_code == 0, shown.output
    assert fired
    assert f"changed: {raced_key}" in shown.output
    assert store.get("uploads/old.dcm") == FRESH

    fired.clear()
    as_json = runner.invoke(app, [*common, "--json"])
    assert as_json.exit_code == 0, as_json.output
    doc = json.loads(as_json.output)
    assert doc["sweeps"][0]["totals"]["changed"] == 1
    assert [i["action"] for i in doc["sweeps"][0]["items"]] == ["changed"]
