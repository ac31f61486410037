"""Every action of the walk, on plain values and on sequences, with the exact counts the
evidence records.

A small profile table (the format of ``ps3_15_annex_e.json``, loaded with
``Profile.from_dict``) gives each attribute of a hand-built object one known action, so
the expected output and the expected :class:`AttributeCounts` are written down here by
hand: clean (C) on a descriptor that passes, one that fails (falls back to the basic
action) and one without a value; clean on a sequence (a site's table can say so: its items
are walked); shift (S) of a date, a time, an unshiftable date-time (falls back to the basic
action) and an attribute whose basic action is S itself (falls back to D); X, Z, D, U and K
on values and on sequences, with a D sequence passing "replace everything" down into the
K, U and C sequences nested in it.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from components import require

pydicom = require("pydicom", "pip install 'residency-sdk[dicom]'")

from deid_samples import read, to_bytes  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402

from residency_sdk.deid import DeidKey, Profile, deidentify_dicom  # noqa: E402

KEY = DeidKey("walk-key-1", b"W" * 32)
SHIFT = ("retain_longitudinal_modified_dates",)
CLEAN = ("clean_descriptors",)
PATIENT_ID = "PID-1"
SOP_CLASS = "1.2.840.10008.5.1.4.1.1.2"
SOP_INSTANCE = "1.2.826.0.1.3680043.8.498.1"
STUDY_UID = "1.2.826.0.1.3680043.8.498.2"
REF_UID = "1.2.826.0.1.3680043.8.498.3"


def _row(tag: str, keyword: str, vr: str, basic: str, **options: str) -> dict[str, Any]:
    return {"tag": tag, "keyword": keyword, "vr": vr, "action": basic, "basic": basic,
            **options}


def _profile(*rows: dict[str, Any]) -> Profile:
    return Profile.from_dict({
        "profile": "walk test profile", "edition": "test",
        "source": {"table": "hand-written for tests/deid/test_deid_walk_actions_counts.py"},
        "as_of": "2026-01-01", "review_by": "2027-01-01", "attributes": list(rows)})


def _item(**values: Any) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _object(**values: Any) -> bytes:
    """An object with the given attributes plus the untabled SOP class and instance UIDs
    (two ``kept``) and a file meta whose SourceApplicationEntityTitle is removed (one
    ``removed``)."""
    ds = Dataset()
    ds.SOPClassUID = SOP_CLASS
    ds.SOPInstanceUID = SOP_INSTANCE
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return to_bytes(ds)


def _counts(**given: int) -> dict[str, int]:
    counts = dict.fromkeys(("removed", "emptied", "replaced", "uids_replaced",
                            "dates_shifted", "cleaned", "kept", "private_removed"), 0)
    counts.update(given)
    return counts


def _shifted(value: str) -> str:
    days = KEY.date_offset_days(PATIENT_ID, "")
    moved = date(int(value[:4]), int(value[4:6]), int(value[6:8])) + timedelta(days=days)
    return moved.strftime("%Y%m%d")


# --- clean (C) ------------------------------------------------------------------------

CLEAN_PROFILE = _profile(
    _row("00100010", "PatientName", "PN", "Z"),
    _row("00081030", "StudyDescription", "LO", "X", clean_descriptors="C"),
    _row("0008103E", "SeriesDescription", "LO", "X", clean_descriptors="C"),
    _row("00181030", "ProtocolName", "LO", "Z", clean_descriptors="C"),
    _row("00081110", "ReferencedStudySequence", "SQ", "X", clean_descriptors="C"),
    _row("00081155", "ReferencedSOPInstanceUID", "UI", "U"),
)


def test_clean_keeps_a_passing_descriptor_and_applies_the_basic_action_to_the_others(
        ) -> None:
    result = deidentify_dicom(_object(
        PatientName="Doe^Jane",
        StudyDescription="CT HEAD WO CONTRAST",     # passes: cleaned, kept as it is
        SeriesDescription="Follow-up for Doe",      # repeats the name: basic X, removed
        ProtocolName="",                            # no value: basic Z, emptied
    ), tenant="t", key=KEY, profile=CLEAN_PROFILE, options=CLEAN)
    out = read(result.data)
    assert out.StudyDescription == "CT HEAD WO CONTRAST"
    assert "SeriesDescription" not in out
    assert "ProtocolName" in out and out.ProtocolName in ("", None)
    assert out.PatientName == ""
    assert result.evidence.counts.model_dump() == _counts(
        cleaned=1, removed=1 + 1, emptied=1 + 1, kept=2)


def test_clean_on_a_sequence_walks_its_items_and_counts_the_sequence_as_cleaned() -> None:
    ref = Sequence([_item(ReferencedSOPClassUID=SOP_CLASS, ReferencedSOPInstanceUID=REF_UID)])
    result = deidentify_dicom(_object(ReferencedStudySequence=ref), tenant="t", key=KEY,
                              profile=CLEAN_PROFILE, options=CLEAN)
    out = read(result.data)
    item = out.ReferencedStudySequence[0]
    assert item.ReferencedSOPClassUID == SOP_CLASS               # untabled: kept
    assert item.ReferencedSOPInstanceUID == KEY.map_uid(REF_UID)  # U: keyed UID
    # the sequence (cleaned), its UID (uids_replaced), its class UID and the two
    # top-level UIDs (kept), the meta's application entity title (removed)
    assert result.evidence.counts.model_dump() == _counts(
        cleaned=1, uids_replaced=1, kept=1 + 2, removed=1)


def test_clean_without_the_option_applies_the_basic_action_to_a_sequence() -> None:
    ref = Sequence([_item(ReferencedSOPInstanceUID=REF_UID)])
    result = deidentify_dicom(_object(ReferencedStudySequence=ref), tenant="t", key=KEY,
                              profile=CLEAN_PROFILE)
    assert "ReferencedStudySequence" not in read(result.data)
    assert result.evidence.counts.model_dump() == _counts(removed=1 + 1, kept=2)


# --- shift (S) --------------------------------------------------------------------------

SHIFT_PROFILE = _profile(
    _row("00100020", "PatientID", "LO", "K"),
    _row("00080020", "StudyDate", "DA", "X", retain_longitudinal_modified_dates="S"),
    _row("00080030", "StudyTime", "TM", "X", retain_longitudinal_modified_dates="S"),
    _row("0008002A", "AcquisitionDateTime", "DT", "Z",
         retain_longitudinal_modified_dates="S"),
    _row("00080023", "ContentDate", "DA", "S"),
)


def test_shift_moves_dates_keeps_times_and_falls_back_for_what_it_cannot_shift() -> None:
    result = deidentify_dicom(_object(
        PatientID=PATIENT_ID,
        StudyDate="20200102",            # shifted
        StudyTime="101010",              # a time of day: kept, counted as shifted
        AcquisitionDateTime="2020",      # a year only: not shiftable, basic Z
        ContentDate="20200305",          # basic S itself: shifted
    ), tenant="t", key=KEY, profile=SHIFT_PROFILE, options=SHIFT)
    out = read(result.data)
    assert out.StudyDate == _shifted("20200102") != "20200102"
    assert out.ContentDate == _shifted("20200305")
    assert out.StudyTime == "101010"
    assert out.AcquisitionDateTime in ("", None)
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    assert result.evidence.counts.model_dump() == _counts(
        dates_shifted=3, emptied=1, kept=1 + 2, removed=1)


def test_an_attribute_whose_basic_action_is_shift_gets_a_dummy_without_the_option(
        ) -> None:
    result = deidentify_dicom(_object(
        PatientID=PATIENT_ID, StudyDate="20200102", ContentDate="20200305"),
        tenant="t", key=KEY, profile=SHIFT_PROFILE)
    out = read(result.data)
    assert out.ContentDate == "19000101"     # basic S without shifting: D, the DA dummy
    assert "StudyDate" not in out            # basic X
    assert out.LongitudinalTemporalInformationModified == "REMOVED"
    assert result.evidence.counts.model_dump() == _counts(
        replaced=1, removed=1 + 1, kept=1 + 2)


# --- X, Z, D, U, K on values and sequences ------------------------------------------------

ACTION_PROFILE = _profile(
    _row("00100010", "PatientName", "PN", "Z"),
    _row("00100020", "PatientID", "LO", "D"),
    _row("0020000D", "StudyInstanceUID", "UI", "U"),
    _row("00101040", "PatientAddress", "LO", "X"),
    _row("00080070", "Manufacturer", "LO", "K"),
    _row("00081111", "ReferencedPerformedProcedureStepSequence", "SQ", "X"),
    _row("00101002", "OtherPatientIDsSequence", "SQ", "Z"),
    _row("00400275", "RequestAttributesSequence", "SQ", "D"),
    _row("00081115", "ReferencedSeriesSequence", "SQ", "K"),
    _row("00081140", "ReferencedImageSequence", "SQ", "U"),
    _row("00081120", "ReferencedPatientSequence", "SQ", "X", clean_descriptors="C"),
    _row("00082112", "SourceImageSequence", "SQ", "U"),
    _row("00081032", "ProcedureCodeSequence", "SQ", "K"),
)


def test_remove_empty_replace_and_keep_values_with_exact_counts() -> None:
    result = deidentify_dicom(_object(
        PatientName="Doe^Jane", PatientID=PATIENT_ID, StudyInstanceUID=STUDY_UID,
        PatientAddress="Main Street 1", Manufacturer="ACME"), tenant="t", key=KEY,
        profile=ACTION_PROFILE)
    out = read(result.data)
    assert out.PatientName == ""
    assert out.PatientID == "ANONYMIZED"
    assert out.StudyInstanceUID == KEY.map_uid(STUDY_UID)
    assert "PatientAddress" not in out
    assert out.Manufacturer == "ACME"
    assert result.evidence.counts.model_dump() == _counts(
        emptied=1, replaced=1, uids_replaced=1, removed=1 + 1, kept=1 + 2)


def test_sequences_are_removed_emptied_or_walked_per_their_action_with_exact_counts(
        ) -> None:
    result = deidentify_dicom(_object(
        ReferencedPerformedProcedureStepSequence=Sequence([_item(StudyID="S1")]),
        OtherPatientIDsSequence=Sequence([_item(PatientID="OLD-1")]),
        SourceImageSequence=Sequence([_item(StudyID="S2", PatientName="Doe^Jane")]),
        ProcedureCodeSequence=Sequence([_item(CodeValue="CT01", PatientID=PATIENT_ID)]),
    ), tenant="t", key=KEY, profile=ACTION_PROFILE)
    out = read(result.data)
    assert "ReferencedPerformedProcedureStepSequence" not in out
    assert len(out.OtherPatientIDsSequence) == 0
    source = out.SourceImageSequence[0]
    assert (source.StudyID, source.PatientName) == ("S2", "")
    code = out.ProcedureCodeSequence[0]
    assert (code.CodeValue, code.PatientID) == ("CT01", "ANONYMIZED")
    # removed: the X sequence, the meta title; emptied: the Z sequence, the nested name;
    # replaced: the nested D id; kept: the U and K sequences, their untabled StudyID and
    # CodeValue, the two top-level UIDs
    assert result.evidence.counts.model_dump() == _counts(
        removed=2, emptied=2, replaced=1, kept=2 + 2 + 2)


def test_a_replaced_sequence_replaces_everything_inside_nested_keep_use_and_clean_sequences(
        ) -> None:
    inner = _item(
        StudyID="S1",                                                    # untabled: dummy
        PatientName="Doe^Jane",                                          # tabled Z
        ReferencedSeriesSequence=Sequence([_item(AccessionNumber="A1")]),   # K
        ReferencedImageSequence=Sequence([_item(AccessionNumber="A2")]),    # U
        ReferencedPatientSequence=Sequence([_item(AccessionNumber="A3")]),  # C (option)
    )
    result = deidentify_dicom(_object(RequestAttributesSequence=Sequence([inner])),
                              tenant="t", key=KEY, profile=ACTION_PROFILE, options=CLEAN)
    out = read(result.data)
    got = out.RequestAttributesSequence[0]
    assert got.StudyID == "ANONYMIZED"
    assert got.PatientName == ""
    assert got.ReferencedSeriesSequence[0].AccessionNumber == "ANONYMIZED"
    assert got.ReferencedImageSequence[0].AccessionNumber == "ANONYMIZED"
    assert got.ReferencedPatientSequence[0].AccessionNumber == "ANONYMIZED"
    # replaced: the D sequence, StudyID and the three accession numbers; emptied: the
    # name; kept: the K and U sequences (their items were walked as dummies) and the two
    # top-level UIDs; cleaned: the C sequence; removed: the meta title
    assert result.evidence.counts.model_dump() == _counts(
        replaced=1 + 1 + 3, emptied=1, kept=2 + 2, cleaned=1, removed=1)


@pytest.mark.parametrize("options", [(), CLEAN])
def test_keep_use_and_clean_sequences_outside_a_replaced_one_keep_their_untabled_values(
        options: tuple[str, ...]) -> None:
    result = deidentify_dicom(_object(
        ReferencedSeriesSequence=Sequence([_item(AccessionNumber="A1")]),
        ReferencedImageSequence=Sequence([_item(AccessionNumber="A2")]),
        ReferencedPatientSequence=Sequence([_item(AccessionNumber="A3")]),
    ), tenant="t", key=KEY, profile=ACTION_PROFILE, options=options)
    out = read(result.data)
    assert out.ReferencedSeriesSequence[0].AccessionNumber == "A1"
    assert out.ReferencedImageSequence[0].AccessionNumber == "A2"
    if options:
        assert out.ReferencedPatientSequence[0].AccessionNumber == "A3"
        assert result.evidence.counts.model_dump() == _counts(
            kept=2 + 3 + 2, cleaned=1, removed=1)
    else:  # without clean_descriptors the sequence gets its basic X
        assert "ReferencedPatientSequence" not in out
        assert result.evidence.counts.model_dump() == _counts(kept=2 + 2 + 2, removed=2)


COUNTING_PROFILE = _profile(
    _row("00080020", "StudyDate", "DA", "X", retain_longitudinal_modified_dates="S"),
    _row("00080021", "SeriesDate", "DA", "X", retain_longitudinal_modified_dates="S"),
    _row("00080050", "AccessionNumber", "SH", "D"),
    _row("00080070", "Manufacturer", "LO", "K"),
    _row("00081010", "StationName", "SH", "K"),
    _row("00081030", "StudyDescription", "LO", "X", clean_descriptors="C"),
    _row("0008103E", "SeriesDescription", "LO", "X", clean_descriptors="C"),
    _row("00081110", "ReferencedStudySequence", "SQ", "X", clean_descriptors="C"),
    _row("00100010", "PatientName", "PN", "Z"),
    _row("00100020", "PatientID", "LO", "D"),
    _row("00101000", "OtherPatientIDs", "LO", "X"),
    _row("00101040", "PatientAddress", "LO", "X"),
    _row("00104000", "PatientComments", "LT", "Z"),
    _row("0020000D", "StudyInstanceUID", "UI", "U"),
    _row("0020000E", "SeriesInstanceUID", "UI", "U"),
    _row("00200010", "StudyID", "SH", "U"),
    _row("00200052", "FrameOfReferenceUID", "UI", "D"),
)


def test_every_action_counts_each_attribute_it_touches_not_just_the_first() -> None:
    result = deidentify_dicom(_object(
        StudyDate="20200102", SeriesDate="20200103",
        AccessionNumber="ACC1", PatientID=PATIENT_ID,                # D: replaced
        Manufacturer="ACME", StationName="CT1",                      # K: kept
        StudyDescription="CT HEAD", SeriesDescription="AX BRAIN",    # C: cleaned
        ReferencedStudySequence=Sequence([_item(ReferencedSOPClassUID=SOP_CLASS)]),
        PatientName="Doe^Jane", PatientComments="nervous",          # Z: emptied
        OtherPatientIDs="OLD-1", PatientAddress="Main Street 1",     # X: removed
        StudyInstanceUID=STUDY_UID, SeriesInstanceUID=REF_UID,       # U on UIDs
        StudyID="S1",                                                # U on text: dummy
        FrameOfReferenceUID=STUDY_UID + ".9",                        # D on a UID
    ), tenant="t", key=KEY, profile=COUNTING_PROFILE, options=SHIFT + CLEAN)
    out = read(result.data)
    assert (out.StudyDate, out.SeriesDate) == (_shifted("20200102"), _shifted("20200103"))
    assert (out.AccessionNumber, out.PatientID, out.StudyID) == ("ANONYMIZED",) * 3
    assert (out.Manufacturer, out.StationName) == ("ACME", "CT1")
    assert (out.StudyDescription, out.SeriesDescription) == ("CT HEAD", "AX BRAIN")
    assert out.ReferencedStudySequence[0].ReferencedSOPClassUID == SOP_CLASS
    assert (out.PatientName, out.PatientComments) == ("", "")
    assert "OtherPatientIDs" not in out and "PatientAddress" not in out
    assert out.StudyInstanceUID == KEY.map_uid(STUDY_UID)
    assert out.SeriesInstanceUID == KEY.map_uid(REF_UID)
    assert out.FrameOfReferenceUID == KEY.map_uid(STUDY_UID + ".9")
    assert result.evidence.counts.model_dump() == _counts(
        dates_shifted=2, replaced=2 + 1, uids_replaced=3, cleaned=3, emptied=2,
        removed=2 + 1, kept=2 + 1 + 2)
