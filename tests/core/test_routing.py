"""Routing: every row of the seed table, normalisation, and fail-closed errors."""

from __future__ import annotations

import pytest

import residency_sdk as rs
from residency_sdk.regionmap import load_region_map

EU_MEMBERS = [
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE",
    "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
]


@pytest.fixture(scope="module")
def res() -> rs.Residency:
    return rs.Residency.load()


def _tenant(country: str, *agreements: str) -> rs.Tenant:
    return rs.Tenant(id="clinic-1", country=country, agreements=frozenset(agreements))


@pytest.mark.parametrize("country", [c for c in EU_MEMBERS if c != "FR"])
def test_every_eu_member_state_except_france_lives_in_germany(res, country):
    placement = res.resolve(_tenant(country))
    assert placement.location == "DE"
    assert placement.matched_route == "EU"
    assert placement.storage.country == "DE"


@pytest.mark.parametrize(
    ("country", "location"),
    [("FR", "FR"), ("CH", "CH"), ("GB", "GB"), ("US", "US"), ("AU", "AU"), ("NZ", "AU"),
     ("TR", "DE")],
)
def test_seed_table_rows(res, country, location):
    placement = res.resolve(_tenant(country))
    assert placement.location == location
    assert placement.storage.country == location
    assert all(b.country == location for b in placement.backends)


def test_france_own_route_beats_the_eu_group(res):
    placement = res.resolve(_tenant("FR"))
    assert (placement.location, placement.matched_route) == ("FR", "FR")


@pytest.mark.parametrize("raw", ["fr", " FR", "fr \t", "\nFr\n"])
def test_country_codes_are_normalised(res, raw):
    assert res.resolve(_tenant(raw)).location == "FR"


@pytest.mark.parametrize("raw", ["", "  ", "UK", "EU", "DEU", "D", "ZZ", "1A", "de-DE", None, 49])
def test_invalid_country_codes_fail_closed_naming_the_value(raw):
    with pytest.raises(rs.InvalidCountry) as info:
        rs.Tenant(id="t", country=raw)
    assert repr(raw) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_uk_gets_a_hint_towards_gb():
    with pytest.raises(rs.InvalidCountry, match="'GB'"):
        rs.Tenant(id="t", country="uk")


@pytest.mark.parametrize("country", ["CA", "IN", "JP", "BR", "NO", "IS", "LI", "SG"])
def test_unrouted_countries_fail_closed(res, country):
    with pytest.raises(rs.NoRoute) as info:
        res.resolve(_tenant(country))
    assert country in str(info.value)
    assert "never falls back" in str(info.value)


def test_resolve_country_normalises_and_fails_closed(res):
    assert res.resolve_country(" nz ").location == "AU"
    with pytest.raises(rs.NoRoute):
        res.resolve_country("CA")
    with pytest.raises(rs.InvalidCountry):
        res.resolve_country("XX")


def test_resolve_refuses_something_that_is_not_a_tenant(res):
    with pytest.raises(rs.InvalidTenant):
        res.resolve("DE")  # type: ignore[arg-type]


def test_placement_names_storage_and_compute(res):
    placement = res.resolve(_tenant("DE"))
    assert placement.storage.provider == "azure"
    assert placement.storage.region == "germanywestcentral"
    assert placement.storage.failover_region == "germanynorth"
    assert placement.storage.bucket == "residency-de-azure-data"
    assert placement.compute is not None and placement.compute.region == "germanywestcentral"
    aws = placement.storage_for("aws")
    assert aws is not None and aws.region == "eu-central-1"
    assert placement.storage_for("nonexistent") is None


@pytest.mark.parametrize(
    ("country", "needs"),
    # LEGAL_FACTS 12: NZ data hosted in AU for the clinic is no disclosure (s11); a US
    # clinic's PHI needs a BAA to be placed with the vendor at all (HIPAA by holder).
    [("TR", (("kvkk_standard_contract", "bcr"),)), ("NZ", ()), ("US", (("baa",),)),
     ("DE", ()), ("AT", ()), ("FR", ()), ("AU", ()), ("GB", ()), ("CH", ())],
)
def test_required_mechanisms_for_placement(res, country, needs):
    assert res.resolve(_tenant(country)).required_mechanisms == needs


def test_turkish_placement_in_germany_is_a_transfer_needing_the_standard_contract(res):
    blocked = res.check_placement(_tenant("TR"))
    assert not blocked.allowed and blocked.is_transfer
    assert "kvkk_standard_contract" in " ".join(blocked.reasons)
    allowed = res.check_placement(_tenant("TR", "kvkk_standard_contract"))
    assert allowed.allowed
    assert allowed.mechanism == "kvkk_standard_contract"


@pytest.mark.parametrize("tenant_id", ["", "../etc", "a/b", ".hidden", "a..b", "x" * 129,
                                       "nul\x00", "tab\t", "émile", None])
def test_tenant_ids_that_cannot_name_a_prefix_are_refused(tenant_id):
    with pytest.raises(rs.InvalidTenant):
        rs.Tenant(id=tenant_id, country="DE")


def test_tenant_is_frozen_and_hashable():
    tenant = _tenant("de", "SCC ")
    assert tenant.country == "DE" and tenant.agreements == frozenset({"scc"})
    assert hash(tenant) == hash(_tenant("DE", "scc"))
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        tenant.country = "US"  # type: ignore[misc]


def test_client_and_policy_share_one_decision_cache_key(monkeypatch):
    """The client reads the policy's decision cache inline; if its key ever drifted from
    ResidencyPolicy.decision_key, every check would miss and re-decide (or worse, hit a
    key meaning something else). A repeated question must not reach decide() again."""
    res = rs.Residency.load()
    tenant = rs.Tenant(id="t", country="TR", agreements={"kvkk_standard_contract"})
    first = res.check_transfer(tenant, "US", "personal")
    key = res.policy.decision_key(tenant, "US", "personal", None, res.policy.today())
    assert res.policy.decision_cache[key] is first
    calls = []
    original = res.policy.decide
    monkeypatch.setattr(res.policy, "decide", lambda *a, **k: calls.append(a) or original(*a))
    assert res.check_transfer(tenant, "US", "personal") is first
    assert res.check_transfer(tenant, "US", "personal", source="DE") is first  # its location
    assert res.check_transfer(tenant, "GB", "personal").destination == "GB"
    assert len(calls) == 1  # only the new question was decided


def test_location_targets_list_each_primary_then_its_failover_in_the_order_asked() -> None:
    """The sweep and erasure cover what ``Location.targets`` lists (MV-4): every provider
    asked for, in that order, its primary first and its in-country failover next; a
    provider without a failover contributes its primary only, one not asked for nothing."""
    location = load_region_map(None).locations["DE"]
    listed = location.targets(["azure", "local", "gcp"])
    assert listed == [
        ("primary", location.backends["azure"]), ("failover", location.failovers["azure"]),
        ("primary", location.backends["local"]),
        ("primary", location.backends["gcp"]), ("failover", location.failovers["gcp"]),
    ]
    assert [t.region for _role, t in listed] == [
        "germanywestcentral", "germanynorth", "local-de", "europe-west3", "europe-west10"]
    assert location.targets([]) == []
