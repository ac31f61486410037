"""Regression tests for what the crash scenarios found: erasure must also remove what an
interrupted upload leaves that no listing shows (a local temp file and its key's directory
name; an incomplete S3 multipart upload)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import residency_sdk as rs
from residency_sdk.storage import keys

TENANT = rs.Tenant(id="residue-clinic", country="DE")


def test_erasure_removes_a_crashed_local_upload(tmp_path: Path) -> None:
    res = rs.Residency.load(local_root=tmp_path / "root")
    store = res.storage_for(TENANT)
    store.put("kept-then-erased", b"committed")
    raw = res.store(res.backend("DE", "local"), "DE")
    # What a SIGKILLed put leaves: its temp file in the key's directory (no sidecar).
    keydir = raw.bucket_dir / "tenants" / TENANT.id / "scans" / "crashed.dcm"
    keydir.mkdir(parents=True)
    (keydir / "@tmp-0123456789abcdef01234567").write_bytes(b"encrypted partial upload")
    # ... and an orphan blob of a commit interrupted between its two renames.
    committed = raw.bucket_dir / "tenants" / TENANT.id / "kept-then-erased"
    (committed / "@v-orphan0123456789abcdef").write_bytes(b"orphan")
    other = rs.Tenant(id="other-clinic", country="DE")
    res.storage_for(other).put("stays", b"not erased")

    receipt = res.erase(TENANT)

    assert receipt.complete
    assert not (raw.bucket_dir / "tenants" / TENANT.id).exists()
    assert res.storage_for(other).get("stays") == b"not erased"


def test_purge_residue_keeps_committed_objects(tmp_path: Path) -> None:
    res = rs.Residency.load(local_root=tmp_path / "root")
    store = res.storage_for(TENANT)
    store.put("a/b", b"object")
    raw = res.store(res.backend("DE", "local"), "DE")
    keydir = raw.bucket_dir / "tenants" / TENANT.id / "a" / "b"
    (keydir / "@tmp-ffffffffffffffffffffffff").write_bytes(b"partial")
    assert raw.purge_residue(keys.tenant_prefix(TENANT)) == rs.Residue(files_removed=1)
    assert store.get("a/b") == b"object"
    assert sorted(os.listdir(keydir)) == ["@meta", next(n for n in os.listdir(keydir)
                                                       if n.startswith("@v-"))]
    assert raw.purge_residue("tenants/nobody/") == rs.Residue()


@pytest.mark.parametrize("provider_harness", ["aws"], indirect=True)
def test_erasure_aborts_incomplete_multipart_uploads(provider_harness: Any,
                                                     tmp_path: Path) -> None:
    res = rs.Residency.load(provider_harness.write_map(tmp_path), state_dir=tmp_path / "st")
    target = res.backend("DE", "aws")
    s3 = provider_harness.aws_client("s3", target.region)
    key = keys.tenant_key(TENANT, "scans/crashed.dcm")
    upload = s3.create_multipart_upload(Bucket=target.bucket, Key=key,
                                        ServerSideEncryption="aws:kms",
                                        SSEKMSKeyId=provider_harness.kms_keys["DE"])
    s3.upload_part(Bucket=target.bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1,
                   Body=b"p" * (5 * 1024 * 1024))

    receipt = res.erase(TENANT, providers=["aws"])

    assert receipt.complete
    left = s3.list_multipart_uploads(Bucket=target.bucket, Prefix=keys.tenant_prefix(TENANT))
    assert not left.get("Uploads")


def test_put_and_delete_racing_on_one_key_never_fail(tmp_path: Path) -> None:
    """Found by the load scenario (shared keys, full counts): a put raced a delete that
    pruned the key's empty directories while the put was creating them, and the put
    failed with ObjectNotFound. Every put must now succeed and every read be whole."""
    import hashlib
    import threading

    res = rs.Residency.load(local_root=tmp_path / "root")
    store = res.storage_for(TENANT)
    errors: list[BaseException] = []

    def hammer(seed: int) -> None:
        try:
            for n in range(150):
                body = f"{seed}-{n}".encode()
                store.put("a/b/c/d", hashlib.sha256(body).digest() + body)
                store.delete("a/b/c/d")
        except BaseException as exc:  # collected: the test thread asserts
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]
