"""Service configuration: where the region map, data, audit log, tenants and models are.

Read from environment variables so the service runs the same under uvicorn, in a
container or in the tests:

``IMAGING_MAP``          region map (default: the packaged map)
``IMAGING_LOCAL_ROOT``   use the embedded local backend under this folder (no cloud needed)
``IMAGING_AUDIT``        audit log file (SQLite, hash-chained)
``IMAGING_TENANTS``      JSON file: ``{"clinic-17": {"country": "TR",
                         "agreements": ["kvkk_standard_contract"]}, ...}``; an agreement
                         is a mechanism flag (unscoped) or an object of ``rs.Agreement``
                         fields (``{"mechanism": "scc", "destinations": ["US"],
                         "reference": "SCC-17", "signed_on": "2026-03-01"}``);
                         ``"out_of_scope": {"sgb5_393": "reason"}`` declares a clinic
                         outside a sector overlay
``IMAGING_REPORT_DRAFTER``  base URL of the report-drafting model, e.g.
                         ``https://drafter.example.com`` (unset: report drafting is off). Its
                         host must be a processor's host under ``processors:`` in the map;
                         the transfer rules decide, per clinic, whether a study summary may
                         go there.

Inference goes to the compute endpoint the region map declares for the clinic's location
(a loopback ``http://127.0.0.1:PORT`` endpoint for a local model server in tests), through
``res.compute_for``: the map is the only list of places study data may be sent.
``IMAGING_RESULT_CATEGORY``  retention category of stored results (default ``imaging_upload``)
``IMAGING_MAX_STUDY_BYTES``  largest study accepted (default 2 GiB; larger: ``413``)
``IMAGING_RETRY_AFTER``  seconds a ``503`` answer asks the client to wait (default 10)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import residency_sdk as rs


class ConfigError(rs.ResidencyError):
    """The service configuration is missing or malformed."""


@dataclass(frozen=True)
class TenantRecord:
    """A clinic registered with the service.

    ``agreements`` holds mechanism flags (``"scc"``: unscoped) and/or scoped
    :class:`rs.Agreement` values; ``out_of_scope`` pairs a sector overlay id with the
    stated reason the clinic is outside it."""

    id: str
    country: str
    agreements: frozenset[str | rs.Agreement] = frozenset()
    out_of_scope: tuple[tuple[str, str], ...] = ()

    def tenant(self) -> rs.Tenant:
        return rs.Tenant(id=self.id, country=self.country, agreements=self.agreements,
                         out_of_scope=self.out_of_scope)


@dataclass(frozen=True)
class ServiceConfig:
    """Everything the service needs to start."""

    map_path: Path | None = None
    local_root: Path | None = None
    audit_path: Path | None = None
    tenants: dict[str, TenantRecord] = field(default_factory=dict)
    report_drafter_url: str | None = None
    result_category: str = "imaging_upload"
    inference_timeout: float = 30.0
    max_study_bytes: int = 2 * 1024 ** 3
    retry_after: int = 10

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ServiceConfig:
        """Build the configuration from ``IMAGING_*`` environment variables."""
        env = dict(os.environ if env is None else env)

        def path(name: str) -> Path | None:
            return Path(env[name]) if env.get(name) else None

        tenants_file = path("IMAGING_TENANTS")
        if tenants_file is None:
            raise ConfigError("IMAGING_TENANTS is not set: point it at a JSON file of "
                              "registered clinics ({\"clinic-17\": {\"country\": \"DE\"}})")
        if env.get("IMAGING_COMPUTE"):
            # Removed: a URL mapping beside the map was a second, unguarded list of where
            # studies may go. Refuse rather than silently send studies elsewhere.
            raise ConfigError(
                "IMAGING_COMPUTE is no longer read: declare each location's model server as "
                "its compute endpoint in the region map (locations.<LOC>.compute[].endpoint, "
                "http://127.0.0.1:PORT for a local server; see "
                "examples/imaging_service/local-map.yaml) and unset IMAGING_COMPUTE")
        drafter = env.get("IMAGING_REPORT_DRAFTER", "").strip().rstrip("/") or None
        return cls(map_path=path("IMAGING_MAP"), local_root=path("IMAGING_LOCAL_ROOT"),
                   audit_path=path("IMAGING_AUDIT"), tenants=load_tenants(tenants_file),
                   report_drafter_url=drafter,
                   result_category=env.get("IMAGING_RESULT_CATEGORY", "imaging_upload"),
                   max_study_bytes=_positive(env, "IMAGING_MAX_STUDY_BYTES",
                                             cls.max_study_bytes),
                   retry_after=_positive(env, "IMAGING_RETRY_AFTER", cls.retry_after))


def _positive(env: dict[str, str], name: str, default: int) -> int:
    """A positive whole number from ``env[name]`` (``default`` when unset)."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) == 0:
        raise ConfigError(f"{name}={raw!r} is not a positive whole number: set it to one "
                          f"(default {default}) or unset it")
    return int(raw)


def load_tenants(path: Path) -> dict[str, TenantRecord]:
    """The tenant registry: clinic id -> country, signed transfer agreements and the
    sector overlays the clinic is declared outside of."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"tenant registry {path} is unreadable: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"tenant registry {path} must be a JSON object of clinics")
    tenants = {}
    for tenant_id, entry in raw.items():
        if not isinstance(entry, dict) or "country" not in entry:
            raise ConfigError(f"tenant {tenant_id!r} in {path} needs a 'country'")
        where = f"tenant {tenant_id!r} in {path}"
        record = TenantRecord(id=tenant_id, country=entry["country"],
                              agreements=_agreements(entry.get("agreements", []), where),
                              out_of_scope=_out_of_scope(entry.get("out_of_scope", {}), where))
        try:
            # Validate id, country, agreements and overlays now, not on the first request.
            record.tenant()
        except rs.ResidencyError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        tenants[tenant_id] = record
    return tenants


def _agreements(items: object, where: str) -> frozenset[str | rs.Agreement]:
    """A clinic's ``agreements``: mechanism flags and/or objects of rs.Agreement fields."""
    if not isinstance(items, list):
        raise ConfigError(f"{where}: 'agreements' must be a list of mechanism flags or "
                          f"agreement objects, got {items!r}")
    out: set[str | rs.Agreement] = set()
    for n, item in enumerate(items, 1):
        if isinstance(item, str):
            out.add(item)  # a bare flag: an unscoped agreement
        elif isinstance(item, dict):
            try:
                out.add(rs.Agreement(**item))
            except rs.ResidencyError as exc:
                named = repr(item["mechanism"]) if "mechanism" in item else "no mechanism"
                raise ConfigError(f"{where}: agreement {n} ({named}): {exc}") from None
        else:
            raise ConfigError(f"{where}: agreement {n} must be a mechanism flag such as "
                              "\"scc\" or an object such as {\"mechanism\": \"scc\", "
                              f"\"destinations\": [\"US\"]}}, got {item!r}")
    return frozenset(out)


def _out_of_scope(value: object, where: str) -> tuple[tuple[str, str], ...]:
    """A clinic's ``out_of_scope``: sector overlay id -> the stated reason."""
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigError(f"{where}: 'out_of_scope' must map an overlay id to the reason "
                          "the clinic is outside it, e.g. {\"sgb5_393\": \"private clinic, "
                          f"not an SGB V provider\"}}, got {value!r}")
    return tuple(sorted(value.items()))

