"""Why an erasure is still open, as the error ``res.erase`` raises
(:func:`incomplete_error`): what could not be done, and how to finish the request.
"""

from __future__ import annotations

from pathlib import Path

from residency_sdk.erasure.receipt import ErasureReceipt
from residency_sdk.erasure.request import WHOLE_LINEAGE, ErasureRequest
from residency_sdk.erasure.status import run_command
from residency_sdk.errors import ErasureBlocked, ErasureIncomplete, ErasureUnavailable


def incomplete_error(request: ErasureRequest, receipt: ErasureReceipt,
                     state_dir: Path | None = None) -> ErasureIncomplete:
    """The error for ``request`` left open by its last run, carrying ``receipt`` and
    the request id: :class:`ErasureUnavailable` when a backend or a location's lineage
    could not be reached, :class:`ErasureBlocked` when only a legal hold keeps objects,
    else :class:`ErasureIncomplete`; its message names what is left and how to finish
    (``state_dir``: the one named in the command)."""
    backends = list(request.backends.values())
    problems = [f"{b.backend}: {b.error}" for b in backends if b.error]
    problems += [f"{'the lineage' if loc == WHOLE_LINEAGE else 'lineage in ' + loc} "
                 f"could not be read: {why}"
                 for loc, why in sorted(request.lineage_unreachable.items())]
    problems += [f"{k.backend}: {k.summary()}" for k in request.keys.values()
                 if k.status == "failed"]
    if request.cleanup_error:
        problems.append(request.cleanup_error)
    failed = "; ".join(problems)
    rerun = (f"request {request.id} stays open: finish it by calling res.erase for the "
             f"tenant again or `{run_command(request.id, state_dir)}`")
    if request.lineage_unreachable or any(b.unreachable for b in backends):
        where = sorted({b.location or request.location for b in backends if b.unreachable}
                       | (set(request.lineage_unreachable) - {WHOLE_LINEAGE}))
        if WHOLE_LINEAGE in request.lineage_unreachable:
            where.append("(the lineage)")
        return ErasureUnavailable(
            f"erasure of tenant {request.tenant_id!r} is incomplete: location(s) "
            f"{', '.join(where)} could not be reached ({failed}); {rerun} once they are",
            receipt=receipt, request_id=request.id)
    if any(b.status == "failed" for b in backends) or problems \
            or not any(b.held for b in backends):
        return ErasureIncomplete(
            f"erasure of tenant {request.tenant_id!r} is incomplete "
            f"({failed or 'keys or records left'}); {rerun}",
            receipt=receipt, request_id=request.id)
    return ErasureBlocked(
        f"erasure of tenant {request.tenant_id!r} is blocked: {len(receipt.held)} object(s) "
        f"under legal hold were kept ({'; '.join(receipt.held[:3])}); every key is kept "
        f"with them; {rerun} once the hold is lifted",
        receipt=receipt, request_id=request.id)
