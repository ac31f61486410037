"""Tenant store overhead: ``res.storage_for(tenant).put/get`` against the raw adapter below it.

Everything the tenant store adds per operation (key validation into the tenant prefix, the
placement and BAA check, object marks, failover wrapping, one audit event per operation)
is measured against the same adapter called directly, on the embedded local backend, in
one process, alternating in rounds (the median of the per-round ratios is reported).

    .venv/bin/python benchmarks/bench_tenant_store.py [--objects 2000] [--rounds 5]
        [--dir /dev/shm]

Point ``--dir`` at a tmpfs (``/dev/shm``) to take the disk's fsync out of the figure.

The audit hook is an in-memory list, so the figure is the SDK's own overhead, not SQLite's
(``bench_audit.py`` measures the audit log).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import residency_sdk as rs

PAYLOAD = b"x" * 1024


def _round(fn: Any, n: int) -> float:
    start = time.perf_counter()
    fn(n)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where the local backend writes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        events: list[Any] = []
        res = rs.Residency.load(local_root=Path(tmp), audit_hooks=[events.append])
        tenant = rs.Tenant(id="clinic-bench", country="DE")
        store = res.storage_for(tenant, actor="bench")
        raw = res.store(res.map.locations["DE"].backends["local"], "DE")

        def through_store(n: int) -> None:
            for i in range(n):
                store.put(f"obj/{i}", PAYLOAD, data_class="phi")
                store.get(f"obj/{i}")

        def raw_adapter(n: int) -> None:
            for i in range(n):
                raw.put(f"raw/{i}", PAYLOAD, metadata={"k": "v"})
                raw.get(f"raw/{i}")

        ratios, store_rates, raw_rates = [], [], []
        for _ in range(args.rounds):
            events.clear()
            s = _round(through_store, args.objects)
            r = _round(raw_adapter, args.objects)
            store_rates.append(s)
            raw_rates.append(r)
            ratios.append(s / r)
        res.close()
    print(json.dumps({
        "objects": args.objects, "rounds": args.rounds,
        "tenant_store_put_get_per_s": round(statistics.median(store_rates)),
        "raw_adapter_put_get_per_s": round(statistics.median(raw_rates)),
        "tenant_store_vs_raw_median_ratio": round(statistics.median(ratios), 3),
    }))


if __name__ == "__main__":
    main()
