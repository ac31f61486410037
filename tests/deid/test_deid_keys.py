"""Keyed UIDs and per-patient date shifting: consistent across a series and across runs
for one tenant key, different between tenants, and the key never shown."""

from __future__ import annotations

from datetime import date

import pytest
from components import require

require("pydicom", "pip install 'residency-sdk[dicom]'")

from deid_samples import ct_series, generate_uid, multiframe, read  # noqa: E402

from residency_sdk.deid import DeidKey, check_dicom, deidentify_dicom  # noqa: E402
from residency_sdk.errors import InputError  # noqa: E402

KEY_A = DeidKey("tenant-a/1", b"a" * 32)
KEY_B = DeidKey("tenant-b/1", b"b" * 32)
LONG = ["retain_longitudinal_modified_dates"]


def _deid(data: bytes, key: DeidKey = KEY_A, **kw: object) -> object:
    return read(deidentify_dicom(data, tenant="tenant-a", key=key, **kw).data)  # type: ignore[arg-type]


def test_uids_consistent_across_a_series_and_between_runs() -> None:
    series = ct_series(4)
    outs = [_deid(s) for s in series]
    origs = [read(s) for s in series]
    assert len({o.StudyInstanceUID for o in outs}) == 1  # type: ignore[attr-defined]
    assert len({o.SeriesInstanceUID for o in outs}) == 1  # type: ignore[attr-defined]
    assert len({o.FrameOfReferenceUID for o in outs}) == 1  # type: ignore[attr-defined]
    assert len({o.SOPInstanceUID for o in outs}) == 4  # type: ignore[attr-defined]
    for orig, out in zip(origs, outs, strict=True):
        assert out.StudyInstanceUID != orig.StudyInstanceUID  # type: ignore[attr-defined]
        assert out.StudyInstanceUID.startswith("2.25.")  # type: ignore[attr-defined]
        assert len(out.SOPInstanceUID) <= 64  # type: ignore[attr-defined]
    # a second run (tomorrow, another process) gives the same UIDs
    again = _deid(series[2])
    assert again.SOPInstanceUID == outs[2].SOPInstanceUID  # type: ignore[attr-defined]
    assert again.StudyInstanceUID == outs[0].StudyInstanceUID  # type: ignore[attr-defined]


def test_references_follow_the_mapping() -> None:
    data = multiframe()
    orig, out = read(data), _deid(data)
    src = orig.PerFrameFunctionalGroupsSequence[1].DerivationImageSequence[0] \
        .SourceImageSequence[0].ReferencedSOPInstanceUID
    new = out.PerFrameFunctionalGroupsSequence[1].DerivationImageSequence[0] \
        .SourceImageSequence[0].ReferencedSOPInstanceUID  # type: ignore[attr-defined]
    assert new == KEY_A.map_uid(src)


def test_uids_differ_between_tenants() -> None:
    data = ct_series(1)[0]
    a, b = _deid(data, KEY_A), _deid(data, KEY_B)
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                    "FrameOfReferenceUID"):
        assert getattr(a, keyword) != getattr(b, keyword), keyword


def _days(a: str, b: str) -> int:
    return (date(int(a[:4]), int(a[4:6]), int(a[6:8]))
            - date(int(b[:4]), int(b[4:6]), int(b[6:8]))).days


def test_dates_shift_by_one_offset_per_patient() -> None:
    first = ct_series(2, study_date="20250102", pid="PAT-1")
    second = ct_series(1, study_date="20260310", pid="PAT-1")  # same patient, later study
    other = ct_series(1, study_date="20250102", pid="PAT-2")
    out1 = [_deid(s, options=LONG) for s in first]
    out2 = _deid(second[0], options=LONG)
    out3 = _deid(other[0], options=LONG)
    offset = _days(out1[0].StudyDate, "20250102")  # type: ignore[attr-defined]
    assert offset == KEY_A.date_offset_days("PAT-1", "CHARITE") < 0
    assert {_days(o.StudyDate, "20250102") for o in out1} == {offset}  # type: ignore[attr-defined]
    # the interval between the patient's studies survives
    assert _days(out2.StudyDate, out1[0].StudyDate) == _days("20260310", "20250102")  # type: ignore[attr-defined]
    # another patient moves by another offset
    assert _days(out3.StudyDate, "20250102") != offset  # type: ignore[attr-defined]
    # DT keeps its time part, TM is kept, the birth date is still emptied
    assert out1[0].AcquisitionDateTime.endswith("101212.000000")  # type: ignore[attr-defined]
    assert out1[0].StudyTime == "101010"  # type: ignore[attr-defined]
    assert not out1[0].PatientBirthDate  # type: ignore[attr-defined]
    # recorded in the object and the evidence
    assert out1[0].LongitudinalTemporalInformationModified == "MODIFIED"  # type: ignore[attr-defined]
    assert "113107" in {i.CodeValue for i in out1[0].DeidentificationMethodCodeSequence}  # type: ignore[attr-defined]
    result = deidentify_dicom(first[0], tenant="tenant-a", key=KEY_A, options=LONG)
    assert result.evidence.options == ("retain_longitudinal_modified_dates",)
    # InstanceCreation, Study, Series, Acquisition, Content dates and AcquisitionDateTime
    assert result.evidence.counts.dates_shifted == 6
    assert check_dicom(result.data, evidence=result.evidence).ok
    assert check_dicom(result.data).ok  # options read from the code sequence


def test_per_frame_dates_shift_with_the_patient() -> None:
    out = _deid(multiframe(pid="PAT-9"), options=LONG)
    offset = KEY_A.date_offset_days("PAT-9", "CHARITE")
    for i, frame in enumerate(out.PerFrameFunctionalGroupsSequence):  # type: ignore[attr-defined]
        value = frame.FrameContentSequence[0].FrameAcquisitionDateTime
        assert _days(value, "20260310") == offset
        assert value[8:] == f"101{i}00.000000"


def test_dates_without_the_option_are_dummies_or_empty() -> None:
    out = _deid(ct_series(1)[0])
    assert out.StudyDate == ""  # type: ignore[attr-defined]  # Z
    assert out.SeriesDate == "19000101"  # type: ignore[attr-defined]  # X/D -> D
    assert out.AcquisitionDateTime == "19000101000000"  # type: ignore[attr-defined]


def test_key_is_never_shown_and_must_be_long_enough() -> None:
    key = DeidKey("k-1", b"s3cr3t-s3cr3t-s3cr3t-0123456789ab")
    assert "s3cr3t" not in repr(key) and "s3cr3t" not in str(key)
    with pytest.raises(InputError, match="at least 16 bytes"):
        DeidKey("k-2", b"short")
    with pytest.raises(InputError, match="key_id"):
        DeidKey("", b"x" * 32)


def test_uid_mapping_is_keyed_and_valid() -> None:
    uid = generate_uid()
    mapped = KEY_A.map_uid(uid)
    assert mapped == KEY_A.map_uid(uid) != KEY_B.map_uid(uid)
    assert mapped.startswith("2.25.") and mapped[5:].isdigit() and len(mapped) <= 64
    assert not mapped[5:].startswith("0") or mapped == "2.25.0"
