"""A request as people follow it: where it stands against its deadline
(:func:`status_row`, what ``residency erasure status`` and
:meth:`ErasureTracker.status <residency_sdk.erasure.ErasureTracker.status>` show) and the
command that runs or finishes it (:func:`run_command`, named in status rows, errors and
refusals).
"""

from __future__ import annotations

import shlex
from datetime import datetime
from pathlib import Path
from typing import Any

from residency_sdk.erasure.request import ErasureRequest


def run_command(request_id: str, state_dir: str | Path | None = None) -> str:
    """The shell command that runs (or finishes) request ``request_id``:
    ``residency erasure run ID``, with ``--state-dir`` (absolute) when ``state_dir`` is
    given; safe to paste as it is (quoted for a POSIX shell)."""
    command = f"residency erasure run {request_id}"
    if state_dir is not None:
        command += f" --state-dir {shlex.quote(str(Path(state_dir).resolve()))}"
    return command


def status_row(request: ErasureRequest, now: datetime,
               state_dir: str | Path | None = None) -> dict[str, Any]:
    """One request against its deadline, as plain data: what is left per location and
    backend (``left``: every backend not verified, with its status, held objects and
    error), the lineage locations that could not be read, where the key destruction
    stands, and the command that finishes it (``run``; ``--state-dir`` when given)."""
    return {
        "id": request.id, "tenant_id": request.tenant_id, "location": request.location,
        "scope": request.scope, "status": request.status,
        "deadline": request.deadline.isoformat(),
        "days_left": round(request.time_left(now).total_seconds() / 86400, 1),
        "overdue": request.overdue(now),
        "held": sum(len(b.held) for b in request.backends.values()),
        "errors": [b.error for b in request.backends.values() if b.error]
                  + [k.error for k in request.keys.values() if k.error]
                  + ([request.cleanup_error] if request.cleanup_error else []),
        "left": [{"location": b.location or request.location, "backend": b.backend,
                  "status": b.status, "held": len(b.held), "remaining": b.remaining,
                  "error": b.error}
                 for b in request.backends.values() if b.status != "verified"],
        "lineage_unreachable": dict(request.lineage_unreachable),
        "keys": "done" if not request.is_open else request.keys_state(),
        "run": None if not request.is_open else run_command(request.id, state_dir),
    }
