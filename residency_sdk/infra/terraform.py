"""Render an :class:`~residency_sdk.infra.plan.InfraPlan` as Terraform/OpenTofu JSON.

``main.tf.json`` holds the resources, ``versions.tf.json`` the provider requirements,
``variables.tf.json`` what the plan cannot know
(cloud project and subscription ids), ``outputs.tf.json`` the same ``residency`` output the
Pulumi stacks export, so ``residency infra outputs`` reads either, and the ``guardrails``
output (which location guardrails are enforced, which skipped and why). Pure Python: the
files are data built from the plan, the same plan the Pulumi program renders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from residency_sdk.infra.documents import (
    AZURE_ALLOWED_LOCATIONS_DEFINITION,
    GCP_RESOURCE_LOCATIONS,
    aws_bucket_policy,
    aws_key_policy,
    aws_region_deny_scp_content,
    azure_allowed_locations_parameters,
    azure_app_role_permissions,
    gcp_location_values,
)
from residency_sdk.infra.plan import (
    SOFT_DELETE_DAYS,
    BucketPlan,
    ExpiryRule,
    GuardrailPlan,
    InfraPlan,
    ProviderPlan,
    gcs_lifecycle_conditions,
)

Json = dict[str, Any]
DAY = 86400
AZURE_KEY_EXPIRY = "P2Y"
AZURE_KEY_ROLE_NAME = "Key Vault Crypto Service Encryption User"
PROVIDER_REQUIREMENTS: dict[str, Json] = {
    # AWS provider 6 is the first with a per-resource `region` argument.
    "aws": {"source": "hashicorp/aws", "version": ">= 6.0"},
    "gcp": {"source": "hashicorp/google", "version": ">= 6.0"},
    "azure": {"source": "hashicorp/azurerm", "version": ">= 4.0"},
}
_TF_NAME = {"aws": "aws", "gcp": "google", "azure": "azurerm"}


def render(plan: InfraPlan) -> dict[str, Json]:
    """The Terraform JSON documents of ``plan``, by file name."""
    resources: dict[str, dict[str, Json]] = {}
    data: dict[str, dict[str, Json]] = {}
    providers: dict[str, list[Json]] = {}
    variables: dict[str, Json] = {}
    backends: dict[str, Json] = {}
    for p in plan.providers:
        if p.provider == "aws":
            providers["aws"] = [{"region": p.region}]
            data.setdefault("aws_caller_identity", {})["current"] = {}
            backends["aws"] = _aws(p, resources)
            _aws_guardrail(p, plan.guardrail("aws"), resources)
        elif p.provider == "gcp":
            variables["gcp_project"] = {
                "type": "string", "description": "Google Cloud project holding the buckets",
                **({"default": p.key.project} if p.key.project else {}),
            }
            providers["google"] = [{"project": "${var.gcp_project}", "region": p.region}]
            data.setdefault("google_storage_project_service_account", {})["gcs"] = {
                "project": "${var.gcp_project}"}
            backends["gcp"] = _gcp(p, resources)
            _gcp_guardrail(plan.guardrail("gcp"), resources)
        else:
            variables["azure_subscription_id"] = {
                "type": "string", "description": "Azure subscription holding the account"}
            providers["azurerm"] = [{
                "subscription_id": "${var.azure_subscription_id}",
                "storage_use_azuread": True,
                "features": {"key_vault": {"purge_soft_delete_on_destroy": False}},
            }]
            data.setdefault("azurerm_client_config", {})["current"] = {}
            backends["azure"] = _azure(p, resources)
            _azure_guardrail(plan.guardrail("azure"), resources)
    # The `terraform` settings block sits in its own file: Checkov's terraform_json parser
    # cannot read it (3.3.30), and scanning main.tf.json alone must still see everything.
    versions: Json = {"terraform": {
        "required_version": ">= 1.6",
        "required_providers": {_TF_NAME[p.provider]: PROVIDER_REQUIREMENTS[p.provider]
                               for p in plan.providers},
    }}
    main: Json = {
        "provider": providers,
        "data": data,
        "resource": resources,
    }
    outputs = {"output": {
        "residency": {
            "description": "Where this location's data lives; `residency infra outputs` reads it",
            "value": {"location": plan.location, "country": plan.country, "map": plan.map_name,
                      "regime": plan.regime, "backends": backends},
        },
        "guardrails": {
            "description": "The clouds' own location guardrails: enforced or skipped (and why)",
            "value": plan.guardrail_summary(),
        },
    }}
    return {"main.tf.json": main, "versions.tf.json": versions,
            "variables.tf.json": {"variable": variables},
            "outputs.tf.json": outputs}


def write(plan: InfraPlan, out_dir: str | Path) -> list[Path]:
    """Write the Terraform JSON files of ``plan`` into ``out_dir`` (created if needed)."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, doc in render(plan).items():
        path = folder / name
        path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        written.append(path)
    return written


def _add(resources: dict[str, dict[str, Json]], rtype: str, name: str, body: Json) -> str:
    resources.setdefault(rtype, {})[name] = body
    return f"{rtype}.{name}"


# --- the customer-managed keys (promise MA-3: rotated every KEY_ROTATION_DAYS) ----------


def aws_kms_key(p: ProviderPlan) -> Json:
    """The location's AWS KMS key: symmetric, single-region, rotated automatically every
    ``p.key.rotation_days`` days, 30-day deletion window, the SDK's key policy."""
    return {
        "region": p.region, "description": f"residency {p.location}: data and audit buckets",
        "enable_key_rotation": True, "rotation_period_in_days": p.key.rotation_days,
        "deletion_window_in_days": 30, "multi_region": False,
        "policy": json.dumps(aws_key_policy("${data.aws_caller_identity.current.account_id}")),
        "tags": p.labels,
    }


def gcp_crypto_key(p: ProviderPlan, ring: str) -> Json:
    """The location's Cloud KMS key in key ring ``ring``: encrypt/decrypt, rotated every
    ``p.key.rotation_days`` days, never destroyed by Terraform."""
    return {
        "name": p.key.name, "key_ring": f"${{{ring}.id}}", "purpose": "ENCRYPT_DECRYPT",
        "rotation_period": f"{p.key.rotation_days * DAY}s", "labels": p.labels,
        "lifecycle": [{"prevent_destroy": True}]}


def azure_vault_key(p: ProviderPlan, vault: str) -> Json:
    """The location's Key Vault key in ``vault``: RSA-HSM 3072 for wrapping only, rotated
    every ``p.key.rotation_days`` days, expiring after AZURE_KEY_EXPIRY with notice."""
    return {
        "name": p.key.name, "key_vault_id": f"${{{vault}.id}}", "key_type": "RSA-HSM",
        "key_size": 3072, "key_opts": ["wrapKey", "unwrapKey"],
        "rotation_policy": [{
            "automatic": [{"time_after_creation": f"P{p.key.rotation_days}D"}],
            "expire_after": AZURE_KEY_EXPIRY, "notify_before_expiry": "P30D"}],
        "tags": p.labels}


# --- AWS -------------------------------------------------------------------------------


def _aws(p: ProviderPlan, res: dict[str, dict[str, Json]]) -> Json:
    region = p.region
    key = _add(res, "aws_kms_key", "key", aws_kms_key(p))
    _add(res, "aws_kms_alias", "key", {"region": region, "name": p.key.alias,
                                       "target_key_id": f"${{{key}.key_id}}"})
    for spec in (p.data, p.audit):
        _aws_bucket(p, spec, key, res)
    return {"region": region, "failover_region": p.failover_region, "country": p.country,
            "bucket": p.data.name, "audit_bucket": p.audit.name, "kms_key": p.key.alias}


def _aws_bucket(p: ProviderPlan, spec: BucketPlan, key: str,
                res: dict[str, dict[str, Json]]) -> None:
    n, region = spec.purpose, p.region
    bucket = _add(res, "aws_s3_bucket", n, {
        "region": region, "bucket": spec.name, "object_lock_enabled": spec.lock_days is not None,
        "tags": {**p.labels, "residency-purpose": spec.purpose},
    })
    ref = f"${{{bucket}.id}}"
    _add(res, "aws_s3_bucket_ownership_controls", n, {
        "region": region, "bucket": ref, "rule": [{"object_ownership": "BucketOwnerEnforced"}]})
    _add(res, "aws_s3_bucket_public_access_block", n, {
        "region": region, "bucket": ref, "block_public_acls": True, "block_public_policy": True,
        "ignore_public_acls": True, "restrict_public_buckets": True})
    versioning = _add(res, "aws_s3_bucket_versioning", n, {
        "region": region, "bucket": ref, "versioning_configuration": [{"status": "Enabled"}]})
    _add(res, "aws_s3_bucket_server_side_encryption_configuration", n, {
        "region": region, "bucket": ref, "rule": [{
            "apply_server_side_encryption_by_default": [
                {"sse_algorithm": "aws:kms", "kms_master_key_id": f"${{{key}.arn}}"}],
            "bucket_key_enabled": True}]})
    _add(res, "aws_s3_bucket_policy", n, {
        "region": region, "bucket": ref,
        "policy": json.dumps(aws_bucket_policy(f"${{{bucket}.arn}}"))})
    rules: list[Json] = [{
        "id": f"expire-{r.category}", "status": "Enabled", "filter": [_aws_filter(r)],
        "expiration": [{"days": r.days}],
        "noncurrent_version_expiration": [{"noncurrent_days": r.noncurrent_days}],
    } for r in spec.expiry]
    rules.append({
        "id": "noncurrent-versions-and-stale-uploads", "status": "Enabled",
        "filter": [{"prefix": ""}],
        "noncurrent_version_expiration": [{"noncurrent_days": spec.noncurrent_version_days}],
        "abort_incomplete_multipart_upload": [{"days_after_initiation": 1}],
    })
    _add(res, "aws_s3_bucket_lifecycle_configuration", n, {
        "region": region, "bucket": ref, "rule": rules, "depends_on": [versioning]})
    if spec.lock_days is not None:
        _add(res, "aws_s3_bucket_object_lock_configuration", n, {
            "region": region, "bucket": ref, "rule": [{"default_retention": [
                {"mode": "COMPLIANCE", "days": spec.lock_days}]}],
            "depends_on": [versioning]})


def _aws_filter(rule: ExpiryRule) -> Json:
    if rule.tag is None:
        return {"prefix": ""}
    return {"tag": [{"key": rule.tag[0], "value": rule.tag[1]}]}


def _aws_guardrail(p: ProviderPlan, g: GuardrailPlan, res: dict[str, dict[str, Json]]) -> None:
    """Region-deny SCP attached to the location's OU or account (Organizations is global:
    no `region` argument). Skipped, with the plan's note, when no target is configured."""
    if g.target is None:
        return
    policy = _add(res, "aws_organizations_policy", "region_deny", {
        "name": g.name, "type": "SERVICE_CONTROL_POLICY",
        "description": f"residency {p.location}: deny requests outside "
                       f"{', '.join(g.allowed_regions)} (global services exempt)",
        "content": aws_region_deny_scp_content(g.allowed_regions), "tags": p.labels})
    _add(res, "aws_organizations_policy_attachment", "region_deny", {
        "policy_id": f"${{{policy}.id}}", "target_id": g.target})


# --- GCP -------------------------------------------------------------------------------


def _gcp_guardrail(g: GuardrailPlan, res: dict[str, dict[str, Json]]) -> None:
    """`gcp.resourceLocations` on the location's folder, replacing (not merging with) what
    the folder would inherit, so exactly the location's regions remain."""
    if g.target is None:
        return
    _add(res, "google_org_policy_policy", "resource_locations", {
        "name": f"{g.target}/policies/{GCP_RESOURCE_LOCATIONS}", "parent": g.target,
        "spec": [{"inherit_from_parent": False, "rules": [
            {"values": [{"allowed_values": gcp_location_values(g.allowed_regions)}]}]}]})



def _gcp(p: ProviderPlan, res: dict[str, dict[str, Json]]) -> Json:
    ring = _add(res, "google_kms_key_ring", "ring", {
        "name": p.key.key_ring, "location": p.region, "project": "${var.gcp_project}"})
    key = _add(res, "google_kms_crypto_key", "key", gcp_crypto_key(p, ring))
    grant = _add(res, "google_kms_crypto_key_iam_member", "storage_agent", {
        "crypto_key_id": f"${{{key}.id}}", "role": "roles/cloudkms.cryptoKeyEncrypterDecrypter",
        "member": "serviceAccount:${data.google_storage_project_service_account.gcs"
                  ".email_address}"})
    audit = _gcp_bucket(p, p.audit, key, grant, None, res)
    _gcp_bucket(p, p.data, key, grant, audit, res)
    kms_key = (f"projects/{p.key.project}/locations/{p.region}/keyRings/{p.key.key_ring}"
               f"/cryptoKeys/{p.key.name}" if p.key.project else f"${{{key}.id}}")
    return {"region": p.region, "failover_region": p.failover_region, "country": p.country,
            "bucket": p.data.name, "audit_bucket": p.audit.name, "kms_key": kms_key}


def _gcp_bucket(p: ProviderPlan, spec: BucketPlan, key: str, grant: str, log_to: str | None,
                res: dict[str, dict[str, Json]]) -> str:
    rules: list[Json] = [{"action": [{"type": "Delete"}], "condition": [condition]}
                         for condition in gcs_lifecycle_conditions(spec)]
    body: Json = {
        "name": spec.name, "location": p.region.upper(), "project": "${var.gcp_project}",
        "storage_class": "STANDARD", "uniform_bucket_level_access": True,
        "public_access_prevention": "enforced",
        "versioning": [{"enabled": spec.versioning}],
        "encryption": [{"default_kms_key_name": f"${{{key}.id}}"}],
        "lifecycle_rule": rules,
        "labels": {**p.labels, "residency-purpose": spec.purpose},
        "depends_on": [grant],
    }
    if spec.lock_days is not None:
        body["retention_policy"] = [{"retention_period": spec.lock_days * DAY, "is_locked": True}]
    if spec.soft_delete_seconds is not None:
        body["soft_delete_policy"] = [
            {"retention_duration_seconds": spec.soft_delete_seconds}]
    if log_to is not None:
        body["logging"] = [{"log_bucket": f"${{{log_to}.name}}",
                            "log_object_prefix": f"access-logs/{spec.name}/"}]
    return _add(res, "google_storage_bucket", spec.purpose, body)


# --- Azure -----------------------------------------------------------------------------


def _azure_guardrail(g: GuardrailPlan, res: dict[str, dict[str, Json]]) -> None:
    """The built-in "Allowed locations" policy, assigned at the stack's resource group."""
    where = ", ".join(g.allowed_regions)
    _add(res, "azurerm_resource_group_policy_assignment", "allowed_locations", {
        "name": g.name, "resource_group_id": "${azurerm_resource_group.rg.id}",
        "policy_definition_id": AZURE_ALLOWED_LOCATIONS_DEFINITION,
        "display_name": f"residency: allowed locations ({where})",
        "description": f"Only {where} (the region map's regions for this location) may hold "
                       "resources of this resource group",
        "parameters": json.dumps(azure_allowed_locations_parameters(g.allowed_regions)),
        "enforce": True,
        "non_compliance_message": [{"content": f"Residency: resources of this group must be "
                                               f"in {where}"}]})


def _azure(p: ProviderPlan, res: dict[str, dict[str, Json]]) -> Json:
    region, tags = p.region, p.labels
    rg = _add(res, "azurerm_resource_group", "rg", {
        "name": p.resource_group, "location": region, "tags": tags})
    rg_name = f"${{{rg}.name}}"
    identity = _add(res, "azurerm_user_assigned_identity", "storage", {
        "name": p.identity, "resource_group_name": rg_name, "location": region, "tags": tags})
    vault = _add(res, "azurerm_key_vault", "vault", {
        "name": p.key_vault, "location": region, "resource_group_name": rg_name,
        "tenant_id": "${data.azurerm_client_config.current.tenant_id}", "sku_name": "premium",
        "enable_rbac_authorization": True, "soft_delete_retention_days": 90,
        "purge_protection_enabled": True, "public_network_access_enabled": False,
        "network_acls": [{"default_action": "Deny", "bypass": "AzureServices"}], "tags": tags})
    key = _add(res, "azurerm_key_vault_key", "cmk", azure_vault_key(p, vault))
    grant = _add(res, "azurerm_role_assignment", "key_user", {
        "scope": f"${{{vault}.id}}", "role_definition_name": AZURE_KEY_ROLE_NAME,
        "principal_id": f"${{{identity}.principal_id}}", "principal_type": "ServicePrincipal"})
    account = _add(res, "azurerm_storage_account", "account", {
        "name": p.account, "resource_group_name": rg_name, "location": region,
        "account_kind": "StorageV2", "account_tier": "Standard",
        "account_replication_type": p.redundancy, "https_traffic_only_enabled": True,
        "min_tls_version": "TLS1_2", "allow_nested_items_to_be_public": False,
        "shared_access_key_enabled": False, "cross_tenant_replication_enabled": False,
        "default_to_oauth_authentication": True, "public_network_access_enabled": False,
        "infrastructure_encryption_enabled": True,
        "network_rules": [{"default_action": "Deny", "bypass": ["AzureServices"]}],
        "identity": [{"type": "UserAssigned", "identity_ids": [f"${{{identity}.id}}"]}],
        "sas_policy": [{"expiration_period": "01.00:00:00", "expiration_action": "Block"}],
        "blob_properties": [{
            "versioning_enabled": True,
            "delete_retention_policy": [{
                "days": SOFT_DELETE_DAYS,
                "permanent_delete_enabled": p.allow_permanent_delete}],
            "container_delete_retention_policy": [{"days": SOFT_DELETE_DAYS}]}],
        "tags": tags, "depends_on": [grant]})
    account_id = f"${{{account}.id}}"
    if p.app_role:
        # Assignable within the location's resource group only (Azure's narrowest assignable
        # scope for a custom role); assign it on the account or the data container.
        perms = azure_app_role_permissions()
        _add(res, "azurerm_role_definition", "app", {
            "name": p.app_role, "scope": f"${{{rg}.id}}",
            "description": f"residency {p.location}: what the SDK's application identity "
                           "does with blobs (read, write, tag, delete versions for good)",
            "permissions": [{"actions": perms["actions"],
                             "data_actions": perms["data_actions"]}],
            "assignable_scopes": [f"${{{rg}.id}}"]})
    _add(res, "azurerm_storage_account_customer_managed_key", "cmk", {
        "storage_account_id": account_id, "key_vault_id": f"${{{vault}.id}}",
        "key_name": f"${{{key}.name}}", "user_assigned_identity_id": f"${{{identity}.id}}"})
    scope_ref = None
    if p.encryption_scope:
        scope = _add(res, "azurerm_storage_encryption_scope", "scope", {
            "name": p.encryption_scope, "storage_account_id": account_id,
            "source": "Microsoft.KeyVault", "key_vault_key_id": f"${{{key}.versionless_id}}",
            "infrastructure_encryption_required": True})
        scope_ref = f"${{{scope}.name}}"
    _add(res, "azurerm_storage_container", "data", {
        "name": p.data.name, "storage_account_id": account_id,
        "container_access_type": "private",
        **({"default_encryption_scope": scope_ref, "encryption_scope_override_enabled": False}
           if scope_ref else {})})
    audit = _add(res, "azurerm_storage_container", "audit", {
        "name": p.audit.name, "storage_account_id": account_id,
        "container_access_type": "private"})
    _add(res, "azurerm_storage_container_immutability_policy", "audit", {
        "storage_container_resource_manager_id": f"${{{audit}.id}}",
        "immutability_period_in_days": p.audit.lock_days,
        "protected_append_writes_enabled": True})
    rules: list[Json] = []
    for spec in (p.data, p.audit):
        for r in spec.expiry:
            # Index tags exist on block blobs only; the audit container holds append blobs.
            selector: Json = ({"blob_types": ["blockBlob"], "match_blob_index_tag": [
                {"name": r.tag[0], "operation": "==", "value": r.tag[1]}]} if r.tag else
                {"blob_types": ["blockBlob", "appendBlob"]})
            rules.append({
                "name": f"{spec.purpose}-expire-{r.category}".replace("_", "-"),
                "enabled": True,
                "filters": [{**selector, "prefix_match": [f"{spec.name}/"]}],
                "actions": [{
                    "base_blob": [{"delete_after_days_since_creation_greater_than": r.days}],
                    "version": [{"delete_after_days_since_creation": r.noncurrent_days}]}],
            })
    rules.append({
        "name": "data-old-versions", "enabled": True,
        "filters": [{"blob_types": ["blockBlob"], "prefix_match": [f"{p.data.name}/"]}],
        "actions": [{"version": [
            {"delete_after_days_since_creation": p.data.noncurrent_version_days}]}],
    })
    _add(res, "azurerm_storage_management_policy", "lifecycle", {
        "storage_account_id": account_id, "rule": rules})
    return {"region": region, "failover_region": p.failover_region, "country": p.country,
            "account": p.account, "bucket": p.data.name, "audit_bucket": p.audit.name,
            "kms_key": f"${{{key}.versionless_id}}", "encryption_scope": p.encryption_scope}
