"""Worker process for the erasure crash scenarios (``test_reliability_erasure_crash.py``).

``python erasure_crash_worker.py MODE CONFIG_JSON`` erases one tenant whose data reached
several locations, printing the lines the parent picks its SIGKILL point from:

- ``erase-locations``: ``D <backend>`` after each object deleted (then a short pause, so a
  kill sent on that line lands before the next deletion);
- ``erase-keys``: ``K start <location>`` as a tenant key's destruction begins (the kill
  then lands before, inside or just after it), ``K done <location>`` after it (then a
  pause), ``F start`` as the tenant's lineage and records are dropped;

then ``READY`` before the erasure and ``DONE <json>`` when it finished uninterrupted.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import residency_sdk as rs
from residency_sdk.model import StorageTarget
from residency_sdk.storage.base import KeyDestruction, ObjectStore
from residency_sdk.storage.local import LocalStore

PAUSE = 0.03  # seconds after a progress line: the parent's kill arrives meanwhile


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def tenant_of(cfg: dict[str, Any]) -> rs.Tenant:
    # An Austrian clinic, as in the parent test: § 393 SGB V keeps German health data out
    # of SCC transfers to the US (LEGAL_FACTS 12).
    return rs.Tenant(id=cfg["tenant"], country="AT", agreements=frozenset({"scc"}))


def erase_locations(cfg: dict[str, Any]) -> None:
    res = rs.Residency.load(cfg.get("map"), audit=cfg["audit"],
                            local_root=cfg.get("local_root"), state_dir=cfg["state_dir"])

    def deleted(backend: str, _key: str) -> None:
        say(f"D {backend}")
        time.sleep(PAUSE)

    tracker = res.erasure_tracker(progress=deleted, workers=1, actor="crash-test")
    say("READY")
    receipt = tracker.erase(tenant_of(cfg), providers=cfg.get("providers"))
    say("DONE " + json.dumps({"request_id": receipt.request_id, "objects": receipt.objects}))


class _Announcing(LocalStore):
    def destroy_tenant_key(self, tenant_id: str) -> KeyDestruction:
        say(f"K start {self.location}")
        result = super().destroy_tenant_key(tenant_id)
        say(f"K done {self.location}")
        time.sleep(PAUSE)
        return result


def erase_keys(cfg: dict[str, Any]) -> None:
    root = Path(cfg["local_root"])

    def opener(target: StorageTarget, location: str) -> ObjectStore:
        return _Announcing(target, root, location=location)

    res = rs.Residency.load(cfg.get("map"), audit=cfg["audit"], local_root=root,
                            state_dir=cfg["state_dir"], storage=opener)
    forget = res.lineage.forget

    def announced_forget(*args: Any, **kwargs: Any) -> int:
        say("F start")
        return forget(*args, **kwargs)

    res.lineage.forget = announced_forget  # type: ignore[method-assign]
    say("READY")
    receipt = res.erase(tenant_of(cfg), actor="crash-test")
    say("DONE " + json.dumps({"request_id": receipt.request_id, "objects": receipt.objects}))


MODES = {"erase-locations": erase_locations, "erase-keys": erase_keys}

if __name__ == "__main__":
    MODES[sys.argv[1]](json.loads(Path(sys.argv[2]).read_text()))
