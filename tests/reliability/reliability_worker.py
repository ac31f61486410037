"""Worker process for the crash-consistency and load scenarios (run as a subprocess).

``python reliability_worker.py MODE CONFIG_JSON``. Crash modes print progress lines the
parent uses to pick a random kill point (``READY``, ``P <bytes so far>`` of an upload or
of a transfer's copy, ``D <backend>`` per object an erasure deleted, ``N <events
durable>``) and ``DONE <json>`` when they finish uninterrupted. ``load`` runs a share of
the load scenario and prints ``DONE <json counts>``.

Also imported by the tests (``run_load_ops``) so threads run exactly the same code.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import residency_sdk as rs
from residency_sdk.errors import ObjectNotFound

TENANT_COUNTRY = "DE"
TRANSFER_TO = "FR"  # an allowed cross-border copy (GDPR: within the EEA)
BLOCKED_TO = "US"   # phi to the US without a mechanism: always blocked


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def load_residency(cfg: dict[str, Any], audit: Any) -> rs.Residency:
    """The Residency the scenario runs against (local backend or the emulator map)."""
    return rs.Residency.load(cfg.get("map"), audit=audit, local_root=cfg.get("local_root"),
                             state_dir=cfg.get("state_dir"))


# --- crash modes ----------------------------------------------------------------------


def crash_upload(cfg: dict[str, Any]) -> None:
    res = load_residency(cfg, cfg["audit"])
    store = res.storage_for(rs.Tenant(id=cfg["tenant"], country=TENANT_COUNTRY))
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        say(f"P {done}")

    say("READY")
    with open(cfg["payload"], "rb") as fh:  # streamed, never read whole
        info = store.put(cfg["key"], fh, data_class="phi", progress=progress)
    say("DONE " + json.dumps({"checksum": info.checksum, "size": info.size}))


class AnnouncingReader:
    """A reader that prints ``P <bytes read so far>`` as the copy reads it."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._done = 0

    def _announce(self, n: int) -> None:
        if n:
            self._done += n
            say(f"P {self._done}")

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._inner.read(size)
        self._announce(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        n = self._inner.readinto(buffer) or 0
        self._announce(n)
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __enter__(self) -> AnnouncingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.close()


class AnnouncingStore:
    """A store whose readers announce their progress (the transfer's kill points); every
    other call goes to the real adapter."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def open(self, key: str) -> AnnouncingReader:
        return AnnouncingReader(self._inner.open(key))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def crash_transfer(cfg: dict[str, Any]) -> None:
    from residency_sdk.storage.factory import open_store

    def opener(target: Any, location: str) -> Any:
        return AnnouncingStore(open_store(target, local_root=cfg.get("local_root"),
                                          location=location))

    res = rs.Residency.load(cfg.get("map"), audit=cfg["audit"],
                            local_root=cfg.get("local_root"), state_dir=cfg.get("state_dir"),
                            storage=opener)
    tenant = rs.Tenant(id=cfg["tenant"], country=TENANT_COUNTRY)
    say("READY")
    info = res.transfer(tenant, cfg["key"], TRANSFER_TO, "phi", actor="crash-test")
    say("DONE " + json.dumps({"checksum": info.checksum, "size": info.size}))


def crash_erase(cfg: dict[str, Any]) -> None:
    res = load_residency(cfg, cfg["audit"])
    tenant = rs.Tenant(id=cfg["tenant"], country=TENANT_COUNTRY)

    def deleted(backend: str, _key: str) -> None:
        say(f"D {backend}")  # one line per object deleted: the parent's kill points

    tracker = res.erasure_tracker(progress=deleted, actor="crash-test")
    say("READY")
    receipt = tracker.erase(tenant, providers=cfg.get("providers"))
    say("DONE " + json.dumps({"request_id": receipt.request_id, "objects": receipt.objects}))


def crash_audit(cfg: dict[str, Any]) -> None:
    from residency_sdk.audit import AuditLog

    # "batched": events queued with durable=False (committed by the writer's flusher in
    # the background), acknowledged as durable only by a flush every batch_size events.
    log = AuditLog(cfg["audit"])
    queued, batch_size = bool(cfg.get("batched")), int(cfg.get("batch_size", 50))
    say("READY")
    durable = 0
    for i in range(int(cfg["events"])):
        event = rs.AuditEvent(operation="put", outcome="ok", tenant_id=cfg["tenant"],
                              object_key=f"k/{i}", size=i)
        log.append(event, durable=not queued)
        if not queued:
            durable += 1
        elif (i + 1) % batch_size == 0:
            log.flush()
            durable = i + 1
        say(f"N {durable}")
    log.close()
    say("DONE " + json.dumps({"events": int(cfg["events"])}))


# --- load -------------------------------------------------------------------------------


def run_load_ops(res: rs.Residency, worker: str, ops: int, seed: int,
                 stop: threading.Event | None = None) -> dict[str, int]:
    """``ops`` mixed operations of one worker; returns the number of audit events each
    operation type must have produced (by event ``operation``) and its check counts.

    Most operations use the worker's own tenant, so its expected object set is exact:
    every get must return exactly the bytes last put, every list exactly the live keys.
    A tenth race all other workers on a shared tenant's keys (see :func:`_shared_op`).
    """
    rng = random.Random(seed)
    tenant = rs.Tenant(id=f"load-{worker}", country=TENANT_COUNTRY)
    expected: Counter[str] = Counter()
    store = res.storage_for(tenant, actor=worker)
    expected["placement"] += 1
    live: dict[str, bytes] = {}
    classes_put: set[str] = set()
    checks = Counter[str]()
    shared: list[Any] = []  # the shared tenant's store, opened on first use
    for _ in range(ops):
        if stop is not None and stop.is_set():
            break
        if rng.random() < SHARED_SHARE:
            if not shared:
                shared.append(res.storage_for(SHARED_TENANT, actor=worker))
                expected["placement"] += 1
            op = _shared_op(shared[0], rng, checks)
            expected[op] += 1
            expected["ops"] += 1
            continue
        roll = rng.random()
        if roll < 0.30 or not live:
            key = f"obj/{rng.randrange(20)}"
            data = rng.randbytes(rng.randrange(0, 4096))
            dc = rng.choice(("phi", "personal"))
            store.put(key, data, data_class=dc)
            # The store decides and audits each class's placement once, as a placement
            # event; phi's was audited when the store was bound.
            if dc not in classes_put and dc != "phi":
                classes_put.add(dc)
                expected["placement"] += 1
            live[key] = data
            expected["put"] += 1
        elif roll < 0.55:
            key = rng.choice(sorted(live))
            if store.get(key) != live[key]:
                checks["corrupt_reads"] += 1
            expected["get"] += 1
        elif roll < 0.70:
            key = rng.choice(sorted(live))
            info = store.head(key)
            if info.size != len(live[key]):
                checks["corrupt_reads"] += 1
            expected["head"] += 1
        elif roll < 0.80:
            keys = sorted(o.key for o in store.list("obj/"))
            if keys != sorted(live):
                checks["list_mismatches"] += 1
            expected["list"] += 1
        elif roll < 0.90:
            key = rng.choice(sorted(live))
            if not store.delete(key):
                checks["objects_lost"] += 1
            del live[key]
            expected["delete"] += 1
        else:
            to = rng.choice((TRANSFER_TO, BLOCKED_TO))
            decision = res.check_transfer(tenant, to, "phi", actor=worker)
            if decision.allowed != (to == TRANSFER_TO):
                checks["wrong_decisions"] += 1
            expected["transfer_check"] += 1
        expected["ops"] += 1
    # Every object still expected must still be there, byte for byte.
    for key, data in live.items():
        try:
            if store.get(key) != data:
                checks["corrupt_reads"] += 1
        except ObjectNotFound:
            checks["objects_lost"] += 1
        expected["get"] += 1
    return {**expected, **{f"check_{k}": v for k, v in checks.items()}}


SHARED_TENANT = rs.Tenant(id="load-shared", country=TENANT_COUNTRY)
SHARED_SHARE = 0.1
"""A tenth of each worker's operations race every other worker on a few shared keys."""


def _shared_op(store: Any, rng: random.Random, checks: Counter[str]) -> str:
    """One put, get or delete on a key every worker writes. Nothing predicts which write
    wins, so the check is integrity: a read is a whole object some worker wrote (its
    first 32 bytes are the SHA-256 of the rest) or ObjectNotFound, never a torn one."""
    key = f"shared/{rng.randrange(4)}"
    op = rng.choice(("put", "get", "delete"))
    if op == "put":
        body = rng.randbytes(rng.randrange(0, 8192))
        store.put(key, hashlib.sha256(body).digest() + body, data_class="phi")
    elif op == "get":
        try:
            data = store.get(key)
        except ObjectNotFound:  # audited with outcome "error": counted to match
            checks["expected_not_found"] += 1
            return op
        if hashlib.sha256(data[32:]).digest() != data[:32]:
            checks["corrupt_reads"] += 1
    else:
        store.delete(key)
    return op


def load(cfg: dict[str, Any]) -> None:
    from residency_sdk.audit import AuditLog

    log = AuditLog(cfg["audit"])
    res = load_residency(cfg, log)
    say("READY")
    counts = run_load_ops(res, cfg["worker"], int(cfg["ops"]), int(cfg["seed"]))
    res.close()
    log.close()
    say("DONE " + json.dumps(counts))


MODES = {"crash-upload": crash_upload, "crash-transfer": crash_transfer,
         "crash-erase": crash_erase, "crash-audit": crash_audit, "load": load}

if __name__ == "__main__":
    MODES[sys.argv[1]](json.loads(Path(sys.argv[2]).read_text()))
