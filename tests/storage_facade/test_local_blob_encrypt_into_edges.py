"""``encrypt_into`` (the local store's AES-256-GCM blob writer) at its chunk edges.

Each blob written here is decrypted independently of the SDK, from the documented format
(header, HKDF-SHA256 object key, nonce ``prefix(7) || counter(4) || last(1)``, header plus
object key as associated data): a writer that reused a nonce, mislabelled the last chunk,
dropped the associated data or wrote the wrong header would not decrypt. The returned
(key id, size, SHA-256) and the progress calls are checked exactly.
"""

from __future__ import annotations

import hashlib
import io
import struct

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from residency_sdk.errors import StorageError
from residency_sdk.storage._local_blob import encrypt_into

MAGIC = b"RSDKLE01"
SALT_LEN = 32
NONCE_PREFIX_LEN = 7
TAG_LEN = 16
OBJECT_KEY_INFO = b"residency-sdk local store v1"
LOCATION_KEY = bytes(range(32))
KEY_ID = "loc-key-1"
OBJECT = "tenant/äobject.dcm"


def _decrypt_independently(raw: bytes, object_key: str) -> tuple[str, int, list[bytes]]:
    """(key id, chunk size, plaintext chunks) of a blob, from the documented format."""
    assert raw[:len(MAGIC)] == MAGIC
    kid_len = raw[len(MAGIC)]
    pos = len(MAGIC) + 1
    key_id = raw[pos:pos + kid_len].decode("ascii")
    pos += kid_len
    salt = raw[pos:pos + SALT_LEN]
    pos += SALT_LEN
    prefix = raw[pos:pos + NONCE_PREFIX_LEN]
    pos += NONCE_PREFIX_LEN
    (chunk_size,) = struct.unpack(">I", raw[pos:pos + 4])
    pos += 4
    header, body = raw[:pos], raw[pos:]
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt,
                   info=OBJECT_KEY_INFO).derive(LOCATION_KEY)
    aead = AESGCM(derived)
    aad = header + object_key.encode("utf-8")
    sealed = [body[i:i + chunk_size + TAG_LEN] for i in range(0, len(body), chunk_size + TAG_LEN)]
    chunks = []
    for counter, piece in enumerate(sealed):
        last = counter == len(sealed) - 1
        nonce = prefix + struct.pack(">I", counter) + (b"\x01" if last else b"\x00")
        chunks.append(aead.decrypt(nonce, piece, aad))
    return key_id, chunk_size, chunks


def _write(data: bytes, chunk_size: int, src: io.RawIOBase | io.BufferedIOBase | None = None,
           ) -> tuple[bytes, tuple[str, int, str], list[int]]:
    out = io.BytesIO()
    calls: list[int] = []
    result = encrypt_into(out, src if src is not None else io.BytesIO(data), OBJECT,
                          (KEY_ID, LOCATION_KEY), chunk_size=chunk_size, progress=calls.append)
    return out.getvalue(), result, calls


@pytest.mark.parametrize(("size", "expected_chunks"), [
    (0, [0]),            # empty object: one empty chunk sealed as the last one
    (1, [1]),
    (15, [15]),
    (16, [16]),          # exactly one full chunk: it is the last, no empty trailer
    (17, [16, 1]),
    (48, [16, 16, 16]),  # an exact multiple: the third full chunk is sealed as last
    (50, [16, 16, 16, 2]),
])
def test_encrypt_into_seals_every_chunk_on_its_own_nonce_and_only_the_final_one_as_last(
        size: int, expected_chunks: list[int]) -> None:
    data = bytes((i * 7) % 251 for i in range(size))
    raw, (key_id, written, digest), calls = _write(data, 16)
    got_kid, chunk_size, chunks = _decrypt_independently(raw, OBJECT)
    assert got_kid == KEY_ID and key_id == KEY_ID
    assert chunk_size == 16
    assert [len(c) for c in chunks] == expected_chunks
    assert b"".join(chunks) == data
    assert written == size
    assert digest == hashlib.sha256(data).hexdigest()
    # progress reports each non-empty chunk's plaintext length, nothing for an empty one
    assert calls == [n for n in expected_chunks if n]


def test_encrypt_into_binds_the_object_key_so_the_blob_does_not_decrypt_under_another_key(
        ) -> None:
    raw, _, _ = _write(b"x" * 40, 16)
    from cryptography.exceptions import InvalidTag
    with pytest.raises(InvalidTag):
        _decrypt_independently(raw, "tenant/other.dcm")


def test_encrypt_into_uses_a_fresh_salt_and_nonce_prefix_for_every_blob() -> None:
    raw1, _, _ = _write(b"same data", 16)
    raw2, _, _ = _write(b"same data", 16)
    head = len(MAGIC) + 1 + len(KEY_ID)
    assert raw1[head:head + SALT_LEN] != raw2[head:head + SALT_LEN]
    assert (raw1[head + SALT_LEN:head + SALT_LEN + NONCE_PREFIX_LEN]
            != raw2[head + SALT_LEN:head + SALT_LEN + NONCE_PREFIX_LEN])
    assert raw1[head + SALT_LEN + NONCE_PREFIX_LEN:] != raw2[head + SALT_LEN + NONCE_PREFIX_LEN:]


def test_encrypt_into_without_a_progress_callback_writes_the_same_plaintext() -> None:
    out = io.BytesIO()
    data = b"y" * 33
    result = encrypt_into(out, io.BytesIO(data), OBJECT, (KEY_ID, LOCATION_KEY),
                          chunk_size=16, progress=None)
    assert result == (KEY_ID, 33, hashlib.sha256(data).hexdigest())
    assert b"".join(_decrypt_independently(out.getvalue(), OBJECT)[2]) == data


class _Trickle(io.RawIOBase):
    """A source returning at most 5 bytes a read (short reads are normal for pipes)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        piece, self._data = self._data[:min(n, 5)], self._data[min(n, 5):]
        return piece


def test_encrypt_into_fills_full_chunks_from_a_source_with_short_reads() -> None:
    data = bytes(range(40))
    raw, result, calls = _write(data, 16, src=_Trickle(data))
    assert [len(c) for c in _decrypt_independently(raw, OBJECT)[2]] == [16, 16, 8]
    assert result == (KEY_ID, 40, hashlib.sha256(data).hexdigest())
    assert calls == [16, 16, 8]


class _Failing(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        raise OSError("disk on fire")


def test_encrypt_into_reports_a_failing_source_as_the_callers_storage_error() -> None:
    with pytest.raises(StorageError) as err:
        _write(b"", 16, src=_Failing())
    assert str(err.value) == "reading the data to store failed: disk on fire"
