"""Issue 11, hole 4: a symbolic link in the local data root must not carry a tenant's data
out of its location's tree (into another country's tree, or anywhere on disk), nor hide
it from listing and erasure.

The local backend walks every path from its root without following links: each door
below is a link planted where the store keeps data (a bucket, tenant, sub-directory or
key directory; a sidecar or blob; the keys directory; the bucket lock). Every operation
through it is refused with :class:`UnsafePath` naming the link, nothing is read or
written at the link's target, and listing, residue purging and erasure report the link
instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import residency_sdk as rs
from residency_sdk.storage import keys

KEY = "studies/1/img.dcm"
DE_TENANT = rs.Tenant(id="clinic-1", country="DE")
# A US tenant of the same deployment; its PHI is held by the vendor under a BAA
# (LEGAL_FACTS 12: HIPAA by holder, even in the US).
US_TENANT = rs.Tenant(id="us-clinic", country="US", agreements={"baa"})
NEIGHBOUR = rs.Tenant(id="clinic-2", country="DE")


def snapshot(path: Path) -> dict[str, Any]:
    """Every directory and file (with its bytes and mode) below ``path``, links as
    links: what must stay exactly as it was."""
    seen: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            full = Path(dirpath, name)
            rel = str(full.relative_to(path))
            if full.is_symlink():
                seen[rel] = ("link", os.readlink(full))
            elif full.is_dir():
                seen[rel] = ("dir", full.stat().st_mode)
            else:
                seen[rel] = ("file", full.read_bytes(), full.stat().st_mode)
    return seen


@dataclass
class Env:
    res: rs.Residency
    root: Path
    de: Any  # TenantStore of DE_TENANT
    us: Any  # TenantStore of US_TENANT
    raw_de: Any  # the DE location's LocalStore
    raw_us: Any
    outside: Path  # a folder outside the data root

    @property
    def de_bucket(self) -> Path:
        return Path(self.raw_de.bucket_dir)

    @property
    def us_bucket(self) -> Path:
        return Path(self.raw_us.bucket_dir)

    def rel(self, path: Path) -> str:
        """``path`` as UnsafePath names it: relative to the (resolved) data root."""
        return str(path.relative_to(self.raw_de.root))


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    res = rs.Residency.load(local_root=tmp_path / "root", state_dir=tmp_path / "state")
    de = res.storage_for(DE_TENANT)
    us = res.storage_for(US_TENANT)
    us.put(KEY, b"US patient scan", data_class="phi")
    us.put("notes/a.txt", b"US note", data_class="phi")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "sentinel").write_bytes(b"not the store's")
    raw_de = res.store(res.backend("DE", "local"), "DE")
    raw_us = res.store(res.backend("US", "local"), "US")
    yield Env(res, tmp_path / "root", de, us, raw_de, raw_us, outside)
    res.close()


# Where the link is planted in the DE tree, and the matching US directory it points at.
DOORS = {
    "bucket": (),
    "tenant": ("tenants", "clinic-1"),
    "sub-directory": ("tenants", "clinic-1", "studies"),
    "key directory": ("tenants", "clinic-1", "studies", "1", "img.dcm"),
}


def us_parts(parts: tuple[str, ...]) -> tuple[str, ...]:
    """The US tenant's directory matching the DE tenant's ``parts``."""
    return tuple(US_TENANT.id if p == DE_TENANT.id else p for p in parts)


def plant(env: Env, door: str, into: str) -> tuple[Path, Path]:
    """Replace the DE directory ``door`` by a link to the US tree or a folder outside the
    root; return (link, target)."""
    parts = DOORS[door]
    if door != "bucket":  # the DE bucket exists, with another tenant's object in it
        env.res.storage_for(NEIGHBOUR).put("x", b"neighbour", data_class="phi")
    link = env.de_bucket.joinpath(*parts)
    target = env.us_bucket.joinpath(*us_parts(parts)) if into == "us" else env.outside
    if link.exists():
        shutil.rmtree(link)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target, target_is_directory=True)
    return link, target


@pytest.mark.parametrize("into", ["us", "outside"])
@pytest.mark.parametrize("door", list(DOORS))
def test_put_through_a_linked_directory_is_refused_and_writes_nothing(
        env: Env, door: str, into: str) -> None:
    link, target = plant(env, door, into)
    before = snapshot(target)

    with pytest.raises(rs.UnsafePath) as refused:
        env.de.put(KEY, b"DE patient scan", data_class="phi")

    assert env.rel(link) in str(refused.value)
    assert "remove the link" in str(refused.value)
    assert snapshot(target) == before  # not a byte, not a directory at the target
    assert env.us.get(KEY) == b"US patient scan"


@pytest.mark.parametrize("into", ["us", "outside"])
@pytest.mark.parametrize("door", list(DOORS))
def test_reads_and_deletes_through_a_linked_directory_are_refused(
        env: Env, door: str, into: str) -> None:
    if into == "outside":  # something that looks like the DE object waits at the target
        env.de.put(KEY, b"DE patient scan", data_class="phi")
        parts = DOORS[door]
        source = env.de_bucket.joinpath(*parts)
        shutil.rmtree(env.outside)
        shutil.copytree(source, env.outside)
    link, target = plant(env, door, into)
    before = snapshot(target)

    operations: list[Callable[[], object]] = [
        lambda: env.de.get(KEY), lambda: env.de.head(KEY), lambda: env.de.exists(KEY),
        lambda: env.de.delete(KEY), lambda: env.raw_de.get(keys.tenant_key(DE_TENANT, KEY))]
    for operation in operations:
        with pytest.raises(rs.UnsafePath) as refused:
            operation()
        assert env.rel(link) in str(refused.value)
    assert snapshot(target) == before


@pytest.mark.parametrize("into", ["us", "outside"])
@pytest.mark.parametrize("which", ["@meta", "blob"])
def test_a_linked_sidecar_or_blob_is_not_read(env: Env, which: str, into: str) -> None:
    env.de.put(KEY, b"DE patient scan", data_class="phi")
    keydir = env.de_bucket / "tenants" / "clinic-1" / "studies" / "1" / "img.dcm"
    name = "@meta" if which == "@meta" else next(
        p.name for p in keydir.iterdir() if p.name.startswith("@v-"))
    if into == "us":
        us_keydir = env.us_bucket / "tenants" / US_TENANT.id / "studies" / "1" / "img.dcm"
        target = us_keydir / ("@meta" if which == "@meta" else next(
            p.name for p in us_keydir.iterdir() if p.name.startswith("@v-")))
    else:  # an identical copy outside the root: reading it would "work"
        target = env.outside / name
        shutil.copy2(keydir / name, target)
    (keydir / name).unlink()
    (keydir / name).symlink_to(target)
    before = snapshot(target.parent)

    with pytest.raises(rs.UnsafePath) as refused:
        env.de.get(KEY)
    assert env.rel(keydir / name) in str(refused.value)
    if which == "@meta":
        with pytest.raises(rs.UnsafePath):
            env.de.head(KEY)
        with pytest.raises(rs.UnsafePath):  # an overwrite reads the old sidecar first
            env.de.put(KEY, b"DE patient scan, v2", data_class="phi")
    else:  # an overwrite replaces the sidecar and removes the old blob's name: the link
        env.de.put(KEY, b"DE patient scan, v2", data_class="phi")
        assert not (keydir / name).is_symlink()
        assert env.de.get(KEY) == b"DE patient scan, v2"
    assert snapshot(target.parent) == before


@pytest.mark.parametrize("kind", ["directory into the US tree", "directory outside",
                                  "sidecar"])
def test_list_reports_a_planted_link_instead_of_skipping_it(env: Env, kind: str) -> None:
    env.de.put("a", b"1", data_class="phi")
    env.de.put("b/c", b"2", data_class="phi")
    tenant_dir = env.de_bucket / "tenants" / "clinic-1"
    if kind == "sidecar":
        link = tenant_dir / "b" / "c" / "@meta"
        copy = env.outside / "@meta"
        shutil.copy2(link, copy)
        link.unlink()
        link.symlink_to(copy)
    else:
        link = tenant_dir / "linked"
        link.symlink_to(env.us_bucket / "tenants" / US_TENANT.id if "US" in kind
                        else env.outside, target_is_directory=True)

    with pytest.raises(rs.UnsafePath) as refused:
        list(env.de.list(""))
    assert env.rel(link) in str(refused.value)
    with pytest.raises(rs.UnsafePath):
        list(env.raw_de.list(keys.tenant_prefix(DE_TENANT)))
    with pytest.raises(rs.UnsafePath):
        env.raw_de.purge_residue(keys.tenant_prefix(DE_TENANT))


@pytest.mark.parametrize("into", ["us", "outside"])
@pytest.mark.parametrize("planted", ["under the tenant", "as the tenant"])
def test_erasure_with_a_planted_link_is_not_completed(env: Env, into: str,
                                                      planted: str) -> None:
    env.de.put("a", b"1", data_class="phi")
    env.de.put("b/c", b"2", data_class="phi")
    tenant_dir = env.de_bucket / "tenants" / "clinic-1"
    if planted == "as the tenant":  # the DE tenant's whole folder points elsewhere
        shutil.rmtree(tenant_dir)
        link = tenant_dir
    else:
        link = tenant_dir / "linked"
    target = env.us_bucket / "tenants" / US_TENANT.id if into == "us" else env.outside
    link.symlink_to(target, target_is_directory=True)
    before = snapshot(target)

    with pytest.raises(rs.ErasureIncomplete) as caught:
        env.res.erase(DE_TENANT)

    receipt = caught.value.receipt
    assert receipt is not None and not receipt.complete
    (backend,) = receipt.backends
    assert backend.status == "failed"
    assert backend.error is not None and "UnsafePath" in backend.error
    assert env.rel(link) in backend.error
    assert env.rel(link) in str(caught.value)
    assert snapshot(target) == before  # the link's target is untouched
    assert env.us.get(KEY) == b"US patient scan"
    # Once the link is removed, the same request finishes.
    link.unlink()
    assert env.res.erase(DE_TENANT).complete
    assert not tenant_dir.exists()
    assert snapshot(target) == before


@pytest.mark.parametrize("into", ["us", "outside"])
def test_a_linked_keys_directory_is_refused(env: Env, into: str) -> None:
    keys_dir = Path(env.raw_de.location_dir) / ".keys"
    target = Path(env.raw_us.location_dir) / ".keys" if into == "us" else env.outside
    keys_dir.parent.mkdir(parents=True, exist_ok=True)
    keys_dir.symlink_to(target, target_is_directory=True)
    before = snapshot(target)

    with pytest.raises(rs.UnsafePath) as refused:
        env.de.put(KEY, b"DE patient scan", data_class="phi")
    assert env.rel(keys_dir) in str(refused.value)
    assert snapshot(target) == before  # no key made there, no US key used
    assert not env.de_bucket.joinpath("tenants", "clinic-1").exists()


def test_a_keys_directory_swapped_for_a_link_is_not_read(env: Env, tmp_path: Path) -> None:
    env.de.put(KEY, b"DE patient scan", data_class="phi")
    keys_dir = Path(env.raw_de.location_dir) / ".keys"
    moved = env.outside / "keys"
    keys_dir.rename(moved)
    keys_dir.symlink_to(moved, target_is_directory=True)
    fresh = rs.Residency.load(local_root=tmp_path / "root", state_dir=tmp_path / "state")
    try:
        with pytest.raises(rs.UnsafePath, match=r"DE/\.keys"):
            fresh.storage_for(DE_TENANT).get(KEY)
    finally:
        fresh.close()


def test_a_linked_bucket_lock_is_refused(env: Env) -> None:
    env.de.put("a", b"1", data_class="phi")
    lock = env.de_bucket / "@lock"
    lock.unlink()
    target = env.outside / "not-a-lock"
    lock.symlink_to(target)

    with pytest.raises(rs.UnsafePath, match="@lock"):
        env.de.put("b", b"2", data_class="phi")
    assert not target.exists()
    assert not env.de.exists("b")
