"""Audit-trail benchmarks: append throughput, verify and report over a large log.

Run:  .venv/bin/python benchmarks/bench_audit.py [--events 1000000] [--keyed] [--dir DIR]

Targets: durable (synchronous) appends from 8 threads >= 20,000 events/s (issue 12: group
commit, one fsync shared by every thread waiting); queued appends (durable=False) >=
50,000 events/s; verify and report over 1,000,000 events in <= 10 s each (issue 4).
The log lives in DIR (default: a new folder under the system temp dir, which must be a
real disk, not /dev/shm: fsync on tmpfs costs nothing). Prints a table; the figures
measured on the project machine are in docs/audit.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from residency_sdk.audit import AuditLog, verify_log
from residency_sdk.audit.render import render
from residency_sdk.audit.report import AuditReport, build_report
from residency_sdk.events import AuditEvent

KEY = b"benchmark-key-0123456789abcdef"
N_THREADS = 8
TENANTS = [("charite-berlin", "DE", "DE"), ("akh-wien", "AT", "DE"), ("usz-zurich", "CH", "CH"),
           ("nhs-leeds", "GB", "GB"), ("mayo-rochester", "US", "US"), ("rpa-sydney", "AU", "AU")]


def templates(n: int = 2_000) -> list[AuditEvent]:
    """Varied, realistic events: puts and gets, allowed and blocked transfers."""
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        tenant, country, loc = TENANTS[i % len(TENANTS)]
        when = t0 + timedelta(seconds=i * 7)
        kind = i % 10
        if kind < 6:
            out.append(AuditEvent(
                time=when, operation="put" if kind < 4 else "get", outcome="ok",
                actor=f"svc-{i % 13}", purpose="treatment", tenant_id=tenant,
                tenant_country=country, data_class="phi", source_location=loc,
                provider="aws", region="eu-central-1", bucket=f"residency-{loc.lower()}-aws-data",
                object_key=f"{tenant}/studies/{i}/image-{i % 97}.dcm", size=100_000 + i,
                checksum=f"sha256:{i:064x}", regimes=("gdpr",)))
        elif kind < 9:
            dest = "GB" if loc != "GB" else "DE"
            out.append(AuditEvent(
                time=when, operation="transfer", outcome="ok", actor=f"dr-{i % 17}",
                tenant_id=tenant, tenant_country=country, data_class="phi",
                source_location=loc, destination_location=dest, destination_country=dest,
                is_transfer=True, mechanism="adequacy", provider="aws", region="eu-west-2",
                bucket=f"residency-{dest.lower()}-aws-data", object_key=f"{tenant}/x/{i}",
                size=5_000 + i, regimes=("gdpr",), reasons=("adequacy decision",)))
        else:
            out.append(AuditEvent(
                time=when, operation="transfer_check", outcome="blocked", actor=f"dr-{i % 17}",
                tenant_id=tenant, tenant_country=country, data_class="phi",
                source_location=loc, destination_country="US", is_transfer=True,
                regimes=("gdpr",), reasons=("EU GDPR Chapter V blocks phi data to US",)))
    return out


def timed(label: str, n: int, fn: Callable[[], object],
          results: list[tuple[str, str, str, str]]) -> float:
    """Run ``fn``; record wall time, process CPU time (all threads) and throughput.

    CPU time is printed too because a shared machine's load inflates wall time."""
    cpu0, start = time.process_time(), time.perf_counter()
    fn()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
    rate = f"{n / elapsed:,.0f} events/s" if n else ""
    results.append((label, f"{elapsed:.2f} s", f"{cpu:.2f} s", rate))
    print(f"  {label:<48} wall {elapsed:7.2f} s  cpu {cpu:7.2f} s  {rate}", flush=True)
    return elapsed


def filesystem(path: Path) -> str:
    """The type of the filesystem holding ``path`` (to tell a disk from tmpfs)."""
    try:
        out = subprocess.run(["df", "--output=fstype", str(path)], capture_output=True,
                             text=True, check=True).stdout.split()
        return out[-1]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keyed", action="store_true", help="HMAC-keyed logs")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    key = KEY if args.keyed else None
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="bench-audit-"))
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in [*workdir.glob("queued*.db*"), *workdir.glob("sync*.db*"),
                  *workdir.glob("threads*.db*")]:
        stale.unlink()
    events = templates()
    results: list[tuple[str, str, str, str]] = []
    print(f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, "
          f"{os.cpu_count()} cpus, keyed={args.keyed}, dir={workdir} "
          f"(filesystem {filesystem(workdir)})")

    n_queued = 200_000
    log = AuditLog(workdir / "queued.db", hmac_key=key)

    def queued() -> None:
        for i in range(n_queued):
            log.append(events[i % len(events)], durable=False)
        log.flush()

    timed(f"append durable=False, 1 thread ({n_queued:,})", n_queued, queued, results)
    log.close()

    n_sync = 3_000
    # The ceiling for one thread's durable appends: one bare SQLite WAL commit with fsync.
    raw = sqlite3.connect(workdir / "sync-raw.db", isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=FULL")
    raw.execute("CREATE TABLE IF NOT EXISTS t (seq INTEGER PRIMARY KEY, event TEXT)")
    payload = events[0].to_json()

    def bare() -> None:
        for _ in range(n_sync):
            raw.execute("BEGIN IMMEDIATE")
            raw.execute("INSERT INTO t (event) VALUES (?)", (payload,))
            raw.execute("COMMIT")

    timed(f"baseline: bare SQLite commit+fsync ({n_sync:,})", n_sync, bare, results)
    raw.close()
    log = AuditLog(workdir / "sync.db", hmac_key=key)

    def sync() -> None:
        for i in range(n_sync):
            log.append(events[i % len(events)])

    timed(f"append durable, 1 thread ({n_sync:,})", n_sync, sync, results)
    log.close()

    for label, durable, per_thread in (("durable", True, 5_000),
                                       ("durable=False", False, 25_000)):
        log = AuditLog(workdir / f"threads-{label}.db", hmac_key=key)

        def threaded(log: AuditLog = log, durable: bool = durable,
                     per_thread: int = per_thread) -> None:
            def work(t: int) -> None:
                for i in range(per_thread):
                    log.append(events[(t * 7919 + i) % len(events)], durable=durable)

            threads = [threading.Thread(target=work, args=(t,)) for t in range(N_THREADS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            log.flush()

        n = N_THREADS * per_thread
        timed(f"append {label}, 8 threads ({n:,})", n, threaded, results)
        print(f"    {log.commits:,} commits, {n / max(log.commits, 1):.1f} events per commit")
        log.close()
        result = verify_log(workdir / f"threads-{label}.db", hmac_key=key)
        assert result.ok and result.events == n, result

    big = workdir / "big.db"
    if not big.exists():
        log = AuditLog(big, hmac_key=key)

        def fill() -> None:
            for i in range(args.events):
                log.append(events[i % len(events)], durable=False)
            log.flush()

        timed(f"fill log ({args.events:,}, durable=False)", args.events, fill, results)
        log.close()
    size_mb = sum(p.stat().st_size for p in workdir.glob("big.db*")) / 1e6
    print(f"  log size: {size_mb:,.0f} MB")

    def verify() -> None:
        result = verify_log(big, hmac_key=key)
        assert result.ok and result.events == args.events, result

    timed(f"verify ({args.events:,})", args.events, verify, results)
    holder: dict[str, object] = {}

    def report() -> None:
        holder["r"] = build_report(big, hmac_key=key)

    timed(f"report incl. verify ({args.events:,})", args.events, report, results)
    rep = holder["r"]
    assert isinstance(rep, AuditReport)

    def render_all() -> None:
        for fmt in ("md", "html", "json", "csv"):
            render(rep, fmt)

    timed("render md+html+json+csv", 0, render_all, results)
    print("\n| benchmark | wall | CPU | throughput (wall) |\n|---|---|---|---|")
    for label, elapsed, cpu, rate in results:
        print(f"| {label} | {elapsed} | {cpu} | {rate} |")


if __name__ == "__main__":
    main()
