"""Transfer rules written from the law (LEGAL_FACTS section 12, the legal review of
December 2026), one group per finding of the privacy officer's review: scoped and dated
agreements, per-transfer derogations, the three DPF certifications, the national
health-data overlays, HIPAA by holder, the corrected facts and the review dates.

Each test states the legal fact it checks; none is derived from what the engine did
before.
"""

from __future__ import annotations

import json
import warnings
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import residency_sdk as rs
from residency_sdk.cli.app import app
from residency_sdk.regionmap import load_region_map
from residency_sdk.rules import load_transfer_rules

IMPORTER = "Acme Imaging Inc."


@pytest.fixture(scope="module")
def res() -> rs.Residency:
    return rs.Residency.load(audit=False, audit_off_reason="rules tests decide only")


def _tenant(country: str, *agreements: Any, **fields: Any) -> rs.Tenant:
    return rs.Tenant(id="clinic-law", country=country, agreements=frozenset(agreements),
                     **fields)


def _scc(**fields: Any) -> rs.Agreement:
    base: dict[str, Any] = {"counterparty": IMPORTER, "destinations": ["US"],
                            "signed_on": "2026-01-15", "expires_on": "2027-01-14",
                            "reference": "SCC-2026-017"}
    return rs.Agreement("scc", **{**base, **fields})


def _map(tmp_path: Path, **policy: Any) -> Path:
    doc: dict[str, Any] = {"version": 1, "name": "law-test", "extends": "default",
                           "operator": IMPORTER}
    if policy:
        doc["transfer_policy"] = policy
    path = tmp_path / "map.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


# --- agreements are scoped, dated and named -----------------------------------------


def test_an_scc_signed_for_the_us_does_not_unlock_china_or_russia(res):
    tenant = _tenant("AT", _scc())
    on = date(2026, 6, 1)
    assert res.check_transfer(tenant, "US", "personal", counterparty=IMPORTER, at=on).allowed
    for country in ("CN", "RU"):
        blocked = res.check_transfer(tenant, country, "personal", counterparty=IMPORTER, at=on)
        assert not blocked.allowed
        assert "SCC-2026-017" in " ".join(blocked.reasons) and f"not {country}" in \
            " ".join(blocked.reasons)


def test_an_scc_covers_only_its_named_importer(res):
    tenant = _tenant("AT", _scc())
    on = date(2026, 6, 1)
    other = res.check_transfer(tenant, "US", "personal", counterparty="Other Corp", at=on)
    assert not other.allowed and "'Acme Imaging Inc.'" in " ".join(other.reasons)
    unnamed = res.check_transfer(tenant, "US", "personal", at=on)  # the map names no operator
    assert not unnamed.allowed and "unnamed recipient" in " ".join(unnamed.reasons)


def test_the_map_operator_is_the_counterparty_of_placement_and_copies(tmp_path):
    res = rs.Residency.load(_map(tmp_path), audit=False, audit_off_reason="test")
    tenant = _tenant("AT", _scc())
    decision = res.check_transfer(tenant, "US", "personal", at=date(2026, 6, 1))
    assert decision.allowed and decision.agreements == ("scc[SCC-2026-017]",)


def test_an_expired_or_not_yet_signed_agreement_does_not_count_and_the_decision_says_so(res):
    tenant = _tenant("AT", _scc())
    before = res.check_transfer(tenant, "US", "personal", counterparty=IMPORTER,
                                at=date(2026, 1, 14))
    after = res.check_transfer(tenant, "US", "personal", counterparty=IMPORTER,
                               at=date(2027, 1, 15))
    last_day = res.check_transfer(tenant, "US", "personal", counterparty=IMPORTER,
                                  at=date(2027, 1, 14))
    assert not before.allowed and "not in force until 2026-01-15" in " ".join(before.reasons)
    assert not after.allowed and "expired on 2027-01-14" in " ".join(after.reasons)
    assert last_day.allowed and last_day.decided_on == date(2027, 1, 14)


def test_decisions_follow_an_injected_clock(tmp_path):
    now = [datetime(2026, 6, 1, 12, tzinfo=UTC)]
    res = rs.Residency.load(_map(tmp_path), audit=False, audit_off_reason="test",
                            clock=lambda: now[0])
    tenant = _tenant("AT", _scc())
    assert res.check_transfer(tenant, "US", "personal").allowed
    now[0] = datetime(2027, 2, 1, tzinfo=UTC)  # the same question, after expiry
    late = res.check_transfer(tenant, "US", "personal")
    assert not late.allowed and late.decided_on == date(2027, 2, 1)


def test_a_naive_clock_or_at_is_refused(tmp_path):
    res = rs.Residency.load(audit=False, audit_off_reason="test",
                            clock=lambda: datetime(2026, 6, 1))
    with pytest.raises(rs.InputError, match="naive datetime"):
        res.check_transfer(_tenant("AT"), "US", "personal")
    with pytest.raises(rs.InputError, match="naive datetime"):
        rs.Residency.load(audit=False, audit_off_reason="t").check_transfer(
            _tenant("AT"), "US", "personal", at=datetime(2026, 6, 1))


def test_the_audit_trail_records_the_agreement_reference(tmp_path):
    events: list[rs.AuditEvent] = []
    res = rs.Residency.load(_map(tmp_path), audit=False, audit_off_reason="test",
                            audit_hooks=[events.append])
    res.check_transfer(_tenant("AT", _scc()), "US", "personal", at=date(2026, 6, 1))
    (event,) = [e for e in events if e.operation == "transfer_check"]
    assert event.outcome == "allowed" and event.agreements == ("scc[SCC-2026-017]",)
    assert '"agreements":["scc[SCC-2026-017]"]' in event.to_json()


def test_a_scoped_agreement_covers_only_its_data_classes(res):
    tenant = _tenant("AT", _scc(data_classes=["personal"]))
    on = date(2026, 6, 1)
    assert res.check_transfer(tenant, "US", "personal", counterparty=IMPORTER, at=on).allowed
    phi = res.check_transfer(tenant, "US", "phi", counterparty=IMPORTER, at=on)
    assert not phi.allowed and "not phi" in " ".join(phi.reasons)


def test_a_bare_mechanism_string_is_an_unscoped_agreement_and_is_flagged(res):
    decision = res.check_transfer(_tenant("AT", "scc"), "US", "personal")
    assert decision.allowed and decision.agreements == ("scc[unscoped]",)
    assert any("unscoped" in w for w in decision.warnings)
    assert "scc" in _tenant("AT", "scc").agreements  # code written for flags still works
    scoped = res.check_transfer(_tenant("AT", _scc()), "US", "personal",
                                counterparty=IMPORTER, at=date(2026, 6, 1))
    assert scoped.warnings == ()


@pytest.mark.parametrize(("on", "notified_on", "counts"), [
    (date(2026, 11, 6), None, True),            # within 5 business days of Mon 2 Nov
    (date(2026, 11, 9), None, True),            # the 5th business day
    (date(2026, 11, 10), None, False),          # past it, never notified
    (date(2026, 11, 10), "2026-11-05", True),   # notified in time
])
def test_a_kvkk_standard_contract_must_be_notified_within_five_business_days(
        res, on, notified_on, counts):
    contract = rs.Agreement("kvkk_standard_contract", destinations=["DE"],
                            signed_on="2026-11-02", notified_on=notified_on,
                            reference="KVKK-SC-88")
    decision = res.policy.decide(_tenant("TR", contract), "DE", "phi", "TR", at=on)
    assert decision.allowed is counts
    if not counts:
        assert "not notified by 2026-11-09" in " ".join(decision.reasons)


def test_a_dpf_certification_lapses(res):
    cert = rs.Agreement("dpf_eu", counterparty=IMPORTER, expires_on="2026-09-30",
                        reference="DPF-ID-12345")
    tenant = _tenant("AT", cert)
    assert res.check_transfer(tenant, "US", "personal", counterparty=IMPORTER,
                              at=date(2026, 9, 30)).mechanism == "dpf_eu"
    assert not res.check_transfer(tenant, "US", "personal", counterparty=IMPORTER,
                                  at=date(2026, 10, 1)).allowed


def test_dpf_is_three_certifications_and_the_old_flag_means_the_eu_one(res):
    assert res.check_transfer(_tenant("AT", "dpf_eu"), "US", "personal").allowed
    assert not res.check_transfer(_tenant("GB", "dpf_eu"), "US", "personal").allowed
    assert res.check_transfer(_tenant("GB", "dpf_uk"), "US", "personal").allowed
    assert not res.check_transfer(_tenant("CH", "dpf_uk"), "US", "personal").allowed
    assert res.check_transfer(_tenant("CH", "dpf_swiss"), "US", "personal").allowed
    with pytest.warns(DeprecationWarning, match="read as 'dpf_eu'"):
        legacy = rs.Residency.load(audit=False, audit_off_reason="t").check_transfer(
            _tenant("AT", "dpf"), "US", "personal")
    assert legacy.allowed and legacy.mechanism == "dpf_eu"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert not res.check_transfer(_tenant("GB", "dpf"), "US", "personal").allowed


def test_a_map_can_require_sccs_beside_the_dpf(tmp_path):
    res = rs.Residency.load(_map(tmp_path, require_alongside={"dpf_eu": ["scc"]}),
                            audit=False, audit_off_reason="test")
    cert = rs.Agreement("dpf_eu", counterparty=IMPORTER, reference="DPF-ID-12345")
    alone = res.check_transfer(_tenant("AT", cert), "US", "personal", at=date(2026, 6, 1))
    assert not alone.allowed and "needs one of scc beside it" in " ".join(alone.reasons)
    both = res.check_transfer(_tenant("AT", cert, _scc()), "US", "personal",
                              at=date(2026, 6, 1))
    assert both.allowed
    assert both.agreements == ("dpf_eu[DPF-ID-12345] + scc[SCC-2026-017]",)


# --- derogations: per transfer, never standing (except where consent is a ground) ----


@pytest.mark.parametrize(("country", "regime"), [("AT", "gdpr"), ("GB", "uk_gdpr"),
                                                 ("CH", "swiss_fadp")])
def test_standing_explicit_consent_is_not_accepted_for_occasional_transfer_regimes(
        res, country, regime):
    decision = res.check_transfer(_tenant(country, "explicit_consent"), "US", "personal")
    assert not decision.allowed
    assert "derogation for occasional transfers" in " ".join(decision.reasons)


def test_kvkk_accepts_explicit_consent_only_for_the_one_transfer(res):
    # Turkish data lives in Germany: both KVKK (origin) and the GDPR (location) judge.
    contract = rs.Agreement("kvkk_standard_contract", destinations=["DE"],
                            signed_on="2026-03-02", notified_on="2026-03-04",
                            reference="KVKK-SC-1")
    tenant = _tenant("TR", contract)
    consent = rs.Derogation(reference="consent-TR-5")
    standing = res.policy.decide(_tenant("TR", "explicit_consent"), "US", "personal", "TR")
    assert not standing.allowed
    given = res.policy.decide(tenant, "US", "personal", "TR", derogation=consent)
    assert given.allowed and given.agreements == ("explicit_consent[consent-TR-5]",)


def test_a_derogation_given_per_transfer_is_audited_with_its_reference():
    events: list[rs.AuditEvent] = []
    res = rs.Residency.load(audit=False, audit_off_reason="test", audit_hooks=[events.append])
    consent = rs.Derogation(reference="patient-consent-2026-0042")
    decision = res.check_transfer(_tenant("AT"), "US", "personal", derogation=consent)
    assert decision.allowed and decision.mechanism == "explicit_consent"
    assert events[-1].agreements == ("explicit_consent[patient-consent-2026-0042]",)
    with pytest.raises(rs.InvalidTenant, match="reference"):
        rs.Derogation(reference=" ")


def test_app_8_2b_consent_is_an_ordinary_ground_so_a_standing_record_counts(res):
    assert res.check_transfer(_tenant("AU", "explicit_consent"), "US", "personal").allowed
    assert not res.check_transfer(_tenant("AU"), "US", "personal").allowed


# --- national health-data rules --------------------------------------------------------


def test_393_sgb_v_keeps_german_health_data_out_of_sccs(res):
    blocked = res.check_transfer(_tenant("DE", "scc"), "US", "phi")
    assert not blocked.allowed and "sgb5_393" in blocked.regimes
    assert "SCCs) do not suffice" in " ".join(blocked.reasons)
    assert res.check_transfer(_tenant("DE"), "CH", "phi").allowed
    assert res.check_transfer(_tenant("DE"), "JP", "phi").allowed  # Art. 45 adequacy
    assert res.check_transfer(_tenant("DE", "scc"), "US", "personal").allowed  # not health


def test_393_sgb_v_accepts_the_us_only_under_the_dpf_adequacy_decision(res):
    assert res.check_transfer(_tenant("DE", "dpf_eu"), "US", "phi").allowed


def test_a_tenant_outside_393_sgb_v_says_why_and_the_decision_shows_it(res):
    private = _tenant("DE", "scc", out_of_scope={"sgb5_393": "private clinic, no SGB V"})
    decision = res.check_transfer(private, "US", "phi")
    assert decision.allowed
    assert decision.out_of_scope == (("sgb5_393", "private clinic, no SGB V"),)
    assert "declared out of scope (private clinic, no SGB V)" in " ".join(decision.reasons)
    with pytest.raises(rs.InvalidTenant, match="reason"):
        _tenant("DE", out_of_scope={"sgb5_393": ""})
    with pytest.raises(rs.InvalidTenant, match="no sector overlay"):
        res.check_transfer(_tenant("DE", out_of_scope={"sgb_393": "typo"}), "US", "phi")


def test_hds_keeps_french_health_data_in_the_eea(res):
    assert res.check_transfer(_tenant("FR"), "DE", "phi").allowed
    to_ch = res.check_transfer(_tenant("FR"), "CH", "phi")  # adequate, but not the EEA
    assert not to_ch.allowed
    assert [v.regime for v in to_ch.verdicts if not v.allowed] == ["hds"]
    assert res.check_transfer(_tenant("FR"), "CH", "personal").allowed


def test_a_map_can_declare_every_tenant_outside_an_overlay(tmp_path):
    path = _map(tmp_path, out_of_scope={"hds": "no certified health-data hosting"})
    res = rs.Residency.load(path, audit=False, audit_off_reason="test")
    decision = res.check_transfer(_tenant("FR"), "CH", "phi")
    assert decision.allowed and decision.out_of_scope == (
        ("hds", "no certified health-data hosting"),)
    bad = _map(tmp_path, out_of_scope={"hdss": "typo"})
    with pytest.raises(rs.MapError, match="hdss"):
        rs.Residency.load(bad, audit=False, audit_off_reason="test")


@pytest.mark.parametrize("country", ["CN", "HK", "MO", "CU", "IR", "KP", "RU", "VE"])
@pytest.mark.parametrize("data_class", ["phi", "personal", "anonymised"])
def test_the_doj_rule_blocks_us_data_to_countries_of_concern_deidentified_included(
        res, country, data_class):
    decision = res.policy.decide(_tenant("US", "baa"), country, data_class, "US")
    assert not decision.allowed and "doj_dsp" in decision.regimes


def test_the_doj_rule_leaves_other_destinations_and_other_tenants_alone(res):
    assert res.policy.decide(_tenant("US"), "DE", "anonymised", "US").allowed
    assert res.policy.decide(_tenant("AT"), "CN", "anonymised", "DE").allowed
    below = _tenant("US", out_of_scope={"doj_dsp": "under 100 US persons a year"})
    assert res.policy.decide(below, "CN", "anonymised", "US").allowed


# --- HIPAA by holder --------------------------------------------------------------------


def test_a_us_clinics_phi_needs_a_baa_to_be_placed_with_the_vendor_at_all(res, tmp_path):
    blocked = res.check_placement(_tenant("US"))
    assert not blocked.allowed and not blocked.is_transfer and blocked.regimes == ("hipaa",)
    assert res.check_placement(_tenant("US", "baa")).allowed
    assert res.resolve(_tenant("US")).required_mechanisms == (("baa",),)
    local = rs.Residency.load(local_root=tmp_path / "data", audit=False,
                              audit_off_reason="test")
    with pytest.raises(rs.PlacementBlocked, match="baa"):
        local.storage_for(_tenant("US")).put("scan.dcm", b"PHI", data_class="phi")
    assert local.storage_for(_tenant("US")).put("n.txt", b"x", data_class="personal")


def test_the_baa_must_cover_each_downstream_holder(res):
    us_only = rs.Agreement("baa", destinations=["US"], reference="BAA-7")
    tenant = _tenant("US", us_only)
    assert res.check_placement(tenant).allowed
    onward = res.check_transfer(tenant, "DE", "phi")
    assert not onward.allowed and "covers US, not DE" in " ".join(onward.reasons)
    assert res.check_transfer(_tenant("US", rs.Agreement("baa", destinations=["US", "DE"])),
                              "DE", "phi").allowed


def test_hipaa_does_not_govern_a_german_clinics_data_because_it_sits_in_the_us(res):
    # A German clinic's data held in the US (say, copied there under SCCs) may return.
    decision = res.policy.decide(_tenant("DE"), "DE", "phi", "US")
    assert decision.allowed and "hipaa" not in decision.regimes


# --- corrected facts -----------------------------------------------------------------


@pytest.mark.parametrize("destination", ["GB", "NZ", "UY", "MC"])
def test_swiss_annex_1_lists_the_uk_new_zealand_uruguay_and_monaco(res, destination):
    decision = res.check_transfer(_tenant("CH"), destination, "phi")
    assert decision.allowed and decision.mechanism == "adequacy"
    assert "Annex 1" in decision.verdicts[0].source


@pytest.mark.parametrize("destination", ["JP", "KR"])
def test_japan_and_korea_are_not_on_swiss_annex_1(res, destination):
    assert not res.check_transfer(_tenant("CH"), destination, "phi").allowed


def test_the_uk_list_has_the_faroe_islands_and_rests_on_article_45a(res):
    decision = res.check_transfer(_tenant("GB"), "FO", "phi")
    assert decision.allowed and decision.mechanism == "adequacy"
    assert "Art. 45A" in decision.verdicts[0].source


def test_new_zealand_hosting_in_australia_for_the_clinic_is_no_disclosure(res):
    assert res.check_placement(_tenant("NZ")).allowed
    own = res.check_transfer(_tenant("NZ"), "AU", "phi", source="NZ", own_use=True)
    assert not own.allowed and own.unblock_with == (("nz_model_clauses",),)


def test_nz_has_no_prescribed_binding_scheme_so_bcr_is_no_basis(res):
    tenant = _tenant("NZ", "bcr")
    assert not res.policy.decide(tenant, "AU", "phi", "NZ", own_use=True).allowed


def test_the_dpf_entry_records_its_pending_appeal_and_a_near_review(res):
    entry = next(e for e in res.rules.regimes["gdpr"].adequacy if e.requires == "dpf_eu")
    assert "C-703/25 P" in entry.source and "Slaughter" in entry.source
    assert entry.review_by <= "2027-01-31"


def test_brazil_counts_for_eu_data_not_yet_for_norway(res):
    assert res.policy.decide(_tenant("AT"), "BR", "phi", "AT").allowed
    norway = res.policy.decide(_tenant("NO"), "BR", "phi", "NO")
    assert not norway.allowed and "does not apply to data of NO" in " ".join(norway.reasons)


def test_india_transfer_rule_date_is_recorded(res):
    assert "13 May 2027" in res.rules.regimes["india_dpdp"].source


# --- review dates -------------------------------------------------------------------


def test_every_regime_adequacy_entry_mechanism_and_overlay_has_a_review_date(res):
    doc = yaml.safe_load(res.map.rules_file.read_text(encoding="utf-8"))
    for rid, regime in doc["regimes"].items():
        assert date.fromisoformat(regime["review_by"]), rid
        for entry in regime.get("adequacy", []):
            assert date.fromisoformat(entry["review_by"]) > date.fromisoformat(entry["as_of"])
    for spec in [*doc["mechanisms"].values(), *doc["overlays"].values()]:
        assert date.fromisoformat(spec["review_by"])


def test_a_rules_file_without_review_dates_is_refused(res, tmp_path):
    doc = yaml.safe_load(res.map.rules_file.read_text(encoding="utf-8"))
    del doc["regimes"]["kvkk"]["review_by"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(rs.MapError, match=r"regimes\.kvkk\.review_by"):
        load_transfer_rules(tmp_path / "rules.yaml", load_region_map(None).groups)


def test_map_validate_warns_about_rules_past_their_review_date():
    runner = CliRunner()
    current = runner.invoke(app, ["map", "validate", "region_maps/default.yaml",
                                  "--on", "2026-12-03", "--json"])
    assert current.exit_code == 0, current.output
    late = runner.invoke(app, ["map", "validate", "region_maps/default.yaml",
                               "--on", "2027-02-01", "--json"])
    data = json.loads(late.stdout)
    assert json.loads(current.stdout)["rules_past_review"] == []
    assert any("dpf_eu" in item for item in data["rules_past_review"])
    assert any(w.startswith("rule past review") for w in data["warnings"])


def test_map_validate_flags_unscoped_map_agreements(tmp_path):
    path = _map(tmp_path, agreements=[{"mechanism": "scc"},
                                      {"mechanism": "bcr", "destinations": ["US"],
                                       "counterparty": IMPORTER, "reference": "BCR-1"}])
    out = CliRunner().invoke(app, ["map", "validate", str(path), "--json"])
    data = json.loads(out.stdout)
    assert len(data["unscoped_agreements"]) == 1 and "scc[unscoped]" in \
        data["unscoped_agreements"][0]


# --- the command line ----------------------------------------------------------------


def test_transfer_check_reads_scoped_agreements_from_a_file_and_decides_on_a_date(tmp_path):
    agreements = tmp_path / "agreements.yaml"
    agreements.write_text(yaml.safe_dump({"agreements": [
        {"mechanism": "scc", "destinations": ["US"], "signed_on": "2026-01-15",
         "expires_on": "2027-01-14", "reference": "SCC-2026-017"}]}), encoding="utf-8")
    base = ["transfer", "check", "-c", "AT", "--to", "US", "-d", "personal",
            "--agreements-file", str(agreements), "--no-audit", "--json"]
    runner = CliRunner()
    ok = runner.invoke(app, [*base, "--at", "2026-06-01"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["decision"]["agreements"] == ["scc[SCC-2026-017]"]
    late = runner.invoke(app, [*base, "--at", "2027-02-01"])
    assert late.exit_code == 1
    assert "expired on 2027-01-14" in " ".join(json.loads(late.stdout)["decision"]["reasons"])
    bad = runner.invoke(app, [*base, "--at", "next week"])
    assert bad.exit_code != 0 and "next week" in bad.output
    assert "Traceback" not in bad.output


def test_transfer_check_takes_consent_per_transfer_and_overlay_declarations():
    runner = CliRunner()
    consent = runner.invoke(app, ["transfer", "check", "-c", "AT", "--to", "US", "-d",
                                  "personal", "--consent", "form-17", "--no-audit"])
    assert consent.exit_code == 0, consent.output
    assert "explicit_consent[form-17]" in consent.output
    declared = runner.invoke(app, ["transfer", "check", "-c", "DE", "--to", "US", "-m", "scc",
                                   "--out-of-scope", "sgb5_393=private clinic",
                                   "--no-audit", "--json"])
    assert declared.exit_code == 0, declared.output
    assert json.loads(declared.stdout)["decision"]["out_of_scope"] == [
        ["sgb5_393", "private clinic"]]
    malformed = runner.invoke(app, ["transfer", "check", "-c", "DE", "--to", "US",
                                    "--out-of-scope", "sgb5_393", "--no-audit"])
    assert malformed.exit_code != 0 and "OVERLAY=REASON" in malformed.output


def test_a_bad_agreements_file_names_the_agreement_and_the_problem(tmp_path):
    agreements = tmp_path / "agreements.yaml"
    agreements.write_text(yaml.safe_dump([{"mechanism": "scc", "expires_on": "soon"}]),
                          encoding="utf-8")
    out = CliRunner().invoke(app, ["transfer", "check", "-c", "AT", "--to", "US",
                                   "--agreements-file", str(agreements), "--no-audit"])
    assert out.exit_code != 0 and "agreement 0" in out.output and "expires_on" in out.output
    assert "Traceback" not in out.output


def test_storage_events_record_the_agreements_their_decision_rests_on(tmp_path):
    events: list[rs.AuditEvent] = []
    res = rs.Residency.load(_map(tmp_path), local_root=tmp_path / "data", audit=False,
                            audit_off_reason="test", audit_hooks=[events.append])
    contract = rs.Agreement("kvkk_standard_contract", destinations=["DE", "US"],
                            signed_on="2026-03-02", notified_on="2026-03-04",
                            reference="KVKK-SC-7")
    turkish = _tenant("TR", contract, _scc(destinations=["US"], expires_on=None))
    res.storage_for(turkish).put("r.txt", b"report", data_class="personal")
    res.transfer(turkish, "r.txt", "US", "personal")
    placement = [e for e in events if e.operation == "placement"]
    assert placement and {e.agreements for e in placement} == {
        ("kvkk_standard_contract[KVKK-SC-7]",)}
    copies = [e for e in events if e.operation == "transfer"]
    assert {e.outcome for e in copies} >= {"ok"}
    assert {e.agreements for e in copies} == {
        ("kvkk_standard_contract[KVKK-SC-7]", "scc[SCC-2026-017]")}
