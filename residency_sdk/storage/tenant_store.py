"""The tenant store users hold: one tenant's objects, guarded by residency.

:meth:`Residency.storage_for <residency_sdk.client.Residency.storage_for>` returns a
:class:`TenantStore` bound to the tenant's placement. It validates every key into the
tenant's own prefix, refuses writes whose placement lacks a mechanism
(:class:`PlacementBlocked`) or that put ``phi`` on a backend without a BAA
(:class:`BAARequired`), fails over only to the location's in-country failover backend,
and audits every operation ahead of time (never contents, never credentials): an
``intent`` event, durable before the operation touches a backend (if it cannot be
recorded the operation does not run and :class:`AuditUnavailable` is raised), then the
outcome naming it.
:func:`transfer` is what ``Residency.transfer`` delegates to; tenant erasure is
:mod:`residency_sdk.erasure` (``Residency.erase``).

The store is handed the narrow pieces it needs: the :class:`ResidencyPolicy` (pure
decisions), the :class:`StorePool` (opens adapters) and the :class:`AuditEmitter`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, BinaryIO, Generic, Literal, TypeVar

from residency_sdk import anonymised, marks
from residency_sdk.agreements import Derogation
from residency_sdk.deid.evidence import EVIDENCE_META, Evidence
from residency_sdk.deid_records import DeidRecords
from residency_sdk.errors import (
    AuditUnavailable,
    BAARequired,
    BackendUnavailable,
    InputError,
    IntegrityError,
    NotAnonymised,
    ObjectNotFound,
    PlacementBlocked,
    ResidencyError,
    StorageError,
    TransferBlocked,
    UnknownRetentionCategory,
)
from residency_sdk.events import AuditEmitter, AuditEvent, basis_of
from residency_sdk.lineage import Lineage, Via
from residency_sdk.model import DATA_CLASSES, Decision, StorageTarget, Tenant
from residency_sdk.observability import annotate, logger, span
from residency_sdk.policy import PLACEMENT_CLASS, ResidencyPolicy
from residency_sdk.storage import keys
from residency_sdk.storage.base import ObjectInfo, ObjectStore, ProgressCallback
from residency_sdk.storage.batch import (
    DEFAULT_CONCURRENCY,
    BatchProgress,
    BatchResult,
    Job,
    Prepared,
    PutItem,
    PutItemLike,
    Stage,
    WriteAhead,
    check_concurrency,
    failing,
    item_key,
    put_item,
    run_bounded,
    total_of,
)
from residency_sdk.storage.pool import StorePool
from residency_sdk.tenants import TenantRegistry

_log = logger(__name__)

T = TypeVar("T")
ServedBy = Literal["primary", "failover"]


@dataclass(frozen=True, slots=True)
class StoredObject(ObjectInfo):
    """An :class:`ObjectInfo` as the facade reports it: ``key`` is the tenant-relative key,
    plus where the object is stored and which backend (primary or failover) served."""

    stored_key: str = ""
    tenant_id: str = ""
    location: str = ""
    provider: str = ""
    region: str = ""
    bucket: str = ""
    served_by: ServedBy = "primary"

    @property
    def data_class(self) -> str | None:
        """The data class the object was stored as."""
        return marks.data_class_of(self.metadata)

    @property
    def created_at(self) -> datetime | None:
        """When the object was stored through the tenant store (used by retention)."""
        return marks.created_at(self.metadata)

    @property
    def category(self) -> str | None:
        """The retention category the object was stored with (None: not governed)."""
        return marks.category_of(self.metadata)

    @property
    def expires_at(self) -> datetime | None:
        """When the object's retention period ends (None without a category)."""
        return marks.expiry_of(self.metadata)


def require_baa(target: StorageTarget, location: str, data_class: str) -> None:
    """Raise :class:`BAARequired` for ``phi`` aimed at a target with ``baa: false``."""
    if data_class == "phi" and not target.baa:
        raise BAARequired(
            f"phi refused on the {target.provider} backend {target.bucket!r} of location "
            f"{location}: its map entry has baa: false. Sign a Business Associate Agreement "
            "with the provider and set `baa: true`, or store non-phi data only")


def _stricter(a: str, b: str) -> str:
    """The stricter of two data classes (phi > personal > anonymised)."""
    order = {name: i for i, name in enumerate(DATA_CLASSES)}
    return a if order.get(a, -1) <= order.get(b, -1) else b


def _rewinder(data: bytes | BinaryIO) -> Callable[[], bool]:
    """A function that puts ``data`` back at its start for a failover attempt; it returns
    False when the source is a stream that cannot be read twice."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return lambda: True
    try:
        start = data.tell() if data.seekable() else None
    except (AttributeError, OSError, ValueError):
        start = None
    if start is None:
        return lambda: False

    def rewind() -> bool:
        data.seek(start)
        return True

    return rewind


@dataclass(frozen=True, slots=True)
class _Steps(Generic[T]):
    """One data operation taken apart, so that a batch can commit the intents of several
    together: ``check`` (no backend), ``run`` (the backend), the event ``labels`` the
    check sets, and ``close`` (always called, whatever happened)."""

    check: Callable[[], None]
    run: Callable[[], tuple[T, ServedBy]]
    labels: dict[str, Any]
    close: Callable[[], None]


class TenantStore:
    """One tenant's objects in its residency location (what users hold).

    Keys are relative to the tenant's prefix (``tenants/<tenant_id>/``), validated, and
    can never reach another tenant's objects. A store may be used from several threads
    at once (:meth:`put_many` does): its one-time steps (the tenant binding, each
    placement decision, the lineage footprint) run once, under a lock.
    """

    def __init__(self, policy: ResidencyPolicy, stores: StorePool, audit: AuditEmitter,
                 tenant: Tenant, target: StorageTarget, *, location: str | None = None,
                 actor: str | None = None, purpose: str | None = None,
                 registry: TenantRegistry | None = None,
                 lineage: Lineage | None = None,
                 deid: DeidRecords | None = None) -> None:
        self._policy = policy
        self._lineage = lineage
        # Where evidence of anonymised writes is kept (the client shares one instance).
        self._deid = deid if deid is not None else DeidRecords(policy, stores, audit)
        self._stores = stores
        self._audit = audit
        self._registry = registry
        self._checked = self._bound = registry is None
        self.tenant = tenant
        self.placement = policy.resolve(tenant)
        self.location = location or self.placement.location
        """Where this store's objects live (a transfer's destination store differs from
        the tenant's placement)."""
        loc = policy.location(self.location)
        self.target = target
        self.failover = loc.failover_for(target)
        self.actor = actor
        self.purpose = purpose
        self._decisions: dict[tuple[str, int], Decision] = {}
        self._decision_ids: dict[tuple[str, int], str | None] = {}
        # Serialises the one-time steps when threads share the store: two first writes
        # must not bind the tenant, decide a placement or record a footprint twice.
        self._once = threading.RLock()

    def __repr__(self) -> str:
        t = self.target
        return (f"TenantStore(tenant={self.tenant.id!r}, location={self.location!r}, "
                f"provider={t.provider!r}, bucket={t.bucket!r})")

    # --- plumbing ------------------------------------------------------------------------

    def _store(self, role: ServedBy) -> ObjectStore:
        target = self.target if role == "primary" else self.failover
        assert target is not None
        return self._stores.get(target, self.location)

    def _target(self, role: ServedBy) -> StorageTarget:
        return self.target if role == "primary" or self.failover is None else self.failover

    def guard(self, *, write: bool = False) -> None:
        """Refuse to touch data while the tenant id is bound to another country (see
        :mod:`residency_sdk.tenants`); before the first write, bind it to this one."""
        if self._checked and (self._bound or not write):
            return
        with self._once:
            self._guard(write)

    def _guard(self, write: bool) -> None:
        if not self._checked:
            assert self._registry is not None
            self._store("primary")  # a backend that cannot be opened says so first
            self._registry.check(self.tenant, write=write)
            self._checked = True
        if write and not self._bound:
            assert self._registry is not None
            self._registry.bind(self.tenant, actor=self.actor)
            self._bound = True

    def record_reach(self, via: Via = "put") -> None:
        """Before this store's first write: record in the tenant's lineage that its data
        reaches this location and provider (what erasure plans from)."""
        if self._lineage is not None:
            with self._once:
                self._lineage.reached(self.tenant, self.location, self.target.provider,
                                      via=via, actor=self.actor)

    def _with_failover(self, op: Callable[[ObjectStore], T],
                       rewind: Callable[[], bool] | None = None) -> tuple[T, ServedBy]:
        """Run ``op`` on the primary; on :class:`BackendUnavailable` (after the adapter's
        retries) run it on the in-country failover, when the location has one."""
        try:
            return op(self._store("primary")), "primary"
        except BackendUnavailable as exc:
            if self.failover is None:
                raise
            if rewind is not None and not rewind():
                raise BackendUnavailable(
                    f"{exc}; the failover backend was not tried because the data is a "
                    "stream that cannot be read twice (pass bytes or a seekable file)") from exc
            try:
                return op(self._store("failover")), "failover"
            except BackendUnavailable as again:
                raise BackendUnavailable(
                    f"primary and in-country failover backends of {self.location} both "
                    f"failed: {exc}; {again}") from again
            except ObjectNotFound as missing:
                # The failover holds only what was written while the primary was down: its
                # "not found" says nothing about the object, which may well be on the
                # primary. Reporting it as missing would invite re-creating or giving up
                # on data that exists.
                raise BackendUnavailable(
                    f"{exc}; the in-country failover of {self.location} does not hold the "
                    "object (it only has what was written while the primary was down) - "
                    "read it again when the primary is back") from missing

    def _event(self, operation: Any, outcome: Any, *, served: ServedBy | None = None,
               key: str | None = None, info: ObjectInfo | None = None,
               data_class: str | None = None, error: BaseException | str | None = None,
               decision: Decision | None = None, intent: AuditEvent | None = None,
               **extra: Any) -> AuditEvent:
        target = self._target(served or "primary")
        fields_: dict[str, Any] = {
            "operation": operation, "outcome": outcome, "actor": self.actor,
            "purpose": self.purpose, "tenant_id": self.tenant.id,
            "tenant_country": self.tenant.country, "data_class": data_class,
            "source_location": self.location, "provider": target.provider,
            "region": target.region, "bucket": target.bucket, "served_by": served,
            "object_key": key, "size": info.size if info else None,
            "checksum": info.checksum if info else None,
            "error": (f"{type(error).__name__}: {error}" if isinstance(error, BaseException)
                      else error),
        }
        if decision is not None:
            fields_.update(is_transfer=decision.is_transfer, mechanism=decision.mechanism,
                           regimes=decision.regimes, reasons=decision.reasons,
                           agreements=decision.agreements, basis=basis_of(decision),
                           destination_country=decision.destination)
        if intent is not None:
            fields_["intent_id"] = intent.event_id
        fields_.update(extra)
        return AuditEvent(**fields_)

    def _emit(self, operation: Any, outcome: Any, *,
              record: Callable[[AuditEvent], None] | None = None, **fields: Any) -> str | None:
        """Record an outcome or a decision (queued: see :class:`AuditEmitter`); the
        event's id (None when nothing listens). ``record``: hand the event to it instead
        (a batch commits its items' outcomes with its next intents)."""
        if not self._audit.enabled:
            return None
        event = self._event(operation, outcome, **fields)
        if record is not None:
            record(event)
        else:
            self._audit.emit(event)
        return event.event_id

    def _intent(self, operation: Any, key: str | None, *, durable: bool = True,
                **fields: Any) -> AuditEvent | None:
        """Record, durably, that ``operation`` is about to touch a backend; None when
        nothing listens. Raises :class:`AuditUnavailable`: then it must not start.
        ``durable=False`` (reads): queued; :meth:`_release` makes it durable before the
        data is handed over."""
        if not self._audit.enabled:
            return None
        return self._audit.intent(self._event(operation, "intent", key=key, **fields),
                                  durable=durable)

    def _release(self, intent: AuditEvent | None, result: object) -> None:
        """Before a read's result leaves the store: its intent must be durable. If the
        trail cannot say so, the result is discarded (a reader is closed) and
        :class:`AuditUnavailable` raised: nothing read reaches the caller unaudited."""
        if intent is None:
            return
        try:
            self._audit.flush()
        except AuditUnavailable:
            close = getattr(result, "close", None)
            if callable(close):
                close()
            raise

    def _guarded(self, run: Callable[[], T]) -> T:
        self.guard()
        return run()

    def _audited(self, operation: str, key: str | None, run: Callable[[], tuple[T, ServedBy]],
                 *, data_class: str | None = None,
                 describe: Callable[[T], ObjectInfo | None] = lambda _: None,
                 check: Callable[[], None] | None = None, read: bool = False,
                 labels: dict[str, Any] | None = None) -> T:
        """Run a data operation written ahead: ``check`` (validation, no backend), then
        the durable intent, then ``run`` (the backend), then the outcome naming the
        intent. A refusal by ``check`` is recorded as one event with no intent (nothing
        was started); an intent that cannot be recorded raises :class:`AuditUnavailable`
        and ``run`` never starts.

        ``read=True`` (get, open, head, exists): a read changes nothing, so its intent is
        committed while the backend answers and made durable before the result is
        returned (:meth:`_release`) rather than before the request is sent.

        ``labels``: event fields ``check`` may set (a put declared ``anonymised`` that
        failed the content check is recorded as ``phi``, with the reason and evidence).

        Traced as the span ``residency.storage.<operation>`` and logged at DEBUG (tenant,
        location, provider, outcome, size; never the key or the contents). A batch runs
        the same steps, with the intents of several items committed together
        (:meth:`_checked_intent`, :meth:`_perform`)."""
        fields_ = labels if labels is not None else {}
        with self._span(operation, data_class):
            intent_event = self._checked_intent(operation, key, check, data_class, fields_)
            try:
                intent = (None if intent_event is None else
                          self._audit.intent(intent_event, durable=not read))
            except AuditUnavailable:
                raise
            except Exception as exc:
                self._failed(operation, key, exc, intent=None,
                             **{"data_class": data_class, **fields_})
                raise
            return self._perform(operation, key, run, intent, data_class=data_class,
                                 describe=describe, read=read, labels=fields_)

    def _span(self, operation: str, data_class: str | None) -> AbstractContextManager[None]:
        return span(f"residency.storage.{operation}", operation=operation,
                    tenant_id=self.tenant.id, location=self.location,
                    provider=self.target.provider, data_class=data_class)

    def _checked_intent(self, operation: str, key: str | None,
                        check: Callable[[], None] | None, data_class: str | None,
                        labels: dict[str, Any]) -> AuditEvent | None:
        """Run ``check``, then build (not record) the operation's intent event; None when
        nothing listens. A refusal is recorded as one event with no intent, and
        re-raised."""
        try:
            if check is not None:
                check()
            if not self._audit.enabled:
                return None
            return self._event(operation, "intent", key=key,
                               **{"data_class": data_class, **labels})
        except AuditUnavailable:
            raise
        except Exception as exc:
            self._failed(operation, key, exc, intent=None,
                         **{"data_class": data_class, **labels})
            _log.debug("%s tenant=%s location=%s refused: %s", operation, self.tenant.id,
                       self.location, type(exc).__name__)
            raise

    def _perform(self, operation: str, key: str | None,
                 run: Callable[[], tuple[T, ServedBy]], intent: AuditEvent | None, *,
                 data_class: str | None, describe: Callable[[T], ObjectInfo | None],
                 read: bool, labels: dict[str, Any],
                 record: Callable[[AuditEvent], None] | None = None) -> T:
        """Run an operation whose intent is recorded (durable, or for a read, queued),
        then record its outcome naming the intent (or hand it to ``record``)."""
        try:
            result, served = run()
            if read:
                self._release(intent, result)
        except AuditUnavailable:
            raise  # the audit trail itself failed: recording the failure would fail too
        except Exception as exc:  # audited whatever failed, then re-raised unchanged
            self._failed(operation, key, exc, intent=intent, record=record,
                         **{"data_class": data_class, **labels})
            _log.debug("%s tenant=%s location=%s failed: %s", operation, self.tenant.id,
                       self.location, type(exc).__name__)
            raise
        info = describe(result)
        self._emit(operation, "ok", served=served, key=key, info=info, intent=intent,
                   record=record, **{"data_class": data_class, **labels})
        if served != "primary":
            annotate(served_by=served)
        _log.debug("%s tenant=%s location=%s provider=%s served_by=%s size=%s ok",
                   operation, self.tenant.id, self.location, self._target(served).provider,
                   served, info.size if info is not None else None)
        return result

    def _failed(self, operation: str, key: str | None, exc: Exception, *,
                data_class: str | None, intent: AuditEvent | None,
                record: Callable[[AuditEvent], None] | None = None, **fields_: Any) -> None:
        refused = (TransferBlocked, BAARequired, NotAnonymised)
        outcome = "blocked" if isinstance(exc, refused) else "error"
        # An invalid key is recorded cut to the key limit: it was never validated.
        shown = key[: keys.MAX_KEY_BYTES] if isinstance(key, str) else None
        self._emit(operation, outcome, key=shown, data_class=data_class, error=exc,
                   intent=intent, record=record, **fields_)

    def _report(self, info: ObjectInfo, served: ServedBy) -> StoredObject:
        target = self._target(served)
        values = {f.name: getattr(info, f.name) for f in fields(ObjectInfo)}
        values["key"] = keys.relative_key(self.tenant, info.key)
        return StoredObject(**values, stored_key=info.key, tenant_id=self.tenant.id,
                            location=self.location, provider=target.provider,
                            region=target.region, bucket=target.bucket, served_by=served)

    def audit_placement(self, data_class: str = PLACEMENT_CLASS) -> Decision:
        """Decide placing ``data_class`` data in this store's location and audit it as
        one ``placement`` event: the one audit path for placement decisions. Each class
        is decided and audited once per store."""
        day = self._policy.today()  # agreements start and end: a new day, a new decision
        decision = self._decisions.get((data_class, day))
        if decision is not None:
            return decision
        with self._once:
            decision = self._decisions.get((data_class, day))
            if decision is None:
                decision = self._policy.placement_decision(self.tenant, data_class)
                self._decision_ids[(data_class, day)] = self._emit(
                    "placement", "allowed" if decision.allowed else "blocked",
                    data_class=data_class, decision=decision)
                self._decisions[(data_class, day)] = decision
            return decision

    def placement_fields(self, data_class: str) -> dict[str, Any]:
        """The placement decision a write of ``data_class`` rests on, as event fields: a
        write is a placement of the tenant's data in this location (a transfer when that
        is another country), so its events carry the basis, and a refused write the
        reasons, and name the decision in ``decision_id``. Empty before
        :meth:`audit_placement` decided the class."""
        day = self._policy.today()
        decision = self._decisions.get((data_class, day))
        if decision is None:
            return {}
        fields_: dict[str, Any] = {
            "decision_id": self._decision_ids.get((data_class, day)),
            "is_transfer": decision.is_transfer, "mechanism": decision.mechanism,
            "regimes": decision.regimes, "agreements": decision.agreements,
            "basis": basis_of(decision), "destination_country": decision.destination}
        if not decision.allowed:
            fields_["reasons"] = decision.reasons
        return fields_

    def check_write(self, data_class: str) -> str:
        """Refuse a write of ``data_class`` that residency forbids; return the class.

        Raises :class:`PlacementBlocked` when storing the tenant's data in its location is
        itself a transfer it has no mechanism for, and :class:`BAARequired` for ``phi`` on
        a backend whose target has ``baa: false``.
        """
        dc = self._policy.check_data_class(data_class)
        decision = self.audit_placement(dc)
        if not decision.allowed:
            raise PlacementBlocked(decision, (
                f"tenant {self.tenant.id!r} ({self.tenant.country}) may not store {dc} data "
                f"in location {self.location}: " + "; ".join(decision.reasons)))
        require_baa(self.target, self.location, dc)
        return dc

    # --- the data operations ----------------------------------------------------------

    def check_category(self, category: str | None,
                       metadata: dict[str, str] | None = None) -> str | None:
        """The retention category of a write, validated against the location's retention.

        ``category`` may be given as the argument or as ``metadata["category"]`` (the same
        value if both). Returns None for a write without a category (not governed by
        retention). Raises :class:`UnknownRetentionCategory` for a category the map has no
        period for in this location: no lifecycle rule would ever delete such an object.
        """
        from_meta = (metadata or {}).get(marks.CATEGORY_META)
        if category is not None and from_meta is not None and category != from_meta:
            raise StorageError(
                f"retention category given twice with different values: category="
                f"{category!r}, metadata[{marks.CATEGORY_META!r}]={from_meta!r}: give it once")
        chosen = category if category is not None else from_meta
        if chosen is None:
            return None
        known = sorted(self._policy.location(self.location).retention)
        if not isinstance(chosen, str) or chosen not in known:
            raise UnknownRetentionCategory(
                f"unknown retention category {chosen!r} for location {self.location} in "
                f"region map {self._policy.map.name!r}: use one of {', '.join(known) or 'none'}, "
                f"or add it under `retention` (locations.{self.location}.retention)")
        return chosen

    def put(self, key: str, data: bytes | BinaryIO, data_class: str = "phi",
            metadata: dict[str, str] | None = None,
            progress: ProgressCallback | None = None, *,
            category: str | None = None, evidence: Evidence | None = None) -> StoredObject:
        """Store ``data`` (bytes or a binary file object, streamed) under ``key``.

        ``data_class`` and the creation time are stored as object metadata. ``category``
        (or ``metadata["category"]``) names the map's retention category: it is validated
        (:class:`UnknownRetentionCategory`), stored with the object's expiry time, and
        marked where the cloud's lifecycle engine selects it (S3 object tag, Azure blob
        index tag, GCS custom time; see :mod:`residency_sdk.lifecycle`). Refused with
        :class:`PlacementBlocked` / :class:`BAARequired` before any byte is sent.

        ``anonymised`` is checked, not believed (:mod:`residency_sdk.anonymised`): a DICOM
        object must pass :func:`~residency_sdk.deid.check_dicom`, anything else needs
        ``evidence`` (the :class:`~residency_sdk.deid.evidence.Evidence` of its
        de-identification), and given evidence must be this tenant's and about these
        exact bytes. Data that fails is stored as ``phi`` where ``phi`` is allowed (the
        event says why) and refused with :class:`NotAnonymised` where it is not. The
        evidence is stored beside the object in the tenant's location, its digest in the
        object's metadata (:data:`~residency_sdk.deid.evidence.EVIDENCE_META`), its
        summary in the audit event.
        """
        steps = self._put_steps(key, data, data_class, metadata, progress,
                                category=category, evidence=evidence)
        try:
            return self._audited("put", key, steps.run, data_class=data_class,
                                 describe=lambda i: i, check=steps.check,
                                 labels=steps.labels)
        finally:
            steps.close()

    def _put_steps(self, key: str, data: bytes | BinaryIO, data_class: str,
                   metadata: dict[str, str] | None, progress: ProgressCallback | None, *,
                   category: str | None, evidence: Evidence | None) -> _Steps[StoredObject]:
        """What :meth:`put` runs: its check (everything refusable without a backend),
        its backend step, the event fields the check sets, and what closes its intake."""
        checked: list[Any] = []
        labels: dict[str, Any] = {}
        intook: list[anonymised.Intake] = []

        def check() -> None:  # everything refusable without a backend, before the intent
            stored = keys.tenant_key(self.tenant, key)
            declared = self._policy.check_data_class(data_class)
            user_meta = marks.check_user_metadata(metadata)
            cat = self.check_category(category, user_meta)
            if evidence is not None and (declared != "anonymised"
                                         or not isinstance(evidence, Evidence)):
                raise InputError(
                    f"evidence= is the Evidence of a de-identification, for data_class="
                    f"'anonymised' only (got data_class={data_class!r}, evidence of type "
                    f"{type(evidence).__name__}): drop it, or store the data as anonymised")
            verdict = None
            if declared == "anonymised":
                intook.append(anonymised.intake(data))
                verdict = anonymised.verify(intook[0], tenant_id=self.tenant.id,
                                            evidence=evidence)
                if verdict.ok:
                    labels["deid"] = verdict.summary()
                else:
                    declared = "phi"
                    labels.update(data_class="phi", reasons=(verdict.reason(),))
            try:
                dc = self.check_write(declared)
            except (PlacementBlocked, BAARequired) as exc:
                placed = self.placement_fields(declared)
                placed["reasons"] = (*placed.get("reasons", ()), *labels.get("reasons", ()))
                labels.update(placed)
                if verdict is None or verdict.ok:
                    raise
                raise NotAnonymised(
                    f"object {key!r} of tenant {self.tenant.id!r} was declared anonymised "
                    f"but is not: {anonymised.shown(verdict.problems)}. Treated as phi, it is "
                    f"refused here: {exc}. De-identify it first (rs.deid.deidentify_dicom, "
                    "Residency.export_anonymised) and pass its evidence=",
                    found=verdict.found, problems=verdict.problems, refusal=exc) from exc
            placed = self.placement_fields(dc)
            placed.pop("reasons", None)
            labels.update(placed)
            checked.extend((stored, dc, user_meta, cat, verdict))

        def run() -> tuple[StoredObject, ServedBy]:
            stored, dc, user_meta, cat, verdict = checked
            payload = intook[0].payload if intook else data
            self.guard(write=True)
            self.record_reach()
            period = (None if cat is None
                      else self._policy.location(self.location).retention[cat].period)
            meta = marks.write_marks(user_meta, data_class=dc, tenant_id=self.tenant.id,
                                     created=datetime.now(UTC), category=cat, period=period)
            if verdict is not None and verdict.ok and verdict.evidence is not None:
                # Written ahead of the object: an object naming evidence that was never
                # stored would fail every later transfer's verification.
                meta[EVIDENCE_META] = self._deid.save_evidence(
                    self.tenant, verdict.evidence, actor=self.actor)
            info, served = self._with_failover(
                lambda s: s.put(stored, payload, metadata=meta, progress=progress),
                rewind=_rewinder(payload))
            return self._report(info, served), served

        def close() -> None:
            for taken in intook:
                taken.close()

        return _Steps(check, run, labels, close)

    def get(self, key: str) -> bytes:
        """The whole object (checksum verified). For large objects use :meth:`open`."""
        stored = keys.tenant_key(self.tenant, key)
        data: bytes = self._audited(
            "get", key, lambda: self._guarded(lambda: self._with_failover(
                lambda s: s.get(stored))),
            describe=lambda d: ObjectInfo(key=stored, size=len(d)), read=True)
        return data

    def open(self, key: str) -> BinaryIO:
        """A streaming reader over the object; the checksum is verified at its end."""
        stored = keys.tenant_key(self.tenant, key)
        reader: BinaryIO = self._audited(
            "get", key, lambda: self._guarded(lambda: self._with_failover(
                lambda s: s.open(stored))), read=True)
        return reader

    def head(self, key: str) -> StoredObject:
        """Size, checksum, encryption, metadata and where the object is stored."""
        checked: list[str] = []

        def run() -> tuple[StoredObject, ServedBy]:
            self.guard()
            info, served = self._with_failover(lambda s: s.head(checked[0]))
            return self._report(info, served), served

        return self._audited("head", key, run, describe=lambda i: i, read=True,
                             check=lambda: checked.append(keys.tenant_key(self.tenant, key)))

    def exists(self, key: str) -> bool:
        """True if the tenant has an object under ``key``."""
        stored = keys.tenant_key(self.tenant, key)
        found: bool = self._audited("head", key, lambda: self._guarded(
            lambda: self._with_failover(lambda s: s.exists(stored))), read=True)
        return found

    def delete(self, key: str) -> bool:
        """Delete one object; True if it existed. (``Residency.erase`` erases the whole
        tenant, failover backend included.)"""
        stored = keys.tenant_key(self.tenant, key)
        deleted: bool = self._audited("delete", key, lambda: self._guarded(
            lambda: self._with_failover(lambda s: s.delete(stored))))
        return deleted

    # --- batches -----------------------------------------------------------------------

    def put_many(self, items: Iterable[PutItemLike], *,
                 concurrency: int = DEFAULT_CONCURRENCY,
                 progress: BatchProgress | None = None) -> list[BatchResult[StoredObject]]:
        """Store many objects, ``concurrency`` at a time; one :class:`BatchResult` per
        item, in input order.

        ``items`` (any iterable, consumed lazily: at most ``concurrency`` items are held)
        are :class:`~residency_sdk.storage.batch.PutItem` or ``(key, data)`` or
        ``(key, data, options)`` with ``options`` a dict of ``data_class``, ``metadata``,
        ``category``, ``evidence`` (``put``'s arguments; ``data_class`` defaults to
        ``phi``). Each item is one :meth:`put`: checked, refused or stored, and audited
        exactly as that put would be; a failure (a refusal too) is the item's result and
        the others go on. A malformed item fails with :class:`InputError` without
        touching a backend. ``progress(done, total, key)`` is called as items finish.
        ``concurrency`` is 1 to 256 (:class:`InputError` otherwise). If the audit trail
        fails, no further item starts and :class:`AuditUnavailable` is raised once the
        items in flight have finished (see :mod:`residency_sdk.storage.batch`)."""
        width = check_concurrency(concurrency)
        ahead: WriteAhead[StoredObject] = WriteAhead(self._audit, width)

        def stage(item: PutItem) -> Callable[[], Prepared[StoredObject]]:
            def prepare() -> Prepared[StoredObject]:
                steps = self._put_steps(item.key, item.data, item.data_class, item.metadata,
                                        None, category=item.category, evidence=item.evidence)
                try:
                    intent = self._checked_intent("put", item.key, steps.check,
                                                  item.data_class, steps.labels)
                except Exception:
                    steps.close()
                    with self._span("put", item.data_class):  # one span per item: this
                        raise
                except BaseException:
                    steps.close()
                    raise

                def perform(recorded: AuditEvent | None,
                            record: Callable[[AuditEvent], None]) -> StoredObject:
                    with self._span("put", item.data_class):
                        return self._perform("put", item.key, steps.run, recorded,
                                             data_class=item.data_class,
                                             describe=lambda i: i, read=False,
                                             labels=steps.labels, record=record)
                return Prepared(intent, perform, steps.close)
            return prepare

        def stages() -> Iterator[Stage[StoredObject]]:
            for index, raw in enumerate(items):
                try:
                    item = put_item(raw)
                except InputError as exc:
                    yield item_key(raw, index), failing(exc)
                else:
                    yield item.key, stage(item)

        try:
            results = run_bounded(ahead.jobs(stages()), concurrency=width,
                                  progress=progress, total=total_of(items))
        except BaseException:
            with contextlib.suppress(AuditUnavailable):
                ahead.close()  # what the batch raised is the error to report
            raise
        ahead.close()
        return results

    def get_many(self, keys_: Iterable[str], *, concurrency: int = DEFAULT_CONCURRENCY,
                 progress: BatchProgress | None = None) -> list[BatchResult[bytes]]:
        """Read many whole objects, ``concurrency`` at a time; one :class:`BatchResult`
        (its ``value`` the bytes) per key, in input order.

        Each key is one :meth:`get` (checksum verified, audited exactly like one); a
        missing or unreadable object is that key's result and the others go on. The
        results hold every object read: for a batch larger than memory, pass the keys in
        slices. ``concurrency`` and ``progress`` as for :meth:`put_many`."""
        width = check_concurrency(concurrency)

        def one(key: str) -> Callable[[], bytes]:
            return lambda: self.get(key)

        def jobs() -> Iterator[Job[bytes]]:
            for key in keys_:
                yield (key if isinstance(key, str) else repr(key)), one(key)

        return run_bounded(jobs(), concurrency=width, progress=progress,
                           total=total_of(keys_))

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        """The tenant's objects whose key starts with ``prefix`` (relative keys).

        The intent is recorded before the backend is asked; the outcome when it first
        answers (or fails)."""
        stored_prefix = keys.tenant_list_prefix(self.tenant, prefix)

        def first_page(store: ObjectStore) -> tuple[Iterator[ObjectInfo], ObjectInfo | None]:
            items = iter(store.list(stored_prefix))
            return items, next(items, None)

        with self._span("list", None):  # until the first page: what the events cover
            intent = self._intent("list", prefix or None)
            try:
                self.guard()
                (items, first), served = self._with_failover(first_page)
            except AuditUnavailable:
                raise
            except ResidencyError as exc:
                self._emit("list", "error", key=prefix or None, error=exc, intent=intent)
                raise
            self._emit("list", "ok", served=served, key=prefix or None, intent=intent)
        return self._iter_reported(items, first, served)

    def _iter_reported(self, items: Iterator[ObjectInfo], first: ObjectInfo | None,
                       served: ServedBy) -> Iterator[StoredObject]:
        if first is None:
            return
        yield self._report(first, served)
        for info in items:
            yield self._report(info, served)


# --- opening a store, and copying between locations --------------------------------------


def open_tenant_store(policy: ResidencyPolicy, stores: StorePool, audit: AuditEmitter,
                      tenant: Tenant, *, provider: str | None = None,
                      actor: str | None = None, purpose: str | None = None,
                      audit_placement: bool = True,
                      registry: TenantRegistry | None = None,
                      lineage: Lineage | None = None,
                      deid: DeidRecords | None = None) -> TenantStore:
    """A :class:`TenantStore` bound to ``tenant``'s placement (see
    ``Residency.storage_for``); the binding is audited as one ``placement`` event (for
    the strictest class; each write is checked for its own class when it happens)."""
    location = policy.location_of(tenant)
    target = location.backend(provider or stores.default_provider(location))
    store = TenantStore(policy, stores, audit, tenant, target, actor=actor, purpose=purpose,
                        registry=registry, lineage=lineage, deid=deid)
    if audit_placement:
        store.audit_placement(PLACEMENT_CLASS)
    return store


def _verify_source(source: TenantStore, deid: DeidRecords, info: ObjectInfo,
                   stored: str) -> tuple[anonymised.Intake, anonymised.Verdict]:
    """Read the object a transfer would copy as ``anonymised`` (spooled: what is checked
    is what is copied) and check it, with the evidence record its metadata names."""
    reader, _ = source._with_failover(lambda s: s.open(stored))
    with reader:
        taken = anonymised.intake(reader, copy=True)
    evidence = problem = None
    digest = info.metadata.get(EVIDENCE_META)
    if digest:
        try:
            evidence = deid.evidence(source.tenant, digest)
        except IntegrityError as exc:
            problem = f"its evidence record is unusable: {exc}"
        if evidence is None and problem is None:
            problem = (f"its metadata names evidence {digest[:16]}… that the tenant's "
                       f"location does not hold")
    try:
        verdict = anonymised.verify(taken, tenant_id=source.tenant.id, evidence=evidence,
                                    evidence_problem=problem)
    except BaseException:
        taken.close()
        raise
    return taken, verdict


def transfer(policy: ResidencyPolicy, stores: StorePool, audit: AuditEmitter, tenant: Tenant,
             key: str, to: str, data_class: str = "phi", *, actor: str | None = None,
             purpose: str | None = None, provider: str | None = None,
             registry: TenantRegistry | None = None,
             lineage: Lineage | None = None,
             deid: DeidRecords | None = None,
             derogation: Derogation | None = None) -> StoredObject:
    """Copy one object of ``tenant`` into location ``to`` if the transfer is lawful (see
    :func:`_transfer`), traced as the span ``residency.transfer`` (tenant, source
    location, destination, data class, outcome; never the key)."""
    with span("residency.transfer", operation="transfer", tenant_id=tenant.id,
              destination=str(to), data_class=str(data_class)[:64]):
        return _transfer(policy, stores, audit, tenant, key, to, data_class, actor=actor,
                         purpose=purpose, provider=provider, registry=registry,
                         lineage=lineage, deid=deid, derogation=derogation)


def _transfer(policy: ResidencyPolicy, stores: StorePool, audit: AuditEmitter, tenant: Tenant,
              key: str, to: str, data_class: str = "phi", *, actor: str | None = None,
              purpose: str | None = None, provider: str | None = None,
              registry: TenantRegistry | None = None,
              lineage: Lineage | None = None,
              deid: DeidRecords | None = None,
              derogation: Derogation | None = None) -> StoredObject:
    """Copy one object of ``tenant`` into location ``to`` if the transfer is lawful.

    The decision comes first: a blocked transfer raises :class:`TransferBlocked` before any
    byte is read or written, so nothing is copied. The stricter of ``data_class`` and the
    class the object was stored as decides.

    When that is ``anonymised``, the object is verified before it is copied (after the
    intent is durable): read once into a spool (what is checked is what is copied), its
    evidence record (named by its metadata) must be present, this tenant's and about
    exactly these bytes, and a DICOM object must pass
    :func:`~residency_sdk.deid.check_dicom`; non-DICOM data needs its evidence. An
    object that fails is decided as ``phi``: refused with :class:`NotAnonymised` where
    ``phi`` may not go, copied (and marked) as ``phi`` where it may. The transfer event
    carries the evidence summary (``deid``), or the reason it was treated as ``phi``.
    """
    deid = deid if deid is not None else DeidRecords(policy, stores, audit)
    source = open_tenant_store(policy, stores, audit, tenant, provider=provider, actor=actor,
                               purpose=purpose, audit_placement=False, registry=registry,
                               lineage=lineage, deid=deid)
    stored = keys.tenant_key(tenant, key)
    destination = policy.destination(to)
    if destination.id == source.location:
        raise StorageError(f"object {key!r} of tenant {tenant.id!r} already lives in "
                           f"location {destination.id}: nothing to transfer")
    source_country = policy.location(source.location).country
    annotate(location=source.location, destination=destination.id)
    dest = TenantStore(policy, stores, audit, tenant,
                       destination.backend(provider or stores.default_provider(destination)),
                       location=destination.id, actor=actor, purpose=purpose, deid=deid)
    notes: dict[str, Any] = {}  # deid / reasons of the verification, on every later event
    decided: dict[str, str | None] = {}  # the latest decision's event id

    def emit(outcome: str, decision: Decision | None, *, served: ServedBy | None = None,
             info: ObjectInfo | None = None, error: BaseException | None = None,
             dc: str | None = None, intent: AuditEvent | None = None) -> None:
        extra = dict(notes)
        if "reasons" in extra and decision is not None:
            extra["reasons"] = (*decision.reasons, *extra["reasons"])
        dest._emit("transfer", outcome, served=served, key=key, info=info, error=error,
                   data_class=dc or data_class, decision=decision,
                   source_location=source.location, destination_location=destination.id,
                   destination_country=destination.country, intent=intent,
                   decision_id=decided.get("id"), **extra)

    def decide(dc: str, intent: AuditEvent | None = None,
               verdict: anonymised.Verdict | None = None) -> Decision:
        decision = policy.decide(tenant, destination.country, dc, source=source_country,
                                 counterparty=destination.operator, derogation=derogation)
        decided["id"] = audit.decision("transfer_check", tenant, decision, actor=actor,
                                       purpose=purpose)
        if not decision.allowed:
            error: ResidencyError = TransferBlocked(decision)
            if verdict is not None:
                error = _not_anonymised(key, tenant, verdict, error)
            emit("blocked", decision, error=error, dc=dc, intent=intent)
            raise error
        return decision

    decision = decide(policy.check_data_class(data_class))
    # Written ahead: nothing is read or copied until the intent is durable.
    intent = dest._intent("transfer", key, data_class=data_class, decision=decision,
                          source_location=source.location,
                          destination_location=destination.id,
                          destination_country=destination.country,
                          decision_id=decided.get("id"))
    checked: anonymised.Intake | None = None
    try:
        source.guard()
        info, _ = source._with_failover(lambda s: s.head(stored))
        dc = _stricter(decision.data_class, marks.data_class_of(info.metadata) or "phi")
        if dc != decision.data_class:
            decision = decide(dc, intent)
        meta = marks.copied_from(info.metadata, source.location)
        if dc == "anonymised":
            checked, verdict = _verify_source(source, deid, info, stored)
            if verdict.ok:
                notes["deid"] = verdict.summary()
            else:
                dc = "phi"
                notes["reasons"] = (verdict.reason(),)
                decision = decide(dc, intent, verdict)
                meta[marks.DATA_CLASS_META] = dc  # the copy is what it was decided as
                try:
                    require_baa(dest.target, destination.id, dc)
                except BAARequired as exc:
                    raise _not_anonymised(key, tenant, verdict, exc) from exc
        require_baa(dest.target, destination.id, dc)
        if lineage is not None:  # before any byte is copied: erasure must know of it
            lineage.copied(tenant, key, source_location=source.location,
                           destination_location=destination.id,
                           provider=dest.target.provider, bucket=dest.target.bucket,
                           actor=actor)

        def copy(target_store: ObjectStore) -> ObjectInfo:
            if checked is not None:  # the verified bytes, not a second read of the source
                payload = checked.payload
                if not isinstance(payload, bytes):
                    payload.seek(0)
                return target_store.put(stored, payload, metadata=meta)
            reader, _ = source._with_failover(lambda s: s.open(stored))
            with reader:
                return target_store.put(stored, reader, metadata=meta)

        copied, served = dest._with_failover(copy)
    except (TransferBlocked, NotAnonymised) as exc:
        if isinstance(exc, NotAnonymised) and not isinstance(exc.refusal, TransferBlocked):
            emit("blocked", decision, error=exc, dc="phi", intent=intent)
        raise  # a refused decision was recorded by decide()
    except AuditUnavailable:
        raise
    except ResidencyError as exc:
        emit("blocked" if isinstance(exc, BAARequired) else "error", decision, error=exc,
             intent=intent)
        raise
    finally:
        if checked is not None:
            checked.close()
    result = dest._report(copied, served)
    emit("ok", decision, served=served, info=result, dc=dc, intent=intent)
    return result


def _not_anonymised(key: str, tenant: Tenant, verdict: anonymised.Verdict,
                    refusal: ResidencyError) -> NotAnonymised:
    return NotAnonymised(
        f"object {key!r} of tenant {tenant.id!r} is not anonymised: "
        f"{anonymised.shown(verdict.problems)}. Treated as phi, the transfer is refused: "
        f"{refusal}. Transfer a de-identified copy instead "
        "(Residency.export_anonymised, or rs.deid.deidentify_dicom and put(..., "
        "evidence=))", found=verdict.found, problems=verdict.problems, refusal=refusal)
