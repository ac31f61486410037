"""Property: whatever attributes of the table an object carries (random sets, random
values, random private tags, random options, nested in a sequence or not), the output
never carries a non-empty X or Z attribute or a private one, and it passes check_dicom."""

from __future__ import annotations

import warnings
from typing import Any

from components import require

require("pydicom", "pip install 'residency-sdk[dicom]'")
hypothesis = require("hypothesis", "pip install 'residency-sdk[test]'")

from deid_samples import read, to_bytes  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from pydicom.datadict import dictionary_VR  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402

from residency_sdk.deid import BASIC_PROFILE, DeidKey, check_dicom, deidentify_dicom  # noqa: E402

KEY = DeidKey("k", b"h" * 32)
_TEXT = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz0123456789",
                min_size=1, max_size=16).filter(lambda s: s.strip() != "")


def _rows() -> list[tuple[int, str]]:
    rows = []
    for attribute in BASIC_PROFILE.attributes:
        if "x" in attribute.tag:
            continue
        tag = int(attribute.tag, 16)
        if tag >> 16 in (0x0000, 0x0002):
            continue
        try:
            vr = dictionary_VR(tag).split(" or ")[0]
        except KeyError:
            continue
        if vr in ("PN", "LO", "SH", "ST", "LT", "UT", "UC", "CS", "DA", "TM", "DT", "UI",
                  "DS", "IS", "US", "SQ", "AE"):
            rows.append((tag, vr))
    return rows


ROWS = _rows()


@st.composite
def value_for(draw: st.DrawFn, vr: str) -> Any:
    if vr in ("PN", "LO", "SH", "ST", "LT", "UT", "UC"):
        return draw(_TEXT)
    if vr in ("CS", "AE"):
        return draw(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", min_size=1,
                            max_size=16))
    if vr == "DA":
        d = draw(st.dates())
        return f"{d.year:04d}{d.month:02d}{d.day:02d}"
    if vr == "DT":
        t = draw(st.datetimes())
        return f"{t.year:04d}{t.month:02d}{t.day:02d}{t.hour:02d}{t.minute:02d}{t.second:02d}"
    if vr == "TM":
        return draw(st.times()).strftime("%H%M%S")
    if vr == "UI":
        return "1.2.826.0.1.3680043.10." + str(draw(st.integers(1, 10**12)))
    if vr in ("DS", "IS"):
        return str(draw(st.integers(0, 9999)))
    if vr == "US":
        return draw(st.integers(0, 65535))
    inner = Dataset()
    inner.PatientName = draw(_TEXT)
    inner.CodeValue = "C1"
    return Sequence([inner])


@st.composite
def random_object(draw: st.DrawFn) -> tuple[bytes, tuple[str, ...]]:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.10.5"
    ds.Modality = "CT"
    holder = ds
    if draw(st.booleans()):  # put the attributes inside an untabled sequence
        holder = Dataset()
        ds.AnatomicRegionSequence = Sequence([holder])
    for tag, vr in draw(st.lists(st.sampled_from(ROWS), min_size=1, max_size=25,
                                 unique=True)):
        holder.add_new(tag, vr, draw(value_for(vr)))
    for n in range(draw(st.integers(0, 3))):
        group = draw(st.sampled_from([0x0009, 0x0011, 0x0029, 0x7FE1]))
        holder.add_new(group << 16 | 0x0010, "LO", "CREATOR")
        holder.add_new(group << 16 | 0x1000 | n, "LO", draw(_TEXT))
    options = draw(st.lists(st.sampled_from(["retain_longitudinal_modified_dates",
                                             "clean_descriptors", "retain_device_identity"]),
                            unique=True))
    return to_bytes(ds), tuple(options)


def _leftovers(ds: Dataset, options: tuple[str, ...]) -> list[str]:
    table = BASIC_PROFILE.actions(options)
    bad = []
    for el in ds:
        if el.tag.is_private:
            bad.append(f"private {el.tag}")
            continue
        hit = table.get(int(el.tag))
        if hit is not None and hit[0] in ("X", "Z") and el.value not in (None, "", b"") \
                and not (el.VR == "SQ" and len(el.value) == 0):
            bad.append(hit[1].keyword)
        if el.VR == "SQ":
            for item in el.value:
                bad.extend(_leftovers(item, options))
    return bad


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_object())
def test_output_never_carries_a_non_empty_x_or_z_attribute(
        case: tuple[bytes, tuple[str, ...]]) -> None:
    data, options = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = deidentify_dicom(data, tenant="t", key=KEY, options=options)
        out = read(result.data)
        assert _leftovers(out, options) == []
        check = check_dicom(result.data, evidence=result.evidence)
    assert check.ok, check.problems
