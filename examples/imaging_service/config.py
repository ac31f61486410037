"""Service configuration: where the region map, data, audit log, tenants and models are.

Read from environment variables so the service runs the same under uvicorn, in a
container or in the tests:

``IMAGING_MAP``          region map (default: the packaged map)
``IMAGING_LOCAL_ROOT``   use the embedded local backend under this folder (no cloud needed)
``IMAGING_AUDIT``        audit log file (SQLite, hash-chained)
``IMAGING_TENANTS``      JSON file: ``{"clinic-17": {"country": "TR",
                         "agreements": ["kvkk_standard_contract"]}, ...}``
``IMAGING_COMPUTE``      JSON object mapping a location's compute endpoint (from the map)
                         to the URL of the model server serving it, e.g.
                         ``{"https://inference.de.residency.example": "http://127.0.0.1:9001"}``
``IMAGING_RESULT_CATEGORY``  retention category of stored results (default ``imaging_upload``)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import residency_sdk as rs


class ConfigError(rs.ResidencyError):
    """The service configuration is missing or malformed."""


@dataclass(frozen=True)
class TenantRecord:
    """A clinic registered with the service."""

    id: str
    country: str
    agreements: frozenset[str] = frozenset()

    def tenant(self) -> rs.Tenant:
        return rs.Tenant(id=self.id, country=self.country, agreements=self.agreements)


@dataclass(frozen=True)
class ServiceConfig:
    """Everything the service needs to start."""

    map_path: Path | None = None
    local_root: Path | None = None
    audit_path: Path | None = None
    tenants: dict[str, TenantRecord] = field(default_factory=dict)
    compute_urls: dict[str, str] = field(default_factory=dict)
    result_category: str = "imaging_upload"
    inference_timeout: float = 30.0

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
        return cls(map_path=path("IMAGING_MAP"), local_root=path("IMAGING_LOCAL_ROOT"),
                   audit_path=path("IMAGING_AUDIT"), tenants=load_tenants(tenants_file),
                   compute_urls=_json_object(env.get("IMAGING_COMPUTE", "{}"),
                                             "IMAGING_COMPUTE"),
                   result_category=env.get("IMAGING_RESULT_CATEGORY", "imaging_upload"))


def load_tenants(path: Path) -> dict[str, TenantRecord]:
    """The tenant registry: clinic id -> country and signed transfer mechanisms."""
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
        record = TenantRecord(id=tenant_id, country=entry["country"],
                              agreements=frozenset(entry.get("agreements", [])))
        record.tenant()  # validate id, country and flags now, not on the first request
        tenants[tenant_id] = record
    return tenants


def _json_object(text: str, name: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(f"{name} must be a JSON object of compute endpoint -> URL")
    return value
