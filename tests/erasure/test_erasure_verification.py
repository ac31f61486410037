"""An erasure is only verified by a fresh listing, never by the deletes' own word.

The store here is the real adapter (the local store, and the S3 adapter against moto)
whose deletions report success but silently leave the objects: what a misbehaving
backend, an eventually consistent listing or a replica that writes them back looks like
to the SDK. It is wired in through ``Residency.load(storage=...)``, so the request runs
the real tracker, the real deletion step and the real verification. The erasure must not
be verified, must name a key that survived, must keep every tenant key (nothing is
shredded while data remains) and must issue no receipt; once deletions work again, a
re-run of the same request finishes it.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from storage_harness import ProviderHarness

import residency_sdk as rs
from residency_sdk.erasure import audit_log_events
from residency_sdk.model import StorageTarget
from residency_sdk.storage.base import ObjectInfo, ObjectStore, Residue
from residency_sdk.storage.factory import open_store
from residency_sdk.storage.keys import tenant_prefix
from residency_sdk.storage.local import LocalStore


class _Forgetful:
    """Mixed into a real adapter: while ``forgetting``, deletions (and purges of residue or
    old versions) report success and remove nothing; afterwards they are the adapter's."""

    forgetting = True
    claimed: list[str]

    def delete(self, key: str, *, if_match: ObjectInfo | None = None) -> bool:
        if self.forgetting:
            self.claimed.append(key)
            return True
        return super().delete(key, if_match=if_match)  # type: ignore[misc]

    def purge_residue(self, prefix: str, *, keep: frozenset[str] = frozenset()) -> Residue:
        if self.forgetting:
            return Residue()
        return super().purge_residue(prefix, keep=keep)  # type: ignore[misc]

    def purge_versions(self, key: str, *args: Any, **kwargs: Any) -> Residue:
        if self.forgetting:
            return Residue()
        return super().purge_versions(key, *args, **kwargs)  # type: ignore[misc]


class ForgetfulLocal(_Forgetful, LocalStore):
    pass


def _forgetful_s3() -> type:
    from residency_sdk.storage.s3 import S3Store

    return type("ForgetfulS3", (_Forgetful, S3Store), {})


class Opener:
    """``Residency.load(storage=...)``: every store it opens forgets its deletions until
    :meth:`repair`."""

    def __init__(self, local_root: Path | None) -> None:
        self.local_root = local_root
        self.stores: list[Any] = []

    def __call__(self, target: StorageTarget, location: str) -> ObjectStore:
        store: Any
        if target.provider == "local":
            assert self.local_root is not None
            store = ForgetfulLocal(target, self.local_root, location=location)
        elif target.provider == "aws":
            store = _forgetful_s3()(target)
        else:  # pragma: no cover - the test is parametrised over local and aws only
            raise AssertionError(target.provider)
        store.claimed = []
        self.stores.append(store)
        return store

    def repair(self) -> None:
        for store in self.stores:
            store.forgetting = False

    @property
    def claimed(self) -> list[str]:
        return [k for s in self.stores for k in s.claimed]


def _listed_by_the_provider(harness: ProviderHarness, res: rs.Residency,
                            tenant: rs.Tenant) -> list[str]:
    """The tenant's keys on every backend of its location, listed by a plain adapter
    (local) or by boto3 itself (aws), not by the forgetful stores."""
    location = res.resolve(tenant).location
    prefix = tenant_prefix(tenant)
    keys: list[str] = []
    for _role, target in res.location_targets(location, [harness.provider]):
        if harness.provider == "local":
            store = open_store(target, local_root=harness.local_root, location=location)
            keys += [i.key for i in store.list(prefix)]
        else:
            s3 = harness.aws_client("s3", target.region)
            keys += [o["Key"] for o in s3.list_objects_v2(
                Bucket=target.bucket, Prefix=prefix).get("Contents", [])]
    return sorted(keys)


@pytest.mark.parametrize("provider_harness",
                         ["local", pytest.param("aws", marks=pytest.mark.emulator)],
                         indirect=True)
def test_erasure_whose_deletes_remove_nothing_is_not_verified_and_a_rerun_finishes_it(
        provider_harness: ProviderHarness, tmp_path: Path) -> None:
    local_root = provider_harness.local_root if provider_harness.provider == "local" else None
    opener = Opener(local_root)
    res = rs.Residency.load(provider_harness.write_map(tmp_path),
                            audit=str(tmp_path / "audit.db"), local_root=local_root,
                            storage=opener)
    tenant = rs.Tenant(id=f"clinic-{uuid.uuid4().hex[:10]}", country="DE")
    store = res.storage_for(tenant)
    for i in range(3):
        store.put(f"studies/{i}/image.dcm", b"phi-%d" % i, data_class="phi")
    stored = _listed_by_the_provider(provider_harness, res, tenant)
    assert len(stored) == 3
    primary = res.store(store.target, store.location)
    key_before = (primary.tenant_key_id(tenant.id)  # type: ignore[attr-defined]
                  if provider_harness.provider == "local" else None)
    assert key_before is not None or provider_harness.provider != "local"

    tracker = res.erasure_tracker(tmp_path / "state", actor="dpo@example.com")
    request = tracker.request(tenant, reason="contract ended",
                              providers=[provider_harness.provider])
    first = tracker.run(request.id)

    # Every delete claimed success, but the fresh listing still shows the objects: not
    # verified, not completed.
    assert first.status == "in_progress" and first.is_open, first.model_dump()
    assert sorted(opener.claimed) == stored
    assert first.receipt is None and first.completed_at is None
    (backend,) = [b for b in first.backends.values() if b.role == "primary"]
    assert backend.status == "failed" and backend.remaining == 3
    assert backend.error is not None and "still listed after deletion" in backend.error
    assert any(repr(k) in backend.error for k in stored), backend.error
    assert _listed_by_the_provider(provider_harness, res, tenant) == stored
    # No key is shredded while the tenant's data is still there.
    assert first.keys_state() != "done"
    if key_before is not None:
        assert primary.tenant_key_id(tenant.id) == key_before  # type: ignore[attr-defined]
    res.audit.flush()
    outcomes = [e for e in audit_log_events(tmp_path / "audit.db")
                if e.operation == "erase" and e.purpose == f"erasure:{request.id}"
                and e.outcome != "intent"]
    assert outcomes and all(e.outcome == "error" for e in outcomes)
    assert not [e for e in audit_log_events(tmp_path / "audit.db")
                if e.purpose == f"erasure_receipt:{request.id}"]

    opener.repair()
    done = res.erasure_tracker(tmp_path / "state", actor="dpo@example.com").run(request.id)
    assert done.status == "completed" and done.attempts == 2, done.model_dump()
    assert all(b.status == "verified" and b.remaining == 0 for b in done.backends.values())
    assert _listed_by_the_provider(provider_harness, res, tenant) == []
    assert done.receipt is not None
    if key_before is not None:  # shredded only now, after the verified emptiness
        assert primary.tenant_key_id(tenant.id) is None  # type: ignore[attr-defined]
