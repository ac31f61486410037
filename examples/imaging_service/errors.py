"""HTTP status by error kind: the one table the service answers every error from.

residency-sdk raises one hierarchy (``rs.ResidencyError``); what a client should do about
an error depends on its kind, not on which handler it came from:

- ``451 Unavailable For Legal Reasons``: the law, as the region map and transfer rules
  state it, refuses (a transfer, an egress, ``phi`` without a BAA, a country the map has no
  route for). The body carries the ``reasons`` and, where the rules know it, what would
  unblock it (``unblock_with``: one list of alternatives per blocking rule);
- ``503 Service Unavailable`` with ``Retry-After``: a storage backend or the audit trail is
  down; nothing was done (no data operation runs without its audit event), try again;
- ``400`` bad input the message names (an unknown destination, data class, ...), ``404``
  no such object, ``410`` erased, ``422`` a request that does not match the API's shape;
- ``500``: the service itself is misconfigured or broken. The client gets a generic
  message; the details go to the service log, never a traceback to the client.

The first row whose exception type matches wins, so subclasses come before their bases.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

import residency_sdk as rs
import residency_sdk.errors as rse

log = logging.getLogger("imaging_service")


@dataclass(frozen=True)
class ErrorKind:
    """One row of the table: the exception type, the HTTP status, the ``error`` code of
    the body, and whether the exception's own message goes to the client (it names the
    fix for bad input and refusals; for 5xx, 404 and 410 it may name internal paths,
    buckets or keys, so it stays in the log and the client gets a fixed message)."""

    exc: type[Exception]
    status: int
    error: str
    public: bool = True


ERROR_KINDS: tuple[ErrorKind, ...] = (
    # Refusals on residency grounds.
    ErrorKind(rs.EgressBlocked, 451, "egress_blocked"),
    ErrorKind(rs.NotAnonymised, 451, "not_anonymised"),
    ErrorKind(rs.TransferBlocked, 451, "transfer_blocked"),  # PlacementBlocked too
    ErrorKind(rs.BAARequired, 451, "baa_required"),
    ErrorKind(rs.NoRoute, 451, "no_route"),
    ErrorKind(rs.TenantCountryConflict, 409, "tenant_country_conflict"),
    # Down for now: retry (ChainRefused is an AuditUnavailable: the log will not extend).
    ErrorKind(rs.AuditUnavailable, 503, "audit_unavailable", public=False),
    ErrorKind(rs.BackendUnavailable, 503, "backend_unavailable", public=False),
    # Their messages name the bucket or folder: the client learns only what happened.
    ErrorKind(rs.ObjectNotFound, 404, "not_found", public=False),
    ErrorKind(rs.KeyDestroyed, 410, "erased", public=False),
    # A transfer's ``to`` is the caller's input, although the SDK files an unknown
    # location with backend set-up errors.
    ErrorKind(rs.UnknownLocation, 400, "unknown_location"),
    # Input errors of the operator (map, settings, keys, endpoints), not of the caller.
    ErrorKind(rs.BackendNotConfigured, 500, "service_misconfigured", public=False),
    ErrorKind(rs.MapError, 500, "service_misconfigured", public=False),
    ErrorKind(rse.ConfigError, 500, "service_misconfigured", public=False),
    ErrorKind(rs.AuditKeyError, 500, "service_misconfigured", public=False),
    ErrorKind(rs.AuditFormatError, 500, "service_misconfigured", public=False),
    ErrorKind(rs.InsecureEndpoint, 500, "service_misconfigured", public=False),
    ErrorKind(rs.InfraError, 500, "service_misconfigured", public=False),
    ErrorKind(rs.UnknownRetentionCategory, 500, "service_misconfigured", public=False),
    # The caller's input (InvalidTenant, InvalidKey, InvalidCountry, UnknownDataClass...).
    ErrorKind(rs.InputError, 400, "invalid_input"),
    ErrorKind(rs.AccessDenied, 500, "storage_access_denied", public=False),
    ErrorKind(rs.ResidencyError, 500, "residency_error", public=False),
    ErrorKind(RequestValidationError, 422, "invalid_request"),
    # The client hung up mid-upload: nobody reads the answer, and it is not a bug.
    ErrorKind(ClientDisconnect, 400, "client_disconnected"),
    ErrorKind(Exception, 500, "internal_error", public=False),
)
"""Exception type -> HTTP status, most specific first."""

_GENERIC = {
    404: "no such study or object for this clinic",
    410: "the object was erased: its clinic's key was destroyed, no copy can be read",
    503: "a storage backend or the audit trail is unavailable; nothing was done: retry later",
    500: "the service cannot serve this request; its operator has the details in the log",
}


def kind_of(exc: BaseException) -> ErrorKind:
    """The table's row for ``exc`` (the first whose type it is an instance of)."""
    for kind in ERROR_KINDS:
        if isinstance(exc, kind.exc):
            return kind
    return ERROR_KINDS[-1]


def install_error_handlers(app: FastAPI, *, retry_after: int) -> None:
    """Answer every error ``app`` raises from :data:`ERROR_KINDS`; ``503`` answers say
    ``Retry-After: retry_after`` (seconds)."""

    async def answer(request: Request, exc: Exception) -> JSONResponse:
        exc = _leaf(exc)
        kind = kind_of(exc)
        detail: dict[str, Any] = {"error": kind.error, "kind": type(exc).__name__,
                                  "message": str(exc) if kind.public else _GENERIC[kind.status]}
        detail.update(_explain(exc))
        study_id = request.path_params.get("study_id")
        if study_id is not None:
            detail["study_id"] = study_id
        if not kind.public:
            # The details (paths, endpoints, the traceback of a bug) are for the operator.
            level = {500: logging.ERROR, 503: logging.WARNING}.get(kind.status, logging.INFO)
            log.log(level, "%s %s -> %d %s: %s", request.method, request.url.path,
                    kind.status, type(exc).__name__, exc, exc_info=kind.status == 500)
        headers = {"Retry-After": str(retry_after)} if kind.status == 503 else None
        return JSONResponse(status_code=kind.status, content={"detail": detail},
                            headers=headers)

    # Starlette picks a handler by the exception's MRO: every row gets the one handler,
    # which answers from the table (``Exception`` is Starlette's last resort for bugs).
    for kind in ERROR_KINDS:
        app.add_exception_handler(kind.exc, answer)


def _leaf(exc: Exception) -> Exception:
    """A task group's single failure, unwrapped (one refusal is still one refusal)."""
    while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _explain(exc: BaseException) -> dict[str, Any]:
    """What the client needs to act on ``exc``: for a refusal the reasons and what would
    unblock it; for a malformed request the problems."""
    if isinstance(exc, RequestValidationError):
        return {"problems": jsonable_encoder(exc.errors())}
    fields: dict[str, Any] = {}
    if isinstance(exc, rs.EgressBlocked):
        fields.update(host=exc.host, url=exc.url, reasons=list(exc.reasons))
    if isinstance(exc, rs.NotAnonymised):
        fields.update(found=list(exc.found), problems=list(exc.problems))
    if isinstance(exc, rs.NoRoute):
        fields.update(country=exc.country)
    decision = getattr(exc, "decision", None)
    if decision is not None:
        fields.update({"from": decision.source, "to": decision.destination,
                       "data_class": decision.data_class, "regimes": list(decision.regimes),
                       "reasons": fields.get("reasons") or list(decision.reasons),
                       "unblock_with": [list(alts) for alts in decision.unblock_with]})
    if kind_of(exc).status == 451:
        fields.setdefault("reasons", [str(exc)])
        fields.setdefault("unblock_with", [])
    return fields
