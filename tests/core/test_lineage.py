"""Lineage: every place the SDK writes a tenant's data is recorded, ahead of the data,
in the tenant's own location, and read back from every location."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

import residency_sdk as rs
from residency_sdk.audit import verify_log
from residency_sdk.erasure import audit_log_events
from residency_sdk.lineage import LINEAGE_PREFIX, LINEAGE_PURPOSE, footprint_key
from residency_sdk.model import StorageTarget
from residency_sdk.storage.base import ObjectInfo, ObjectStore
from residency_sdk.storage.local import LocalStore


def _tenant(country: str = "DE", **kw: object) -> rs.Tenant:
    return rs.Tenant(id=f"clinic-{uuid.uuid4().hex[:10]}", country=country, **kw)  # type: ignore[arg-type]


def test_a_put_records_its_footprint_once_in_the_home_location(tmp_path: Path) -> None:
    res = rs.Residency.load(local_root=tmp_path / "root", audit=str(tmp_path / "a.db"))
    tenant = _tenant()
    store = res.storage_for(tenant)
    store.put("a.dcm", b"one")
    store.put("b.dcm", b"two")
    trace = res.lineage.trace(tenant.id)
    assert trace.reached() == {("DE", "local")}
    assert trace.unreachable == {} and trace.copies == ()
    home = res.stores.record_stores(res.policy.location("DE"))[0]
    assert home.exists(footprint_key(tenant.id, "DE", "local"))
    res.close()
    # The marker write was audited ahead, like every write, with purpose "lineage".
    events = [e for e in audit_log_events(tmp_path / "a.db") if e.purpose == LINEAGE_PURPOSE]
    assert [e.outcome for e in events] == ["intent", "ok"]
    assert events[0].object_key == footprint_key(tenant.id, "DE", "local")


def test_a_transfer_records_the_copy_before_copying(tmp_path: Path) -> None:
    res = rs.Residency.load(local_root=tmp_path / "root", audit=str(tmp_path / "a.db"))
    tenant = _tenant()
    res.storage_for(tenant).put("study/1.dcm", b"img")
    res.transfer(tenant, "study/1.dcm", "GB", actor="ops")
    trace = res.lineage.trace(tenant.id)
    assert trace.reached() == {("DE", "local"), ("GB", "local")}
    [copy] = trace.copies
    assert (copy.key, copy.source_location, copy.destination_location, copy.provider) == \
        ("study/1.dcm", "DE", "GB", "local")
    # Kept in the tenant's own location (DE), not at the destination.
    gb = res.stores.record_stores(res.policy.location("GB"))[0]
    assert list(gb.list(LINEAGE_PREFIX)) == []
    res.close()
    assert verify_log(tmp_path / "a.db").ok


def test_lineage_survives_the_process_and_is_read_from_every_location(tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = rs.Residency.load(local_root=root, audit=False)
    tenant = _tenant()
    first.storage_for(tenant).put("x", b"1")
    first.transfer(tenant, "x", "FR")
    first.close()
    second = rs.Residency.load(local_root=root, audit=False)
    assert second.lineage.trace(tenant.id).reached() == {("DE", "local"), ("FR", "local")}
    assert second.lineage.forget(tenant) == 3  # two footprints, one copy record
    assert second.lineage.trace(tenant.id).reached() == set()


class _NoLineage(LocalStore):
    """A home store whose SDK-record writes fail (a full disk, a denied prefix)."""

    def put(self, key: str, data: object, **kw: object) -> ObjectInfo:  # type: ignore[override]
        if key.startswith(LINEAGE_PREFIX):
            raise rs.BackendUnavailable(f"refusing {key}")
        return super().put(key, data, **kw)  # type: ignore[arg-type]


def test_no_data_is_written_where_the_lineage_cannot_say_so(tmp_path: Path) -> None:
    root = tmp_path / "root"

    def opener(target: StorageTarget, location: str) -> ObjectStore:
        return _NoLineage(target, root, location=location)

    res = rs.Residency.load(local_root=root, storage=opener, audit=False)
    tenant = _tenant()
    with pytest.raises(rs.BackendUnavailable, match="lineage"):
        res.storage_for(tenant).put("scan.dcm", b"img")
    data = res.stores.get(res.backend("DE"), "DE")
    assert list(data.list("tenants/")) == []


def test_an_unreachable_location_is_named_in_the_trace(tmp_path: Path) -> None:
    root = tmp_path / "root"

    class _Down(LocalStore):
        def list(self, prefix: str = "") -> object:  # type: ignore[override]
            raise rs.BackendUnavailable("GB is down")

    def opener(target: StorageTarget, location: str) -> ObjectStore:
        cls = _Down if location == "GB" else LocalStore
        return cls(target, root, location=location)

    res = rs.Residency.load(local_root=root, storage=opener, audit=False)
    tenant = _tenant()
    res.storage_for(tenant).put("x", b"1")
    trace = res.lineage.trace(tenant.id)
    assert set(trace.unreachable) == {"GB"}
    assert "GB is down" in trace.unreachable["GB"]
    assert trace.reached() == {("DE", "local")}


def test_a_copy_record_alone_still_names_where_the_data_went(tmp_path: Path) -> None:
    """A footprint lost (deleted by hand, or an older process's cache skipped it) does
    not hide a copy: the copy record names its destination too."""
    res = rs.Residency.load(local_root=tmp_path / "root", audit=False)
    tenant = _tenant()
    res.storage_for(tenant).put("x", b"1")
    res.transfer(tenant, "x", "GB")
    home = res.stores.record_stores(res.policy.location("DE"))[0]
    assert home.delete(footprint_key(tenant.id, "GB", "local"))
    assert ("GB", "local") in res.lineage.trace(tenant.id).reached()


def test_a_writer_notices_within_the_interval_that_an_erasure_dropped_its_footprint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A long-running process confirmed a footprint; an erasure run by another process
    drops the tenant's lineage; the writer's next write after the trust interval records
    the footprint again, so a later erasure still plans that place."""
    from residency_sdk import lineage as lineage_module

    root = tmp_path / "root"
    writer = rs.Residency.load(local_root=root, audit=False)
    tenant = _tenant()
    store = writer.storage_for(tenant)
    store.put("a.dcm", b"1")
    admin = rs.Residency.load(local_root=root, audit=False)
    assert admin.lineage.forget(tenant) == 1  # what a completed erasure does
    clock = [0.0]
    monkeypatch.setattr(lineage_module.time, "monotonic", lambda: clock[0])
    writer.lineage._known = dict.fromkeys(writer.lineage._known, 0.0)
    store.put("b.dcm", b"2")  # within the interval: trusted, not looked up
    assert admin.lineage.trace(tenant.id).reached() == set()
    clock[0] = lineage_module.CONFIRMED_FOR + 1
    store.put("c.dcm", b"3")  # after it: looked up, missing, recorded again
    assert admin.lineage.trace(tenant.id).reached() == {("DE", "local")}
