"""Google Cloud Storage adapter (google-cloud-storage + google-crc32c).

- Every write names the location's Cloud KMS key (``kms_key_name``); a target without
  ``kms_key`` is refused (fail closed). When the service reports a key it must be that
  key; a real service reporting none is refused too. Emulators report none (see
  TEST_INFRA.md), so on a loopback endpoint the adapter accepts the silence and the tests
  assert on the request instead.
- CRC32C is computed while streaming and compared with the ``crc32c`` the service reports
  for the finished object; on a mismatch the object is deleted and
  :class:`IntegrityError` raised. An interrupted resumable upload never becomes an object.
- Bytes in memory up to ``multipart_threshold`` (100 MiB here, the library's own
  resumable chunk) go up in one data request: a single multipart upload up to 8 MiB, above that a
  resumable session sent as one chunk. Streams and larger objects go up as resumable
  uploads of ``chunk_size`` chunks: memory stays at about one chunk.
- The library's own retries are off (``retry=None`` on every call);
  :mod:`residency_sdk.storage.retry` is the only retry layer.
- Endpoint: ``target.endpoint``, else ``https://storage.googleapis.com``, always passed
  explicitly, so the library's own overrides (``STORAGE_EMULATOR_HOST``,
  ``API_ENDPOINT_OVERRIDE``) are never used; one set to another endpoint, or
  ``GOOGLE_API_USE_MTLS_ENDPOINT=always`` (which swaps in the global mTLS host) with a map
  endpoint, makes the adapter refuse to open (:class:`EnvironmentOverride`).
- Credentials: loopback endpoints (emulators) are anonymous. Otherwise
  ``target.credentials.gcp_credentials_file`` (a service-account key file) and
  ``gcp_project`` when set, else Application Default Credentials and
  ``GOOGLE_CLOUD_PROJECT``.
- Verify on open: before the first data operation on a bucket in this process, the
  bucket's ``location`` (``dataLocations`` for a dual-region) must lie in
  ``target.country`` (one bucket lookup per bucket and endpoint per process; cached). A
  multi-region location (``EU``, ``US``) spans countries and is refused. Otherwise every
  read and write raises :class:`ResidencyViolation`.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlsplit

import google.api_core.exceptions as gexc
import google.auth.exceptions as gauth
import google_crc32c
import requests
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from residency_sdk._endpoints import check_endpoint_url, is_loopback_host, normal_url, shown_url
from residency_sdk.errors import (
    AccessDenied,
    BackendNotConfigured,
    BucketNotFound,
    EncryptionError,
    EnvironmentOverride,
    IntegrityError,
    NoSuchBackend,
    ObjectNotFound,
    ResidencyError,
    ResidencyViolation,
    StorageError,
)
from residency_sdk.lifecycle import gcs_custom_time
from residency_sdk.model import StorageTarget
from residency_sdk.regions import country_of, region_table
from residency_sdk.storage._conditional import expected_write, refused
from residency_sdk.storage._once import AskedOnce
from residency_sdk.storage._streaming import (
    Digester,
    HashingReader,
    VerifyingReader,
    as_binary_stream,
    start_position,
)
from residency_sdk.storage.base import (
    DEFAULT_CHUNK_SIZE,
    BucketFacts,
    KeyDestruction,
    ObjectInfo,
    ObjectStore,
    ProgressCallback,
    Residue,
)
from residency_sdk.storage.retry import DEFAULT_POLICY, RetryPolicy, is_transient_status

try:  # resumable-media moved into google-cloud-storage 3.x
    from google.cloud.storage.exceptions import DataCorruption, InvalidResponse
except ImportError:  # pragma: no cover - older google-cloud-storage
    from google.resumable_media.common import DataCorruption, InvalidResponse

T = TypeVar("T")

SINGLE_UPLOAD_LIMIT = 100 * 1024 * 1024
"""The default ``multipart_threshold``: bytes in memory up to this size go up in one data
request (google-cloud-storage's own resumable chunk size): they are in memory already,
and every further chunk of a resumable upload is one more round trip."""


def is_transient(exc: BaseException) -> bool:
    """True for 408/429/5xx answers, timeouts and connection resets."""
    if isinstance(exc, gexc.GoogleAPICallError):
        return is_transient_status(exc.code)
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                        requests.exceptions.ChunkedEncodingError)):
        return True
    if isinstance(exc, InvalidResponse):
        return is_transient_status(getattr(exc.response, "status_code", None))
    try:
        from google.auth.exceptions import TransportError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, (TransportError, TimeoutError, ConnectionError))


def _crc32c() -> Any:
    return google_crc32c.Checksum()  # type: ignore[no-untyped-call]


class GCSStore(ObjectStore):
    """One GCS bucket in one location, for one residency location."""

    page_size: int = 1000
    """Objects per list request."""

    def __init__(self, target: StorageTarget, *, policy: RetryPolicy = DEFAULT_POLICY,
                 chunk_size: int = DEFAULT_CHUNK_SIZE,
                 multipart_threshold: int = SINGLE_UPLOAD_LIMIT,
                 timeout: float = 60.0, verify_on_open: bool = True) -> None:
        """``verify_on_open=False`` skips the bucket-location check before the first data
        operation: only for tests that put a fault-injecting server in front of a bucket
        already checked; the factory never passes it."""
        if target.provider != "gcp":
            raise NoSuchBackend(f"GCSStore needs a gcp target, got {target.provider!r}")
        if chunk_size % (256 * 1024):
            raise StorageError(f"GCS chunk_size must be a multiple of 256 KiB, got {chunk_size}")
        self.target = target
        self.policy = policy
        self.chunk_size = chunk_size
        self.multipart_threshold = multipart_threshold
        self.timeout = timeout
        self.endpoint = check_endpoint_url(target.endpoint) if target.endpoint else None
        self.api_endpoint: str = self.endpoint or DEFAULT_ENDPOINT
        """The endpoint the client really talks to (the map's, or the global default)."""
        self.emulated = bool(self.endpoint and is_loopback_host(
            urlsplit(self.endpoint).hostname or ""))
        _refuse_overrides(self.api_endpoint, self.name, mapped=self.endpoint is not None)
        creds = target.credentials
        # Always explicit: with no api_endpoint the library would take STORAGE_EMULATOR_HOST
        # or API_ENDPOINT_OVERRIDE (read when it was imported) instead.
        options = ClientOptions(api_endpoint=self.api_endpoint)
        if self.emulated:
            self._client = storage.Client(
                project=creds.gcp_project or os.environ.get("GOOGLE_CLOUD_PROJECT",
                                                            "residency-emulator"),
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                client_options=options)
        else:
            credentials = self._key_file_credentials()
            project = creds.gcp_project or (
                getattr(credentials, "project_id", None) if credentials else None)
            try:
                self._client = storage.Client(project=project, credentials=credentials,
                                              client_options=options)
            except gauth.GoogleAuthError as exc:  # DefaultCredentialsError & co
                raise AccessDenied(
                    f"{self.name}: no Google credentials ({type(exc).__name__}); configure "
                    "Application Default Credentials and GOOGLE_CLOUD_PROJECT, or name a "
                    "service-account key file in the map (credentials.gcp_credentials_file)"
                ) from None
            except OSError as exc:  # credentials found, but no project to bill them to
                raise BackendNotConfigured(
                    f"{self.name}: no Google Cloud project ({exc}); set "
                    "credentials.gcp_project in the map, GOOGLE_CLOUD_PROJECT, or name one "
                    "in Application Default Credentials") from None
        self._bucket = self._client.bucket(target.bucket)
        self._verify_on_open = verify_on_open
        self._verified = False

    def _key_file_credentials(self) -> Any:
        """The service-account credentials of ``credentials.gcp_credentials_file``, or None
        (Application Default Credentials)."""
        path = self.target.credentials.gcp_credentials_file
        if not path:
            return None
        from google.oauth2 import service_account

        try:
            return service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                os.path.expanduser(path))
        except (OSError, ValueError, KeyError) as exc:
            # Never echo the file's content: it holds a private key.
            raise BackendNotConfigured(
                f"{self.name}: the service-account key file {path!r} named by "
                f"credentials.gcp_credentials_file cannot be used ({type(exc).__name__}); "
                "check the path and that it is a service-account JSON key") from None

    def __repr__(self) -> str:
        return (f"GCSStore(bucket={self.target.bucket!r}, region={self.target.region!r}, "
                f"endpoint={self.endpoint!r})")

    @property
    def name(self) -> str:
        """``gs://bucket (region)``, used in messages."""
        return f"gs://{self.target.bucket} ({self.target.region})"

    @property
    def client(self) -> storage.Client:
        """The underlying google-cloud-storage client."""
        return self._client

    # --- writes ----------------------------------------------------------------------

    def put(self, key: str, data: bytes | BinaryIO, *, metadata: dict[str, str] | None = None,
            progress: ProgressCallback | None = None) -> ObjectInfo:
        """Upload with the location's KMS key: bytes up to ``multipart_threshold`` (100 MiB)
        in one data request, streams and larger objects resumable in ``chunk_size`` chunks."""
        kms_key = self._kms_key()
        custom_time = gcs_custom_time(metadata)
        # With no chunk size and the size given, the library sends the bytes in one
        # request: multipart up to 8 MiB, else one resumable chunk (up to 100 MiB).
        small = isinstance(data, (bytes, bytearray, memoryview)) and \
            len(data) <= self.multipart_threshold
        stream = as_binary_stream(data)
        start = start_position(stream)
        policy = self.policy if start is not None else replace(self.policy, max_attempts=1)
        readers: list[HashingReader] = []
        blobs: list[Any] = []

        def attempt() -> None:
            if start is not None:
                stream.seek(start)
            blob = self._bucket.blob(key, chunk_size=None if small else self.chunk_size,
                                     kms_key_name=kms_key)
            if metadata:
                blob.metadata = dict(metadata)
            if custom_time is not None:
                # GCS lifecycle cannot filter on metadata: the expiry rule selects this.
                blob.custom_time = custom_time
            reader = HashingReader(stream, _crc32c(), progress=progress)
            readers.append(reader)
            blobs.append(blob)
            try:
                blob.upload_from_file(reader, size=len(data) if small else None,  # type: ignore[arg-type]
                                      content_type="application/octet-stream", checksum=None,
                                      retry=None, timeout=self.timeout)
            except BaseException:
                reader.close()  # stop its hashing thread
                raise

        self._call("put", key, attempt, policy)
        blob, reader = blobs[-1], readers[-1]
        expected = base64.b64encode(reader.digest()).decode()
        if blob.crc32c != expected:
            self._discard(key)
            raise IntegrityError(
                f"{self.name}: checksum mismatch for {key!r}: computed crc32c {expected}, "
                f"GCS reports {blob.crc32c or 'none'}; the object was deleted - upload again")
        self._check_encryption(key, blob.kms_key_name, kms_key)
        return self._info(blob)

    def _check_encryption(self, key: str, reported: str | None, wanted: str) -> None:
        # GCS reports ".../cryptoKeys/NAME/cryptoKeyVersions/N": compare the key part.
        if reported is None and self.emulated:
            return  # emulators never report kms_key_name (TEST_INFRA.md)
        # A prefix match alone would accept ".../cryptoKeys/data-old" for ".../data".
        if reported is None or not (reported == wanted
                                    or reported.startswith(wanted + "/cryptoKeyVersions/")):
            self._discard(key)
            raise EncryptionError(
                f"{self.name}: {key!r} was stored with KMS key {reported!r}, not {wanted!r}; "
                "the object was deleted - check the bucket's CMEK configuration")

    def _discard(self, key: str) -> None:
        # The caller is already getting the more important error.
        with contextlib.suppress(ResidencyError):
            self._call("delete", key, lambda: self._bucket.blob(key).delete(
                retry=None, timeout=self.timeout))

    def delete(self, key: str, *, if_match: ObjectInfo | None = None) -> bool:
        """Delete ``key``; True if it existed.

        With ``if_match`` the request carries ``ifGenerationMatch=<generation>`` (the
        ``version`` :meth:`head` and :meth:`list` report): GCS deletes only that write, and
        its 412 raises :class:`ObjectChanged` (nothing deleted). The gcp-storage-emulator
        ignores the condition; the tests assert the request instead."""
        generation = (int(expected_write(key, if_match, self.name, field="version"))
                      if if_match is not None else None)
        try:
            self._call("delete", key, lambda: self._bucket.blob(key).delete(
                if_generation_match=generation, retry=None, timeout=self.timeout))
        except ObjectNotFound:
            return False
        except StorageError as exc:
            if generation is not None and isinstance(exc.__cause__, gexc.PreconditionFailed):
                return refused(self, key, str(generation), field="version")
            raise
        return True

    # --- reads -----------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        """The whole object in one request, its CRC32C verified against the service's
        ``x-goog-hash`` (a mismatch raises :class:`IntegrityError`)."""
        data: bytes = self._call("get", key, lambda: self._bucket.blob(key).download_as_bytes(
            checksum="crc32c", retry=None, timeout=self.timeout))
        return data

    def open(self, key: str) -> BinaryIO:
        """A streaming reader (``chunk_size`` ranges); CRC32C verified at the end."""
        blob = self._call("get", key, lambda: self._get_blob(key))
        reported = blob.crc32c
        # Pin the generation so a concurrent overwrite cannot splice two versions.
        generation = blob.generation

        def chunks() -> Iterator[bytes]:
            size = int(blob.size or 0)
            offset = 0
            while offset < size:
                end = min(offset + self.chunk_size, size) - 1
                yield self._download_range(key, generation, offset, end)
                offset = end + 1

        def verify(tracker: Digester) -> None:
            got = base64.b64encode(tracker.hasher.digest()).decode()
            if reported and got != reported:
                raise IntegrityError(
                    f"{self.name}: checksum mismatch reading {key!r}: computed crc32c {got}, "
                    f"GCS reports {reported}; do not use this data, read it again")

        return VerifyingReader(chunks(), _crc32c(), verify)  # type: ignore[return-value]

    def _download_range(self, key: str, generation: int | None, start: int,
                        end: int) -> bytes:
        data: bytes = self._call("get", key, lambda: self._bucket.blob(
            key, generation=generation).download_as_bytes(
                start=start, end=end, checksum=None, retry=None, timeout=self.timeout))
        return data

    def head(self, key: str) -> ObjectInfo:
        """Size, CRC32C, KMS key and metadata as GCS reports them."""
        return self._info(self._call("head", key, lambda: self._get_blob(key)))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under ``prefix``, ``page_size`` objects per request."""
        token: str | None = None
        while True:
            def fetch(tok: str | None = token) -> tuple[list[Any], str | None]:
                iterator = self._client.list_blobs(
                    self._bucket, prefix=prefix, page_size=self.page_size, page_token=tok,
                    retry=None, timeout=self.timeout)
                page = next(iterator.pages)
                return list(page), iterator.next_page_token

            blobs, token = self._call("list", prefix, fetch)
            for blob in blobs:
                yield self._info(blob)
            if not token:
                return

    def describe_bucket(self) -> BucketFacts:
        """What GCS reports about the bucket: location, default KMS key, public access
        prevention."""
        bucket = self._call("describe", self.target.bucket, lambda: self._client.lookup_bucket(
            self.target.bucket, retry=None, timeout=self.timeout))
        if bucket is None:
            return BucketFacts(exists=False)
        key = bucket.default_kms_key_name
        prevention = bucket.iam_configuration.public_access_prevention
        return BucketFacts(
            exists=True, region=(bucket.location or "").lower() or None,
            encryption="gcs:kms" if key else None, kms_key=key,
            public_access_blocked=prevention == "enforced",
            notes=(f"public access prevention is {prevention!r}",))

    # --- capabilities: noncurrent generations (Object Versioning) ----------------------

    def purge_versions(self, key: str) -> Residue:
        """Delete every noncurrent generation of exactly ``key`` (a listing with
        ``versions=True`` and the key as prefix; other names ignored), each by its
        ``generation``. The live generation, when there is one (``key`` written again
        meanwhile), stays: only generations GCS reports with a ``timeDeleted`` go.

        A generation GCS refuses to delete (an event-based or temporary hold, the
        bucket's retention policy) is reported in ``Residue.held``. Soft-deleted objects
        are another matter: GCS offers no call that removes them before the bucket's
        soft delete retention ends, so data buckets need a retention of 0."""
        return self._delete_generations(
            [g for g in self._noncurrent(key) if g[0] == key])

    def purge_residue(self, prefix: str, *, keep: frozenset[str] = frozenset()) -> Residue:
        """Delete every noncurrent generation under ``prefix`` (names in ``keep``
        excepted), as :meth:`purge_versions` does for one name. GCS keeps no incomplete
        upload that a listing misses for long: an unfinished resumable upload is not an
        object and expires on its own within a week."""
        return self._delete_generations(
            [g for g in self._noncurrent(prefix) if g[0] not in keep])

    def residue_left(self, prefix: str, *,
                     keep: frozenset[str] = frozenset()) -> builtins.list[str]:
        """Noncurrent generations still under ``prefix`` (names in ``keep`` excepted), as
        ``name#generation`` (gsutil's form); empty after a complete :meth:`purge_residue`."""
        return [f"{name}#{generation}" for name, generation in self._noncurrent(prefix)
                if name not in keep]

    def _noncurrent(self, prefix: str) -> Iterator[tuple[str, int]]:
        """``(name, generation)`` of every noncurrent generation under ``prefix``, page by
        page; the live generation of each name is left out (it has no ``timeDeleted``).
        A bucket without Object Versioning has none."""
        token: str | None = None
        while True:
            def fetch(tok: str | None = token) -> tuple[builtins.list[Any], str | None]:
                iterator = self._client.list_blobs(
                    self._bucket, prefix=prefix, versions=True, page_size=self.page_size,
                    page_token=tok, retry=None, timeout=self.timeout)
                page = next(iterator.pages)
                return builtins.list(page), iterator.next_page_token

            blobs, token = self._call("list", prefix, fetch)
            for blob in blobs:
                if blob.time_deleted is not None and blob.generation:
                    yield str(blob.name), int(blob.generation)
            if not token:
                return

    def _delete_generations(self, generations: builtins.list[tuple[str, int]]) -> Residue:
        """Delete each ``(name, generation)``; a refusal (a hold, a retention policy) is
        held, a generation already gone skipped, anything else raises."""
        held: dict[str, str] = {}
        deleted = 0
        for name, generation in generations:
            blob = self._bucket.blob(name, generation=generation)
            try:
                self._call("delete", name, partial(blob.delete, retry=None,
                                                   timeout=self.timeout))
            except ObjectNotFound:
                continue
            except AccessDenied as exc:
                why = getattr(exc.__cause__, "message", None) or type(exc).__name__
                reason = f"GCS refused deleting generation {generation}: {why}"
                held[name] = f"{held[name]}; {reason}" if name in held else reason
                continue
            deleted += 1
        return Residue(versions_deleted=deleted, held=held)

    def close(self) -> None:
        """Release the HTTP session."""
        http = getattr(self._client, "_http_internal", None)
        if http is not None:
            http.close()

    def destroy_tenant_key(self, tenant_id: str) -> KeyDestruction:
        """``unsupported``: the SDK keeps no per-tenant key on GCS (every object is under
        the location's CMEK); ``detail`` says what the operator must do instead
        (docs/crypto-shredding.md)."""
        return KeyDestruction(
            tenant_id=tenant_id, status="unsupported",
            detail=f"{self.name}: no per-tenant key (objects use the location's CMEK "
                   f"{self.target.kms_key or '(none named)'}); backups and soft-deleted "
                   "copies Google keeps are not made unreadable by erasure. To cover them, "
                   "give the tenant its own bucket with a CMEK of its own and destroy that "
                   "key version in Cloud KMS after the erasure (docs/crypto-shredding.md)")

    # --- internals -------------------------------------------------------------------

    def _get_blob(self, key: str) -> Any:
        blob = self._bucket.get_blob(key, retry=None, timeout=self.timeout)
        if blob is None:
            raise ObjectNotFound(key, self.name)
        return blob

    def _info(self, blob: Any) -> ObjectInfo:
        return ObjectInfo(
            key=blob.name, size=int(blob.size or 0),
            checksum=f"crc32c:{blob.crc32c}" if blob.crc32c else None,
            encryption="gcs:kms" if blob.kms_key_name else None,
            kms_key=blob.kms_key_name, metadata=dict(blob.metadata or {}),
            last_modified=blob.updated, etag=blob.etag,
            version=str(blob.generation) if blob.generation else None)

    def _kms_key(self) -> str:
        if not self.target.kms_key:
            raise EncryptionError(
                f"{self.name}: no kms_key configured for this gcp backend; set `kms_key` "
                "(projects/.../cryptoKeys/NAME) in the region map - objects are never "
                "written without the location's customer-managed key")
        return self.target.kms_key

    def _call(self, operation: str, key: str, fn: Callable[[], T],
              policy: RetryPolicy | None = None) -> T:
        if not self._verified and operation not in _UNVERIFIED_OPERATIONS:
            self._verify()
        return (policy or self.policy).call(
            fn, backend=self.name, operation=operation, transient=is_transient,
            translate=lambda exc: self._translate(exc, operation, key))

    # --- verify on open --------------------------------------------------------------

    def _verify(self) -> None:
        """Check, once per bucket and endpoint per process, that GCS reports the bucket in
        the location's country; raise :class:`ResidencyViolation` (every time) if not."""
        if not self._verify_on_open:
            self._verified = True
            return
        bucket = self.target.bucket
        reported = _BUCKET_LOCATIONS.get(
            (normal_url(self.api_endpoint), bucket),
            lambda: self._call("verify", bucket, self._bucket_location))
        _judge_location(self.target, reported, name=self.name, bucket=bucket)
        self._verified = True

    def _bucket_location(self) -> _Location:
        found = self._client.get_bucket(self.target.bucket, retry=None, timeout=self.timeout)
        return _Location(location=str(found.location or ""),
                         location_type=str(found.location_type or "").lower() or None,
                         data_locations=tuple(str(r) for r in (found.data_locations or ())))

    def _translate(self, exc: BaseException, operation: str, key: str) -> ResidencyError:
        if operation == "verify" and isinstance(exc, (gexc.Forbidden, gexc.Unauthorized)):
            return AccessDenied(
                f"{self.name}: GCS refused reading bucket {self.target.bucket!r}'s metadata: "
                "the adapter checks where the bucket is before its first read or write; grant "
                "storage.buckets.get on the bucket to these credentials")
        if isinstance(exc, gexc.NotFound):
            # Writing or listing never misses an object, so a 404 there is the bucket. (The
            # message cannot tell: the emulator's does not name the bucket, and a bucket's
            # own name may contain "bucket".)
            if operation in ("put", "list", "verify"):
                return BucketNotFound(
                    f"{self.name}: bucket {self.target.bucket!r} does not exist; provision it "
                    "with the infra stack for this location")
            return ObjectNotFound(key, self.name)
        if isinstance(exc, DataCorruption):
            return IntegrityError(f"{self.name}: checksum mismatch on {key!r}: {exc}")
        if isinstance(exc, gexc.BadRequest) and "kms" in str(exc).lower():
            return EncryptionError(f"{self.name}: Cloud KMS refused {operation} of {key!r}: "
                                   f"{exc.message}; check key {self.target.kms_key!r}")
        if isinstance(exc, (gexc.Forbidden, gexc.Unauthorized)):
            return AccessDenied(f"{self.name}: access denied for {operation} {key!r}; check "
                                "the service account's IAM roles on the bucket")
        if isinstance(exc, gauth.RefreshError):
            # Expired or revoked credentials: a new attempt gets the same answer.
            return AccessDenied(f"{self.name}: Google refused the credentials for "
                                f"{operation} {key!r} ({exc}); refresh Application Default "
                                "Credentials")
        if isinstance(exc, InvalidResponse):
            status = getattr(exc.response, "status_code", "?")
            if status == 404:
                return ObjectNotFound(key, self.name)
            return StorageError(f"{self.name}: {operation} {key!r} failed with HTTP {status}")
        if isinstance(exc, gexc.GoogleAPICallError):
            return StorageError(f"{self.name}: {operation} {key!r} failed: HTTP {exc.code} "
                                f"{exc.message}")
        return StorageError(f"{self.name}: {operation} {key!r} failed: "
                            f"{type(exc).__name__}: {exc}")


DEFAULT_ENDPOINT = "https://storage.googleapis.com"
"""The global JSON API endpoint, used when the map names none."""

# Variables google-cloud-storage reads to replace the endpoint (when none is passed).
_ENDPOINT_VARIABLES = ("STORAGE_EMULATOR_HOST", "API_ENDPOINT_OVERRIDE")
_MTLS_VARIABLE = "GOOGLE_API_USE_MTLS_ENDPOINT"


def _refuse_overrides(used: str, name: str, *, mapped: bool) -> None:
    """Raise :class:`EnvironmentOverride` when a variable the library honours names another
    endpoint than the one the client uses."""
    ours = "the region map's endpoint for this backend" if mapped else \
        "the global endpoint (the region map names none)"
    for var in _ENDPOINT_VARIABLES:
        value = os.environ.get(var)
        if value and normal_url(value) != normal_url(used):
            raise EnvironmentOverride(
                f"{name}: {var} is set to {shown_url(value)}, but {ours} is {shown_url(used)}. "
                "google-cloud-storage sends every client without an explicit endpoint there, "
                "whatever location it serves. Refusing to open: unset it; if this location "
                "really uses that endpoint, name it in the region map (`endpoint:` on this "
                "gcp backend)")
    if mapped and os.environ.get(_MTLS_VARIABLE, "").strip().lower() == "always" and \
            normal_url(used) != normal_url(DEFAULT_ENDPOINT):
        raise EnvironmentOverride(
            f"{name}: {_MTLS_VARIABLE}=always makes google-cloud-storage send requests to the "
            f"global mTLS host https://storage.mtls.googleapis.com instead of {ours}, "
            f"{shown_url(used)}. Refusing to open: unset {_MTLS_VARIABLE} (or set it to "
            "'never'), or remove the endpoint from the map")




# --- verify on open ---------------------------------------------------------------------

# The check itself, and describe_bucket: ``residency verify`` reports a misplaced bucket
# instead of being refused by it.
_UNVERIFIED_OPERATIONS = frozenset({"verify", "describe"})


@dataclass(frozen=True, slots=True)
class _Location:
    """Where GCS says a bucket is."""

    location: str
    location_type: str | None = None
    data_locations: tuple[str, ...] = ()




_BUCKET_LOCATIONS: AskedOnce[_Location] = AskedOnce()


def _judge_location(target: StorageTarget, reported: _Location, *, name: str,
                    bucket: str) -> None:
    """Raise :class:`ResidencyViolation` unless every region holding the bucket's data lies
    in ``target.country``.

    The regions are the bucket's ``dataLocations`` when it has them (a configurable
    dual-region), else its ``location``, each judged by the region table. A multi-region
    (``EU``, ``US``, ``ASIA``) or predefined dual-region code (``EUR4``, ``NAM4``) is no
    region of the table: it spans or may span countries, so it fails closed. (The
    ``locationType`` the service reports only words the message: emulators report
    ``multi-region`` for everything.)"""
    regions = list(reported.data_locations) or [reported.location]
    outside: list[str] = []
    table = region_table()
    for region in regions:
        if region and region.lower() == target.region.lower():
            continue  # the map's own region, whose country the map compiler checked
        country = country_of(table, target.provider, region) if region else None
        if country != target.country:
            known = country or "no country the region table knows"
            outside.append(f"{region or '<none>'} ({known})")
    if not outside:
        return
    multi = not reported.data_locations and (
        reported.location_type == "multi-region" or reported.location.upper() in _MULTI_REGIONS)
    kind = " multi-region" if multi else (f" {reported.location_type}"
                                          if reported.location_type else "")
    spans = ", which spans several countries," if multi else ""
    raise ResidencyViolation(
        f"{name}: GCS reports bucket {bucket!r} in{kind} location {reported.location!r}"
        f"{spans} and {', '.join(outside)} is not in {target.country}, where the region map "
        f"keeps this location's data ({target.region}). Every read and write of this bucket "
        f"is refused: point the map at a bucket in {target.region}, or move the data and "
        "recreate the bucket there (`residency verify` runs the full check)")


_MULTI_REGIONS = frozenset({"EU", "US", "ASIA"})
