"""The local store's blob format: streaming AES-256-GCM, verified while read.

The construction is Tink's AES-GCM-HKDF streaming AEAD. A blob is a header (magic, the
id of the key it is encrypted from, a random HKDF salt, a nonce prefix, the chunk size)
followed by the sealed chunks. The object key is derived with HKDF-SHA256 from the named
key (a location key or a tenant key: :mod:`.local_keys`) and the salt; each chunk is
sealed with the nonce ``prefix(7) || counter(4) || last(1)`` and the header plus the
object's key as associated data, so chunks cannot be reordered, truncated or moved to
another key. Memory stays at about two chunks whatever the object size.

:class:`DecryptingReader` also checks the plaintext's size and SHA-256 against the
sidecar when it reaches the end.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import stat
import struct
from collections.abc import Callable
from typing import IO, Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from residency_sdk.errors import IntegrityError, StorageError
from residency_sdk.storage.base import ProgressCallback

ENCRYPTION = "local:aes-256-gcm"
_TAG = 16
_MAGIC = b"RSDKLE01"
_SALT = 32
_NONCE_PREFIX = 7
_HKDF_INFO = b"residency-sdk local store v1"

KeyLookup = Callable[[str, str], bytes]
"""``(key id a blob header names, object key) -> the 256-bit key it names``."""


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


def _read_source(src: IO[bytes], chunk_size: int) -> bytes:
    try:
        return _read_full(src, chunk_size)
    except OSError as exc:  # the caller's data failed, not this store: no failover
        raise StorageError(f"reading the data to store failed: {exc}") from exc


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


def encrypt_into(out: BinaryIO, src: IO[bytes], key: str, current: tuple[str, bytes], *,
                 chunk_size: int,
                 progress: ProgressCallback | None) -> tuple[str, int, str]:
    """Write the blob of ``src`` (the object ``key``) to ``out``, encrypted from
    ``current`` (key id, key); returns the key id, the plaintext size and its SHA-256.
    A failing ``src`` raises :class:`StorageError` (the caller's data, not the store)."""
    key_id, location_key = current
    header = _Header(key_id, secrets.token_bytes(_SALT), secrets.token_bytes(_NONCE_PREFIX),
                     chunk_size)
    aead = header.cipher(location_key)
    aad = header.encode() + key.encode("utf-8")
    out.write(header.encode())
    digest = hashlib.sha256()
    size = 0
    counter = 0
    chunk = _read_source(src, chunk_size)
    while True:
        # Read one chunk ahead: the last chunk is sealed with the "last" flag.
        following = _read_source(src, chunk_size) if len(chunk) == chunk_size else b""
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


class DecryptingReader(io.RawIOBase):
    """Streams the plaintext of one blob; verifies size and SHA-256 at the end.
    ``key_for`` finds the key the blob's header names."""

    def __init__(self, fh: BinaryIO, key: str, meta: dict[str, Any],
                 key_for: KeyLookup) -> None:
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
            self._aead = self._header.cipher(key_for(self._header.key_id, key))
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
