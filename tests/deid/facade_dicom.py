"""DICOM test objects for the facade, export and CLI tests (generated with pydicom, plus
pydicom's own sample files; nothing is downloaded)."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
PATIENT_NAME = "Mustermann^Erika"
PATIENT_ID = "DE-4711"


def sample(name: str = "CT_small.dcm") -> bytes:
    """A sample file shipped inside pydicom's package (CT_small carries PatientName,
    PatientID and many private attributes)."""
    path = get_testdata_file(name)
    assert path is not None, f"pydicom sample {name} missing"
    return Path(str(path)).read_bytes()


def slice_(study_uid: str, series_uid: str, number: int, *, sop_class: str = CT_IMAGE,
           modality: str = "CT", burned_in: str | None = None,
           patient: str = PATIENT_NAME, patient_id: str = PATIENT_ID) -> bytes:
    """One small image of a study, with identifying attributes, a private tag and a nested
    sequence holding identifiers."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = modality
    ds.PatientName = patient
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19640812"
    ds.StudyDate = "20260301"
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC-991"
    ds.InstitutionName = "Charité Berlin"
    ds.ReferringPhysicianName = "Dr^Who"
    ds.InstanceNumber = number
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    referenced = Dataset()
    referenced.PatientName = patient
    referenced.PatientID = patient_id
    ds.OtherPatientIDsSequence = [referenced]
    block = ds.private_block(0x0011, "ACME RESEARCH", create=True)
    block.add_new(0x01, "LO", f"{patient} scanned on ward 3")
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(range(128))
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def study(slices: int = 3, **kwargs: object) -> list[bytes]:
    """A CT series of ``slices`` images of one patient (one StudyInstanceUID)."""
    study_uid, series_uid = generate_uid(), generate_uid()
    return [slice_(study_uid, series_uid, i + 1, **kwargs) for i in range(slices)]  # type: ignore[arg-type]


def burned_in_capture() -> bytes:
    """A secondary capture flagged BurnedInAnnotation = YES."""
    return slice_(generate_uid(), generate_uid(), 1, sop_class=SECONDARY_CAPTURE,
                  modality="OT", burned_in="YES")


def read(data: bytes) -> Dataset:
    """The dataset of DICOM bytes."""
    return pydicom.dcmread(io.BytesIO(data))
