"""The pure-Python infra plan: built from the map, refuses anything crossing a border."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from residency_sdk import Residency
from residency_sdk.errors import InfraCrossesBorder, InfraError, ResidencyError
from residency_sdk.infra import build_plan
from residency_sdk.infra.plan import DEFAULT_AUDIT_LOCK_DAYS, KEY_ROTATION_DAYS
from residency_sdk.model import Placement
from residency_sdk.regionmap import RegionMap, load_region_map
from residency_sdk.regions import region_table

DEFAULT_MAP = load_region_map()
REGIONS = region_table()


def write_overlay(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "overlay.yaml"
    path.write_text("version: 1\nname: test-overlay\nextends: default\n" + text)
    return path


# An overlay whose names all differ from the naming rule's, so a plan that derives a
# name instead of taking the map's (the router's) shows up even where the default map's
# names happen to equal what the rule would give.
RENAMED = """\
locations:
  DE:
    backends:
      aws: {bucket: clinic-de-images, kms_key: alias/clinic-de-images}
      gcp: {bucket: clinic-de-images-gcs, failover_region: null}
      azure: {bucket: clinic-de-blobs, account: clinicdeblobs, encryption_scope: clinic-de-scope}
"""


@pytest.fixture(scope="module", params=["default", "renamed"])
def mapped(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[tuple[RegionMap, Residency]]:
    """A region map for the plans and, from its own load of the same file, the router as
    an application gets it (``Residency.load``)."""
    path = None
    if request.param == "renamed":
        path = write_overlay(tmp_path_factory.mktemp("renamed"), RENAMED)
    res = Residency.load(path)
    try:
        yield load_region_map(path), res
    finally:
        res.close()


def _routed_to(router: Residency, loc: str) -> list[Placement]:
    """The router's placement of every country it sends to ``loc``."""
    return [placement for placement in router.placements.values()
            if placement.location == loc]


@pytest.mark.parametrize("loc", sorted(DEFAULT_MAP.locations))
def test_plan_matches_the_map_the_router_uses(
        loc: str, mapped: tuple[RegionMap, Residency]) -> None:
    """Each bucket, region, failover region, key and Azure account/scope the plan
    provisions is the one the router independently resolves for every country it routes to
    this location (and, for the failover, what the router's location targets name): a plan
    that drifts from routing fails here."""
    region_map, router = mapped
    location = region_map.locations[loc]
    plan = build_plan(region_map, loc.lower())
    placements = _routed_to(router, loc)
    assert placements, f"the router sends no country to {loc}"
    for placement in placements:
        assert placement.storage.country == plan.country == location.country
        assert plan.location == placement.location == loc
        routed_clouds = {t.provider for t in placement.backends if t.provider != "local"}
        assert {p.provider for p in plan.providers} == routed_clouds
        for p in plan.providers:
            routed = placement.storage_for(p.provider)
            assert routed is not None
            # the bucket the router sends data to is the bucket the plan creates, same region
            assert (p.data.name, p.region, p.failover_region) == \
                (routed.bucket, routed.region, routed.failover_region)
            if p.provider == "aws":
                assert p.key.alias == routed.kms_key
            elif p.provider == "gcp":
                assert routed.kms_key == (
                    f"projects/{p.key.project}/locations/{p.key.region}/keyRings/"
                    f"{p.key.key_ring}/cryptoKeys/{p.key.name}")
            else:
                assert (p.account, p.encryption_scope) == \
                    (routed.account, routed.encryption_scope)
    for p in plan.providers:
        # the router's failover target (what sweeps and erasure visit) is in the region the
        # plan names, never one it does not know about
        roles = dict(router.location_targets(loc, [p.provider]))
        assert roles["primary"].region == p.region
        assert (roles["failover"].region if "failover" in roles else None) == p.failover_region
        assert REGIONS[p.provider][p.region] == location.country
        assert p.key.region == p.region
        if p.failover_region:
            assert REGIONS[p.provider][p.failover_region] == location.country
        assert p.key.rotation_days == KEY_ROTATION_DAYS
        assert p.audit.lock_days == 2192 and p.data.lock_days is None
        assert p.labels["residency-location"] == loc.lower()
        assert p.labels["residency-regime"] == plan.regime != "none"
        assert p.min_tls == "1.2"
    assert plan.provider("azure").redundancy == "ZRS"


def test_retention_hours_become_whole_days_and_versions_go_too() -> None:
    plan = build_plan(DEFAULT_MAP, "DE")
    rules = {r.category: r for r in plan.provider("aws").data.expiry}
    assert set(rules) == {"imaging_upload", "audit"}  # every category the facade accepts
    rule = rules["imaging_upload"]
    assert (rule.category, rule.tag, rule.period_hours, rule.days) == (
        "imaging_upload", ("residency-retention", "imaging_upload"), 24, 1)
    assert rule.noncurrent_days == 1
    assert rule.selects({"residency-retention": "imaging_upload"})
    assert not rule.selects({"residency-retention": "report"})
    assert not rule.selects({})
    (audit_rule,) = plan.provider("aws").audit.expiry
    assert audit_rule.tag is None and audit_rule.selects({})  # the whole audit bucket
    assert audit_rule.days > plan.provider("aws").audit.lock_days  # expire only after lock


def test_retention_overrides_flow_into_the_plan(tmp_path: Path) -> None:
    overlay = write_overlay(tmp_path, """
retention:
  imaging_upload: {hours: 30, source: test, as_of: "2026-11-01"}
  report: {days: 90, source: test, as_of: "2026-11-01"}
  audit: null
""")
    plan = build_plan(load_region_map(overlay), "GB")
    rules = {r.category: r.days for r in plan.provider("gcp").data.expiry}
    assert rules == {"imaging_upload": 2, "report": 90}
    assert plan.provider("gcp").audit.lock_days == DEFAULT_AUDIT_LOCK_DAYS


@pytest.mark.parametrize("sku", ["GRS", "ragrs", "GZRS", "RA-GZRS"])
def test_azure_geo_redundancy_is_refused(sku: str) -> None:
    with pytest.raises(InfraCrossesBorder, match="paired") as err:
        build_plan(DEFAULT_MAP, "CH", azure_redundancy=sku)
    assert sku in str(err.value) and "ZRS or LRS" in str(err.value)


def test_azure_lrs_is_allowed_and_nonsense_is_not() -> None:
    assert build_plan(DEFAULT_MAP, "CH", azure_redundancy="lrs").provider("azure").redundancy \
        == "LRS"
    with pytest.raises(InfraError, match="unknown Azure redundancy"):
        build_plan(DEFAULT_MAP, "CH", azure_redundancy="PREMIUM")


def test_unknown_location_is_refused_not_defaulted() -> None:
    with pytest.raises(InfraError, match="unknown residency location 'IN'") as err:
        build_plan(DEFAULT_MAP, "IN")
    assert "DE" in str(err.value)
    assert isinstance(err.value, ResidencyError)


def _with_target(loc: str, provider: str, **changes: object):  # type: ignore[no-untyped-def]
    location = DEFAULT_MAP.locations[loc]
    target = location.backends[provider].model_copy(update=changes)
    new_loc = dataclasses.replace(location, backends={**location.backends, provider: target})
    return dataclasses.replace(DEFAULT_MAP, locations={**DEFAULT_MAP.locations, loc: new_loc})


def test_failover_region_abroad_is_refused_even_in_a_map_built_in_code() -> None:
    # The loader refuses this too; a map assembled in code must not slip through.
    bad = _with_target("DE", "aws", failover_region="eu-west-1")
    with pytest.raises(InfraCrossesBorder, match=r"'eu-west-1'.*IE, not in DE"):
        build_plan(bad, "DE")


def test_region_abroad_is_refused() -> None:
    bad = _with_target("GB", "gcp", region="europe-west1")
    with pytest.raises(InfraCrossesBorder, match="europe-west1"):
        build_plan(bad, "GB")


def test_key_in_another_country_is_refused(tmp_path: Path) -> None:
    overlay = write_overlay(tmp_path, """
locations:
  FR:
    backends:
      gcp: {kms_key: "projects/p/locations/europe-west3/keyRings/r/cryptoKeys/k"}
      aws: {kms_key: "arn:aws:kms:eu-central-1:123456789012:key/abc"}
""")
    with pytest.raises(InfraCrossesBorder, match="key location 'eu-central-1'"):
        build_plan(load_region_map(overlay), "FR")


def test_location_with_only_local_storage_has_nothing_to_provision(tmp_path: Path) -> None:
    overlay = write_overlay(tmp_path, """
locations:
  NZ:
    name: New Zealand
    default_provider: local
    backends:
      local: {baa: true}
""")
    with pytest.raises(InfraError, match="nothing to provision"):
        build_plan(load_region_map(overlay), "NZ")


def test_unknown_provider_lookup_names_the_fix(tmp_path: Path) -> None:
    overlay = write_overlay(tmp_path, "locations:\n  US:\n    backends:\n      gcp: null\n")
    plan = build_plan(load_region_map(overlay), "US")
    with pytest.raises(InfraError, match="no 'gcp' backend"):
        plan.provider("gcp")


def test_resources_listing_names_every_resource_with_its_region() -> None:
    plan = build_plan(DEFAULT_MAP, "AU")
    rows = plan.resources()
    kinds = {(r["provider"], r["kind"]) for r in rows}
    assert {("aws", "kms_key"), ("aws", "bucket"), ("gcp", "kms_key"), ("azure", "key_vault"),
            ("azure", "storage_account"), ("azure", "encryption_scope")} <= kinds
    assert all(REGIONS[r["provider"]][r["region"]] == "AU" for r in rows)
    assert plan.to_dict()["providers"][0]["provider"] == "aws"


def test_sdk_infra_and_cli_never_import_pulumi() -> None:
    import subprocess
    import sys

    code = ("import sys, residency_sdk.infra.terraform, residency_sdk.infra.outputs, "
            "residency_sdk.infra.stack, residency_sdk.cli.app; "
            "print(sorted(m for m in sys.modules if m.split('.')[0].startswith('pulumi')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "[]"
