"""Which HTTP calls a tenant's data may make: the egress decision, pure and cached.

A request may go only to a compute endpoint of the tenant's own residency location, or
to a processor the region map declares and the transfer rules allow for the data class
it carries. Everything else is refused, and so is a URL that is malformed, carries
credentials, names an IP address (other than loopback) or speaks plain ``http`` to
anything but loopback.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from residency_sdk._endpoints import is_loopback_host, redact_url
from residency_sdk.agreements import Agreement
from residency_sdk.errors import EgressBlocked
from residency_sdk.model import Decision, Tenant
from residency_sdk.policy import ResidencyPolicy
from residency_sdk.regionmap import Processor

DATA_CLASS_HEADER = "x-residency-data-class"
"""A request header naming the data class the body carries; stripped before sending."""
DATA_CLASS_EXTENSION = "residency_data_class"
"""The httpx request extension naming the data class (preferred over the header)."""
DEFAULT_DATA_CLASS = "phi"
"""A request that names no class is taken to carry the strictest one."""


@dataclass(frozen=True, slots=True)
class EgressDecision:
    """Whether one request may leave, and why.

    ``kind`` is ``"compute"`` (the tenant's location's compute endpoint) or
    ``"processor"``; ``country`` is where the endpoint processes the data."""

    allowed: bool
    url: str
    host: str | None
    data_class: str
    kind: Literal["compute", "processor"] | None = None
    processor: str | None = None
    country: str | None = None
    decision: Decision | None = None
    reasons: tuple[str, ...] = ()
    agreements: tuple[str, ...] = field(default=())

    def error(self) -> EgressBlocked:
        """The :class:`EgressBlocked` a refused request raises."""
        return EgressBlocked(
            f"egress to {self.host or self.url} blocked: " + "; ".join(self.reasons),
            url=self.url, host=self.host, reasons=self.reasons, decision=self.decision)

    def raise_if_blocked(self) -> None:
        """Raise :class:`EgressBlocked` when the request may not leave."""
        if not self.allowed:
            raise self.error()


@dataclass(frozen=True, slots=True)
class _Origin:
    scheme: str
    host: str
    port: int


class EgressGuard:
    """Decides egress for the tenants of one policy (thread-safe, cached per tenant,
    origin and data class)."""

    def __init__(self, policy: ResidencyPolicy) -> None:
        self.policy = policy
        self._compute: dict[str, dict[tuple[str, str, int], str]] = {}
        for loc_id, location in policy.map.locations.items():
            origins: dict[tuple[str, str, int], str] = {}
            for target in location.compute:
                origin = _origin(target.endpoint)
                if origin is not None:
                    origins[(origin.scheme, origin.host, origin.port)] = target.endpoint
            self._compute[loc_id] = origins
        self._processor_at: dict[str, Processor] = {
            host: p for p in policy.map.processors.values() for host in p.hosts}
        self._processor_agreements: dict[str, frozenset[Agreement]] = {
            pid: frozenset(Agreement(**raw) for raw in p.agreements)
            for pid, p in policy.map.processors.items()}
        self._cache: dict[tuple[object, ...], EgressDecision] = {}

    def check(self, tenant: Tenant, url: str, data_class: str = DEFAULT_DATA_CLASS
              ) -> EgressDecision:
        """Whether ``tenant``'s ``data_class`` data may be sent to ``url`` today."""
        key = (tenant, url, data_class, self.policy.today())
        found = self._cache.get(key)
        if found is None:
            found = self._check(tenant, url, data_class)
            if len(self._cache) < 100_000:
                self._cache[key] = found
        return found

    def _check(self, tenant: Tenant, url: str, data_class: str) -> EgressDecision:
        shown = shown_url(url)
        dc = self.policy.check_data_class(data_class)
        problem, origin = _url_problem(url)
        if origin is None or problem:
            return EgressDecision(False, shown, origin.host if origin else None, dc,
                                  reasons=(problem or "not a URL",))
        location = self.policy.location_of(tenant)
        origin_key = (origin.scheme, origin.host, origin.port)
        if origin_key in self._compute[location.id]:
            decision = self.policy.decide(tenant, location.country, dc)
            return self._decided(decision, shown, origin.host, dc, "compute", None,
                                 location.country)
        for other, origins in self._compute.items():
            if other != location.id and origin_key in origins:
                return EgressDecision(False, shown, origin.host, dc, reasons=(
                    f"{origin.host} is a compute endpoint of location {other}, not of "
                    f"{location.id} where tenant {tenant.id!r} ({tenant.country}) keeps its "
                    f"data: send it to {location.id}'s compute endpoint "
                    f"({', '.join(self._compute[location.id].values()) or 'none declared'})",))
        processor = self._processor_at.get(f"{origin.host}:{origin.port}")
        if processor is None:
            return EgressDecision(False, shown, origin.host, dc, reasons=(
                f"{origin.host} is neither a compute endpoint of location {location.id} nor "
                "a processor's host in the region map: declare the processor under "
                "`processors:` (name, hosts, country, baa, retention, data_classes, "
                "agreements, source) or call the location's compute endpoint",))
        return self._processor(tenant, processor, shown, origin.host, dc)

    def _processor(self, tenant: Tenant, processor: Processor, shown: str, host: str,
                   dc: str) -> EgressDecision:
        refusals: list[str] = []
        # Declared for a class, a processor may also receive the less sensitive ones.
        if not processor.data_classes & set(_AT_LEAST[dc]):
            refusals.append(f"processor {processor.id} ({processor.name}) may receive "
                            f"{', '.join(sorted(processor.data_classes))} data, not {dc}: "
                            "send it de-identified, or declare the class for it")
        if dc == "phi" and not processor.baa:
            refusals.append(f"processor {processor.id} ({processor.name}) holds no BAA "
                            "(baa: false in the region map): it may not receive phi")
        with_processor = tenant.model_copy(update={
            "agreements": tenant.agreements | self._processor_agreements[processor.id]})
        decision = self.policy.decide(with_processor, processor.country, dc,
                                      counterparty=processor.name)
        if refusals:
            return EgressDecision(False, shown, host, dc, "processor", processor.id,
                                  processor.country, decision,
                                  (*refusals, *(() if decision.allowed else decision.reasons)))
        return self._decided(decision, shown, host, dc, "processor", processor.id,
                             processor.country)

    @staticmethod
    def _decided(decision: Decision, shown: str, host: str, dc: str,
                 kind: Literal["compute", "processor"], processor: str | None,
                 country: str) -> EgressDecision:
        reasons = decision.reasons if decision.allowed else (
            f"the transfer rules block {dc} data of this tenant to {country}", *decision.reasons)
        return EgressDecision(decision.allowed, shown, host, dc, kind, processor, country,
                              decision, tuple(reasons), decision.agreements)


_AT_LEAST = {"anonymised": ("anonymised", "personal", "phi"), "personal": ("personal", "phi"),
             "phi": ("phi",)}


def shown_url(url: object) -> str:
    """``url`` as messages and the audit trail show it: no credentials, query or
    fragment (they may carry personal data)."""
    if not isinstance(url, str):
        return repr(url)[:200]
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
        if parts.scheme and parts.hostname:
            host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
            return f"{parts.scheme}://{host}{port}{parts.path}"[:2000]
    except ValueError:
        pass
    text = redact_url(url)
    for mark in ("?", "#"):
        text = text.split(mark, 1)[0]
    return text[:2000]


def _origin(url: str) -> _Origin | None:
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host:
        return None
    return _Origin(parts.scheme, host, port or (443 if parts.scheme == "https" else 80))


def _url_problem(url: object) -> tuple[str | None, _Origin | None]:
    """Why ``url`` may not be called at all (None: it may be judged), and its origin."""
    if not isinstance(url, str) or not url.strip():
        return f"{shown_url(url)} is not a URL: use https://HOST/PATH", None
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        return f"{shown_url(url)!r} is not a valid URL (bad port or host)", None
    if parts.username is not None or parts.password is not None:
        origin = _origin(url)
        return ("the URL carries credentials (user:password@): send them in a header, "
                "never in the URL"), origin
    origin = _origin(url)
    if origin is None:
        return (f"{shown_url(url)!r} is not an http(s) URL with a host: use "
                "https://HOST/PATH"), None
    loopback = is_loopback_host(origin.host)
    if origin.scheme == "http" and not loopback:
        return (f"plain http to {origin.host} would send the data in clear text: use "
                "https (plain http is only for loopback test servers)"), origin
    try:
        ipaddress.ip_address(origin.host.strip("[]"))
        literal = True
    except ValueError:
        literal = False
    if literal and not loopback:
        return (f"{origin.host} is an IP address: a processor or compute endpoint is called "
                "by the DNS name the region map declares"), origin
    return None, origin
