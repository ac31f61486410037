"""The embedded default backend: a directory per residency location, encrypted at rest.

Layout under ``root``::

    <root>/<location>/.keys/...               the location's keyring (:mod:`.local_keys`)
    <root>/<location>/<bucket>/@lock          serialises commits and deletes in the bucket
    <root>/<location>/<bucket>/<seg>/.../<seg>/@meta      sidecar: size, sha256, metadata
    <root>/<location>/<bucket>/<seg>/.../<seg>/@v-<id>    the encrypted object (one blob)

Each key segment is a directory (a segment starting with ``@`` is stored as ``@@...``, so
user segments never collide with the store's own files), which lets ``a`` and ``a/b``
both exist. Keys are validated with :func:`~residency_sdk.storage.keys.validate_key`, so
no key can name a path outside the bucket directory.

**No links.** ``root`` is resolved once (``os.path.realpath``) when the store is opened:
the folder a user names may itself be, or sit under, a symbolic link. Below it nothing is
followed: every operation opens the root directory and walks down one component at a
time from the parent's descriptor (``openat`` with ``O_NOFOLLOW | O_DIRECTORY``, ``mkdirat``
to create), opens files with ``O_NOFOLLOW`` in their directory's descriptor, and renames,
unlinks and lists relative to descriptors (:mod:`._local_fs`). A link met on the way (a
location, bucket, keys or key directory, a sidecar, a blob, the lock) raises
:class:`~residency_sdk.errors.UnsafePath` naming it, before any byte is read or written
through it; :meth:`LocalStore.list` and :meth:`LocalStore.purge_residue` raise it for a
link anywhere under the prefix rather than skipping it, so an erasure reports it.

**Atomic writes.** The object is streamed into a temporary file in its own directory,
fsynced, renamed to a fresh blob name, then the sidecar naming that blob replaces the old
one with ``os.replace``: the sidecar is the commit point, so a reader sees the old object
or the new one, never half of one.

**Encryption.** Blobs use streaming AES-256-GCM (the construction of Tink's
AES-GCM-HKDF streaming AEAD; the format: :mod:`._local_blob`): a per-object key is
derived with HKDF-SHA256 from the location key and a random salt, and the plaintext is
sealed in fixed-size chunks that cannot be reordered, truncated or moved to another key.
Memory stays at about two chunks whatever the object size.

**Per-tenant keys (crypto-shredding).** An object under ``tenants/<id>/`` is encrypted
the same way, but from the tenant's own random key (``tenant-<loc>-...``, made on its
first write), which is stored wrapped by the location key; the blob header names the key.
:meth:`LocalStore.destroy_tenant_key` shreds it: every copy of the tenant's blobs (a
backup, a restored snapshot) then raises :class:`~residency_sdk.errors.KeyDestroyed`.
:meth:`LocalStore.rotate_location_key` makes a new location key current and re-wraps the
tenant keys; no object is re-encrypted and older location keys stay for the objects
written under them (:mod:`.local_keys`, docs/crypto-shredding.md).

**Integrity.** SHA-256 of the plaintext is computed while streaming, stored in the
sidecar, and verified when a reader reaches the end; a failed chunk tag or a checksum
mismatch raises :class:`~residency_sdk.errors.IntegrityError`.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from residency_sdk._fsflags import CREATE_FLAGS, READ_FLAGS
from residency_sdk.errors import (
    BackendUnavailable,
    IntegrityError,
    InvalidKey,
    InvalidLocalLocation,
    ObjectChanged,
    ObjectNotFound,
    StorageError,
    UnsafePath,
)
from residency_sdk.model import StorageTarget
from residency_sdk.storage._conditional import expected_write
from residency_sdk.storage._local_blob import ENCRYPTION, DecryptingReader, encrypt_into
from residency_sdk.storage._local_fs import FD_WALK, DataRoot, fsync_dir, write_private_at
from residency_sdk.storage.base import (
    KeyDestruction,
    ObjectInfo,
    ObjectStore,
    ProgressCallback,
    Residue,
)
from residency_sdk.storage.keys import tenant_of_key, validate_key, validate_prefix
from residency_sdk.storage.local_keys import (
    Keyring,
    KeyringStatus,
    RotationReport,
    TenantKeyInfo,
)

__all__ = ["CHUNK_SIZE", "ENCRYPTION", "KeyringStatus", "LocalStore", "RotationReport",
           "TenantKeyInfo"]

CHUNK_SIZE = 1024 * 1024
_META = "@meta"
_BLOB = "@v-"
_TMP = "@tmp-"
_LOCK = "@lock"
_STALE_TMP_SECONDS = 3600
_LOCATION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_BUCKET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
# Errors that mean "this disk cannot serve now" (failover may help), not "bad request".
_UNAVAILABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EIO,
                errno.EDQUOT, errno.ENODEV, errno.ENXIO, errno.ESTALE}


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _escape(segment: str) -> str:
    return "@" + segment if segment.startswith("@") else segment


def _unescape(name: str) -> str:
    return name[1:] if name.startswith("@@") else name


class LocalStore(ObjectStore):
    """One bucket directory of one residency location on the local disk."""

    def __init__(self, target: StorageTarget, root: str | Path, *, location: str | None = None,
                 chunk_size: int = CHUNK_SIZE) -> None:
        if target.provider != "local":
            raise InvalidLocalLocation(f"LocalStore serves provider 'local', not "
                                       f"{target.provider!r}")
        location = location or target.region.removeprefix("local-").upper()
        if not _LOCATION_NAME.fullmatch(location):
            raise InvalidLocalLocation(f"invalid location name {location!r} for a local store")
        if not _BUCKET_NAME.fullmatch(target.bucket) or ".." in target.bucket:
            raise InvalidLocalLocation(f"invalid bucket name {target.bucket!r} for a local "
                                       "store: one directory name")
        if not 0 < chunk_size <= 64 * 1024 * 1024:
            raise ValueError("chunk_size must be between 1 byte and 64 MiB")
        if not FD_WALK:  # pragma: no cover - not POSIX
            raise InvalidLocalLocation(
                "the local backend needs openat/O_NOFOLLOW (a POSIX system) to keep its "
                "paths from following links")
        self.target = target
        self.location = location
        # Resolved once: the folder the user names may be a link (/data -> /mnt/disk);
        # nothing below it is ever followed.
        self.root = Path(os.path.realpath(root))
        self.location_dir = self.root / location
        self.bucket_dir = self.location_dir / target.bucket
        self.chunk_size = chunk_size
        self._bucket_parts = (location, target.bucket)
        self._fs = DataRoot(self.root)
        self._keyring = Keyring(self._fs, location, where=self._where())
        self._thread_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalStore({self.bucket_dir})"

    # --- keys: per-tenant keys (crypto-shredding) and location key rotation -----------
    # The keyring is the location's, shared by its buckets (primary and failover).

    def tenant_key_id(self, tenant_id: str) -> str | None:
        """The id of ``tenant_id``'s key in this location (``tenant-<loc>-...``), made on
        the tenant's first write; None when it has none."""
        try:
            return self._keyring.tenants.key_id(tenant_id)
        except OSError as exc:
            raise self._translate(exc) from exc

    def destroy_tenant_key(self, tenant_id: str) -> KeyDestruction:
        """Crypto-shred ``tenant_id`` in this location: its key file is overwritten with
        random bytes, fsynced and unlinked, so every copy of its objects (a backup of the
        data folder, a restored snapshot) is unreadable (:class:`KeyDestroyed`). Status
        ``destroyed``, or ``absent`` when there is no key (never made, or destroyed
        before). Restartable after a crash at any point. The location's other tenants
        and non-tenant objects are untouched.

        A backup that holds this location's ``.keys`` folder as well as the data still
        holds the wrapped key: keep ``.keys`` out of data backups (docs/crypto-shredding.md).
        """
        try:
            return self._keyring.tenants.destroy(tenant_id)
        except OSError as exc:
            raise self._translate(exc) from exc

    def rotate_location_key(self) -> RotationReport:
        """Make a new location key current and re-wrap every tenant key under it; no
        object is re-encrypted, and older location keys stay (objects written under them,
        tenant objects from before per-tenant keys and every non-tenant object, need
        them). Crash-safe: each file is replaced atomically, so every tenant key stays
        readable whatever point a crash hits; running it again finishes the job."""
        try:
            return self._keyring.rotate()
        except OSError as exc:
            raise self._translate(exc) from exc

    def key_status(self) -> KeyringStatus:
        """The location's keyring: current and kept location keys, and every tenant key
        with the location key wrapping it."""
        try:
            return self._keyring.status()
        except OSError as exc:
            raise self._translate(exc) from exc

    # --- paths (walked by self._fs, never through a link), errors, the bucket lock -----

    @staticmethod
    def _key_parts(key: str) -> tuple[str, ...]:
        return tuple(_escape(s) for s in key.split("/"))

    def _where(self) -> str:
        return f"local store {self.bucket_dir}"

    def _translate(self, exc: OSError, key: str | None = None) -> StorageError:
        if exc.errno == errno.ENAMETOOLONG:
            return InvalidKey(f"key {key!r} is too long for the local file system")
        if isinstance(exc, FileNotFoundError) and key is not None:
            return ObjectNotFound(key, self._where())
        if exc.errno in _UNAVAILABLE:
            return BackendUnavailable(f"{self._where()} is unavailable: {exc.strerror} "
                                      f"({exc.filename})")
        return BackendUnavailable(f"{self._where()} failed: {exc}")

    @contextlib.contextmanager
    def _bucket_lock(self, bucket_fd: int) -> Iterator[None]:
        """Serialise commits and deletes of this bucket (threads and processes)."""
        with self._thread_lock, self._fs.locked(bucket_fd, _LOCK, self._bucket_parts):
            yield

    # --- writes ------------------------------------------------------------------------

    def put(self, key: str, data: bytes | BinaryIO, *, metadata: dict[str, str] | None = None,
            progress: ProgressCallback | None = None) -> ObjectInfo:
        key = validate_key(key)
        meta_in = _check_metadata(metadata)
        src: IO[bytes] = (io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview))
                          else data)
        if isinstance(data, str) or not hasattr(src, "read"):
            raise StorageError("data must be bytes or a binary file object (opened with 'rb')")
        parts = self._key_parts(key)
        try:
            # The location key first: a linked keys directory is refused before any file
            # of the object exists.
            current = self._keyring.current(create=True)
            assert current is not None
            tenant = tenant_of_key(key)
            if tenant is not None:
                # A tenant's objects go under its own key (made on its first write), so
                # destroying that key when it is erased makes every copy unreadable.
                current = self._keyring.tenants.current(tenant)
            bucket_fd, keydir_fd, tmp, fh = self._open_temp(parts)
        except OSError as exc:  # a directory pruned under us is not "not found" for a put
            raise self._translate(exc, None if isinstance(exc, FileNotFoundError)
                                  else key) from exc
        staged = f"{_TMP}{secrets.token_hex(12)}.meta"
        try:
            try:
                with fh:
                    key_id, size, digest = encrypt_into(fh, src, key, current,
                                                        chunk_size=self.chunk_size,
                                                        progress=progress)
                    fh.flush()
                    os.fsync(fh.fileno())
                blob = f"{_BLOB}{secrets.token_hex(12)}"
                meta = {"format": 1, "key": key, "blob": blob, "size": size, "sha256": digest,
                        "key_id": key_id, "last_modified": _utcnow().isoformat(),
                        "metadata": meta_in}
                write_private_at(keydir_fd, staged,
                                  json.dumps(meta, ensure_ascii=False).encode("utf-8"))
                self._commit(bucket_fd, keydir_fd, parts, tmp, blob, staged)
            except BaseException as exc:
                self._discard(bucket_fd, keydir_fd, parts, tmp, staged)
                if isinstance(exc, OSError):  # a vanished directory mid-write: not "not found"
                    raise self._translate(exc, None if isinstance(exc, FileNotFoundError)
                                          else key) from exc
                raise
        finally:
            os.close(keydir_fd)
            os.close(bucket_fd)
        return self._info(meta)

    def _open_temp(self, parts: tuple[str, ...]) -> tuple[int, int, str, BinaryIO]:
        """The bucket's and the key directory's descriptors (made as needed) and a fresh
        temp file in the latter."""
        # A concurrent delete may prune the (still empty) directories while they are made
        # or before the open; once the temp file exists the directory is not empty and
        # stays. (The load scenario's shared keys hit both windows.)
        for attempt in range(5):
            bucket_fd = self._fs.open_dir(self._bucket_parts, create=True)
            assert bucket_fd is not None
            keydir_fd: int | None = None
            try:
                keydir_fd = self._fs.walk_from(bucket_fd, parts, self._bucket_parts, create=True)
                assert keydir_fd is not None
                tmp = f"{_TMP}{secrets.token_hex(12)}"
                fd = os.open(tmp, CREATE_FLAGS, 0o600, dir_fd=keydir_fd)
            except BaseException as exc:
                if keydir_fd is not None:
                    os.close(keydir_fd)
                os.close(bucket_fd)
                if isinstance(exc, FileNotFoundError) and attempt < 4:
                    continue
                raise
            return bucket_fd, keydir_fd, tmp, os.fdopen(fd, "wb")
        raise AssertionError("unreachable")  # pragma: no cover

    def _commit(self, bucket_fd: int, keydir_fd: int, parts: tuple[str, ...], tmp: str,
                blob: str, staged_meta: str) -> None:
        with self._bucket_lock(bucket_fd):
            old = self._read_meta(keydir_fd, (*self._bucket_parts, *parts))
            os.replace(tmp, blob, src_dir_fd=keydir_fd, dst_dir_fd=keydir_fd)
            os.replace(staged_meta, _META, src_dir_fd=keydir_fd, dst_dir_fd=keydir_fd)
            if old is not None and old.get("blob") != blob:
                self._remove_blob(keydir_fd, old.get("blob"))
        fsync_dir(keydir_fd)

    def _discard(self, bucket_fd: int, keydir_fd: int, parts: tuple[str, ...],
                 *names: str) -> None:
        """Remove what a failed put left behind (nothing of it was ever readable)."""
        for name in names:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=keydir_fd)
        with contextlib.suppress(OSError, UnsafePath), self._bucket_lock(bucket_fd):
            self._prune(bucket_fd, parts)

    @staticmethod
    def _remove_blob(keydir_fd: int, blob: object) -> None:
        if isinstance(blob, str) and blob.startswith(_BLOB) and "/" not in blob:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(blob, dir_fd=keydir_fd)

    def delete(self, key: str, *, if_match: ObjectInfo | None = None) -> bool:
        """Delete ``key`` (sidecar, then blob; empty key directories pruned); True if it
        existed. With ``if_match`` the sidecar's blob id (the etag :meth:`head` reports)
        is compared with ``if_match.etag`` under the bucket lock, which every commit
        takes too: a re-upload in between raises :class:`ObjectChanged` and nothing is
        deleted."""
        key = validate_key(key)
        expected = (expected_write(key, if_match, self._where())
                    if if_match is not None else None)
        parts = self._key_parts(key)
        try:
            bucket_fd = self._fs.open_dir(self._bucket_parts, create=False)
            if bucket_fd is None:
                return False
            try:
                keydir_fd = self._fs.walk_from(bucket_fd, parts, self._bucket_parts,
                                            create=False)
                if keydir_fd is None:
                    return False
                try:
                    with self._bucket_lock(bucket_fd):
                        meta = self._read_meta(keydir_fd, (*self._bucket_parts, *parts))
                        if meta is None:
                            return False
                        blob = meta.get("blob")
                        if expected is not None and blob != _BLOB + expected:
                            found = str(blob or "").removeprefix(_BLOB) or None
                            raise ObjectChanged(key, expected, found, self._where())
                        os.unlink(_META, dir_fd=keydir_fd)
                        self._remove_blob(keydir_fd, meta.get("blob"))
                        self._sweep(keydir_fd)
                        pruned = self._prune(bucket_fd, parts)
                    if not pruned:
                        fsync_dir(keydir_fd)
                finally:
                    os.close(keydir_fd)
            finally:
                os.close(bucket_fd)
        except OSError as exc:
            raise self._translate(exc) from exc
        return True

    def purge_residue(self, prefix: str, *, keep: frozenset[str] = frozenset()) -> Residue:
        """Remove what crashed writes left under the directory prefix ``prefix`` (ending
        in ``/``): temp files of interrupted puts, blobs no sidecar names, and the key
        directories they kept alive. Committed objects are untouched, and so is the
        directory of every key in ``keep`` (a held object's key is left exactly as it
        is). ``Residue.files_removed`` counts the files removed.

        Erasure calls this: an interrupted upload's encrypted temp file and its key's
        directory name are data of the tenant too, and :meth:`delete` only sweeps temp
        files older than an hour (it cannot tell a crashed put from a running one). Any
        put still running under ``prefix`` fails, which is what an erasure wants.

        A symbolic link anywhere under ``prefix`` raises :class:`UnsafePath` before
        anything is removed (the erasure then reports it instead of completing).
        """
        prefix = validate_prefix(prefix)
        if not prefix.endswith("/"):
            raise InvalidKey(f"purge_residue needs a directory prefix ending in '/', got "
                             f"{prefix!r}")
        parts = self._key_parts(prefix.rstrip("/"))
        kept = {self._key_parts(validate_key(k)) for k in keep if k.startswith(prefix)}
        try:
            bucket_fd = self._fs.open_dir(self._bucket_parts, create=False)
            if bucket_fd is None:
                return Residue()  # nothing was ever written under the prefix
            try:
                start = self._fs.walk_from(bucket_fd, parts, self._bucket_parts, create=False)
                if start is None:
                    return Residue()
                try:
                    where = (*self._bucket_parts, *parts)
                    self._refuse_links(start, where)
                    with self._bucket_lock(bucket_fd):
                        removed = self._purge(start, parts, where, kept)
                        if not self._prune(bucket_fd, parts) and removed:
                            fsync_dir(start)
                finally:
                    os.close(start)
            finally:
                os.close(bucket_fd)
        except OSError as exc:
            raise self._translate(exc) from exc
        return Residue(files_removed=removed)

    def _refuse_links(self, fd: int, where: tuple[str, ...]) -> None:
        """Raise :class:`UnsafePath` for the first symbolic link below the directory."""
        with os.scandir(fd) as it:
            entries = list(it)
        for entry in entries:
            if entry.is_symlink():
                raise self._fs.unsafe((*where, entry.name))
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                child = self._fs.open_at(fd, entry.name, where, create=False)
                if child is not None:
                    try:
                        self._refuse_links(child, (*where, entry.name))
                    finally:
                        os.close(child)

    def _purge(self, fd: int, parts: tuple[str, ...], where: tuple[str, ...],
               kept: set[tuple[str, ...]]) -> int:
        """Remove the residue below and in the directory ``fd``; the number of files."""
        with os.scandir(fd) as it:
            entries = list(it)
        removed = 0
        for entry in entries:
            if entry.is_symlink():  # planted since the check: still never followed
                raise self._fs.unsafe((*where, entry.name))
            if entry.is_dir(follow_symlinks=False):
                child = self._fs.open_at(fd, entry.name, where, create=False)
                if child is None:
                    continue
                try:
                    removed += self._purge(child, (*parts, entry.name),
                                           (*where, entry.name), kept)
                finally:
                    os.close(child)
                with contextlib.suppress(OSError):  # not empty: a committed object
                    os.rmdir(entry.name, dir_fd=fd)
        if parts in kept:
            return removed  # its own files only: deeper keys were walked on their own
        names = {e.name for e in entries if not e.is_dir(follow_symlinks=False)}
        meta = self._read_meta(fd, where) if _META in names else None
        committed = meta.get("blob") if meta is not None else None
        for name in names:
            if name.startswith((_TMP, _BLOB)) and name != committed:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=fd)
                    removed += 1
        return removed

    @staticmethod
    def _sweep(keydir_fd: int) -> None:
        """Remove orphaned blobs (a crashed commit) and stale temp files (a crashed put)."""
        cutoff = time.time() - _STALE_TMP_SECONDS
        with os.scandir(keydir_fd) as it:
            entries = list(it)
        for entry in entries:
            if entry.name.startswith(_BLOB) or (
                    entry.name.startswith(_TMP)
                    and entry.stat(follow_symlinks=False).st_mtime < cutoff):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.name, dir_fd=keydir_fd)  # a link itself, never its target

    def _prune(self, bucket_fd: int, parts: tuple[str, ...]) -> bool:
        """Remove now-empty key directories from ``parts`` up to (not including) the
        bucket directory (erased keys must not survive as directory names); fsync the
        directory that lost the last one. True if any was removed."""
        chain = [bucket_fd]
        where: tuple[str, ...] = self._bucket_parts
        try:
            for name in parts[:-1]:
                child = self._fs.open_at(chain[-1], name, where, create=False)
                if child is None:
                    return False
                chain.append(child)
                where = (*where, name)
            changed: int | None = None
            for depth in range(len(parts) - 1, -1, -1):
                try:
                    os.rmdir(parts[depth], dir_fd=chain[depth])
                except OSError:
                    break
                changed = chain[depth]
            if changed is not None:
                fsync_dir(changed)
            return changed is not None
        finally:
            for fd in chain[1:]:
                os.close(fd)

    # --- reads -------------------------------------------------------------------------

    def _read_meta(self, keydir_fd: int, where: tuple[str, ...]) -> dict[str, Any] | None:
        try:
            raw = self._fs.read(keydir_fd, _META, where)[0]
        except FileNotFoundError:
            return None
        try:
            meta = json.loads(raw)
        except ValueError:
            raise IntegrityError(f"sidecar {'/'.join((*where, _META))} is corrupt") from None
        if not isinstance(meta, dict):
            raise IntegrityError(f"sidecar {'/'.join((*where, _META))} is corrupt")
        return meta

    def _key_meta(self, keydir_fd: int | None, key: str,
                  where: tuple[str, ...]) -> dict[str, Any]:
        meta = self._read_meta(keydir_fd, where) if keydir_fd is not None else None
        if meta is None:
            raise ObjectNotFound(key, self._where())
        if meta.get("key") != key:
            raise IntegrityError(f"sidecar of {key!r} names another key {meta.get('key')!r}")
        return meta

    def _info(self, meta: dict[str, Any]) -> ObjectInfo:
        return ObjectInfo(
            key=meta["key"], size=int(meta["size"]), checksum=f"sha256:{meta['sha256']}",
            encryption=ENCRYPTION, kms_key=meta.get("key_id"),
            metadata=dict(meta.get("metadata") or {}),
            last_modified=datetime.fromisoformat(meta["last_modified"]),
            etag=str(meta.get("blob", "")).removeprefix(_BLOB) or None,
        )

    def head(self, key: str) -> ObjectInfo:
        key = validate_key(key)
        where = (*self._bucket_parts, *self._key_parts(key))
        try:
            keydir_fd = self._fs.open_dir(where, create=False)
            try:
                meta = self._key_meta(keydir_fd, key, where)
            finally:
                if keydir_fd is not None:
                    os.close(keydir_fd)
        except OSError as exc:
            raise self._translate(exc, key) from exc
        return self._info(meta)

    def open(self, key: str) -> BinaryIO:
        key = validate_key(key)
        where = (*self._bucket_parts, *self._key_parts(key))
        try:
            keydir_fd = self._fs.open_dir(where, create=False)
        except OSError as exc:
            raise self._translate(exc, key) from exc
        try:
            for _ in range(5):
                try:
                    meta = self._key_meta(keydir_fd, key, where)
                except OSError as exc:
                    raise self._translate(exc, key) from exc
                assert keydir_fd is not None
                blob = meta.get("blob")
                if not isinstance(blob, str) or not blob.startswith(_BLOB) or "/" in blob:
                    raise IntegrityError(f"sidecar of {key!r} is corrupt")
                try:
                    fd = os.open(blob, READ_FLAGS, dir_fd=keydir_fd)
                except FileNotFoundError:
                    continue  # replaced concurrently: read the new sidecar
                except OSError as exc:
                    self._fs.refuse_link(exc, keydir_fd, blob, where)
                    raise self._translate(exc, key) from exc
                try:
                    raw = DecryptingReader(os.fdopen(fd, "rb"), key, meta,
                                           self._keyring.object_key)
                except OSError as exc:
                    raise self._translate(exc, key) from exc
                # Buffered: read(n) returns n bytes until the end, as multipart uploaders
                # expect.
                return cast(BinaryIO, io.BufferedReader(raw, buffer_size=self.chunk_size))
        finally:
            if keydir_fd is not None:
                os.close(keydir_fd)
        raise IntegrityError(f"object {key!r}: its sidecar names a blob that does not exist")

    def get(self, key: str) -> bytes:
        with self.open(key) as reader:
            return reader.read()

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """The objects under ``prefix``, in key order. A symbolic link met under the
        prefix raises :class:`UnsafePath` (it is reported, never skipped or followed)."""
        prefix = validate_prefix(prefix)
        complete = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = tuple(complete.split("/")) if complete else ()
        where = (*self._bucket_parts, *(_escape(s) for s in base))
        try:
            start = self._fs.open_dir(where, create=False)
            if start is None:
                return
            try:
                yield from self._walk(start, base, prefix, where)
            finally:
                os.close(start)
        except OSError as exc:
            raise self._translate(exc) from exc

    def _walk(self, fd: int, segments: tuple[str, ...], prefix: str,
              where: tuple[str, ...]) -> Iterator[ObjectInfo]:
        try:
            with os.scandir(fd) as it:
                entries = sorted(it, key=lambda e: _unescape(e.name))
        except (FileNotFoundError, NotADirectoryError):
            return
        key = "/".join(segments)
        mine = bool(segments) and key.startswith(prefix)  # this directory's own files count
        has_meta = False
        children = []
        for entry in entries:
            name = entry.name
            if name.startswith("@") and not name.startswith("@@"):  # the store's own files
                if mine:
                    if entry.is_symlink():
                        raise self._fs.unsafe((*where, name))
                    has_meta = has_meta or name == _META
                continue
            child = (*segments, _unescape(name))
            path = "/".join(child)
            if not (path.startswith(prefix) or prefix.startswith(path)):
                continue
            if entry.is_symlink():
                raise self._fs.unsafe((*where, name))
            if entry.is_dir(follow_symlinks=False):
                children.append((name, child))
        if has_meta:
            meta = self._read_meta(fd, where)
            if meta is not None:
                yield self._info(meta)
        for name, child in children:
            child_fd = self._fs.open_at(fd, name, where, create=False)
            if child_fd is None:
                continue  # removed meanwhile
            try:
                yield from self._walk(child_fd, child, prefix, (*where, name))
            finally:
                os.close(child_fd)


def _check_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    if not metadata:
        return {}
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise StorageError("metadata must be a dict of str to str")
    return dict(metadata)
