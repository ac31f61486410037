"""Anchors: sealed checkpoints shipped where the audit-log writer cannot rewrite them.

A checkpoint (:class:`~residency_sdk.audit._checkpoint.Checkpoint`) names a log, its head
position, hash and commit counter. Kept next to the log, it proves nothing against
someone who can write the log's file or database: they can roll both back together. An
anchor keeps checkpoints in a store whose writes cannot be undone by the writer's
credentials, so verification can later show that the log was rolled back or truncated to
an earlier state (:func:`~residency_sdk.audit.verify.verify_log` with ``anchors=``).

Each anchor is write-once: one object per checkpoint, named
``<prefix>/<log_id>/<counter:020d>-<seq:020d>.json`` (the commit counter only grows, so
names sort oldest first), never overwritten and never deleted by the SDK. Publishing the
same head state again (a retry after a lost answer) is accepted; a *different* checkpoint
under a name already taken means the log forked or was rolled back and is refused with
:class:`~residency_sdk.errors.AuditUnavailable`.

Anchors (spec for :func:`open_anchor` in brackets):

- :class:`LocalAnchorFolder` (``/path/to/folder``): an append-only folder for the
  embedded default.
- :class:`S3ObjectLockAnchor` (``s3://bucket/prefix?region=R``): S3 Object Lock in
  compliance mode.
- :class:`GCSRetentionAnchor` (``gs://bucket/prefix``): a bucket with a locked retention
  policy.
- :class:`AzureImmutableAnchor` (``azure://container/prefix?account_url=U``): a container
  with an immutability policy.

Cloud SDKs are imported when an anchor is opened, never with this module; a missing one
raises :class:`~residency_sdk.errors.SDKNotInstalled` naming the pip extra. No driver
error escapes: publishing raises :class:`~residency_sdk.errors.AuditUnavailable`, reading
an anchor that does not hold a checkpoint :class:`~residency_sdk.errors.AuditFormatError`
(an unreachable store on read is :class:`~residency_sdk.errors.AuditUnavailable` too).

:class:`Anchorer` is what the writer (:class:`~residency_sdk.audit.AuditLog`) uses: it
publishes to every anchor every N events or T seconds, and at close.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import ValidationError
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from residency_sdk._endpoints import check_endpoint_url, is_loopback_url, normal_url, shown_url
from residency_sdk._fsflags import CREATE_FLAGS, DIR_FLAGS, O_CLOEXEC, O_DIRECTORY, READ_FLAGS
from residency_sdk.audit._checkpoint import Checkpoint
from residency_sdk.errors import (
    AuditFormatError,
    AuditUnavailable,
    ChainBroken,
    EnvironmentOverride,
    InputError,
    ResidencyError,
    SDKNotInstalled,
)

__all__ = [
    "DEFAULT_RETAIN_DAYS",
    "Anchor",
    "AnchorConflict",
    "Anchorer",
    "AzureImmutableAnchor",
    "GCSRetentionAnchor",
    "LocalAnchorFolder",
    "S3ObjectLockAnchor",
    "anchor_key",
    "open_anchor",
]

DEFAULT_RETAIN_DAYS = 2192
"""How long cloud anchors are locked: six years (HIPAA's audit retention), as the region
map's ``retention.audit``."""

_LOG_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_ANCHOR_NAME = re.compile(r"^(\d{20})-(\d{20})\.json$")
_MAX_ANCHOR_BYTES = 64 * 1024  # a checkpoint is a few hundred bytes; anything far larger is not one
_READ_WORKERS = 16  # concurrent object reads when listing a cloud anchor


@runtime_checkable
class Anchor(Protocol):
    """A write-once store of one or more logs' checkpoints."""

    name: str
    """What messages show (``s3://bucket/prefix (region)``, ``folder /path``...)."""

    def publish(self, cp: Checkpoint) -> None:
        """Store ``cp`` under its own name; never overwrite another checkpoint.

        Raises :class:`AuditUnavailable` when it cannot be stored, or when the name is
        taken by a different checkpoint (the log forked or was rolled back).
        """

    def checkpoints(self, log_id: str) -> list[Checkpoint]:
        """Every checkpoint anchored for ``log_id``, oldest first (an overwritten
        object's older versions included, where the store keeps versions).

        Raises :class:`AuditFormatError` naming any entry that is not a checkpoint of
        this log, and :class:`AuditUnavailable` when the store cannot be read.
        """


def anchor_key(cp: Checkpoint, prefix: str = "") -> str:
    """The name of ``cp``'s anchor: ``<prefix>/<log_id>/<counter:020d>-<seq:020d>.json``."""
    return _join(prefix, _log_folder(cp.log_id), f"{cp.counter:020d}-{cp.seq:020d}.json")


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def _log_folder(log_id: str) -> str:
    """``log_id`` when it can safely name a folder or key segment; otherwise refuse."""
    if not _LOG_ID.fullmatch(log_id):
        raise AuditFormatError(
            f"audit log id {log_id!r} cannot name an anchor (letters, digits, '-' and '_' "
            "only): anchor checkpoints exported from a residency audit log")
    return log_id


def _same_state(a: Checkpoint, b: Checkpoint) -> bool:
    """True when two checkpoints record the same head (their ``created`` time and seal may
    differ: a retry builds the checkpoint again)."""
    return (a.log_id, a.seq, a.hash, a.counter, a.key_id) == \
        (b.log_id, b.seq, b.hash, b.counter, b.key_id)


def _parse(where: str, data: bytes, log_id: str, name: str) -> Checkpoint:
    """The checkpoint in anchor ``name`` (shown as ``where``) of ``log_id``; refuse
    anything else, naming it."""
    match = _ANCHOR_NAME.fullmatch(name)
    if match is None:
        raise AuditFormatError(
            f"{where} is not an anchor (anchors are named <counter>-<seq>.json): something "
            "other than the SDK wrote to the anchor store; find out what, and keep the "
            "anchor store writable by the audit writer only")
    if len(data) > _MAX_ANCHOR_BYTES:
        raise AuditFormatError(f"{where} is {len(data):,} bytes, too large for a checkpoint: "
                               "the anchor was replaced; treat the log as tampered with")
    try:
        cp = Checkpoint.model_validate_json(data)
    except (ValidationError, ValueError) as exc:
        first = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise AuditFormatError(
            f"{where} does not hold a residency audit checkpoint ({first}): the anchor was "
            "altered or replaced; treat the log as tampered with and compare it with the "
            "other anchors") from None
    counter, seq = int(match.group(1)), int(match.group(2))
    if (cp.log_id, cp.counter, cp.seq) != (log_id, counter, seq):
        raise AuditFormatError(
            f"{where} holds the checkpoint of log {cp.log_id!r} at counter {cp.counter}, "
            f"position {cp.seq}, not what its name says (log {log_id!r}, counter {counter}, "
            f"position {seq}): the anchor was copied or altered; treat the log as tampered "
            "with")
    return cp


def _ordered(found: Iterable[Checkpoint]) -> list[Checkpoint]:
    return sorted(found, key=lambda c: (c.counter, c.seq))


class AnchorConflict(AuditUnavailable, ChainBroken):
    """A different checkpoint already holds the anchor's name (same log, same commit
    counter): the log was rolled back or forked after that anchor was written.

    Both an :class:`AuditUnavailable` (the head cannot be anchored) and a
    :class:`ChainBroken` with ``kind="rolled_back"`` at the checkpoint's position, so a
    writer can stop appending. Never retried: it does not heal.
    """


def _conflict(anchor: str, where: str, existing: Checkpoint | None,
              cp: Checkpoint) -> AnchorConflict:
    held = (f"position {existing.seq}, hash {existing.hash[:16]}..." if existing is not None
            else "something that is not a checkpoint")
    return AnchorConflict(
        f"anchor {anchor}: {where} already holds a different checkpoint for audit log "
        f"{cp.log_id} at commit counter {cp.counter} ({held}; this head is position "
        f"{cp.seq}, hash {cp.hash[:16]}...). The log was rolled back or forked since that "
        "anchor was written; nothing was overwritten. Stop writing to this log and run "
        "`residency audit verify LOG --anchors ...` to see what changed",
        seq=max(cp.seq, 1), kind="rolled_back")


def _check_existing(anchor: str, where: str, data: bytes, cp: Checkpoint) -> None:
    """Accept an existing anchor holding the same head state; otherwise it is a conflict."""
    try:
        existing = Checkpoint.model_validate_json(data)
    except (ValidationError, ValueError):
        raise _conflict(anchor, where, None, cp) from None
    if not _same_state(existing, cp):
        raise _conflict(anchor, where, existing, cp)


def _unavailable(anchor: str, what: str, exc: BaseException, fix: str) -> AuditUnavailable:
    return AuditUnavailable(f"anchor {anchor}: cannot {what} ({type(exc).__name__}: "
                            f"{_short(exc)}): {fix}")


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# --- the local folder ----------------------------------------------------------------------

_NO_LINK = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.EXDEV}


def _fsync(fd: int) -> None:
    with contextlib.suppress(OSError):  # some filesystems refuse to fsync a directory
        os.fsync(fd)


class LocalAnchorFolder:
    """Checkpoints as read-only files in an append-only folder: the embedded default.

    ``path/<log_id>/<counter:020d>-<seq:020d>.json``, mode 0444. Each file is written under
    a temporary name (``.<name>.<pid>.<random>.tmp``, ignored when reading), fsynced, then
    hard-linked to its name, which fails if the name exists: nothing is ever overwritten,
    and a crash leaves either the whole anchor or none. Then the folder is fsynced. On a
    filesystem without hard links the file is created under its name directly
    (``O_CREAT|O_EXCL``). Symbolic links are never followed: the folder, the log's
    subfolder and every anchor are opened with ``O_NOFOLLOW``, and a link found in their
    place is refused.

    **Where to put it.** The SDK never overwrites or deletes an anchor, but on a plain
    folder the writer's own OS account can: it owns the files. The folder protects against
    a rollback the writer's account cannot perform on it, so it should sit outside the
    writer's trust domain:

    - a folder on another machine or volume that the log's backups never restore (a
      restored backup or a log file copied over is then caught: the classic rollback);
    - ``chattr +a`` on the folder (root sets it; then no entry can be deleted or renamed,
      by anyone but root), with ``chattr +i`` on each anchor by a root-run job (an append-only
      folder does not stop an owner from rewriting a file's content);
    - a WORM mount (NetApp SnapLock, an object-lock-backed NFS gateway...) or a folder of
      another account the writer can add files to but not alter.

    In a ``chattr +a`` folder the temporary names cannot be removed after linking and stay
    behind (one per anchor); they are never read.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = f"folder {self.path}"

    def __repr__(self) -> str:
        return f"LocalAnchorFolder({str(self.path)!r})"

    # --- writing --------------------------------------------------------------------------

    def publish(self, cp: Checkpoint) -> None:
        """Write ``cp`` once; see the class documentation."""
        log = _log_folder(cp.log_id)
        name = f"{cp.counter:020d}-{cp.seq:020d}.json"
        data = cp.to_json().encode()
        where = self.path / log / name
        try:
            root = self._open_root(create=True)
            try:
                sub = self._open_sub(root, log, create=True)
            finally:
                os.close(root)
            try:
                self._write_once(sub, name, data, where, cp)
                _fsync(sub)  # the new entry is durable, not only the file's bytes
            finally:
                os.close(sub)
        except AuditUnavailable:
            raise
        except OSError as exc:
            raise _unavailable(self.name, f"write {where}", exc,
                               "check that the folder exists, is writable by this process, "
                               "and has space") from None

    def _write_once(self, sub: int, name: str, data: bytes, where: Path,
                    cp: Checkpoint) -> None:
        tmp = f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        self._create(sub, tmp, data)
        try:
            os.link(tmp, name, src_dir_fd=sub, dst_dir_fd=sub, follow_symlinks=False)
        except FileExistsError:
            self._compare(sub, name, where, cp)
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
            # No hard links here: create the name itself (a crash may then leave a short
            # file, which reading reports).
            try:
                self._create(sub, name, data)
            except FileExistsError:
                self._compare(sub, name, where, cp)
        finally:
            # Fails in a `chattr +a` folder: the temporary name stays, and is never read.
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=sub)

    @staticmethod
    def _create(sub: int, name: str, data: bytes) -> None:
        fd = os.open(name, CREATE_FLAGS, 0o444, dir_fd=sub)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)

    def _compare(self, sub: int, name: str, where: Path, cp: Checkpoint) -> None:
        try:
            data = self._read(sub, name, where)
        except AuditFormatError as exc:
            raise AuditUnavailable(f"anchor {self.name}: {exc}") from None
        _check_existing(self.name, str(where), data, cp)

    # --- reading --------------------------------------------------------------------------

    def checkpoints(self, log_id: str) -> list[Checkpoint]:
        """Every anchor of ``log_id`` in the folder, oldest first."""
        log = _log_folder(log_id)
        try:
            root = self._open_root(create=False)
            try:
                try:
                    sub = self._open_sub(root, log, create=False)
                except FileNotFoundError:
                    return []  # no anchor of this log yet
            finally:
                os.close(root)
            try:
                found = []
                for entry in sorted(os.listdir(sub)):
                    if entry.startswith(".") and entry.endswith(".tmp"):
                        continue  # a write that never reached its name (or a +a leftover)
                    where = self.path / log / entry
                    found.append(_parse(str(where), self._read(sub, entry, where), log, entry))
                return _ordered(found)
            finally:
                os.close(sub)
        except (AuditFormatError, AuditUnavailable):
            raise
        except OSError as exc:
            raise _unavailable(self.name, "read the anchors", exc,
                               "check that the folder is readable by this process") from None

    def _read(self, sub: int, name: str, where: Path) -> bytes:
        try:
            st = os.stat(name, dir_fd=sub, follow_symlinks=False)
        except FileNotFoundError:
            raise AuditFormatError(f"{where} vanished while being read") from None
        if stat.S_ISLNK(st.st_mode):
            raise AuditFormatError(
                f"{where} is a symbolic link, not an anchor: someone planted it; anchors "
                "are never read through links")
        if not stat.S_ISREG(st.st_mode):
            raise AuditFormatError(f"{where} is not a regular file, so not an anchor")
        fd = os.open(name, READ_FLAGS, dir_fd=sub)
        try:
            chunks = []
            size = 0
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
                size += len(chunk)
                if size > _MAX_ANCHOR_BYTES:
                    break
            return b"".join(chunks)
        finally:
            os.close(fd)

    # --- the folders ----------------------------------------------------------------------

    def _open_root(self, *, create: bool) -> int:
        if os.path.islink(self.path):
            raise AuditUnavailable(
                f"anchor {self.name}: the folder is a symbolic link, which is never followed: "
                "name the real folder")
        if create and not self.path.exists():
            self.path.mkdir(parents=True, exist_ok=True)
            parent = os.open(self.path.parent, os.O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            try:
                _fsync(parent)
            finally:
                os.close(parent)
        try:
            return os.open(self.path, DIR_FLAGS)
        except FileNotFoundError:
            raise AuditUnavailable(
                f"anchor {self.name}: the folder does not exist: check the path (it is "
                "created on the first anchor the writer publishes)") from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise AuditUnavailable(
                    f"anchor {self.name}: not a folder, or a symbolic link (never followed): "
                    "name a real folder") from None
            raise

    def _open_sub(self, root: int, log: str, *, create: bool) -> int:
        if create:
            try:
                os.mkdir(log, 0o755, dir_fd=root)
                _fsync(root)
            except FileExistsError:
                pass
        try:
            return os.open(log, DIR_FLAGS, dir_fd=root)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise AuditUnavailable(
                    f"anchor {self.name}: {self.path / log} is a symbolic link or not a "
                    "folder; anchors are never written or read through links: remove it "
                    "(someone planted it)") from None
            raise


# --- shared cloud helpers ------------------------------------------------------------------


def _lazy_import(module: str, extra: str, what: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise SDKNotInstalled(
            f"the {what} anchor needs an SDK that is not installed ({exc.name or exc}): "
            f"pip install 'residency-sdk[{extra}]'") from None


def _refuse_env_endpoint(name: str, variables: Sequence[str], used: str | None) -> None:
    """An endpoint set in the environment that differs from the one the anchor uses is
    refused: the anchor never takes it, and silently ignoring it would hide that every
    other client in the process goes elsewhere."""
    for var in variables:
        value = os.environ.get(var)
        if not value:
            continue
        if used is not None and normal_url(value) == normal_url(used):
            continue
        raise EnvironmentOverride(
            f"anchor {name}: {var} is set to {shown_url(value)}, but the anchor uses "
            f"{shown_url(used) if used else 'the provider default endpoint'}. Anchors take "
            "their endpoint only from their spec: unset it, or name the endpoint in the "
            "anchor spec (endpoint_url=...)")


def _retain_until(days: int) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(days=days)


def _read_all(keys: Sequence[tuple[str, Any]], read: Callable[[tuple[str, Any]], Checkpoint],
              ) -> list[Checkpoint]:
    """``read`` each entry, a few at a time (anchors are small, and verify reads them all)."""
    if len(keys) <= 1:
        return [read(k) for k in keys]
    with ThreadPoolExecutor(max_workers=min(_READ_WORKERS, len(keys))) as pool:
        return list(pool.map(read, keys))


# --- S3 Object Lock ------------------------------------------------------------------------


class S3ObjectLockAnchor:
    """Checkpoints as S3 objects locked in compliance mode.

    Each anchor is one ``PutObject`` with ``ObjectLockMode=COMPLIANCE`` and a retain-until
    date ``retain_days`` ahead (six years by default), a SHA-256 checksum S3 verifies, and
    ``If-None-Match: *`` so a key is created once (on botocore too old to send it, a
    ``HeadObject`` is asked first, which leaves a race between two writers of the same
    key). ``HeadObject`` then confirms that S3 locked that version in compliance mode.
    Before the first publish or read, the bucket must report Object Lock enabled
    (``GetObjectLockConfiguration``); otherwise every call is refused.

    What S3 guarantees: a version locked in compliance mode cannot be deleted or have its
    retention shortened by anyone, root account included, until the date passes. A
    ``PutObject`` without the condition can still add a *newer* version under the same
    key (and a plain delete adds a delete marker), so :meth:`checkpoints` lists every
    version: an overwritten anchor still shows its older version.

    Permissions: ``s3:PutObject``, ``s3:PutObjectRetention``, ``s3:GetObjectRetention``
    (HeadObject only shows the lock with it), ``s3:GetBucketObjectLockConfiguration``,
    ``s3:ListBucketVersions``, ``s3:GetObjectVersion``. Grant none that delete or bypass
    governance.

    Endpoint: ``endpoint_url`` (https, or http to loopback for an emulator), else the
    region's S3 endpoint. ``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3`` and config-file
    endpoints are never used; one set to another endpoint is refused
    (:class:`EnvironmentOverride`). Credentials: boto3's chain, or ``profile``.
    """

    def __init__(self, bucket: str, prefix: str = "", *, region: str,
                 endpoint_url: str | None = None, retain_days: int = DEFAULT_RETAIN_DAYS,
                 profile: str | None = None) -> None:
        if not bucket:
            raise InputError("an S3 anchor needs a bucket: s3://BUCKET/PREFIX?region=R")
        if not region:
            raise InputError(f"S3 anchor s3://{bucket}: name the bucket's region "
                             "(s3://BUCKET/PREFIX?region=eu-central-1)")
        _check_retain_days(retain_days)
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.region = region
        self.retain_days = retain_days
        self.endpoint_url = check_endpoint_url(endpoint_url) if endpoint_url else None
        shown = f" via {shown_url(self.endpoint_url)}" if self.endpoint_url else ""
        self.name = f"s3://{_join(bucket, self.prefix)} ({region}){shown}"
        boto3 = _lazy_import("boto3", "aws", "S3")
        config_mod = _lazy_import("botocore.config", "aws", "S3")
        self._errors = _lazy_import("botocore.exceptions", "aws", "S3")
        _refuse_env_endpoint(self.name, ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"),
                             self.endpoint_url)
        s3_options: dict[str, Any] = {"use_accelerate_endpoint": False}
        if self.endpoint_url:
            s3_options["addressing_style"] = "path"
        config = config_mod.Config(
            region_name=region, connect_timeout=5, read_timeout=30,
            retries={"total_max_attempts": 3, "mode": "standard"},
            s3=s3_options, ignore_configured_endpoint_urls=True)
        try:
            session = boto3.session.Session(profile_name=profile)
            self._client: Any = session.client("s3", region_name=region,
                                               endpoint_url=self.endpoint_url, config=config)
        except self._errors.BotoCoreError as exc:
            raise InputError(f"anchor {self.name}: cannot open an S3 client "
                             f"({type(exc).__name__}: {_short(exc)}): check the AWS profile "
                             "and configuration") from None
        operation = self._client.meta.service_model.operation_model("PutObject")
        self._conditional = "IfNoneMatch" in operation.input_shape.members
        self._checked = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"S3ObjectLockAnchor(bucket={self.bucket!r}, prefix={self.prefix!r}, "
                f"region={self.region!r})")

    @property
    def client(self) -> Any:
        """The boto3 S3 client (for event hooks in tests)."""
        return self._client

    def _code(self, exc: Any) -> str:
        return str(exc.response.get("Error", {}).get("Code", ""))

    def _driver_errors(self) -> tuple[type[BaseException], ...]:
        return (self._errors.BotoCoreError, self._errors.ClientError)

    def _check_bucket(self) -> None:
        """Refuse a bucket without Object Lock (asked once per anchor object)."""
        if self._checked:
            return
        with self._lock:
            if self._checked:
                return
            fix = (f"anchor to a bucket created with Object Lock (`aws s3api create-bucket "
                   f"--bucket {self.bucket} --object-lock-enabled-for-bucket`, boto3 "
                   "ObjectLockEnabledForBucket=True; the location's infra stack provisions "
                   "its audit bucket that way)")
            try:
                answer = self._client.get_object_lock_configuration(Bucket=self.bucket)
            except self._errors.ClientError as exc:
                if self._code(exc) == "ObjectLockConfigurationNotFoundError":
                    raise AuditUnavailable(
                        f"anchor {self.name}: bucket {self.bucket!r} does not have S3 Object "
                        f"Lock enabled, so anchors there could be deleted or overwritten: "
                        f"{fix}") from None
                raise self._failure("check the bucket's Object Lock configuration",
                                    exc) from None
            except self._errors.BotoCoreError as exc:
                raise self._failure("check the bucket's Object Lock configuration",
                                    exc) from None
            enabled = answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
            if enabled != "Enabled":
                raise AuditUnavailable(
                    f"anchor {self.name}: bucket {self.bucket!r} reports Object Lock "
                    f"{enabled or 'not configured'}: {fix}")
            self._checked = True

    def _failure(self, what: str, exc: BaseException) -> AuditUnavailable:
        code = self._code(exc) if isinstance(exc, self._errors.ClientError) else ""
        if code == "NoSuchBucket":
            fix = f"bucket {self.bucket!r} does not exist: create it with Object Lock enabled"
        elif code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                      "ExpiredToken"):
            fix = ("the credentials were refused: grant the anchor's permissions "
                   "(see S3ObjectLockAnchor) to this process's AWS identity")
        else:
            fix = "check the endpoint, the network and the credentials, then retry"
        return _unavailable(self.name, what, exc, fix)

    def publish(self, cp: Checkpoint) -> None:
        """Put ``cp`` once, locked in compliance mode; confirm the lock S3 applied."""
        key = anchor_key(cp, self.prefix)
        self._check_bucket()
        body = cp.to_json().encode()
        checksum = base64.b64encode(hashlib.sha256(body).digest()).decode()
        until = _retain_until(self.retain_days)
        where = f"s3://{self.bucket}/{key}"
        try:
            if not self._conditional and self._exists(key):
                self._compare(key, where, cp)
                return
            extra = {"IfNoneMatch": "*"} if self._conditional else {}
            answer = self._client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType="application/json",
                ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until,
                ChecksumAlgorithm="SHA256", ChecksumSHA256=checksum, **extra)
        except self._errors.ClientError as exc:
            if self._code(exc) in ("PreconditionFailed", "ConditionalRequestConflict"):
                self._compare(key, where, cp)
                return
            raise self._failure(f"write {where}", exc) from None
        except self._errors.BotoCoreError as exc:
            raise self._failure(f"write {where}", exc) from None
        if answer.get("ChecksumSHA256") not in (None, checksum):
            raise AuditUnavailable(
                f"anchor {self.name}: S3 stored {where} with SHA-256 "
                f"{answer.get('ChecksumSHA256')}, not the {checksum} sent: retry, and check "
                "for a proxy altering requests")
        self._confirm_lock(key, answer.get("VersionId"), where, until)

    def _exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
            return True
        except self._errors.ClientError as exc:
            if self._code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def _compare(self, key: str, where: str, cp: Checkpoint) -> None:
        try:
            data = self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self._driver_errors() as exc:
            raise self._failure(f"read the existing {where}", exc) from None
        _check_existing(self.name, where, data, cp)

    def _confirm_lock(self, key: str, version: str | None, where: str,
                      until: datetime) -> None:
        try:
            extra = {"VersionId": version} if version else {}
            head = self._client.head_object(Bucket=self.bucket, Key=key, **extra)
        except self._driver_errors() as exc:
            raise self._failure(f"confirm the lock of {where}", exc) from None
        mode = head.get("ObjectLockMode")
        kept: datetime | None = head.get("ObjectLockRetainUntilDate")
        if mode != "COMPLIANCE" or kept is None or kept < until - timedelta(seconds=1):
            raise AuditUnavailable(
                f"anchor {self.name}: S3 reports {where} locked in mode {mode!r} until "
                f"{kept}, not COMPLIANCE until {until:%Y-%m-%d}: the anchor can be removed. "
                "Give this identity s3:GetObjectRetention (HeadObject hides the lock "
                "without it) and check the bucket's Object Lock settings")

    def checkpoints(self, log_id: str) -> list[Checkpoint]:
        """Every version of every anchor of ``log_id``, oldest first."""
        folder = _join(self.prefix, _log_folder(log_id)) + "/"
        self._check_bucket()
        versions: list[tuple[str, Any]] = []
        try:
            pages = self._client.get_paginator("list_object_versions").paginate(
                Bucket=self.bucket, Prefix=folder)
            for page in pages:
                versions.extend((v["Key"], v.get("VersionId")) for v in page.get("Versions", []))
        except self._driver_errors() as exc:
            raise self._failure(f"list s3://{self.bucket}/{folder}", exc) from None

        def read(item: tuple[str, Any]) -> Checkpoint:
            key, version = item
            where = f"s3://{self.bucket}/{key}" + (f" (version {version})" if version else "")
            try:
                extra = {"VersionId": version} if version and version != "null" else {}
                data = self._client.get_object(Bucket=self.bucket, Key=key, **extra)["Body"] \
                    .read(_MAX_ANCHOR_BYTES + 1)
            except self._driver_errors() as exc:
                raise self._failure(f"read {where}", exc) from None
            return _parse(where, data, log_id, key[len(folder):])

        return _ordered(_read_all(versions, read))


def _check_retain_days(days: int) -> None:
    if not isinstance(days, int) or isinstance(days, bool) or days < 1:
        raise InputError(f"retain_days must be a whole number of days >= 1, got {days!r} "
                         f"(default {DEFAULT_RETAIN_DAYS}: six years)")


# --- GCS locked retention ------------------------------------------------------------------

_GCS_DEFAULT_ENDPOINT = "https://storage.googleapis.com"


class GCSRetentionAnchor:
    """Checkpoints as objects in a GCS bucket whose retention policy is locked.

    Each anchor is uploaded with ``ifGenerationMatch=0`` (created only if the name has
    no live object) and a CRC32C checksum. Before the first publish or read the bucket
    must report a retention policy that is locked (``retentionPolicy.isLocked``);
    otherwise every call is refused.

    What GCS guarantees: in a bucket with a locked retention policy no object can be
    deleted or replaced until it is older than the retention period, and the policy
    can be neither removed nor shortened. Pick a period of at least six years.

    The emulator (gcp-storage-emulator) enforces neither: it ignores ``ifGenerationMatch``
    and retention, and answers ``lockRetentionPolicy`` with 501 (docs/audit.md, "Anchors").

    Endpoint: ``endpoint_url`` (https, or http to loopback for an emulator, which is
    reached anonymously), else ``https://storage.googleapis.com``, always passed
    explicitly; ``STORAGE_EMULATOR_HOST``/``API_ENDPOINT_OVERRIDE`` set to another endpoint
    are refused. Credentials: Application Default Credentials, ``project`` or
    ``GOOGLE_CLOUD_PROJECT``.
    """

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 project: str | None = None) -> None:
        if not bucket:
            raise InputError("a GCS anchor needs a bucket: gs://BUCKET/PREFIX")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = check_endpoint_url(endpoint_url) if endpoint_url else None
        api = self.endpoint_url or _GCS_DEFAULT_ENDPOINT
        shown = f" via {shown_url(self.endpoint_url)}" if self.endpoint_url else ""
        self.name = f"gs://{_join(bucket, self.prefix)}{shown}"
        self._storage = _lazy_import("google.cloud.storage", "gcp", "GCS")
        options_mod = _lazy_import("google.api_core.client_options", "gcp", "GCS")
        self._gexc = _lazy_import("google.api_core.exceptions", "gcp", "GCS")
        self._gauth = _lazy_import("google.auth.exceptions", "gcp", "GCS")
        _refuse_env_endpoint(self.name, ("STORAGE_EMULATOR_HOST", "API_ENDPOINT_OVERRIDE"), api)
        self._options = options_mod.ClientOptions(api_endpoint=api)
        self._project = project
        self._client: Any = None  # built on first use: opening never resolves credentials
        self._client_lock = threading.Lock()
        self._checked = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"GCSRetentionAnchor(bucket={self.bucket!r}, prefix={self.prefix!r})"

    @property
    def client(self) -> Any:
        """The google-cloud-storage client (built on first use)."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = self._open_client()
        return self._client

    def _open_client(self) -> Any:
        try:
            if self.endpoint_url and is_loopback_url(self.endpoint_url):
                # An emulator on this machine: anonymous, never real credentials.
                anonymous = _lazy_import("google.auth.credentials", "gcp", "GCS")
                return self._storage.Client(
                    project=self._project or os.environ.get("GOOGLE_CLOUD_PROJECT",
                                                            "residency-emulator"),
                    credentials=anonymous.AnonymousCredentials(), client_options=self._options)
            return self._storage.Client(project=self._project, client_options=self._options)
        except (self._gauth.GoogleAuthError, OSError) as exc:
            raise AuditUnavailable(
                f"anchor {self.name}: no Google credentials or project ({type(exc).__name__}): "
                "configure Application Default Credentials and GOOGLE_CLOUD_PROJECT (or "
                "project= in the anchor spec)") from None

    def _driver_errors(self) -> tuple[type[BaseException], ...]:
        return (self._gexc.GoogleAPIError, self._gauth.GoogleAuthError, OSError)

    def _failure(self, what: str, exc: BaseException) -> AuditUnavailable:
        if isinstance(exc, self._gexc.NotFound):
            fix = f"bucket {self.bucket!r} does not exist: create it with a locked retention policy"
        elif isinstance(exc, (self._gexc.Forbidden, self._gexc.Unauthorized)):
            fix = ("the credentials were refused: grant storage.objects.create, get and list "
                   "(and storage.buckets.get) to this identity")
        else:
            fix = "check the endpoint, the network and the credentials, then retry"
        return _unavailable(self.name, what, exc, fix)

    def _check_bucket(self) -> None:
        if self._checked:
            return
        with self._lock:
            if self._checked:
                return
            try:
                bucket = self.client.get_bucket(self.bucket)
            except self._driver_errors() as exc:
                raise self._failure("read the bucket's retention policy", exc) from None
            if not bucket.retention_policy_locked:
                state = ("an unlocked retention policy" if bucket.retention_period
                         else "no retention policy")
                raise AuditUnavailable(
                    f"anchor {self.name}: bucket {self.bucket!r} has {state}, so anchors "
                    "there could be deleted or replaced: anchor to a bucket with a locked "
                    "retention policy (`gcloud storage buckets update gs://"
                    f"{self.bucket} --retention-period=6y` then `--lock-retention-period`; "
                    "the location's infra stack provisions its audit bucket that way)")
            self._checked = True

    def publish(self, cp: Checkpoint) -> None:
        """Create ``cp``'s object only if its name has no live object."""
        key = anchor_key(cp, self.prefix)
        self._check_bucket()
        where = f"gs://{self.bucket}/{key}"
        blob = self.client.bucket(self.bucket).blob(key)
        try:
            blob.upload_from_string(cp.to_json().encode(), content_type="application/json",
                                    if_generation_match=0, checksum="crc32c")
        except self._gexc.PreconditionFailed:
            try:
                data = self.client.bucket(self.bucket).blob(key).download_as_bytes()
            except self._driver_errors() as exc:
                raise self._failure(f"read the existing {where}", exc) from None
            _check_existing(self.name, where, data, cp)
        except self._driver_errors() as exc:
            raise self._failure(f"write {where}", exc) from None
        except ValueError as exc:  # google-resumable-media: checksum mismatch
            raise _unavailable(self.name, f"write {where}", exc, "retry") from None

    def checkpoints(self, log_id: str) -> list[Checkpoint]:
        """Every generation of every anchor of ``log_id``, oldest first."""
        folder = _join(self.prefix, _log_folder(log_id)) + "/"
        self._check_bucket()
        try:
            entries = [(b.name, b.generation) for b in
                       self.client.list_blobs(self.bucket, prefix=folder, versions=True)]
        except self._driver_errors() as exc:
            raise self._failure(f"list gs://{self.bucket}/{folder}", exc) from None
        bucket = self.client.bucket(self.bucket)

        def read(item: tuple[str, Any]) -> Checkpoint:
            name, generation = item
            where = f"gs://{self.bucket}/{name}" + \
                (f" (generation {generation})" if generation else "")
            try:
                data = bucket.blob(name, generation=generation).download_as_bytes()
            except self._driver_errors() as exc:
                raise self._failure(f"read {where}", exc) from None
            return _parse(where, data, log_id, name[len(folder):])

        return _ordered(_read_all(entries, read))


# --- Azure immutability --------------------------------------------------------------------

AZURE_CONNECTION_STRING_ENV = ("RESIDENCY_AZURE_CONNECTION_STRING",
                               "AZURE_STORAGE_CONNECTION_STRING")


def _parse_connection_string(text: str) -> dict[str, str]:
    parts = {}
    for item in text.split(";"):
        if "=" in item:
            key, _, value = item.partition("=")
            parts[key.strip().lower()] = value.strip()
    return parts


def _azure_account_of(url: str) -> str | None:
    """The storage account an account URL serves, when its form says so."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if is_loopback_url(url):
        return parts.path.strip("/").split("/", 1)[0] or None
    if ".blob.core." in host:
        return host.split(".", 1)[0]
    return None


class AzureImmutableAnchor:
    """Checkpoints as blobs in an Azure container under an immutability policy.

    Each anchor is uploaded with ``overwrite=False`` (``If-None-Match: *``): a name is
    created once. Before the first publish or read, the container's properties are read:

    - version-level immutability (``immutable_storage_with_versioning_enabled``): each
      anchor is uploaded with its own *locked* immutability policy expiring in
      ``retain_days`` (the equivalent of S3's compliance mode), and the policy Azure
      reports back is checked;
    - else a container-level time-based retention policy (``has_immutability_policy``):
      accepted, but **the data plane cannot tell whether that policy is locked or only
      unlocked** (an unlocked policy can be removed by the account's administrators), nor
      its period: lock it with the management plane (``az storage container
      immutability-policy lock``), which the location's infra stack does;
    - else refused, unless ``require_immutable=False``: then the anchor is only as good as
      the account's access control (for emulators; Azurite implements neither
      immutability nor legal holds and reports every container as mutable).

    What Azure guarantees under a locked policy: no blob can be modified or deleted until
    its retention expires, by anyone.

    Endpoint and credentials: ``account_url`` (https, or http to loopback for Azurite)
    with the credential of ``RESIDENCY_AZURE_CONNECTION_STRING`` (or
    ``AZURE_STORAGE_CONNECTION_STRING``) when set — only its key or SAS is used, and one
    naming another account or endpoint is refused (:class:`EnvironmentOverride`) — else
    ``DefaultAzureCredential`` (azure-identity). Without ``account_url`` the connection
    string names the account and endpoint.
    """

    def __init__(self, container: str, prefix: str = "", *, account_url: str | None = None,
                 retain_days: int = DEFAULT_RETAIN_DAYS, require_immutable: bool = True,
                 raw_request_hook: Callable[[Any], None] | None = None) -> None:
        """``raw_request_hook`` is azure-core's per-request callback (diagnostics, tests)."""
        if not container:
            raise InputError("an Azure anchor needs a container: azure://CONTAINER/PREFIX")
        _check_retain_days(retain_days)
        self.container = container
        self.prefix = prefix.strip("/")
        self.retain_days = retain_days
        self.require_immutable = require_immutable
        self.account_url = check_endpoint_url(account_url) if account_url else None
        blob = _lazy_import("azure.storage.blob", "azure", "Azure Blob")
        self._aexc = _lazy_import("azure.core.exceptions", "azure", "Azure Blob")
        self._policy_type = blob.ImmutabilityPolicy
        options: dict[str, Any] = {"retry_total": 2, "connection_timeout": 5,
                                   "read_timeout": 30}
        if raw_request_hook is not None:
            options["raw_request_hook"] = raw_request_hook
        source, conn = "", None
        for var in AZURE_CONNECTION_STRING_ENV:
            if os.environ.get(var):
                source, conn = var, os.environ[var]
                break
        self._container_client: Any = None
        self._open: Callable[[], Any]
        try:
            if conn is not None:
                service = self._from_connection_string(blob, conn, source, options)
                self.account_url = self.account_url or str(service.url).rstrip("/")
                self._container_client = service.get_container_client(container)
            elif self.account_url:
                account_url = self.account_url

                def with_identity() -> Any:
                    # Imported and resolved on first use: opening needs no credentials.
                    identity = _lazy_import("azure.identity", "azure",
                                            "Azure Blob (DefaultAzureCredential: azure-identity)")
                    return blob.BlobServiceClient(
                        account_url, credential=identity.DefaultAzureCredential(),
                        **options).get_container_client(container)

                self._open = with_identity
            else:
                raise InputError(
                    f"Azure anchor azure://{container}: name the account "
                    "(azure://CONTAINER/PREFIX?account_url=https://ACCOUNT.blob.core."
                    f"windows.net) or set {AZURE_CONNECTION_STRING_ENV[0]}")
        except ValueError as exc:
            if isinstance(exc, ResidencyError):
                raise
            raise InputError(f"Azure anchor azure://{container}: the connection string in "
                             f"{source} cannot be used ({type(exc).__name__}); give "
                             "AccountName and AccountKey or a SharedAccessSignature") from None
        self.name = f"azure://{_join(container, self.prefix)} at " \
            f"{shown_url(self.account_url or '')}"
        self._client_lock = threading.Lock()
        self._versioned = False
        self._checked = False
        self._lock = threading.Lock()

    def _from_connection_string(self, blob: Any, conn: str, source: str,
                                options: dict[str, Any]) -> Any:
        """A client of ``account_url`` with only the string's credential; refuse a string
        naming another account or endpoint (it would send the anchors elsewhere)."""
        parts = _parse_connection_string(conn)
        if not self.account_url:
            return blob.BlobServiceClient.from_connection_string(conn, **options)
        ours = _azure_account_of(self.account_url)
        named = parts.get("accountname")
        if named and ours and named.lower() != ours.lower():
            raise EnvironmentOverride(
                f"Azure anchor azure://{self.container}: {source} holds the credential of "
                f"storage account {named!r}, but the anchor's account_url "
                f"{shown_url(self.account_url)} is account {ours!r}: set {source} to that "
                "account's connection string, or unset it to use DefaultAzureCredential")
        endpoint = parts.get("blobendpoint")
        if endpoint and normal_url(endpoint) != normal_url(self.account_url):
            raise EnvironmentOverride(
                f"Azure anchor azure://{self.container}: {source} names blob endpoint "
                f"{shown_url(endpoint)}, not the anchor's account_url "
                f"{shown_url(self.account_url)}: remove BlobEndpoint from it")
        kept = [f"{key}={parts[low]}" for key, low in (
            ("AccountName", "accountname"), ("AccountKey", "accountkey"),
            ("SharedAccessSignature", "sharedaccesssignature")) if low in parts]
        if not kept:
            raise InputError(f"Azure anchor azure://{self.container}: the connection string "
                             f"in {source} holds no AccountKey or SharedAccessSignature")
        if named is None and ours:
            kept.insert(0, f"AccountName={ours}")
        pinned = ";".join([f"BlobEndpoint={self.account_url}", *kept])
        return blob.BlobServiceClient.from_connection_string(pinned, **options)

    def __repr__(self) -> str:
        return (f"AzureImmutableAnchor(container={self.container!r}, prefix={self.prefix!r}, "
                f"account_url={shown_url(self.account_url or '')!r})")

    @property
    def container_client(self) -> Any:
        """The azure-storage-blob ContainerClient (built on first use with
        DefaultAzureCredential)."""
        if self._container_client is None:
            with self._client_lock:
                if self._container_client is None:
                    self._container_client = self._open()
        return self._container_client

    def _failure(self, what: str, exc: BaseException) -> AuditUnavailable:
        if isinstance(exc, self._aexc.ResourceNotFoundError):
            fix = (f"container {self.container!r} does not exist: create it with an "
                   "immutability policy")
        elif isinstance(exc, self._aexc.ClientAuthenticationError):
            fix = "the credentials were refused: check the account key, SAS or identity"
        else:
            fix = "check the account URL, the network and the credentials, then retry"
        return _unavailable(self.name, what, exc, fix)

    def _check_container(self) -> None:
        if self._checked:
            return
        with self._lock:
            if self._checked:
                return
            try:
                props = self.container_client.get_container_properties()
            except self._aexc.AzureError as exc:
                raise self._failure("read the container's properties", exc) from None
            self._versioned = bool(props.get("immutable_storage_with_versioning_enabled"))
            if self.require_immutable and not self._versioned and \
                    not props.get("has_immutability_policy"):
                raise AuditUnavailable(
                    f"anchor {self.name}: container {self.container!r} has no immutability "
                    "policy, so anchors there could be deleted or overwritten: give it a "
                    "locked time-based retention policy (`az storage container "
                    "immutability-policy create --period 2192` then `... lock`) or enable "
                    "version-level immutability; the location's infra stack provisions its "
                    "audit container that way")
            self._checked = True

    def publish(self, cp: Checkpoint) -> None:
        """Create ``cp``'s blob only if the name is free (locked per blob where the
        container supports version-level immutability)."""
        key = anchor_key(cp, self.prefix)
        self._check_container()
        where = f"{self.container}/{key}"
        client = self.container_client.get_blob_client(key)
        extra: dict[str, Any] = {}
        until = _retain_until(self.retain_days)
        if self._versioned:
            extra["immutability_policy"] = self._policy_type(expiry_time=until,
                                                             policy_mode="Locked")
        try:
            client.upload_blob(cp.to_json().encode(), overwrite=False, **extra)
        except self._aexc.ResourceExistsError:
            try:
                data = client.download_blob().readall()
            except self._aexc.AzureError as exc:
                raise self._failure(f"read the existing {where}", exc) from None
            _check_existing(self.name, where, data, cp)
            return
        except self._aexc.AzureError as exc:
            raise self._failure(f"write {where}", exc) from None
        if self._versioned:
            try:
                policy = client.get_blob_properties().immutability_policy
            except self._aexc.AzureError as exc:
                raise self._failure(f"confirm the lock of {where}", exc) from None
            mode = str(getattr(policy, "policy_mode", None) or "").lower()
            if mode != "locked":
                raise AuditUnavailable(
                    f"anchor {self.name}: Azure reports {where} with immutability policy "
                    f"{mode or 'none'}, not locked: check the container's version-level "
                    "immutability settings")

    def checkpoints(self, log_id: str) -> list[Checkpoint]:
        """Every version of every anchor of ``log_id``, oldest first."""
        folder = _join(self.prefix, _log_folder(log_id)) + "/"
        self._check_container()
        try:
            entries = [(b.name, b.get("version_id")) for b in self.container_client.list_blobs(
                name_starts_with=folder, include=["versions"])]
        except self._aexc.AzureError as exc:
            raise self._failure(f"list {self.container}/{folder}", exc) from None

        def read(item: tuple[str, Any]) -> Checkpoint:
            name, version = item
            where = f"{self.container}/{name}" + (f" (version {version})" if version else "")
            try:
                data = self.container_client.get_blob_client(name, version_id=version) \
                    .download_blob().readall()
            except self._aexc.AzureError as exc:
                raise self._failure(f"read {where}", exc) from None
            return _parse(where, data, log_id, name[len(folder):])

        return _ordered(_read_all(entries, read))


# --- open_anchor ---------------------------------------------------------------------------

_QUERY_KEYS = {
    "s3": {"region", "endpoint_url", "retain_days", "profile"},
    "gs": {"endpoint_url", "project"},
    "azure": {"account_url", "retain_days", "require_immutable"},
}
_SCHEMES = "a folder path, s3://BUCKET/PREFIX?region=R, gs://BUCKET/PREFIX or " \
    "azure://CONTAINER/PREFIX?account_url=U"


def open_anchor(spec: str) -> Anchor:
    """The anchor a spec names.

    - a folder path (or ``file:///path``): :class:`LocalAnchorFolder`;
    - ``s3://bucket/prefix?region=R[&endpoint_url=U][&retain_days=N][&profile=P]``:
      :class:`S3ObjectLockAnchor`;
    - ``gs://bucket/prefix[?endpoint_url=U][&project=P]``: :class:`GCSRetentionAnchor`;
    - ``azure://container/prefix?account_url=U[&retain_days=N][&require_immutable=false]``:
      :class:`AzureImmutableAnchor`.

    Credentials come from each provider's usual chain, endpoints only from the spec.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"empty anchor spec {spec!r}: use {_SCHEMES}")
    spec = spec.strip()
    if "://" not in spec:
        return LocalAnchorFolder(spec)
    parts = urlsplit(spec)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return LocalAnchorFolder(unquote(parts.path))
    if scheme not in _QUERY_KEYS:
        raise InputError(f"anchor spec {shown_url(spec)!r}: unknown scheme {scheme!r}: use "
                         f"{_SCHEMES}")
    where = f"{scheme}://{parts.netloc}{parts.path}"
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise InputError(f"anchor spec {where!r}: the query cannot be parsed: use "
                         "?name=value&name=value") from None
    query: dict[str, str] = {}
    for key, value in pairs:
        if key not in _QUERY_KEYS[scheme]:
            raise InputError(f"anchor spec {where!r}: unknown setting {key!r}: a {scheme}:// "
                             f"anchor takes {', '.join(sorted(_QUERY_KEYS[scheme]))}")
        if key in query:
            raise InputError(f"anchor spec {where!r}: {key!r} is given twice")
        query[key] = value
    bucket = parts.netloc
    if not bucket or "@" in bucket:
        raise InputError(f"anchor spec {where!r}: name the bucket or container right after "
                         f"{scheme}:// (no credentials in the spec)")
    prefix = unquote(parts.path).strip("/")
    retain = _retain_days_of(query, where)
    if scheme == "s3":
        if not query.get("region"):
            raise InputError(f"anchor spec {where!r}: name the bucket's region "
                             f"(s3://{bucket}/{prefix}?region=eu-central-1)")
        return S3ObjectLockAnchor(bucket, prefix, region=query["region"],
                                  endpoint_url=query.get("endpoint_url") or None,
                                  retain_days=retain, profile=query.get("profile") or None)
    if scheme == "gs":
        return GCSRetentionAnchor(bucket, prefix, endpoint_url=query.get("endpoint_url") or None,
                                  project=query.get("project") or None)
    require = query.get("require_immutable", "true").lower()
    if require not in ("true", "false"):
        raise InputError(f"anchor spec {where!r}: require_immutable is true or false, got "
                         f"{query['require_immutable']!r}")
    return AzureImmutableAnchor(bucket, prefix, account_url=query.get("account_url") or None,
                                retain_days=retain, require_immutable=require == "true")


def _retain_days_of(query: dict[str, str], where: str) -> int:
    if "retain_days" not in query:
        return DEFAULT_RETAIN_DAYS
    try:
        days = int(query["retain_days"])
    except ValueError:
        days = 0
    if days < 1:
        raise InputError(f"anchor spec {where!r}: retain_days must be a whole number of days "
                         f">= 1, got {query['retain_days']!r}")
    return days


# --- the schedule --------------------------------------------------------------------------


class Anchorer:
    """Publishes the log's head to every anchor every ``every_events`` events or
    ``every_seconds`` seconds, and at close.

    The writer calls :meth:`after_commit` after each durable commit and :meth:`close` when
    it closes. The first commit a process makes is anchored at once (a log rolled back to
    before this process's writes is then caught); after that, an anchor is due when the
    head has moved ``every_events`` positions, or moved at all and ``every_seconds`` have
    passed, since the last one. Time is only looked at when :meth:`after_commit` is called
    (the writer also calls it on an idle tick, so a moved head is anchored within
    ``every_seconds``); a head that did not move is never anchored again.

    Cost when not due: a subtraction, a comparison and a clock read (``after_commit`` is on
    the audit hot path). When due, one thread publishes while the others carry on (a
    commit never waits behind another thread's anchoring); ``make_checkpoint`` is called
    only then.

    Failures: each anchor is tried ``retries`` times with a short backoff; an anchor that
    still fails is reported as :class:`AuditUnavailable` naming it (the others are still
    published). The anchorer then waits until the next anchor is due again before trying,
    so a dead anchor store does not slow every commit. A conflicting anchor (another
    checkpoint under the same name: the log was rolled back or forked) is not retried.
    What to do with the error is the writer's decision (:class:`~residency_sdk.audit.AuditLog`
    documents it): the events are already durable in the log when it is raised.
    """

    def __init__(self, anchors: Iterable[Anchor], *, every_events: int = 1000,
                 every_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 retries: int = 3, retry_wait: float = 0.2) -> None:
        self.anchors: tuple[Anchor, ...] = tuple(anchors)
        if not isinstance(every_events, int) or every_events < 1:
            raise InputError(f"anchor every_events must be a whole number >= 1, got "
                             f"{every_events!r}")
        if not every_seconds > 0:
            raise InputError(f"anchor every_seconds must be > 0, got {every_seconds!r}")
        if retries < 1:
            raise InputError(f"anchor retries must be >= 1, got {retries!r}")
        self.every_events = every_events
        self.every_seconds = float(every_seconds)
        self._clock = clock
        self._retries = retries
        self._retry_wait = retry_wait
        self._lock = threading.Lock()
        # Hot-path state: events are counted from `_count_from`; time is due at `_due_at`.
        # -every_events makes the first commit due.
        self._count_from = -every_events
        self._due_at = clock() + self.every_seconds
        self._last: Checkpoint | None = None

    def __repr__(self) -> str:
        return (f"Anchorer({[a.name for a in self.anchors]!r}, every_events="
                f"{self.every_events}, every_seconds={self.every_seconds})")

    @property
    def last(self) -> Checkpoint | None:
        """The last checkpoint published to every anchor (None before the first)."""
        return self._last

    def after_commit(self, make_checkpoint: Callable[[], Checkpoint], head_seq: int) -> None:
        """Publish when due (see the class documentation); cheap otherwise."""
        if head_seq - self._count_from < self.every_events and self._clock() < self._due_at:
            return
        if not self.anchors or not self._lock.acquire(blocking=False):
            return  # another thread is publishing: it covers this head or a newer one
        try:
            if head_seq - self._count_from < self.every_events and \
                    self._clock() < self._due_at:
                return  # published by another thread meanwhile
            if self._last is not None and head_seq <= self._last.seq:
                # Due by time only, and the head has not moved since the last anchor.
                self._due_at = self._clock() + self.every_seconds
                return
            self._publish(make_checkpoint, head_seq)
        finally:
            self._lock.release()

    def close(self, make_checkpoint: Callable[[], Checkpoint]) -> None:
        """Publish a final anchor if the head moved since the last one."""
        if not self.anchors:
            return
        with self._lock:
            cp = make_checkpoint()
            if self._last is not None and _same_state(cp, self._last):
                return
            self._publish(lambda: cp, cp.seq)

    def _publish(self, make_checkpoint: Callable[[], Checkpoint], head_seq: int) -> None:
        """Publish to every anchor (caller holds the lock)."""
        try:
            cp = make_checkpoint()
        except Exception:
            # The head could not be read: wait for the next due point, as after a failed
            # publish, rather than retrying on every commit.
            self._due_at = self._clock() + self.every_seconds
            self._count_from = head_seq
            raise
        failed: list[str] = []
        conflict: AuditUnavailable | None = None
        for anchor in self.anchors:
            try:
                self._publish_one(anchor, cp)
            except AnchorConflict as exc:
                conflict = conflict or exc
            except AuditUnavailable as exc:
                failed.append(str(exc))
        now = self._clock()
        self._due_at = now + self.every_seconds
        # Counting restarts either way: a failed anchor is retried when the next one is due.
        self._count_from = max(head_seq, cp.seq)
        if conflict is not None:
            raise conflict
        if failed:
            raise AuditUnavailable(
                f"the audit log's head (position {cp.seq}, counter {cp.counter}) could not "
                f"be anchored: {'; '.join(failed)}. The events are durable in the log; until "
                "an anchor is published, a rollback of the log to a state after the last "
                "anchor is not detectable: fix the anchor store named above (it is retried "
                "when the next anchor is due)")
        self._last = cp

    def _publish_one(self, anchor: Anchor, cp: Checkpoint) -> None:
        def attempt() -> None:
            try:
                anchor.publish(cp)
            except (AuditUnavailable, AuditFormatError):
                raise
            except Exception as exc:  # an anchor of the user's own: never a raw error
                raise AuditUnavailable(
                    f"anchor {getattr(anchor, 'name', anchor)!r} failed "
                    f"({type(exc).__name__}: {_short(exc)})") from None

        retrying = Retrying(
            stop=stop_after_attempt(self._retries),
            wait=wait_exponential(multiplier=self._retry_wait, max=2.0),
            retry=retry_if_exception(lambda e: isinstance(e, AuditUnavailable)
                                     and not isinstance(e, AnchorConflict)),
            reraise=True)
        try:
            retrying(attempt)
        except AuditFormatError as exc:
            raise AuditUnavailable(f"anchor {anchor.name}: {exc}") from None
        except RetryError as exc:  # pragma: no cover - reraise=True re-raises the last error
            raise AuditUnavailable(f"anchor {anchor.name}: {exc}") from None
