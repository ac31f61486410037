"""``anonymised`` is earned: the content check the storage facade applies to data
declared anonymised, before it is stored or transferred as such.

A DICOM object (Part 10: the 128-byte preamble and ``DICM``) passes when it parses,
carries no attribute the PS3.15 Basic Profile removes or empties with a non-empty value
(nor a non-empty private attribute), has PatientIdentityRemoved = YES
(:func:`residency_sdk.deid.check_dicom`), and, when evidence is given or the object names
its evidence record, the evidence is this tenant's and is about exactly these bytes
(SHA-256). A DICOM data set *without* the Part 10 header (a raw data set, as DICOM
networking and some exporters write it) never passes: it is DICOM, so caller-made
evidence cannot vouch for it, and the check reads Part 10 only; de-identify it with
:func:`residency_sdk.deid.deidentify_dicom`, which writes Part 10. Anything else (a report,
a CSV) has no structure the SDK can check: it passes only with evidence of the caller's own
de-identification step (:func:`residency_sdk.deid.external_evidence`), bound to its
SHA-256. That is the boundary: for non-DICOM data the SDK checks that the caller's
recorded statement is about these bytes, not what the bytes contain.

Data that fails is treated as ``phi`` (the facade decides and marks it as such, and says
why in the audit event), and where ``phi`` may not go it is refused with
:class:`~residency_sdk.errors.NotAnonymised` naming the attributes found (keywords and
tags, never values).

:func:`intake` reads what it must of the caller's data without holding more than it
needs: a DICOM object is read whole (the check parses it; slices are small), anything else
is only hashed, rewinding a seekable file or spooling a stream to a
:class:`~tempfile.SpooledTemporaryFile` (in memory up to :data:`SPOOL_MEMORY`, then on
disk) so the store still streams it.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from dataclasses import dataclass, field
from typing import IO, BinaryIO, Literal, cast

from residency_sdk.deid.evidence import Evidence
from residency_sdk.errors import StorageError

HEAD_BYTES = 132
"""What DICOM detection reads: the 128-byte preamble and the ``DICM`` prefix."""
SPOOL_MEMORY = 8 * 1024 * 1024
"""A non-seekable stream is spooled in memory up to this size, then to a temporary file."""
_CHUNK = 1024 * 1024

MAX_SHOWN = 12
"""Problems named in an audit event or error message (``problems`` keeps them all)."""

Kind = Literal["dicom", "raw_dicom", "other"]


_NAMED = re.compile(r"^\w+ \([0-9A-Fa-f]{4},[0-9A-Fa-f]{4}\)")


def _rank(problem: str) -> int:
    if "(0010," in problem.split(";")[0]:
        return 0
    if problem.startswith("private tag"):
        return 3
    return 2 if _NAMED.match(problem) and not problem.startswith("PatientIdentity") else 1


def shown(problems: tuple[str, ...], limit: int = MAX_SHOWN) -> str:
    """``problems`` joined for a message, most telling first (an object can carry
    hundreds of private tags): the patient's own attributes (group 0010), then what is
    not about one attribute (PatientIdentityRemoved, the evidence), then the other named
    attributes, then private ones; at most ``limit``, then how many more there are."""
    ordered = sorted(problems, key=_rank)
    more = len(ordered) - limit
    return "; ".join(ordered[:limit]) + (
        f"; and {more} more (NotAnonymised.problems, `residency deid check` list them "
        "all)" if more > 0 else "")


@dataclass
class Intake:
    """The caller's data, ready to check and to store.

    ``payload`` is what the store writes (the bytes, the caller's seekable file rewound to
    where it was, or a spool of a stream); ``content`` holds the whole object only for
    DICOM (what the check parses); ``sha256`` is of every byte that will be stored."""

    payload: bytes | BinaryIO
    sha256: str
    size: int
    kind: Kind
    content: bytes | None = None
    _spool: IO[bytes] | None = field(default=None, repr=False)

    def close(self) -> None:
        """Release the spool, if one was made."""
        if self._spool is not None:
            self._spool.close()
            self._spool = None


def _is_dicom(head: bytes) -> bool:
    from residency_sdk.deid import is_dicom

    return bool(is_dicom(head))


# Value representations, to recognise an explicit-VR element header.
_VRS = frozenset({b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS",
                  b"LO", b"LT", b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH",
                  b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM", b"UC", b"UI", b"UL", b"UN",
                  b"UR", b"US", b"UT", b"UV"})
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN",
                       b"UR", b"UT", b"SV", b"UV"})


def _looks_like_raw_dicom(head: bytes) -> bool:
    """True when ``head`` starts with two DICOM data elements of standard attributes, in
    ascending tag order (little endian, explicit or implicit VR): a data set written
    without the Part 10 preamble. Two known, ordered tags with sane lengths in a row do
    not happen by chance in a report or a CSV."""
    import struct

    try:
        from pydicom.datadict import dictionary_has_tag
    except ImportError:  # without pydicom: an even group in the standard range
        def dictionary_has_tag(tag: int) -> bool:  # type: ignore[misc]
            return (tag >> 16) % 2 == 0 and 0x0002 <= tag >> 16 <= 0x7FE0

    offset, previous, seen = 0, -1, 0
    while seen < 2:
        if offset + 8 > len(head):
            return False
        group, element = struct.unpack_from("<HH", head, offset)
        tag = group << 16 | element
        if tag <= previous or not dictionary_has_tag(tag):
            return False
        vr = head[offset + 4: offset + 6]
        if vr in _VRS:
            if vr in _LONG_VRS:
                if offset + 12 > len(head):
                    return seen + 1 >= 2
                length = struct.unpack_from("<I", head, offset + 8)[0]
                offset += 12
            else:
                length = struct.unpack_from("<H", head, offset + 6)[0]
                offset += 8
        else:
            length = struct.unpack_from("<I", head, offset + 4)[0]
            offset += 8
        if length == 0xFFFFFFFF:  # undefined length (a sequence): header is enough
            return seen + 1 >= 2
        if length > 64 * 1024 * 1024:
            return False
        offset += length
        previous, seen = tag, seen + 1
    return True


def _kind(head: bytes) -> Kind:
    if _is_dicom(head):
        return "dicom"
    return "raw_dicom" if _looks_like_raw_dicom(head) else "other"


def intake(data: bytes | bytearray | memoryview | BinaryIO, *, copy: bool = False) -> Intake:
    """Read what the content check needs of ``data`` (see the module's docstring).

    ``copy=True`` spools a file object whatever it is (the caller closes it after): a
    transfer checks and then copies the same bytes."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        kind: Kind = _kind(raw[:HEAD_BYTES])
        return Intake(raw, hashlib.sha256(raw).hexdigest(), len(raw), kind,
                      raw if kind == "dicom" else None)
    try:
        start = data.tell() if data.seekable() else None
        head = _read_exactly(data, HEAD_BYTES)
    except (AttributeError, OSError, ValueError) as exc:
        raise StorageError(f"cannot read the data to check it as anonymised "
                           f"({type(exc).__name__}: {exc}): pass bytes or a binary file "
                           "object") from None
    if _is_dicom(head):
        raw = head + _read_rest(data)
        return Intake(raw, hashlib.sha256(raw).hexdigest(), len(raw), "dicom", raw)
    head_kind = _kind(head)
    digest = hashlib.sha256(head)
    size = len(head)
    if start is not None and not copy:  # hash the rest, then hand the store the same file, rewound
        for chunk in iter(lambda: data.read(_CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
        data.seek(start)
        return Intake(data, digest.hexdigest(), size, head_kind)
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)  # noqa: SIM115 - closed by Intake.close
    spool.write(head)
    for chunk in iter(lambda: data.read(_CHUNK), b""):
        digest.update(chunk)
        size += len(chunk)
        spool.write(chunk)
    spool.seek(0)
    return Intake(cast(BinaryIO, spool), digest.hexdigest(), size, head_kind, _spool=spool)


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    parts, left = [], size
    while left > 0:
        chunk = stream.read(left)
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _read_rest(stream: BinaryIO) -> bytes:
    return b"".join(iter(lambda: stream.read(_CHUNK), b""))


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether data declared ``anonymised`` passed the content check.

    ``problems`` says why not (human readable, attributes named by keyword and tag,
    never by value); ``found`` lists the identifying attributes present (keywords);
    ``evidence`` is the evidence the check used (None: content check only, or none)."""

    ok: bool
    kind: Kind
    sha256: str
    problems: tuple[str, ...] = ()
    found: tuple[str, ...] = ()
    evidence: Evidence | None = None

    def summary(self) -> str:
        """The audit event's ``deid`` field: the evidence summary, or what the content
        check alone established."""
        if self.evidence is not None:
            return self.evidence.summary()
        return (f"DICOM content check passed (no identifying attribute, "
                f"PatientIdentityRemoved YES); no evidence record; sha256:{self.sha256}")

    def reason(self, limit: int = MAX_SHOWN) -> str:
        """One line for the audit event and the error: why it is treated as ``phi``
        (the first ``limit`` problems, named attributes before private ones)."""
        return "declared anonymised but not verified as such, treated as phi: " + \
            shown(self.problems, limit)


def verify(data: Intake, *, tenant_id: str, evidence: Evidence | None = None,
           evidence_problem: str | None = None) -> Verdict:
    """Check ``data`` (an :func:`intake`) as ``anonymised`` data of ``tenant_id``.

    ``evidence`` is what the caller passed (or what the object's record says);
    ``evidence_problem`` a reason the evidence could not be had (a record the object
    names that is missing or corrupt), which fails the check."""
    problems: list[str] = []
    found: tuple[str, ...] = ()
    if evidence_problem:
        problems.append(evidence_problem)
    # DICOM evidence goes to check_dicom: it checks the SHA-256 binding and reads the
    # options (shifted dates, cleaned pixels) the object was de-identified with.
    to_check = evidence if evidence is not None and evidence.kind == "dicom" else None
    if evidence is not None:
        if evidence.tenant_id != tenant_id:
            problems.append(f"the evidence is tenant {evidence.tenant_id!r}'s, not "
                            f"{tenant_id!r}'s")
        if (to_check is None or data.kind != "dicom") and \
                evidence.output_sha256 != data.sha256:
            problems.append(f"the evidence is about other bytes (its output sha256 "
                            f"{evidence.output_sha256} is not the data's {data.sha256})")
    if data.kind == "dicom":
        from residency_sdk.deid import check_dicom

        assert data.content is not None
        check = check_dicom(data.content, evidence=to_check)
        problems.extend(check.problems)
        found = tuple(check.found)
    elif data.kind == "raw_dicom":
        problems.append(
            "a DICOM data set without the Part 10 header (no preamble and 'DICM'): the "
            "SDK checks DICOM content only in Part 10 form, and evidence cannot vouch for "
            "DICOM content; de-identify it with rs.deid.deidentify_dicom (which writes "
            "Part 10) and store that")
    elif evidence is None and not evidence_problem:
        problems.append(
            "not a DICOM Part 10 object, so the SDK cannot check its content, and no "
            "evidence was given: pass evidence= (rs.deid.external_evidence(data, ...) "
            "recording your de-identification step) or declare it phi/personal")
    return Verdict(not problems, data.kind, data.sha256, tuple(problems), found,
                   evidence if not problems else None)
