"""`residency retention sweep` and `residency erasure request|run|status` end to end on the
embedded local backend (the CLI runs in-process through typer's runner)."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import residency_sdk as rs
from residency_sdk.cli.app import app
from residency_sdk.erasure import audit_log_events, verify_receipt
from residency_sdk.lineage import LINEAGE_PREFIX
from residency_sdk.marks import CATEGORY_META
from residency_sdk.storage.keys import tenant_key, tenant_prefix
from residency_sdk.tenants import RECORDS_PREFIX

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from emulators import azurite_connection_string

runner = CliRunner()


def _seed(root: Path) -> Any:
    res = rs.Residency.load(local_root=root)
    store = res.storage_for(rs.Tenant(id="clinic-cli", country="DE"))
    store.put("uploads/old.dcm", b"img", data_class="phi",
              metadata={CATEGORY_META: "imaging_upload"})
    return store


def _age(root: Path, hours: float) -> None:
    """Backdate the creation time in the local store's sidecars by ``hours`` (the CLI
    runs on the real clock, so the object is made old instead)."""
    for meta in root.rglob("@meta"):
        doc = json.loads(meta.read_text())
        created = datetime.fromisoformat(doc["metadata"]["residency_created_at"])
        doc["metadata"]["residency_created_at"] = (created - timedelta(hours=hours)).isoformat()
        meta.write_text(json.dumps(doc))


def test_sweep_dry_run_then_real_json(tmp_path: Path) -> None:
    root = tmp_path / "data"
    store = _seed(root)
    _age(root, 25)
    common = ["--location", "DE", "--local-root", str(root), "--state-dir",
              str(tmp_path / "state"), "--json"]
    dry = runner.invoke(app, ["retention", "sweep", "--dry-run", *common])
    assert dry.exit_code == 0, dry.output
    doc = json.loads(dry.output)
    assert doc["dry_run"] is True
    assert [i["action"] for i in doc["sweeps"][0]["items"]] == ["would_delete"]
    assert store.exists("uploads/old.dcm")

    audit = tmp_path / "audit.db"
    real = runner.invoke(app, ["retention", "sweep", *common, "--audit", str(audit)])
    assert real.exit_code == 0, real.output
    doc = json.loads(real.output)
    assert doc["ok"] is True and doc["sweeps"][0]["totals"]["deleted"] == 1
    assert not store.exists("uploads/old.dcm")
    # The CLI audits the deletion ahead: its intent, then its outcome.
    assert [e.outcome for e in audit_log_events(audit)
            if e.operation == "retention_delete"] == ["intent", "ok"]


def test_sweep_human_output_and_unknown_location(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _seed(root)
    ok = runner.invoke(app, ["retention", "sweep", "-l", "DE", "--local-root", str(root),
                             "--state-dir", str(tmp_path / "state")])
    assert ok.exit_code == 0, ok.output
    assert "retention sweep" in ok.output and "done" in ok.output
    bad = runner.invoke(app, ["retention", "sweep", "-l", "XX", "--local-root", str(root),
                              "--state-dir", str(tmp_path / "state"), "--json"])
    assert bad.exit_code == 1
    assert "unknown location 'XX'" in json.loads(bad.output)["error"]


def test_erasure_request_run_status(tmp_path: Path) -> None:
    root = tmp_path / "data"
    store = _seed(root)
    state, audit = tmp_path / "state", tmp_path / "audit.db"
    made = runner.invoke(app, ["erasure", "request", "-t", "clinic-cli", "-c", "DE",
                               "--terminated", "2026-11-01", "--deadline-days", "30",
                               "--local-root", str(root), "--state-dir", str(state), "--json"])
    assert made.exit_code == 0, made.output
    request = json.loads(made.output)["request"]
    assert request["deadline"].startswith("2026-12-01")

    status = runner.invoke(app, ["erasure", "status", "--state-dir", str(state), "--json"])
    rows = json.loads(status.output)["requests"]
    assert [r["id"] for r in rows] == [request["id"]]

    ran = runner.invoke(app, ["erasure", "run", request["id"], "--local-root", str(root),
                              "--state-dir", str(state), "--audit", str(audit), "--json"])
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.output)["request"]["status"] == "completed"
    assert not store.exists("uploads/old.dcm")
    done = rs.Residency.load(local_root=root).erasure_tracker(state).get(request["id"])
    verify_receipt(done, audit_log_events(audit))

    status = runner.invoke(app, ["erasure", "status", "--state-dir", str(state), "--json"])
    assert status.exit_code == 0 and json.loads(status.output)["requests"] == []


@pytest.mark.parametrize(("days_since_termination", "overdue"), [(29, False), (31, True)])
def test_overdue_request_makes_status_fail(tmp_path: Path, days_since_termination: int,
                                           overdue: bool) -> None:
    """The deadline is the termination time plus exactly 30 days (the default): 29 days
    after termination a request is not overdue and ``--fail-on-overdue`` exits 0, 31 days
    after it is overdue and exits 1; without the flag status always exits 0."""
    state = tmp_path / "state"
    terminated = (datetime.now(UTC) - timedelta(days=days_since_termination)).replace(
        microsecond=0)
    made = runner.invoke(app, ["erasure", "request", "-t", "clinic-late", "-c", "FR",
                               "--terminated", terminated.isoformat(), "--local-root",
                               str(tmp_path / "data"), "--state-dir", str(state), "--json"])
    assert made.exit_code == 0, made.output
    deadline = datetime.fromisoformat(json.loads(made.output)["request"]["deadline"])
    assert deadline == terminated + timedelta(days=30)
    shown = runner.invoke(app, ["erasure", "status", "--state-dir", str(state), "--json"])
    assert shown.exit_code == 0, shown.output
    [row] = json.loads(shown.output)["requests"]
    assert datetime.fromisoformat(row["deadline"]) == terminated + timedelta(days=30)
    assert row["overdue"] is overdue
    assert row["days_left"] == pytest.approx(30 - days_since_termination, abs=0.1)
    # Overdue fails the command only when asked (--fail-on-overdue, for cron/CI).
    status = runner.invoke(app, ["erasure", "status", "--state-dir", str(state)])
    assert status.exit_code == 0, status.output
    assert ("request(s) overdue" in status.output) is overdue
    status = runner.invoke(app, ["erasure", "status", "--state-dir", str(state),
                                 "--fail-on-overdue"])
    assert status.exit_code == (1 if overdue else 0), status.output
    assert ("request(s) overdue" in status.output) is overdue


def test_unreachable_backend_keeps_erasure_open(tmp_path: Path) -> None:
    # Loaded without local_root, the local backend cannot be opened: the erasure must not
    # claim success (fail closed) and must say why.
    res = rs.Residency.load()
    tracker = res.erasure_tracker(tmp_path / "state")
    request = tracker.request(rs.Tenant(id="clinic-x", country="DE"), providers=["local"])
    result = tracker.run(request.id)
    assert result.status == "in_progress" and result.is_open
    [backend] = result.backends.values()
    assert backend.status == "failed" and "local_root" in (backend.error or "")


def test_bad_termination_date_is_a_clear_error(tmp_path: Path) -> None:
    out = runner.invoke(app, ["erasure", "request", "-t", "c1", "-c", "DE", "--terminated",
                              "last tuesday", "--state-dir", str(tmp_path), "--json"])
    assert out.exit_code == 2
    assert "invalid --terminated" in json.loads(out.output)["error"]
    assert os.listdir(tmp_path) == []  # nothing recorded


# --- MS-6 on the emulators: primary and failover both emptied, by the provider's listing --


def _provider_listing(harness: Any, target: rs.StorageTarget, prefixes: list[str]) -> list[str]:
    """Everything under ``prefixes`` in ``target``'s bucket as the provider's own client
    lists it (not the adapter): every S3 version, delete marker and incomplete multipart
    upload; every GCS object generation; every Azure blob, with versions and soft-deleted
    blobs where the emulator keeps them."""
    found: list[str] = []
    for prefix in prefixes:
        if harness.provider == "aws":
            s3 = harness.aws_client("s3", target.region)
            listed = s3.list_object_versions(Bucket=target.bucket, Prefix=prefix)
            found += [f"{v['Key']} (version {v['VersionId']})" for v in
                      listed.get("Versions", []) + listed.get("DeleteMarkers", [])]
            uploads = s3.list_multipart_uploads(Bucket=target.bucket, Prefix=prefix)
            found += [f"{u['Key']} (multipart upload)" for u in uploads.get("Uploads", [])]
        elif harness.provider == "gcp":
            found += [f"{b.name} (generation {b.generation})" for b in harness.gcs_client()
                      .list_blobs(target.bucket, prefix=prefix, versions=True)]
        else:
            from azure.storage.blob import BlobServiceClient

            service = BlobServiceClient.from_connection_string(
                azurite_connection_string(harness.emulators.get("azure").port))
            try:
                container = service.get_container_client(target.bucket)
                found += [f"{b.name} (deleted={b.deleted})" for b in container.list_blobs(
                    name_starts_with=prefix, include=["versions", "deleted"])]
            finally:
                service.close()
    return sorted(found)


@pytest.mark.parametrize("provider_harness", ["aws", "gcp", "azure"], indirect=True)
def test_erasure_empties_primary_and_failover_as_the_provider_lists_them(
        provider_harness: Any, tmp_path: Path) -> None:
    """MS-6 on a location with an in-country failover backend (US, on each cloud
    emulator): ``residency erasure request`` then ``erasure run`` deletes the tenant's
    objects, lineage and records from the primary bucket AND the failover bucket, and
    the provider's own listing of both is empty afterwards; another tenant's objects in
    both buckets are untouched, and the receipt verifies against the audit trail."""
    provider = provider_harness.provider
    map_path = provider_harness.write_map(tmp_path)
    res = rs.Residency.load(map_path, audit=str(tmp_path / "setup-audit.db"))
    # HIPAA by holder (LEGAL_FACTS 12): a US clinic's PHI is held under a BAA.
    gone = rs.Tenant(id=f"clinic-gone-{provider}", country="US", agreements={"baa"})
    kept = rs.Tenant(id=f"clinic-kept-{provider}", country="US", agreements={"baa"})
    targets = dict(res.location_targets("US", [provider]))
    assert set(targets) == {"primary", "failover"}
    for tenant in (gone, kept):
        res.storage_for(tenant).put("studies/1/image.dcm", b"img", data_class="phi")
        # A copy on the failover backend, as a failover write leaves it.
        res.store(targets["failover"], "US").put(
            tenant_key(tenant, "studies/failover-copy.dcm"), b"copy")
    mine = [tenant_prefix(gone), f"{LINEAGE_PREFIX}{gone.id}/", f"{RECORDS_PREFIX}{gone.id}."]
    theirs = [tenant_prefix(kept)]
    before = {role: _provider_listing(provider_harness, t, mine) for role, t in targets.items()}
    assert all(before.values()), before  # the test is not vacuous: both buckets hold data
    kept_before = {role: _provider_listing(provider_harness, t, theirs)
                   for role, t in targets.items()}
    res.close()

    state, audit = tmp_path / "state", tmp_path / "audit.db"
    made = runner.invoke(app, ["erasure", "request", "-t", gone.id, "-c", "US", "--map",
                               str(map_path), "--provider", provider, "--state-dir",
                               str(state), "--audit", str(audit), "--json"])
    assert made.exit_code == 0, made.output
    request_id = json.loads(made.output)["request"]["id"]
    ran = runner.invoke(app, ["erasure", "run", request_id, "--state-dir", str(state),
                              "--audit", str(audit), "--json"])
    assert ran.exit_code == 0, ran.output
    done = json.loads(ran.output)["request"]
    assert done["status"] == "completed"
    assert sorted(b["role"] for b in done["backends"].values()) == ["failover", "primary"]
    assert all(b["status"] == "verified" and b["remaining"] == 0
               for b in done["backends"].values())

    for role, target in targets.items():
        assert _provider_listing(provider_harness, target, mine) == [], role
        assert _provider_listing(provider_harness, target, theirs) == kept_before[role], role
    after = rs.Residency.load(map_path, audit=False)
    verify_receipt(after.erasure_tracker(state).get(request_id), audit_log_events(audit))
    after.close()
