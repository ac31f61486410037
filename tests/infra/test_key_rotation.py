"""Every customer-managed key the SDK provisions rotates every 90 days: in the infra plan,
in the Pulumi program (run under mocks) and in the Terraform export, read without Checkov.

The expected period is written out here (90 days, 7776000 s, ``P90D``) rather than read
from the SDK's constant, so a plan that rotated yearly, or not at all, fails these tests
whichever layer it came from. Every location of the default map and of each example map
is covered.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from components import require
from typer.testing import CliRunner

from residency_sdk.cli.app import app
from residency_sdk.infra import build_plan
from residency_sdk.infra.terraform import write
from residency_sdk.regionmap import load_region_map

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "region_maps" / "examples").glob("*.yaml"))
MAPS: list[Path | None] = [None, *EXAMPLES]  # None: the packaged default map
ROTATION_DAYS = 90
ROTATION_SECONDS = "7776000s"  # 90 x 86400
ROTATION_ISO = "P90D"

# The providers' own deprecated aliases warn when their modules load; not our code.
pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated in favor of:DeprecationWarning")


def _cases() -> list[Any]:
    cases = []
    for path in MAPS:
        region_map = load_region_map(path)
        name = path.stem if path is not None else "default"
        cases += [pytest.param(path, loc, id=f"{name}-{loc}") for loc in region_map.locations]
    return cases


CASES = _cases()


def test_the_maps_covered_are_the_default_and_every_example() -> None:
    assert len(EXAMPLES) >= 5
    assert len(CASES) == sum(len(load_region_map(p).locations) for p in MAPS)


# --- the plan ---------------------------------------------------------------------------


@pytest.mark.parametrize(("map_path", "location"), CASES)
def test_plan_rotates_every_provider_key_every_90_days(map_path: Path | None,
                                                       location: str) -> None:
    region_map = load_region_map(map_path)
    plan = build_plan(region_map, location)
    cloud = sorted(p for p in region_map.locations[location].backends if p != "local")
    assert sorted(p.provider for p in plan.providers) == cloud
    for provider in plan.providers:
        assert provider.key.rotation_days == ROTATION_DAYS, (provider.provider,
                                                             provider.key)


# --- the Terraform export, read as data (no Checkov) -----------------------------------


def _exported(map_path: Path | None, location: str, out: Path) -> dict[str, Any]:
    write(build_plan(load_region_map(map_path), location), out)
    resources: dict[str, Any] = json.loads((out / "main.tf.json").read_text())["resource"]
    return resources


def _assert_terraform_keys_rotate(resources: dict[str, Any], providers: set[str]) -> None:
    """Every key resource of the export, with its rotation settings exactly."""
    key_types = {t for t in resources if t in (
        "aws_kms_key", "google_kms_crypto_key", "azurerm_key_vault_key")}
    expected = {{"aws": "aws_kms_key", "gcp": "google_kms_crypto_key",
                 "azure": "azurerm_key_vault_key"}[p] for p in providers}
    assert key_types == expected
    for body in resources.get("aws_kms_key", {}).values():
        assert body["enable_key_rotation"] is True
        assert body["rotation_period_in_days"] == ROTATION_DAYS
    for body in resources.get("google_kms_crypto_key", {}).values():
        assert body["rotation_period"] == ROTATION_SECONDS
    for body in resources.get("azurerm_key_vault_key", {}).values():
        (policy,) = body["rotation_policy"]
        (automatic,) = policy["automatic"]
        assert automatic == {"time_after_creation": ROTATION_ISO}
    assert sum(len(resources.get(t, {})) for t in key_types) == len(providers)


@pytest.mark.parametrize(("map_path", "location"), CASES)
def test_terraform_export_rotates_every_key_every_90_days(map_path: Path | None, location: str,
                                                          tmp_path: Path) -> None:
    providers = {p for p in load_region_map(map_path).locations[location].backends
                 if p != "local"}
    _assert_terraform_keys_rotate(_exported(map_path, location, tmp_path), providers)


def test_terraform_export_from_the_cli_rotates_every_key_every_90_days(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["infra", "export", "--location", "DE", "--format",
                                      "terraform", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.stdout
    resources = json.loads((tmp_path / "main.tf.json").read_text())["resource"]
    _assert_terraform_keys_rotate(resources, {"aws", "gcp", "azure"})


# --- the Pulumi program under mocks ----------------------------------------------------


@pytest.fixture(scope="module")
def run_stack() -> Any:
    """``infra_mocks.run_stack``; the Pulumi SDK missing fails under CI, skips otherwise."""
    hint = "pip install 'residency-sdk[infra]'"
    for module in ("pulumi", "pulumi_aws", "pulumi_azure_native", "pulumi_gcp"):
        require(module, hint)
    from infra_mocks import run_stack as run

    return run


def _pulumi_keys_rotate(run: Any, providers: set[str]) -> None:
    aws_keys = run.of_type("aws:kms/key:Key")
    gcp_keys = run.of_type("gcp:kms/cryptoKey:CryptoKey")
    azure_keys = run.of_type("azure-native:keyvault:Key")
    assert (len(aws_keys), len(gcp_keys), len(azure_keys)) == (
        int("aws" in providers), int("gcp" in providers), int("azure" in providers))
    for key in aws_keys:
        assert key.inputs["enableKeyRotation"] is True
        # Set explicitly: AWS's default period is 365 days.
        assert key.inputs["rotationPeriodInDays"] == ROTATION_DAYS
    for key in gcp_keys:
        assert key.inputs["rotationPeriod"] == ROTATION_SECONDS
    for key in azure_keys:
        actions = key.inputs["properties"]["rotationPolicy"]["lifetimeActions"]
        rotations = [a for a in actions if a["action"]["type"] == "rotate"]
        assert rotations == [{"trigger": {"timeAfterCreate": ROTATION_ISO},
                              "action": {"type": "rotate"}}]


@pytest.mark.parametrize("location", sorted(load_region_map().locations))
def test_pulumi_stack_rotates_every_key_every_90_days(run_stack: Any, location: str) -> None:
    providers = {p for p in load_region_map().locations[location].backends if p != "local"}
    _pulumi_keys_rotate(run_stack(location.lower()), providers)


@pytest.mark.parametrize("map_path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_pulumi_program_of_each_example_map_rotates_every_key_every_90_days(
        run_stack: Any, map_path: Path) -> None:
    region_map = load_region_map(map_path)
    for location, loc in region_map.locations.items():
        providers = {p for p in loc.backends if p != "local"}
        run = run_stack(location.lower(), {"map": str(map_path), "location": location})
        _pulumi_keys_rotate(run, providers)
