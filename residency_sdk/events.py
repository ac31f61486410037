"""Audit events: one per transfer decision, placement and data operation.

Events never carry object contents or credentials. Their JSON form is stable and
versioned (``schema``); the audit log chains them, the report aggregates them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, Field

from residency_sdk._version import __version__

if TYPE_CHECKING:
    from residency_sdk.model import Decision, Tenant

EVENT_SCHEMA = "residency.audit/v2"
"""v2 added ``intent`` outcomes, ``intent_id`` and the ``audit_off`` operation; v1 events
still parse (every v2 field has a default)."""

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
]
Outcome = Literal["allowed", "blocked", "ok", "error", "intent"]
"""``intent``: written (durably) before a data operation starts; the event with the
outcome names it in ``intent_id``. An intent without an outcome is "outcome unknown"."""


def _now() -> datetime:
    return datetime.now(UTC)


class AuditEvent(BaseModel):
    """One audited decision or data operation (schema ``residency.audit/v1``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_: str = Field(default=EVENT_SCHEMA, alias="schema")
    event_id: str = Field(default_factory=lambda: uuid4().hex)
    time: datetime = Field(default_factory=_now)
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
    error: str | None = None
    intent_id: str | None = None
    """On an outcome event: the ``event_id`` of the intent it completes."""
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


class AuditEmitter:
    """Delivers audit events to every hook: the one path every audited operation takes.

    Thread-safe. A failing hook propagates to the operation that emitted: an operation
    that cannot be audited must not pass silently.
    """

    def __init__(self, hooks: Iterable[AuditHook] = ()) -> None:
        self.hooks: tuple[AuditHook, ...] = tuple(hooks)
        """The callables that receive every audit event (replaced, never mutated, by
        :meth:`add`, so a reader never sees a half-updated tuple)."""
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """True when at least one hook listens (building an event can then be skipped)."""
        return bool(self.hooks)

    def add(self, hook: AuditHook) -> None:
        """Send every later event to ``hook`` as well."""
        with self._lock:
            self.hooks = (*self.hooks, hook)

    def emit(self, event: AuditEvent) -> None:
        """Deliver ``event`` to every hook, in the order they were added."""
        for hook in self.hooks:
            hook(event)

    def decision(self, operation: Literal["placement", "transfer_check"], tenant: Tenant,
                 decision: Decision, *, actor: str | None = None,
                 purpose: str | None = None, **extra: object) -> None:
        """Emit the event recording a residency decision (allowed and blocked alike)."""
        if not self.hooks:
            return
        self.emit(AuditEvent.model_validate({
            "operation": operation, "outcome": "allowed" if decision.allowed else "blocked",
            "actor": actor, "purpose": purpose, "tenant_id": tenant.id,
            "tenant_country": tenant.country, "data_class": decision.data_class,
            "source_location": decision.source, "destination_country": decision.destination,
            "is_transfer": decision.is_transfer, "mechanism": decision.mechanism,
            "regimes": decision.regimes, "reasons": decision.reasons, **extra}))
