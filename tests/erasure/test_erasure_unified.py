"""``res.erase`` is the tracked erasure: one implementation, one backend selection shared
with the retention sweep, one receipt type, errors that keep the request open."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

import residency_sdk as rs
from residency_sdk import errors
from residency_sdk.erasure import audit_log_events, verify_receipt
from residency_sdk.marks import LEGAL_HOLD_META
from residency_sdk.model import StorageTarget
from residency_sdk.storage.base import ObjectStore
from residency_sdk.storage.local import LocalStore


def _tenant(country: str = "DE") -> rs.Tenant:
    return rs.Tenant(id=f"clinic-{uuid.uuid4().hex[:10]}", country=country)


def test_every_error_of_the_hierarchy_is_exported() -> None:
    exported = set(rs.__all__)
    for name, value in vars(errors).items():
        if isinstance(value, type) and issubclass(value, errors.ResidencyError):
            assert name in exported and getattr(rs, name) is value, name
    assert issubclass(rs.ErasureUnavailable, rs.BackendUnavailable)
    assert issubclass(rs.ErasureBlocked, rs.ErasureIncomplete)


def test_sweep_and_erasure_select_the_same_backends_without_local(tmp_path: Path) -> None:
    """With the default map and no local_root, both cover every cloud backend of the
    location (primary and in-country failover) and never the ``local`` one."""
    opened: list[tuple[str, str]] = []

    def opener(target: StorageTarget, location: str) -> ObjectStore:
        # Record what is opened; serve it from an encrypted local store so no cloud
        # endpoint is ever called.
        opened.append((target.provider, target.bucket))
        stand_in = target.model_copy(update={"provider": "local",
                                             "bucket": f"{target.provider}-{target.bucket}"})
        return LocalStore(stand_in, tmp_path / "stand-in", location=location)

    res = rs.Residency.load(storage=opener, state_dir=tmp_path / "state",
                            audit=str(tmp_path / "audit.db"))
    assert res.data_providers("DE") == ("aws", "gcp", "azure")
    expected = [(t.provider, t.bucket) for _, t in res.location_targets("DE")]
    assert {p for p, _ in expected} == {"aws", "gcp", "azure"}
    assert len(expected) == 5  # gcp and azure have an in-country failover in DE
    assert all(p != "local" for loc in res.map.locations
               for p in res.data_providers(loc))

    assert res.retention_sweep("DE").run().ok
    swept = sorted(set(opened))
    opened.clear()
    # A fresh Residency: the first one's pool already holds every store it opened.
    fresh = rs.Residency.load(storage=opener, state_dir=tmp_path / "state",
                              audit=str(tmp_path / "audit.db"))
    receipt = fresh.erase(_tenant("DE"))
    assert receipt.complete
    assert swept == sorted(expected)
    assert sorted((b.provider, b.bucket) for b in receipt.backends) == sorted(expected)
    assert set(expected) <= set(opened)
    # Beyond them the erasure opened only the SDK's record stores of each location
    # (the default provider's primary and failover): it read the tenant's lineage there,
    # and dropped its lineage and tenant records.
    records = set()
    for loc in fresh.map.locations.values():
        primary = loc.backend(loc.default_provider)
        records |= {(t.provider, t.bucket) for t in (primary, loc.failover_for(primary)) if t}
    assert set(opened) - set(expected) <= records
    # With local_root both cover only the embedded local backend.
    local = rs.Residency.load(local_root=tmp_path / "data")
    assert [(r, t.provider) for r, t in local.location_targets("DE")] == [("primary", "local")]
    assert [t.provider for _, t in local.retention_sweep("DE").targets] == ["local"]


def test_legal_hold_keeps_res_erase_open_until_lifted(provider_harness: Any,
                                                      tmp_path: Path) -> None:
    map_path = provider_harness.write_map(tmp_path)
    local_root = provider_harness.local_root if provider_harness.provider == "local" else None
    res = rs.Residency.load(map_path, audit=str(tmp_path / "audit.db"), local_root=local_root,
                            state_dir=tmp_path / "state")
    provider = provider_harness.provider
    tenant, neighbour = _tenant(), _tenant()
    store = res.storage_for(tenant)
    store.put("a.dcm", b"a", data_class="phi")
    store.put("litigation.dcm", b"held", data_class="phi", metadata={LEGAL_HOLD_META: "true"})
    res.storage_for(neighbour).put("a.dcm", b"neighbour", data_class="phi")

    with pytest.raises(rs.ErasureBlocked, match="legal hold") as caught:
        res.erase(tenant, providers=[provider], reason="contract ended")
    blocked = caught.value.receipt
    assert blocked.status == "blocked" and not blocked.complete
    assert len(blocked.held) == 1 and "litigation.dcm" in blocked.held[0]
    assert store.exists("litigation.dcm") and not store.exists("a.dcm")
    tracker = res.erasure_tracker(tmp_path / "state")
    assert [r["id"] for r in tracker.status()] == [caught.value.request_id]

    # The hold is lifted (the object rewritten without the marker): erasing again
    # resumes the same request and completes it.
    store.put("litigation.dcm", b"held", data_class="phi")
    done = res.erase(tenant, providers=[provider])
    assert done.request_id == blocked.request_id and done.complete and done.attempts == 2
    assert done.objects == 2 and done.held == ()
    assert list(store.list()) == [] and tracker.status() == []
    assert res.storage_for(neighbour).get("a.dcm") == b"neighbour"
    event = verify_receipt(tracker.get(done.request_id), audit_log_events(tmp_path / "audit.db"))
    assert event.checksum == f"sha256:{done.receipt_sha256}"
    assert "reason: contract ended" in event.reasons
    res.close()
