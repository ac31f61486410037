"""Hostile input against the routing API and CLI: a ResidencyError or success, nothing else."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import residency_sdk as rs
from residency_sdk.cli import app

RES = rs.Residency.load()
CONFUSABLES = ["D\u0415", "\u0414E", "\uff24\uff25", "D\u200bE", "de\u0301", "ᴅᴇ", "U\u0405"]
hostile_text = (
    st.text(max_size=40)
    | st.sampled_from(["..", "../..", "/etc/passwd", "a\x00b", "x" * 10_240, "", " ", *CONFUSABLES])
    | st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=4)
)
junk = hostile_text | st.none() | st.integers() | st.lists(st.text(max_size=3), max_size=3)
settings.register_profile("hostile", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])


@settings(settings.get_profile("hostile"))
@given(tenant_id=junk, country=junk, agreements=junk)
def test_tenant_construction(tenant_id, country, agreements):
    try:
        tenant = rs.Tenant(id=tenant_id, country=country, agreements=agreements)
    except rs.ResidencyError:
        return
    assert tenant.country.isascii() and len(tenant.country) == 2
    assert ".." not in tenant.id and "/" not in tenant.id and len(tenant.id) <= 128


@settings(settings.get_profile("hostile"))
@given(country=st.sampled_from(["DE", "TR", "US", "NZ", "FR"]), agreements=junk, to=junk,
       data_class=junk, source=junk | st.none())
def test_check_transfer(country, agreements, to, data_class, source):
    try:
        tenant = rs.Tenant(id="t", country=country, agreements=agreements)
        decision = RES.check_transfer(tenant, to, data_class, source=source)
    except rs.ResidencyError:
        return
    assert isinstance(decision.allowed, bool) and decision.reasons


@settings(settings.get_profile("hostile"))
@given(value=junk)
def test_resolve_and_resolve_country(value):
    for call in (lambda: RES.resolve(value), lambda: RES.resolve_country(value)):
        try:
            placement = call()
        except rs.ResidencyError:
            continue
        assert placement.location in RES.map.locations


def test_confusable_country_codes_are_refused():
    for code in CONFUSABLES:
        try:
            rs.Tenant(id="t", country=code)
        except rs.InvalidCountry:
            continue
        raise AssertionError(f"confusable {code!r} accepted")


runner = CliRunner()
cli_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(country=cli_text, to=cli_text, data_class=cli_text, mechanism=cli_text)
def test_cli_transfer_check_never_tracebacks(country, to, data_class, mechanism):
    result = runner.invoke(app, ["transfer", "check", "--country", country, "--to", to,
                                 "--data-class", data_class, "--mechanism", mechanism, "--json"])
    assert result.exit_code in (0, 1, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    if result.exit_code in (0, 1) and result.output.startswith("{"):
        json.loads(result.output)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(country=cli_text)
def test_cli_resolve_never_tracebacks(country):
    result = runner.invoke(app, ["resolve", "--country", country, "--json"])
    assert result.exit_code in (0, 1, 2)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
