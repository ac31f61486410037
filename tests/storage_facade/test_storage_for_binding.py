"""``Residency.storage_for`` (promise MV-17: a clinic's upload is stored in its residency
location) hands out a store wired to the client's shared parts: the chosen backend of the
tenant's location, the tenant registry (one id, one country), the lineage erasure plans
from, and the caller's actor and purpose on every event. Local backend (real files)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import residency_sdk as rs
from residency_sdk.events import AuditEvent
from residency_sdk.storage.keys import tenant_key


@pytest.fixture
def res(tmp_path: Path) -> Iterator[rs.Residency]:
    client = rs.Residency.load(local_root=tmp_path / "data", audit=tmp_path / "audit.db")
    yield client
    client.close()


def test_an_upload_lands_in_the_tenants_location_under_its_prefix(res: rs.Residency) -> None:
    tenant = rs.Tenant(id="clinic-lyon", country="FR")
    store = res.storage_for(tenant)
    info = store.put("uploads/ct-1.dcm", b"scan", data_class="phi")
    assert (store.location, info.location, info.provider) == ("FR", "FR", "local")
    backend = res.backend("FR", "local")
    assert res.store(backend, "FR").get(tenant_key(tenant, "uploads/ct-1.dcm")) == b"scan"


def test_the_provider_asked_for_is_the_backend_used(res: rs.Residency) -> None:
    tenant = rs.Tenant(id="clinic-munich", country="DE")
    default = res.storage_for(tenant)
    azure = res.storage_for(tenant, provider="azure")
    assert default.target == res.map.locations["DE"].backends["local"]
    assert azure.target == res.map.locations["DE"].backends["azure"]
    assert azure.target.bucket != default.target.bucket


def test_a_tenant_id_bound_to_one_country_is_refused_from_another(res: rs.Residency) -> None:
    res.storage_for(rs.Tenant(id="clinic-basel", country="CH")).put("a.txt", b"ch data")
    impostor = res.storage_for(rs.Tenant(id="clinic-basel", country="GB"))
    with pytest.raises(rs.TenantCountryConflict, match="bound to country CH"):
        impostor.put("a.txt", b"gb data")
    with pytest.raises(rs.TenantCountryConflict):
        impostor.get("a.txt")


def test_a_write_is_recorded_in_the_lineage_erasure_plans_from(res: rs.Residency) -> None:
    tenant = rs.Tenant(id="clinic-sydney", country="AU")
    assert res.lineage.trace(tenant.id).reached() == set()
    res.storage_for(tenant).put("uploads/1.dcm", b"scan", data_class="phi")
    assert res.lineage.trace(tenant.id).reached() == {("AU", "local")}


def test_actor_and_purpose_are_on_every_event_of_the_store(tmp_path: Path) -> None:
    events: list[AuditEvent] = []
    res = rs.Residency.load(local_root=tmp_path / "data", audit=False,
                            audit_hooks=[events.append])
    tenant = rs.Tenant(id="clinic-zurich", country="CH")
    store = res.storage_for(tenant, actor="radiographer-7", purpose="inference")
    store.put("uploads/1.dcm", b"scan", data_class="phi")
    store.get("uploads/1.dcm")
    mine = [e for e in events if e.tenant_id == tenant.id and e.purpose == "inference"]
    assert {e.operation for e in mine} >= {"placement", "put", "get"}
    assert {e.actor for e in mine} == {"radiographer-7"}
    res.close()
