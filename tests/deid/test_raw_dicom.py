"""A DICOM data set written without the Part 10 header is still DICOM: caller-made
evidence cannot make one carrying the patient's name pass as ``anonymised``."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from components import require
from hypothesis import given, settings
from hypothesis import strategies as st

pydicom = require("pydicom", "pip install 'residency-sdk[dicom]'")
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.filebase import DicomBytesIO  # noqa: E402

import residency_sdk as rs  # noqa: E402
from residency_sdk.anonymised import _looks_like_raw_dicom, intake  # noqa: E402


def _raw(implicit: bool) -> bytes:
    """CT_small's data set (PatientName and all) without preamble, 'DICM' or file meta."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, implicit
    pydicom.filewriter.write_dataset(buf, ds)
    return bytes(buf.getvalue())


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit-vr", "explicit-vr"])
def test_a_raw_dicom_data_set_with_caller_evidence_is_stored_as_phi(
        tmp_path: Path, implicit: bool) -> None:
    raw = _raw(implicit)
    assert not rs.deid.is_dicom(raw[:132])  # no Part 10 header: the side door
    assert str(pydicom.dcmread(io.BytesIO(raw), force=True).PatientName)  # yet a patient
    events: list[rs.AuditEvent] = []
    res = rs.Residency.load(local_root=tmp_path, audit_hooks=[events.append], audit=False)
    tenant = rs.Tenant(id="clinic-raw", country="DE")
    evidence = rs.deid.external_evidence(raw, tenant_id=tenant.id, method="trust me",
                                         tool="caller")
    info = res.storage_for(tenant).put("raw.dcm", raw, data_class="anonymised",
                                       evidence=evidence)
    assert info.data_class == "phi"
    [put] = [e for e in events if e.operation == "put" and e.outcome == "ok"
             and e.object_key == "raw.dcm"]
    assert any("Part 10" in r for r in put.reasons), put.reasons
    # The same bytes as a stream are recognised as well.
    assert intake(io.BytesIO(raw)).kind == "raw_dicom"


def test_a_raw_dicom_data_set_may_not_cross_as_anonymised(tmp_path: Path) -> None:
    res = rs.Residency.load(local_root=tmp_path, audit=False)
    tenant = rs.Tenant(id="clinic-raw2", country="DE")
    raw = _raw(True)
    evidence = rs.deid.external_evidence(raw, tenant_id=tenant.id, method="trust me",
                                         tool="caller")
    with pytest.raises(rs.NotAnonymised, match="Part 10"):
        res.storage_for(rs.Tenant(id="ankara", country="TR")).put(
            "raw.dcm", raw, data_class="anonymised",
            evidence=rs.deid.external_evidence(raw, tenant_id="ankara", method="m",
                                               tool="t"))
    res.storage_for(tenant).put("raw.dcm", raw, data_class="anonymised", evidence=evidence)
    with pytest.raises(rs.TransferBlocked):
        res.transfer(tenant, "raw.dcm", "US", data_class="anonymised")


@pytest.mark.parametrize("text", [
    b"patient_count,site\n3,DE\n", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n",
    b'{"findings": []}', b"\x00" * 200, b"",
])
def test_other_formats_are_not_taken_for_dicom(text: bytes) -> None:
    assert not _looks_like_raw_dicom(text)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=132))
def test_random_bytes_are_rarely_taken_for_dicom(head: bytes) -> None:
    """Two known standard tags in ascending order with sane lengths: random bytes that
    pass would have to start with a real element header; check none of these do by
    re-parsing what the heuristic accepted."""
    if _looks_like_raw_dicom(head):
        ds = pydicom.dcmread(io.BytesIO(head), force=True, stop_before_pixels=True)
        assert len(ds) >= 1
