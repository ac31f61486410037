"""The infra the SDK provisions lets the retention sweep and erasure delete for good.

The sweep and erasure remove every version of what they delete (issue 14): on Azure they
delete previous versions and snapshots, then permanently delete what blob soft delete kept
(``deletetype=permanent``), which Azure allows only when the account's delete retention
policy has ``allowPermanentDelete`` and the caller holds the ``permanentDelete`` data
action; on GCS no API call removes a soft-deleted object before the bucket's soft-delete
retention ends. So every Azure account must allow permanent delete (soft delete itself
stays on), the application's role must hold the data action, and every GCS *data* bucket
must have a soft-delete retention of 0 while the audit bucket keeps Google's default.

Asserted on the three places that carry it: the plan, the Terraform export and the Pulumi
program under mocks (``tests/infra/infra_mocks.py``), for every location of the default map.
"""

from __future__ import annotations

from typing import Any

import pytest
from components import require

from residency_sdk.infra import build_plan
from residency_sdk.infra.plan import InfraPlan
from residency_sdk.infra.terraform import render
from residency_sdk.regionmap import load_region_map

DEFAULT_MAP = load_region_map()
LOCATIONS = sorted(DEFAULT_MAP.locations)
# Spelled out, not imported: a typo in the SDK's constant must fail here.
PERMANENT_DELETE = ("Microsoft.Storage/storageAccounts/blobServices/containers/blobs/"
                    "permanentDelete/action")
DELETE_VERSION = ("Microsoft.Storage/storageAccounts/blobServices/containers/blobs/"
                  "deleteBlobVersion/action")
AZURE_LOCATIONS = [loc for loc in LOCATIONS if "azure" in DEFAULT_MAP.locations[loc].backends]
GCP_LOCATIONS = [loc for loc in LOCATIONS if "gcp" in DEFAULT_MAP.locations[loc].backends]


def plan_of(loc: str) -> InfraPlan:
    return build_plan(DEFAULT_MAP, loc)


def test_the_default_map_has_azure_and_gcs_backends_to_check() -> None:
    # Otherwise every parametrised test below would pass over an empty list.
    assert len(AZURE_LOCATIONS) == len(LOCATIONS) == 6
    assert len(GCP_LOCATIONS) == 6


# --- the plan ---------------------------------------------------------------------------


@pytest.mark.parametrize("loc", AZURE_LOCATIONS)
def test_plan_every_azure_account_allows_permanent_delete_and_keeps_soft_delete(
        loc: str) -> None:
    p = plan_of(loc).provider("azure")
    assert p.allow_permanent_delete is True
    row = next(r for r in plan_of(loc).resources() if r["kind"] == "storage_account")
    assert row["settings"]["permanent_delete"] is True
    assert row["settings"]["soft_delete_days"] == 7  # the backstop against accidents stays
    assert p.data.versioning is True  # deleted base blobs become versions, which can go


@pytest.mark.parametrize("loc", AZURE_LOCATIONS)
def test_plan_names_an_app_role_for_the_sdk_on_every_azure_account(loc: str) -> None:
    p = plan_of(loc).provider("azure")
    assert p.app_role
    row = next(r for r in plan_of(loc).resources() if r["kind"] == "role_definition")
    assert row["name"] == p.app_role
    assert row["settings"]["assignable_scope"] == p.resource_group
    assert row["settings"]["assign_on"] == p.account


@pytest.mark.parametrize("loc", GCP_LOCATIONS)
def test_plan_turns_gcs_soft_delete_off_on_the_data_bucket_only(loc: str) -> None:
    p = plan_of(loc).provider("gcp")
    assert p.data.soft_delete_seconds == 0
    assert p.audit.soft_delete_seconds is None  # Google's default: the audit bucket keeps it
    assert p.audit.lock_days  # and its locked retention policy
    rows = {r["name"]: r["settings"] for r in plan_of(loc).resources()
            if r["provider"] == "gcp" and r["kind"] == "bucket"}
    assert rows[p.data.name]["soft_delete_seconds"] == 0
    assert "soft_delete_seconds" not in rows[p.audit.name]


@pytest.mark.parametrize("provider", ["aws", "azure"])
def test_plan_sets_no_gcs_soft_delete_on_other_providers(provider: str) -> None:
    p = plan_of("DE").provider(provider)
    assert p.data.soft_delete_seconds is None and p.audit.soft_delete_seconds is None


def test_plan_allows_permanent_delete_on_azure_only() -> None:
    plan = plan_of("DE")
    assert [p.provider for p in plan.providers if p.allow_permanent_delete] == ["azure"]
    assert [p.provider for p in plan.providers if p.app_role] == ["azure"]


# --- the Terraform export ---------------------------------------------------------------


def _tf(loc: str) -> dict[str, Any]:
    resources: dict[str, Any] = render(plan_of(loc))["main.tf.json"]["resource"]
    return resources


@pytest.mark.parametrize("loc", AZURE_LOCATIONS)
def test_terraform_azure_account_enables_permanent_delete_with_soft_delete(loc: str) -> None:
    blob = _tf(loc)["azurerm_storage_account"]["account"]["blob_properties"][0]
    assert blob["delete_retention_policy"] == [{"days": 7, "permanent_delete_enabled": True}]
    assert blob["versioning_enabled"] is True
    # Azure refuses allowPermanentDelete together with point-in-time restore.
    assert "restore_policy" not in blob


@pytest.mark.parametrize("loc", AZURE_LOCATIONS)
def test_terraform_app_role_grants_permanent_delete_within_the_location_group(
        loc: str) -> None:
    role = _tf(loc)["azurerm_role_definition"]["app"]
    assert role["name"] == plan_of(loc).provider("azure").app_role
    [perms] = role["permissions"]
    assert PERMANENT_DELETE in perms["data_actions"]
    assert DELETE_VERSION in perms["data_actions"]
    assert not any("*" in a for a in perms["data_actions"] + perms["actions"])
    # Assignable in the location's own resource group, never subscription-wide.
    assert role["scope"] == "${azurerm_resource_group.rg.id}"
    assert role["assignable_scopes"] == ["${azurerm_resource_group.rg.id}"]


@pytest.mark.parametrize("loc", GCP_LOCATIONS)
def test_terraform_gcs_data_bucket_has_soft_delete_retention_zero_audit_does_not(
        loc: str) -> None:
    buckets = _tf(loc)["google_storage_bucket"]
    assert buckets["data"]["soft_delete_policy"] == [{"retention_duration_seconds": 0}]
    assert "soft_delete_policy" not in buckets["audit"]
    assert buckets["audit"]["retention_policy"][0]["is_locked"] is True
    # Versioning and the noncurrent expiry stay as the backstop.
    assert buckets["data"]["versioning"] == [{"enabled": True}]
    assert any("days_since_noncurrent_time" in rule["condition"][0]
               for rule in buckets["data"]["lifecycle_rule"])


# --- the Pulumi program under mocks -----------------------------------------------------

_RUNS: dict[str, Any] = {}


def _stack(loc: str) -> Any:
    for module in ("pulumi", "pulumi_aws", "pulumi_gcp", "pulumi_azure_native"):
        require(module, "pip install 'residency-sdk[infra]'")
    from infra_mocks import run_stack

    if loc not in _RUNS:
        _RUNS[loc] = run_stack(loc.lower())
    return _RUNS[loc]


pulumi_warnings = pytest.mark.filterwarnings(
    "ignore:.*deprecated in favor of:DeprecationWarning")


@pulumi_warnings
@pytest.mark.parametrize("loc", AZURE_LOCATIONS)
def test_pulumi_every_azure_account_allows_permanent_delete(loc: str) -> None:
    run = _stack(loc)
    [blob] = run.of_type("azure-native:storage:BlobServiceProperties")
    policy = blob.inputs["deleteRetentionPolicy"]
    assert policy["allowPermanentDelete"] is True
    assert policy["enabled"] is True and policy["days"] == 7
    assert blob.inputs["isVersioningEnabled"] is True
    assert "restorePolicy" not in blob.inputs
    [account] = run.of_type("azure-native:storage:StorageAccount")
    assert blob.inputs["accountName"] == account.inputs["accountName"]


@pulumi_warnings
@pytest.mark.parametrize("loc", AZURE_LOCATIONS)
def test_pulumi_sdk_role_has_the_permanent_delete_data_action(loc: str) -> None:
    run = _stack(loc)
    [role] = run.of_type("azure-native:authorization:RoleDefinition")
    assert role.inputs["roleName"] == plan_of(loc).provider("azure").app_role
    [perms] = role.inputs["permissions"]
    assert PERMANENT_DELETE in perms["dataActions"]
    assert DELETE_VERSION in perms["dataActions"]
    group_id = next(rid for (t, _), rid in run.ids.items()
                    if t == "azure-native:resources:ResourceGroup")
    assert role.inputs["scope"] == group_id
    assert role.inputs["assignableScopes"] == [group_id]


@pulumi_warnings
@pytest.mark.parametrize("loc", GCP_LOCATIONS)
def test_pulumi_gcs_data_bucket_soft_delete_is_zero_and_the_audit_bucket_keeps_it(
        loc: str) -> None:
    run = _stack(loc)
    p = plan_of(loc).provider("gcp")
    buckets = {r.inputs["name"]: r.inputs for r in run.of_type("gcp:storage/bucket:Bucket")}
    assert buckets[p.data.name]["softDeletePolicy"] == {"retentionDurationSeconds": 0}
    assert "softDeletePolicy" not in buckets[p.audit.name]
    assert buckets[p.audit.name]["retentionPolicy"]["isLocked"] is True
