"""A tenant's de-identification key and evidence move with its data: after a move the
same key maps its UIDs, and its anonymised objects keep their evidence."""

from __future__ import annotations

from pathlib import Path

import residency_sdk as rs
from residency_sdk.deid_records import evidence_prefix, key_record_key


def test_a_moved_tenant_keeps_its_key_and_its_evidence(tmp_path: Path) -> None:
    res = rs.Residency.load(local_root=tmp_path / "root", audit=str(tmp_path / "a.db"))
    tenant = rs.Tenant(id="clinic-moving", country="DE", agreements=frozenset({"scc"}))
    key = res.deid_key(tenant)
    data = b"site,count\nDE,3\n"
    evidence = rs.deid.external_evidence(data, tenant_id=tenant.id, method="aggregate",
                                         tool="test")
    res.storage_for(tenant).put("stats.csv", data, data_class="anonymised",
                                evidence=evidence)
    res.move_tenant(tenant, "FR")
    moved = rs.Tenant(id=tenant.id, country="FR", agreements=tenant.agreements)

    fresh = rs.Residency.load(local_root=tmp_path / "root", audit=False)
    assert fresh.deid_key(moved) == key  # the same UID and date mapping as before
    # The moved object still proves it is anonymised: it may cross without an agreement.
    copied = fresh.transfer(moved, "stats.csv", "US", data_class="anonymised")
    assert copied.data_class == "anonymised"
    # Nothing of it is left where the tenant was.
    de = fresh.stores.record_stores(fresh.policy.location("DE"))
    for store in de:
        assert not store.exists(key_record_key(tenant.id))
        assert list(store.list(evidence_prefix(tenant.id))) == []
    fr = fresh.stores.record_stores(fresh.policy.location("FR"))[0]
    assert fr.exists(key_record_key(tenant.id))
