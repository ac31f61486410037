"""Crypto-shredding through the facade (issue 13, point 5): after ``res.erase(tenant)``
a backup of the tenant's data, restored into place, cannot be read.

Local backend: the "backup" is a copy of the tenant's blob and sidecar files taken before
the erasure; restored afterwards, reading it raises :class:`KeyDestroyed` (the tenant's key
file was shredded), in the home location and in a location the data was transferred to,
while other tenants and the SDK's own records stay readable.

S3 on moto: the "backup" is a CopyObject into a backup bucket under the same KMS key;
after the erasure KMS reports that key disabled and pending deletion (7 days) with its
alias gone, and the receipt names it. moto does not refuse to decrypt under a disabled
key (nothing is really encrypted there): the tests assert what KMS reports, which is
what makes S3 refuse on AWS (docs/crypto-shredding.md).
"""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import residency_sdk as rs
from residency_sdk.errors import KeyDestroyed
from residency_sdk.storage.keys import tenant_prefix
from residency_sdk.storage.local import LocalStore


def _tenant(country: str = "DE") -> rs.Tenant:
    # scc: the EU tenant may send phi to GB (adequacy) and to the US (SCCs).
    return rs.Tenant(id=f"clinic-{uuid.uuid4().hex[:10]}", country=country,
                     agreements=frozenset({"scc"}))


def _local_store(res: rs.Residency, location: str) -> LocalStore:
    store = res.store(res.backend(location, "local"), location)
    assert isinstance(store, LocalStore)
    return store


def test_a_restored_local_backup_is_unreadable_after_erasure(tmp_path: Path) -> None:
    root = tmp_path / "root"
    res = rs.Residency.load(local_root=root, audit=str(tmp_path / "audit.db"),
                            state_dir=tmp_path / "st")
    tenant, neighbour = _tenant(), _tenant()
    store = res.storage_for(tenant)
    store.put("study/1.dcm", b"PATIENT Jane Doe " * 1000, data_class="phi")
    store.put("study/2.dcm", b"second", data_class="phi")
    res.transfer(tenant, "study/1.dcm", "GB")
    res.storage_for(neighbour).put("keep.dcm", b"neighbour", data_class="phi")
    de, gb = _local_store(res, "DE"), _local_store(res, "GB")
    key_ids = {"DE": de.tenant_key_id(tenant.id), "GB": gb.tenant_key_id(tenant.id)}
    assert all(key_ids.values()) and key_ids["DE"] != key_ids["GB"]
    assert de.head(tenant_prefix(tenant) + "study/1.dcm").kms_key == key_ids["DE"]
    # The "backups": the tenant's folders, copied aside before the erasure.
    folders = {loc: s.bucket_dir / "tenants" / tenant.id for loc, s in
               (("DE", de), ("GB", gb))}
    backups = {loc: tmp_path / f"backup-{loc}" for loc in folders}
    for loc, folder in folders.items():
        shutil.copytree(folder, backups[loc])

    receipt = res.erase(tenant, reason="art. 17")

    assert receipt.complete, receipt.to_dict()
    destroyed = {(k.location, k.status, k.key_id) for k in receipt.keys
                 if k.status == "destroyed"}
    assert destroyed == {("DE", "destroyed", key_ids["DE"]),
                         ("GB", "destroyed", key_ids["GB"])}
    assert not any(folder.exists() for folder in folders.values())
    # No key file of the tenant is left in either location's keyring.
    for s in (de, gb):
        assert [t.tenant_id for t in s.key_status().tenant_keys] in ([], [neighbour.id])

    # The backups restored into place: listed again, unreadable by design.
    for loc, folder in folders.items():
        shutil.copytree(backups[loc], folder)
    fresh_de = LocalStore(de.target, root, location="DE")
    fresh_gb = LocalStore(gb.target, root, location="GB")
    for reader, key in ((fresh_de, "study/1.dcm"), (fresh_de, "study/2.dcm"),
                        (fresh_gb, "study/1.dcm")):
        assert reader.exists(tenant_prefix(tenant) + key)
        with pytest.raises(KeyDestroyed, match=tenant.id):
            reader.get(tenant_prefix(tenant) + key)
    with pytest.raises(KeyDestroyed):
        res.storage_for(tenant).get("study/1.dcm")
    # Everyone else still reads.
    assert res.storage_for(neighbour).get("keep.dcm") == b"neighbour"
    # Erasing again removes the restored copy in the home location; the keys are already
    # gone ("absent" counts as settled). The GB copy is outside the new plan (the first
    # erasure dropped the lineage that led there): that is the copy shredding covers.
    again = res.erase(tenant, reason="restored backup found")
    assert again.complete, again.to_dict()
    assert {k.status for k in again.keys} <= {"absent"}
    assert not folders["DE"].exists()
    with pytest.raises(KeyDestroyed):
        fresh_gb.get(tenant_prefix(tenant) + "study/1.dcm")
    res.close()


@pytest.mark.parametrize("provider_harness", ["aws"], indirect=True)
def test_erasure_schedules_the_tenant_kms_key_for_deletion(provider_harness: Any,
                                                           tmp_path: Path) -> None:
    from residency_sdk.storage._tenant_kms import alias_name

    res = provider_harness.residency(tmp_path, audit=str(tmp_path / "audit.db"),
                                     state_dir=tmp_path / "st")
    tenant, neighbour = _tenant(), _tenant()
    res.storage_for(tenant).put("study/1.dcm", b"PATIENT Jane Doe", data_class="phi")
    res.storage_for(neighbour).put("keep.dcm", b"neighbour", data_class="phi")
    target = res.backend("DE", "aws")
    s3 = provider_harness.aws_client("s3", target.region)
    kms = provider_harness.aws_client("kms", target.region)
    key = tenant_prefix(tenant) + "study/1.dcm"
    tenant_key = s3.head_object(Bucket=target.bucket, Key=key)["SSEKMSKeyId"]
    assert tenant_key != target.kms_key
    assert kms.describe_key(KeyId=alias_name(target.bucket, tenant.id))["KeyMetadata"][
        "Arn"] == tenant_key
    # The "backup": a same-key copy in a backup bucket of the same region.
    backup = f"backup-{tenant.id}"
    provider_harness.make_bucket(backup, target.region, kms_key=target.kms_key)
    s3.copy_object(Bucket=backup, Key=key, CopySource={"Bucket": target.bucket, "Key": key},
                   ServerSideEncryption="aws:kms", SSEKMSKeyId=tenant_key)

    before = datetime.now(UTC)
    receipt = res.erase(tenant, providers=["aws"], reason="art. 17")

    assert receipt.complete, receipt.to_dict()
    scheduled = [k for k in receipt.keys if k.status == "scheduled"]
    assert [(k.location, k.key_id) for k in scheduled] == [("DE", tenant_key)]
    when = scheduled[0].effective_at
    assert when is not None and timedelta(days=6, hours=23) < when - before < timedelta(
        days=7, hours=1)
    meta = kms.describe_key(KeyId=tenant_key.rsplit("/", 1)[-1])["KeyMetadata"]
    assert meta["KeyState"] == "PendingDeletion" and not meta["Enabled"]
    aliases = [a["AliasName"] for a in kms.list_aliases()["Aliases"]]
    assert alias_name(target.bucket, tenant.id) not in aliases
    # The backup still names the key that will never decrypt again.
    assert s3.head_object(Bucket=backup, Key=key)["SSEKMSKeyId"] == tenant_key
    # The neighbour's key is untouched and its data readable.
    assert res.storage_for(neighbour).get("keep.dcm") == b"neighbour"
    neighbour_key = kms.describe_key(KeyId=alias_name(target.bucket, neighbour.id))
    assert neighbour_key["KeyMetadata"]["KeyState"] == "Enabled"
    res.close()
