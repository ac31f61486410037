"""The residency policy: a region map and transfer rules, answering where data lives and
whether it may move. Pure: no I/O after loading, no audit, every answer cached.

:class:`ResidencyPolicy` is what the tenant store, tracked erasure and the retention
sweep consult; :class:`~residency_sdk.client.Residency` (what users hold) wraps it with
storage and the audit trail.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from time import time
from typing import Any

from residency_sdk.agreements import Agreement, Derogation
from residency_sdk.countries import normalise_country
from residency_sdk.errors import InputError, InvalidTenant, MapError, NoRoute, UnknownLocation
from residency_sdk.model import Decision, Placement, Tenant
from residency_sdk.regionmap import Location, RegionMap, load_region_map
from residency_sdk.regions import RegionTable
from residency_sdk.rules import TransferRules, load_transfer_rules

# The strictest class decides what placement itself needs.
PLACEMENT_CLASS = "phi"
# Decisions are pure; the bound keeps a flood of distinct junk inputs from growing memory.
_DECISION_CACHE_SIZE = 100_000
_EPOCH = date(1970, 1, 1)
Clock = Callable[[], datetime]
"""What tells a policy the time (tests inject a fixed one); aware datetimes, UTC."""


def utc_day(clock: Clock | None) -> int:
    """Today (by ``clock``, default the system clock) as days since 1970-01-01, UTC: the
    decision cache's notion of "the day" (agreements start and end on dates)."""
    if clock is None:
        return int(time() // 86400)
    now = clock()
    if now.tzinfo is None:
        raise InputError(f"the clock returned a naive datetime {now!r}: return an aware "
                         "datetime such as datetime.now(UTC)")
    return (now.astimezone(UTC).date() - _EPOCH).days


def day_of(at: datetime | date) -> int:
    """``at`` (an aware datetime or a date) as days since 1970-01-01, UTC."""
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise InputError(f"at={at!r} is a naive datetime: pass an aware one (UTC) or a "
                             "date")
        at = at.astimezone(UTC).date()
    if not isinstance(at, date):
        raise InputError(f"at={at!r}: expected a date or an aware datetime")
    return (at - _EPOCH).days


class PlacementTable:
    """Answers where a tenant's data lives, from the placements computed when the policy
    was built. The policy and the client share this one implementation, so routing (an
    application's hottest call) runs the same code on both without a wrapper call."""

    map: RegionMap
    placements: Mapping[str, Placement]
    """Country -> placement, one per routed country (computed once)."""

    def resolve(self, tenant: Tenant) -> Placement:
        """Where ``tenant``'s data lives. Raises :class:`NoRoute` when the map has no route."""
        try:
            return self.placements[tenant.country]
        except KeyError:
            raise NoRoute(tenant.country, self.map.name) from None
        except AttributeError:
            raise InvalidTenant(f"expected a residency_sdk.Tenant, got {tenant!r}") from None

    def resolve_country(self, country: str) -> Placement:
        """Like :meth:`resolve`, for a bare country code (normalised first)."""
        code = normalise_country(country)
        try:
            return self.placements[code]
        except KeyError:
            raise NoRoute(code, self.map.name) from None


class ResidencyPolicy(PlacementTable):
    """Routes tenants to residency locations and decides cross-border transfers.

    Immutable after construction and safe to share between threads; build one with
    :meth:`load` or from an already compiled map and rules.
    """

    def __init__(self, region_map: RegionMap, rules: TransferRules, *,
                 clock: Clock | None = None) -> None:
        self.map = region_map
        policy = region_map.document.transfer_policy
        self.rules = rules.with_alongside(
            {_flag(rules, f, "require_alongside"): tuple(_flag(rules, n, "require_alongside")
                                                         for n in needs)
             for f, needs in policy.require_alongside.items()})
        self.clock = clock
        """The time decisions are taken at (None: the system clock)."""
        self.map_out_of_scope: tuple[tuple[str, str], ...] = tuple(sorted(
            (k.strip().lower(), v.strip()) for k, v in policy.out_of_scope.items()))
        """Overlays the whole map declared itself outside, with the stated reason."""
        for overlay_id, reason in self.map_out_of_scope:
            if overlay_id not in rules.overlays or not reason:
                raise MapError(f"transfer_policy.out_of_scope names {overlay_id!r} with reason "
                               f"{reason!r}: use a sector overlay id "
                               f"({', '.join(sorted(rules.overlays))}) and a stated reason",
                               file=region_map.file, path="transfer_policy.out_of_scope")
        self.map_agreements = _map_agreements(region_map, rules)
        """Agreements the map's operator holds for every tenant."""
        self.placements = {
            country: self._build_placement(country) for country in region_map.routes
        }
        self.decision_cache: dict[tuple[Any, ...], Decision] = {}
        """Decisions already made, by :meth:`decision_key`. Read it to answer a repeated
        question without a call (the client's hot path does); only :meth:`decide` writes."""

    @classmethod
    def load(cls, path: str | Path | None = None, *,
             clock: Clock | None = None) -> ResidencyPolicy:
        """Load a region map (the packaged default when ``path`` is None) and its rules."""
        region_map = load_region_map(path)
        return cls(region_map, load_transfer_rules(region_map.rules_file, region_map.groups),
                   clock=clock)

    def today(self) -> int:
        """Today by the policy's clock, as days since 1970-01-01 (UTC)."""
        return utc_day(self.clock)

    @property
    def regions(self) -> RegionTable:
        """provider -> cloud region -> country, as the map was checked against."""
        return self.map.regions

    # --- where data lives ---------------------------------------------------------------

    def location(self, location_id: str) -> Location:
        """The location ``location_id``; :class:`UnknownLocation` when the map has none."""
        try:
            return self.map.locations[location_id]
        except (KeyError, TypeError):
            raise UnknownLocation(
                f"unknown location {location_id!r} in region map {self.map.name!r}: use one "
                f"of {', '.join(sorted(self.map.locations))}") from None

    def location_of(self, tenant: Tenant) -> Location:
        """The location where ``tenant``'s data lives."""
        return self.map.locations[self.resolve(tenant).location]

    def destination(self, to: str) -> Location:
        """The location a copy sent to ``to`` lands in: a location id, or the country of
        exactly one location. Anything else is refused: copies only go to residency
        locations."""
        wanted = to.strip().upper() if isinstance(to, str) else to
        if isinstance(wanted, str) and wanted in self.map.locations:
            return self.map.locations[wanted]
        matches = [loc for loc in self.map.locations.values() if loc.country == wanted]
        if len(matches) == 1:
            return matches[0]
        raise UnknownLocation(
            f"transfer destination {to!r} is not a residency location of map "
            f"{self.map.name!r} (locations: {', '.join(sorted(self.map.locations))}): objects "
            "are only copied into a location the map defines")

    # --- transfers ----------------------------------------------------------------------

    @staticmethod
    def decision_key(tenant: Tenant, to: str, data_class: str, source: str | None,
                     day: int, extra: tuple[Any, ...] | None = None) -> tuple[Any, ...]:
        """The :attr:`decision_cache` key of a question asked on ``day`` (days since
        1970-01-01); ``extra`` is ``(counterparty, derogation, own_use)`` when any is
        given. Raises AttributeError or TypeError for junk that cannot be a key."""
        key = (tenant.country, tenant.agreements, tenant.out_of_scope, to, data_class,
               source, day, extra)
        hash(key)
        return key

    def decide(self, tenant: Tenant, to: str, data_class: str = "phi",
               source: str | None = None, *, at: datetime | date | None = None,
               counterparty: str | None = None, derogation: Derogation | None = None,
               own_use: bool = False) -> Decision:
        """Whether ``tenant``'s ``data_class`` data may move to country ``to``. Cached;
        never audited.

        Without ``source`` the data is where the tenant's placement put it, and that
        placement counts: asking for the location's own country answers whether the data
        may be placed there at all (a Turkish clinic's data in Germany is the KVKK
        transfer), and a move onward from a location the data may not lawfully be in is
        blocked too. An explicit ``source`` asks the rules a hypothetical (data that
        lives in ``source``); :meth:`Residency.check_transfer
        <residency_sdk.client.Residency.check_transfer>` refuses sources it does not
        know the data to be in.

        The decision is taken on the day of ``at`` (default: now, by the policy's clock):
        agreements not yet signed or expired that day do not count. ``counterparty``
        names the recipient (default: the ``operator`` the map names for the destination);
        ``derogation`` is one given for this transfer; ``own_use`` says the recipient uses
        the data for its own purposes (then no agent exemption applies).
        """
        day = self.today() if at is None else day_of(at)
        extra = None if counterparty is None and derogation is None and not own_use \
            else (counterparty, derogation, own_use)
        try:
            key: tuple[Any, ...] | None = (
                tenant.country, tenant.agreements, tenant.out_of_scope, to, data_class,
                source, day, extra)  # decision_key, inline: a hot path
            decision = self.decision_cache.get(key)  # type: ignore[arg-type]
        except (AttributeError, TypeError):  # not a Tenant, or unhashable junk arguments
            key, decision = None, None
        if decision is None:
            decision = self._decide(tenant, to, data_class, source, _EPOCH + timedelta(day),
                                    counterparty, derogation, own_use)
            if key is not None and len(self.decision_cache) < _DECISION_CACHE_SIZE:
                self.decision_cache[key] = decision
        return decision

    def placement_decision(self, tenant: Tenant, data_class: str = PLACEMENT_CLASS, *,
                           at: datetime | date | None = None) -> Decision:
        """Whether placing ``tenant``'s ``data_class`` data in its location is lawful:
        the move from the tenant's own country to the location's."""
        location_country = self.location_of(tenant).country
        return self.decide(tenant, location_country, data_class, source=tenant.country, at=at)

    def check_data_class(self, data_class: str) -> str:
        """``data_class`` if the rules define it, else :class:`UnknownDataClass`."""
        return self.rules.check_data_class(data_class)

    # --- internals ----------------------------------------------------------------------

    def _decide(self, tenant: Tenant, to: str, data_class: str, source: str | None,
                on: date, counterparty: str | None, derogation: Derogation | None,
                own_use: bool) -> Decision:
        if not isinstance(tenant, Tenant):
            raise InvalidTenant(f"expected a residency_sdk.Tenant, got {tenant!r}")
        if derogation is not None and not isinstance(derogation, Derogation):
            raise InvalidTenant(f"derogation={derogation!r}: expected "
                                "rs.Derogation(ground='explicit_consent', reference=...)")
        self.rules.check_agreements(tenant.agreements)
        for overlay_id, _reason in tenant.out_of_scope:
            if overlay_id not in self.rules.overlays:
                raise InvalidTenant(
                    f"tenant {tenant.id!r} declares itself out of scope of {overlay_id!r}, "
                    f"which is no sector overlay: use one of "
                    f"{', '.join(sorted(self.rules.overlays))}")
        dc = self.rules.check_data_class(data_class)
        destination = normalise_country(to)
        agreements = tenant.agreements | self.map_agreements
        out_of_scope = tuple(sorted({**dict(self.map_out_of_scope),
                                     **dict(tenant.out_of_scope)}.items()))

        def ask(source: str, destination: str, counterparty: str | None) -> Decision:
            return self.rules.decide(
                tenant_country=tenant.country, source=source, destination=destination,
                data_class=dc, agreements=agreements, on=on, counterparty=counterparty,
                derogation=derogation, own_use=own_use, out_of_scope=out_of_scope)

        if source is not None:
            return ask(normalise_country(source), destination,
                       counterparty or self.operator_in(destination))
        location = self.location_of(tenant)
        placement = ask(tenant.country, location.country, location.operator)
        if destination == location.country:
            return placement  # "no transfer" would hide that placing it there was one
        onward = ask(location.country, destination,
                     counterparty or self.operator_in(destination))
        if placement.allowed:
            return onward
        return onward.model_copy(update={
            "allowed": False, "mechanism": None,
            "regimes": tuple(dict.fromkeys((*placement.regimes, *onward.regimes))),
            "verdicts": (*placement.verdicts, *onward.verdicts),
            "reasons": (f"{tenant.country} data may not be placed in location {location.id} "
                        f"in the first place: " + "; ".join(placement.reasons),
                        *onward.reasons)})

    def operator_in(self, country: str) -> str | None:
        """The entity holding data the SDK places in ``country``: the operator of the
        map's one location there, else the map's operator."""
        found = [loc for loc in self.map.locations.values() if loc.country == country]
        if len(found) == 1:
            return found[0].operator
        return self.map.document.operator

    def _build_placement(self, country: str) -> Placement:
        route = self.map.routes[country]
        location = self.map.locations[route.location]
        needs = self.rules.decide(tenant_country=country, source=country,
                                  destination=location.country, data_class=PLACEMENT_CLASS,
                                  agreements=self.map_agreements,
                                  counterparty=location.operator,
                                  out_of_scope=self.map_out_of_scope)
        return Placement(
            country=country, location=location.id, storage=location.default_storage,
            compute=location.compute[0] if location.compute else None,
            backends=tuple(location.backends.values()),
            required_mechanisms=needs.unblock_with if not needs.allowed else (),
            matched_route=route.matched,
        )


def _flag(rules: TransferRules, flag: str, where: str) -> str:
    name = rules.book.canonical(flag.strip().lower())
    if name not in rules.mechanisms:
        raise MapError(f"transfer_policy.{where} names unknown mechanism {flag!r}: use one of "
                       f"{', '.join(sorted(rules.mechanisms))}", file=rules.file)
    return name


def _map_agreements(region_map: RegionMap, rules: TransferRules) -> frozenset[Agreement]:
    out = set()
    for i, raw in enumerate(region_map.document.transfer_policy.agreements):
        try:
            agreement = Agreement(**raw)
        except InputError as exc:
            raise MapError(str(exc), file=region_map.file,
                           path=f"transfer_policy.agreements.{i}") from None
        _flag(rules, agreement.mechanism, f"agreements.{i}.mechanism")
        out.add(agreement)
    return frozenset(out)
