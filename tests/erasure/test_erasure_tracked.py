"""Tracked erasure on every adapter: nothing of the tenant remains, other tenants are
untouched, and the receipt is verified against the audit trail."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import residency_sdk as rs
from residency_sdk.erasure import audit_log_events, verify_receipt
from residency_sdk.marks import LEGAL_HOLD_META
from residency_sdk.storage.keys import tenant_prefix


def _residency(harness: Any, tmp_path: Path) -> rs.Residency:
    map_path = harness.write_map(tmp_path)
    local_root = harness.local_root if harness.provider == "local" else None
    return rs.Residency.load(map_path, audit=str(tmp_path / "audit.db"), local_root=local_root)


def _tenant(country: str = "DE", agreements: frozenset[str] = frozenset()) -> rs.Tenant:
    return rs.Tenant(id=f"clinic-{uuid.uuid4().hex[:10]}", country=country,
                     agreements=agreements)


def _left_everywhere(res: rs.Residency, tenant: rs.Tenant, provider: str) -> list[str]:
    """Every stored key of ``tenant`` on every backend (primary and failover) of its
    location, listed straight from the adapters."""
    location = res.resolve(tenant).location
    left = []
    for _role, target in res.location_targets(location, [provider]):
        store = res.store(target, location)
        left += [i.key for i in store.list(tenant_prefix(tenant))]
    return left


def _fill(res: rs.Residency, tenant: rs.Tenant, n: int = 3) -> dict[str, bytes]:
    store = res.storage_for(tenant)
    objects = {f"studies/{i}/image.dcm": f"{tenant.id}-{i}".encode() for i in range(n)}
    objects["reports/summary.pdf"] = b"report"
    for key, data in objects.items():
        store.put(key, data, data_class="phi")
    return objects


def test_erasure_leaves_nothing_of_the_tenant_and_spares_others(provider_harness: Any,
                                                                tmp_path: Path) -> None:
    res = _residency(provider_harness, tmp_path)
    provider = provider_harness.provider
    # US has an in-country failover backend for every provider: erasure must cover both.
    # HIPAA by holder (LEGAL_FACTS 12): a US clinic's PHI is held under a BAA.
    gone, kept = _tenant("US", frozenset({"baa"})), _tenant("US", frozenset({"baa"}))
    _fill(res, gone)
    others = _fill(res, kept)
    # A copy on the failover backend (as after a failover write) must be erased too.
    location = res.resolve(gone).location
    failover = [t for role, t in res.location_targets(location, [provider])
                if role == "failover"]
    assert bool(failover) == (provider != "local")  # the local backend has no failover
    for target in failover:
        res.store(target, location).put(
            tenant_prefix(gone) + "studies/failover-copy.dcm", b"copy")

    tracker = res.erasure_tracker(tmp_path / "state", actor="dpo@example.com")
    request = tracker.request(gone, reason="contract terminated", providers=[provider])
    assert [r["id"] for r in tracker.status()] == [request.id]
    done = tracker.run(request.id)

    assert done.status == "completed", done.model_dump()
    assert _left_everywhere(res, gone, provider) == []
    assert sum(b.deleted for b in done.backends.values()) == 4 + len(failover)
    assert {b.role for b in done.backends.values()} == (
        {"primary"} if provider == "local" else {"primary", "failover"})
    assert all(b.status == "verified" and b.remaining == 0 for b in done.backends.values())
    store = res.storage_for(kept)
    assert {k: store.get(k) for k in others} == others
    assert tracker.status() == []  # nothing open any more

    events = list(audit_log_events(tmp_path / "audit.db"))
    receipt_event = verify_receipt(tracker.get(request.id), events)
    assert receipt_event.tenant_id == gone.id
    assert receipt_event.checksum == f"sha256:{done.receipt_sha256}"
    assert receipt_event.actor == "dpo@example.com"
    per_backend = [e for e in events if e.operation == "erase"
                   and e.purpose == f"erasure:{request.id}"]
    # Written ahead: each backend's intent (durable before it was touched), then its result.
    intents = [e for e in per_backend if e.outcome == "intent"]
    results = [e for e in per_backend if e.outcome != "intent"]
    assert len(intents) == len(results) == len(done.backends)
    assert [e.intent_id for e in results] == [e.event_id for e in intents]


def test_interrupted_erasure_is_finished_by_a_rerun(provider_harness: Any,
                                                    tmp_path: Path) -> None:
    res = _residency(provider_harness, tmp_path)
    tenant = _tenant()
    _fill(res, tenant, n=5)
    seen: list[str] = []

    def crash(_backend: str, key: str) -> None:
        seen.append(key)
        if len(seen) == 2:
            raise KeyboardInterrupt

    request = res.erasure_tracker(tmp_path / "state").request(
        tenant, providers=[provider_harness.provider])
    with pytest.raises(KeyboardInterrupt):
        res.erasure_tracker(tmp_path / "state", progress=crash, workers=1).run(request.id)
    tracker = res.erasure_tracker(tmp_path / "state")
    halfway = tracker.get(request.id)
    assert halfway.status == "in_progress" and halfway.is_open
    assert sum(b.deleted for b in halfway.backends.values()) == 2
    assert len(_left_everywhere(res, tenant, provider_harness.provider)) == 4

    done = tracker.run(request.id)
    assert done.status == "completed" and done.attempts == 2
    assert sum(b.deleted for b in done.backends.values()) == 6
    assert _left_everywhere(res, tenant, provider_harness.provider) == []
    verify_receipt(done, audit_log_events(tmp_path / "audit.db"))


def test_deadline_is_thirty_days_after_termination_and_overdue_shows(tmp_path: Path) -> None:
    res = rs.Residency.load(local_root=tmp_path / "data")
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    tracker = res.erasure_tracker(tmp_path / "state", clock=lambda: now)
    late = tracker.request(_tenant(), terminated_at=now - timedelta(days=40))
    fresh = tracker.request(_tenant(), terminated_at=now - timedelta(days=10))
    assert late.deadline == now - timedelta(days=10)
    assert fresh.deadline == now + timedelta(days=20)
    rows = {r["id"]: r for r in tracker.status()}
    assert rows[late.id]["overdue"] is True and rows[late.id]["days_left"] == -10.0
    assert rows[fresh.id]["overdue"] is False and rows[fresh.id]["days_left"] == 20.0
    assert [r.id for r in tracker.requests(open_only=True)] == [late.id, fresh.id]
    # The boundary: 29 days after termination still in time, 31 days overdue, and at
    # exactly 30 days the deadline is now (due, not yet past).
    edge = {days: tracker.request(_tenant(), terminated_at=now - timedelta(days=days))
            for days in (29, 30, 31)}
    for days, request in edge.items():
        assert request.deadline == now - timedelta(days=days) + timedelta(days=30)
    rows = {r["id"]: r for r in tracker.status()}
    assert [(rows[edge[d].id]["overdue"], rows[edge[d].id]["days_left"]) for d in (29, 30, 31)] \
        == [(False, 1.0), (False, 0.0), (True, -1.0)]


def test_legal_hold_blocks_erasure_and_keeps_the_request_open(tmp_path: Path) -> None:
    res = rs.Residency.load(local_root=tmp_path / "data", audit=str(tmp_path / "audit.db"))
    tenant = _tenant()
    store = res.storage_for(tenant)
    store.put("a.dcm", b"a", data_class="phi")
    store.put("litigation.dcm", b"b", data_class="phi", metadata={LEGAL_HOLD_META: "true"})
    tracker = res.erasure_tracker(tmp_path / "state")
    request = tracker.request(tenant)
    result = tracker.run(request.id)
    assert result.status == "blocked" and result.is_open
    assert store.exists("litigation.dcm") and not store.exists("a.dcm")
    [backend] = result.backends.values()
    assert backend.held and "litigation.dcm" in backend.held[0]
    assert [r["id"] for r in tracker.status()] == [request.id]
    with pytest.raises(rs.ResidencyError, match="no receipt yet"):
        verify_receipt(result, audit_log_events(tmp_path / "audit.db"))


def test_tampered_receipt_or_missing_audit_event_is_detected(tmp_path: Path) -> None:
    res = rs.Residency.load(local_root=tmp_path / "data", audit=str(tmp_path / "audit.db"))
    tenant = _tenant()
    _fill(res, tenant, n=1)
    tracker = res.erasure_tracker(tmp_path / "state")
    done = tracker.run(tracker.request(tenant).id)
    events = list(audit_log_events(tmp_path / "audit.db"))
    verify_receipt(done, events)

    forged = done.model_copy(deep=True)
    assert forged.receipt is not None
    forged.receipt["backends"][0]["deleted"] = 99
    with pytest.raises(rs.ResidencyError, match="altered"):
        verify_receipt(forged, events)
    with pytest.raises(rs.ResidencyError, match="not in the audit trail"):
        verify_receipt(done, [e for e in events if e.event_id != done.receipt_event_id])


def test_bad_ids_and_corrupt_state_give_clear_errors(tmp_path: Path) -> None:
    res = rs.Residency.load(local_root=tmp_path / "data")
    tracker = res.erasure_tracker(tmp_path / "state")
    with pytest.raises(rs.ResidencyError, match="invalid erasure request id"):
        tracker.get("../../etc/passwd")
    with pytest.raises(rs.ResidencyError, match="no erasure request"):
        tracker.get("er-20261122-00000000")
    with pytest.raises(rs.ResidencyError, match="deadline_days"):
        tracker.request(_tenant(), deadline_days=0)
    request = tracker.request(_tenant())
    path = tmp_path / "state" / "erasure" / f"{request.id}.json"
    doc = json.loads(path.read_text())
    doc["status"] = "done-ish"
    path.write_text(json.dumps(doc))
    with pytest.raises(rs.ResidencyError, match="corrupt"):
        tracker.get(request.id)


@pytest.mark.parametrize("provider_harness", ["aws"], indirect=True)
def test_erasure_purges_old_versions_on_a_versioned_s3_bucket(provider_harness: Any,
                                                              tmp_path: Path) -> None:
    bucket = f"residency-versioned-{uuid.uuid4().hex[:8]}"
    provider_harness.make_bucket(bucket, "eu-central-1",
                                 kms_key=provider_harness.kms_keys["DE"])
    s3 = provider_harness.aws_client("s3", "eu-central-1")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    map_path = provider_harness.write_map(tmp_path, extra={"DE": {"bucket": bucket}})
    res = rs.Residency.load(map_path, audit=str(tmp_path / "audit.db"))
    tenant = _tenant()
    store = res.storage_for(tenant)
    store.put("a.dcm", b"v1", data_class="phi")
    store.put("a.dcm", b"v2", data_class="phi")  # two versions of one key
    tracker = res.erasure_tracker(tmp_path / "state")
    done = tracker.run(tracker.request(tenant, providers=["aws"]).id)
    assert done.status == "completed", done.model_dump()
    versions = s3.list_object_versions(Bucket=bucket, Prefix=tenant_prefix(tenant))
    assert not versions.get("Versions") and not versions.get("DeleteMarkers")
    [backend] = done.backends.values()
    assert backend.versions_deleted >= 2


def test_erase_tracked_is_the_one_call_form(tmp_path: Path) -> None:

    res = rs.Residency.load(local_root=tmp_path / "data", audit=str(tmp_path / "audit.db"))
    tenant = _tenant("GB")
    _fill(res, tenant, n=2)
    done = res.erasure_tracker(tmp_path / "state", actor="dpo").erase_tracked(
        tenant, reason="art. 17")
    assert done.status == "completed" and done.reason == "art. 17"
    assert _left_everywhere(res, tenant, "local") == []
    assert res.erasure_tracker(tmp_path / "state").get(done.id).receipt == done.receipt
    verify_receipt(done, audit_log_events(tmp_path / "audit.db"))
