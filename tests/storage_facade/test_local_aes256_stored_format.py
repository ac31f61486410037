""""AES-256 at rest" on the local store, read from what it wrote on disk.

The store's own helpers are not used here: the key files and blobs are parsed from the
format documented in ``residency_sdk/storage/_local_blob.py`` and ``local_keys.py``, and
decrypted with ``cryptography``'s AESGCM directly. A store that quietly used 128-bit keys
(for the location key, the tenant key, the key wrapping it, or the per-object key) would
still read its own data back; these tests would not decrypt it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from residency_sdk.model import StorageTarget
from residency_sdk.regionmap import load_region_map
from residency_sdk.storage.local import LocalStore

# The stored format, as documented (not imported from the SDK).
MAGIC = b"RSDKLE01"
SALT_LEN = 32
NONCE_PREFIX_LEN = 7
TAG_LEN = 16
OBJECT_KEY_INFO = b"residency-sdk local store v1"
WRAP_INFO = b"residency-sdk local tenant-key wrap v1"
CHUNK = 64  # small chunks: the object spans several, each sealed on its own nonce
PLAINTEXT = bytes(range(256)) * 3 + b"tail"  # 772 bytes: 12 full chunks and a short one


@dataclass
class Blob:
    """One stored blob, split along its documented header."""

    header: bytes
    key_id: str
    salt: bytes
    nonce_prefix: bytes
    chunk_size: int
    body: bytes


def parse_blob(raw: bytes) -> Blob:
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
    return Blob(raw[:pos], key_id, salt, prefix, chunk_size, raw[pos:])


def decrypt_blob(blob: Blob, object_key: str, data_key: bytes) -> bytes:
    """Open every chunk with ``AESGCM(data_key)``; InvalidTag if the key is not the one."""
    aead = AESGCM(data_key)
    aad = blob.header + object_key.encode("utf-8")
    sealed_size = blob.chunk_size + TAG_LEN
    chunks = [blob.body[i:i + sealed_size] for i in range(0, len(blob.body), sealed_size)]
    out = []
    for counter, sealed in enumerate(chunks):
        last = counter == len(chunks) - 1
        nonce = blob.nonce_prefix + struct.pack(">I", counter) + (b"\x01" if last else b"\x00")
        out.append(aead.decrypt(nonce, sealed, aad))
    return b"".join(out)


def hkdf(secret: bytes, *, length: int, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(secret)


def stored_blob(store: LocalStore, key: str) -> Blob:
    keydir = store.bucket_dir.joinpath(*key.split("/"))
    meta = json.loads((keydir / "@meta").read_text())
    return parse_blob((keydir / meta["blob"]).read_bytes())


def location_key(store: LocalStore, key_id: str) -> bytes:
    doc = json.loads((store.location_dir / ".keys" / f"{key_id}.json").read_text())
    return base64.b64decode(doc["key"], validate=True)


def unwrap_tenant_key(store: LocalStore, tenant_id: str) -> tuple[str, bytes, dict[str, str]]:
    """The tenant's key, unwrapped from its key file with the location key it names."""
    stem = hashlib.sha256(tenant_id.encode()).hexdigest()[:40]
    doc = json.loads((store.location_dir / ".keys" / "tenants" / f"{stem}.json").read_text())
    kek = location_key(store, doc["kek"])
    assert len(kek) == 32
    wrapper = AESGCM(hkdf(kek, length=32, salt=None, info=WRAP_INFO))
    aad = json.dumps(["residency-sdk tenant key v1", store.location, tenant_id,
                      doc["key_id"]]).encode()
    key = wrapper.decrypt(base64.b64decode(doc["nonce"]), base64.b64decode(doc["wrapped"]), aad)
    return str(doc["key_id"]), key, doc


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    target: StorageTarget = load_region_map().locations["DE"].backends["local"]
    return LocalStore(target, tmp_path / "root", chunk_size=CHUNK)


def test_location_key_on_disk_is_256_bits_and_the_object_key_it_derives_is_too(
        store: LocalStore) -> None:
    key = "studies/1/image.dcm"  # not a tenant's: encrypted from the location key
    store.put(key, PLAINTEXT)
    blob = stored_blob(store, key)
    assert blob.key_id.startswith("local-de-") and blob.chunk_size == CHUNK
    current = (store.location_dir / ".keys" / "CURRENT").read_text().strip()
    assert blob.key_id == current
    master = location_key(store, blob.key_id)
    assert len(master) == 32  # 256 bits stored, not 128

    data_key = hkdf(master, length=32, salt=blob.salt, info=OBJECT_KEY_INFO)
    assert decrypt_blob(blob, key, data_key) == PLAINTEXT
    # The same derivation cut to 128 bits does not open it: the blob is AES-256-GCM.
    with pytest.raises(InvalidTag):
        decrypt_blob(blob, key, hkdf(master, length=16, salt=blob.salt, info=OBJECT_KEY_INFO))
    with pytest.raises(InvalidTag):
        decrypt_blob(blob, key, master[:16] + bytes(16))


def test_tenant_key_unwrapped_from_its_file_is_256_bits_and_decrypts_the_tenant_object(
        store: LocalStore) -> None:
    tenant = "clinic-aes"
    key = f"tenants/{tenant}/studies/1/image.dcm"
    store.put(key, PLAINTEXT)
    blob = stored_blob(store, key)
    key_id, tenant_key, doc = unwrap_tenant_key(store, tenant)
    assert blob.key_id == key_id and key_id.startswith("tenant-de-")
    assert len(tenant_key) == 32  # the wrapped key is a 256-bit key
    assert len(base64.b64decode(doc["wrapped"])) == 32 + TAG_LEN

    data_key = hkdf(tenant_key, length=32, salt=blob.salt, info=OBJECT_KEY_INFO)
    assert len(data_key) == 32
    assert decrypt_blob(blob, key, data_key) == PLAINTEXT
    with pytest.raises(InvalidTag):
        decrypt_blob(blob, key, hkdf(tenant_key, length=16, salt=blob.salt,
                                     info=OBJECT_KEY_INFO))
    # The location key is not what encrypts a tenant's object: its own key is.
    with pytest.raises(InvalidTag):
        decrypt_blob(blob, key, hkdf(location_key(store, doc["kek"]), length=32,
                                     salt=blob.salt, info=OBJECT_KEY_INFO))


def test_tenant_key_wrapping_uses_a_256_bit_wrapping_key(store: LocalStore) -> None:
    tenant = "clinic-wrap"
    store.put(f"tenants/{tenant}/a.bin", b"x")
    stem = hashlib.sha256(tenant.encode()).hexdigest()[:40]
    doc = json.loads((store.location_dir / ".keys" / "tenants" / f"{stem}.json").read_text())
    kek = location_key(store, doc["kek"])
    aad = json.dumps(["residency-sdk tenant key v1", store.location, tenant,
                      doc["key_id"]]).encode()
    nonce, wrapped = base64.b64decode(doc["nonce"]), base64.b64decode(doc["wrapped"])
    # A 128-bit wrapping key derived the same way does not unwrap it.
    with pytest.raises(InvalidTag):
        AESGCM(hkdf(kek, length=16, salt=None, info=WRAP_INFO)).decrypt(nonce, wrapped, aad)
    assert len(AESGCM(hkdf(kek, length=32, salt=None, info=WRAP_INFO)).decrypt(
        nonce, wrapped, aad)) == 32
