"""Per-tenant keys (crypto-shredding) and location key rotation, on the adapters.

Local backend: a tenant's objects are encrypted with its own key, wrapped by the location
key; destroying it makes a restored backup unreadable (``KeyDestroyed``) while other
tenants and non-tenant objects stay readable; rotation re-wraps tenant keys and rewrites
no blob; a crash at any point of a rotation or a destruction leaves nothing unreadable
that should be readable and nothing readable that should not be.

S3 (moto, which serves KMS on the same endpoint): a tenant's objects are written with
SSE-KMS under a KMS key made for that tenant (alias ``alias/residency/<bucket>/<tenant>``);
destroying it disables the key, schedules its deletion (7 days, the shortest) and removes
the alias. moto does not refuse reads under a disabled key (nothing is really encrypted
there, docs/crypto-shredding.md), so the tests assert what the SDK sent and what KMS and
S3 report back.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from residency_sdk.errors import EncryptionError, KeyDestroyed, UnsafePath
from residency_sdk.model import StorageTarget
from residency_sdk.regionmap import load_region_map
from residency_sdk.storage import local as local_module
from residency_sdk.storage import local_keys
from residency_sdk.storage.local import LocalStore

ROOT_OF_REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def target() -> StorageTarget:
    return load_region_map().locations["DE"].backends["local"]


@pytest.fixture
def store(tmp_path: Path, target: StorageTarget) -> LocalStore:
    return LocalStore(target, tmp_path / "root")


def tenant_keys_dir(store: LocalStore) -> Path:
    return store.location_dir / ".keys" / "tenants"


def blobs(store: LocalStore) -> dict[str, tuple[int, int, bytes]]:
    """Every blob file of the bucket: path -> (inode, mtime_ns, content)."""
    out = {}
    for path in store.bucket_dir.rglob("@v-*"):
        st = path.stat()
        out[str(path.relative_to(store.bucket_dir))] = (st.st_ino, st.st_mtime_ns,
                                                        path.read_bytes())
    return out


def key_docs(store: LocalStore) -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in tenant_keys_dir(store).glob("*.json")}


# --- local: per-tenant keys -------------------------------------------------------------


def test_tenant_objects_are_encrypted_with_the_tenant_key(store: LocalStore) -> None:
    a = store.put("tenants/clinic-a/scan.dcm", b"A" * 1000)
    b = store.put("tenants/clinic-b/scan.dcm", b"B" * 1000)
    other = store.put("_residency/records/x.json", b"{}")
    assert a.kms_key == store.tenant_key_id("clinic-a")
    assert a.kms_key is not None and a.kms_key.startswith("tenant-de-")
    assert b.kms_key == store.tenant_key_id("clinic-b") and b.kms_key != a.kms_key
    # Everything else stays under the location key.
    assert other.kms_key is not None and other.kms_key.startswith("local-de-")
    assert store.head("tenants/clinic-a/scan.dcm").kms_key == a.kms_key
    assert store.tenant_key_id("clinic-never") is None
    # One wrapped key file per tenant, private, named without the tenant id, holding the
    # key only wrapped (the tenant id is associated data, not the file name).
    docs = key_docs(store)
    assert sorted(d["tenant"] for d in docs.values()) == ["clinic-a", "clinic-b"]
    for name, doc in docs.items():
        assert "clinic" not in name
        assert doc["kek"] == other.kms_key and "key" not in doc and doc["wrapped"]
        assert stat.S_IMODE((tenant_keys_dir(store) / name).stat().st_mode) == 0o600
    assert stat.S_IMODE(tenant_keys_dir(store).stat().st_mode) == 0o700
    # A fresh store (another process) reads them all.
    fresh = LocalStore(store.target, store.root)
    assert fresh.get("tenants/clinic-a/scan.dcm") == b"A" * 1000
    assert fresh.get("tenants/clinic-b/scan.dcm") == b"B" * 1000


def test_a_restored_backup_is_unreadable_once_the_tenant_key_is_destroyed(
        store: LocalStore, tmp_path: Path) -> None:
    payload = b"PATIENT Jane Doe " * 5000
    store.put("tenants/clinic-a/studies/1.dcm", payload)
    store.put("tenants/clinic-a/studies/2.dcm", b"second")
    store.put("tenants/clinic-b/studies/1.dcm", b"other tenant")
    store.put("_residency/records/r.json", b"not a tenant object")
    key_id = store.tenant_key_id("clinic-a")
    # The "backup": the tenant's blobs and sidecars, copied aside as a backup tool would.
    tenant_dir = store.bucket_dir / "tenants" / "clinic-a"
    backup = tmp_path / "backup"
    shutil.copytree(tenant_dir, backup)

    # Erasure: the objects, then the key, last.
    for key in ("tenants/clinic-a/studies/1.dcm", "tenants/clinic-a/studies/2.dcm"):
        assert store.delete(key)
    destroyed = store.destroy_tenant_key("clinic-a")
    assert (destroyed.status, destroyed.key_id, destroyed.tenant_id) == (
        "destroyed", key_id, "clinic-a")
    assert destroyed.effective_at is not None and "shredded" in destroyed.detail
    assert store.tenant_key_id("clinic-a") is None
    assert [d["tenant"] for d in key_docs(store).values()] == ["clinic-b"]
    assert not [p for p in tenant_keys_dir(store).iterdir()
                if not p.name.endswith(".json")], "a leftover of the shredded key"

    # The backup restored into place: present, listed, and unreadable by design.
    shutil.copytree(backup, tenant_dir, dirs_exist_ok=True)
    for reader in (store, LocalStore(store.target, store.root)):
        assert reader.head("tenants/clinic-a/studies/1.dcm").kms_key == key_id
        with pytest.raises(KeyDestroyed, match=r"clinic-a.*destroyed") as caught:
            reader.get("tenants/clinic-a/studies/1.dcm")
        assert key_id is not None and key_id in str(caught.value)
        assert isinstance(caught.value, EncryptionError)
    # Everything else still reads.
    assert store.get("tenants/clinic-b/studies/1.dcm") == b"other tenant"
    assert store.get("_residency/records/r.json") == b"not a tenant object"
    # Idempotent: nothing left to destroy.
    again = store.destroy_tenant_key("clinic-a")
    assert again.status == "absent" and again.key_id is None and "clinic-a" in again.detail
    # The tenant writes again (a new tenant with the same id): a new key, and the
    # restored old copy stays unreadable.
    fresh = store.put("tenants/clinic-a/new.dcm", b"new")
    assert fresh.kms_key != key_id and store.get("tenants/clinic-a/new.dcm") == b"new"
    with pytest.raises(KeyDestroyed):
        store.get("tenants/clinic-a/studies/2.dcm")
    # The restored copy can still be deleted (an erasure re-run removes it).
    assert store.delete("tenants/clinic-a/studies/2.dcm")


def test_destroy_for_a_tenant_or_location_without_keys_is_absent(store: LocalStore) -> None:
    assert store.destroy_tenant_key("clinic-a").status == "absent"  # nothing at all yet
    store.put("records/x", b"1")
    assert store.destroy_tenant_key("clinic-a").status == "absent"


def test_the_buckets_of_a_location_share_its_keyring(tmp_path: Path,
                                                    target: StorageTarget) -> None:
    # A location's primary and failover buckets (or any two of its buckets): one keyring,
    # so destroying the tenant's key once covers both, and the second call is "absent".
    failover = target.model_copy(update={"bucket": target.bucket + "-failover"})
    primary = LocalStore(target, tmp_path / "root", location="DE")
    backup = LocalStore(failover, tmp_path / "root", location="DE")
    primary.put("tenants/clinic-a/x", b"1")
    backup.put("tenants/clinic-a/x", b"1")
    assert primary.tenant_key_id("clinic-a") == backup.tenant_key_id("clinic-a")
    assert primary.destroy_tenant_key("clinic-a").status == "destroyed"
    assert backup.destroy_tenant_key("clinic-a").status == "absent"
    with pytest.raises(KeyDestroyed):
        backup.get("tenants/clinic-a/x")


def test_objects_written_before_tenant_keys_stay_readable(
        store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # As the previous release wrote them: a tenant's object under the location key.
    with monkeypatch.context() as m:
        m.setattr(local_module, "tenant_of_key", lambda key: None)
        old = store.put("tenants/clinic-a/old.dcm", b"written before")
    assert old.kms_key is not None and old.kms_key.startswith("local-de-")
    new = store.put("tenants/clinic-a/new.dcm", b"written after")
    assert new.kms_key is not None and new.kms_key.startswith("tenant-de-")
    fresh = LocalStore(store.target, store.root)
    assert fresh.get("tenants/clinic-a/old.dcm") == b"written before"
    assert fresh.get("tenants/clinic-a/new.dcm") == b"written after"
    store.rotate_location_key()
    assert fresh.get("tenants/clinic-a/old.dcm") == b"written before"


def test_a_tampered_or_misplaced_tenant_key_file_is_refused(store: LocalStore) -> None:
    store.put("tenants/clinic-a/x", b"a")
    store.put("tenants/clinic-b/x", b"b")
    docs = key_docs(store)
    (_, doc_a), (name_b, _) = sorted(docs.items(), key=lambda kv: kv[1]["tenant"])
    # clinic-b's file replaced by clinic-a's wrapped key, relabelled: AAD refuses it.
    forged = {**doc_a, "tenant": "clinic-b"}
    path_b = tenant_keys_dir(store) / name_b
    path_b.write_text(json.dumps(forged))
    with pytest.raises(EncryptionError, match="does not unwrap"):
        store.get("tenants/clinic-b/x")
    path_b.chmod(0o644)
    with pytest.raises(EncryptionError, match="chmod 600"):
        store.get("tenants/clinic-b/x")
    assert store.get("tenants/clinic-a/x") == b"a"


def test_a_linked_tenant_keys_directory_is_refused(store: LocalStore, tmp_path: Path) -> None:
    store.put("records/x", b"1")  # the location keyring exists
    outside = tmp_path / "outside"
    outside.mkdir()
    tenant_keys_dir(store).symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePath, match=r"\.keys/tenants"):
        store.put("tenants/clinic-a/x", b"1")
    with pytest.raises(UnsafePath, match=r"\.keys/tenants"):
        store.destroy_tenant_key("clinic-a")
    assert list(outside.iterdir()) == []
    assert not (store.bucket_dir / "tenants").exists()


def test_a_linked_tenant_key_file_is_refused_not_followed(store: LocalStore,
                                                          tmp_path: Path) -> None:
    store.put("tenants/clinic-a/x", b"1")
    (name, _), = key_docs(store).items()
    path = tenant_keys_dir(store) / name
    elsewhere = tmp_path / "elsewhere.json"
    shutil.move(path, elsewhere)
    path.symlink_to(elsewhere)
    before = elsewhere.read_bytes()
    with pytest.raises(UnsafePath):
        LocalStore(store.target, store.root).get("tenants/clinic-a/x")
    with pytest.raises(UnsafePath):
        store.destroy_tenant_key("clinic-a")
    assert elsewhere.read_bytes() == before  # never overwritten through the link


def test_concurrent_first_writes_of_a_tenant_make_one_key(tmp_path: Path,
                                                          target: StorageTarget) -> None:
    stores = [LocalStore(target, tmp_path / "root") for _ in range(4)]
    stores[0].put("records/x", b"1")
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            start.wait()
            stores[n % 4].put(f"tenants/clinic-a/{n}", str(n).encode())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(key_docs(stores[0])) == 1
    kid = stores[0].tenant_key_id("clinic-a")
    for n in range(8):
        assert stores[n % 4].head(f"tenants/clinic-a/{n}").kms_key == kid
        assert stores[(n + 1) % 4].get(f"tenants/clinic-a/{n}") == str(n).encode()


# --- local: rotation ----------------------------------------------------------------------


def test_rotation_rewraps_tenant_keys_and_rewrites_no_blob(store: LocalStore) -> None:
    objects = {"tenants/clinic-a/1": b"a1" * 999, "tenants/clinic-a/2": b"a2",
               "tenants/clinic-b/1": b"b1" * 3000, "_residency/records/r": b"rec",
               "plain/object": b"plain"}
    for key, data in objects.items():
        store.put(key, data)
    first = store.key_status()
    before_blobs = blobs(store)
    tenant_ids = {t.tenant_id: t.key_id for t in first.tenant_keys}

    seen_keks = {first.current_key_id}
    for _ in range(2):
        report = store.rotate_location_key()
        assert report.previous_key_id in seen_keks
        assert report.current_key_id not in seen_keks
        seen_keks.add(report.current_key_id)
        assert sorted(report.rewrapped) == sorted(tenant_ids.values())
        assert set(report.location_keys) == seen_keks  # old location keys are kept
        docs = key_docs(store)
        assert {d["kek"] for d in docs.values()} == {report.current_key_id}
        # Same tenant keys (ids unchanged), only re-wrapped.
        assert {d["tenant"]: d["key_id"] for d in docs.values()} == tenant_ids
        # No blob rewritten: same inode, mtime and bytes.
        assert blobs(store) == before_blobs
        fresh = LocalStore(store.target, store.root)
        for key, data in objects.items():
            assert fresh.get(key) == data
    status = store.key_status()
    assert status.current_key_id == report.current_key_id and not status.not_rewrapped
    assert len(status.location_keys) == 3
    # New writes use the new keys: non-tenant objects the new location key, a new
    # tenant's key is wrapped by it.
    assert store.put("plain/after", b"x").kms_key == report.current_key_id
    store.put("tenants/clinic-c/1", b"c")
    assert {d["tenant"]: d["kek"] for d in key_docs(store).values()}["clinic-c"] == \
        report.current_key_id


def test_rotation_seen_by_another_process_before_it_makes_a_tenant_key(
        tmp_path: Path, target: StorageTarget) -> None:
    writer = LocalStore(target, tmp_path / "root")
    writer.put("records/x", b"1")  # caches the location key it found
    rotated = LocalStore(target, tmp_path / "root").rotate_location_key()
    writer.put("tenants/clinic-new/x", b"1")
    (doc,) = key_docs(writer).values()
    assert doc["kek"] == rotated.current_key_id


# --- local: crashes at every step of a rotation and of a destruction --------------------

_CRASH_WORKER = textwrap.dedent("""
    import os, sys, json
    from pathlib import Path
    from residency_sdk.model import StorageTarget
    from residency_sdk.storage import _local_fs, local, local_keys

    cfg = json.loads(sys.argv[1])
    real = os
    count = [0]
    MUTATING = {"replace", "rename", "unlink", "fsync", "write", "mkdir", "link"}

    class Crashing:
        # The os module as the local store's modules see it: the N-th mutating call
        # kills the process before it runs (no finally block, no cleanup: a power cut).
        def __getattr__(self, name):
            attr = getattr(real, name)
            if name not in MUTATING:
                return attr
            def call(*args, **kwargs):
                count[0] += 1
                if count[0] == cfg["crash_at"]:
                    real._exit(137)
                return attr(*args, **kwargs)
            return call

    store = local.LocalStore(StorageTarget.model_validate(cfg["target"]), cfg["root"])
    modules = (local, local_keys, _local_fs)
    for module in modules:
        module.os = Crashing()
    if cfg["op"] == "rotate":
        store.rotate_location_key()
    else:
        store.destroy_tenant_key(cfg["tenant"])
    for module in modules:
        module.os = real
    print("COMPLETED", count[0])
""")


def _crash(op: str, store: LocalStore, crash_at: int, tenant: str = "") -> bool:
    """Run ``op`` in a worker that dies at its ``crash_at``-th mutating file call; True
    when the operation completed before reaching it."""
    cfg = {"op": op, "root": str(store.root), "tenant": tenant, "crash_at": crash_at,
           "target": store.target.model_dump(mode="json")}
    proc = subprocess.run([sys.executable, "-c", _CRASH_WORKER, json.dumps(cfg)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT_OF_REPO)
    if proc.returncode == 0:
        assert "COMPLETED" in proc.stdout
        return True
    assert proc.returncode == 137, proc.stderr
    return False


def test_a_crash_at_any_point_of_a_rotation_leaves_every_key_readable(
        tmp_path: Path, target: StorageTarget) -> None:
    crash_at = 1
    while True:
        root = tmp_path / f"r{crash_at}"
        store = LocalStore(target, root)
        objects = {"tenants/clinic-a/1": b"a", "tenants/clinic-b/1": b"b",
                   "records/plain": b"p"}
        for key, data in objects.items():
            store.put(key, data)
        previous = store.key_status().current_key_id
        before_blobs = blobs(store)
        completed = _crash("rotate", store, crash_at)
        fresh = LocalStore(target, root)
        for key, data in objects.items():
            assert fresh.get(key) == data, (crash_at, key)
        status = fresh.key_status()
        # Each tenant key is wrapped by the old or the new location key, both kept.
        assert {t.wrapped_by for t in status.tenant_keys} <= set(status.location_keys)
        assert previous in status.location_keys
        if completed:
            assert status.current_key_id != previous and not status.not_rewrapped
        # Running it again finishes the job and cleans up what the crash left.
        report = fresh.rotate_location_key()
        assert not fresh.key_status().not_rewrapped
        leftovers = [p.name for p in tenant_keys_dir(fresh).iterdir()
                     if not p.name.endswith(".json")]
        assert leftovers == [], (crash_at, leftovers)
        assert len(report.location_keys) == len(status.location_keys) + 1
        for key, data in objects.items():
            assert LocalStore(target, root).get(key) == data
        assert blobs(fresh) == before_blobs
        if completed:
            break
        crash_at += 1
    assert crash_at > 8  # the crash really hit every step of a rotation of two tenants


def test_a_crash_at_any_point_of_a_destruction_is_finished_by_a_rerun(
        tmp_path: Path, target: StorageTarget) -> None:
    crash_at = 1
    while True:
        root = tmp_path / f"d{crash_at}"
        store = LocalStore(target, root)
        store.put("tenants/clinic-a/1", b"a")
        store.put("tenants/clinic-b/1", b"b")
        key_id = store.tenant_key_id("clinic-a")
        stem = local_keys._TenantKeys.stem("clinic-a")
        completed = _crash("destroy", store, crash_at, tenant="clinic-a")
        fresh = LocalStore(target, root)
        if not completed:
            rerun = fresh.destroy_tenant_key("clinic-a")
            # Whatever the crash left, the rerun reports the key it shredded, or that
            # nothing was left to shred (the crash hit after the last unlink).
            assert rerun.status in ("destroyed", "absent"), (crash_at, rerun)
            if rerun.status == "destroyed":
                assert rerun.key_id in (key_id, None)
        assert [p.name for p in tenant_keys_dir(fresh).iterdir()
                if p.name.startswith(stem)] == [], crash_at
        with pytest.raises(KeyDestroyed):
            fresh.get("tenants/clinic-a/1")
        assert fresh.get("tenants/clinic-b/1") == b"b"
        assert fresh.destroy_tenant_key("clinic-a").status == "absent"
        if completed:
            break
        crash_at += 1
    assert crash_at > 4


# --- local: the CLI ------------------------------------------------------------------------


def test_cli_keys_rotate_and_list(tmp_path: Path, target: StorageTarget) -> None:
    from residency_sdk.cli.app import app

    root = tmp_path / "root"
    store = LocalStore(target, root, location="DE")
    store.put("tenants/clinic-a/x", b"a")
    store.put("records/r", b"r")
    before = store.key_status().current_key_id
    runner = CliRunner()

    listed = runner.invoke(app, ["keys", "list", "--location", "DE", "--local-root",
                                 str(root), "--json"])
    assert listed.exit_code == 0, listed.output
    doc = json.loads(listed.output)
    assert doc["ok"] and doc["keyring"]["current_key_id"] == before
    assert [t["tenant_id"] for t in doc["keyring"]["tenant_keys"]] == ["clinic-a"]

    rotated = runner.invoke(app, ["keys", "rotate", "--location", "de", "--local-root",
                                  str(root)])
    assert rotated.exit_code == 0, rotated.output
    after = LocalStore(target, root, location="DE").key_status()
    assert after.current_key_id != before and not after.not_rewrapped
    assert after.current_key_id in rotated.output and "1 tenant key" in rotated.output
    assert LocalStore(target, root, location="DE").get("tenants/clinic-a/x") == b"a"

    text = runner.invoke(app, ["keys", "list", "--location", "DE", "--local-root", str(root)])
    assert text.exit_code == 0 and "clinic-a" in text.output and after.current_key_id in \
        text.output

    unknown = runner.invoke(app, ["keys", "rotate", "--location", "XX", "--local-root",
                                  str(root), "--json"])
    assert unknown.exit_code == 2 and "XX" in json.loads(unknown.output)["error"]
    no_root = runner.invoke(app, ["keys", "rotate", "--location", "DE"],
                            env={"RESIDENCY_LOCAL_ROOT": ""})
    assert no_root.exit_code != 0 and "--local-root" in no_root.output



def test_key_rotation_is_audited_in_its_location(tmp_path: Path) -> None:
    """A rotation is written ahead like any operation that changes what protects data:
    intent before the keyring is touched, outcome naming the new key; and one that
    cannot be audited does not happen."""
    import residency_sdk as rs
    from residency_sdk.audit import verify_log
    from residency_sdk.cli.app import app
    from residency_sdk.erasure import audit_log_events

    root, log = tmp_path / "root", tmp_path / "audit.db"
    res = rs.Residency.load(local_root=root, audit=str(log))
    res.storage_for(rs.Tenant(id="clinic-a", country="DE")).put("x", b"a")
    report = res.rotate_location_key("DE", actor="keyops@example.com")
    res.close()
    rotated = CliRunner().invoke(
        app, ["keys", "rotate", "-l", "DE", "--local-root", str(root), "--audit", str(log)])
    assert rotated.exit_code == 0, rotated.output
    events = [e for e in audit_log_events(log) if e.operation == "key_rotate"]
    assert [(e.outcome, e.source_location) for e in events] == [
        ("intent", "DE"), ("ok", "DE"), ("intent", "DE"), ("ok", "DE")]
    assert events[0].actor == "keyops@example.com"
    assert report.current_key_id in events[1].reasons[0]
    assert verify_log(log).ok

    class _Refusing:
        def append(self, event: object, *, durable: bool = True) -> None:
            raise OSError("disk full")

        def flush(self) -> None: ...

        def close(self) -> None: ...

    before = LocalStore(load_region_map(None).locations["DE"].backend("local"), root,
                        location="DE").key_status().current_key_id
    res = rs.Residency.load(local_root=root, audit=_Refusing())
    with pytest.raises(rs.AuditUnavailable):
        res.rotate_location_key("DE")
    after = LocalStore(load_region_map(None).locations["DE"].backend("local"), root,
                       location="DE").key_status().current_key_id
    assert after == before  # nothing rotated without its audit event
    with pytest.raises(rs.InvalidLocalLocation, match="local_root"):
        rs.Residency.load(audit=False).rotate_location_key("DE")


# --- S3 on moto: a KMS key per tenant ------------------------------------------------------


def _utc(value: Any) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Aws:
    """moto, provisioned by the shared harness, with raw clients to check what S3 and KMS
    report (never through the adapter under test)."""

    def __init__(self, harness: Any, tmp_path: Path) -> None:
        self.harness = harness
        self.target: StorageTarget = harness.target(harness.write_map(tmp_path), "DE")
        self.kms = harness.aws_client("kms", self.target.region)
        self.s3 = harness.aws_client("s3", self.target.region)

    def store(self, **changes: Any) -> Any:
        from residency_sdk.storage.s3 import S3Store

        target = self.target.model_copy(update=changes) if changes else self.target
        # A low multipart threshold: the multipart path is exercised with small objects.
        return S3Store(target, multipart_threshold=5 * 1024 * 1024,
                       chunk_size=5 * 1024 * 1024)

    def describe(self, key: str) -> dict[str, Any]:
        return dict(self.kms.describe_key(KeyId=key)["KeyMetadata"])

    def alias_exists(self, alias: str) -> bool:
        pages = self.kms.get_paginator("list_aliases").paginate()
        return any(a["AliasName"] == alias for page in pages for a in page["Aliases"])

    def tags(self, key: str) -> dict[str, str]:
        return {t["TagKey"]: t["TagValue"]
                for t in self.kms.list_resource_tags(KeyId=key)["Tags"]}


@pytest.fixture
def aws(emulators: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Aws:
    from storage_harness import ProviderHarness

    return Aws(ProviderHarness("aws", emulators, monkeypatch, tmp_path), tmp_path)


def _tenant() -> str:
    import uuid

    return f"clinic-{uuid.uuid4().hex[:10]}"  # moto is shared by the session: fresh ids


def test_s3_tenant_objects_are_written_under_the_tenant_kms_key(aws: Aws) -> None:
    from residency_sdk.storage._tenant_kms import alias_name

    store = aws.store()
    sent: list[tuple[str, str | None]] = []
    for op in ("PutObject", "CreateMultipartUpload"):
        store.client.meta.events.register(
            f"before-send.s3.{op}",
            lambda request, op=op, **kw: sent.append((op, request.headers.get(
                "x-amz-server-side-encryption-aws-kms-key-id", b"").decode() or None)))
    a, b = _tenant(), _tenant()
    small = store.put(f"tenants/{a}/small.dcm", b"phi")
    large = store.put(f"tenants/{a}/large.dcm", os.urandom(6 * 1024 * 1024))
    other = store.put(f"tenants/{b}/small.dcm", b"phi")
    plain = store.put(f"_residency/records/{a}.json", b"{}")

    key_a = store.tenant_key_id(a)
    assert key_a is not None and key_a.startswith(f"arn:aws:kms:{aws.target.region}:")
    assert key_a != store.tenant_key_id(b) != aws.target.kms_key
    # What went on the wire, and what S3 reports back.
    assert [op for op, _ in sent] == ["PutObject", "CreateMultipartUpload", "PutObject",
                                      "PutObject"]
    assert [key for _, key in sent] == [key_a, key_a, store.tenant_key_id(b),
                                        aws.target.kms_key]
    for info, expected in ((small, key_a), (large, key_a), (other, store.tenant_key_id(b)),
                           (plain, aws.target.kms_key)):
        head = aws.s3.head_object(Bucket=aws.target.bucket, Key=info.key)
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"] == expected == store.head(info.key).kms_key
    # The key, as KMS reports it: in the bucket's region, enabled, tagged, aliased.
    meta = aws.describe(key_a)
    assert meta["KeyState"] == "Enabled" and meta["KeyManager"] == "CUSTOMER"
    assert aws.tags(key_a) == {"residency:tenant": a, "residency:bucket": aws.target.bucket,
                               "residency:country": "DE", "residency:purpose": "tenant-key"}
    assert aws.describe(alias_name(aws.target.bucket, a))["Arn"] == key_a
    # Another process (a fresh store) finds the same key through the alias.
    again = aws.store()
    again.put(f"tenants/{a}/third.dcm", b"3")
    assert again.head(f"tenants/{a}/third.dcm").kms_key == key_a
    for s in (store, again):
        s.close()


def test_s3_destroying_the_tenant_key_reaches_a_backup_copy_made_with_it(aws: Aws) -> None:
    from residency_sdk.storage._tenant_kms import alias_name

    store = aws.store()
    tenant, other = _tenant(), _tenant()
    key = f"tenants/{tenant}/study.dcm"
    store.put(key, b"PATIENT Jane Doe")
    store.put(f"tenants/{other}/study.dcm", b"other tenant")
    tenant_key = store.tenant_key_id(tenant)
    # The "backup": a copy into a backup bucket that keeps the object's key, as S3
    # versions, same-key copies and restores do.
    backup_bucket = f"backup-{tenant}"
    aws.harness.make_bucket(backup_bucket, aws.target.region, kms_key=aws.target.kms_key)
    aws.s3.copy_object(Bucket=backup_bucket, Key=key,
                       CopySource={"Bucket": aws.target.bucket, "Key": key},
                       ServerSideEncryption="aws:kms", SSEKMSKeyId=tenant_key)
    assert aws.s3.head_object(Bucket=backup_bucket, Key=key)["SSEKMSKeyId"] == tenant_key

    assert store.delete(key)
    before = datetime.now(UTC)
    done = store.destroy_tenant_key(tenant)
    assert (done.status, done.key_id, done.tenant_id) == ("scheduled", tenant_key, tenant)
    assert done.effective_at is not None
    assert timedelta(days=6, hours=23) < done.effective_at - before < timedelta(days=7,
                                                                                 hours=1)
    # What KMS reports: unusable, its deletion date the one reported, the alias gone.
    meta = aws.describe(tenant_key)
    assert meta["KeyState"] == "PendingDeletion" and not meta["Enabled"]
    assert _utc(meta["DeletionDate"]) == done.effective_at
    assert not aws.alias_exists(alias_name(aws.target.bucket, tenant))
    # The backup still names the destroyed key: on AWS it can no longer be decrypted
    # (moto does not enforce decryption, docs/crypto-shredding.md).
    assert aws.s3.head_object(Bucket=backup_bucket, Key=key)["SSEKMSKeyId"] == tenant_key
    # Idempotent; the other tenant untouched and writable; the tenant writes again with
    # a new key (a new tenant with the same id).
    fresh = aws.store()
    again = fresh.destroy_tenant_key(tenant)
    assert again.status == "absent" and again.key_id is None
    assert fresh.tenant_key_id(tenant) is None
    assert aws.describe(store.tenant_key_id(other) or "")["KeyState"] == "Enabled"
    assert fresh.get(f"tenants/{other}/study.dcm") == b"other tenant"
    fresh.put(f"tenants/{other}/second.dcm", b"2")
    new = fresh.put(f"tenants/{tenant}/new.dcm", b"new")
    assert new.kms_key not in (None, tenant_key)
    assert aws.describe(new.kms_key or "")["KeyState"] == "Enabled"
    for s in (store, fresh):
        s.close()


def test_s3_a_destruction_cut_short_is_finished_by_a_rerun(aws: Aws) -> None:
    from residency_sdk.storage._tenant_kms import alias_name

    store = aws.store()
    tenant = _tenant()
    store.put(f"tenants/{tenant}/x", b"1")
    tenant_key = store.tenant_key_id(tenant) or ""
    alias = alias_name(aws.target.bucket, tenant)
    # A crash after DisableKey + ScheduleKeyDeletion, before DeleteAlias. (moto answers
    # DisableKey by ARN with a 500: pass the bare key id.)
    aws.kms.disable_key(KeyId=tenant_key.rsplit("/", 1)[-1])
    scheduled = aws.kms.schedule_key_deletion(KeyId=tenant_key.rsplit("/", 1)[-1],
                                              PendingWindowInDays=7)
    # Meanwhile no process writes under the dying key, cached or not.
    fresh = aws.store()
    with pytest.raises(EncryptionError, match="PendingDeletion"):
        fresh.put(f"tenants/{tenant}/y", b"2")
    assert not fresh.exists(f"tenants/{tenant}/y")
    done = fresh.destroy_tenant_key(tenant)
    assert (done.status, done.key_id) == ("scheduled", tenant_key)
    assert done.effective_at == _utc(scheduled["DeletionDate"])
    assert not aws.alias_exists(alias)
    # A crash after DisableKey only.
    tenant2 = _tenant()
    store.put(f"tenants/{tenant2}/x", b"1")
    key2 = store.tenant_key_id(tenant2) or ""
    aws.kms.disable_key(KeyId=key2.rsplit("/", 1)[-1])
    done2 = fresh.destroy_tenant_key(tenant2)
    assert done2.status == "scheduled" and aws.describe(key2)["KeyState"] == "PendingDeletion"
    for s in (store, fresh):
        s.close()


def test_s3_a_writer_that_loses_the_alias_race_uses_the_winners_key(
        aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    from residency_sdk.storage import _tenant_kms
    from residency_sdk.storage._tenant_kms import alias_name

    tenant = _tenant()
    alias = alias_name(aws.target.bucket, tenant)
    store = aws.store()
    # Another writer makes the tenant's key and alias right after this store looked the
    # alias up and found none (the window the alias arbitrates).
    looked: list[str] = []
    real_describe = _tenant_kms.TenantKmsKeys._describe
    winner: dict[str, str] = {}

    def describe(self: Any, name: str, tenant_id: str) -> Any:
        if name == alias and not looked:
            looked.append(name)
            other = aws.store()
            other.put(f"tenants/{tenant}/from-the-other-writer", b"w")
            winner["arn"] = other.tenant_key_id(tenant) or ""
            other.close()
            return None  # what this store saw before the other writer won
        return real_describe(self, name, tenant_id)

    monkeypatch.setattr(_tenant_kms.TenantKmsKeys, "_describe", describe)
    info = store.put(f"tenants/{tenant}/mine", b"m")
    assert looked and info.kms_key == winner["arn"]
    assert aws.describe(alias)["Arn"] == winner["arn"]
    # The key this store made and lost with is scheduled for deletion, never used.
    keys = aws.kms.list_keys()["Keys"]
    mine = [k["KeyArn"] for k in keys
            if aws.tags(k["KeyId"]).get("residency:tenant") == tenant
            and k["KeyArn"] != winner["arn"]]
    assert len(mine) == 1 and aws.describe(mine[0])["KeyState"] == "PendingDeletion"
    store.close()


def test_s3_a_hand_made_alias_does_not_get_its_key_destroyed(aws: Aws) -> None:
    from residency_sdk.storage._tenant_kms import alias_name

    tenant = _tenant()
    foreign = aws.kms.create_key(Description="someone else's key")["KeyMetadata"]
    aws.kms.create_alias(AliasName=alias_name(aws.target.bucket, tenant),
                         TargetKeyId=foreign["KeyId"])
    store = aws.store()
    with pytest.raises(EncryptionError, match="did not make it"):
        store.destroy_tenant_key(tenant)
    assert aws.describe(foreign["KeyId"])["KeyState"] == "Enabled"
    store.close()


def test_s3_tenant_keys_off_keeps_the_location_key(aws: Aws) -> None:
    from residency_sdk.storage._tenant_kms import alias_name

    store = aws.store(tenant_keys=False)
    tenant = _tenant()
    info = store.put(f"tenants/{tenant}/x", b"1")
    assert info.kms_key == aws.target.kms_key and store.tenant_key_id(tenant) is None
    assert not aws.alias_exists(alias_name(aws.target.bucket, tenant))
    result = store.destroy_tenant_key(tenant)
    assert result.status == "unsupported" and "tenant_keys: false" in result.detail
    store.close()


def test_the_map_switches_tenant_keys_off(tmp_path: Path) -> None:
    from residency_sdk.regionmap import load_region_map as load

    path = tmp_path / "map.yaml"
    path.write_text("extends: default\nname: t\nlocations:\n  DE:\n    backends:\n"
                    "      aws: {tenant_keys: false}\n")
    assert load(path).locations["DE"].backends["aws"].tenant_keys is False
    assert load(None).locations["DE"].backends["aws"].tenant_keys is True


def test_alias_names_are_valid_and_never_shared() -> None:
    from residency_sdk.storage._tenant_kms import alias_name

    ids = ["clinic-1", "clinic_1", "clinic.1", "clinic_2e1", "Clinic-1", "ü", "_h00",
           "x" * 128, "a.b_c-d", "clinic 1"]
    names = [alias_name("residency-de-aws.data", t) for t in ids]
    assert len(set(names)) == len(names)
    valid = __import__("re").compile(r"^alias/[A-Za-z0-9/_-]{1,250}$")
    for name in names:
        assert valid.fullmatch(name) and len(name) <= 256 and not name.startswith(
            "alias/aws/"), name
    assert alias_name("b", "clinic-1") == "alias/residency/b/clinic-1"
    assert alias_name("b.c", "clinic.1") == "alias/residency/b_c/clinic_2e1"
    long = alias_name("b" * 63, "é" * 128)
    assert long.startswith("alias/residency/" + "b" * 63 + "/_h") and len(long) <= 256


# --- GCS and Azure: no per-tenant key, and the operator is told what covers it ----------


@pytest.mark.parametrize("provider", ["gcp", "azure"])
def test_gcs_and_azure_report_the_gap(provider: str, emulators: Any,
                                      monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from storage_harness import ProviderHarness

    harness = ProviderHarness(provider, emulators, monkeypatch, tmp_path)
    store = harness.open(harness.target(harness.write_map(tmp_path), "DE"))
    tenant = _tenant()
    store.put(f"tenants/{tenant}/x", b"1")
    assert store.tenant_key_id(tenant) is None
    result = store.destroy_tenant_key(tenant)
    assert result.status == "unsupported" and result.key_id is None
    wanted = "CMEK" if provider == "gcp" else "encryption scope"
    assert wanted in result.detail and "docs/crypto-shredding.md" in result.detail
    assert store.get(f"tenants/{tenant}/x") == b"1"
    store.close()


def test_the_iam_policy_covers_every_kms_call_the_adapter_makes(aws: Aws) -> None:
    """Every KMS operation the adapter sends is granted by the documented policy, each
    scoped to the region, to tagged tenant keys or to the residency alias prefix."""
    from residency_sdk.infra.documents import aws_tenant_keys_policy

    store = aws.store()
    called: set[str] = set()
    store._tenant_keys._kms().meta.events.register(
        "before-send.kms.*", lambda request, **kw: called.add(
            "kms:" + request.headers["X-Amz-Target"].decode().split(".")[-1]))
    tenant = _tenant()
    store.put(f"tenants/{tenant}/x", b"1")
    store.destroy_tenant_key(tenant)
    store.close()
    policy = aws_tenant_keys_policy(aws.target.region, "123456789012")
    granted = {action for st in policy["Statement"] for action in st["Action"]}
    assert called <= granted, called - granted
    assert {"kms:CreateKey", "kms:CreateAlias", "kms:DisableKey", "kms:ScheduleKeyDeletion",
            "kms:DeleteAlias"} <= called
    for st in policy["Statement"]:
        assert st["Effect"] == "Allow" and "kms:*" not in st["Action"]
        assert (st["Resource"] == "*" and st["Condition"]["StringEquals"][
            "aws:RequestedRegion"] == aws.target.region) or \
            f":kms:{aws.target.region}:123456789012:" in st["Resource"]
        if st["Resource"].endswith(":key/*"):
            assert st["Condition"]["StringEquals"][
                "aws:ResourceTag/residency:purpose"] == "tenant-key"


@pytest.mark.parametrize("code", ["KMS.DisabledException", "KMS.KMSInvalidStateException"])
def test_s3_reading_under_a_destroyed_tenant_key_raises_key_destroyed(
        code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What AWS answers a GetObject under a disabled or pending-deletion key (moto does
    not enforce it, so the answer is played with botocore's Stubber)."""
    from botocore.stub import Stubber

    from residency_sdk.storage.s3 import S3Store

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    target = StorageTarget(provider="aws", region="eu-central-1", bucket="offline",
                           country="DE", kms_key="alias/offline", endpoint="http://127.0.0.1:9")
    store = S3Store(target, verify_on_open=False)
    with Stubber(store.client) as stub:
        stub.add_client_error("get_object", service_error_code=code, http_status_code=400)
        with pytest.raises(KeyDestroyed, match=r"tenant 'clinic-a'.*crypto-shredding"):
            store.get("tenants/clinic-a/study.dcm")
        # Not a tenant object: the location key's problem, not a shredded tenant.
        stub.add_client_error("get_object", service_error_code=code, http_status_code=400)
        with pytest.raises(EncryptionError) as caught:
            store.get("_residency/records/x.json")
        assert not isinstance(caught.value, KeyDestroyed)
        assert "alias/offline" in str(caught.value)
    store.close()
