"""Audit events: one per transfer decision, placement and data operation.

Events never carry object contents or credentials. Their JSON form is stable and
versioned (``schema``); the audit log chains them, the report aggregates them.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from residency_sdk._version import __version__
from residency_sdk.errors import AuditUnavailable
from residency_sdk.observability import logger

_log = logger(__name__)

if TYPE_CHECKING:
    from residency_sdk.model import Decision, Tenant

EVENT_SCHEMA = "residency.audit/v3"
"""v2 added ``intent`` outcomes, ``intent_id`` and the ``audit_off`` operation; v3 added
``decision_id`` and ``basis``. Older events still parse (every later field has a
default)."""

Operation = Literal[
    "placement",
    "transfer_check",
    "put",
    "get",
    "head",
    "list",
    "delete",
    "copy",
    "transfer",
    "erase",
    "retention_delete",
    "audit_off",
    "key_rotate",
    "egress",
    "egress_check",
]
Outcome = Literal["allowed", "blocked", "ok", "error", "intent"]
"""``intent``: written (durably) before a data operation starts; the event with the
outcome names it in ``intent_id``. An intent without an outcome is "outcome unknown"."""


def event_time() -> datetime:
    """Now, in UTC: the ``time`` of an event made now."""
    return datetime.now(UTC)


_ID_PREFIX = [os.urandom(8).hex()]
_ID_COUNTER = itertools.count(int.from_bytes(os.urandom(4)))


def new_event_id() -> str:
    """A new event id: 32 hex digits, unique across processes and hosts.

    64 random bits drawn once per process (again in a forked child) followed by a 64-bit
    counter. ``uuid4()`` reads the OS entropy source for every id, which was the largest
    single cost of auditing a decision (about 5 µs of 13 on this project's machine).
    """
    return f"{_ID_PREFIX[0]}{next(_ID_COUNTER) & 0xFFFFFFFFFFFFFFFF:016x}"


ReservedId = tuple[str, int]
"""An event id taken now and written out later (:func:`reserve_event_id`)."""


def reserve_event_id() -> ReservedId:
    """A new event id for a hot path that writes it out later, off its critical path:
    ``event_id_of(reserve_event_id())`` is what :func:`new_event_id` returns."""
    return _ID_PREFIX[0], next(_ID_COUNTER)


def event_id_of(reserved: ReservedId) -> str:
    """The event id ``reserved`` stands for (the same text however often it is asked)."""
    return f"{reserved[0]}{reserved[1] & 0xFFFFFFFFFFFFFFFF:016x}"


def _new_process_ids() -> None:
    _ID_PREFIX[0] = os.urandom(8).hex()


os.register_at_fork(after_in_child=_new_process_ids)


class Basis(BaseModel):
    """One regime's verdict on a decision, as recorded in the trail: what it rested on
    (or what blocked it), with the rule fact's source and dates, so a report of an old
    log shows the basis that held on the day, not today's rules."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    regime: str
    allowed: bool
    basis: str | None = None
    """The mechanism or adequacy relied on (``adequacy``, ``scc``, ``eea``...); None when
    blocked or when nothing was needed."""
    reason: str = ""
    """Why it blocked (kept for a blocking regime only: an allowing regime's words are in
    the event's ``reasons``, and repeating them on every event would double its size)."""
    source: str | None = None
    as_of: str | None = None
    review_by: str | None = None
    agreement: str | None = None
    """The agreement or derogation relied on, with its contract reference."""
    unblock_with: tuple[str, ...] = ()
    """For a blocking regime: the flags any one of which would allow the transfer."""


def log_decision(operation: str, tenant: Tenant, decision: Decision) -> None:
    """Log ``decision`` at INFO: tenant, data class, from/to, allowed or blocked, regimes,
    mechanism and (when blocked) the reasons. Never contents, keys or credentials: a
    decision holds none. The same fields are in the record's ``residency`` attribute."""
    verdict = "allowed" if decision.allowed else "blocked"
    fields = {"operation": operation, "tenant_id": tenant.id, "data_class": decision.data_class,
              "from": decision.source, "to": decision.destination, "outcome": verdict,
              "regimes": list(decision.regimes), "mechanism": decision.mechanism,
              "reasons": list(decision.reasons)}
    _log.info("%s %s: tenant=%s data_class=%s %s->%s regimes=%s mechanism=%s%s", operation,
              verdict, tenant.id, decision.data_class, decision.source, decision.destination,
              ",".join(decision.regimes) or "-", decision.mechanism or "-",
              "" if decision.allowed else " reasons: " + "; ".join(decision.reasons),
              extra={"residency": fields})


def basis_of(decision: Decision) -> tuple[Basis, ...]:
    """The per-regime verdicts of ``decision`` as trail entries."""
    return tuple(Basis(regime=v.regime, allowed=v.allowed, basis=v.basis,
                       reason="" if v.allowed else v.reason,
                       source=v.source, as_of=v.as_of, review_by=v.review_by,
                       agreement=v.agreement, unblock_with=v.unblock_with)
                 for v in decision.verdicts)


class AuditEvent(BaseModel):
    """One audited decision or data operation (schema :data:`EVENT_SCHEMA`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_: str = Field(default=EVENT_SCHEMA, alias="schema")
    event_id: str = Field(default_factory=new_event_id)
    time: datetime = Field(default_factory=event_time)
    operation: Operation
    outcome: Outcome
    actor: str | None = None
    purpose: str | None = None
    tenant_id: str | None = None
    tenant_country: str | None = None
    data_class: str | None = None
    source_location: str | None = None
    destination_location: str | None = None
    destination_country: str | None = None
    is_transfer: bool = False
    provider: str | None = None
    region: str | None = None
    bucket: str | None = None
    served_by: Literal["primary", "failover"] | None = None
    object_key: str | None = None
    size: int | None = None
    checksum: str | None = None
    mechanism: str | None = None
    regimes: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    agreements: tuple[str, ...] = ()
    """The agreements and derogations a transfer decision rests on, each with its
    contract reference (``scc[SCC-2026-17]``)."""
    error: str | None = None
    intent_id: str | None = None
    """On an outcome event: the ``event_id`` of the intent it completes."""
    decision_id: str | None = None
    """On a data operation's events: the ``event_id`` of the decision (``placement`` or
    ``transfer_check``) it rests on. A blocked operation and the blocked decision it names
    are one attempt, counted once."""
    basis: tuple[Basis, ...] = ()
    """On a decision, and on the data operations that rest on one: each regime's verdict
    with its rule source (see :class:`Basis`)."""
    endpoint: str | None = None
    """For ``egress``: the URL called (scheme, host, port, path; never the query or
    credentials)."""
    processor: str | None = None
    """For ``egress`` to a third party: the processor's id in the region map."""
    status: int | None = None
    """For ``egress``: the HTTP status the endpoint answered."""
    bytes_received: int | None = None
    """For ``egress``: the response body's size (``size`` is what was sent)."""
    deid: str | None = None
    """For ``anonymised`` data: a summary of its de-identification evidence (profile,
    edition, options, attribute counts, SHA-256 of input and output; never a removed
    value), see :mod:`residency_sdk.deid`."""
    sdk_version: str = __version__

    def to_json(self) -> str:
        """The event's stable JSON form (field names as documented, ``schema`` first)."""
        return self.model_dump_json(by_alias=True)


AuditHook = Callable[[AuditEvent], None]
"""A callable receiving every audit event (a log pipeline, a test's list). It is called
synchronously; when it returns the event is as recorded as that hook can make it."""


@runtime_checkable
class AuditSink(Protocol):
    """A durable, ordered audit trail (:class:`~residency_sdk.audit.AuditLog` on SQLite
    or PostgreSQL, or a router sending each location's events to its own log).

    ``append(event, durable=True)`` returns once the event is durable (group-committed
    with whatever other threads appended meanwhile); ``durable=False`` queues it in order
    and returns at once: it becomes durable with the next commit, at the latest with the
    next durable append or :meth:`flush`, which is how decisions stay fast while a data
    operation's intent, appended after them, still implies they are on disk. A sink that
    cannot record raises :class:`~residency_sdk.errors.AuditUnavailable` (from this
    append, or from every later one until it recovers).
    """

    def append(self, event: AuditEvent, *, durable: bool = True) -> None:
        """Record ``event`` (durable on return unless ``durable=False``)."""

    def flush(self) -> None:
        """Make every queued event durable."""

    def close(self) -> None:
        """Flush and release the sink."""


class DeferredText(Protocol):
    """An event's canonical JSON text, made when its log commits it rather than when it
    is appended: a hot path (a guarded HTTP request) queues the few values that vary and
    the log's committer joins the text, off the caller's critical path. ``render()``
    must return exactly what :func:`~residency_sdk.audit.chain.canonical` makes of the
    event and must not raise."""

    def render(self) -> str:
        """The event's canonical JSON."""
        ...


class CanonicalSink(NamedTuple):
    """A sink that takes events as canonical JSON text (see
    :meth:`AuditEmitter.canonical_sinks`)."""

    target: object
    append: Callable[..., None]
    """``append(text, durable=...)``: as the sink's ``append`` of the event; ``text`` is a
    ``str`` or a :class:`DeferredText`."""
    commit_soon: Callable[[], None] | None
    deferred: bool = False
    """Whether ``append`` takes a :class:`DeferredText` and ``within=`` (the sink says so
    with a true ``takes_deferred_text`` attribute); else it is given the text itself."""


class AuditEmitter:
    """Delivers audit events to every sink and hook: the one path every audited operation
    takes.

    ``sinks`` are :class:`AuditSink` objects (an :class:`~residency_sdk.audit.AuditLog`, a
    location router): they are told whether an event must be durable before the call
    returns. ``hooks`` are plain callables (a log pipeline, a test's list), called
    synchronously; when one returns, the event is as recorded as that hook can make it.

    Data operations are written ahead: :meth:`intent` appends an ``intent`` event durably
    before the operation touches a backend (and raises :class:`AuditUnavailable` when any
    sink or hook cannot record it, so the operation never starts), :meth:`outcome` records
    how it ended. Decisions (:meth:`decision`) are queued (``durable=False``): the next
    durable append, or the sink's flush, puts them on disk in order.

    Thread-safe. A sink or hook that fails raises :class:`AuditUnavailable` to the
    operation that emitted (any other exception from a hook is wrapped in one, naming the
    hook): an operation that cannot be audited must not pass silently.
    """

    def __init__(self, hooks: Iterable[AuditHook] = (),
                 sinks: Iterable[AuditSink] = ()) -> None:
        self.hooks: tuple[AuditHook, ...] = tuple(hooks)
        """The callables that receive every audit event (replaced, never mutated, by
        :meth:`add`, so a reader never sees a half-updated tuple)."""
        self.sinks: tuple[AuditSink, ...] = tuple(sinks)
        """The durable sinks that receive every audit event."""
        self.enabled: bool = bool(self.hooks or self.sinks)
        """True when at least one sink or hook listens (building an event can then be
        skipped). A plain attribute: the decision hot path reads it on every call."""
        self._lock = threading.Lock()

    def add(self, hook: AuditHook | AuditSink) -> None:
        """Send every later event to ``hook`` (a callable, or an :class:`AuditSink`)."""
        with self._lock:
            if is_sink(hook):
                self.sinks = (*self.sinks, hook)  # type: ignore[arg-type]
            else:
                self.hooks = (*self.hooks, hook)  # type: ignore[arg-type]
            self.enabled = True

    def emit(self, event: AuditEvent, *, durable: bool = False) -> None:
        """Deliver ``event`` to every sink, then every hook, in the order they were added.

        ``durable=True`` returns only once every sink holds the event durably; the default
        queues it in each sink (on disk with the sink's next commit)."""
        target: object = None
        try:
            for target in self.sinks:
                target.append(event, durable=durable)
            for target in self.hooks:
                target(event)
        except AuditUnavailable:
            raise
        except Exception as exc:  # a hook's own failure, named; never a raw driver error
            kind = "hook" if any(target is hook for hook in self.hooks) else "sink"
            raise _unavailable(target, event, exc, kind) from exc

    def intent(self, event: AuditEvent, *, durable: bool = True,
               commit_now: bool = True) -> AuditEvent:
        """Record, durably, that the data operation ``event`` describes is about to start;
        return the ``intent`` event appended (pass it to :meth:`outcome`).

        Raises :class:`AuditUnavailable` when any sink or hook cannot record it: the
        caller must then not start the operation. Sinks that did record the intent are
        told at once (best effort) that the operation was not started, so their trail
        shows an ``error`` outcome rather than "outcome unknown".

        ``durable=False`` is for reads only: the intent is queued, the read runs while
        the sinks commit it, and the caller must :meth:`flush` before it releases what it
        read (see ``TenantStore``): no data reaches anyone before its intent is on disk,
        and the fsync overlaps the network round trip instead of preceding it: the sinks
        are asked to start that commit at once. With ``commit_now=False`` as well the
        intent simply joins the sinks' next group commit (within milliseconds), for a
        caller that chose not to wait for it (``compute_for(...,
        audit_durability="group")``)."""
        if event.outcome != "intent":
            event = event.model_copy(update={"outcome": "intent"})
        try:
            self.emit(event, durable=durable)
        except AuditUnavailable as exc:
            self._not_started(event, exc)
            raise
        if not durable and commit_now:
            for sink in self.sinks:
                start = getattr(sink, "commit_soon", None)
                if start is not None:
                    start()
        return event

    def intents(self, events: Sequence[AuditEvent]) -> list[AuditEvent]:
        """:meth:`intent` for several operations at once: the intents (and whatever the
        sinks hold queued, such as earlier operations' outcomes) are made durable
        together, one commit per sink instead of one per operation. Returns the
        ``intent`` events, in order.

        Raises :class:`AuditUnavailable` when any sink or hook cannot record them: then
        none of the operations may start, and each sink that can still hear it is told
        that each of them did not (as :meth:`intent` does for one)."""
        intents = [e if e.outcome == "intent" else e.model_copy(update={"outcome": "intent"})
                   for e in events]
        try:
            for event in intents:
                self.emit(event)
            self.flush()
        except AuditUnavailable as exc:
            for intent in intents:
                self._not_started(intent, exc)
            raise
        return intents

    def outcome(self, intent: AuditEvent | None, **fields: Any) -> AuditEvent | None:
        """Record how the operation of ``intent`` ended (``outcome="ok"|"error"|
        "blocked"`` and whatever else ``fields`` sets), naming the intent in
        ``intent_id``. Queued, like a decision: the operation's intent is already durable.
        None (nothing recorded) when ``intent`` is None (audit off)."""
        if intent is None:
            return None
        fields.setdefault("outcome", "ok")
        event = intent.model_copy(update={"event_id": new_event_id(), "time": event_time(),
                                          "intent_id": intent.event_id, **fields})
        self.emit(event)
        return event

    def _not_started(self, intent: AuditEvent, cause: AuditUnavailable) -> None:
        """After a failed intent: tell every sink and hook that can still hear it that
        the operation did not start (errors ignored: the caller gets ``cause``)."""
        closing = intent.model_copy(update={
            "event_id": new_event_id(), "time": event_time(), "intent_id": intent.event_id,
            "outcome": "error", "error": f"AuditUnavailable: {cause}"[:2000]})
        for sink in self.sinks:
            with contextlib.suppress(Exception):
                sink.append(closing, durable=False)
        for hook in self.hooks:
            with contextlib.suppress(Exception):
                hook(closing)

    def decision(self, operation: Literal["placement", "transfer_check"], tenant: Tenant,
                 decision: Decision, *, actor: str | None = None,
                 purpose: str | None = None, **extra: object) -> str | None:
        """Emit the event recording a residency decision (allowed and blocked alike);
        its ``event_id`` (None when nothing listens), for the operation that rests on it
        to name in ``decision_id``. Logged at INFO on ``residency_sdk.events``."""
        if _log.isEnabledFor(logging.INFO):
            log_decision(operation, tenant, decision)
        if not self.enabled:
            return None
        event = AuditEvent.model_validate({
            "operation": operation, "outcome": "allowed" if decision.allowed else "blocked",
            "actor": actor, "purpose": purpose, "tenant_id": tenant.id,
            "tenant_country": tenant.country, "data_class": decision.data_class,
            "source_location": decision.source, "destination_country": decision.destination,
            "is_transfer": decision.is_transfer, "mechanism": decision.mechanism,
            "regimes": decision.regimes, "reasons": decision.reasons,
            "agreements": decision.agreements, "basis": basis_of(decision), **extra})
        self.emit(event)
        return event.event_id

    def canonical_sinks(self, event: AuditEvent) -> tuple[CanonicalSink, ...] | None:
        """Where events like ``event`` (same operation, tenant and location) can be
        appended as canonical JSON text, skipping the event object: one entry per sink
        (a location router's is the sink it routes ``event`` to). None when a hook or a
        sink needs the object (the caller then emits it). Used by hot paths that make
        many near-identical events (:class:`~residency_sdk.audit.template.EventTemplate`)."""
        if self.hooks:
            return None
        found: list[CanonicalSink] = []
        for sink in self.sinks:
            route = getattr(sink, "sink_for", None)
            target = route(event) if route is not None else sink
            append = getattr(target, "append_canonical", None)
            if append is None:
                return None
            found.append(CanonicalSink(target, append, getattr(target, "commit_soon", None),
                                       getattr(target, "takes_deferred_text", False) is True))
        return tuple(found)

    def emit_canonical(self, sinks: tuple[CanonicalSink, ...], text: str | DeferredText,
                       event: Callable[[], AuditEvent], *, durable: bool = False,
                       within: float | None = None) -> None:
        """:meth:`emit` for an event given as its canonical JSON ``text``, made now or
        when committed (a :class:`DeferredText`), for :meth:`canonical_sinks`; ``event``
        builds the object for an error message. A sink that does not take deferred text
        is given the text itself. ``within``: how long a ``durable=False`` event may wait
        for its commit, for the sinks that take it (an ``AuditLog``: its ``group_window``
        otherwise)."""
        sink: CanonicalSink | None = None
        try:
            for sink in sinks:
                if sink.deferred:
                    sink.append(text, durable=durable, within=within)
                else:
                    sink.append(text if isinstance(text, str) else text.render(),
                                durable=durable)
        except AuditUnavailable:
            raise
        except Exception as exc:
            raise _unavailable(sink.target if sink else None, event(), exc) from exc

    def intent_canonical(self, sinks: tuple[CanonicalSink, ...], text: str | DeferredText,
                         event: Callable[[], AuditEvent], *, durable: bool = True,
                         commit_now: bool = True, within: float | None = None) -> None:
        """:meth:`intent` for an intent given as its canonical JSON ``text`` (same
        durability, same closing event when a sink cannot record it); ``event`` builds
        the intent's object for the rare paths that need one; ``within`` as for
        :meth:`emit_canonical`."""
        try:
            self.emit_canonical(sinks, text, event, durable=durable, within=within)
        except AuditUnavailable as exc:
            self._not_started(event(), exc)
            raise
        if not durable and commit_now:
            for sink in sinks:
                if sink.commit_soon is not None:
                    sink.commit_soon()

    def flush(self) -> None:
        """Make every event queued in the sinks durable."""
        for sink in self.sinks:
            try:
                sink.flush()
            except AuditUnavailable:
                raise
            except Exception as exc:
                raise _unavailable(sink, None, exc) from exc


def is_sink(obj: object) -> bool:
    """True when ``obj`` is an :class:`AuditSink` whose ``append`` takes ``durable=``
    (an object with only ``append(event)``, such as a JSON Lines sink, is a hook)."""
    if not isinstance(obj, AuditSink):
        return False
    try:
        params = inspect.signature(obj.append).parameters
    except (TypeError, ValueError):
        return False
    return "durable" in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def describe_target(target: object) -> str:
    """How a sink or hook is named in messages (never its credentials)."""
    name = getattr(target, "name", None)
    if isinstance(name, str) and name:
        return name
    path = getattr(target, "path", None)
    if path is not None:
        return str(path)
    owner = getattr(target, "__self__", None)
    if owner is not None and not isinstance(owner, type):
        shown = getattr(owner, "name", None)
        if isinstance(shown, str) and shown:
            return shown
        return f"{type(owner).__name__}.{getattr(target, '__name__', 'append')}"
    return getattr(target, "__qualname__", None) or type(target).__name__


def _unavailable(target: object, event: AuditEvent | None, exc: BaseException,
                 kind: str = "sink") -> AuditUnavailable:
    what = "" if event is None else f" the {event.operation} {event.outcome} event"
    return AuditUnavailable(
        f"audit {kind} {describe_target(target)!r} could not record"
        f"{what or ' its events'} ({type(exc).__name__}: {exc}): fix that {kind} (or "
        "remove it) - an operation that cannot be audited does not run")
