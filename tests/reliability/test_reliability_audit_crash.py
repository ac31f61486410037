"""Crash consistency of the audit trail itself: SIGKILL between a data operation's intent
and its outcome, during a group commit of 8 threads, and during anchoring.

After every kill: no acknowledged event is lost (every intent or event the worker saw
``append`` return for is in the log), the chain verifies (against the anchors too), every
gap is explained (an intent with no outcome is listed as "outcome unknown", by verify and
by the report), and the log accepts appends again.

Default: a few runs per scenario; ``RESIDENCY_FULL_RELIABILITY=1``: 20 runs each.
Figures go to ``${RESIDENCY_RELIABILITY_FIGURES:-.reliability}/crash-audit-*.json``.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reliability_support import Clock, count, run_worker, seeded, sigkilled, write_figures

from residency_sdk.audit import AuditLog, build_report, verify_log
from residency_sdk.audit.anchors import LocalAnchorFolder
from residency_sdk.events import AuditEvent

RUNS = count(5, 20)
WORKER = Path(__file__).with_name("audit_crash_worker.py")

pytestmark = pytest.mark.timeout(600 if RUNS > 5 else 240)


def stored_events(path: Path) -> list[dict[str, Any]]:
    """Every event in the log, read straight from the file (not through the SDK)."""
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        return [json.loads(row[0]) for row in
                conn.execute("SELECT event FROM audit_events ORDER BY seq")]
    finally:
        conn.close()


def lines(run: Any, prefix: str) -> list[str]:
    return [line[len(prefix):] for line in run.lines if line.startswith(prefix)]


def finish(name: str, clock: Clock, rng: Any, figures: dict[str, Any],
           problems: list[str]) -> None:
    write_figures(name, {**figures, "seconds": clock.seconds(),
                         "seed": rng.seed_value, "problems": len(problems)})
    assert not problems, "\n".join(problems)


def test_kill_between_intent_and_outcome(tmp_path: Path) -> None:
    """The worker is killed while a put's intent is durable and the store is still
    writing: the intent is in the log, nothing claims the put happened, and verify and
    the report both show that operation's outcome as unknown."""
    rng = seeded("crash-audit-intent")
    clock = Clock()
    audit = tmp_path / "audit.db"
    problems: list[str] = []
    figures = {"runs": 0, "kills_between_intent_and_outcome": 0, "intents_lost": 0,
               "unknown_explained": 0, "unknown_unexplained": 0}
    for i in range(RUNS):
        target = rng.randrange(1, 6)  # kill at the target-th put's intent
        seen = {"n": 0}

        def kill_on(line: str, t: int = target, s: dict[str, int] = seen) -> bool:
            if line.startswith("INTENT "):
                s["n"] += 1
                return s["n"] >= t
            return False

        run = run_worker("intent", {"audit": str(audit), "tenant": f"clinic-{i}",
                                    "puts": 50, "delay": 0.3},
                         tmp_path / f"cfg-{i}.json", kill_on=kill_on, worker=WORKER)
        figures["runs"] += 1
        assert sigkilled(run), (f"run {i}: the worker was not killed by SIGKILL mid-operation "
                                f"(exit status {run.returncode}, done {run.done})")
        intents = lines(run, "INTENT ")
        finished = len(lines(run, "PUT "))
        # Landed between intent and outcome: the last intent's put never reported back.
        # (Tenant-record writes have intents too, so count only the put intents we wait on.)
        events = stored_events(audit)
        by_id = {e["event_id"]: e for e in events}
        answered = {e["intent_id"] for e in events if e.get("intent_id")}
        lost = [x for x in intents if x not in by_id]
        figures["intents_lost"] += len(lost)
        if lost:
            problems.append(f"run {i}: acknowledged intents missing from the log: {lost}")
        last = intents[-1]
        if last in answered:
            problems.append(f"run {i}: the kill did not land between intent and outcome "
                            f"(intent {last} has an outcome)")
            continue
        figures["kills_between_intent_and_outcome"] += 1
        if by_id[last]["operation"] != "put" or finished >= 50:
            problems.append(f"run {i}: unexpected last intent {by_id[last]}")
        result = verify_log(audit)
        if not result.ok:
            problems.append(f"run {i}: chain does not verify after the kill: {result.broken}")
        unknown = {u[1] for u in result.outcome_unknown}
        expected = {x for x in by_id if by_id[x]["outcome"] == "intent"} - answered
        if unknown == expected and last in unknown:
            figures["unknown_explained"] += 1
        else:
            figures["unknown_unexplained"] += 1
            problems.append(f"run {i}: verify lists {sorted(unknown)} as outcome unknown, "
                            f"the log holds unanswered intents {sorted(expected)}")
        report = build_report(audit).to_dict()
        shown = {row["event_id"] for row in report["outcome_unknown"]}
        if shown != expected:
            problems.append(f"run {i}: the report shows {sorted(shown)} as outcome unknown, "
                            f"expected {sorted(expected)}")
    # The log takes appends again after all those kills.
    with AuditLog(audit) as log:
        log.append(AuditEvent(operation="get", outcome="ok", tenant_id="after"))
    if not verify_log(audit).ok:
        problems.append("the log does not verify after appending past the crashes")
    finish("crash-audit-intent", clock, rng, figures, problems)


def test_kill_during_group_commit(tmp_path: Path) -> None:
    """8 threads append durably; the process is killed at a random moment. Every event
    whose append returned is in the log exactly once, and the chain verifies."""
    rng = seeded("crash-audit-group-commit")
    clock = Clock()
    audit = tmp_path / "audit.db"
    problems: list[str] = []
    figures = {"runs": 0, "kills": 0, "acknowledged": 0, "acknowledged_lost": 0,
               "duplicates": 0, "unacknowledged_kept": 0}
    for i in range(RUNS):
        acks = {"n": 0}
        threshold = rng.randrange(50, 1500)

        def kill_on(line: str, t: int = threshold, s: dict[str, int] = acks) -> bool:
            if line.startswith("ACK "):
                s["n"] += 1
                return s["n"] >= t
            return False

        run = run_worker("group-commit", {"audit": str(audit), "threads": 8, "events": 400,
                                          "run": f"r{i}"},
                         tmp_path / f"cfg-{i}.json", kill_on=kill_on, worker=WORKER)
        figures["runs"] += 1
        figures["kills"] += int(sigkilled(run))
        if not sigkilled(run):
            problems.append(f"run {i}: not killed by SIGKILL before it finished (exit "
                            f"status {run.returncode}) at {threshold} acks")
        acked = set(lines(run, "ACK "))
        # Killed mid-operation: the threads were still appending (not every event made it).
        if len(acked) >= 8 * 400:
            problems.append(f"run {i}: all {len(acked)} events were acknowledged: the kill "
                            "did not land while the threads were appending")
        figures["acknowledged"] += len(acked)
        keys = [e["object_key"] for e in stored_events(audit)
                if (e.get("object_key") or "").startswith(f"r{i}/")]
        missing = acked - set(keys)
        figures["acknowledged_lost"] += len(missing)
        figures["duplicates"] += len(keys) - len(set(keys))
        figures["unacknowledged_kept"] += len(set(keys) - acked)
        if missing:
            problems.append(f"run {i}: {len(missing)} acknowledged events lost, e.g. "
                            f"{sorted(missing)[:3]}")
        if len(keys) != len(set(keys)):
            problems.append(f"run {i}: events stored twice")
        result = verify_log(audit)
        if not result.ok:
            problems.append(f"run {i}: chain broken after the kill: {result.broken}")
    with AuditLog(audit) as log:
        log.append(AuditEvent(operation="get", outcome="ok", tenant_id="after"))
    if not verify_log(audit).ok:
        problems.append("the log does not verify after appending past the crashes")
    finish("crash-audit-group-commit", clock, rng, figures, problems)


def test_kill_during_anchoring(tmp_path: Path) -> None:
    """The writer anchors every few events to a local anchor folder and is killed at a
    random moment (sometimes mid-publish). No acknowledged event is lost, no anchor is
    half-written, the log verifies against every anchor, and a restarted writer anchors
    on without a conflict."""
    rng = seeded("crash-audit-anchoring")
    clock = Clock()
    audit = tmp_path / "audit.db"
    folder = tmp_path / "anchors"
    problems: list[str] = []
    figures = {"runs": 0, "kills": 0, "anchors_published": 0, "acknowledged_lost": 0,
               "anchors_unreadable": 0}
    for i in range(RUNS):
        # Anchors go out every 5 events, so a kill at a random acknowledged event lands
        # before, during or after a publish.
        threshold = rng.randrange(10, 300)
        seen = {"n": 0}

        def kill_on(line: str, t: int = threshold, s: dict[str, int] = seen) -> bool:
            if line.startswith("ACK "):
                s["n"] += 1
                return s["n"] >= t
            return False

        run = run_worker("anchoring", {"audit": str(audit), "anchors": str(folder),
                                       "every": 5, "events": 400, "run": f"r{i}"},
                         tmp_path / f"cfg-{i}.json", kill_on=kill_on, worker=WORKER)
        figures["runs"] += 1
        figures["kills"] += int(sigkilled(run))
        figures["anchors_published"] += len(lines(run, "ANCHOR "))
        acked = set(lines(run, "ACK "))
        # Killed mid-operation: by SIGKILL, while the writer was still appending.
        if not sigkilled(run) or len(acked) >= 400:
            problems.append(f"run {i}: not killed by SIGKILL while appending (exit status "
                            f"{run.returncode}, {len(acked)} of 400 events acknowledged)")
        keys = {e["object_key"] for e in stored_events(audit)
                if (e.get("object_key") or "").startswith(f"r{i}/")}
        if acked - keys:
            figures["acknowledged_lost"] += len(acked - keys)
            problems.append(f"run {i}: acknowledged events lost: {sorted(acked - keys)[:3]}")
        try:
            anchors = LocalAnchorFolder(folder)
            result = verify_log(audit, anchors=[anchors])
        except Exception as exc:  # an unreadable (half-written) anchor is a finding
            figures["anchors_unreadable"] += 1
            problems.append(f"run {i}: anchors unreadable after the kill: {exc!r}")
            continue
        if not result.ok:
            problems.append(f"run {i}: log does not verify against its anchors: "
                            f"{result.broken}")
    # A restarted writer anchors on (new counter, no name clash), and the whole history
    # still verifies against every anchor ever published.
    with AuditLog(audit, anchors=[LocalAnchorFolder(folder)], anchor_every=1) as log:
        for n in range(3):
            log.append(AuditEvent(operation="get", outcome="ok", tenant_id="after",
                                  object_key=f"after/{n}"))
    final = verify_log(audit, anchors=[LocalAnchorFolder(folder)])
    if not final.ok:
        problems.append(f"after restart: {final.broken}")
    finish("crash-audit-anchoring", clock, rng, figures, problems)
