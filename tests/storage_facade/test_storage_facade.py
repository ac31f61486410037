"""The guarded facade (Residency.storage_for / transfer / erase) on every backend.

Behaviour tests run once per provider through ``provider_harness`` (tests/conftest.py):
the local backend, and moto / gcp-storage-emulator / Azurite started by the suite.
"""

from __future__ import annotations

import io
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import residency_sdk as rs
from residency_sdk.erasure import verify_receipt
from residency_sdk.errors import (
    AuditUnavailable,
    BAARequired,
    BackendNotConfigured,
    BackendUnavailable,
    InvalidKey,
    ObjectNotFound,
    PlacementBlocked,
    ResidencyViolation,
    StorageError,
    TransferBlocked,
)
from residency_sdk.events import AuditEvent
from residency_sdk.model import StorageTarget
from residency_sdk.regions import failover_bucket, failover_target
from residency_sdk.storage.base import ObjectStore
from residency_sdk.storage.factory import open_store
from residency_sdk.storage.keys import tenant_key

# Locations where each provider's backend has an in-country failover in the default map
# (local gets one from the test overlay).
FAILOVER_LOCATION = {"local": "DE", "aws": "US", "gcp": "DE", "azure": "DE"}
COUNTRY_OF = {"DE": "DE", "US": "US"}
# HIPAA by holder (LEGAL_FACTS 12): a US clinic's PHI is held under a BAA.
AGREEMENTS_OF = {"DE": frozenset(), "US": frozenset({"baa"})}


@dataclass
class Env:
    """A Residency over one provider's backends, with its audit events collected."""

    res: rs.Residency
    provider: str
    harness: Any
    map_path: Path
    events: list[AuditEvent] = field(default_factory=list)

    def tenant(self, country: str = "DE", **kwargs: Any) -> rs.Tenant:
        # Unique ids: emulator buckets are shared by the whole session.
        return rs.Tenant(id=f"t-{uuid.uuid4().hex[:12]}", country=country, **kwargs)

    @property
    def state_dir(self) -> Path:
        return _state_dir(self.map_path)

    def raw_store(self, location: str) -> ObjectStore:
        """The adapter of this provider's backend in ``location``, bypassing the facade."""
        return self.res.store(self.res.backend(location, self.provider), location)

    def of(self, operation: str) -> list[AuditEvent]:
        """The events recording how ``operation`` on objects ended (intents and tenant
        record writes apart)."""
        return [e for e in self.events if e.operation == operation and e.outcome != "intent"
                and e.purpose not in ("tenant_record", "lineage")]

    def intents(self, operation: str) -> list[AuditEvent]:
        """The write-ahead intents of ``operation``."""
        return [e for e in self.events if e.operation == operation and e.outcome == "intent"]


def _state_dir(map_path: Path) -> Path:
    return map_path.parent / "erasure-state"


def _load(harness: Any, map_path: Path, events: list[AuditEvent],
          storage: Any = None) -> rs.Residency:
    local_root = harness.local_root if harness.provider == "local" else None
    return rs.Residency.load(map_path, audit_hooks=[events.append], local_root=local_root,
                             storage=storage, state_dir=_state_dir(map_path))


def _write_map(harness: Any, tmp_path: Path) -> Path:
    # The default map gives the local backend no failover; the overlay adds an in-country
    # one so failover and erase are exercised on every provider.
    extra = {"DE": {"failover_region": "local-de-failover"}} \
        if harness.provider == "local" else None
    return Path(harness.write_map(tmp_path, extra))


@pytest.fixture
def env(provider_harness: Any, tmp_path: Path) -> Iterator[Env]:
    map_path = _write_map(provider_harness, tmp_path)
    events: list[AuditEvent] = []
    res = _load(provider_harness, map_path, events)
    yield Env(res, provider_harness.provider, provider_harness, map_path, events)
    res.close()


# --- behaviour on every backend ------------------------------------------------------


def test_round_trip(env: Env) -> None:
    tenant = env.tenant("DE")
    store = env.res.storage_for(tenant)
    assert store.target.provider == env.provider
    payload = b"DICM" + bytes(range(256)) * 400
    info = store.put("studies/123/img.dcm", io.BytesIO(payload), data_class="phi",
                     metadata={"modality": "ct"})
    assert info.key == "studies/123/img.dcm"
    assert info.stored_key == f"tenants/{tenant.id}/studies/123/img.dcm"
    assert info.size == len(payload) and info.served_by == "primary"
    assert info.location == "DE" and info.provider == env.provider
    assert store.get("studies/123/img.dcm") == payload
    with store.open("studies/123/img.dcm") as reader:
        assert reader.read() == payload
    head = store.head("studies/123/img.dcm")
    assert head.size == len(payload) and head.data_class == "phi"
    assert head.metadata["modality"] == "ct" and head.created_at is not None
    if env.provider in ("local", "aws"):  # the GCS emulator and Azurite report none
        assert head.encryption and head.kms_key
    store.put("studies/124/a.txt", b"second", data_class="personal")
    assert [o.key for o in store.list("studies/")] == ["studies/123/img.dcm",
                                                       "studies/124/a.txt"]
    assert store.exists("studies/124/a.txt") and not store.exists("studies/125/none")
    assert store.delete("studies/124/a.txt") is True
    assert not store.exists("studies/124/a.txt")
    with pytest.raises(ObjectNotFound):
        store.get("studies/124/a.txt")


def test_tenants_are_isolated(env: Env) -> None:
    alice, bob = env.tenant("DE"), env.tenant("DE")
    a, b = env.res.storage_for(alice), env.res.storage_for(bob)
    a.put("shared/name.txt", b"alice")
    b.put("shared/name.txt", b"bob")
    assert a.get("shared/name.txt") == b"alice" and b.get("shared/name.txt") == b"bob"
    assert [o.key for o in a.list()] == ["shared/name.txt"]
    for sneaky in (f"../{bob.id}/shared/name.txt", f"/tenants/{bob.id}/shared/name.txt",
                   f"..\\{bob.id}\\shared", "shared/../../x"):
        with pytest.raises(InvalidKey):
            a.get(sneaky)
        with pytest.raises(InvalidKey):
            a.put(sneaky, b"overwrite")
    # The other tenant's objects are unreachable by key: "tenants/<bob>/..." is just a
    # key inside alice's prefix.
    with pytest.raises(ObjectNotFound):
        a.get(f"tenants/{bob.id}/shared/name.txt")
    assert b.get("shared/name.txt") == b"bob"
    assert a.delete("shared/name.txt") and b.exists("shared/name.txt")


def test_erase_deletes_every_object_in_primary_and_failover(env: Env) -> None:
    location = FAILOVER_LOCATION[env.provider]
    tenant = env.tenant(COUNTRY_OF[location], agreements=AGREEMENTS_OF[location])
    neighbour = env.tenant(COUNTRY_OF[location], agreements=AGREEMENTS_OF[location])
    store = env.res.storage_for(tenant)
    sizes = [10, 2000, 0]
    for i, size in enumerate(sizes):
        store.put(f"obj/{i}", b"x" * size)
    env.res.storage_for(neighbour).put("keep", b"neighbour")
    # An object left in the failover bucket (as after a failover write) is erased too.
    fo = store.failover
    assert fo is not None
    failover_raw = env.res.store(fo, location)
    failover_raw.put(tenant_key(tenant, "written-during-outage"), b"y" * 5)
    receipt = env.res.erase(tenant, providers=[env.provider], actor="dpo", reason="art. 17")
    assert receipt.complete and receipt.objects == 4 and receipt.bytes == sum(sizes) + 5
    assert receipt.started <= receipt.finished and receipt.attempts == 1
    by_role = {b.role: b for b in receipt.backends}
    assert by_role["primary"].objects == 3 and by_role["failover"].objects == 1
    assert all(b.status == "verified" and b.remaining == 0 for b in receipt.backends)
    assert list(store.list()) == [] and not failover_raw.exists(
        tenant_key(tenant, "written-during-outage"))
    assert env.res.storage_for(neighbour).get("keep") == b"neighbour"
    per_backend = [e for e in env.of("erase") if e.purpose == f"erasure:{receipt.request_id}"]
    assert len(per_backend) == 2 and all(e.outcome == "ok" for e in per_backend)
    assert {e.served_by for e in per_backend} == {"primary", "failover"}
    assert all(e.actor == "dpo" and "reason: art. 17" in e.reasons for e in per_backend)
    # The receipt is the audited one: its SHA-256 is the checksum of the final event.
    request = env.res.erasure_tracker(env.state_dir).get(receipt.request_id)
    audited = verify_receipt(request, env.events)
    assert audited.checksum == f"sha256:{receipt.receipt_sha256}"
    assert audited.event_id == receipt.receipt_event_id


def test_erase_on_the_local_default(tmp_path: Path) -> None:
    res = rs.Residency.load(local_root=tmp_path)
    tenant = rs.Tenant(id="erase-me", country="FR")
    store = res.storage_for(tenant)
    for i in range(3):
        store.put(f"d/{i}", b"z" * (i + 1))
    receipt = res.erase(tenant)
    assert (receipt.objects, receipt.bytes, receipt.location) == (3, 6, "FR")
    assert [b.provider for b in receipt.backends] == ["local"]
    assert receipt.to_dict()["complete"] is True
    assert receipt.to_dict()["backends"][0]["objects"] == 3
    assert list(store.list()) == []
    # State lives next to the data by default, one file per request.
    assert res.state_dir == tmp_path / ".residency-state"
    assert (tmp_path / ".residency-state" / "erasure" / f"{receipt.request_id}.json").is_file()
    again = res.erase(tenant)  # a new request (the first one is complete) finds nothing
    assert again.objects == 0 and again.complete and again.request_id != receipt.request_id


@pytest.mark.parametrize("provider_harness", ["aws"], indirect=True)
def test_erase_without_a_state_folder_is_refused_before_deleting(
        provider_harness: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # With local_root there is always a default state folder; a cloud deployment must say
    # (state_dir=, or the RESIDENCY_STATE_DIR / residency.toml setting: none here).
    monkeypatch.delenv("RESIDENCY_STATE_DIR", raising=False)
    res = rs.Residency.load(_write_map(provider_harness, tmp_path),
                            audit=str(tmp_path / "audit.db"))
    tenant = rs.Tenant(id=f"t-{uuid.uuid4().hex[:12]}", country="DE")
    res.storage_for(tenant).put("k", b"v")
    with pytest.raises(rs.ErasureError, match="state_dir"):
        res.erase(tenant)
    assert res.storage_for(tenant).exists("k")
    res.close()


def test_incomplete_erasure_raises_with_its_receipt(tmp_path: Path) -> None:
    healthy = rs.Residency.load(local_root=tmp_path)
    tenant = rs.Tenant(id="half-erased", country="DE")
    healthy.storage_for(tenant).put("k", b"v")
    broken = rs.Residency.load(
        local_root=tmp_path,
        storage=lambda t, loc: _faulty(open_store(t, local_root=tmp_path, location=loc)))
    with pytest.raises(BackendUnavailable, match="incomplete") as caught:
        broken.erase(tenant)
    assert isinstance(caught.value, rs.ErasureUnavailable)
    receipt = caught.value.receipt
    assert not receipt.complete and receipt.objects == 0 and receipt.status == "in_progress"
    assert "down" in (receipt.backends[0].error or "")
    assert caught.value.request_id == receipt.request_id
    assert healthy.storage_for(tenant).exists("k")  # a retry can still finish the job
    # The request stays open, and erasing again resumes it rather than starting anew.
    tracker = healthy.erasure_tracker(tmp_path / ".residency-state")
    assert [r["id"] for r in tracker.status()] == [receipt.request_id]
    done = healthy.erase(tenant)
    assert done.request_id == receipt.request_id and done.attempts == 2
    assert done.complete and done.objects == 1
    assert not healthy.storage_for(tenant).exists("k") and tracker.status() == []


def test_erase_interrupted_by_an_outage_is_finished_by_a_rerun(provider_harness: Any,
                                                               tmp_path: Path) -> None:
    env = _failover_env(provider_harness, tmp_path, primary_down=False, failover_down=True)
    location = FAILOVER_LOCATION[env.provider]
    tenant, neighbour = (env.tenant(COUNTRY_OF[location], agreements=AGREEMENTS_OF[location])
                         for _ in range(2))
    store = env.res.storage_for(tenant)
    for i in range(3):
        store.put(f"obj/{i}", b"x" * (i + 1))
    env.res.storage_for(neighbour).put("keep", b"neighbour")
    with pytest.raises(rs.ErasureUnavailable) as caught:
        env.res.erase(tenant, providers=[env.provider])
    half = caught.value.receipt
    by_role = {b.role: b for b in half.backends}
    assert by_role["primary"].status == "verified" and by_role["primary"].objects == 3
    assert by_role["failover"].status == "failed" and by_role["failover"].error
    assert not half.complete and half.receipt_sha256 is None
    env.res.close()

    # The failover backend is back: a healthy Residency on the same state finishes it.
    healthy = _load(provider_harness, env.map_path, env.events)
    fo = store.failover
    assert fo is not None
    failover_raw = healthy.store(fo, location)
    failover_raw.put(tenant_key(tenant, "written-during-outage"), b"y" * 5)
    done = healthy.erase(tenant, providers=[env.provider])
    assert done.request_id == half.request_id and done.complete and done.attempts == 2
    assert done.objects == 4 and done.bytes == 6 + 5
    assert list(healthy.storage_for(tenant).list()) == []
    assert not failover_raw.exists(tenant_key(tenant, "written-during-outage"))
    assert healthy.storage_for(neighbour).get("keep") == b"neighbour"
    request = healthy.erasure_tracker(env.state_dir).get(done.request_id)
    assert verify_receipt(request, env.events).tenant_id == tenant.id
    healthy.close()


def test_blocked_transfer_copies_nothing(env: Env) -> None:
    tenant = env.tenant("DE")
    store = env.res.storage_for(tenant)
    store.put("studies/1.dcm", b"phi bytes", data_class="phi")
    env.events.clear()
    with pytest.raises(TransferBlocked) as caught:
        env.res.transfer(tenant, "studies/1.dcm", to="US", data_class="phi")
    assert not caught.value.decision.allowed
    assert not env.raw_store("US").exists(tenant_key(tenant, "studies/1.dcm"))
    transfer_events = env.of("transfer")
    assert [e.outcome for e in transfer_events] == ["blocked"]
    assert transfer_events[0].destination_country == "US"
    # Declaring a weaker class than the object was stored as does not unblock it.
    with pytest.raises(TransferBlocked):
        env.res.transfer(tenant, "studies/1.dcm", to="US", data_class="anonymised")
    assert not env.raw_store("US").exists(tenant_key(tenant, "studies/1.dcm"))


def test_allowed_transfer_copies_into_the_destination_location(env: Env) -> None:
    tenant = env.tenant("DE")
    store = env.res.storage_for(tenant)
    original = store.put("studies/2.dcm", b"adequate" * 100, data_class="phi")
    copied = env.res.transfer(tenant, "studies/2.dcm", to="GB", data_class="phi")
    assert copied.location == "GB" and copied.size == original.size
    assert copied.metadata["residency_source_location"] == "DE"
    assert env.raw_store("GB").get(tenant_key(tenant, "studies/2.dcm")) == b"adequate" * 100
    [event] = env.of("transfer")
    assert (event.outcome, event.mechanism, event.destination_location) == (
        "ok", "adequacy", "GB")
    with pytest.raises(BackendNotConfigured, match="not a residency location"):
        env.res.transfer(tenant, "studies/2.dcm", to="JP")
    with pytest.raises(StorageError, match="already lives"):
        env.res.transfer(tenant, "studies/2.dcm", to="DE")


# --- failover ---------------------------------------------------------------------------


def _faulty(store: ObjectStore) -> ObjectStore:
    """Turn a real adapter into one whose backend is down (as after exhausted retries)."""

    def down(self: ObjectStore, *args: Any, **kwargs: Any) -> Any:
        raise BackendUnavailable(f"{self.target.provider} {self.target.region} is down "
                                 "(injected)")

    broken = type(f"Down{type(store).__name__}", (type(store),),
                  {name: down for name in ("put", "get", "open", "head", "list", "delete",
                                           "exists")})
    store.__class__ = broken
    return store


def _failover_env(harness: Any, tmp_path: Path, *, primary_down: bool = True,
                  failover_down: bool = False) -> Env:
    map_path = _write_map(harness, tmp_path)

    def opener(target: StorageTarget, location: str) -> ObjectStore:
        store = open_store(target, local_root=harness.local_root, location=location)
        is_failover = target.bucket.endswith("-failover")
        # The outage is in the location under test; the others stay up (a tenant's first
        # write asks every location whether its id is bound elsewhere, and waits for an
        # answer).
        if location == FAILOVER_LOCATION[harness.provider] and (
                (primary_down and not is_failover) or (failover_down and is_failover)):
            return _faulty(store)
        return store

    events: list[AuditEvent] = []
    res = _load(harness, map_path, events, storage=opener)
    return Env(res, harness.provider, harness, map_path, events)


def test_failover_serves_inside_the_location(provider_harness: Any, tmp_path: Path) -> None:
    env = _failover_env(provider_harness, tmp_path)
    location = FAILOVER_LOCATION[env.provider]
    tenant = env.tenant(COUNTRY_OF[location], agreements=AGREEMENTS_OF[location])
    store = env.res.storage_for(tenant)
    assert store.failover is not None
    info = store.put("during-outage.dcm", b"kept in country", data_class="phi")
    assert info.served_by == "failover"
    assert info.bucket == failover_bucket(store.target.bucket)
    assert info.region == store.target.failover_region and info.location == location
    assert store.get("during-outage.dcm") == b"kept in country"
    assert store.head("during-outage.dcm").served_by == "failover"
    put_event = env.of("put")[0]
    assert (put_event.served_by, put_event.bucket, put_event.region) == (
        "failover", info.bucket, info.region)
    # The failover region is in the location's own country.
    table = provider_harness.provider
    if table != "local":
        assert env.res.regions[env.provider][info.region] == env.res.map.locations[location].country
    env.res.close()


def test_no_failover_when_both_backends_are_down(provider_harness: Any,
                                                 tmp_path: Path) -> None:
    env = _failover_env(provider_harness, tmp_path, failover_down=True)
    location = FAILOVER_LOCATION[env.provider]
    store = env.res.storage_for(env.tenant(COUNTRY_OF[location],
                                           agreements=AGREEMENTS_OF[location]))
    with pytest.raises(BackendUnavailable, match="both failed"):
        store.put("x", b"y")
    assert env.of("put")[0].outcome == "error"
    env.res.close()


def test_primary_down_without_failover_fails_closed(tmp_path: Path) -> None:
    res = rs.Residency.load(
        local_root=tmp_path,
        storage=lambda t, loc: _faulty(open_store(t, local_root=tmp_path, location=loc)))
    store = res.storage_for(rs.Tenant(id="no-failover", country="FR"))
    assert store.failover is None
    with pytest.raises(BackendUnavailable, match="down"):
        store.put("x", b"y")
    assert not any(tmp_path.rglob("@meta"))  # nothing written anywhere else


def test_unrewindable_stream_is_not_replayed_to_failover(tmp_path: Path) -> None:
    overlay = tmp_path / "local-failover.yaml"
    overlay.write_text(yaml.safe_dump({
        "extends": "default", "name": "local-failover",
        "locations": {"DE": {"backends": {"local": {"failover_region": "local-de-b"}}}}}))

    def opener(target: StorageTarget, location: str) -> ObjectStore:
        store = open_store(target, local_root=tmp_path / "root", location=location)
        down = location == "DE" and not target.bucket.endswith("-failover")
        return _faulty(store) if down else store

    class Pipe(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            return 0

    res = rs.Residency.load(overlay, local_root=tmp_path / "root", storage=opener)
    store = res.storage_for(rs.Tenant(id="c", country="DE"))
    with pytest.raises(BackendUnavailable, match="cannot be read twice"):
        store.put("x", cast(BinaryIO, Pipe()))
    assert store.put("y", io.BytesIO(b"seekable")).served_by == "failover"


def test_failover_target_never_leaves_the_country() -> None:
    target = StorageTarget(provider="aws", region="eu-central-1", bucket="b-de", country="DE",
                           failover_region="us-east-1")
    with pytest.raises(ResidencyViolation, match="never leaves"):
        failover_target(target)
    unknown = target.model_copy(update={"failover_region": "xx-nowhere-1"})
    with pytest.raises(ResidencyViolation, match="no known country"):
        failover_target(unknown)
    fine = target.model_copy(update={"provider": "gcp", "region": "europe-west3",
                                     "failover_region": "europe-west10"})
    derived = failover_target(fine)
    assert derived is not None
    assert (derived.region, derived.bucket, derived.country) == (
        "europe-west10", "b-de-failover", "DE")
    assert failover_target(target.model_copy(update={"failover_region": None})) is None
    assert len(failover_bucket("x" * 63)) == 63


# --- residency refusals and audit (local default) --------------------------------------


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Env]:
    events: list[AuditEvent] = []
    res = rs.Residency.load(local_root=tmp_path / "root", audit_hooks=[events.append])
    yield Env(res, "local", None, Path(), events)
    res.close()


def test_placement_refused_without_the_mechanism(local: Env) -> None:
    lacking = rs.Tenant(id="ankara-clinic", country="TR")
    store = local.res.storage_for(lacking)
    [placement] = local.of("placement")
    assert placement.outcome == "blocked" and placement.tenant_country == "TR"
    with pytest.raises(PlacementBlocked, match="kvkk_standard_contract"):
        store.put("scan.dcm", b"phi")
    assert not store.exists("scan.dcm")
    assert local.of("put")[0].outcome == "blocked"
    holding = rs.Tenant(id="acibadem", country="TR",
                        agreements=frozenset({"kvkk_standard_contract"}))
    info = local.res.storage_for(holding).put("scan.dcm", b"phi")
    assert info.location == "DE"
    # Anonymised data is not restricted, so even the tenant lacking a mechanism may store
    # it: once earned (evidence bound to these bytes), not merely declared.
    with pytest.raises(rs.NotAnonymised):
        store.put("stats.csv", b"n=3", data_class="anonymised")
    evidence = rs.deid.external_evidence(b"n=3", tenant_id=lacking.id,
                                         method="aggregate counts", tool="test")
    assert store.put("stats.csv", b"n=3", data_class="anonymised",
                     evidence=evidence).size == 3


def test_phi_refused_on_a_backend_without_baa(tmp_path: Path) -> None:
    overlay = tmp_path / "no-baa.yaml"
    overlay.write_text(yaml.safe_dump({
        "extends": "default", "name": "no-baa",
        "locations": {"DE": {"backends": {"local": {"baa": False}}}}}))
    events: list[AuditEvent] = []
    res = rs.Residency.load(overlay, local_root=tmp_path / "root",
                            audit_hooks=[events.append])
    store = res.storage_for(rs.Tenant(id="charite", country="DE"))
    with pytest.raises(BAARequired, match="baa: false"):
        store.put("scan.dcm", b"phi", data_class="phi")
    assert not store.exists("scan.dcm")
    assert store.put("contacts.csv", b"a,b", data_class="personal").data_class == "personal"
    assert [e.outcome for e in events if e.operation == "put" and e.outcome != "intent"
            and e.purpose not in ("tenant_record", "lineage")] == ["blocked", "ok"]
    # The destination of a transfer needs a BAA too. HIPAA lets this tenant's phi leave
    # the US (it has a BAA with us), so the transfer decision allows it: what refuses the
    # copy is the DE backend's own `baa: false`, after the decision, before any byte moves.
    us = rs.Residency.load(overlay, local_root=tmp_path / "root2")
    mayo = rs.Tenant(id="mayo", country="US", agreements=frozenset({"baa"}))
    us.storage_for(mayo).put("scan.dcm", b"phi")
    assert us.check_transfer(mayo, "DE", "phi").allowed
    with pytest.raises(BAARequired, match=r"phi refused on the local backend "
                       r"'residency-de-local-data' of location DE: its map entry has "
                       r"baa: false") as refused:
        us.transfer(mayo, "scan.dcm", to="DE")
    assert not isinstance(refused.value, TransferBlocked)
    de_store = us.store(us.backend("DE", "local"), "DE")
    assert [i.key for i in de_store.list("tenants/")] == []


def test_invalid_inputs_are_refused_before_any_write(local: Env) -> None:
    store = local.res.storage_for(rs.Tenant(id="charite", country="DE"))
    from residency_sdk.errors import UnknownDataClass

    with pytest.raises(UnknownDataClass):
        store.put("k", b"v", data_class="secret")
    for bad in ({"Upper": "x"}, {"residency_data_class": "anonymised"}, {"k": "ü"},
                {"k": 1}):
        with pytest.raises(StorageError, match="metadata"):
            store.put("k", b"v", metadata=bad)  # type: ignore[arg-type]
    assert not store.exists("k")
    with pytest.raises(BackendNotConfigured, match="no 'nope' backend"):
        local.res.storage_for(rs.Tenant(id="x", country="DE"), provider="nope")


def test_every_operation_is_audited_without_contents(local: Env) -> None:
    tenant = rs.Tenant(id="charite", country="DE")
    store = local.res.storage_for(tenant, actor="dr-who", purpose="treatment")
    secret = b"SECRET-PATIENT-CONTENT"
    info = store.put("a.txt", secret, data_class="phi")
    store.get("a.txt")
    store.head("a.txt")
    store.exists("a.txt")
    list(store.list())
    store.delete("a.txt")
    with pytest.raises(ObjectNotFound):
        store.get("a.txt")
    objects = [e for e in local.events
               if e.operation != "transfer_check" and e.purpose not in ("tenant_record", "lineage")]
    ops = [(e.operation, e.outcome) for e in objects]
    # Written ahead: each data operation's intent, then its outcome naming the intent.
    assert ops == [("placement", "allowed"), ("put", "intent"), ("put", "ok"),
                   ("get", "intent"), ("get", "ok"), ("head", "intent"), ("head", "ok"),
                   ("head", "intent"), ("head", "ok"), ("list", "intent"), ("list", "ok"),
                   ("delete", "intent"), ("delete", "ok"), ("get", "intent"),
                   ("get", "error")]
    for intent, outcome in zip(objects[1::2], objects[2::2], strict=True):
        assert outcome.intent_id == intent.event_id and intent.intent_id is None
        assert (outcome.operation, outcome.object_key) == (intent.operation,
                                                           intent.object_key)
    # The first write binds the tenant's record in its location: audited the same way.
    record = [(e.operation, e.outcome) for e in local.events if e.purpose == "tenant_record"]
    assert record == [("put", "intent"), ("put", "ok")]
    put = local.of("put")[0]
    assert (put.actor, put.purpose, put.tenant_id, put.tenant_country) == (
        "dr-who", "treatment", "charite", "DE")
    assert (put.data_class, put.source_location, put.provider, put.bucket, put.served_by) == (
        "phi", "DE", "local", "residency-de-local-data", "primary")
    assert (put.object_key, put.size, put.checksum) == ("a.txt", len(secret), info.checksum)
    assert "ObjectNotFound" in (local.events[-1].error or "")
    for event in local.events:
        assert "SECRET-PATIENT" not in event.to_json()


def test_a_failing_audit_hook_stops_the_operation(tmp_path: Path) -> None:
    def broken(event: AuditEvent) -> None:
        if event.operation == "put":
            raise RuntimeError("audit store unavailable")

    res = rs.Residency.load(local_root=tmp_path, audit_hooks=[broken])
    store = res.storage_for(rs.Tenant(id="c", country="DE"))
    # The intent cannot be recorded: the put never starts, and the error names the hook.
    with pytest.raises(AuditUnavailable, match=r"broken.*audit store unavailable"):
        store.put("k", b"v")
    assert not store.exists("k")


def test_importing_the_sdk_imports_no_cloud_sdk() -> None:
    code = ("import sys, residency_sdk, residency_sdk.storage, residency_sdk.cli.storage;"
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('boto3', 'botocore', 'google', 'azure', 's3transfer', 'cryptography')];"
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_missing_sdk_names_the_extra(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['boto3'] = None;"
            "from residency_sdk.regionmap import load_region_map;"
            "from residency_sdk.storage.factory import open_store;"
            "from residency_sdk.errors import BackendNotConfigured;"
            "t = load_region_map().locations['DE'].backends['aws']\n"
            "try:\n open_store(t)\nexcept BackendNotConfigured as e:\n print(e)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert "pip install 'residency-sdk[aws]'" in result.stdout


@pytest.fixture(scope="module")
def shared_local(tmp_path_factory: pytest.TempPathFactory) -> tuple[rs.Residency, Path]:
    root = tmp_path_factory.mktemp("shared-local")
    return rs.Residency.load(local_root=root), root


@settings(max_examples=100, deadline=None)
@given(key=st.text(min_size=1, max_size=40))
def test_any_key_lands_under_its_own_tenant_or_is_refused(
        shared_local: tuple[rs.Residency, Path], key: str) -> None:
    res, root = shared_local
    tenant = rs.Tenant(id=f"a-{uuid.uuid4().hex[:10]}", country="DE")
    store = res.storage_for(tenant)
    before = set(root.rglob("@meta"))
    try:
        store.put(key, b"v", data_class="personal")
    except InvalidKey:
        assert set(root.rglob("@meta")) == before
        return
    own = (root / "DE" / "residency-de-local-data" / "tenants" / tenant.id).resolve()
    sdk = root / "DE" / "residency-de-local-data" / "_residency"
    record = sdk / "tenant-records"
    created = set(root.rglob("@meta")) - before
    assert (record / f"{tenant.id}.json" / "@meta") in created  # its country record
    # ... and where its data went (the lineage erasure plans from)
    assert (sdk / "lineage" / tenant.id / "reached" / "DE" / "local" / "@meta") in created
    [new] = {m for m in created if not m.is_relative_to(sdk)}
    assert new.resolve().is_relative_to(own)
    assert [o.key for o in store.list()] == [store.head(key).key]
    assert store.delete(key) and not own.exists()
