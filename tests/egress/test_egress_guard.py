"""The egress guard end to end: real loopback HTTP servers, a region map declaring them,
requests through ``res.compute_for`` and ``res.async_compute_for`` (the ``caller``
fixture runs each test in both modes), and the audit events they leave."""

from __future__ import annotations

import httpx
import pytest
from egress_env import (  # noqa: F401 - fixtures (a conftest.py here would shadow the suite's)
    Caller,
    caller,
    egress_map,
    events,
    res,
    servers,
)
from egress_loopback import CountingServer

import residency_sdk as rs
from residency_sdk.events import AuditEvent

AT = rs.Tenant(id="klinikum-wien", country="AT")  # routed to location DE
US_NO_BAA = rs.Tenant(id="us-clinic", country="US")
US_BAA = rs.Tenant(id="us-clinic-baa", country="US",
                   agreements={rs.Agreement("baa", destinations=["US"], reference="BAA-7")})
SECRET = "s3cr3t-pw"

Servers = dict[str, CountingServer]


def connections(servers: Servers) -> dict[str, int]:
    return {name: server.connections for name, server in servers.items()}


def nothing_sent(servers: Servers) -> None:
    assert connections(servers) == dict.fromkeys(servers, 0)
    assert all(not server.requests for server in servers.values())


def egress(events: list[AuditEvent]) -> list[AuditEvent]:
    return [e for e in events if e.operation in ("egress", "egress_check")]


def only_blocked_event(events: list[AuditEvent]) -> AuditEvent:
    assert [(e.operation, e.outcome) for e in events] == [("egress", "blocked")]
    return events[0]


# --- 1. allowed: the tenant's own location's compute endpoint -------------------------


def test_post_to_own_compute_endpoint_is_sent_and_audited(caller, servers, events):
    de = servers["de"]
    body = b"x" * 1024
    response = caller.call(AT, "POST", f"{de.url}/infer?patient=jane-doe", content=body,
                           purpose="inference", actor="svc-infer")

    assert response.status_code == 200
    assert response.json()["received"] == 1024
    assert de.connections == 1
    assert [r.body for r in de.requests] == [body]
    others = {n: c for n, c in connections(servers).items() if n != "de"}
    assert others == dict.fromkeys(others, 0)

    assert [(e.operation, e.outcome) for e in events] == [("egress", "intent"), ("egress", "ok")]
    intent, done = events
    for e in (intent, done):
        assert e.endpoint == f"{de.url}/infer"  # no query string
        assert e.purpose == "inference"
        assert e.actor == "svc-infer"
        assert e.data_class == "phi"
        assert e.tenant_id == AT.id
        assert e.tenant_country == "AT"
        assert e.source_location == "DE"
        assert e.destination_country == "DE"
        assert e.is_transfer is False
        assert e.processor is None
        assert "jane-doe" not in e.to_json()
    assert intent.size == 1024
    assert done.intent_id == intent.event_id
    assert done.status == 200
    assert done.size == 1024
    assert done.bytes_received == len(response.content) > 0


@pytest.mark.parametrize("how", ["header", "extension", "both"])
def test_data_class_header_is_stripped_and_extension_works(caller, servers, events, how):
    de = servers["de"]
    headers = {"X-Residency-Data-Class": "phi" if how == "both" else "personal"}
    kwargs: dict[str, object] = {}
    if how in ("header", "both"):
        kwargs["headers"] = headers
    if how in ("extension", "both"):
        kwargs["extensions"] = {"residency_data_class": "personal"}  # preferred
    response = caller.call(AT, "POST", f"{de.url}/infer", content=b"abc", **kwargs)

    assert response.status_code == 200
    assert de.connections == 1
    (received,) = de.requests
    assert "x-residency-data-class" not in received.headers
    assert [(e.outcome, e.data_class) for e in events] == [("intent", "personal"),
                                                         ("ok", "personal")]


def test_connection_failure_is_audited_as_error(caller, servers, events):
    de = servers["de"]
    url = f"{de.url}/infer"
    de.stop()
    with pytest.raises(httpx.ConnectError):
        caller.call(AT, "POST", url, content=b"abc")
    assert [(e.operation, e.outcome) for e in events] == [("egress", "intent"),
                                                         ("egress", "error")]
    assert events[1].intent_id == events[0].event_id
    assert "ConnectError" in (events[1].error or "")


# --- 2. undeclared host -----------------------------------------------------------------


def test_undeclared_host_is_blocked_before_sending(caller, servers, events):
    with pytest.raises(rs.EgressBlocked) as info:
        caller.call(AT, "POST", "https://api.unknown.example/v1/chat?key=abc",
                    content=b"x" * 10)
    message = str(info.value)
    assert info.value.host == "api.unknown.example"
    assert "api.unknown.example" in message
    assert "processors:" in message  # the fix: declare it
    nothing_sent(servers)
    event = only_blocked_event(events)
    assert event.endpoint == "https://api.unknown.example/v1/chat"
    assert event.data_class == "phi"
    assert event.purpose == "inference"
    assert event.reasons and "api.unknown.example" in event.reasons[0]


def test_undeclared_loopback_port_is_blocked(caller, servers, events):
    with pytest.raises(rs.EgressBlocked):
        caller.call(AT, "GET", f"{servers['undeclared'].url}/x")
    nothing_sent(servers)
    only_blocked_event(events)


# --- 3. redirects are decided hop by hop ------------------------------------------------


@pytest.mark.parametrize("target", ["undeclared", "us"])
def test_redirect_to_a_host_the_tenant_may_not_reach_is_blocked(caller, servers, events,
                                                                target):
    de, bad = servers["de"], servers[target]
    de.redirect_to = f"{bad.url}/x"
    with pytest.raises(rs.EgressBlocked) as info:
        caller.call(AT, "POST", f"{de.url}/redirect", content=b"y" * 7,
                    client_options={"follow_redirects": True})
    assert bad.connections == 0
    assert de.connections == 1
    assert info.value.host == "127.0.0.1"
    if target == "us":
        assert "location US" in str(info.value)

    assert [(e.operation, e.outcome) for e in events] == [
        ("egress", "intent"), ("egress", "ok"), ("egress", "blocked")]
    intent, first, second = events
    assert intent.endpoint == first.endpoint == f"{de.url}/redirect"
    assert first.status == 302
    assert first.intent_id == intent.event_id
    assert second.endpoint == f"{bad.url}/x"


def test_redirect_location_with_credentials_never_shows_the_password(caller, servers,
                                                                    events):
    de = servers["de"]
    de.redirect_to = f"http://user:{SECRET}@127.0.0.1:{de.port}/x"
    with pytest.raises(rs.EgressBlocked) as info:
        caller.call(AT, "GET", f"{de.url}/redirect",
                    client_options={"follow_redirects": True})
    assert de.connections == 1  # the first hop only
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)
    assert all(SECRET not in e.to_json() for e in events)


def test_redirect_keeps_a_header_data_class(caller, servers, events):
    """A ``personal`` request (class named by the header) to a processor that redirects
    to another path of itself: the second hop carries the same data."""
    drafter = servers["drafter"]
    drafter.redirect_to = f"{drafter.url}/final"
    response = caller.call(AT, "GET", f"{drafter.url}/redirect",
                           headers={"X-Residency-Data-Class": "personal"},
                           client_options={"follow_redirects": True})
    assert response.status_code == 200
    assert drafter.connections == 2
    assert [e.data_class for e in events] == ["personal"] * 4


def test_redirect_keeps_an_extension_data_class(caller, servers, events):
    drafter = servers["drafter"]
    drafter.redirect_to = f"{drafter.url}/final"
    response = caller.call(AT, "GET", f"{drafter.url}/redirect",
                           extensions={"residency_data_class": "personal"},
                           client_options={"follow_redirects": True})
    assert response.status_code == 200
    assert drafter.connections == 2
    assert [(e.outcome, e.data_class) for e in events] == [("intent", "personal"),
                                                         ("ok", "personal")] * 2


# --- 4.-6. processors -------------------------------------------------------------------


def test_processor_without_baa_gets_no_phi(caller, servers, events):
    with pytest.raises(rs.EgressBlocked) as info:
        caller.call(AT, "POST", f"{servers['drafter'].url}/draft", content=b"p",
                    extensions={"residency_data_class": "phi"})
    assert "BAA" in str(info.value)
    assert any("BAA" in r for r in info.value.reasons)
    nothing_sent(servers)
    event = only_blocked_event(events)
    assert event.processor == "drafter"
    assert event.data_class == "phi"


def test_processor_without_baa_gets_personal_under_its_scc(caller, servers, events):
    drafter = servers["drafter"]
    response = caller.call(AT, "POST", f"{drafter.url}/draft", content=b"q" * 100,
                           extensions={"residency_data_class": "personal"},
                           actor="svc-draft", purpose="report drafting")
    assert response.status_code == 200
    assert drafter.connections == 1
    assert [(e.operation, e.outcome) for e in events] == [("egress", "intent"),
                                                         ("egress", "ok")]
    for e in events:
        assert e.processor == "drafter"
        assert e.agreements == ("scc[SCC-P-1]",)
        assert e.destination_country == "US"
        assert e.is_transfer is True
        assert e.data_class == "personal"
        assert e.actor == "svc-draft"
        assert e.purpose == "report drafting"
    assert events[1].size == 100
    assert events[1].bytes_received == len(response.content)


def test_processor_with_baa_gets_phi(caller, servers, events):
    scribe = servers["scribe"]
    response = caller.call(AT, "POST", f"{scribe.url}/transcribe", content=b"r" * 5)
    assert response.status_code == 200
    assert scribe.connections == 1
    assert [(e.outcome, e.processor, e.data_class, e.agreements) for e in events] == [
        ("intent", "scribe", "phi", ("scc[SCC-H-1]",)),
        ("ok", "scribe", "phi", ("scc[SCC-H-1]",))]


def test_processor_with_an_expired_agreement_is_blocked(caller, servers, events):
    with pytest.raises(rs.EgressBlocked) as info:
        caller.call(AT, "POST", f"{servers['lapsed'].url}/t", content=b"s",
                    extensions={"residency_data_class": "personal"})
    assert "expired" in str(info.value)
    assert "SCC-E-1" in str(info.value)
    nothing_sent(servers)
    assert only_blocked_event(events).processor == "lapsed"


def test_processor_in_a_country_without_adequacy_or_mechanism_is_blocked(caller, servers,
                                                                         events):
    with pytest.raises(rs.EgressBlocked) as info:
        caller.call(AT, "POST", f"{servers['faraway'].url}/mail", content=b"t",
                    extensions={"residency_data_class": "personal"})
    assert "CN" in str(info.value)
    assert info.value.decision is not None and not info.value.decision.allowed
    nothing_sent(servers)
    event = only_blocked_event(events)
    assert event.processor == "faraway"
    assert event.destination_country == "CN"


# --- 7. another location's compute endpoint ---------------------------------------------


def test_compute_endpoint_of_another_location_is_blocked(caller, servers, events):
    with pytest.raises(rs.EgressBlocked) as info:
        caller.call(AT, "POST", f"{servers['us'].url}/infer", content=b"u",
                    extensions={"residency_data_class": "personal"})
    message = str(info.value)
    assert "location US" in message
    assert "DE" in message
    assert servers["de"].url in message  # where to send it instead
    nothing_sent(servers)
    only_blocked_event(events)


# --- 8. URLs no request may use ---------------------------------------------------------


BAD_URLS = {
    "malformed port": "https://host.example:99999/x",
    "userinfo": f"https://user:{SECRET}@inference.de.residency.example/x",
    "userinfo to a declared loopback host": f"http://user:{SECRET}@127.0.0.1:{{de}}/x",
    "userinfo, bad port": f"https://user:{SECRET}@host.example:99999/x",
    "plain http": "http://inference.de.residency.example/x",
    "ip literal": "https://10.0.0.1/x",
    "not http": "ftp://inference.de.residency.example/x",
}


@pytest.mark.parametrize("kind", BAD_URLS)
def test_unusable_urls_are_refused_unsent_and_audited(caller, servers, events, kind):
    url = BAD_URLS[kind].replace("{de}", str(servers["de"].port))
    with pytest.raises(rs.ResidencyError) as info:
        caller.call(AT, "POST", url, content=b"v")
    assert isinstance(info.value, rs.EgressBlocked)
    nothing_sent(servers)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)
    assert SECRET not in str(info.value.url)
    event = only_blocked_event(events)
    assert SECRET not in event.to_json()
    assert event.reasons


# --- 9. unknown data class --------------------------------------------------------------


@pytest.mark.parametrize("form", ["header", "extension"])
def test_unknown_data_class_is_refused_unsent(caller, servers, events, form):
    kwargs: dict[str, object] = (
        {"headers": {"X-Residency-Data-Class": "secret-sauce"}} if form == "header"
        else {"extensions": {"residency_data_class": "secret-sauce"}})
    with pytest.raises(rs.ResidencyError) as info:
        caller.call(AT, "POST", f"{servers['de'].url}/infer", content=b"w", **kwargs)
    assert "secret-sauce" in str(info.value)
    nothing_sent(servers)
    only_blocked_event(events)


# --- 10. client options and purpose -----------------------------------------------------


@pytest.mark.parametrize("option", ["mounts", "proxy", "proxies", "app", "transport"])
def test_options_that_bypass_the_guard_are_refused(caller, option):
    value: object = {
        "mounts": {"all://": httpx.HTTPTransport()}, "proxy": "http://127.0.0.1:9",
        "proxies": "http://127.0.0.1:9", "app": object(), "transport": "not a transport",
    }[option]
    with pytest.raises(rs.InputError) as info:
        caller.client(AT, purpose="inference", **{option: value})
    assert option in str(info.value)


@pytest.mark.parametrize("purpose", [None, "", "   "])
def test_empty_purpose_is_refused(caller, purpose):
    with pytest.raises(rs.InputError):
        caller.client(AT, purpose=purpose)


def test_missing_purpose_is_refused(caller):
    with pytest.raises(TypeError):
        caller.client(AT)


def test_wrapped_transport_is_still_guarded(caller, servers, events):
    inner = httpx.HTTPTransport() if caller.mode == "sync" else httpx.AsyncHTTPTransport()
    with pytest.raises(rs.EgressBlocked):
        caller.call(AT, "GET", f"{servers['undeclared'].url}/x",
                    client_options={"transport": inner})
    nothing_sent(servers)
    response = caller.call(AT, "GET", f"{servers['de'].url}/x",
                           client_options={"transport": inner})
    assert response.status_code == 200
    assert servers["de"].connections == 1


# --- 11. check_egress -------------------------------------------------------------------


def test_check_egress_answers_and_audits_without_sending(res, servers, events):
    allowed = res.check_egress(AT, f"{servers['de'].url}/infer", actor="a1", purpose="p1")
    assert allowed.allowed is True
    assert allowed.kind == "compute"
    assert allowed.reasons
    assert [(e.operation, e.outcome, e.actor, e.purpose) for e in events] == [
        ("egress_check", "allowed", "a1", "p1")]

    personal = res.check_egress(AT, f"{servers['drafter'].url}/d", "personal")
    assert personal.allowed and personal.processor == "drafter"
    assert personal.agreements == ("scc[SCC-P-1]",)

    blocked = res.check_egress(AT, f"{servers['drafter'].url}/d")  # phi by default
    assert blocked.allowed is False
    assert any("BAA" in r for r in blocked.reasons)
    with pytest.raises(rs.EgressBlocked):
        blocked.raise_if_blocked()

    undeclared = res.check_egress(AT, "https://api.unknown.example/v1", "anonymised")
    assert not undeclared.allowed and undeclared.host == "api.unknown.example"

    assert [(e.operation, e.outcome) for e in events] == [
        ("egress_check", "allowed"), ("egress_check", "allowed"),
        ("egress_check", "blocked"), ("egress_check", "blocked")]
    assert events[2].processor == "drafter"
    assert events[2].reasons == blocked.reasons
    nothing_sent(servers)


def test_check_egress_event_has_no_query_or_password(res, servers, events):
    """``AuditEvent.endpoint``: scheme, host, port, path; never the query or
    credentials (as the transport records it)."""
    res.check_egress(AT, f"{servers['de'].url}/infer?patient=jane-doe")
    res.check_egress(AT, f"https://user:{SECRET}@api.unknown.example/v1?token=abc")
    assert [e.endpoint for e in events] == [f"{servers['de'].url}/infer",
                                            "https://api.unknown.example/v1"]
    assert all(SECRET not in e.to_json() and "jane-doe" not in e.to_json()
               for e in events)


# --- 12. HIPAA by holder: a US tenant's phi -------------------------------------------------


def test_us_phi_to_own_compute_needs_a_baa(caller, servers, events):
    us = servers["us"]
    with pytest.raises(rs.EgressBlocked) as info:
        caller.call(US_NO_BAA, "POST", f"{us.url}/infer", content=b"z" * 3)
    assert "baa" in str(info.value).lower()
    assert "HIPAA" in str(info.value)
    nothing_sent(servers)
    only_blocked_event(events)
    events.clear()

    response = caller.call(US_BAA, "POST", f"{us.url}/infer", content=b"z" * 3)
    assert response.status_code == 200
    assert us.connections == 1
    assert [(e.outcome, e.source_location, e.agreements) for e in events] == [
        ("intent", "US", ("baa[BAA-7]",)), ("ok", "US", ("baa[BAA-7]",))]


def test_us_personal_to_own_compute_needs_no_baa(caller, servers, events):
    response = caller.call(US_NO_BAA, "POST", f"{servers['us'].url}/infer", content=b"z",
                           extensions={"residency_data_class": "personal"})
    assert response.status_code == 200
    assert servers["us"].connections == 1
