"""Audit stays in its location: a sink that sends each event to its location's own log.

Audit events name tenants, staff and studies, so they are personal data too. A region map
can give each location its own audit sink (``locations.<id>.audit.sink``: a file or a
PostgreSQL URL in that location); :class:`LocationRouter` is the one
:class:`~residency_sdk.events.AuditSink` the client writes to, and it appends every event
about a tenant to the sink of the tenant's location, every event about no tenant to the
default sink. An event it cannot place is refused (:class:`AuditUnavailable`): it never
falls through to some other location's log.

``Residency.load`` builds the router from the map (see :func:`locator`); the report then
runs per location (``residency audit report`` on each location's log) and can combine
the locations' aggregates without any event leaving its location.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from residency_sdk.errors import AuditUnavailable, ResidencyError
from residency_sdk.events import AuditEvent, AuditSink, describe_target

if TYPE_CHECKING:
    from residency_sdk.policy import PlacementTable


class LocationRouter:
    """An :class:`AuditSink` routing each event to the sink of the location it is about.

    ``sinks`` maps location ids to their sinks; ``default`` (may be None) receives the
    events ``locate`` places in no location (it returns None) and those of locations
    without a sink of their own. With no sink for an event, :meth:`append` raises
    :class:`AuditUnavailable`: an event is never sent where it does not belong.

    The router owns its sinks: :meth:`flush` and :meth:`close` reach every one of them.
    """

    def __init__(self, sinks: Mapping[str, AuditSink], default: AuditSink | None,
                 locate: Callable[[AuditEvent], str | None]) -> None:
        self.sinks: dict[str, AuditSink] = dict(sinks)
        """Location id -> its audit sink."""
        self.default = default
        """Where events about no location (and locations without a sink) go."""
        self.locate = locate
        self.name = "location router (" + ", ".join(
            [f"{loc}: {describe_target(s)}" for loc, s in sorted(self.sinks.items())]
            + ([f"default: {describe_target(default)}"] if default is not None else [])) + ")"
        """How the router is named in messages."""

    def sink_for(self, event: AuditEvent) -> AuditSink:
        """The sink ``event`` belongs in; :class:`AuditUnavailable` when there is none."""
        location = self.locate(event)
        sink = self.sinks.get(location) if location is not None else None
        if sink is None:
            sink = self.default
        if sink is None:
            where = (f"location {location}" if location is not None
                     else "no location (it names no tenant)")
            raise AuditUnavailable(
                f"the {event.operation} event of tenant {event.tenant_id!r} belongs to "
                f"{where}, which has no audit sink, and there is no default sink: give the "
                "location an `audit: {sink: ...}` section in the region map, or a "
                "top-level default `audit:`; nothing was recorded, so the operation does "
                "not run")
        return sink

    def append(self, event: AuditEvent, *, durable: bool = True) -> None:
        """Append ``event`` to its location's sink (durable on return unless
        ``durable=False``)."""
        self.sink_for(event).append(event, durable=durable)

    def commit_soon(self) -> None:
        """Ask every sink that can to start committing what it has queued now."""
        for sink in self.all_sinks():
            start = getattr(sink, "commit_soon", None)
            if start is not None:
                start()

    def all_sinks(self) -> list[AuditSink]:
        """Every distinct sink (each location's, then the default)."""
        seen: list[AuditSink] = []
        extra = [self.default] if self.default is not None else []  # (an empty log is falsy)
        for sink in [*self.sinks.values(), *extra]:
            if not any(sink is known for known in seen):
                seen.append(sink)
        return seen

    def broadcast(self, event: AuditEvent, *, durable: bool = True) -> None:
        """Append ``event`` to every sink (for events every location's trail must show,
        such as ``audit_off``)."""
        for sink in self.all_sinks():
            sink.append(event, durable=durable)

    def flush(self) -> None:
        """Make every queued event durable, in every sink."""
        _each(self.all_sinks(), lambda s: s.flush())

    def close(self) -> None:
        """Flush and close every sink (all are closed even if one fails)."""
        _each(self.all_sinks(), lambda s: s.close())

    def __repr__(self) -> str:
        return f"LocationRouter({self.name})"


def _each(sinks: Iterable[AuditSink], action: Callable[[AuditSink], None]) -> None:
    first: BaseException | None = None
    for sink in sinks:
        try:
            action(sink)
        except Exception as exc:  # the others still get flushed / closed
            first = first or exc
    if first is not None:
        raise first


def locator(table: PlacementTable) -> Callable[[AuditEvent], str | None]:
    """``locate`` for a :class:`LocationRouter` built from a map: an event about a tenant
    belongs to the location its country routes to (the tenant's own location, also for
    a transfer out of it); an erasure or key rotation event (``erase``, ``key_rotate``)
    and an event with a tenant id but
    no country (a retention deletion) to the location it happened in
    (``source_location``): erasing a tenant's copies in another location is recorded in
    that location's trail, its receipt (``source_location`` = the tenant's location) in
    the tenant's; anything else to none (the default)."""
    by_country: dict[str, str] = {}
    locations = table.map.locations

    def locate(event: AuditEvent) -> str | None:
        if event.operation in ("erase", "key_rotate") and event.source_location in locations:
            return event.source_location
        country = event.tenant_country
        if country is not None:
            found = by_country.get(country)
            if found is None:
                try:
                    found = table.resolve_country(country).location
                except ResidencyError:  # no route, or not a country: placed by location
                    found = None
                else:
                    if len(by_country) < 1024:  # countries are few; junk is not cached
                        by_country[country] = found
            if found is not None:
                return found
        if event.tenant_id is not None and event.source_location in locations:
            return event.source_location
        return None

    return locate
