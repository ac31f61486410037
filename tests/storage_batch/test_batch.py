"""``TenantStore.put_many`` / ``get_many``: per-item results in input order, partial
failure, residency refusals per item, one audited put/get per object, a concurrency bound
that is really kept (counted by a wrapping store on the local backend and on moto's S3),
lazy input, progress, validation, and a failing audit trail stopping the batch."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from batch_helpers import InFlight, RecordingSink, counting_opener
from storage_harness import ProviderHarness

import residency_sdk as rs
from residency_sdk.storage.batch import BatchResult, PutItem

TENANT = rs.Tenant(id="clinic-batch", country="DE")


def _no_baa_map(tmp_path: Path) -> Path:
    overlay = tmp_path / "no-baa.yaml"
    overlay.write_text(yaml.safe_dump({
        "extends": "default", "name": "no-baa",
        "locations": {"DE": {"backends": {"local": {"baa": False}}}}}))
    return overlay


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def res(tmp_path: Path, sink: RecordingSink) -> Iterator[rs.Residency]:
    client = rs.Residency.load(_no_baa_map(tmp_path), local_root=tmp_path / "data",
                               audit=sink)
    yield client
    client.close()


# --- results, partial failure and refusals -------------------------------------------


def test_one_bad_key_and_one_refused_item_fail_alone_and_are_reported_in_input_order(
        res: rs.Residency, sink: RecordingSink) -> None:
    store = res.storage_for(TENANT)
    items: list[Any] = [
        ("reports/1.txt", b"one", {"data_class": "personal"}),
        ("../escape.txt", b"bad key", {"data_class": "personal"}),
        ("scans/2.dcm", b"phi on a backend without a BAA", {"data_class": "phi"}),
        PutItem("reports/3.txt", io.BytesIO(b"three"), data_class="personal",
                metadata={"study": "s-3"}),
    ]
    results = store.put_many(items, concurrency=3)

    assert [(r.index, r.key, r.ok) for r in results] == [
        (0, "reports/1.txt", True), (1, "../escape.txt", False),
        (2, "scans/2.dcm", False), (3, "reports/3.txt", True)]
    assert isinstance(results[1].error, rs.InvalidKey)
    assert isinstance(results[2].error, rs.BAARequired)
    assert "baa: false" in str(results[2].error)
    with pytest.raises(rs.BAARequired):
        results[2].unwrap()
    stored = results[3].unwrap()
    assert (stored.key, stored.size, stored.metadata["study"]) == ("reports/3.txt", 5, "s-3")
    assert store.get("reports/1.txt") == b"one"
    assert not store.exists("scans/2.dcm")

    # The refusal is audited as a put would be: one "blocked" event, no intent (nothing
    # was started), the reason carried.
    [blocked] = sink.of("put", key="scans/2.dcm")
    assert (blocked.outcome, blocked.data_class) == ("blocked", "phi")
    assert "BAARequired" in (blocked.error or "")
    [bad] = sink.of("put", key="../escape.txt")
    assert bad.outcome == "error"


def test_malformed_items_fail_with_an_input_error_naming_the_fix_and_touch_nothing(
        res: rs.Residency, sink: RecordingSink) -> None:
    store = res.storage_for(TENANT)
    results = store.put_many([
        ("ok.txt", b"fine", {"data_class": "personal"}),
        ("lonely.txt",),
        (42, b"not a key"),
        ("opts.txt", b"x", {"data_clas": "personal"}),
        ("opts2.txt", b"x", ["data_class"]),
    ])
    assert [r.ok for r in results] == [True, False, False, False, False]
    assert all(isinstance(r.error, rs.InputError) for r in results[1:])
    assert "(key, data)" in str(results[1].error)
    assert results[2].key == "<item 2>" and "not a string" in str(results[2].error)
    assert "data_clas" in str(results[3].error) and "data_class" in str(results[3].error)
    assert "not a dict" in str(results[4].error)
    assert {e.object_key for e in sink.of("put")} == {"ok.txt"}


def test_get_many_reports_a_missing_object_per_key_and_returns_the_rest(
        res: rs.Residency) -> None:
    store = res.storage_for(TENANT)
    store.put_many([(f"r/{i}", f"body {i}".encode(), {"data_class": "personal"})
                    for i in range(5)])
    results = store.get_many(["r/3", "r/missing", "r/0", "../x"], concurrency=2)
    assert [r.key for r in results] == ["r/3", "r/missing", "r/0", "../x"]
    assert [r.value for r in results] == [b"body 3", None, b"body 0", None]
    assert isinstance(results[1].error, rs.ObjectNotFound)
    assert isinstance(results[3].error, rs.InvalidKey)


# --- audit per object ----------------------------------------------------------------


def test_each_object_of_a_batch_is_one_audited_put_and_one_audited_get(
        res: rs.Residency, sink: RecordingSink) -> None:
    store = res.storage_for(TENANT)
    keys = [f"study/{i:03}.dcm" for i in range(40)]
    results = store.put_many(((k, k.encode(), {"data_class": "personal"}) for k in keys),
                             concurrency=8)
    assert all(r.ok for r in results)
    for key in keys:
        intent, ok = sorted(sink.of("put", key=key), key=lambda e: e.outcome)
        assert (intent.outcome, ok.outcome, ok.intent_id) == ("intent", "ok", intent.event_id)
        assert ok.size == len(key) and ok.checksum
    assert len(sink.of("put")) == 2 * len(keys)
    # Placement is decided and audited once for the store, not once per thread.
    placements = [e for e in sink.events if e.operation == "placement"
                  and e.data_class == "personal"]
    assert len(placements) == 1

    gets = store.get_many(keys, concurrency=8)
    assert [g.value for g in gets] == [k.encode() for k in keys]
    assert len(sink.of("get", "intent")) == len(keys) == len(sink.of("get", "ok"))
    assert {e.object_key for e in sink.of("get", "ok")} == set(keys)


def test_a_failing_audit_trail_stops_the_batch_and_no_unaudited_write_happens(
        tmp_path: Path, sink: RecordingSink) -> None:
    res = rs.Residency.load(local_root=tmp_path / "data", audit=sink)
    store = res.storage_for(TENANT)
    store.put("first.txt", b"before", data_class="personal")
    sink.broken = True
    pulled: list[int] = []

    def items() -> Iterator[tuple[str, bytes, dict[str, str]]]:
        for i in range(1000):
            pulled.append(i)
            yield f"later/{i}", b"x", {"data_class": "personal"}

    with pytest.raises(rs.AuditUnavailable, match="no further item was started"):
        store.put_many(items(), concurrency=4)
    assert len(pulled) < 1000  # the rest of the input was never taken
    sink.broken = False
    raw = res.store(store.target, "DE")
    assert list(raw.list(f"tenants/{TENANT.id}/later/")) == []
    res.close()


# --- the concurrency bound -------------------------------------------------------------


@pytest.mark.parametrize("width", [1, 3, 6])
def test_no_more_than_concurrency_puts_or_gets_are_in_flight(
        tmp_path: Path, width: int) -> None:
    flight = InFlight(gate=width)
    res = rs.Residency.load(local_root=tmp_path / "data", audit=RecordingSink(),
                            storage=counting_opener(flight, tmp_path / "data"))
    store = res.storage_for(TENANT)
    items = [(f"k/{i}", b"v" * i, {"data_class": "personal"}) for i in range(4 * width)]
    assert all(r.ok for r in store.put_many(items, concurrency=width))
    assert (flight.calls, flight.peak) == (4 * width, width)

    flight.peak = flight.calls = 0
    assert all(r.ok for r in store.get_many([k for k, _, _ in items], concurrency=width))
    assert (flight.calls, flight.peak) == (4 * width, width)
    res.close()


def test_the_bound_holds_on_the_s3_adapter_against_moto(
        emulators: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    harness = ProviderHarness("aws", emulators, monkeypatch, tmp_path)
    flight = InFlight(gate=5)
    res = harness.residency(tmp_path, audit=RecordingSink(),
                            storage=counting_opener(flight))
    store = res.storage_for(TENANT)
    payload = bytes(range(256)) * 256
    results = store.put_many(((f"s3/{i}", payload) for i in range(20)), concurrency=5)
    assert [r.ok for r in results] == [True] * 20
    assert (flight.calls, flight.peak) == (20, 5)
    assert store.get("s3/19") == payload
    res.close()


def test_the_input_is_consumed_lazily_never_more_than_two_windows_ahead(
        res: rs.Residency) -> None:
    # The items in flight, one window (``concurrency`` items) checked and written ahead,
    # and at most ``concurrency`` read ahead from the input: never more.
    store = res.storage_for(TENANT)
    pulled = [0]
    finished = [0]
    ahead: list[int] = []

    def items() -> Iterator[tuple[str, bytes, dict[str, str]]]:
        for i in range(60):
            pulled[0] += 1
            ahead.append(pulled[0] - finished[0])
            yield f"lazy/{i}", b"z", {"data_class": "personal"}

    def progress(done: int, total: int | None, key: str) -> None:
        finished[0] = done

    store.put_many(items(), concurrency=4, progress=progress)
    assert pulled[0] == 60 and max(ahead) <= 3 * 4


# --- progress and validation -------------------------------------------------------------


def test_progress_is_called_once_per_item_with_done_total_and_key(
        res: rs.Residency) -> None:
    store = res.storage_for(TENANT)
    calls: list[tuple[int, int | None, str]] = []
    items = [(f"p/{i}", b"p", {"data_class": "personal"}) for i in range(10)]
    items.append(("../bad", b"p", {"data_class": "personal"}))
    store.put_many(items, concurrency=3, progress=lambda *a: calls.append(a))
    assert [c[0] for c in calls] == list(range(1, 12))
    assert {c[1] for c in calls} == {11}
    assert sorted(c[2] for c in calls) == sorted(k for k, _, _ in items)

    calls.clear()
    store.get_many((f"p/{i}" for i in range(4)), progress=lambda *a: calls.append(a))
    assert [(c[0], c[1]) for c in calls] == [(1, None), (2, None), (3, None), (4, None)]


def test_a_progress_callback_that_raises_ends_the_batch_after_the_items_in_flight(
        res: rs.Residency, sink: RecordingSink) -> None:
    store = res.storage_for(TENANT)

    def progress(done: int, total: int | None, key: str) -> None:
        raise RuntimeError("progress bar broke")

    with pytest.raises(RuntimeError, match="progress bar broke"):
        store.put_many([(f"q/{i}", b"q", {"data_class": "personal"}) for i in range(50)],
                       concurrency=4, progress=progress)
    # Whatever started finished and was recorded whole: an outcome for every intent.
    intents = sink.of("put", "intent")
    assert 1 <= len(intents) <= 4 + 4
    assert len(sink.of("put", "ok")) == len(intents)


@pytest.mark.parametrize("bad", [0, 257, -1, True, 2.5, "8", None])
def test_concurrency_outside_1_to_256_is_an_input_error_naming_the_value(
        res: rs.Residency, bad: Any) -> None:
    store = res.storage_for(TENANT)
    for call in (lambda: store.put_many([("a", b"a")], concurrency=bad),
                 lambda: store.get_many(["a"], concurrency=bad)):
        with pytest.raises(rs.InputError, match="from 1 to 256") as caught:
            call()
        assert repr(bad) in str(caught.value)


def test_batch_result_is_ok_with_a_value_or_not_ok_with_an_error() -> None:
    good: BatchResult[int] = BatchResult("k", 0, value=3)
    bad: BatchResult[int] = BatchResult("k", 1, error=rs.ObjectNotFound("k"))
    assert (good.ok, good.unwrap(), bad.ok) == (True, 3, False)
    with pytest.raises(rs.ObjectNotFound):
        bad.unwrap()
