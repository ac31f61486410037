"""The plan of a request: which backends it erases.

Every backend of the request's location (each provider's primary and in-country
failover; the request's ``providers`` narrow the providers there), every location and
provider the tenant's lineage (:mod:`residency_sdk.lineage`) says its data reached (scope
``tenant``), and every backend planned on an earlier run: the plan only grows. Where the
lineage cannot be read, or names a place the region map cannot open, the plan says so in
the request's ``lineage_unreachable`` (the erasure then stays open).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from residency_sdk.erasure.request import WHOLE_LINEAGE, ErasureRequest
from residency_sdk.errors import AuditUnavailable, ResidencyError
from residency_sdk.model import StorageTarget
from residency_sdk.policy import ResidencyPolicy
from residency_sdk.regionmap import Role
from residency_sdk.storage.pool import StorePool
from residency_sdk.sweep import backend_name

if TYPE_CHECKING:
    from residency_sdk.lineage import Lineage


class PlannedBackend(NamedTuple):
    """One backend of a request's plan."""

    name: str
    location: str
    role: Role
    target: StorageTarget


def plan_backends(request: ErasureRequest, policy: ResidencyPolicy, stores: StorePool,
                  lineage: Lineage | None) -> list[PlannedBackend]:
    """The backends to erase: the request's location (its ``providers``), then every
    (location, provider) the tenant's lineage names (scope ``tenant``), then every
    backend planned on an earlier run. Records the locations whose lineage could not
    be read, and those the map can no longer reach, in ``lineage_unreachable``."""
    home = policy.location(request.location)
    pairs: list[tuple[str, str]] = [
        (home.id, p) for p in (request.providers if request.providers is not None
                               else stores.data_providers(home))]
    unreachable: dict[str, str] = {}
    if request.scope == "tenant" and lineage is not None:
        try:
            trace = lineage.trace(request.tenant_id)
        except AuditUnavailable:
            raise
        except ResidencyError as exc:
            unreachable[WHOLE_LINEAGE] = f"{type(exc).__name__}: {exc}"
        else:
            unreachable.update(trace.unreachable)
            pairs += sorted(trace.reached())
    pairs += [(b.location or request.location, b.provider)
              for b in request.backends.values()]
    plan: dict[str, PlannedBackend] = {}
    for location_id, provider in dict.fromkeys(pairs):
        try:
            targets = policy.location(location_id).targets([provider])
        except ResidencyError as exc:
            # The tenant's data went somewhere this map no longer describes: the
            # erasure cannot reach it, so it cannot be complete.
            unreachable[location_id] = (
                f"the tenant's data reached provider {provider!r} in {location_id}, "
                f"which region map {policy.map.name!r} cannot open ({exc}); restore "
                "that backend in the map, or erase it there yourself, and run again")
            continue
        for role, target in targets:
            name = f"{location_id}/{backend_name(role, target)}"
            plan.setdefault(name, PlannedBackend(name, location_id, role, target))
    request.lineage_unreachable = unreachable
    return list(plan.values())
