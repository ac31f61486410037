"""An in-process object store for unit tests: the :class:`ObjectStore` contract, no disk,
no network, no emulator.

:class:`MemoryStore` stands in for any backend (its ``target`` may name any provider) so
routing, transfer, audit and retention logic can be tested without a cloud or a temporary
directory::

    from residency_sdk import Residency
    from residency_sdk.storage.memory import MemoryStore

    res = Residency.load(storage=lambda target, location: MemoryStore(target))

Behaviour, per the contract in :mod:`residency_sdk.storage.base`:

- **Keys** are checked with :func:`~residency_sdk.storage.keys.validate_key` (and listing
  prefixes with :func:`~residency_sdk.storage.keys.validate_prefix`), exactly as every
  other adapter does, so a key refused by a real backend is refused here too.
- **put streams**: a file object is read in bounded chunks of ``chunk_size`` bytes (never
  one unbounded ``read()``); SHA-256 is computed while reading and ``progress`` gets each
  chunk's length. The object becomes visible atomically once the source is exhausted: a
  source or ``progress`` callback that raises leaves no object (and no residue) behind.
- **Checksums** are ``sha256:<hex>`` (as the local backend reports them); every read
  (:meth:`~MemoryStore.get`, and :meth:`~MemoryStore.open` at the end of the stream)
  re-verifies the bytes against it and raises :class:`IntegrityError` on a mismatch.
- **Encryption: none.** Objects are held as plain bytes in this process's memory and
  nothing is encrypted, whatever key or encryption scope the target names. ``put`` and
  ``head`` therefore report ``encryption=None`` and ``kms_key=None``: what
  :class:`~residency_sdk.storage.base.ObjectInfo` documents for "the service reports no
  encryption". Do not use this store for real data.
- **Reads** (:meth:`~MemoryStore.open`) are forward-only streams over the object as it
  was when opened; a later put or delete of the key does not change what an open reader
  returns.
- **Listings** are a consistent snapshot taken when :meth:`~MemoryStore.list` is called,
  so deleting (or writing) while iterating never breaks the iteration. They come in the
  order the stood-in backend lists: key (code point, i.e. UTF-8 byte) order for cloud
  providers, and for a ``local`` target the local store's directory-tree order (by the
  tuple of ``/``-separated segments), which is what the retention sweep's resume expects.
- **Thread safety**: one lock guards the key table; reading the source, hashing and
  joining bytes happen outside it, so a slow upload does not block other callers. Of two
  concurrent puts of one key, the one that finishes last wins.
- **Missing objects** raise :class:`ObjectNotFound`; there are no transient failures, so
  nothing is retried.
- **Capabilities**: no native holds, no residue (a failed put leaves nothing, a delete
  keeps no old version); :meth:`~MemoryStore.describe_bucket` raises
  :class:`CapabilityUnavailable` because there is no provider to ask.

Each instance owns its data: two ``MemoryStore`` objects never share objects, even for the
same target, and the data lives as long as the instance (``close`` keeps it).
"""

from __future__ import annotations

import hashlib
import io
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, BinaryIO, cast

from residency_sdk.errors import (
    CapabilityUnavailable,
    IntegrityError,
    ObjectChanged,
    ObjectNotFound,
    StorageError,
)
from residency_sdk.model import StorageTarget
from residency_sdk.storage._conditional import expected_write
from residency_sdk.storage.base import BucketFacts, ObjectInfo, ObjectStore, ProgressCallback
from residency_sdk.storage.keys import validate_key, validate_prefix

CHUNK_SIZE = 1024 * 1024
"""Default size of the bounded reads ``put`` makes from a file object (1 MiB)."""
_MAX_CHUNK_SIZE = 64 * 1024 * 1024


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _Entry:
    """One stored object. Immutable: a put replaces the entry, it never edits one."""

    key: str
    chunks: tuple[bytes, ...]
    size: int
    sha256: str
    metadata: tuple[tuple[str, str], ...]
    last_modified: datetime
    etag: str

    def info(self) -> ObjectInfo:
        # A fresh metadata dict each time: callers may mutate what they are given.
        return ObjectInfo(key=self.key, size=self.size, checksum=f"sha256:{self.sha256}",
                          encryption=None, kms_key=None, metadata=dict(self.metadata),
                          last_modified=self.last_modified, etag=self.etag)


def _check_metadata(metadata: dict[str, str] | None) -> tuple[tuple[str, str], ...]:
    if not metadata:
        return ()
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise StorageError("metadata must be a dict of str to str")
    return tuple(metadata.items())


def _as_source(data: bytes | BinaryIO) -> IO[bytes]:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return io.BytesIO(data)
    if isinstance(data, str) or not hasattr(data, "read"):
        raise StorageError("data must be bytes or a binary file object (opened with 'rb'), "
                           f"got {type(data).__name__}")
    return data


def _read_chunk(src: IO[bytes], size: int) -> bytes:
    """Read up to ``size`` bytes, topping up short reads until the chunk is full or the
    stream ends; never more than ``size`` bytes in one call."""
    parts: list[bytes] = []
    missing = size
    while missing:
        try:
            data = src.read(missing)
        except OSError as exc:  # the caller's data failed, not this store
            raise StorageError(f"reading the data to store failed: {exc}") from exc
        if not data:  # b"" (end) or None (a non-blocking source with nothing more)
            break
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise StorageError("data must be bytes or a binary file object (opened with "
                               f"'rb'), got a reader returning {type(data).__name__}")
        if len(data) > missing:
            raise StorageError(f"the data source returned {len(data)} bytes when asked for "
                               f"at most {missing}")
        parts.append(bytes(data))
        missing -= len(data)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _verify(entry: _Entry, digest: str, size: int) -> None:
    if size != entry.size or digest != entry.sha256:
        raise IntegrityError(
            f"object {entry.key!r}: checksum mismatch (stored sha256:{entry.sha256}, "
            f"{entry.size} bytes; read sha256:{digest}, {size} bytes)")


class _MemoryReader(io.RawIOBase):
    """A forward-only reader over one entry's chunks; verifies SHA-256 at the end.

    ``readinto`` fills the whole buffer unless the object ends first, so ``read(n)``
    returns ``n`` bytes until the end, as streaming uploaders expect.
    """

    def __init__(self, entry: _Entry) -> None:
        super().__init__()
        self._entry = entry
        self._index = 0
        self._view = memoryview(entry.chunks[0]) if entry.chunks else memoryview(b"")
        self._hash = hashlib.sha256()
        self._size = 0
        self._verified = False

    def readable(self) -> bool:
        return True

    def _advance(self) -> bool:
        """Make ``_view`` non-empty; False at the end of the object (verified there)."""
        while not self._view:
            self._index += 1
            if self._index >= len(self._entry.chunks):
                if not self._verified:
                    self._verified = True
                    _verify(self._entry, self._hash.hexdigest(), self._size)
                return False
            self._view = memoryview(self._entry.chunks[self._index])
        return True

    def _take(self, n: int) -> memoryview:
        out = self._view[:n]
        self._view = self._view[n:]
        self._hash.update(out)
        self._size += len(out)
        return out

    def readinto(self, buffer: Any) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        target = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(target) and self._advance():
            out = self._take(len(target) - filled)
            target[filled:filled + len(out)] = out
            filled += len(out)
        return filled

    def readall(self) -> bytes:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        parts = []
        while self._advance():
            parts.append(self._take(len(self._view)).tobytes())
        return b"".join(parts)

    def close(self) -> None:
        self._view = memoryview(b"")
        super().close()


class MemoryStore(ObjectStore):
    """A thread-safe, in-process object store for tests; stands in for any backend.

    ``target`` is the storage target it stands in for (any provider); it decides only the
    listing order and how the store names itself. ``chunk_size`` bounds each read ``put``
    makes from a file object (1 byte to 64 MiB). Nothing is encrypted and nothing is
    persisted: see the module documentation.
    """

    def __init__(self, target: StorageTarget, *, chunk_size: int = CHUNK_SIZE) -> None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or not (
                0 < chunk_size <= _MAX_CHUNK_SIZE):
            raise ValueError("chunk_size must be an int between 1 byte and 64 MiB")
        self.target = target
        self.chunk_size = chunk_size
        self._objects: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryStore({self.target.provider}:{self.target.bucket})"

    def _where(self) -> str:
        return f"memory store {self.target.provider}:{self.target.bucket}"

    def _entry(self, key: str) -> _Entry:
        key = validate_key(key)
        with self._lock:
            entry = self._objects.get(key)
        if entry is None:
            raise ObjectNotFound(key, self._where())
        return entry

    def _order(self, key: str) -> tuple[str, ...]:
        # The local store walks its directory tree; cloud listings are in key order.
        return tuple(key.split("/")) if self.target.provider == "local" else (key,)

    # --- writes ------------------------------------------------------------------------

    def put(self, key: str, data: bytes | BinaryIO, *, metadata: dict[str, str] | None = None,
            progress: ProgressCallback | None = None) -> ObjectInfo:
        """Store ``data`` under ``key``: read in chunks of at most ``chunk_size`` bytes,
        SHA-256 computed while reading, ``progress`` called with each chunk's length. The
        object replaces any previous one atomically when the source is exhausted.
        ``encryption`` and ``kms_key`` are reported as None: nothing is encrypted."""
        key = validate_key(key)
        meta = _check_metadata(metadata)
        src = _as_source(data)
        digest = hashlib.sha256()
        chunks: list[bytes] = []
        size = 0
        while chunk := _read_chunk(src, self.chunk_size):
            digest.update(chunk)
            chunks.append(chunk)
            size += len(chunk)
            if progress is not None:
                progress(len(chunk))
        entry = _Entry(key=key, chunks=tuple(chunks), size=size, sha256=digest.hexdigest(),
                       metadata=meta, last_modified=_utcnow(), etag=secrets.token_hex(12))
        with self._lock:
            self._objects[key] = entry
        return entry.info()

    def delete(self, key: str, *, if_match: ObjectInfo | None = None) -> bool:
        """Delete one object; True if it existed. No old version is kept.

        With ``if_match`` only the write it describes is deleted: its etag is compared
        with the stored one under the lock, and a re-upload in between raises
        :class:`ObjectChanged` (nothing deleted)."""
        key = validate_key(key)
        expected = (expected_write(key, if_match, self._where())
                    if if_match is not None else None)
        with self._lock:
            entry = self._objects.get(key)
            if entry is None:
                return False
            if expected is not None and entry.etag != expected:
                raise ObjectChanged(key, expected, entry.etag, self._where())
            del self._objects[key]
            return True

    # --- reads -------------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        """The whole object, verified against its SHA-256."""
        entry = self._entry(key)
        data = entry.chunks[0] if len(entry.chunks) == 1 else b"".join(entry.chunks)
        _verify(entry, hashlib.sha256(data).hexdigest(), len(data))
        return data

    def open(self, key: str) -> BinaryIO:
        """A forward-only reader over the object as it is now (verified at its end)."""
        return cast(BinaryIO, _MemoryReader(self._entry(key)))

    def head(self, key: str) -> ObjectInfo:
        """Size, ``sha256:<hex>`` checksum, metadata, last-modified time (UTC) and etag;
        ``encryption`` and ``kms_key`` are None (nothing is encrypted)."""
        return self._entry(key).info()

    def exists(self, key: str) -> bool:
        """True if ``key`` exists (an invalid key raises :class:`InvalidKey`)."""
        key = validate_key(key)
        with self._lock:
            return key in self._objects

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, as a snapshot taken now (so
        writes and deletes during the iteration do not affect it), in the stood-in
        backend's listing order."""
        prefix = validate_prefix(prefix)
        with self._lock:
            entries = [e for k, e in self._objects.items() if k.startswith(prefix)]
        entries.sort(key=lambda e: self._order(e.key))
        return iter([e.info() for e in entries])

    # --- capabilities ------------------------------------------------------------------

    def describe_bucket(self) -> BucketFacts:
        """Always raises :class:`CapabilityUnavailable`: an in-memory store has no
        provider to ask (and reporting the stood-in provider's bucket would be invented)."""
        raise CapabilityUnavailable(
            f"{self._where()} is an in-memory test store standing in for the "
            f"{self.target.provider} bucket {self.target.bucket!r}: it has no provider to "
            "describe the bucket; verify the real backend instead")
