"""One instance of the fleet load test: threads appending durable events to one
``AuditLog(url)`` shared by every instance (``tests/reliability/test_audit_fleet_load.py``).

``python audit_fleet_worker.py URL WORKER THREADS EVENTS OUT``: builds its events, opens
the log, prints ``READY``, waits for a line on stdin, then every thread appends its events
with ``durable=True`` and records each event id once ``append`` has returned (the
acknowledgement a caller relies on). Writes ``{"acked": [...], "errors": [...],
"seconds": ..., "commits": ...}`` to OUT and prints ``DONE``. The HMAC key comes from
``$RESIDENCY_AUDIT_HMAC_KEY``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from residency_sdk.audit import AuditLog
from residency_sdk.events import AuditEvent


def build(worker: str, thread: int, n: int) -> list[AuditEvent]:
    now = datetime.now(UTC)
    return [AuditEvent(time=now, operation="put", outcome="ok", actor=f"{worker}-t{thread}",
                       tenant_id="charite-berlin", tenant_country="DE", data_class="phi",
                       source_location="DE", provider="aws", region="eu-central-1",
                       bucket="residency-de-aws-data",
                       object_key=f"charite-berlin/{worker}/t{thread}/scan-{i}.dcm",
                       size=1024 + i, checksum=f"sha256:{i:064x}")
            for i in range(n)]


def main() -> None:
    url, worker, threads, events, out = (sys.argv[1], sys.argv[2], int(sys.argv[3]),
                                         int(sys.argv[4]), Path(sys.argv[5]))
    # Built before the clock starts: the figure is the sink's, not pydantic's.
    batches = [build(worker, t, events) for t in range(threads)]
    log = AuditLog(url)
    acked: list[list[str]] = [[] for _ in range(threads)]
    errors: list[str] = []

    def run(t: int) -> None:
        mine = acked[t]
        try:
            for event in batches[t]:
                log.append(event)  # durable: returns once committed
                mine.append(event.event_id)
        except Exception as exc:  # reported to the parent, which fails the test
            errors.append(f"{type(exc).__name__}: {exc}")

    print("READY", flush=True)
    sys.stdin.readline()
    start = time.monotonic()
    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    seconds = time.monotonic() - start
    commits = log.commits
    log.close()
    out.write_text(json.dumps({"acked": [i for ids in acked for i in ids], "errors": errors,
                               "seconds": seconds, "commits": commits}))
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
