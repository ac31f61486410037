"""The Pulumi program of infra/, run per stack under ``pulumi.runtime.set_mocks``.

Assertions are on what the program actually registers (the inputs the engine would
receive, camelCase), for every stack of the default map.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from components import require

# Before anything imports Pulumi: missing, it fails the run under CI (skips locally).
for _module in ("pulumi", "pulumi_aws", "pulumi_gcp", "pulumi_azure_native"):
    require(_module, "pip install 'residency-sdk[infra]'")

import pulumi_aws as aws  # noqa: E402
import pulumi_gcp as gcp  # noqa: E402
import yaml  # noqa: E402
from infra_mocks import INFRA_DIR, StackRun, run_stack  # noqa: E402
from residency_infra.policy import check_resources  # noqa: E402

from residency_sdk.infra import build_plan  # noqa: E402
from residency_sdk.infra.outputs import overlay_from_outputs  # noqa: E402
from residency_sdk.infra.stack import render_stack_yaml, stack_file_name  # noqa: E402
from residency_sdk.regionmap import load_region_map  # noqa: E402
from residency_sdk.regions import region_table  # noqa: E402

# The providers' own deprecated aliases warn when their modules load; not our code.
pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated in favor of:DeprecationWarning")

DEFAULT_MAP = load_region_map()
REGIONS = region_table()
STACKS = ["de", "ch", "gb", "fr", "us", "au"]
_RUNS: dict[str, StackRun] = {}

T_BUCKET = "aws:s3/bucket:Bucket"
T_SSE = ("aws:s3/bucketServerSideEncryptionConfiguration:"
         "BucketServerSideEncryptionConfiguration")
T_PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
T_GCS = "gcp:storage/bucket:Bucket"
T_ACCOUNT = "azure-native:storage:StorageAccount"


def stack(name: str) -> StackRun:
    """One mocked run per stack, shared by the assertions on it (a run takes ~0.5 s)."""
    if name not in _RUNS:
        _RUNS[name] = run_stack(name)
    return _RUNS[name]


def test_every_location_of_the_default_map_has_a_stack_file() -> None:
    assert sorted(p.name for p in INFRA_DIR.glob("Pulumi.*.yaml") if p.name != "Pulumi.yaml") \
        == sorted(f"Pulumi.{s}.yaml" for s in STACKS)
    assert sorted(s.upper() for s in STACKS) == sorted(DEFAULT_MAP.locations)
    for loc in DEFAULT_MAP.locations:
        plan = build_plan(DEFAULT_MAP, loc)
        committed = (INFRA_DIR / stack_file_name(plan)).read_text()
        assert committed == render_stack_yaml(plan), f"regenerate {stack_file_name(plan)}"


@pytest.mark.parametrize("name", STACKS)
def test_every_resource_is_in_the_stack_country(name: str) -> None:
    run = stack(name)
    country = DEFAULT_MAP.locations[name.upper()].country
    regional = [r for r in run.resources if r.type in (
        T_BUCKET, "aws:kms/key:Key", T_GCS, "gcp:kms/keyRing:KeyRing", T_ACCOUNT,
        "azure-native:keyvault:Vault", "azure-native:resources:ResourceGroup",
        "azure-native:managedidentity:UserAssignedIdentity")]
    assert len(regional) == 2 + 1 + 2 + 1 + 1 + 1 + 1 + 1
    for res in regional:
        region = res.inputs.get("region") or res.inputs.get("location")
        provider = {"aws": "aws", "gcp": "gcp", "azure-native": "azure"}[res.type.split(":")[0]]
        assert REGIONS[provider][region.lower()] == country, (res.name, region)
    # AWS sub-resources carry the region too (pulumi-aws 7 per-resource region)
    for res in run.resources:
        if res.type.startswith("aws:") and res.type != "aws:kms/alias:Alias":
            assert REGIONS["aws"][res.inputs["region"]] == country, res.name


@pytest.mark.parametrize("name", STACKS)
def test_aws_encryption_rotation_public_access_tls_lifecycle_lock(name: str) -> None:
    run = stack(name)
    plan = build_plan(DEFAULT_MAP, name).provider("aws")
    key = run.one("aws:kms/key:Key", f"residency-{name}-aws-key").inputs
    assert key["enableKeyRotation"] is True and key["rotationPeriodInDays"] == 90
    assert key["multiRegion"] is False
    key_policy = json.loads(key["policy"])
    assert key_policy["Statement"][0]["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    alias = run.of_type("aws:kms/alias:Alias")[0].inputs
    assert alias["name"] == f"alias/residency-{name}"
    key_arn = f"arn:aws:kms:{plan.region}:123456789012:key/key-residency-{name}-aws-key"
    for purpose in ("data", "audit"):
        rname = f"residency-{name}-aws-{purpose}"
        bucket = run.one(T_BUCKET, rname).inputs
        assert bucket["bucket"] == getattr(plan, purpose).name
        sse = run.one(T_SSE, rname).inputs["rules"][0]
        assert sse["applyServerSideEncryptionByDefault"] == {
            "sseAlgorithm": "aws:kms", "kmsMasterKeyId": key_arn}
        assert sse["bucketKeyEnabled"] is True
        pab = run.one(T_PAB, rname).inputs
        assert all(pab[f] is True for f in ("blockPublicAcls", "blockPublicPolicy",
                                            "ignorePublicAcls", "restrictPublicBuckets"))
        own = run.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls", rname).inputs
        assert own["rule"]["objectOwnership"] == "BucketOwnerEnforced"
        ver = run.one("aws:s3/bucketVersioning:BucketVersioning", rname).inputs
        assert ver["versioningConfiguration"]["status"] == "Enabled"
        policy = json.loads(run.one("aws:s3/bucketPolicy:BucketPolicy", rname).inputs["policy"])
        by_sid = {s["Sid"]: s for s in policy["Statement"]}
        assert by_sid["DenyInsecureTransport"]["Condition"] == {
            "Bool": {"aws:SecureTransport": "false"}}
        assert by_sid["DenyOldTls"]["Condition"] == {"NumericLessThan": {"s3:TlsVersion": 1.2}}
        assert by_sid["DenyUploadsWithoutSseKms"]["Effect"] == "Deny"
        assert all(s["Effect"] == "Deny" for s in policy["Statement"])
    life = run.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
                   f"residency-{name}-aws-data").inputs["rules"]
    imaging = next(r for r in life if r["id"] == "expire-imaging_upload")
    # Selects the tag the S3 adapter writes (tests/storage_adapters/test_lifecycle_marks.py).
    assert imaging["filter"] == {"tag": {"key": "residency-retention",
                                         "value": "imaging_upload"}}
    assert imaging["expiration"]["days"] == 1  # the 24-hour promise
    assert imaging["noncurrentVersionExpiration"]["noncurrentDays"] == 1
    lock = run.one("aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration",
                   f"residency-{name}-aws-audit").inputs
    assert lock["rule"]["defaultRetention"] == {"mode": "COMPLIANCE", "days": 2192}
    assert run.one(T_BUCKET, f"residency-{name}-aws-audit").inputs["objectLockEnabled"] is True
    assert not run.one(T_BUCKET, f"residency-{name}-aws-data").inputs.get("objectLockEnabled")
    assert len(run.of_type("aws:s3/bucketObjectLockConfiguration:"
                           "BucketObjectLockConfiguration")) == 1


@pytest.mark.parametrize("name", STACKS)
def test_gcp_key_bucket_access_lifecycle_and_locked_retention(name: str) -> None:
    run = stack(name)
    plan = build_plan(DEFAULT_MAP, name).provider("gcp")
    ring = run.one("gcp:kms/keyRing:KeyRing", f"residency-{name}-gcp-ring").inputs
    assert ring["location"] == plan.region
    key = run.one("gcp:kms/cryptoKey:CryptoKey", f"residency-{name}-gcp-key").inputs
    assert key["rotationPeriod"] == f"{90 * 86400}s"
    key_id = (f"projects/residency-{name}/locations/{plan.region}/keyRings/residency"
              "/cryptoKeys/data")
    grant = run.one("gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember",
                    f"residency-{name}-gcp-storage-agent").inputs
    assert grant["cryptoKeyId"] == key_id
    assert grant["role"] == "roles/cloudkms.cryptoKeyEncrypterDecrypter"
    assert grant["member"].startswith("serviceAccount:service-")
    for purpose in ("data", "audit"):
        b = run.one(T_GCS, f"residency-{name}-gcp-{purpose}").inputs
        assert b["location"] == plan.region.upper()
        assert b["encryption"]["defaultKmsKeyName"] == key_id
        assert b["uniformBucketLevelAccess"] is True
        assert b["publicAccessPrevention"] == "enforced"
        assert b["labels"]["residency-location"] == name
    data = run.one(T_GCS, f"residency-{name}-gcp-data").inputs
    audit = run.one(T_GCS, f"residency-{name}-gcp-audit").inputs
    assert data["versioning"]["enabled"] is True
    conditions = [r["condition"] for r in data["lifecycleRules"]
                  if r["action"]["type"] == "Delete"]
    # One custom-time rule serves every category; nothing selects by age or prefix, and
    # no condition is zero (the providers drop zeros, leaving a rule that selects all).
    assert {"daysSinceCustomTime": 1} in conditions
    assert {"daysSinceCustomTime": 1, "daysSinceNoncurrentTime": 1,
            "withState": "ARCHIVED"} in conditions
    assert all("age" not in c and "matchesPrefixes" not in c for c in conditions)
    assert all(v != 0 for c in conditions for v in c.values())
    audit_conditions = [r["condition"] for r in audit["lifecycleRules"]]
    assert {"age": 2193} in audit_conditions
    assert audit["retentionPolicy"] == {"retentionPeriod": 2192 * 86400, "isLocked": True}
    assert "retentionPolicy" not in data
    assert data["logging"]["logBucket"] == audit["name"]


@pytest.mark.parametrize("name", STACKS)
def test_azure_account_vault_containers_and_lifecycle(name: str) -> None:
    run = stack(name)
    plan = build_plan(DEFAULT_MAP, name).provider("azure")
    acct = run.one(T_ACCOUNT, f"residency-{name}-azure-account").inputs
    assert acct["accountName"] == plan.account
    assert acct["sku"]["name"] in ("Standard_ZRS", "Standard_LRS")
    assert acct["enableHttpsTrafficOnly"] is True
    assert acct["minimumTlsVersion"] == "TLS1_2"
    assert acct["allowBlobPublicAccess"] is False and acct["allowSharedKeyAccess"] is False
    assert acct["allowCrossTenantReplication"] is False
    enc = acct["encryption"]
    assert enc["keySource"] == "Microsoft.Keyvault"
    assert enc["requireInfrastructureEncryption"] is True
    assert enc["keyVaultProperties"]["keyName"] == plan.key.name
    vault = run.one("azure-native:keyvault:Vault", f"residency-{name}-azure-vault").inputs
    assert vault["location"] == plan.region
    assert vault["properties"]["enablePurgeProtection"] is True
    key = run.one("azure-native:keyvault:Key", f"residency-{name}-azure-key").inputs
    rotate = key["properties"]["rotationPolicy"]["lifetimeActions"][0]
    assert rotate == {"trigger": {"timeAfterCreate": "P90D"}, "action": {"type": "rotate"}}
    blob = run.one("azure-native:storage:BlobServiceProperties",
                   f"residency-{name}-azure-blob-service").inputs
    assert blob["deleteRetentionPolicy"] == {"enabled": True, "days": 7,
                                             "allowPermanentDelete": True}
    scope = run.one("azure-native:storage:EncryptionScope", f"residency-{name}-azure-scope")
    assert scope.inputs["encryptionScopeName"] == plan.encryption_scope
    data = run.one("azure-native:storage:BlobContainer", f"residency-{name}-azure-data").inputs
    assert data["publicAccess"] == "None"
    assert data["defaultEncryptionScope"] == plan.encryption_scope
    assert data["denyEncryptionScopeOverride"] is True
    lock = run.one("azure-native:storage:BlobContainerImmutabilityPolicy",
                   f"residency-{name}-azure-audit-lock").inputs
    assert lock["containerName"] == plan.audit.name
    assert lock["immutabilityPeriodSinceCreationInDays"] == 2192
    rules = run.one("azure-native:storage:ManagementPolicy",
                    f"residency-{name}-azure-lifecycle").inputs["policy"]["rules"]
    imaging = next(r for r in rules if r["name"] == "data-expire-imaging-upload")
    assert imaging["definition"]["filters"] == {
        "blobTypes": ["blockBlob"], "prefixMatch": [f"{plan.data.name}/"],
        "blobIndexMatch": [{"name": "residency-retention", "op": "==",
                            "value": "imaging_upload"}]}
    assert imaging["definition"]["actions"]["baseBlob"]["delete"] == {
        "daysAfterCreationGreaterThan": 1}


@pytest.mark.parametrize("name", STACKS)
def test_policy_passes_on_every_real_stack(name: str) -> None:
    run = stack(name)
    country = DEFAULT_MAP.locations[name.upper()].country
    assert check_resources(run.resources, country=country, region_table=REGIONS) == []


def _plant_bad_resources() -> None:
    # An S3 bucket in Germany with no encryption configuration at all, and an encrypted
    # GCS bucket in Iowa, planted into the DE stack next to the real resources.
    aws.s3.Bucket("planted-unencrypted", bucket="planted-unencrypted", region="eu-central-1")
    gcp.storage.Bucket("planted-abroad", name="planted-abroad", location="US-CENTRAL1",
                       encryption={"default_kms_key_name": "projects/p/locations/us-central1/"
                                                           "keyRings/r/cryptoKeys/k"})


def test_policy_catches_planted_unencrypted_bucket_and_bucket_abroad() -> None:
    run = run_stack("de", extra=_plant_bad_resources)
    violations = check_resources(run.resources, country="DE", region_table=REGIONS)
    got = sorted((v.policy, v.resource) for v in violations)
    assert got == [("storage-encrypted", "planted-unencrypted"),
                   ("storage-in-location", "planted-abroad")]
    abroad = next(v for v in violations if v.resource == "planted-abroad")
    assert "US-CENTRAL1" in abroad.message and "US" in abroad.message


def test_policy_fails_resources_with_no_region_and_weak_azure_encryption() -> None:
    from residency_infra.policy import RegisteredResource

    resources = [
        RegisteredResource(T_GCS, "no-location", {"encryption": {"defaultKmsKeyName": "k"}}),
        RegisteredResource(T_ACCOUNT, "ms-managed", {
            "location": "germanywestcentral", "encryption": {"keySource": "Microsoft.Storage"}}),
    ]
    got = sorted((v.policy, v.resource) for v in
                 check_resources(resources, country="DE", region_table=REGIONS))
    assert got == [("storage-encrypted", "ms-managed"), ("storage-in-location", "no-location")]


def test_stack_outputs_read_back_into_a_map_the_sdk_loads(tmp_path: Path) -> None:
    run = stack("au")
    overlay = overlay_from_outputs({"residency": run.outputs})
    path = tmp_path / "deployed.yaml"
    path.write_text(yaml.safe_dump(overlay))
    deployed = load_region_map(path)
    for provider, target in DEFAULT_MAP.locations["AU"].backends.items():
        got = deployed.locations["AU"].backends[provider]
        assert got == target, provider  # the deployed stack is what the router expects


def test_a_map_edit_adding_india_yields_a_new_stack_without_code_change(tmp_path: Path) -> None:
    overlay = tmp_path / "with-india.yaml"
    overlay.write_text("""
version: 1
name: with-india
extends: default
routes:
  IN: IN
locations:
  IN:
    name: India
    default_provider: aws
    backends:
      aws: {region: ap-south-1, failover_region: ap-south-2, kms_key: "alias/residency-in"}
      gcp:
        region: asia-south1
        kms_key: projects/residency-in/locations/asia-south1/keyRings/residency/cryptoKeys/data
      azure: {region: centralindia, account: residencyin, encryption_scope: residency-in-cmk}
""")
    run = run_stack("in", config={"map": str(overlay)})
    assert check_resources(run.resources, country="IN", region_table=REGIONS) == []
    regions = {r.inputs.get("region") or r.inputs.get("location") for r in run.resources
               if r.type in (T_BUCKET, T_GCS, T_ACCOUNT)}
    assert regions == {"ap-south-1", "ASIA-SOUTH1", "centralindia"}
    assert run.outputs["location"] == "IN"
    assert run.outputs["backends"]["aws"]["bucket"] == "residency-in-aws-data"
    assert {b["country"] for b in run.outputs["backends"].values()} == {"IN"}


def test_stack_config_refusing_geo_redundancy_stops_the_program() -> None:
    from residency_sdk.errors import InfraCrossesBorder

    with pytest.raises(InfraCrossesBorder):
        run_stack("de", config={"azureRedundancy": "RAGRS"})


def _names(run: StackRun) -> list[Any]:
    return [(r.type, r.name) for r in run.resources]


def test_runs_are_deterministic() -> None:
    assert sorted(_names(stack("fr"))) == sorted(_names(run_stack("fr")))
