"""Fleet load on the shared PostgreSQL audit sink: 4 processes x 8 threads x 2,500 events.

Four independent processes (service instances), each with eight threads, append durable
events to one keyed ``AuditLog("postgresql://...")`` on the real PostgreSQL the suite
starts. Every event whose ``append`` returned must be in the log exactly once (0 lost,
0 duplicated), nothing else may be there, and the whole chain must verify with the key.
Throughput (acknowledged events per second, from the start signal to the last instance
done) goes to ``${RESIDENCY_RELIABILITY_FIGURES:-.reliability}/audit-fleet-load.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from components import require
from reliability_support import write_figures

from residency_sdk.audit import verify_log
from residency_sdk.audit.chain import HMAC_KEY_ENV

psycopg = require("psycopg", "pip install 'residency-sdk[postgres]'")

PROCESSES, THREADS, EVENTS = 4, 8, 2_500
KEY = "fleet-load-test-key-0123456789abcdef"
WORKER = Path(__file__).with_name("audit_fleet_worker.py")
TIMEOUT = 240

pytestmark = pytest.mark.timeout(TIMEOUT + 60)


def test_fleet_appends_to_one_postgres_log_lose_nothing(
        postgres_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = postgres_server.create_database("fleet")
    monkeypatch.setenv(HMAC_KEY_ENV, KEY)
    procs: list[subprocess.Popen[str]] = []
    outs = [tmp_path / f"worker-{i}.json" for i in range(PROCESSES)]
    errs = [tmp_path / f"worker-{i}.err" for i in range(PROCESSES)]

    def stderr(i: int) -> str:
        return errs[i].read_text(errors="replace")[-4000:]

    try:
        for i in range(PROCESSES):
            with open(errs[i], "w") as err:  # a file: a chatty worker never blocks on a pipe
                procs.append(subprocess.Popen(
                    [sys.executable, str(WORKER), url, f"host{i}", str(THREADS),
                     str(EVENTS), str(outs[i])], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=err, text=True))
        for i, p in enumerate(procs):  # every instance has built its events, opened the log
            assert p.stdout is not None
            line = p.stdout.readline().strip()
            assert line == "READY", (line, stderr(i))
        load = os.getloadavg()[0]  # the machine may be shared: say how busy it was
        start = time.monotonic()
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("GO\n")
            p.stdin.flush()
        for i, p in enumerate(procs):
            assert p.stdout is not None
            line = p.stdout.readline().strip()
            assert line == "DONE", (line, stderr(i))
        seconds = time.monotonic() - start
        for i, p in enumerate(procs):
            assert p.wait(timeout=TIMEOUT) == 0, stderr(i)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    reports = [json.loads(out.read_text()) for out in outs]
    errors = [e for r in reports for e in r["errors"]]
    assert errors == []
    acked = Counter(i for r in reports for i in r["acked"])
    total = PROCESSES * THREADS * EVENTS
    assert sum(acked.values()) == len(acked) == total

    with psycopg.connect(url) as conn:
        stored = Counter(row[0] for row in conn.execute(
            "SELECT event::json->>'event_id' FROM residency_audit_events"))
        fsync = conn.execute("SHOW fsync").fetchone()
        sync_commit = conn.execute("SHOW synchronous_commit").fetchone()
        version = conn.execute("SHOW server_version").fetchone()
    lost = [i for i in acked if stored[i] == 0]
    duplicated = [i for i, n in stored.items() if n > 1]
    unexpected = [i for i in stored if i not in acked]
    assert (len(lost), len(duplicated), len(unexpected)) == (0, 0, 0)

    verify_start = time.monotonic()
    result = verify_log(url, hmac_key=KEY)
    verify_seconds = time.monotonic() - verify_start
    assert result.status == "verified" and result.events == total, result

    commits = sum(r["commits"] for r in reports)
    write_figures("audit-fleet-load", {
        "processes": PROCESSES, "threads_per_process": THREADS,
        "events_per_thread": EVENTS, "events": total, "acknowledged": len(acked),
        "lost": len(lost), "duplicated": len(duplicated), "unexpected": len(unexpected),
        "chain": result.status, "seconds": round(seconds, 2),
        "events_per_second": round(total / seconds),
        "commits": commits, "events_per_commit": round(total / commits, 1),
        "verify_seconds": round(verify_seconds, 2),
        "verify_events_per_second": round(total / verify_seconds),
        "server": f"PostgreSQL {version[0] if version else '?'}, fsync="
                  f"{fsync[0] if fsync else '?'}, synchronous_commit="
                  f"{sync_commit[0] if sync_commit else '?'}, 127.0.0.1",
        "keyed": True, "load_average_1m_at_start": round(load, 2),
        "cpus": os.cpu_count(),
    })
    postgres_server.drop_database(url)
