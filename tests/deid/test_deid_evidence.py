"""Evidence: names the profile, edition, source and options, counts what was done (the
counts match the object), binds input and output by SHA-256, and never holds a value."""

from __future__ import annotations

import hashlib
import tracemalloc

from components import require

require("pydicom", "pip install 'residency-sdk[dicom]'")

from deid_samples import ACCESSION, INSTITUTION, PATIENT_ID, ct_series, read, to_bytes  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402

from residency_sdk.deid import (  # noqa: E402
    BASIC_PROFILE,
    DeidKey,
    Evidence,
    check_dicom,
    deidentify_dicom,
)

KEY = DeidKey("tenant-a/key-7", b"e" * 32)


def test_counts_match_a_hand_counted_object() -> None:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"     # kept (not tabled)
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.10.1"   # U
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.10.2"  # U
    ds.Modality = "CT"                                # kept
    ds.PatientName = "Doe^Jane"                       # Z
    ds.PatientID = "P-1"                              # Z/D -> D
    ds.StudyDate = "20260101"                         # Z
    ds.PatientAddress = "Somewhere 1"                 # X
    ds.OtherPatientIDs = "P-OLD"                      # X
    ds.InstitutionName = "Clinic"                     # X/Z/D -> D
    ds.add_new(0x00090010, "LO", "ACME")              # private
    ds.add_new(0x00091001, "LO", "secret")            # private
    result = deidentify_dicom(to_bytes(ds), tenant="tenant-a", key=KEY)
    c = result.evidence.counts
    # + MediaStorageSOPInstanceUID (U) and SourceApplicationEntityTitle (removed) in meta
    assert (c.removed, c.emptied, c.replaced, c.uids_replaced, c.kept, c.private_removed) \
        == (2 + 1, 2, 2, 2 + 1, 2, 2)
    assert c.dates_shifted == 0 and c.cleaned == 0


def test_evidence_names_profile_and_binds_bytes() -> None:
    data = ct_series(1)[0]
    result = deidentify_dicom(data, tenant="tenant-a", key=KEY,
                              options=["retain_device_identity", "clean_descriptors"])
    ev = result.evidence
    assert ev.kind == "dicom"
    assert ev.profile == "DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile"
    assert ev.edition == "2026c" == BASIC_PROFILE.edition
    assert "Table E.1-1" in (ev.table_source or "") and "dicom-anonymizer 2.1.0" in (
        ev.table_source or "")
    assert ev.options == ("clean_descriptors", "retain_device_identity")  # canonical order
    assert ev.input_sha256 == hashlib.sha256(data).hexdigest()
    assert ev.output_sha256 == hashlib.sha256(result.data).hexdigest()
    assert ev.tenant_id == "tenant-a" and ev.uid_key_id == "tenant-a/key-7"
    assert ev.tool.startswith("residency-sdk ") and "pydicom 3." in ev.tool
    # round-trips as JSON (it is stored beside the object)
    assert Evidence.model_validate_json(ev.model_dump_json()) == ev
    assert ev.digest() in ev.summary()


def test_evidence_never_holds_a_value() -> None:
    data = ct_series(1)[0]
    result = deidentify_dicom(data, tenant="tenant-a", key=KEY)
    text = result.evidence.model_dump_json() + result.evidence.summary() + repr(result)
    orig = read(data)
    for value in ("Doe", "Johanna", PATIENT_ID, ACCESSION, INSTITUTION, "19610412",
                  orig.StudyInstanceUID, orig.SOPInstanceUID, "e" * 32):
        assert value not in text, value


def test_same_input_same_output() -> None:
    data = ct_series(1)[0]
    a = deidentify_dicom(data, tenant="t", key=KEY)
    b = deidentify_dicom(data, tenant="t", key=KEY)
    assert a.data == b.data and a.evidence.output_sha256 == b.evidence.output_sha256


def test_memory_is_about_one_output_beyond_the_input() -> None:
    # a 512 KiB slice: the pixel data element is copied once, into the output
    data = ct_series(1, rows=512, columns=512, nested=False)[0]
    deidentify_dicom(data, tenant="t", key=KEY)  # warm caches (table, pydicom)
    tracemalloc.start()
    try:
        result = deidentify_dicom(data, tenant="t", key=KEY)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(data) > 512 * 1024
    assert peak < 1.5 * len(data), f"peak {peak} bytes for a {len(data)}-byte object"
    assert check_dicom(result.data, evidence=result.evidence).ok
