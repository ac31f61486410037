"""One audited research export: de-identify at home, verify, transfer only the copies.

``Residency.export_anonymised(tenant, keys, to=LOCATION)`` (and ``residency export``)
runs, for a list of the tenant's DICOM objects:

1. for each key, inside the tenant's location: read the original (an audited ``get``),
   de-identify it with the tenant's key (:func:`residency_sdk.deid.deidentify_dicom`,
   the key read from the location and never moved), and store the copy as ``anonymised``
   under ``deid/<key>`` with its evidence (an audited ``put``: the facade checks the copy
   with :func:`~residency_sdk.deid.check_dicom` and the evidence's SHA-256, keeps the
   evidence beside it, and puts its summary in the event);
2. only when every copy is made and verified: transfer each copy to ``to`` as
   ``anonymised`` (an audited ``transfer``, which verifies the copy again against its
   evidence before a byte leaves and carries the evidence summary).

The originals are never read by a transfer: only keys under ``deid/`` cross. A failure
in step 1 raises before anything has left the location (copies already made stay at
home, anonymised, and a re-run overwrites them). Every event of the export carries the
caller's ``actor`` and ``purpose`` (default ``research_export``); the returned
:class:`ExportReceipt` names, per key, the copy, where it went and its evidence digest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from residency_sdk.deid.evidence import EVIDENCE_META
from residency_sdk.errors import InputError, NotAnonymised

if TYPE_CHECKING:
    from residency_sdk.deid.evidence import Option
    from residency_sdk.deid.keys import DeidKey
    from residency_sdk.storage.tenant_store import StoredObject, TenantStore

COPY_PREFIX = "deid/"
"""Where an export keeps the de-identified copies in the tenant's location."""
EXPORT_PURPOSE = "research_export"
"""The purpose recorded on an export's events when the caller names none."""


def copy_key(key: str) -> str:
    """The key of the de-identified copy of ``key``."""
    return f"{COPY_PREFIX}{key}"


@dataclass(frozen=True, slots=True)
class ExportedObject:
    """One exported object: the original's key (it stayed home), the de-identified copy's
    key, where the copy went, its size and checksum there, and its evidence digest."""

    source_key: str
    copy_key: str
    destination: str
    size: int
    checksum: str | None
    evidence_digest: str


@dataclass(frozen=True, slots=True)
class ExportReceipt:
    """What :func:`export_anonymised` did."""

    tenant_id: str
    source_location: str
    destination: str
    options: tuple[str, ...]
    pixels_cleaned: bool
    objects: tuple[ExportedObject, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        data = asdict(self)
        data["options"] = list(self.options)
        data["objects"] = [asdict(o) for o in self.objects]
        return data


def checked_keys(keys: Iterable[str]) -> list[str]:
    """The keys to export, validated (before anything is read)."""
    if isinstance(keys, str):
        keys = [keys]  # one key given as a string, not its characters
    chosen = list(dict.fromkeys(keys))
    if not chosen:
        raise InputError("export_anonymised: no keys given: name the tenant's objects to "
                         "export")
    for key in chosen:
        if not isinstance(key, str):
            raise InputError(f"export_anonymised: key {key!r} is not a string")
        if key.startswith(COPY_PREFIX):
            raise InputError(
                f"export_anonymised: {key!r} is under {COPY_PREFIX!r}, where exports keep "
                "de-identified copies: export the original key instead")
    return chosen


def export_anonymised(store: TenantStore, deid_key: DeidKey, keys: Iterable[str], *,
                      transfer: Callable[[str], StoredObject], destination: str,
                      options: Iterable[Option] = (),
                      pixels_cleaned: bool = False) -> ExportReceipt:
    """De-identify ``keys`` of ``store``'s tenant into ``deid/<key>`` in its own location,
    then ``transfer`` each copy (a callable copying one key as ``anonymised`` to
    ``destination``). See the module's docstring; ``Residency.export_anonymised`` is the
    public entry point."""
    from residency_sdk.deid import deidentify_dicom  # pydicom is needed from here on

    chosen = checked_keys(keys)
    options = tuple(options)
    made: list[tuple[str, str, str]] = []
    for key in chosen:
        original = store.get(key)
        result = deidentify_dicom(original, tenant=store.tenant, key=deid_key,
                                  options=options, pixels_cleaned=pixels_cleaned)
        del original  # keep at most the original's and the copy's bytes at once
        copy = copy_key(key)
        stored = store.put(copy, result.data, data_class="anonymised",
                           evidence=result.evidence)
        if stored.data_class != "anonymised":  # the check refused what was just made
            store.delete(copy)
            raise NotAnonymised(
                f"export_anonymised: the de-identified copy of {key!r} failed the "
                "content check and was removed; nothing was transferred. Report this "
                "with the object's modality and SOP class")
        made.append((key, copy, stored.metadata.get(EVIDENCE_META, "")))
    exported = []
    for key, copy, digest in made:
        moved = transfer(copy)
        exported.append(ExportedObject(source_key=key, copy_key=copy,
                                       destination=moved.location, size=moved.size,
                                       checksum=moved.checksum, evidence_digest=digest))
    return ExportReceipt(tenant_id=store.tenant.id, source_location=store.location,
                         destination=destination, options=tuple(str(o) for o in options),
                         pixels_cleaned=pixels_cleaned, objects=tuple(exported))
