"""The embedded default backend: a directory per residency location, encrypted at rest.

Layout under ``root``::

    <root>/<location>/.keys/CURRENT           id of the location's current data key
    <root>/<location>/.keys/<key_id>.json     the AES-256 key (0600), never outside <location>
    <root>/<location>/.keys/tenants/<h>.json  a tenant's key, wrapped by a location key
    <root>/<location>/.keys/.lock             serialises tenant-key creation, shredding, rotation
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
unlinks and lists relative to descriptors. A link met on the way (a location, bucket,
keys or key directory, a sidecar, a blob, the lock) raises
:class:`~residency_sdk.errors.UnsafePath` naming it, before any byte is read or written
through it; :meth:`LocalStore.list` and :meth:`LocalStore.purge_residue` raise it for a
link anywhere under the prefix rather than skipping it, so an erasure reports it.

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

**Per-tenant keys (crypto-shredding).** An object under ``tenants/<id>/`` is encrypted
the same way, but from the tenant's own random key (``tenant-<loc>-...``, made on its
first write), which is stored wrapped by the location key; the blob header names the key.
:meth:`LocalStore.destroy_tenant_key` shreds it: every copy of the tenant's blobs (a
backup, a restored snapshot) then raises :class:`~residency_sdk.errors.KeyDestroyed`.
:meth:`LocalStore.rotate_location_key` makes a new location key current and re-wraps the
tenant keys; no object is re-encrypted and older location keys stay for the objects
written under them (docs/crypto-shredding.md).

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
import stat
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from residency_sdk._fsflags import (
    CREATE_FLAGS,
    DIR_FLAGS,
    O_CLOEXEC,
    O_DIRECTORY,
    O_NOFOLLOW,
    READ_FLAGS,
)
from residency_sdk.errors import (
    BackendUnavailable,
    EncryptionError,
    IntegrityError,
    InvalidKey,
    InvalidLocalLocation,
    KeyDestroyed,
    ObjectChanged,
    ObjectNotFound,
    StorageError,
    UnsafePath,
)
from residency_sdk.model import StorageTarget
from residency_sdk.storage._conditional import expected_write
from residency_sdk.storage.base import (
    KeyDestruction,
    ObjectInfo,
    ObjectStore,
    ProgressCallback,
    Residue,
)
from residency_sdk.storage.keys import tenant_of_key, validate_key, validate_prefix

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
_KEYS = ".keys"
_KEYS_LOCK = ".lock"  # in .keys: serialises tenant-key creation, destruction, rotation
_TENANT_KEYS = "tenants"  # .keys/tenants/<sha256(tenant id)[:40]>.json
_TENANT_KEY_PREFIX = "tenant-"  # tenant key ids; location key ids start with "local-"
_WRAP_INFO = b"residency-sdk local tenant-key wrap v1"
_STALE_TMP_SECONDS = 3600
_LOCATION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_BUCKET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_KEY_ID = re.compile(r"^[a-z0-9-]{1,80}$")
# Errors that mean "this disk cannot serve now" (failover may help), not "bad request".
_UNAVAILABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EIO,
                errno.EDQUOT, errno.ENODEV, errno.ENXIO, errno.ESTALE}

# Every path below the root is opened relative to its parent directory's descriptor and
# never through a symbolic link (O_NOFOLLOW); O_NONBLOCK keeps a planted FIFO from
# blocking a reader (it has no effect on regular files).
_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | O_NOFOLLOW | O_CLOEXEC
_FD_WALK = bool(O_NOFOLLOW and O_DIRECTORY and os.open in os.supports_dir_fd
                and os.scandir in os.supports_fd)
_LINK_HINT = ("remove the link; residency-sdk never follows links in its data root, so "
              "nothing was read or written through it")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _fsync(fd: int) -> None:
    with contextlib.suppress(OSError):  # not every platform lets a directory be fsynced
        os.fsync(fd)


def _read_at(dir_fd: int, name: str, shown: str) -> tuple[bytes, os.stat_result]:
    """The whole content of the regular file ``name`` in ``dir_fd`` (opened without
    following a link: a link raises ``OSError(ELOOP)``, which the caller classifies;
    anything but a regular file, such as a planted FIFO, raises IntegrityError naming
    ``shown``)."""
    fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise IntegrityError(f"{shown} in the local data root is not a regular file")
        parts = []
        left = st.st_size
        while left > 0:
            part = os.read(fd, left)
            if not part:
                break
            parts.append(part)
            left -= len(part)
        return b"".join(parts), st
    finally:
        os.close(fd)


def _write_private_at(dir_fd: int, name: str, data: bytes) -> None:
    fd = os.open(name, CREATE_FLAGS, 0o600, dir_fd=dir_fd)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


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
    """The location's AES-256 data key, created on first use under ``<location>/.keys``
    (a directory that must not be a link: the store opens it for the keyring)."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store
        self.dir = store.location_dir / _KEYS  # for messages only
        self.location = store.location
        self._parts = (store.location, _KEYS)
        self._keys: dict[str, bytes] = {}
        self._current: str | None = None
        self._lock = threading.Lock()
        self.tenants = _TenantKeys(store, self)
        """The location's per-tenant keys, each wrapped by one of these location keys."""

    def current(self, *, create: bool, fresh: bool = False) -> tuple[str, bytes] | None:
        """The current location key (made on first use if ``create``). ``fresh`` reads
        ``CURRENT`` again instead of this process's cached answer (another process may
        have rotated the key)."""
        with self._lock:
            if fresh:
                self._current = None
            if self._current is None:
                fd = self.store._open_dir(self._parts, create=create)
                if fd is None:
                    return None
                try:
                    try:
                        self._current = self._read(fd, "CURRENT").decode("ascii").strip()
                    except FileNotFoundError:
                        if not create:
                            return None
                        self._current = self._create(fd)
                finally:
                    os.close(fd)
            return self._current, self._load(self._current)

    def get(self, key_id: str) -> bytes:
        with self._lock:
            return self._load(key_id)

    def object_key(self, key_id: str, object_key: str) -> bytes:
        """The key a blob header names: a tenant key (objects under ``tenants/<id>/``
        written since per-tenant keys exist) or a location key (every other object, and
        tenant objects written before)."""
        if key_id.startswith(_TENANT_KEY_PREFIX):
            tenant = tenant_of_key(object_key)
            if tenant is None:
                raise IntegrityError(
                    f"object {object_key!r}: its blob names tenant key {key_id!r} but the "
                    "object is not under tenants/<id>/: the blob was moved or tampered with")
            return self.tenants.for_reading(tenant, key_id, object_key)
        return self.get(key_id)

    def ids(self) -> list[str]:
        """Every location key id kept in ``.keys`` (old ones decrypt older objects)."""
        fd = self.store._open_dir(self._parts, create=False)
        if fd is None:
            return []
        try:
            with os.scandir(fd) as it:
                names = [e.name for e in it if e.is_file(follow_symlinks=False)]
        finally:
            os.close(fd)
        return sorted(n.removesuffix(".json") for n in names
                      if n.endswith(".json") and _KEY_ID.fullmatch(n.removesuffix(".json")))

    def rotate(self, fd: int) -> str:
        """Make a new location key CURRENT (``fd``: the keys directory; the caller holds
        the keyring lock). The key file is durable before ``CURRENT`` names it, and
        ``CURRENT`` is replaced atomically: a crash leaves the old key or the new one
        current, both on disk. Old keys stay: objects written under them are not
        re-encrypted."""
        with self._lock:
            key_id = self._new_key_file(fd)
            staged = f".CURRENT-{secrets.token_hex(8)}"
            _write_private_at(fd, staged, key_id.encode("ascii"))
            try:
                os.replace(staged, "CURRENT", src_dir_fd=fd, dst_dir_fd=fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(staged, dir_fd=fd)
                raise
            _fsync(fd)
            self._current = key_id
            return key_id

    def _read(self, fd: int, name: str) -> bytes:
        try:
            return _read_at(fd, name, "/".join((*self._parts, name)))[0]
        except OSError as exc:
            self.store._refuse_link(exc, fd, name, self._parts)
            raise

    def _load(self, key_id: str) -> bytes:
        if key_id in self._keys:
            return self._keys[key_id]
        if not _KEY_ID.fullmatch(key_id):
            raise EncryptionError(f"invalid local key id {key_id!r}")
        name = f"{key_id}.json"
        path = self.dir / name
        fd = self.store._open_dir(self._parts, create=False)
        try:
            if fd is None:
                raise FileNotFoundError(errno.ENOENT, "no keys directory", str(self.dir))
            try:
                raw, st = _read_at(fd, name, "/".join((*self._parts, name)))
            except OSError as exc:
                self.store._refuse_link(exc, fd, name, self._parts)
                raise
            if os.name == "posix" and st.st_mode & 0o077:
                raise EncryptionError(f"key file {path} is readable by other users: run "
                                      f"`chmod 600 {path}`")
            doc = json.loads(raw.decode("ascii"))
            key = base64.b64decode(doc["key"], validate=True)
        except FileNotFoundError:
            raise EncryptionError(f"location key {key_id!r} not found in {self.dir}: objects "
                                  "encrypted with it cannot be read") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise EncryptionError(f"key file {path} is malformed: {exc}") from None
        finally:
            if fd is not None:
                os.close(fd)
        if len(key) != 32:
            raise EncryptionError(f"key file {path} does not hold a 256-bit key")
        self._keys[key_id] = key
        return key

    def _new_key_file(self, fd: int) -> str:
        """Write a new random location key file (fsynced) in the keys directory ``fd``."""
        key_id = f"local-{self.location.lower()}-{secrets.token_hex(8)}"
        doc = {"key_id": key_id, "algorithm": "AES-256-GCM", "location": self.location,
               "created": _utcnow().isoformat(),
               "key": base64.b64encode(AESGCM.generate_key(bit_length=256)).decode("ascii")}
        _write_private_at(fd, f"{key_id}.json", json.dumps(doc).encode("ascii"))
        return key_id

    def _create(self, fd: int) -> str:
        key_id = self._new_key_file(fd)
        # Publish the pointer without ever overwriting one another process made first.
        staged = f".CURRENT-{secrets.token_hex(8)}"
        _write_private_at(fd, staged, key_id.encode("ascii"))
        try:
            os.link(staged, "CURRENT", src_dir_fd=fd, dst_dir_fd=fd)
        except FileExistsError:
            os.unlink(f"{key_id}.json", dir_fd=fd)
            key_id = self._read(fd, "CURRENT").decode("ascii").strip()
        finally:
            os.unlink(staged, dir_fd=fd)
        _fsync(fd)
        return key_id


@dataclass(frozen=True, slots=True)
class TenantKeyInfo:
    """One tenant key of a location (never the key itself)."""

    tenant_id: str
    key_id: str
    wrapped_by: str
    """The location key id that wraps it."""
    created: str | None = None


@dataclass(frozen=True, slots=True)
class KeyringStatus:
    """A location's keyring: its location keys and the tenant keys they wrap."""

    location: str
    current_key_id: str | None
    location_keys: tuple[str, ...]
    tenant_keys: tuple[TenantKeyInfo, ...]

    @property
    def not_rewrapped(self) -> tuple[TenantKeyInfo, ...]:
        """Tenant keys wrapped by an older location key (a rotation that did not finish:
        run it again). Still readable: old location keys are kept."""
        return tuple(t for t in self.tenant_keys if t.wrapped_by != self.current_key_id)


@dataclass(frozen=True, slots=True)
class RotationReport:
    """What :meth:`LocalStore.rotate_location_key` did."""

    location: str
    previous_key_id: str | None
    current_key_id: str
    rewrapped: tuple[str, ...]
    """Tenant key ids re-wrapped under the new location key."""
    location_keys: tuple[str, ...]
    """Every location key kept (the older ones still decrypt objects written under them)."""
    shredded: int = 0
    """Leftovers of interrupted key operations shredded on the way."""


class _TenantKeys:
    """Per-tenant data keys of one location, for crypto-shredding.

    ``<location>/.keys/tenants/<t>.json`` (``t``: 40 hex digits of the tenant id's
    SHA-256, so any id maps to one safe file name) holds a random 256-bit key wrapped with
    AES-256-GCM under a key derived (HKDF) from a location key, which the file names
    (``kek``); the location, tenant id and tenant key id are the associated data, so a
    wrapped key cannot be passed off as another tenant's or another location's. Objects
    under ``tenants/<id>/`` are encrypted with the tenant key; :meth:`destroy` overwrites
    the file with random bytes, fsyncs and unlinks it, after which every copy of those
    objects (a backup, a restored snapshot) is unreadable.

    Creating, destroying and re-wrapping hold ``.keys/.lock`` (threads and processes);
    readers take no lock: a file is only ever replaced atomically, so a reader sees a
    whole one. Nothing caches an unwrapped tenant key: once destroyed, no open store of
    any process can use it again.
    """

    def __init__(self, store: LocalStore, location_keys: _LocationKey) -> None:
        self.store = store
        self.location_keys = location_keys
        self.location = store.location
        self._keys_parts = (store.location, _KEYS)
        self._parts = (store.location, _KEYS, _TENANT_KEYS)
        self._dir = str(store.location_dir / _KEYS / _TENANT_KEYS)  # for messages only
        self._thread_lock = threading.Lock()
        self._wrappers: dict[str, AESGCM] = {}

    # --- names, wrapping -----------------------------------------------------------

    @staticmethod
    def stem(tenant_id: str) -> str:
        """The file name stem of ``tenant_id``'s key (no tenant id ever names a file)."""
        return hashlib.sha256(tenant_id.encode("utf-8", "surrogatepass")).hexdigest()[:40]

    def _shown(self, name: str) -> str:
        return f"{self._dir}{os.sep}{name}"

    def _aad(self, tenant_id: str, key_id: str) -> bytes:
        return json.dumps(["residency-sdk tenant key v1", self.location, tenant_id,
                           key_id]).encode("utf-8", "surrogatepass")

    def _wrapper(self, kek_id: str, location_key: bytes) -> AESGCM:
        # A wrapping key of its own (HKDF, distinct info): the location key itself only
        # ever feeds HKDF, as it does for object keys. Cached per location key, which is
        # cached already (tenant keys never are).
        wrapper = self._wrappers.get(kek_id)
        if wrapper is None:
            wrapper = self._wrappers[kek_id] = AESGCM(HKDF(
                algorithm=hashes.SHA256(), length=32, salt=None,
                info=_WRAP_INFO).derive(location_key))
        return wrapper

    def _doc(self, tenant_id: str, key_id: str, key: bytes, kek_id: str, kek: bytes,
             created: str) -> dict[str, Any]:
        nonce = secrets.token_bytes(12)
        wrapped = self._wrapper(kek_id, kek).encrypt(nonce, key,
                                                     self._aad(tenant_id, key_id))
        return {"format": 1, "tenant": tenant_id, "key_id": key_id,
                "location": self.location, "kek": kek_id, "algorithm": "AES-256-GCM",
                "created": created, "wrapped_at": _utcnow().isoformat(),
                "nonce": base64.b64encode(nonce).decode("ascii"),
                "wrapped": base64.b64encode(wrapped).decode("ascii")}

    def _unwrap(self, doc: dict[str, Any], tenant_id: str, name: str) -> tuple[str, bytes]:
        shown = self._shown(name)
        try:
            key_id, kek_id = str(doc["key_id"]), str(doc["kek"])
            nonce = base64.b64decode(doc["nonce"], validate=True)
            wrapped = base64.b64decode(doc["wrapped"], validate=True)
        except (KeyError, TypeError, ValueError) as exc:
            raise EncryptionError(f"tenant key file {shown} is malformed: {exc}") from None
        if doc.get("tenant") != tenant_id or not key_id.startswith(_TENANT_KEY_PREFIX) \
                or not _KEY_ID.fullmatch(key_id):
            raise EncryptionError(f"tenant key file {shown} does not hold a key of tenant "
                                  f"{tenant_id!r}: it was altered; restore it or erase the "
                                  "tenant's objects")
        kek = self.location_keys.get(kek_id)
        try:
            key = self._wrapper(kek_id, kek).decrypt(nonce, wrapped,
                                                     self._aad(tenant_id, key_id))
        except InvalidTag:
            raise EncryptionError(
                f"tenant key file {shown} does not unwrap with location key {kek_id!r}: it "
                "was altered or copied from elsewhere; objects under it cannot be read"
            ) from None
        if len(key) != 32:
            raise EncryptionError(f"tenant key file {shown} does not hold a 256-bit key")
        return key_id, key

    # --- files ---------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, *, create: bool) -> Iterator[tuple[int, int] | None]:
        """``(keys directory, tenants directory)`` descriptors with the keyring lock
        held; None when the location has no keys directory and ``create`` is false."""
        with self._thread_lock:
            keys_fd = self.store._open_dir(self._keys_parts, create=create)
            if keys_fd is None:
                yield None
                return
            try:
                try:
                    lock_fd = os.open(_KEYS_LOCK, _LOCK_FLAGS, 0o600, dir_fd=keys_fd)
                except OSError as exc:
                    self.store._refuse_link(exc, keys_fd, _KEYS_LOCK, self._keys_parts)
                    raise
                try:
                    if fcntl is not None:
                        fcntl.flock(lock_fd, fcntl.LOCK_EX)
                    tenants_fd = self.store._open_at(keys_fd, _TENANT_KEYS, self._keys_parts,
                                                     create=create)
                    if tenants_fd is None:
                        yield None
                        return
                    try:
                        yield keys_fd, tenants_fd
                    finally:
                        os.close(tenants_fd)
                finally:
                    os.close(lock_fd)
            finally:
                os.close(keys_fd)

    def _read_doc(self, fd: int, name: str) -> dict[str, Any] | None:
        """The key file ``name`` in the tenants directory ``fd``, or None if absent."""
        try:
            raw, st = _read_at(fd, name, "/".join((*self._parts, name)))
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.store._refuse_link(exc, fd, name, self._parts)
            raise
        shown = self._shown(name)
        if os.name == "posix" and st.st_mode & 0o077:
            raise EncryptionError(f"tenant key file {shown} is readable by other users: run "
                                  f"`chmod 600 {shown}`")
        try:
            doc = json.loads(raw.decode("utf-8"))
        except ValueError as exc:
            raise EncryptionError(f"tenant key file {shown} is malformed: {exc}") from None
        if not isinstance(doc, dict):
            raise EncryptionError(f"tenant key file {shown} is malformed")
        return doc

    def _load(self, tenant_id: str) -> dict[str, Any] | None:
        fd = self.store._open_dir(self._parts, create=False)
        if fd is None:
            return None
        try:
            return self._read_doc(fd, f"{self.stem(tenant_id)}.json")
        finally:
            os.close(fd)

    def _publish(self, fd: int, stem: str, doc: dict[str, Any]) -> None:
        """Write ``doc`` as ``<stem>.json`` atomically (staged, fsynced, renamed over)."""
        staged = f"{stem}.tmp-{secrets.token_hex(8)}"
        try:
            _write_private_at(fd, staged, json.dumps(doc, ensure_ascii=False).encode("utf-8"))
            os.replace(staged, f"{stem}.json", src_dir_fd=fd, dst_dir_fd=fd)
        except BaseException:
            with contextlib.suppress(OSError, UnsafePath):
                self._shred(fd, staged)
            raise

    def _shred(self, fd: int, name: str) -> None:
        """Overwrite the file ``name`` with random bytes, fsync it, unlink it. A link is
        refused (never followed); anything else that is not a regular file is unlinked."""
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            raise self.store._unsafe((*self._parts, name))
        if stat.S_ISREG(st.st_mode) and st.st_size:
            out = os.open(name, os.O_WRONLY | O_NOFOLLOW | O_CLOEXEC, dir_fd=fd)
            try:
                os.write(out, secrets.token_bytes(st.st_size))
                os.fsync(out)
            finally:
                os.close(out)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=fd)

    # --- operations ----------------------------------------------------------------

    def key_id(self, tenant_id: str) -> str | None:
        """The id of ``tenant_id``'s key in this location, or None when it has none."""
        doc = self._load(tenant_id)
        return None if doc is None else str(doc.get("key_id"))

    def current(self, tenant_id: str) -> tuple[str, bytes]:
        """``tenant_id``'s key for writing, made (under the lock) on its first write."""
        name = f"{self.stem(tenant_id)}.json"
        doc = self._load(tenant_id)
        if doc is not None:
            return self._unwrap(doc, tenant_id, name)
        with self.locked(create=True) as fds:
            assert fds is not None
            _, tenants_fd = fds
            doc = self._read_doc(tenants_fd, name)
            if doc is not None:  # made by another writer meanwhile
                return self._unwrap(doc, tenant_id, name)
            # CURRENT read again under the lock: a rotation another process just finished
            # is seen, so no new tenant key is wrapped under a retired location key.
            current = self.location_keys.current(create=True, fresh=True)
            assert current is not None
            key_id = f"{_TENANT_KEY_PREFIX}{self.location.lower()}-{secrets.token_hex(10)}"
            key = AESGCM.generate_key(bit_length=256)
            self._publish(tenants_fd, self.stem(tenant_id),
                          self._doc(tenant_id, key_id, key, *current,
                                    created=_utcnow().isoformat()))
            _fsync(tenants_fd)
            return key_id, key

    def for_reading(self, tenant_id: str, key_id: str, object_key: str) -> bytes:
        """The tenant key ``key_id`` a blob names; :class:`KeyDestroyed` when it is gone."""
        doc = self._load(tenant_id)
        found = None if doc is None else self._unwrap(doc, tenant_id,
                                                      f"{self.stem(tenant_id)}.json")
        if found is None or found[0] != key_id:
            raise KeyDestroyed(
                f"object {object_key!r} in {self.store._where()} is encrypted with the key "
                f"{key_id!r} of tenant {tenant_id!r}, which no longer exists in "
                f"{self.store.location_dir / _KEYS}: it was destroyed when the tenant was "
                "erased (crypto-shredding), so this copy is unreadable by design and cannot "
                "be recovered; delete it")
        return found[1]

    def destroy(self, tenant_id: str) -> KeyDestruction:
        """Shred ``tenant_id``'s key: renamed out of the way first (atomic: from then on
        no reader finds it and a writer makes a new key), then overwritten with random
        bytes, fsynced and unlinked, with every leftover of an interrupted operation of
        the tenant (staged copies, a crashed earlier destroy). Restartable at any point."""
        stem = self.stem(tenant_id)
        with self.locked(create=False) as fds:
            if fds is None:
                return self._absent(tenant_id)
            _, tenants_fd = fds
            live, doomed = f"{stem}.json", f"{stem}.shred"
            key_id = self._peek_key_id(tenants_fd, live)
            try:
                os.rename(live, doomed, src_dir_fd=tenants_fd, dst_dir_fd=tenants_fd)
                _fsync(tenants_fd)
            except FileNotFoundError:
                key_id = self._peek_key_id(tenants_fd, doomed)  # a crashed destroy's
            with os.scandir(tenants_fd) as it:
                names = sorted(e.name for e in it if e.name.startswith(stem + "."))
            for name in names:
                self._shred(tenants_fd, name)
            if names:
                _fsync(tenants_fd)
        if not names:
            return self._absent(tenant_id)
        return KeyDestruction(
            tenant_id=tenant_id, status="destroyed", key_id=key_id, effective_at=_utcnow(),
            detail=f"tenant key {key_id or '(unreadable)'} of location {self.location} "
                   "shredded (overwritten, fsynced, unlinked): every copy of the tenant's "
                   "objects encrypted under it, backups included, is unreadable")

    def _absent(self, tenant_id: str) -> KeyDestruction:
        return KeyDestruction(
            tenant_id=tenant_id, status="absent",
            detail=f"no key of tenant {tenant_id!r} in location {self.location}: none was "
                   "made (nothing written since per-tenant keys exist) or it was destroyed "
                   "before")

    def _peek_key_id(self, fd: int, name: str) -> str | None:
        """The key id recorded in a key file, if it can be read (destroy shreds a
        malformed file all the same)."""
        try:
            doc = self._read_doc(fd, name)
        except EncryptionError:
            return None
        key_id = None if doc is None else doc.get("key_id")
        return key_id if isinstance(key_id, str) else None

    def rewrap(self, fd: int, kek_id: str, kek: bytes) -> tuple[list[str], int]:
        """Re-wrap every tenant key in the tenants directory ``fd`` under the location
        key ``kek_id`` (the caller holds the lock): each file replaced atomically, so a
        crash leaves it wrapped by the old key or the new one, both kept. Leftovers of
        interrupted operations are shredded (under the lock, nothing is writing them).
        Returns the re-wrapped key ids and the number of leftovers shredded."""
        with os.scandir(fd) as it:
            names = sorted(e.name for e in it)
        rewrapped: list[str] = []
        shredded = 0
        for name in names:
            if not name.endswith(".json"):
                self._shred(fd, name)  # staged copy or a crashed destroy's key
                shredded += 1
                continue
            doc = self._read_doc(fd, name)
            if doc is None:
                continue
            tenant = doc.get("tenant")
            if not isinstance(tenant, str) or name != f"{self.stem(tenant)}.json":
                raise EncryptionError(f"tenant key file {self._shown(name)} does not belong "
                                      "under its name: it was altered; nothing was rotated "
                                      "past it")
            if doc.get("kek") == kek_id:
                continue
            key_id, key = self._unwrap(doc, tenant, name)
            self._publish(fd, self.stem(tenant),
                          self._doc(tenant, key_id, key, kek_id, kek,
                                    created=str(doc.get("created") or "")))
            rewrapped.append(key_id)
        _fsync(fd)
        return rewrapped, shredded

    def infos(self) -> list[TenantKeyInfo]:
        """Every tenant key of the location, as recorded (nothing unwrapped)."""
        fd = self.store._open_dir(self._parts, create=False)
        if fd is None:
            return []
        try:
            with os.scandir(fd) as it:
                names = sorted(e.name for e in it if e.name.endswith(".json"))
            out = []
            for name in names:
                doc = self._read_doc(fd, name)
                if doc is not None:
                    out.append(TenantKeyInfo(
                        tenant_id=str(doc.get("tenant")), key_id=str(doc.get("key_id")),
                        wrapped_by=str(doc.get("kek")), created=doc.get("created")))
            return out
        finally:
            os.close(fd)


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
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):  # a planted FIFO or device: never read it
                raise IntegrityError(f"object {key!r}: stored blob is not a regular file")
            self._end = st.st_size
            self._header = _Header.read(fh, key)
            self._aead = self._header.cipher(keyring.object_key(self._header.key_id, key))
            self._aad = self._header.encode() + key.encode("utf-8")
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
        if not _BUCKET_NAME.fullmatch(target.bucket) or ".." in target.bucket:
            raise InvalidLocalLocation(f"invalid bucket name {target.bucket!r} for a local "
                                       "store: one directory name")
        if not 0 < chunk_size <= 64 * 1024 * 1024:
            raise ValueError("chunk_size must be between 1 byte and 64 MiB")
        if not _FD_WALK:  # pragma: no cover - not POSIX
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
        self._keyring = _LocationKey(self)
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
            with self._keyring.tenants.locked(create=True) as fds:
                assert fds is not None
                keys_fd, tenants_fd = fds
                before = self._keyring.current(create=False, fresh=True)
                new_id = self._keyring.rotate(keys_fd)
                rewrapped, shredded = self._keyring.tenants.rewrap(
                    tenants_fd, new_id, self._keyring.get(new_id))
            return RotationReport(
                location=self.location, previous_key_id=before[0] if before else None,
                current_key_id=new_id, rewrapped=tuple(rewrapped),
                location_keys=tuple(self._keyring.ids()), shredded=shredded)
        except OSError as exc:
            raise self._translate(exc) from exc

    def key_status(self) -> KeyringStatus:
        """The location's keyring: current and kept location keys, and every tenant key
        with the location key wrapping it."""
        try:
            current = self._keyring.current(create=False, fresh=True)
            return KeyringStatus(
                location=self.location, current_key_id=current[0] if current else None,
                location_keys=tuple(self._keyring.ids()),
                tenant_keys=tuple(self._keyring.tenants.infos()))
        except OSError as exc:
            raise self._translate(exc) from exc

    # --- paths: walked from the root's descriptor, never through a link ----------------

    @staticmethod
    def _key_parts(key: str) -> tuple[str, ...]:
        return tuple(_escape(s) for s in key.split("/"))

    def _where(self) -> str:
        return f"local store {self.bucket_dir}"

    def _unsafe(self, parts: Sequence[str]) -> UnsafePath:
        return UnsafePath(f"{'/'.join(parts)} in the local data root {self.root} is a "
                          f"symbolic link: {_LINK_HINT}")

    def _refuse_link(self, exc: OSError, dir_fd: int, name: str,
                     where: Sequence[str]) -> None:
        """Raise :class:`UnsafePath` if opening ``name`` in ``dir_fd`` failed because it
        is a symbolic link (``ELOOP``, or ``ENOTDIR`` with ``O_DIRECTORY``)."""
        if isinstance(exc, FileNotFoundError):
            return
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            return
        if stat.S_ISLNK(st.st_mode):
            raise self._unsafe((*where, name)) from None

    def _open_root(self, *, create: bool) -> int | None:
        for attempt in (0, 1):
            try:
                return os.open(self.root, DIR_FLAGS)
            except FileNotFoundError:
                if not create or attempt:
                    if create:
                        raise
                    return None
            except OSError:
                if os.path.islink(self.root):
                    raise UnsafePath(
                        f"the local data root {self.root} became a symbolic link after the "
                        f"store resolved it: {_LINK_HINT}") from None
                raise
            os.makedirs(self.root, exist_ok=True)
        raise AssertionError("unreachable")  # pragma: no cover

    def _open_at(self, parent: int, name: str, where: tuple[str, ...], *,
                 create: bool) -> int | None:
        """The directory ``name`` in ``parent`` (made 0700 if ``create``), never through a
        link; ``None`` when it is absent and not created (or is a plain file)."""
        try:
            return os.open(name, DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                return None
        except OSError as exc:
            self._refuse_link(exc, parent, name, where)
            if not create and exc.errno == errno.ENOTDIR:
                return None  # a stray file where a directory belongs: nothing stored there
            raise
        with contextlib.suppress(FileExistsError):  # made concurrently (or a link: below)
            os.mkdir(name, 0o700, dir_fd=parent)
        try:
            return os.open(name, DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            self._refuse_link(exc, parent, name, where)
            raise

    def _walk_from(self, fd: int, parts: Sequence[str], where: tuple[str, ...], *,
                   create: bool) -> int | None:
        """A new descriptor of ``parts`` below the directory ``fd`` (which stays open)."""
        if not parts:
            return os.dup(fd)
        current = fd
        try:
            for name in parts:
                child = self._open_at(current, name, where, create=create)
                if current != fd:
                    os.close(current)
                current = fd
                if child is None:
                    return None
                current = child
                where = (*where, name)
            found, current = current, fd
            return found
        finally:
            if current != fd:
                os.close(current)

    def _open_dir(self, parts: Sequence[str], *, create: bool) -> int | None:
        """A descriptor of ``<root>/<parts...>``, walked without following a link."""
        root = self._open_root(create=create)
        if root is None:
            return None
        try:
            return self._walk_from(root, parts, (), create=create)
        finally:
            os.close(root)

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
        with self._thread_lock:
            if fcntl is None:  # pragma: no cover - Windows
                yield
                return
            try:
                fd = os.open(_LOCK, _LOCK_FLAGS, 0o600, dir_fd=bucket_fd)
            except OSError as exc:
                self._refuse_link(exc, bucket_fd, _LOCK, self._bucket_parts)
                raise
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
                    key_id, size, digest = self._encrypt_into(fh, src, key, progress, current)
                    fh.flush()
                    os.fsync(fh.fileno())
                blob = f"{_BLOB}{secrets.token_hex(12)}"
                meta = {"format": 1, "key": key, "blob": blob, "size": size, "sha256": digest,
                        "key_id": key_id, "last_modified": _utcnow().isoformat(),
                        "metadata": meta_in}
                _write_private_at(keydir_fd, staged,
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
            bucket_fd = self._open_dir(self._bucket_parts, create=True)
            assert bucket_fd is not None
            keydir_fd: int | None = None
            try:
                keydir_fd = self._walk_from(bucket_fd, parts, self._bucket_parts, create=True)
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

    def _encrypt_into(self, out: BinaryIO, src: IO[bytes], key: str,
                      progress: ProgressCallback | None,
                      current: tuple[str, bytes]) -> tuple[str, int, str]:
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

    def _commit(self, bucket_fd: int, keydir_fd: int, parts: tuple[str, ...], tmp: str,
                blob: str, staged_meta: str) -> None:
        with self._bucket_lock(bucket_fd):
            old = self._read_meta(keydir_fd, (*self._bucket_parts, *parts))
            os.replace(tmp, blob, src_dir_fd=keydir_fd, dst_dir_fd=keydir_fd)
            os.replace(staged_meta, _META, src_dir_fd=keydir_fd, dst_dir_fd=keydir_fd)
            if old is not None and old.get("blob") != blob:
                self._remove_blob(keydir_fd, old.get("blob"))
        _fsync(keydir_fd)

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
            bucket_fd = self._open_dir(self._bucket_parts, create=False)
            if bucket_fd is None:
                return False
            try:
                keydir_fd = self._walk_from(bucket_fd, parts, self._bucket_parts,
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
                        _fsync(keydir_fd)
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
            bucket_fd = self._open_dir(self._bucket_parts, create=False)
            if bucket_fd is None:
                return Residue()  # nothing was ever written under the prefix
            try:
                start = self._walk_from(bucket_fd, parts, self._bucket_parts, create=False)
                if start is None:
                    return Residue()
                try:
                    where = (*self._bucket_parts, *parts)
                    self._refuse_links(start, where)
                    with self._bucket_lock(bucket_fd):
                        removed = self._purge(start, parts, where, kept)
                        if not self._prune(bucket_fd, parts) and removed:
                            _fsync(start)
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
                raise self._unsafe((*where, entry.name))
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                child = self._open_at(fd, entry.name, where, create=False)
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
                raise self._unsafe((*where, entry.name))
            if entry.is_dir(follow_symlinks=False):
                child = self._open_at(fd, entry.name, where, create=False)
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
                child = self._open_at(chain[-1], name, where, create=False)
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
                _fsync(changed)
            return changed is not None
        finally:
            for fd in chain[1:]:
                os.close(fd)

    # --- reads -------------------------------------------------------------------------

    def _read_meta(self, keydir_fd: int, where: tuple[str, ...]) -> dict[str, Any] | None:
        try:
            raw = _read_at(keydir_fd, _META, "/".join((*where, _META)))[0]
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._refuse_link(exc, keydir_fd, _META, where)
            raise
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
            keydir_fd = self._open_dir(where, create=False)
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
            keydir_fd = self._open_dir(where, create=False)
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
                    self._refuse_link(exc, keydir_fd, blob, where)
                    raise self._translate(exc, key) from exc
                try:
                    raw = _DecryptingReader(os.fdopen(fd, "rb"), key, meta, self._keyring)
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
            start = self._open_dir(where, create=False)
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
                        raise self._unsafe((*where, name))
                    has_meta = has_meta or name == _META
                continue
            child = (*segments, _unescape(name))
            path = "/".join(child)
            if not (path.startswith(prefix) or prefix.startswith(path)):
                continue
            if entry.is_symlink():
                raise self._unsafe((*where, name))
            if entry.is_dir(follow_symlinks=False):
                children.append((name, child))
        if has_meta:
            meta = self._read_meta(fd, where)
            if meta is not None:
                yield self._info(meta)
        for name, child in children:
            child_fd = self._open_at(fd, name, where, create=False)
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
