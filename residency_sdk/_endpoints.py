"""Endpoint URL policy: TLS everywhere except loopback."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
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


# --- where an endpoint serves from ---------------------------------------------------
#
# A region map's endpoint must not quietly send a location's data to another region. An
# endpoint is accepted when it is one of the provider's in-region forms for the backend's
# region (below), when the map states where it serves from (``endpoint_country`` and
# ``endpoint_source``: checked by the map compiler), or when it is a loopback emulator.
# Whatever the map states, a host that names a provider region in another country is
# refused (``regions_named_by_host``).

_AWS_SUFFIX = "amazonaws.com"
_AWS_CN_SUFFIX = "amazonaws.com.cn"
_GCS_GLOBAL_HOST = "storage.googleapis.com"
_STORAGE_NAME = {"aws": "S3", "gcp": "Cloud Storage", "azure": "Azure Blob"}

# Domains each provider owns: a region code appearing as a DNS label under one of them is
# taken as that provider's word for where the host serves.
_PROVIDER_DOMAINS: dict[str, tuple[str, ...]] = {
    "aws": (_AWS_SUFFIX, _AWS_CN_SUFFIX, "api.aws", "on.aws"),
    "gcp": ("googleapis.com", "run.app", "cloudfunctions.net", "appspot.com"),
    "azure": ("windows.net", "azure.com", "azure.net", "azurecontainerapps.io",
              "azurewebsites.net", "azure-api.net", "microsoft.com"),
}

# Compute (inference) hosts whose region label sits at a fixed place: ``*.<region>.<suffix>``.
_COMPUTE_SUFFIXES: dict[str, tuple[str, ...]] = {
    "aws": (),  # built from the region: *.<region>.amazonaws.com(.cn)
    "gcp": ("rep.googleapis.com", "run.app"),
    "azure": ("inference.ml.azure.com", "azurecontainerapps.io", "api.cognitive.microsoft.com"),
}


def is_loopback_url(url: str) -> bool:
    """True when ``url`` parses and its host is a loopback address (a local emulator)."""
    try:
        return is_loopback_host(urlsplit(url).hostname or "")
    except ValueError:
        return False


def _aws_suffix(region: str) -> str:
    return _AWS_CN_SUFFIX if region.startswith("cn-") else _AWS_SUFFIX


def storage_endpoint_forms(provider: str, region: str, account: str | None) -> list[str]:
    """The in-region endpoint forms of ``provider``'s storage in ``region`` (for messages
    and for the check): exact ``https://HOST`` URLs, no port, path or query."""
    if provider == "aws":
        sfx = _aws_suffix(region)
        return [f"https://s3.{region}.{sfx}", f"https://s3.dualstack.{region}.{sfx}",
                f"https://s3-fips.{region}.{sfx}", f"https://s3-fips.dualstack.{region}.{sfx}"]
    if provider == "gcp":
        return [f"https://{_GCS_GLOBAL_HOST}", f"https://storage.{region}.rep.googleapis.com"]
    if provider == "azure":
        return [f"https://{(account or '<account>').lower()}.blob.core.windows.net"]
    return []


def _bare_https_host(url: str) -> str | None:
    """The lower-case host of ``url`` when it is ``https://HOST`` or ``https://HOST/`` with
    no port, user, query or fragment; otherwise None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if (parts.scheme != "https" or not parts.hostname or port is not None
            or parts.username is not None or parts.password is not None
            or parts.path not in ("", "/") or parts.query or parts.fragment
            or "@" in parts.netloc):
        return None
    return parts.hostname.lower()


def storage_endpoint_problem(provider: str, region: str, endpoint: str, *,
                             account: str | None, failover_region: str | None) -> str | None:
    """Why ``endpoint`` is not an in-region storage endpoint of ``provider`` in ``region``
    (None when it is one).

    Forms (``https://HOST`` only; no port, path or query):

    - S3: ``s3.<region>``, ``s3.dualstack.<region>``, ``s3-fips.<region>`` and
      ``s3-fips.dualstack.<region>`` under ``amazonaws.com`` (``amazonaws.com.cn`` for
      ``cn-`` regions). Such an endpoint pins one region, so a backend with a
      ``failover_region`` may not set one (the failover bucket would be reached through the
      primary region's endpoint).
    - GCS: the global ``storage.googleapis.com`` (serves any bucket from the bucket's own
      location, so also the failover bucket) or the regional
      ``storage.<region>.rep.googleapis.com`` (not with a ``failover_region``).
    - Azure Blob: ``<account>.blob.core.windows.net`` of the backend's own ``account``
      (the account endpoint follows the account, so it serves its failover too).
    """
    forms = storage_endpoint_forms(provider, region, account)
    if not forms:
        return f"a {provider} backend has no endpoint of its own: remove `endpoint`"
    host = _bare_https_host(endpoint)
    allowed = ", ".join(forms)
    if host is None:
        return ("an in-region endpoint is exactly https://HOST (no port, path, query or "
                f"credentials); for {provider} {region} use one of: {allowed}")
    if provider == "azure":
        if host.endswith(".blob.core.windows.net") and host.count(".") == 4:
            named = host.split(".", 1)[0]
            if not account:
                return (f"the endpoint names storage account {named!r} but the backend has no "
                        f"`account`: set `account: {named}` so infra and verify check the "
                        "same account the store writes to")
            if named != account.lower():
                return (f"the endpoint names storage account {named!r}, not the backend's "
                        f"account {account!r}: data would go to another account than the "
                        f"one provisioned and verified; use {allowed}")
            return None
        return f"not an Azure Blob endpoint of the backend's account: use {allowed}"
    if f"https://{host}" not in forms:
        return (f"not an in-region {_STORAGE_NAME[provider]} endpoint of {region}: use one "
                f"of {allowed}")
    regional = not (provider == "gcp" and host == _GCS_GLOBAL_HOST)
    if regional and failover_region:
        hint = (f" (or the global https://{_GCS_GLOBAL_HOST}, which serves each bucket "
                "from its own location)") if provider == "gcp" else \
            " (the SDK then uses each region's own endpoint)"
        return (f"this endpoint pins region {region}, but the backend also has "
                f"failover_region {failover_region!r}, whose bucket it cannot serve: remove "
                f"`endpoint`{hint}")
    return None


def compute_endpoint_problem(provider: str, region: str, endpoint: str) -> str | None:
    """Why ``endpoint`` is not an in-region compute endpoint of ``provider`` in ``region``
    (None when it is one). The rule: the region code is the DNS label of the host right
    before a provider-owned suffix that places it there:

    - AWS: ``*.<region>.amazonaws.com`` (``.amazonaws.com.cn`` for ``cn-`` regions), e.g.
      ``runtime.sagemaker.eu-central-1.amazonaws.com``;
    - GCP: ``<region>-<service>.googleapis.com`` (e.g. ``europe-west3-aiplatform``),
      ``*.<region>.rep.googleapis.com``, ``*.<region>.run.app``;
    - Azure: ``*.<region>.inference.ml.azure.com``, ``*.<region>.azurecontainerapps.io``,
      ``<region>.api.cognitive.microsoft.com``.

    Paths and ports are allowed; only the host decides.
    """
    try:
        host = (urlsplit(endpoint).hostname or "").lower()
    except ValueError:
        host = ""
    if provider == "aws":
        suffixes: tuple[str, ...] = (_aws_suffix(region),)
        examples = f"https://runtime.sagemaker.{region}.{_aws_suffix(region)}"
    elif provider in ("gcp", "azure"):
        suffixes = _COMPUTE_SUFFIXES[provider]
        examples = (f"https://{region}-aiplatform.googleapis.com" if provider == "gcp"
                    else f"https://NAME.{region}.inference.ml.azure.com")
    else:
        return (f"a {provider} compute target has no in-region endpoint form: state where it "
                "serves from")
    if host:
        if provider == "gcp":
            labels = host.split(".")
            if (len(labels) == 3 and labels[0].startswith(f"{region}-")
                    and len(labels[0]) > len(region) + 1 and host.endswith(".googleapis.com")):
                return None
        for sfx in suffixes:
            tail = f"{region}.{sfx}"
            if host.endswith("." + tail) or (
                    host == tail and sfx == "api.cognitive.microsoft.com"):
                return None
    return (f"the host does not place it in {provider} region {region} (the region must be "
            f"the DNS label before the provider's regional suffix, e.g. {examples})")


def regions_named_by_host(endpoint: str, known: Mapping[str, Iterable[str]],
                          ) -> list[tuple[str, str]]:
    """``(provider, region)`` for every region in ``known`` (provider -> region codes)
    that ``endpoint``'s host names while lying under a domain that provider owns: as a DNS
    label (``s3.us-east-1.amazonaws.com``) or, on Google and Azure, as the prefix of a
    ``<region>-...`` label (``europe-west3-aiplatform.googleapis.com``)."""
    try:
        host = (urlsplit(endpoint).hostname or "").lower().rstrip(".")
    except ValueError:
        return []
    named: set[tuple[str, str]] = set()
    labels = host.split(".")
    for provider, domains in _PROVIDER_DOMAINS.items():
        if not any(host == d or host.endswith("." + d) for d in domains):
            continue
        regions = {r.lower() for r in known.get(provider, ())}
        for label in labels:
            if label in regions:
                named.add((provider, label))
            elif provider != "aws":
                named.update((provider, r) for r in regions if label.startswith(f"{r}-"))
    return sorted(named)


def normal_url(url: str) -> str:
    """``url`` reduced to what decides where requests go: lower-case scheme and host, port
    unless the scheme's default, path without a trailing slash."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return url.strip()
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if port is not None and port != {"https": 443, "http": 80}.get(scheme):
        host = f"{host}:{port}"
    return f"{scheme}://{host}{parts.path.rstrip('/')}"


def shown_url(url: str) -> str:
    """``url`` safe to show: scheme, host, port and path; no user, password or query (a
    SAS token)."""
    if not url:
        return ""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return "<unparseable URL>"
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}{parts.path}"
