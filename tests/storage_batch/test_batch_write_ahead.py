"""``put_many`` writes its items' intents ahead a window at a time: each intent is
committed (readable by another connection to the audit log) before the backend sees a
byte of its object, the window's intents share one commit, outcomes ride with the next
window's commit and are all committed when ``put_many`` returns, and a batch that stops
leaves no staged intent without an outcome."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from batch_helpers import CountingStore, InFlight

import residency_sdk as rs
from residency_sdk.errors import AuditUnavailable
from residency_sdk.model import StorageTarget
from residency_sdk.storage.base import ObjectStore
from residency_sdk.storage.factory import open_store

TENANT = rs.Tenant(id="clinic-ahead", country="DE")


def _committed(db: Path) -> list[dict[str, Any]]:
    """The events committed to the log, read on a connection of our own."""
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return [json.loads(row[0]) for row in
                conn.execute("SELECT event FROM audit_events ORDER BY seq")]
    finally:
        conn.close()


def _puts(events: list[dict[str, Any]], outcome: str) -> dict[str, dict[str, Any]]:
    return {e["object_key"]: e for e in events
            if e["operation"] == "put" and e["outcome"] == outcome and not e.get("purpose")}


class _CheckingStore(CountingStore):
    """Before each tenant object reaches the backend: is its intent committed?"""

    def __init__(self, inner: ObjectStore, db: Path, seen: list[tuple[str, bool]]) -> None:
        super().__init__(inner, InFlight())
        self.db, self.seen = db, seen

    def put(self, key: str, data: Any, **kwargs: Any) -> Any:
        if key.startswith("tenants/"):
            relative = key.split("/", 2)[2]
            self.seen.append((relative, relative in _puts(_committed(self.db), "intent")))
        return super().put(key, data, **kwargs)


def _opener(tmp_path: Path, db: Path, seen: list[tuple[str, bool]]
            ) -> Callable[[StorageTarget, str], ObjectStore]:
    def opener(target: StorageTarget, location: str) -> ObjectStore:
        return _CheckingStore(open_store(target, local_root=tmp_path / "data",
                                         location=location), db, seen)
    return opener


class _Setup:
    """A client auditing to a SQLite log at ``db``, whose backend records, for each
    tenant object it receives, whether the object's intent was committed (``seen``)."""

    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "audit.db"
        self.seen: list[tuple[str, bool]] = []
        self.res = rs.Residency.load(audit=str(self.db), local_root=tmp_path / "data",
                                     storage=_opener(tmp_path, self.db, self.seen))
        self.store = self.res.storage_for(TENANT)

    def started(self, prefix: str) -> list[str]:
        return sorted(k for k, _ in self.seen if k.startswith(prefix))


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[_Setup]:
    made = _Setup(tmp_path)
    yield made
    made.res.close()


def test_every_intent_is_committed_before_its_object_reaches_the_backend(
        setup: _Setup) -> None:
    db, seen, store = setup.db, setup.seen, setup.store
    log = setup.res.audit.sinks[0]
    store.put("warm/up", b"w", "personal")  # the tenant binding and decisions
    before = log.commits
    results = store.put_many(((f"s/{i:03}", b"x" * 100) for i in range(40)), concurrency=8)
    assert all(r.ok for r in results)
    assert sorted(seen)[:3] == [("s/000", True), ("s/001", True), ("s/002", True)]
    assert len(seen) == 41 and all(ok for _, ok in seen), [k for k, ok in seen if not ok]
    # Every outcome is committed when put_many returns, each naming its intent.
    events = _committed(db)
    intents, oks = _puts(events, "intent"), _puts(events, "ok")
    assert {f"s/{i:03}" for i in range(40)} <= set(oks)
    assert all(oks[k]["intent_id"] == intents[k]["event_id"] for k in oks)
    # Written ahead eight at a time: five window commits and the last outcomes', not two
    # commits per object.
    assert log.commits - before <= 8, log.commits - before


def test_a_window_whose_intents_cannot_be_committed_starts_none_of_its_items(
        setup: _Setup) -> None:
    store = setup.store
    store.put("warm/up", b"w", "personal")
    emitter = setup.res.audit
    real_intents = emitter.intents
    calls = [0]

    def failing_second_window(events: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 2:
            raise AuditUnavailable("audit log disk full (injected)")
        return real_intents(events, **kwargs)

    emitter.intents = failing_second_window  # type: ignore[method-assign]
    with pytest.raises(AuditUnavailable, match="disk full"):
        store.put_many(((f"w/{i:02}", b"y") for i in range(30)), concurrency=4)
    started = setup.started("w/")
    assert started == [f"w/{i:02}" for i in range(4)]  # the first window only
    events = _committed(setup.db)
    assert set(_puts(events, "ok")) >= set(started)
    assert not {k for k in _puts(events, "intent") if k.startswith("w/")} - set(started)


def test_a_stopped_batch_records_that_its_staged_items_never_started(
        setup: _Setup) -> None:
    def progress(done: int, total: int | None, key: str) -> None:
        if done == 2:
            raise KeyError("the caller's progress callback broke")

    with pytest.raises(KeyError, match="progress callback"):
        setup.store.put_many(((f"p/{i:02}", b"z") for i in range(20)), concurrency=4,
                       progress=progress)
    events = _committed(setup.db)
    intents = {k: e for k, e in _puts(events, "intent").items() if k.startswith("p/")}
    ended = {e["intent_id"]: e for e in events
             if e["operation"] == "put" and e["outcome"] in ("ok", "error")}
    # Every committed intent has an outcome: done, or "not started".
    assert intents and all(e["event_id"] in ended for e in intents.values())
    started = set(setup.started("p/"))
    for key, intent in intents.items():
        outcome = ended[intent["event_id"]]
        if key not in started:
            assert outcome["outcome"] == "error" and "not started" in outcome["error"]


def test_an_input_that_yields_only_after_the_previous_item_is_stored_does_not_stall(
        setup: _Setup) -> None:
    # A producer that hands over the next study only once the previous one is stored
    # (a streaming ingest): waiting for a full window before starting anything would
    # wait forever.
    store = setup.store
    stored = threading.Semaphore(0)

    def one_at_a_time() -> Any:
        for i in range(5):
            yield f"chain/{i}", b"c"
            assert stored.acquire(timeout=10), f"item {i} was never stored"

    outcome: list[Any] = []
    runner = threading.Thread(target=lambda: outcome.append(store.put_many(
        one_at_a_time(), concurrency=8, progress=lambda *_: stored.release())),
        daemon=True)
    runner.start()
    runner.join(timeout=30)
    assert not runner.is_alive(), "put_many stalled waiting for a full window"
    assert [r.ok for r in outcome[0]] == [True] * 5


def test_a_slow_input_starts_its_first_item_before_the_next_one_exists(
        setup: _Setup) -> None:
    seen = setup.seen
    yielded: list[int] = []
    seen_when: list[int] = []

    def slow() -> Any:
        for i in range(3):
            yielded.append(i)
            yield f"slow/{i}", b"s"
            deadline = threading.Event()
            # The next item comes only once this one reached the backend (or 10 s).
            for _ in range(200):
                if len([k for k, _ in seen if k.startswith("slow/")]) > i:
                    break
                deadline.wait(0.05)
            seen_when.append(len(yielded))

    results = setup.store.put_many(slow(), concurrency=8)
    assert all(r.ok for r in results)
    # Each item reached the backend (intent committed) while it was the last one made.
    assert seen_when == [1, 2, 3]
    assert all(ok for _, ok in seen)


def test_an_input_that_raises_midway_stops_the_batch_after_the_items_before_it(
        setup: _Setup) -> None:
    def broken() -> Any:
        for i in range(3):
            yield f"b/{i}", b"b"
        raise OSError("the upload stream broke")

    with pytest.raises(OSError, match="upload stream broke"):
        setup.store.put_many(broken(), concurrency=8)
    events = _committed(setup.db)
    # The three items before the failure were stored, each with its intent and outcome.
    assert {k for k in _puts(events, "ok") if k.startswith("b/")} == {"b/0", "b/1", "b/2"}
