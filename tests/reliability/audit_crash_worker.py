"""Worker processes the audit crash scenarios SIGKILL (run by test_reliability_audit_crash).

Each prints ``READY`` when set up, then one line per acknowledged fact the parent checks
after the kill (``INTENT <event_id>``: that intent was durable when ``append`` returned;
``ACK <object_key>``: that event was durable; ``ANCHOR <seq>``: an anchor was published),
and ``DONE {...}`` if it finished before being killed.

    python audit_crash_worker.py MODE CONFIG.json
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import residency_sdk as rs
from residency_sdk.audit import AuditLog
from residency_sdk.events import AuditEvent
from residency_sdk.model import StorageTarget
from residency_sdk.storage.memory import MemoryStore

_say_lock = threading.Lock()


def say(line: str) -> None:
    with _say_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Announcing:
    """The audit log, announcing each intent once ``append`` says it is durable."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log

    def append(self, event: AuditEvent, *, durable: bool = True) -> None:
        self.log.append(event, durable=durable)
        if event.outcome == "intent" and durable:
            say(f"INTENT {event.event_id}")

    def flush(self) -> None:
        self.log.flush()

    def close(self) -> None:
        self.log.close()


class SlowMemoryStore(MemoryStore):
    """A store whose writes take a while: the window between intent and outcome."""

    delay = 0.05

    def put(self, key: str, data: Any, **kwargs: Any) -> Any:
        time.sleep(self.delay)
        return super().put(key, data, **kwargs)


def between_intent_and_outcome(cfg: dict[str, Any]) -> None:
    log = AuditLog(cfg["audit"])
    SlowMemoryStore.delay = float(cfg.get("delay", 0.05))

    def opener(target: StorageTarget, location: str) -> MemoryStore:
        return SlowMemoryStore(target)

    res = rs.Residency.load(audit=Announcing(log), storage=opener)
    store = res.storage_for(rs.Tenant(id=cfg["tenant"], country="DE"), actor="crash-test")
    say("READY")
    for i in range(int(cfg["puts"])):
        store.put(f"study-{i}.dcm", b"x" * 512, data_class="phi")
        say(f"PUT {i}")
    res.close()
    say("DONE " + json.dumps({"puts": int(cfg["puts"])}))


def group_commit(cfg: dict[str, Any]) -> None:
    log = AuditLog(cfg["audit"])
    threads, per = int(cfg["threads"]), int(cfg["events"])
    barrier = threading.Barrier(threads)

    def work(t: int) -> None:
        barrier.wait()
        for i in range(per):
            key = f"{cfg['run']}/t{t}/{i}"
            log.append(AuditEvent(operation="put", outcome="ok", tenant_id="fleet",
                                  object_key=key, size=i), durable=True)
            say(f"ACK {key}")

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    say("READY")
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    log.close()
    say("DONE " + json.dumps({"events": threads * per}))


def anchoring(cfg: dict[str, Any]) -> None:
    from residency_sdk.audit.anchors import open_anchor

    anchor = open_anchor(cfg["anchors"])

    class Announced:
        name = anchor.name

        def publish(self, cp: Any) -> None:
            anchor.publish(cp)
            say(f"ANCHOR {cp.seq} {cp.hash}")

        def checkpoints(self, log_id: str) -> Any:
            return anchor.checkpoints(log_id)

    log = AuditLog(cfg["audit"], anchors=[Announced()], anchor_every=int(cfg["every"]),
                   anchor_seconds=3600.0)
    say("READY")
    for i in range(int(cfg["events"])):
        key = f"{cfg['run']}/{i}"
        log.append(AuditEvent(operation="get", outcome="ok", tenant_id="anchored",
                              object_key=key), durable=True)
        say(f"ACK {key}")
    log.close()
    say("DONE " + json.dumps({"events": int(cfg["events"])}))


MODES = {"intent": between_intent_and_outcome, "group-commit": group_commit,
         "anchoring": anchoring}

if __name__ == "__main__":
    MODES[sys.argv[1]](json.loads(Path(sys.argv[2]).read_text()))
