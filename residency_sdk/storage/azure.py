"""Azure Blob Storage adapter (azure-storage-blob).

- Every write names the location's encryption scope (``encryption_scope``, backed by a
  customer-managed key); a target without one is refused (fail closed). When the service
  reports a scope it must be that scope; Azurite drops scopes silently (TEST_INFRA.md), so
  on a loopback endpoint the adapter accepts the silence and the tests assert on the
  request instead.
- Integrity: every byte is MD5-hashed once, on a thread of its own while the bytes are
  sent or received. Bytes in memory up to ``multipart_threshold`` (64 MiB here, the SDK's
  own ``max_single_put_size``) go up in one Put Blob whose Content-MD5 the service computes
  and we compare; streams and larger objects go as blocks, each sent with its own
  Content-MD5 (the service checks it), and the whole-object MD5 is recorded as the blob's
  Content-MD5 by the Put Block List that commits them (no extra request). Every read
  verifies the blob against its Content-MD5. On a mismatch the blob is deleted and
  :class:`IntegrityError` raised; uncommitted blocks never become a blob.
- Block uploads use ``max_concurrency`` threads and ``chunk_size`` blocks: bounded memory.
  ``get()`` downloads ``chunk_size`` ranges, ``download_concurrency`` at a time.
- azure-core's own retries are off (``retry_total=0``); :mod:`residency_sdk.storage.retry`
  is the only retry layer.
- Endpoint: always ``target.endpoint``, else ``https://<account>.blob.core.windows.net`` of
  the map's ``account``; a connection string only ever supplies the credential.
- Credentials: ``target.credentials.azure_connection_string_env`` names the variable
  holding this location's connection string; ``azure_identity: true`` uses
  ``DefaultAzureCredential`` (azure-identity). Without either, the process-wide
  ``RESIDENCY_AZURE_CONNECTION_STRING`` (or ``AZURE_STORAGE_CONNECTION_STRING``) when set,
  else ``DefaultAzureCredential`` when azure-identity is installed.
- A connection string whose ``AccountName`` is not the map's ``account``, whose
  ``BlobEndpoint`` is not the endpoint above, or whose ``EndpointSuffix`` names another
  Azure cloud makes the adapter refuse to open (:class:`EnvironmentOverride`): one
  process-wide string must not send every location's blobs to one account.
- Verify on open: the data plane reports no region, so what is verified is the account:
  the client talks to the map's account (the endpoint names it, and a shared key or SAS
  only works for the account it was issued for). ``residency verify`` says the region is
  unknown.
- ``RESIDENCY_AZURE_API_VERSION`` pins the service API version (needed for Azurite
  without ``--skipApiVersionCheck``).
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any, BinaryIO, Literal, TypeVar
from urllib.parse import urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    IncompleteReadError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobServiceClient, ContentSettings

from residency_sdk._endpoints import check_endpoint_url, is_loopback_host, normal_url, shown_url
from residency_sdk.errors import (
    AccessDenied,
    BackendNotConfigured,
    BackendUnavailable,
    BucketNotFound,
    EncryptionError,
    EnvironmentOverride,
    InsecureEndpoint,
    IntegrityError,
    NoSuchBackend,
    ObjectNotFound,
    ReadInterrupted,
    ResidencyError,
    ResidencyViolation,
    SDKNotInstalled,
    StorageError,
)
from residency_sdk.lifecycle import tags_for
from residency_sdk.model import StorageTarget
from residency_sdk.storage._conditional import expected_write, refused
from residency_sdk.storage._streaming import (
    Digester,
    HashingReader,
    HashingSink,
    VerifyingReader,
    as_binary_stream,
    md5,
    start_position,
)
from residency_sdk.storage.base import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_MAX_CONCURRENCY,
    BucketFacts,
    KeyDestruction,
    ObjectInfo,
    ObjectStore,
    ProgressCallback,
    Residue,
)
from residency_sdk.storage.retry import (
    DEFAULT_POLICY,
    RetryPolicy,
    fetch_whole,
    is_transient_status,
)

T = TypeVar("T")

CONNECTION_STRING_ENV = ("RESIDENCY_AZURE_CONNECTION_STRING", "AZURE_STORAGE_CONNECTION_STRING")
API_VERSION_ENV = "RESIDENCY_AZURE_API_VERSION"
POOL_CONNECTIONS = 32
"""Connections kept per Azure client (azure-core's requests session keeps 10)."""
SINGLE_PUT_LIMIT = 64 * 1024 * 1024
"""The default ``multipart_threshold``: bytes in memory up to this size go up in one Put
Blob (azure-storage-blob's own ``max_single_put_size``): one request, whose MD5 the
service computes, instead of blocks each hashed for the service and again for the blob."""


def is_transient(exc: BaseException) -> bool:
    """True for connection failures, timeouts, 408/429 and 5xx answers."""
    # IncompleteReadError: the connection died inside a body; it carries no status.
    if isinstance(exc, (ServiceRequestError, ServiceResponseError, IncompleteReadError)):
        return True
    if isinstance(exc, HttpResponseError):
        # No status: the SDK gave up on a broken transfer ("Download stream interrupted")
        # rather than the service answering; a fresh attempt may well succeed.
        return exc.status_code is None or is_transient_status(exc.status_code)
    return isinstance(exc, (TimeoutError, ConnectionError))


def _parse_connection_string(text: str) -> dict[str, str]:
    """The ``Key=Value`` pairs of a connection string, keys lower-cased (Azure reads them
    case-insensitively)."""
    parts = {}
    for item in text.split(";"):
        if "=" in item:
            name, _, value = item.partition("=")
            parts[name.strip().lower()] = value.strip()
    return parts


# What ``UseDevelopmentStorage=true`` stands for (Azurite's published development account).
_DEV_ACCOUNT = "devstoreaccount1"
_DEV_ENDPOINT = "http://127.0.0.1:10000/devstoreaccount1"
_PUBLIC_SUFFIX = "core.windows.net"


class AzureStore(ObjectStore):
    """One blob container in one storage account, for one residency location."""

    page_size: int = 1000
    """Blobs per List Blobs request (maximum 5000)."""

    def __init__(self, target: StorageTarget, *, policy: RetryPolicy = DEFAULT_POLICY,
                 chunk_size: int = DEFAULT_CHUNK_SIZE,
                 multipart_threshold: int = SINGLE_PUT_LIMIT,
                 max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
                 download_concurrency: int = 1,
                 connection_timeout: float = 5.0, read_timeout: float = 60.0,
                 raw_request_hook: Callable[[Any], None] | None = None,
                 verify_on_open: bool = True) -> None:
        """``max_concurrency`` blocks go up at once; ``get()`` fetches
        ``download_concurrency`` ranges at once (1, azure-storage-blob's own default: on
        a fast link more threads cost more CPU than they save; raise it where each
        connection is slow or far away). ``raw_request_hook`` sees every outgoing request
        (azure-core's hook; audits and tests use it to check what each request carried).
        ``verify_on_open`` is accepted for a constructor like the other cloud adapters';
        Azure's check (the account the client talks to) needs no request and always
        runs."""
        if target.provider != "azure":
            raise NoSuchBackend(f"AzureStore needs an azure target, got "
                                       f"{target.provider!r}")
        self.target = target
        self.policy = policy
        self.chunk_size = chunk_size
        self.multipart_threshold = multipart_threshold
        self.max_concurrency = max_concurrency
        self.download_concurrency = download_concurrency
        options: dict[str, Any] = {
            "retry_total": 0,  # retry.py is the one retry layer
            "transport": _transport(connection_timeout, read_timeout),
            "max_single_put_size": multipart_threshold,
            "max_block_size": chunk_size,
            "max_single_get_size": chunk_size,
            "max_chunk_get_size": chunk_size,
            "connection_timeout": connection_timeout,
            "read_timeout": read_timeout,
        }
        if raw_request_hook is not None:
            options["raw_request_hook"] = raw_request_hook
        if os.environ.get(API_VERSION_ENV):
            options["api_version"] = os.environ[API_VERSION_ENV]
        self.endpoint, self._service = self._connect(options)
        self.emulated = is_loopback_host(urlsplit(self.endpoint).hostname or "")
        self._container = self._service.get_container_client(target.bucket)

    def _connect(self, options: dict[str, Any]) -> tuple[str, BlobServiceClient]:
        """The endpoint and client of the map's account, with this location's credential."""
        target = self.target
        if not target.account and not target.endpoint:
            raise BackendNotConfigured(
                f"{self.name}: no storage account: set `account` on the azure backend in the "
                "region map (the account is never taken from a connection string)")
        endpoint = check_endpoint_url(
            target.endpoint or f"https://{target.account}.blob.core.windows.net")
        named = _account_of(endpoint)
        if named and target.account and named.lower() != target.account.lower():
            raise ResidencyViolation(
                f"{self.name}: the map's endpoint {shown_url(endpoint)} serves storage account "
                f"{named!r}, not the backend's account {target.account!r}: blobs would land "
                "in another account than the one provisioned and verified; fix `endpoint` or "
                "`account` in the region map")
        account = target.account or named
        source, conn = self._connection_string(account)
        if conn is None:
            try:
                from azure.identity import DefaultAzureCredential
            except ImportError:
                raise SDKNotInstalled(
                    f"{self.name}: no Azure credentials: install azure-identity for "
                    "DefaultAzureCredential, or name this location's connection-string "
                    "variable in the map (credentials.azure_connection_string_env)") from None
            if not endpoint.lower().startswith("https://"):
                # azure-storage-blob refuses a token over plain http (a bare ValueError):
                # only a loopback emulator can be http, and it takes an account key.
                raise InsecureEndpoint(
                    f"{self.name}: azure_identity sends an Azure AD token, which is only "
                    f"sent over https, and the endpoint is {shown_url(endpoint)}: use the "
                    "account's https endpoint, or for a local emulator name its "
                    "connection-string variable (credentials.azure_connection_string_env)")
            return endpoint, BlobServiceClient(endpoint, credential=DefaultAzureCredential(),
                                               **options)
        pinned = self._pinned(conn, source, endpoint, account)
        try:
            return endpoint, BlobServiceClient.from_connection_string(pinned, **options)
        except ValueError as exc:  # never echo the string: it holds the key
            raise BackendNotConfigured(
                f"{self.name}: the connection string in {source} cannot be used "
                f"({type(exc).__name__}); give AccountName and AccountKey (or a "
                "SharedAccessSignature) of the map's account") from None

    def _connection_string(self, account: str | None) -> tuple[str, str | None]:
        """``(variable, value)`` of the connection string this location uses, or
        ``("", None)`` for ``DefaultAzureCredential``."""
        creds = self.target.credentials
        if creds.azure_connection_string_env:
            var = creds.azure_connection_string_env
            value = os.environ.get(var)
            if not value:
                raise BackendNotConfigured(
                    f"{self.name}: the region map names {var} (credentials."
                    "azure_connection_string_env) for this location's connection string, and "
                    f"it is not set: set it to the connection string of storage account "
                    f"{account!r}")
            return var, value
        if creds.azure_identity:
            return "", None  # process-wide connection strings are not this location's
        for var in CONNECTION_STRING_ENV:
            if os.environ.get(var):
                return var, os.environ[var]
        return "", None

    def _pinned(self, conn: str, source: str, endpoint: str, account: str | None) -> str:
        """``conn`` reduced to its credential, with the map's endpoint; refuse one that names
        another account, endpoint or Azure cloud."""
        parts = _parse_connection_string(conn)
        dev = parts.get("usedevelopmentstorage", "").lower() == "true"
        named = _DEV_ACCOUNT if dev else parts.get("accountname")
        blob = _DEV_ENDPOINT if dev else parts.get("blobendpoint")
        fix = (f"set {source} to the connection string of account {account!r}"
               if self.target.credentials.azure_connection_string_env else
               "give each location its own variable (credentials: {azure_connection_string_"
               "env: RESIDENCY_AZURE_<LOCATION>_CONNECTION_STRING} on its azure backend) "
               "holding its own account's connection string, or use azure_identity: true")
        ours = f"account {account!r} at {shown_url(endpoint)}"
        if named and account and named.lower() != account.lower():
            raise EnvironmentOverride(
                f"{self.name}: {source} names storage account {named!r}, but the region map "
                f"puts this location's container in {ours}. A process-wide connection string "
                "would send every location's blobs to that one account while the audit log "
                f"reports the map's region. Refusing to open: {fix}")
        if blob and normal_url(blob) != normal_url(endpoint):
            raise EnvironmentOverride(
                f"{self.name}: {source} names blob endpoint {shown_url(blob)}, but the region map "
                f"puts this location's container in {ours}. Refusing to open: remove "
                f"BlobEndpoint from it, or {fix}")
        suffix = parts.get("endpointsuffix")
        if not blob and suffix and not self.target.endpoint and \
                suffix.lower() != _PUBLIC_SUFFIX:
            raise EnvironmentOverride(
                f"{self.name}: {source} names Azure cloud suffix {suffix!r}, but the region map "
                f"puts this location's container in {ours}. Refusing to open: remove "
                "EndpointSuffix, or name the endpoint in the region map")
        if not named and not blob:
            raise BackendNotConfigured(
                f"{self.name}: the connection string in {source} names no account "
                "(AccountName) and no BlobEndpoint")
        if dev:
            return conn  # it stands for exactly the endpoint checked above
        kept = [f"{key}={parts[low]}" for key, low in (
            ("AccountName", "accountname"), ("AccountKey", "accountkey"),
            ("SharedAccessSignature", "sharedaccesssignature")) if low in parts]
        return ";".join([f"BlobEndpoint={endpoint}", *kept])

    def __repr__(self) -> str:
        return (f"AzureStore(container={self.target.bucket!r}, region={self.target.region!r}, "
                f"endpoint={shown_url(getattr(self, 'endpoint', None) or '') or None!r})")

    @property
    def name(self) -> str:
        """``azure://account/container (region)``, used in messages."""
        return f"azure://{self.target.account or '?'}/{self.target.bucket} ({self.target.region})"

    @property
    def service(self) -> BlobServiceClient:
        """The underlying BlobServiceClient."""
        return self._service

    # --- writes ----------------------------------------------------------------------

    def put(self, key: str, data: bytes | BinaryIO, *, metadata: dict[str, str] | None = None,
            progress: ProgressCallback | None = None) -> ObjectInfo:
        """Upload into the location's encryption scope: one Put Blob for bytes up to
        ``multipart_threshold`` (64 MiB), blocks for streams and larger objects."""
        scope = self._scope()
        blob = self._container.get_blob_client(key)
        options: dict[str, Any] = {
            "metadata": metadata, "encryption_scope": scope,
            # Blob index tag the management-policy rule of the retention category selects.
            "tags": tags_for(metadata) or None}
        if isinstance(data, (bytes, bytearray, memoryview)) and \
                len(data) <= self.multipart_threshold:
            response, digest, size = self._put_single(blob, key, bytes(data), options)
            if progress is not None:
                progress(size)
        else:
            response, digest, size = self._put_blocks(blob, key, data, options, progress)
        reported_scope = response.get("encryption_scope")
        if reported_scope != scope and not (reported_scope is None and self.emulated):
            self._discard(key)
            raise EncryptionError(
                f"{self.name}: {key!r} was stored in encryption scope {reported_scope!r}, not "
                f"{scope!r}; the blob was deleted - check the scope exists on the account")
        return ObjectInfo(key=key, size=size,
                          checksum=f"md5:{base64.b64encode(digest).decode()}",
                          encryption="azure:encryption-scope" if reported_scope else None,
                          kms_key=reported_scope, metadata=dict(metadata or {}),
                          last_modified=response.get("last_modified"),
                          etag=str(response.get("etag", "")).strip('"') or None)

    def _put_single(self, blob: Any, key: str, payload: bytes,
                    options: dict[str, Any]) -> tuple[dict[str, Any], bytes, int]:
        """One Put Blob; the service computes the Content-MD5 of what it received, which
        must equal ours (hashed on another thread while the request is sent)."""
        digester = Digester(md5())
        digester.update(payload)
        try:
            response: dict[str, Any] = self._call("put", key, lambda: blob.upload_blob(
                payload, length=len(payload), overwrite=True, content_settings=ContentSettings(
                    content_type="application/octet-stream"), **options))
        except BaseException:
            digester.close()  # stop its hashing thread
            raise
        digester.finish()
        digest = digester.hasher.digest()
        reported = response.get("content_md5")
        if reported is None or bytes(reported) != digest:
            self._discard(key)
            raise IntegrityError(
                f"{self.name}: checksum mismatch for {key!r}: computed md5 "
                f"{base64.b64encode(digest).decode()}, Azure reports "
                f"{base64.b64encode(bytes(reported)).decode() if reported else 'none'}; "
                "the blob was deleted - upload again")
        return response, digest, len(payload)

    def _put_blocks(self, blob: Any, key: str, data: bytes | BinaryIO,
                    options: dict[str, Any], progress: ProgressCallback | None,
                    ) -> tuple[dict[str, Any], bytes, int]:
        """Put Block for each ``chunk_size`` block (``max_concurrency`` at a time, each
        with its Content-MD5, which the service checks), then one Put Block List that
        records the whole-object MD5 as the blob's Content-MD5."""
        stream = as_binary_stream(data)
        start = start_position(stream)
        policy = self.policy if start is not None else replace(self.policy, max_attempts=1)

        def attempt() -> tuple[dict[str, Any], bytes, int]:
            if start is not None:
                stream.seek(start)
            reader = HashingReader(stream, md5(), progress=progress)
            try:
                blocks = self._stage_blocks(blob, reader, options["encryption_scope"])
                digest = reader.digest()
            finally:
                reader.close()  # stops its hashing thread when staging failed
            response = blob.commit_block_list(
                blocks, content_settings=ContentSettings(
                    content_type="application/octet-stream", content_md5=bytearray(digest)),
                **options)
            return response, digest, reader.position

        return self._call("put", key, attempt, policy)

    def _stage_blocks(self, blob: Any, reader: HashingReader, scope: str) -> builtins.list[str]:
        """Stage the stream's blocks; their ids, in order. At most ``max_concurrency``
        blocks are in flight and one more being read: bounded memory."""
        prefix = uuid.uuid4().hex  # a failed attempt's blocks are never committed
        ids: builtins.list[str] = []
        with ThreadPoolExecutor(self.max_concurrency,
                                thread_name_prefix="residency-azure-block") as pool:
            pending: set[Future[Any]] = set()
            try:
                while block := _read_block(reader, self.chunk_size):
                    if len(pending) >= self.max_concurrency:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for future in done:
                            future.result()
                    ids.append(base64.b64encode(f"{prefix}{len(ids):08d}".encode()).decode())
                    pending.add(pool.submit(
                        blob.stage_block, ids[-1], block, length=len(block),
                        validate_content=True, encryption_scope=scope))
                for future in pending:
                    future.result()
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        return ids

    def _discard(self, key: str) -> None:
        # The caller is already getting the more important error.
        with contextlib.suppress(ResidencyError):
            self._call("delete", key, lambda: self._container.delete_blob(
                key, delete_snapshots="include"))

    def delete(self, key: str, *, if_match: ObjectInfo | None = None) -> bool:
        """Delete ``key`` with its snapshots; True if it existed.

        Snapshots go with the blob (``x-ms-delete-snapshots: include``): they are
        readable copies of it, and Azure refuses to delete a blob that has any
        (``SnapshotsPresent``) otherwise. With ``if_match`` the request carries
        ``If-Match: <ETag>``: Azure deletes only that write, and its 412
        (``ConditionNotMet``) raises :class:`ObjectChanged` (nothing deleted)."""
        etag = expected_write(key, if_match, self.name) if if_match is not None else None
        # HTTP wants the entity tag quoted; head() reports it without the quotes.
        condition: dict[str, Any] = {} if etag is None else {
            "etag": f'"{etag}"', "match_condition": MatchConditions.IfNotModified}
        try:
            self._call("delete", key, lambda: self._container.delete_blob(
                key, delete_snapshots="include", **condition))
        except ObjectNotFound:
            return False
        except StorageError as exc:
            cause = exc.__cause__
            if etag is not None and (isinstance(cause, ResourceModifiedError) or (
                    isinstance(cause, HttpResponseError) and cause.status_code == 412)):
                return refused(self, key, etag)
            raise
        return True

    # --- reads -----------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        """The whole blob, its MD5 verified against the blob's Content-MD5: ``chunk_size``
        ranges, ``download_concurrency`` at a time, hashed in order on another thread."""
        return fetch_whole(lambda: self._get_whole(key), self.policy, backend=self.name,
                           key=key)

    def _get_whole(self, key: str) -> bytes:
        downloader = self._call("get", key, lambda: self._container.download_blob(
            key, max_concurrency=self.download_concurrency))
        reported = downloader.properties.content_settings.content_md5
        sink = HashingSink(md5())
        try:
            with self._reading(key):
                downloader.readinto(sink)
            self._check_read(key, reported, sink.digest())
            return sink.getvalue()
        finally:
            sink.close()

    def open(self, key: str) -> BinaryIO:
        """A streaming reader (``chunk_size`` ranges); MD5 verified at the end. A stream
        that breaks off mid-way raises :class:`ReadInterrupted` (read it again)."""
        downloader = self._call("get", key, lambda: self._container.download_blob(
            key, max_concurrency=1))
        reported = downloader.properties.content_settings.content_md5

        def chunks() -> Iterator[bytes]:
            with self._reading(key):
                yield from downloader.chunks()

        def verify(tracker: Digester) -> None:
            self._check_read(key, reported, tracker.hasher.digest())

        return VerifyingReader(chunks(), md5(), verify)  # type: ignore[return-value]

    @contextlib.contextmanager
    def _reading(self, key: str) -> Iterator[None]:
        """Translate what reading a blob's body raises: a transfer broken off mid-way is
        a :class:`ReadInterrupted` (read it again)."""
        try:
            yield
        except AzureError as exc:
            if is_transient(exc):
                raise ReadInterrupted(
                    f"{self.name}: reading {key!r} broke off mid-stream "
                    f"({type(exc).__name__}); discard what was read and read it again"
                ) from None
            raise self._translate(exc, "get", key) from None

    def _check_read(self, key: str, reported: Any, digest: bytes) -> None:
        if reported and bytes(reported) != digest:
            raise IntegrityError(
                f"{self.name}: checksum mismatch reading {key!r}: computed md5 "
                f"{base64.b64encode(digest).decode()}, Azure reports "
                f"{base64.b64encode(bytes(reported)).decode()}; do not use this data, "
                "read it again")

    def head(self, key: str) -> ObjectInfo:
        """Size, Content-MD5, encryption scope and metadata as Azure reports them."""
        p = self._call("head", key, lambda: self._container.get_blob_client(key)
                       .get_blob_properties())
        content_md5 = p.content_settings.content_md5
        return ObjectInfo(
            key=key, size=int(p.size or 0),
            checksum=f"md5:{base64.b64encode(bytes(content_md5)).decode()}" if content_md5
            else None,
            encryption="azure:encryption-scope" if p.encryption_scope else None,
            kms_key=p.encryption_scope, metadata=dict(p.metadata or {}),
            last_modified=p.last_modified, etag=str(p.etag or "").strip('"') or None,
            version=p.version_id or None)  # only when the account keeps blob versions

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every blob under ``prefix``, ``page_size`` blobs per request."""
        token: str | None = None
        while True:
            def fetch(tok: str | None = token) -> tuple[list[Any], str | None]:
                pages = self._container.list_blobs(
                    name_starts_with=prefix or None,
                    results_per_page=self.page_size).by_page(continuation_token=tok)
                items = list(next(pages))
                return items, pages.continuation_token  # type: ignore[attr-defined]

            blobs, token = self._call("list", prefix, fetch)
            for b in blobs:
                yield ObjectInfo(key=b.name, size=int(b.size or 0),
                                 last_modified=b.last_modified,
                                 etag=str(b.etag or "").strip('"') or None,
                                 version=b.version_id or None)
            if not token:
                return

    def describe_bucket(self) -> BucketFacts:
        """What the blob service reports about the container: default encryption scope and
        public access. The data plane does not report the account's region, so ``region``
        is None (unknown)."""
        try:
            props = self._call("describe", self.target.bucket,
                               self._container.get_container_properties)
        except (BucketNotFound, ObjectNotFound):
            return BucketFacts(exists=False)
        scope = getattr(props.encryption_scope, "default_encryption_scope", None) \
            if props.encryption_scope else None
        return BucketFacts(
            exists=True, region=None,
            encryption="azure:encryption-scope" if scope else None, kms_key=scope,
            public_access_blocked=props.public_access is None,
            notes=("the account's region needs the Azure management API (azure-mgmt-storage)",))

    def close(self) -> None:
        """Release the HTTP pipeline."""
        self._service.close()

    # --- capabilities: versions, snapshots, soft-deleted blobs -------------------------

    def purge_versions(self, key: str) -> Residue:
        """Delete every previous version and snapshot of exactly ``key`` (a listing with
        ``include=versions,snapshots,deleted`` and the key as prefix; other names
        ignored), then permanently delete what that left soft-deleted. The current
        version, when there is one (``key`` written again meanwhile), stays.

        On an account with blob soft delete, a deleted version or snapshot stays
        restorable until the delete retention ends unless it is deleted permanently
        (``deletetype=permanent``), which the account must allow (``allowPermanentDelete``
        in its delete retention policy) and the caller be granted
        (``.../blobs/permanentDelete/action``); a refusal is reported in
        ``Residue.held``, as is a version kept by an immutability policy or legal hold and
        a soft-deleted base blob (Azure has no permanent delete for those)."""
        return self._purge(lambda: (e for e in self._residue(key) if e.name == key))

    def purge_residue(self, prefix: str, *, keep: frozenset[str] = frozenset()) -> Residue:
        """What :meth:`purge_versions` does for one blob, for every blob under ``prefix``
        (names in ``keep`` excepted). Uncommitted blocks are not data anyone can read and
        Azure discards them after a week; they are left alone."""
        return self._purge(lambda: (e for e in self._residue(prefix) if e.name not in keep))

    def residue_left(self, prefix: str, *,
                     keep: frozenset[str] = frozenset()) -> builtins.list[str]:
        """Previous versions, snapshots and soft-deleted blobs still under ``prefix``
        (names in ``keep`` excepted), as ``name?versionid=...``, ``name?snapshot=...``
        (`` (soft-deleted)`` appended when they are); empty after a complete
        :meth:`purge_residue`."""
        return [e.shown for e in self._residue(prefix) if e.name not in keep]

    def _residue(self, prefix: str) -> Iterator[_Residual]:
        """Every previous version, snapshot and soft-deleted blob under ``prefix``, page
        by page (the current version of each blob left out). An account without
        versioning or soft delete, like Azurite, reports snapshots at most."""
        token: str | None = None
        while True:
            def fetch(tok: str | None = token) -> tuple[builtins.list[Any], str | None]:
                pages = self._container.list_blobs(
                    name_starts_with=prefix or None,
                    include=["versions", "snapshots", "deleted"],
                    results_per_page=self.page_size).by_page(continuation_token=tok)
                items = builtins.list(next(pages))
                return items, pages.continuation_token  # type: ignore[attr-defined]

            blobs, token = self._call("list", prefix, fetch)
            for b in blobs:
                deleted = bool(b.deleted)
                if b.snapshot:
                    yield _Residual(b.name, "snapshot", str(b.snapshot), deleted)
                elif b.version_id and not b.is_current_version:
                    yield _Residual(b.name, "version", str(b.version_id), deleted)
                elif deleted:
                    yield _Residual(b.name, "blob", None, deleted)
            if not token:
                return

    def _purge(self, residue: Callable[[], Iterator[_Residual]]) -> Residue:
        """Delete the residue ``residue()`` lists; then, when that deleted anything, list
        again and delete permanently what the account's soft delete kept."""
        held: dict[str, str] = {}
        deleted = 0

        def hold(entry: _Residual, reason: str) -> None:
            held[entry.name] = f"{held[entry.name]}; {reason}" if entry.name in held \
                else reason

        # Listed whole before deleting, like the other adapters: paging on while the
        # listing changes underneath is not safe everywhere.
        first = builtins.list(residue())
        for entry in first:
            if entry.deleted:
                continue
            refused = self._delete_residual(entry, permanent=False)
            if refused is None:
                deleted += 1
            elif refused:
                hold(entry, refused)
        again = builtins.list(residue()) if deleted else first
        already = {e.shown for e in first if not e.deleted}
        for entry in again:
            if not entry.deleted:
                continue
            if entry.kind == "blob":
                hold(entry, "soft-deleted blob: Azure keeps it restorable until the "
                            "account's delete retention ends and has no permanent delete "
                            "for it (enable blob versioning, whose deleted versions can "
                            "be deleted permanently)")
                continue
            refused = self._delete_residual(entry, permanent=True)
            # What the first pass deleted was counted then: a soft delete it was, so it
            # counts only if it now goes for good.
            ours = entry.shown.removesuffix(_SOFT) in already
            if refused is None:
                deleted += 0 if ours else 1
            elif refused:
                deleted -= 1 if ours else 0
                hold(entry, f"soft-deleted {entry.kind} {entry.ident} is kept restorable "
                            f"until the account's delete retention ends: {refused}; allow "
                            "permanent delete on the account (allowPermanentDelete) and "
                            "grant the permanentDelete action")
        return Residue(versions_deleted=deleted, held=held)

    def _delete_residual(self, entry: _Residual, *, permanent: bool) -> str | None:
        """Delete one version or snapshot: None when it went, ``""`` when it was gone
        already, else why Azure refused (an immutability policy, a legal hold, a
        permanent delete the account does not allow)."""
        options: dict[str, Any] = {"blob_delete_type": "Permanent"} if permanent else {}
        if entry.kind == "version":
            options["version_id"] = entry.ident
        blob = self._container.get_blob_client(
            entry.name, snapshot=entry.ident if entry.kind == "snapshot" else None)
        try:
            self._call("delete", entry.name, lambda: blob.delete_blob(**options))
        except ObjectNotFound:
            return ""
        except BackendUnavailable:
            raise
        except StorageError as exc:
            cause = exc.__cause__
            status = cause.status_code if isinstance(cause, HttpResponseError) else None
            if not isinstance(exc, AccessDenied) and status not in _REFUSED:
                raise
            code = _error_code(cause) or f"HTTP {status}"
            return f"Azure refused deleting {entry.kind} {entry.ident}: {code}"
        return None

    def destroy_tenant_key(self, tenant_id: str) -> KeyDestruction:
        """``unsupported``: the SDK keeps no per-tenant key on Azure Blob (every blob is
        under the location's encryption scope); ``detail`` says what the operator must do
        instead (docs/crypto-shredding.md)."""
        return KeyDestruction(
            tenant_id=tenant_id, status="unsupported",
            detail=f"{self.name}: no per-tenant key (blobs use the location's encryption "
                   f"scope {self.target.encryption_scope or '(none named)'}); backups "
                   "Azure keeps are not made unreadable by erasure (it deletes versions and "
                   "snapshots, and soft-deleted ones where the account allows permanent "
                   "delete). To cover them, give the tenant an encryption scope of its own "
                   "backed by its own Key Vault key and delete and purge that key after the "
                   "erasure (docs/crypto-shredding.md)")

    # --- internals -------------------------------------------------------------------

    def _scope(self) -> str:
        if not self.target.encryption_scope:
            raise EncryptionError(
                f"{self.name}: no encryption_scope configured for this azure backend; set "
                "`encryption_scope` (a scope backed by the location's customer-managed key) "
                "in the region map - blobs are never written without it")
        return self.target.encryption_scope

    def _call(self, operation: str, key: str, fn: Callable[[], T],
              policy: RetryPolicy | None = None) -> T:
        return (policy or self.policy).call(
            fn, backend=self.name, operation=operation, transient=is_transient,
            translate=lambda exc: self._translate(exc, operation, key))

    def _translate(self, exc: BaseException, operation: str, key: str) -> ResidencyError:
        code = _error_code(exc)
        if isinstance(exc, ResourceNotFoundError):
            if code == "ContainerNotFound":
                return BucketNotFound(
                    f"{self.name}: container {self.target.bucket!r} does not exist; provision "
                    "it with the infra stack for this location")
            return ObjectNotFound(key, self.name)
        if code in {"Md5Mismatch", "Crc64Mismatch", "InvalidMd5"}:
            return IntegrityError(f"{self.name}: Azure rejected {key!r} as corrupted ({code});"
                                  " nothing was stored - upload again")
        if "EncryptionScope" in code:
            return EncryptionError(f"{self.name}: encryption scope "
                                   f"{self.target.encryption_scope!r} refused ({code}); "
                                   "check it exists and is enabled on the account")
        if isinstance(exc, ClientAuthenticationError) or code in {
                "AuthenticationFailed", "AuthorizationFailure"} or (
                isinstance(exc, HttpResponseError) and exc.status_code == 403):
            return AccessDenied(f"{self.name}: access denied for {operation} {key!r}; check "
                                "the connection string or the identity's role assignments")
        if isinstance(exc, HttpResponseError):
            return StorageError(f"{self.name}: {operation} {key!r} failed: HTTP "
                                f"{exc.status_code} {code}")
        return StorageError(f"{self.name}: {operation} {key!r} failed: "
                            f"{type(exc).__name__}: {exc}")


_SOFT = " (soft-deleted)"
# What Azure answers a delete it will not do (immutability, legal hold, a permanent
# delete the account does not allow): the version is kept, reported held.
_REFUSED = frozenset({400, 403, 405, 409})


@dataclass(frozen=True, slots=True)
class _Residual:
    """One thing no plain listing shows: a previous version, a snapshot or a
    soft-deleted blob (``ident`` None) of blob ``name``."""

    name: str
    kind: Literal["version", "snapshot", "blob"]
    ident: str | None
    deleted: bool

    @property
    def shown(self) -> str:
        """``name?versionid=...`` / ``name?snapshot=...``, ``(soft-deleted)`` appended."""
        query = {"version": f"?versionid={self.ident}", "snapshot": f"?snapshot={self.ident}",
                 "blob": ""}[self.kind]
        return f"{self.name}{query}{_SOFT if self.deleted else ''}"


def _transport(connection_timeout: float, read_timeout: float) -> Any:
    """azure-core's requests transport with a pool of :data:`POOL_CONNECTIONS`: the
    default of 10 is fewer than a batch call's threads times the parallel ranges of
    each ``get()``, and every request beyond the pool pays a new connection."""
    import requests
    from azure.core.pipeline.transport import RequestsTransport
    from urllib3.util.retry import Retry

    session = requests.Session()
    # What azure-core mounts on a session of its own, with a bigger pool: no retries here
    # either (retry.py is the one retry layer).
    adapter = requests.adapters.HTTPAdapter(
        pool_maxsize=POOL_CONNECTIONS,
        max_retries=Retry(total=False, redirect=False, raise_on_status=False))
    for scheme in ("http://", "https://"):
        session.mount(scheme, adapter)
    return RequestsTransport(session=session, session_owner=True,
                             connection_timeout=connection_timeout, read_timeout=read_timeout,
                             # azure-storage-blob's own read size (azure-core's is 4 KiB)
                             connection_data_block_size=256 * 1024)


def _error_code(exc: BaseException | None) -> str:
    """Azure's error code (``Md5Mismatch``): the SDK hands a ``StorageErrorCode`` member for
    codes it knows, whose ``str()`` is the member's name, not the code."""
    code = getattr(exc, "error_code", None) or ""
    return str(getattr(code, "value", code))


def _read_block(reader: BinaryIO | HashingReader, size: int) -> bytes:
    """Up to ``size`` bytes: a source may return fewer per read than asked."""
    first = reader.read(size)
    if len(first) == size or not first:
        return first
    pieces = [first]
    got = len(first)
    while got < size and (more := reader.read(size - got)):
        pieces.append(more)
        got += len(more)
    return b"".join(pieces)


def _account_of(endpoint: str) -> str | None:
    """The storage account an endpoint serves, when its form says: the first path segment
    of a loopback emulator URL, the first label of a ``*.blob.core.*`` host (including
    ``privatelink``); None for other hosts (a custom domain)."""
    parts = urlsplit(endpoint)
    host = (parts.hostname or "").lower()
    if is_loopback_host(host):
        segment = parts.path.strip("/").split("/", 1)[0]
        return segment or None
    if ".blob.core." in host:
        return host.split(".", 1)[0]
    return None


