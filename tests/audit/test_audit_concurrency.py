"""Several processes appending at once; a process SIGKILLed in the middle of appending."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import event

from residency_sdk.audit import AuditLog, JsonlSink, verify_jsonl, verify_log

PROCESSES, PER_PROCESS = 4, 5_000


def _append_worker(path: str, worker: int, n: int) -> None:
    # Workers 0 and 1 commit every append (fsync each); 2 and 3 write batches of 50, so
    # both modes interleave on the one chain.
    with AuditLog(path, batched=worker >= 2, batch_size=50) as log:
        for i in range(n):
            log.append(event(i, actor=f"proc-{worker}", object_key=f"w{worker}/obj-{i}"))


@pytest.mark.timeout(180)
def test_four_processes_append_to_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    AuditLog(path).close()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_worker, args=(str(path), w, PER_PROCESS))
             for w in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(170)
        assert p.exitcode == 0
    result = verify_log(path)
    assert result.ok, result.broken
    assert result.events == PROCESSES * PER_PROCESS
    import sqlite3

    conn = sqlite3.connect(path)
    per_worker = dict(conn.execute(
        "SELECT json_extract(event, '$.actor'), count(DISTINCT json_extract(event, "
        "'$.object_key')) FROM audit_events GROUP BY 1").fetchall())
    conn.close()
    assert per_worker == {f"proc-{w}": PER_PROCESS for w in range(PROCESSES)}


_CHILD = textwrap.dedent("""
    import sys
    from datetime import UTC, datetime
    from residency_sdk.audit import AuditLog, JsonlSink
    from residency_sdk.events import AuditEvent

    path, mode = sys.argv[1], sys.argv[2]
    if mode == "jsonl":
        sink = JsonlSink(path)
    else:
        sink = AuditLog(path, batched=(mode == "batched"), batch_size=10**9)
    i = 0
    while True:
        i += 1
        sink.append(AuditEvent(operation="get", outcome="ok", actor="crash-test",
                               tenant_id="akh-wien", object_key=f"k{i}", size=i))
        if mode != "batched":
            print(i, flush=True)  # acknowledged: append returned, so it is durable
        elif i % 100 == 0:
            sink.flush()
            print(i, flush=True)  # acknowledged after the explicit flush
""")


def _run_and_kill(path: Path, mode: str, acks_wanted: int) -> int:
    """Start an appender, SIGKILL it once it has acknowledged ``acks_wanted`` events
    (it is then in the middle of the next append), return the last acknowledged count."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("RESIDENCY_AUDIT_HMAC_KEY", None)
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(path), mode],
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    last = 0
    try:
        for line in proc.stdout:
            last = int(line)
            if last >= acks_wanted:
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert last >= acks_wanted
    return last


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["sync", "batched"])
def test_sigkill_while_appending_leaves_a_valid_log(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "crash.db"
    durable = 0
    for wanted in (300, 700, 500):
        acked = _run_and_kill(path, mode, wanted)
        result = verify_log(path)
        assert result.ok, result.broken
        # Everything acknowledged survived (the child may have committed a few more
        # between printing its last acknowledgement and the kill; those verify too).
        assert result.events >= durable + acked
        durable = result.events
    with AuditLog(path) as log:  # and the log keeps going after the crashes
        log.append(event(0))
    assert verify_log(path).events == durable + 1


@pytest.mark.timeout(120)
def test_sigkill_while_writing_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "crash.jsonl"
    acked = _run_and_kill(path, "jsonl", 400)
    result = verify_jsonl(path)
    assert result.verified_through >= acked
    if not result.ok:  # killed mid-line: only the unacknowledged last line is partial
        assert result.broken is not None and result.broken.kind == "partial_line"
        assert result.broken.seq == result.events + 1
    with JsonlSink(path) as sink:  # the next writer cuts the unfinished line and continues
        sink.append(event(0))
    after = verify_jsonl(path)
    assert after.ok and after.events >= acked + 1
