"""The one storage interface every adapter mirrors (local, S3, GCS, Azure Blob).

Adapters are raw and tenant-agnostic: they store keys exactly as given inside their one
bucket/container/directory. Tenant prefixes, key validation, residency checks and audit
events belong to the tenant store (:mod:`residency_sdk.storage.tenant_store`), which is what
users hold.

Contract every adapter keeps (the shared behavioural test suite checks it):

- ``put`` streams: a file object is read in chunks, never whole; memory stays bounded
  (multipart / resumable / block uploads above ``multipart_threshold``).
- Each object's checksum is computed while streaming and compared with what the service
  reports; a mismatch raises :class:`IntegrityError` and leaves no object behind
  (multipart uploads are aborted).
- Every write asks for encryption with the location's customer-managed key (S3 SSE-KMS,
  GCS ``kms_key_name``, Azure encryption scope, local AES-GCM with an in-location key);
  ``head`` reports what the service says was applied.
- Missing objects raise :class:`ObjectNotFound`; transient failures (throttling, 5xx,
  timeouts, resets) are retried with tenacity (see :mod:`residency_sdk.storage.retry`),
  4xx never; exhausted retries raise :class:`BackendUnavailable`.
- Errors are translated into the :mod:`residency_sdk.errors` hierarchy; no SDK exception
  escapes an adapter.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, Literal

from residency_sdk.errors import CapabilityUnavailable, ObjectNotFound
from residency_sdk.model import StorageTarget

ProgressCallback = Callable[[int], None]
"""Called with the number of bytes just transferred (an increment, not a total)."""

DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024
DEFAULT_MULTIPART_THRESHOLD = 16 * 1024 * 1024
DEFAULT_MAX_CONCURRENCY = 4


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a backend reports about one stored object.

    ``checksum`` is ``"<algorithm>:<value>"`` (``sha256:<hex>``, ``crc32c:<base64>``,
    ``md5:<hex>``). ``encryption`` is what the service reports (``"aws:kms"``,
    ``"gcs:kms"``, ``"azure:encryption-scope"``, ``"local:aes-256-gcm"``) and ``kms_key``
    the key or scope it names; both None when the service reports none.
    """

    key: str
    size: int
    checksum: str | None = None
    encryption: str | None = None
    kms_key: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    last_modified: datetime | None = None
    etag: str | None = None
    version: str | None = None
    """The provider's id of this exact write when it has one besides the etag: the S3
    ``VersionId`` (versioned buckets), the GCS ``generation``, the Azure ``version_id``.
    Conditional deletes (:meth:`ObjectStore.delete` ``if_match``) use it with the etag."""


@dataclass(frozen=True, slots=True)
class BucketFacts:
    """What a provider reports about one bucket. ``None`` means "not reported"."""

    exists: bool
    region: str | None = None
    encryption: str | None = None
    kms_key: str | None = None
    public_access_blocked: bool | None = None
    kms_key_matches: bool | None = None
    """The adapter's own comparison with the map's key (it may resolve aliases)."""
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Residue:
    """What :meth:`ObjectStore.purge_residue` removed under a prefix (or
    :meth:`ObjectStore.purge_versions` of one key), and what it kept.

    ``versions_deleted`` counts old versions and delete markers, ``uploads_aborted``
    incomplete multipart uploads, ``files_removed`` leftovers of interrupted writes;
    ``held`` maps a key to why the provider refused to remove one of its versions.
    """

    versions_deleted: int = 0
    uploads_aborted: int = 0
    files_removed: int = 0
    held: dict[str, str] = field(default_factory=dict)


KeyStatus = Literal["destroyed", "scheduled", "absent", "unsupported"]


@dataclass(frozen=True, slots=True)
class KeyDestruction:
    """What :meth:`ObjectStore.destroy_tenant_key` did with one tenant's key material.

    ``status``: ``destroyed`` (gone now: the local key file shredded), ``scheduled`` (the
    provider destroys it at ``effective_at``, unusable from now on: KMS
    ``ScheduleKeyDeletion`` after ``DisableKey``), ``absent`` (this backend never made a
    key for the tenant, or an earlier run destroyed it), ``unsupported`` (the backend
    keeps no per-tenant key: its copies and backups are not made unreadable; ``detail``
    says what covers them instead).
    """

    tenant_id: str
    status: KeyStatus
    key_id: str | None = None
    detail: str = ""
    effective_at: datetime | None = None


class ObjectStore(abc.ABC):
    """One bucket (or container, or directory) of one provider in one region."""

    target: StorageTarget
    """The storage target this store serves (provider, region, bucket, key...)."""

    @abc.abstractmethod
    def put(self, key: str, data: bytes | BinaryIO, *, metadata: dict[str, str] | None = None,
            progress: ProgressCallback | None = None) -> ObjectInfo:
        """Store ``data`` under ``key`` (streamed, checksummed, encrypted) and report it."""

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """Return the whole object (checksum verified). For large objects use :meth:`open`."""

    @abc.abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A streaming reader over the object; closing it releases the connection."""

    @abc.abstractmethod
    def head(self, key: str) -> ObjectInfo:
        """Size, checksum, encryption and metadata of one object."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (paginated underneath)."""

    @abc.abstractmethod
    def delete(self, key: str, *, if_match: ObjectInfo | None = None) -> bool:
        """Delete one object; True if it existed.

        With ``if_match`` (what :meth:`head` or :meth:`list` reported) the delete is
        conditional on the stored object still being that exact write (S3 ``If-Match``
        ETag; GCS ``ifGenerationMatch``; Azure ``If-Match`` ETag;
        local: compared under the bucket lock): a re-upload in between raises
        :class:`~residency_sdk.errors.ObjectChanged` and nothing is deleted. A missing
        object returns False either way."""

    def exists(self, key: str) -> bool:
        """True if ``key`` exists."""
        try:
            self.head(key)
        except ObjectNotFound:
            return False
        return True

    def copy_to(self, other: ObjectStore, key: str, dest_key: str | None = None, *,
                progress: ProgressCallback | None = None) -> ObjectInfo:
        """Stream ``key`` into ``other`` (under ``dest_key``, default the same key)."""
        info = self.head(key)
        with self.open(key) as reader:
            return other.put(dest_key or key, reader, metadata=info.metadata, progress=progress)

    # --- capabilities: what only the provider can answer. Each has a safe default for a
    # backend that has no such feature; sweeps and erasure call them without probing.

    def hold_reason(self, info: ObjectInfo, now: datetime) -> str | None:
        """Why the provider itself keeps ``info`` (a native lock or legal hold), or None.

        The metadata marker (``legal_hold=true``) is read by the caller from ``info``; this
        answers for what only the provider knows. A state that cannot be read counts as a
        hold. Default: the backend has no native holds.
        """
        return None

    def purge_residue(self, prefix: str, *, keep: frozenset[str] = frozenset()) -> Residue:
        """Remove what no listing under the directory ``prefix`` (ending in ``/``) shows
        but is still the data under it: old versions and delete markers, incomplete
        multipart uploads, leftovers of interrupted writes. Keys in ``keep`` (held
        objects) are left alone. Default: the backend keeps no such residue.
        """
        return Residue()

    def residue_left(self, prefix: str, *,
                     keep: frozenset[str] = frozenset()) -> Sequence[str]:
        """What :meth:`purge_residue` would still find under ``prefix`` (for verification),
        as readable names such as ``key?versionId=...``. Default: nothing."""
        return []

    def purge_versions(self, key: str) -> Residue:
        """Remove every noncurrent version and delete marker of exactly ``key`` (never
        another key that merely starts with it): S3 versions and delete markers, GCS
        noncurrent generations, Azure previous versions, snapshots and soft-deleted
        versions. The current object, if one exists (written again meanwhile), is never
        touched. Sweeps call it right after deleting ``key``, so that no older copy of
        what they deleted stays readable until a lifecycle rule gets to it.

        A version the provider refuses to remove (S3 object lock or legal hold, a GCS
        hold, an Azure soft-deleted version the account will not delete permanently)
        stays and is reported in ``Residue.held`` with why, never silently kept; other
        failures raise (translated), having removed what came before them. Default: the
        backend keeps no versions (local, memory).
        """
        return Residue()

    def tenant_key_id(self, tenant_id: str) -> str | None:
        """The id of the key that encrypts ``tenant_id``'s objects (keys under
        ``tenants/<tenant_id>/``) on this backend, when it keeps a key per tenant and one
        exists; None otherwise. Default: no per-tenant keys."""
        return None

    def destroy_tenant_key(self, tenant_id: str) -> KeyDestruction:
        """Crypto-shred ``tenant_id`` on this backend: destroy the key material that
        encrypts its objects, so every copy the provider or anyone else keeps (versions,
        backups, snapshots, stray copies) becomes unreadable. Idempotent: a key already
        destroyed reports ``absent``. Erasure calls it last, after the objects are gone.
        Default: ``unsupported`` (no per-tenant key on this backend)."""
        return KeyDestruction(
            tenant_id=tenant_id, status="unsupported",
            detail=f"the {self.target.provider} backend keeps no per-tenant key: backups "
                   "the provider keeps are not made unreadable by erasure")

    def describe_bucket(self) -> BucketFacts:
        """What the provider reports about the bucket itself (existence, region, default
        encryption, public access), for ``residency verify``. Backends that have no
        provider to ask raise :class:`CapabilityUnavailable`."""
        raise CapabilityUnavailable(
            f"the {self.target.provider} backend {self.target.bucket!r} has no provider to "
            "describe its bucket: only cloud backends can be verified")

    def close(self) -> None:  # noqa: B027 - optional hook, most adapters hold nothing
        """Release clients and connection pools."""
