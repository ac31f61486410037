"""AWS: a rotating KMS key, the data bucket and the Object-Lock audit bucket, in-region."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws

from residency_sdk.infra.documents import aws_bucket_policy, aws_key_policy
from residency_sdk.infra.plan import BucketPlan, ProviderPlan


class AwsResidencyStorage(pulumi.ComponentResource):
    """Everything the S3 adapter needs in one location, rendered from a ProviderPlan."""

    def __init__(self, name: str, plan: ProviderPlan,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("residency:aws:Storage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        region = plan.region
        caller = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))
        self.key = aws.kms.Key(
            f"{name}-key", region=region,
            description=f"residency {plan.location}: data and audit buckets",
            enable_key_rotation=True, rotation_period_in_days=plan.key.rotation_days,
            deletion_window_in_days=30, multi_region=False,
            policy=caller.account_id.apply(lambda acct: json.dumps(aws_key_policy(acct))),
            tags=plan.labels, opts=child)
        aws.kms.Alias(f"{name}-alias", name=plan.key.alias, target_key_id=self.key.key_id,
                      region=region, opts=child)
        self.data = self._bucket(name, plan, plan.data)
        self.audit = self._bucket(name, plan, plan.audit)
        self.register_outputs({"data_bucket": self.data.bucket,
                               "audit_bucket": self.audit.bucket, "key_arn": self.key.arn})

    def _bucket(self, name: str, plan: ProviderPlan, spec: BucketPlan) -> aws.s3.Bucket:
        rname = f"{name}-{spec.purpose}"
        region = plan.region
        child = pulumi.ResourceOptions(parent=self)
        bucket = aws.s3.Bucket(rname, bucket=spec.name, region=region,
                               object_lock_enabled=spec.lock_days is not None,
                               tags={**plan.labels, "residency-purpose": spec.purpose},
                               opts=child)
        on_bucket = pulumi.ResourceOptions(parent=bucket)
        aws.s3.BucketOwnershipControls(
            rname, bucket=bucket.id, region=region,
            rule={"object_ownership": "BucketOwnerEnforced"}, opts=on_bucket)
        aws.s3.BucketPublicAccessBlock(
            rname, bucket=bucket.id, region=region, block_public_acls=True,
            block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True,
            opts=on_bucket)
        versioning = aws.s3.BucketVersioning(
            rname, bucket=bucket.id, region=region,
            versioning_configuration={"status": "Enabled"}, opts=on_bucket)
        aws.s3.BucketServerSideEncryptionConfiguration(
            rname, bucket=bucket.id, region=region,
            rules=[{"apply_server_side_encryption_by_default": {
                "sse_algorithm": "aws:kms", "kms_master_key_id": self.key.arn},
                "bucket_key_enabled": True}], opts=on_bucket)
        aws.s3.BucketPolicy(
            rname, bucket=bucket.id, region=region,
            policy=bucket.arn.apply(lambda arn: json.dumps(aws_bucket_policy(arn))),
            opts=on_bucket)
        rules: list[Any] = [{
            "id": f"expire-{r.category}", "status": "Enabled",
            # Selects the tag the S3 adapter writes on objects of this category.
            "filter": ({"tag": {"key": r.tag[0], "value": r.tag[1]}} if r.tag
                       else {"prefix": ""}),
            "expiration": {"days": r.days},
            "noncurrent_version_expiration": {"noncurrent_days": r.noncurrent_days},
        } for r in spec.expiry]
        rules.append({
            "id": "noncurrent-versions-and-stale-uploads", "status": "Enabled",
            "filter": {"prefix": ""},
            "noncurrent_version_expiration": {"noncurrent_days": spec.noncurrent_version_days},
            "abort_incomplete_multipart_upload": {"days_after_initiation": 1},
        })
        aws.s3.BucketLifecycleConfiguration(
            rname, bucket=bucket.id, region=region, rules=rules,
            opts=pulumi.ResourceOptions(parent=bucket, depends_on=[versioning]))
        if spec.lock_days is not None:
            aws.s3.BucketObjectLockConfiguration(
                rname, bucket=bucket.id, region=region, object_lock_enabled="Enabled",
                rule={"default_retention": {"mode": "COMPLIANCE", "days": spec.lock_days}},
                opts=pulumi.ResourceOptions(parent=bucket, depends_on=[versioning]))
        return bucket
