"""The one storage interface every adapter mirrors (local, S3, GCS, Azure Blob).

Adapters are raw and tenant-agnostic: they store keys exactly as given inside their one
bucket/container/directory. Tenant prefixes, key validation, residency checks and audit
events belong to the guarded facade (:mod:`residency_sdk.storage.facade`), which is what
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO

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
    def delete(self, key: str) -> bool:
        """Delete one object; True if it existed."""

    def exists(self, key: str) -> bool:
        """True if ``key`` exists."""
        from residency_sdk.errors import ObjectNotFound

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

    def close(self) -> None:  # noqa: B027 - optional hook, most adapters hold nothing
        """Release clients and connection pools."""
