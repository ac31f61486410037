"""The sweep engine: the machinery retention sweeps and tracked erasure share.

A sweep walks every backend of a location (each provider's primary and in-country
failover), examines objects page by page with a bounded number of worker threads, and
for each one runs the same step: read its head, ask the caller's policy whether it goes,
honour a legal hold (the metadata marker, or the provider's own lock), and delete, written
ahead: the caller's audit hook records the intent (durably) before the deletion and the
outcome after; if the intent cannot be recorded nothing is deleted. The delete is
conditional on the exact write the head reported, so an object uploaded again in between
is never deleted (it is reported ``changed``) and the audit names what really went. On a
bucket that keeps versions, deleting the current object leaves the older ones readable
(an S3 delete marker only hides them), so a successful delete is followed by the purge of
that key's noncurrent versions (the store's ``purge_versions``); a version the provider
holds makes the item ``held``.
Progress is kept per backend and saved as JSON state so an interrupted sweep resumes.

What differs between the two sweeps stays in their own modules: which objects a sweep
selects and when (:mod:`residency_sdk.retention`: expired categories;
:mod:`residency_sdk.erasure`: everything under a tenant's prefix, then verification).
This module speaks no cloud API: provider features are the store's capabilities
(:meth:`ObjectStore.hold_reason <residency_sdk.storage.base.ObjectStore.hold_reason>`).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from residency_sdk import marks
from residency_sdk.errors import ObjectChanged, ObjectNotFound, ResidencyError
from residency_sdk.model import StorageTarget
from residency_sdk.regionmap import Role
from residency_sdk.storage.base import ObjectInfo, ObjectStore, Residue

Clock = Callable[[], datetime]
"""Returns the current time (timezone-aware); tests inject their own."""
DEFAULT_WORKERS = 8
MAX_WORKERS = 64

T = TypeVar("T")
R = TypeVar("R")


def utc_now() -> datetime:
    """The default clock: now, timezone-aware UTC."""
    return datetime.now(UTC)


def check_workers(workers: object, error: type[ResidencyError]) -> int:
    """``workers`` if it is a whole number from 1 to 64, else ``error`` naming it."""
    if not isinstance(workers, int) or isinstance(workers, bool) \
            or not 1 <= workers <= MAX_WORKERS:
        raise error(f"workers must be 1 to {MAX_WORKERS}, got {workers!r}")
    return workers


def backend_name(role: str, target: StorageTarget) -> str:
    """``provider:bucket`` (``@failover`` appended for a failover backend)."""
    suffix = "@failover" if role == "failover" else ""
    return f"{target.provider}:{target.bucket}{suffix}"


class BackendRecord(BaseModel):
    """Which backend a sweep's per-backend progress is about (saved in state files)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    backend: str
    provider: str
    region: str
    bucket: str
    role: str

    @classmethod
    def naming(cls, role: Role, target: StorageTarget) -> dict[str, str]:
        """The identifying fields of ``target`` in ``role``, to build a record from."""
        return {"backend": backend_name(role, target), "provider": target.provider,
                "region": target.region, "bucket": target.bucket, "role": role}


# --- one object ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a sweep's policy says about one object: delete it, or keep it and why.

    ``action`` names a kept object's fate in the policy's own words (``kept``,
    ``unclassified``...); ``detail`` and ``category`` are carried into the result."""

    delete: bool
    action: str = "delete"
    detail: str | None = None
    category: str | None = None


DELETE = Verdict(delete=True)
"""Delete unless held (what an erasure says of every object)."""

Action = Literal["gone", "kept", "held", "would_delete", "deleted", "changed", "error"]


@dataclass(frozen=True, slots=True)
class ItemResult:
    """What the sweep did with one object.

    ``action``: ``gone`` (deleted before we got to it), ``kept`` (the policy kept it;
    ``verdict.action`` says why), ``held`` (a legal hold kept it; ``detail`` says which;
    also when the current object was deleted but the provider keeps one of its old
    versions, which ``detail`` names), ``would_delete`` (dry run), ``deleted``
    (``info`` is exactly the write deleted: the delete was conditional on it; with its
    old versions and delete markers, ``versions_deleted`` of them), ``changed``
    (re-uploaded between the HEAD and the delete: nothing was deleted; ``info`` is what
    was examined, ``error`` the :class:`ObjectChanged`, so a caller that only checks
    ``error`` fails closed; examine the key again to judge the new object) or ``error``
    (``error`` holds the exception; after a delete whose version purge failed, the
    current object is gone and ``detail`` says its old versions may not be).
    """

    key: str
    action: Action
    verdict: Verdict | None = None
    info: ObjectInfo | None = None
    detail: str | None = None
    error: ResidencyError | None = None
    versions_deleted: int = 0
    """Old versions and delete markers of the key removed after its deletion."""

    @property
    def size(self) -> int:
        """Bytes of the object examined (0 when it was gone)."""
        return self.info.size if self.info is not None else 0


class DeleteDone(Protocol):
    """Records how a deletion ended: ``error`` (None when the object was deleted) and,
    once the object was deleted and its old versions purged, the ``residue`` of that
    purge (``versions_deleted``, and ``held`` when the provider keeps a version); with
    both set the object was deleted and the purge of its versions failed."""

    def __call__(self, error: ResidencyError | None, /, *,
                 residue: Residue | None = None) -> None: ...


AuditHook = Callable[[ObjectInfo, Verdict], DeleteDone]
"""Called before each deletion with the object and the verdict: it records the intent
durably (raising, e.g. :class:`AuditUnavailable`, stops the deletion and the sweep) and
returns the function the engine calls after the deletion."""


def hold_reason(store: ObjectStore, info: ObjectInfo, now: datetime) -> str | None:
    """Why ``info`` must be kept whatever a sweep says: the metadata marker on every
    backend, else the provider's own lock (the store's :meth:`hold_reason` capability)."""
    return marks.hold_marker_reason(info.metadata) or store.hold_reason(info, now)


def examine(store: ObjectStore, key: str, now: datetime, *,
            judge: Callable[[ObjectInfo], Verdict] = lambda _info: DELETE,
            dry_run: bool = False, audit: AuditHook | None = None,
            versions: bool = True) -> ItemResult:
    """The one step every sweep runs on one object: head, judge, hold check, audit the
    intent, delete, purge the key's old versions, audit the outcome. Deletion happens
    only after the hold check and the durable intent; runs in a worker thread.

    The delete is conditional on the write the HEAD reported (``if_match``): what was
    judged, held-checked and named in the audit intent is exactly what is deleted. An
    object re-uploaded in between is left alone and reported ``changed`` (its audit
    outcome is the :class:`ObjectChanged` error) and nothing of it is purged.

    After the delete, ``versions`` (default) purges every noncurrent version and delete
    marker of the key (:meth:`ObjectStore.purge_versions`): "deleted" means no older copy
    stays readable either. A version the provider keeps makes the item ``held``; a purge
    that fails makes it ``error``. A caller that purges the whole prefix itself
    afterwards (erasure: ``purge_residue``) passes ``versions=False``."""
    try:
        info = store.head(key)
    except ObjectNotFound:
        return ItemResult(key, "gone")
    except ResidencyError as exc:
        return ItemResult(key, "error", detail=str(exc), error=exc)
    verdict = judge(info)
    if not verdict.delete:
        return ItemResult(key, "kept", verdict, info, verdict.detail)
    try:
        held = hold_reason(store, info, now)
    except ObjectNotFound:
        return ItemResult(key, "gone", verdict)
    if held is not None:
        return ItemResult(key, "held", verdict, info, held)
    if dry_run:
        return ItemResult(key, "would_delete", verdict, info, verdict.detail)
    done = audit(info, verdict) if audit is not None else None  # raises: nothing deleted
    try:
        store.delete(key, if_match=info)
    except ObjectChanged as exc:
        if done is not None:
            done(exc)
        return ItemResult(key, "changed", verdict, info, str(exc), exc)
    except ResidencyError as exc:
        if done is not None:
            done(exc)
        return ItemResult(key, "error", verdict, info, str(exc), exc)
    if not versions:
        if done is not None:
            done(None)
        return ItemResult(key, "deleted", verdict, info, verdict.detail)
    try:
        residue = store.purge_versions(key)
    except ResidencyError as exc:
        if done is not None:
            done(exc, residue=Residue())
        return ItemResult(key, "error", verdict, info,
                          f"the current object was deleted, but purging its old versions "
                          f"failed, so they may still be readable: {exc}", exc)
    if done is not None:
        done(None, residue=residue)
    if residue.held:
        why = "; ".join(residue.held.values())
        return ItemResult(
            key, "held", verdict, info,
            f"the current object was deleted with {residue.versions_deleted} old "
            f"version(s), but the provider keeps an old version: {why}",
            versions_deleted=residue.versions_deleted)
    return ItemResult(key, "deleted", verdict, info, verdict.detail,
                      versions_deleted=residue.versions_deleted)


# --- many objects ----------------------------------------------------------------------


class Workers:
    """A bounded pool of threads examining one page of objects at a time (HEAD and DELETE
    round trips dominate on cloud backends). With one worker everything runs inline."""

    def __init__(self, workers: int, name: str) -> None:
        self.workers = workers
        self._pool = (ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
                      if workers > 1 else None)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def imap(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """``fn`` over ``items``, results in order. Should the consumer stop early (an
        exception, an interruption), the page's work not yet started is cancelled."""
        if self._pool is None:
            yield from map(fn, items)
            return
        futures: list[Future[R]] = [self._pool.submit(fn, item) for item in items]
        try:
            for future in futures:
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


def pages(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size`` (the last may be shorter)."""
    page: list[T] = []
    for item in items:
        page.append(item)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


# --- resumable state -------------------------------------------------------------------


def atomic_write_json(path: Path, doc: Any) -> None:
    """Write JSON so a crash leaves the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json_state(path: Path, error: type[ResidencyError], *, what: str,
                    fix: str) -> Any | None:
    """The JSON document at ``path`` (None when there is none); an unreadable one raises
    ``error`` naming ``what`` it is, the file, and the ``fix``."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise error(f"{what} {path} is unreadable ({exc}): {fix}") from None
