"""Endpoint URL policy: TLS everywhere except loopback."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from residency_sdk.errors import InsecureEndpoint


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint_url(url: str) -> str:
    """Return ``url`` if it is https, or plain http to a loopback address; else raise.

    Plain HTTP would send PHI and credentials in clear text; only a local emulator on
    this machine may be reached that way.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return url
    if parts.scheme == "http" and host and is_loopback_host(host):
        return url
    raise InsecureEndpoint(
        f"endpoint {url!r} is refused: use https://, or http:// only to a loopback address "
        "(127.0.0.1, ::1, localhost) for a local emulator"
    )
