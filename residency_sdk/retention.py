"""Retention: delete what has outlived its data category's retention period.

The region map is the one source of the periods (``retention:`` at the top level, or per
location): the infra plan turns them into provider lifecycle rules, and this module's
sweep enforces them on every backend of a location, for backends without lifecycle rules
and as a check that the lifecycle rules work.

Objects say what they are through metadata written with the facade's ``metadata=``
argument::

    store.put("uploads/ct.dcm", data, data_class="phi",
              metadata={CATEGORY_META: "imaging_upload"})

The creation time is the facade's ``residency_created_at`` (the backend's last-modified
time for objects written some other way). Objects without a category are not governed by
retention and are never deleted by a sweep; an object whose category the map does not
know is reported, never deleted (fail closed).

What a sweep never deletes: an object under a legal hold. Backends without native holds
carry the marker ``legal_hold=true`` in object metadata; on S3 the native object lock is
honoured too (a legal hold ``ON`` or a retention date in the future), since a plain
DELETE on a versioned bucket would otherwise only hide the locked version behind a delete
marker.

A sweep is paginated (the adapters list page by page), resumable (a checkpoint file in a
state directory records, per backend, the last key examined; an interrupted sweep skips
finished backends and keys already examined), audited (one ``retention_delete`` event per
deletion), has a dry run, and takes a clock so tests control time.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from residency_sdk import lifecycle as _lifecycle
from residency_sdk.errors import ObjectNotFound, ResidencyError, RetentionError
from residency_sdk.events import AuditEvent
from residency_sdk.model import StorageTarget
from residency_sdk.regionmap import Location, RetentionSpec
from residency_sdk.storage.base import ObjectInfo, ObjectStore

if TYPE_CHECKING:
    from residency_sdk.router import Residency

CATEGORY_META = _lifecycle.CATEGORY_META
"""Object metadata naming the retention category (a key of the map's ``retention:``)."""
LEGAL_HOLD_META = _lifecycle.LEGAL_HOLD_META
"""Object metadata that, set to ``true``, keeps the object whatever its retention says."""
CREATED_META = "residency_created_at"
"""Set by the facade on every put: the creation time retention counts from."""
DATA_CLASS_META = "residency_data_class"
TENANT_META = "residency_tenant"

# Map names come from YAML: keep them from steering the checkpoint path.
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_-]")
_TRUE = frozenset({"true", "1", "yes", "on"})
_CHECKPOINT_VERSION = 1
_CHECKPOINT_EVERY = 100
DEFAULT_WORKERS = 8

Clock = Callable[[], datetime]
Action = Literal["deleted", "would_delete", "kept", "held", "unclassified", "unknown_category",
                 "error"]
_Outcome = tuple[str | None, "SweepItem | None"]


def utc_now() -> datetime:
    """The default clock: now, timezone-aware UTC."""
    return datetime.now(UTC)


def retention_for(res: Residency, location: str) -> dict[str, RetentionSpec]:
    """The retention periods (category -> spec) that apply in ``location``."""
    try:
        return dict(res.map.locations[location].retention)
    except KeyError:
        raise RetentionError(
            f"unknown location {location!r} in region map {res.map.name!r}: use one of "
            f"{', '.join(sorted(res.map.locations))}") from None


def created_at(info: ObjectInfo) -> datetime | None:
    """When the object was created: the facade's metadata, else the backend's time."""
    raw = info.metadata.get(CREATED_META)
    if raw:
        with contextlib.suppress(ValueError):
            value = datetime.fromisoformat(raw)
            return value if value.tzinfo else value.replace(tzinfo=UTC)
    modified = info.last_modified
    if modified is not None and modified.tzinfo is None:
        modified = modified.replace(tzinfo=UTC)
    return modified


def hold_reason(store: ObjectStore, info: ObjectInfo, now: datetime) -> str | None:
    """Why ``info`` must be kept whatever its retention says, or None.

    The metadata marker works on every backend; on S3 the native object lock (legal hold,
    or a GOVERNANCE/COMPLIANCE retention date not yet reached) is read from HeadObject.
    """
    if info.metadata.get(LEGAL_HOLD_META, "").strip().lower() in _TRUE:
        return f"legal hold marker ({LEGAL_HOLD_META}=true) in object metadata"
    if store.target.provider == "aws":
        return _s3_lock_reason(store, info.key, now)
    return None


def _s3_lock_reason(store: ObjectStore, key: str, now: datetime) -> str | None:
    client = getattr(store, "client", None)
    if client is None:  # pragma: no cover - every S3Store exposes its client
        return None
    try:
        head = client.head_object(Bucket=store.target.bucket, Key=key)
    except Exception as exc:  # botocore errors: a hold we cannot read is a hold
        return f"object lock state unreadable ({type(exc).__name__}); kept to be safe"
    if head.get("ObjectLockLegalHoldStatus") == "ON":
        return "S3 object lock legal hold is ON"
    until = head.get("ObjectLockRetainUntilDate")
    if head.get("ObjectLockMode") and until is not None:
        if until.tzinfo is None:
            until = until.replace(tzinfo=UTC)
        if until > now:
            return f"S3 object lock {head['ObjectLockMode']} retention until {until.isoformat()}"
    return None


def _location(res: Residency, location: str) -> Location:
    try:
        return res.map.locations[location]
    except KeyError:
        raise RetentionError(
            f"unknown location {location!r} in region map {res.map.name!r}: use one of "
            f"{', '.join(sorted(res.map.locations))}") from None


def default_providers(res: Residency, location: str) -> tuple[str, ...]:
    """The providers a location-wide sweep (retention sweep, tenant erasure) covers when
    none are named: the one rule both use.

    With ``local_root`` everything the Residency stores lives in the embedded ``local``
    backend, so only ``local``; otherwise every cloud backend of the location (a ``local``
    backend cannot be opened without a root folder, so it is never swept by default)."""
    loc = _location(res, location)
    if res.local_root is not None:
        return ("local",)
    cloud = tuple(p for p in loc.backends if p != "local")
    if not cloud:
        raise RetentionError(
            f"location {location} has only a 'local' backend, which needs a root folder: "
            "load the Residency with local_root=PATH (CLI: --local-root DIR)")
    return cloud


def location_targets(res: Residency, location: str,
                     providers: Iterable[str] | None = None) -> list[tuple[str, StorageTarget]]:
    """Every backend of ``location`` as ``(role, target)``: each provider's primary and,
    where configured, its in-country failover. ``providers`` restricts the providers; by
    default :func:`default_providers`."""
    from residency_sdk.storage.factory import failover_target

    loc = _location(res, location)
    if providers is None:
        providers = default_providers(res, location)
    result: list[tuple[str, StorageTarget]] = []
    for provider in providers:
        target = loc.backends.get(provider)
        if target is None:
            raise RetentionError(
                f"location {location} has no {provider!r} backend (it has: "
                f"{', '.join(sorted(loc.backends))}): choose one of those providers")
        result.append(("primary", target))
        failover = failover_target(target, regions=res.regions)
        if failover is not None:
            result.append(("failover", failover))
    return result


def open_location_store(res: Residency, target: StorageTarget, location: str) -> ObjectStore:
    """The store of ``target``, opened the way the facade opens it (shared pool)."""
    return res.store(target, location)


def backend_name(role: str, target: StorageTarget) -> str:
    """``provider:bucket`` (``@failover`` appended for a failover backend)."""
    suffix = "@failover" if role == "failover" else ""
    return f"{target.provider}:{target.bucket}{suffix}"


def _listing_order(provider: str, key: str) -> tuple[str, ...]:
    # Cloud listings are in key (code point / UTF-8 byte) order; the local store walks
    # its directory tree, i.e. in order of the tuple of segments. Resuming skips what the
    # backend's own order put before the checkpoint; a wrong guess only delays a deletion
    # to the next sweep, it never deletes anything early.
    return tuple(key.split("/")) if provider == "local" else (key,)


# --- results ---------------------------------------------------------------------------


@dataclass
class BackendSweep:
    """What one sweep did on one backend (counters survive an interruption)."""

    backend: str
    provider: str
    region: str
    bucket: str
    role: str
    examined: int = 0
    expired: int = 0
    deleted: int = 0
    would_delete: int = 0
    held: int = 0
    kept: int = 0
    unclassified: int = 0
    unknown_category: int = 0
    errors: int = 0
    done: bool = False
    last_key: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class SweepItem:
    """One object the sweep looked at (passed to the ``progress`` callback)."""

    backend: str
    key: str
    action: Action
    category: str | None = None
    detail: str | None = None


@dataclass
class SweepReport:
    """The result of :meth:`RetentionSweep.run`."""

    location: str
    map_name: str
    dry_run: bool
    started_at: datetime
    now: datetime
    resumed: bool = False
    finished_at: datetime | None = None
    backends: list[BackendSweep] = field(default_factory=list)
    items: list[SweepItem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every backend was swept to the end without an error."""
        return all(b.done and b.error is None and b.errors == 0 for b in self.backends)

    def total(self, counter: str) -> int:
        """A counter (``deleted``, ``held``, ...) summed over every backend."""
        return sum(int(getattr(b, counter)) for b in self.backends)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-able data."""
        return {
            "location": self.location, "map": self.map_name, "dry_run": self.dry_run,
            "ok": self.ok, "resumed": self.resumed,
            "started_at": self.started_at.isoformat(), "now": self.now.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "totals": {c: self.total(c) for c in ("examined", "expired", "deleted",
                                                  "would_delete", "held",
                                                  "kept", "unclassified", "unknown_category",
                                                  "errors")},
            "backends": [asdict(b) for b in self.backends],
            "items": [asdict(i) for i in self.items if i.action != "kept"],
        }


# --- the sweep -------------------------------------------------------------------------


class RetentionSweep:
    """One retention sweep over every backend of one location.

    ``state_dir`` holds the checkpoint that makes the sweep resumable (none: not
    resumable); ``clock`` returns the current time (tests inject their own);
    ``progress`` is called once per object examined; ``keep_items`` bounds how many
    per-object results the report keeps (counters are always complete).

    Objects are examined ``checkpoint_every`` at a time by ``workers`` threads (HEAD and
    DELETE round trips dominate on cloud backends); the checkpoint moves past a page once
    all of it is done. An interruption inside a page may leave some of its deletions
    uncounted in the report; each one is still in the audit trail, and the resumed sweep
    re-examines the page (deletion is idempotent).
    """

    def __init__(self, res: Residency, location: str, *, dry_run: bool = False,
                 providers: Iterable[str] | None = None, state_dir: str | Path | None = None,
                 clock: Clock = utc_now, progress: Callable[[SweepItem], None] | None = None,
                 actor: str = "retention-sweep", keep_items: int = 10_000,
                 checkpoint_every: int = _CHECKPOINT_EVERY,
                 workers: int = DEFAULT_WORKERS) -> None:
        self.res = res
        self.location = location
        self.policy = retention_for(res, location)
        self.targets = location_targets(res, location, providers)
        self.dry_run = dry_run
        self.clock = clock
        self.progress = progress
        self.actor = actor
        self.keep_items = keep_items
        self.checkpoint_every = max(1, checkpoint_every)
        if not isinstance(workers, int) or not 1 <= workers <= 64:
            raise RetentionError(f"workers must be 1 to 64, got {workers!r}")
        self.workers = workers
        self.checkpoint_path = (
            None if state_dir is None or dry_run
            else Path(state_dir) / f"retention-{_SAFE_NAME.sub('_', res.map.name)}-"
                                   f"{_SAFE_NAME.sub('_', location)}.json")

    # checkpoint -----------------------------------------------------------------------

    def _load_checkpoint(self) -> dict[str, Any] | None:
        if self.checkpoint_path is None or not self.checkpoint_path.exists():
            return None
        try:
            doc = json.loads(self.checkpoint_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RetentionError(
                f"retention checkpoint {self.checkpoint_path} is unreadable ({exc}): delete "
                "it to start the sweep from the beginning") from None
        if not isinstance(doc, dict) or doc.get("version") != _CHECKPOINT_VERSION \
                or doc.get("location") != self.location:
            raise RetentionError(
                f"retention checkpoint {self.checkpoint_path} is not a version "
                f"{_CHECKPOINT_VERSION} checkpoint of location {self.location}: delete it to "
                "start the sweep from the beginning")
        return doc

    def _save_checkpoint(self, report: SweepReport) -> None:
        if self.checkpoint_path is None:
            return
        doc = {"version": _CHECKPOINT_VERSION, "location": self.location,
               "map": report.map_name, "started_at": report.started_at.isoformat(),
               "backends": [asdict(b) for b in report.backends]}
        atomic_write_json(self.checkpoint_path, doc)

    # run ------------------------------------------------------------------------------

    def run(self) -> SweepReport:
        """Sweep every backend; resume from the checkpoint when one exists.

        Returns the report; raises only for an unusable checkpoint. A backend that fails
        is recorded in the report (``error``) and the sweep moves on to the next one; the
        checkpoint is kept so a later run retries it. Any exception (including
        KeyboardInterrupt) saves the checkpoint before propagating.
        """
        now = self.clock()
        checkpoint = self._load_checkpoint()
        previous: dict[str, dict[str, Any]] = {}
        started = now
        if checkpoint is not None:
            previous = {b["backend"]: b for b in checkpoint.get("backends", [])}
            with contextlib.suppress(KeyError, ValueError):
                started = datetime.fromisoformat(checkpoint["started_at"])
        report = SweepReport(location=self.location, map_name=self.res.map.name,
                             dry_run=self.dry_run, started_at=started, now=now,
                             resumed=checkpoint is not None)
        for role, target in self.targets:
            name = backend_name(role, target)
            state = BackendSweep(backend=name, provider=target.provider, region=target.region,
                                 bucket=target.bucket, role=role)
            if name in previous:
                saved = previous[name]
                for key, value in saved.items():
                    if hasattr(state, key) and key not in ("backend", "error"):
                        setattr(state, key, value)
            report.backends.append(state)
        try:
            for (role, target), state in zip(self.targets, report.backends, strict=True):
                if state.done:
                    continue
                self._sweep_backend(report, state, role, target)
                self._save_checkpoint(report)
        except BaseException:
            self._save_checkpoint(report)
            raise
        report.finished_at = self.clock()
        if self.checkpoint_path is not None:
            if report.ok:
                with contextlib.suppress(FileNotFoundError):
                    self.checkpoint_path.unlink()
            else:
                self._save_checkpoint(report)
        return report

    def _sweep_backend(self, report: SweepReport, state: BackendSweep, role: str,
                       target: StorageTarget) -> None:
        resume_after = state.last_key
        order = _listing_order(target.provider, resume_after) if resume_after else None
        state.error = None
        try:
            store = open_location_store(self.res, target, self.location)
            with ThreadPoolExecutor(max_workers=self.workers,
                                    thread_name_prefix="retention") as pool:
                batch: list[ObjectInfo] = []
                for listed in _listing(store):
                    if order is not None and \
                            _listing_order(target.provider, listed.key) <= order:
                        continue  # examined before the interruption
                    batch.append(listed)
                    if len(batch) >= self.checkpoint_every:
                        self._process(pool, report, state, store, batch)
                        batch = []
                if batch:
                    self._process(pool, report, state, store, batch)
        except ResidencyError as exc:
            state.error = f"{type(exc).__name__}: {exc}"
            return
        state.done = True

    def _process(self, pool: ThreadPoolExecutor, report: SweepReport, state: BackendSweep,
                 store: ObjectStore, batch: list[ObjectInfo]) -> None:
        """Examine one page of objects (I/O in the pool, bookkeeping here), then move the
        checkpoint past it. With one worker the checkpoint moves object by object."""
        if self.workers == 1:
            for listed in batch:
                self._account(report, state, self._examine(store, listed, report.now))
                state.last_key = listed.key
        else:
            futures = [pool.submit(self._examine, store, listed, report.now)
                       for listed in batch]
            try:
                for future in futures:
                    self._account(report, state, future.result())
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
            state.last_key = batch[-1].key
        self._save_checkpoint(report)

    def _account(self, report: SweepReport, state: BackendSweep, outcome: _Outcome) -> None:
        state.examined += 1
        counter, item = outcome
        if counter is None or item is None:
            return
        setattr(state, counter, getattr(state, counter) + 1)
        if item.action in ("held", "deleted", "would_delete"):
            state.expired += 1
        item = replace(item, backend=state.backend)
        if item.action != "kept" and len(report.items) < self.keep_items:
            report.items.append(item)
        if self.progress is not None:
            self.progress(item)

    def _examine(self, store: ObjectStore, listed: ObjectInfo, now: datetime) -> _Outcome:
        """Decide one object's fate and act on it (runs in a worker thread)."""
        def outcome(counter: str, action: Action, category: str | None = None,
                    detail: str | None = None) -> _Outcome:
            return counter, SweepItem("", listed.key, action, category, detail)

        try:
            info = store.head(listed.key)
        except ObjectNotFound:
            return None, None  # deleted meanwhile (by a lifecycle rule or another sweep)
        except ResidencyError as exc:
            return outcome("errors", "error", None, str(exc))
        category = info.metadata.get(CATEGORY_META)
        if not category:
            return outcome("unclassified", "unclassified")
        spec = self.policy.get(category)
        if spec is None:
            return outcome("unknown_category", "unknown_category", category,
                           f"category {category!r} has no retention period in map "
                           f"{self.res.map.name!r} for location {self.location}; kept")
        created = created_at(info) or listed.last_modified
        if created is None:
            return outcome("errors", "error", category,
                           "no creation time (neither metadata nor last-modified); kept")
        expires = created + spec.period
        if expires > now:
            return outcome("kept", "kept", category)
        held = hold_reason(store, info, now)
        if held is not None:
            return outcome("held", "held", category, held)
        why = (f"category {category!r} retention {_period(spec)} expired at "
               f"{expires.isoformat()} (created {created.isoformat()})")
        if self.dry_run:
            return outcome("would_delete", "would_delete", category, why)
        try:
            store.delete(info.key)
        except ResidencyError as exc:
            self._emit(store, info, category, "error", why, error=exc)
            return outcome("errors", "error", category, str(exc))
        self._emit(store, info, category, "ok", why)
        return outcome("deleted", "deleted", category, why)

    def _emit(self, store: ObjectStore, info: ObjectInfo, category: str,
              outcome: Literal["ok", "error"],
              why: str, error: BaseException | None = None) -> None:
        target = store.target
        tenant = info.metadata.get(TENANT_META) or _tenant_of(info.key)
        self.res.emit(AuditEvent(
            operation="retention_delete", outcome=outcome,
            actor=self.actor, purpose=f"retention:{category}", tenant_id=tenant,
            data_class=info.metadata.get(DATA_CLASS_META), source_location=self.location,
            provider=target.provider, region=target.region, bucket=target.bucket,
            object_key=info.key, size=info.size, checksum=info.checksum, reasons=(why,),
            error=None if error is None else f"{type(error).__name__}: {error}"))


def sweep(res: Residency, location: str, **options: Any) -> SweepReport:
    """Run one :class:`RetentionSweep` over ``location`` (options as its constructor)."""
    return RetentionSweep(res, location, **options).run()


# --- helpers ---------------------------------------------------------------------------


def _listing(store: ObjectStore) -> Iterator[ObjectInfo]:
    yield from store.list("")


def _tenant_of(key: str) -> str | None:
    parts = key.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "tenants" else None


def _period(spec: RetentionSpec) -> str:
    return f"{spec.hours}h" if spec.hours else f"{spec.days}d"


def expires_at(info: ObjectInfo, spec: RetentionSpec) -> datetime | None:
    """When an object of ``spec``'s category expires (None without a creation time)."""
    created = created_at(info)
    return None if created is None else created + spec.period


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


__all__ = [
    "CATEGORY_META",
    "LEGAL_HOLD_META",
    "BackendSweep",
    "RetentionSweep",
    "SweepItem",
    "SweepReport",
    "atomic_write_json",
    "backend_name",
    "created_at",
    "default_providers",
    "expires_at",
    "hold_reason",
    "location_targets",
    "open_location_store",
    "retention_for",
    "sweep",
    "utc_now",
]
