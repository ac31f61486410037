"""Print the crash and load figures the reliability tests wrote as a Markdown table.

    .venv/bin/python tests/reliability/reliability_table.py [FIGURES_DIR]

``FIGURES_DIR`` defaults to ``${RESIDENCY_RELIABILITY_FIGURES:-.reliability}``; only the
``crash-*.json`` and ``load-*.json`` files are read (other helpers' scenarios have their
own files). Used to fill ``docs/reliability.md`` from a real run.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

COLUMNS = ("scenario", "runs / workers", "kills (SIGKILL)", "finished before kill",
           "operations", "audit events", "objects lost", "corrupt reads",
           "audit mismatches", "re-runs completed", "duration (s)")


def row(doc: dict[str, Any]) -> list[str]:
    if doc["scenario"].startswith("load-"):
        workers = f"{doc['threads']} threads + {doc['processes']} processes"
        return [doc["scenario"], workers, "0", "-", str(doc["operations"]),
                str(doc["audit_events"]), str(doc["objects_lost"]),
                str(doc["corrupt_reads"]), str(doc["audit_mismatches"]),
                f"deadlocks: {doc['deadlocks']}", str(doc["duration_s"])]
    return [doc["scenario"], str(doc["runs"]), str(doc["kills"]),
            str(doc["finished_before_kill"]), str(doc["operations"]),
            str(doc.get("audit_events", "-")), str(doc["objects_lost"]),
            str(doc["corrupt_reads"]), str(doc["audit_mismatches"]),
            str(doc["reruns_completed"]), str(doc["duration_s"])]


def main(argv: list[str]) -> int:
    folder = Path(argv[1] if len(argv) > 1 else
                  os.environ.get("RESIDENCY_RELIABILITY_FIGURES") or ".reliability")
    docs = [json.loads(p.read_text()) for p in sorted(folder.glob("crash-*.json"))
            + sorted(folder.glob("load-*.json"))]
    if not docs:
        print(f"no crash-*.json or load-*.json figures in {folder}: run "
              "`.venv/bin/python -m pytest tests/reliability` first", file=sys.stderr)
        return 1
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for doc in docs:
        print("| " + " | ".join(row(doc)) + " |")
    seeds = ", ".join(f"{d['scenario']} {d['seed']}" for d in docs)
    full = {d["full_counts"] for d in docs}
    print(f"\nCounts: {'full' if full == {True} else 'default' if full == {False} else 'mixed'}"
          f". Seeds: {seeds}.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
