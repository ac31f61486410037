"""Edges of ``export_anonymised``: what the receipt reports, how the copies are audited,
a copy the content check refuses, and the fail-closed default for burned-in text."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from facade_dicom import burned_in_capture, study

import residency_sdk as rs
import residency_sdk.deid as deid
from residency_sdk.errors import DeidentificationRefused, NotAnonymised
from residency_sdk.events import AuditEvent
from residency_sdk.export import export_anonymised
from residency_sdk.storage.keys import tenant_prefix

DE = rs.Tenant(id="charite-research", country="DE")


@pytest.fixture
def loaded(tmp_path: Path) -> Iterator[tuple[rs.Residency, list[AuditEvent]]]:
    events: list[AuditEvent] = []
    res = rs.Residency.load(local_root=tmp_path / "data", audit=tmp_path / "audit.db",
                            audit_hooks=[events.append])
    yield res, events
    res.close()


def test_export_receipt_reports_the_size_and_checksum_the_destination_holds(
        loaded: tuple[rs.Residency, list[AuditEvent]]) -> None:
    res, _ = loaded
    store = res.storage_for(DE)
    keys = ["a.dcm", "b.dcm"]
    for key, data in zip(keys, study(2), strict=True):
        store.put(key, data)
    receipt = res.export_anonymised(DE, keys, to="US")
    us = res.store(res.backend("US"), "US")
    for item in receipt.objects:
        there = us.head(f"{tenant_prefix(DE)}{item.copy_key}")
        assert item.size == there.size and item.size > 0
        assert item.checksum == there.checksum and item.checksum
        # The digest names the evidence kept at home for this copy.
        assert res.deid_records.evidence(DE, item.evidence_digest) is not None


def test_export_stores_and_audits_each_home_copy_as_anonymised(
        loaded: tuple[rs.Residency, list[AuditEvent]]) -> None:
    res, events = loaded
    store = res.storage_for(DE)
    store.put("a.dcm", study(1)[0])
    events.clear()
    res.export_anonymised(DE, ["a.dcm"], to="US")
    puts = [e for e in events if e.operation == "put" and e.object_key == "deid/a.dcm"]
    assert [(e.outcome, e.data_class) for e in puts if e.outcome == "ok"] == [
        ("ok", "anonymised")]
    assert store.head("deid/a.dcm").data_class == "anonymised"


def test_a_copy_that_fails_the_content_check_is_removed_and_nothing_is_transferred(
        tmp_path: Path, loaded: tuple[rs.Residency, list[AuditEvent]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    res, events = loaded
    store = res.storage_for(DE)
    originals = study(2)
    for i, data in enumerate(originals):
        store.put(f"{i}.dcm", data)
    real = deid.deidentify_dicom

    def leaky(data: bytes, **kwargs: Any) -> Any:
        """A de-identifier defect: the evidence is real, the bytes are the original's."""
        made = real(data, **kwargs)
        return dataclasses.replace(made, data=data) if data == originals[1] else made

    monkeypatch.setattr(deid, "deidentify_dicom", leaky)
    with pytest.raises(NotAnonymised) as excinfo:
        res.export_anonymised(DE, ["0.dcm", "1.dcm"], to="US")
    assert str(excinfo.value) == (
        "export_anonymised: the de-identified copy of '1.dcm' failed the content check and "
        "was removed; nothing was transferred. Report this with the object's modality and "
        "SOP class")
    # The refused copy (stored as phi by the check) is gone; the original stays.
    assert not store.exists("deid/1.dcm")
    assert store.get("1.dcm") == originals[1]
    assert not [e for e in events if e.operation == "transfer"]
    us = res.store(res.backend("US"), "US")
    assert list(us.list(tenant_prefix(DE))) == []


def test_the_export_refuses_burned_in_text_unless_pixels_cleaned_is_stated(
        loaded: tuple[rs.Residency, list[AuditEvent]]) -> None:
    res, _ = loaded
    store = res.storage_for(DE)
    store.put("capture.dcm", burned_in_capture())
    sent: list[str] = []

    def transfer(key: str) -> Any:
        sent.append(key)
        raise AssertionError("nothing may be transferred")

    # The module function's own default, not only the client's: fail closed.
    with pytest.raises(DeidentificationRefused, match="pixels_cleaned"):
        export_anonymised(store, res.deid_key(DE), ["capture.dcm"], transfer=transfer,
                          destination="US")
    assert sent == []
    assert not store.exists("deid/capture.dcm")


def test_the_export_passes_its_options_and_the_pixels_statement_to_every_copy_and_receipt(
        loaded: tuple[rs.Residency, list[AuditEvent]]) -> None:
    res, _ = loaded
    store = res.storage_for(DE)
    store.put("capture.dcm", burned_in_capture())
    sent: list[str] = []

    def transfer(key: str) -> Any:
        sent.append(key)
        return store.head(key)

    receipt = export_anonymised(store, res.deid_key(DE), ["capture.dcm"], transfer=transfer,
                                destination="US", options=["clean_descriptors"],
                                pixels_cleaned=True)
    assert sent == ["deid/capture.dcm"]
    assert receipt.options == ("clean_descriptors",)
    assert receipt.pixels_cleaned is True
    [item] = receipt.objects
    evidence = res.deid_records.evidence(DE, item.evidence_digest)
    assert evidence is not None
    assert "clean_descriptors" in evidence.options and "pixels_cleaned" in evidence.options
