"""A sweep whose backend finished with item errors sweeps that backend again next time.

The checkpoint makes an interrupted sweep resumable; it must not also make a failed
deletion permanent: a backend marked done with errors in an earlier run is swept again
from its first key, so an object whose delete failed once is deleted by the next sweep.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import residency_sdk as rs
from residency_sdk.marks import CATEGORY_META
from residency_sdk.model import StorageTarget
from residency_sdk.storage.base import ObjectInfo
from residency_sdk.storage.memory import MemoryStore

UPLOAD = {CATEGORY_META: "imaging_upload"}  # 24 hours in the default map


class DeleteFailsOnce(MemoryStore):
    """A store whose first delete times out (a backend that was briefly unreachable)."""

    failures = 1

    def __init__(self, target: StorageTarget) -> None:
        super().__init__(target)

    def delete(self, key: str, *, if_match: ObjectInfo | None = None) -> bool:
        if DeleteFailsOnce.failures > 0:
            DeleteFailsOnce.failures -= 1
            raise rs.BackendUnavailable(f"deleting {key!r} timed out")
        return super().delete(key, if_match=if_match)


def _later(hours: float) -> Any:
    start = datetime.now(UTC)
    return lambda: start + timedelta(hours=hours)


def test_a_backend_finished_with_errors_is_swept_again_by_the_next_run(
        tmp_path: Path) -> None:
    DeleteFailsOnce.failures = 1
    stores: dict[str, DeleteFailsOnce] = {}

    def open_store(target: StorageTarget, location: str) -> DeleteFailsOnce:
        return stores.setdefault(f"{target.provider}:{target.bucket}",
                                 DeleteFailsOnce(target))

    res = rs.Residency.load(audit=str(tmp_path / "audit.db"), storage=open_store)
    tenant = rs.Tenant(id=f"clinic-{uuid.uuid4().hex[:10]}", country="DE")
    store = res.storage_for(tenant)
    store.put("uploads/ct.dcm", b"study", data_class="phi", metadata=UPLOAD)
    state = tmp_path / "state"

    first = res.retention_sweep("DE", providers=[store.target.provider], state_dir=state,
                                clock=_later(25)).run()
    assert not first.ok and first.total("errors") == 1 and first.total("deleted") == 0
    assert store.exists("uploads/ct.dcm")

    second = res.retention_sweep("DE", providers=[store.target.provider], state_dir=state,
                                 clock=_later(25)).run()
    assert second.ok, second.to_dict()
    assert second.total("deleted") == 1 and second.total("errors") == 0
    assert not store.exists("uploads/ct.dcm")
    assert not list(state.glob("retention-*.json"))  # a clean sweep leaves no checkpoint
