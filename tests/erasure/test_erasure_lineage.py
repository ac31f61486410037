"""Erasure plans from the tenant's lineage (issue 13, points 1 and 2): every location and
provider the tenant's data reached is erased, primary and failover; the receipt lists each
one; an unreachable location or a legal hold keeps the request open and says which; key
material is destroyed last, then the lineage and the tenant's records are dropped.

What is left is checked by a fresh listing straight from the service (boto3 against moto,
the files under the local root), never through the SDK that did the erasure."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, ClassVar

import pytest

import residency_sdk as rs
from residency_sdk.audit import verify_log
from residency_sdk.erasure import audit_log_events, verify_receipt
from residency_sdk.lineage import LINEAGE_PREFIX
from residency_sdk.marks import LEGAL_HOLD_META
from residency_sdk.model import StorageTarget
from residency_sdk.storage.base import KeyDestruction, ObjectStore
from residency_sdk.storage.keys import tenant_prefix
from residency_sdk.storage.local import LocalStore
from residency_sdk.tenants import RECORDS_PREFIX


def _tenant(country: str = "DE") -> rs.Tenant:
    # scc: the EU tenant may send phi to GB (adequacy) and, unless German (§ 393 SGB V,
    # LEGAL_FACTS 12), to the US (SCCs).
    return rs.Tenant(id=f"clinic-{uuid.uuid4().hex[:10]}", country=country,
                     agreements=frozenset({"scc"}))


def _left_on_the_service(harness: Any, res: rs.Residency, tenant: rs.Tenant,
                         locations: list[str]) -> list[str]:
    """Every object of ``tenant`` (data, lineage, records) in every backend of this
    provider in ``locations``, listed by the service itself."""
    if harness.provider == "local":
        root = Path(res.local_root or harness.local_root)
        return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                      if f"/tenants/{tenant.id}" in str(p)
                      or (f"/{tenant.id}" in str(p) and "_residency" in str(p)))
    left = []
    prefixes = (tenant_prefix(tenant), f"{LINEAGE_PREFIX}{tenant.id}/",
                f"{RECORDS_PREFIX}{tenant.id}.")
    for location in locations:
        for _role, target in res.location_targets(location, [harness.provider]):
            for prefix in prefixes:
                left += [f"{target.bucket}/{name}"
                         for name in _service_listing(harness, target, prefix)]
    return sorted(left)


def _service_listing(harness: Any, target: StorageTarget, prefix: str) -> list[str]:
    """Names under ``prefix`` as the provider's own client lists them (old versions and
    delete markers included where the service keeps them)."""
    if harness.provider == "aws":
        s3 = harness.aws_client("s3", target.region)
        listed = s3.list_object_versions(Bucket=target.bucket, Prefix=prefix)
        return [v["Key"] for v in listed.get("Versions", []) + listed.get("DeleteMarkers", [])]
    if harness.provider == "gcp":
        client = harness.gcs_client()
        return [b.name for b in client.list_blobs(target.bucket, prefix=prefix, versions=True)]
    from azure.storage.blob import BlobServiceClient
    from emulators import azurite_connection_string

    service = BlobServiceClient.from_connection_string(
        azurite_connection_string(harness.emulators.get("azure").port))
    try:
        container = service.get_container_client(target.bucket)
        return [b.name for b in container.list_blobs(name_starts_with=prefix)]
    finally:
        service.close()


# --- point 1: transferred copies ------------------------------------------------------


@pytest.mark.parametrize("provider_harness", ["local", "aws", "gcp", "azure"], indirect=True)
def test_copies_transferred_to_other_locations_are_erased(provider_harness: Any,
                                                          tmp_path: Path) -> None:
    provider = provider_harness.provider
    audit = tmp_path / "audit.db"
    res = provider_harness.residency(tmp_path, audit=str(audit), state_dir=tmp_path / "st")
    # An Austrian clinic: § 393 SGB V keeps German health data out of SCC transfers
    # (LEGAL_FACTS 12); Austria is routed to the DE location all the same.
    tenant, neighbour = _tenant("AT"), _tenant("GB")
    store = res.storage_for(tenant)
    store.put("study/1.dcm", b"first study", data_class="phi")
    store.put("study/2.dcm", b"second", data_class="phi")
    res.transfer(tenant, "study/1.dcm", "GB")
    res.transfer(tenant, "study/2.dcm", "US")
    res.storage_for(neighbour).put("keep.dcm", b"neighbour", data_class="phi")
    gb = res.store(res.backend("GB", provider), "GB")
    us = res.store(res.backend("US", provider), "US")
    assert gb.exists(tenant_prefix(tenant) + "study/1.dcm")
    assert us.exists(tenant_prefix(tenant) + "study/2.dcm")
    # The service's own listing sees the copies (so an empty one afterwards means gone).
    before = _left_on_the_service(provider_harness, res, tenant, ["DE", "GB", "US"])
    assert sum("study/" in name for name in before) >= 4, before  # DE 2, GB 1, US 1

    receipt = res.erase(tenant, providers=[provider], reason="art. 17")

    assert _left_on_the_service(provider_harness, res, tenant, ["DE", "GB", "US"]) == []
    assert receipt.complete, receipt.to_dict()
    assert receipt.locations == ("DE", "GB", "US")
    found = {(b.location, b.role): (b.found, b.objects) for b in receipt.backends}
    assert found[("DE", "primary")] == (2, 2)
    assert found[("GB", "primary")] == (1, 1) and found[("US", "primary")] == (1, 1)
    # Where the provider has an in-country failover, it is planned (and verified empty).
    for location in ("DE", "GB", "US"):
        roles = {role for role, _ in res.location_targets(location, [provider])}
        assert (("failover" in roles) == ((location, "failover") in found)), location
    assert res.storage_for(neighbour).get("keep.dcm") == b"neighbour"
    assert res.lineage.trace(tenant.id).reached() == set()
    assert res.tenants.records(tenant.id) == []
    request = res.erasure_tracker().get(receipt.request_id)
    assert request.receipt is not None
    assert sorted(request.receipt["locations"]) == ["DE", "GB", "US"]
    assert {(b["location"], b["deleted"]) for b in request.receipt["backends"]
            if b["role"] == "primary"} == {("DE", 2), ("GB", 1), ("US", 1)}
    res.close()
    verify_receipt(request, audit_log_events(audit))
    assert verify_log(audit).ok


# --- point 2: other providers ---------------------------------------------------------


@pytest.mark.parametrize("provider_harness", ["aws", "gcp", "azure"], indirect=True)
@pytest.mark.parametrize("providers", [None, ["local"]], ids=["default", "explicit-local"])
def test_data_written_to_another_provider_is_erased(provider_harness: Any, tmp_path: Path,
                                                     providers: list[str] | None) -> None:
    # With local_root the embedded backend is the default, but the tenant also wrote to
    # a cloud backend (the emulator): erasure must cover it, even when told
    # `providers=["local"]` (an explicit list never removes a place the lineage knows of).
    cloud = provider_harness.provider
    map_path = provider_harness.write_map(tmp_path)
    res = rs.Residency.load(map_path, local_root=tmp_path / "root",
                            audit=str(tmp_path / "audit.db"), state_dir=tmp_path / "st")
    tenant = _tenant()
    res.storage_for(tenant).put("local.dcm", b"on disk", data_class="phi")
    res.storage_for(tenant, provider=cloud).put("cloud.dcm", b"in the cloud",
                                                data_class="phi")
    target = res.backend("DE", cloud)
    assert _service_listing(provider_harness, target, tenant_prefix(tenant))

    receipt = res.erase(tenant, providers=providers)

    assert _service_listing(provider_harness, target, tenant_prefix(tenant)) == []
    assert receipt.complete, receipt.to_dict()
    primaries = {(b.location, b.provider, b.objects) for b in receipt.backends
                 if b.role == "primary"}
    assert primaries == {("DE", "local", 1), ("DE", cloud, 1)}
    assert not list((tmp_path / "root").rglob(f"tenants/{tenant.id}/*"))
    res.close()


# --- open requests: unreachable, held ---------------------------------------------------


class _Switch:
    def __init__(self) -> None:
        self.down: set[str] = set()


def _switchable(root: Path, switch: _Switch) -> Any:
    """An opener of local stores whose locations can be taken down (every call raises
    BackendUnavailable, as after exhausted retries)."""

    class Store(LocalStore):
        def _check(self) -> None:
            if self.location_id in switch.down:
                raise rs.BackendUnavailable(f"{self.location_id} is down (test outage)")

        def list(self, prefix: str = "") -> Any:  # type: ignore[override]
            self._check()
            return super().list(prefix)

        def head(self, key: str) -> Any:
            self._check()
            return super().head(key)

        def delete(self, key: str, **kw: Any) -> bool:
            self._check()
            return super().delete(key, **kw)

    def opener(target: StorageTarget, location: str) -> ObjectStore:
        store = Store(target, root, location=location)
        store.location_id = location  # type: ignore[attr-defined]
        return store

    return opener


def test_an_unreachable_destination_keeps_the_request_open_and_names_it(
        tmp_path: Path) -> None:
    root, switch = tmp_path / "root", _Switch()
    res = rs.Residency.load(local_root=root, storage=_switchable(root, switch),
                            audit=str(tmp_path / "audit.db"))
    tenant = _tenant()
    res.storage_for(tenant).put("a.dcm", b"a", data_class="phi")
    res.transfer(tenant, "a.dcm", "GB")
    switch.down.add("GB")
    with pytest.raises(rs.ErasureUnavailable, match="GB") as caught:
        res.erase(tenant)
    open_receipt = caught.value.receipt
    assert not open_receipt.complete and open_receipt.status == "in_progress"
    states = {b.location: b.status for b in open_receipt.backends}
    assert states == {"DE": "verified", "GB": "failed"}
    tracker = res.erasure_tracker()
    [row] = tracker.status()
    assert row["id"] == caught.value.request_id
    assert [(x["location"], x["status"]) for x in row["left"]] == [("GB", "failed")]
    assert row["keys"] == "pending"  # nothing destroyed while a copy may remain
    switch.down.clear()
    done = res.erase(tenant)
    assert done.complete and done.request_id == caught.value.request_id
    assert not list(root.rglob(f"tenants/{tenant.id}/*"))


def test_a_location_whose_lineage_cannot_be_read_keeps_the_request_open(
        tmp_path: Path) -> None:
    root, switch = tmp_path / "root", _Switch()
    res = rs.Residency.load(local_root=root, storage=_switchable(root, switch),
                            audit=str(tmp_path / "audit.db"))
    tenant = _tenant()
    res.storage_for(tenant).put("a.dcm", b"a", data_class="phi")
    switch.down.add("FR")  # FR might hold lineage of this tenant: it cannot be asked
    with pytest.raises(rs.ErasureUnavailable, match="FR") as caught:
        res.erase(tenant)
    assert not caught.value.receipt.complete
    request = res.erasure_tracker().get(caught.value.request_id)
    assert set(request.lineage_unreachable) == {"FR"} and request.is_open
    switch.down.clear()
    assert res.erase(tenant).complete


class _Keyed(LocalStore):
    """A local store that reports a per-tenant key and records its destruction (the
    tracker's side of the capability, whatever the adapter does with it)."""

    destroyed: ClassVar[list[tuple[str, str]]] = []

    def tenant_key_id(self, tenant_id: str) -> str | None:
        return f"key-{self.target.region}-{tenant_id}"

    def destroy_tenant_key(self, tenant_id: str) -> KeyDestruction:
        # Everything must be gone before the key is: the tenant's prefix is empty here.
        assert not list(self.list(tenant_prefix(tenant_id))), "key destroyed before data"
        _Keyed.destroyed.append((self.target.region, tenant_id))
        return KeyDestruction(tenant_id=tenant_id, status="destroyed",
                              key_id=f"key-{self.target.region}-{tenant_id}")


def test_keys_are_destroyed_last_and_a_hold_keeps_them(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _Keyed.destroyed = []
    res = rs.Residency.load(
        local_root=root, audit=str(tmp_path / "audit.db"),
        storage=lambda target, location: _Keyed(target, root, location=location))
    tenant = _tenant()
    res.storage_for(tenant).put("a.dcm", b"a", data_class="phi")
    res.transfer(tenant, "a.dcm", "GB")
    gb = res.store(res.backend("GB"), "GB")
    gb.put(tenant_prefix(tenant) + "held.dcm", b"litigation",
           metadata={LEGAL_HOLD_META: "true"})
    with pytest.raises(rs.ErasureBlocked, match="legal hold"):
        res.erase(tenant)
    assert _Keyed.destroyed == []  # a hold keeps every key: the held copy stays readable
    assert res.lineage.trace(tenant.id).reached()  # and the lineage that points to it
    gb.put(tenant_prefix(tenant) + "held.dcm", b"litigation")  # the hold is lifted
    done = res.erase(tenant)
    assert done.complete
    assert sorted(_Keyed.destroyed) == [("local-de", tenant.id), ("local-gb", tenant.id)]
    assert {(k.location, k.status, k.key_id) for k in done.keys} == {
        ("DE", "destroyed", f"key-local-de-{tenant.id}"),
        ("GB", "destroyed", f"key-local-gb-{tenant.id}")}
    request = res.erasure_tracker().get(done.request_id)
    assert request.receipt is not None
    assert {k["status"] for k in request.receipt["keys"]} == {"destroyed"}
    res.close()
    events = list(audit_log_events(tmp_path / "audit.db"))
    keys = [e for e in events if e.purpose == f"erasure_keys:{done.request_id}"]
    assert sorted((e.source_location, e.outcome) for e in keys) == [
        ("DE", "intent"), ("DE", "ok"), ("GB", "intent"), ("GB", "ok")]
    # Order: every backend verified, then keys, then lineage and records, then receipt.
    order = [e.event_id for e in events]
    last_backend = max(order.index(e.event_id) for e in events
                       if e.purpose == f"erasure:{done.request_id}")
    first_key = min(order.index(e.event_id) for e in keys)
    forgets = [order.index(e.event_id) for e in events
               if e.operation == "delete" and e.tenant_id == tenant.id
               and e.purpose in ("lineage", "tenant_record")]
    assert forgets and last_backend < first_key < min(forgets)
    assert max(forgets) < order.index(done.receipt_event_id)
    verify_receipt(request, events)


def test_a_backend_without_tenant_keys_is_named_in_the_receipt(tmp_path: Path) -> None:
    class Plain(LocalStore):
        def destroy_tenant_key(self, tenant_id: str) -> KeyDestruction:
            return ObjectStore.destroy_tenant_key(self, tenant_id)  # the default

    root = tmp_path / "root"
    res = rs.Residency.load(local_root=root, audit=False,
                            storage=lambda t, loc: Plain(t, root, location=loc))
    tenant = _tenant()
    res.storage_for(tenant).put("a.dcm", b"a")
    done = res.erase(tenant)
    assert done.complete
    [key] = done.keys
    assert key.status == "unsupported" and "no per-tenant key" in key.detail
    assert "no per-tenant key" in done.to_dict()["keys"][0]["summary"]


# --- move_tenant erases only the old location ------------------------------------------


def test_a_move_after_a_transfer_keeps_the_new_locations_data(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _Keyed.destroyed = []
    res = rs.Residency.load(
        local_root=root, audit=str(tmp_path / "audit.db"), state_dir=tmp_path / "st",
        storage=lambda target, location: _Keyed(target, root, location=location))
    tenant = _tenant()
    store = res.storage_for(tenant)
    store.put("a.dcm", b"a", data_class="phi")
    store.put("b.dcm", b"b", data_class="phi")
    res.transfer(tenant, "a.dcm", "GB")  # the GB footprint exists before the move
    receipt = res.move_tenant(tenant, "GB")
    assert (receipt.from_location, receipt.to_location, receipt.objects) == ("DE", "GB", 2)
    moved = res.storage_for(rs.Tenant(id=tenant.id, country="GB"))
    assert {o.key: moved.get(o.key) for o in moved.list()} == {"a.dcm": b"a", "b.dcm": b"b"}
    de = res.store(res.backend("DE"), "DE")
    assert list(de.list(tenant_prefix(tenant))) == []
    request = res.erasure_tracker().get(receipt.erasure_request_id or "")
    assert request.scope == "location" and request.status == "completed"
    assert {b.location for b in request.backends.values()} == {"DE"}
    # Only the old location's key is destroyed; the lineage is kept for a later erasure.
    assert _Keyed.destroyed == [("local-de", tenant.id)]
    assert ("GB", "local") in res.lineage.trace(tenant.id).reached()
    # Erasing the moved tenant later still finds everything (and the old location).
    done = res.erase(rs.Tenant(id=tenant.id, country="GB"))
    assert done.complete and set(done.locations) == {"DE", "GB"}
    assert not list(root.rglob(f"tenants/{tenant.id}/*"))
    res.close()


# --- conditional deletes: an object re-uploaded while it is erased --------------------


def test_an_object_uploaded_again_during_erasure_is_erased_too(tmp_path: Path) -> None:
    """The delete is conditional on the object examined; a re-upload in between makes it
    ``changed``, and erasure examines the key again instead of skipping it (the new
    object is the tenant's too)."""
    root = tmp_path / "root"
    raced: list[str] = []

    class Racing(LocalStore):
        def head(self, key: str) -> Any:
            info = super().head(key)
            if key.endswith("raced.dcm") and not raced:
                raced.append(key)  # the clinic uploads the key again right after the head
                super().put(key, b"fresh upload", metadata=dict(info.metadata))
            return info

    res = rs.Residency.load(local_root=root, audit=str(tmp_path / "audit.db"),
                            storage=lambda t, loc: Racing(t, root, location=loc))
    tenant = _tenant()
    store = res.storage_for(tenant)
    store.put("raced.dcm", b"old upload", data_class="phi")
    store.put("other.dcm", b"x", data_class="phi")
    receipt = res.erase(tenant)
    assert raced and receipt.complete, receipt.to_dict()
    assert not list(root.rglob(f"tenants/{tenant.id}/*"))
    [backend] = receipt.backends
    assert backend.objects == 2 and backend.bytes == len(b"fresh upload") + 1
    res.close()
    # The bytes counted are the fresh upload's: what was really deleted.
    request = rs.Residency.load(local_root=root, audit=False).erasure_tracker().get(
        receipt.request_id)
    verify_receipt(request, audit_log_events(tmp_path / "audit.db"))


def test_a_request_recorded_before_lineage_planning_still_runs(tmp_path: Path) -> None:
    """A state file written by the previous release (no options, no scope, backends named
    without their location) is run to completion, its backends named by location."""
    import json

    root = tmp_path / "root"
    res = rs.Residency.load(local_root=root, audit=False)
    tenant = _tenant()
    res.storage_for(tenant).put("a.dcm", b"a")
    tracker = res.erasure_tracker()
    request = tracker.request(tenant)
    path = tracker.dir / f"{request.id}.json"
    doc = json.loads(path.read_text())
    for field in ("options", "scope", "keys", "lineage_unreachable", "forgotten_at",
                  "lineage_deleted", "records_deleted", "cleanup_error"):
        del doc[field]
    target = res.backend("DE")
    doc["status"] = "in_progress"
    doc["backends"] = {f"local:{target.bucket}": {
        "backend": f"local:{target.bucket}", "provider": "local", "region": target.region,
        "bucket": target.bucket, "role": "primary", "status": "failed", "deleted": 0,
        "bytes": 0, "versions_deleted": 0, "held": [], "remaining": 1,
        "error": "BackendUnavailable: down", "unreachable": True, "verified_at": None}}
    path.write_text(json.dumps(doc))
    done = tracker.run(request.id)
    assert done.status == "completed" and done.options is None
    assert list(done.backends) == [f"DE/local:{target.bucket}"]
    assert done.backends[f"DE/local:{target.bucket}"].deleted == 1


def test_a_held_copy_keeps_its_real_tenant_key_readable(tmp_path: Path) -> None:
    """With the local backend's own per-tenant keys: while a copy in GB is held, no key
    is destroyed anywhere and the held copy stays readable; once the hold is lifted the
    erasure finishes and every key of the tenant is gone."""
    root = tmp_path / "root"
    res = rs.Residency.load(local_root=root, audit=str(tmp_path / "audit.db"))
    tenant = _tenant()
    res.storage_for(tenant).put("a.dcm", b"a", data_class="phi")
    res.transfer(tenant, "a.dcm", "GB")
    de, gb = (res.store(res.backend(loc), loc) for loc in ("DE", "GB"))
    held = tenant_prefix(tenant) + "held.dcm"
    gb.put(held, b"litigation", metadata={LEGAL_HOLD_META: "true"})
    keys = {loc: store.tenant_key_id(tenant.id) for loc, store in (("DE", de), ("GB", gb))}
    assert all(keys.values()), keys
    with pytest.raises(rs.ErasureBlocked):
        res.erase(tenant)
    assert {loc: s.tenant_key_id(tenant.id) for loc, s in (("DE", de), ("GB", gb))} == keys
    assert gb.get(held) == b"litigation"
    gb.put(held, b"litigation")  # hold lifted
    done = res.erase(tenant)
    assert done.complete
    assert {(k.location, k.status, k.key_id) for k in done.keys} == {
        ("DE", "destroyed", keys["DE"]), ("GB", "destroyed", keys["GB"])}
    assert de.tenant_key_id(tenant.id) is None and gb.tenant_key_id(tenant.id) is None
    res.close()
