"""``phi`` only on backends covered by a Business Associate Agreement (promise MV-12):
``require_baa`` refuses a ``phi`` write to a backend whose map entry says ``baa: false``,
naming the backend, its bucket and location and the two ways out; other classes pass.
Local backend (real files)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import residency_sdk as rs
from residency_sdk.storage.keys import tenant_key

TENANT = rs.Tenant(id="clinic-hamburg", country="DE")


@pytest.fixture
def res(tmp_path: Path) -> Iterator[rs.Residency]:
    overlay = tmp_path / "no-baa.yaml"
    overlay.write_text(yaml.safe_dump({
        "extends": "default", "name": "no-baa",
        "locations": {"DE": {"backends": {"local": {"baa": False}}}}}))
    client = rs.Residency.load(overlay, local_root=tmp_path / "data", audit=False)
    yield client
    client.close()


def test_phi_on_a_backend_without_a_baa_is_refused_naming_the_backend_and_the_fix(
        res: rs.Residency) -> None:
    store = res.storage_for(TENANT)
    with pytest.raises(rs.BAARequired) as caught:
        store.put("scan.dcm", b"phi bytes", data_class="phi")
    assert str(caught.value) == (
        f"phi refused on the local backend {store.target.bucket!r} of location DE: its map "
        "entry has baa: false. Sign a Business Associate Agreement with the provider and "
        "set `baa: true`, or store non-phi data only")
    assert not res.store(store.target, "DE").exists(tenant_key(TENANT, "scan.dcm"))


@pytest.mark.parametrize("data_class", ["personal", "anonymised_external"])
def test_data_other_than_phi_is_stored_on_a_backend_without_a_baa(
        res: rs.Residency, data_class: str) -> None:
    store = res.storage_for(TENANT)
    if data_class == "anonymised_external":
        data = b"age band 60-69, finding: none"
        evidence = rs.deid.external_evidence(data, tenant_id=TENANT.id, method="k-anon",
                                             tool="scrubber 1")
        info = store.put("table.csv", data, data_class="anonymised", evidence=evidence)
        assert info.data_class == "anonymised"
    else:
        info = store.put("contact.txt", b"name, phone", data_class=data_class)
        assert info.data_class == data_class
