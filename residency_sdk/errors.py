"""One error hierarchy for everything residency-sdk raises.

Every error is a :class:`ResidencyError`, so callers can catch one type; each message
names the offending value and says how to fix it. Beneath it, the errors also carry the
standard meaning a Python caller already handles:

- bad input or configuration (:class:`InputError`) is a :class:`ValueError`;
- a backend that kept failing (:class:`BackendUnavailable`) is a :class:`ConnectionError`;
- a provider refusing the credentials (:class:`AccessDenied`) is a :class:`PermissionError`.

A refusal on residency grounds (:class:`TransferBlocked`, :class:`BAARequired`) is none of
those: the input was fine, the law says no.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from residency_sdk.model import Decision


class ResidencyError(Exception):
    """Base class of every error raised by residency-sdk."""


class InputError(ResidencyError, ValueError):
    """Bad input or configuration (also a :class:`ValueError`): fix the value the
    message names and call again; nothing was done."""


# --- input and configuration -------------------------------------------------------


class InvalidCountry(InputError):
    """A country code that is empty or not an ISO 3166-1 alpha-2 code."""

    def __init__(self, value: object, hint: str = "") -> None:
        self.value = value
        msg = f"invalid country code {value!r}: expected an ISO 3166-1 alpha-2 code such as 'DE'"
        super().__init__(f"{msg}{'; ' + hint if hint else ''}")


class NoRoute(InputError):
    """A valid country that the region map does not route anywhere (fail closed)."""

    def __init__(self, country: str, map_name: str) -> None:
        self.country = country
        super().__init__(
            f"no residency route for country {country!r} in region map {map_name!r}: "
            f"add a route for {country} (or a group containing it) to the map's `routes`; "
            "residency-sdk never falls back to a default location"
        )


class UnknownDataClass(InputError):
    """A data class the transfer rules do not define."""

    def __init__(self, value: object, known: list[str]) -> None:
        self.value = value
        super().__init__(f"unknown data class {value!r}: use one of {', '.join(known)}")


class UnknownMechanism(InputError):
    """A transfer-mechanism flag the transfer rules do not define."""

    def __init__(self, value: object, known: list[str]) -> None:
        self.value = value
        super().__init__(
            f"unknown transfer mechanism {value!r}: use one of {', '.join(sorted(known))}"
        )


class InvalidTenant(InputError):
    """A tenant id that cannot safely name a storage prefix."""


class MapError(InputError):
    """A region map or rules file that cannot be loaded or fails validation.

    ``file`` is the file, ``path`` the dotted location inside it, ``value`` the offending
    value (when there is one).
    """

    def __init__(
        self, message: str, *, file: str | None = None, path: str = "", value: Any = None
    ) -> None:
        self.file = file
        self.path = path
        self.value = value
        where = file or "<region map>"
        if path:
            where += f" at {path}"
        shown = "" if value is None else f" (value: {_short(value)})"
        super().__init__(f"{where}: {message}{shown}")


class ConfigError(InputError):
    """A settings file (``residency.toml``, ``[tool.residency]`` in ``pyproject.toml``) or
    ``RESIDENCY_*`` variable that cannot be read: malformed TOML, an unknown key, a value
    of the wrong type. ``file`` is the file (None for an environment variable), ``key``
    the offending setting (when there is one)."""

    def __init__(self, message: str, *, file: str | None = None,
                 key: str | None = None) -> None:
        self.file = file
        self.key = key
        super().__init__(f"{file}: {message}" if file else message)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- transfer control --------------------------------------------------------------


class TransferBlocked(ResidencyError):
    """A movement of personal data across a border with no legal basis."""

    def __init__(self, decision: Decision, message: str | None = None) -> None:
        self.decision = decision
        super().__init__(message or "transfer blocked: " + "; ".join(decision.reasons))


class PlacementBlocked(TransferBlocked):
    """Placing the tenant's data in its residency location is itself a blocked transfer."""


class EgressBlocked(ResidencyError):
    """An HTTP request the guarded client refused before a byte left the process: an
    undeclared host, a redirect to one, a processor the rules or its declaration do not
    allow for this data, a compute endpoint of another location, or a malformed or
    insecure URL. ``reasons`` say why and how to fix it; ``decision`` is the transfer
    decision when the rules were asked."""

    def __init__(self, message: str, *, url: str, host: str | None,
                 reasons: tuple[str, ...] = (), decision: Decision | None = None) -> None:
        self.url = url
        self.host = host
        self.reasons = reasons or (message,)
        self.decision = decision
        super().__init__(message)


class InvalidSource(InputError):
    """A caller-asserted ``source`` that disagrees with where the SDK knows the data lives:
    where data lives is derived (the tenant's placement, an object's marks), never taken
    from the caller."""


class TenantCountryConflict(ResidencyError):
    """A tenant id opened under another country than the one its data was first written
    under: move the tenant (``residency tenant move`` / ``Residency.move_tenant``) instead
    of opening it under a second country."""


class BAARequired(ResidencyError):
    """``phi`` aimed at a backend whose provider has no Business Associate Agreement."""


class NotAnonymised(ResidencyError):
    """Data declared ``anonymised`` that failed the content check (a DICOM object with
    identifying attributes or without PatientIdentityRemoved = YES; evidence missing or
    about other bytes), so treated as ``phi``, and ``phi`` may not go there.

    ``found`` names the identifying attributes present (keywords, never values),
    ``problems`` every failed check, ``refusal`` the ``phi`` refusal
    (:class:`TransferBlocked`, :class:`PlacementBlocked` or :class:`BAARequired`) and
    ``decision`` its decision, when it has one. De-identify the data first
    (``rs.deid.deidentify_dicom``, ``Residency.export_anonymised``) and pass its evidence.
    """

    def __init__(self, message: str, *, found: tuple[str, ...] = (),
                 problems: tuple[str, ...] = (),
                 refusal: ResidencyError | None = None) -> None:
        self.found = tuple(found)
        self.problems = tuple(problems)
        self.refusal = refusal
        self.decision: Decision | None = getattr(refusal, "decision", None)
        super().__init__(message)


# --- storage -----------------------------------------------------------------------


class StorageError(ResidencyError):
    """Base class of storage failures."""


class InvalidKey(StorageError, InputError):
    """An object key that is unsafe or malformed (``..``, absolute, control characters)."""


class ObjectNotFound(StorageError):
    """The object does not exist."""

    def __init__(self, key: str, where: str = "") -> None:
        self.key = key
        super().__init__(f"object {key!r} not found{' in ' + where if where else ''}")


class IntegrityError(StorageError):
    """The checksum computed locally does not match what the service reports."""


class EncryptionError(StorageError):
    """An object or bucket is not encrypted with the location's customer-managed key."""


class KeyDestroyed(EncryptionError):
    """The tenant key that encrypted an object was destroyed by an erasure
    (crypto-shredding): the object, and every copy or backup of it, cannot be read."""


class ObjectChanged(StorageError):
    """A conditional delete found a different object under the key than the one it
    examined (re-uploaded in between): nothing was deleted.

    ``key`` names the object, ``expected`` the version examined (etag, generation or
    version id), ``found`` what the service holds now when it says (else None)."""

    def __init__(self, key: str, expected: str | None, found: str | None = None,
                 where: str = "") -> None:
        self.key = key
        self.expected = expected
        self.found = found
        now = f" (now {found})" if found else ""
        super().__init__(
            f"object {key!r}{' in ' + where if where else ''} changed since it was examined "
            f"(examined version {expected}{now}): it was not deleted; examine it again")


class InsecureEndpoint(StorageError, InputError):
    """A plain ``http://`` endpoint that is not a loopback address."""


class BackendUnavailable(StorageError, ConnectionError):
    """A backend kept failing after retries (and failover, where configured)."""


class ReadInterrupted(BackendUnavailable):
    """A download broke off mid-stream (connection reset or dropped after the answer began).

    ``get`` re-reads the whole object (bounded by the retry policy) and only raises this
    when every attempt broke off; a streaming reader raises it to its consumer, who must
    discard what it read so far and read the object again."""


class AccessDenied(StorageError, PermissionError):
    """The provider refused the credentials or the operation (403, bad key, expired
    token): not retried; fix the credentials or the bucket/key policy the message names."""


class CapabilityUnavailable(StorageError):
    """The backend has no such feature (for example: describing a local directory's
    bucket, which has no provider to ask)."""


class BackendNotConfigured(StorageError, InputError):
    """A backend that cannot be opened as configured; one of the four subclasses below
    says which."""


class SDKNotInstalled(BackendNotConfigured):
    """The provider's SDK is not installed: the message names the pip extra."""


class BucketNotFound(BackendNotConfigured):
    """The bucket or container the map names does not exist: provision it with the
    location's infra stack."""


class NoSuchBackend(BackendNotConfigured):
    """The location has no backend of the requested provider (or no adapter serves it)."""


class UnknownLocation(BackendNotConfigured):
    """A location id (or destination) the region map does not define."""


class InvalidLocalLocation(BackendNotConfigured):
    """The local backend cannot be opened: no root folder, or an unusable location name."""


class EnvironmentOverride(BackendNotConfigured):
    """A process-wide setting (an environment variable such as ``AWS_ENDPOINT_URL`` or
    ``AZURE_STORAGE_CONNECTION_STRING``) would point a location's client at another
    account or endpoint than the region map names; the adapter refuses to open."""


class UnsafePath(StorageError):
    """A path in the local data root that crosses a symbolic link or leaves the root:
    nothing is read or written through it."""


class ResidencyViolation(StorageError):
    """What a backend really reports (region, encryption, access) breaks the map's promise."""


# --- retention and erasure ---------------------------------------------------------


class RetentionError(ResidencyError):
    """A retention sweep that cannot run: unknown location or provider, bad checkpoint."""


class UnknownRetentionCategory(RetentionError, InputError):
    """A write names a retention category the map has no period for in its location, so
    no lifecycle rule would ever select the object; refused before any byte is sent."""


class ErasureError(ResidencyError):
    """An erasure request that cannot be made, found or run (unknown id, bad state file)."""


class ErasureIncomplete(ErasureError):
    """A tracked erasure ran but could not finish; the request stays open.

    ``receipt`` (an ``ErasureReceipt``) says what was deleted where and what is left;
    ``request_id`` names the open request: rerun ``res.erase(tenant)`` or
    ``ErasureTracker.run(request_id)`` to finish it.
    """

    def __init__(self, message: str, *, receipt: Any = None,
                 request_id: str | None = None) -> None:
        self.receipt = receipt
        self.request_id = request_id
        super().__init__(message)


class ErasureBlocked(ErasureIncomplete):
    """Objects under a legal hold (metadata marker or S3 object lock) were kept."""


class ErasureUnavailable(ErasureIncomplete, BackendUnavailable):
    """A backend could not be reached during a tracked erasure (also a
    :class:`BackendUnavailable`)."""


# --- infrastructure ----------------------------------------------------------------


class InfraError(InputError):
    """An infra plan that cannot be built, or stack outputs that cannot be read back."""


class InfraCrossesBorder(InfraError):
    """A planned resource (failover or replication region, paired redundancy, key location)
    would put data outside the location's country; refused when the plan is built."""


# --- audit -------------------------------------------------------------------------


class AuditError(ResidencyError):
    """Base class of audit-trail failures."""


class ChainBroken(AuditError):
    """The audit hash chain does not verify.

    ``seq`` is the position (1-based) of the first broken event, ``kind`` a short code
    for what is wrong (``hash_mismatch``, ``prev_hash_mismatch``, ``missing_events``,
    ``mac_mismatch``, ``truncated``, ...).
    """

    def __init__(self, message: str, *, seq: int | None = None, kind: str | None = None) -> None:
        self.seq = seq
        self.kind = kind
        super().__init__(message)


class AuditKeyError(AuditError, InputError):
    """The HMAC key is missing, too short, or not the key the audit log was created with."""


class AuditFormatError(AuditError, InputError):
    """A file that is not a residency audit log or checkpoint, or an unsupported version."""


class AuditLogClosed(AuditError):
    """An append or flush on an audit log that was already closed."""


class AuditUnavailable(AuditError):
    """The audit trail cannot record an event (disk full, database down, log rolled back).

    Raised before the data operation starts when its intent event cannot be made durable:
    the operation did not happen. The message names the sink and what to fix.
    """


class ChainRefused(ChainBroken, AuditUnavailable):
    """The writer refuses to append to a log whose stored chain is not the one it extends:
    the head record is missing (the log was emptied), older than one this writer saw
    (rolled back), or not the last event (truncated, or rows added behind its back).

    Both a :class:`ChainBroken` (``seq`` and ``kind`` say what) and an
    :class:`AuditUnavailable` (the event was not recorded, so the operation must not run).
    """


class ReportRenderError(AuditError):
    """A report document that could not be produced although its input was fine: headless
    Chromium failed, timed out or printed nothing, or a PDF could not take its seal. The
    message names the browser or document, and carries the tail of Chromium's stderr."""


# --- de-identification -------------------------------------------------------------


class DeidentificationError(ResidencyError):
    """Base class of de-identification failures (:mod:`residency_sdk.deid`)."""


class NotDicom(DeidentificationError, InputError):
    """Data given to the DICOM de-identifier that is not a readable DICOM Part 10 file
    (no ``DICM`` marker after the 128-byte preamble, or a dataset that does not parse).
    Non-DICOM data is de-identified by the caller's own step and recorded with
    ``residency_sdk.deid.external_evidence``."""


class DeidentificationRefused(DeidentificationError):
    """The de-identifier will not vouch for this object: its pixels may carry identifying
    text (BurnedInAnnotation = YES, or a modality or SOP class known to burn text into
    the image). Clean the pixel data first and pass ``pixels_cleaned=True`` (recorded in
    the evidence)."""
