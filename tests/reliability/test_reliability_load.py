"""Load: 8 threads sharing one ``Residency`` and 4 processes, all appending to one audit
log, run mixed operations (put/get/head/list/delete/transfer checks) against the local
backend and moto (S3). No deadlock (every worker finishes within its timeout), no lost
audit event (the log holds exactly the events the workers' operations must produce, by
operation type), a valid chain, and every read returns the bytes last written.

Default: 500 operations per worker; ``RESIDENCY_FULL_RELIABILITY=1``: 10,000.
Figures go to ``${RESIDENCY_RELIABILITY_FIGURES:-.reliability}/load-*.json``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reliability_support import WORKER, Clock, count, seeded, write_figures
from reliability_worker import run_load_ops

import residency_sdk as rs
from residency_sdk.audit import AuditLog, verify_log
from residency_sdk.audit.log import open_store

OPS = count(500, 10_000)
THREADS, PROCESSES = 8, 4
# Generous: a worker slower than this is stuck (the default run takes seconds).
TIMEOUT = 180 + OPS * 0.3
AUDITED = ("placement", "transfer_check", "put", "get", "head", "list", "delete")

pytestmark = pytest.mark.timeout(int(TIMEOUT) + 120)


def _logged(path: Path) -> tuple[Counter[str], Counter[str]]:
    """Events in the log recording how an operation on objects ended (the write-ahead
    intents, and tenant-record writes, apart), by operation and by outcome; ``outcomes``
    also counts the intents, and the intents left without an outcome."""
    ops: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    open_intents: set[str] = set()
    store = open_store(path)
    try:
        with store.read() as snapshot:
            for row in snapshot.rows():
                event = json.loads(row[1])
                if event["outcome"] == "intent":
                    open_intents.add(event["event_id"])
                    outcomes["intent"] += 1
                    continue
                open_intents.discard(event.get("intent_id"))
                if event.get("purpose") in ("tenant_record", "lineage"):
                    continue
                ops[event["operation"]] += 1
                outcomes[event["outcome"]] += 1
    finally:
        store.close()
    outcomes["intent_without_outcome"] = len(open_intents)
    return ops, outcomes


@pytest.mark.parametrize("provider_harness", ["local", "aws"], indirect=True)
def test_load_threads_and_processes(provider_harness: Any, tmp_path: Path) -> None:
    provider = provider_harness.provider
    name = f"load-{provider}"
    rng = seeded(name)
    seed = rng.seed_value  # type: ignore[attr-defined]
    clock = Clock()
    audit = tmp_path / "audit.db"
    map_path = provider_harness.write_map(tmp_path)
    local_root = provider_harness.local_root if provider == "local" else None
    log = AuditLog(audit)
    res = rs.Residency.load(map_path, audit=log, local_root=local_root)
    problems: list[str] = []

    procs = []
    for i in range(PROCESSES):
        cfg = {"map": str(map_path), "audit": str(audit), "worker": f"proc-{i}",
               "local_root": str(local_root) if local_root else None, "state_dir": None,
               "ops": OPS, "seed": seed + 1000 + i}
        cfg_path = tmp_path / f"load-{i}.json"
        cfg_path.write_text(json.dumps(cfg))
        procs.append(subprocess.Popen([sys.executable, str(WORKER), "load", str(cfg_path)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="load")
    futures = [pool.submit(run_load_ops, res, f"thread-{i}", OPS, seed + i, stop)
               for i in range(THREADS)]
    finished, stuck = wait(futures, timeout=TIMEOUT)
    if stuck:
        stop.set()
        problems.append(f"{len(stuck)} thread(s) still running after {TIMEOUT:.0f}s: deadlock")
    pool.shutdown(wait=not stuck)
    reports = [f.result() for f in finished]
    for i, proc in enumerate(procs):
        try:
            out, err = proc.communicate(timeout=max(10.0, TIMEOUT - clock.seconds()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            problems.append(f"process {i} still running after {TIMEOUT:.0f}s: deadlock")
            continue
        if proc.returncode != 0:
            problems.append(f"process {i} failed (exit {proc.returncode}):\n{err[-3000:]}")
            continue
        done = [line for line in out.splitlines() if line.startswith("DONE ")]
        reports.append(json.loads(done[-1][5:]))
    log.close()
    res.close()

    expected: Counter[str] = Counter()
    for report in reports:
        expected.update(report)
    logged, outcomes = _logged(audit)
    mismatches = {op: (expected[op], logged[op]) for op in AUDITED
                  if expected[op] != logged[op]}
    unexpected = sorted(set(logged) - set(AUDITED))
    verified = verify_log(audit)
    figures = {
        "provider": provider, "threads": THREADS, "processes": PROCESSES,
        "ops_per_worker": OPS, "operations": expected["ops"],
        "workers_reported": len(reports), "deadlocks": len(stuck) + sum(
            "deadlock" in p for p in problems if p.startswith("process")),
        "audit_events": verified.events,
        "audit_mismatches": sum(abs(a - b) for a, b in mismatches.values())
        + sum(logged[op] for op in unexpected)
        + abs(outcomes["error"] - expected["check_expected_not_found"]),
        "audit_errors": outcomes["error"],
        "expected_not_found": expected["check_expected_not_found"],
        "chain_valid": verified.ok,
        "objects_lost": expected["check_objects_lost"],
        "corrupt_reads": expected["check_corrupt_reads"],
        "list_mismatches": expected["check_list_mismatches"],
        "wrong_decisions": expected["check_wrong_decisions"],
        "events_by_operation": {op: logged[op] for op in AUDITED},
        "duration_s": clock.seconds(), "seed": seed,
        "ops_per_second": round(expected["ops"] / max(clock.seconds(), 0.001), 1),
    }
    write_figures(name, figures)
    assert not problems, "\n".join(problems)
    assert len(reports) == THREADS + PROCESSES
    assert expected["ops"] == OPS * (THREADS + PROCESSES)
    assert verified.ok, verified.broken
    assert not mismatches, f"audit events (expected, logged) by operation: {mismatches}"
    assert not unexpected, f"unexpected audit operations {unexpected}"
    # The only failures are reads of a shared key another worker had just deleted.
    assert outcomes["error"] == expected["check_expected_not_found"]
    # Every data operation was written ahead, and every intent has its outcome.
    data_ops = sum(expected[op] for op in ("put", "get", "head", "list", "delete"))
    assert outcomes["intent"] >= data_ops and outcomes["intent_without_outcome"] == 0
    for check in ("objects_lost", "corrupt_reads", "list_mismatches", "wrong_decisions"):
        assert figures[check] == 0, (check, figures[check])
