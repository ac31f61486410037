"""``Agreement.not_covering`` and its notification check (promise MV-8), called directly:
why an agreement does not cover a transfer, word for word, since that is what a decision
names as the miss, and when a notifiable contract (the KVKK standard contract, due to the
Turkish Board within 5 business days of signature) counts.
"""

from __future__ import annotations

from datetime import date

import residency_sdk as rs

ON = date(2026, 11, 16)  # a Monday
SIGNED = date(2026, 11, 2)  # a Monday: five business days run to Monday 9 November
NOT_NOTIFIED = ("kvkk[{ref}] was not notified by 2026-11-09 (5 business days after "
                "signature on 2026-11-02); {fix}")
RECORD_IT = "record notified_on once notified"


def _gap(agreement: rs.Agreement, *, on: date = ON, destination: str = "US",
         data_class: str = "phi", counterparty: str | None = None,
         notify: int | None = 5) -> str | None:
    return agreement.not_covering(destination=destination, data_class=data_class, on=on,
                                  counterparty=counterparty,
                                  notify_within_business_days=notify)


def test_an_agreement_names_every_destination_and_data_class_it_covers() -> None:
    places = rs.Agreement("scc", destinations=["CA", "BR"], reference="S-1")
    assert _gap(places, notify=None) == "scc[S-1] covers BR, CA, not US"
    assert _gap(places, destination="CA", notify=None) is None
    classes = rs.Agreement("scc", data_classes=["personal", "anonymised"], reference="S-2")
    assert _gap(classes, notify=None) == "scc[S-2] covers anonymised, personal data, not phi"
    assert _gap(classes, data_class="personal", notify=None) is None


def test_a_notifiable_contract_is_checked_once_it_states_a_scope_or_a_signature() -> None:
    """A bare mechanism string states nothing to check (it is flagged as unscoped); an
    agreement naming its destinations, or only its signature date, is checked."""
    assert _gap(rs.Agreement("kvkk")) is None
    scoped = rs.Agreement("kvkk", destinations=["US"], reference="K-1")
    assert _gap(scoped) == (
        "kvkk[K-1] has no notified_on date: it must be notified to the Board within 5 "
        "business days of signature; record notified_on (and signed_on)")
    assert _gap(scoped, notify=None) is None
    signed_only = rs.Agreement("kvkk", signed_on=SIGNED, reference="K-2")
    assert not signed_only.scoped
    assert _gap(signed_only) == NOT_NOTIFIED.format(ref="K-2", fix=RECORD_IT)
    assert _gap(signed_only, on=date(2026, 11, 9)) is None
    both = rs.Agreement("kvkk", destinations=["US"], signed_on=SIGNED, reference="K-3")
    assert _gap(both) == NOT_NOTIFIED.format(ref="K-3", fix=RECORD_IT)


def test_a_notification_recorded_without_a_signature_date_counts() -> None:
    notified = rs.Agreement("kvkk", destinations=["US"], notified_on=date(2026, 11, 5),
                            reference="K-4")
    assert _gap(notified) is None
    assert _gap(notified, on=date(2026, 11, 1)) is None


def test_a_late_notification_counts_from_its_day_on() -> None:
    late = rs.Agreement("kvkk", destinations=["US"], signed_on=SIGNED,
                        notified_on=date(2026, 11, 12), reference="K-5")
    assert _gap(late, on=date(2026, 11, 9)) is None  # inside the window
    assert _gap(late, on=date(2026, 11, 11)) == NOT_NOTIFIED.format(
        ref="K-5", fix="it counts again from its late notification on 2026-11-12")
    assert _gap(late, on=date(2026, 11, 12)) is None
    assert _gap(late, on=date(2026, 11, 13)) is None
