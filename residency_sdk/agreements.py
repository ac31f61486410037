"""Transfer agreements and derogations: what a transfer may rest on, scoped and dated.

An :class:`Agreement` is one signed mechanism (SCCs, a UK IDTA, a BAA, a KVKK standard
contract, a DPF certification, ...) with a named counterparty (the importer or
processor), the destinations and data classes it covers, the dates it runs between and a
reference to the contract or certification. A bare mechanism string (``"scc"``) is still
accepted and means an *unscoped* agreement: every destination, every counterparty, no
expiry; ``map validate`` and decisions flag such agreements.

A :class:`Derogation` is given for one transfer (explicit consent under GDPR/UK GDPR
Art. 49, FADP Art. 17, KVKK Art. 9(6)), never held by a tenant.

Both are frozen and hashable, so they key the decision cache.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any, ClassVar

from pydantic import field_validator, model_validator

from residency_sdk._values import FrozenValue
from residency_sdk.countries import normalise_country
from residency_sdk.errors import InvalidTenant

_DATA_CLASS_NAMES = ("phi", "personal", "anonymised")


def _clean_text(value: object, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidTenant(f"agreement {field} {value!r}: expected a non-empty string")
    return value.strip()


class Agreement(FrozenValue):
    """One signed transfer mechanism, scoped to a counterparty, destinations, data
    classes and dates.

    ``destinations`` / ``data_classes`` / ``counterparty`` left out mean "any" (an
    unscoped agreement, as a bare mechanism string gives). ``notified_on`` records when a
    KVKK standard contract was notified to the Turkish Board (due within 5 business days
    of ``signed_on``).
    """

    mechanism: str
    counterparty: str | None = None
    destinations: frozenset[str] | None = None
    data_classes: frozenset[str] | None = None
    signed_on: date | None = None
    expires_on: date | None = None
    reference: str | None = None
    notified_on: date | None = None

    value_name: ClassVar[str] = "agreement"

    def __init__(self, mechanism: str | None = None, /, **data: Any) -> None:
        if mechanism is not None:
            data["mechanism"] = mechanism
        super().__init__(**data)

    @field_validator("mechanism", mode="before")
    @classmethod
    def _mechanism(cls, value: object) -> str:
        if not isinstance(value, str) or not value.strip():
            raise InvalidTenant(f"invalid agreement mechanism {value!r}: expected a "
                                "mechanism flag such as 'scc'")
        return value.strip().lower()

    @field_validator("counterparty", "reference", mode="before")
    @classmethod
    def _text(cls, value: object) -> str | None:
        return _clean_text(value, "counterparty or reference")

    @field_validator("destinations", mode="before")
    @classmethod
    def _destinations(cls, value: object) -> frozenset[str] | None:
        if value is None:
            return None
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, Iterable) or not items:
            raise InvalidTenant(f"agreement destinations {value!r}: expected a non-empty list "
                                "of ISO country codes (leave it out for every destination)")
        return frozenset(normalise_country(c) for c in items)

    @field_validator("data_classes", mode="before")
    @classmethod
    def _data_classes(cls, value: object) -> frozenset[str] | None:
        if value is None:
            return None
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, Iterable) or not items:
            raise InvalidTenant(f"agreement data_classes {value!r}: expected a non-empty list "
                                "such as ['phi'] (leave it out for every class)")
        out = set()
        for item in items:
            name = item.strip().lower() if isinstance(item, str) else item
            if name not in _DATA_CLASS_NAMES:
                raise InvalidTenant(f"agreement data class {item!r}: use one of "
                                    f"{', '.join(_DATA_CLASS_NAMES)}")
            out.add(name)
        return frozenset(out)

    @model_validator(mode="after")
    def _dates_in_order(self) -> Agreement:
        if self.signed_on and self.expires_on and self.expires_on < self.signed_on:
            raise InvalidTenant(
                f"agreement {self.label}: expires_on {self.expires_on} is before signed_on "
                f"{self.signed_on}; fix the dates")
        if self.signed_on and self.notified_on and self.notified_on < self.signed_on:
            raise InvalidTenant(
                f"agreement {self.label}: notified_on {self.notified_on} is before signed_on "
                f"{self.signed_on}; fix the dates")
        return self

    def __eq__(self, other: object) -> bool:
        # A bare mechanism string *is* the agreement with nothing else stated, so code
        # written for string flags (``"baa" in tenant.agreements``) keeps working.
        if isinstance(other, str):
            return self.bare and other.strip().lower() == self.mechanism
        return super().__eq__(other)

    def __hash__(self) -> int:
        if self.bare:
            return hash(self.mechanism)
        return hash((self.mechanism, self.counterparty, self.destinations, self.data_classes,
                     self.signed_on, self.expires_on, self.reference, self.notified_on))

    def __repr_args__(self) -> Any:
        # Only what the agreement states: a bare one reads Agreement(mechanism='scc').
        return [(name, value) for name, value in super().__repr_args__() if value is not None]

    @property
    def bare(self) -> bool:
        """True for an agreement that states nothing but its mechanism (a bare string)."""
        return all(getattr(self, name) is None for name in (
            "counterparty", "destinations", "data_classes", "signed_on", "expires_on",
            "reference", "notified_on"))

    @property
    def scoped(self) -> bool:
        """True when the agreement names its destinations or counterparty (a bare
        mechanism string names neither: every destination, every recipient)."""
        return self.destinations is not None or self.counterparty is not None

    @property
    def label(self) -> str:
        """How decisions and the audit trail name the agreement."""
        ref = self.reference or ("unscoped" if not self.scoped else "no reference")
        return f"{self.mechanism}[{ref}]"

    def not_covering(self, *, destination: str, data_class: str, on: date,
                     counterparty: str | None,
                     notify_within_business_days: int | None = None) -> str | None:
        """Why this agreement does not cover the transfer, or None when it does."""
        if self.destinations is not None and destination not in self.destinations:
            return (f"{self.label} covers {', '.join(sorted(self.destinations))}, "
                    f"not {destination}")
        if self.data_classes is not None and data_class not in self.data_classes:
            return (f"{self.label} covers {', '.join(sorted(self.data_classes))} data, "
                    f"not {data_class}")
        if self.signed_on is not None and on < self.signed_on:
            return f"{self.label} is not in force until {self.signed_on} (decided on {on})"
        if self.expires_on is not None and on > self.expires_on:
            return f"{self.label} expired on {self.expires_on} (decided on {on})"
        if self.counterparty is not None and (
                counterparty is None or counterparty.casefold() != self.counterparty.casefold()):
            shown = repr(counterparty) if counterparty else "an unnamed recipient"
            return (f"{self.label} is signed with {self.counterparty!r}, but this transfer "
                    f"goes to {shown} (name the recipient as `operator` in the region map)")
        if notify_within_business_days is not None and (self.scoped or self.signed_on):
            # A bare mechanism string states nothing to check; it is flagged as unscoped.
            return self._notification_gap(on, notify_within_business_days)
        return None

    def _notification_gap(self, on: date, days: int) -> str | None:
        if self.notified_on is not None and self.signed_on is None:
            return None
        if self.signed_on is None:
            return (f"{self.label} has no notified_on date: it must be notified to the "
                    "Board within 5 business days of signature; record notified_on "
                    "(and signed_on)")
        deadline = add_business_days(self.signed_on, days)
        if on <= deadline or (self.notified_on is not None and on >= self.notified_on):
            return None  # inside the window, or (late or not) notified by now
        fix = (f"it counts again from its late notification on {self.notified_on}"
               if self.notified_on else "record notified_on once notified")
        return (f"{self.label} was not notified by {deadline} ({days} business days after "
                f"signature on {self.signed_on}); {fix}")


class Derogation(FrozenValue):
    """A derogation given for one transfer: explicit consent of the data subject
    (GDPR/UK GDPR Art. 49(1)(a), FADP Art. 17(1)(a), KVKK Art. 9(6)). ``reference``
    names the consent record."""

    ground: str = "explicit_consent"
    reference: str

    value_name: ClassVar[str] = "derogation"

    @field_validator("ground", mode="before")
    @classmethod
    def _ground(cls, value: object) -> str:
        if not isinstance(value, str) or not value.strip():
            raise InvalidTenant(f"invalid derogation ground {value!r}: e.g. 'explicit_consent'")
        return value.strip().lower()

    @field_validator("reference", mode="before")
    @classmethod
    def _reference(cls, value: object) -> str:
        text = _clean_text(value, "reference")
        if text is None:
            raise InvalidTenant("a derogation needs a reference to its consent record")
        return text

    @property
    def label(self) -> str:
        """How decisions and the audit trail name the derogation."""
        return f"{self.ground}[{self.reference}]"


def add_business_days(start: date, days: int) -> date:
    """``start`` plus ``days`` working days (Monday to Friday; public holidays are not
    counted out, so the deadline errs late by at most the holidays in between)."""
    day = start
    left = days
    while left > 0:
        day += timedelta(days=1)
        if day.weekday() < 5:
            left -= 1
    return day


def as_agreement(value: object) -> Agreement:
    """An :class:`Agreement` from an agreement, a bare mechanism string or a mapping."""
    if isinstance(value, Agreement):
        return value
    if isinstance(value, str):
        return Agreement(value)
    if isinstance(value, dict):
        return Agreement(**value)
    raise InvalidTenant(f"invalid agreement {value!r}: expected a mechanism flag such as "
                        "'scc' or rs.Agreement(mechanism=..., counterparty=..., ...)")
