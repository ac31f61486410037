# mypy: disable-error-code="call-overload,no-any-return"
# (nested plain-dict inputs are valid Pulumi inputs; the providers' TypedDict overloads
# reject dicts whose values mix Outputs and literals)
"""Azure: resource group, Key Vault with a rotating customer-managed key, a storage account
(ZRS/LRS only) encrypted with it, the data container and the immutable audit container."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_azure_native as az

from residency_sdk.infra.documents import AZURE_KEY_CRYPTO_USER_ROLE, azure_app_role_permissions
from residency_sdk.infra.plan import SOFT_DELETE_DAYS, ProviderPlan

_KEY_EXPIRY = "P2Y"  # each key version expires; rotation makes a new one long before


class AzureResidencyStorage(pulumi.ComponentResource):
    """Everything the Blob adapter needs in one location, rendered from a ProviderPlan."""

    def __init__(self, name: str, plan: ProviderPlan,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("residency:azure:Storage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        region = plan.region
        tags = plan.labels
        client = az.authorization.get_client_config_output(
            opts=pulumi.InvokeOutputOptions(parent=self))
        self.rg = rg = az.resources.ResourceGroup(
            f"{name}-rg", resource_group_name=plan.resource_group, location=region, tags=tags,
            opts=child)
        identity = az.managedidentity.UserAssignedIdentity(
            f"{name}-identity", resource_name_=plan.identity, resource_group_name=rg.name,
            location=region, tags=tags, opts=child)
        self.vault = az.keyvault.Vault(
            f"{name}-vault", vault_name=plan.key_vault, resource_group_name=rg.name,
            location=region, tags=tags,
            properties={
                "tenant_id": client.tenant_id,
                "sku": {"family": "A", "name": "premium"},
                "enable_rbac_authorization": True,
                "enable_soft_delete": True,
                "soft_delete_retention_in_days": 90,
                "enable_purge_protection": True,
                "public_network_access": "Disabled",
                "network_acls": {"default_action": "Deny", "bypass": "AzureServices"},
            }, opts=child)
        self.key = az.keyvault.Key(
            f"{name}-key", key_name=plan.key.name, vault_name=self.vault.name,
            resource_group_name=rg.name, tags=tags,
            properties={
                "kty": "RSA-HSM", "key_size": 3072, "key_ops": ["wrapKey", "unwrapKey"],
                "rotation_policy": {
                    "attributes": {"expiry_time": _KEY_EXPIRY},
                    "lifetime_actions": [
                        {"trigger": {"time_after_create": f"P{plan.key.rotation_days}D"},
                         "action": {"type": "rotate"}},
                        {"trigger": {"time_before_expiry": "P30D"},
                         "action": {"type": "notify"}},
                    ],
                },
            }, opts=child)
        grant = az.authorization.RoleAssignment(
            f"{name}-key-user", principal_id=identity.principal_id,
            principal_type="ServicePrincipal", scope=self.vault.id,
            role_definition_id=client.subscription_id.apply(
                lambda sub: f"/subscriptions/{sub}/providers/Microsoft.Authorization/"
                            f"roleDefinitions/{AZURE_KEY_CRYPTO_USER_ROLE}"),
            opts=child)
        self.account = az.storage.StorageAccount(
            f"{name}-account", account_name=plan.account, resource_group_name=rg.name,
            location=region, kind="StorageV2", sku={"name": f"Standard_{plan.redundancy}"},
            enable_https_traffic_only=True, minimum_tls_version="TLS1_2",
            allow_blob_public_access=False, allow_shared_key_access=False,
            allow_cross_tenant_replication=False, default_to_o_auth_authentication=True,
            public_network_access="Disabled",
            network_rule_set={"default_action": "Deny", "bypass": "AzureServices"},
            identity={"type": az.storage.IdentityType.USER_ASSIGNED,
                      "user_assigned_identities": [identity.id]},
            immutable_storage_with_versioning={"enabled": True},
            encryption={
                "key_source": "Microsoft.Keyvault",
                "require_infrastructure_encryption": True,
                "key_vault_properties": {"key_name": self.key.name,
                                         "key_vault_uri": self.vault.properties.vault_uri},
                "encryption_identity": {"encryption_user_assigned_identity": identity.id},
                "services": {"blob": {"enabled": True, "key_type": "Account"},
                             "file": {"enabled": True, "key_type": "Account"}},
            },
            tags=tags, opts=pulumi.ResourceOptions(parent=self, depends_on=[grant]))
        on_account = pulumi.ResourceOptions(parent=self.account)
        az.storage.BlobServiceProperties(
            f"{name}-blob-service", account_name=self.account.name,
            resource_group_name=rg.name, blob_services_name="default",
            is_versioning_enabled=True,
            delete_retention_policy={"enabled": True, "days": SOFT_DELETE_DAYS,
                                     "allow_permanent_delete": plan.allow_permanent_delete},
            container_delete_retention_policy={"enabled": True, "days": SOFT_DELETE_DAYS},
            opts=on_account)
        self.app_role: az.authorization.RoleDefinition | None = None
        if plan.app_role:
            # Assignable within the location's resource group only (Azure's narrowest
            # assignable scope); assign it to the SDK's identity on the account.
            perms = azure_app_role_permissions()
            self.app_role = az.authorization.RoleDefinition(
                f"{name}-app-role", role_name=plan.app_role, scope=rg.id,
                description=f"residency {plan.location}: what the SDK's application identity "
                            "does with blobs (read, write, tag, delete versions for good)",
                permissions=[{"actions": perms["actions"],
                              "data_actions": perms["data_actions"]}],
                assignable_scopes=[rg.id], opts=child)
        scope_name = plan.encryption_scope
        if scope_name:
            az.storage.EncryptionScope(
                f"{name}-scope", encryption_scope_name=scope_name,
                account_name=self.account.name, resource_group_name=rg.name,
                source="Microsoft.KeyVault", require_infrastructure_encryption=True,
                key_vault_properties={"key_uri": self.key.key_uri}, state="Enabled",
                opts=on_account)
        self.data = az.storage.BlobContainer(
            f"{name}-data", container_name=plan.data.name, account_name=self.account.name,
            resource_group_name=rg.name, public_access=az.storage.PublicAccess.NONE,
            default_encryption_scope=scope_name, deny_encryption_scope_override=bool(scope_name),
            opts=on_account)
        self.audit = az.storage.BlobContainer(
            f"{name}-audit", container_name=plan.audit.name, account_name=self.account.name,
            resource_group_name=rg.name, public_access=az.storage.PublicAccess.NONE,
            immutable_storage_with_versioning={"enabled": True}, opts=on_account)
        az.storage.BlobContainerImmutabilityPolicy(
            f"{name}-audit-lock", account_name=self.account.name, resource_group_name=rg.name,
            container_name=self.audit.name, immutability_policy_name="default",
            immutability_period_since_creation_in_days=plan.audit.lock_days,
            allow_protected_append_writes=True, opts=on_account)
        rules: list[Any] = []
        for bucket in (plan.data, plan.audit):
            for r in bucket.expiry:
                # Index tags exist on block blobs only; the audit container holds append blobs.
                selector: dict[str, Any] = (
                    {"blob_types": ["blockBlob"], "blob_index_match": [
                        {"name": r.tag[0], "op": "==", "value": r.tag[1]}]} if r.tag else
                    {"blob_types": ["blockBlob", "appendBlob"]})
                rules.append({
                    "name": f"{bucket.purpose}-expire-{r.category}".replace("_", "-"),
                    "type": "Lifecycle", "enabled": True,
                    "definition": {
                        "filters": {**selector, "prefix_match": [f"{bucket.name}/"]},
                        "actions": {
                            "base_blob": {"delete": {"days_after_creation_greater_than": r.days}},
                            "version": {"delete": {
                                "days_after_creation_greater_than": r.noncurrent_days}},
                        },
                    },
                })
        rules.append({
            "name": "data-old-versions", "type": "Lifecycle", "enabled": True,
            "definition": {
                "filters": {"blob_types": ["blockBlob"], "prefix_match": [f"{plan.data.name}/"]},
                "actions": {"version": {"delete": {
                    "days_after_creation_greater_than": plan.data.noncurrent_version_days}}},
            },
        })
        az.storage.ManagementPolicy(
            f"{name}-lifecycle", account_name=self.account.name, resource_group_name=rg.name,
            management_policy_name="default", policy={"rules": rules}, opts=on_account)
        self.register_outputs({"account": self.account.name, "data_container": self.data.name,
                               "audit_container": self.audit.name, "key_id": self.key.key_uri})
