"""Two promises pinned from a second side: the retention sweep reaches a location's
in-country failover backend, and an erasure request's deadline is exactly 30 days.

The failover test writes a 24-hour upload *only* to the failover bucket (as a write
during a primary outage leaves it) and asks the provider itself (boto3, the Azure and
GCS clients, never the adapter) whether it is still there. The deadline tests pin the
boundary to the second, so a deadline of 29 or 31 days fails them.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from storage_harness import ProviderHarness
from typer.testing import CliRunner

import residency_sdk as rs
from residency_sdk.cli.app import app
from residency_sdk.erasure import audit_log_events
from residency_sdk.marks import CATEGORY_META
from residency_sdk.model import StorageTarget
from residency_sdk.storage.keys import tenant_prefix

UPLOAD = {CATEGORY_META: "imaging_upload"}  # 24 hours in the default map
T = datetime(2026, 3, 2, 9, 30, 15, tzinfo=UTC)
THIRTY_DAYS = timedelta(days=30)
SECOND = timedelta(seconds=1)


# --- the sweep covers the failover backend --------------------------------------------


def _provider_lists(harness: ProviderHarness, target: StorageTarget, prefix: str) -> list[str]:
    """The keys under ``prefix`` in ``target``'s bucket, as the provider's own client
    lists them."""
    if harness.provider == "aws":
        s3 = harness.aws_client("s3", target.region)
        return [o["Key"] for o in s3.list_objects_v2(
            Bucket=target.bucket, Prefix=prefix).get("Contents", [])]
    if harness.provider == "gcp":
        return [b.name for b in harness.gcs_client().list_blobs(target.bucket, prefix=prefix)]
    from azure.storage.blob import BlobServiceClient
    from emulators import azurite_connection_string

    service = BlobServiceClient.from_connection_string(
        azurite_connection_string(harness.emulators.get("azure").port))
    try:
        return [b.name for b in service.get_container_client(target.bucket)
                .list_blobs(name_starts_with=prefix)]
    finally:
        service.close()


@pytest.mark.emulator
@pytest.mark.parametrize(("provider_harness", "location"), [
    ("aws", "US"), ("azure", "DE"), ("gcp", "AU")], indirect=["provider_harness"])
def test_sweep_deletes_an_expired_upload_held_only_by_the_failover_backend(
        provider_harness: ProviderHarness, location: str, tmp_path: Path) -> None:
    provider = provider_harness.provider
    res = rs.Residency.load(provider_harness.write_map(tmp_path),
                            audit=str(tmp_path / "audit.db"))
    tenant = rs.Tenant(id=f"clinic-{uuid.uuid4().hex[:10]}",
                       country=res.policy.location(location).country)
    assert res.resolve(tenant).location == location
    targets = dict(res.location_targets(location, [provider]))
    assert set(targets) == {"primary", "failover"}
    primary, failover = targets["primary"], targets["failover"]
    prefix = tenant_prefix(tenant)
    key = prefix + "uploads/ct.dcm"
    start = datetime.now(UTC)
    res.store(failover, location).put(
        key, b"image", metadata={**UPLOAD, "residency_created_at": start.isoformat()})
    assert _provider_lists(provider_harness, failover, prefix) == [key]
    assert _provider_lists(provider_harness, primary, prefix) == []

    def sweep(hours: float) -> Any:
        return res.retention_sweep(location, providers=[provider],
                                   clock=lambda: start + timedelta(hours=hours)).run()

    early = sweep(23)
    assert early.ok, early.to_dict()
    assert _provider_lists(provider_harness, failover, prefix) == [key]  # not yet due

    late = sweep(25)
    assert late.ok, late.to_dict()
    assert [(i.backend, i.action) for i in late.items if i.key == key] == [
        (f"{provider}:{failover.bucket}@failover", "deleted")]
    assert _provider_lists(provider_harness, failover, prefix) == []
    res.audit.flush()
    [deleted] = [e for e in audit_log_events(tmp_path / "audit.db")
                 if e.operation == "retention_delete" and e.outcome == "ok"
                 and e.tenant_id == tenant.id]
    assert (deleted.bucket, deleted.region) == (failover.bucket, failover.region)
    res.close()


# --- the erasure deadline is 30 days ---------------------------------------------------


class Clock:
    """A settable clock for the tracker."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _tracker(tmp_path: Path, clock: Clock) -> Any:
    res = rs.Residency.load(local_root=tmp_path / "data", audit=False,
                            audit_off_reason="deadline arithmetic only")
    return res.erasure_tracker(tmp_path / "state", clock=clock)


def _tenant() -> rs.Tenant:
    return rs.Tenant(id=f"clinic-{uuid.uuid4().hex[:10]}", country="DE")


def test_default_erasure_deadline_is_exactly_30_days_after_the_request(
        tmp_path: Path) -> None:
    clock = Clock(T)
    request = _tracker(tmp_path, clock).request(_tenant())
    assert request.requested_at == T
    assert request.deadline == T + THIRTY_DAYS == datetime(2026, 4, 1, 9, 30, 15, tzinfo=UTC)
    assert not request.overdue(T + THIRTY_DAYS - SECOND)
    assert not request.overdue(T + THIRTY_DAYS)  # due at the deadline, overdue after it
    assert request.overdue(T + THIRTY_DAYS + SECOND)
    assert request.time_left(T + THIRTY_DAYS) == timedelta(0)


def test_erasure_status_turns_overdue_one_second_after_30_days(tmp_path: Path) -> None:
    clock = Clock(T)
    tracker = _tracker(tmp_path, clock)
    request = tracker.request(_tenant())

    clock.now = T + THIRTY_DAYS - SECOND
    [row] = tracker.status()
    assert row["id"] == request.id and row["overdue"] is False and row["days_left"] == 0.0

    clock.now = T + THIRTY_DAYS + SECOND
    [row] = tracker.status()
    assert row["overdue"] is True

    clock.now = T + timedelta(days=31) - SECOND  # a 31-day deadline would not be due yet
    [row] = tracker.status()
    assert row["overdue"] is True and row["days_left"] == -1.0


def test_erasure_deadline_counts_30_days_from_the_contract_termination(
        tmp_path: Path) -> None:
    terminated = T - timedelta(days=10)
    request = _tracker(tmp_path, Clock(T)).request(_tenant(), terminated_at=terminated)
    assert request.deadline == terminated + THIRTY_DAYS
    assert not request.overdue(T + timedelta(days=20) - SECOND)
    assert request.overdue(T + timedelta(days=20) + SECOND)


def test_cli_erasure_request_deadline_is_30_days_after_termination(tmp_path: Path) -> None:
    made = CliRunner().invoke(app, [
        "erasure", "request", "-t", f"clinic-{uuid.uuid4().hex[:8]}", "-c", "DE",
        "--terminated", "2026-03-02T09:30:15+00:00", "--local-root", str(tmp_path / "data"),
        "--state-dir", str(tmp_path / "state"), "--no-audit", "--json"])
    assert made.exit_code == 0, made.output
    deadline = datetime.fromisoformat(json.loads(made.output)["request"]["deadline"])
    assert deadline == T + THIRTY_DAYS
