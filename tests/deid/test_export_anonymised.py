"""``Residency.export_anonymised``: de-identify at home, verify, transfer only the copies;
the originals never leave (issue 17)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from facade_dicom import PATIENT_NAME, burned_in_capture, read, study

import residency_sdk as rs
from residency_sdk.deid import EVIDENCE_META, check_dicom
from residency_sdk.errors import (
    DeidentificationRefused,
    InputError,
    NotDicom,
    UnknownLocation,
)
from residency_sdk.events import AuditEvent
from residency_sdk.storage.keys import tenant_prefix

DE = rs.Tenant(id="charite-research", country="DE")


@pytest.fixture
def loaded(tmp_path: Path) -> Iterator[tuple[rs.Residency, list[AuditEvent]]]:
    events: list[AuditEvent] = []
    res = rs.Residency.load(local_root=tmp_path / "data", audit=tmp_path / "audit.db",
                            audit_hooks=[events.append])
    yield res, events
    res.close()


def _us_keys(tmp_path: Path) -> list[str]:
    """A fresh client's listing of the tenant's objects in the US backend."""
    fresh = rs.Residency.load(local_root=tmp_path / "data", audit=False,
                              audit_off_reason="test listing")
    us = fresh.store(fresh.backend("US"), "US")
    found = sorted(info.key for info in us.list(tenant_prefix(DE)))
    fresh.close()
    return found


def test_export_keeps_the_originals_home_and_sends_only_verified_copies(
        tmp_path: Path, loaded: tuple[rs.Residency, list[AuditEvent]]) -> None:
    res, events = loaded
    store = res.storage_for(DE)
    originals = study(3)
    keys = [f"studies/ct/{i}.dcm" for i in range(3)]
    for key, data in zip(keys, originals, strict=True):
        store.put(key, data)  # phi, the default
    receipt = res.export_anonymised(DE, keys, to="US", actor="researcher@charite",
                                    purpose="ai-training-2026")
    assert (receipt.tenant_id, receipt.source_location, receipt.destination) == (
        DE.id, "DE", "US")
    assert [(o.source_key, o.copy_key, o.destination) for o in receipt.objects] == [
        (k, f"deid/{k}", "US") for k in keys]
    # Only de-identified copies are in the US, and each passes the check there.
    prefix = tenant_prefix(DE)
    assert _us_keys(tmp_path) == sorted(f"{prefix}deid/{k}" for k in keys)
    us = res.store(res.backend("US"), "US")
    copies = [us.get(f"{prefix}deid/{k}") for k in keys]
    assert all(check_dicom(c).ok for c in copies)
    assert all(PATIENT_NAME.encode() not in c for c in copies)
    # One study in, one (new) study out: the UID mapping is consistent across the series.
    study_uids = {read(c).StudyInstanceUID for c in copies}
    assert len(study_uids) == 1 and study_uids != {read(originals[0]).StudyInstanceUID}
    assert len({read(c).SOPInstanceUID for c in copies}) == 3
    # The originals are still home, untouched and still phi.
    for key, data in zip(keys, originals, strict=True):
        assert store.get(key) == data and store.head(key).data_class == "phi"
    # Audited: every transfer is of a copy, as anonymised, with its evidence, by the
    # caller for the stated purpose.
    transfers = [e for e in events if e.operation == "transfer" and e.outcome == "ok"]
    assert [e.object_key for e in transfers] == [f"deid/{k}" for k in keys]
    for event, item in zip(transfers, receipt.objects, strict=True):
        assert (event.data_class, event.actor, event.purpose) == (
            "anonymised", "researcher@charite", "ai-training-2026")
        assert event.deid is not None and f"evidence sha256:{item.evidence_digest}" in event.deid
        assert us.head(f"{prefix}{item.copy_key}").metadata[EVIDENCE_META] == \
            item.evidence_digest
    assert not [e for e in events if e.operation == "transfer"
                and e.object_key in keys]
    assert receipt.to_dict()["objects"][0]["copy_key"] == f"deid/{keys[0]}"


def test_an_export_that_cannot_deidentify_sends_nothing(
        tmp_path: Path, loaded: tuple[rs.Residency, list[AuditEvent]]) -> None:
    res, _ = loaded
    store = res.storage_for(DE)
    store.put("ok.dcm", study(1)[0])
    store.put("capture.dcm", burned_in_capture())
    store.put("notes.txt", b"free text about Erika Mustermann")
    with pytest.raises(DeidentificationRefused, match="pixels_cleaned"):
        res.export_anonymised(DE, ["ok.dcm", "capture.dcm"], to="US")
    with pytest.raises(NotDicom):
        res.export_anonymised(DE, ["ok.dcm", "notes.txt"], to="US")
    assert _us_keys(tmp_path) == []
    # The caller's statement that the pixels were cleaned lets the capture through, and
    # is recorded in its evidence.
    receipt = res.export_anonymised(DE, ["capture.dcm"], to="US", pixels_cleaned=True)
    [item] = receipt.objects
    evidence = res.deid_records.evidence(DE, item.evidence_digest)
    assert evidence is not None and "pixels_cleaned" in evidence.options
    assert receipt.pixels_cleaned


def test_export_arguments_are_checked_before_anything_is_read(
        loaded: tuple[rs.Residency, list[AuditEvent]]) -> None:
    res, events = loaded
    res.storage_for(DE).put("a.dcm", study(1)[0])
    events.clear()
    with pytest.raises(InputError, match="no keys"):
        res.export_anonymised(DE, [], to="US")
    with pytest.raises(InputError, match="under 'deid/'"):
        res.export_anonymised(DE, ["deid/a.dcm"], to="US")
    with pytest.raises(InputError, match="already lives in location DE"):
        res.export_anonymised(DE, ["a.dcm"], to="DE")
    with pytest.raises(UnknownLocation):
        res.export_anonymised(DE, ["a.dcm"], to="MARS")
    assert not [e for e in events if e.operation in ("get", "put", "transfer")]


def test_export_with_options_records_them(
        loaded: tuple[rs.Residency, list[AuditEvent]]) -> None:
    res, _ = loaded
    store = res.storage_for(DE)
    store.put("a.dcm", study(1)[0])
    receipt = res.export_anonymised(DE, "a.dcm", to="US",  # one key as a string
                                    options=["retain_longitudinal_modified_dates"])
    [item] = receipt.objects
    evidence = res.deid_records.evidence(DE, item.evidence_digest)
    assert evidence is not None
    assert evidence.options == ("retain_longitudinal_modified_dates",)
    assert evidence.counts.dates_shifted > 0
    assert receipt.options == ("retain_longitudinal_modified_dates",)
