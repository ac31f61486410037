"""Retention: delete what has outlived its data category's retention period.

The region map is the one source of the periods (``retention:`` at the top level, or per
location): the infra plan turns them into provider lifecycle rules, and this module's
sweep enforces them on every backend of a location, for backends without lifecycle rules
and as a check that the lifecycle rules work.

Objects say what they are through metadata (see :mod:`residency_sdk.marks`) written with
the tenant store's ``category=`` or ``metadata=`` argument::

    store.put("uploads/ct.dcm", data, data_class="phi",
              metadata={CATEGORY_META: "imaging_upload"})

The creation time is the tenant store's ``residency_created_at`` (the backend's last-modified
time for objects written some other way). Objects without a category are not governed by
retention and are never deleted by a sweep; an object whose category the map does not
know is reported, never deleted (fail closed).

What a sweep never deletes: an object uploaded again after the sweep read it (every
delete is conditional on the exact write examined: S3 and Azure ``If-Match`` ETag, GCS
``ifGenerationMatch``, the local store's blob id compared under its lock; the item is
reported ``changed``, its ``retention_delete`` outcome is the ``ObjectChanged`` error,
so the trail never names a deletion that did not happen or the wrong object's checksum);
and an object under a legal hold. Backends without native holds carry the marker
``legal_hold=true`` in object metadata; on S3 the native object lock is honoured too (a
legal hold ``ON`` or a retention date in the future), since a plain DELETE on a
versioned bucket would otherwise only hide the locked version behind a delete marker.

What a deletion covers on a bucket that keeps versions: the object's old versions and
delete markers go with it (S3 versions and markers, GCS noncurrent generations, Azure
previous versions and snapshots), so no older copy stays readable until the lifecycle
rule's noncurrent-version expiry, which remains only a backstop. The count is in the
report (``versions_deleted``) and in the ``retention_delete`` outcome's reasons; an old
version the provider keeps (an object lock on it) makes the item ``held`` and the
outcome an error that says so.

The machinery (bounded workers, the head -> hold check -> delete -> audit step,
resumable state) is the shared sweep engine, :mod:`residency_sdk.sweep`; this module
keeps only the retention policy. A sweep is paginated (the adapters list page by page),
resumable (a checkpoint file in a state directory records, per backend, the last key
examined; an interrupted sweep skips finished backends and keys already examined),
audited (each deletion's ``retention_delete`` intent is durable before the deletion, its
outcome follows; if the audit trail cannot record, the sweep stops with
:class:`AuditUnavailable` and deletes nothing more), has a dry run, and takes a clock so
tests control time.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from residency_sdk import marks
from residency_sdk.errors import AuditUnavailable, ResidencyError, RetentionError
from residency_sdk.events import AuditEmitter, AuditEvent
from residency_sdk.model import StorageTarget
from residency_sdk.policy import ResidencyPolicy
from residency_sdk.regionmap import RetentionSpec, Role
from residency_sdk.storage.base import ObjectInfo, ObjectStore, Residue
from residency_sdk.storage.keys import SDK_PREFIX
from residency_sdk.storage.pool import StorePool
from residency_sdk.sweep import (
    DEFAULT_WORKERS,
    BackendRecord,
    Clock,
    DeleteDone,
    ItemResult,
    Verdict,
    Workers,
    atomic_write_json,
    check_workers,
    examine,
    pages,
    read_json_state,
    utc_now,
)

# Map names come from YAML: keep them from steering the checkpoint path.
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_-]")
_CHECKPOINT_VERSION = 1
_CHECKPOINT_EVERY = 100
_RESTART = "delete it to start the sweep from the beginning"

Action = Literal["deleted", "would_delete", "kept", "held", "changed", "unclassified",
                 "unknown_category", "error"]
# Counters of BackendSweep by the action of a SweepItem.
_COUNTER = {"deleted": "deleted", "would_delete": "would_delete", "kept": "kept",
            "held": "held", "changed": "changed", "unclassified": "unclassified",
            "unknown_category": "unknown_category", "error": "errors"}
# Actions on an object whose retention had expired.
_EXPIRED = frozenset({"held", "changed", "deleted", "would_delete"})
_TOTALS = ("examined", "expired", "deleted", "would_delete", "held", "changed", "kept",
           "unclassified", "unknown_category", "errors", "versions_deleted")


def retention_for(policy: ResidencyPolicy, location: str) -> dict[str, RetentionSpec]:
    """The retention periods (category -> spec) that apply in ``location``."""
    try:
        return dict(policy.map.locations[location].retention)
    except (KeyError, TypeError):
        raise RetentionError(
            f"unknown location {location!r} in region map {policy.map.name!r}: use one of "
            f"{', '.join(sorted(policy.map.locations))}") from None


def _listing_order(provider: str, key: str) -> tuple[str, ...]:
    # Cloud listings are in key (code point / UTF-8 byte) order; the local store walks
    # its directory tree, i.e. in order of the tuple of segments. Resuming skips what the
    # backend's own order put before the checkpoint; a wrong guess only delays a deletion
    # to the next sweep, it never deletes anything early.
    return tuple(key.split("/")) if provider == "local" else (key,)


# --- results ---------------------------------------------------------------------------


class BackendSweep(BackendRecord):
    """What one sweep did on one backend (counters survive an interruption).

    ``changed`` counts expired objects uploaded again between the sweep's HEAD and its
    delete: the delete was conditional on the examined write, so the new upload was kept
    (not an error; the next sweep judges the new object). ``versions_deleted`` counts
    the old versions and delete markers of deleted objects removed with them (on
    buckets that keep versions); ``held`` includes deleted objects one of whose old
    versions the provider keeps."""

    examined: int = 0
    expired: int = 0
    deleted: int = 0
    would_delete: int = 0
    held: int = 0
    changed: int = 0
    kept: int = 0
    unclassified: int = 0
    unknown_category: int = 0
    errors: int = 0
    versions_deleted: int = 0
    done: bool = False
    last_key: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class SweepItem:
    """One object the sweep looked at (passed to the ``progress`` callback).

    ``versions_deleted``: old versions and delete markers of the key removed after it
    was deleted (``held`` with it when the provider keeps one of them)."""

    backend: str
    key: str
    action: Action
    category: str | None = None
    detail: str | None = None
    versions_deleted: int = 0


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
            "totals": {c: self.total(c) for c in _TOTALS},
            "backends": [b.model_dump() for b in self.backends],
            "items": [asdict(i) for i in self.items if i.action != "kept"],
        }


# --- the sweep -------------------------------------------------------------------------


class RetentionSweep:
    """One retention sweep over every backend of one location.

    Built from the policy (periods), the store pool (adapters) and the audit emitter (one
    ``retention_delete`` event per deletion); ``Residency.retention_sweep(location, ...)``
    builds one from a client. ``providers`` narrows the backends (default: every backend
    that may hold the location's data, see :meth:`StorePool.data_providers`).
    ``state_dir`` holds the checkpoint that makes the sweep resumable (none: not
    resumable); ``clock`` returns the current time (tests inject their own);
    ``progress`` is called once per object examined; ``keep_items`` bounds how many
    per-object results the report keeps (counters are always complete).

    Objects are examined ``checkpoint_every`` at a time by ``workers`` threads; the
    checkpoint moves past a page once all of it is done. An interruption inside a page
    may leave some of its deletions uncounted in the report; each one is still in the
    audit trail, and the resumed sweep re-examines the page (deletion is idempotent).
    """

    def __init__(self, policy: ResidencyPolicy, stores: StorePool, audit: AuditEmitter,
                 location: str, *, dry_run: bool = False,
                 providers: Iterable[str] | None = None, state_dir: str | Path | None = None,
                 clock: Clock = utc_now, progress: Callable[[SweepItem], None] | None = None,
                 actor: str = "retention-sweep", keep_items: int = 10_000,
                 checkpoint_every: int = _CHECKPOINT_EVERY,
                 workers: int = DEFAULT_WORKERS) -> None:
        self.policy = policy
        self.stores = stores
        self.audit = audit
        self.location = location
        self.periods = retention_for(policy, location)
        loc = policy.map.locations[location]
        chosen = tuple(providers) if providers is not None else stores.data_providers(loc)
        unknown = [p for p in chosen if p not in loc.backends]
        if unknown:
            raise RetentionError(
                f"location {location} has no {unknown[0]!r} backend (it has: "
                f"{', '.join(sorted(loc.backends))}): choose one of those providers")
        self.targets: list[tuple[Role, StorageTarget]] = loc.targets(chosen)
        self.dry_run = dry_run
        self.clock = clock
        self.progress = progress
        self.actor = actor
        self.keep_items = keep_items
        self.checkpoint_every = max(1, checkpoint_every)
        self.workers = check_workers(workers, RetentionError)
        self.checkpoint_path = (
            None if state_dir is None or dry_run
            else Path(state_dir) / f"retention-{_SAFE_NAME.sub('_', policy.map.name)}-"
                                   f"{_SAFE_NAME.sub('_', location)}.json")

    # checkpoint -----------------------------------------------------------------------

    def _load_checkpoint(self) -> dict[str, Any] | None:
        if self.checkpoint_path is None:
            return None
        doc = read_json_state(self.checkpoint_path, RetentionError,
                              what="retention checkpoint", fix=_RESTART)
        if doc is None:
            return None
        if not isinstance(doc, dict) or doc.get("version") != _CHECKPOINT_VERSION \
                or doc.get("location") != self.location:
            raise RetentionError(
                f"retention checkpoint {self.checkpoint_path} is not a version "
                f"{_CHECKPOINT_VERSION} checkpoint of location {self.location}: {_RESTART}")
        return doc

    def _save_checkpoint(self, report: SweepReport) -> None:
        if self.checkpoint_path is None:
            return
        doc = {"version": _CHECKPOINT_VERSION, "location": self.location,
               "map": report.map_name, "started_at": report.started_at.isoformat(),
               "backends": [b.model_dump() for b in report.backends]}
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
            previous = {b["backend"]: b for b in checkpoint.get("backends", [])
                        if isinstance(b, dict) and "backend" in b}
            with contextlib.suppress(KeyError, ValueError, TypeError):
                started = datetime.fromisoformat(checkpoint["started_at"])
        report = SweepReport(location=self.location, map_name=self.policy.map.name,
                             dry_run=self.dry_run, started_at=started, now=now,
                             resumed=checkpoint is not None)
        for role, target in self.targets:
            state = BackendSweep(**BackendSweep.naming(role, target))
            prior = previous.get(state.backend, {})
            if prior.get("done") and prior.get("errors"):
                # Finished with item errors in an earlier run: sweep it again from its
                # first key, or an object whose delete failed once would never be looked
                # at again while the checkpoint stays.
                prior = {}
            for key, value in prior.items():
                if key in BackendSweep.model_fields and key not in _IDENTITY:
                    setattr(state, key, value)
            report.backends.append(state)
        try:
            for (_role, target), state in zip(self.targets, report.backends, strict=True):
                if state.done:
                    continue
                self._sweep_backend(report, state, target)
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

    def _sweep_backend(self, report: SweepReport, state: BackendSweep,
                       target: StorageTarget) -> None:
        order = _listing_order(target.provider, state.last_key) if state.last_key else None
        state.error = None
        try:
            store = self.stores.get(target, self.location)
            # The SDK's own records (tenant country records) are not data with a
            # retention category: they are not examined at all.
            listing = (listed for listed in store.list("")
                       if not listed.key.startswith(SDK_PREFIX) and (
                           order is None
                           or _listing_order(target.provider, listed.key) > order))
            with Workers(self.workers, "retention") as workers:
                for page in pages(listing, self.checkpoint_every):
                    outcomes = workers.imap(
                        lambda listed: self._examine(store, listed, report.now), page)
                    for listed, outcome in zip(page, outcomes, strict=True):
                        self._account(report, state, outcome)
                        state.last_key = listed.key
                    self._save_checkpoint(report)
        except AuditUnavailable:
            raise  # nothing more may be deleted unaudited, on any backend
        except ResidencyError as exc:
            state.error = f"{type(exc).__name__}: {exc}"
            return
        state.done = True

    def _account(self, report: SweepReport, state: BackendSweep,
                 outcome: SweepItem | None) -> None:
        state.examined += 1
        if outcome is None:
            return
        counter = _COUNTER[outcome.action]
        setattr(state, counter, getattr(state, counter) + 1)
        state.versions_deleted += outcome.versions_deleted
        if outcome.action in _EXPIRED:
            state.expired += 1
        item = replace(outcome, backend=state.backend)
        if item.action != "kept" and len(report.items) < self.keep_items:
            report.items.append(item)
        if self.progress is not None:
            self.progress(item)

    # policy ---------------------------------------------------------------------------

    def _examine(self, store: ObjectStore, listed: ObjectInfo,
                 now: datetime) -> SweepItem | None:
        """Decide one object's fate and act on it (runs in a worker thread)."""
        result = examine(store, listed.key, now, dry_run=self.dry_run,
                         judge=lambda info: self._judge(info, listed, now),
                         audit=lambda info, verdict: self._intent(store, info, verdict))
        return _item(result)

    def _judge(self, info: ObjectInfo, listed: ObjectInfo, now: datetime) -> Verdict:
        category = marks.category_of(info.metadata)
        if not category:
            return Verdict(False, "unclassified")
        spec = self.periods.get(category)
        if spec is None:
            return Verdict(False, "unknown_category",
                           f"category {category!r} has no retention period in map "
                           f"{self.policy.map.name!r} for location {self.location}; kept",
                           category)
        created = marks.created_at(info.metadata, info.last_modified or listed.last_modified)
        if created is None:
            return Verdict(False, "error", "no creation time (neither metadata nor "
                           "last-modified); kept", category)
        expires = created + spec.period
        if expires > now:
            return Verdict(False, "kept", category=category)
        return Verdict(True, "delete",
                       f"category {category!r} retention {_period(spec)} expired at "
                       f"{expires.isoformat()} (created {created.isoformat()})", category)

    def _intent(self, store: ObjectStore, info: ObjectInfo, verdict: Verdict) -> DeleteDone:
        """Record the deletion's intent durably; return what records its outcome."""
        target = store.target
        intent = None
        if self.audit.enabled:
            intent = self.audit.intent(AuditEvent(
                operation="retention_delete", outcome="intent",
                actor=self.actor, purpose=f"retention:{verdict.category}",
                tenant_id=marks.tenant_of(info.metadata, info.key),
                data_class=marks.data_class_of(info.metadata),
                source_location=self.location, provider=target.provider,
                region=target.region, bucket=target.bucket, object_key=info.key,
                size=info.size, checksum=info.checksum, reasons=(verdict.detail or "",)))

        def done(error: ResidencyError | None, /, *, residue: Residue | None = None) -> None:
            if residue is None:  # nothing was deleted, or only the object (no purge)
                self.audit.outcome(
                    intent, outcome="ok" if error is None else "error",
                    error=None if error is None else f"{type(error).__name__}: {error}")
                return
            # The object was deleted; the outcome says what became of its old versions.
            reasons = (*(intent.reasons if intent is not None else ()),
                       f"{residue.versions_deleted} old version(s) and delete marker(s) of "
                       "the key deleted with it")
            failed = None
            if error is not None:
                failed = (f"{type(error).__name__}: the object was deleted, but purging its "
                          f"old versions failed, so they may still be readable: {error}")
            elif residue.held:
                failed = ("held: the object was deleted, but the provider keeps an old "
                          f"version of it: {'; '.join(residue.held.values())}")
            self.audit.outcome(intent, outcome="ok" if failed is None else "error",
                               error=failed, reasons=reasons)

        return done


_IDENTITY = frozenset({"backend", "provider", "region", "bucket", "role", "error"})


def _item(result: ItemResult) -> SweepItem | None:
    """The report's view of what the engine did with one object."""
    category = result.verdict.category if result.verdict is not None else None
    if result.action == "gone":
        return None  # deleted meanwhile (by a lifecycle rule or another sweep)
    if result.action == "kept":
        assert result.verdict is not None
        action: Action = result.verdict.action  # type: ignore[assignment]
        return SweepItem("", result.key, action, category, result.detail)
    return SweepItem("", result.key, result.action, category, result.detail,
                     result.versions_deleted)


def _period(spec: RetentionSpec) -> str:
    return f"{spec.hours}h" if spec.hours else f"{spec.days}d"

