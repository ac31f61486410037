"""Routes and regions as the map compiler checks them (promises MV-1, MV-2).

``_Checker.build_routes``: a country's own route beats any group's, a smaller group
beats a larger one, and two routes of the same specificity for one country are refused
(never decided by file order). ``_Checker._check_region``: every backend, failover and
compute region must exist and lie in the location's country. ``PlacementTable.resolve``
fails closed, naming the country and the map. Each refusal's full text is asserted: it
names the offending value and the fix.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

import residency_sdk as rs
from residency_sdk.errors import InvalidTenant, MapError, NoRoute
from residency_sdk.regionmap import Route, compile_region_map
from residency_sdk.regions import packaged_maps_dir

DEFAULT = yaml.safe_load((packaged_maps_dir() / "default.yaml").read_text())
FILE = "routes-test.yaml"


def _doc(**groups: list[str]) -> dict[str, Any]:
    doc = copy.deepcopy(DEFAULT)
    for name, members in groups.items():
        doc["groups"][name] = {"members": members, "source": "test group",
                               "as_of": "2026-11-01"}
    return doc


def _compile(doc: dict[str, Any]) -> Any:
    return compile_region_map(doc, file=FILE, base_dir=packaged_maps_dir())


def _refusal(doc: dict[str, Any]) -> str:
    with pytest.raises(MapError) as caught:
        _compile(doc)
    return str(caught.value)


# --- routes ------------------------------------------------------------------------------


def test_a_countrys_own_route_beats_its_groups_route() -> None:
    routes = _compile(_doc()).routes
    assert routes["FR"] == Route("FR", "FR", (1, 0))
    assert routes["IT"] == Route("DE", "EU", (0, -27))
    assert routes["NZ"] == Route("AU", "NZ", (1, 0))
    assert "JP" not in routes


@pytest.mark.parametrize("eea_first", [True, False], ids=["eea-listed-first", "eea-last"])
def test_a_smaller_group_beats_a_larger_one_whatever_the_order(eea_first: bool) -> None:
    doc = _doc()
    doc["routes"] = ({"EEA": "CH", **doc["routes"]} if eea_first
                     else {**doc["routes"], "EEA": "CH"})
    routes = _compile(doc).routes
    assert routes["IT"] == Route("DE", "EU", (0, -27))  # EU (27) is inside EEA (30)
    assert routes["NO"] == Route("CH", "EEA", (0, -30))
    assert routes["FR"] == Route("FR", "FR", (1, 0))


def test_two_routes_of_the_same_specificity_are_refused_naming_both() -> None:
    doc = _doc(DACH_WEST=["DE", "AT"], ALPS=["AT", "CH"])
    doc["routes"].update({"DACH_WEST": "DE", "ALPS": "CH"})
    assert _refusal(doc) == (
        f"{FILE} at routes.ALPS: country AT has two routes of the same specificity "
        "(DACH_WEST -> DE and ALPS -> CH); give the country its own route or remove one "
        "(value: 'ALPS')")


@pytest.mark.parametrize("own_first", [True, False], ids=["own-route-first", "own-route-last"])
def test_a_countrys_own_route_settles_a_tie_between_groups_wherever_listed(
        own_first: bool) -> None:
    doc = _doc(DACH_WEST=["DE", "AT"], ALPS=["AT", "CH"])
    tie = {"DACH_WEST": "DE", "ALPS": "CH"}
    doc["routes"] = {"AT": "CH", **tie, **doc["routes"]} if own_first else \
        {**doc["routes"], **tie, "AT": "CH"}
    routes = _compile(doc).routes
    assert routes["AT"] == Route("CH", "AT", (1, 0))
    assert routes["DE"] == Route("DE", "DACH_WEST", (0, -2))


def test_a_route_in_long_form_leads_where_its_to_says() -> None:
    doc = _doc()
    doc["routes"]["TR"] = {"to": "DE", "note": "KVKK: processed in Germany"}
    assert _compile(doc).routes["TR"] == Route("DE", "TR", (1, 0))
    doc["routes"]["TR"] = {"to": "IN", "note": "no such location"}
    assert _refusal(doc) == (f"{FILE} at routes.TR: route leads to a location not defined "
                             "under `locations` (value: 'IN')")


def test_a_route_to_an_undefined_location_is_refused() -> None:
    doc = _doc()
    doc["routes"]["TR"] = "IN"
    assert _refusal(doc) == (f"{FILE} at routes.TR: route leads to a location not defined "
                             "under `locations` (value: 'IN')")


def test_a_route_from_an_unknown_code_is_refused() -> None:
    doc = _doc()
    doc["routes"]["XX"] = "DE"
    assert _refusal(doc) == (
        f"{FILE} at routes.XX: unknown country code or group in a route: use an ISO 3166-1 "
        "alpha-2 code or a group defined under `groups` (value: 'XX')")


# --- resolve: fail closed ----------------------------------------------------------------


def test_an_unrouted_country_fails_closed_naming_the_country_and_the_map() -> None:
    res = rs.Residency.load(audit=False)
    with pytest.raises(NoRoute) as caught:
        res.resolve(rs.Tenant(id="clinic-tokyo", country="JP"))
    assert caught.value.country == "JP"
    assert str(caught.value) == (
        "no residency route for country 'JP' in region map 'default': add a route for JP "
        "(or a group containing it) to the map's `routes`; residency-sdk never falls back "
        "to a default location")


def test_resolving_something_that_is_not_a_tenant_is_refused() -> None:
    res = rs.Residency.load(audit=False)
    with pytest.raises(InvalidTenant) as caught:
        res.resolve("DE")  # type: ignore[arg-type]
    assert str(caught.value) == "expected a residency_sdk.Tenant, got 'DE'"


# --- regions -----------------------------------------------------------------------------


REGION_CASES = {
    "aws region unknown to botocore": (
        ("DE", "backends", "aws", "region"), "eu-central-9",
        "locations.DE.backends.aws.region: not an AWS region known to botocore's endpoints "
        "data (value: 'eu-central-9')"),
    "gcp region not in the table": (
        ("DE", "backends", "gcp", "region"), "europe-west99",
        "locations.DE.backends.gcp.region: unknown gcp region: its country is not in the "
        "built-in region table; if the provider really has it, add it under "
        "`cloud_regions.gcp` in your map (it is then listed as unreviewed) "
        "(value: 'europe-west99')"),
    "backend region abroad": (
        ("DE", "backends", "aws", "region"), "eu-west-1",
        "locations.DE.backends.aws.region: aws region 'eu-west-1' is in IE, not in the "
        "location's country DE: residency never crosses a border (value: 'eu-west-1')"),
    "failover region abroad": (
        ("DE", "backends", "azure", "failover_region"), "francecentral",
        "locations.DE.backends.azure.failover_region: azure failover region "
        "'francecentral' is in FR, not in the location's country DE: residency never "
        "crosses a border (value: 'francecentral')"),
    "compute region abroad": (
        ("DE", "compute", 0, "region"), "francecentral",
        "locations.DE.compute.0.region: azure region 'francecentral' is in FR, not in the "
        "location's country DE: residency never crosses a border (value: 'francecentral')"),
    "gcp failover unknown": (
        ("US", "backends", "gcp", "failover_region"), "us-nowhere1",
        "locations.US.backends.gcp.failover_region: unknown gcp region: its country is not "
        "in the built-in region table; if the provider really has it, add it under "
        "`cloud_regions.gcp` in your map (it is then listed as unreviewed) "
        "(value: 'us-nowhere1')"),
}


@pytest.mark.parametrize("case", REGION_CASES)
def test_a_region_that_is_unknown_or_abroad_is_refused(case: str) -> None:
    where, region, message = REGION_CASES[case]
    doc = _doc()
    node: Any = doc["locations"]
    for part in where[:-1]:
        node = node[part]
    node[where[-1]] = region
    assert _refusal(doc) == f"{FILE} at {message}"


def test_a_local_compute_target_has_no_cloud_region_to_check() -> None:
    """A compute service on this machine (an emulator, a test model) is not in the region
    table and needs no region there."""
    doc = _doc()
    doc["locations"]["DE"]["compute"] = [
        {"provider": "local", "region": "local-de", "endpoint": "http://127.0.0.1:8080"}]
    [target] = _compile(doc).locations["DE"].compute
    assert (target.provider, target.region) == ("local", "local-de")


def test_every_backend_of_every_location_is_in_its_country() -> None:
    region_map = _compile(_doc())
    for loc in region_map.locations.values():
        for provider, target in loc.backends.items():
            if provider == "local":
                continue  # a folder on this machine: no cloud region
            assert region_map.regions[provider][target.region] == loc.country
            if target.failover_region:
                assert region_map.regions[provider][target.failover_region] == loc.country
