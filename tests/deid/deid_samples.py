"""DICOM test objects built with pydicom (no download): a CT series with identifiers at
the top level, in nested sequences and in private groups; an MR; a secondary capture with
burned-in annotation; an ultrasound; an enhanced (multi-frame) CT; and the small sample
files shipped inside pydicom's package.

Every object is returned as DICOM Part 10 bytes (what the de-identifier takes).
"""

from __future__ import annotations

import io
import secrets
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"
US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"

PATIENT_NAME = "Doe^Johanna"
PATIENT_ID = "PID-778812"
ACCESSION = "ACC99120"
INSTITUTION = "Charite Berlin Mitte"
OPERATOR = "Mustermann^Erika"

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
"""pydicom's bundled sample files: use only the ones present (no download)."""


def generate_uid() -> str:
    """A fresh UID short enough to append ``.N`` suffixes to (at most 48 characters)."""
    return f"1.2.826.0.1.3680043.8.498.{10**19 + secrets.randbelow(9 * 10**19)}"


def sample_file(name: str) -> bytes:
    """A sample file shipped inside pydicom's package (never downloaded)."""
    path = PYDICOM_FILES / name
    if not path.is_file():
        raise FileNotFoundError(f"{name} is not bundled with this pydicom")
    return path.read_bytes()


def _item(**values: object) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _meta(ds: Dataset, transfer_syntax: str) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    meta.SourceApplicationEntityTitle = "CT_SCANNER_7"
    ds.file_meta = meta
    ds.preamble = b"TIFF-HEADER-WITH-NAME Doe".ljust(128, b"\0")


def to_bytes(ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian) -> bytes:
    """``ds`` as DICOM Part 10 bytes."""
    if not hasattr(ds, "file_meta"):
        _meta(ds, transfer_syntax)
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, implicit_vr=transfer_syntax == ImplicitVRLittleEndian,
                     little_endian=True, enforce_file_format=True)
    return out.getvalue()


def patient_block(ds: Dataset, *, name: str = PATIENT_NAME, pid: str = PATIENT_ID) -> None:
    ds.PatientName = name
    ds.PatientID = pid
    ds.IssuerOfPatientID = "CHARITE"
    ds.PatientBirthDate = "19610412"
    ds.PatientSex = "F"
    ds.PatientAge = "064Y"
    ds.PatientWeight = "71"
    ds.PatientAddress = "Invalidenstrasse 1, Berlin"
    ds.OtherPatientIDs = "OLD-4471"
    ds.PatientComments = "allergic to contrast"


def image_dataset(*, sop_class: str = CT_IMAGE, modality: str = "CT", study_uid: str,
                  series_uid: str, instance: int = 1, study_date: str = "20260310",
                  name: str = PATIENT_NAME, pid: str = PATIENT_ID, rows: int = 16,
                  columns: int = 16, private: bool = True, nested: bool = True) -> Dataset:
    """An image with identifiers everywhere the profile looks."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceCreationDate = study_date
    ds.InstanceCreationTime = "101500"
    ds.StudyDate = study_date
    ds.SeriesDate = study_date
    ds.AcquisitionDate = study_date
    ds.ContentDate = study_date
    ds.StudyTime = "101010"
    ds.SeriesTime = "101111"
    ds.AcquisitionTime = "101212"
    ds.ContentTime = "101313"
    ds.AcquisitionDateTime = study_date + "101212.000000"
    ds.AccessionNumber = ACCESSION
    ds.Modality = modality
    ds.Manufacturer = "ACME Medical"
    ds.InstitutionName = INSTITUTION
    ds.InstitutionAddress = "Chariteplatz 1, Berlin"
    ds.ReferringPhysicianName = "House^Gregory"
    ds.StationName = "CTROOM3"
    ds.StudyDescription = "CT HEAD WO CONTRAST"
    ds.SeriesDescription = "AX BRAIN 5MM"
    ds.ProtocolName = "Head routine for Doe"
    ds.OperatorsName = OPERATOR
    ds.PerformingPhysicianName = "Grey^Meredith"
    ds.ManufacturerModelName = "Scanner 9000"
    ds.DeviceSerialNumber = "SN-55-1234"
    ds.SoftwareVersions = "VA10"
    patient_block(ds, name=name, pid=pid)
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "S-1001"
    ds.SeriesNumber = 3
    ds.InstanceNumber = instance
    ds.FrameOfReferenceUID = study_uid + ".9"
    ds.ImageComments = f"Follow-up for {name.split('^')[0]}"
    ds.ImagePositionPatient = [0.0, 0.0, float(instance)]
    ds.SliceLocation = float(instance)
    if nested:
        ds.ReferencedPatientSequence = Sequence([_item(
            ReferencedSOPClassUID="1.2.840.10008.3.1.2.1.1",
            ReferencedSOPInstanceUID=generate_uid())])
        ds.RequestAttributesSequence = Sequence([_item(
            RequestedProcedureID="RP-4471", ScheduledProcedureStepID="SPS-1",
            AccessionNumber=ACCESSION)])
        ds.ReferencedImageSequence = Sequence([_item(
            ReferencedSOPClassUID=sop_class, ReferencedSOPInstanceUID=study_uid + ".77")])
        # A sequence the table does not list, carrying identifiers two levels deep: the
        # profile must still reach them.
        inner = _item(PatientName=name, OperatorsName=OPERATOR, AccessionNumber=ACCESSION,
                      CodeValue="T-A0100", CodingSchemeDesignator="SRT",
                      CodeMeaning="Brain")
        inner.add_new(0x00291010, "LO", "private inner")
        ds.AnatomicRegionSequence = Sequence([_item(
            CodeValue="T-D1100", CodingSchemeDesignator="SRT", CodeMeaning="Head",
            AnatomicRegionModifierSequence=Sequence([inner]))])
    if private:
        ds.add_new(0x00090010, "LO", "ACME PRIVATE")
        ds.add_new(0x00091001, "LO", f"{name} private copy")
        ds.add_new(0x00091002, "SQ", Sequence([_item(PatientID=pid)]))
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = bytes((instance + i) % 251 for i in range(rows * columns * 2))
    return ds


def ct_series(n: int = 3, *, study_uid: str | None = None, series_uid: str | None = None,
              study_date: str = "20260310", name: str = PATIENT_NAME,
              pid: str = PATIENT_ID, **kw: object) -> list[bytes]:
    """``n`` CT slices of one series (same study and series UIDs)."""
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    return [to_bytes(image_dataset(study_uid=study_uid, series_uid=series_uid,
                                   instance=i + 1, study_date=study_date, name=name,
                                   pid=pid, **kw))  # type: ignore[arg-type]
            for i in range(n)]


def mr_object() -> bytes:
    """An MR image, implicit VR little endian."""
    ds = image_dataset(sop_class=MR_IMAGE, modality="MR", study_uid=generate_uid(),
                       series_uid=generate_uid())
    ds.MagneticFieldStrength = "3"
    ds.SequenceName = "*tse2d1_15"
    return to_bytes(ds, ImplicitVRLittleEndian)


def secondary_capture(*, burned_in: str | None = "YES", modality: str = "OT") -> bytes:
    """A secondary capture (e.g. a dose report screen) flagged BurnedInAnnotation."""
    ds = image_dataset(sop_class=SC_IMAGE, modality=modality, study_uid=generate_uid(),
                       series_uid=generate_uid())
    ds.ConversionType = "WSD"
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    return to_bytes(ds)


def ultrasound() -> bytes:
    """An ultrasound image (no BurnedInAnnotation attribute at all)."""
    return to_bytes(image_dataset(sop_class=US_IMAGE, modality="US",
                                  study_uid=generate_uid(), series_uid=generate_uid()))


def ct_with_burned_in(value: str) -> bytes:
    """A CT image whose BurnedInAnnotation is ``value``."""
    ds = image_dataset(study_uid=generate_uid(), series_uid=generate_uid())
    ds.BurnedInAnnotation = value
    return to_bytes(ds)


def multiframe(frames: int = 4, *, pid: str = PATIENT_ID) -> bytes:
    """An enhanced CT with per-frame functional groups carrying dates and references."""
    study_uid = generate_uid()
    ds = image_dataset(sop_class=ENHANCED_CT, study_uid=study_uid, series_uid=generate_uid(),
                       pid=pid, nested=False)
    del ds.SliceLocation
    del ds.ImagePositionPatient
    ds.NumberOfFrames = frames
    ds.DimensionOrganizationSequence = Sequence([_item(
        DimensionOrganizationUID=study_uid + ".5")])
    ds.SharedFunctionalGroupsSequence = Sequence([_item(
        PixelMeasuresSequence=Sequence([_item(PixelSpacing=[0.5, 0.5],
                                              SliceThickness="1")]))])
    ds.PerFrameFunctionalGroupsSequence = Sequence([
        _item(FrameContentSequence=Sequence([_item(
            FrameAcquisitionDateTime=f"20260310101{i}00.000000",
            FrameReferenceDateTime=f"20260310101{i}00.000000",
            FrameAcquisitionNumber=i + 1)]),
              PlanePositionSequence=Sequence([_item(
                  ImagePositionPatient=[0.0, 0.0, float(i)])]),
              DerivationImageSequence=Sequence([_item(SourceImageSequence=Sequence([_item(
                  ReferencedSOPClassUID=CT_IMAGE,
                  ReferencedSOPInstanceUID=f"{study_uid}.{i}")]))]))
        for i in range(frames)])
    ds.PixelData = bytes(i % 199 for i in range(ds.Rows * ds.Columns * 2 * frames))
    return to_bytes(ds)


def with_trailing_private_group(data: bytes) -> bytes:
    """``data`` with a private group after the pixel data (forces the whole-object path)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.add_new(0x7FE10010, "LO", "ACME TRAILER")
    ds.add_new(0x7FE11001, "LO", f"{PATIENT_NAME} after pixels")
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds)
    return out.getvalue()


def read(data: bytes) -> Dataset:
    """Parse Part 10 bytes."""
    return pydicom.dcmread(io.BytesIO(data))
