"""Per-tenant KMS keys for the S3 adapter (crypto-shredding).

Each tenant gets, per bucket (one backend in one region), a symmetric KMS key of its own,
made in the bucket's region on the tenant's first write and found again through its
alias ``alias/residency/<bucket>/<tenant>`` (the tenant id escaped to what alias names
allow). Its objects are written with SSE-KMS under that key. Erasure destroys it last:
``DisableKey`` (unusable at once), ``ScheduleKeyDeletion`` with the shortest waiting
period AWS allows (7 days), ``DeleteAlias``. From then on S3 cannot decrypt any copy
encrypted under it: noncurrent versions, a copy made with the same key, a restored
backup that kept it. Copies re-encrypted under another key (AWS Backup vaults, CopyObject
or replication to a bucket with its own key) are not covered: docs/crypto-shredding.md.

Why a key per tenant rather than data keys under the location key with the tenant as
encryption context: SSE-KMS already wraps every object's data key under the KMS key it
names; an encryption context alone cannot be revoked, so destroying the tenant would
mean destroying the location key. A key per tenant is what ``ScheduleKeyDeletion`` can
aim at.

Race-safe creation: two writers that both find no alias each create a key; the alias is
the arbiter (``CreateAlias`` fails with ``AlreadyExistsException`` for the loser, which
schedules its own key, never used, for deletion and uses the winner's).

IAM permissions the application's role needs (besides the location key's):
``kms:CreateKey``, ``kms:TagResource`` (tags on create), ``kms:CreateAlias``,
``kms:DescribeKey``, ``kms:ListResourceTags``, ``kms:DisableKey``,
``kms:ScheduleKeyDeletion``, ``kms:DeleteAlias``, plus ``kms:GenerateDataKey`` and
``kms:Decrypt`` on the tenant keys for SSE-KMS itself; see
:func:`residency_sdk.infra.documents.aws_tenant_keys_policy`.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import botocore.exceptions

from residency_sdk.errors import (
    AccessDenied,
    EncryptionError,
    ResidencyError,
    StorageError,
)
from residency_sdk.storage.base import KeyDestruction
from residency_sdk.storage.retry import RetryPolicy

T = TypeVar("T")

ALIAS_PREFIX = "alias/residency/"
DELETION_WINDOW_DAYS = 7
"""The shortest waiting period KMS allows before it deletes a key (7 to 30 days)."""
TAG_TENANT = "residency:tenant"
TAG_BUCKET = "residency:bucket"
TAG_COUNTRY = "residency:country"
TAG_PURPOSE = "residency:purpose"
PURPOSE = "tenant-key"

_ALIAS_SAFE = re.compile(r"[A-Za-z0-9-]")
_TAG_SAFE = re.compile(r"^[A-Za-z0-9 _.:/=+@-]{1,256}$")
_MAX_ALIAS = 256
_NOT_FOUND = frozenset({"NotFoundException"})
_DENIED = frozenset({"AccessDeniedException", "AccessDenied", "UnrecognizedClientException",
                     "InvalidSignatureException", "ExpiredTokenException"})


def alias_name(bucket: str, tenant_id: str) -> str:
    """``alias/residency/<bucket>/<tenant>``: one alias per tenant per bucket.

    Alias names allow ``A-Za-z0-9/_-``: bucket dots become ``_`` (a bucket name has no
    ``_``); in the tenant id every other character than ``A-Za-z0-9-`` is written as
    ``_`` plus two hex digits per UTF-8 byte, so two ids never share an alias. An id
    too long for the 256-character limit is named by its SHA-256 (``_h`` + hex: no
    escaped id starts that way)."""
    escaped = "".join(
        ch if _ALIAS_SAFE.fullmatch(ch) else
        "".join(f"_{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))
        for ch in tenant_id)
    base = f"{ALIAS_PREFIX}{bucket.replace('.', '_')}/"
    if not escaped or len(base) + len(escaped) > _MAX_ALIAS:
        escaped = "_h" + hashlib.sha256(tenant_id.encode("utf-8", "surrogatepass")).hexdigest()
    return base + escaped


def tenant_tag(tenant_id: str) -> str:
    """The ``residency:tenant`` tag value: the id, or ``sha256:<hex>`` for an id a KMS
    tag value cannot hold."""
    if _TAG_SAFE.fullmatch(tenant_id):
        return tenant_id
    return "sha256:" + hashlib.sha256(tenant_id.encode("utf-8", "surrogatepass")).hexdigest()


def _code(exc: BaseException) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


_EXPECTED = object()
"""What a KMS call returns when KMS answers with an error code the caller expects."""


class TenantKmsKeys:
    """The per-tenant KMS keys of one S3 bucket (see the module docstring)."""

    def __init__(self, client: Callable[[], Any], *, bucket: str, region: str, country: str,
                 name: str, policy: RetryPolicy,
                 transient: Callable[[BaseException], bool]) -> None:
        self._new_client = client
        self._client: Any = None
        self.bucket = bucket
        self.region = region
        self.country = country
        self.name = name
        self.policy = policy
        self._transient = transient
        self._arns: dict[str, str] = {}
        self._lock = threading.Lock()

    # --- plumbing --------------------------------------------------------------------

    def _kms(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._new_client()
            return self._client

    def close(self) -> None:
        """Release the KMS client."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _call(self, operation: str, tenant_id: str, fn: Callable[[], T],
              expect: frozenset[str] = frozenset()) -> T | None:
        """Run one KMS request (retried when transient); None when KMS answers with one
        of the error codes in ``expect``; anything else raises, translated."""
        def run() -> T | object:
            try:
                return fn()
            except botocore.exceptions.ClientError as exc:
                if _code(exc) in expect:
                    return _EXPECTED
                raise

        answer = self.policy.call(run, backend=self.name, operation=f"kms {operation}",
                                  transient=self._transient,
                                  translate=lambda exc: self._translate(exc, operation,
                                                                        tenant_id))
        return None if answer is _EXPECTED else answer  # type: ignore[return-value]

    def _translate(self, exc: BaseException, operation: str, tenant_id: str) -> ResidencyError:
        code = _code(exc)
        what = f"{self.name}: KMS {operation} for tenant {tenant_id!r}"
        if code in _DENIED or isinstance(exc, botocore.exceptions.NoCredentialsError):
            return AccessDenied(
                f"{what} was refused ({code or type(exc).__name__}): per-tenant keys need "
                f"kms:{operation} (and kms:CreateKey, CreateAlias, TagResource, DescribeKey, "
                "ListResourceTags, DisableKey, ScheduleKeyDeletion, DeleteAlias) on "
                f"{ALIAS_PREFIX}* keys in {self.region}; grant them "
                "(docs/crypto-shredding.md) or set `tenant_keys: false` on this aws backend "
                "in the region map")
        if isinstance(exc, botocore.exceptions.ClientError):
            message = exc.response.get("Error", {}).get("Message", "")
            return EncryptionError(f"{what} failed: {code}: {message}")
        return StorageError(f"{what} failed: {type(exc).__name__}: {exc}")

    def _describe(self, alias: str, tenant_id: str) -> dict[str, Any] | None:
        answer = self._call("DescribeKey", tenant_id,
                            lambda: self._kms().describe_key(KeyId=alias), expect=_NOT_FOUND)
        return None if answer is None else dict(answer["KeyMetadata"])

    # --- the tenant's key ----------------------------------------------------------------

    def forget(self, tenant_id: str) -> None:
        """Drop the cached key of ``tenant_id`` (it was destroyed, maybe elsewhere)."""
        with self._lock:
            self._arns.pop(tenant_id, None)

    def key_id(self, tenant_id: str) -> str | None:
        """The ARN of ``tenant_id``'s key for this bucket, or None when it has no alias
        (never made, or destroyed)."""
        meta = self._describe(alias_name(self.bucket, tenant_id), tenant_id)
        return None if meta is None else str(meta["Arn"])

    def key_for(self, tenant_id: str) -> str:
        """The ARN of the key to write ``tenant_id``'s objects with, made on first use."""
        with self._lock:
            cached = self._arns.get(tenant_id)
        if cached is not None:
            return cached
        alias = alias_name(self.bucket, tenant_id)
        meta = self._describe(alias, tenant_id) or self._create(tenant_id, alias)
        arn = str(meta["Arn"])
        state = meta.get("KeyState")
        if state != "Enabled":
            raise EncryptionError(
                f"{self.name}: the KMS key {arn} of tenant {tenant_id!r} (alias {alias}) is "
                f"{state}: an erasure of the tenant destroyed it, or is destroying it. "
                "Nothing was written. Finish the erasure (`residency erasure run ID`), which "
                "removes the alias; the tenant's next write then gets a new key")
        with self._lock:
            self._arns[tenant_id] = arn
        return arn

    def _create(self, tenant_id: str, alias: str) -> dict[str, Any]:
        kms = self._kms()
        tags = [{"TagKey": TAG_TENANT, "TagValue": tenant_tag(tenant_id)},
                {"TagKey": TAG_BUCKET, "TagValue": self.bucket},
                {"TagKey": TAG_COUNTRY, "TagValue": self.country},
                {"TagKey": TAG_PURPOSE, "TagValue": PURPOSE}]
        created = self._call("CreateKey", tenant_id, lambda: kms.create_key(
            Description=f"residency-sdk: objects of one tenant in s3://{self.bucket}; "
                        "destroyed when the tenant is erased",
            KeyUsage="ENCRYPT_DECRYPT", KeySpec="SYMMETRIC_DEFAULT", Tags=tags))
        assert created is not None
        meta = dict(created["KeyMetadata"])
        won = self._call("CreateAlias", tenant_id, lambda: kms.create_alias(
            AliasName=alias, TargetKeyId=meta["KeyId"]),
            expect=frozenset({"AlreadyExistsException"}))
        if won is not None:
            return meta
        # Another writer made the tenant's key first: ours never encrypted anything.
        self._retire(str(meta["KeyId"]), tenant_id)
        winner = self._describe(alias, tenant_id)
        if winner is None:
            raise EncryptionError(
                f"{self.name}: the KMS alias {alias} of tenant {tenant_id!r} vanished while "
                "its key was being made (the tenant's key was destroyed meanwhile); nothing "
                "was written - write again")
        return winner

    def _retire(self, key_id: str, tenant_id: str) -> None:
        # Best effort: a leftover enabled key holds no data, it only costs its fee.
        with contextlib.suppress(ResidencyError):
            self._call("ScheduleKeyDeletion", tenant_id,
                       lambda: self._kms().schedule_key_deletion(
                           KeyId=key_id, PendingWindowInDays=DELETION_WINDOW_DAYS))

    def destroy(self, tenant_id: str) -> KeyDestruction:
        """Disable ``tenant_id``'s key, schedule its deletion (7 days), delete its
        alias. Idempotent and restartable: a key already pending deletion keeps its
        date; no alias means ``absent``."""
        self.forget(tenant_id)
        alias = alias_name(self.bucket, tenant_id)
        meta = self._describe(alias, tenant_id)
        if meta is None:
            return KeyDestruction(
                tenant_id=tenant_id, status="absent",
                detail=f"no KMS alias {alias} in {self.region}: this backend made no key "
                       "for the tenant, or an earlier erasure destroyed it (alias deleted, "
                       "key deletion scheduled)")
        key_id, arn = str(meta["KeyId"]), str(meta["Arn"])
        self._check_owner(tenant_id, alias, key_id, arn)
        kms = self._kms()
        deletion = meta.get("DeletionDate")
        if meta.get("KeyState") != "PendingDeletion":
            if meta.get("KeyState") == "Enabled":
                # Unusable at once (and when the deletion below cannot be scheduled).
                self._call("DisableKey", tenant_id, lambda: kms.disable_key(KeyId=key_id))
            scheduled = self._call("ScheduleKeyDeletion", tenant_id,
                                   lambda: kms.schedule_key_deletion(
                                       KeyId=key_id, PendingWindowInDays=DELETION_WINDOW_DAYS),
                                   expect=frozenset({"KMSInvalidStateException"}))
            if scheduled is None:  # scheduled meanwhile by a concurrent run
                deletion = (self._describe(key_id, tenant_id) or {}).get("DeletionDate")
            else:
                deletion = scheduled.get("DeletionDate")
        self._call("DeleteAlias", tenant_id, lambda: kms.delete_alias(AliasName=alias),
                   expect=_NOT_FOUND)
        when = _aware(deletion) if isinstance(deletion, datetime) else None
        return KeyDestruction(
            tenant_id=tenant_id, status="scheduled", key_id=arn, effective_at=when,
            detail=f"KMS key {arn} disabled and scheduled for deletion "
                   f"{when.isoformat() if when else '(date not reported)'} (the "
                   f"{DELETION_WINDOW_DAYS}-day minimum waiting period); alias {alias} "
                   "deleted: no copy encrypted under it can be decrypted")

    def _check_owner(self, tenant_id: str, alias: str, key_id: str, arn: str) -> None:
        """Refuse to destroy a key the alias points at that this SDK did not make for
        this tenant and bucket (a hand-made alias must not destroy someone's key)."""
        answer = self._call("ListResourceTags", tenant_id,
                            lambda: self._kms().list_resource_tags(KeyId=key_id))
        tags = {t["TagKey"]: t["TagValue"] for t in (answer or {}).get("Tags", [])}
        if tags.get(TAG_TENANT) != tenant_tag(tenant_id) or tags.get(TAG_BUCKET) != self.bucket:
            raise EncryptionError(
                f"{self.name}: alias {alias} points to KMS key {arn}, whose tags "
                f"({TAG_TENANT}={tags.get(TAG_TENANT)!r}, {TAG_BUCKET}="
                f"{tags.get(TAG_BUCKET)!r}) do not name tenant {tenant_id!r} and bucket "
                f"{self.bucket!r}: residency-sdk did not make it, so nothing was destroyed. "
                "Point the alias at the tenant's key or delete it, then run the erasure again")


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
