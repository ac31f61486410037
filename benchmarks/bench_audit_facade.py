"""What durable auditing costs where users feel it: the tenant store and check_transfer.

Two measurements, each in one process, audit on and audit off alternating round by round
(the median of the per-round ratios is reported):

- 1 KiB ``put`` + ``get`` through ``res.storage_for(tenant)`` against moto server (S3 on
  loopback), with the audit log (SQLite, on disk: every data operation's intent is
  group-committed and fsynced before the operation starts) versus ``audit=False``;
- ``put`` alone and ``get`` alone (time with audit over time without, per round);
- ``check_transfer`` from 8 threads with the audit log on (decisions are queued in order
  and committed by the log's flusher, never waited on).

Targets (issue 12): the store with audit >= 0.95x the store without;
check_transfer with audit >= 50,000/s from 8 threads.

    .venv/bin/python benchmarks/bench_audit_facade.py [--objects 300] [--rounds 7]
        [--checks 200000] [--dir DIR]

``--dir`` is where the audit log is written (default: a temporary folder on the disk the
system's temp folder is on; a tmpfs would leave out the fsync this measures).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from bench_storage import provision  # noqa: E402
from emulators import start_moto  # noqa: E402

import residency_sdk as rs  # noqa: E402
from residency_sdk.model import StorageTarget  # noqa: E402
from residency_sdk.storage.factory import open_store  # noqa: E402

PAYLOAD = b"x" * 1024
THREADS = 8


def client(moto: StorageTarget, audit: Any) -> rs.Residency:
    """A Residency whose every backend is the one moto bucket (data and tenant records)."""
    store = open_store(moto)

    def opener(target: StorageTarget, location: str) -> Any:
        return store

    return rs.Residency.load(audit=audit, storage=opener)


def put_get_rate(store: Any, n: int, tag: str) -> float:
    start = time.perf_counter()
    for i in range(n):
        key = f"{tag}/{i}.bin"
        store.put(key, PAYLOAD, data_class="phi")
        store.get(key)
    return n / (time.perf_counter() - start)


def op_ms(store: Any, n: int, tag: str, op: str) -> float:
    """Milliseconds per ``put`` (of new keys) or ``get`` (of the keys just put)."""
    start = time.perf_counter()
    for i in range(n):
        if op == "put":
            store.put(f"{tag}/{i}.bin", PAYLOAD, data_class="phi")
        else:
            store.get(f"{tag}/{i}.bin")
    return (time.perf_counter() - start) / n * 1000


def checks_rate(res: rs.Residency, total: int) -> float:
    tenant = rs.Tenant(id="clinic-bench", country="DE")
    per = total // THREADS
    barrier = threading.Barrier(THREADS + 1)

    def work() -> None:
        barrier.wait()
        for i in range(per):
            res.check_transfer(tenant, "GB" if i % 2 else "US", "phi", actor="bench")

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return per * THREADS / elapsed


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--checks", type=int, default=200_000)
    parser.add_argument("--dir", default=None, help="where the audit log is written")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as emu_dir, \
            tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        os.environ["RESIDENCY_STATE_DIR"] = tmp
        moto = start_moto(Path(emu_dir))
        try:
            target = provision("aws", moto.endpoint, moto.port)  # bucket and KMS key in DE
            tenant = rs.Tenant(id="clinic-bench", country="DE")
            audited = client(target, str(Path(tmp) / "audit.db"))
            plain = client(target, False)
            stores = {"on": audited.storage_for(tenant, provider="aws", actor="bench"),
                      "off": plain.storage_for(tenant, provider="aws", actor="bench")}
            for tag, store in stores.items():  # warm: connections, bucket check, binding
                put_get_rate(store, 20, f"warm-{tag}")
            rates: dict[str, list[float]] = {"on": [], "off": []}
            ratios = []
            for r in range(args.rounds):
                order = ("on", "off") if r % 2 == 0 else ("off", "on")
                got = {tag: put_get_rate(stores[tag], args.objects, f"{tag}-{r}")
                       for tag in order}
                for tag, rate in got.items():
                    rates[tag].append(rate)
                ratios.append(got["on"] / got["off"])
            alone: dict[str, list[float]] = {"put": [], "get": []}
            for r in range(args.rounds):
                ms = {tag: {op: op_ms(stores[tag], args.objects, f"alone-{tag}-{r}", op)
                            for op in ("put", "get")} for tag in ("on", "off")}
                for op in ("put", "get"):
                    alone[op].append(ms["on"][op] / ms["off"][op])
            check_rates = [checks_rate(audited, args.checks) for _ in range(3)]
            audited.close()
            plain.close()
        finally:
            moto.stop()
    result = {
        "put_get_per_s_audit_on": statistics.median(rates["on"]),
        "put_get_per_s_audit_off": statistics.median(rates["off"]),
        "ratio_on_over_off_median": statistics.median(ratios),
        "ratio_min": min(ratios), "ratio_max": max(ratios),
        "put_alone_time_on_over_off_median": statistics.median(alone["put"]),
        "get_alone_time_on_over_off_median": statistics.median(alone["get"]),
        "check_transfer_per_s_8_threads_audit_on": statistics.median(check_rates),
        "objects_per_round": args.objects, "rounds": args.rounds,
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
