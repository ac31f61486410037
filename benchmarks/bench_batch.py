"""Batch upload benchmark: an imaging study through ``TenantStore.put_many`` against raw
boto3, on a moto server this script starts on 127.0.0.1.

A study of ``--objects`` objects of ``--size-kib`` KiB (default 500 x 512 KiB) is uploaded
in every round by each variant, interleaved (A B C D, then the next round in a rotated
order), each to its own keys, which are deleted (untimed) after each round so that moto
does not fill up:

- ``raw_seq``: raw boto3, one ``put_object`` after another, with SSE-KMS (the yardstick);
- ``sdk_put_many``: ``res.storage_for(tenant).put_many(..., concurrency=C)``: residency
  checks, per-tenant KMS key, CRC32C, object marks and two audit events per object in a
  real audit log (SQLite, on by default);
- ``sdk_seq``: the SDK's ``put`` one after another (what users had before ``put_many``);
- ``raw_threads``: raw boto3 ``put_object`` on C threads (the ceiling moto allows).

For each: median wall seconds of the rounds, objects per second, and client CPU per
object (``time.process_time`` of this process over the variant: every thread of the
client, none of moto's, which runs in its own process). Ratios are medians of per-round
ratios against ``raw_seq``.

Targets (issue 19): ``sdk_put_many`` >= 1.3x ``raw_seq``; its CPU per object <= raw's.

    .venv/bin/python benchmarks/bench_batch.py [--objects 500] [--size-kib 512]
        [--rounds 5] [--concurrency 8] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

import pytest  # noqa: E402  (MonkeyPatch: the test harness sets the environment with it)
from storage_harness import Emulators, ProviderHarness  # noqa: E402

import residency_sdk as rs  # noqa: E402

TENANT = rs.Tenant(id="clinic-imaging", country="DE")


class Bench:
    """The clients and the payload, against one moto server."""

    def __init__(self, harness: ProviderHarness, tmp: Path, size: int,
                 concurrency: int) -> None:
        import boto3

        self.res = harness.residency(tmp, audit=str(tmp / "audit.db"))
        self.store = self.res.storage_for(TENANT, actor="bench")
        self.target = self.store.target
        self.raw = boto3.client("s3", region_name=self.target.region,
                                endpoint_url=harness.endpoint)
        self.payload = os.urandom(size)
        self.concurrency = concurrency
        self.pool = ThreadPoolExecutor(concurrency)

    def raw_put(self, key: str) -> None:
        self.raw.put_object(Bucket=self.target.bucket, Key=key, Body=self.payload,
                            ServerSideEncryption="aws:kms", SSEKMSKeyId=self.target.kms_key)

    def variants(self, n: int) -> dict[str, Callable[[str], None]]:
        def raw_seq(tag: str) -> None:
            for i in range(n):
                self.raw_put(f"raw-seq/{tag}/{i:05}.dcm")

        def raw_threads(tag: str) -> None:
            list(self.pool.map(lambda i: self.raw_put(f"raw-threads/{tag}/{i:05}.dcm"),
                               range(n)))

        def sdk_put_many(tag: str) -> None:
            results = self.store.put_many(
                ((f"many/{tag}/{i:05}.dcm", self.payload) for i in range(n)),
                concurrency=self.concurrency)
            failed = [r for r in results if not r.ok]
            if failed:
                raise SystemExit(f"put_many failed: {failed[0].error}")

        def sdk_seq(tag: str) -> None:
            for i in range(n):
                self.store.put(f"seq/{tag}/{i:05}.dcm", self.payload)

        return {"raw_seq": raw_seq, "sdk_put_many": sdk_put_many, "sdk_seq": sdk_seq,
                "raw_threads": raw_threads}

    def clear(self) -> None:
        """Delete every object the round wrote (untimed)."""
        bucket = self.target.bucket
        for page in self.raw.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])
                    if not o["Key"].startswith("_residency/")]
            for start in range(0, len(keys), 1000):
                self.raw.delete_objects(Bucket=bucket,
                                        Delete={"Objects": keys[start:start + 1000]})


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        emulators = Emulators(tmp)
        env = pytest.MonkeyPatch()
        try:
            harness = ProviderHarness("aws", emulators, env, tmp)
            bench = Bench(harness, tmp, args.size_kib * 1024, args.concurrency)
            variants = bench.variants(args.objects)
            # Warm-up: connections, the tenant's KMS key, the bucket-region check.
            for name, fn in variants.items():
                fn("warm") if name != "raw_seq" else bench.raw_put("warm")
            bench.clear()
            wall: dict[str, list[float]] = {name: [] for name in variants}
            cpu: dict[str, list[float]] = {name: [] for name in variants}
            names = list(variants)
            for r in range(args.rounds):
                order = names[r % len(names):] + names[:r % len(names)]
                for name in order:
                    started, cpu_started = time.perf_counter(), time.process_time()
                    variants[name](f"r{r}")
                    wall[name].append(time.perf_counter() - started)
                    cpu[name].append(time.process_time() - cpu_started)
                    if args.verbose:
                        print(f"round {r} {name}: {wall[name][-1]:.3f} s wall, "
                              f"{cpu[name][-1]:.3f} s CPU", file=sys.stderr)
                bench.clear()
            bench.res.close()
        finally:
            env.undo()
            emulators.stop_all()
    n = args.objects
    out: dict[str, Any] = {
        "objects": n, "size_kib": args.size_kib, "rounds": args.rounds,
        "concurrency": args.concurrency, "variants": {}}
    for name in names:
        out["variants"][name] = {
            "wall_s": round(statistics.median(wall[name]), 3),
            "objects_per_s": round(n / statistics.median(wall[name]), 1),
            "cpu_ms_per_object": round(1000 * statistics.median(cpu[name]) / n, 3),
            "speed_vs_raw_seq": round(statistics.median(
                raw / mine for raw, mine in zip(wall["raw_seq"], wall[name], strict=True)), 3),
            "cpu_vs_raw_seq": round(statistics.median(
                mine / raw for raw, mine in zip(cpu["raw_seq"], cpu[name], strict=True)), 3),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=500)
    parser.add_argument("--size-kib", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--verbose", action="store_true", help="every round on stderr")
    args = parser.parse_args()
    out = run(args)
    if args.json:
        print(json.dumps(out))
        return
    print(f"{out['objects']} x {out['size_kib']} KiB, {out['rounds']} rounds, "
          f"concurrency {out['concurrency']} (moto server on 127.0.0.1)")
    print(f"{'variant':14} {'wall s':>8} {'obj/s':>8} {'CPU ms/obj':>11} "
          f"{'speed x':>8} {'CPU x':>7}")
    for name, v in out["variants"].items():
        print(f"{name:14} {v['wall_s']:8.3f} {v['objects_per_s']:8.1f} "
              f"{v['cpu_ms_per_object']:11.3f} {v['speed_vs_raw_seq']:8.3f} "
              f"{v['cpu_vs_raw_seq']:7.3f}")


if __name__ == "__main__":
    main()
