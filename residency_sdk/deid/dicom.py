"""De-identify DICOM objects (PS3.15 Annex E Basic Profile) and check that one passes.

``deidentify_dicom`` walks the dataset (file meta, every nested sequence item) once:

- private attributes are removed (the Basic Profile; no "retain safe private" option);
- tabled attributes get their action under the chosen options (``profile.py``): removed,
  emptied, replaced with a dummy of the VR, UIDs replaced by the tenant's keyed mapping,
  dates shifted by the patient's keyed offset, descriptors cleaned, device identity kept;
- a sequence whose action is D has every value inside replaced (tabled attributes inside
  still get their own action, so nothing the table removes survives as a "dummy");
- everything else is kept unchanged (raw bytes, never decoded: fast, and exact);
- then PatientIdentityRemoved, DeidentificationMethod(CodeSequence) and
  LongitudinalTemporalInformationModified are set, and the 128-byte preamble (free for
  any application's use, e.g. a TIFF header) is zeroed.

Memory: the common case (pixel data last, little-endian, not deflated) parses only the
header (``stop_before_pixels``) and copies the pixel data element's raw bytes from the
input into the output untouched, so the object exists about twice (input and output).
Other objects (pixel data followed by more elements, big-endian, deflated) are parsed
whole.

``check_dicom`` answers the facade's question: may this object be handled as
``anonymised``? It parses the header only and never reports a value, only the attribute
keyword and tag.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
from collections.abc import Iterable, MutableSequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from residency_sdk._version import __version__
from residency_sdk.deid.evidence import AttributeCounts, Evidence, Option
from residency_sdk.deid.keys import DeidKey
from residency_sdk.deid.profile import (
    BASIC_PROFILE,
    Action,
    ActionTable,
    Attribute,
    Profile,
    check_options,
)
from residency_sdk.errors import (
    DeidentificationRefused,
    InputError,
    InvalidTenant,
    NotDicom,
    SDKNotInstalled,
)
from residency_sdk.model import _TENANT_ID, Tenant

if TYPE_CHECKING:
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset

PREAMBLE_LENGTH = 128
HEAD_LENGTH = PREAMBLE_LENGTH + 4
"""Bytes :func:`is_dicom` needs: the preamble and the ``DICM`` marker."""

METHOD_TEXT = "PS3.15 E.1 Basic Profile {edition} (residency-sdk)"

# CID 7050 "De-identification Method" codes (scheme DCM).
_CODES: dict[str, tuple[str, str]] = {
    "basic": ("113100", "Basic Application Confidentiality Profile"),
    "pixels_cleaned": ("113101", "Clean Pixel Data Option"),
    "clean_descriptors": ("113105", "Clean Descriptors Option"),
    "retain_longitudinal_modified_dates": (
        "113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    "retain_device_identity": ("113109", "Retain Device Identity Option"),
}
_OPTION_OF_CODE = {code: option for option, (code, _) in _CODES.items() if option != "basic"}

# Burned-in text (see docs/deidentification.md, "Pixels"): modalities and SOP classes
# whose images commonly carry identifying text in the pixels (ultrasound screens,
# secondary captures such as dose reports and scanned documents, visible-light photos,
# endoscopy and video, whole-slide label images). PS3.15 E.3.1 (Clean Pixel Data Option)
# leaves finding such text to the application; the SDK does not look into pixels, so it
# refuses these unless the caller states the pixels were cleaned.
BURNED_IN_MODALITIES = frozenset({"US", "IVUS", "XC", "ES", "GM", "SM", "OP", "OT", "SC",
                                  "DOC"})
BURNED_IN_SOP_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.6.1",   # Ultrasound Image Storage
    "1.2.840.10008.5.1.4.1.1.6.2",   # Enhanced US Volume Storage
    "1.2.840.10008.5.1.4.1.1.6.3",   # Photoacoustic Image Storage
    "1.2.840.10008.5.1.4.1.1.3.1",   # Ultrasound Multi-frame Image Storage
    "1.2.840.10008.5.1.4.1.1.7",     # Secondary Capture Image Storage
})
BURNED_IN_SOP_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.7.",     # Multi-frame Secondary Capture family
    "1.2.840.10008.5.1.4.1.1.77.1.",  # VL (endoscopic, microscopic, photographic, slide, video)
)
BURNED_IN_IMAGE_TYPES = frozenset({"SCREEN SAVE", "LABEL", "OVERVIEW"})

# Dummy values per VR for action D (recognisably dummies, valid for the VR).
_DUMMY_TEXT = "ANONYMIZED"
_DUMMY_BYTES = b"ANONYMIZED"
_DUMMIES: dict[str, Any] = {
    **{vr: _DUMMY_TEXT for vr in ("AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT")},
    "DA": "19000101", "TM": "000000", "DT": "19000101000000", "AS": "000Y",
    "UR": "http://anonymized.invalid", "DS": "0", "IS": "0",
    **{vr: 0 for vr in ("FD", "FL", "SS", "US", "SL", "UL", "SV", "UV", "AT")},
    **{vr: _DUMMY_BYTES for vr in ("OB", "OD", "OF", "OL", "OV", "OW", "UN")},
}

# File meta attributes outside Table E.1-1 that name the sending/receiving systems or
# carry private data: removed as well.
_META_REMOVE = (0x00020016, 0x00020017, 0x00020018, 0x00020100, 0x00020102)

_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
_ITEM, _SEQ_DELIM = 0xFFFEE000, 0xFFFEE0DD
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
             b"UT", b"UV"}

# Descriptor check of the clean-descriptors option (docs: "Clean descriptors").
_MAX_CLEAN_LENGTH = 64
_SUSPECT = re.compile(r"\d{4,}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}|[@^]")
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_IDENTIFYING_KEYWORD = re.compile(r"Name|ID$|IDs$|Number|Address|Institution|Telephone|"
                                  r"Identifier|Issuer|Location")


def _pydicom() -> Any:
    try:
        import pydicom
    except ImportError:
        raise SDKNotInstalled(
            "de-identifying or checking DICOM needs pydicom, which is not installed: "
            "pip install 'residency-sdk[dicom]'") from None
    return pydicom


def is_dicom(head: bytes) -> bool:
    """True if ``head`` (the first 132 bytes of an object, or more) starts a DICOM Part 10
    file: a 128-byte preamble followed by ``DICM``. Needs no pydicom."""
    return len(head) >= HEAD_LENGTH and bytes(head[PREAMBLE_LENGTH:HEAD_LENGTH]) == b"DICM"


@dataclass(frozen=True)
class Deidentified:
    """The de-identified object (``data``, DICOM Part 10 bytes) and its evidence."""

    data: bytes = field(repr=False)
    evidence: Evidence

    def __repr__(self) -> str:
        return f"Deidentified({len(self.data)} bytes, {self.evidence.summary()})"


@dataclass(frozen=True)
class DicomCheck:
    """Whether an object may be handled as ``anonymised``.

    ``problems`` are human-readable and name attributes by keyword and tag, never their
    values; ``found`` lists the keywords (``private tag (gggg,eeee)`` for private ones) of
    identifying attributes present with a value the profile does not allow."""

    ok: bool
    is_dicom: bool
    problems: tuple[str, ...] = ()
    found: tuple[str, ...] = ()
    sha256: str = ""

    def __bool__(self) -> bool:
        return self.ok


# --- parsing ----------------------------------------------------------------------


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _pixel_end(data: bytes, pos: int, implicit: bool) -> int | None:
    """End offset of the pixel data element starting at ``pos`` (None: cannot tell)."""
    try:
        if implicit:
            length = struct.unpack_from("<I", data, pos + 4)[0]
            value_at = pos + 8
        else:
            vr = data[pos + 4:pos + 6]
            if vr in _LONG_VRS:
                length = struct.unpack_from("<I", data, pos + 8)[0]
                value_at = pos + 12
            else:
                length = struct.unpack_from("<H", data, pos + 6)[0]
                value_at = pos + 8
        if length != 0xFFFFFFFF:
            end = value_at + length
            return end if end <= len(data) else None
        # Encapsulated: items until the sequence delimiter.
        p = value_at
        while p + 8 <= len(data):
            group, elem, item_length = struct.unpack_from("<HHI", data, p)
            tag = group << 16 | elem
            if tag == _SEQ_DELIM:
                return p + 8
            if tag != _ITEM or item_length == 0xFFFFFFFF:
                return None
            p += 8 + item_length
        return None
    except struct.error:
        return None


@dataclass
class _Parsed:
    ds: Dataset
    pixel: memoryview | None
    """The raw pixel data element (fast path), written after the processed header."""
    has_pixels: bool


def _parse(pydicom: Any, data: bytes, *, what: str) -> _Parsed:
    if not is_dicom(data[:HEAD_LENGTH]):
        raise NotDicom(
            f"{what}: not a DICOM Part 10 file (no 'DICM' marker after a 128-byte preamble; "
            f"{len(data)} bytes): de-identify non-DICOM data with your own step and record "
            "it with residency_sdk.deid.external_evidence")
    fp = io.BytesIO(data)
    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=True)
        pos = fp.tell()
        ts = ds.file_meta.get("TransferSyntaxUID")
        # Only a plain little-endian stream has the pixel data element at ``pos`` in
        # ``data`` (a deflated one is read through a decompressor: ``pos`` means nothing).
        plain = ts is not None and ts.is_little_endian and not ts.is_deflated
        if plain and pos >= len(data):
            return _Parsed(ds, None, False)
        end = None
        if plain and pos + 4 <= len(data):
            group, elem = struct.unpack_from("<HH", data, pos)
            if group << 16 | elem in _PIXEL_TAGS:
                end = _pixel_end(data, pos, bool(ts.is_implicit_VR))
        if end == len(data):
            return _Parsed(ds, memoryview(data)[pos:end], True)
        # Something follows the pixel data (padding, private groups), or an encoding the
        # raw copy cannot carry: parse the whole object.
        ds = pydicom.dcmread(io.BytesIO(data))
        return _Parsed(ds, None, any(t in ds for t in _PIXEL_TAGS))
    except (NotDicom, SDKNotInstalled):
        raise
    except Exception as exc:  # pydicom raises many types on malformed input
        raise NotDicom(f"{what}: the DICOM data does not parse ({type(exc).__name__}: "
                       f"{str(exc)[:200]}); it cannot be de-identified or checked") from None


# --- values -----------------------------------------------------------------------


def _has_value(el: DataElement) -> bool:
    value = el.value
    if value is None:
        return False
    if isinstance(value, str | bytes):
        return bool(value.strip(" \x00") if isinstance(value, str) else value)
    try:
        return len(value) > 0
    except TypeError:
        return True


def _values(el: DataElement) -> list[Any]:
    value = el.value
    if value is None:
        return []
    # Only lists (MultiValue) are multi-valued: PersonName, str, bytes iterate but are one value.
    return list(value) if isinstance(value, tuple | MutableSequence) else [value]


def _is_dummy(el: DataElement) -> bool:
    dummy = _DUMMIES.get(el.VR)
    if dummy is None:
        return False
    values = _values(el)
    return bool(values) and all(
        (str(v) == dummy) if isinstance(dummy, str) else v == dummy for v in values)


def _set_dummy(el: DataElement, key: DeidKey) -> bool:
    """Replace the value by the VR's dummy; True if it was a UID (keyed mapping)."""
    if el.VR == "UI":
        el.value = [key.map_uid(str(v)) for v in _values(el)] or key.map_uid("")
        return True
    el.value = _DUMMIES.get(el.VR, _DUMMY_BYTES if isinstance(el.value, bytes) else
                            _DUMMY_TEXT)
    return False


def _shift_date(value: str, days: int, vr: str) -> str | None:
    text = value.strip()
    if len(text) < 8 or not text[:8].isdigit():
        return None
    try:
        moved = date(int(text[:4]), int(text[4:6]), int(text[6:8])) + timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    if vr == "DA" and len(text) != 8:
        return None
    return f"{moved.year:04d}{moved.month:02d}{moved.day:02d}{text[8:]}"


def _descriptor_clean(value: str, identifying: frozenset[str]) -> bool:
    if len(value) > _MAX_CLEAN_LENGTH or _SUSPECT.search(value):
        return False
    return not any(t.casefold() in identifying for t in _TOKEN.findall(value))


# --- de-identification ------------------------------------------------------------


@dataclass
class _Walk:
    table: ActionTable
    key: DeidKey
    shift_days: int | None
    identifying: frozenset[str]
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        AttributeCounts.model_fields, 0))

    def run(self, ds: Dataset, dummy: bool = False) -> None:
        for tag in list(ds.keys()):
            self.one(ds, int(tag), dummy)

    def one(self, ds: Dataset, tag: int, dummy: bool) -> None:
        group = tag >> 16
        if group & 1:
            del ds[tag]
            self.counts["private_removed"] += 1
            return
        if tag & 0xFFFF == 0 and group != 0x0002:
            del ds[tag]  # group lengths are retired and would be wrong after the walk
            return
        hit = self.table.get(tag)
        if hit is None:
            raw = ds.get_item(tag)
            vr = getattr(raw, "VR", None)
            if not dummy and vr not in (None, "SQ", "UN"):
                self.counts["kept"] += 1  # untouched raw bytes: never decoded
                return
            el = ds[tag]
            if el.VR == "SQ":
                for item in el.value:
                    self.run(item, dummy)
                self.counts["kept" if not dummy else "replaced"] += 1
            elif dummy:
                self.counts["uids_replaced" if _set_dummy(el, self.key) else "replaced"] += 1
            else:
                self.counts["kept"] += 1
            return
        action, attribute = hit
        self.apply(ds, ds[tag], action, attribute, dummy)

    def apply(self, ds: Dataset, el: DataElement, action: Action, attribute: Attribute,
              dummy: bool) -> None:
        if action == "C":
            if el.VR == "SQ":  # only a custom table cleans a sequence: clean its items
                for item in el.value:
                    self.run(item, dummy)
                self.counts["cleaned"] += 1
                return
            if _has_value(el) and _descriptor_clean(str(el.value), self.identifying):
                self.counts["cleaned"] += 1
                return
            action = attribute.basic
        if action == "S":
            shifted = self._shift(el)
            if shifted:
                self.counts["dates_shifted"] += 1
                return
            action = attribute.basic if attribute.basic != "S" else "D"
        if action == "X":
            del ds[el.tag]
            self.counts["removed"] += 1
        elif action == "Z":
            el.value = [] if el.VR == "SQ" else None
            self.counts["emptied"] += 1
        elif action == "D":
            if el.VR == "SQ":
                for item in el.value:
                    self.run(item, dummy=True)
                self.counts["replaced"] += 1
            else:
                self.counts["uids_replaced" if _set_dummy(el, self.key) else "replaced"] += 1
        elif action == "U":
            if el.VR == "SQ":
                for item in el.value:
                    self.run(item, dummy)
                self.counts["kept"] += 1
            else:
                self.counts["uids_replaced" if _set_dummy(el, self.key) else "replaced"] += 1
        else:  # K
            if el.VR == "SQ":
                for item in el.value:
                    self.run(item, dummy)
            self.counts["kept"] += 1

    def _shift(self, el: DataElement) -> bool:
        if self.shift_days is None:
            return False
        if el.VR not in ("DA", "DT"):
            return el.VR == "TM"  # times of day are kept as they are (whole-day shift)
        values = [str(v) for v in _values(el)]
        if not values:
            return True  # nothing to shift, nothing to hide
        shifted = [_shift_date(v, self.shift_days, el.VR) for v in values]
        if any(s is None for s in shifted):
            return False
        el.value = shifted if len(shifted) > 1 else shifted[0]
        return True


def _tenant_id(tenant: Tenant | str) -> str:
    if isinstance(tenant, Tenant):
        return tenant.id
    if not isinstance(tenant, str) or not _TENANT_ID.fullmatch(tenant) or ".." in tenant:
        raise InvalidTenant(
            f"invalid tenant id {tenant!r}: use 1-128 characters from A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit and without '..'")
    return tenant


def _as_bytes(data: object, what: str) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise InputError(f"{what}: expected the object's bytes, got {type(data).__name__}; "
                     "read the file first (DICOM objects are one file per image)")


def _str(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    return "\\".join(str(v) for v in value) if isinstance(value, MutableSequence) \
        else str(value)


def burned_in_reasons(ds: Dataset, has_pixels: bool) -> list[str]:
    """Why the pixels of ``ds`` may carry identifying text (empty: no known reason)."""
    reasons = []
    if _str(ds, "BurnedInAnnotation").strip().upper() == "YES":
        reasons.append("BurnedInAnnotation (0028,0301) is YES")
    if not has_pixels:
        return reasons
    modality = _str(ds, "Modality").strip().upper()
    if modality in BURNED_IN_MODALITIES:
        reasons.append(f"Modality (0008,0060) {modality} commonly carries burned-in text")
    sop_class = _str(ds, "SOPClassUID").strip()
    if sop_class in BURNED_IN_SOP_CLASSES or sop_class.startswith(BURNED_IN_SOP_PREFIXES):
        reasons.append(f"SOPClassUID (0008,0016) {sop_class} is a class whose images "
                       "commonly carry burned-in text")
    image_type = {v.strip().upper() for v in _str(ds, "ImageType").split("\\")}
    if image_type & BURNED_IN_IMAGE_TYPES:
        reasons.append(f"ImageType (0008,0008) includes "
                       f"{', '.join(sorted(image_type & BURNED_IN_IMAGE_TYPES))}")
    return reasons


def _identifying_tokens(ds: Dataset, table: ActionTable) -> frozenset[str]:
    """Words of the names, ids, numbers and addresses the profile removes from ``ds``
    (person names, patient and accession ids, institution...), to tell whether a
    descriptor repeats one of them. Ordinary words of other removed text (a comment's
    "contrast") do not count: they identify no one."""
    tokens: set[str] = set()
    for tag in ds.keys():  # noqa: SIM118 (iterating a Dataset decodes every element)
        hit = table.get(int(tag))
        if hit is None or hit[0] in ("K", "C"):
            continue
        el = ds[tag]
        if el.VR != "PN" and not _IDENTIFYING_KEYWORD.search(hit[1].keyword):
            continue
        for value in _values(el):
            text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            tokens.update(t.casefold() for t in _TOKEN.findall(text) if len(t) >= 2)
    return frozenset(tokens)


def _mark(pydicom: Any, ds: Dataset, profile: Profile, options: tuple[Option, ...],
          shifted: bool) -> None:
    from pydicom.dataset import Dataset as _Dataset

    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD_TEXT.format(edition=profile.edition)[:64]
    items = []
    for name in ("basic", *options):
        code, meaning = _CODES[name]
        item = _Dataset()
        item.CodeValue = code
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = pydicom.Sequence(items)
    ds.LongitudinalTemporalInformationModified = "MODIFIED" if shifted else "REMOVED"
    if "pixels_cleaned" in options:
        ds.BurnedInAnnotation = "NO"


def deidentify_dicom(data: bytes, *, tenant: Tenant | str, key: DeidKey,
                     profile: Profile = BASIC_PROFILE, options: Iterable[Option] = (),
                     pixels_cleaned: bool = False) -> Deidentified:
    """De-identify one DICOM Part 10 object with ``profile`` (default: the PS3.15 Annex E
    Basic Profile) and ``options``; UIDs and date offsets are keyed with the tenant's
    ``key``.

    Raises :class:`~residency_sdk.errors.NotDicom` for data that is not DICOM,
    :class:`~residency_sdk.errors.DeidentificationRefused` for images whose pixels may
    carry identifying text unless ``pixels_cleaned=True`` (the caller's statement,
    recorded in the evidence), and :class:`~residency_sdk.errors.SDKNotInstalled` without
    pydicom. Returns the new bytes and their :class:`Evidence` (no removed value in it).
    """
    pydicom = _pydicom()
    data = _as_bytes(data, "deidentify_dicom")
    tenant_id = _tenant_id(tenant)
    if not isinstance(key, DeidKey):
        raise InputError(f"deidentify_dicom: key must be a DeidKey, got {type(key).__name__}; "
                         "use Residency.deid_key(tenant)")
    chosen = check_options([*options, *(["pixels_cleaned"] if pixels_cleaned else [])])
    parsed = _parse(pydicom, data, what="deidentify_dicom")
    ds = parsed.ds
    if "pixels_cleaned" not in chosen:
        reasons = burned_in_reasons(ds, parsed.has_pixels)
        if reasons:
            raise DeidentificationRefused(
                f"refusing to de-identify SOP instance of modality "
                f"{_str(ds, 'Modality') or 'unknown'}: {'; '.join(reasons)}; the pixel data "
                "may show the patient's name or other identifiers, which the profile "
                "cannot remove. Remove burned-in text from the pixels, then call again "
                "with pixels_cleaned=True (recorded in the evidence)")
    table = profile.actions(chosen)
    shift_days = None
    if "retain_longitudinal_modified_dates" in chosen:
        # The patient's identity keys the offset, so all their objects move together;
        # without a PatientID the study (then the instance) is the best consistent unit.
        anchor = (_str(ds, "PatientID") or _str(ds, "StudyInstanceUID")
                  or _str(ds, "SOPInstanceUID"))
        shift_days = key.date_offset_days(anchor, _str(ds, "IssuerOfPatientID"))
    identifying = (_identifying_tokens(ds, table) if "clean_descriptors" in chosen
                   else frozenset())
    walk = _Walk(table=table, key=key, shift_days=shift_days, identifying=identifying)
    try:
        walk.run(ds)
        meta = ds.file_meta
        for tag in _META_REMOVE:
            if tag in meta:
                del meta[tag]
                walk.counts["removed"] += 1
        for tag in list(meta.keys()):
            if int(tag) != 0x00020000 and walk.table.get(int(tag)) is not None:
                walk.one(meta, int(tag), False)
        _mark(pydicom, ds, profile, chosen, shift_days is not None)
        ds.preamble = b"\x00" * PREAMBLE_LENGTH
        out = io.BytesIO()
        pydicom.dcmwrite(out, ds)
    except (DeidentificationRefused, NotDicom, SDKNotInstalled, InputError):
        raise
    except Exception as exc:  # a value pydicom cannot decode or encode
        raise NotDicom(f"deidentify_dicom: the DICOM data could not be processed "
                       f"({type(exc).__name__}: {str(exc)[:200]})") from None
    result = out.getbuffer()
    output = bytes(result) if parsed.pixel is None else b"".join((result, parsed.pixel))
    evidence = Evidence(
        kind="dicom", profile=profile.name, edition=profile.edition,
        table_source=profile.table_source, options=chosen,
        counts=AttributeCounts(**walk.counts),
        input_sha256=hashlib.sha256(data).hexdigest(),
        output_sha256=hashlib.sha256(output).hexdigest(), tenant_id=tenant_id,
        uid_key_id=key.key_id, tool=f"residency-sdk {__version__} (pydicom {pydicom.__version__})")
    return Deidentified(data=output, evidence=evidence)


# --- the check ----------------------------------------------------------------------


_VERBS = {"X": "removes it", "Z": "empties it", "D": "replaces it with a dummy",
          "C": "removes it unless it passes the descriptor check (it does not)"}


@dataclass
class _Check:
    table: ActionTable
    problems: list[str] = field(default_factory=list)
    found: list[str] = field(default_factory=list)

    def flag(self, keyword: str, tag: int, why: str) -> None:
        self.found.append(keyword)
        shown = _tag_text(tag)
        named = keyword if shown in keyword else f"{keyword} {shown}"  # never twice
        self.problems.append(f"{named} {why}")

    def run(self, ds: Dataset, dummy: bool = False, where: str = "") -> None:
        for tag_obj in ds.keys():  # noqa: SIM118 (iterating a Dataset decodes them)
            tag = int(tag_obj)
            if tag >> 16 & 1:
                el = ds[tag_obj]
                if _has_value(el):
                    self.flag(f"private tag {_tag_text(tag)}", tag,
                              f"{where}is a private attribute with a value; the profile "
                              "removes private attributes")
                continue
            if tag & 0xFFFF == 0:
                continue
            hit = self.table.get(tag)
            if hit is None:
                if not dummy:
                    raw = ds.get_item(tag_obj)
                    if getattr(raw, "VR", None) not in (None, "SQ", "UN"):
                        continue
                el = ds[tag_obj]
                if el.VR == "SQ":
                    for item in el.value:
                        self.run(item, dummy, f"{where}in {el.keyword or _tag_text(tag)}: ")
                elif dummy and el.VR != "UI" and _has_value(el) and not _is_dummy(el):
                    self.flag(el.keyword or _tag_text(tag), tag,
                              f"{where}has a value inside a sequence the profile replaces "
                              "with dummies")
                continue
            action, attribute = hit
            el = ds[tag_obj]
            keyword = attribute.keyword or el.keyword
            if action in ("K", "S", "U") or (action == "C" and el.VR == "SQ"):
                if el.VR == "SQ":
                    for item in el.value:
                        self.run(item, dummy, f"{where}in {keyword}: ")
                continue
            if not _has_value(el):
                continue
            if action == "C":
                if _descriptor_clean(str(el.value), frozenset()):
                    continue
            elif action == "D":
                if el.VR == "SQ":
                    for item in el.value:
                        self.run(item, True, f"{where}in {keyword}: ")
                    continue
                if el.VR == "UI" or _is_dummy(el):
                    continue
            self.flag(keyword, tag, f"{where}has a value; the profile {_VERBS[action]} "
                                    f"({attribute.action})")


def _declared_options(ds: Dataset) -> set[str]:
    options = set()
    for item in ds.get("DeidentificationMethodCodeSequence") or []:
        option = _OPTION_OF_CODE.get(str(item.get("CodeValue", "")))
        if option and str(item.get("CodingSchemeDesignator", "")) == "DCM":
            options.add(option)
    return options


def check_dicom(data: bytes, *, evidence: Evidence | None = None,
                profile: Profile = BASIC_PROFILE) -> DicomCheck:
    """Whether ``data`` passes as ``anonymised`` under ``profile``: it parses as DICOM,
    carries no attribute the profile removes or empties with a value (nor a non-dummy
    where it puts a dummy, nor a private attribute), has PatientIdentityRemoved = YES,
    shows no sign of burned-in text unless cleaned pixels are declared, and, when
    ``evidence`` is given, is exactly the object the evidence is about.

    The options the object was de-identified with come from ``evidence`` when given, else
    from the object's DeidentificationMethodCodeSequence (shifted dates, cleaned
    descriptors and device identity are then allowed). Needs pydicom."""
    pydicom = _pydicom()
    data = _as_bytes(data, "check_dicom")
    digest = hashlib.sha256(data).hexdigest()
    if not is_dicom(data[:HEAD_LENGTH]):
        return DicomCheck(ok=False, is_dicom=False, sha256=digest, problems=(
            "not a DICOM Part 10 file (no 'DICM' marker after the 128-byte preamble): "
            "non-DICOM data passes as anonymised only with evidence from the caller's "
            "de-identification step",))
    try:
        parsed = _parse(pydicom, data, what="check_dicom")
    except NotDicom as exc:
        return DicomCheck(ok=False, is_dicom=True, sha256=digest, problems=(str(exc),))
    ds = parsed.ds
    problems: list[str] = []
    if evidence is not None:
        if evidence.kind != "dicom":
            problems.append(f"the evidence is {evidence.kind!r} evidence, not a DICOM "
                            "de-identification")
        if evidence.output_sha256 != digest:
            problems.append(f"the evidence is about other bytes (its output sha256 "
                            f"{evidence.output_sha256} differs from this object's {digest})")
        options: set[str] = set(evidence.options)
    else:
        options = _declared_options(ds)
    check = _Check(table=profile.actions(options))
    try:
        check.run(ds)
        check.run(ds.file_meta, where="in the file meta: ")
    except Exception as exc:  # a value pydicom cannot decode
        problems.append(f"the DICOM data could not be read ({type(exc).__name__})")
    if _str(ds, "PatientIdentityRemoved").strip().upper() != "YES":
        problems.append("PatientIdentityRemoved (0012,0062) is not YES: the object does "
                        "not say it was de-identified")
    if "pixels_cleaned" not in options:
        problems.extend(f"{r}; the pixels may carry identifying text and no cleaning is "
                        "declared (Clean Pixel Data Option)"
                        for r in burned_in_reasons(ds, parsed.has_pixels))
    problems = check.problems + problems
    return DicomCheck(ok=not problems, is_dicom=True, problems=tuple(dict.fromkeys(problems)),
                      found=tuple(dict.fromkeys(check.found)), sha256=digest)

