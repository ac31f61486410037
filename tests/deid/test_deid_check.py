"""check_dicom: does an object pass as anonymised? The original fails naming its
identifying attributes (never their values); the de-identified output passes, with and
without its evidence; tampering, other evidence and non-DICOM fail."""

from __future__ import annotations

import pytest
from components import require

require("pydicom", "pip install 'residency-sdk[dicom]'")

from deid_samples import (  # noqa: E402
    ACCESSION,
    PATIENT_ID,
    PATIENT_NAME,
    ct_series,
    read,
    sample_file,
    to_bytes,
    with_trailing_private_group,
)

from residency_sdk.deid import (  # noqa: E402
    DeidKey,
    check_dicom,
    deidentify_dicom,
    external_evidence,
    is_dicom,
)
from residency_sdk.errors import InputError, NotDicom  # noqa: E402

KEY = DeidKey("k", b"c" * 32)


def test_original_fails_naming_the_attributes() -> None:
    data = ct_series(1)[0]
    check = check_dicom(data)
    assert not check.ok and check.is_dicom
    for keyword in ("PatientName", "PatientID", "AccessionNumber", "PatientBirthDate",
                    "ReferencedPatientSequence", "private tag (0009,1001)"):
        assert keyword in check.found, keyword
    assert any(p.startswith("PatientName (0010,0010) has a value") for p in check.problems)
    assert any("PatientIdentityRemoved (0012,0062) is not YES" in p for p in check.problems)
    # nested ones are reported where they are
    assert any("in AnatomicRegionSequence: in AnatomicRegionModifierSequence: " in p
               for p in check.problems)
    text = " ".join(check.problems + check.found)
    for value in ("Doe", "Johanna", PATIENT_ID, ACCESSION):
        assert value not in text, value


def test_pydicom_sample_lists_patient_name_and_id() -> None:
    check = check_dicom(sample_file("CT_small.dcm"))
    assert {"PatientName", "PatientID"} <= set(check.found)


def test_output_passes_with_and_without_evidence() -> None:
    for data in (ct_series(1)[0], with_trailing_private_group(ct_series(1)[0])):
        result = deidentify_dicom(data, tenant="t", key=KEY)
        assert check_dicom(result.data, evidence=result.evidence).ok
        check = check_dicom(result.data)
        assert check.ok and bool(check) and not check.found, check.problems


def test_evidence_of_other_bytes_fails() -> None:
    a = deidentify_dicom(ct_series(1)[0], tenant="t", key=KEY)
    b = deidentify_dicom(ct_series(1)[0], tenant="t", key=KEY)
    check = check_dicom(a.data, evidence=b.evidence)
    assert not check.ok
    assert any("evidence is about other bytes" in p for p in check.problems)
    ext = external_evidence(a.data, tenant_id="t", method="manual", tool="x")
    assert any("not a DICOM de-identification" in p
               for p in check_dicom(a.data, evidence=ext).problems)


def test_name_put_back_after_deidentification_fails() -> None:
    result = deidentify_dicom(ct_series(1)[0], tenant="t", key=KEY)
    ds = read(result.data)
    ds.PatientName = PATIENT_NAME
    ds.add_new(0x00111001, "LO", "private again")
    ds.PatientID = "PID-REAL"  # D attribute: only the dummy passes
    check = check_dicom(to_bytes(ds))
    assert not check.ok
    assert {"PatientName", "PatientID", "private tag (0011,1001)"} <= set(check.found)


def test_missing_patient_identity_removed_fails() -> None:
    result = deidentify_dicom(ct_series(1)[0], tenant="t", key=KEY)
    ds = read(result.data)
    del ds.PatientIdentityRemoved
    check = check_dicom(to_bytes(ds))
    assert not check.ok and check.found == ()
    assert check.problems == ("PatientIdentityRemoved (0012,0062) is not YES: the object "
                              "does not say it was de-identified",)


def test_not_dicom() -> None:
    assert not is_dicom(b"%PDF-1.7 " + b"x" * 200)
    assert not is_dicom(b"\0" * 128 + b"DIC")
    assert is_dicom(b"\0" * 128 + b"DICM")
    check = check_dicom(b"hello, world")
    assert not check.ok and not check.is_dicom
    # a file meta whose transfer syntax element is cut short
    garbage = b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\x40\x001.2"
    broken = check_dicom(garbage)
    assert not broken.ok and broken.is_dicom and "does not parse" in broken.problems[0]
    with pytest.raises(NotDicom, match="not a DICOM Part 10 file") as err:
        deidentify_dicom(b"name,id\nDoe,1\n", tenant="t", key=KEY)
    assert isinstance(err.value, InputError) and "external_evidence" in str(err.value)
    with pytest.raises(NotDicom, match="does not parse"):
        deidentify_dicom(garbage, tenant="t", key=KEY)
    with pytest.raises(InputError, match="expected the object's bytes"):
        deidentify_dicom("a path.dcm", tenant="t", key=KEY)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="unknown de-identification option"):
        deidentify_dicom(ct_series(1)[0], tenant="t", key=KEY,
                         options=["retain_everything"])  # type: ignore[list-item]
