"""Public value types: Tenant, Placement and its targets, Decision.

All are frozen pydantic models, so they are hashable, safe to share between threads and
cheap to cache.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date
from typing import TYPE_CHECKING, ClassVar, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, field_validator

from residency_sdk._values import FrozenValue
from residency_sdk.agreements import Agreement, as_agreement
from residency_sdk.countries import normalise_country
from residency_sdk.errors import InvalidTenant

Provider = Literal["aws", "gcp", "azure", "local"]
PROVIDERS: tuple[Provider, ...] = ("aws", "gcp", "azure", "local")

DATA_CLASSES: tuple[str, ...] = ("phi", "personal", "anonymised")

# Tenant ids name storage prefixes: keep them to characters every backend accepts in a
# key and that cannot climb out of a directory.
_TENANT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

AgreementsInput: TypeAlias = "str | Agreement | Iterable[str | Agreement]"
"""What ``Tenant(agreements=...)`` accepts: one flag or agreement, or a collection of them."""
OutOfScopeInput: TypeAlias = "Mapping[str, str] | Iterable[tuple[str, str]]"
"""What ``Tenant(out_of_scope=...)`` accepts: overlay id -> stated reason."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Tenant(FrozenValue):
    """A customer (a clinic, a hospital) whose data must stay in its residency location.

    ``country`` is the tenant's jurisdiction (normalised to an ISO alpha-2 code).
    ``agreements`` are the transfer mechanisms the tenant holds: :class:`Agreement`
    values scoped to a counterparty, destinations, data classes and dates, or bare
    mechanism flags (``"scc"``, ``"baa"``: unscoped, every destination, no expiry).
    Unknown mechanisms are rejected when the tenant is used with a
    :class:`~residency_sdk.client.Residency`, against its rules. ``out_of_scope`` maps a
    sector overlay id (``sgb5_393``, ``hds``, ``doj_dsp``) to the stated reason the
    tenant is outside it; decisions show the reason.
    """

    id: str
    country: str
    agreements: frozenset[Agreement] = frozenset()
    out_of_scope: tuple[tuple[str, str], ...] = ()

    value_name: ClassVar[str] = "tenant"

    if TYPE_CHECKING:
        # The signature type checkers see: the inputs the validators below accept (a set
        # of flags, a dict of overlay reasons), keyword-only, so a misspelt field or a
        # wrong type is caught before it runs.
        def __init__(self, *, id: str, country: str,
                     agreements: AgreementsInput = ...,
                     out_of_scope: OutOfScopeInput = ...) -> None: ...

    @field_validator("id", mode="before")
    @classmethod
    def _check_id(cls, value: object) -> str:
        if not isinstance(value, str) or not _TENANT_ID.fullmatch(value) or ".." in value:
            raise InvalidTenant(
                f"invalid tenant id {value!r}: use 1-128 characters from A-Z a-z 0-9 . _ -, "
                "starting with a letter or digit and without '..'"
            )
        return value

    @field_validator("country", mode="before")
    @classmethod
    def _normalise_country(cls, value: object) -> str:
        return normalise_country(value)

    @field_validator("agreements", mode="before")
    @classmethod
    def _normalise_agreements(cls, value: object) -> frozenset[Agreement]:
        if isinstance(value, (str, Agreement)):
            value = [value]
        if not isinstance(value, (list, tuple, set, frozenset)):
            raise InvalidTenant(f"agreements must be a set of mechanism flags or "
                                f"rs.Agreement values, got {value!r}")
        return frozenset(as_agreement(item) for item in value)

    @field_validator("out_of_scope", mode="before")
    @classmethod
    def _normalise_out_of_scope(cls, value: object) -> tuple[tuple[str, str], ...]:
        items = value.items() if isinstance(value, dict) else value
        if not isinstance(items, Iterable) or isinstance(items, str):
            raise InvalidTenant(f"out_of_scope must map an overlay id to a stated reason, "
                                f"got {value!r}")
        pairs: dict[str, str] = {}
        for item in items:
            if (not isinstance(item, (tuple, list)) or len(item) != 2
                    or not all(isinstance(v, str) and v.strip() for v in item)):
                raise InvalidTenant(f"out_of_scope entry {item!r}: give the overlay id and a "
                                    "non-empty reason, e.g. {'sgb5_393': 'private clinic, "
                                    "not an SGB V provider'}")
            pairs[item[0].strip().lower()] = item[1].strip()
        return tuple(sorted(pairs.items()))

    @property
    def mechanisms(self) -> frozenset[str]:
        """The mechanism flags of the tenant's agreements."""
        return frozenset(a.mechanism for a in self.agreements)


class CredentialSource(_Frozen):
    """Where one backend's credentials come from: names and places, never secrets.

    Each location names its own, so no process-wide credential can point every location
    at one account: ``aws_profile`` / ``aws_role_arn`` (a named profile, or a role the
    location's client assumes), ``gcp_project`` / ``gcp_credentials_file`` (the project and
    a service-account key file), ``azure_connection_string_env`` (the name of a variable
    holding this location's connection string) or ``azure_identity`` (azure-identity's
    ``DefaultAzureCredential`` against the account URL the map names).
    """

    aws_profile: str | None = None
    aws_role_arn: str | None = None
    gcp_project: str | None = None
    gcp_credentials_file: str | None = None
    azure_connection_string_env: str | None = None
    azure_identity: bool = False


class StorageTarget(_Frozen):
    """Where a location keeps objects for one provider.

    ``endpoint_country`` (with ``endpoint_source``) states where an ``endpoint`` that is
    not one of the provider's in-region forms serves from; see the region map docs."""

    provider: Provider
    region: str
    bucket: str
    country: str
    failover_region: str | None = None
    kms_key: str | None = None
    encryption_scope: str | None = None
    account: str | None = None
    endpoint: str | None = None
    endpoint_country: str | None = None
    endpoint_source: str | None = None
    credentials: CredentialSource = CredentialSource()
    baa: bool = False
    tenant_keys: bool = True
    """aws: encrypt each tenant's objects with a KMS key of its own, destroyed when the
    tenant is erased (crypto-shredding, docs/crypto-shredding.md); False: every object
    under the location's ``kms_key``. The local backend always keeps per-tenant keys;
    GCS and Azure have none in the SDK."""


class ComputeTarget(_Frozen):
    """Where a location runs inference or other processing."""

    provider: Provider
    region: str
    endpoint: str
    endpoint_country: str | None = None
    endpoint_source: str | None = None


class Placement(_Frozen):
    """Where a tenant's data lives: the answer of :meth:`Residency.resolve`.

    ``required_mechanisms`` lists, per regime that restricts placing the data here, the
    mechanism flags any one of which makes placement lawful (empty when placement is not
    a transfer, e.g. a German clinic in Germany).
    """

    country: str
    location: str
    storage: StorageTarget
    compute: ComputeTarget | None
    backends: tuple[StorageTarget, ...]
    required_mechanisms: tuple[tuple[str, ...], ...] = ()
    matched_route: str

    def storage_for(self, provider: str) -> StorageTarget | None:
        """The location's storage target for ``provider``, or None when it has none."""
        for target in self.backends:
            if target.provider == provider:
                return target
        return None


class RegimeVerdict(_Frozen):
    """One regime's (or sector overlay's) view of a transfer.

    ``source``, ``as_of`` and ``review_by`` are those of the rule fact the verdict rests
    on (the adequacy entry, the accepted mechanism, the overlay, or the regime itself);
    ``agreement`` names the agreement or derogation relied on (its label, with the
    contract reference)."""

    regime: str
    allowed: bool
    basis: str | None
    reason: str
    unblock_with: tuple[str, ...] = ()
    source: str | None = None
    as_of: str | None = None
    review_by: str | None = None
    agreement: str | None = None


class Decision(_Frozen):
    """The answer of :meth:`Residency.check_transfer`.

    ``mechanism`` is the legal basis used: a flag such as ``"scc"``, ``"adequacy"``,
    ``"eea"`` (free flow inside a zone), several joined with ``+`` when more than one
    regime needed its own, or None when nothing crosses a border or the data is
    anonymised. ``reasons`` explain, in words, what each regime said and what would unblock
    a blocked transfer.
    """

    allowed: bool
    tenant_country: str
    data_class: str
    source: str
    destination: str
    is_transfer: bool
    mechanism: str | None
    regimes: tuple[str, ...]
    verdicts: tuple[RegimeVerdict, ...] = ()
    reasons: tuple[str, ...]
    agreements: tuple[str, ...] = ()
    """The agreements and derogations the decision rests on (their labels, with the
    contract reference); recorded in the audit trail."""
    warnings: tuple[str, ...] = ()
    """What a privacy officer should look at: an unscoped agreement relied on, a
    deprecated mechanism name."""
    decided_on: date | None = None
    """The day the decision was taken for (agreements in force that day count)."""
    out_of_scope: tuple[tuple[str, str], ...] = ()
    """Sector overlays not applied, with the stated reason."""

    @property
    def unblock_with(self) -> tuple[tuple[str, ...], ...]:
        """Per blocking regime, the flags any one of which would allow the transfer."""
        return tuple(v.unblock_with for v in self.verdicts if not v.allowed)
