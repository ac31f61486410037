"""De-identifying a CT series: a generated 500-slice series of 512 KiB slices (512 x 512,
16-bit, with patient, study, equipment and private attributes like a scanner's), each
slice read from its file and de-identified (Basic Profile, keyed UIDs), on one core;
against pydicom's bare read + write of the same files (the floor any pydicom-based
de-identifier stands on); and ``check_dicom`` of the same files (what the facade pays to
check an object labelled anonymised). Interleaved rounds, medians.

    .venv/bin/python benchmarks/bench_deid.py [--slices 500] [--rounds 5] [--cpu N]
        [--options retain_longitudinal_modified_dates ...] [--dir /dev/shm] [--check]

``--cpu`` pins the process to that CPU (default: the last one it may run on), so the
figure is one core's; ``--check`` exits 1 below the issue's target of 100 slices/s.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from residency_sdk.deid import DeidKey, check_dicom, deidentify_dicom

TARGET_SLICES_PER_S = 100.0
ROWS = COLUMNS = 512  # 512 * 512 * 2 bytes = 512 KiB of pixel data


def _slice(i: int, study: str, series: str, pixels: bytes) -> bytes:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = f"{series}.{i + 1}"
    for kw in ("InstanceCreationDate", "StudyDate", "SeriesDate", "AcquisitionDate",
               "ContentDate"):
        setattr(ds, kw, "20260310")
    for kw in ("InstanceCreationTime", "StudyTime", "SeriesTime", "AcquisitionTime",
               "ContentTime"):
        setattr(ds, kw, "101010")
    ds.AccessionNumber = "ACC99120"
    ds.Modality = "CT"
    ds.Manufacturer = "ACME Medical"
    ds.InstitutionName = "Charite Berlin Mitte"
    ds.ReferringPhysicianName = "House^Gregory"
    ds.StationName = "CTROOM3"
    ds.StudyDescription = "CT HEAD WO CONTRAST"
    ds.SeriesDescription = "AX BRAIN 5MM"
    ds.OperatorsName = "Mustermann^Erika"
    ds.ManufacturerModelName = "Scanner 9000"
    ds.PatientName = "Doe^Johanna"
    ds.PatientID = "PID-778812"
    ds.PatientBirthDate = "19610412"
    ds.PatientSex = "F"
    ds.PatientAge = "064Y"
    ds.DeviceSerialNumber = "SN-55-1234"
    ds.ProtocolName = "Head routine"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.StudyID = "S-1001"
    ds.SeriesNumber = 3
    ds.InstanceNumber = i + 1
    ds.FrameOfReferenceUID = study + ".9"
    ds.ImagePositionPatient = [0.0, 0.0, float(i)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.SliceLocation = float(i)
    ds.SliceThickness = "1"
    ds.KVP = "120"
    ds.ReferencedImageSequence = Sequence([Dataset()])
    ds.ReferencedImageSequence[0].ReferencedSOPClassUID = ds.SOPClassUID
    ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = f"{series}.1"
    for n in range(20):  # scanners write dozens of private attributes
        ds.add_new(0x00090010 if n == 0 else 0x00091000 + n, "LO", f"private value {n}")
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = ROWS, COLUMNS
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
    ds.PixelData = pixels
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def _series(folder: Path, n: int) -> list[Path]:
    study = "1.2.826.0.1.3680043.10.543.1"
    series = study + ".2"
    base = os.urandom(ROWS * COLUMNS * 2)
    paths = []
    for i in range(n):
        path = folder / f"slice-{i:04d}.dcm"
        # a few bytes differ per slice (so no two slices are the same file)
        path.write_bytes(_slice(i, study, series, i.to_bytes(4, "big") + base[4:]))
        paths.append(path)
    return paths


def _seconds(paths: list[Path], work: Callable[[bytes], object]) -> float:
    start = time.perf_counter()
    for path in paths:
        work(path.read_bytes())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cpu", type=int, default=None)
    parser.add_argument("--options", nargs="*", default=[])
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    allowed = sorted(os.sched_getaffinity(0))
    cpu = args.cpu if args.cpu is not None else allowed[-1]
    os.sched_setaffinity(0, {cpu})
    key = DeidKey("bench-tenant/1", b"b" * 32)

    def deid(data: bytes) -> object:
        return deidentify_dicom(data, tenant="bench-tenant", key=key, options=args.options)

    def bare(data: bytes) -> object:
        ds = pydicom.dcmread(io.BytesIO(data))
        out = io.BytesIO()
        pydicom.dcmwrite(out, ds)
        return out.getvalue()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        paths = _series(Path(tmp), args.slices)
        size = paths[0].stat().st_size
        deid(paths[0].read_bytes())  # warm: table load, pydicom imports
        bare(paths[0].read_bytes())
        work = {"deid": deid, "bare": bare, "check": check_dicom}
        times: dict[str, list[float]] = {kind: [] for kind in work}
        for r in range(args.rounds):
            kinds = list(work) if r % 2 == 0 else list(reversed(work))
            for kind in kinds:
                times[kind].append(_seconds(paths, work[kind]))
    median = {k: statistics.median(v) for k, v in times.items()}
    rate = args.slices / median["deid"]
    result = {
        "slices": args.slices, "slice_bytes": size, "rounds": args.rounds,
        "options": args.options, "cpu": cpu, "affinity_before": allowed,
        "affinity": sorted(os.sched_getaffinity(0)),
        "deid_slices_per_s": round(rate, 1),
        "deid_mib_per_s": round(rate * size / 2**20, 1),
        "bare_read_write_slices_per_s": round(args.slices / median["bare"], 1),
        "check_dicom_slices_per_s": round(args.slices / median["check"], 1),
        "deid_time_over_bare": round(statistics.median(
            d / b for d, b in zip(times["deid"], times["bare"], strict=True)), 2),
        "target_slices_per_s": TARGET_SLICES_PER_S,
        "pydicom": pydicom.__version__,
    }
    print(json.dumps(result, indent=2))
    if args.check and rate < TARGET_SLICES_PER_S:
        raise SystemExit(f"{rate:.1f} slices/s is below the target {TARGET_SLICES_PER_S}")


if __name__ == "__main__":
    main()
