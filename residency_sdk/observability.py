"""Logging and tracing: stdlib :mod:`logging` under ``residency_sdk.*`` and optional
OpenTelemetry spans.

Logging follows library etiquette: every logger is a child of ``residency_sdk``, which
has a :class:`logging.NullHandler`, so nothing is printed unless the application
configures logging. Residency decisions log at INFO, retries at WARNING, details at DEBUG.

What a log record or span may carry, at every level: tenant ids, location ids, countries,
data classes, operations, outcomes, reasons, sizes, attempt counts, and the scheme, host
and port of an endpoint. What it never carries: object contents, object keys (a key may
name a patient: the audit log, a protected store, has them), credentials, connection
strings, URL paths or query strings (a SAS token, a presigned signature).

:func:`span` opens an OpenTelemetry span when ``opentelemetry-api`` is installed (the
``[otel]`` extra) and is a no-op otherwise; OpenTelemetry is imported on the first span,
never by ``import residency_sdk``. Spans record what failed as the exception's type name
only (never its message, which may name a key).
"""

from __future__ import annotations

import logging
import os
import re
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from residency_sdk.errors import (
    BAARequired,
    EgressBlocked,
    NotAnonymised,
    ResidencyViolation,
    TransferBlocked,
)

ROOT_LOGGER = "residency_sdk"
"""The name every logger of the SDK is under."""
TRACER_NAME = "residency_sdk"
"""The instrumentation scope of the SDK's spans."""
ATTRIBUTE_PREFIX = "residency."
"""Added to span attribute names given without a namespace (``tenant_id`` becomes
``residency.tenant_id``)."""

logging.getLogger(ROOT_LOGGER).addHandler(logging.NullHandler())

AttributeValue = str | int | bool


def logger(name: str) -> logging.Logger:
    """The logger ``name`` under ``residency_sdk`` (a module's ``__name__`` is used as it
    is; any other name is put under ``residency_sdk.``)."""
    if name == ROOT_LOGGER or name.startswith(ROOT_LOGGER + "."):
        return logging.getLogger(name)
    return logging.getLogger(f"{ROOT_LOGGER}.{name}")


def origin(url: str) -> str:
    """``url`` reduced to what a log may show: scheme, host and port; no user, password,
    path or query."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<unparseable URL>"
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}"


_QUERY = re.compile(r"""([a-zA-Z][a-zA-Z0-9+.-]*://[^\s?#"'<>]+)\?[^\s#"'<>]*""")


class RedactingFilter(logging.Filter):
    """A filter for the application's log handlers that cuts the query string off every
    URL in a record's message (``?sig=...`` becomes ``?<redacted>``).

    The SDK's own records never carry one; other libraries' may: httpx logs each
    request's full URL at INFO on the ``httpx`` logger, query included, for the clients
    :meth:`~residency_sdk.Residency.compute_for` returns as for any other. Install it
    with ``handler.addFilter(RedactingFilter())`` (a handler's filter sees the records
    of every logger that reaches it), or keep ``httpx`` at WARNING."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _QUERY.sub(r"\1?<redacted>", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


# --- tracing -----------------------------------------------------------------------

_UNSET: Any = object()
_tracer: Any = _UNSET
_api: Any = None
"""``opentelemetry.trace``, once imported."""
_PROVIDER_IN_ENV: bool | None = None
"""Whether OTEL_PYTHON_TRACER_PROVIDER names a provider (read once, at the first span)."""


def _get_tracer() -> Any:
    """The SDK's tracer, or None without opentelemetry-api (looked up once: the API's
    proxy tracer follows a provider installed later)."""
    global _tracer, _api
    if _tracer is _UNSET:
        try:
            from opentelemetry import trace
        except ImportError:
            _tracer = None
        else:
            from residency_sdk._version import __version__

            _api = trace
            _tracer = trace.get_tracer(TRACER_NAME, __version__)
    return _tracer


def _active_tracer() -> Any:
    """The tracer when a span would be recorded, else None: without opentelemetry-api,
    and while no tracer provider is installed (the API's proxy would hand out
    non-recording spans at about ten times the cost of skipping them)."""
    global _api
    tracer = _get_tracer()
    if tracer is None:
        return None
    if _api is None:
        from opentelemetry import trace

        _api = trace
    if isinstance(tracer, _api.ProxyTracer):
        # The API's own test for "no provider yet" reads os.environ on every call (a
        # caught KeyError when the variable is unset, on every guarded request); the
        # global it checks first is enough while the environment names no provider.
        global _PROVIDER_IN_ENV
        if _PROVIDER_IN_ENV is None:
            _PROVIDER_IN_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
        if not _PROVIDER_IN_ENV and getattr(_api, "_TRACER_PROVIDER", _UNSET) is None:
            return None
        if isinstance(_api.get_tracer_provider(),
                      (_api.ProxyTracerProvider, _api.NoOpTracerProvider)):
            return None
    return tracer


def tracing_active() -> bool:
    """Whether :func:`span` would record a span now: a hot path checks once and skips
    building a span's attributes (and its :func:`annotate` calls) when not."""
    return _active_tracer() is not None


def _named(attributes: dict[str, AttributeValue | None]) -> dict[str, AttributeValue]:
    return {(k if "." in k else ATTRIBUTE_PREFIX + k): v
            for k, v in attributes.items() if v is not None}


def span(name: str, **attributes: AttributeValue | None) -> AbstractContextManager[None]:
    """A span named ``name`` around the block, made current (so spans of the storage
    client's own instrumentation nest under it), with ``attributes`` (never contents,
    keys or credentials). Attribute names without a dot get the ``residency.`` prefix;
    None values are dropped.

    On leaving, the span gets ``residency.outcome``: ``ok``, ``blocked`` (a residency
    refusal) or ``error``, and on an exception its type name as ``residency.error`` and
    an ERROR status (not the exception event: its message may name an object key).
    Without opentelemetry-api, or before a tracer provider is installed, a no-op.
    """
    tracer = _active_tracer()
    if tracer is None:
        return nullcontext()
    return _Span(tracer.start_as_current_span(
        name, attributes=_named(attributes), record_exception=False,
        set_status_on_exception=False))


def annotate(**attributes: AttributeValue | None) -> None:
    """Add ``attributes`` to the current span (same naming as :func:`span`); a no-op
    without opentelemetry-api or outside a recording span."""
    if _active_tracer() is None:
        return
    current = _api.get_current_span()
    if current.is_recording():
        current.set_attributes(_named(attributes))


class _Span:
    """Enters the OpenTelemetry span and sets the outcome when it ends."""

    __slots__ = ("_manager", "_span")

    def __init__(self, manager: AbstractContextManager[Any]) -> None:
        self._manager = manager
        self._span: Any = None

    def __enter__(self) -> None:
        self._span = self._manager.__enter__()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> bool | None:
        current = self._span
        if current.is_recording():
            if exc is not None:
                current.set_attribute("residency.outcome", _outcome_of(exc))
                current.set_attribute("residency.error", type(exc).__name__)
                current.set_status(_api.Status(_api.StatusCode.ERROR, type(exc).__name__))
            elif "residency.outcome" not in (getattr(current, "attributes", None) or {}):
                current.set_attribute("residency.outcome", "ok")
        return self._manager.__exit__(kind, exc, traceback)


def _outcome_of(exc: BaseException) -> str:
    refused = TransferBlocked | EgressBlocked | ResidencyViolation | BAARequired | NotAnonymised
    return "blocked" if isinstance(exc, refused) else "error"
