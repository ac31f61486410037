"""``anonymised.verify`` (promise MV-10) at its edges: which evidence goes to the DICOM
content check and which is checked against the bytes here, the exact reason each failure
gives (the audit event and ``NotAnonymised`` repeat it), and what a verdict carries.

A passing verdict keeps the evidence it relied on; a failing one keeps none, so nothing
downstream can show evidence for data that was treated as ``phi``.
"""

from __future__ import annotations

import hashlib

from components import require

pydicom = require("pydicom", "pip install 'residency-sdk[dicom]'")
from facade_dicom import study  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.filebase import DicomBytesIO  # noqa: E402

from residency_sdk.anonymised import intake, verify  # noqa: E402
from residency_sdk.deid import DeidKey, deidentify_dicom, external_evidence  # noqa: E402
from residency_sdk.deid.evidence import Evidence  # noqa: E402

TENANT = "clinic-verify"
KEY = DeidKey("k", b"v" * 32)
REPORT = b"Findings: no focal lesion. Impression: normal study.\n"
OTHER_SHA = "0" * 64

NO_EVIDENCE = (
    "not a DICOM Part 10 object, so the SDK cannot check its content, and no evidence was "
    "given: pass evidence= (rs.deid.external_evidence(data, ...) recording your "
    "de-identification step) or declare it phi/personal")
RAW_DICOM = (
    "a DICOM data set without the Part 10 header (no preamble and 'DICM'): the SDK checks "
    "DICOM content only in Part 10 form, and evidence cannot vouch for DICOM content; "
    "de-identify it with rs.deid.deidentify_dicom (which writes Part 10) and store that")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _external(data: bytes, tenant_id: str = TENANT) -> Evidence:
    return external_evidence(data, tenant_id=tenant_id, method="manual redaction",
                             tool="report-scrubber 2.1")


def _deidentified() -> tuple[bytes, Evidence]:
    result = deidentify_dicom(study(1)[0], tenant=TENANT, key=KEY)
    return result.data, result.evidence


def _raw_dicom() -> bytes:
    """CT_small's data set written without preamble, 'DICM' or file meta."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    pydicom.filewriter.write_dataset(buf, ds)
    return bytes(buf.getvalue())


# --- data the SDK cannot read: evidence bound to the bytes, or nothing --------------------


def test_a_report_without_evidence_fails_saying_what_to_pass() -> None:
    verdict = verify(intake(REPORT), tenant_id=TENANT)
    assert not verdict.ok
    assert verdict.problems == (NO_EVIDENCE,)
    assert (verdict.kind, verdict.sha256, verdict.found, verdict.evidence) == (
        "other", _sha(REPORT), (), None)


def test_a_report_with_evidence_bound_to_its_bytes_passes_and_keeps_the_evidence() -> None:
    evidence = _external(REPORT)
    verdict = verify(intake(REPORT), tenant_id=TENANT, evidence=evidence)
    assert verdict.ok and verdict.problems == ()
    assert verdict.evidence is evidence
    assert (verdict.kind, verdict.sha256, verdict.found) == ("other", _sha(REPORT), ())


def test_a_report_with_evidence_about_other_bytes_fails_and_keeps_no_evidence() -> None:
    evidence = _external(b"a different report")
    verdict = verify(intake(REPORT), tenant_id=TENANT, evidence=evidence)
    assert not verdict.ok and verdict.evidence is None
    assert verdict.problems == (
        f"the evidence is about other bytes (its output sha256 {evidence.output_sha256} "
        f"is not the data's {_sha(REPORT)})",)


def test_evidence_of_another_tenant_fails_naming_both_tenants() -> None:
    verdict = verify(intake(REPORT), tenant_id=TENANT, evidence=_external(REPORT, "other"))
    assert not verdict.ok and verdict.evidence is None
    assert verdict.problems == (f"the evidence is tenant 'other''s, not {TENANT!r}'s",)


def test_a_missing_evidence_record_is_the_only_reason_given() -> None:
    """An object that names an evidence record that cannot be read fails for that reason
    (not for 'no evidence was given')."""
    verdict = verify(intake(REPORT), tenant_id=TENANT, evidence_problem="record gone")
    assert not verdict.ok and verdict.problems == ("record gone",)


def test_a_raw_dicom_data_set_fails_even_with_evidence_bound_to_its_bytes() -> None:
    raw = _raw_dicom()
    verdict = verify(intake(raw), tenant_id=TENANT, evidence=_external(raw))
    assert not verdict.ok and verdict.evidence is None
    assert verdict.problems == (RAW_DICOM,)
    assert (verdict.kind, verdict.sha256) == ("raw_dicom", _sha(raw))


# --- DICOM Part 10: the content check, and which evidence it reads ------------------------


def test_a_deidentified_dicom_with_its_evidence_passes_keeping_the_evidence() -> None:
    data, evidence = _deidentified()
    verdict = verify(intake(data), tenant_id=TENANT, evidence=evidence)
    assert verdict.ok and verdict.problems == () and verdict.found == ()
    assert verdict.evidence is evidence
    assert (verdict.kind, verdict.sha256) == ("dicom", _sha(data))


def test_dicom_evidence_is_checked_by_the_content_check_once() -> None:
    """DICOM evidence about other bytes fails in check_dicom (its wording), and only
    there: the same mismatch is not reported twice."""
    data, evidence = _deidentified()
    wrong = evidence.model_copy(update={"output_sha256": OTHER_SHA})
    verdict = verify(intake(data), tenant_id=TENANT, evidence=wrong)
    assert not verdict.ok and verdict.evidence is None
    assert verdict.problems == (
        f"the evidence is about other bytes (its output sha256 {OTHER_SHA} differs from "
        f"this object's {_sha(data)})",)


def test_external_evidence_on_dicom_is_bound_to_the_bytes_here_and_content_still_checked(
        ) -> None:
    """External evidence is not DICOM evidence: the content check runs on its own and the
    evidence must still be about these bytes."""
    data, _ = _deidentified()
    evidence = _external(data)
    passed = verify(intake(data), tenant_id=TENANT, evidence=evidence)
    assert passed.ok and passed.evidence is evidence and passed.problems == ()
    stale = _external(b"not these bytes")
    failed = verify(intake(data), tenant_id=TENANT, evidence=stale)
    assert not failed.ok and failed.evidence is None
    assert failed.problems == (
        f"the evidence is about other bytes (its output sha256 {stale.output_sha256} is "
        f"not the data's {_sha(data)})",)


def test_identifying_dicom_with_matching_external_evidence_still_fails_on_content() -> None:
    original = study(1)[0]
    verdict = verify(intake(original), tenant_id=TENANT, evidence=_external(original))
    assert not verdict.ok and verdict.evidence is None
    assert {"PatientName", "PatientID"} <= set(verdict.found)
    assert verdict.kind == "dicom"
