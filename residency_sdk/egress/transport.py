"""httpx transports that put every request of a tenant through the egress guard.

Each request, redirects included (httpx calls the transport once per hop), is decided
before a byte is sent: a refused one raises :class:`~residency_sdk.errors.EgressBlocked`
and is audited as a blocked ``egress`` event. An allowed one is audited ahead (an
``egress`` intent: endpoint, processor, data class, decision, purpose, actor) and
completed when its response is closed (status, bytes sent and received). Bodies and
headers are never recorded.

How long the caller waits for the intent is ``audit_durability``, three honest choices:

``"before_response"`` (the default)
    the intent's commit starts as the request is sent, the way a read's does, and the
    response is handed back only once the intent is durable (if the trail cannot say so,
    the response is closed and :class:`~residency_sdk.errors.AuditUnavailable` raised).
    A process killed between sending and that commit (a fraction of a millisecond)
    leaves a call without its record.
``"before_send"``
    the intent is durable before the first byte is sent: no call is ever made without its
    record, at the price of one commit (one fsync) on every call's critical path.
``"group"``
    nobody waits: the intent and the outcome join the log's next group commit (within
    ``audit_group_window``, :data:`GROUP_WINDOW` = 100 ms by default, or sooner when
    other events need a commit: many calls per fsync). The caller only queues the
    values that vary (id, time, sizes, status); the committing thread joins the events'
    canonical text from the verdict's template. A process killed in that window leaves
    the last calls without their records; a trail that cannot record is reported by the
    next call (every append raises while the failure lasts).

``docs/compute.md`` gives the cost of each on the same machine.

Each request is traced as the span ``residency.egress`` (tenant, location, endpoint origin,
data class, processor, outcome; until the response headers arrive) and logged at INFO on
``residency_sdk.egress.transport``, allowed or blocked with the reasons. Logs and spans
show the endpoint as scheme, host and port only: no path, query (a SAS token, a
signature) or credentials, and never headers or bodies.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import httpx

from residency_sdk.audit.chain import canonical
from residency_sdk.audit.log import checked_wait
from residency_sdk.audit.template import EventTemplate, utc_text
from residency_sdk.egress.guard import (
    DATA_CLASS_EXTENSION,
    DATA_CLASS_HEADER,
    DEFAULT_DATA_CLASS,
    EgressDecision,
    EgressGuard,
)
from residency_sdk.errors import InputError, ResidencyError
from residency_sdk.events import (
    AuditEmitter,
    AuditEvent,
    CanonicalSink,
    ReservedId,
    basis_of,
    event_id_of,
    event_time,
    new_event_id,
    reserve_event_id,
)
from residency_sdk.model import Tenant
from residency_sdk.observability import annotate, logger, origin, span, tracing_active

_log = logger(__name__)

AuditDurability = Literal["before_response", "before_send", "group"]
"""When an audited request's ``egress`` intent must be durable (see the module text)."""

_DURABILITIES: tuple[str, ...] = get_args(AuditDurability)

_UNTRACED: AbstractContextManager[None] = nullcontext()

GROUP_WINDOW = 0.1
"""In ``group`` mode, how long (s) an egress event may wait for the log's commit, by
default (``audit_group_window=`` sets it per client, from 0 to 1 s): the caller chose
fewer commits over a narrower crash window. Each commit costs the threads serving
requests its share of two vCPUs and the GIL; ``docs/compute.md`` gives the cost of
shorter windows."""


class _Tap:
    """Counts the bytes through one request (sent) or response (received)."""

    def __init__(self) -> None:
        self.count = 0


class _SentStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    def __init__(self, inner: Any, tap: _Tap) -> None:
        self._inner = inner
        self._tap = tap

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._tap.count += len(chunk)
            yield chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._tap.count += len(chunk)
            yield chunk


class _ReceivedStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, done: Callable[[int], None]) -> None:
        self._inner = inner
        self._done = done
        self._count = 0
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._count += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            if not self._closed:
                self._closed = True
                self._done(self._count)


class _AsyncReceivedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, done: Callable[[int], None]) -> None:
        self._inner = inner
        self._done = done
        self._count = 0
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._count += len(chunk)
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            if not self._closed:
                self._closed = True
                self._done(self._count)


_INTENT_SLOTS = ("event_id", "time", "size")
_OUTCOME_SLOTS = ("event_id", "time", "size", "intent_id", "status", "bytes_received")


@dataclass(frozen=True, slots=True)
class _Record:
    """How the requests one verdict allows are audited (the guard makes a verdict for
    one URL): the intent they share (all but id, time and size) and, when every sink
    takes canonical text, the templates their two events are joined from."""

    verdict: EgressDecision
    event: AuditEvent
    sinks: tuple[CanonicalSink, ...] | None
    intent: EventTemplate | None
    outcome: EventTemplate | None


@dataclass(slots=True)
class _Pending:
    """An allowed request's intent, queued as the values that vary
    (a :class:`~residency_sdk.events.DeferredText`: the log joins its text when it
    commits it, so the request does not wait for that). Its id is taken at once and
    its time read from the clock, both written out only when needed."""

    record: _Record
    reserved: ReservedId
    micros: int  # the clock when the request was admitted (µs since the epoch, UTC)
    size: int | None

    @property
    def event_id(self) -> str:
        """The intent's event id."""
        return event_id_of(self.reserved)

    def as_event(self) -> AuditEvent:
        """The intent as an event object (for the rare paths that need one)."""
        return self.record.event.model_copy(update={
            "event_id": self.event_id, "time": _time_of(self.micros), "size": self.size})

    def render(self) -> str:
        """The intent's canonical JSON (slots: event_id, time, size)."""
        template = self.record.intent
        if template is None:
            return canonical(self.as_event())
        return template.join(f'"{self.event_id}"', utc_text(self.micros), _int(self.size))


@dataclass(slots=True)
class _Completed:
    """The ``ok`` outcome of a request whose intent is a :class:`_Pending`, queued the
    same way."""

    intent: _Pending
    reserved: ReservedId
    micros: int  # the clock when the response was closed
    sent: int
    status: int
    received: int

    def as_event(self) -> AuditEvent:
        """The outcome as an event object (as ``AuditEmitter.outcome`` makes it)."""
        return self.intent.as_event().model_copy(update={
            "event_id": event_id_of(self.reserved), "time": _time_of(self.micros),
            "intent_id": self.intent.event_id, "outcome": "ok", "status": self.status,
            "size": self.sent, "bytes_received": self.received})

    def render(self) -> str:
        """The outcome's canonical JSON (slots: event_id, time, size, intent_id, status,
        bytes_received)."""
        template = self.intent.record.outcome
        if template is None:
            return canonical(self.as_event())
        return template.join(f'"{event_id_of(self.reserved)}"', utc_text(self.micros),
                             str(self.sent), f'"{self.intent.event_id}"', str(self.status),
                             str(self.received))


def _now_micros() -> int:
    """The clock as :func:`~residency_sdk.events.event_time` reads it, in microseconds."""
    return time.time_ns() // 1000


def _time_of(micros: int) -> datetime:
    second, micro = divmod(micros, 1_000_000)
    return datetime.fromtimestamp(second, UTC).replace(microsecond=micro)


def _int(value: int | None) -> str:
    return "null" if value is None else str(value)


class _Guarded:
    """What the sync and async transports share: decide, audit, count."""

    def __init__(self, guard: EgressGuard, tenant: Tenant, audit: AuditEmitter, *,
                 purpose: str, actor: str | None,
                 durability: AuditDurability = "before_response",
                 group_window: float | None = None) -> None:
        if durability not in _DURABILITIES:
            raise InputError(f"audit_durability={durability!r} is not one of "
                             f"{', '.join(_DURABILITIES)}")
        if group_window is not None:
            if durability != "group":
                raise InputError(
                    f"audit_group_window={group_window!r} applies to "
                    f"audit_durability='group' only, not {durability!r}: drop it, or "
                    "choose the group mode")
            group_window = checked_wait("audit_group_window", group_window,
                                        default=GROUP_WINDOW)
        self.durability = durability
        self.guard = guard
        self.tenant = tenant
        self.audit = audit
        self.purpose = purpose
        self.actor = actor
        self.location = guard.policy.location_of(tenant)
        self._within = None if durability != "group" else (
            GROUP_WINDOW if group_window is None else group_window)
        # Per verdict (the guard caches them), how the requests it allows are audited.
        self._records: dict[int, _Record] = {}
        self._verdicts: dict[tuple[str, str], tuple[int, EgressDecision]] = {}

    def span(self, request: httpx.Request, traced: bool) -> AbstractContextManager[None]:
        """The span of one request (see the module text); nothing when not ``traced``."""
        if not traced:
            return _UNTRACED
        return span("residency.egress", operation="egress", tenant_id=self.tenant.id,
                    location=self.location.id, endpoint=origin(str(request.url)),
                    method=request.method)

    def admit(self, request: httpx.Request, traced: bool
              ) -> tuple[AuditEvent | _Pending | None, _Tap]:
        """Decide ``request``; raise (audited) when refused; else record the intent."""
        headers = request.headers
        data_class = request.extensions.get(DATA_CLASS_EXTENSION)
        if DATA_CLASS_HEADER in headers:  # ours, not the endpoint's: removed
            data_class = data_class or headers[DATA_CLASS_HEADER]
            del headers[DATA_CLASS_HEADER]
        data_class = data_class or DEFAULT_DATA_CLASS
        # Redirect hops copy the extensions, not the removed header: keep the class there.
        request.extensions[DATA_CLASS_EXTENSION] = data_class
        try:
            verdict = self._verdict(str(request.url), str(data_class))
        except ResidencyError as exc:
            self._refused(request, str(data_class)[:64], (str(exc),), None, exc)
            raise
        if traced:
            annotate(data_class=verdict.data_class, processor=verdict.processor,
                     kind=verdict.kind, country=verdict.country)
        if not verdict.allowed:
            error = verdict.error()
            self._refused(request, verdict.data_class, verdict.reasons, verdict, error)
            raise error
        if _log.isEnabledFor(logging.INFO):
            self._log(request, verdict.data_class, "allowed", verdict, verdict.reasons)
        tap = _Tap()
        request.stream = _SentStream(request.stream, tap)
        if not self.audit.enabled:
            return None, tap
        length = headers.get("content-length")
        size = int(length) if length and length.isdigit() else None
        record = self._record(verdict, request)
        durable = self.durability == "before_send"
        commit_now = self.durability == "before_response"
        if record.sinks is not None:
            pending = _Pending(record, reserve_event_id(), _now_micros(), size)
            self.audit.intent_canonical(record.sinks, pending, pending.as_event,
                                        durable=durable, commit_now=commit_now,
                                        within=self._within)
            return pending, tap
        intent = self.audit.intent(record.event.model_copy(update={
            "event_id": new_event_id(), "time": event_time(), "size": size}),
            durable=durable, commit_now=commit_now)
        return intent, tap

    def _verdict(self, url: str, data_class: str) -> EgressDecision:
        """The guard's verdict on ``url`` for this client's tenant today, remembered per
        URL and class (the guard's own cache is keyed by tenant too, which costs a
        model hash per request)."""
        today = self.guard.policy.today()
        found = self._verdicts.get((url, data_class))
        if found is not None and found[0] == today:
            return found[1]
        verdict = self.guard.check(self.tenant, url, data_class)
        if len(self._verdicts) > 1024:  # a client calling ever new URLs
            self._verdicts.clear()
        self._verdicts[(url, data_class)] = (today, verdict)
        return verdict

    def _record(self, verdict: EgressDecision, request: httpx.Request) -> _Record:
        found = self._records.get(id(verdict))
        if found is None or found.verdict is not verdict:
            event = self._event(request, verdict.data_class, "intent", verdict,
                                verdict.reasons)
            sinks = self.audit.canonical_sinks(event)
            intent = outcome = None
            if sinks is not None:
                intent = EventTemplate(event, _INTENT_SLOTS)
                outcome = EventTemplate(event.model_copy(update={"outcome": "ok"}),
                                        _OUTCOME_SLOTS)
            if len(self._records) > 1024:  # a client calling ever new URLs
                self._records.clear()
            found = self._records[id(verdict)] = _Record(verdict, event, sinks, intent,
                                                         outcome)
        return found

    def release(self, intent: AuditEvent | _Pending | None,
                response: httpx.Response) -> None:
        """Before a response reaches the caller (``before_response``): its intent must be
        durable. If the trail cannot say so, the response is closed and AuditUnavailable
        raised."""
        if intent is None or self.durability != "before_response":
            return
        try:
            self.audit.flush()
        except BaseException:
            response.close()
            raise

    async def arelease(self, intent: AuditEvent | _Pending | None,
                       response: httpx.Response) -> None:
        """:meth:`release` for an async response; the wait for the commit runs in a
        worker thread, so the event loop serves other requests meanwhile."""
        if intent is None or self.durability != "before_response":
            return
        import anyio.to_thread  # httpx's own dependency; works under asyncio and trio

        try:
            await anyio.to_thread.run_sync(self.audit.flush)
        except BaseException:
            await response.aclose()
            raise

    def finished(self, intent: AuditEvent | _Pending | None, tap: _Tap,
                 response: httpx.Response) -> Callable[[int], None]:
        def done(received: int) -> None:
            if isinstance(intent, _Pending):
                sinks = intent.record.sinks
                assert sinks is not None
                completed = _Completed(intent, reserve_event_id(), _now_micros(), tap.count,
                                       response.status_code, received)
                self.audit.emit_canonical(sinks, completed, completed.as_event,
                                          within=self._within)
                return
            self.audit.outcome(_event_of(intent), outcome="ok", status=response.status_code,
                               size=tap.count, bytes_received=received)
        return done

    def failed(self, intent: AuditEvent | _Pending | None, tap: _Tap,
               exc: BaseException) -> None:
        self.audit.outcome(_event_of(intent), outcome="error", size=tap.count,
                           error=f"{type(exc).__name__}: {exc}"[:2000])

    def _refused(self, request: httpx.Request, data_class: str, reasons: tuple[str, ...],
                 verdict: EgressDecision | None, error: BaseException) -> None:
        if _log.isEnabledFor(logging.INFO):
            self._log(request, data_class, "blocked", verdict, reasons)
        if self.audit.enabled:
            self.audit.emit(self._event(request, data_class, "blocked", verdict, reasons,
                                        error=f"{type(error).__name__}: {error}"[:2000]))

    def _log(self, request: httpx.Request, data_class: str, outcome: str,
             verdict: EgressDecision | None, reasons: tuple[str, ...]) -> None:
        endpoint = origin(str(request.url))
        fields = {"operation": "egress", "outcome": outcome, "tenant_id": self.tenant.id,
                  "location": self.location.id, "data_class": data_class,
                  "endpoint": endpoint, "method": request.method,
                  "processor": verdict.processor if verdict is not None else None,
                  "to": verdict.country if verdict is not None else None,
                  "reasons": list(reasons)}
        _log.info("egress %s: tenant=%s data_class=%s %s %s (%s -> %s)%s", outcome,
                  self.tenant.id, data_class, request.method, endpoint, self.location.id,
                  fields["to"] or "?",
                  "" if outcome == "allowed" else " reasons: " + "; ".join(reasons),
                  extra={"residency": fields})

    def _event(self, request: httpx.Request | None, data_class: str, outcome: str,
               verdict: EgressDecision | None, reasons: tuple[str, ...],
               **fields: Any) -> AuditEvent:
        decision = verdict.decision if verdict is not None else None
        country = verdict.country if verdict is not None else None
        return AuditEvent.model_validate({
            "operation": "egress", "outcome": outcome, "actor": self.actor,
            "purpose": self.purpose, "tenant_id": self.tenant.id,
            "tenant_country": self.tenant.country, "data_class": data_class,
            "source_location": self.location.id, "destination_country": country,
            "is_transfer": country is not None and country != self.location.country,
            "mechanism": decision.mechanism if decision else None,
            "regimes": decision.regimes if decision else (),
            "agreements": verdict.agreements if verdict is not None else (),
            "basis": basis_of(decision) if decision else (),
            "reasons": reasons,
            "endpoint": endpoint_of(request.url) if request is not None else None,
            "processor": verdict.processor if verdict is not None else None, **fields})


def _event_of(intent: AuditEvent | _Pending | None) -> AuditEvent | None:
    return intent.as_event() if isinstance(intent, _Pending) else intent


def endpoint_of(url: httpx.URL) -> str:
    """``url`` as audited: scheme, host, port and path; no query, no credentials."""
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{url.host}{port}{url.path}"[:2000]


class GuardedTransport(httpx.BaseTransport):
    """A sync httpx transport enforcing residency on each request of one tenant."""

    def __init__(self, guarded: _Guarded, inner: httpx.BaseTransport) -> None:
        self._guarded = guarded
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        traced = tracing_active()
        with self._guarded.span(request, traced):
            intent, tap = self._guarded.admit(request, traced)
            try:
                response = self._inner.handle_request(request)
            except BaseException as exc:
                self._guarded.failed(intent, tap, exc)
                raise
            if traced:
                annotate(status=response.status_code)
            done = self._guarded.finished(intent, tap, response)
            if response.is_closed:  # a body given as bytes is read (and closed) on creation
                done(len(response.content))
            else:
                assert isinstance(response.stream, httpx.SyncByteStream)
                response.stream = _ReceivedStream(response.stream, done)
            self._guarded.release(intent, response)
            return response

    def close(self) -> None:
        self._inner.close()


class AsyncGuardedTransport(httpx.AsyncBaseTransport):
    """The async twin of :class:`GuardedTransport`."""

    def __init__(self, guarded: _Guarded, inner: httpx.AsyncBaseTransport) -> None:
        self._guarded = guarded
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        traced = tracing_active()
        with self._guarded.span(request, traced):
            intent, tap = self._guarded.admit(request, traced)
            try:
                response = await self._inner.handle_async_request(request)
            except BaseException as exc:
                self._guarded.failed(intent, tap, exc)
                raise
            if traced:
                annotate(status=response.status_code)
            done = self._guarded.finished(intent, tap, response)
            if response.is_closed:  # a body given as bytes is read (and closed) on creation
                done(len(response.content))
            else:
                assert isinstance(response.stream, httpx.AsyncByteStream)
                response.stream = _AsyncReceivedStream(response.stream, done)
            await self._guarded.arelease(intent, response)
            return response

    async def aclose(self) -> None:
        await self._inner.aclose()


_REFUSED_OPTIONS = ("mounts", "proxy", "proxies", "app")


def guarded_client(guard: EgressGuard, tenant: Tenant, audit: AuditEmitter, *,
                   purpose: str, actor: str | None,
                   audit_durability: AuditDurability = "before_response",
                   audit_group_window: float | None = None,
                   **options: Any) -> httpx.Client:
    """An ``httpx.Client`` whose every request goes through the guard."""
    guarded = _Guarded(guard, tenant, audit, purpose=purpose, actor=actor,
                       durability=audit_durability, group_window=audit_group_window)
    inner = _inner(options, httpx.BaseTransport) or httpx.HTTPTransport()
    return httpx.Client(transport=GuardedTransport(guarded, inner), **options)


def async_guarded_client(guard: EgressGuard, tenant: Tenant, audit: AuditEmitter, *,
                         purpose: str, actor: str | None,
                         audit_durability: AuditDurability = "before_response",
                         audit_group_window: float | None = None,
                         **options: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose every request goes through the guard."""
    guarded = _Guarded(guard, tenant, audit, purpose=purpose, actor=actor,
                       durability=audit_durability, group_window=audit_group_window)
    inner = _inner(options, httpx.AsyncBaseTransport) or httpx.AsyncHTTPTransport()
    return httpx.AsyncClient(transport=AsyncGuardedTransport(guarded, inner), **options)


def _inner(options: dict[str, Any], kind: type) -> Any:
    for name in _REFUSED_OPTIONS:
        if name in options:
            raise InputError(f"{name}= would route requests around the residency guard: "
                             "pass transport= (an httpx transport the guard wraps) instead")
    inner = options.pop("transport", None)
    if inner is not None and not isinstance(inner, kind):
        raise InputError(f"transport={inner!r} is not an {kind.__name__}")
    return inner
