"""Doors 5 and 6 of issue 11: where data lives is derived, never asserted.

5. A caller-asserted ``source`` must not clear a German clinic's PHI for the US, and one
   tenant id must not be opened under a second country (splitting its data across two
   locations); the only way to change a tenant's country is ``move_tenant``.
6. Asking whether a Turkish clinic's data may go "to Germany", where its location is,
   must answer the placement verdict (the KVKK Art. 9 transfer), not "no transfer".

Every case ran red on the commit before the fix (caller source accepted, placement
short-circuited, second country opened) and is green after.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import residency_sdk as rs
from residency_sdk.cli.app import app
from residency_sdk.tenants import RECORDS_PREFIX

runner = CliRunner()


def _events(res: rs.Residency) -> list[rs.AuditEvent]:
    events: list[rs.AuditEvent] = []
    res.add_audit_hook(events.append)
    return events


# --- 5a: a caller-asserted source ------------------------------------------------------


@pytest.mark.parametrize("source", ["US", "us", "GB", "TR"])
def test_a_caller_asserted_source_is_refused(source: str) -> None:
    res = rs.Residency.load()
    events = _events(res)
    clinic = rs.Tenant(id="charite", country="DE")
    with pytest.raises(rs.InvalidSource, match=f"(?i)source {source!r}.*location DE"):
        res.check_transfer(clinic, "US", "phi", source=source)
    with pytest.raises(rs.InvalidSource):
        res.require_transfer(clinic, "US", "phi", source=source, actor="app")
    # Refused loudly and audited, never as an allowed decision.
    assert [(e.operation, e.outcome) for e in events] == [("transfer_check", "blocked")] * 2
    assert events[1].actor == "app" and "InvalidSource" in (events[1].error or "")


def test_restating_the_known_source_decides_as_without_it() -> None:
    res = rs.Residency.load()
    clinic = rs.Tenant(id="charite", country="DE")
    assert res.check_transfer(clinic, "US", "phi", source="DE") == \
        res.check_transfer(clinic, "US", "phi")
    assert not res.check_transfer(clinic, "US", "phi", source="DE").allowed


def test_cli_refuses_a_laundered_source() -> None:
    result = runner.invoke(app, ["transfer", "check", "--country", "DE", "--to", "US",
                                 "--data-class", "phi", "--from", "US", "--json"])
    assert result.exit_code == 2, result.output
    assert "InvalidSource" in result.output or "source" in json.loads(result.output)["error"]


# --- 6: the placement short-circuit ------------------------------------------------------


def test_turkish_data_to_germany_answers_the_placement_verdict() -> None:
    res = rs.Residency.load()
    events = _events(res)
    clinic = rs.Tenant(id="ankara-1", country="TR")
    decision = res.check_transfer(clinic, "DE", "phi", actor="dpo")
    assert not decision.allowed and decision.is_transfer
    assert (decision.source, decision.destination) == ("TR", "DE")
    assert any("kvkk_standard_contract" in options for options in decision.unblock_with)
    with pytest.raises(rs.TransferBlocked):
        res.require_transfer(clinic, "DE", "phi")
    assert next((e.operation, e.outcome, e.actor) for e in events) == \
        ("transfer_check", "blocked", "dpo")
    signed = clinic.model_copy(update={"agreements": frozenset({"kvkk_standard_contract"})})
    assert res.check_transfer(signed, "DE", "phi").allowed


def test_onward_transfer_from_an_unlawful_placement_is_blocked() -> None:
    res = rs.Residency.load()
    clinic = rs.Tenant(id="ankara-1", country="TR", agreements={"scc"})
    decision = res.check_transfer(clinic, "GB", "personal")
    assert not decision.allowed
    assert "may not be placed in location DE" in decision.reasons[0]


def test_cli_transfer_check_tr_to_de_is_blocked_naming_the_contract() -> None:
    result = runner.invoke(app, ["transfer", "check", "--country", "TR", "--to", "DE",
                                 "--json"])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.output)
    assert doc["ok"] is False and "kvkk_standard_contract" in json.dumps(doc)
    signed = runner.invoke(app, ["transfer", "check", "--country", "TR", "--to", "DE",
                                 "-m", "kvkk_standard_contract", "--json"])
    assert signed.exit_code == 0, signed.output


# --- 5b: one tenant id, one country ------------------------------------------------------


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_a_tenant_id_cannot_be_opened_under_a_second_country(provider_harness: Any,
                                                            tmp_path: Path) -> None:
    res = provider_harness.residency(tmp_path, state_dir=tmp_path / "state")
    events = _events(res)
    res.storage_for(rs.Tenant(id="clinic-9", country="DE")).put("a.dcm", b"DE study")
    as_french = res.storage_for(rs.Tenant(id="clinic-9", country="FR"))
    fr_target = res.backend("FR")
    before = [o.key for o in res.store(fr_target, "FR").list("tenants/")]
    with pytest.raises(rs.TenantCountryConflict, match=r"bound to country DE.*tenant move"):
        as_french.put("b.dcm", b"split across two locations")
    for call in (lambda: as_french.get("a.dcm"), lambda: list(as_french.list()),
                 lambda: as_french.exists("a.dcm")):
        with pytest.raises(rs.TenantCountryConflict):
            call()
    assert [o.key for o in res.store(fr_target, "FR").list("tenants/")] == before
    refused = [e for e in events if e.operation == "put" and e.outcome == "error"]
    assert refused and "TenantCountryConflict" in (refused[0].error or "")
    # Same location, other country (AT is routed to DE too): still a second country.
    with pytest.raises(rs.TenantCountryConflict):
        res.storage_for(rs.Tenant(id="clinic-9", country="AT")).get("a.dcm")
    # A fresh process (a new client over the same backends) sees the record as well.
    again = provider_harness.residency(tmp_path, state_dir=tmp_path / "state")
    with pytest.raises(rs.TenantCountryConflict):
        again.storage_for(rs.Tenant(id="clinic-9", country="FR")).put("c", b"x")
    assert again.storage_for(rs.Tenant(id="clinic-9", country="DE")).get("a.dcm") == \
        b"DE study"


def test_move_tenant_copies_verifies_rebinds_and_erases(provider_harness: Any,
                                                        tmp_path: Path) -> None:
    res = provider_harness.residency(tmp_path, state_dir=tmp_path / "state")
    events = _events(res)
    de = rs.Tenant(id="clinic-mv", country="DE")
    store = res.storage_for(de)
    payloads = {f"s/{i}.dcm": bytes([i]) * (1000 + i) for i in range(5)}
    for key, data in payloads.items():
        store.put(key, data, data_class="phi")
    receipt = res.move_tenant(de, "FR", providers=[provider_harness.provider], actor="dpo",
                              purpose="clinic relocated")
    assert (receipt.from_location, receipt.to_location, receipt.objects) == ("DE", "FR", 5)
    assert receipt.bytes == sum(map(len, payloads.values()))
    assert receipt.erasure_request_id is not None
    fr = rs.Tenant(id="clinic-mv", country="FR")
    moved = res.storage_for(fr)
    assert {o.key: moved.get(o.key) for o in moved.list()} == payloads
    de_raw = res.store(res.backend("DE"), "DE")
    assert [o.key for o in de_raw.list("tenants/clinic-mv/")] == []
    assert f"{RECORDS_PREFIX}clinic-mv.json" not in [o.key for o in de_raw.list(RECORDS_PREFIX)]
    with pytest.raises(rs.TenantCountryConflict, match=r"bound to country FR"):
        res.storage_for(de).get("s/0.dcm")
    ops = [(e.operation, e.outcome) for e in events]
    assert ops.count(("transfer", "ok")) == 5 and ("erase", "ok") in ops
    assert any(e.operation == "transfer_check" and e.outcome == "allowed" for e in events)


def test_a_blocked_move_copies_nothing(tmp_path: Path) -> None:
    res = rs.Residency.load(local_root=tmp_path / "data")
    events = _events(res)
    # With a BAA the US placement itself is lawful (HIPAA by holder, LEGAL_FACTS 12), so
    # what blocks is the GDPR transfer DE -> US.
    de = rs.Tenant(id="clinic-stay", country="DE", agreements={"baa"})
    res.storage_for(de).put("a", b"phi", data_class="phi")
    with pytest.raises(rs.TransferBlocked):
        res.move_tenant(de, "US")
    us_root = res.store(res.backend("US"), "US")
    assert [o.key for o in us_root.list("tenants/")] == []
    assert res.storage_for(de).get("a") == b"phi"  # still bound to DE, data untouched
    assert any(e.operation == "transfer_check" and e.outcome == "blocked" for e in events)


def test_a_move_without_a_state_folder_is_refused_before_copying(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESIDENCY_STATE_DIR", raising=False)  # no state folder configured
    res = rs.Residency.load(storage=lambda target, _loc: rs.MemoryStore(target),
                            audit=str(tmp_path / "audit.db"))
    de = rs.Tenant(id="clinic-x", country="DE")
    res.storage_for(de).put("a", b"phi", data_class="phi")
    with pytest.raises(rs.ErasureError, match="state"):
        res.move_tenant(de, "FR")
    assert res.storage_for(de).get("a") == b"phi"


def test_cli_tenant_move(tmp_path: Path) -> None:
    root, state = tmp_path / "data", tmp_path / "state"
    res = rs.Residency.load(local_root=root, state_dir=state)
    res.storage_for(rs.Tenant(id="clinic-cli", country="DE")).put("a", b"study")
    common = ["--tenant", "clinic-cli", "--local-root", str(root), "--state-dir", str(state),
              "--json"]
    refused = runner.invoke(app, ["tenant", "move", "--from", "DE", "--to", "US", *common])
    assert refused.exit_code == 1, refused.output
    moved = runner.invoke(app, ["tenant", "move", "--from", "DE", "--to", "FR", *common])
    assert moved.exit_code == 0, moved.output
    assert json.loads(moved.output)["move"]["objects"] == 1
    fresh = rs.Residency.load(local_root=root, state_dir=state)
    assert fresh.storage_for(rs.Tenant(id="clinic-cli", country="FR")).get("a") == b"study"
