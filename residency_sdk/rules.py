"""Transfer rules: regimes, adequacy lists, mechanisms, and the decision engine.

A transfer of data from the country where it lives to a destination country is allowed
only if every applicable regime allows it: the regime of the tenant's origin country and
the regime of the country where the data currently lives ("the most stringent applies").
The rules themselves are data (``region_maps/transfer_rules.yaml``), each fact with its
source and ``as_of`` date.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from residency_sdk._yamlio import load_yaml_file
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
    """A transfer-mechanism flag a tenant can hold."""

    name: str
    source: str
    as_of: str


class AdequacyEntry(_Doc):
    """Destinations a regime deems adequate; ``requires`` makes it conditional (US: dpf)."""

    countries: list[str] = Field(min_length=1)
    requires: str | None = None
    unverified: bool = False
    source: str
    as_of: str


class RegimeMechanism(_Doc):
    """A mechanism a regime accepts, and for which data classes it suffices."""

    flag: str
    data_classes: list[str] = Field(min_length=1)
    source: str
    as_of: str


class RegimeSpec(_Doc):
    """One data-protection regime's rules on data leaving its territory."""

    name: str
    governs: list[str] = Field(min_length=1)
    restricts: list[str]
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


class TransferRulesDocument(_Doc):
    """The schema of a transfer rules file."""

    version: int = 1
    as_of: str
    source: str
    data_classes: dict[str, DataClassSpec] = Field(min_length=1)
    mechanisms: dict[str, MechanismSpec] = Field(min_length=1)
    regimes: dict[str, RegimeSpec] = Field(min_length=1)


# --- compiled rules ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Adequacy:
    countries: frozenset[str]
    requires: str | None
    unverified: bool


@dataclass(frozen=True, slots=True)
class Regime:
    """A compiled regime: groups expanded to countries."""

    id: str
    name: str
    governs: frozenset[str]
    restricts: frozenset[str]
    free_zone: frozenset[str]
    free_zone_basis: str
    adequacy: tuple[_Adequacy, ...]
    mechanisms: tuple[tuple[str, frozenset[str]], ...]
    negative_list: frozenset[str] | None
    source: str
    as_of: str

    def flags_for(self, data_class: str) -> tuple[str, ...]:
        """Mechanism flags this regime accepts for ``data_class``, in preference order."""
        return tuple(flag for flag, classes in self.mechanisms if data_class in classes)

    def judge(self, data_class: str, origin: str, current: str, destination: str,
              agreements: frozenset[str]) -> RegimeVerdict:
        """This regime's verdict on moving ``data_class`` data to ``destination``."""
        if data_class not in self.restricts:
            return RegimeVerdict(regime=self.id, allowed=True, basis="unrestricted",
                                 reason=f"{self.name} does not restrict {data_class} data")
        if destination in self.governs or destination in self.free_zone:
            return RegimeVerdict(
                regime=self.id, allowed=True, basis=self.free_zone_basis,
                reason=f"{self.name} imposes no restriction on {destination} (inside its zone)")
        if self.negative_list is not None:
            if destination in self.negative_list:
                return RegimeVerdict(regime=self.id, allowed=False, basis=None,
                                     reason=f"{self.name}: {destination} is a notified "
                                     "restricted destination")
            return RegimeVerdict(regime=self.id, allowed=True, basis="not_restricted",
                                 reason=f"{self.name}: {destination} is not on the notified "
                                 "list of restricted destinations")
        conditional: list[str] = []
        skipped_unverified = False
        for entry in self.adequacy:
            if destination not in entry.countries:
                continue
            if entry.unverified:
                skipped_unverified = True
            elif entry.requires is None:
                return RegimeVerdict(regime=self.id, allowed=True, basis="adequacy",
                                     reason=f"{self.name}: {destination} has an adequacy "
                                     "decision")
            elif entry.requires in agreements:
                return RegimeVerdict(regime=self.id, allowed=True, basis=entry.requires,
                                     reason=f"{self.name}: {destination} is adequate for "
                                     f"recipients under {entry.requires}, which the tenant holds")
            else:
                conditional.append(entry.requires)
        flags = self.flags_for(data_class)
        for flag in flags:
            if flag in agreements:
                return RegimeVerdict(regime=self.id, allowed=True, basis=flag,
                                     reason=f"{self.name}: transfer to {destination} rests on "
                                     f"{flag}")
        unblock = tuple(dict.fromkeys((*conditional, *flags)))
        note = (" (an adequacy entry for it is flagged unverified and is not relied on)"
                if skipped_unverified else "")
        fix = f"sign one of: {', '.join(unblock)}" if unblock else "no mechanism can allow it"
        return RegimeVerdict(
            regime=self.id, allowed=False, basis=None, unblock_with=unblock,
            reason=f"{self.name} blocks {data_class} data from {current} to {destination}: "
            f"no adequacy decision{note} and no accepted mechanism among the tenant's "
            f"agreements; {fix}",
        )


@dataclass(frozen=True, slots=True)
class TransferRules:
    """The compiled transfer rules, ready to decide."""

    file: str
    document: TransferRulesDocument
    data_classes: dict[str, DataClassSpec]
    mechanisms: frozenset[str]
    regimes: dict[str, Regime]
    regime_of: dict[str, Regime]

    def check_data_class(self, data_class: object) -> str:
        """Normalise a data class name or raise :class:`UnknownDataClass`."""
        if isinstance(data_class, str):
            name = data_class.strip().lower()
            if name in self.data_classes:
                return name
        raise UnknownDataClass(data_class, sorted(self.data_classes))

    def check_agreements(self, agreements: frozenset[str]) -> None:
        """Raise :class:`UnknownMechanism` for the first flag the rules do not define."""
        for flag in sorted(agreements - self.mechanisms):
            raise UnknownMechanism(flag, sorted(self.mechanisms))

    def decide(self, *, tenant_country: str, source: str, destination: str,
               data_class: str, agreements: frozenset[str]) -> Decision:
        """Decide a movement of ``data_class`` data from ``source`` to ``destination``.

        All country arguments must already be normalised ISO codes.
        """
        spec = self.data_classes[data_class]
        if source == destination:
            return Decision(
                allowed=True, tenant_country=tenant_country, data_class=data_class,
                source=source, destination=destination, is_transfer=False, mechanism=None,
                regimes=(), reasons=(f"data already lives in {destination}: no transfer",))
        if not spec.restricted:
            return Decision(
                allowed=True, tenant_country=tenant_country, data_class=data_class,
                source=source, destination=destination, is_transfer=True,
                mechanism=data_class, regimes=(),
                reasons=(f"{data_class} data is not personal data: no transfer restriction "
                         "(still audited)",))
        verdicts: list[RegimeVerdict] = []
        missing: list[str] = []
        for country in dict.fromkeys((tenant_country, source)):
            regime = self.regime_of.get(country)
            if regime is None:
                missing.append(country)
            elif all(v.regime != regime.id for v in verdicts):
                verdicts.append(regime.judge(data_class, tenant_country, source, destination,
                                             agreements))
        reasons = [v.reason for v in verdicts]
        for country in missing:
            reasons.append(f"no transfer regime governs {country} in {self.file}: blocked "
                           f"until the rules define one (fail closed)")
        allowed = not missing and all(v.allowed for v in verdicts)
        # Allowed: every verdict allowed, each on its basis (named once, in regime order).
        mechanism = "+".join(dict.fromkeys(v.basis for v in verdicts if v.basis)) \
            if allowed else None
        return Decision(
            allowed=allowed, tenant_country=tenant_country, data_class=data_class,
            source=source, destination=destination, is_transfer=True, mechanism=mechanism,
            regimes=tuple(v.regime for v in verdicts), verdicts=tuple(verdicts),
            reasons=tuple(reasons))


def load_transfer_rules(path: Path, groups: dict[str, frozenset[str]]) -> TransferRules:
    """Load and validate a transfer rules file, expanding group names with ``groups``."""
    raw = load_yaml_file(path)
    return compile_transfer_rules(raw, file=str(path), groups=groups)


def compile_transfer_rules(raw: Any, *, file: str,
                           groups: dict[str, frozenset[str]]) -> TransferRules:
    """Validate a parsed rules document and index regimes by governed country."""
    try:
        doc = TransferRulesDocument.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        value = err.get("input")
        raise MapError(err["msg"], file=file, path=".".join(map(str, err["loc"])),
                       value=None if isinstance(value, (dict, list)) else value) from None
    iso = iso_alpha2_codes()

    def expand(names: list[str], path: str) -> frozenset[str]:
        out: set[str] = set()
        for i, name in enumerate(names):
            if name in groups:
                out |= groups[name]
            elif name in iso:
                out.add(name)
            else:
                raise MapError("unknown country code or group", file=file, path=f"{path}.{i}",
                               value=name)
        return frozenset(out)

    regimes: dict[str, Regime] = {}
    regime_of: dict[str, Regime] = {}
    for rid, spec in doc.regimes.items():
        base = f"regimes.{rid}"
        for i, dc in enumerate(spec.restricts):
            if dc not in doc.data_classes:
                raise MapError("unknown data class", file=file, path=f"{base}.restricts.{i}",
                               value=dc)
        mechs = []
        for i, m in enumerate(spec.mechanisms):
            if m.flag not in doc.mechanisms:
                raise MapError("unknown mechanism flag", file=file,
                               path=f"{base}.mechanisms.{i}.flag", value=m.flag)
            for dc in m.data_classes:
                if dc not in doc.data_classes:
                    raise MapError("unknown data class", file=file,
                                   path=f"{base}.mechanisms.{i}.data_classes", value=dc)
            mechs.append((m.flag, frozenset(m.data_classes)))
        adequacy = []
        for i, entry in enumerate(spec.adequacy):
            if entry.requires is not None and entry.requires not in doc.mechanisms:
                raise MapError("unknown mechanism flag", file=file,
                               path=f"{base}.adequacy.{i}.requires", value=entry.requires)
            adequacy.append(_Adequacy(expand(entry.countries, f"{base}.adequacy.{i}.countries"),
                                      entry.requires, entry.unverified))
        regime = Regime(
            id=rid, name=spec.name, governs=expand(spec.governs, f"{base}.governs"),
            restricts=frozenset(spec.restricts),
            free_zone=expand(spec.free_zone, f"{base}.free_zone"),
            free_zone_basis=spec.free_zone_basis, adequacy=tuple(adequacy),
            mechanisms=tuple(mechs),
            negative_list=None if spec.negative_list is None
            else expand(spec.negative_list, f"{base}.negative_list"),
            source=spec.source, as_of=spec.as_of)
        for country in sorted(regime.governs):
            if country in regime_of:
                raise MapError(f"country {country} is governed by two regimes "
                               f"({regime_of[country].id} and {rid})", file=file,
                               path=f"{base}.governs", value=country)
            regime_of[country] = regime
        regimes[rid] = regime
    return TransferRules(file=file, document=doc, data_classes=dict(doc.data_classes),
                         mechanisms=frozenset(doc.mechanisms), regimes=regimes,
                         regime_of=regime_of)
