"""Burned-in text: images flagged BurnedInAnnotation = YES, or of modalities and SOP
classes that commonly carry text in the pixels, are refused unless the caller states the
pixels were cleaned (recorded in evidence and object)."""

from __future__ import annotations

import pytest
from components import require

require("pydicom", "pip install 'residency-sdk[dicom]'")

from deid_samples import (  # noqa: E402
    ct_series,
    ct_with_burned_in,
    read,
    secondary_capture,
    ultrasound,
)

from residency_sdk.deid import DeidKey, check_dicom, deidentify_dicom  # noqa: E402
from residency_sdk.errors import DeidentificationRefused, ResidencyError  # noqa: E402

KEY = DeidKey("k", b"k" * 32)


@pytest.mark.parametrize("make, reason", [
    (lambda: secondary_capture(), "BurnedInAnnotation (0028,0301) is YES"),
    (lambda: ct_with_burned_in("YES"), "BurnedInAnnotation (0028,0301) is YES"),
    (lambda: ultrasound(), "Modality (0008,0060) US"),
    # a dose report screen: CT modality, secondary capture class, no flag
    (lambda: secondary_capture(burned_in=None, modality="CT"), "SOPClassUID (0008,0016)"),
])
def test_refused_without_pixels_cleaned(make: object, reason: str) -> None:
    data = make()  # type: ignore[operator]
    with pytest.raises(DeidentificationRefused, match="pixels_cleaned=True") as err:
        deidentify_dicom(data, tenant="t", key=KEY)
    assert reason in str(err.value)
    assert isinstance(err.value, ResidencyError)
    assert "Doe" not in str(err.value)  # never a value of the object


def test_pixels_cleaned_overrides_and_is_recorded() -> None:
    result = deidentify_dicom(secondary_capture(), tenant="t", key=KEY, pixels_cleaned=True)
    assert "pixels_cleaned" in result.evidence.options
    assert "pixels_cleaned" in result.evidence.summary()
    out = read(result.data)
    assert out.BurnedInAnnotation == "NO"
    assert "113101" in {i.CodeValue for i in out.DeidentificationMethodCodeSequence}
    assert check_dicom(result.data, evidence=result.evidence).ok
    assert check_dicom(result.data).ok  # the object declares the Clean Pixel Data option
    same = deidentify_dicom(ultrasound(), tenant="t", key=KEY, options=["pixels_cleaned"])
    assert "pixels_cleaned" in same.evidence.options


def test_ordinary_ct_and_explicit_no_pass() -> None:
    deidentify_dicom(ct_series(1)[0], tenant="t", key=KEY)
    deidentify_dicom(ct_with_burned_in("NO"), tenant="t", key=KEY)


def test_check_flags_burned_in_without_declared_cleaning() -> None:
    check = check_dicom(ultrasound())
    assert not check.ok
    assert any("Modality (0008,0060) US" in p for p in check.problems)
