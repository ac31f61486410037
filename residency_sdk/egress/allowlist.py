"""The egress allow-list: every endpoint the egress guard may let tenants' data reach.

The guard (:mod:`residency_sdk.egress.guard`) only sees requests made through the
clients :meth:`Residency.compute_for` hands out. A request made any other way (another
HTTP client, a raw socket, a subprocess) is stopped only by the network: this module
lists, from the region map, the endpoints to allow there (an egress proxy, firewall
rules, a Kubernetes NetworkPolicy, cloud egress rules) and renders the list as plain
``host:port`` lines, JSON or a Squid snippet. Everything not listed is to be refused.

The list is the union over tenants: it says which hosts may be reached at all, not which
tenant may reach which (that stays the guard's decision, per request).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal
from urllib.parse import urlsplit

from residency_sdk._endpoints import is_loopback_host
from residency_sdk.errors import InputError
from residency_sdk.regionmap import RegionMap

FORMATS = ("txt", "json", "squid")
"""The renderings :func:`render` knows."""


@dataclass(frozen=True, slots=True)
class AllowedEndpoint:
    """One endpoint tenants' data may be sent to.

    ``owner`` is the location id (``kind="compute"``) or the processor id
    (``kind="processor"``); ``country`` is where the endpoint processes the data;
    ``data_classes`` the classes a processor may receive (``None`` for compute endpoints,
    which the transfer rules alone decide); ``source`` how the map knows where it serves
    (``endpoint_source`` or the processor's ``source``; for a compute endpoint stated by
    neither, its provider's in-region endpoint form, or a loopback emulator)."""

    scheme: str
    host: str
    port: int
    kind: Literal["compute", "processor"]
    owner: str
    country: str
    data_classes: tuple[str, ...] | None
    source: str

    @property
    def host_port(self) -> str:
        """``host:port`` (IPv6 literals in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def loopback(self) -> bool:
        """True for a loopback endpoint (a local emulator or test stub)."""
        return is_loopback_host(self.host)


def egress_allowlist(region_map: RegionMap, *, location: str | None = None
                     ) -> list[AllowedEndpoint]:
    """Every compute endpoint of every location (or only of ``location``) and every
    processor host of ``region_map``, in map order.

    Processors are listed whatever ``location`` is: any location's tenants may be sent
    to them when the rules allow. An unknown ``location`` raises :class:`InputError`."""
    if location is None:
        locations = list(region_map.locations.values())
    else:
        wanted = location.strip()
        found = region_map.locations.get(wanted) or region_map.locations.get(wanted.upper())
        if found is None:
            raise InputError(f"unknown location {location!r} in region map "
                             f"{region_map.name!r}: use one of "
                             f"{', '.join(sorted(region_map.locations))}")
        locations = [found]
    out: list[AllowedEndpoint] = []
    for loc in locations:
        for target in loc.compute:
            parts = urlsplit(target.endpoint)
            host = (parts.hostname or "").lower()
            if parts.scheme not in ("http", "https") or not host:
                continue  # the map compiler refuses these; the guard would never match
            port = parts.port or (443 if parts.scheme == "https" else 80)
            if target.endpoint_source:
                source = target.endpoint_source
            elif is_loopback_host(host):
                source = "loopback emulator"
            else:
                source = f"{target.provider} in-region endpoint form for {target.region}"
            out.append(AllowedEndpoint(
                scheme=parts.scheme, host=host, port=port, kind="compute", owner=loc.id,
                country=loc.country, data_classes=None, source=source))
    for pid, processor in region_map.processors.items():
        for host_port in sorted(processor.hosts):
            bare, _, port_text = host_port.rpartition(":")
            bare = bare.strip("[]")
            out.append(AllowedEndpoint(
                scheme="http" if is_loopback_host(bare) else "https", host=bare,
                port=int(port_text), kind="processor", owner=pid, country=processor.country,
                data_classes=tuple(sorted(processor.data_classes)),
                source=processor.source))
    return out


def _header(what: str, map_name: str, location: str | None) -> list[str]:
    where = f"location {location}'s compute endpoints" if location else \
        "every location's compute endpoints"
    return [f"# residency-sdk egress allow-list ({what}), region map {map_name!r}:",
            f"# {where} and every declared processor host.",
            "# The only endpoints tenants' data may be sent to: allow these, refuse the rest."]


def _host_ports(endpoints: list[AllowedEndpoint]) -> list[str]:
    return list(dict.fromkeys(e.host_port for e in endpoints))


def to_text(endpoints: list[AllowedEndpoint], *, map_name: str,
            location: str | None = None) -> str:
    """One ``host:port`` per line (each once), under a ``#`` comment header."""
    lines = [*_header("host:port", map_name, location), *_host_ports(endpoints)]
    return "\n".join(lines) + "\n"


def to_json(endpoints: list[AllowedEndpoint], *, map_name: str,
            location: str | None = None) -> str:
    """``{"map", "location", "endpoints": [{scheme, host, port, kind, owner, country,
    data_classes, source}, ...]}`` as indented JSON."""
    data = {"map": map_name, "location": location,
            "endpoints": [asdict(e) for e in endpoints]}
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def to_squid(endpoints: list[AllowedEndpoint], *, map_name: str,
             location: str | None = None) -> str:
    """A Squid ``squid.conf`` snippet: one ``dstdomain`` ACL and one ``port`` ACL per
    port, an ``http_access allow`` for each pair, then ``http_access deny all``.

    Put it before any other ``http_access`` line. Loopback endpoints (emulators, test
    stubs) are not reached through a proxy and are listed as comments only."""
    by_port: dict[int, list[str]] = {}
    loopback: list[str] = []
    for e in endpoints:
        if e.loopback:
            loopback.append(e.host_port)
        elif e.host not in by_port.setdefault(e.port, []):
            by_port[e.port].append(e.host)
    lines = [*_header("Squid", map_name, location),
             "# Place before any other http_access line."]
    for port, hosts in sorted(by_port.items()):
        lines += [f"acl residency_egress_{port} dstdomain {' '.join(hosts)}",
                  f"acl residency_egress_port_{port} port {port}",
                  f"http_access allow residency_egress_{port} residency_egress_port_{port}"]
    lines += [f"# loopback, not through the proxy: {hp}" for hp in dict.fromkeys(loopback)]
    lines.append("http_access deny all")
    return "\n".join(lines) + "\n"


def render(endpoints: list[AllowedEndpoint], fmt: str, *, map_name: str,
           location: str | None = None) -> str:
    """``endpoints`` in ``fmt`` (one of :data:`FORMATS`); :class:`InputError` otherwise."""
    if fmt == "txt":
        return to_text(endpoints, map_name=map_name, location=location)
    if fmt == "json":
        return to_json(endpoints, map_name=map_name, location=location)
    if fmt == "squid":
        return to_squid(endpoints, map_name=map_name, location=location)
    raise InputError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
