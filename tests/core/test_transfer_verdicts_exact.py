"""Every way through ``Regime.judge`` and ``TransferRules.decide`` (promises MV-8, MV-9),
on a small rules file built for it: each verdict and decision is compared whole (allowed,
basis, the reason in words, what would unblock it, the rule fact it rests on with its
source/as_of/review_by, the agreement relied on, the warnings), since the reason is what a
privacy officer reads in the audit trail and the fix is what the error tells the developer.

Every rule fact of the document has its own ``source`` text, so a verdict that names the
wrong fact (the regime instead of the adequacy entry, one entry instead of another) fails.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from residency_sdk.agreements import Agreement, Derogation
from residency_sdk.model import Decision, RegimeVerdict
from residency_sdk.rules import TransferContext, TransferRules, compile_transfer_rules

FILE = "verdict-rules.yaml"
ON = date(2026, 11, 16)  # a Monday; every decision below is taken on it unless said
AS_OF = "2026-11-01"
LATE = "2027-06-01"


# Facts a verdict can name instead of its regime's, with dates of their own (as_of,
# review_by): a verdict that falls back to the regime's dates (as_of=None) then fails.
DATES = {
    "kilo s11": ("2026-10-05", "2027-05-05"),
    "alpha adequacy CH": ("2026-10-06", "2027-05-06"),
    "alpha adequacy US": ("2026-10-07", "2027-01-31"),
    "alpha scc": ("2026-10-08", LATE),
    "echo consent": ("2026-10-09", LATE),
}


def _fact(source: str, review_by: str | None = None) -> dict[str, str]:
    """A rule fact of the document: its source, as_of and review_by."""
    as_of, own = DATES.get(source, (AS_OF, LATE))
    return {"source": source, "as_of": as_of, "review_by": review_by or own}


def _accepts(flag: str, classes: list[str], source: str, **more: Any) -> dict[str, Any]:
    """A regime mechanism entry (these carry no review_by of their own)."""
    return {"flag": flag, "data_classes": classes, "source": source,
            "as_of": _fact(source)["as_of"], **more}


def _rules() -> TransferRules:
    doc: dict[str, Any] = {
        "as_of": AS_OF, "source": "test", "review_by": LATE,
        "data_classes": {
            "phi": {"description": "health"}, "personal": {"description": "personal"},
            "telemetry": {"description": "restricted, but not by alpha"},
            "anonymised": {"description": "not personal", "restricted": False}},
        "mechanisms": {
            "scc": {"name": "SCC", **_fact("mech scc")},
            "bcr": {"name": "BCR", **_fact("mech bcr")},
            "dpf_eu": {"name": "DPF EU", "kind": "certification",
                       **_fact("mech dpf_eu", "2027-01-31")},
            "baa": {"name": "BAA", **_fact("mech baa")},
            "kvkk": {"name": "KVKK contract", "notify_within_business_days": 5,
                     **_fact("mech kvkk")},
            "explicit_consent": {"name": "Consent", "kind": "consent",
                                 **_fact("mech consent")},
            "vital_interests": {"name": "Vital interests", "kind": "consent",
                                **_fact("mech vital")}},
        "aliases": {"dpf": {"to": "dpf_eu", "note": "read as dpf_eu"}},
        "regimes": {
            "alpha": {
                "name": "Alpha Act", "governs": ["ZONE"], "free_zone": ["AT"],
                "free_zone_basis": "zone", "restricts": ["phi", "personal"],
                "adequacy": [
                    {"countries": ["CH"], **_fact("alpha adequacy CH")},
                    {"countries": ["US"], "requires": "dpf_eu",
                     **_fact("alpha adequacy US", "2027-01-31")},
                    {"countries": ["CA"], "requires": "scc", **_fact("alpha adequacy CA")},
                    {"countries": ["JP"], "unverified": True, **_fact("alpha adequacy JP")},
                    {"countries": ["AR"], "origins": ["FR"], **_fact("alpha adequacy AR")}],
                "mechanisms": [
                    _accepts("scc", ["phi", "personal"], "alpha scc"),
                    _accepts("bcr", ["personal"], "alpha bcr")],
                **_fact("alpha act")},
            "beta": {"name": "Beta Act", "governs": ["IN"], "restricts": ["phi"],
                     "negative_list": ["CN"], **_fact("beta act", "2027-03-01")},
            "gamma": {"name": "Gamma Act", "governs": ["GB"], "restricts": ["phi"],
                      **_fact("gamma act")},
            "delta": {"name": "Delta Act", "governs": ["NO"], "restricts": ["phi"],
                      "adequacy": [{"countries": ["CH"], **_fact("delta adequacy CH")}],
                      **_fact("delta act")},
            "echo": {"name": "Echo Act", "governs": ["TR"], "restricts": ["phi", "personal"],
                     "mechanisms": [
                         _accepts("kvkk", ["phi", "personal"], "echo kvkk"),
                         _accepts("explicit_consent", ["personal"], "echo consent",
                                  per_transfer=True)],
                     **_fact("echo act")},
            "kilo": {"name": "Kilo Act", "governs": ["NZ"], "restricts": ["phi", "personal"],
                     "agent_exemption": _fact("kilo s11"),
                     "mechanisms": [_accepts("scc", ["phi", "personal"], "kilo scc")],
                     **_fact("kilo act")},
            "hotel": {"name": "Hotel Act", "governs": ["US"], "restricts": ["phi"],
                      "applies_to": "origin", "every_holder": True,
                      "mechanisms": [_accepts("baa", ["phi"], "hotel baa")],
                      **_fact("hotel act")},
            # Lima: several entries for one destination, where the first ones are skipped
            # (another origin, unverified) and a later one counts; a mechanism for another
            # class and derogations before the contract that counts.
            "lima": {"name": "Lima Act", "governs": ["SG", "MY"],
                     "restricts": ["phi", "personal"],
                     "adequacy": [
                         {"countries": ["KR"], "origins": ["MY"],
                          **_fact("lima adequacy KR for MY")},
                         {"countries": ["KR"], "unverified": True,
                          **_fact("lima adequacy KR unverified")},
                         {"countries": ["KR"], **_fact("lima adequacy KR")},
                         {"countries": ["US"], "requires": "dpf_eu",
                          **_fact("lima adequacy US dpf")},
                         {"countries": ["US"], "requires": "bcr",
                          **_fact("lima adequacy US bcr")},
                         {"countries": ["AU"], "origins": ["MY"],
                          **_fact("lima adequacy AU for MY")}],
                     "mechanisms": [
                         _accepts("bcr", ["personal"], "lima bcr"),
                         _accepts("explicit_consent", ["phi", "personal"], "lima consent",
                                  per_transfer=True),
                         _accepts("vital_interests", ["phi"], "lima vital",
                                  per_transfer=True),
                         _accepts("scc", ["phi", "personal"], "lima scc")],
                     **_fact("lima act")},
        },
        "overlays": {
            "health_it": {"name": "Health IT Rule", "tenant_countries": ["IT"],
                          "data_classes": ["phi"], "allowed_destinations": ["ZONE", "AT"],
                          "adequacy_of": "alpha", "scope": "Italian clinics",
                          "conditions": "hosted by a certified host",
                          **_fact("health_it rule")},
            "doj": {"name": "Doj Rule", "tenant_countries": ["US"],
                    "data_classes": ["phi", "personal", "anonymised"],
                    "blocked_destinations": ["CN"], "scope": "US persons",
                    **_fact("doj rule", "2027-04-08")},
            # Two overlays for Lima's tenants: the first can be declared out of scope
            # while the second still applies; no conditions text.
            "lima_health": {"name": "Lima Health Rule", "tenant_countries": ["SG", "MY"],
                            "data_classes": ["phi"], "allowed_destinations": ["SG", "MY"],
                            "adequacy_of": "lima", "scope": "Lima clinics",
                            **_fact("lima_health rule")},
            "lima_export": {"name": "Lima Export Rule", "tenant_countries": ["SG"],
                            "data_classes": ["phi"], "blocked_destinations": ["CN"],
                            "scope": "Lima persons", **_fact("lima_export rule")},
        },
    }
    return compile_transfer_rules(doc, file=FILE,
                                  groups={"ZONE": frozenset({"DE", "FR", "IT"})})


RULES = _rules()
ALONG = RULES.with_alongside({"dpf_eu": ("scc",)})

# The facts verdicts rest on: a regime's own (also for its accepted mechanisms' review_by).
REGIME_FACT = {rid: _fact(f"{rid} act", r.review_by) for rid, r in RULES.regimes.items()}
NAME = {"alpha": "Alpha Act", "beta": "Beta Act", "gamma": "Gamma Act",
        "delta": "Delta Act", "echo": "Echo Act", "kilo": "Kilo Act", "hotel": "Hotel Act",
        "lima": "Lima Act"}
HOME = {"alpha": "DE", "beta": "IN", "gamma": "GB", "delta": "NO", "echo": "TR",
        "kilo": "NZ", "hotel": "US", "lima": "SG"}


def _entry(source: str, review_by: str | None = None) -> dict[str, str]:
    return _fact(source, review_by)


def _mech(regime: str, source: str) -> dict[str, str]:
    """An accepted mechanism's fact: its source and as_of, the regime's review_by."""
    return {"source": source, "as_of": _fact(source)["as_of"],
            "review_by": REGIME_FACT[regime]["review_by"]}


def _agreements(items: tuple[Agreement | str, ...]) -> frozenset[Agreement]:
    return frozenset(Agreement(a) if isinstance(a, str) else a for a in items)


def _judge(destination: str, data_class: str = "phi", *agreements: Agreement | str,
           regime: str = "alpha", governed: str = "DE", rules: TransferRules = RULES,
           on: date = ON, **ctx: Any) -> tuple[RegimeVerdict, tuple[str, ...]]:
    """The regime's (verdict, warnings) for data governed through and held in
    ``governed``."""
    context = TransferContext(agreements=_agreements(agreements), on=on, **ctx)
    return rules.regimes[regime].judge(data_class, governed, governed, destination, context)


def _unscoped(label: str) -> tuple[str, ...]:
    return (f"rests on unscoped agreement {label}: it names no destination or counterparty, "
            "no dates (nor, for a notifiable contract, its notification) and never expires; "
            "replace it with a scoped rs.Agreement",)


def _blocked(destination: str, data_class: str, unblock: tuple[str, ...], note: str = "",
             regime: str = "alpha", current: str | None = None,
             misses: tuple[str, ...] = (), per_transfer: tuple[str, ...] = ()
             ) -> RegimeVerdict:
    signed = [f for f in unblock if f not in per_transfer]
    given = [f for f in unblock if f in per_transfer]
    fix = "; ".join(filter(None, (
        f"sign one of: {', '.join(signed)}" if signed else "",
        f"or give for this transfer: {', '.join(given)}" if given else ""))) \
        or "no mechanism can allow it"
    why = "".join(f"; {miss}" for miss in misses)
    return RegimeVerdict(
        regime=regime, allowed=False, basis=None, unblock_with=unblock,
        reason=f"{NAME[regime]} blocks {data_class} data from {current or HOME[regime]} to "
        f"{destination}: no adequacy decision{note} and no accepted mechanism in force{why}; "
        f"{fix}", **REGIME_FACT[regime])


def _rests_on(destination: str, flag: str, label: str, regime: str = "alpha"
              ) -> RegimeVerdict:
    return RegimeVerdict(
        regime=regime, allowed=True, basis=flag, agreement=label,
        reason=f"{NAME[regime]}: transfer to {destination} rests on {label}",
        **_mech(regime, f"{regime} {flag}"))


def _held_under(where: str, flag: str, label: str, regime: str) -> RegimeVerdict:
    """A holder rule's verdict on data that stays where it is (no transfer)."""
    return _rests_on(where, flag, label, regime).model_copy(update={
        "reason": f"{NAME[regime]}: holding the data in {where} rests on {label}"})


# --- Regime.judge: the paths kept from the first engine ------------------------------------
# Changed for the new engine: every verdict now names the fact it rests on (source/as_of/
# review_by) and the agreement relied on, judge returns (verdict, warnings), a bare flag is
# an unscoped agreement (label "scc[unscoped]", with a warning), and the blocked reason says
# "no accepted mechanism in force" (agreements are dated) instead of "no accepted mechanism
# among the tenant's agreements". The DPF flag is now dpf_eu, with dpf as its alias, as in
# region_maps/transfer_rules.yaml (an alias may not also be a mechanism).


def test_a_class_the_regime_does_not_restrict_moves_freely() -> None:
    assert _judge("US", "telemetry") == (RegimeVerdict(
        regime="alpha", allowed=True, basis="unrestricted",
        reason="Alpha Act does not restrict telemetry data", **REGIME_FACT["alpha"]), ())


@pytest.mark.parametrize("destination", ["FR", "AT"], ids=["governed", "free-zone"])
def test_inside_the_regimes_zone_nothing_is_restricted(destination: str) -> None:
    assert _judge(destination) == (RegimeVerdict(
        regime="alpha", allowed=True, basis="zone",
        reason=f"Alpha Act imposes no restriction on {destination} (inside its zone)",
        **REGIME_FACT["alpha"]), ())


def test_a_negative_list_blocks_only_the_listed_destinations() -> None:
    assert _judge("CN", regime="beta") == (RegimeVerdict(
        regime="beta", allowed=False, basis=None,
        reason="Beta Act: CN is a notified restricted destination",
        **REGIME_FACT["beta"]), ())
    assert _judge("US", regime="beta") == (RegimeVerdict(
        regime="beta", allowed=True, basis="not_restricted",
        reason="Beta Act: US is not on the notified list of restricted destinations",
        **REGIME_FACT["beta"]), ())


def test_an_unconditional_adequacy_decision_allows() -> None:
    assert _judge("CH") == (RegimeVerdict(
        regime="alpha", allowed=True, basis="adequacy",
        reason="Alpha Act: CH has an adequacy decision",
        **_entry("alpha adequacy CH")), ())


def test_a_conditional_adequacy_decision_allows_only_with_its_flag() -> None:
    assert _judge("US", "phi", "dpf_eu") == (RegimeVerdict(
        regime="alpha", allowed=True, basis="dpf_eu", agreement="dpf_eu[unscoped]",
        reason="Alpha Act: US is adequate for recipients under dpf_eu; rests on "
        "dpf_eu[unscoped]", **_entry("alpha adequacy US", "2027-01-31")),
        _unscoped("dpf_eu[unscoped]"))
    assert _judge("US", "phi", "scc") == (_rests_on("US", "scc", "scc[unscoped]"),
                                          _unscoped("scc[unscoped]"))
    assert _judge("US", "phi") == (_blocked("US", "phi", ("dpf_eu", "scc")), ())
    assert _judge("US", "phi", "bcr") == (_blocked("US", "phi", ("dpf_eu", "scc")), ())


def test_mechanisms_count_only_for_their_data_classes_in_preference_order() -> None:
    assert _judge("BR", "personal", "bcr") == (_rests_on("BR", "bcr", "bcr[unscoped]"),
                                               _unscoped("bcr[unscoped]"))
    assert _judge("BR", "personal", "bcr", "scc") == (
        _rests_on("BR", "scc", "scc[unscoped]"), _unscoped("scc[unscoped]"))
    assert _judge("BR", "personal") == (_blocked("BR", "personal", ("scc", "bcr")), ())
    assert _judge("BR", "phi", "bcr") == (_blocked("BR", "phi", ("scc",)), ())


def test_the_fix_names_each_flag_once() -> None:
    """CA is adequate under scc, and scc is also a mechanism: scc is named once."""
    assert _judge("CA", "phi") == (_blocked("CA", "phi", ("scc",)), ())
    assert _judge("CA", "phi", "scc") == (RegimeVerdict(
        regime="alpha", allowed=True, basis="scc", agreement="scc[unscoped]",
        reason="Alpha Act: CA is adequate for recipients under scc; rests on scc[unscoped]",
        **_entry("alpha adequacy CA")), _unscoped("scc[unscoped]"))


def test_an_unverified_adequacy_entry_is_not_relied_on_and_says_so() -> None:
    note = " (an adequacy entry for it is flagged unverified and is not relied on)"
    assert _judge("JP", "phi") == (_blocked("JP", "phi", ("scc",), note), ())
    assert _judge("JP", "phi", "scc") == (_rests_on("JP", "scc", "scc[unscoped]"),
                                          _unscoped("scc[unscoped]"))


def test_a_regime_with_no_mechanism_says_nothing_can_allow_it() -> None:
    assert _judge("US", "phi", "scc", "dpf_eu", "bcr", regime="gamma", governed="GB") == (
        _blocked("US", "phi", (), regime="gamma"), ())


# --- Regime.judge: agent exemption ----------------------------------------------------------


def test_holding_data_as_the_tenants_agent_is_not_a_disclosure() -> None:
    assert _judge("US", "phi", regime="kilo", governed="NZ") == (RegimeVerdict(
        regime="kilo", allowed=True, basis="agent",
        reason="Kilo Act: holding the data in US on the tenant's behalf, not for the "
        "vendor's own purposes, is not a disclosure", **_entry("kilo s11")), ())


def test_own_use_bypasses_the_agent_exemption() -> None:
    assert _judge("US", "phi", regime="kilo", governed="NZ", own_use=True) == (
        _blocked("US", "phi", ("scc",), regime="kilo"), ())
    assert _judge("US", "phi", "scc", regime="kilo", governed="NZ", own_use=True) == (
        _rests_on("US", "scc", "scc[unscoped]", regime="kilo"), _unscoped("scc[unscoped]"))


# --- Regime.judge: per-transfer derogations ------------------------------------------------

STANDING = ("a standing explicit_consent is not accepted by Echo Act: it is a derogation "
            "for occasional transfers (EDPB Guidelines 2/2018); give it for this transfer "
            "(derogation=rs.Derogation(reference=...))")


def test_a_derogation_given_for_the_transfer_is_accepted() -> None:
    given = Derogation(reference="C-1")
    assert _judge("US", "personal", regime="echo", governed="TR", derogation=given) == (
        RegimeVerdict(regime="echo", allowed=True, basis="explicit_consent",
                      agreement="explicit_consent[C-1]",
                      reason="Echo Act: transfer to US rests on the derogation "
                      "explicit_consent[C-1], given for this transfer",
                      **_mech("echo", "echo consent")), ())


def test_a_derogation_on_another_ground_or_for_another_class_does_not_count() -> None:
    other = Derogation(ground="vital_interests", reference="C-2")
    assert _judge("US", "personal", regime="echo", governed="TR", derogation=other) == (
        _blocked("US", "personal", ("kvkk", "explicit_consent"), regime="echo",
                 per_transfer=("explicit_consent",)), ())
    consent = Derogation(reference="C-1")
    assert _judge("US", "phi", regime="echo", governed="TR", derogation=consent) == (
        _blocked("US", "phi", ("kvkk",), regime="echo"), ())


def test_a_standing_derogation_agreement_is_refused_with_the_edpb_wording() -> None:
    assert _judge("US", "personal", "explicit_consent", regime="echo", governed="TR") == (
        _blocked("US", "personal", ("kvkk", "explicit_consent"), regime="echo",
                 per_transfer=("explicit_consent",), misses=(STANDING,)), ())


# --- Regime.judge: adequacy limited to some origins ---------------------------------------


def test_an_adequacy_entry_applies_only_to_data_of_its_origins() -> None:
    miss = "the adequacy decision for AR does not apply to data of DE (alpha adequacy AR)"
    assert _judge("AR", "phi") == (_blocked("AR", "phi", ("scc",), misses=(miss,)), ())
    assert _judge("AR", "phi", governed="FR") == (RegimeVerdict(
        regime="alpha", allowed=True, basis="adequacy",
        reason="Alpha Act: AR has an adequacy decision", **_entry("alpha adequacy AR")), ())
    assert _judge("AR", "phi", "scc") == (_rests_on("AR", "scc", "scc[unscoped]"),
                                          _unscoped("scc[unscoped]"))


# --- Regime.judge: scoped agreements --------------------------------------------------------


@pytest.mark.parametrize(("agreement", "miss", "ctx"), [
    (Agreement("scc", destinations=["BR"], reference="REF-1"),
     "scc[REF-1] covers BR, not US", {}),
    (Agreement("scc", data_classes=["personal"], counterparty="Acme", reference="REF-2"),
     "scc[REF-2] covers personal data, not phi", {"counterparty": "Acme"}),
    (Agreement("scc", destinations=["US"], signed_on=date(2026, 12, 1), reference="REF-3"),
     "scc[REF-3] is not in force until 2026-12-01 (decided on 2026-11-16)", {}),
    (Agreement("scc", destinations=["US"], expires_on=date(2026, 11, 15),
               reference="REF-4"),
     "scc[REF-4] expired on 2026-11-15 (decided on 2026-11-16)", {}),
    (Agreement("scc", destinations=["US"], counterparty="Acme", reference="REF-5"),
     "scc[REF-5] is signed with 'Acme', but this transfer goes to 'Other' (name the "
     "recipient as `operator` in the region map)", {"counterparty": "Other"}),
    (Agreement("scc", destinations=["US"], counterparty="Acme", reference="REF-5"),
     "scc[REF-5] is signed with 'Acme', but this transfer goes to an unnamed recipient "
     "(name the recipient as `operator` in the region map)", {}),
], ids=["destination", "data-class", "not-yet-signed", "expired", "counterparty",
        "unnamed-recipient"])
def test_an_agreement_that_does_not_cover_the_transfer_is_named_with_why(
        agreement: Agreement, miss: str, ctx: dict[str, Any]) -> None:
    assert _judge("US", "phi", agreement, **ctx) == (
        _blocked("US", "phi", ("dpf_eu", "scc"), misses=(miss,)), ())


def test_a_scoped_agreement_covering_the_transfer_is_named_without_a_warning() -> None:
    signed = Agreement("scc", destinations=["US"], counterparty="Acme", reference="REF-5",
                       signed_on=date(2026, 11, 16), expires_on=date(2026, 11, 16))
    assert _judge("US", "phi", signed, counterparty="ACME") == (
        _rests_on("US", "scc", "scc[REF-5]"), ())


def test_scoped_agreements_are_tried_first_and_every_miss_is_named() -> None:
    loose = Agreement("scc", data_classes=["personal"], reference="A-2")  # names no scope
    narrow = Agreement("scc", destinations=["BR"], reference="Z-9")
    assert _judge("US", "phi", loose, narrow) == (_blocked("US", "phi", ("dpf_eu", "scc"), misses=(
        "scc[Z-9] covers BR, not US", "scc[A-2] covers personal data, not phi")), ())
    # Of two covering agreements, the scoped one is named, and nothing is warned.
    assert _judge("US", "phi", "scc", Agreement("scc", destinations=["US"],
                                                reference="Z-9")) == (
        _rests_on("US", "scc", "scc[Z-9]"), ())


KVKK = Agreement("kvkk", destinations=["US"], signed_on=date(2026, 11, 2), reference="K-1")


@pytest.mark.parametrize(("on", "agreement"), [
    (date(2026, 11, 2), KVKK), (date(2026, 11, 9), KVKK),
    (date(2026, 11, 20), KVKK.model_copy(update={"notified_on": date(2026, 11, 5)}))],
    ids=["signed-today", "last-day-of-the-window", "notified"])
def test_a_notifiable_contract_counts_within_its_window_or_once_notified(
        on: date, agreement: Agreement) -> None:
    assert _judge("US", "phi", agreement, regime="echo", governed="TR", on=on) == (
        _rests_on("US", "kvkk", "kvkk[K-1]", regime="echo"), ())


def test_a_notifiable_contract_unnotified_past_its_deadline_does_not_count() -> None:
    """Signed Monday 2 Nov 2026: five business days run to Monday 9 Nov."""
    miss = ("kvkk[K-1] was not notified by 2026-11-09 (5 business days after signature on "
            "2026-11-02); record notified_on once notified")
    assert _judge("US", "phi", KVKK, regime="echo", governed="TR",
                  on=date(2026, 11, 10)) == (
        _blocked("US", "phi", ("kvkk",), regime="echo", misses=(miss,)), ())


# --- Regime.judge: aliases and mechanisms that need another beside them ----------------------


def test_a_deprecated_alias_counts_as_its_mechanism_under_its_own_label() -> None:
    assert _judge("US", "phi", "dpf") == (RegimeVerdict(
        regime="alpha", allowed=True, basis="dpf_eu", agreement="dpf[unscoped]",
        reason="Alpha Act: US is adequate for recipients under dpf_eu; rests on "
        "dpf[unscoped]", **_entry("alpha adequacy US", "2027-01-31")),
        _unscoped("dpf[unscoped]"))


def test_a_mechanism_required_alongside_another_does_not_count_alone() -> None:
    assert RULES.with_alongside({}) is RULES
    assert _judge("US", "phi", "dpf_eu", rules=ALONG) == (_blocked(
        "US", "phi", ("dpf_eu", "scc"), misses=(
            "dpf_eu[unscoped] needs one of scc beside it (the region map requires a "
            "fallback)",)), ())
    both = "dpf_eu[unscoped] + scc[unscoped]"
    assert _judge("US", "phi", "dpf_eu", "scc", rules=ALONG) == (RegimeVerdict(
        regime="alpha", allowed=True, basis="dpf_eu", agreement=both,
        reason=f"Alpha Act: US is adequate for recipients under dpf_eu; rests on {both}",
        **_entry("alpha adequacy US", "2027-01-31")), _unscoped(both))
    # The rules it was derived from are unchanged.
    assert _judge("US", "phi", "dpf_eu")[0].agreement == "dpf_eu[unscoped]"


# --- Regime.judge: entries and mechanisms passed over before the one that counts -----------


def test_a_later_adequacy_entry_counts_once_the_earlier_ones_are_passed_over() -> None:
    """Lima lists KR three times: for data of MY only, unverified, then for all its data."""
    assert _judge("KR", regime="lima", governed="SG") == (RegimeVerdict(
        regime="lima", allowed=True, basis="adequacy",
        reason="Lima Act: KR has an adequacy decision", **_entry("lima adequacy KR")), ())
    assert _judge("KR", regime="lima", governed="MY") == (RegimeVerdict(
        regime="lima", allowed=True, basis="adequacy",
        reason="Lima Act: KR has an adequacy decision",
        **_entry("lima adequacy KR for MY")), ())


def test_mechanisms_for_other_classes_and_derogations_not_given_are_passed_over() -> None:
    """Lima accepts bcr (personal only), two derogations, then scc: for phi data the scc
    counts, and the fix names both derogations to give."""
    assert _judge("BR", "phi", "scc", regime="lima", governed="SG") == (
        _rests_on("BR", "scc", "scc[unscoped]", regime="lima"), _unscoped("scc[unscoped]"))
    assert _judge("BR", "phi", regime="lima", governed="SG") == (_blocked(
        "BR", "phi", ("explicit_consent", "vital_interests", "scc"), regime="lima",
        per_transfer=("explicit_consent", "vital_interests")), ())
    assert _blocked("BR", "phi", ("explicit_consent", "vital_interests", "scc"),
                    regime="lima", per_transfer=("explicit_consent", "vital_interests")
                    ).reason.endswith("; sign one of: scc; or give for this transfer: "
                                      "explicit_consent, vital_interests")


def test_a_conditional_adequacy_reads_the_data_classes_of_the_agreement() -> None:
    phi_only = Agreement("dpf_eu", data_classes=["phi"], reference="D-1")
    assert _judge("US", "phi", phi_only) == (RegimeVerdict(
        regime="alpha", allowed=True, basis="dpf_eu", agreement="dpf_eu[D-1]",
        reason="Alpha Act: US is adequate for recipients under dpf_eu; rests on dpf_eu[D-1]",
        **_entry("alpha adequacy US")), _unscoped("dpf_eu[D-1]"))
    assert _judge("US", "personal", phi_only) == (_blocked(
        "US", "personal", ("dpf_eu", "scc", "bcr"),
        misses=("dpf_eu[D-1] covers phi data, not personal",)), ())


# --- _MechanismBook.find: a mechanism that needs another beside it ------------------------

NEEDS_SCC = "needs one of scc beside it (the region map requires a fallback)"


def test_the_mechanism_needed_beside_another_must_cover_the_transfer_too() -> None:
    phi_only = Agreement("scc", data_classes=["phi"], reference="S-1")
    both = "dpf_eu[unscoped] + scc[S-1]"
    assert _judge("US", "phi", "dpf_eu", phi_only, rules=ALONG) == (RegimeVerdict(
        regime="alpha", allowed=True, basis="dpf_eu", agreement=both,
        reason=f"Alpha Act: US is adequate for recipients under dpf_eu; rests on {both}",
        **_entry("alpha adequacy US")), _unscoped(both))
    assert _judge("US", "personal", "dpf_eu", phi_only, rules=ALONG) == (_blocked(
        "US", "personal", ("dpf_eu", "scc", "bcr"), misses=(
            f"dpf_eu[unscoped] {NEEDS_SCC}", "scc[S-1] covers phi data, not personal")), ())
    elsewhere = Agreement("scc", destinations=["CA"], reference="S-2")
    assert _judge("US", "phi", "dpf_eu", elsewhere, rules=ALONG) == (_blocked(
        "US", "phi", ("dpf_eu", "scc"), misses=(
            f"dpf_eu[unscoped] {NEEDS_SCC}", "scc[S-2] covers CA, not US")), ())


def test_a_pairing_is_unscoped_when_either_of_its_agreements_is() -> None:
    dpf = Agreement("dpf_eu", destinations=["US"], reference="D-1")
    scc = Agreement("scc", destinations=["US"], reference="S-2")
    cases: list[tuple[Agreement | str, Agreement | str, str, bool]] = [
        (dpf, "scc", "dpf_eu[D-1] + scc[unscoped]", True),
        ("dpf_eu", scc, "dpf_eu[unscoped] + scc[S-2]", True),
        (dpf, scc, "dpf_eu[D-1] + scc[S-2]", False)]
    for first, second, both, warned in cases:
        assert _judge("US", "phi", first, second, rules=ALONG) == (RegimeVerdict(
            regime="alpha", allowed=True, basis="dpf_eu", agreement=both,
            reason=f"Alpha Act: US is adequate for recipients under dpf_eu; rests on {both}",
            **_entry("alpha adequacy US")), _unscoped(both) if warned else ())


def test_a_mechanism_can_need_one_of_several_beside_it() -> None:
    either = RULES.with_alongside({"dpf_eu": ("scc", "bcr")})
    assert _judge("US", "phi", "dpf_eu", rules=either) == (_blocked(
        "US", "phi", ("dpf_eu", "scc"), misses=(
            "dpf_eu[unscoped] needs one of scc, bcr beside it (the region map requires a "
            "fallback)",)), ())
    both = "dpf_eu[unscoped] + bcr[unscoped]"
    assert _judge("US", "phi", "dpf_eu", "bcr", rules=either) == (RegimeVerdict(
        regime="alpha", allowed=True, basis="dpf_eu", agreement=both,
        reason=f"Alpha Act: US is adequate for recipients under dpf_eu; rests on {both}",
        **_entry("alpha adequacy US")), _unscoped(both))


def test_every_agreement_of_a_paired_mechanism_is_tried_and_each_miss_named() -> None:
    first = Agreement("dpf_eu", destinations=["US"], reference="D-1")
    second = Agreement("dpf_eu", destinations=["BR"], reference="D-2")
    assert _judge("US", "phi", first, second, rules=ALONG) == (_blocked(
        "US", "phi", ("dpf_eu", "scc"), misses=(
            f"dpf_eu[D-1] {NEEDS_SCC}", "dpf_eu[D-2] covers BR, not US")), ())


# --- Regime.judge: every holder ---------------------------------------------------------------


def test_a_holder_rule_needs_the_mechanism_at_home_and_ignores_the_zone() -> None:
    assert _judge("US", "phi", regime="hotel", governed="US") == (RegimeVerdict(
        regime="hotel", allowed=False, basis=None, unblock_with=("baa",),
        reason="Hotel Act requires an accepted agreement with every holder of phi data of "
        "US, in US too; sign one of: baa", **REGIME_FACT["hotel"]), ())
    assert _judge("CH", "phi", regime="hotel", governed="US") == (
        _blocked("CH", "phi", ("baa",), regime="hotel"), ())
    assert _judge("US", "phi", "baa", regime="hotel", governed="US") == (
        _held_under("US", "baa", "baa[unscoped]", regime="hotel"), _unscoped("baa[unscoped]"))


# --- TransferRules.decide: the paths kept from the first engine -----------------------------


def _decide(tenant: str, source: str, destination: str, data_class: str = "phi",
            *agreements: Agreement | str, rules: TransferRules = RULES, on: date = ON,
            **kw: Any) -> Decision:
    return rules.decide(tenant_country=tenant, source=source, destination=destination,
                        data_class=data_class, agreements=_agreements(agreements), on=on,
                        **kw)


def _verdict(regime: str, governed: str, source: str, destination: str, data_class: str,
             *agreements: Agreement | str, **ctx: Any) -> RegimeVerdict:
    context = TransferContext(agreements=_agreements(agreements), on=ON, **ctx)
    return RULES.regimes[regime].judge(data_class, governed, source, destination,
                                       context)[0]


ANONYMISED = ("anonymised data is not personal data: no transfer restriction under the "
              "data-protection regimes (still audited)")


def test_data_that_stays_put_is_no_transfer() -> None:
    assert _decide("GB", "DE", "DE") == Decision(
        allowed=True, tenant_country="GB", data_class="phi", source="DE", destination="DE",
        is_transfer=False, mechanism=None, regimes=(), decided_on=ON,
        reasons=("data already lives in DE: no transfer",))


def test_an_unrestricted_class_moves_as_a_transfer_without_a_mechanism_flag() -> None:
    # Reworded: "no transfer restriction under the data-protection regimes", since a sector
    # overlay (below) may still block an unrestricted class.
    assert _decide("GB", "DE", "US", "anonymised") == Decision(
        allowed=True, tenant_country="GB", data_class="anonymised", source="DE",
        destination="US", is_transfer=True, mechanism="anonymised", regimes=(),
        decided_on=ON, reasons=(ANONYMISED,))


def test_the_tenants_regime_and_the_sources_regime_must_both_allow() -> None:
    """A GB tenant's data held in DE: Gamma (the tenant's) blocks what Alpha (the data's)
    would allow under scc: the most stringent applies. A refusal names no agreement and
    carries no warning (the unscoped warning is for decisions that rest on one)."""
    gamma = _blocked("US", "phi", (), regime="gamma", current="DE")
    alpha = _rests_on("US", "scc", "scc[unscoped]")
    assert _verdict("gamma", "GB", "DE", "US", "phi", "scc") == gamma
    assert _decide("GB", "DE", "US", "phi", "scc") == Decision(
        allowed=False, tenant_country="GB", data_class="phi", source="DE", destination="US",
        is_transfer=True, mechanism=None, regimes=("gamma", "alpha"),
        verdicts=(gamma, alpha), reasons=(gamma.reason, alpha.reason), decided_on=ON)


def test_each_regimes_basis_is_named_once_in_the_mechanism() -> None:
    beta = RegimeVerdict(
        regime="beta", allowed=True, basis="not_restricted",
        reason="Beta Act: US is not on the notified list of restricted destinations",
        **REGIME_FACT["beta"])
    alpha = _rests_on("US", "scc", "scc[unscoped]")
    assert _decide("IN", "DE", "US", "phi", "scc") == Decision(
        allowed=True, tenant_country="IN", data_class="phi", source="DE", destination="US",
        is_transfer=True, mechanism="not_restricted+scc", regimes=("beta", "alpha"),
        verdicts=(beta, alpha), reasons=(beta.reason, alpha.reason), decided_on=ON,
        agreements=("scc[unscoped]",), warnings=_unscoped("scc[unscoped]"))
    delta = RegimeVerdict(regime="delta", allowed=True, basis="adequacy",
                          reason="Delta Act: CH has an adequacy decision",
                          **_entry("delta adequacy CH"))
    alpha = RegimeVerdict(regime="alpha", allowed=True, basis="adequacy",
                          reason="Alpha Act: CH has an adequacy decision",
                          **_entry("alpha adequacy CH"))
    assert _decide("NO", "DE", "CH") == Decision(
        allowed=True, tenant_country="NO", data_class="phi", source="DE", destination="CH",
        is_transfer=True, mechanism="adequacy", regimes=("delta", "alpha"),
        verdicts=(delta, alpha), reasons=(delta.reason, alpha.reason), decided_on=ON)


@pytest.mark.parametrize("tenant", ["DE", "FR"])
def test_one_regime_governing_tenant_and_source_judges_once(tenant: str) -> None:
    alpha = RegimeVerdict(
        regime="alpha", allowed=True, basis="dpf_eu", agreement="dpf_eu[unscoped]",
        reason="Alpha Act: US is adequate for recipients under dpf_eu; rests on "
        "dpf_eu[unscoped]", **_entry("alpha adequacy US", "2027-01-31"))
    assert _decide(tenant, "DE", "US", "phi", "dpf_eu") == Decision(
        allowed=True, tenant_country=tenant, data_class="phi", source="DE", destination="US",
        is_transfer=True, mechanism="dpf_eu", regimes=("alpha",), verdicts=(alpha,),
        reasons=(alpha.reason,), decided_on=ON, agreements=("dpf_eu[unscoped]",),
        warnings=_unscoped("dpf_eu[unscoped]"))


def test_a_country_no_regime_governs_is_blocked_fail_closed() -> None:
    alpha = RegimeVerdict(regime="alpha", allowed=True, basis="adequacy",
                          reason="Alpha Act: CH has an adequacy decision",
                          **_entry("alpha adequacy CH"))
    missing = (f"no transfer regime governs BR in {FILE}: blocked until the rules define one "
               "(fail closed)")
    assert _decide("BR", "DE", "CH") == Decision(
        allowed=False, tenant_country="BR", data_class="phi", source="DE", destination="CH",
        is_transfer=True, mechanism=None, regimes=("alpha",), verdicts=(alpha,),
        reasons=(alpha.reason, missing), decided_on=ON)
    assert _decide("BR", "BR", "CH") == Decision(
        allowed=False, tenant_country="BR", data_class="phi", source="BR", destination="CH",
        is_transfer=True, mechanism=None, regimes=(), reasons=(missing,), decided_on=ON)


# --- TransferRules.decide: the new paths --------------------------------------------------


def test_decide_takes_the_agent_exemption_unless_for_the_vendors_own_use() -> None:
    agent = RegimeVerdict(
        regime="kilo", allowed=True, basis="agent",
        reason="Kilo Act: holding the data in US on the tenant's behalf, not for the "
        "vendor's own purposes, is not a disclosure", **_entry("kilo s11"))
    assert _decide("NZ", "NZ", "US") == Decision(
        allowed=True, tenant_country="NZ", data_class="phi", source="NZ", destination="US",
        is_transfer=True, mechanism="agent", regimes=("kilo",), verdicts=(agent,),
        reasons=(agent.reason,), decided_on=ON)
    own = _blocked("US", "phi", ("scc",), regime="kilo")
    assert _decide("NZ", "NZ", "US", own_use=True) == Decision(
        allowed=False, tenant_country="NZ", data_class="phi", source="NZ", destination="US",
        is_transfer=True, mechanism=None, regimes=("kilo",), verdicts=(own,),
        reasons=(own.reason,), decided_on=ON)


DOJ_OK_US = RegimeVerdict(regime="doj", allowed=True, basis="not_of_concern",
                          reason="Doj Rule: US is not a country of concern",
                          **_entry("doj rule", "2027-04-08"))


def test_every_holder_of_home_country_data_needs_the_mechanism_even_at_home() -> None:
    """Data that stays in the US is still judged by a holder rule (no 'no transfer'
    short-cut); the DOJ overlay of US tenants has its (allowing) say first."""
    hotel = _verdict("hotel", "US", "US", "US", "phi")
    assert _decide("US", "US", "US") == Decision(
        allowed=False, tenant_country="US", data_class="phi", source="US", destination="US",
        is_transfer=False, mechanism=None, regimes=("hotel",), verdicts=(DOJ_OK_US, hotel),
        reasons=(hotel.reason,), decided_on=ON)
    held = _held_under("US", "baa", "baa[unscoped]", regime="hotel")
    assert _decide("US", "US", "US", "phi", "baa") == Decision(
        allowed=True, tenant_country="US", data_class="phi", source="US", destination="US",
        is_transfer=False, mechanism="baa", regimes=("hotel",), verdicts=(DOJ_OK_US, held),
        reasons=(held.reason,), decided_on=ON, agreements=("baa[unscoped]",),
        warnings=_unscoped("baa[unscoped]"))


def test_an_origin_only_regime_does_not_govern_data_merely_stored_in_its_country() -> None:
    """A DE tenant's phi held in the US: Hotel (applies_to: origin) is skipped."""
    alpha = RegimeVerdict(regime="alpha", allowed=True, basis="zone",
                          reason="Alpha Act imposes no restriction on FR (inside its zone)",
                          **REGIME_FACT["alpha"])
    assert _decide("DE", "US", "FR") == Decision(
        allowed=True, tenant_country="DE", data_class="phi", source="US", destination="FR",
        is_transfer=True, mechanism="zone", regimes=("alpha",), verdicts=(alpha,),
        reasons=(alpha.reason,), decided_on=ON)


def test_decide_accepts_a_derogation_given_for_the_transfer() -> None:
    given = Derogation(reference="C-1")
    echo = _verdict("echo", "TR", "TR", "US", "personal", derogation=given)
    assert echo.agreement == "explicit_consent[C-1]"
    assert _decide("TR", "TR", "US", "personal", derogation=given) == Decision(
        allowed=True, tenant_country="TR", data_class="personal", source="TR",
        destination="US", is_transfer=True, mechanism="explicit_consent", regimes=("echo",),
        verdicts=(echo,), reasons=(echo.reason,), decided_on=ON,
        agreements=("explicit_consent[C-1]",))


def test_decide_reads_the_day_it_is_taken_for() -> None:
    ends = Agreement("scc", destinations=["US"], expires_on=date(2026, 11, 15),
                     reference="REF-4")
    alpha = _rests_on("US", "scc", "scc[REF-4]")
    assert _decide("DE", "DE", "US", "phi", ends, on=date(2026, 11, 15)) == Decision(
        allowed=True, tenant_country="DE", data_class="phi", source="DE", destination="US",
        is_transfer=True, mechanism="scc", regimes=("alpha",), verdicts=(alpha,),
        reasons=(alpha.reason,), decided_on=date(2026, 11, 15), agreements=("scc[REF-4]",))
    late = _blocked("US", "phi", ("dpf_eu", "scc"), misses=(
        "scc[REF-4] expired on 2026-11-15 (decided on 2026-11-16)",))
    assert _decide("DE", "DE", "US", "phi", ends) == Decision(
        allowed=False, tenant_country="DE", data_class="phi", source="DE", destination="US",
        is_transfer=True, mechanism=None, regimes=("alpha",), verdicts=(late,),
        reasons=(late.reason,), decided_on=ON)


def test_decide_names_both_agreements_a_required_pairing_rests_on() -> None:
    alone = _blocked("US", "phi", ("dpf_eu", "scc"), misses=(
        "dpf_eu[unscoped] needs one of scc beside it (the region map requires a "
        "fallback)",))
    assert _decide("DE", "DE", "US", "phi", "dpf_eu", rules=ALONG) == Decision(
        allowed=False, tenant_country="DE", data_class="phi", source="DE", destination="US",
        is_transfer=True, mechanism=None, regimes=("alpha",), verdicts=(alone,),
        reasons=(alone.reason,), decided_on=ON)
    both = "dpf_eu[unscoped] + scc[unscoped]"
    paired = RegimeVerdict(
        regime="alpha", allowed=True, basis="dpf_eu", agreement=both,
        reason=f"Alpha Act: US is adequate for recipients under dpf_eu; rests on {both}",
        **_entry("alpha adequacy US", "2027-01-31"))
    assert _decide("DE", "DE", "US", "phi", "dpf_eu", "scc", rules=ALONG) == Decision(
        allowed=True, tenant_country="DE", data_class="phi", source="DE", destination="US",
        is_transfer=True, mechanism="dpf_eu", regimes=("alpha",), verdicts=(paired,),
        reasons=(paired.reason,), decided_on=ON, agreements=(both,),
        warnings=_unscoped(both))


def test_decide_warns_only_about_an_unscoped_agreement_it_rests_on() -> None:
    cases: list[tuple[Agreement | str, str, tuple[str, ...]]] = [
        ("scc", "scc[unscoped]", _unscoped("scc[unscoped]")),
        (Agreement("scc", reference="R-7"), "scc[R-7]", _unscoped("scc[R-7]")),
        (Agreement("scc", destinations=["US"], reference="R-8"), "scc[R-8]", ()),
        (Agreement("scc", counterparty="Acme"), "scc[no reference]", ())]
    for held, label, warned in cases:
        alpha = _rests_on("US", "scc", label)
        assert _decide("DE", "DE", "US", "phi", held, counterparty="Acme") == Decision(
            allowed=True, tenant_country="DE", data_class="phi", source="DE",
            destination="US", is_transfer=True, mechanism="scc", regimes=("alpha",),
            verdicts=(alpha,), reasons=(alpha.reason,), decided_on=ON, agreements=(label,),
            warnings=warned)


# --- TransferRules.decide: sector overlays --------------------------------------------------

HEALTH_IT = _entry("health_it rule")
HEALTH_IT_BLOCKS_US = RegimeVerdict(
    regime="health_it", allowed=False, basis=None,
    reason="Health IT Rule: phi data of Italian clinics may be kept only in ZONE, AT or a "
    "country adequate under alpha, not in US; contracts (SCCs) do not suffice; only a "
    "recipient certified under dpf_eu (adequacy) can allow it. If the tenant is outside this "
    "rule, declare it out of scope: out_of_scope={'health_it': '<reason>'}",
    unblock_with=("dpf_eu",), **HEALTH_IT)


def test_an_overlay_allows_its_listed_destinations_and_adds_no_reason() -> None:
    listed = RegimeVerdict(regime="health_it", allowed=True, basis="health_it",
                           reason="Health IT Rule: FR is a permitted location (hosted by a "
                           "certified host)", **HEALTH_IT)
    alpha = _verdict("alpha", "IT", "DE", "FR", "phi")
    assert _decide("IT", "DE", "FR") == Decision(
        allowed=True, tenant_country="IT", data_class="phi", source="DE", destination="FR",
        is_transfer=True, mechanism="zone", regimes=("alpha",), verdicts=(listed, alpha),
        reasons=(alpha.reason,), decided_on=ON)


def test_an_overlay_allows_what_its_regime_deems_adequate() -> None:
    overlay = RegimeVerdict(regime="health_it", allowed=True, basis="health_it",
                            reason="Health IT Rule: CH has an adequacy decision (alpha "
                            "adequacy CH)", **HEALTH_IT)
    alpha = _verdict("alpha", "IT", "DE", "CH", "phi")
    assert _decide("IT", "DE", "CH") == Decision(
        allowed=True, tenant_country="IT", data_class="phi", source="DE", destination="CH",
        is_transfer=True, mechanism="adequacy", regimes=("alpha",),
        verdicts=(overlay, alpha), reasons=(alpha.reason,), decided_on=ON)


def test_an_overlays_conditional_adequacy_needs_its_mechanism_and_sccs_do_not_do() -> None:
    overlay = RegimeVerdict(regime="health_it", allowed=True, basis="health_it",
                            reason="Health IT Rule: US has an adequacy decision (alpha "
                            "adequacy US)", **HEALTH_IT)
    alpha = _verdict("alpha", "IT", "DE", "US", "phi", "dpf_eu")
    assert _decide("IT", "DE", "US", "phi", "dpf_eu") == Decision(
        allowed=True, tenant_country="IT", data_class="phi", source="DE", destination="US",
        is_transfer=True, mechanism="dpf_eu", regimes=("alpha",), verdicts=(overlay, alpha),
        reasons=(alpha.reason,), decided_on=ON, agreements=("dpf_eu[unscoped]",),
        warnings=_unscoped("dpf_eu[unscoped]"))
    alpha = _rests_on("US", "scc", "scc[unscoped]")
    assert _decide("IT", "DE", "US", "phi", "scc") == Decision(
        allowed=False, tenant_country="IT", data_class="phi", source="DE", destination="US",
        is_transfer=True, mechanism=None, regimes=("health_it", "alpha"),
        verdicts=(HEALTH_IT_BLOCKS_US, alpha),
        reasons=(HEALTH_IT_BLOCKS_US.reason, alpha.reason), decided_on=ON)


def test_an_overlay_declared_out_of_scope_is_skipped_with_the_reason_given() -> None:
    declared = (("health_it", "public hospital, outside the rule"),)
    alpha = _rests_on("US", "scc", "scc[unscoped]")
    assert _decide("IT", "DE", "US", "phi", "scc", out_of_scope=declared) == Decision(
        allowed=True, tenant_country="IT", data_class="phi", source="DE", destination="US",
        is_transfer=True, mechanism="scc", regimes=("alpha",), verdicts=(alpha,),
        reasons=("Health IT Rule not applied: declared out of scope (public hospital, "
                 "outside the rule)", alpha.reason), decided_on=ON,
        agreements=("scc[unscoped]",), warnings=_unscoped("scc[unscoped]"),
        out_of_scope=declared)
    # For a class the overlay does not cover, the declaration has nothing to say.
    personal = _decide("IT", "DE", "US", "personal", "scc", out_of_scope=declared)
    assert personal.reasons == (alpha.reason,) and personal.out_of_scope == declared


DOJ_BLOCKS_CN = RegimeVerdict(
    regime="doj", allowed=False, basis=None,
    reason="Doj Rule: CN is a country of concern; anonymised data of US persons may not go "
    "there (de-identified data included); no mechanism can allow it. If the data is outside "
    "the rule (e.g. below the bulk thresholds), declare the tenant out of scope: "
    "out_of_scope={'doj': '<reason>'}", **_entry("doj rule", "2027-04-08"))


def test_a_blocked_destination_applies_even_to_an_unrestricted_class() -> None:
    assert _decide("US", "US", "CN", "anonymised") == Decision(
        allowed=False, tenant_country="US", data_class="anonymised", source="US",
        destination="CN", is_transfer=True, mechanism=None, regimes=("doj",),
        verdicts=(DOJ_BLOCKS_CN,), reasons=(DOJ_BLOCKS_CN.reason, ANONYMISED), decided_on=ON)
    fine = RegimeVerdict(regime="doj", allowed=True, basis="not_of_concern",
                         reason="Doj Rule: FR is not a country of concern",
                         **_entry("doj rule", "2027-04-08"))
    assert _decide("US", "US", "FR", "anonymised") == Decision(
        allowed=True, tenant_country="US", data_class="anonymised", source="US",
        destination="FR", is_transfer=True, mechanism="anonymised", regimes=(),
        verdicts=(fine,), reasons=(ANONYMISED,), decided_on=ON)


def test_a_blocked_destination_out_of_scope_lets_unrestricted_data_go() -> None:
    declared = (("doj", "below the bulk thresholds"),)
    assert _decide("US", "US", "CN", "anonymised", out_of_scope=declared) == Decision(
        allowed=True, tenant_country="US", data_class="anonymised", source="US",
        destination="CN", is_transfer=True, mechanism="anonymised", regimes=(),
        reasons=("Doj Rule not applied: declared out of scope (below the bulk thresholds)",
                 ANONYMISED), decided_on=ON, out_of_scope=declared)


def test_data_already_in_a_blocked_destination_is_still_refused() -> None:
    """No transfer, but the overlay's refusal stands: only blocking verdicts are kept."""
    assert _decide("US", "CN", "CN", "anonymised") == Decision(
        allowed=False, tenant_country="US", data_class="anonymised", source="CN",
        destination="CN", is_transfer=False, mechanism=None, regimes=("doj",),
        verdicts=(DOJ_BLOCKS_CN,), reasons=(DOJ_BLOCKS_CN.reason,
                                            "data already lives in CN: no transfer"),
        decided_on=ON)


# --- TransferRules.decide: bare strings; two overlays for one tenant ---------------------


def test_decide_reads_bare_strings_as_unscoped_agreements() -> None:
    alpha = _rests_on("US", "scc", "scc[unscoped]")
    assert RULES.decide(tenant_country="DE", source="DE", destination="US", data_class="phi",
                        agreements=frozenset({"scc"}), on=ON) == Decision(
        allowed=True, tenant_country="DE", data_class="phi", source="DE", destination="US",
        is_transfer=True, mechanism="scc", regimes=("alpha",), verdicts=(alpha,),
        reasons=(alpha.reason,), decided_on=ON, agreements=("scc[unscoped]",),
        warnings=_unscoped("scc[unscoped]"))


LIMA_HEALTH = _entry("lima_health rule")
LIMA_EXPORT = _entry("lima_export rule")
LIMA_CONSENTS = ("explicit_consent", "vital_interests")


def _lima_health_blocks(destination: str, only: tuple[str, ...] = ()) -> RegimeVerdict:
    certified = (f"; only a recipient certified under {' or '.join(only)} (adequacy) can "
                 "allow it" if only else "")
    return RegimeVerdict(
        regime="lima_health", allowed=False, basis=None, unblock_with=only,
        reason=f"Lima Health Rule: phi data of Lima clinics may be kept only in SG, MY or a "
        f"country adequate under lima, not in {destination}; contracts (SCCs) do not "
        f"suffice{certified}. If the tenant is outside this rule, declare it out of scope: "
        "out_of_scope={'lima_health': '<reason>'}", **LIMA_HEALTH)


def _lima_export_allows(destination: str) -> RegimeVerdict:
    return RegimeVerdict(regime="lima_export", allowed=True, basis="not_of_concern",
                         reason=f"Lima Export Rule: {destination} is not a country of concern",
                         **LIMA_EXPORT)


def test_an_overlay_without_conditions_names_none() -> None:
    listed = RegimeVerdict(regime="lima_health", allowed=True, basis="lima_health",
                           reason="Lima Health Rule: MY is a permitted location",
                           **LIMA_HEALTH)
    lima = RegimeVerdict(regime="lima", allowed=True, basis="free_zone",
                         reason="Lima Act imposes no restriction on MY (inside its zone)",
                         **REGIME_FACT["lima"])
    assert _decide("SG", "SG", "MY") == Decision(
        allowed=True, tenant_country="SG", data_class="phi", source="SG", destination="MY",
        is_transfer=True, mechanism="free_zone", regimes=("lima",),
        verdicts=(listed, _lima_export_allows("MY"), lima), reasons=(lima.reason,),
        decided_on=ON)


def test_an_overlay_with_no_adequacy_route_names_no_certification() -> None:
    health = _lima_health_blocks("BR")
    assert health.reason.endswith("contracts (SCCs) do not suffice. If the tenant is outside "
                                  "this rule, declare it out of scope: "
                                  "out_of_scope={'lima_health': '<reason>'}")
    lima = _rests_on("BR", "scc", "scc[unscoped]", regime="lima")
    assert _decide("SG", "SG", "BR", "phi", "scc") == Decision(
        allowed=False, tenant_country="SG", data_class="phi", source="SG", destination="BR",
        is_transfer=True, mechanism=None, regimes=("lima_health", "lima"),
        verdicts=(health, _lima_export_allows("BR"), lima),
        reasons=(health.reason, lima.reason), decided_on=ON)


def test_an_overlay_names_each_certification_that_could_allow_it() -> None:
    health = _lima_health_blocks("US", ("dpf_eu", "bcr"))
    assert "only a recipient certified under dpf_eu or bcr (adequacy)" in health.reason
    lima = _blocked("US", "phi", ("dpf_eu", "bcr", *LIMA_CONSENTS, "scc"), regime="lima",
                    per_transfer=LIMA_CONSENTS)
    assert _decide("SG", "SG", "US") == Decision(
        allowed=False, tenant_country="SG", data_class="phi", source="SG", destination="US",
        is_transfer=True, mechanism=None, regimes=("lima_health", "lima"),
        verdicts=(health, _lima_export_allows("US"), lima),
        reasons=(health.reason, lima.reason), decided_on=ON)


def test_an_overlay_reads_the_scope_of_the_certification_its_adequacy_needs() -> None:
    """The overlay asks for an agreement covering this destination and data class."""
    certified = Agreement("dpf_eu", destinations=["US"], data_classes=["phi"], reference="D-1")
    health = RegimeVerdict(regime="lima_health", allowed=True, basis="lima_health",
                           reason="Lima Health Rule: US has an adequacy decision (lima "
                           "adequacy US dpf)", **LIMA_HEALTH)
    lima = RegimeVerdict(
        regime="lima", allowed=True, basis="dpf_eu", agreement="dpf_eu[D-1]",
        reason="Lima Act: US is adequate for recipients under dpf_eu; rests on dpf_eu[D-1]",
        **_entry("lima adequacy US dpf"))
    assert _decide("SG", "SG", "US", "phi", certified) == Decision(
        allowed=True, tenant_country="SG", data_class="phi", source="SG", destination="US",
        is_transfer=True, mechanism="dpf_eu", regimes=("lima",),
        verdicts=(health, _lima_export_allows("US"), lima), reasons=(lima.reason,),
        decided_on=ON, agreements=("dpf_eu[D-1]",))


def _adequate(regime: str, destination: str, source: str) -> RegimeVerdict:
    return RegimeVerdict(regime=regime, allowed=True, basis="adequacy",
                         reason=f"{NAME[regime]}: {destination} has an adequacy decision",
                         **_entry(source))


def test_an_overlay_relies_only_on_adequacy_that_covers_its_tenants_data() -> None:
    """KR: Lima's entries for MY data only and unverified are passed over, the third
    counts. AU: adequate for data of MY only, so for an MY tenant, not an SG one."""
    health_kr = RegimeVerdict(regime="lima_health", allowed=True, basis="lima_health",
                              reason="Lima Health Rule: KR has an adequacy decision (lima "
                              "adequacy KR)", **LIMA_HEALTH)
    lima_kr = _adequate("lima", "KR", "lima adequacy KR")
    assert _decide("SG", "SG", "KR") == Decision(
        allowed=True, tenant_country="SG", data_class="phi", source="SG", destination="KR",
        is_transfer=True, mechanism="adequacy", regimes=("lima",),
        verdicts=(health_kr, _lima_export_allows("KR"), lima_kr), reasons=(lima_kr.reason,),
        decided_on=ON)
    health_au = RegimeVerdict(regime="lima_health", allowed=True, basis="lima_health",
                              reason="Lima Health Rule: AU has an adequacy decision (lima "
                              "adequacy AU for MY)", **LIMA_HEALTH)
    lima_au = _adequate("lima", "AU", "lima adequacy AU for MY")
    assert _decide("MY", "MY", "AU") == Decision(
        allowed=True, tenant_country="MY", data_class="phi", source="MY", destination="AU",
        is_transfer=True, mechanism="adequacy", regimes=("lima",),
        verdicts=(health_au, lima_au), reasons=(lima_au.reason,), decided_on=ON)
    health = _lima_health_blocks("AU")
    lima = _rests_on("AU", "scc", "scc[unscoped]", regime="lima")
    assert _decide("SG", "SG", "AU", "phi", "scc") == Decision(
        allowed=False, tenant_country="SG", data_class="phi", source="SG", destination="AU",
        is_transfer=True, mechanism=None, regimes=("lima_health", "lima"),
        verdicts=(health, _lima_export_allows("AU"), lima),
        reasons=(health.reason, lima.reason), decided_on=ON)
    # An unverified entry is not relied on by the overlay either (alpha lists JP so).
    blocked = _decide("IT", "DE", "JP", "phi", "scc")
    assert (blocked.allowed, blocked.regimes) == (False, ("health_it", "alpha"))
    assert blocked.verdicts[0] == RegimeVerdict(
        regime="health_it", allowed=False, basis=None,
        reason="Health IT Rule: phi data of Italian clinics may be kept only in ZONE, AT or "
        "a country adequate under alpha, not in JP; contracts (SCCs) do not suffice. If the "
        "tenant is outside this rule, declare it out of scope: "
        "out_of_scope={'health_it': '<reason>'}", **HEALTH_IT)


def test_declaring_one_overlay_out_of_scope_leaves_the_others_applied() -> None:
    declared = (("lima_health", "a public registry"),)
    export = RegimeVerdict(
        regime="lima_export", allowed=False, basis=None,
        reason="Lima Export Rule: CN is a country of concern; phi data of Lima persons may "
        "not go there (de-identified data included); no mechanism can allow it. If the data "
        "is outside the rule (e.g. below the bulk thresholds), declare the tenant out of "
        "scope: out_of_scope={'lima_export': '<reason>'}", **LIMA_EXPORT)
    lima = _blocked("CN", "phi", (*LIMA_CONSENTS, "scc"), regime="lima",
                    per_transfer=LIMA_CONSENTS)
    assert _decide("SG", "SG", "CN", out_of_scope=declared) == Decision(
        allowed=False, tenant_country="SG", data_class="phi", source="SG", destination="CN",
        is_transfer=True, mechanism=None, regimes=("lima_export", "lima"),
        verdicts=(export, lima),
        reasons=("Lima Health Rule not applied: declared out of scope (a public registry)",
                 export.reason, lima.reason), decided_on=ON, out_of_scope=declared)


# --- TransferRules.facts_past_review ------------------------------------------------------


def _late(what: str, review_by: str) -> str:
    return (f"{what} was due for review on {review_by}: check it against its source and "
            f"update as_of/review_by in {FILE}")


def test_facts_past_review_lists_each_late_fact_in_document_order() -> None:
    assert RULES.facts_past_review(date(2027, 1, 31)) == []
    assert RULES.facts_past_review(date(2027, 2, 1)) == [
        _late("regime alpha adequacy entry 1 (US)", "2027-01-31"),
        _late("mechanism dpf_eu", "2027-01-31")]
    assert RULES.facts_past_review(date(2027, 4, 9)) == [
        _late("regime alpha adequacy entry 1 (US)", "2027-01-31"),
        _late("regime beta", "2027-03-01"),
        _late("mechanism dpf_eu", "2027-01-31"),
        _late("overlay doj", "2027-04-08")]
    everything = RULES.facts_past_review(date(2027, 6, 2))
    assert everything[:3] == [_late("the rules file", LATE), _late("regime alpha", LATE),
                              _late("regime alpha adequacy entry 0 (CH)", "2027-05-06")]
    # The file, 8 regimes (and kilo's agent exemption), 12 adequacy entries (alpha 5,
    # delta 1, lima 6), 7 mechanisms, 4 overlays.
    assert len(everything) == 1 + 8 + 1 + 12 + 7 + 4
    assert _late("regime kilo agent exemption", "2027-05-05") in everything
