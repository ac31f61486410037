"""IAM-style documents shared by the Pulumi program and the Terraform export.

Pure functions of plain strings, so both renderers emit the very same key and bucket
policies (the renderers pass provider references, e.g. a Terraform interpolation or a
resolved Pulumi output, as the strings).
"""

from __future__ import annotations

from typing import Any

MIN_TLS_VERSION = 1.2
AZURE_KEY_CRYPTO_USER_ROLE = "e147488a-f6f5-4113-8e2d-b22465e65bf6"
"""Built-in role "Key Vault Crypto Service Encryption User" (wrap/unwrap for storage)."""
GCP_KEY_ROLE = "roles/cloudkms.cryptoKeyEncrypterDecrypter"


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
