"""De-identification: DICOM objects de-identified with the PS3.15 Annex E Basic Profile,
with evidence, and the check that decides whether an object passes as ``anonymised``.

    import residency_sdk as rs
    key = res.deid_key(tenant)                       # the tenant's key, kept in its location
    out = rs.deid.deidentify_dicom(data, tenant=tenant, key=key,
                                   options=["retain_longitudinal_modified_dates"])
    out.data, out.evidence.summary()
    rs.deid.check_dicom(out.data, evidence=out.evidence).ok   # True

Importing this package needs no pydicom (install ``residency-sdk[dicom]`` to de-identify
or check DICOM; without it those raise :class:`~residency_sdk.errors.SDKNotInstalled`).
See docs/deidentification.md.
"""

from typing import TYPE_CHECKING

from residency_sdk._lazy import lazy_getattr
from residency_sdk.deid.evidence import (
    EVIDENCE_META,
    AttributeCounts,
    Evidence,
    Option,
    external_evidence,
)
from residency_sdk.deid.keys import DeidKey

if TYPE_CHECKING:
    from residency_sdk.deid.dicom import (
        Deidentified,
        DicomCheck,
        check_dicom,
        deidentify_dicom,
        is_dicom,
    )
    from residency_sdk.deid.profile import BASIC_PROFILE, OPTIONS, Profile

# Loaded on first use: the attribute table (a JSON file) stays out of the import of the
# SDK modules that only need Evidence or DeidKey (the facade imports those at start-up).
_LAZY = {"Deidentified": "dicom", "DicomCheck": "dicom", "check_dicom": "dicom",
         "deidentify_dicom": "dicom", "is_dicom": "dicom", "BASIC_PROFILE": "profile",
         "OPTIONS": "profile", "Profile": "profile"}


__getattr__ = lazy_getattr("residency_sdk.deid", _LAZY, globals())


__all__ = [
    "BASIC_PROFILE",
    "EVIDENCE_META",
    "OPTIONS",
    "AttributeCounts",
    "DeidKey",
    "Deidentified",
    "DicomCheck",
    "Evidence",
    "Option",
    "Profile",
    "check_dicom",
    "deidentify_dicom",
    "external_evidence",
    "is_dicom",
]
