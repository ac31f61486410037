"""One planned backend's erasure step (``empty_backend``) and the tracker's run of a
request (``ErasureTracker.run``), branch by branch.

``empty_backend`` runs against an in-memory store whose calls the test scripts and
records (which location the pool opened it in, what the hold check was asked, every
listing, delete and purge), with a real :class:`AuditEmitter` whose hook keeps the
events: each case asserts the whole progress it leaves (status, counts, error text,
held objects), the intent and outcome events field by field, and what reached the
store. ``ErasureTracker.run`` runs on ``Residency.load`` with stores kept in memory (the
``storage=`` opener) or in the embedded local backend: a request's status, attempts,
saved state and refusals are read back from its state file.

Everything is in-process (no emulator, no subprocess): the file takes about a second.
A list-call budget on the scripted store turns a step that would loop forever into an
immediate failure.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import residency_sdk as rs
from residency_sdk.erasure import deletion
from residency_sdk.erasure.deletion import empty_backend
from residency_sdk.erasure.request import (
    BackendProgress,
    ErasureRequest,
    load_request,
    save_request,
)
from residency_sdk.erasure.status import run_command
from residency_sdk.errors import BackendUnavailable, ErasureError, StorageError
from residency_sdk.events import AuditEmitter, AuditEvent
from residency_sdk.marks import LEGAL_HOLD_META
from residency_sdk.model import StorageTarget, Tenant
from residency_sdk.regionmap import load_region_map
from residency_sdk.storage.base import ObjectInfo, Residue
from residency_sdk.storage.memory import MemoryStore
from residency_sdk.storage.pool import StorePool

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=7)
MAP = load_region_map(None)
DE_AWS = MAP.locations["DE"].backends["aws"]
FR_AWS = MAP.locations["FR"].backends["aws"]
DE_GCP_FAILOVER = MAP.locations["DE"].failovers["gcp"]
TENANT = Tenant(id="clinic-1", country="DE")
PREFIX = "tenants/clinic-1/"
BACKEND = f"DE/aws:{DE_AWS.bucket}"
MARKER_WORDS = f"legal hold marker ({LEGAL_HOLD_META}=true) in object metadata"


class Scripted(MemoryStore):
    """A memory store recording what the erasure asked of it, and scripted to fail a
    head, keep re-uploading a key, forget its deletions, list a vanished key, or report
    residue. More than ``max_lists`` listings fail the test (a step looping forever)."""

    def __init__(self, target: StorageTarget) -> None:
        super().__init__(target)
        self.calls: list[tuple[Any, ...]] = []
        self.head_errors: dict[str, BaseException] = {}
        self.list_error: BaseException | None = None
        self.purge_error: BaseException | None = None
        self.changing: set[str] = set()
        self.forgetful: set[str] = set()
        self.ghosts: dict[str, int] = {}
        self.residue = Residue()
        self.left: list[str] = []
        self.lists = 0
        self.max_lists = 40
        self.threads: list[str] = []

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self.lists += 1
        if self.lists > self.max_lists:
            raise AssertionError(f"{self!r} listed {self.lists} times: the step loops")
        self.calls.append(("list", prefix))
        if self.list_error is not None:
            raise self.list_error
        ghosts = []
        for key, times in self.ghosts.items():
            if times > 0 and key.startswith(prefix):
                self.ghosts[key] = times - 1
                ghosts.append(ObjectInfo(key=key, size=0))
        return iter([*ghosts, *super().list(prefix)])

    def head(self, key: str) -> ObjectInfo:
        self.calls.append(("head", key))
        self.threads.append(threading.current_thread().name)
        error = self.head_errors.get(key)
        if error is not None:
            raise error
        return super().head(key)

    def hold_reason(self, info: ObjectInfo, now: datetime) -> str | None:
        self.calls.append(("hold_reason", info.key, now))
        return None

    def delete(self, key: str, *, if_match: ObjectInfo | None = None) -> bool:
        self.calls.append(("delete", key))
        if key in self.changing:  # someone uploads it again right before each delete
            self.put(key, self.get(key), metadata=self.head(key).metadata)
        if key in self.forgetful:
            return True
        return super().delete(key, if_match=if_match)

    def purge_residue(self, prefix: str, *, keep: frozenset[str] = frozenset()) -> Residue:
        self.calls.append(("purge_residue", prefix, keep))
        if self.purge_error is not None:
            raise self.purge_error
        return self.residue

    def residue_left(self, prefix: str, *,
                     keep: frozenset[str] = frozenset()) -> builtins.list[str]:
        self.calls.append(("residue_left", prefix, keep))
        return list(self.left)

    def named(self, call: str) -> builtins.list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == call]


class Opener:
    """A store opener keeping one scripted store per (bucket, location), recording every
    (target, location) it was asked to open."""

    def __init__(self) -> None:
        self.opened: list[tuple[StorageTarget, str]] = []
        self.stores: dict[tuple[str, str], Scripted] = {}

    def __call__(self, target: StorageTarget, location: str) -> Scripted:
        self.opened.append((target, location))
        return self.store(target, location)

    def store(self, target: StorageTarget, location: str) -> Scripted:
        return self.stores.setdefault((target.bucket, location), Scripted(target))


class Clock:
    """Returns the times it is given, one per call, then the last one forever."""

    def __init__(self, *times: datetime) -> None:
        self.times = list(times)

    def __call__(self) -> datetime:
        return self.times.pop(0) if len(self.times) > 1 else self.times[0]


class Step:
    """One ``empty_backend`` call's collaborators and what they recorded."""

    def __init__(self, *, target: StorageTarget = DE_AWS, location: str | None = "DE",
                 role: str = "primary", request_location: str = "DE") -> None:
        self.opener = Opener()
        self.pool = StorePool(opener=self.opener)
        self.events: list[AuditEvent] = []
        self.audit = AuditEmitter(hooks=[self.events.append])
        self.saves: list[tuple[ErasureRequest, int]] = []
        self.deleted: list[tuple[str, str]] = []
        self.target = target
        self.request = ErasureRequest(
            id="er-20261201-0a1b2c3d", tenant_id=TENANT.id, tenant_country="DE",
            location=request_location, map_name="default", requested_at=NOW,
            deadline=NOW + timedelta(days=30), reason="contract terminated",
            purpose="offboarding", actor="ops@example.com", attempts=2)
        name = f"{location or request_location}/{target.provider}:{target.bucket}" + (
            "@failover" if role == "failover" else "")
        self.progress = BackendProgress(backend=name, provider=target.provider,
                                        region=target.region, bucket=target.bucket,
                                        role=role, location=location)

    def store(self, location: str | None = None) -> Scripted:
        return self.opener.store(self.target, location or self.progress.location or "DE")

    def save(self, request: ErasureRequest) -> None:
        self.saves.append((request, self.progress.deleted))

    def run(self, *, actor: str | None = None, workers: int = 1,
            clock: Callable[[], datetime] | None = None,
            on_deleted: bool = True) -> None:
        empty_backend(self.request, TENANT, self.progress, self.target, stores=self.pool,
                      audit=self.audit, clock=clock or Clock(NOW, LATER), workers=workers,
                      actor=actor,
                      on_deleted=(lambda b, k: self.deleted.append((b, k)))
                      if on_deleted else None,
                      save=self.save)

    def expected(self, outcome: str, *, actor: str = "ops@example.com",
                 reasons: str, error: str | None = None,
                 intent_id: str | None = None) -> dict[str, Any]:
        event = AuditEvent(
            operation="erase", outcome=outcome, actor=actor,
            purpose="erasure:er-20261201-0a1b2c3d", tenant_id="clinic-1",
            tenant_country="DE",
            source_location=self.progress.location or self.request.location,
            provider=self.target.provider, region=self.target.region,
            bucket=self.target.bucket,
            served_by="failover" if self.progress.role == "failover" else "primary",
            size=None if outcome == "intent" else self.progress.bytes,
            reasons=(reasons, "reason: contract terminated", "purpose: offboarding"),
            error=error, intent_id=intent_id)
        return _fields(event)

    def check_events(self, outcome: str, *, actor: str = "ops@example.com",
                     reasons: str, error: str | None = None) -> None:
        intent, result = self.events
        assert _fields(intent) == self.expected(
            "intent", actor=actor,
            reasons=f"{self.progress.backend}: erasure starting (attempt 2)")
        assert _fields(result) == self.expected(outcome, actor=actor, reasons=reasons,
                                                error=error, intent_id=intent.event_id)


def _fields(event: AuditEvent) -> dict[str, Any]:
    return event.model_dump(exclude={"event_id", "time"})


def _put(store: Scripted, name: str, data: bytes, **metadata: str) -> str:
    key = PREFIX + name
    store.put(key, data, metadata=metadata or None)
    return key


# --- empty_backend ---------------------------------------------------------------------


def test_every_object_of_the_tenant_is_deleted_counted_verified_and_audited() -> None:
    step = Step()
    store = step.store()
    keys = [_put(store, "a.dcm", b"12345"), _put(store, "b.dcm", b"123"),
            _put(store, "c/d.dcm", b"1")]
    other = "tenants/clinic-10/a.dcm"
    store.put(other, b"someone else's")
    store.residue = Residue(versions_deleted=2)
    step.progress.found, step.progress.deleted = 1, 1
    step.progress.bytes, step.progress.versions_deleted = 10, 1

    step.run()

    p = step.progress
    assert (p.status, p.found, p.deleted, p.bytes, p.versions_deleted) == (
        "verified", 4, 4, 19, 3)
    assert (p.held, p.remaining, p.error, p.unreachable, p.verified_at) == (
        [], 0, None, False, LATER)
    assert step.deleted == [(BACKEND, k) for k in keys]
    assert step.saves == [(step.request, 4)] and step.saves[0][0] is step.request
    assert store.exists(other) and not any(store.exists(k) for k in keys)
    assert store.named("purge_residue") == [("purge_residue", PREFIX, frozenset())]
    assert store.named("residue_left") == [("residue_left", PREFIX, frozenset())]
    assert store.named("list") == [("list", PREFIX)] * 3
    assert step.opener.opened == [(DE_AWS, "DE")]
    # Without a run actor, the request's actor is named.
    step.check_events("ok", reasons=f"{BACKEND}: 4 objects, 3 old versions deleted, "
                                    "0 held, status verified")


def test_the_hold_check_is_asked_about_the_clocks_time_and_verified_at_is_the_end() -> None:
    step = Step()
    store = step.store()
    keys = [_put(store, "a.dcm", b"x"), _put(store, "b.dcm", b"y")]
    step.run(clock=Clock(NOW, LATER))
    assert [(c[1], c[2]) for c in store.named("hold_reason")] == [(k, NOW) for k in keys]
    assert step.progress.verified_at == LATER


def test_the_store_is_opened_in_the_backends_own_location_not_the_requests() -> None:
    # A transferred copy: the backend is in FR, the request (the tenant's home) in DE.
    step = Step(target=FR_AWS, location="FR", request_location="DE")
    copy = _put(step.store("FR"), "a.dcm", b"copy")
    home = _put(step.store("DE"), "a.dcm", b"the DE store of the FR bucket")
    step.run()
    assert step.opener.opened == [(FR_AWS, "FR")]
    assert not step.store("FR").exists(copy) and step.store("DE").exists(home)
    assert step.progress.status == "verified" and step.progress.deleted == 1
    assert step.events[0].source_location == step.events[1].source_location == "FR"
    step.check_events("ok", reasons=f"FR/aws:{FR_AWS.bucket}: 1 objects, 0 old versions "
                                    "deleted, 0 held, status verified")


def test_a_backend_recorded_without_a_location_is_opened_in_the_requests() -> None:
    step = Step(location=None, request_location="DE")
    key = _put(step.store("DE"), "a.dcm", b"x")
    step.run()
    assert step.opener.opened == [(DE_AWS, "DE")]
    assert not step.store("DE").exists(key)
    step.check_events("ok", reasons=f"{BACKEND}: 1 objects, 0 old versions deleted, "
                                    "0 held, status verified")


def test_the_intent_and_outcome_name_the_runs_actor_not_the_requests() -> None:
    step = Step(target=DE_GCP_FAILOVER, role="failover")
    _put(step.store(), "a.dcm", b"abc")
    step.run(actor="dpo@example.com")
    assert [e.actor for e in step.events] == ["dpo@example.com"] * 2
    assert [e.served_by for e in step.events] == ["failover"] * 2
    step.check_events("ok", actor="dpo@example.com",
                      reasons=f"DE/gcp:{DE_GCP_FAILOVER.bucket}@failover: 1 objects, "
                              "0 old versions deleted, 0 held, status verified")


def test_a_rerun_that_verifies_clears_the_previous_runs_error_and_unreachable_flag() -> None:
    step = Step()
    _put(step.store(), "a.dcm", b"x")
    step.progress = step.progress.model_copy(update={
        "status": "failed", "error": "BackendUnavailable: timed out", "unreachable": True})
    step.run()
    p = step.progress
    assert (p.status, p.error, p.unreachable) == ("verified", None, False)
    assert step.events[1].error is None


def test_an_object_re_uploaded_on_every_look_leaves_the_backend_failed_for_a_rerun() -> None:
    step = Step()
    store = step.store()
    busy = _put(store, "a.dcm", b"busy")
    calm = _put(store, "b.dcm", b"calm")
    store.changing.add(busy)
    step.progress.found = 5  # from an earlier run
    step.run()
    error = (f"1 object(s) still listed after deletion, e.g. {busy!r} "
             "(1 re-uploaded while being erased); run the erasure again")
    p = step.progress
    assert (p.status, p.error, p.remaining, p.found, p.deleted, p.bytes) == (
        "failed", error, 1, 7, 1, 4)
    assert p.verified_at is None and p.held == []
    # Examined three times, then left; the other object of the page is deleted in it.
    assert [c[1] for c in store.named("delete")] == [busy, busy, busy, calm]
    assert step.saves == [(step.request, 1)]
    assert store.exists(busy) and not store.exists(calm)
    assert step.deleted == [(BACKEND, calm)]
    step.check_events("error", reasons=f"{BACKEND}: 1 objects, 0 old versions deleted, "
                                       "0 held, status failed", error=error)


def test_objects_are_listed_deleted_and_saved_a_page_at_a_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deletion, "_SAVE_EVERY", 2)
    step = Step()
    keys = [_put(step.store(), f"{i}.dcm", b"x" * i) for i in range(1, 6)]
    step.run()
    assert step.saves == [(step.request, 2), (step.request, 4), (step.request, 5)]
    # Three pages, the empty listing that ends the loop, the verification listing.
    assert step.store().lists == 5
    assert step.deleted == [(BACKEND, k) for k in keys]
    assert step.progress.status == "verified" and step.progress.bytes == 15


def test_a_legal_hold_marker_keeps_the_object_and_blocks_the_backend() -> None:
    step = Step()
    store = step.store()
    held = _put(store, "held.dcm", b"kept", **{LEGAL_HOLD_META: "true"})
    gone = _put(store, "gone.dcm", b"erased")
    step.run()
    p = step.progress
    assert (p.status, p.held, p.found, p.deleted, p.bytes, p.remaining, p.error) == (
        "blocked", [f"{held} ({MARKER_WORDS})"], 2, 1, 6, 0, None)
    assert p.verified_at is None
    assert store.exists(held) and not store.exists(gone)
    assert [c[1] for c in store.named("delete")] == [gone]
    assert store.named("purge_residue") == [("purge_residue", PREFIX, frozenset({held}))]
    assert store.named("residue_left") == [("residue_left", PREFIX, frozenset({held}))]
    assert step.saves == [(step.request, 1)]
    step.check_events("error", reasons=f"{BACKEND}: 1 objects, 0 old versions deleted, "
                                       "1 held, status blocked")


def test_old_versions_the_provider_keeps_block_the_backend_listed_sorted() -> None:
    step = Step()
    store = step.store()
    held = _put(store, "z.dcm", b"kept", **{LEGAL_HOLD_META: "yes"})
    version = PREFIX + "a.dcm?versionId=1"
    store.residue = Residue(versions_deleted=3, held={version: "object lock until 2027"})
    step.run()
    p = step.progress
    assert p.held == [f"{version} (object lock until 2027)", f"{held} ({MARKER_WORDS})"]
    assert (p.status, p.versions_deleted, p.remaining) == ("blocked", 3, 0)
    assert store.named("residue_left") == [
        ("residue_left", PREFIX, frozenset({held, version}))]


def test_residue_no_listing_shows_fails_the_verification() -> None:
    step = Step()
    store = step.store()
    _put(store, "a.dcm", b"x")
    store.left = [PREFIX + ".tmp-upload"]
    step.run()
    error = (f"1 object(s) still listed after deletion, e.g. '{PREFIX}.tmp-upload'; "
             "run the erasure again")
    assert (step.progress.status, step.progress.remaining, step.progress.error) == (
        "failed", 1, error)
    step.check_events("error", reasons=f"{BACKEND}: 1 objects, 0 old versions deleted, "
                                       "0 held, status failed", error=error)


def test_an_object_listed_again_after_its_delete_is_deleted_once_and_fails() -> None:
    step = Step()
    store = step.store()
    stuck = _put(store, "a.dcm", b"stuck")
    store.forgetful.add(stuck)
    step.run()
    error = (f"1 object(s) still listed after deletion, e.g. {stuck!r}; "
             "run the erasure again")
    p = step.progress
    assert (p.status, p.found, p.deleted, p.remaining, p.error) == (
        "failed", 1, 1, 1, error)
    assert [c[1] for c in store.named("delete")] == [stuck]
    assert step.deleted == [(BACKEND, stuck)] and step.saves == [(step.request, 1)]


def test_an_object_gone_before_its_head_is_skipped_and_not_counted() -> None:
    step = Step()
    store = step.store()
    ghost = PREFIX + "0-ghost.dcm"
    store.ghosts[ghost] = 2  # in the first two listings only
    real = _put(store, "real.dcm", b"data")
    step.run()
    p = step.progress
    assert (p.status, p.found, p.deleted, p.bytes) == ("verified", 1, 1, 4)
    assert step.deleted == [(BACKEND, real)]
    assert [c[1] for c in store.named("head")] == [ghost, real]
    assert step.saves == [(step.request, 1)]


def test_without_a_deletion_callback_the_objects_are_still_deleted() -> None:
    step = Step()
    key = _put(step.store(), "a.dcm", b"x")
    step.run(on_deleted=False)
    assert step.progress.status == "verified" and not step.store().exists(key)
    assert step.deleted == []


@pytest.mark.parametrize(("where", "error", "unreachable"), [
    ("head", StorageError("head of 'a.dcm' failed: throttled"), False),
    ("head", BackendUnavailable("the backend kept failing: timed out"), True),
    ("list", BackendUnavailable("listing failed: connection refused"), True),
    ("purge", StorageError("purging the residue failed: denied"), False),
])
def test_a_store_error_fails_the_backend_naming_its_type(
        where: str, error: StorageError, unreachable: bool) -> None:
    step = Step()
    store = step.store()
    key = _put(store, "a.dcm", b"x")
    if where == "head":
        store.head_errors[key] = error
    elif where == "list":
        store.list_error = error
    else:
        store.purge_error = error
    step.progress.unreachable = not unreachable
    step.progress.held = ["earlier (kept)"]
    step.run(actor="dpo@example.com")
    text = f"{type(error).__name__}: {error}"
    p = step.progress
    assert (p.status, p.error, p.unreachable, p.remaining, p.held) == (
        "failed", text, unreachable, None, ["earlier (kept)"])
    assert p.verified_at is None
    deleted = 1 if where == "purge" else 0
    assert (p.found, p.deleted) == (deleted, deleted)
    step.check_events("error", actor="dpo@example.com",
                      reasons=f"{BACKEND}: {deleted} objects, 0 old versions deleted, "
                              "1 held, status failed", error=text)


def test_deletions_run_in_worker_threads_named_for_the_erasure() -> None:
    step = Step()
    keys = [_put(step.store(), f"{i}.dcm", b"x") for i in range(6)]
    step.run(workers=3)
    threads = step.store().threads
    assert len(threads) == 6 and all(t.startswith("erasure_") for t in threads), threads
    assert step.deleted == [(BACKEND, k) for k in keys]  # results in listing order


def test_a_single_worker_deletes_inline() -> None:
    step = Step()
    _put(step.store(), "a.dcm", b"x")
    step.run(workers=1)
    assert step.store().threads == [threading.current_thread().name]


# --- ErasureTracker.run ----------------------------------------------------------------


class TrackerClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Unreadable:
    """A lineage whose trace cannot be read."""

    def trace(self, tenant_id: str) -> Any:
        raise StorageError(f"lineage of {tenant_id} unreadable")


GCP = MAP.locations["DE"].backends["gcp"]
GCP_PRIMARY = f"DE/gcp:{GCP.bucket}"
GCP_FAILOVER = f"DE/gcp:{DE_GCP_FAILOVER.bucket}@failover"


class Memory:
    """A Residency on memory stores, its audit events and a tracker over ``gcp`` (a
    primary and its failover)."""

    def __init__(self, tmp_path: Path, **options: Any) -> None:
        self.opener = Opener()
        self.events: list[AuditEvent] = []
        self.res = rs.Residency.load(audit=str(tmp_path / "audit.db"), storage=self.opener,
                                     audit_hooks=[self.events.append])
        self.clock = TrackerClock(NOW)
        self.state = tmp_path / "state"
        self.tracker = self.res.erasure_tracker(self.state, clock=self.clock,
                                                actor="dpo@example.com", workers=1,
                                                **options)
        self.tenant = rs.Tenant(id="clinic-7", country="DE")
        self.primary = self.opener.store(GCP, "DE")
        self.failover = self.opener.store(DE_GCP_FAILOVER, "DE")
        self.request = self.res.erasure_tracker(self.state, clock=self.clock,
                                                actor="ops@example.com").request(
            self.tenant, providers=["gcp"])

    def put(self, store: Scripted, name: str, **metadata: str) -> str:
        key = f"tenants/clinic-7/{name}"
        store.put(key, b"data", metadata=metadata or None)
        return key

    def saved(self) -> ErasureRequest:
        return load_request(self.state, self.request.id)


def test_a_request_runs_to_completion_naming_the_runs_actor(tmp_path: Path) -> None:
    m = Memory(tmp_path)
    keys = [m.put(m.primary, "a.dcm"), m.put(m.failover, "b.dcm")]
    seen: list[tuple[str, str]] = []
    m.tracker.progress = lambda backend, key: seen.append((backend, key))
    m.clock.now = LATER
    done = m.tracker.run(m.request.id)
    assert (done.status, done.attempts, done.last_run_at) == ("completed", 1, LATER)
    assert seen == [(GCP_PRIMARY, keys[0]), (GCP_FAILOVER, keys[1])]
    assert {n: (b.status, b.location, b.backend, b.role, b.deleted)
            for n, b in done.backends.items()} == {
        GCP_PRIMARY: ("verified", "DE", GCP_PRIMARY, "primary", 1),
        GCP_FAILOVER: ("verified", "DE", GCP_FAILOVER, "failover", 1)}
    assert m.saved().model_dump() == done.model_dump()
    # The backends' own events (key destruction and the receipt follow them).
    emptied = [(e.outcome, e.actor, e.reasons[0]) for e in m.events
               if e.operation == "erase" and " key" not in e.reasons[0]
               and e.checksum is None]
    assert emptied == [
        ("intent", "dpo@example.com", f"{GCP_PRIMARY}: erasure starting (attempt 1)"),
        ("ok", "dpo@example.com", f"{GCP_PRIMARY}: 1 objects, 0 old versions deleted, "
                                  "0 held, status verified"),
        ("intent", "dpo@example.com", f"{GCP_FAILOVER}: erasure starting (attempt 1)"),
        ("ok", "dpo@example.com", f"{GCP_FAILOVER}: 1 objects, 0 old versions deleted, "
                                  "0 held, status verified")]


def test_a_completed_request_is_returned_unchanged_without_another_attempt(
        tmp_path: Path) -> None:
    m = Memory(tmp_path)
    m.put(m.primary, "a.dcm")
    done = m.tracker.run(m.request.id)
    assert done.status == "completed"
    events, lists = len(m.events), (m.primary.lists, m.failover.lists)
    m.clock.now = LATER
    again = m.tracker.run(m.request.id)
    assert again.model_dump() == done.model_dump() == m.saved().model_dump()
    assert (again.attempts, again.last_run_at) == (1, NOW)
    assert len(m.events) == events and (m.primary.lists, m.failover.lists) == lists


def test_a_held_object_blocks_the_request_and_a_rerun_skips_the_verified_backend(
        tmp_path: Path) -> None:
    m = Memory(tmp_path)
    m.put(m.primary, "a.dcm")
    held = m.put(m.failover, "held.dcm", **{LEGAL_HOLD_META: "true"})
    first = m.tracker.run(m.request.id)
    assert (first.status, first.attempts) == ("blocked", 1)
    assert {n: b.status for n, b in first.backends.items()} == {
        GCP_PRIMARY: "verified", GCP_FAILOVER: "blocked"}
    assert first.backends[GCP_FAILOVER].held == [f"{held} ({MARKER_WORDS})"]
    assert first.receipt is None and m.saved().status == "blocked"
    lists = (m.primary.lists, m.failover.lists)
    m.clock.now = LATER
    second = m.tracker.run(m.request.id)
    assert (second.status, second.attempts, second.last_run_at) == ("blocked", 2, LATER)
    # The verified primary is not listed again; the blocked failover is.
    assert m.primary.lists == lists[0] and m.failover.lists > lists[1]
    assert m.saved().attempts == 2


def test_a_held_and_a_failed_backend_leave_the_request_in_progress(
        tmp_path: Path) -> None:
    m = Memory(tmp_path)
    m.failover.forgetful.add(m.put(m.failover, "stuck.dcm"))
    m.put(m.primary, "held.dcm", **{LEGAL_HOLD_META: "true"})
    done = m.tracker.run(m.request.id)
    assert {b.status for b in done.backends.values()} == {"blocked", "failed"}
    assert done.status == "in_progress" == m.saved().status


def test_an_unreadable_lineage_keeps_a_held_request_in_progress(tmp_path: Path) -> None:
    m = Memory(tmp_path, lineage=Unreadable())
    m.put(m.primary, "held.dcm", **{LEGAL_HOLD_META: "true"})
    done = m.tracker.run(m.request.id)
    assert {b.status for b in done.backends.values()} == {"blocked", "verified"}
    assert done.lineage_unreachable == {
        "*": "StorageError: lineage of clinic-7 unreadable"}
    assert done.status == "in_progress"


def test_an_unreadable_lineage_keeps_a_verified_request_open(tmp_path: Path) -> None:
    m = Memory(tmp_path, lineage=Unreadable())
    m.put(m.primary, "a.dcm")
    done = m.tracker.run(m.request.id)
    assert {b.status for b in done.backends.values()} == {"verified"}
    assert (done.status, done.receipt, done.keys) == ("in_progress", None, {})


def test_an_interruption_from_a_store_saves_the_run_before_propagating(
        tmp_path: Path) -> None:
    m = Memory(tmp_path)
    m.put(m.primary, "a.dcm")
    m.primary.head_errors[m.put(m.primary, "b.dcm")] = KeyboardInterrupt()
    m.clock.now = LATER
    with pytest.raises(KeyboardInterrupt):
        m.tracker.run(m.request.id)
    saved = m.saved()
    assert (saved.status, saved.attempts, saved.last_run_at) == ("in_progress", 1, LATER)
    assert (saved.backends[GCP_PRIMARY].status, saved.backends[GCP_PRIMARY].deleted) == (
        "pending", 1)
    assert set(saved.backends) == {GCP_PRIMARY, GCP_FAILOVER}


def test_an_interruption_from_the_progress_callback_saves_the_deletion_made(
        tmp_path: Path) -> None:
    m = Memory(tmp_path)
    m.put(m.primary, "a.dcm")
    m.put(m.primary, "b.dcm")

    def interrupt(_backend: str, _key: str) -> None:
        raise KeyboardInterrupt

    m.tracker.progress = interrupt
    m.clock.now = LATER
    with pytest.raises(KeyboardInterrupt):
        m.tracker.run(m.request.id)
    saved = m.saved()
    assert (saved.status, saved.attempts, saved.last_run_at) == ("in_progress", 1, LATER)
    assert saved.backends[GCP_PRIMARY].deleted == 1
    m.tracker.progress = None
    done = m.tracker.run(m.request.id)
    assert (done.status, done.attempts, done.backends[GCP_PRIMARY].deleted) == (
        "completed", 2, 2)


def test_a_request_made_with_another_map_is_refused_naming_both(tmp_path: Path) -> None:
    m = Memory(tmp_path)
    request = m.saved()
    request.map_name = "elsewhere"
    save_request(m.state, request)
    hint = run_command(request.id, m.state)
    with pytest.raises(ErasureError) as err:
        m.tracker.run(request.id)
    assert str(err.value) == (
        f"erasure request {request.id} was made with region map 'elsewhere', not "
        f"'default': run it with the same map (`{hint}` loads it from the request)")
    request.options = None
    save_request(m.state, request)
    with pytest.raises(ErasureError) as err:
        m.tracker.run(request.id)
    assert str(err.value) == (
        f"erasure request {request.id} was made with region map 'elsewhere', not "
        "'default': run it with the same map (CLI: --map)")
    assert m.saved().attempts == 0 and m.saved().status == "requested"


def _local(tmp_path: Path, root: str | None) -> rs.Residency:
    return rs.Residency.load(audit=str(tmp_path / "audit.db"),
                             local_root=tmp_path / root if root is not None else None)


def test_a_request_made_with_another_local_root_is_refused_naming_both(
        tmp_path: Path) -> None:
    state = tmp_path / "state"
    tenant = rs.Tenant(id="clinic-8", country="DE")
    request = _local(tmp_path, "a").erasure_tracker(state).request(tenant)
    a, b = (tmp_path / "a").resolve(), (tmp_path / "b").resolve()
    hint = run_command(request.id, state)
    with pytest.raises(ErasureError) as err:
        _local(tmp_path, "b").erasure_tracker(state).run(request.id)
    assert str(err.value) == (
        f"erasure request {request.id} was made with local_root {a}, but this Residency "
        f"has local_root {b}: load it with the request's local root (or run `{hint}`, "
        "which takes it from the request)")
    with pytest.raises(ErasureError) as err:
        _local(tmp_path, None).erasure_tracker(state).run(request.id)
    assert str(err.value) == (
        f"erasure request {request.id} was made with local_root {a}, but this Residency "
        "has no local root (its data in the cloud backends): load it with the request's "
        f"local root (or run `{hint}`, which takes it from the request)")
    assert load_request(state, request.id).attempts == 0


def test_a_request_recorded_without_options_runs_with_the_callers_local_root(
        tmp_path: Path) -> None:
    state = tmp_path / "state"
    tenant = rs.Tenant(id="clinic-9", country="DE")
    res = _local(tmp_path, "b")
    res.storage_for(tenant).put("a.dcm", b"x", data_class="phi")
    request = _local(tmp_path, "a").erasure_tracker(state).request(tenant)
    request.options = None
    save_request(state, request)
    done = res.erasure_tracker(state).run(request.id)
    assert (done.status, done.attempts) == ("completed", 1)
    assert sum(b.deleted for b in done.backends.values()) == 1
