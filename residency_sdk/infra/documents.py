"""IAM-style documents shared by the Pulumi program and the Terraform export.

Pure functions of plain strings, so both renderers emit the very same key and bucket
policies (the renderers pass provider references, e.g. a Terraform interpolation or a
resolved Pulumi output, as the strings).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

MIN_TLS_VERSION = 1.2
AZURE_KEY_CRYPTO_USER_ROLE = "e147488a-f6f5-4113-8e2d-b22465e65bf6"
"""Built-in role "Key Vault Crypto Service Encryption User" (wrap/unwrap for storage)."""
GCP_KEY_ROLE = "roles/cloudkms.cryptoKeyEncrypterDecrypter"

_BLOBS = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs"
AZURE_PERMANENT_DELETE_ACTION = f"{_BLOBS}/permanentDelete/action"
"""Deleting a soft-deleted blob version or snapshot for good (``deletetype=permanent``).
Neither Storage Blob Data Contributor nor any narrower built-in role grants it."""
AZURE_APP_ACTIONS: tuple[str, ...] = (
    # Get Container Properties (``describe_bucket``, ``residency verify``).
    "Microsoft.Storage/storageAccounts/blobServices/containers/read",
)
AZURE_APP_DATA_ACTIONS: tuple[str, ...] = (
    f"{_BLOBS}/read",
    f"{_BLOBS}/write",
    f"{_BLOBS}/add/action",
    f"{_BLOBS}/delete",
    # Retention sweep and erasure remove previous versions, then what soft delete kept.
    f"{_BLOBS}/deleteBlobVersion/action",
    AZURE_PERMANENT_DELETE_ACTION,
    # The retention mark (blob index tag) written with every categorised blob.
    f"{_BLOBS}/tags/read",
    f"{_BLOBS}/tags/write",
)
"""What the Blob adapter calls, as data actions: read, write, delete, delete versions and
permanently delete soft-deleted ones, read and write index tags. Nothing else (no
``runAsSuperUser``, no immutability policy changes, no ownership or ACL changes)."""


def aws_key_policy(account_id: str, partition: str = "aws") -> dict[str, Any]:
    """KMS key policy: only the account's own IAM principals may use or administer the key
    (IAM policies grant the storage role its use); no cross-account or wildcard grant."""
    root = f"arn:{partition}:iam::{account_id}:root"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AccountAdministersKeyThroughIam",
                "Effect": "Allow",
                "Principal": {"AWS": root},
                "Action": "kms:*",
                "Resource": "*",
            },
        ],
    }


def aws_tenant_keys_policy(region: str, account_id: str,
                           partition: str = "aws") -> dict[str, Any]:
    """IAM policy for the application role of one aws location with per-tenant keys
    (``tenant_keys``, the default; docs/crypto-shredding.md): create tagged KMS keys in
    ``region`` only, manage (alias, disable, schedule deletion) only keys tagged as
    residency tenant keys and aliases under ``alias/residency/``, and use them for
    SSE-KMS only through S3 in that region. Attach it to the role beside the location
    key's grants; the stacks do not manage application roles."""
    keys = f"arn:{partition}:kms:{region}:{account_id}:key/*"
    aliases = f"arn:{partition}:kms:{region}:{account_id}:alias/residency/*"
    tagged = {"StringEquals": {"aws:ResourceTag/residency:purpose": "tenant-key"}}
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "CreateTenantKeysTaggedInRegion",
                "Effect": "Allow",
                "Action": ["kms:CreateKey", "kms:TagResource"],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"aws:RequestTag/residency:purpose": "tenant-key",
                                     "aws:RequestedRegion": region},
                    "ForAllValues:StringEquals": {"aws:TagKeys": [
                        "residency:tenant", "residency:bucket", "residency:country",
                        "residency:purpose"]},
                },
            },
            {
                "Sid": "ManageTenantKeys",
                "Effect": "Allow",
                "Action": ["kms:DescribeKey", "kms:ListResourceTags", "kms:CreateAlias",
                           "kms:DeleteAlias", "kms:DisableKey", "kms:ScheduleKeyDeletion"],
                "Resource": keys,
                "Condition": tagged,
            },
            {
                "Sid": "TenantKeyAliases",
                "Effect": "Allow",
                "Action": ["kms:CreateAlias", "kms:DeleteAlias"],
                "Resource": aliases,
            },
            {
                "Sid": "UseTenantKeysThroughS3",
                "Effect": "Allow",
                "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                "Resource": keys,
                "Condition": {"StringEquals": {
                    "aws:ResourceTag/residency:purpose": "tenant-key",
                    "kms:ViaService": f"s3.{region}.amazonaws.com"}},
            },
        ],
    }


def aws_bucket_policy(bucket_arn: str) -> dict[str, Any]:
    """Bucket policy: deny plain HTTP, TLS older than 1.2, and uploads that do not ask for
    SSE-KMS (the bucket default would encrypt them, but the adapters always ask, so a
    request without it is not ours)."""
    objects = f"{bucket_arn}/*"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, objects],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
            {
                "Sid": "DenyOldTls",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, objects],
                "Condition": {"NumericLessThan": {"s3:TlsVersion": MIN_TLS_VERSION}},
            },
            {
                "Sid": "DenyUploadsWithoutSseKms",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": objects,
                "Condition": {
                    "StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}
                },
            },
            {
                "Sid": "DenyUploadsWithoutEncryptionHeader",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": objects,
                "Condition": {"Null": {"s3:x-amz-server-side-encryption": "true"}},
            },
        ],
    }


def azure_app_role_permissions() -> dict[str, list[str]]:
    """The one permission block of the application's custom Azure role
    (:data:`AZURE_APP_ACTIONS`, :data:`AZURE_APP_DATA_ACTIONS`)."""
    return {"actions": list(AZURE_APP_ACTIONS), "data_actions": list(AZURE_APP_DATA_ACTIONS)}


# --- location guardrails -----------------------------------------------------------------

AWS_SCP_MAX_CHARS = 5120
"""AWS Organizations refuses a Service Control Policy document longer than this."""

AWS_REGION_DENY_EXEMPT_ACTIONS: tuple[str, ...] = (
    # The global-service exemptions of AWS's own region-deny SCP example:
    #   https://docs.aws.amazon.com/organizations/latest/userguide/orgs_manage_policies_scps_examples_general.html
    #   (section "Deny access to AWS based on the requested AWS Region"), as published in
    #   https://github.com/aws-samples/service-control-policy-examples
    #   Region-controls/Deny-access-to-AWS-based-on-the-requested-AWS-region.json
    # Global services answer from one endpoint (us-east-1 for most), so without these a
    # location outside us-east-1 could not use IAM, STS, Organizations, Route 53, ...
    # Deliberately NOT exempted, unlike the example: "kms:*". KMS is regional and holds key
    # material; AWS lists it only for using customer keys with CloudFront, which this
    # project does not do. Exempting it would let anyone create keys abroad.
    "a4b:*", "acm:*", "aws-marketplace-management:*", "aws-marketplace:*", "aws-portal:*",
    "budgets:*", "ce:*", "chime:*", "cloudfront:*", "config:*", "cur:*", "directconnect:*",
    "ec2:DescribeRegions", "ec2:DescribeTransitGateways", "ec2:DescribeVpnGateways",
    "fms:*", "globalaccelerator:*", "health:*", "iam:*", "importexport:*",
    "mobileanalytics:*", "networkmanager:*", "organizations:*", "pricing:*", "route53:*",
    "route53domains:*", "route53-recovery-cluster:*", "route53-recovery-control-config:*",
    "route53-recovery-readiness:*", "s3:GetAccountPublic*", "s3:ListAllMyBuckets",
    "s3:ListMultiRegionAccessPoints", "s3:PutAccountPublic*", "shield:*", "sts:*",
    "support:*", "trustedadvisor:*", "waf-regional:*", "waf:*", "wafv2:*",
    "wellarchitected:*",
)

GCP_RESOURCE_LOCATIONS = "gcp.resourceLocations"
"""The list constraint restricting where location-bearing resources may be created."""
AZURE_ALLOWED_LOCATIONS_DEFINITION = (
    "/providers/Microsoft.Authorization/policyDefinitions/e56962a6-4747-49cd-b67b-bf8b01975c4c")
"""Built-in "Allowed locations" (mode Indexed: excludes resource groups and ``global``)."""
AZURE_ALLOWED_RG_LOCATIONS_DEFINITION = (
    "/providers/Microsoft.Authorization/policyDefinitions/e765b5de-1225-4ba3-bd56-1ac6695af988")
"""Built-in "Allowed locations for resource groups": documented, not assigned by the stack
(it only acts at subscription or management-group scope; see docs/infra.md)."""


def aws_region_deny_scp(regions: Sequence[str]) -> dict[str, Any]:
    """Service Control Policy: deny every request whose ``aws:RequestedRegion`` is not one
    of ``regions``, except the global services' actions; deny creating KMS replica keys
    outside ``regions`` (``kms:ReplicateKey`` is requested in the source region) and
    creating buckets whose ``LocationConstraint`` names another region."""
    allowed = list(regions)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyAllOutsideLocationRegions",
                "Effect": "Deny",
                "NotAction": list(AWS_REGION_DENY_EXEMPT_ACTIONS),
                "Resource": "*",
                "Condition": {"StringNotEquals": {"aws:RequestedRegion": allowed}},
            },
            {
                "Sid": "DenyKmsReplicaOutsideLocationRegions",
                "Effect": "Deny",
                "Action": "kms:ReplicateKey",
                "Resource": "*",
                "Condition": {"StringNotEquals": {"kms:ReplicaRegion": allowed}},
            },
            {
                # The region a bucket is created in is its LocationConstraint, which need
                # not be the region of the endpoint the request went to; deny any named
                # constraint outside the location (none given: the endpoint's region,
                # which the first statement governs).
                "Sid": "DenyBucketsOutsideLocationRegions",
                "Effect": "Deny",
                "Action": "s3:CreateBucket",
                "Resource": "*",
                "Condition": {"StringNotEquals": {"s3:LocationConstraint": allowed},
                              "Null": {"s3:LocationConstraint": "false"}},
            },
        ],
    }


def aws_region_deny_scp_content(regions: Sequence[str]) -> str:
    """The SCP as the compact JSON string both renderers send (whitespace counts towards
    the 5,120-character limit, so none is added)."""
    text = json.dumps(aws_region_deny_scp(regions), separators=(",", ":"))
    if len(text) > AWS_SCP_MAX_CHARS:  # pragma: no cover - only with absurd region lists
        raise ValueError(f"SCP is {len(text)} characters; AWS allows {AWS_SCP_MAX_CHARS}")
    return text


def gcp_location_values(regions: Sequence[str]) -> list[str]:
    """``allowed_values`` of the ``gcp.resourceLocations`` policy: the value group
    ``in:<region>-locations`` of each region, i.e. the region and its zones, nothing else
    (a bare region would be rewritten to this group by the API anyway; a multi-region
    group such as ``in:eu-locations`` would span countries)."""
    return [f"in:{region}-locations" for region in regions]


def azure_allowed_locations_parameters(regions: Sequence[str]) -> dict[str, Any]:
    """Parameters of the "Allowed locations" assignment."""
    return {"listOfAllowedLocations": {"value": list(regions)}}
