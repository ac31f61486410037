"""``check_rows`` (the walk every verification shares) and ``link_rows`` (every commit's
chaining), pinned down on hand-built chains: each kind of break at its exact position with
its exact words, what the walk reports up to the break, checkpointed hashes, keyed and
unkeyed chains, and the intents left without an outcome."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from residency_sdk.audit.chain import GENESIS, link_rows
from residency_sdk.audit.verify import ChainBreak, check_rows

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


def _seal(key: bytes):  # type: ignore[no-untyped-def]
    return lambda seq, digest: hmac.new(key, f"{seq}\n{digest}".encode(), "sha256").hexdigest()


def _hash(seq: int, prev: str, payload: str) -> str:
    return hashlib.sha256(f"{seq}\n{prev}\n{payload}".encode()).hexdigest()


def _chain(n: int, key: bytes | None = None, genesis: str = GENESIS) -> list[tuple]:  # type: ignore[type-arg]
    return link_rows([f'{{"n":{i}}}' for i in range(1, n + 1)], 0, genesis,
                     _seal(key) if key else None)


def test_link_rows_numbers_hashes_and_seals_each_row_after_the_given_position() -> None:
    rows = link_rows(["a", "b"], 7, "p" * 64, _seal(KEY))
    h8 = _hash(8, "p" * 64, "a")
    h9 = _hash(9, h8, "b")
    assert rows == [(8, "a", "p" * 64, h8, _seal(KEY)(8, h8)),
                    (9, "b", h8, h9, _seal(KEY)(9, h9))]
    assert link_rows(["a"], 0, GENESIS, None) == [(1, "a", GENESIS, _hash(1, GENESIS, "a"),
                                                   None)]
    assert link_rows([], 3, "x", None) == []


def test_an_intact_chain_walks_to_its_end_and_reports_its_head() -> None:
    rows = _chain(4)
    walk = check_rows(rows, None, wanted={0, 2, 4})
    assert walk.broken is None
    assert (walk.count, walk.last_seq, walk.last_hash) == (4, 4, rows[-1][3])
    assert walk.hashes == {0: GENESIS, 2: rows[1][3], 4: rows[3][3]}
    assert walk.macs_seen is False
    empty = check_rows([], None)
    assert (empty.count, empty.last_seq, empty.last_hash, empty.hashes) == (0, 0, GENESIS, {})


def test_the_genesis_hash_is_recorded_only_when_position_0_is_wanted() -> None:
    assert check_rows(_chain(2), None, wanted={1}).hashes == {1: _chain(2)[0][3]}
    other = "g" * 64
    walk = check_rows(_chain(2, genesis=other), None, genesis=other, wanted={0})
    assert walk.broken is None and walk.hashes == {0: other}


def test_missing_events_are_named_with_the_gap() -> None:
    rows = _chain(5)
    walk = check_rows([rows[0], rows[3], rows[4]], None)
    assert walk.broken == ChainBreak(2, "missing_events", (
        "events 2..3 are missing (deleted): the next stored event is 4"))
    assert (walk.count, walk.last_seq, walk.last_hash) == (1, 1, rows[0][3])
    first_gone = check_rows(rows[1:], None)
    assert first_gone.broken == ChainBreak(1, "missing_events", (
        "events 1..1 are missing (deleted): the next stored event is 2"))
    assert (first_gone.count, first_gone.last_hash) == (0, GENESIS)


def test_a_repeated_position_is_named_as_duplicated_or_reordered() -> None:
    rows = _chain(3)
    walk = check_rows([rows[0], rows[1], rows[1], rows[2]], None)
    assert walk.broken == ChainBreak(3, "missing_events", (
        "position 2 appears again after 2 (duplicated or reordered)"))
    assert (walk.count, walk.last_seq, walk.last_hash) == (2, 2, rows[1][3])


def test_a_first_event_not_linked_to_the_genesis_is_named_as_another_chain() -> None:
    rows = _chain(2, genesis="f" * 64)
    walk = check_rows(rows, None)
    assert walk.broken == ChainBreak(1, "prev_hash_mismatch", (
        "prev_hash does not match the hash of event 0 (the log's genesis): events "
        "were inserted or the log was rebuilt, or this is another log's chain"))
    assert (walk.count, walk.last_seq, walk.last_hash) == (0, 0, GENESIS)


def test_a_later_event_not_linked_to_its_predecessor_is_named_with_its_position() -> None:
    rows = _chain(3)
    seq, payload, _, _, mac = rows[2]
    relinked = (seq, payload, "0" * 64, _hash(seq, "0" * 64, payload), mac)
    walk = check_rows([rows[0], rows[1], relinked], None)
    assert walk.broken == ChainBreak(3, "prev_hash_mismatch", (
        "prev_hash does not match the hash of event 2: an event was inserted, deleted or "
        "reordered here"))
    assert (walk.count, walk.last_seq, walk.last_hash) == (2, 2, rows[1][3])


def test_an_edited_event_is_named_as_edited() -> None:
    rows = _chain(3)
    seq, _, prev, digest, mac = rows[1]
    walk = check_rows([rows[0], (seq, '{"n":99}', prev, digest, mac), rows[2]], None)
    assert walk.broken == ChainBreak(2, "hash_mismatch", (
        "the stored hash does not cover the stored event: its content was edited"))
    assert (walk.count, walk.last_seq, walk.last_hash) == (1, 1, rows[0][3])


def test_every_field_of_the_hash_is_checked() -> None:
    # The hash covers position, predecessor and event: a stored hash over anything else
    # (here: each field left out in turn) is an edit.
    rows = _chain(2)
    seq, payload, prev, _, _ = rows[1]
    for wrong in (hashlib.sha256(f"{prev}\n{payload}".encode()).hexdigest(),
                  hashlib.sha256(f"{seq}\n{payload}".encode()).hexdigest(),
                  hashlib.sha256(f"{seq}\n{prev}".encode()).hexdigest(),
                  hashlib.sha256(f"{seq}\n{prev}\n{payload}\n".encode()).hexdigest()):
        walk = check_rows([rows[0], (seq, payload, prev, wrong, None)], None)
        assert walk.broken is not None and walk.broken.kind == "hash_mismatch"


def test_a_keyed_chain_passes_only_under_its_key_and_reports_its_macs() -> None:
    rows = _chain(3, KEY)
    walk = check_rows(rows, KEY)
    assert walk.broken is None and walk.macs_seen is True and walk.count == 3
    # Without the key the MACs are seen but cannot be checked.
    unkeyed = check_rows(rows, None)
    assert unkeyed.broken is None and unkeyed.macs_seen is True
    wrong = check_rows(rows, OTHER_KEY)
    assert wrong.broken == ChainBreak(1, "mac_mismatch", (
        "HMAC missing or wrong: the chain from here was rebuilt without the key "
        "(or the event was forged)"))
    assert (wrong.count, wrong.last_seq, wrong.last_hash) == (0, 0, GENESIS)


@pytest.mark.parametrize("mac", [None, "0" * 64], ids=["missing", "wrong"])
def test_a_keyed_chain_with_one_mac_missing_or_wrong_breaks_there(mac: str | None) -> None:
    rows = _chain(3, KEY)
    seq, payload, prev, digest, _ = rows[1]
    walk = check_rows([rows[0], (seq, payload, prev, digest, mac), rows[2]], KEY)
    assert walk.broken is not None
    assert (walk.broken.seq, walk.broken.kind) == (2, "mac_mismatch")
    assert (walk.count, walk.last_seq, walk.last_hash) == (1, 1, rows[0][3])
    assert walk.macs_seen is True  # the first row's MAC


def test_an_unkeyed_chain_reports_no_macs_seen() -> None:
    walk = check_rows(_chain(2), None)
    assert walk.macs_seen is False
    assert check_rows(_chain(2), KEY).broken == ChainBreak(1, "mac_mismatch", (
        "HMAC missing or wrong: the chain from here was rebuilt without the key "
        "(or the event was forged)"))


def test_intents_without_an_outcome_are_kept_and_answered_ones_dropped() -> None:
    events = ['{"event_id":"e1","outcome":"intent"}',
              '{"event_id":"e2","outcome":"intent"}',
              '{"event_id":"e3","intent_id":"e1","outcome":"ok"}']
    rows = link_rows(events, 0, GENESIS, None)
    walk = check_rows(rows, None)
    assert walk.broken is None
    assert walk.intents == {"e2": (2, events[1])}
    # Only the part before a break counts.
    cut = check_rows([rows[0], rows[2]], None)
    assert cut.intents == {"e1": (1, events[0])}
