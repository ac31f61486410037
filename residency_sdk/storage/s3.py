"""Amazon S3 adapter (boto3 + s3transfer).

- Every write asks for SSE-KMS with the location's key (``ServerSideEncryption="aws:kms"``,
  ``SSEKMSKeyId=target.kms_key``); a target without ``kms_key`` is refused (fail closed)
  and what S3 reports back is checked. Objects under ``tenants/<id>/`` use the tenant's
  own KMS key instead (made in the bucket's region on its first write; destroyed by
  erasure: crypto-shredding, :mod:`residency_sdk.storage._tenant_kms`), unless the map
  sets ``tenant_keys: false``; the location key is required all the same.
- CRC32C (hardware-accelerated through awscrt, which botocore also needs for it) is
  computed while streaming, per part too, since a multipart object's checksum is the
  CRC32C of its parts' CRC32Cs, and compared with what S3 reports; on a mismatch
  the object is deleted and :class:`IntegrityError` raised. s3transfer aborts a failed
  multipart upload, so no half-written object stays behind.
- Large objects go multipart through one long-lived s3transfer ``TransferManager`` whose
  memory is bounded (``max_concurrency`` chunks of ``chunk_size`` in memory, plus the
  first ``multipart_threshold`` bytes s3transfer reads to choose multipart).
  The largest object is ``chunk_size`` x 10,000 parts (80 GiB at the 8 MiB default).
- botocore's own retries are off (``total_max_attempts=1``); :mod:`residency_sdk.storage.retry`
  is the only retry layer. Seekable sources are rewound for a retry; a non-seekable stream
  gets one attempt, since its bytes cannot be read twice.
- Endpoint: ``target.endpoint``, else the region's standard S3 endpoint; plain ``http://``
  only to loopback. Endpoints configured outside the map (``AWS_ENDPOINT_URL_S3``,
  ``AWS_ENDPOINT_URL``, ``endpoint_url`` in the AWS config profile or its ``services``
  section) are never used (``ignore_configured_endpoint_urls``), and one that differs from
  the map's makes the adapter refuse to open (:class:`EnvironmentOverride`), so the
  operator learns that it would have redirected every location.
- Credentials: ``target.credentials`` (``aws_profile``: a named profile;
  ``aws_role_arn``: a role assumed through STS, refreshed before it expires), else boto3's
  usual chain.
- Verify on open: before the first data operation on a bucket in this process, S3's
  GetBucketLocation must name a region in ``target.country`` (one request per bucket and
  endpoint per process; the answer is cached). Otherwise every read and write raises
  :class:`ResidencyViolation`.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlencode, urlsplit

import boto3
import botocore.credentials
import botocore.exceptions
import botocore.session
from awscrt.checksums import combine_crc32c, crc32c
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from s3transfer.manager import TransferManager

from residency_sdk._endpoints import check_endpoint_url, is_loopback_host, normal_url, shown_url
from residency_sdk.errors import (
    AccessDenied,
    BackendNotConfigured,
    BucketNotFound,
    EncryptionError,
    EnvironmentOverride,
    IntegrityError,
    KeyDestroyed,
    NoSuchBackend,
    ObjectNotFound,
    ReadInterrupted,
    ResidencyError,
    ResidencyViolation,
    StorageError,
)
from residency_sdk.lifecycle import tags_for
from residency_sdk.model import StorageTarget
from residency_sdk.regions import country_of, region_table
from residency_sdk.storage._conditional import expected_write, refused
from residency_sdk.storage._once import AskedOnce
from residency_sdk.storage._streaming import (
    Digester,
    HashingReader,
    NullHasher,
    VerifyingReader,
    as_binary_stream,
    start_position,
)
from residency_sdk.storage._tenant_kms import TenantKmsKeys
from residency_sdk.storage.base import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MULTIPART_THRESHOLD,
    BucketFacts,
    KeyDestruction,
    ObjectInfo,
    ObjectStore,
    ProgressCallback,
    Residue,
)
from residency_sdk.storage.keys import tenant_of_key
from residency_sdk.storage.retry import (
    DEFAULT_POLICY,
    RetryPolicy,
    fetch_whole,
    is_transient_status,
)

T = TypeVar("T")

POOL_CONNECTIONS = 32
"""Connections kept per S3 client by default: botocore's 10 is fewer than the threads of a
batch call (``put_many``/``get_many``) plus a transfer's own, and every thread beyond the
pool pays a new connection per request."""

_PART_SIZE_META = "residency-part-size"
_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})
# A conditional delete that found another write (412), or lost to a concurrent one (409).
_CHANGED = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})
_THROTTLING = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout",
                         "InternalError", "ServiceUnavailable", "RequestLimitExceeded"})
_INTEGRITY = frozenset({"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch",
                        "InvalidChecksum"})
# What S3 answers when the object's KMS key is disabled, pending deletion or deleted.
_KEY_GONE = frozenset({"KMS.DisabledException", "KMS.KMSInvalidStateException",
                       "KMS.NotFoundException", "DisabledException",
                       "KMSInvalidStateException"})
_DENIED = frozenset({"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                     "ExpiredToken", "InvalidToken"})
# Credential chains that found nothing usable: the request never left, nothing to retry.
_UNUSABLE_CREDENTIALS = (botocore.exceptions.PartialCredentialsError,
                         botocore.exceptions.CredentialRetrievalError,
                         botocore.exceptions.TokenRetrievalError)


def is_transient(exc: BaseException) -> bool:
    """True when a botocore failure is throttling, a 5xx, a timeout or a connection reset."""
    if isinstance(exc, (botocore.exceptions.ConnectionError,
                        botocore.exceptions.HTTPClientError)):
        return True
    if isinstance(exc, botocore.exceptions.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return code in _THROTTLING or is_transient_status(status)
    return isinstance(exc, (TimeoutError, ConnectionError))


class S3Store(ObjectStore):
    """One S3 bucket in one region, for one residency location."""

    page_size: int = 1000
    """Keys per ListObjectsV2 request (S3's maximum is 1000)."""

    def __init__(self, target: StorageTarget, *, policy: RetryPolicy = DEFAULT_POLICY,
                 chunk_size: int = DEFAULT_CHUNK_SIZE,
                 multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
                 max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
                 connect_timeout: float = 5.0, read_timeout: float = 60.0,
                 max_pool_connections: int = POOL_CONNECTIONS,
                 verify_on_open: bool = True) -> None:
        """``max_pool_connections`` bounds the connections kept open to the endpoint;
        it must cover every thread using the store at once (batch calls, transfers
        in parallel), or urllib3 throws connections away and opens new ones.
        ``verify_on_open=False`` skips the bucket-region check before the first data
        operation: only for tests that put a fault-injecting server in front of a bucket
        already checked; the factory never passes it."""
        if target.provider != "aws":
            raise NoSuchBackend(f"S3Store needs an aws target, got {target.provider!r}")
        self.target = target
        self.policy = policy
        self.chunk_size = chunk_size
        self.multipart_threshold = multipart_threshold
        self.endpoint = check_endpoint_url(target.endpoint) if target.endpoint else None
        # No SHA-256 of every body for the signature: over HTTPS (every AWS endpoint)
        # botocore already sends UNSIGNED-PAYLOAD; this makes the loopback emulators' plain
        # http do the same. The body stays covered by the CRC32C checksum S3 verifies
        # (and TLS where it matters), and the hash cost 0.4 ms of CPU per 512 KiB object.
        s3_options: dict[str, Any] = {"use_accelerate_endpoint": False,  # edge locations
                                      "payload_signing_enabled": False}
        if self.endpoint:
            s3_options["addressing_style"] = "path"
        config = Config(
            region_name=target.region,
            retries={"total_max_attempts": 1, "mode": "standard"},  # retry.py is the one layer
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=max(max_pool_connections, max_concurrency * 2),
            s3=s3_options,
            # Only the map names endpoints: AWS_ENDPOINT_URL(_S3) and config-file
            # endpoint_url are never used (and refused below when they differ).
            ignore_configured_endpoint_urls=True,
        )
        self._session, core = _session(target, self.name)
        self._client: Any = self._session.client("s3", region_name=target.region,
                                                 endpoint_url=self.endpoint, config=config)
        self.endpoint_url: str = str(self._client.meta.endpoint_url)
        """The endpoint the client really talks to (the map's, or the regional default)."""
        _refuse_configured_endpoints(core, self.endpoint_url, self.name,
                                     mapped=self.endpoint is not None)
        self._verify_on_open = verify_on_open
        self._verified = False
        self._transfer_config = TransferConfig(
            multipart_threshold=multipart_threshold, multipart_chunksize=chunk_size,
            max_concurrency=max_concurrency, use_threads=True,
            num_download_attempts=1,  # no hidden retries under ours
            max_io_queue=max_concurrency * 2,
        )
        # s3transfer keeps this many upload chunks in memory at most: bounded RSS.
        self._transfer_config.max_in_memory_upload_chunks = max_concurrency
        self._manager: TransferManager | None = None
        self._resolved_keys: dict[str, str] = {}
        self._tenant_keys: TenantKmsKeys | None = None
        if target.tenant_keys:
            self._tenant_keys = TenantKmsKeys(
                self._new_kms_client, bucket=target.bucket, region=target.region,
                country=target.country, name=self.name, policy=policy,
                transient=is_transient)

    def __repr__(self) -> str:
        return (f"S3Store(bucket={self.target.bucket!r}, region={self.target.region!r}, "
                f"endpoint={shown_url(getattr(self, 'endpoint_url', None) or '') or None!r})")

    @property
    def name(self) -> str:
        """``s3://bucket (region)``, used in messages."""
        return f"s3://{self.target.bucket} ({self.target.region})"

    @property
    def client(self) -> Any:
        """The underlying boto3 S3 client (for event hooks in tests and benchmarks)."""
        return self._client

    # --- writes ----------------------------------------------------------------------

    def put(self, key: str, data: bytes | BinaryIO, *, metadata: dict[str, str] | None = None,
            progress: ProgressCallback | None = None) -> ObjectInfo:
        """Upload with SSE-KMS and CRC32C, multipart above ``multipart_threshold``.

        An object under ``tenants/<id>/`` is encrypted with the tenant's own KMS key
        (made on its first write, see :mod:`residency_sdk.storage._tenant_kms`) unless
        the map sets ``tenant_keys: false``; every other object with the location's."""
        kms_key = self._kms_key()  # required whatever the object: fail closed
        tenant = tenant_of_key(key) if self._tenant_keys is not None else None
        if tenant is None or self._tenant_keys is None:
            return self._put(key, data, metadata, progress, kms_key)
        if not self._verified:
            self._verify()  # where the bucket is, before a key is made for it
        tenant_key = self._tenant_keys.key_for(tenant)
        try:
            return self._put(key, data, metadata, progress, tenant_key)
        except EncryptionError:
            # KMS may have refused a key this process cached and another one destroyed
            # (an erasure elsewhere): look it up again on the next write.
            self._tenant_keys.forget(tenant)
            raise

    def _put(self, key: str, data: bytes | BinaryIO, metadata: dict[str, str] | None,
             progress: ProgressCallback | None, kms_key: str) -> ObjectInfo:
        meta = {**(metadata or {}), _PART_SIZE_META: str(self.chunk_size)}
        extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key,
                 "ChecksumAlgorithm": "CRC32C", "Metadata": meta}
        tags = tags_for(metadata)
        if tags:
            # The lifecycle rule of the object's retention category selects this tag.
            extra["Tagging"] = urlencode(tags)
        if isinstance(data, (bytes, bytearray, memoryview)) and len(data) < \
                self.multipart_threshold:
            return self._put_small(key, bytes(data), extra, progress)
        # A multipart object gets a full-object CRC32C (S3 combines the parts'), not a
        # checksum of checksums: every client that reads it whole (botocore included)
        # can then check the bytes it got, and a read here needs no second pass.
        extra = {**extra, "ChecksumType": "FULL_OBJECT"}
        stream = as_binary_stream(data)
        start = start_position(stream)
        policy = self.policy if start is not None else replace(self.policy, max_attempts=1)
        readers: list[HashingReader] = []

        def attempt() -> None:
            if start is not None:
                stream.seek(start)
            reader = HashingReader(stream, Crc32c(), progress=progress,
                                   part_size=self.chunk_size, part_hasher=Crc32c)
            readers.append(reader)
            try:
                self._transfer().upload(reader, self.target.bucket, key,
                                        extra_args=extra).result()
            except BaseException:
                reader.close()  # stop its hashing thread
                raise

        self._call("put", key, attempt, policy)
        reader = readers[-1]
        parts = reader.finish_parts()
        info = self.head(key)
        self._check_written(key, info, reader.digest(), parts, kms_key)
        return info

    def _put_small(self, key: str, data: bytes, extra: dict[str, Any],
                   progress: ProgressCallback | None) -> ObjectInfo:
        # Our CRC32C goes in the request, so botocore does not hash the body a second
        # time; S3 checks it against the bytes it received (BadDigest otherwise).
        full = Crc32c(data).digest()
        sent = base64.b64encode(full).decode()
        response = self._call("put", key, lambda: self._client.put_object(
            Bucket=self.target.bucket, Key=key, Body=data, ChecksumCRC32C=sent, **extra))
        if progress is not None:
            progress(len(data))
        info = ObjectInfo(
            key=key, size=len(data), checksum=_checksum(response.get("ChecksumCRC32C")),
            encryption=response.get("ServerSideEncryption"),
            kms_key=response.get("SSEKMSKeyId"),
            metadata={k: v for k, v in extra["Metadata"].items() if k != _PART_SIZE_META},
            etag=str(response.get("ETag", "")).strip('"') or None,
        )
        self._check_written(key, info, full, [], extra["SSEKMSKeyId"])
        return info

    def _check_written(self, key: str, info: ObjectInfo, full: bytes, parts: list[bytes],
                       kms_key: str) -> None:
        reported = (info.checksum or "").removeprefix("crc32c:")
        if not _matches(reported, full, parts):
            self._discard(key)
            raise IntegrityError(
                f"{self.name}: checksum mismatch for {key!r}: computed crc32c "
                f"{base64.b64encode(full).decode()}, S3 reports {info.checksum or 'none'}; "
                "the object was deleted - upload again")
        if info.encryption != "aws:kms" or not self._same_kms_key(kms_key, info.kms_key):
            self._discard(key)
            raise EncryptionError(
                f"{self.name}: {key!r} was stored with encryption {info.encryption!r} key "
                f"{info.kms_key!r}, not aws:kms with {kms_key!r}; the object was deleted - "
                "check the bucket's KMS configuration")

    def _discard(self, key: str) -> None:
        # The caller is already getting the more important error.
        with contextlib.suppress(ResidencyError):
            self._call("delete", key, lambda: self._client.delete_object(
                Bucket=self.target.bucket, Key=key))

    def delete(self, key: str, *, if_match: ObjectInfo | None = None) -> bool:
        """Delete ``key``; True if it existed.

        With ``if_match`` the request carries ``If-Match: <ETag>`` and S3 deletes only
        that write of the current object (412, or 409 when a write raced the delete
        itself, raise :class:`ObjectChanged`; nothing deleted). Never a ``VersionId``:
        deleting the examined version by id on a versioned bucket would make an older
        version current again. Needs ``s3:GetObject`` besides ``s3:DeleteObject``."""
        if if_match is not None:
            return self._delete_if_match(key, expected_write(key, if_match, self.name))
        existed = self.exists(key)
        self._call("delete", key, lambda: self._client.delete_object(
            Bucket=self.target.bucket, Key=key))
        return existed

    def _delete_if_match(self, key: str, etag: str) -> bool:
        # HTTP wants the entity tag quoted; head() reports it without the quotes.
        try:
            self._call("delete", key, lambda: self._client.delete_object(
                Bucket=self.target.bucket, Key=key, IfMatch=f'"{etag}"'))
        except ObjectNotFound:
            return False  # S3 answers a conditional delete of a missing key with 404
        except StorageError as exc:
            if _error_code(exc) in _CHANGED:
                return refused(self, key, etag)
            raise
        return True

    # --- reads -----------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        """The whole object, its CRC32C verified against what S3 reports.

        One GetObject read whole into one buffer, then hashed once (per part for a
        multipart object, whose whole-object CRC32C is combined from the parts'): no
        chunk copies, no join. A body that breaks off is read again from the start."""
        return fetch_whole(lambda: self._fetch(key).read_verified(), self.policy,
                           backend=self.name, key=key)

    def open(self, key: str) -> BinaryIO:
        """A streaming reader; the checksum is verified when the end is reached. A stream
        that breaks off mid-way raises :class:`ReadInterrupted` (read it again)."""
        fetched = self._fetch(key)
        body = fetched.body

        def verify(tracker: Digester) -> None:
            fetched.check(tracker.hasher.digest(), tracker.part_digests)

        def chunks() -> Iterator[bytes]:
            with fetched.reading():
                yield from body.iter_chunks(chunk_size=1024 * 1024)

        ours = fetched.ours
        return VerifyingReader(  # type: ignore[return-value]
            chunks(), Crc32c() if ours else NullHasher(), verify, on_close=body.close,
            part_size=fetched.part_size if ours else None,
            part_hasher=Crc32c if ours else None)

    def _fetch(self, key: str) -> _Fetched:
        """GetObject with checksum mode on: the body, unread, and how to verify it."""
        response = self._call("get", key, lambda: self._client.get_object(
            Bucket=self.target.bucket, Key=key, ChecksumMode="ENABLED"))
        return _Fetched(self, key, response)

    def head(self, key: str) -> ObjectInfo:
        """Size, CRC32C, SSE fields and metadata as S3 reports them."""
        r = self._call("head", key, lambda: self._client.head_object(
            Bucket=self.target.bucket, Key=key, ChecksumMode="ENABLED"))
        return ObjectInfo(
            key=key, size=int(r.get("ContentLength", 0)),
            checksum=_checksum(r.get("ChecksumCRC32C")),
            encryption=r.get("ServerSideEncryption"), kms_key=r.get("SSEKMSKeyId"),
            metadata={k: v for k, v in r.get("Metadata", {}).items() if k != _PART_SIZE_META},
            last_modified=r.get("LastModified"),
            etag=str(r.get("ETag", "")).strip('"') or None,
            # Versioned buckets only; an unversioned bucket reports none (or "null").
            version=None if r.get("VersionId") in (None, "", "null") else str(r["VersionId"]),
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under ``prefix``, ``page_size`` keys per request."""
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.target.bucket, "Prefix": prefix,
                                      "MaxKeys": self.page_size}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._list_page(kwargs)
            for item in page.get("Contents", []):
                yield ObjectInfo(key=item["Key"], size=int(item.get("Size", 0)),
                                 last_modified=item.get("LastModified"),
                                 etag=str(item.get("ETag", "")).strip('"') or None)
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def describe_bucket(self) -> BucketFacts:
        """What S3 reports about the bucket: region, default encryption, public access
        block."""
        bucket = self.target.bucket

        def ask(fn: Callable[[], Any], missing: frozenset[str]) -> Any:
            return self._call_unless("describe", bucket, fn, missing)

        if ask(lambda: self._client.head_bucket(Bucket=bucket),
               frozenset({"404", "NoSuchBucket", "NotFound"})) is None:
            return BucketFacts(exists=False)
        location = ask(lambda: self._client.get_bucket_location(Bucket=bucket), frozenset())
        # S3 reports us-east-1 as an empty constraint and the legacy "EU" for eu-west-1.
        region = {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(
            location.get("LocationConstraint"), location.get("LocationConstraint"))
        enc = ask(lambda: self._client.get_bucket_encryption(Bucket=bucket),
                  frozenset({"ServerSideEncryptionConfigurationNotFoundError"}))
        algorithm = key = None
        for rule in (enc or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules", []):
            default = rule.get("ApplyServerSideEncryptionByDefault", {})
            if default.get("SSEAlgorithm") in ("aws:kms", "aws:kms:dsse"):
                algorithm, key = default["SSEAlgorithm"], default.get("KMSMasterKeyID")
        pab = ask(lambda: self._client.get_public_access_block(Bucket=bucket),
                  frozenset({"NoSuchPublicAccessBlockConfiguration"}))
        conf = (pab or {}).get("PublicAccessBlockConfiguration", {})
        blocked = all(conf.get(flag) for flag in (
            "BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"))
        matches = None
        if key and self.target.kms_key:
            matches = self._same_kms_key(self.target.kms_key, key) or \
                _same_arn_tail(self.target.kms_key, key)
        return BucketFacts(exists=True, region=region, encryption=algorithm, kms_key=key,
                           public_access_blocked=blocked, kms_key_matches=matches)

    # --- capabilities: object lock, versions, incomplete uploads ---------------------

    def hold_reason(self, info: ObjectInfo, now: datetime) -> str | None:
        """The S3 object lock keeping ``info.key``: a legal hold, or a GOVERNANCE/COMPLIANCE
        retention date after ``now`` (naive datetimes are UTC); None when unlocked.

        A lock state that cannot be read (refused, unreachable) is reported as a hold:
        deleting an object S3 may be protecting is the worse mistake. A missing object
        raises :class:`ObjectNotFound`. S3 leaves the lock fields out of HeadObject for a
        caller without ``s3:GetObjectRetention``/``s3:GetObjectLegalHold``, which reads as
        unlocked: grant both to whoever runs sweeps and erasures.
        """
        try:
            head = self._call("head", info.key, lambda: self._client.head_object(
                Bucket=self.target.bucket, Key=info.key))
        except ObjectNotFound:
            raise
        except StorageError as exc:
            return (f"object lock state unreadable ({_error_code(exc) or type(exc).__name__}); "
                    "kept to be safe")
        if head.get("ObjectLockLegalHoldStatus") == "ON":
            return "S3 object lock legal hold is ON"
        mode = head.get("ObjectLockMode")
        until = head.get("ObjectLockRetainUntilDate")
        if mode and isinstance(until, datetime) and _aware(until) > _aware(now):
            return f"S3 object lock {mode} retention until {_aware(until).isoformat()}"
        return None

    def purge_residue(self, prefix: str, *, keep: frozenset[str] = frozenset()) -> Residue:
        """Delete every noncurrent version and delete marker under ``prefix`` and abort
        every incomplete multipart upload there; current versions (what :meth:`list`
        shows) and keys in ``keep`` are left alone.

        A version S3 refuses to delete (an object lock) stays and is reported in
        ``Residue.held``; a version or upload already gone is skipped. Other failures
        raise (translated), having removed what came before them.
        """
        # Listed whole before deleting: continuing a listing from a marker whose version
        # was just deleted is not something every S3 implementation gets right.
        residue = self._delete_versions(list(self._residue_versions(prefix, keep)))
        aborted = 0
        # A crashed upload's parts are stored, billed and readable by the bucket owner
        # until aborted, though no listing shows them.
        for key, upload_id in list(self._incomplete_uploads(prefix)):
            if key in keep:
                continue
            if self._call_unless(
                    "abort-upload", key,
                    partial(self._client.abort_multipart_upload, Bucket=self.target.bucket,
                            Key=key, UploadId=upload_id),
                    frozenset({"NoSuchUpload"})) is not None:
                aborted += 1
        return replace(residue, uploads_aborted=aborted)

    def purge_versions(self, key: str) -> Residue:
        """Delete every noncurrent version and every delete marker of exactly ``key``
        (``ListObjectVersions`` with the key as prefix, entries of other keys ignored);
        the current version, when there is one (``key`` written again meanwhile), stays.

        Versions go first and delete markers last, so a failure part way leaves the key
        hidden as the sweep left it. A version S3 refuses to delete (object lock: a legal
        hold or a retention date) is reported in ``Residue.held``; once the markers are
        gone it is the key's current object again, which every later sweep reports held
        until the lock ends, then deletes with its versions. Needs
        ``s3:ListBucketVersions`` and ``s3:DeleteObjectVersion``.
        """
        found = [(version, marker) for k, version, marker, latest in self._versions(key)
                 if k == key and (marker or not latest)]
        # Versions before markers (a stable sort): see the docstring.
        found.sort(key=lambda entry: entry[1])
        return self._delete_versions([(key, version) for version, _ in found])

    def _delete_versions(self, entries: builtins.list[tuple[str, str]]) -> Residue:
        """Delete each ``(key, version_id)``; a refusal (object lock) is held, a version
        already gone skipped, anything else raises."""
        held: dict[str, str] = {}
        deleted = 0
        for key, version in entries:
            try:
                gone = self._call_unless(
                    "delete", key, partial(self._client.delete_object, Bucket=self.target.bucket,
                                           Key=key, VersionId=version),
                    frozenset({"NoSuchVersion", "NoSuchKey"}))
            except AccessDenied as exc:
                # Object lock refuses with AccessDenied; the version is data we must keep.
                reason = (f"S3 refused deleting version {version}: "
                          f"{_error_code(exc) or type(exc).__name__}")
                held[key] = f"{held[key]}; {reason}" if key in held else reason
                continue
            if gone is not None:
                deleted += 1
        return Residue(versions_deleted=deleted, held=held)

    def residue_left(self, prefix: str, *,
                     keep: frozenset[str] = frozenset()) -> builtins.list[str]:
        """Noncurrent versions and delete markers still under ``prefix`` (keys in ``keep``
        excepted), as ``key?versionId=...``; empty after a complete
        :meth:`purge_residue`."""
        return [f"{key}?versionId={version}"
                for key, version in self._residue_versions(prefix, keep)]

    def _residue_versions(self, prefix: str,
                          keep: frozenset[str]) -> Iterator[tuple[str, str]]:
        """``(key, version_id)`` of every noncurrent version and delete marker under
        ``prefix``. Unversioned buckets report only current "null" versions: nothing."""
        for key, version, marker, latest in self._versions(prefix):
            if key not in keep and (marker or not latest):
                yield key, version

    def _versions(self, prefix: str) -> Iterator[tuple[str, str, bool, bool]]:
        """``(key, version_id, is_delete_marker, is_latest)`` of every version and delete
        marker under ``prefix``, page by page. A noncurrent version written before
        versioning was enabled has the id "null" and is data like any other."""
        key_marker: str | None = None
        version_marker: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.target.bucket, "Prefix": prefix,
                                      "MaxKeys": self.page_size}
            if key_marker is not None:
                kwargs["KeyMarker"] = key_marker
                if version_marker:
                    kwargs["VersionIdMarker"] = version_marker
            page: dict[str, Any] = self._call(
                "list-versions", prefix, partial(self._client.list_object_versions, **kwargs))
            entries = [(v, False) for v in page.get("Versions", [])] + \
                [(m, True) for m in page.get("DeleteMarkers", [])]
            for entry, marker in entries:
                key, version = entry.get("Key"), entry.get("VersionId")
                if key is None or version is None:
                    continue
                yield str(key), str(version), marker, bool(entry.get("IsLatest"))
            key_marker = page.get("NextKeyMarker")
            version_marker = page.get("NextVersionIdMarker")
            if not page.get("IsTruncated") or not key_marker:
                return

    def _incomplete_uploads(self, prefix: str) -> Iterator[tuple[str, str]]:
        """``(key, upload_id)`` of every multipart upload under ``prefix`` not yet
        completed or aborted."""
        key_marker: str | None = None
        upload_marker: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.target.bucket, "Prefix": prefix,
                                      "MaxUploads": self.page_size}
            if key_marker is not None:
                kwargs["KeyMarker"] = key_marker
                if upload_marker:
                    kwargs["UploadIdMarker"] = upload_marker
            page: dict[str, Any] = self._call(
                "list-uploads", prefix, partial(self._client.list_multipart_uploads, **kwargs))
            for upload in page.get("Uploads", []):
                yield str(upload["Key"]), str(upload["UploadId"])
            key_marker = page.get("NextKeyMarker")
            upload_marker = page.get("NextUploadIdMarker")
            if not page.get("IsTruncated") or not key_marker:
                return

    def _list_page(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        page: dict[str, Any] = self._call(
            "list", kwargs["Prefix"], lambda: self._client.list_objects_v2(**kwargs))
        return page

    def close(self) -> None:
        """Shut the transfer threads down and release the connection pool."""
        if self._manager is not None:
            self._manager.shutdown()
            self._manager = None
        self._client.close()
        if self._tenant_keys is not None:
            self._tenant_keys.close()

    # --- per-tenant keys (crypto-shredding) -----------------------------------------

    def tenant_key_id(self, tenant_id: str) -> str | None:
        """The ARN of ``tenant_id``'s KMS key for this bucket (found by its alias
        ``alias/residency/<bucket>/<tenant>``), or None when it has none or per-tenant
        keys are off (``tenant_keys: false``)."""
        if self._tenant_keys is None:
            return None
        return self._tenant_keys.key_id(tenant_id)

    def destroy_tenant_key(self, tenant_id: str) -> KeyDestruction:
        """Crypto-shred ``tenant_id`` on this bucket: ``DisableKey`` (unusable at once),
        ``ScheduleKeyDeletion`` after 7 days (the shortest KMS allows; ``effective_at``
        is the deletion date, status ``scheduled``), ``DeleteAlias``. ``absent`` when the
        tenant has no key here (never made, or destroyed before); restartable after a
        crash between the steps. ``unsupported`` when per-tenant keys are off."""
        if self._tenant_keys is None:
            return KeyDestruction(
                tenant_id=tenant_id, status="unsupported",
                detail=f"{self.name}: per-tenant keys are off for this backend "
                       "(tenant_keys: false in the region map): its objects are under the "
                       "location key, so backups and copies the provider keeps are not made "
                       "unreadable by erasure")
        return self._tenant_keys.destroy(tenant_id)

    # --- internals -------------------------------------------------------------------

    def _new_kms_client(self) -> Any:
        """A KMS client in the bucket's region, with this store's credentials. An
        emulator serves KMS on its S3 endpoint; a real S3 endpoint does not, so KMS is
        then asked at the region's own KMS endpoint (never one configured outside the
        map)."""
        kms_endpoint = self.endpoint if self.endpoint and is_loopback_host(
            urlsplit(self.endpoint).hostname or "") else None
        return self._session.client(
            "kms", region_name=self.target.region, endpoint_url=kms_endpoint,
            config=Config(retries={"total_max_attempts": 1, "mode": "standard"},
                          ignore_configured_endpoint_urls=True))

    def _same_kms_key(self, wanted: str, reported: str | None) -> bool:
        """True when S3's reported key (always an ARN) is the key the map names.

        A map may name an alias or a bare key id; aliases are resolved once through KMS
        DescribeKey (needs ``kms:DescribeKey``), since S3 reports the target key's ARN.
        """
        if reported is None:
            return False
        if reported == wanted or reported.endswith("/" + wanted):
            return True
        if "alias/" not in wanted:
            return False
        if wanted not in self._resolved_keys:
            kms = self._new_kms_client()
            try:
                meta = self._call("describe-key", wanted,
                                  lambda: kms.describe_key(KeyId=wanted)["KeyMetadata"])
            finally:
                kms.close()
            self._resolved_keys[wanted] = str(meta.get("Arn", ""))
        return reported == self._resolved_keys[wanted]

    def _kms_key(self) -> str:
        if not self.target.kms_key:
            raise EncryptionError(
                f"{self.name}: no kms_key configured for this aws backend; set `kms_key` "
                "(a KMS key ARN or alias) in the region map - objects are never written "
                "without the location's customer-managed key")
        return self.target.kms_key

    def _transfer(self) -> TransferManager:
        if self._manager is None:
            self._manager = TransferManager(self._client, self._transfer_config)
        return self._manager

    def _call(self, operation: str, key: str, fn: Callable[[], T],
              policy: RetryPolicy | None = None) -> T:
        if not self._verified and operation not in _UNVERIFIED_OPERATIONS:
            self._verify()
        return (policy or self.policy).call(
            fn, backend=self.name, operation=operation, transient=is_transient,
            translate=lambda exc: self._translate(exc, operation, key))

    # --- verify on open --------------------------------------------------------------

    def _verify(self) -> None:
        """Check, once per bucket and endpoint per process, that S3 reports the bucket in
        the location's country; raise :class:`ResidencyViolation` (every time) if not."""
        if not self._verify_on_open:
            self._verified = True
            return
        bucket = self.target.bucket
        reported = _BUCKET_REGIONS.get(
            (normal_url(self.endpoint_url), bucket),
            lambda: self._call("verify", bucket, self._bucket_region))
        _judge_region(self.target, reported, name=self.name, bucket=bucket,
                      source="GetBucketLocation")
        self._verified = True

    def _bucket_region(self) -> str:
        bucket = self.target.bucket
        try:
            answer = self._client.get_bucket_location(Bucket=bucket)
        except botocore.exceptions.ClientError as exc:
            # Real S3 answers a request signed for the wrong region with the bucket's own
            # region (PermanentRedirect / AuthorizationHeaderMalformed): that is the answer.
            region = _region_in_error(exc)
            if region:
                return region
            raise
        constraint = answer.get("LocationConstraint")
        # S3 reports us-east-1 as an empty constraint and the legacy "EU" for eu-west-1.
        return {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(
            constraint, str(constraint))

    def _call_unless(self, operation: str, key: str, fn: Callable[[], T],
                     codes: frozenset[str]) -> T | None:
        """:meth:`_call`, but None when S3 answers with one of the error ``codes`` (an
        answer the caller expects, such as "no encryption configured")."""
        try:
            return self._call(operation, key, fn)
        except StorageError as exc:
            if _error_code(exc) in codes:
                return None
            raise

    def _translate_verify(self, exc: botocore.exceptions.ClientError,
                          code: str) -> ResidencyError:
        bucket = self.target.bucket
        if code in _NOT_FOUND or code == "NoSuchBucket":
            return BucketNotFound(
                f"{self.name}: bucket {bucket!r} does not exist; provision it with the infra "
                "stack for this location")
        if code in _DENIED:
            return AccessDenied(
                f"{self.name}: S3 refused GetBucketLocation on {bucket!r} ({code}): the adapter "
                "checks where the bucket is before its first read or write; grant "
                "s3:GetBucketLocation on the bucket to these credentials")
        return StorageError(
            f"{self.name}: checking the region of bucket {bucket!r} failed ({code}: "
            f"{exc.response.get('Error', {}).get('Message', '')}); nothing was read or written")

    def _translate(self, exc: BaseException, operation: str, key: str) -> ResidencyError:
        if isinstance(exc, botocore.exceptions.ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if operation == "verify":
                return self._translate_verify(exc, code)
            if code in _NOT_FOUND:
                return ObjectNotFound(key, self.name)
            if code == "NoSuchBucket":
                return BucketNotFound(
                    f"{self.name}: bucket {self.target.bucket!r} does not exist; provision it "
                    "with the infra stack for this location")
            if code in _INTEGRITY:
                return IntegrityError(f"{self.name}: S3 rejected {key!r} as corrupted "
                                      f"({code}); nothing was stored - upload again")
            tenant = tenant_of_key(key) if self._tenant_keys is not None else None
            if tenant is not None and code in _KEY_GONE and operation != "get":
                return EncryptionError(
                    f"{self.name}: {operation} of {key!r}: KMS refused the key of tenant "
                    f"{tenant!r} ({code}): an erasure of the tenant disabled or destroyed it "
                    "meanwhile; nothing was written. Write again: the next write looks the "
                    "tenant's key up again")
            if tenant is not None and code in _KEY_GONE:
                return KeyDestroyed(
                    f"{self.name}: {operation} of {key!r}: KMS refused the key of tenant "
                    f"{tenant!r} ({code}): it was disabled or destroyed when the tenant was "
                    "erased (crypto-shredding), so this copy is unreadable by design; delete "
                    "it")
            if code.startswith("KMS") or "KMS" in str(exc):
                return EncryptionError(f"{self.name}: KMS refused {operation} of {key!r} "
                                       f"({code}); check key {self.target.kms_key!r} and its "
                                       "key policy")
            if code in _DENIED:
                return AccessDenied(f"{self.name}: access denied for {operation} {key!r} "
                                    f"({code}); check the credentials and bucket policy")
            return StorageError(f"{self.name}: {operation} {key!r} failed: {code}: "
                                f"{exc.response.get('Error', {}).get('Message', '')}")
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return AccessDenied(f"{self.name}: no AWS credentials found; configure the usual "
                                "chain (AWS_PROFILE, environment, instance role)")
        if isinstance(exc, _UNUSABLE_CREDENTIALS):
            return AccessDenied(f"{self.name}: the AWS credentials cannot be used "
                                f"({type(exc).__name__}); fix the credential chain "
                                "(AWS_PROFILE, environment, instance role)")
        if isinstance(exc, botocore.exceptions.FlexibleChecksumError):
            return IntegrityError(f"{self.name}: checksum mismatch on {key!r}: {exc}")
        return StorageError(f"{self.name}: {operation} {key!r} failed: "
                            f"{type(exc).__name__}: {exc}")


# --- credentials and endpoints per location -------------------------------------------


class _LocationCredentials(botocore.credentials.CredentialProvider):  # type: ignore[misc]
    """First in a session's credential chain: the location's own (assumed-role)
    credentials, so nothing process-wide (environment, default profile) can replace them."""

    METHOD = "residency-location"
    CANONICAL_NAME = "residency-location"

    def __init__(self, credentials: botocore.credentials.Credentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> botocore.credentials.Credentials:
        return self._credentials


def _session(target: StorageTarget, name: str) -> tuple[boto3.session.Session,
                                                        botocore.session.Session]:
    """The boto3 session of ``target``'s credential source (and its botocore session, whose
    config files the endpoint check reads)."""
    creds = target.credentials
    core = _core_session(creds.aws_profile, name)
    base = boto3.session.Session(botocore_session=core)
    if not creds.aws_role_arn:
        return base, core
    role_arn = creds.aws_role_arn
    # STS is asked in the location's region (or on the loopback emulator the map names),
    # never at an endpoint configured outside the map.
    sts_endpoint = target.endpoint if target.endpoint and is_loopback_host(
        urlsplit(target.endpoint).hostname or "") else None

    def sts_client(service_name: str, **kwargs: Any) -> Any:
        return base.client(service_name, region_name=target.region, endpoint_url=sts_endpoint,
                           config=Config(retries={"total_max_attempts": 1, "mode": "standard"},
                                         ignore_configured_endpoint_urls=True), **kwargs)

    def refresh() -> dict[str, Any]:
        source = base.get_credentials()
        if source is None:
            raise botocore.exceptions.NoCredentialsError()
        fetcher = botocore.credentials.AssumeRoleCredentialFetcher(
            sts_client, source, role_arn, extra_args={"RoleSessionName": "residency-sdk"})
        fetched: dict[str, Any] = fetcher.fetch_credentials()
        return fetched

    # Assumed on first use and again shortly before the credentials expire.
    assumed = botocore.credentials.DeferredRefreshableCredentials(
        refresh_using=refresh, method="assume-role")
    core_assumed = _core_session(creds.aws_profile, name)
    core_assumed.get_component("credential_provider").insert_before(
        "env", _LocationCredentials(assumed))
    return boto3.session.Session(botocore_session=core_assumed), core_assumed


def _core_session(profile: str | None, name: str) -> botocore.session.Session:
    try:
        core = botocore.session.Session(profile=profile)
        core.get_scoped_config()  # an unknown profile fails here, not at the first request
    except botocore.exceptions.ProfileNotFound:
        where = (f"credentials.aws_profile {profile!r} in the region map" if profile else
                 f"AWS_PROFILE={os.environ.get('AWS_PROFILE')!r}")
        raise BackendNotConfigured(
            f"{name}: the AWS profile named by {where} is not in the AWS config files: add "
            "the profile, or fix the name") from None
    return core


_ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


def _configured_endpoints(core: botocore.session.Session, name: str) -> list[tuple[str, str]]:
    """``(where, url)`` of every S3 endpoint configured outside the region map that boto3
    would otherwise honour: the environment and the AWS config profile."""
    found = [(var, os.environ[var]) for var in _ENDPOINT_VARIABLES if os.environ.get(var)]
    profile = core.profile or "default"
    try:
        scoped = core.get_scoped_config()
        services = scoped.get("services")
        section = core.full_config.get("services", {}).get(services, {}) if services else {}
    except botocore.exceptions.BotoCoreError as exc:
        raise BackendNotConfigured(f"{name}: the AWS config of profile {profile!r} cannot be "
                                   f"read ({type(exc).__name__}); fix the AWS config file"
                                   ) from None
    url = (section.get("s3") or {}).get("endpoint_url") if isinstance(section, dict) else None
    if url:
        found.append((f"endpoint_url of s3 in services section {services!r} (AWS profile "
                      f"{profile!r})", str(url)))
    if scoped.get("endpoint_url"):
        found.append((f"endpoint_url in AWS profile {profile!r}", str(scoped["endpoint_url"])))
    return found


def _refuse_configured_endpoints(core: botocore.session.Session, used: str, name: str, *,
                                 mapped: bool) -> None:
    """Raise :class:`EnvironmentOverride` when an endpoint configured outside the region
    map differs from the one the client uses (the map's, or the regional default)."""
    for where, url in _configured_endpoints(core, name):
        if normal_url(url) == normal_url(used):
            continue
        ours = "the region map's endpoint for this backend" if mapped else \
            "the regional default the region map implies (it names no endpoint)"
        raise EnvironmentOverride(
            f"{name}: {where} is set to {shown_url(url)}, but {ours} is {shown_url(used)}. boto3 "
            "applies it to every S3 client in the process, so every location's objects would "
            "go there while the audit log reports the map's region. Refusing to open: unset "
            "it (or remove it from the AWS config); if this location really uses that "
            "endpoint, name it in the region map (`endpoint:` on this aws backend)")




# --- verify on open ---------------------------------------------------------------------

# Operations that run before (or instead of) the bucket-region check: the check itself,
# describe_bucket (``residency verify`` reports a misplaced bucket instead of refusing it)
# and the KMS alias lookup.
_UNVERIFIED_OPERATIONS = frozenset({"verify", "describe", "describe-key"})




_BUCKET_REGIONS: AskedOnce[str] = AskedOnce()


def _judge_region(target: StorageTarget, reported: str, *, name: str, bucket: str,
                  source: str) -> None:
    """Raise :class:`ResidencyViolation` unless ``reported`` lies in ``target.country``."""
    if reported.lower() == target.region.lower():
        return  # the map's own region, whose country the map compiler checked
    country = country_of(region_table(), target.provider, reported)
    if country == target.country:
        return
    where = f"in {country}" if country else "in a country the region table does not know"
    raise ResidencyViolation(
        f"{name}: {source} reports bucket {bucket!r} in region {reported!r} ({where}), but "
        f"the region map keeps this location's data in {target.country} ({target.region}). "
        "Every read and write of this bucket is refused: point the map at a bucket in "
        f"{target.region}, or move the data and recreate the bucket there (`residency "
        "verify` runs the full check)")


def _region_in_error(exc: botocore.exceptions.ClientError) -> str | None:
    """The bucket's region S3 states in a redirect / wrong-region answer, if any."""
    meta = exc.response.get("ResponseMetadata", {})
    if meta.get("HTTPStatusCode") not in (301, 307, 400):
        return None
    region = exc.response.get("Error", {}).get("Region") or \
        (meta.get("HTTPHeaders") or {}).get("x-amz-bucket-region")
    return str(region) if region else None


def _error_code(exc: BaseException) -> str | None:
    """The S3 error code behind a translated error (``AccessDenied``, ``404``...), or None
    when S3 gave no answer (unreachable, no credentials)."""
    cause = exc.__cause__
    if isinstance(cause, botocore.exceptions.ClientError):
        return str(cause.response.get("Error", {}).get("Code", "")) or None
    return None


def _aware(value: datetime) -> datetime:
    """S3 dates are UTC; a naive one (some SDKs and emulators) is read as such."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _checksum(value: str | None) -> str | None:
    return f"crc32c:{value}" if value else None


def _same_arn_tail(wanted: str, reported: str) -> bool:
    """A bucket default may name the key by id, alias or ARN: compare the last segment."""
    return wanted.rsplit("/", 1)[-1] == reported.rsplit("/", 1)[-1]


class _Fetched:
    """One GetObject answer: its body, unread, and the check of what is read from it.

    botocore itself validates a full-object checksum (``ChecksumMode=ENABLED``) and raises
    FlexibleChecksumError; it skips composite (multipart) ones, which are verified here
    (``ours``). Hashing only when botocore does not avoids paying for the checksum twice.
    """

    def __init__(self, store: S3Store, key: str, response: dict[str, Any]) -> None:
        self.store, self.key = store, key
        self.body = response["Body"]
        self.reported = str(response.get("ChecksumCRC32C") or "")
        self.part_size = int(response.get("Metadata", {}).get(_PART_SIZE_META, 0) or 0) or None
        self.ours = bool(self.reported) and (response.get("ChecksumType") == "COMPOSITE"
                                             or "-" in self.reported)

    def check(self, full: bytes, parts: list[bytes]) -> None:
        """Raise :class:`IntegrityError` unless the bytes hashed match what S3 reports."""
        if self.ours and not _matches(self.reported, full, parts):
            raise IntegrityError(
                f"{self.store.name}: checksum mismatch reading {self.key!r}: S3 reports crc32c "
                f"{self.reported}, the bytes received hash differently; do not use this "
                "data, read it again")

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Translate what reading the body raises: a checksum botocore found wrong is an
        :class:`IntegrityError`, a body cut short a :class:`ReadInterrupted`."""
        name, key = self.store.name, self.key
        try:
            yield
        except botocore.exceptions.FlexibleChecksumError as exc:
            raise IntegrityError(f"{name}: checksum mismatch reading {key!r}: {exc}; do not "
                                 "use this data, read it again") from None
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            # A body cut short (IncompleteReadError) is a broken stream, not bad data.
            if is_transient(exc) or isinstance(exc, botocore.exceptions.IncompleteReadError):
                raise ReadInterrupted(
                    f"{name}: reading {key!r} broke off mid-stream ({type(exc).__name__}); "
                    "discard what was read and read it again") from None
            raise self.store._translate(exc, "get", key) from None

    def read_verified(self) -> bytes:
        """The whole body in one read, then verified."""
        try:
            with self.reading():
                data: bytes = self.body.read()
        finally:
            self.body.close()
        if self.ours:
            self.check(*_crc32c_of(data, self.part_size))
        return data


def _crc32c_of(data: bytes, part_size: int | None) -> tuple[bytes, list[bytes]]:
    """CRC32C of ``data`` and of each ``part_size`` slice: one pass over the bytes (the
    whole-object value is combined from the parts' values, not hashed again)."""
    if not part_size:
        return Crc32c(data).digest(), []
    view = memoryview(data)
    whole = 0
    parts = []
    for start in range(0, len(data), part_size):
        piece = view[start:start + part_size]
        value = crc32c(piece)
        parts.append(value.to_bytes(4, "big"))
        whole = combine_crc32c(whole, value, len(piece))
    return whole.to_bytes(4, "big"), parts


class Crc32c:
    """CRC32C with the hashlib interface (awscrt: the implementation botocore uses)."""

    def __init__(self, data: bytes = b"") -> None:
        self._value = crc32c(data) if data else 0

    def update(self, data: bytes | memoryview, /) -> None:
        self._value = crc32c(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")


def _matches(reported: str, full: bytes, parts: list[bytes]) -> bool:
    """Does S3's reported CRC32C match the bytes we hashed?

    S3 reports a multipart object's checksum as ``<crc32c of the parts' crc32cs>-<parts>``;
    moto reports the same value without the suffix, so a bare value may be either form.
    """
    if not reported:
        return False
    value, _, count = reported.partition("-")
    composite = base64.b64encode(Crc32c(b"".join(parts)).digest()).decode() \
        if parts else None
    if count:
        return count == str(len(parts)) and value == composite
    return value == base64.b64encode(full).decode() or (len(parts) > 1 and value == composite)
