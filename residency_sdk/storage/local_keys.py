"""The local store's keyring: location keys, the per-tenant keys they wrap, rotation and
crypto-shredding.

Layout under ``<root>/<location>/.keys``, one keyring a location shared by all its
buckets (primary and failover)::

    CURRENT             id of the location's current data key
    <key_id>.json       a location key: AES-256 (0600), never outside <location>
    tenants/<h>.json    a tenant's key, wrapped by a location key
    .lock               serialises tenant-key creation, shredding, rotation

**Key hierarchy.** A location key (``local-<loc>-...``) is made on the location's first
write. Blobs are not encrypted with it directly: each object's key is derived from it
(HKDF, a random salt a blob; :mod:`._local_blob`), and the blob header names the key id.
An object under ``tenants/<id>/`` is encrypted the same way, but from the tenant's own
random key (``tenant-<loc>-...``, made on its first write), which is stored wrapped:
AES-256-GCM under a key derived (HKDF) from a location key the file names (``kek``),
with the location, tenant id and tenant key id as associated data, so a wrapped key
cannot be passed off as another tenant's or another location's. Tenant objects written
before per-tenant keys existed name a location key and stay readable.

**Rotation.** :meth:`Keyring.rotate` makes a new location key current (its file durable
before ``CURRENT`` names it, ``CURRENT`` replaced atomically) and re-wraps every tenant
key under it, each file replaced atomically; no object is re-encrypted, and older
location keys stay for the objects written under them. A crash at any point leaves every
key readable; running it again finishes the job.

**Shredding.** :meth:`_TenantKeys.destroy` renames the tenant's key file out of the way,
overwrites it with random bytes, fsyncs and unlinks it: every copy of the tenant's blobs
(a backup, a restored snapshot) then raises :class:`~residency_sdk.errors.KeyDestroyed`.
A backup that holds ``.keys`` as well as the data still holds the wrapped key: keep
``.keys`` out of data backups (docs/crypto-shredding.md).

Creating, destroying and re-wrapping hold ``.keys/.lock`` (threads and processes);
readers take no lock (a file is only ever replaced atomically). Unwrapped tenant keys are
never cached: once destroyed, no open store of any process can use one again. Every file
and directory here is reached through :class:`~._local_fs.DataRoot`, never through a
link.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from residency_sdk._fsflags import O_CLOEXEC, O_NOFOLLOW
from residency_sdk.errors import EncryptionError, IntegrityError, KeyDestroyed, UnsafePath
from residency_sdk.storage._local_fs import DataRoot, fsync_dir, write_private_at
from residency_sdk.storage.base import KeyDestruction
from residency_sdk.storage.keys import tenant_of_key

_KEYS = ".keys"
_KEYS_LOCK = ".lock"  # in .keys: serialises tenant-key creation, destruction, rotation
_TENANT_KEYS = "tenants"  # .keys/tenants/<sha256(tenant id)[:40]>.json
_TENANT_KEY_PREFIX = "tenant-"  # tenant key ids; location key ids start with "local-"
_WRAP_INFO = b"residency-sdk local tenant-key wrap v1"
_KEY_ID = re.compile(r"^[a-z0-9-]{1,80}$")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _refuse_shared(st: os.stat_result, what: str, path: Path | str) -> None:
    """Refuse the key file ``path`` (``what``: how messages name it) if other users may
    read it."""
    if os.name == "posix" and st.st_mode & 0o077:
        raise EncryptionError(f"{what} {path} is readable by other users: run "
                              f"`chmod 600 {path}`")


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


class Keyring:
    """The keyring of one location: its AES-256 location keys, created on first use
    under ``<location>/.keys`` (a directory that must not be a link), and its per-tenant
    keys (:attr:`tenants`).

    ``fs`` is the store's data root, through which every file here is reached; ``where``
    names the store in messages."""

    def __init__(self, fs: DataRoot, location: str, *, where: str) -> None:
        self._fs = fs
        self.location = location
        self.dir = fs.root / location / _KEYS  # for messages only
        self._parts = (location, _KEYS)
        self._keys: dict[str, bytes] = {}
        self._current: str | None = None
        self._lock = threading.Lock()
        self.tenants = _TenantKeys(fs, self, where=where)
        """The location's per-tenant keys, each wrapped by one of these location keys."""

    # --- operations ----------------------------------------------------------------

    def rotate(self) -> RotationReport:
        """Make a new location key current and re-wrap every tenant key under it
        (:meth:`LocalStore.rotate_location_key`)."""
        with self.tenants.locked(create=True) as fds:
            assert fds is not None
            keys_fd, tenants_fd = fds
            before = self.current(create=False, fresh=True)
            new_id = self._make_current(keys_fd)
            rewrapped, shredded = self.tenants.rewrap(tenants_fd, new_id, self.get(new_id))
        return RotationReport(
            location=self.location, previous_key_id=before[0] if before else None,
            current_key_id=new_id, rewrapped=tuple(rewrapped),
            location_keys=tuple(self.ids()), shredded=shredded)

    def status(self) -> KeyringStatus:
        """Current and kept location keys, and every tenant key with its wrapping key."""
        current = self.current(create=False, fresh=True)
        return KeyringStatus(
            location=self.location, current_key_id=current[0] if current else None,
            location_keys=tuple(self.ids()), tenant_keys=tuple(self.tenants.infos()))

    # --- location keys -------------------------------------------------------------

    def current(self, *, create: bool, fresh: bool = False) -> tuple[str, bytes] | None:
        """The current location key (made on first use if ``create``). ``fresh`` reads
        ``CURRENT`` again instead of this process's cached answer (another process may
        have rotated the key)."""
        with self._lock:
            if fresh:
                self._current = None
            if self._current is None:
                fd = self._fs.open_dir(self._parts, create=create)
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
        with self._fs.opened(self._parts) as fd:
            if fd is None:
                return []
            with os.scandir(fd) as it:
                names = [e.name for e in it if e.is_file(follow_symlinks=False)]
        return sorted(n.removesuffix(".json") for n in names
                      if n.endswith(".json") and _KEY_ID.fullmatch(n.removesuffix(".json")))

    def _make_current(self, fd: int) -> str:
        """Make a new location key CURRENT (``fd``: the keys directory; the caller holds
        the keyring lock). The key file is durable before ``CURRENT`` names it, and
        ``CURRENT`` is replaced atomically: a crash leaves the old key or the new one
        current, both on disk. Old keys stay: objects written under them are not
        re-encrypted."""
        with self._lock:
            key_id, staged = self._stage_new_key(fd)
            try:
                os.replace(staged, "CURRENT", src_dir_fd=fd, dst_dir_fd=fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(staged, dir_fd=fd)
                raise
            fsync_dir(fd)
            self._current = key_id
            return key_id

    def _read(self, fd: int, name: str) -> bytes:
        return self._fs.read(fd, name, self._parts)[0]

    def _load(self, key_id: str) -> bytes:
        if key_id in self._keys:
            return self._keys[key_id]
        if not _KEY_ID.fullmatch(key_id):
            raise EncryptionError(f"invalid local key id {key_id!r}")
        name = f"{key_id}.json"
        path = self.dir / name
        fd = self._fs.open_dir(self._parts, create=False)
        try:
            if fd is None:
                raise FileNotFoundError(errno.ENOENT, "no keys directory", str(self.dir))
            raw, st = self._fs.read(fd, name, self._parts)
            _refuse_shared(st, "key file", path)
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

    def _stage_new_key(self, fd: int) -> tuple[str, str]:
        """Write a new random location key file and a staged ``CURRENT`` naming it (both
        fsynced) in the keys directory ``fd``; the key id and the staged file's name (the
        caller publishes it)."""
        key_id = f"local-{self.location.lower()}-{secrets.token_hex(8)}"
        doc = {"key_id": key_id, "algorithm": "AES-256-GCM", "location": self.location,
               "created": _utcnow().isoformat(),
               "key": base64.b64encode(AESGCM.generate_key(bit_length=256)).decode("ascii")}
        write_private_at(fd, f"{key_id}.json", json.dumps(doc).encode("ascii"))
        staged = f".CURRENT-{secrets.token_hex(8)}"
        write_private_at(fd, staged, key_id.encode("ascii"))
        return key_id, staged

    def _create(self, fd: int) -> str:
        key_id, staged = self._stage_new_key(fd)
        # Publish the pointer without ever overwriting one another process made first.
        try:
            os.link(staged, "CURRENT", src_dir_fd=fd, dst_dir_fd=fd)
        except FileExistsError:
            os.unlink(f"{key_id}.json", dir_fd=fd)
            key_id = self._read(fd, "CURRENT").decode("ascii").strip()
        finally:
            os.unlink(staged, dir_fd=fd)
        fsync_dir(fd)
        return key_id


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

    def __init__(self, fs: DataRoot, location_keys: Keyring, *, where: str) -> None:
        self._fs = fs
        self.location_keys = location_keys
        self.location = location_keys.location
        self._where = where
        self._keys_parts = (self.location, _KEYS)
        self._parts = (self.location, _KEYS, _TENANT_KEYS)
        self._dir = str(location_keys.dir / _TENANT_KEYS)  # for messages only
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
            keys_fd = self._fs.open_dir(self._keys_parts, create=create)
            if keys_fd is None:
                yield None
                return
            try:
                with self._fs.locked(keys_fd, _KEYS_LOCK, self._keys_parts):
                    tenants_fd = self._fs.open_at(keys_fd, _TENANT_KEYS, self._keys_parts,
                                                  create=create)
                    if tenants_fd is None:
                        yield None
                        return
                    try:
                        yield keys_fd, tenants_fd
                    finally:
                        os.close(tenants_fd)
            finally:
                os.close(keys_fd)

    def _read_doc(self, fd: int, name: str) -> dict[str, Any] | None:
        """The key file ``name`` in the tenants directory ``fd``, or None if absent."""
        try:
            raw, st = self._fs.read(fd, name, self._parts)
        except FileNotFoundError:
            return None
        shown = self._shown(name)
        _refuse_shared(st, "tenant key file", shown)
        try:
            doc = json.loads(raw.decode("utf-8"))
        except ValueError as exc:
            raise EncryptionError(f"tenant key file {shown} is malformed: {exc}") from None
        if not isinstance(doc, dict):
            raise EncryptionError(f"tenant key file {shown} is malformed")
        return doc

    def _load(self, tenant_id: str) -> dict[str, Any] | None:
        with self._fs.opened(self._parts) as fd:
            return None if fd is None else self._read_doc(fd, f"{self.stem(tenant_id)}.json")

    def _publish(self, fd: int, stem: str, doc: dict[str, Any]) -> None:
        """Write ``doc`` as ``<stem>.json`` atomically (staged, fsynced, renamed over)."""
        staged = f"{stem}.tmp-{secrets.token_hex(8)}"
        try:
            write_private_at(fd, staged, json.dumps(doc, ensure_ascii=False).encode("utf-8"))
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
            raise self._fs.unsafe((*self._parts, name))
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
            fsync_dir(tenants_fd)
            return key_id, key

    def for_reading(self, tenant_id: str, key_id: str, object_key: str) -> bytes:
        """The tenant key ``key_id`` a blob names; :class:`KeyDestroyed` when it is gone."""
        doc = self._load(tenant_id)
        found = None if doc is None else self._unwrap(doc, tenant_id,
                                                      f"{self.stem(tenant_id)}.json")
        if found is None or found[0] != key_id:
            raise KeyDestroyed(
                f"object {object_key!r} in {self._where} is encrypted with the key "
                f"{key_id!r} of tenant {tenant_id!r}, which no longer exists in "
                f"{self.location_keys.dir}: it was destroyed when the tenant was "
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
                fsync_dir(tenants_fd)
            except FileNotFoundError:
                key_id = self._peek_key_id(tenants_fd, doomed)  # a crashed destroy's
            with os.scandir(tenants_fd) as it:
                names = sorted(e.name for e in it if e.name.startswith(stem + "."))
            for name in names:
                self._shred(tenants_fd, name)
            if names:
                fsync_dir(tenants_fd)
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
        fsync_dir(fd)
        return rewrapped, shredded

    def infos(self) -> list[TenantKeyInfo]:
        """Every tenant key of the location, as recorded (nothing unwrapped)."""
        with self._fs.opened(self._parts) as fd:
            if fd is None:
                return []
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
