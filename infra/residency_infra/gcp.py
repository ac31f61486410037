# mypy: disable-error-code="call-overload,no-any-return"
# (nested plain-dict inputs are valid Pulumi inputs; the providers' TypedDict overloads
# reject dicts whose values mix Outputs and literals)
"""GCP: a key ring and rotating key in the bucket's region, the data bucket and the
audit bucket with a locked retention policy; the Cloud Storage agent may use the key."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_gcp as gcp

from residency_sdk.infra.documents import GCP_KEY_ROLE
from residency_sdk.infra.plan import BucketPlan, ProviderPlan, gcs_lifecycle_conditions

DAY = 86400


class GcpResidencyStorage(pulumi.ComponentResource):
    """Everything the GCS adapter needs in one location, rendered from a ProviderPlan."""

    def __init__(self, name: str, plan: ProviderPlan,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("residency:gcp:Storage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        project = plan.key.project
        ring = gcp.kms.KeyRing(f"{name}-ring", name=plan.key.key_ring, location=plan.region,
                               project=project, opts=child)
        self.key = gcp.kms.CryptoKey(
            f"{name}-key", name=plan.key.name, key_ring=ring.id, purpose="ENCRYPT_DECRYPT",
            rotation_period=f"{plan.key.rotation_days * DAY}s", labels=plan.labels,
            opts=pulumi.ResourceOptions(parent=self, protect=True))
        agent = gcp.storage.get_project_service_account_output(
            project=project, opts=pulumi.InvokeOutputOptions(parent=self))
        grant = gcp.kms.CryptoKeyIAMMember(
            f"{name}-storage-agent", crypto_key_id=self.key.id, role=GCP_KEY_ROLE,
            member=agent.email_address.apply(lambda email: f"serviceAccount:{email}"),
            opts=child)
        self.audit = self._bucket(name, plan, plan.audit, grant, log_to=None)
        self.data = self._bucket(name, plan, plan.data, grant, log_to=self.audit)
        self.register_outputs({"data_bucket": self.data.name, "audit_bucket": self.audit.name,
                               "key_id": self.key.id})

    def _bucket(self, name: str, plan: ProviderPlan, spec: BucketPlan,
                grant: gcp.kms.CryptoKeyIAMMember,
                log_to: gcp.storage.Bucket | None) -> gcp.storage.Bucket:
        # Tagged categories share one custom-time rule (GCS cannot filter on tags).
        rules: list[Any] = [{"action": {"type": "Delete"}, "condition": condition}
                            for condition in gcs_lifecycle_conditions(spec)]
        retention = ({"retention_period": spec.lock_days * DAY, "is_locked": True}
                     if spec.lock_days is not None else None)
        logging = ({"log_bucket": log_to.name, "log_object_prefix": f"access-logs/{spec.name}/"}
                   if log_to is not None else None)
        # 0 turns soft delete off (data buckets); None keeps Google's default (audit).
        soft_delete = ({"retention_duration_seconds": spec.soft_delete_seconds}
                       if spec.soft_delete_seconds is not None else None)
        return gcp.storage.Bucket(
            f"{name}-{spec.purpose}", name=spec.name, location=plan.region.upper(),
            project=plan.key.project, storage_class="STANDARD",
            encryption={"default_kms_key_name": self.key.id},
            uniform_bucket_level_access=True, public_access_prevention="enforced",
            versioning={"enabled": spec.versioning}, lifecycle_rules=rules,
            retention_policy=retention, logging=logging, soft_delete_policy=soft_delete,
            labels={**plan.labels, "residency-purpose": spec.purpose},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[grant]))
