"""httpx transports that put every request of a tenant through the egress guard.

Each request, redirects included (httpx calls the transport once per hop), is decided
before a byte is sent: a refused one raises :class:`~residency_sdk.errors.EgressBlocked`
and is audited as a blocked ``egress`` event. An allowed one is audited ahead (an
``egress`` intent: endpoint, processor, data class, decision, purpose, actor) and
completed when its response is closed (status, bytes sent and received). Bodies and
headers are never recorded.

By default the intent is committed *while* the request is in flight, the way a read's is:
its commit starts before the request is sent and the response is handed back only once
the intent is durable (if the trail cannot say so, the response is closed and
:class:`~residency_sdk.errors.AuditUnavailable` raised). That keeps an audited call
within a few percent of a plain one; the price is that a process killed in the
milliseconds between sending and that commit leaves a call without its record.
``audit_before_send=True`` closes that window: the intent is durable before the first
byte is sent, at the cost of one commit per call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx

from residency_sdk.egress.guard import (
    DATA_CLASS_EXTENSION,
    DATA_CLASS_HEADER,
    DEFAULT_DATA_CLASS,
    EgressDecision,
    EgressGuard,
)
from residency_sdk.errors import ResidencyError
from residency_sdk.events import AuditEmitter, AuditEvent
from residency_sdk.model import Tenant


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


class _Guarded:
    """What the sync and async transports share: decide, audit, count."""

    def __init__(self, guard: EgressGuard, tenant: Tenant, audit: AuditEmitter, *,
                 purpose: str, actor: str | None, audit_before_send: bool = False) -> None:
        self.audit_before_send = audit_before_send
        self.guard = guard
        self.tenant = tenant
        self.audit = audit
        self.purpose = purpose
        self.actor = actor
        self.location = guard.policy.location_of(tenant)

    def admit(self, request: httpx.Request) -> tuple[AuditEvent | None, _Tap]:
        """Decide ``request``; raise (audited) when refused; else write the intent."""
        data_class = request.extensions.get(DATA_CLASS_EXTENSION) \
            or request.headers.get(DATA_CLASS_HEADER) or DEFAULT_DATA_CLASS
        request.headers.pop(DATA_CLASS_HEADER, None)  # ours, not the endpoint's
        # Redirect hops copy the extensions, not the removed header: keep the class there.
        request.extensions[DATA_CLASS_EXTENSION] = data_class
        try:
            verdict = self.guard.check(self.tenant, str(request.url), str(data_class))
        except ResidencyError as exc:
            self._refused(request, str(data_class)[:64], (str(exc),), None, exc)
            raise
        if not verdict.allowed:
            error = verdict.error()
            self._refused(request, verdict.data_class, verdict.reasons, verdict, error)
            raise error
        tap = _Tap()
        request.stream = _SentStream(request.stream, tap)
        intent = None
        if self.audit.enabled:
            length = request.headers.get("content-length")
            intent = self.audit.intent(self._event(
                request, verdict.data_class, "intent", verdict, verdict.reasons,
                size=int(length) if length and length.isdigit() else None),
                durable=self.audit_before_send)
        return intent, tap

    def release(self, intent: AuditEvent | None, response: httpx.Response) -> None:
        """Before a response reaches the caller: its intent must be durable. If the trail
        cannot say so, the response is closed and AuditUnavailable raised."""
        if intent is None or self.audit_before_send:
            return
        try:
            self.audit.flush()
        except BaseException:
            response.close()
            raise

    async def arelease(self, intent: AuditEvent | None, response: httpx.Response) -> None:
        """:meth:`release` for an async response."""
        if intent is None or self.audit_before_send:
            return
        try:
            self.audit.flush()
        except BaseException:
            await response.aclose()
            raise

    def finished(self, intent: AuditEvent | None, tap: _Tap,
                 response: httpx.Response) -> Callable[[int], None]:
        def done(received: int) -> None:
            self.audit.outcome(intent, outcome="ok", status=response.status_code,
                               size=tap.count, bytes_received=received)
        return done

    def failed(self, intent: AuditEvent | None, tap: _Tap, exc: BaseException) -> None:
        self.audit.outcome(intent, outcome="error", size=tap.count,
                           error=f"{type(exc).__name__}: {exc}"[:2000])

    def _refused(self, request: httpx.Request, data_class: str, reasons: tuple[str, ...],
                 verdict: EgressDecision | None, error: BaseException) -> None:
        if self.audit.enabled:
            self.audit.emit(self._event(request, data_class, "blocked", verdict, reasons,
                                        error=f"{type(error).__name__}: {error}"[:2000]))

    def _event(self, request: httpx.Request, data_class: str, outcome: str,
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
            "reasons": reasons, "endpoint": endpoint_of(request.url),
            "processor": verdict.processor if verdict is not None else None, **fields})


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
        intent, tap = self._guarded.admit(request)
        try:
            response = self._inner.handle_request(request)
        except BaseException as exc:
            self._guarded.failed(intent, tap, exc)
            raise
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
        intent, tap = self._guarded.admit(request)
        try:
            response = await self._inner.handle_async_request(request)
        except BaseException as exc:
            self._guarded.failed(intent, tap, exc)
            raise
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
                   purpose: str, actor: str | None, audit_before_send: bool = False,
                   **options: Any) -> httpx.Client:
    """An ``httpx.Client`` whose every request goes through the guard."""
    inner = _inner(options, httpx.BaseTransport) or httpx.HTTPTransport()
    guarded = _Guarded(guard, tenant, audit, purpose=purpose, actor=actor,
                       audit_before_send=audit_before_send)
    return httpx.Client(transport=GuardedTransport(guarded, inner), **options)


def async_guarded_client(guard: EgressGuard, tenant: Tenant, audit: AuditEmitter, *,
                         purpose: str, actor: str | None, audit_before_send: bool = False,
                         **options: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose every request goes through the guard."""
    inner = _inner(options, httpx.AsyncBaseTransport) or httpx.AsyncHTTPTransport()
    guarded = _Guarded(guard, tenant, audit, purpose=purpose, actor=actor,
                       audit_before_send=audit_before_send)
    return httpx.AsyncClient(transport=AsyncGuardedTransport(guarded, inner), **options)


def _inner(options: dict[str, Any], kind: type) -> Any:
    from residency_sdk.errors import InputError

    for name in _REFUSED_OPTIONS:
        if name in options:
            raise InputError(f"{name}= would route requests around the residency guard: "
                             "pass transport= (an httpx transport the guard wraps) instead")
    inner = options.pop("transport", None)
    if inner is not None and not isinstance(inner, kind):
        raise InputError(f"transport={inner!r} is not an {kind.__name__}")
    return inner
