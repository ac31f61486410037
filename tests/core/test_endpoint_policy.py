"""The endpoint policy (promises MV-13, MA-10, MDD-7): TLS to everything but loopback.

``check_endpoint_url`` is the one gate every storage and compute endpoint of a map passes;
these tests pin down each way through it, the exact fix each refusal names, and that a
refusal never echoes credentials.
"""

from __future__ import annotations

import pytest

from residency_sdk._endpoints import check_endpoint_url, is_loopback_host
from residency_sdk.errors import InsecureEndpoint, ResidencyError

LOOPBACK_FIX = ("use https://, or http:// only to a loopback address "
                "(127.0.0.1, ::1, localhost) for a local emulator")


@pytest.mark.parametrize("url", [
    "https://s3.eu-central-1.amazonaws.com",
    "https://storage.googleapis.com/",
    "https://acct.blob.core.windows.net/container?x=1",
    "https://10.0.0.5:8443/",
])
def test_https_endpoints_pass_unchanged(url: str) -> None:
    assert check_endpoint_url(url) == url


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9000",
    "http://127.8.9.10/",
    "http://[::1]:10000/devstoreaccount1",
    "http://localhost:4443",
])
def test_plain_http_passes_only_to_loopback(url: str) -> None:
    assert check_endpoint_url(url) == url


@pytest.mark.parametrize("url", [
    "http://s3.eu-central-1.amazonaws.com",
    "http://10.0.0.5:9000",
    "http://localhost.example.com",
    "http://[::2]:9000",
    "ftp://127.0.0.1/",
    "s3.eu-central-1.amazonaws.com",
    "https://",
    "http://",
])
def test_everything_else_is_refused_naming_the_url_and_the_fix(url: str) -> None:
    with pytest.raises(InsecureEndpoint) as caught:
        check_endpoint_url(url)
    assert str(caught.value) == f"endpoint {url!r} is refused: {LOOPBACK_FIX}"
    assert isinstance(caught.value, ResidencyError)


@pytest.mark.parametrize("url", [
    "https://user:hunter2@s3.example.com/",
    "https://user@s3.example.com/",
    "https://:hunter2@s3.example.com/",
    "http://user:hunter2@127.0.0.1:9000/",
])
def test_credentials_in_an_endpoint_are_refused_and_never_echoed(url: str) -> None:
    with pytest.raises(InsecureEndpoint) as caught:
        check_endpoint_url(url)
    message = str(caught.value)
    assert "hunter2" not in message and "user" not in message.split("carries")[0]
    assert "***@" in message
    assert message.endswith(
        "carries credentials (user:password@): remove them; credentials come from the "
        "provider's credential chain or environment, never from the region map")


def test_an_unparseable_endpoint_is_refused_with_the_expected_form() -> None:
    url = "https://user:hunter2@[not-an-ip/"
    with pytest.raises(InsecureEndpoint) as caught:
        check_endpoint_url(url)
    message = str(caught.value)
    assert "hunter2" not in message
    assert message == ("endpoint 'https://***@[not-an-ip/' is not a valid URL: use "
                       "https://HOST[:PORT]/...")


@pytest.mark.parametrize(("host", "loopback"), [
    ("localhost", True), ("127.0.0.1", True), ("127.255.0.1", True), ("::1", True),
    ("localhost.", False), ("10.0.0.1", False), ("::2", False), ("example.com", False),
    ("", False),
])
def test_loopback_means_localhost_or_a_loopback_address(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback
