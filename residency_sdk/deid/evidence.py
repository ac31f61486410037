"""Evidence of a de-identification: what was done to an object, provably, without what it
contained.

An :class:`Evidence` record names the profile (DICOM PS3.15 Annex E Basic Application
Level Confidentiality Profile, with the standard's edition) and the options used, counts
the attributes removed, emptied, replaced and kept, and carries the SHA-256 of the input
and of the output, so anyone holding the output can check that this record is about it.
It never holds a removed or replaced value. It is stored with the object written through
the SDK and summarised (:meth:`Evidence.summary`) in the audit event of every write or
transfer of the object as ``anonymised``.

Non-DICOM data (a report rendered from de-identified fields, a CSV export) carries no
structure the SDK can check: its de-identification step is the caller's, and the caller
records its evidence through :func:`external_evidence` (method, tool, reviewer), bound to
the output's SHA-256 like any other.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

EVIDENCE_META = "residency_deid_evidence"
"""Object metadata key holding the SHA-256 (hex) of the object's evidence record (the
record itself is kept beside the object, see :mod:`residency_sdk.deid`)."""

Option = Literal["retain_longitudinal_modified_dates", "clean_descriptors",
                 "retain_device_identity", "pixels_cleaned"]
"""Profile options (PS3.15 E.3): dates shifted per patient (longitudinal temporal
information, modified dates), descriptors cleaned rather than removed, device identity
retained; ``pixels_cleaned`` is the caller's statement that burned-in text was removed
from the pixel data (it makes the burned-in refusal pass, and is recorded)."""


class AttributeCounts(BaseModel):
    """How many attributes (data elements, nested ones included) each action touched."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    removed: int = 0
    emptied: int = 0
    replaced: int = 0
    uids_replaced: int = 0
    dates_shifted: int = 0
    cleaned: int = 0
    kept: int = 0
    private_removed: int = 0


class Evidence(BaseModel):
    """What de-identified one object, bound to its input and output by SHA-256."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    kind: Literal["dicom", "external"] = "dicom"
    profile: str
    """``"DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile"`` for
    DICOM; the caller's method name for external evidence."""
    edition: str | None = None
    """The standard's edition the attribute table comes from (``"2026c"``)."""
    table_source: str | None = None
    """Where the attribute table was taken from (URL, package and version)."""
    options: tuple[Option, ...] = ()
    counts: AttributeCounts = Field(default_factory=AttributeCounts)
    input_sha256: str | None = None
    """SHA-256 (hex) of what was de-identified (None for external evidence that did not
    see the input)."""
    output_sha256: str
    """SHA-256 (hex) of the de-identified bytes this record is about."""
    tenant_id: str
    uid_key_id: str | None = None
    """Which tenant key mapped the UIDs (an id, never the key)."""
    tool: str
    """``residency-sdk <version> (pydicom <version>)``, or the caller's tool."""
    reviewer: str | None = None
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def digest(self) -> str:
        """SHA-256 (hex) of the record's canonical JSON (what :data:`EVIDENCE_META`
        holds)."""
        return hashlib.sha256(self.model_dump_json().encode("utf-8")).hexdigest()

    def summary(self) -> str:
        """One line for an audit event: profile, edition, options, counts, digests."""
        c = self.counts
        edition = f" {self.edition}" if self.edition else ""
        options = f"; options {', '.join(self.options)}" if self.options else ""
        counts = ("" if self.kind == "external" else
                  f"; removed {c.removed + c.private_removed}, emptied {c.emptied}, "
                  f"replaced {c.replaced + c.uids_replaced}, dates shifted "
                  f"{c.dates_shifted}, kept {c.kept}")
        source = f"; in sha256:{self.input_sha256}" if self.input_sha256 else ""
        return (f"{self.profile}{edition}{options}{counts}{source}; out "
                f"sha256:{self.output_sha256}; evidence sha256:{self.digest()}")


def external_evidence(data: bytes, *, tenant_id: str, method: str, tool: str,
                      reviewer: str | None = None,
                      input_sha256: str | None = None) -> Evidence:
    """Evidence for non-DICOM data de-identified by the caller's own step (``method``,
    ``tool``, who reviewed it): bound to ``data`` by its SHA-256. The SDK cannot check
    such content; it checks that the evidence is about exactly these bytes."""
    return Evidence(kind="external", profile=method, output_sha256=hashlib.sha256(
        data).hexdigest(), input_sha256=input_sha256, tenant_id=tenant_id, tool=tool,
        reviewer=reviewer)
