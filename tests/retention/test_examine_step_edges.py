"""The one step every sweep and erasure runs on one object (``sweep.examine``), branch by
branch, on an in-memory store whose calls the test scripts (MV-5: what the audit names is
what was really deleted; MA-9: a hold keeps the object).

Each case asserts the whole ``ItemResult`` (action, verdict, the examined write, the
detail a report shows, the error) and what reached the store and the audit hook: the
delete is conditional on the examined write, nothing is deleted before the hold check
and the audit intent, and the audit outcome hears how the deletion ended.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from residency_sdk.errors import ObjectChanged, ObjectNotFound, StorageError
from residency_sdk.marks import LEGAL_HOLD_META
from residency_sdk.regionmap import load_region_map
from residency_sdk.storage.base import ObjectInfo, Residue
from residency_sdk.storage.memory import MemoryStore
from residency_sdk.sweep import DELETE, ItemResult, Verdict, examine, hold_reason

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
EXPIRED = Verdict(True, "delete", "category 'x' retention 24h expired", "x")
KEEP = Verdict(False, "kept", "not yet due", "x")
MARKER_WORDS = f"legal hold marker ({LEGAL_HOLD_META}=true) in object metadata"


class Scripted(MemoryStore):
    """A memory store whose head, delete, hold check and version purge can be told to
    fail or answer something, recording what the step asked of it."""

    def __init__(self) -> None:
        loc = load_region_map(None).locations["DE"]
        super().__init__(loc.backends[loc.default_provider])
        self.calls: list[tuple[Any, ...]] = []
        self.head_error: Exception | None = None
        self.delete_error: Exception | None = None
        self.lock: str | Exception | None = None
        self.purge: Residue | Exception = Residue(versions_deleted=2)

    def head(self, key: str) -> ObjectInfo:
        if self.head_error is not None:
            raise self.head_error
        return super().head(key)

    def hold_reason(self, info: ObjectInfo, now: datetime) -> str | None:
        self.calls.append(("hold_reason", info, now))
        if isinstance(self.lock, Exception):
            raise self.lock
        return self.lock

    def delete(self, key: str, *, if_match: ObjectInfo | None = None) -> bool:
        self.calls.append(("delete", key, if_match))
        if self.delete_error is not None:
            raise self.delete_error
        return super().delete(key, if_match=if_match)

    def purge_versions(self, key: str) -> Residue:
        self.calls.append(("purge_versions", key))
        if isinstance(self.purge, Exception):
            raise self.purge
        return self.purge

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


class Audit:
    """An audit hook recording the intent and the outcome it is told."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.intents: list[tuple[ObjectInfo, Verdict]] = []
        self.outcomes: list[tuple[Any, Residue | None]] = []

    def __call__(self, info: ObjectInfo, verdict: Verdict) -> Any:
        if self.fail is not None:
            raise self.fail
        self.intents.append((info, verdict))

        def done(error: Any, /, *, residue: Residue | None = None) -> None:
            self.outcomes.append((error, residue))
        return done


@pytest.fixture
def store() -> Scripted:
    s = Scripted()
    s.put("k", b"study")
    return s


def test_an_object_gone_before_its_head_is_gone(store: Scripted) -> None:
    assert examine(store, "missing", NOW) == ItemResult("missing", "gone")


def test_a_failed_head_is_an_error_naming_it_and_nothing_is_deleted(store: Scripted) -> None:
    store.head_error = exc = StorageError("head of 'k' failed: throttled")
    assert examine(store, "k", NOW, audit=Audit()) == ItemResult(
        "k", "error", detail="head of 'k' failed: throttled", error=exc)
    assert store.calls == [] and store.exists("k")


def test_a_kept_object_is_reported_with_the_policys_words_and_not_touched(
        store: Scripted) -> None:
    info = store.head("k")
    assert examine(store, "k", NOW, judge=lambda _i: KEEP) == ItemResult(
        "k", "kept", KEEP, info, "not yet due")
    assert store.calls == []


def test_the_metadata_hold_marker_keeps_the_object_without_asking_the_provider() -> None:
    store = Scripted()
    store.put("k", b"study", metadata={LEGAL_HOLD_META: "true"})
    store.lock = "provider words that must not be used"
    info = store.head("k")
    assert examine(store, "k", NOW) == ItemResult("k", "held", DELETE, info, MARKER_WORDS)
    assert store.names() == [] and store.exists("k")
    assert hold_reason(store, info, NOW) == MARKER_WORDS


def test_the_providers_own_lock_keeps_the_object_and_is_asked_about_it_now(
        store: Scripted) -> None:
    store.lock = "S3 object lock legal hold is ON"
    info = store.head("k")
    audit = Audit()
    assert examine(store, "k", NOW, judge=lambda _i: EXPIRED, audit=audit) == ItemResult(
        "k", "held", EXPIRED, info, "S3 object lock legal hold is ON")
    assert store.calls == [("hold_reason", info, NOW)]  # this object, at the sweep's time
    assert audit.intents == [] and store.exists("k")


def test_an_object_gone_during_the_hold_check_is_gone(store: Scripted) -> None:
    store.lock = ObjectNotFound("k", "memory")
    assert examine(store, "k", NOW, judge=lambda _i: EXPIRED) == ItemResult(
        "k", "gone", EXPIRED)


def test_a_dry_run_reports_would_delete_and_deletes_and_audits_nothing(
        store: Scripted) -> None:
    info = store.head("k")
    audit = Audit()
    assert examine(store, "k", NOW, judge=lambda _i: EXPIRED, dry_run=True,
                   audit=audit) == ItemResult("k", "would_delete", EXPIRED, info,
                                              EXPIRED.detail)
    assert "delete" not in store.names() and store.exists("k")
    assert audit.intents == []


def test_an_audit_intent_that_cannot_be_written_stops_the_deletion(store: Scripted) -> None:
    with pytest.raises(RuntimeError, match="audit down"):
        examine(store, "k", NOW, audit=Audit(fail=RuntimeError("audit down")))
    assert "delete" not in store.names() and store.exists("k")


def test_the_delete_is_conditional_on_the_examined_write_and_its_versions_are_purged(
        store: Scripted) -> None:
    info = store.head("k")
    audit = Audit()
    assert examine(store, "k", NOW, judge=lambda _i: EXPIRED, audit=audit) == ItemResult(
        "k", "deleted", EXPIRED, info, EXPIRED.detail, versions_deleted=2)
    assert store.calls == [("hold_reason", info, NOW), ("delete", "k", info),
                           ("purge_versions", "k")]
    assert audit.intents == [(info, EXPIRED)]
    assert audit.outcomes == [(None, Residue(versions_deleted=2))]
    assert not store.exists("k")


def test_without_versions_the_step_deletes_and_leaves_the_purge_to_the_caller(
        store: Scripted) -> None:
    info = store.head("k")
    audit = Audit()
    assert examine(store, "k", NOW, judge=lambda _i: EXPIRED, audit=audit,
                   versions=False) == ItemResult("k", "deleted", EXPIRED, info, EXPIRED.detail)
    assert "purge_versions" not in store.names()
    assert audit.outcomes == [(None, None)]  # deleted; no purge residue to report


def test_without_an_audit_hook_the_object_is_still_deleted(store: Scripted) -> None:
    info = store.head("k")
    assert examine(store, "k", NOW) == ItemResult("k", "deleted", DELETE, info, None,
                                                  versions_deleted=2)
    assert not store.exists("k")


def test_a_reupload_before_the_delete_is_changed_and_its_outcome_hears_it(
        store: Scripted) -> None:
    info = store.head("k")
    store.delete_error = exc = ObjectChanged("k", "etag-1", "etag-2")
    audit = Audit()
    assert examine(store, "k", NOW, audit=audit) == ItemResult(
        "k", "changed", DELETE, info, str(exc), exc)
    assert "changed since it was examined" in str(exc)
    assert "purge_versions" not in store.names()  # nothing of the fresh upload is purged
    assert audit.outcomes == [(exc, None)]
    assert examine(store, "k", NOW).action == "changed"  # also without an audit hook


def test_a_failed_delete_is_an_error_its_outcome_hears(store: Scripted) -> None:
    info = store.head("k")
    store.delete_error = exc = StorageError("delete of 'k' failed: 503")
    audit = Audit()
    assert examine(store, "k", NOW, audit=audit) == ItemResult(
        "k", "error", DELETE, info, "delete of 'k' failed: 503", exc)
    assert "purge_versions" not in store.names()
    assert audit.outcomes == [(exc, None)]
    assert examine(store, "k", NOW).action == "error"  # also without an audit hook


def test_a_failed_version_purge_is_an_error_saying_the_object_went_but_not_its_versions(
        store: Scripted) -> None:
    info = store.head("k")
    store.purge = exc = StorageError("list-versions 'k' failed: 500")
    audit = Audit()
    assert examine(store, "k", NOW, audit=audit) == ItemResult(
        "k", "error", DELETE, info,
        "the current object was deleted, but purging its old versions failed, so they "
        "may still be readable: list-versions 'k' failed: 500", exc)
    assert audit.outcomes == [(exc, Residue())]
    assert not store.exists("k")
    store.put("k2", b"x")
    assert examine(store, "k2", NOW).action == "error"  # also without an audit hook


def test_an_old_version_the_provider_keeps_makes_the_item_held_naming_why(
        store: Scripted) -> None:
    info = store.head("k")
    store.purge = residue = Residue(versions_deleted=1, held={
        "k": "S3 refused deleting version v1: AccessDenied",
        "k ": "S3 refused deleting version v0: AccessDenied"})
    audit = Audit()
    result = examine(store, "k", NOW, audit=audit)
    assert (result.key, result.action, result.verdict, result.info) == (
        "k", "held", DELETE, info)
    assert result.detail == (
        "the current object was deleted with 1 old version(s), but the provider keeps an "
        "old version: S3 refused deleting version v1: AccessDenied; S3 refused deleting "
        "version v0: AccessDenied")
    assert (result.error, result.versions_deleted) == (None, 1)
    assert audit.outcomes == [(None, residue)]
    store.put("k2", b"x")
    assert examine(store, "k2", NOW).action == "held"  # also without an audit hook


def test_the_policy_judges_the_object_the_head_reported(store: Scripted) -> None:
    info = store.head("k")
    judged: list[ObjectInfo] = []

    def judge(seen: ObjectInfo) -> Verdict:
        judged.append(seen)
        return KEEP

    assert examine(store, "k", NOW, judge=judge).action == "kept"
    assert judged == [info]
