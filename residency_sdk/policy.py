"""The residency policy: a region map and transfer rules, answering where data lives and
whether it may move. Pure: no I/O after loading, no audit, every answer cached.

:class:`ResidencyPolicy` is what the tenant store, tracked erasure and the retention
sweep consult; :class:`~residency_sdk.client.Residency` (what users hold) wraps it with
storage and the audit trail.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from residency_sdk.countries import normalise_country
from residency_sdk.errors import InvalidTenant, NoRoute, UnknownLocation
from residency_sdk.model import Decision, Placement, Tenant
from residency_sdk.regionmap import Location, RegionMap, load_region_map
from residency_sdk.regions import RegionTable
from residency_sdk.rules import TransferRules, load_transfer_rules

# The strictest class decides what placement itself needs.
PLACEMENT_CLASS = "phi"
# Decisions are pure; the bound keeps a flood of distinct junk inputs from growing memory.
_DECISION_CACHE_SIZE = 100_000


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

    def __init__(self, region_map: RegionMap, rules: TransferRules) -> None:
        self.map = region_map
        self.rules = rules
        self.placements = {
            country: self._build_placement(country) for country in region_map.routes
        }
        self.decision_cache: dict[tuple[Any, ...], Decision] = {}
        """Decisions already made, by :meth:`decision_key`. Read it to answer a repeated
        question without a call (the client's hot path does); only :meth:`decide` writes."""

    @classmethod
    def load(cls, path: str | Path | None = None) -> ResidencyPolicy:
        """Load a region map (the packaged default when ``path`` is None) and its rules."""
        region_map = load_region_map(path)
        return cls(region_map, load_transfer_rules(region_map.rules_file, region_map.groups))

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
    def decision_key(tenant: Tenant, to: str, data_class: str,
                     source: str | None) -> tuple[Any, ...]:
        """The :attr:`decision_cache` key of a question (raises AttributeError or
        TypeError for junk that cannot be a key)."""
        key = (tenant.country, tenant.agreements, to, data_class, source)
        hash(key)
        return key

    def decide(self, tenant: Tenant, to: str, data_class: str = "phi",
               source: str | None = None) -> Decision:
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
        """
        try:
            key: tuple[Any, ...] | None = (tenant.country, tenant.agreements, to, data_class,
                                           source)  # decision_key, inline: a hot path
            decision = self.decision_cache.get(key)  # type: ignore[arg-type]
        except (AttributeError, TypeError):  # not a Tenant, or unhashable junk arguments
            key, decision = None, None
        if decision is None:
            decision = self._decide(tenant, to, data_class, source)
            if key is not None and len(self.decision_cache) < _DECISION_CACHE_SIZE:
                self.decision_cache[key] = decision
        return decision

    def placement_decision(self, tenant: Tenant, data_class: str = PLACEMENT_CLASS) -> Decision:
        """Whether placing ``tenant``'s ``data_class`` data in its location is lawful:
        the move from the tenant's own country to the location's."""
        location_country = self.location_of(tenant).country
        return self.decide(tenant, location_country, data_class, source=tenant.country)

    def check_data_class(self, data_class: str) -> str:
        """``data_class`` if the rules define it, else :class:`UnknownDataClass`."""
        return self.rules.check_data_class(data_class)

    # --- internals ----------------------------------------------------------------------

    def _decide(self, tenant: Tenant, to: str, data_class: str,
                source: str | None) -> Decision:
        if not isinstance(tenant, Tenant):
            raise InvalidTenant(f"expected a residency_sdk.Tenant, got {tenant!r}")
        self.rules.check_agreements(tenant.agreements)
        dc = self.rules.check_data_class(data_class)
        destination = normalise_country(to)
        if source is not None:
            return self.rules.decide(tenant_country=tenant.country,
                                     source=normalise_country(source),
                                     destination=destination, data_class=dc,
                                     agreements=tenant.agreements)
        location = self.location_of(tenant)
        placement = self.rules.decide(tenant_country=tenant.country, source=tenant.country,
                                      destination=location.country, data_class=dc,
                                      agreements=tenant.agreements)
        if destination == location.country:
            return placement  # "no transfer" would hide that placing it there was one
        onward = self.rules.decide(tenant_country=tenant.country, source=location.country,
                                   destination=destination, data_class=dc,
                                   agreements=tenant.agreements)
        if placement.allowed:
            return onward
        return onward.model_copy(update={
            "allowed": False, "mechanism": None,
            "regimes": tuple(dict.fromkeys((*placement.regimes, *onward.regimes))),
            "verdicts": (*placement.verdicts, *onward.verdicts),
            "reasons": (f"{tenant.country} data may not be placed in location {location.id} "
                        f"in the first place: " + "; ".join(placement.reasons),
                        *onward.reasons)})

    def _build_placement(self, country: str) -> Placement:
        route = self.map.routes[country]
        location = self.map.locations[route.location]
        needs = self.rules.decide(tenant_country=country, source=country,
                                  destination=location.country, data_class=PLACEMENT_CLASS,
                                  agreements=frozenset())
        return Placement(
            country=country, location=location.id, storage=location.default_storage,
            compute=location.compute[0] if location.compute else None,
            backends=tuple(location.backends.values()),
            required_mechanisms=needs.unblock_with if not needs.allowed else (),
            matched_route=route.matched,
        )
