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
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        userinfo = parts.username is not None or parts.password is not None
    except ValueError:  # an unparseable netloc (bad port, brackets)
        raise InsecureEndpoint(
            f"endpoint {redact_url(url)!r} is not a valid URL: use https://HOST[:PORT]/..."
        ) from None
    if userinfo:
        # A map is a committed file and endpoints appear in errors and reprs: credentials
        # there would leak, so they are refused (and not echoed) rather than stripped.
        raise InsecureEndpoint(
            f"endpoint {redact_url(url)!r} carries credentials (user:password@): remove "
            "them; credentials come from the provider's credential chain or environment, "
            "never from the region map")
    if parts.scheme == "https" and host:
        return url
    if parts.scheme == "http" and host and is_loopback_host(host):
        return url
    raise InsecureEndpoint(
        f"endpoint {url!r} is refused: use https://, or http:// only to a loopback address "
        "(127.0.0.1, ::1, localhost) for a local emulator"
    )


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@`` (safe to show)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    netloc, slash, tail = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return f"{scheme}{sep}{netloc}{slash}{tail}"
