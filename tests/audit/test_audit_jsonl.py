"""The JSON Lines sink: one chained record per line, verifiable on its own."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from conftest import KEY, event

import residency_sdk as rs
from residency_sdk.audit import JsonlSink, verify_jsonl
from residency_sdk.audit.chain import canonical
from residency_sdk.errors import AuditFormatError, AuditLogClosed


def test_lines_carry_the_event_and_its_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    events = [event(i) for i in range(3)]
    with JsonlSink(path) as sink:
        for e in events:
            sink.append(e)
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    record = json.loads(lines[1])
    assert record["seq"] == 2 and record["prev_hash"] == json.loads(lines[0])["hash"]
    assert record["event"]["object_key"] == "charite-berlin/scan-1.dcm"
    assert lines[1].endswith(',"event":' + canonical(events[1]) + "}")
    result = verify_jsonl(path)
    assert result.ok and result.events == 3


def test_tampered_line_is_found(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with JsonlSink(path) as sink:
        for i in range(5):
            sink.append(event(i))
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace('"size":1002', '"size":2')
    path.write_text("".join(lines))
    result = verify_jsonl(path)
    assert result.broken is not None and (result.broken.seq, result.broken.kind) == (
        3, "hash_mismatch")
    del lines[2]
    path.write_text("".join(lines))
    broken = verify_jsonl(path).broken
    assert broken is not None and (broken.seq, broken.kind) == (3, "missing_events")
    path.write_text("".join(lines[:1]) + "not json\n")
    broken = verify_jsonl(path).broken
    assert broken is not None and (broken.seq, broken.kind) == (2, "malformed_line")


def test_keyed_sink(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with JsonlSink(path, hmac_key=KEY) as sink:
        sink.append(event(0))
        sink.append(event(1))
    assert verify_jsonl(path, hmac_key=KEY).hmac_checked
    broken = verify_jsonl(path, hmac_key=b"another-key-0123456789").broken
    assert broken is not None and (broken.seq, broken.kind) == (1, "mac_mismatch")


def test_threads_and_hook_wiring(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, fsync=False)
    res = rs.Residency.load(audit=sink)
    tenant = rs.Tenant(id="akh-wien", country="AT")

    def work() -> None:
        for _ in range(100):
            res.check_transfer(tenant, "FR", "phi", actor="t")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sink.close()
    assert verify_jsonl(path).events == 400
    with pytest.raises(AuditLogClosed):
        sink.append(event(0))
    with pytest.raises(AuditFormatError):
        verify_jsonl(tmp_path / "missing.jsonl")


def test_keyed_file_without_its_key_is_unverified_and_intents_are_listed(
        tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    intent = event(0, outcome="intent")
    with JsonlSink(path, hmac_key=KEY) as sink:
        sink.append(intent)
        sink.append(event(1), durable=False)
        sink.flush()
    result = verify_jsonl(path)
    assert result.status == "unverified" and not result.ok and result.broken is None
    assert any("UNVERIFIED" in note for note in result.notes)
    checked = verify_jsonl(path, hmac_key=KEY)
    assert checked.ok and checked.outcome_unknown[0][:2] == (1, intent.event_id)
