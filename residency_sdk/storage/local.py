"""The embedded default backend: a directory per residency location, encrypted at rest.

Layout under ``root``::

    <root>/<location>/.keys/CURRENT           id of the location's current data key
    <root>/<location>/.keys/<key_id>.json     the AES-256 key (0600), never outside <location>
    <root>/<location>/<bucket>/@lock          serialises commits and deletes in the bucket
    <root>/<location>/<bucket>/<seg>/.../<seg>/@meta      sidecar: size, sha256, metadata
    <root>/<location>/<bucket>/<seg>/.../<seg>/@v-<id>    the encrypted object (one blob)

Each key segment is a directory (a segment starting with ``@`` is stored as ``@@...``, so
user segments never collide with the store's own files), which lets ``a`` and ``a/b``
both exist. Keys are validated with :func:`~residency_sdk.storage.keys.validate_key`, so
no key can name a path outside the bucket directory.

**Atomic writes.** The object is streamed into a temporary file in its own directory,
fsynced, renamed to a fresh blob name, then the sidecar naming that blob replaces the old
one with ``os.replace``: the sidecar is the commit point, so a reader sees the old object
or the new one, never half of one.

**Encryption.** Blobs use streaming AES-256-GCM (the construction of Tink's
AES-GCM-HKDF streaming AEAD): a per-object key is derived with HKDF-SHA256 from the
location key and a random salt; the plaintext is cut into fixed-size chunks, each sealed
with the nonce ``prefix(7) || counter(4) || last(1)`` and the header plus the object key as
associated data, so chunks cannot be reordered, truncated or moved to another key.
Memory stays at about two chunks whatever the object size.

**Integrity.** SHA-256 of the plaintext is computed while streaming, stored in the
sidecar, and verified when a reader reaches the end; a failed chunk tag or a checksum
mismatch raises :class:`~residency_sdk.errors.IntegrityError`.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import io
import json
import os
import re
import secrets
import struct
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from residency_sdk.errors import (
    BackendUnavailable,
    EncryptionError,
    IntegrityError,
    InvalidKey,
    InvalidLocalLocation,
    ObjectNotFound,
    StorageError,
)
from residency_sdk.model import StorageTarget
from residency_sdk.storage.base import ObjectInfo, ObjectStore, ProgressCallback, Residue
from residency_sdk.storage.keys import validate_key, validate_prefix

try:  # POSIX: serialise commits across processes too
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

ENCRYPTION = "local:aes-256-gcm"
CHUNK_SIZE = 1024 * 1024
_TAG = 16
_MAGIC = b"RSDKLE01"
_SALT = 32
_NONCE_PREFIX = 7
_HKDF_INFO = b"residency-sdk local store v1"
_META = "@meta"
_BLOB = "@v-"
_TMP = "@tmp-"
_LOCK = "@lock"
_STALE_TMP_SECONDS = 3600
_LOCATION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_KEY_ID = re.compile(r"^[a-z0-9-]{1,80}$")
# Errors that mean "this disk cannot serve now" (failover may help), not "bad request".
_UNAVAILABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EIO,
                errno.EDQUOT, errno.ENODEV, errno.ENXIO, errno.ESTALE}


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform lets a directory be fsynced
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _escape(segment: str) -> str:
    return "@" + segment if segment.startswith("@") else segment


def _unescape(name: str) -> str:
    return name[1:] if name.startswith("@@") else name


def _read_full(src: IO[bytes], size: int) -> bytes:
    """Read exactly ``size`` bytes unless the stream ends first (short reads are normal)."""
    first = src.read(size)
    if first is None:
        first = b""
    if not isinstance(first, (bytes, bytearray, memoryview)):
        raise StorageError("data must be bytes or a binary file object (opened with 'rb'), "
                           f"got a reader returning {type(first).__name__}")
    if len(first) == size or not first:
        return bytes(first)
    parts = [bytes(first)]
    missing = size - len(first)
    while missing:
        more = src.read(missing)
        if not more:
            break
        parts.append(bytes(more))
        missing -= len(more)
    return b"".join(parts)


class _LocationKey:
    """The location's AES-256 data key, created on first use under ``<location>/.keys``."""

    def __init__(self, keys_dir: Path, location: str) -> None:
        self.dir = keys_dir
        self.location = location
        self._keys: dict[str, bytes] = {}
        self._current: str | None = None
        self._lock = threading.Lock()

    def current(self, *, create: bool) -> tuple[str, bytes] | None:
        with self._lock:
            if self._current is None:
                pointer = self.dir / "CURRENT"
                try:
                    self._current = pointer.read_text(encoding="ascii").strip()
                except FileNotFoundError:
                    if not create:
                        return None
                    self._current = self._create()
            return self._current, self._load(self._current)

    def get(self, key_id: str) -> bytes:
        with self._lock:
            return self._load(key_id)

    def _load(self, key_id: str) -> bytes:
        if key_id in self._keys:
            return self._keys[key_id]
        if not _KEY_ID.fullmatch(key_id):
            raise EncryptionError(f"invalid local key id {key_id!r}")
        path = self.dir / f"{key_id}.json"
        try:
            if os.name == "posix" and path.stat().st_mode & 0o077:
                raise EncryptionError(f"key file {path} is readable by other users: run "
                                      f"`chmod 600 {path}`")
            doc = json.loads(path.read_text(encoding="ascii"))
            key = base64.b64decode(doc["key"], validate=True)
        except FileNotFoundError:
            raise EncryptionError(f"location key {key_id!r} not found in {self.dir}: objects "
                                  "encrypted with it cannot be read") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise EncryptionError(f"key file {path} is malformed: {exc}") from None
        if len(key) != 32:
            raise EncryptionError(f"key file {path} does not hold a 256-bit key")
        self._keys[key_id] = key
        return key

    def _create(self) -> str:
        _make_private_dirs(self.dir, self.dir.parent.parent)
        key_id = f"local-{self.location.lower()}-{secrets.token_hex(8)}"
        doc = {"key_id": key_id, "algorithm": "AES-256-GCM", "location": self.location,
               "created": _utcnow().isoformat(),
               "key": base64.b64encode(AESGCM.generate_key(bit_length=256)).decode("ascii")}
        _write_private(self.dir / f"{key_id}.json", json.dumps(doc).encode("ascii"))
        # Publish the pointer without ever overwriting one another process made first.
        staged = self.dir / f".CURRENT-{secrets.token_hex(8)}"
        _write_private(staged, key_id.encode("ascii"))
        try:
            os.link(staged, self.dir / "CURRENT")
        except FileExistsError:
            (self.dir / f"{key_id}.json").unlink()
            key_id = (self.dir / "CURRENT").read_text(encoding="ascii").strip()
        finally:
            staged.unlink()
        _fsync_dir(self.dir)
        return key_id


def _make_private_dirs(path: Path, root: Path) -> None:
    """``mkdir -p`` below ``root`` with every new directory 0700 (key names are private)."""
    missing = []
    while not path.is_dir() and path != root:
        missing.append(path)
        path = path.parent
    root.mkdir(parents=True, exist_ok=True)
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


class _Header:
    """The blob header: magic, key id, HKDF salt, nonce prefix, chunk size."""

    def __init__(self, key_id: str, salt: bytes, nonce_prefix: bytes, chunk_size: int) -> None:
        self.key_id = key_id
        self.salt = salt
        self.nonce_prefix = nonce_prefix
        self.chunk_size = chunk_size

    def encode(self) -> bytes:
        kid = self.key_id.encode("ascii")
        return (_MAGIC + bytes([len(kid)]) + kid + self.salt + self.nonce_prefix
                + struct.pack(">I", self.chunk_size))

    @classmethod
    def read(cls, fh: IO[bytes], key: str) -> _Header:
        start = fh.read(len(_MAGIC) + 1)
        if len(start) != len(_MAGIC) + 1 or start[: len(_MAGIC)] != _MAGIC:
            raise IntegrityError(f"object {key!r}: stored blob has no valid header")
        rest_len = start[-1] + _SALT + _NONCE_PREFIX + 4
        rest = fh.read(rest_len)
        if len(rest) != rest_len:
            raise IntegrityError(f"object {key!r}: stored blob header is truncated")
        kid_len = start[-1]
        try:
            key_id = rest[:kid_len].decode("ascii")
        except UnicodeDecodeError:
            raise IntegrityError(f"object {key!r}: stored blob header is corrupt") from None
        salt = rest[kid_len: kid_len + _SALT]
        prefix = rest[kid_len + _SALT: kid_len + _SALT + _NONCE_PREFIX]
        (chunk_size,) = struct.unpack(">I", rest[-4:])
        if not 0 < chunk_size <= 64 * 1024 * 1024:
            raise IntegrityError(f"object {key!r}: stored blob header is corrupt")
        return cls(key_id, salt, prefix, chunk_size)

    def cipher(self, location_key: bytes) -> AESGCM:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=self.salt,
                       info=_HKDF_INFO).derive(location_key)
        return AESGCM(derived)

    def nonce(self, counter: int, last: bool) -> bytes:
        return self.nonce_prefix + struct.pack(">I", counter) + (b"\x01" if last else b"\x00")


class _DecryptingReader(io.RawIOBase):
    """Streams the plaintext of one blob; verifies size and SHA-256 at the end."""

    def __init__(self, fh: BinaryIO, key: str, meta: dict[str, Any],
                 keyring: _LocationKey) -> None:
        super().__init__()
        self._fh = fh
        self._key = key
        self._meta = meta
        try:
            self._header = _Header.read(fh, key)
            self._aead = self._header.cipher(keyring.get(self._header.key_id))
            self._aad = self._header.encode() + key.encode("utf-8")
            self._end = os.fstat(fh.fileno()).st_size
        except BaseException:
            fh.close()
            raise
        self._counter = 0
        self._buffer = memoryview(b"")
        self._hash = hashlib.sha256()
        self._size = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buffer:
            if self._done:
                return 0
            self._next_chunk()
        n = min(len(b), len(self._buffer))
        b[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n

    def readall(self) -> bytes:
        parts = [bytes(self._buffer)]
        self._buffer = memoryview(b"")
        while not self._done:
            self._next_chunk()
            parts.append(bytes(self._buffer))
            self._buffer = memoryview(b"")
        return b"".join(parts)

    def _next_chunk(self) -> None:
        sealed = _read_full(self._fh, self._header.chunk_size + _TAG)
        last = self._fh.tell() >= self._end
        if len(sealed) < _TAG:
            raise IntegrityError(f"object {self._key!r}: stored blob is truncated")
        try:
            plain = self._aead.decrypt(self._header.nonce(self._counter, last), sealed,
                                       self._aad)
        except InvalidTag:
            raise IntegrityError(
                f"object {self._key!r} failed authentication at chunk {self._counter}: the "
                "stored blob is corrupted, truncated or was tampered with") from None
        self._counter += 1
        self._hash.update(plain)
        self._size += len(plain)
        self._buffer = memoryview(plain)
        if last:
            self._done = True
            self._verify()

    def _verify(self) -> None:
        expected = self._meta.get("sha256")
        if self._size != self._meta.get("size") or self._hash.hexdigest() != expected:
            raise IntegrityError(
                f"object {self._key!r}: checksum mismatch (stored sha256:{expected}, read "
                f"sha256:{self._hash.hexdigest()}, {self._size} bytes)")

    def close(self) -> None:
        if not self.closed:
            self._fh.close()
        super().close()


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
        if not 0 < chunk_size <= 64 * 1024 * 1024:
            raise ValueError("chunk_size must be between 1 byte and 64 MiB")
        self.target = target
        self.location = location
        self.root = Path(root)
        self.location_dir = self.root / location
        self.bucket_dir = self.location_dir / target.bucket
        self.chunk_size = chunk_size
        self._keyring = _LocationKey(self.location_dir / ".keys", location)
        self._thread_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalStore({self.bucket_dir})"

    # --- paths -------------------------------------------------------------------------

    def _dir_for(self, key: str) -> Path:
        path = self.bucket_dir.joinpath(*(_escape(s) for s in key.split("/")))
        if not path.is_relative_to(self.bucket_dir) or path == self.bucket_dir:
            raise InvalidKey(f"key {key!r} does not stay inside the store")  # pragma: no cover
        return path

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
    def _bucket_lock(self) -> Iterator[None]:
        """Serialise commits and deletes of this bucket (threads and processes)."""
        with self._thread_lock:
            if fcntl is None:  # pragma: no cover - Windows
                yield
                return
            fd = os.open(self.bucket_dir / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    # --- writes ------------------------------------------------------------------------

    def put(self, key: str, data: bytes | BinaryIO, *, metadata: dict[str, str] | None = None,
            progress: ProgressCallback | None = None) -> ObjectInfo:
        key = validate_key(key)
        meta_in = _check_metadata(metadata)
        src: IO[bytes] = (io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview))
                          else data)
        if isinstance(data, str) or not hasattr(src, "read"):
            raise StorageError("data must be bytes or a binary file object (opened with 'rb')")
        keydir = self._dir_for(key)
        try:
            tmp, fh = self._open_temp(keydir)
        except OSError as exc:  # a directory pruned under us is not "not found" for a put
            raise self._translate(exc, None if isinstance(exc, FileNotFoundError)
                                  else key) from exc
        staged = keydir / f"{_TMP}{secrets.token_hex(12)}.meta"
        try:
            with fh:
                key_id, size, digest = self._encrypt_into(fh, src, key, progress)
                fh.flush()
                os.fsync(fh.fileno())
            blob = f"{_BLOB}{secrets.token_hex(12)}"
            meta = {"format": 1, "key": key, "blob": blob, "size": size, "sha256": digest,
                    "key_id": key_id, "last_modified": _utcnow().isoformat(),
                    "metadata": meta_in}
            _write_private(staged, json.dumps(meta, ensure_ascii=False).encode("utf-8"))
            self._commit(keydir, tmp, blob, staged)
        except BaseException as exc:
            self._discard(keydir, tmp, staged)
            if isinstance(exc, OSError):  # a vanished directory mid-write is not "not found"
                raise self._translate(exc, None if isinstance(exc, FileNotFoundError)
                                      else key) from exc
            raise
        return self._info(meta)

    def _open_temp(self, keydir: Path) -> tuple[Path, BinaryIO]:
        # A concurrent delete may prune the (still empty) directories while they are made
        # or before the open; once the temp file exists the directory is not empty and
        # stays. (The load scenario's shared keys hit both windows.)
        for attempt in range(5):
            tmp = keydir / f"{_TMP}{secrets.token_hex(12)}"
            try:
                _make_private_dirs(keydir, self.root)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileNotFoundError:
                if attempt == 4:
                    raise
                continue
            return tmp, os.fdopen(fd, "wb")
        raise AssertionError("unreachable")  # pragma: no cover

    def _encrypt_into(self, out: BinaryIO, src: IO[bytes], key: str,
                      progress: ProgressCallback | None) -> tuple[str, int, str]:
        current = self._keyring.current(create=True)
        assert current is not None
        key_id, location_key = current
        header = _Header(key_id, secrets.token_bytes(_SALT), secrets.token_bytes(_NONCE_PREFIX),
                         self.chunk_size)
        aead = header.cipher(location_key)
        aad = header.encode() + key.encode("utf-8")
        out.write(header.encode())
        digest = hashlib.sha256()
        size = 0
        counter = 0
        chunk = self._read_source(src)
        while True:
            # Read one chunk ahead: the last chunk is sealed with the "last" flag.
            following = self._read_source(src) if len(chunk) == self.chunk_size else b""
            last = not following
            digest.update(chunk)
            out.write(aead.encrypt(header.nonce(counter, last), chunk, aad))
            size += len(chunk)
            counter += 1
            if progress is not None and chunk:
                progress(len(chunk))
            if last:
                return key_id, size, digest.hexdigest()
            chunk = following

    def _read_source(self, src: IO[bytes]) -> bytes:
        try:
            return _read_full(src, self.chunk_size)
        except OSError as exc:  # the caller's data failed, not this store: no failover
            raise StorageError(f"reading the data to store failed: {exc}") from exc

    def _commit(self, keydir: Path, tmp: Path, blob: str, staged_meta: Path) -> None:
        with self._bucket_lock():
            old = self._read_meta_file(keydir)
            os.replace(tmp, keydir / blob)
            os.replace(staged_meta, keydir / _META)
            if old is not None and old.get("blob") != blob:
                self._remove_blob(keydir, old.get("blob"))
        _fsync_dir(keydir)

    def _discard(self, keydir: Path, *files: Path) -> None:
        """Remove what a failed put left behind (nothing of it was ever readable)."""
        for path in files:
            with contextlib.suppress(OSError):
                path.unlink()
        with contextlib.suppress(OSError), self._bucket_lock():
            self._prune(keydir)

    @staticmethod
    def _remove_blob(keydir: Path, blob: object) -> None:
        if isinstance(blob, str) and blob.startswith(_BLOB) and "/" not in blob:
            with contextlib.suppress(FileNotFoundError):
                (keydir / blob).unlink()

    def delete(self, key: str) -> bool:
        key = validate_key(key)
        keydir = self._dir_for(key)
        if not keydir.is_dir():
            return False
        try:
            with self._bucket_lock():
                meta = self._read_meta_file(keydir)
                if meta is None:
                    return False
                (keydir / _META).unlink()
                self._remove_blob(keydir, meta.get("blob"))
                self._sweep(keydir)
                self._prune(keydir)
        except OSError as exc:
            raise self._translate(exc) from exc
        _fsync_dir(keydir.parent)
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
        """
        prefix = validate_prefix(prefix)
        if not prefix.endswith("/"):
            raise InvalidKey(f"purge_residue needs a directory prefix ending in '/', got "
                             f"{prefix!r}")
        start = self._dir_for(prefix.rstrip("/"))
        if not start.is_dir():
            return Residue()  # nothing was ever written under the prefix
        kept_dirs = {self._dir_for(validate_key(k)) for k in keep if k.startswith(prefix)}
        removed = 0
        try:
            with self._bucket_lock():
                for dirpath, _dirs, files in os.walk(start, topdown=False):
                    directory = Path(dirpath)
                    if directory in kept_dirs:
                        continue  # its own files only: deeper keys are walked on their own
                    meta = self._read_meta_file(directory) if _META in files else None
                    committed = meta.get("blob") if meta is not None else None
                    for name in files:
                        if name.startswith((_TMP, _BLOB)) and name != committed:
                            with contextlib.suppress(FileNotFoundError):
                                os.unlink(directory / name)
                                removed += 1
                    with contextlib.suppress(OSError):  # not empty: a committed object
                        directory.rmdir()
                self._prune(start.parent)
        except OSError as exc:
            raise self._translate(exc) from exc
        if removed:
            _fsync_dir(start.parent if not start.exists() else start)
        return Residue(files_removed=removed)

    @staticmethod
    def _sweep(keydir: Path) -> None:
        """Remove orphaned blobs (a crashed commit) and stale temp files (a crashed put)."""
        cutoff = time.time() - _STALE_TMP_SECONDS
        for entry in os.scandir(keydir):
            if entry.name.startswith(_BLOB) or (
                    entry.name.startswith(_TMP) and entry.stat().st_mtime < cutoff):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)

    def _prune(self, keydir: Path) -> None:
        """Remove now-empty key directories up to (not including) the bucket directory:
        erased keys must not survive as directory names."""
        path = keydir
        while path != self.bucket_dir and path.is_relative_to(self.bucket_dir):
            try:
                path.rmdir()
            except OSError:
                return
            path = path.parent

    # --- reads -------------------------------------------------------------------------

    def _read_meta_file(self, keydir: Path) -> dict[str, Any] | None:
        try:
            raw = (keydir / _META).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            meta = json.loads(raw)
        except ValueError:
            raise IntegrityError(f"sidecar {keydir / _META} is corrupt") from None
        if not isinstance(meta, dict):
            raise IntegrityError(f"sidecar {keydir / _META} is corrupt")
        return meta

    def _meta(self, key: str) -> dict[str, Any]:
        try:
            meta = self._read_meta_file(self._dir_for(key))
        except OSError as exc:
            raise self._translate(exc, key) from exc
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
        return self._info(self._meta(validate_key(key)))

    def open(self, key: str) -> BinaryIO:
        key = validate_key(key)
        keydir = self._dir_for(key)
        for _ in range(5):
            meta = self._meta(key)
            blob = meta.get("blob")
            if not isinstance(blob, str) or not blob.startswith(_BLOB) or "/" in blob:
                raise IntegrityError(f"sidecar of {key!r} is corrupt")
            try:
                fh = open(keydir / blob, "rb")  # noqa: SIM115 - handed to the reader
            except FileNotFoundError:
                continue  # replaced concurrently: read the new sidecar
            except OSError as exc:
                raise self._translate(exc, key) from exc
            raw = _DecryptingReader(fh, key, meta, self._keyring)
            # Buffered: read(n) returns n bytes until the end, as multipart uploaders expect.
            return cast(BinaryIO, io.BufferedReader(raw, buffer_size=self.chunk_size))
        raise IntegrityError(f"object {key!r}: its sidecar names a blob that does not exist")

    def get(self, key: str) -> bytes:
        with self.open(key) as reader:
            return reader.read()

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        prefix = validate_prefix(prefix)
        complete = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self._dir_for(complete) if complete else self.bucket_dir
        base = tuple(complete.split("/")) if complete else ()
        try:
            yield from self._walk(start, base, prefix)
        except OSError as exc:
            raise self._translate(exc) from exc

    def _walk(self, directory: Path, segments: tuple[str, ...],
              prefix: str) -> Iterator[ObjectInfo]:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: _unescape(e.name))
        except (FileNotFoundError, NotADirectoryError):
            return
        names = {e.name for e in entries}
        key = "/".join(segments)
        if segments and _META in names and key.startswith(prefix):
            meta = self._read_meta_file(directory)
            if meta is not None:
                yield self._info(meta)
        for entry in entries:
            if entry.name.startswith("@") and not entry.name.startswith("@@"):
                continue  # the store's own files
            if not entry.is_dir(follow_symlinks=False):
                continue
            child = (*segments, _unescape(entry.name))
            path = "/".join(child)
            if path.startswith(prefix) or prefix.startswith(path):
                yield from self._walk(Path(entry.path), child, prefix)


def _check_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    if not metadata:
        return {}
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise StorageError("metadata must be a dict of str to str")
    return dict(metadata)
