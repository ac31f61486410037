"""Retention sweep on the local backend and on every emulator (via ``provider_harness``).

Time is controlled by the test: the sweep's clock is injected, objects are written now and
swept "25 hours later". Buckets are shared by the whole session, so each test uses its
own tenant and asserts on its own keys.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import residency_sdk as rs
from residency_sdk.erasure import audit_log_events
from residency_sdk.marks import CATEGORY_META, LEGAL_HOLD_META
from residency_sdk.retention import SweepItem

UPLOAD = {CATEGORY_META: "imaging_upload"}  # 24 hours in the default map


def _residency(harness: Any, tmp_path: Path) -> rs.Residency:
    map_path = harness.write_map(tmp_path)
    local_root = harness.local_root if harness.provider == "local" else None
    return rs.Residency.load(map_path, audit=str(tmp_path / "audit.db"), local_root=local_root)


def _tenant() -> rs.Tenant:
    return rs.Tenant(id=f"clinic-{uuid.uuid4().hex[:10]}", country="DE")


def _later(hours: float) -> Any:
    start = datetime.now(UTC)
    return lambda: start + timedelta(hours=hours)


def _sweep(res: rs.Residency, harness: Any, hours: float, **kw: Any) -> Any:
    return res.retention_sweep("DE", providers=[harness.provider], clock=_later(hours),
                          **kw).run()


def _mine(report: Any, tenant: rs.Tenant) -> dict[str, str]:
    prefix = f"tenants/{tenant.id}/"
    return {i.key.removeprefix(prefix): i.action for i in report.items
            if i.key.startswith(prefix)}


def test_sweep_deletes_expired_24h_uploads_and_keeps_the_rest(provider_harness: Any,
                                                              tmp_path: Path) -> None:
    res = _residency(provider_harness, tmp_path)
    tenant = _tenant()
    store = res.storage_for(tenant)
    store.put("uploads/ct.dcm", b"image", data_class="phi", metadata=UPLOAD)
    store.put("uploads/held.dcm", b"image", data_class="phi",
              metadata={**UPLOAD, LEGAL_HOLD_META: "true"})
    store.put("audit/2026.log", b"log", data_class="personal",
              metadata={CATEGORY_META: "audit"})
    store.put("misc/unclassified.bin", b"x", data_class="personal")
    # The facade refuses an unknown category (UnknownRetentionCategory); an object written
    # under a category the map later dropped is written here straight to the backend.
    with pytest.raises(rs.UnknownRetentionCategory):
        store.put("misc/unknown.bin", b"x", metadata={CATEGORY_META: "no_such_category"})
    res.store(store.target, store.location).put(
        f"tenants/{tenant.id}/misc/unknown.bin", b"x",
        metadata={CATEGORY_META: "no_such_category",
                  "residency_created_at": datetime.now(UTC).isoformat()})

    early = _sweep(res, provider_harness, 23)
    assert early.ok, early.to_dict()
    assert "uploads/ct.dcm" not in _mine(early, tenant)  # 23 h: kept, not listed as an action
    assert store.exists("uploads/ct.dcm")

    late = _sweep(res, provider_harness, 25)
    assert late.ok, late.to_dict()
    actions = _mine(late, tenant)
    assert actions == {"uploads/ct.dcm": "deleted", "uploads/held.dcm": "held",
                       "misc/unclassified.bin": "unclassified",
                       "misc/unknown.bin": "unknown_category"}
    assert not store.exists("uploads/ct.dcm")
    for kept in ("uploads/held.dcm", "audit/2026.log", "misc/unclassified.bin",
                 "misc/unknown.bin"):
        assert store.exists(kept), kept

    res.audit.flush()  # outcomes are queued behind the durable intents
    deletions = [e for e in audit_log_events(tmp_path / "audit.db")
                 if e.operation == "retention_delete"]
    # Written ahead: the intent (durable before the deletion), then the outcome naming it.
    assert [(e.object_key, e.outcome, e.tenant_id, e.provider) for e in deletions] == [
        (f"tenants/{tenant.id}/uploads/ct.dcm", outcome, tenant.id, provider_harness.provider)
        for outcome in ("intent", "ok")]
    assert deletions[1].intent_id == deletions[0].event_id
    deletions = deletions[1:]
    assert deletions[0].purpose == "retention:imaging_upload"
    assert deletions[0].data_class == "phi"


def test_audit_category_is_kept_six_years_then_deleted(provider_harness: Any,
                                                       tmp_path: Path) -> None:
    res = _residency(provider_harness, tmp_path)
    tenant = _tenant()
    store = res.storage_for(tenant)
    store.put("audit/trail.log", b"log", data_class="personal",
              metadata={CATEGORY_META: "audit"})
    six_years = 2192 * 24
    assert "audit/trail.log" not in _mine(_sweep(res, provider_harness, six_years - 24),
                                          tenant)
    assert store.exists("audit/trail.log")
    assert _mine(_sweep(res, provider_harness, six_years + 1), tenant) == {
        "audit/trail.log": "deleted"}
    assert not store.exists("audit/trail.log")


def test_dry_run_deletes_nothing_and_audits_nothing(provider_harness: Any,
                                                   tmp_path: Path) -> None:
    res = _residency(provider_harness, tmp_path)
    tenant = _tenant()
    store = res.storage_for(tenant)
    store.put("uploads/ct.dcm", b"image", data_class="phi", metadata=UPLOAD)
    report = _sweep(res, provider_harness, 25, dry_run=True, state_dir=tmp_path / "state")
    assert _mine(report, tenant) == {"uploads/ct.dcm": "would_delete"}
    assert store.exists("uploads/ct.dcm")
    assert not (tmp_path / "state").exists()  # a dry run writes no checkpoint
    assert not [e for e in audit_log_events(tmp_path / "audit.db")
                if e.operation == "retention_delete"]


class _Crash(Exception):
    pass


def test_interrupted_sweep_resumes_from_its_checkpoint(provider_harness: Any,
                                                       tmp_path: Path) -> None:
    res = _residency(provider_harness, tmp_path)
    tenant = _tenant()
    store = res.storage_for(tenant)
    store.put("a-keep/report.pdf", b"r", data_class="phi",
              metadata={CATEGORY_META: "audit"})
    names = [f"b-uploads/{i}.dcm" for i in range(6)]
    for name in names:
        store.put(name, b"image", data_class="phi", metadata=UPLOAD)
    prefix = f"tenants/{tenant.id}/"
    first_seen: list[SweepItem] = []

    def crash_after_two(item: SweepItem) -> None:
        first_seen.append(item)
        if sum(1 for i in first_seen if i.action == "deleted"
               and i.key.startswith(prefix)) == 2:
            raise _Crash("power cut")

    state = tmp_path / "state"
    with pytest.raises(_Crash):
        _sweep(res, provider_harness, 25, state_dir=state, progress=crash_after_two,
               checkpoint_every=1)
    checkpoints = list(state.glob("retention-*.json"))
    assert len(checkpoints) == 1
    remaining = [n for n in names if store.exists(n)]
    assert len(remaining) == 4
    assert any(i.key == prefix + "a-keep/report.pdf" for i in first_seen)

    second_seen: list[SweepItem] = []
    report = _sweep(res, provider_harness, 25, state_dir=state, progress=second_seen.append)
    assert report.resumed and report.ok
    assert not [n for n in names if store.exists(n)]
    assert store.exists("a-keep/report.pdf")
    mine_second = {i.key.removeprefix(prefix) for i in second_seen if i.key.startswith(prefix)}
    # Only what was not yet examined is looked at again: the kept report and the two
    # uploads deleted before the crash are not in the resumed run.
    assert mine_second == set(remaining)
    assert not checkpoints[0].exists()  # a finished sweep removes its checkpoint
    res.audit.flush()
    deleted_events = {e.object_key for e in audit_log_events(tmp_path / "audit.db")
                      if e.operation == "retention_delete" and e.tenant_id == tenant.id
                      and e.outcome == "ok"}
    assert deleted_events == {prefix + n for n in names}


def test_unknown_location_and_provider_are_refused(tmp_path: Path) -> None:
    res = rs.Residency.load(local_root=tmp_path)
    with pytest.raises(rs.ResidencyError, match="unknown location 'XX'"):
        res.retention_sweep("XX")
    with pytest.raises(rs.ResidencyError, match="no 'oracle' backend"):
        res.retention_sweep("DE", providers=["oracle"])


def test_corrupt_checkpoint_is_refused_with_the_fix(tmp_path: Path) -> None:
    res = rs.Residency.load(local_root=tmp_path / "data")
    state = tmp_path / "state"
    state.mkdir()
    (state / "retention-default-DE.json").write_text("{not json")
    with pytest.raises(rs.ResidencyError, match="delete it to start the sweep"):
        res.retention_sweep("DE", state_dir=state).run()


@pytest.mark.parametrize("provider_harness", ["aws"], indirect=True)
def test_s3_object_lock_and_legal_hold_are_never_swept(provider_harness: Any,
                                                       tmp_path: Path) -> None:
    bucket = f"residency-lock-{uuid.uuid4().hex[:8]}"
    s3 = provider_harness.aws_client("s3", "eu-central-1")
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True,
                     CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {
            "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": provider_harness.kms_keys["DE"]}}]})
    map_path = provider_harness.write_map(tmp_path, extra={"DE": {"bucket": bucket}})
    res = rs.Residency.load(map_path, audit=str(tmp_path / "audit.db"))
    tenant = _tenant()
    store = res.storage_for(tenant)
    for name in ("hold.dcm", "locked.dcm", "free.dcm"):
        store.put(name, b"image", data_class="phi", metadata=UPLOAD)
    prefix = f"tenants/{tenant.id}/"
    s3.put_object_legal_hold(Bucket=bucket, Key=prefix + "hold.dcm",
                             LegalHold={"Status": "ON"})
    s3.put_object_retention(Bucket=bucket, Key=prefix + "locked.dcm", Retention={
        "Mode": "COMPLIANCE", "RetainUntilDate": datetime.now(UTC) + timedelta(days=30)})

    report = _sweep(res, provider_harness, 25)
    assert report.ok, report.to_dict()
    details = {i.key.removeprefix(prefix): (i.action, i.detail) for i in report.items}
    assert details["hold.dcm"][0] == "held" and "legal hold is ON" in details["hold.dcm"][1]
    assert details["locked.dcm"][0] == "held" and "COMPLIANCE" in details["locked.dcm"][1]
    assert details["free.dcm"][0] == "deleted"
    # Held objects are untouched: no delete marker hides them.
    assert store.exists("hold.dcm") and store.exists("locked.dcm")
    assert not store.exists("free.dcm")
    versions = s3.list_object_versions(Bucket=bucket, Prefix=prefix + "hold.dcm")
    assert not versions.get("DeleteMarkers")


def test_a_hostile_map_name_cannot_steer_the_checkpoint_path(tmp_path: Path) -> None:
    overlay = tmp_path / "evil.yaml"
    overlay.write_text('extends: default\nname: "../../outside"\n')
    res = rs.Residency.load(overlay, local_root=tmp_path / "data")
    sweep = res.retention_sweep("DE", state_dir=tmp_path / "state")
    assert sweep.checkpoint_path is not None
    assert sweep.checkpoint_path.parent == tmp_path / "state"
    assert sweep.checkpoint_path.name == "retention-______outside-DE.json"
