"""Many threads and processes appending at once; a full disk; a fork; SIGKILL mid-append."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from conftest import event

from residency_sdk.audit import AuditLog, JsonlSink, verify_jsonl, verify_log

PROCESSES, PER_PROCESS = 4, 5_000
ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RESIDENCY_AUDIT_HMAC_KEY", None)
    return env


def _append_worker(path: str, worker: int, n: int) -> None:
    # Workers 0 and 1 append durably (group-committed with their own threads: one here);
    # 2 and 3 queue with durable=False and flush every 50, so both modes interleave.
    with AuditLog(path) as log:
        for i in range(n):
            log.append(event(i, actor=f"proc-{worker}", object_key=f"w{worker}/obj-{i}"),
                       durable=worker < 2)
            if worker >= 2 and i % 50 == 49:
                log.flush()


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
    conn = sqlite3.connect(path)
    per_worker = dict(conn.execute(
        "SELECT json_extract(event, '$.actor'), count(DISTINCT json_extract(event, "
        "'$.object_key')) FROM audit_events GROUP BY 1").fetchall())
    orders = {}
    for actor, size in conn.execute("SELECT json_extract(event, '$.actor'), "
                                    "json_extract(event, '$.size') FROM audit_events "
                                    "ORDER BY seq"):
        orders.setdefault(actor, []).append(size)
    conn.close()
    assert per_worker == {f"proc-{w}": PER_PROCESS for w in range(PROCESSES)}
    assert all(sizes == sorted(sizes) for sizes in orders.values())  # each in its order


@pytest.mark.timeout(120)
def test_eight_threads_group_commit_mixed_with_queued_events(tmp_path: Path) -> None:
    path = tmp_path / "threads.db"
    log = AuditLog(path)
    per_thread = 500

    def work(t: int) -> None:
        for i in range(per_thread):
            # threads 0-5 append durably (intents); 6 and 7 queue (decisions)
            log.append(event(i, actor=f"thread-{t}"), durable=t < 6)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.flush()
    commits = log.commits
    log.close()
    result = verify_log(path)
    assert result.ok and result.events == 8 * per_thread
    assert commits < 6 * per_thread / 2, f"{commits} commits: appenders did not share them"
    conn = sqlite3.connect(path)
    orders: dict[str, list[int]] = {}
    for text, in conn.execute("SELECT event FROM audit_events ORDER BY seq"):
        data = json.loads(text)
        orders.setdefault(data["actor"], []).append(data["size"])
    conn.close()
    assert {a: len(s) for a, s in orders.items()} == {f"thread-{t}": per_thread
                                                      for t in range(8)}
    assert all(sizes == sorted(sizes) for sizes in orders.values())


def _forked_child(path: str) -> None:
    # Uses the parent's AuditLog object: the child must open its own connection and
    # leave the parent's queued events alone.
    log = _SHARED["log"]
    log.append(event(100, actor="child"))
    log.append(event(101, actor="child"), durable=False)
    log.close()


_SHARED: dict[str, AuditLog] = {}


@pytest.mark.timeout(60)
def test_forked_child_appends_through_its_own_connection(tmp_path: Path) -> None:
    path = tmp_path / "fork.db"
    log = AuditLog(path)
    log.append(event(0, actor="parent"))
    log.append(event(1, actor="parent"), durable=False)  # queued in the parent
    _SHARED["log"] = log
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_forked_child, args=(str(path),))
    child.start()
    child.join(50)
    assert child.exitcode == 0
    log.append(event(2, actor="parent"))
    log.close()
    _SHARED.clear()
    result = verify_log(path)
    assert result.ok and result.events == 5
    conn = sqlite3.connect(path)
    actors = [r[0] for r in conn.execute(
        "SELECT json_extract(event, '$.actor') FROM audit_events ORDER BY seq")]
    conn.close()
    assert actors.count("parent") == 3 and actors.count("child") == 2  # none twice


_FULL_DISK = textwrap.dedent("""
    import resource, signal, sys, os
    from datetime import UTC, datetime
    from residency_sdk.audit import AuditLog
    from residency_sdk.events import AuditEvent
    from residency_sdk.errors import AuditUnavailable

    path = sys.argv[1]
    log = AuditLog(path)
    log.append(AuditEvent(operation="put", outcome="ok", object_key="first"))
    # The disk is "full" a few pages past the current files: writes beyond fail (EFBIG).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    size = max(os.path.getsize(path), os.path.getsize(path + "-wal"))
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 64 * 1024, size + 64 * 1024))
    acked = 1
    try:
        for i in range(100_000):
            log.append(AuditEvent(operation="get", outcome="ok", object_key=f"k{i}",
                                  size=i, reasons=("x" * 500,)))
            acked += 1
    except AuditUnavailable as exc:
        print("AuditUnavailable", acked, str(exc).replace("\\n", " "), flush=True)
    except BaseException as exc:
        print("LEAKED", type(exc).__module__, type(exc).__name__, exc, flush=True)
    os._exit(0)  # the refused event stays unrecorded; do not retry at exit
""")


@pytest.mark.timeout(120)
def test_full_disk_raises_audit_unavailable_and_loses_nothing_acknowledged(
        tmp_path: Path) -> None:
    path = tmp_path / "full.db"
    out = subprocess.run([sys.executable, "-c", _FULL_DISK, str(path)], env=_env(),
                         capture_output=True, text=True, timeout=110)
    assert out.returncode == 0, out.stderr
    kind, acked, message = out.stdout.strip().split(" ", 2)
    assert kind == "AuditUnavailable", out.stdout  # never a raw sqlite3 error
    assert str(path) in message and ("full" in message or "disk" in message), message
    result = verify_log(path)
    assert result.ok, result.broken
    assert result.events >= int(acked)  # every acknowledged append is on disk


_CHILD = textwrap.dedent("""
    import sys
    from datetime import UTC, datetime
    from residency_sdk.audit import AuditLog, JsonlSink
    from residency_sdk.events import AuditEvent

    path, mode = sys.argv[1], sys.argv[2]
    sink = JsonlSink(path) if mode == "jsonl" else AuditLog(path)
    i = 0
    while True:
        i += 1
        sink.append(AuditEvent(operation="get", outcome="ok", actor="crash-test",
                               tenant_id="akh-wien", object_key=f"k{i}", size=i),
                    durable=mode != "queued")
        if mode != "queued":
            print(i, flush=True)  # acknowledged: append returned, so it is durable
        elif i % 100 == 0:
            sink.flush()
            print(i, flush=True)  # acknowledged after the explicit flush
""")


def _run_and_kill(path: Path, mode: str, acks_wanted: int) -> int:
    """Start an appender, SIGKILL it once it has acknowledged ``acks_wanted`` events
    (it is then in the middle of the next append), return the last acknowledged count."""
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(path), mode],
                            stdout=subprocess.PIPE, text=True, env=_env())
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
@pytest.mark.parametrize("mode", ["durable", "queued"])
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
