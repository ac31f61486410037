"""When an audited request's ``egress`` intent is durable: ``audit_durability`` of
``compute_for`` / ``async_compute_for``, against a real loopback server and a real SQLite
audit log whose commits a test can hold back (a gate in the store's commit)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from egress_env import (  # noqa: F401 - fixtures (a conftest.py here would shadow the suite's)
    TODAY,
    Caller,
    egress_map,
    servers,
)
from egress_loopback import CountingServer

import residency_sdk as rs
from residency_sdk.audit import AuditLog
from residency_sdk.audit.sqlite_store import SQLiteChainStore

AT = rs.Tenant(id="clinic-vienna", country="AT")  # lives in DE


class GatedStore(SQLiteChainStore):
    """A SQLite chain store whose commits wait while ``gate`` is clear (and count)."""

    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        self.gate = threading.Event()
        self.gate.set()
        self.commits_started = 0
        self.fail = False

    def commit(self, extend: Any) -> Any:
        self.commits_started += 1
        assert self.gate.wait(30), "the test never opened the gate"
        if self.fail:
            raise sqlite3.OperationalError("disk I/O error")
        return super().commit(extend)


def stored_egress(path: Path) -> list[tuple[str, str]]:
    """(outcome, endpoint) of the egress events on disk now, read by another connection."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT event ->> '$.outcome', event ->> '$.endpoint' FROM audit_events "
            "WHERE event ->> '$.operation' = 'egress' ORDER BY seq").fetchall()
    return [(str(o), str(e)) for o, e in rows]


@pytest.fixture
def gated(tmp_path: Path, egress_map: Path) -> Iterator[tuple[rs.Residency, GatedStore, Path]]:
    path = tmp_path / "audit.db"
    store = GatedStore(path)
    log = AuditLog(store)
    residency = rs.Residency.load(egress_map, audit=log, clock=lambda: TODAY)
    try:
        yield residency, store, path
    finally:
        store.gate.set()
        residency.close()
        log.close()


def _post(res: rs.Residency, url: str, durability: str, mode: str) -> httpx.Response:
    return Caller(mode, res).call(AT, "POST", url, purpose="inference", actor="svc",
                                  client_options={"audit_durability": durability},
                                  content=b"x" * 100)


def _in_thread(call: Any) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["response"] = call()
        except BaseException as exc:  # handed to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_before_send_sends_nothing_until_the_intent_is_on_disk(gated, servers, mode):
    res, store, path = gated
    de: CountingServer = servers["de"]
    seen_at_arrival: list[list[tuple[str, str]]] = []
    de.on_request = lambda received: seen_at_arrival.append(stored_egress(path))
    store.gate.clear()
    thread, box = _in_thread(lambda: _post(res, f"{de.url}/infer", "before_send", mode))
    thread.join(0.5)
    assert thread.is_alive(), "the call went ahead while its intent could not be committed"
    assert de.connections == 0
    store.gate.set()
    thread.join(30)
    assert box["response"].status_code == 200
    # When the server saw the request, its intent was already durable.
    assert seen_at_arrival == [[("intent", f"{de.url}/infer")]]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_before_response_holds_the_response_until_the_intent_is_on_disk(gated, servers,
                                                                        mode):
    res, store, path = gated
    de: CountingServer = servers["de"]
    store.gate.clear()
    thread, box = _in_thread(lambda: _post(res, f"{de.url}/infer", "before_response", mode))
    thread.join(0.5)
    # Sent while the commit runs (the fsync overlaps the round trip)...
    assert de.connections == 1
    # ...but not handed back before the intent is durable.
    assert thread.is_alive() and "response" not in box
    store.gate.set()
    thread.join(30)
    assert box["response"].status_code == 200
    assert stored_egress(path)[0] == ("intent", f"{de.url}/infer")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_group_waits_for_no_commit_and_still_records_both_events(gated, servers, mode):
    res, store, path = gated
    de: CountingServer = servers["de"]
    store.gate.clear()
    response = _post(res, f"{de.url}/infer", "group", mode)  # returns with commits held
    assert response.status_code == 200
    assert stored_egress(path) == []  # nothing is on disk yet...
    store.gate.set()
    res.audit.flush()
    # ...and after the group commit both events are, in order.
    assert stored_egress(path) == [("intent", f"{de.url}/infer"), ("ok", f"{de.url}/infer")]


def test_group_commits_many_requests_together(gated, servers):
    res, store, path = gated
    de: CountingServer = servers["de"]
    store.gate.clear()  # hold the first commit: the other requests queue behind it
    with res.compute_for(AT, purpose="inference", audit_durability="group") as client:
        for _ in range(20):
            assert client.post(f"{de.url}/infer", content=b"x").status_code == 200
    before = store.commits_started
    store.gate.set()
    res.audit.flush()
    assert len(stored_egress(path)) == 40
    # 40 events of 20 calls: at most the held commit, and one or two more.
    assert store.commits_started - before <= 2


def test_a_failing_trail_is_reported_by_the_next_group_call(gated, servers):
    res, store, path = gated
    de: CountingServer = servers["de"]
    store.gate.clear()
    with res.compute_for(AT, purpose="inference", audit_durability="group") as client:
        assert client.post(f"{de.url}/infer", content=b"x").status_code == 200
        store.fail = True  # the held commit fails: its events stay queued
        store.gate.set()
        with pytest.raises(rs.AuditUnavailable):
            res.audit.flush()
        sent = de.connections
        with pytest.raises(rs.AuditUnavailable):
            client.post(f"{de.url}/infer", content=b"x")
    assert de.connections == sent  # the refused call sent nothing
    store.fail = False
    res.audit.flush()  # the trail is back: the queued events are committed
    assert [o for o, _ in stored_egress(path)] == ["intent", "ok"]


@pytest.mark.parametrize("value", ["eventually", "", None, True])
def test_unknown_durability_is_refused(gated, value):
    res, _, _ = gated
    with pytest.raises(rs.InputError, match="audit_durability"):
        res.compute_for(AT, purpose="inference", audit_durability=value)
    with pytest.raises(rs.InputError, match="audit_durability"):
        res.async_compute_for(AT, purpose="inference", audit_durability=value)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_group_calls_wait_for_their_window_not_the_logs(gated, servers, mode):
    """``audit_group_window``: a group call's events wait that long for their commit
    (the log's own window is 2 ms), unless something else needs a commit first."""
    import time

    res, _, path = gated
    url = f"{servers['de'].url}/infer"
    start = time.monotonic()
    response = Caller(mode, res).call(
        AT, "POST", url, purpose="inference", actor="svc", content=b"x" * 100,
        client_options={"audit_durability": "group", "audit_group_window": 0.6})
    assert response.status_code == 200
    time.sleep(0.2)
    assert stored_egress(path) == []  # a 2 ms window would have committed them
    while len(stored_egress(path)) < 2:
        assert time.monotonic() - start < 10, "the window's events were never committed"
        time.sleep(0.01)
    assert time.monotonic() - start >= 0.5
    assert [o for o, _ in stored_egress(path)] == ["intent", "ok"]


@pytest.mark.parametrize("window", [-1, 1.5, "100ms", True, float("nan")])
def test_a_bad_group_window_is_refused_naming_it(gated, window):
    res, _, _ = gated
    for make in (res.compute_for, res.async_compute_for):
        with pytest.raises(rs.InputError, match=r"audit_group_window=.*from 0 to 1"):
            make(AT, purpose="inference", audit_durability="group",
                 audit_group_window=window)


def test_a_group_window_without_the_group_mode_is_refused(gated):
    res, _, _ = gated
    for make in (res.compute_for, res.async_compute_for):
        with pytest.raises(rs.InputError, match="applies to audit_durability='group'"):
            make(AT, purpose="inference", audit_group_window=0.05)


@pytest.mark.parametrize("durability", ["before_response", "before_send", "group"])
def test_events_written_as_text_are_the_canonical_events(gated, servers, durability):
    """The log path skips the event objects (EventTemplate): what lands on disk must be
    exactly the canonical events the object path writes, and the chain must verify."""
    from residency_sdk.audit.chain import canonical
    from residency_sdk.audit.verify import verify_log
    from residency_sdk.events import AuditEvent

    res, _, path = gated
    de: CountingServer = servers["de"]
    response = _post(res, f"{de.url}/infer?patient=jane", durability, "sync")
    res.audit.flush()
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        texts = [t for (t,) in db.execute(
            "SELECT event FROM audit_events WHERE event ->> '$.operation' = 'egress' "
            "ORDER BY seq")]
    intent, done = (AuditEvent.model_validate_json(t) for t in texts)
    assert [canonical(intent), canonical(done)] == texts
    assert (intent.outcome, done.outcome) == ("intent", "ok")
    assert intent.endpoint == done.endpoint == f"{de.url}/infer"
    assert (intent.actor, intent.purpose, intent.tenant_id) == ("svc", "inference", AT.id)
    assert intent.size == done.size == 100
    assert done.intent_id == intent.event_id != done.event_id
    assert done.status == 200 and done.bytes_received == len(response.content)
    assert done.time >= intent.time
    assert verify_log(path).ok


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_group_call_leaves_its_events_text_to_the_committer(gated, servers, monkeypatch,
                                                                mode):
    """In ``group`` mode the caller queues the values that vary; the thread that commits
    joins the events' text, so that work is off the request's path (and the request
    does not wait for it)."""
    from residency_sdk.audit.template import EventTemplate

    res, store, path = gated
    filled_in: list[int] = []
    fill, join = EventTemplate.fill, EventTemplate.join

    def spy_fill(self: EventTemplate, *values: Any) -> str | None:
        filled_in.append(threading.get_ident())
        return fill(self, *values)

    def spy_join(self: EventTemplate, *texts: str) -> str:
        filled_in.append(threading.get_ident())
        return join(self, *texts)

    monkeypatch.setattr(EventTemplate, "fill", spy_fill)
    monkeypatch.setattr(EventTemplate, "join", spy_join)
    store.gate.clear()  # no commit before the call has returned
    response = _post(res, f"{servers['de'].url}/infer", "group", mode)
    assert response.status_code == 200
    assert filled_in == []  # nothing rendered by the caller...
    store.gate.set()
    res.audit.flush()
    assert len(filled_in) == 2  # ...both events by the committing thread, as canonical text
    assert [o for o, _ in stored_egress(path)] == ["intent", "ok"]


class TextSink:
    """A sink of its own that takes canonical text but says nothing of deferred text."""

    def __init__(self) -> None:
        self.texts: list[object] = []

    def append(self, event: Any, *, durable: bool = True) -> None:
        from residency_sdk.audit.chain import canonical

        self.texts.append(canonical(event))

    def append_canonical(self, text: object, *, durable: bool = True) -> None:
        self.texts.append(text)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_sink_that_does_not_take_deferred_text_is_given_the_text(egress_map, servers,
                                                                    mode):
    from residency_sdk.audit.chain import canonical
    from residency_sdk.events import AuditEvent

    sink = TextSink()
    res = rs.Residency.load(egress_map, audit=sink, clock=lambda: TODAY)
    try:
        assert _post(res, f"{servers['de'].url}/infer", "group", mode).status_code == 200
    finally:
        res.close()
    egress = [t for t in sink.texts if isinstance(t, str) and '"operation":"egress"' in t]
    assert all(isinstance(t, str) for t in sink.texts)
    assert [AuditEvent.model_validate_json(t).outcome for t in egress] == ["intent", "ok"]
    assert [canonical(AuditEvent.model_validate_json(t)) for t in egress] == egress


def test_a_failed_call_written_as_text_ends_with_its_error(gated, servers):
    res, _, path = gated
    de: CountingServer = servers["de"]
    url = f"{de.url}/infer"
    de.stop()  # nothing listens any more: the connection is refused
    with res.compute_for(AT, purpose="inference", audit_durability="group") as client, \
            pytest.raises(httpx.ConnectError):
        client.post(url, content=b"x")
    res.audit.flush()
    assert [o for o, _ in stored_egress(path)] == ["intent", "error"]
