"""A hand-built audit log whose report figures are computed by hand in the tests.

Fifteen events, one minute apart from 2026-11-01T08:00Z (event 15 two days later). Planted
violations: event 9 (data written after a blocked placement), 10 (allowed cross-border
transfer without a mechanism), 11 (phi on a backend the map marks without BAA), 12 (phi on a
backend the map does not know), 13 (cross-border placement allowed without a mechanism).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from residency_sdk.audit import AuditLog
from residency_sdk.events import AuditEvent
from residency_sdk.regionmap import RegionMap, load_region_map

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
KVKK = ("Turkish KVKK Art. 9 blocks phi data from TR to DE; sign one of: "
        "kvkk_standard_contract, bcr")
GDPR_US = "EU GDPR Chapter V blocks phi data from DE to US; sign one of: dpf, scc, bcr"

_DE = dict(tenant_id="charite-berlin", tenant_country="DE", data_class="phi")
_AZ_DE = dict(provider="azure", region="germanywestcentral", bucket="residency-de-azure-data")
_AWS_GB = dict(provider="aws", region="eu-west-2", bucket="residency-gb-aws-data")
_TR = dict(tenant_id="ankara-clinic", tenant_country="TR", data_class="phi",
           actor="svc-ingest")

EVENTS: list[dict[str, Any]] = [
    dict(operation="placement", outcome="allowed", source_location="DE",
         destination_country="DE", **_DE, **_AZ_DE),
    dict(operation="put", outcome="ok", source_location="DE", size=2000,
         object_key="studies/a.dcm", **_DE, **_AZ_DE),
    dict(operation="transfer_check", outcome="allowed", actor="dr-a", source_location="DE",
         destination_country="GB", is_transfer=True, mechanism="adequacy", **_DE),
    dict(operation="transfer", outcome="ok", actor="dr-a", source_location="DE",
         destination_location="GB", destination_country="GB", is_transfer=True,
         mechanism="adequacy", size=1000, object_key="studies/a.dcm", **_DE, **_AWS_GB),
    dict(operation="transfer", outcome="ok", actor="dr-a", source_location="DE",
         destination_location="GB", destination_country="GB", is_transfer=True,
         mechanism="adequacy", size=3000, object_key="studies/b.dcm", **_DE, **_AWS_GB),
    dict(operation="transfer_check", outcome="blocked", actor="dr-b", source_location="DE",
         destination_country="US", is_transfer=True, reasons=(GDPR_US,), **_DE),
    dict(operation="transfer_check", outcome="blocked", actor="dr-b", source_location="DE",
         destination_country="US", is_transfer=True, reasons=(GDPR_US,), **_DE),
    dict(operation="placement", outcome="blocked", source_location="DE",
         destination_country="DE", is_transfer=True, reasons=(KVKK,), **_TR, **_AZ_DE),
    dict(operation="put", outcome="ok", source_location="DE", size=700,
         object_key="studies/t.dcm", **_TR, **_AZ_DE),
    dict(operation="transfer", outcome="ok", actor="svc-sync", tenant_id="usz-zurich",
         tenant_country="CH", data_class="phi", source_location="CH",
         destination_location="US", destination_country="US", is_transfer=True,
         provider="aws", region="us-east-1", bucket="residency-us-aws-data", size=500,
         object_key="studies/z.dcm"),
    dict(operation="put", outcome="ok", actor="svc-mayo", tenant_id="mayo-rochester",
         tenant_country="US", data_class="phi", source_location="US", provider="gcp",
         region="us-central1", bucket="residency-us-gcp-data", size=4096,
         object_key="studies/m.dcm"),
    dict(operation="get", outcome="ok", actor="svc-rpa", tenant_id="rpa-sydney",
         tenant_country="AU", data_class="phi", source_location="AU", provider="aws",
         region="ap-southeast-2", bucket="rogue-bucket", size=10, object_key="r.dcm"),
    dict(operation="placement", outcome="allowed", actor="svc-akl", tenant_id="auckland-city",
         tenant_country="NZ", data_class="phi", source_location="AU",
         destination_country="AU", is_transfer=True, provider="aws",
         region="ap-southeast-2", bucket="residency-au-aws-data"),
    dict(operation="transfer_check", outcome="allowed", actor="svc-rpa", tenant_id="rpa-sydney",
         tenant_country="AU", data_class="anonymised", source_location="AU",
         destination_country="US", is_transfer=True, mechanism="anonymised"),
]
LATE: dict[str, Any] = dict(operation="put", outcome="ok", source_location="DE", size=99999,
                            object_key="studies/late.dcm", **_DE, **_AZ_DE)


def at(seq: int) -> str:
    """The normalised report time of event ``seq`` (1-based)."""
    when = T0 + timedelta(minutes=seq) if seq <= len(EVENTS) else T0 + timedelta(days=2)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sec(seq: int) -> str:
    """The time of event ``seq`` as the report shows it (to the second)."""
    return at(seq)[:19] + "Z"


def write_fixture_log(path: Path, *, hmac_key: bytes | None = None) -> Path:
    """Write the fixture events (1..15) to a new audit log at ``path``."""
    events = [AuditEvent(time=T0 + timedelta(minutes=i), **fields)
              for i, fields in enumerate(EVENTS, start=1)]
    events.append(AuditEvent(time=T0 + timedelta(days=2), **LATE))
    with AuditLog(path, hmac_key=hmac_key) as log:
        log.append_many(events)
    return path


def fixture_map(tmp_path: Path) -> RegionMap:
    """The default map, except that the US GCP backend has no BAA."""
    overlay = tmp_path / "no-baa.yaml"
    overlay.write_text("extends: default\nname: audit-fixture\nlocations:\n  US:\n"
                       "    backends:\n      gcp: {baa: false}\n", encoding="utf-8")
    return load_region_map(overlay)
