"""Transfer rules: regimes, adequacy lists, mechanisms, sector overlays, and the decision
engine.

A movement of data from the country where it lives to a destination is allowed only if
every applicable rule allows it ("the most stringent applies"):

- the regime of the tenant's origin country;
- the regime of the country where the data currently lives, unless that regime governs
  only data of its own origin (HIPAA governs who holds a US covered entity's PHI, not
  data that merely sits in the US);
- each sector overlay that applies to the tenant (§ 393 SGB V for German health data,
  HDS for French health data, the US DOJ Data Security Program for US-origin data),
  unless the tenant or the map declared itself out of its scope with a stated reason.

Mechanisms are :class:`~residency_sdk.agreements.Agreement` values: scoped to a
counterparty, destinations, data classes and dates, so a decision is taken on a day and
names the agreement it rests on. Derogations (explicit consent under GDPR Art. 49, FADP
Art. 17, KVKK Art. 9(6)) count only when given for the one transfer.

The rules themselves are data (``region_maps/transfer_rules.yaml``), each fact with its
source, ``as_of`` and ``review_by`` date.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from residency_sdk._yamlio import load_yaml_file
from residency_sdk.agreements import Agreement, Derogation
from residency_sdk.countries import iso_alpha2_codes
from residency_sdk.errors import MapError, UnknownDataClass, UnknownMechanism
from residency_sdk.model import Decision, RegimeVerdict

# --- the document --------------------------------------------------------------------


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataClassSpec(_Doc):
    """A data class (``phi``, ``personal``, ``anonymised``)."""

    description: str
    restricted: bool = True


class MechanismSpec(_Doc):
    """A transfer mechanism an agreement can be of."""

    name: str
    kind: Literal["contract", "certification", "rules", "consent"] = "contract"
    notify_within_business_days: int | None = Field(
        default=None, ge=1, description="Due notification to the authority after signature "
        "(KVKK standard contract: 5 business days); unnotified past it, it does not count")
    source: str
    as_of: str
    review_by: str


class AliasSpec(_Doc):
    """A deprecated mechanism name read as another (``dpf`` -> ``dpf_eu``)."""

    to: str
    note: str


class AdequacyEntry(_Doc):
    """Destinations a regime deems adequate; ``requires`` makes it conditional (US: a
    DPF certification); ``origins`` limits it to data of those governed countries (an EU
    decision not yet incorporated into the EEA Agreement)."""

    countries: list[str] = Field(min_length=1)
    requires: str | None = None
    origins: list[str] | None = None
    unverified: bool = False
    source: str
    as_of: str
    review_by: str


class RegimeMechanism(_Doc):
    """A mechanism a regime accepts, and for which data classes it suffices.

    ``per_transfer``: a derogation, counted only when given for the one transfer
    (:class:`~residency_sdk.agreements.Derogation`), never as a standing agreement."""

    flag: str
    data_classes: list[str] = Field(min_length=1)
    per_transfer: bool = False
    source: str
    as_of: str


class AgentExemption(_Doc):
    """Holding data for the tenant, as its agent, is not a disclosure (NZ s11)."""

    source: str
    as_of: str
    review_by: str


class RegimeSpec(_Doc):
    """One data-protection regime's rules on data leaving its territory."""

    name: str
    governs: list[str] = Field(min_length=1)
    restricts: list[str]
    applies_to: Literal["origin_and_location", "origin"] = Field(
        default="origin_and_location", description="'origin': only data of tenants of the "
        "governed countries (HIPAA); otherwise also data stored in them")
    every_holder: bool = Field(
        default=False, description="Every holder needs an accepted mechanism, at home too "
        "(HIPAA: a business associate needs a BAA wherever it stores PHI)")
    agent_exemption: AgentExemption | None = None
    free_zone: list[str] = []
    free_zone_basis: str = Field(
        default="free_zone", description="Name of the basis for moves inside the zone"
    )
    adequacy: list[AdequacyEntry] = []
    mechanisms: list[RegimeMechanism] = []
    negative_list: list[str] | None = Field(
        default=None,
        description="If set, transfers are free except to these countries (India DPDP s16)",
    )
    notes: str | None = None
    source: str
    as_of: str
    review_by: str


class OverlaySpec(_Doc):
    """A sector or national rule on top of the regimes, for data of some tenants.

    Either ``allowed_destinations`` (plus, with ``adequacy_of``, the countries that
    regime deems adequate) or ``blocked_destinations``."""

    name: str
    tenant_countries: list[str] = Field(min_length=1)
    data_classes: list[str] = Field(min_length=1)
    allowed_destinations: list[str] | None = None
    adequacy_of: str | None = None
    blocked_destinations: list[str] | None = None
    conditions: str | None = Field(
        default=None, description="Further conditions the SDK does not check (shown)")
    scope: str = Field(description="Who the overlay applies to, in words")
    source: str
    as_of: str
    review_by: str


class TransferRulesDocument(_Doc):
    """The schema of a transfer rules file."""

    version: int = 2
    as_of: str
    source: str
    review_by: str
    data_classes: dict[str, DataClassSpec] = Field(min_length=1)
    mechanisms: dict[str, MechanismSpec] = Field(min_length=1)
    aliases: dict[str, AliasSpec] = {}
    regimes: dict[str, RegimeSpec] = Field(min_length=1)
    overlays: dict[str, OverlaySpec] = {}


class RuleFact(NamedTuple):
    """One dated fact of the transfer rules, as a report lists it."""

    what: str
    source: str
    as_of: str
    review_by: str
    own_review: bool = True
    """False for a fact reviewed with another (a regime's accepted mechanism, due with its
    regime): listed, but not warned about twice."""

    def past_review(self, on: date) -> bool:
        """True when the fact was due for review before ``on``."""
        return date.fromisoformat(self.review_by) < on


# --- compiled rules ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Adequacy:
    """A compiled adequacy entry."""

    countries: frozenset[str]
    requires: str | None
    origins: frozenset[str] | None
    unverified: bool
    source: str
    as_of: str
    review_by: str


@dataclass(frozen=True, slots=True)
class AcceptedMechanism:
    """A compiled regime mechanism entry."""

    flag: str
    data_classes: frozenset[str]
    per_transfer: bool
    source: str
    as_of: str


@dataclass(frozen=True, slots=True)
class TransferContext:
    """Everything a decision reads besides the countries and the data class."""

    agreements: frozenset[Agreement]
    on: date
    counterparty: str | None = None
    derogation: Derogation | None = None
    own_use: bool = False
    out_of_scope: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class _Match:
    """The outcome of looking for an agreement that covers a transfer."""

    agreement: str | None = None
    unscoped: bool = False
    misses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Regime:
    """A compiled regime: groups expanded to countries."""

    id: str
    name: str
    governs: frozenset[str]
    restricts: frozenset[str]
    applies_to_location: bool
    every_holder: bool
    agent_exemption: AgentExemption | None
    free_zone: frozenset[str]
    free_zone_basis: str
    adequacy: tuple[Adequacy, ...]
    mechanisms: tuple[AcceptedMechanism, ...]
    negative_list: frozenset[str] | None
    source: str
    as_of: str
    review_by: str
    rules: _MechanismBook = field(repr=False, compare=False)

    def flags_for(self, data_class: str) -> tuple[str, ...]:
        """Mechanism flags this regime accepts for ``data_class``, in preference order."""
        return tuple(m.flag for m in self.mechanisms if data_class in m.data_classes)

    def _verdict(self, allowed: bool, basis: str | None, reason: str, *,
                 source: str | None = None, as_of: str | None = None,
                 review_by: str | None = None, agreement: str | None = None,
                 unblock_with: tuple[str, ...] = ()) -> RegimeVerdict:
        return RegimeVerdict(
            regime=self.id, allowed=allowed, basis=basis, reason=reason,
            unblock_with=unblock_with, source=source or self.source,
            as_of=as_of or self.as_of, review_by=review_by or self.review_by,
            agreement=agreement)

    def judge(self, data_class: str, governed: str, current: str, destination: str,
              ctx: TransferContext) -> tuple[RegimeVerdict, tuple[str, ...]]:
        """This regime's verdict on moving ``data_class`` data to ``destination``, for
        data governed through country ``governed``; and the warnings it raises."""
        if data_class not in self.restricts:
            return self._verdict(True, "unrestricted",
                                 f"{self.name} does not restrict {data_class} data"), ()
        if self.agent_exemption is not None and not ctx.own_use:
            ex = self.agent_exemption
            return self._verdict(
                True, "agent", f"{self.name}: holding the data in {destination} on the "
                "tenant's behalf, not for the vendor's own purposes, is not a disclosure",
                source=ex.source, as_of=ex.as_of, review_by=ex.review_by), ()
        if not self.every_holder and (destination in self.governs
                                      or destination in self.free_zone):
            return self._verdict(
                True, self.free_zone_basis,
                f"{self.name} imposes no restriction on {destination} (inside its zone)"), ()
        if self.negative_list is not None:
            if destination in self.negative_list:
                return self._verdict(False, None, f"{self.name}: {destination} is a notified "
                                     "restricted destination"), ()
            return self._verdict(True, "not_restricted", f"{self.name}: {destination} is "
                                 "not on the notified list of restricted destinations"), ()
        conditional: list[str] = []
        misses: list[str] = []
        skipped_unverified = False
        if not self.every_holder:
            for entry in self.adequacy:
                if destination not in entry.countries:
                    continue
                if entry.origins is not None and governed not in entry.origins:
                    misses.append(f"the adequacy decision for {destination} does not apply "
                                  f"to data of {governed} ({entry.source})")
                    continue
                if entry.unverified:
                    skipped_unverified = True
                    continue
                if entry.requires is None:
                    return self._verdict(
                        True, "adequacy", f"{self.name}: {destination} has an adequacy "
                        "decision", source=entry.source, as_of=entry.as_of,
                        review_by=entry.review_by), ()
                found = self.rules.find(entry.requires, destination, data_class, ctx)
                if found.agreement is not None:
                    return self._verdict(
                        True, entry.requires, f"{self.name}: {destination} is adequate for "
                        f"recipients under {entry.requires}; rests on {found.agreement}",
                        source=entry.source, as_of=entry.as_of, review_by=entry.review_by,
                        agreement=found.agreement), self.rules.unscoped_warning(found)
                conditional.append(entry.requires)
                misses.extend(found.misses)
        for accepted in self.mechanisms:
            if data_class not in accepted.data_classes:
                continue
            if accepted.per_transfer:
                derogation = ctx.derogation
                if derogation is not None and derogation.ground == accepted.flag:
                    return self._verdict(
                        True, accepted.flag, f"{self.name}: transfer to {destination} rests "
                        f"on the derogation {derogation.label}, given for this transfer",
                        source=accepted.source, as_of=accepted.as_of,
                        agreement=derogation.label), ()
                if any(a.mechanism == accepted.flag for a in ctx.agreements):
                    misses.append(f"a standing {accepted.flag} is not accepted by "
                                  f"{self.name}: it is a derogation for occasional transfers "
                                  "(EDPB Guidelines 2/2018); give it for this transfer "
                                  "(derogation=rs.Derogation(reference=...))")
                continue
            found = self.rules.find(accepted.flag, destination, data_class, ctx)
            if found.agreement is not None:
                what = (f"holding the data in {destination}" if destination == current
                        else f"transfer to {destination}")
                return self._verdict(
                    True, accepted.flag, f"{self.name}: {what} rests on {found.agreement}",
                    source=accepted.source, as_of=accepted.as_of,
                    agreement=found.agreement), self.rules.unscoped_warning(found)
            misses.extend(found.misses)
        unblock = tuple(dict.fromkeys((*conditional, *self.flags_for(data_class))))
        note = (" (an adequacy entry for it is flagged unverified and is not relied on)"
                if skipped_unverified else "")
        per_transfer = {m.flag for m in self.mechanisms if m.per_transfer}
        signed = [f for f in unblock if f not in per_transfer]
        given = [f for f in unblock if f in per_transfer]
        fix = "; ".join(filter(None, (
            f"sign one of: {', '.join(signed)}" if signed else "",
            f"or give for this transfer: {', '.join(given)}" if given else ""))) \
            or "no mechanism can allow it"
        why = f"; {'; '.join(dict.fromkeys(misses))}" if misses else ""
        if self.every_holder and (destination in self.governs):
            what = (f"{self.name} requires an accepted agreement with every holder of "
                    f"{data_class} data of {governed}, in {destination} too")
        else:
            what = (f"{self.name} blocks {data_class} data from {current} to {destination}: "
                    f"no adequacy decision{note} and no accepted mechanism in force")
        return self._verdict(False, None, f"{what}{why}; {fix}", unblock_with=unblock), ()


@dataclass(frozen=True, slots=True)
class Overlay:
    """A compiled sector overlay."""

    id: str
    name: str
    tenant_countries: frozenset[str]
    data_classes: frozenset[str]
    allowed: frozenset[str] | None
    allowed_text: str
    adequacy_of: str | None
    blocked: frozenset[str] | None
    conditions: str | None
    scope: str
    source: str
    as_of: str
    review_by: str

    def judge(self, data_class: str, tenant_country: str, destination: str,
              ctx: TransferContext, regimes: dict[str, Regime]) -> RegimeVerdict | None:
        """The overlay's verdict, or None when it does not apply to this data."""
        if data_class not in self.data_classes:
            return None
        if self.blocked is not None:
            if destination in self.blocked:
                return self._verdict(
                    False, None, f"{self.name}: {destination} is a "
                    f"country of concern; {data_class} data of {self.scope} may not go there "
                    "(de-identified data included); no mechanism can allow it. If the data "
                    "is outside the rule (e.g. below the bulk thresholds), declare the "
                    f"tenant out of scope: out_of_scope={{'{self.id}': '<reason>'}}")
            return self._verdict(True, "not_of_concern",
                                 f"{self.name}: {destination} is not a country of concern")
        allowed = self.allowed or frozenset()
        if destination in allowed:
            return self._verdict(True, self.id, f"{self.name}: {destination} is a permitted "
                                 "location" + (f" ({self.conditions})" if self.conditions
                                               else ""))
        conditional: list[str] = []
        if self.adequacy_of is not None:
            regime = regimes[self.adequacy_of]
            for entry in regime.adequacy:
                if destination not in entry.countries or entry.unverified or (
                        entry.origins is not None and tenant_country not in entry.origins):
                    continue
                held = entry.requires is None or regime.rules.find(
                    entry.requires, destination, data_class, ctx).agreement is not None
                if held:
                    return self._verdict(True, self.id, f"{self.name}: {destination} has an "
                                         f"adequacy decision ({entry.source})")
                if entry.requires is not None:
                    conditional.append(entry.requires)
        only = (f"; only a recipient certified under {' or '.join(conditional)} (adequacy) "
                "can allow it" if conditional else "")
        return self._verdict(
            False, None, f"{self.name}: {data_class} data of "
            f"{self.scope} may be kept only in {self._where()}, not in {destination}; "
            f"contracts (SCCs) do not suffice{only}. If the tenant is outside this rule, "
            f"declare it out of scope: out_of_scope={{'{self.id}': '<reason>'}}",
            unblock_with=tuple(conditional))

    def _verdict(self, allowed: bool, basis: str | None, reason: str,
                 unblock_with: tuple[str, ...] = ()) -> RegimeVerdict:
        return RegimeVerdict(regime=self.id, allowed=allowed, basis=basis, reason=reason,
                             source=self.source, as_of=self.as_of, review_by=self.review_by,
                             unblock_with=unblock_with)

    def _where(self) -> str:
        shown = self.allowed_text
        if self.adequacy_of is not None:
            shown += f" or a country adequate under {self.adequacy_of}"
        return shown


@dataclass(frozen=True, slots=True)
class _MechanismBook:
    """What the rules know about mechanisms: names, aliases, notification duties."""

    specs: dict[str, MechanismSpec]
    aliases: dict[str, AliasSpec]
    alongside: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def canonical(self, flag: str) -> str:
        alias = self.aliases.get(flag)
        return alias.to if alias is not None else flag

    def find(self, flag: str, destination: str, data_class: str,
             ctx: TransferContext) -> _Match:
        """The first agreement of mechanism ``flag`` covering the transfer."""
        misses: list[str] = []
        notify = self.specs[flag].notify_within_business_days
        for agreement in sorted(ctx.agreements, key=_agreement_order):
            if self.canonical(agreement.mechanism) != flag:
                continue
            gap = agreement.not_covering(destination=destination, data_class=data_class,
                                         on=ctx.on, counterparty=ctx.counterparty,
                                         notify_within_business_days=notify)
            if gap is not None:
                misses.append(gap)
                continue
            needed = self.alongside.get(flag, ())
            if needed:
                extra = [self.find(n, destination, data_class, ctx) for n in needed]
                backed = next((m for m in extra if m.agreement is not None), None)
                if backed is None:
                    misses.append(f"{agreement.label} needs one of {', '.join(needed)} "
                                  "beside it (the region map requires a fallback)")
                    continue
                return _Match(f"{agreement.label} + {backed.agreement}",
                              unscoped=not agreement.scoped or backed.unscoped)
            return _Match(agreement.label, unscoped=not agreement.scoped)
        return _Match(misses=tuple(misses))

    @staticmethod
    def unscoped_warning(found: _Match) -> tuple[str, ...]:
        if not found.unscoped:
            return ()
        return (f"rests on unscoped agreement {found.agreement}: it names no destination or "
                "counterparty, no dates (nor, for a notifiable contract, its notification) "
                "and never expires; replace it with a scoped rs.Agreement",)


def _agreement_order(agreement: Agreement) -> tuple[bool, str]:
    # Scoped agreements first: a decision names the narrowest agreement that covers it.
    return (not agreement.scoped, agreement.label)


@dataclass(frozen=True, slots=True)
class TransferRules:
    """The compiled transfer rules, ready to decide."""

    file: str
    document: TransferRulesDocument
    data_classes: dict[str, DataClassSpec]
    mechanisms: frozenset[str]
    regimes: dict[str, Regime]
    regime_of: dict[str, Regime]
    overlays: dict[str, Overlay] = field(default_factory=dict)
    book: _MechanismBook = field(default_factory=lambda: _MechanismBook({}, {}))

    def check_data_class(self, data_class: object) -> str:
        """Normalise a data class name or raise :class:`UnknownDataClass`."""
        if isinstance(data_class, str):
            name = data_class.strip().lower()
            if name in self.data_classes:
                return name
        raise UnknownDataClass(data_class, sorted(self.data_classes))

    def check_agreements(self, agreements: Iterable[Agreement | str]) -> None:
        """Raise :class:`UnknownMechanism` for the first mechanism the rules do not define
        (deprecated aliases such as ``dpf`` are accepted, with a DeprecationWarning)."""
        known = sorted(self.mechanisms | set(self.book.aliases))
        for agreement in sorted(agreements, key=str):
            flag = agreement if isinstance(agreement, str) else agreement.mechanism
            if flag in self.book.aliases:
                warnings.warn(f"transfer mechanism {flag!r} is deprecated: "
                              f"{self.book.aliases[flag].note}", DeprecationWarning,
                              stacklevel=3)
            elif flag not in self.mechanisms:
                raise UnknownMechanism(flag, known)

    def check_overlays(self, out_of_scope: Iterable[tuple[str, str]]) -> None:
        """Raise :class:`MapError` for an out-of-scope declaration naming no overlay."""
        for overlay_id, _reason in out_of_scope:
            if overlay_id not in self.overlays:
                raise MapError(f"unknown sector overlay {overlay_id!r} in out_of_scope: use "
                               f"one of {', '.join(sorted(self.overlays))}", file=self.file)

    def with_alongside(self, alongside: dict[str, tuple[str, ...]]) -> TransferRules:
        """These rules, with mechanisms that count only beside another (the map's
        ``transfer_policy.require_alongside``, e.g. SCCs beside the DPF)."""
        if not alongside:
            return self
        for flag in {f for f, needs in alongside.items() for f in (f, *needs)}:
            if flag not in self.mechanisms:
                raise MapError(f"require_alongside names unknown mechanism {flag!r}: use one "
                               f"of {', '.join(sorted(self.mechanisms))}", file=self.file)
        book = replace(self.book, alongside=dict(alongside))
        regimes = {rid: replace(r, rules=book) for rid, r in self.regimes.items()}
        regime_of = {c: regimes[r.id] for c, r in self.regime_of.items()}
        return replace(self, regimes=regimes, regime_of=regime_of, book=book)

    def facts(self) -> list[RuleFact]:
        """Every dated fact of the rules (the file, each regime, agent exemption,
        adequacy entry, mechanism and overlay) with its source and dates."""
        doc = self.document
        found = [RuleFact("the rules file", doc.source, doc.as_of, doc.review_by)]
        for rid, regime in self.regimes.items():
            found.append(RuleFact(f"regime {rid}", regime.source, regime.as_of,
                                  regime.review_by))
            if regime.agent_exemption is not None:
                ex = regime.agent_exemption
                found.append(RuleFact(f"regime {rid} agent exemption", ex.source, ex.as_of,
                                      ex.review_by))
            for accepted in regime.mechanisms:
                found.append(RuleFact(
                    f"regime {rid} accepts {accepted.flag} for "
                    f"{', '.join(sorted(accepted.data_classes))}", accepted.source,
                    accepted.as_of, regime.review_by, own_review=False))
            for i, entry in enumerate(regime.adequacy):
                shown = sorted(entry.countries)
                found.append(RuleFact(
                    f"regime {rid} adequacy entry {i} ({', '.join(shown[:4])}"
                    f"{'...' if len(shown) > 4 else ''})", entry.source, entry.as_of,
                    entry.review_by))
        for flag, spec in doc.mechanisms.items():
            found.append(RuleFact(f"mechanism {flag}", spec.source, spec.as_of, spec.review_by))
        for oid, overlay in self.overlays.items():
            found.append(RuleFact(f"overlay {oid}", overlay.source, overlay.as_of,
                                  overlay.review_by))
        return found

    def facts_past_review(self, on: date) -> list[str]:
        """Every rule fact whose ``review_by`` date is before ``on``, as warnings."""
        return [f"{fact.what} was due for review on {fact.review_by}: check it against "
                f"its source and update as_of/review_by in {self.file}"
                for fact in self.facts() if fact.own_review and fact.past_review(on)]

    def decide(self, *, tenant_country: str, source: str, destination: str,
               data_class: str, agreements: frozenset[Agreement] | frozenset[str],
               on: date | None = None, counterparty: str | None = None,
               derogation: Derogation | None = None, own_use: bool = False,
               out_of_scope: tuple[tuple[str, str], ...] = ()) -> Decision:
        """Decide a movement of ``data_class`` data from ``source`` to ``destination``, on
        day ``on`` (default: today, UTC).

        All country arguments must already be normalised ISO codes; bare mechanism
        strings in ``agreements`` are read as unscoped agreements.
        """
        ctx = TransferContext(
            agreements=frozenset(Agreement(a) if isinstance(a, str) else a
                                 for a in agreements),
            on=on or _today(), counterparty=counterparty, derogation=derogation,
            own_use=own_use, out_of_scope=out_of_scope)
        verdicts, reasons = self._overlay_verdicts(tenant_country, data_class,
                                                   destination, ctx)
        found_warnings: list[str] = []
        spec = self.data_classes[data_class]
        base = dict(tenant_country=tenant_country, data_class=data_class, source=source,
                    destination=destination, decided_on=ctx.on, out_of_scope=out_of_scope)
        holder_rule = self._holder_rule(tenant_country, data_class)
        if source == destination and holder_rule is None:
            blocked = [v for v in verdicts if not v.allowed]
            return Decision(
                allowed=not blocked, is_transfer=False, mechanism=None,
                regimes=tuple(v.regime for v in blocked), verdicts=tuple(blocked),
                reasons=(*reasons, f"data already lives in {destination}: no transfer"),
                **base)
        if not spec.restricted:
            blocked = [v for v in verdicts if not v.allowed]
            return Decision(
                allowed=not blocked, is_transfer=source != destination,
                mechanism=None if blocked else data_class,
                regimes=tuple(v.regime for v in blocked), verdicts=tuple(verdicts),
                reasons=(*reasons, f"{data_class} data is not personal data: no transfer "
                         "restriction under the data-protection regimes (still audited)"),
                **base)
        missing: list[str] = []
        judged: set[tuple[str, bool]] = set()
        for country in dict.fromkeys((tenant_country, source)):
            regime = self.regime_of.get(country)
            if regime is None:
                missing.append(country)
                continue
            if country != tenant_country and not regime.applies_to_location:
                continue  # HIPAA: a non-US tenant's data is not governed by where it sits
            verdict, warned = regime.judge(data_class, country, source, destination, ctx)
            if (regime.id, verdict.allowed) in judged:
                continue
            judged.add((regime.id, verdict.allowed))
            verdicts.append(verdict)
            reasons.append(verdict.reason)
            found_warnings.extend(warned)
        for country in missing:
            reasons.append(f"no transfer regime governs {country} in {self.file}: blocked "
                           f"until the rules define one (fail closed)")
        allowed = not missing and all(v.allowed for v in verdicts)
        # Allowed: every verdict allowed, each on its basis (named once, in order).
        mechanism = "+".join(dict.fromkeys(v.basis for v in verdicts if v.basis
                                           and v.basis not in self.overlays
                                           and v.basis != "not_of_concern")) or None \
            if allowed else None
        return Decision(
            allowed=allowed, is_transfer=source != destination, mechanism=mechanism,
            regimes=tuple(dict.fromkeys(v.regime for v in verdicts
                                        if v.regime not in self.overlays or not v.allowed)),
            verdicts=tuple(verdicts),
            reasons=tuple(reasons),
            agreements=tuple(dict.fromkeys(v.agreement for v in verdicts if v.agreement))
            if allowed else (),
            warnings=tuple(dict.fromkeys((*found_warnings, *self._alias_warnings(ctx))))
            if allowed else (), **base)

    def _alias_warnings(self, ctx: TransferContext) -> tuple[str, ...]:
        return tuple(f"agreement {a.label} uses the deprecated mechanism name "
                     f"{a.mechanism!r}: {self.book.aliases[a.mechanism].note}"
                     for a in sorted(ctx.agreements, key=_agreement_order)
                     if a.mechanism in self.book.aliases)

    def _holder_rule(self, tenant_country: str, data_class: str) -> Regime | None:
        regime = self.regime_of.get(tenant_country)
        if regime is not None and regime.every_holder and data_class in regime.restricts:
            return regime
        return None

    def _overlay_verdicts(self, tenant_country: str, data_class: str, destination: str,
                          ctx: TransferContext
                          ) -> tuple[list[RegimeVerdict], list[str]]:
        verdicts: list[RegimeVerdict] = []
        reasons: list[str] = []
        declared = dict(ctx.out_of_scope)
        for overlay in self.overlays.values():
            if tenant_country not in overlay.tenant_countries:
                continue
            if overlay.id in declared:
                if data_class in overlay.data_classes:
                    reasons.append(f"{overlay.name} not applied: declared out of scope "
                                   f"({declared[overlay.id]})")
                continue
            verdict = overlay.judge(data_class, tenant_country, destination, ctx,
                                    self.regimes)
            if verdict is not None:
                verdicts.append(verdict)
                if not verdict.allowed:  # an overlay that allows adds nothing to say
                    reasons.append(verdict.reason)
        return verdicts, reasons


def _today() -> date:
    return datetime.now(UTC).date()


def load_transfer_rules(path: Path, groups: dict[str, frozenset[str]]) -> TransferRules:
    """Load and validate a transfer rules file, expanding group names with ``groups``."""
    raw = load_yaml_file(path)
    return compile_transfer_rules(raw, file=str(path), groups=groups)


def compile_transfer_rules(raw: Any, *, file: str,
                           groups: dict[str, frozenset[str]]) -> TransferRules:
    """Validate a parsed rules document and index regimes by governed country.

    A version 1 document (before review dates) is read with every fact due for review on
    its ``as_of`` date, so it loads (``rules diff`` can compare it) and ``map validate``
    lists each fact as past review."""
    try:
        doc = TransferRulesDocument.model_validate(_upgrade_v1(raw))
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        value = err.get("input")
        raise MapError(err["msg"], file=file, path=".".join(map(str, err["loc"])),
                       value=None if isinstance(value, (dict, list)) else value) from None
    return _Compiler(doc, file, groups).compile()


def _upgrade_v1(raw: Any) -> Any:
    if not isinstance(raw, dict) or raw.get("version", 1) != 1:
        return raw

    def dated(item: Any) -> Any:
        if isinstance(item, dict) and "review_by" not in item and "as_of" in item:
            return {**item, "review_by": item["as_of"]}
        return item

    out = dated(dict(raw))
    out["version"] = 2
    if isinstance(out.get("mechanisms"), dict):
        out["mechanisms"] = {k: dated(v) for k, v in out["mechanisms"].items()}
    if isinstance(out.get("regimes"), dict):
        out["regimes"] = {k: {**dated(v), "adequacy": [dated(e) for e in v.get("adequacy", [])]}
                          if isinstance(v, dict) and isinstance(v.get("adequacy", []), list)
                          else dated(v) for k, v in out["regimes"].items()}
    return out


class _Compiler:
    """Checks a rules document's cross references and expands its groups."""

    def __init__(self, doc: TransferRulesDocument, file: str,
                 groups: dict[str, frozenset[str]]) -> None:
        self.doc = doc
        self.file = file
        self.groups = groups
        self.iso = iso_alpha2_codes()
        self.book = _MechanismBook(dict(doc.mechanisms), dict(doc.aliases))

    def fail(self, message: str, path: str, value: object) -> MapError:
        return MapError(message, file=self.file, path=path, value=value)

    def expand(self, names: list[str], path: str) -> frozenset[str]:
        out: set[str] = set()
        for i, name in enumerate(names):
            if name in self.groups:
                out |= self.groups[name]
            elif name in self.iso:
                out.add(name)
            else:
                raise self.fail("unknown country code or group", f"{path}.{i}", name)
        return frozenset(out)

    def data_class(self, name: str, path: str) -> str:
        if name not in self.doc.data_classes:
            raise self.fail("unknown data class", path, name)
        return name

    def mechanism(self, flag: str, path: str) -> str:
        if flag not in self.doc.mechanisms:
            raise self.fail("unknown mechanism flag", path, flag)
        return flag

    def dates(self) -> None:
        def check(value: str, path: str) -> None:
            try:
                date.fromisoformat(value)
            except ValueError:
                raise self.fail("not an ISO date (YYYY-MM-DD)", path, value) from None

        check(self.doc.review_by, "review_by")
        for flag, spec in self.doc.mechanisms.items():
            check(spec.review_by, f"mechanisms.{flag}.review_by")
        for rid, regime in self.doc.regimes.items():
            check(regime.review_by, f"regimes.{rid}.review_by")
            for i, entry in enumerate(regime.adequacy):
                check(entry.review_by, f"regimes.{rid}.adequacy.{i}.review_by")
        for oid, overlay in self.doc.overlays.items():
            check(overlay.review_by, f"overlays.{oid}.review_by")

    def compile(self) -> TransferRules:
        self.dates()
        for name, alias in self.doc.aliases.items():
            self.mechanism(alias.to, f"aliases.{name}.to")
            if name in self.doc.mechanisms:
                raise self.fail("an alias may not also be a mechanism", f"aliases.{name}", name)
        regimes: dict[str, Regime] = {}
        regime_of: dict[str, Regime] = {}
        for rid, spec in self.doc.regimes.items():
            regime = self.regime(rid, spec)
            for country in sorted(regime.governs):
                if country in regime_of:
                    raise self.fail(f"country {country} is governed by two regimes "
                                    f"({regime_of[country].id} and {rid})",
                                    f"regimes.{rid}.governs", country)
                regime_of[country] = regime
            regimes[rid] = regime
        overlays = {oid: self.overlay(oid, spec, regimes)
                    for oid, spec in self.doc.overlays.items()}
        return TransferRules(file=self.file, document=self.doc,
                             data_classes=dict(self.doc.data_classes),
                             mechanisms=frozenset(self.doc.mechanisms), regimes=regimes,
                             regime_of=regime_of, overlays=overlays, book=self.book)

    def regime(self, rid: str, spec: RegimeSpec) -> Regime:
        base = f"regimes.{rid}"
        for i, dc in enumerate(spec.restricts):
            self.data_class(dc, f"{base}.restricts.{i}")
        mechs = []
        for i, m in enumerate(spec.mechanisms):
            self.mechanism(m.flag, f"{base}.mechanisms.{i}.flag")
            for dc in m.data_classes:
                self.data_class(dc, f"{base}.mechanisms.{i}.data_classes")
            mechs.append(AcceptedMechanism(m.flag, frozenset(m.data_classes), m.per_transfer,
                                           m.source, m.as_of))
        adequacy = []
        for i, entry in enumerate(spec.adequacy):
            path = f"{base}.adequacy.{i}"
            if entry.requires is not None:
                self.mechanism(entry.requires, f"{path}.requires")
            adequacy.append(Adequacy(
                self.expand(entry.countries, f"{path}.countries"), entry.requires,
                None if entry.origins is None else self.expand(entry.origins,
                                                               f"{path}.origins"),
                entry.unverified, entry.source, entry.as_of, entry.review_by))
        return Regime(
            id=rid, name=spec.name, governs=self.expand(spec.governs, f"{base}.governs"),
            restricts=frozenset(spec.restricts),
            applies_to_location=spec.applies_to == "origin_and_location",
            every_holder=spec.every_holder, agent_exemption=spec.agent_exemption,
            free_zone=self.expand(spec.free_zone, f"{base}.free_zone"),
            free_zone_basis=spec.free_zone_basis, adequacy=tuple(adequacy),
            mechanisms=tuple(mechs),
            negative_list=None if spec.negative_list is None
            else self.expand(spec.negative_list, f"{base}.negative_list"),
            source=spec.source, as_of=spec.as_of, review_by=spec.review_by, rules=self.book)

    def overlay(self, oid: str, spec: OverlaySpec, regimes: dict[str, Regime]) -> Overlay:
        base = f"overlays.{oid}"
        for i, dc in enumerate(spec.data_classes):
            self.data_class(dc, f"{base}.data_classes.{i}")
        if (spec.allowed_destinations is None) == (spec.blocked_destinations is None):
            raise self.fail("give exactly one of allowed_destinations and "
                            "blocked_destinations", base, oid)
        if spec.adequacy_of is not None and spec.adequacy_of not in regimes:
            raise self.fail("unknown regime", f"{base}.adequacy_of", spec.adequacy_of)
        if oid in regimes:
            raise self.fail("an overlay may not share a regime's id", base, oid)
        return Overlay(
            id=oid, name=spec.name,
            tenant_countries=self.expand(spec.tenant_countries, f"{base}.tenant_countries"),
            data_classes=frozenset(spec.data_classes),
            allowed=None if spec.allowed_destinations is None
            else self.expand(spec.allowed_destinations, f"{base}.allowed_destinations"),
            allowed_text=", ".join(spec.allowed_destinations or ()),
            adequacy_of=spec.adequacy_of,
            blocked=None if spec.blocked_destinations is None
            else self.expand(spec.blocked_destinations, f"{base}.blocked_destinations"),
            conditions=spec.conditions, scope=spec.scope, source=spec.source,
            as_of=spec.as_of, review_by=spec.review_by)
