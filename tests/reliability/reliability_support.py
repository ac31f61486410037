"""Shared plumbing of the reliability scenarios: counts, seeds, figures, killable workers."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WORKER = Path(__file__).with_name("reliability_worker.py")
FULL = os.environ.get("RESIDENCY_FULL_RELIABILITY") == "1"


def count(default: int, full: int) -> int:
    """The scenario size: ``full`` under ``RESIDENCY_FULL_RELIABILITY=1``."""
    return full if FULL else default


def seeded(name: str) -> random.Random:
    """A random generator for one scenario; its seed is printed (``-s`` shows it) and can
    be replayed with ``RESIDENCY_RELIABILITY_SEED``."""
    seed = int(os.environ.get("RESIDENCY_RELIABILITY_SEED") or random.SystemRandom().
               randrange(2**32))
    print(f"[reliability] {name}: seed {seed} (replay: RESIDENCY_RELIABILITY_SEED={seed})")
    rng = random.Random(seed)
    rng.seed_value = seed  # type: ignore[attr-defined]
    return rng


def figures_dir() -> Path:
    return Path(os.environ.get("RESIDENCY_RELIABILITY_FIGURES") or ".reliability")


def write_figures(scenario: str, figures: dict[str, Any]) -> Path:
    """Write one scenario's figures as JSON (``docs/reliability.md`` is filled from them)."""
    out = figures_dir()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{scenario}.json"
    doc = {"scenario": scenario, "full_counts": FULL, **figures}
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    print(f"[reliability] {scenario}: {json.dumps(doc, sort_keys=True)}")
    return path


@dataclass
class WorkerRun:
    """One worker process: its output lines and whether it was SIGKILLed."""

    lines: list[str] = field(default_factory=list)
    killed: bool = False
    returncode: int | None = None
    stderr: str = ""
    done: dict[str, Any] | None = None
    ready_to_done: float | None = None
    """Seconds from READY to DONE as the parent saw them (calibrates kill windows)."""


def run_worker(mode: str, cfg: dict[str, Any], cfg_path: Path, *,
               kill_on: Callable[[str], bool] | None = None,
               kill_after: float | None = None, timeout: float = 120.0,
               worker: Path = WORKER) -> WorkerRun:
    """Run the worker in ``mode``; SIGKILL it when ``kill_on(line)`` is true for an output
    line, or ``kill_after`` seconds after it printed READY. A worker that exits in any other
    way than success or our SIGKILL fails the test."""
    cfg_path.write_text(json.dumps(cfg))
    proc = subprocess.Popen([sys.executable, str(worker), mode, str(cfg_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = WorkerRun()
    timer: threading.Timer | None = None
    ready_at: float | None = None
    deadline = threading.Timer(timeout, proc.kill)  # a hung worker must not hang the suite
    deadline.start()

    def kill() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)

    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            run.lines.append(line)
            if line == "READY":
                ready_at = time.monotonic()
                if kill_after is not None:
                    timer = threading.Timer(kill_after, kill)
                    timer.start()
            elif line.startswith("DONE "):
                run.done = json.loads(line[5:])
                if ready_at is not None:
                    run.ready_to_done = time.monotonic() - ready_at
            if kill_on is not None and kill_on(line):
                kill()
        proc.wait(timeout=timeout)
        assert proc.stderr is not None
        run.stderr = proc.stderr.read()
    finally:
        deadline.cancel()
        if timer is not None:
            timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    run.returncode = proc.returncode
    run.killed = proc.returncode == -signal.SIGKILL
    if not run.killed and proc.returncode != 0:
        raise AssertionError(f"worker {mode} failed (exit {proc.returncode}):\n{run.stderr}")
    if run.killed and run.done is not None:
        run.killed = False  # killed after it had finished: not an interruption
    return run


def sigkilled(run: WorkerRun) -> bool:
    """True when the worker died of our SIGKILL (exit status -9) before it finished (no
    ``DONE`` line): the only way a crash scenario's kill counts."""
    return run.returncode == -signal.SIGKILL and run.done is None


def stored_events(path: Path) -> list[dict[str, Any]]:
    """Every event of a SQLite audit log, read straight from the file (not the SDK)."""
    conn = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)
    try:
        return [json.loads(row[0]) for row in
                conn.execute("SELECT event FROM audit_events ORDER BY seq")]
    finally:
        conn.close()


def unanswered_intents(path: Path, operation: str, *, object_key: str | None = None,
                       purpose_prefix: str | None = None) -> list[dict[str, Any]]:
    """The ``operation`` intents (on ``object_key``, or with a purpose starting with
    ``purpose_prefix``) in the audit log at ``path`` that no event answers: operations that
    were in progress when their process died (the log writes an intent ahead of every
    data operation and answers it with the outcome)."""
    events = stored_events(path)
    answered = {e["intent_id"] for e in events if e.get("intent_id")}
    return [e for e in events if e["operation"] == operation and e["outcome"] == "intent"
            and e["event_id"] not in answered
            and (object_key is None or e.get("object_key") == object_key)
            and (purpose_prefix is None or str(e.get("purpose") or "").startswith(
                purpose_prefix))]


class Clock:
    """Wall-clock duration of a scenario."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def seconds(self) -> float:
        return round(time.monotonic() - self.start, 2)
