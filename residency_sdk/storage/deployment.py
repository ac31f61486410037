"""Check what is really deployed for a location against what the region map promises.

``verify_location(policy, "DE")`` (``residency verify --location DE``) connects to every
backend of a location (and its in-country failover bucket), asks the provider what it
reports and checks:

- ``exists``: the bucket/container exists;
- ``region``: its reported region/location lies in the location's country;
- ``encryption``: default encryption uses a customer-managed key (S3 ``aws:kms`` with the
  map's key, GCS ``default_kms_key_name``, Azure a default encryption scope);
- ``public_access``: public access is blocked (S3 public access block, GCS public access
  prevention ``enforced``, Azure container public access off).

Each check passes, fails, or is ``unknown`` when the provider's data plane does not report
it (Azure does not report an account's region without the management API). Any failure
makes :meth:`VerifyReport.raise_for_violations` raise
:class:`~residency_sdk.errors.ResidencyViolation`; ``strict`` makes unknowns fail too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from residency_sdk.errors import NoSuchBackend, ResidencyViolation
from residency_sdk.model import StorageTarget
from residency_sdk.policy import ResidencyPolicy
from residency_sdk.regions import country_of
from residency_sdk.storage.base import BucketFacts
from residency_sdk.storage.factory import open_store

Status = Literal["pass", "fail", "unknown"]


@dataclass(frozen=True, slots=True)
class Check:
    """One verdict about one bucket."""

    provider: str
    bucket: str
    role: Literal["primary", "failover"]
    check: str
    status: Status
    detail: str


@dataclass
class VerifyReport:
    """All checks for one location."""

    location: str
    country: str
    checks: list[Check] = field(default_factory=list)

    @property
    def violations(self) -> list[Check]:
        """Checks that failed."""
        return [c for c in self.checks if c.status == "fail"]

    @property
    def unknown(self) -> list[Check]:
        """Checks the provider could not answer."""
        return [c for c in self.checks if c.status == "unknown"]

    def ok(self, *, strict: bool = False) -> bool:
        """True when nothing failed (and, if ``strict``, nothing is unknown)."""
        return not self.violations and not (strict and self.unknown)

    def raise_for_violations(self, *, strict: bool = False) -> None:
        """Raise :class:`ResidencyViolation` listing every failed check."""
        bad = self.violations + (self.unknown if strict else [])
        if bad:
            lines = "; ".join(f"{c.provider} {c.bucket} {c.check}: {c.detail}" for c in bad)
            raise ResidencyViolation(
                f"location {self.location} ({self.country}) does not keep the map's promise: "
                f"{lines}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"location": self.location, "country": self.country,
                "ok": self.ok(), "violations": len(self.violations),
                "unknown": len(self.unknown), "checks": [asdict(c) for c in self.checks]}


def verify_location(policy: ResidencyPolicy, location: str, *, provider: str | None = None,
                    local_root: Any = None) -> VerifyReport:
    """Inspect every backend of ``location`` (a location id, or a country routed to one).

    ``provider`` restricts the check to one provider. Backends that cannot be reached
    raise (a :class:`~residency_sdk.errors.StorageError`); an unreachable backend is not
    a verified one.
    """
    loc = policy.map.locations.get(location.upper()) if isinstance(location, str) else None
    if loc is None:
        loc = policy.location(policy.resolve_country(location).location)
    providers = sorted(p for p in loc.backends if provider in (None, p))
    if provider is not None and not providers:
        raise NoSuchBackend(
            f"location {loc.id} has no {provider!r} backend: use one of "
            f"{', '.join(sorted(loc.backends))}")
    report = VerifyReport(location=loc.id, country=loc.country)
    # A local backend is a directory on this machine: no provider to ask.
    for role, target in loc.targets(p for p in providers if p != "local"):
        report.checks.extend(verify_target(target, loc.country, policy.regions, role=role,
                                           local_root=local_root))
    return report


def verify_target(target: StorageTarget, country: str,
                  regions: Mapping[str, Mapping[str, str]], *,
                  role: Literal["primary", "failover"] = "primary",
                  local_root: Any = None) -> list[Check]:
    """The checks for one bucket, from what its provider reports."""
    store = open_store(target, local_root=local_root)
    try:
        facts = store.describe_bucket()
    finally:
        store.close()
    return judge(target, country, regions, facts, role=role)


def judge(target: StorageTarget, country: str, regions: Mapping[str, Mapping[str, str]],
          facts: BucketFacts, *, role: Literal["primary", "failover"] = "primary",
          ) -> list[Check]:
    """Turn reported facts into pass/fail/unknown verdicts (pure: no network)."""

    def check(name: str, status: Status, detail: str) -> Check:
        return Check(target.provider, target.bucket, role, name, status, detail)

    if not facts.exists:
        return [check("exists", "fail", f"bucket {target.bucket!r} does not exist; provision "
                      "it with the infra stack")]
    out = [check("exists", "pass", "bucket exists")]
    if facts.region is None:
        out.append(check("region", "unknown", "the provider does not report the region here"
                         + (f" ({'; '.join(facts.notes)})" if facts.notes else "")))
    else:
        where = country_of(regions, target.provider, facts.region)
        if where == country:
            out.append(check("region", "pass", f"{facts.region} is in {country}"))
        else:
            out.append(check("region", "fail",
                             f"reported region {facts.region!r} is in "
                             f"{where or 'an unknown country'}, "
                             f"not {country}: move the data and recreate the bucket in "
                             f"{target.region}"))
    wanted = target.encryption_scope if target.provider == "azure" else target.kms_key
    if facts.encryption is None:
        out.append(check("encryption", "fail", "no default encryption with a customer-managed "
                         f"key; set it to {wanted!r}"))
    elif wanted and (facts.kms_key_matches is False or (
            facts.kms_key_matches is None and not _same_key(wanted, facts.kms_key or ""))):
        out.append(check("encryption", "fail", f"default key {facts.kms_key!r} is not the "
                         f"map's {wanted!r}"))
    else:
        out.append(check("encryption", "pass", f"{facts.encryption} with {facts.kms_key}"))
    if facts.public_access_blocked is None:
        out.append(check("public_access", "unknown", "the provider does not report it"))
    elif facts.public_access_blocked:
        out.append(check("public_access", "pass", "public access blocked"))
    else:
        out.append(check("public_access", "fail", "public access is not blocked; block it"))
    return out


def _same_key(wanted: str, reported: str) -> bool:
    return reported == wanted or reported.startswith(wanted) or \
        reported.endswith("/" + wanted.split("/")[-1])
