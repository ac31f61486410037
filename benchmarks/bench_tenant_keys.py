"""What a per-tenant key costs the embedded local store: reads and writes of a tenant's
object (encrypted under its tenant key, unwrapped on every open so that a destroyed key
stops even a store already open) against the same-sized object outside any tenant prefix
(encrypted under the location key, cached), in one process, interleaved rounds, medians.

    .venv/bin/python benchmarks/bench_tenant_keys.py [--objects 500] [--rounds 7]
        [--size 1024] [--dir /dev/shm]

Point ``--dir`` at a tmpfs to take the disk's fsync out of the write figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from residency_sdk.regionmap import load_region_map
from residency_sdk.storage.local import LocalStore


def _per_op_us(fn: Callable[[int], object], n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    payload = b"x" * args.size
    target = load_region_map(None).locations["DE"].backend("local")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        store = LocalStore(target, Path(tmp), location="DE")
        keys = {"tenant": [f"tenants/bench-clinic/obj/{i:06d}" for i in range(args.objects)],
                "location": [f"shared/obj/{i:06d}" for i in range(args.objects)]}
        figures: dict[str, dict[str, list[float]]] = {
            kind: {"put_us": [], "get_us": []} for kind in keys}
        for _ in range(args.rounds):
            for kind in ("tenant", "location") if _ % 2 == 0 else ("location", "tenant"):
                names = keys[kind]
                figures[kind]["put_us"].append(_per_op_us(
                    lambda i, names=names: store.put(names[i], payload), args.objects))
                figures[kind]["get_us"].append(_per_op_us(
                    lambda i, names=names: store.get(names[i]), args.objects))
        medians = {kind: {op: round(statistics.median(v), 1) for op, v in ops.items()}
                   for kind, ops in figures.items()}
        ratios = {op: round(statistics.median(
            t / loc for t, loc in zip(figures["tenant"][op], figures["location"][op],
                                      strict=True)), 2) for op in ("put_us", "get_us")}
    print(json.dumps({"objects": args.objects, "rounds": args.rounds, "size": args.size,
                      "median_us_per_op": medians, "tenant_over_location": ratios},
                     indent=2))


if __name__ == "__main__":
    main()
