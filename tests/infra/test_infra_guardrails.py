"""Location guardrails: the clouds' own refusal of every region but the location's.

For every location of the default map, the AWS region-deny SCP, the GCP
``gcp.resourceLocations`` policy and the Azure "Allowed locations" assignment must allow
exactly the map's regions of that location and provider. The expected regions are read
here from ``region_maps/default.yaml`` itself (plain YAML, not the SDK's loader or the
plan), so a guardrail that ignored or mangled the map fails these tests.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from components import require
from typer.testing import CliRunner

from residency_sdk.cli.app import app
from residency_sdk.errors import InfraCrossesBorder, InfraError
from residency_sdk.infra import build_plan
from residency_sdk.infra.terraform import render
from residency_sdk.model import ComputeTarget
from residency_sdk.regionmap import load_region_map
from residency_sdk.regions import region_table

ROOT = Path(__file__).resolve().parents[2]
RAW_MAP = yaml.safe_load((ROOT / "region_maps" / "default.yaml").read_text())
DEFAULT_MAP = load_region_map()
REGIONS = region_table()
LOCATIONS = ["DE", "CH", "GB", "FR", "US", "AU"]
CLOUDS = ("aws", "gcp", "azure")

OU = "ou-ab12-cdefgh34"
FOLDER = "123456789012"
GUARDED = {"awsOrgTargetId": OU, "gcpFolderId": FOLDER}
# Spelled out here rather than imported: the test must not share the code's constants.
ALLOWED_LOCATIONS_DEF = ("/providers/Microsoft.Authorization/policyDefinitions/"
                         "e56962a6-4747-49cd-b67b-bf8b01975c4c")
GLOBAL_SERVICES = {"iam:*", "organizations:*", "sts:*", "route53:*", "cloudfront:*",
                   "support:*", "budgets:*"}

T_SCP = "aws:organizations/policy:Policy"
T_ATTACH = "aws:organizations/policyAttachment:PolicyAttachment"
T_ORG_POLICY = "gcp:orgpolicy/policy:Policy"
T_ASSIGNMENT = "azure-native:authorization:PolicyAssignment"
T_RG = "azure-native:resources:ResourceGroup"

runner = CliRunner()
# The providers' own deprecated aliases warn when their modules load; not our code.
pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated in favor of:DeprecationWarning")


def map_regions(loc: str, provider: str, raw: dict[str, Any] = RAW_MAP) -> set[str]:
    """The regions a map file names for ``loc`` and ``provider``: the backend's region,
    its failover region, and the provider's compute regions."""
    spec = raw["locations"][loc]
    backend = spec["backends"][provider]
    regions = {backend["region"]}
    if backend.get("failover_region"):
        regions.add(backend["failover_region"])
    regions |= {c["region"] for c in spec.get("compute", []) if c["provider"] == provider}
    return regions


def test_the_map_gives_every_location_more_than_one_region_somewhere() -> None:
    # Guards the tests below against a degenerate map where "primary only" would pass too.
    for loc in LOCATIONS:
        assert any(len(map_regions(loc, p)) > 1 for p in CLOUDS), loc


def scp_statements(content: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    doc = json.loads(content)
    assert doc["Version"] == "2012-10-17"
    region_deny = [s for s in doc["Statement"] if "NotAction" in s]
    replica_deny = [s for s in doc["Statement"] if s.get("Action") == "kms:ReplicateKey"]
    bucket_deny = [s for s in doc["Statement"] if s.get("Action") == "s3:CreateBucket"]
    assert (len(region_deny), len(replica_deny), len(bucket_deny)) == (1, 1, 1)
    assert len(doc["Statement"]) == 3
    return region_deny[0], replica_deny[0], bucket_deny[0]


def assert_region_deny_scp(content: str, expected: set[str]) -> None:
    assert len(content) <= 5120  # AWS Organizations' SCP size limit, whitespace included
    deny, replica, bucket = scp_statements(content)
    assert deny["Effect"] == "Deny" and deny["Resource"] == "*"
    assert list(deny["Condition"]) == ["StringNotEquals"]
    assert list(deny["Condition"]["StringNotEquals"]) == ["aws:RequestedRegion"]
    regions = deny["Condition"]["StringNotEquals"]["aws:RequestedRegion"]
    assert len(regions) == len(set(regions)) and set(regions) == expected
    exempt = set(deny["NotAction"])
    assert exempt >= GLOBAL_SERVICES
    # Regional data and key services stay denied outside the location.
    assert not exempt & {"*", "kms:*", "s3:*", "s3:PutObject", "s3:CreateBucket", "ec2:*",
                         "rds:*", "dynamodb:*"}
    assert replica["Effect"] == "Deny"
    assert set(replica["Condition"]["StringNotEquals"]["kms:ReplicaRegion"]) == expected
    assert bucket["Effect"] == "Deny"
    assert set(bucket["Condition"]["StringNotEquals"]["s3:LocationConstraint"]) == expected
    assert bucket["Condition"]["Null"] == {"s3:LocationConstraint": "false"}


# --- the plan -----------------------------------------------------------------------------


@pytest.mark.parametrize("loc", LOCATIONS)
def test_plan_guardrails_allow_exactly_the_map_regions(loc: str) -> None:
    plan = build_plan(DEFAULT_MAP, loc, aws_org_target=OU, gcp_folder=FOLDER)
    assert [g.provider for g in plan.guardrails] == list(CLOUDS)
    for g in plan.guardrails:
        assert set(g.allowed_regions) == map_regions(loc, g.provider), g.provider
        assert len(g.allowed_regions) == len(set(g.allowed_regions))
        assert g.allowed_regions[0] == RAW_MAP["locations"][loc]["backends"][g.provider][
            "region"]
        assert all(REGIONS[g.provider][r] == DEFAULT_MAP.locations[loc].country
                   for r in g.allowed_regions)
        assert g.enforced and g.note is None
    assert plan.guardrail("aws").target == OU
    assert plan.guardrail("gcp").target == f"folders/{FOLDER}"
    assert plan.guardrail("azure").target == plan.provider("azure").resource_group
    assert plan.notes() == []


def test_unconfigured_guardrails_are_skipped_with_a_note_never_silently() -> None:
    plan = build_plan(DEFAULT_MAP, "DE")
    aws, gcp, azure = (plan.guardrail(p) for p in CLOUDS)
    assert not aws.enforced and not gcp.enforced and azure.enforced
    assert "residency:awsOrgTargetId" in aws.note and "--aws-org-target" in aws.note
    assert "eu-central-1" in aws.note
    assert "residency:gcpFolderId" in gcp.note and "europe-west10" in gcp.note
    assert plan.notes() == [aws.note, gcp.note]
    summary = plan.guardrail_summary()
    assert summary["aws"]["status"] == "skipped" and summary["aws"]["note"] == aws.note
    assert summary["azure"]["status"] == "enforced"


@pytest.mark.parametrize(("aws", "gcp", "message"), [
    ("r-ab12", None, "organisation root"),
    ("ou-nope", None, "neither an OU id"),
    ("12345", None, "neither an OU id"),
    (None, "organizations/123456", "not a folder id"),
    (None, "folder-one", "not a folder id"),
])
def test_bad_or_too_broad_targets_are_refused(aws: str | None, gcp: str | None,
                                               message: str) -> None:
    with pytest.raises(InfraError, match=message):
        build_plan(DEFAULT_MAP, "CH", aws_org_target=aws, gcp_folder=gcp)


def test_targets_accept_accounts_and_both_folder_spellings() -> None:
    a = build_plan(DEFAULT_MAP, "CH", aws_org_target="123456789012", gcp_folder="folders/42")
    b = build_plan(DEFAULT_MAP, "CH", aws_org_target=" 123456789012 ", gcp_folder="42")
    assert a.guardrails == b.guardrails
    assert a.guardrail("gcp").target == "folders/42"
    empty = build_plan(DEFAULT_MAP, "CH", aws_org_target="", gcp_folder="  ")
    assert not empty.guardrail("aws").enforced and not empty.guardrail("gcp").enforced


def test_a_target_for_a_provider_the_location_lacks_is_refused(tmp_path: Path) -> None:
    overlay = tmp_path / "in.yaml"
    overlay.write_text("""
version: 1
name: with-india
extends: default
locations:
  IN:
    name: India
    default_provider: azure
    backends:
      azure: {region: centralindia, account: residencyin}
""")
    in_map = load_region_map(overlay)
    assert [g.provider for g in build_plan(in_map, "IN").guardrails] == ["azure"]
    with pytest.raises(InfraError, match="nothing of aws to guard"):
        build_plan(in_map, "IN", aws_org_target=OU)


def test_a_compute_region_abroad_in_a_map_built_in_code_is_refused() -> None:
    de = DEFAULT_MAP.locations["DE"]
    abroad = ComputeTarget(provider="aws", region="us-east-1",
                           endpoint="https://inference.de.residency.example")
    bad = dataclasses.replace(DEFAULT_MAP, locations={
        **DEFAULT_MAP.locations, "DE": dataclasses.replace(de, compute=(abroad,))})
    with pytest.raises(InfraCrossesBorder, match="'us-east-1'"):
        build_plan(bad, "DE")


def test_compute_regions_of_the_location_are_allowed_too() -> None:
    us = DEFAULT_MAP.locations["US"]
    extra = ComputeTarget(provider="azure", region="westus3",
                          endpoint="https://inference.us.residency.example")
    edited = dataclasses.replace(DEFAULT_MAP, locations={
        **DEFAULT_MAP.locations, "US": dataclasses.replace(us, compute=(*us.compute, extra))})
    allowed = build_plan(edited, "US").guardrail("azure").allowed_regions
    assert set(allowed) == map_regions("US", "azure") | {"westus3"}


# --- a map edit changes every renderer's allowed set ----------------------------------------

US_EDIT = """
version: 1
name: us-edit
extends: default
locations:
  US:
    backends:
      aws: {failover_region: us-east-2}
      gcp: {failover_region: us-west1}
"""


@pytest.fixture
def edited_map(tmp_path: Path) -> Path:
    path = tmp_path / "us-edit.yaml"
    path.write_text(US_EDIT)
    return path


def test_a_map_edit_changes_the_allowed_regions_everywhere(edited_map: Path) -> None:
    from infra_mocks import run_stack

    new_aws, new_gcp = {"us-east-1", "us-east-2"}, {"us-central1", "us-west1"}
    assert map_regions("US", "aws") != new_aws and map_regions("US", "gcp") != new_gcp
    plan = build_plan(load_region_map(edited_map), "US", aws_org_target=OU,
                      gcp_folder=FOLDER)
    assert set(plan.guardrail("aws").allowed_regions) == new_aws
    assert set(plan.guardrail("gcp").allowed_regions) == new_gcp
    res = render(plan)["main.tf.json"]["resource"]
    assert_region_deny_scp(res["aws_organizations_policy"]["region_deny"]["content"], new_aws)
    values = res["google_org_policy_policy"]["resource_locations"]["spec"][0]["rules"][0][
        "values"][0]["allowed_values"]
    assert set(values) == {f"in:{r}-locations" for r in new_gcp}
    run = run_stack("us", config={**GUARDED, "map": str(edited_map)})
    assert_region_deny_scp(run.only(T_SCP).inputs["content"], new_aws)
    assert set(run.only(T_ORG_POLICY).inputs["spec"]["rules"][0]["values"][
        "allowedValues"]) == {f"in:{r}-locations" for r in new_gcp}


# --- the Pulumi program (mocks) -------------------------------------------------------------

_RUNS: dict[str, Any] = {}


def guarded(loc: str) -> Any:
    require("pulumi_aws", "pip install 'residency-sdk[infra]'")
    from infra_mocks import run_stack

    if loc not in _RUNS:
        _RUNS[loc] = run_stack(loc.lower(), config=GUARDED)
    return _RUNS[loc]


@pytest.mark.parametrize("loc", LOCATIONS)
def test_pulumi_scp_denies_every_region_but_the_map_regions(loc: str) -> None:
    run = guarded(loc)
    policy = run.only(T_SCP)
    assert policy.inputs["type"] == "SERVICE_CONTROL_POLICY"
    assert "region" not in policy.inputs  # Organizations is global
    assert_region_deny_scp(policy.inputs["content"], map_regions(loc, "aws"))
    attachment = run.only(T_ATTACH).inputs
    assert attachment["targetId"] == OU
    assert attachment["policyId"] == run.ids[(T_SCP, policy.name)]


@pytest.mark.parametrize("loc", LOCATIONS)
def test_pulumi_org_policy_allows_exactly_the_map_regions_on_the_folder(loc: str) -> None:
    inputs = guarded(loc).only(T_ORG_POLICY).inputs
    assert inputs["parent"] == f"folders/{FOLDER}"
    folder, _, constraint = inputs["name"].partition("/policies/")
    assert folder == f"folders/{FOLDER}"
    assert constraint in ("gcp.resourceLocations", "constraints/gcp.resourceLocations")
    spec = inputs["spec"]
    assert spec["inheritFromParent"] is False  # replace, never widen, what is inherited
    (rule,) = spec["rules"]
    assert set(rule) == {"values"} and set(rule["values"]) == {"allowedValues"}
    values = rule["values"]["allowedValues"]
    assert len(values) == len(set(values))
    assert set(values) == {f"in:{r}-locations" for r in map_regions(loc, "gcp")}


@pytest.mark.parametrize("loc", LOCATIONS)
def test_pulumi_azure_assignment_uses_allowed_locations_at_the_rg(loc: str) -> None:
    run = guarded(loc)
    assignment = run.only(T_ASSIGNMENT).inputs
    rg = run.only(T_RG)
    assert assignment["policyDefinitionId"] == ALLOWED_LOCATIONS_DEF
    assert assignment["scope"] == run.ids[(T_RG, rg.name)] == \
        f"/subscriptions/sub/resourceGroups/{rg.inputs['resourceGroupName']}"
    assert assignment["enforcementMode"] == "Default"
    allowed = assignment["parameters"]["listOfAllowedLocations"]["value"]
    assert len(allowed) == len(set(allowed)) and set(allowed) == map_regions(loc, "azure")
    assert run.warnings == []
    assert {g["status"] for g in run.guardrails.values()} == {"enforced"}


@pytest.mark.parametrize("loc", LOCATIONS)
def test_policy_pack_passes_the_real_guardrails(loc: str) -> None:
    from residency_infra.policy import check_resources

    run = guarded(loc)
    country = DEFAULT_MAP.locations[loc].country
    assert check_resources(run.resources, country=country, region_table=REGIONS) == []


def test_policy_pack_catches_guardrails_that_allow_abroad() -> None:
    import pulumi_aws as aws
    import pulumi_azure_native as az
    import pulumi_gcp as gcp
    from infra_mocks import run_stack
    from residency_infra.policy import check_resources

    def plant() -> None:
        aws.organizations.Policy("planted-scp", type="SERVICE_CONTROL_POLICY", content=json.dumps(
            {"Version": "2012-10-17", "Statement": [{
                "Effect": "Deny", "NotAction": ["iam:*"], "Resource": "*",
                "Condition": {"StringNotEquals": {
                    "aws:RequestedRegion": ["eu-central-1", "us-east-1"]}}}]}))
        gcp.orgpolicy.Policy("planted-org-policy", parent="folders/1",
                             name="folders/1/policies/gcp.resourceLocations",
                             spec={"rules": [{"values": {"allowed_values": [
                                 "in:europe-west3-locations", "in:eu-locations"]}}]})
        az.authorization.PolicyAssignment(
            "planted-assignment", scope="/subscriptions/sub/resourceGroups/x",
            policy_definition_id=ALLOWED_LOCATIONS_DEF,
            parameters={"listOfAllowedLocations": {"value": []}})

    run = run_stack("de", config=GUARDED, extra=plant)
    violations = check_resources(run.resources, country="DE", region_table=REGIONS)
    by_resource: dict[str, list[str]] = {}
    for v in violations:
        assert v.policy == "guardrail-in-location"
        by_resource.setdefault(v.resource, []).append(v.message)
    assert sorted(by_resource) == ["planted-assignment", "planted-org-policy", "planted-scp"]
    (scp,) = by_resource["planted-scp"]
    assert "'us-east-1' (US)" in scp  # eu-central-1 is fine, only the foreign one
    (org,) = by_resource["planted-org-policy"]
    assert "'in:eu-locations'" in org  # a multi-region group spans countries
    (empty,) = by_resource["planted-assignment"]
    assert "no allowed region" in empty


def test_pulumi_without_targets_skips_aws_and_gcp_and_says_so() -> None:
    require("pulumi_aws", "pip install 'residency-sdk[infra]'")
    from infra_mocks import run_stack

    run = run_stack("fr")
    assert run.of_type(T_SCP) == [] and run.of_type(T_ATTACH) == []
    assert run.of_type(T_ORG_POLICY) == []
    assert len(run.of_type(T_ASSIGNMENT)) == 1  # the stack's own RG needs no config
    assert run.guardrails["aws"]["status"] == "skipped"
    assert run.guardrails["gcp"]["status"] == "skipped"
    assert any("residency:awsOrgTargetId" in w for w in run.warnings)
    assert any("residency:gcpFolderId" in w for w in run.warnings)


# --- the Terraform export ---------------------------------------------------------------------


@pytest.mark.parametrize("loc", LOCATIONS)
def test_terraform_export_has_the_same_guardrails(loc: str) -> None:
    plan = build_plan(DEFAULT_MAP, loc, aws_org_target=OU, gcp_folder=FOLDER)
    files = render(plan)
    res = files["main.tf.json"]["resource"]
    scp = res["aws_organizations_policy"]["region_deny"]
    assert scp["type"] == "SERVICE_CONTROL_POLICY" and "region" not in scp
    assert_region_deny_scp(scp["content"], map_regions(loc, "aws"))
    assert res["aws_organizations_policy_attachment"]["region_deny"] == {
        "policy_id": "${aws_organizations_policy.region_deny.id}", "target_id": OU}
    org = res["google_org_policy_policy"]["resource_locations"]
    assert org["parent"] == f"folders/{FOLDER}"
    assert org["name"] == f"folders/{FOLDER}/policies/gcp.resourceLocations"
    (spec,) = org["spec"]
    assert spec["inherit_from_parent"] is False
    (rule,) = spec["rules"]
    assert set(rule["values"][0]["allowed_values"]) == {
        f"in:{r}-locations" for r in map_regions(loc, "gcp")}
    assignment = res["azurerm_resource_group_policy_assignment"]["allowed_locations"]
    assert assignment["policy_definition_id"] == ALLOWED_LOCATIONS_DEF
    assert assignment["resource_group_id"] == "${azurerm_resource_group.rg.id}"
    assert assignment["enforce"] is True
    allowed = json.loads(assignment["parameters"])["listOfAllowedLocations"]["value"]
    assert set(allowed) == map_regions(loc, "azure")
    output = files["outputs.tf.json"]["output"]["guardrails"]["value"]
    assert {p: g["status"] for p, g in output.items()} == dict.fromkeys(CLOUDS, "enforced")


@pytest.mark.parametrize("loc", ["DE", "US"])
def test_pulumi_and_terraform_send_the_same_documents(loc: str) -> None:
    run = guarded(loc)
    res = render(build_plan(DEFAULT_MAP, loc, aws_org_target=OU, gcp_folder=FOLDER))[
        "main.tf.json"]["resource"]
    assert run.only(T_SCP).inputs["content"] == \
        res["aws_organizations_policy"]["region_deny"]["content"]
    assert run.only(T_ASSIGNMENT).inputs["parameters"] == json.loads(
        res["azurerm_resource_group_policy_assignment"]["allowed_locations"]["parameters"])
    assert run.only(T_ASSIGNMENT).inputs["policyAssignmentName"] == \
        res["azurerm_resource_group_policy_assignment"]["allowed_locations"]["name"]


def test_terraform_export_without_targets_renders_no_org_resources() -> None:
    files = render(build_plan(DEFAULT_MAP, "GB"))
    res = files["main.tf.json"]["resource"]
    assert not {"aws_organizations_policy", "aws_organizations_policy_attachment",
                "google_org_policy_policy"} & set(res)
    assert "allowed_locations" in res["azurerm_resource_group_policy_assignment"]
    output = files["outputs.tf.json"]["output"]["guardrails"]["value"]
    assert output["aws"]["status"] == "skipped"
    assert "residency:awsOrgTargetId" in output["aws"]["note"]
    assert output["gcp"]["status"] == "skipped" and output["azure"]["status"] == "enforced"


# --- the CLI ----------------------------------------------------------------------------------


def test_cli_plan_shows_guardrails_and_the_notes() -> None:
    result = runner.invoke(app, ["infra", "plan", "--location", "DE", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["guardrails"]["aws"]["status"] == "skipped"
    assert set(data["guardrails"]["azure"]["allowed_regions"]) == map_regions("DE", "azure")
    assert len(data["notes"]) == 2 and "residency:gcpFolderId" in data["notes"][1]
    assert data["plan"]["guardrails"][1]["provider"] == "gcp"
    result = runner.invoke(app, ["infra", "plan", "-l", "DE", "--aws-org-target", OU,
                                 "--gcp-folder", FOLDER, "--json"])
    data = json.loads(result.stdout)
    assert data["notes"] == []
    assert set(data["guardrails"]["gcp"]["allowed_regions"]) == map_regions("DE", "gcp")
    table = runner.invoke(app, ["infra", "plan", "--location", "DE"])
    assert table.exit_code == 0
    assert "Location guardrails" in table.output and "skipped" in table.output
    assert "note:" in table.stderr and "residency:awsOrgTargetId" in table.stderr


def test_cli_export_carries_the_targets_into_terraform_and_stack_config(
        tmp_path: Path) -> None:
    result = runner.invoke(app, ["infra", "export", "-l", "AU", "--aws-org-target", OU,
                                 "--gcp-folder", FOLDER, "--out", str(tmp_path / "tf"),
                                 "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["notes"] == []
    main = json.loads((tmp_path / "tf" / "main.tf.json").read_text())
    assert main["resource"]["aws_organizations_policy_attachment"]["region_deny"][
        "target_id"] == OU
    result = runner.invoke(app, ["infra", "export", "-l", "AU", "--format", "pulumi-stack",
                                 "--aws-org-target", OU, "--gcp-folder", FOLDER,
                                 "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((tmp_path / "Pulumi.au.yaml").read_text())["config"]
    assert config["residency:awsOrgTargetId"] == OU
    assert config["residency:gcpFolderId"] == f"folders/{FOLDER}"
    result = runner.invoke(app, ["infra", "export", "-l", "AU", "--aws-org-target", "r-ab12",
                                 "--out", str(tmp_path / "root"), "--json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error_type"] == "InfraError"
    assert not (tmp_path / "root").exists()
