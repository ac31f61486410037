"""Who and why reach every event: the actor and purpose a caller gives are on every event
its call writes (the report's rows read them), and a data operation names the decision it
rests on and carries that decision's basis with its sources.

Found in review: the placement check of ``residency demo`` and ``residency resolve`` was
recorded with no actor although the caller had one, so the report showed "(unknown)".
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import residency_sdk as rs
from residency_sdk.events import AuditEvent


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[tuple[rs.Residency, list[AuditEvent]]]:
    events: list[AuditEvent] = []
    res = rs.Residency.load(local_root=tmp_path / "data", audit=str(tmp_path / "audit.db"),
                            audit_hooks=[events.append], state_dir=tmp_path / "state")
    yield res, events
    res.close()


def _during(events: list[AuditEvent], run: Callable[[], object]) -> list[AuditEvent]:
    start = len(events)
    with contextlib.suppress(rs.ResidencyError):  # a refusal is audited too: checked below
        run()
    return events[start:]


def test_every_event_of_a_call_names_its_actor_and_a_purpose(
        traced: tuple[rs.Residency, list[AuditEvent]]) -> None:
    res, events = traced
    de = rs.Tenant(id="charite-berlin", country="DE")
    tr = rs.Tenant(id="ankara-clinic", country="TR")
    steps: list[tuple[str, Callable[[], object]]] = [
        ("check_placement", lambda: res.check_placement(de, actor="a1", purpose="p1")),
        ("check_transfer", lambda: res.check_transfer(de, "US", actor="a2", purpose="p2")),
        ("store", lambda: res.storage_for(de, actor="a3", purpose="p3").put("k.bin", b"x")),
        ("get", lambda: res.storage_for(de, actor="a4", purpose="p4").get("k.bin")),
        ("transfer", lambda: res.transfer(de, "k.bin", "GB", actor="a5", purpose="p5")),
        ("blocked transfer", lambda: res.transfer(de, "k.bin", "US", actor="a6",
                                                  purpose="p6")),
        ("blocked put", lambda: res.storage_for(tr, actor="a7", purpose="p7").put(
            "t.bin", b"y")),
        ("delete", lambda: res.storage_for(de, actor="a8", purpose="p8").delete("k.bin")),
        ("erase", lambda: res.erase(de, actor="a9", purpose="p9")),
    ]
    for i, (name, run) in enumerate(steps, start=1):
        emitted = _during(events, run)
        assert emitted, name
        for ev in emitted:
            assert ev.actor == f"a{i}", (name, ev.operation, ev.outcome, ev.actor)
            assert ev.purpose, (name, ev.operation, ev.outcome)


def test_a_write_names_its_placement_and_carries_its_basis(
        traced: tuple[rs.Residency, list[AuditEvent]]) -> None:
    res, events = traced
    tr = rs.Tenant(id="acibadem", country="TR", agreements=frozenset({"kvkk_standard_contract"}))
    emitted = _during(events, lambda: res.storage_for(tr, actor="a").put("s.dcm", b"z" * 10))
    [placement] = [e for e in emitted if e.operation == "placement"]
    [ok] = [e for e in emitted if e.operation == "put" and e.outcome == "ok"
            and e.object_key == "s.dcm"]
    assert ok.decision_id == placement.event_id
    assert ok.is_transfer and ok.mechanism == "kvkk_standard_contract"
    assert ok.destination_country == "DE" and ok.size == 10
    assert [(b.regime, b.basis) for b in ok.basis] == [("kvkk", "kvkk_standard_contract")]
    assert all(b.source and b.as_of and b.review_by for b in ok.basis)


def test_a_refused_write_says_why_and_names_the_refused_placement(
        traced: tuple[rs.Residency, list[AuditEvent]]) -> None:
    res, events = traced
    tr = rs.Tenant(id="ankara-clinic", country="TR")
    store = res.storage_for(tr, actor="a")
    emitted = _during(events, lambda: store.put("t.dcm", b"y"))
    [refused] = [e for e in emitted if e.operation == "put"]
    [placement] = [e for e in events if e.operation == "placement"
                   and e.tenant_id == "ankara-clinic"]
    assert refused.outcome == "blocked" and refused.decision_id == placement.event_id
    assert refused.reasons and "KVKK" in refused.reasons[0]
    [blocking] = [b for b in refused.basis if not b.allowed]
    assert blocking.regime == "kvkk" and "kvkk_standard_contract" in blocking.unblock_with


def test_a_transfer_names_its_decision_and_a_move_carries_its_basis(
        traced: tuple[rs.Residency, list[AuditEvent]], tmp_path: Path) -> None:
    res, events = traced
    de = rs.Tenant(id="charite-berlin", country="DE")
    res.storage_for(de, actor="a").put("k.bin", b"x")
    emitted = _during(events, lambda: res.transfer(de, "k.bin", "GB", actor="a"))
    [check] = [e for e in emitted if e.operation == "transfer_check"]
    moved = [e for e in emitted if e.operation == "transfer"]
    assert {e.outcome for e in moved} == {"intent", "ok"}
    assert all(e.decision_id == check.event_id and e.basis for e in moved)
    emitted = _during(events, lambda: res.move_tenant(de, "FR", actor="mover"))
    copies = [e for e in emitted if e.operation == "transfer" and e.outcome == "ok"]
    assert copies and all(e.mechanism and e.basis and e.decision_id for e in copies)
    assert all(e.actor == "mover" for e in emitted if e.operation != "erase" or e.actor)


def test_the_command_line_and_the_demo_name_who_checked_a_placement(tmp_path: Path) -> None:
    import sqlite3

    from typer.testing import CliRunner

    from residency_sdk.cli.app import app

    log = tmp_path / "audit.db"
    result = CliRunner().invoke(app, ["resolve", "--country", "TR", "--audit", str(log)])
    assert result.exit_code in (0, 1), result.output
    result = CliRunner().invoke(app, ["demo", "--workdir", str(tmp_path / "demo"),
                                      "--audit", str(tmp_path / "demo.db"), "--json"])
    assert result.exit_code == 0, result.output
    for path in (log, tmp_path / "demo.db"):
        conn = sqlite3.connect(path)
        rows = conn.execute("SELECT event ->> '$.operation', event ->> '$.actor' "
                            "FROM audit_events WHERE seq > 0").fetchall()
        conn.close()
        placements = [actor for op, actor in rows if op == "placement"]
        assert placements and None not in placements, path
