"""Compute and egress under residency: which HTTP calls a tenant's data may make.

:mod:`~residency_sdk.egress.guard` decides (the tenant's location's compute endpoints, or
a processor the region map declares and the transfer rules allow);
:mod:`~residency_sdk.egress.transport` enforces it on every request of an httpx client
(``Residency.compute_for``); :mod:`~residency_sdk.egress.allowlist` exports the declared
endpoints for proxies and firewalls. Importing this package does not import httpx.
"""

from residency_sdk.egress.guard import EgressDecision, EgressGuard

__all__ = ["EgressDecision", "EgressGuard"]
