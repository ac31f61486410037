"""The Basic Profile is applied as the table says: every tabled attribute an object carries
is removed, emptied, replaced or kept per its action, at the top level and in nested
sequences, under each option set. The expectations are computed here from the table and
the key, independently of the de-identifier's own walk."""

from __future__ import annotations

import warnings
from datetime import date, timedelta
from typing import Any

import pytest
from components import missing, require

pydicom = require("pydicom", "pip install 'residency-sdk[dicom]'")

from deid_samples import (  # noqa: E402
    PATIENT_ID,
    PATIENT_NAME,
    ct_series,
    mr_object,
    multiframe,
    read,
    sample_file,
    secondary_capture,
    to_bytes,
    with_trailing_private_group,
)
from pydicom.datadict import dictionary_VR  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402

from residency_sdk.deid import BASIC_PROFILE, DeidKey, check_dicom, deidentify_dicom  # noqa: E402

KEY = DeidKey("tenant-a-key-1", b"A" * 32)
ALL = ("retain_longitudinal_modified_dates", "clean_descriptors", "retain_device_identity")
OPTION_SETS = [(), ("retain_longitudinal_modified_dates",), ("clean_descriptors",),
               ("retain_device_identity",), ALL]
# The dummy of each VR, written down here rather than imported: the test states what a
# replaced value must look like.
DUMMY: dict[str, Any] = {
    **dict.fromkeys(("AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"), "ANONYMIZED"),
    "DA": "19000101", "TM": "000000", "DT": "19000101000000", "AS": "000Y",
    "UR": "http://anonymized.invalid", "DS": "0", "IS": "0",
    **dict.fromkeys(("FD", "FL", "SS", "US", "SL", "UL", "SV", "UV", "AT"), 0),
    **dict.fromkeys(("OB", "OD", "OF", "OL", "OV", "OW", "UN"), b"ANONYMIZED"),
}

# Set by the de-identifier whatever the input held (checked by their own tests).
SET_BY_DEID = {"PatientIdentityRemoved", "DeidentificationMethod", "BurnedInAnnotation",
               "DeidentificationMethodCodeSequence", "LongitudinalTemporalInformationModified"}


def _plain(value: Any) -> Any:
    if isinstance(value, bytes | str | int | float) or value is None:
        return value
    if isinstance(value, list) or type(value).__name__ == "MultiValue":
        return [_plain(v) for v in value]
    return str(value)


def _empty(el: Any) -> bool:
    return el.value in (None, "", b"") or (not isinstance(el.value, str | bytes)
                                            and len(el.value) == 0)


def _shifted(value: str, days: int) -> str:
    d = date(int(value[:4]), int(value[4:6]), int(value[6:8])) + timedelta(days=days)
    return d.strftime("%Y%m%d") + value[8:]


class Verifier:
    """Walks the original and the output side by side and checks each element."""

    def __init__(self, options: tuple[str, ...], key: DeidKey, offset: int | None) -> None:
        self.table = BASIC_PROFILE.actions(options)
        self.key = key
        self.offset = offset
        self.checked: list[str] = []

    def basic(self, orig: Any, out_ds: Dataset, action: str, dummy: bool) -> None:
        tag = orig.tag
        if action == "X":
            assert tag not in out_ds, f"{orig.keyword} should be removed"
        elif action == "Z":
            assert tag in out_ds and _empty(out_ds[tag]), f"{orig.keyword} should be empty"
        elif action in ("D", "U"):
            out = out_ds[tag]
            if orig.VR == "SQ":
                assert len(out.value) == len(orig.value)
                for a, b in zip(orig.value, out.value, strict=True):
                    self.run(a, b, dummy=dummy or action == "D")
            elif orig.VR == "UI":
                olds = orig.value if isinstance(orig.value, list) or \
                    type(orig.value).__name__ == "MultiValue" else [orig.value]
                news = [str(v) for v in (out.value if len(olds) > 1 else [out.value])]
                assert news == [self.key.map_uid(str(v)) for v in olds], orig.keyword
            else:
                assert action == "D", f"U on {orig.VR}"
                values = out.value if type(out.value).__name__ == "MultiValue" else [out.value]
                assert all(_plain(v) == DUMMY[orig.VR] for v in values), \
                    f"{orig.keyword} should be the {orig.VR} dummy"
        else:
            raise AssertionError(action)

    def run(self, orig_ds: Dataset, out_ds: Dataset, dummy: bool = False) -> None:
        for orig in orig_ds:
            tag = orig.tag
            if tag.is_private:
                assert tag not in out_ds, f"private {tag} should be removed"
                continue
            if tag.element == 0 or orig.keyword in SET_BY_DEID:
                continue
            hit = self.table.get(int(tag))
            if hit is None:
                assert tag in out_ds, f"{orig.keyword} (not tabled) should be kept"
                out = out_ds[tag]
                if orig.VR == "SQ":
                    for a, b in zip(orig.value, out.value, strict=True):
                        self.run(a, b, dummy)
                elif dummy and orig.VR != "UI":
                    assert _plain(out.value) == DUMMY.get(orig.VR, b"ANONYMIZED"), \
                        f"{orig.keyword} inside a D sequence should be a dummy"
                elif not dummy:
                    assert _plain(out.value) == _plain(orig.value), orig.keyword
                continue
            action, attribute = hit
            self.checked.append(attribute.keyword)
            if action == "K":
                out = out_ds[tag]
                if orig.VR == "SQ":
                    for a, b in zip(orig.value, out.value, strict=True):
                        self.run(a, b, dummy)
                else:
                    assert _plain(out.value) == _plain(orig.value), f"{orig.keyword} kept"
            elif action == "S":
                assert self.offset is not None
                if orig.VR in ("DA", "DT") and orig.value:
                    assert str(out_ds[tag].value) == _shifted(str(orig.value), self.offset), \
                        f"{orig.keyword} should be shifted by {self.offset} days"
                elif orig.VR == "TM":
                    assert str(out_ds[tag].value) == str(orig.value)
            elif action == "C":
                if tag in out_ds and not _empty(out_ds[tag]) and \
                        _plain(out_ds[tag].value) == _plain(orig.value):
                    continue  # kept as clean
                self.basic(orig, out_ds, attribute.basic, dummy)
            else:
                self.basic(orig, out_ds, action, dummy)


def verify(data: bytes, options: tuple[str, ...] = (), key: DeidKey = KEY,
           **kw: Any) -> tuple[Dataset, Verifier]:
    orig = read(data)
    result = deidentify_dicom(data, tenant="tenant-a", key=key, options=options, **kw)
    out = read(result.data)
    offset = None
    if "retain_longitudinal_modified_dates" in options:
        # documented anchor: the PatientID, else the study, else the instance
        anchor = (str(orig.get("PatientID", "")) or str(orig.get("StudyInstanceUID", ""))
                  or str(orig.get("SOPInstanceUID", "")))
        offset = key.date_offset_days(anchor, str(orig.get("IssuerOfPatientID", "")))
    verifier = Verifier(options, key, offset)
    verifier.run(orig, out)
    # The file meta: the instance UID is mapped like the dataset's, AE titles are gone.
    assert out.file_meta.MediaStorageSOPInstanceUID == key.map_uid(
        orig.file_meta.MediaStorageSOPInstanceUID)
    assert "SourceApplicationEntityTitle" not in out.file_meta
    assert out.preamble == b"\0" * 128
    assert out.PatientIdentityRemoved == "YES"
    assert check_dicom(result.data, evidence=result.evidence).ok
    return out, verifier


def _value_for(vr: str, i: int) -> Any:
    text = {"PN": "Doe^Jane", "DA": "20200102", "TM": "101010", "DT": "20200102101010",
            "AS": "030Y", "DS": "1.5", "IS": "7", "AE": "AET7", "CS": "VAL7",
            "UR": "http://example.org/doe", "UI": f"1.2.826.0.1.3680043.10.{i + 1}"}
    if vr in text:
        return text[vr]
    if vr in ("LO", "SH", "ST", "LT", "UT", "UC"):
        return f"Doe note {i}"  # repeats the patient's family name: never clean
    if vr in ("US", "SS", "UL", "SL", "FL", "FD", "SV", "UV"):
        return 5
    if vr == "AT":
        return 0x00100010
    if vr == "SQ":
        inner = Dataset()
        inner.PatientName = "Doe^Jane"
        inner.CodeValue = "X1"
        return Sequence([inner])
    return b"\x01\x02"  # OB, OW, UN, ...


def kitchen_sink() -> tuple[bytes, list[str]]:
    """One object carrying every attribute of the table that can live in a dataset (not
    the command group 0000 or the file meta 0002): built from the table itself."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.10.999"
    ds.Modality = "CT"
    carried = []
    for i, attribute in enumerate(BASIC_PROFILE.attributes):
        if "x" in attribute.tag:
            group = int(attribute.tag[:2] + "00", 16)
            elem = int(attribute.tag[4:].replace("x", "0"), 16) or 0x3000
            ds.add_new(group << 16 | elem, "OB" if elem == 0x3000 else "LT",
                       b"\x01\x02" if elem == 0x3000 else "overlay comment Doe")
            carried.append(attribute.keyword)
            continue
        tag = int(attribute.tag, 16)
        if tag >> 16 in (0x0000, 0x0002) or tag in ds:
            continue
        try:
            vr = dictionary_VR(tag).split(" or ")[0]
        except KeyError:
            vr = "UN" if attribute.vr is None else attribute.vr
        ds.add_new(tag, vr, _value_for(vr, i))
        carried.append(attribute.keyword)
    ds.PatientID = PATIENT_ID
    ds.PatientName = PATIENT_NAME
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dummy test values need not be valid for the IOD
        return to_bytes(ds), carried


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: "+".join(o) or "basic")
def test_every_tabled_attribute_follows_the_table(options: tuple[str, ...]) -> None:
    data, carried = kitchen_sink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, verifier = verify(data, options)
    # every row of the table (bar the command and file meta groups) was carried and checked
    assert len(carried) > 600
    assert set(carried) <= set(verifier.checked)


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: "+".join(o) or "basic")
def test_test_objects_follow_the_table(options: tuple[str, ...]) -> None:
    objects = {"ct": ct_series(1)[0], "mr": mr_object(), "multiframe": multiframe(),
               "trailing-private": with_trailing_private_group(ct_series(1)[0])}
    for name, data in objects.items():
        out, verifier = verify(data, options)
        for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "SOPInstanceUID"):
            assert keyword in verifier.checked, (name, keyword)
        assert "PatientName" not in out or not out.PatientName, name


def test_secondary_capture_with_cleaned_pixels_follows_the_table() -> None:
    out, _ = verify(secondary_capture(), ALL, pixels_cleaned=True)
    assert out.BurnedInAnnotation == "NO"


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm",
                                  "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
                                  "image_dfl.dcm", "test-SR.dcm", "nested_priv_SQ.dcm",
                                  "rtdose.dcm"])
def test_pydicom_sample_files_follow_the_table(name: str) -> None:
    try:
        data = sample_file(name)
    except FileNotFoundError:
        # Every name here ships inside pydicom 3.0 (pydicom/data/test_files); one missing
        # means another pydicom, not a choice to test less.
        missing(f"{name} is not bundled with pydicom {pydicom.__version__}",
                "pip install 'pydicom>=3.0,<3.1' (the samples of the dicom extra)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Some samples are secondary captures (refused without it): the table's actions
        # are what this test is about.
        verify(data, (), pixels_cleaned=True)
        verify(data, ALL, pixels_cleaned=True)


def test_nested_identifiers_are_reached() -> None:
    data = ct_series(1)[0]
    out = read(deidentify_dicom(data, tenant="tenant-a", key=KEY).data)
    assert "ReferencedPatientSequence" not in out  # X
    assert "RequestAttributesSequence" not in out  # X
    inner = out.AnatomicRegionSequence[0].AnatomicRegionModifierSequence[0]
    assert not inner.PatientName  # Z, two levels inside an untabled sequence
    assert not inner.AccessionNumber
    assert inner.OperatorsName == "ANONYMIZED"
    assert inner.CodeMeaning == "Brain"  # untabled: kept
    assert 0x00291010 not in inner  # private, nested
    ref = out.ReferencedImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == KEY.map_uid(
        read(data).ReferencedImageSequence[0].ReferencedSOPInstanceUID)


def test_pixel_data_is_carried_byte_for_byte() -> None:
    for data in (ct_series(1)[0], mr_object(), multiframe()):
        assert read(deidentify_dicom(data, tenant="t", key=KEY).data).PixelData == \
            read(data).PixelData


def test_device_identity_option_keeps_the_equipment() -> None:
    data = ct_series(1)[0]
    basic = read(deidentify_dicom(data, tenant="t", key=KEY).data)
    kept = read(deidentify_dicom(data, tenant="t", key=KEY,
                                 options=["retain_device_identity"]).data)
    assert basic.DeviceSerialNumber == "ANONYMIZED" and basic.StationName == "ANONYMIZED"
    assert kept.DeviceSerialNumber == "SN-55-1234" and kept.StationName == "CTROOM3"
    assert "113109" in {i.CodeValue for i in kept.DeidentificationMethodCodeSequence}


def test_clean_descriptors_keeps_only_descriptors_without_identifiers() -> None:
    data = ct_series(1)[0]
    basic = read(deidentify_dicom(data, tenant="t", key=KEY).data)
    clean = read(deidentify_dicom(data, tenant="t", key=KEY,
                                  options=["clean_descriptors"]).data)
    assert "SeriesDescription" not in basic and "StudyDescription" not in basic
    assert clean.SeriesDescription == "AX BRAIN 5MM"
    assert clean.StudyDescription == "CT HEAD WO CONTRAST"
    # "Follow-up for Doe" / "Head routine for Doe" repeat the patient's name: not clean
    assert "ImageComments" not in clean
    assert clean.ProtocolName == "ANONYMIZED"
    assert "113105" in {i.CodeValue for i in clean.DeidentificationMethodCodeSequence}


@pytest.mark.parametrize("text", ["Study 20260310", "CT 10.03.26", "call 0301234567",
                                  "dr.x@clinic.de", "Doe^Jane"])
def test_clean_descriptors_rejects_dates_numbers_and_names(text: str) -> None:
    ds = read(ct_series(1)[0])
    ds.SeriesDescription = text
    out = read(deidentify_dicom(to_bytes(ds), tenant="t", key=KEY,
                                options=["clean_descriptors"]).data)
    assert "SeriesDescription" not in out


def test_method_attributes_are_set() -> None:
    out = read(deidentify_dicom(ct_series(1)[0], tenant="t", key=KEY).data)
    assert out.PatientIdentityRemoved == "YES"
    assert "Basic Profile 2026c" in out.DeidentificationMethod
    codes = [(i.CodeValue, i.CodingSchemeDesignator) for i in
             out.DeidentificationMethodCodeSequence]
    assert codes == [("113100", "DCM")]
    assert out.LongitudinalTemporalInformationModified == "REMOVED"
