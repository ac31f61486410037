"""Transfer-audit report benchmark: time and peak memory of ``build_report`` plus every
rendering over a realistic 1,000,000-event log.

Run:  .venv/bin/python benchmarks/bench_report.py [--events 1000000] [--rounds 3]
                                                  [--keep DIR] [--json OUT]

Targets: report (verify + aggregate) and rendering of every format <= 8 s wall and
<= 200 MB peak RSS for 1,000,000 events.

The log is filled on disk (a new folder under /tmp, or ``--keep DIR``, where a complete
log of the same size is reused so repeated runs do not refill it; never /dev/shm or
tmpfs, where I/O costs nothing) with the events the SDK itself writes: puts and gets
written ahead (an ``intent``, then the outcome naming it in ``intent_id``), transfer
checks allowed and blocked, transfers (check, intent, outcome), refused writes, deletes,
retention deletions and erasures of keys written earlier, egress calls to in-country
compute and to a third-party processor, for 11 tenants in 9 countries. Decisions come
from the packaged rules (:class:`~residency_sdk.policy.ResidencyPolicy`), so reasons,
mechanisms and agreements are the real ones.

Each round runs the report in a fresh child process (this script with ``--child``), so
its peak RSS is the report's own, not the filler's. The child prints JSON: wall time of
the build and of the renderings, CPU time, peak RSS. The parent prints a table per round
and the median, against the targets, with the machine's facts. Every round reads a log
the fill (or the previous round) left in the page cache: a warm-cache figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

TARGET_WALL_S = 8.0
TARGET_RSS_MB = 200.0
SEED = 20261101
GENERATOR_VERSION = 4  # bump when the mix changes: a kept log of another version is refilled
BATCH = 5_000  # events per append_many (one commit each)
START = datetime(2026, 9, 1, tzinfo=UTC)
SPAN = timedelta(days=92)  # September to November: a quarter of activity
EVENTS_PER_OP = 2.1  # about what the mix below averages (spreads the ops over SPAN)

# --- the simulated estate --------------------------------------------------------------


@dataclass
class TenantSpec:
    """A tenant, where its data lives, and where it sends data."""

    id: str
    country: str
    location: str
    agreements: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    """(mechanism, reference, destinations), signed 2026-01-10, expiring 2028."""
    out_of_scope: tuple[tuple[str, str], ...] = ()
    destinations: tuple[str, ...] = ()
    """Locations it transfers to (allowed or blocked: the rules decide)."""
    weight: int = 10
    keys: list[int] = field(default_factory=list)


TENANTS = [
    TenantSpec("charite-berlin", "DE", "DE", (("scc", "SCC-2026-17", ("US",)),),
               (("sgb5_393", "university hospital outside statutory health insurance"),),
               ("FR", "GB", "US", "CH"), 18),
    TenantSpec("uk-essen", "DE", "DE", destinations=("FR", "GB", "US"), weight=10),
    TenantSpec("aphp-paris", "FR", "FR", destinations=("DE", "CH", "US"), weight=14),
    TenantSpec("akh-wien", "AT", "DE", destinations=("CH", "GB", "US"), weight=8),
    TenantSpec("usz-zurich", "CH", "CH", destinations=("DE", "FR", "US"), weight=8),
    TenantSpec("nhs-leeds", "GB", "GB", (("uk_idta", "IDTA-LTH-2", ("US",)),),
               destinations=("DE", "US", "AU"), weight=12),
    # HIPAA needs a BAA with every holder of the PHI, the US cloud included.
    TenantSpec("mayo-rochester", "US", "US", (("baa", "BAA-MAYO-3", ("US", "DE", "GB")),),
               destinations=("DE", "GB", "AU"), weight=16),
    TenantSpec("rpa-sydney", "AU", "AU", (("app8_contract", "APP8-RPA-1", ("GB",)),),
               destinations=("GB", "US"), weight=7),
    TenantSpec("auckland-dhb", "NZ", "AU", destinations=("US", "GB"), weight=4),
    TenantSpec("acibadem-istanbul", "TR", "DE",
               (("kvkk_standard_contract", "KVKK-SC-88", ("DE",)),), destinations=("FR",),
               weight=5),
    # No KVKK contract: its data may not be placed in Germany, so its writes are refused.
    TenantSpec("bosphorus-clinic", "TR", "DE", destinations=("FR",), weight=1),
]
REFUSED = TENANTS[-1]
COMPUTE = {"DE": "https://inference.de.residency.example/v1/segment",
           "FR": "https://inference.fr.residency.example/v1/segment",
           "CH": "https://inference.ch.residency.example/v1/segment",
           "GB": "https://inference.gb.residency.example/v1/segment",
           "US": "https://inference.us.residency.example/v1/segment",
           "AU": "https://inference.au.residency.example/v1/segment"}
PROCESSOR = ("drafter", "https://api.drafter.example/v1/draft", "US")
PURPOSES = ("treatment", "treatment", "treatment", "radiotherapy-planning", "research",
            "quality-assurance")
# (operation kind, weight): about 2.1 events per operation.
MIX = [("put", 27), ("get", 30), ("check_allowed", 5), ("check_blocked", 3),
       ("transfer", 8), ("transfer_blocked", 2), ("put_blocked", 1), ("delete", 4),
       ("retention_delete", 6), ("egress_compute", 7), ("egress_processor", 3),
       ("get_missing", 1), ("list", 2), ("erase", 0.02)]


def _log_size(log: Path) -> int:
    return sum(p.stat().st_size for p in log.parent.glob(log.name + "*") if p.is_file())


# --- filling the log -------------------------------------------------------------------


class Estate:
    """Decisions and storage targets from the packaged region map and rules (cached)."""

    def __init__(self) -> None:
        from residency_sdk.agreements import Agreement
        from residency_sdk.model import Tenant
        from residency_sdk.policy import ResidencyPolicy
        from residency_sdk.regionmap import load_region_map

        self.policy = ResidencyPolicy.load()
        self.map = load_region_map(None)
        self.tenants: dict[str, Any] = {}
        for spec in TENANTS:
            agreements = frozenset(
                Agreement(mechanism, reference=ref, destinations=frozenset(dests),
                          data_classes=frozenset({"phi", "personal"}),
                          signed_on=date(2026, 1, 10), expires_on=date(2028, 1, 1),
                          **({"notified_on": date(2026, 1, 12)}
                             if mechanism == "kvkk_standard_contract" else {}))
                for mechanism, ref, dests in spec.agreements)
            self.tenants[spec.id] = Tenant(id=spec.id, country=spec.country,
                                           agreements=agreements,
                                           out_of_scope=spec.out_of_scope)
        self._decisions: dict[tuple[str, str, str, bool], Any] = {}
        from residency_sdk import events

        # Newer event schemas name the decision an operation rests on and its basis;
        # fill them when this checkout has them, so the log is what the SDK writes.
        self.fields = set(events.AuditEvent.model_fields)
        self.basis_of = getattr(events, "basis_of", None)

    def decide(self, tenant_id: str, to: str, data_class: str,
               placement: bool = False) -> Any:
        """The rules' decision (a placement: the tenant's data in location ``to``)."""
        key = (tenant_id, to, data_class, placement)
        if key not in self._decisions:
            tenant = self.tenants[tenant_id]
            if placement:
                self._decisions[key] = self.policy.placement_decision(tenant, data_class)
            else:
                source = self.map.locations[_spec(tenant_id).location]
                self._decisions[key] = self.policy.decide(
                    tenant, self.map.locations[to].country, data_class,
                    source=getattr(source, "country", _spec(tenant_id).location))
        return self._decisions[key]

    def decision_fields(self, decision: Any) -> dict[str, Any]:
        out = {"is_transfer": decision.is_transfer, "mechanism": decision.mechanism,
               "regimes": decision.regimes, "reasons": decision.reasons,
               "agreements": decision.agreements,
               "destination_country": decision.destination}
        if self.basis_of is not None and "basis" in self.fields:
            out["basis"] = self.basis_of(decision)
        return out

    def target(self, location: str, provider: str) -> Any:
        return self.map.locations[location].backends[provider]


def _spec(tenant_id: str) -> TenantSpec:
    return next(t for t in TENANTS if t.id == tenant_id)


class Filler:
    """Makes the events of simulated operations, in time order."""

    def __init__(self, n_events: int, seed: int = SEED) -> None:
        from residency_sdk.events import AuditEvent, new_event_id

        self.event_cls = AuditEvent
        self.new_id = new_event_id
        self.rng = random.Random(seed)
        self.estate = Estate()
        self.now = START
        self.gap = SPAN.total_seconds() / max(n_events / EVENTS_PER_OP, 1)
        self.key_pool = max(1_000, min(200_000, n_events // 5))  # distinct object keys
        self.next_key = 0
        self.placed: dict[tuple[str, date], str | None] = {}  # placement decided per day
        self.ops, self.weights = zip(*MIX, strict=True)
        self.tenant_weights = [t.weight for t in TENANTS]
        self.erasures = 0

    # -- helpers --

    def event(self, **fields: Any) -> Any:
        fields = {k: v for k, v in fields.items() if k in self.estate.fields}
        return self.event_cls.model_validate(fields)

    def tick(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now

    def base(self, spec: TenantSpec, actor: str, purpose: str | None) -> dict[str, Any]:
        return {"actor": actor, "purpose": purpose, "tenant_id": spec.id,
                "tenant_country": spec.country}

    def storage(self, spec: TenantSpec, location: str | None = None) -> dict[str, Any]:
        """Where an operation of ``spec`` lands: mostly the location's default provider,
        sometimes another; now and then the in-country failover."""
        loc = location or spec.location
        default = self.estate.map.locations[loc].default_provider
        provider = default if self.rng.random() < 0.8 else self.rng.choice(["aws", "gcp"])
        target = self.estate.target(loc, provider)
        if self.rng.random() < 0.005 and target.failover_region:
            from residency_sdk.regions import FAILOVER_SUFFIX

            return {"source_location": loc, "provider": target.provider,
                    "region": target.failover_region,
                    "bucket": target.bucket + FAILOVER_SUFFIX, "served_by": "failover"}
        return {"source_location": loc, "provider": target.provider, "region": target.region,
                "bucket": target.bucket, "served_by": "primary"}

    def size(self, kind: str) -> int:
        if kind == "image":  # DICOM instances and series archives: 100 kB to ~50 MB
            return int(min(self.rng.lognormvariate(13.2, 1.1), 400e6))
        if kind == "doc":  # reports and structured data
            return int(self.rng.lognormvariate(9.5, 0.9))
        return int(self.rng.lognormvariate(11, 1.3))  # request bodies

    def key(self, spec: TenantSpec, n: int) -> str:
        study = n // 40
        if n % 9 == 0:
            return f"{spec.id}/reports/{study:07d}/report-{n:08d}.json"
        return f"{spec.id}/studies/{study:07d}/series-{n % 7}/image-{n:08d}.dcm"

    def placement(self, spec: TenantSpec, actor: str) -> tuple[list[Any], dict[str, Any], Any]:
        """The day's placement decision of the tenant's phi (emitted once per day), and
        the fields writes carry about it."""
        decision = self.estate.decide(spec.id, spec.location, "phi", placement=True)
        out: list[Any] = []
        day = self.now.date()
        if (spec.id, day) not in self.placed:
            event = self.event(
                time=self.now, operation="placement",
                outcome="allowed" if decision.allowed else "blocked",
                **self.base(spec, actor, None), data_class="phi",
                source_location=spec.location, **self.estate.decision_fields(decision))
            self.placed[(spec.id, day)] = event.event_id
            out.append(event)
        fields = {"decision_id": self.placed[(spec.id, day)],
                  **self.estate.decision_fields(decision)}
        if decision.allowed:
            fields.pop("reasons")
        return out, fields, decision

    def written_ahead(self, operation: str, fields: dict[str, Any],
                      outcome: dict[str, Any], result: str = "ok") -> list[Any]:
        """An intent and the outcome naming it, a few milliseconds apart."""
        intent = self.event(time=self.now, operation=operation, outcome="intent", **fields)
        done = self.event(**{**fields, **outcome}, time=self.tick(self.rng.uniform(0.002, 0.4)),
                          operation=operation, outcome=result, intent_id=intent.event_id)
        return [intent, done]

    # -- operations --

    def operation(self) -> list[Any]:
        spec = self.rng.choices(TENANTS, self.tenant_weights)[0]
        kind = self.rng.choices(self.ops, self.weights)[0]
        self.tick(self.rng.expovariate(1 / self.gap))
        if kind == "put_blocked":
            spec = REFUSED  # the writes refused are those of the tenant with no contract
        if spec is REFUSED and kind not in ("check_allowed", "check_blocked"):
            kind = "put_blocked"  # nothing of it was ever stored, so it only tries to write
        made: list[Any] = getattr(self, "op_" + kind)(spec)
        return made

    def op_put(self, spec: TenantSpec) -> list[Any]:
        actor = self.rng.choice(["svc-ingest", "svc-ingest", "svc-dicom-router",
                                 f"dr-{self.rng.randrange(40):02d}"])
        out, placement, _ = self.placement(spec, actor)
        if spec.keys and self.rng.random() < 0.1:  # an overwrite
            n = self.rng.choice(spec.keys)
        else:
            n = self.next_key % self.key_pool
            self.next_key += 1
            spec.keys.append(n)
        key = self.key(spec, n)
        size = self.size("doc" if key.endswith(".json") else "image")
        fields = {**self.base(spec, actor, self.rng.choice(PURPOSES)), "data_class": "phi",
                  **self.storage(spec), "object_key": key, **placement}
        if self.rng.random() < 0.00005:  # the process died mid-put: outcome unknown
            return [*out, self.event(time=self.now, operation="put", outcome="intent",
                                     **fields)]
        return out + self.written_ahead("put", fields, {
            "size": size, "checksum": f"sha256:{self.rng.getrandbits(256):064x}"})

    def op_put_blocked(self, spec: TenantSpec) -> list[Any]:
        actor = "svc-ingest"
        out, placement, decision = self.placement(spec, actor)
        assert not decision.allowed, f"{spec.id} may store its data: pick another tenant"
        n = self.next_key % self.key_pool
        self.next_key += 1
        reasons = "; ".join(decision.reasons)
        return [*out, self.event(
            time=self.now, operation="put", outcome="blocked",
            **self.base(spec, actor, "treatment"), data_class="phi", **self.storage(spec),
            object_key=self.key(spec, n), **placement,
            error=f"PlacementBlocked: tenant {spec.id!r} ({spec.country}) may not store phi "
                  f"data in location {spec.location}: {reasons}")]

    def op_get(self, spec: TenantSpec) -> list[Any]:
        if not spec.keys:
            return self.op_put(spec)
        actor = self.rng.choice(["svc-viewer", "svc-viewer", "svc-ai-contour",
                                 f"dr-{self.rng.randrange(40):02d}"])
        key = self.key(spec, self.rng.choice(spec.keys))
        fields = {**self.base(spec, actor, self.rng.choice(PURPOSES)), "data_class": "phi",
                  **self.storage(spec), "object_key": key}
        return self.written_ahead("get", fields, {
            "size": self.size("doc" if key.endswith(".json") else "image"),
            "checksum": f"sha256:{self.rng.getrandbits(256):064x}"})

    def op_get_missing(self, spec: TenantSpec) -> list[Any]:
        key = self.key(spec, self.rng.randrange(self.key_pool))
        fields = {**self.base(spec, "svc-viewer", "treatment"), "data_class": "phi",
                  **self.storage(spec), "object_key": key}
        return self.written_ahead("get", fields, {
            "error": f"ObjectNotFound: object {key!r} not found in "
                     f"{fields['provider']}:{fields['bucket']}"}, result="error")

    def op_list(self, spec: TenantSpec) -> list[Any]:
        fields = {**self.base(spec, "svc-viewer", "treatment"), **self.storage(spec),
                  "object_key": f"{spec.id}/studies/"}
        return self.written_ahead("list", fields, {})

    def check(self, spec: TenantSpec, dest: str, data_class: str,
              actor: str, purpose: str) -> tuple[Any, Any]:
        decision = self.estate.decide(spec.id, dest, data_class)
        event = self.event(
            time=self.now, operation="transfer_check",
            outcome="allowed" if decision.allowed else "blocked",
            **self.base(spec, actor, purpose), data_class=decision.data_class,
            source_location=decision.source, **self.estate.decision_fields(decision))
        return decision, event

    def pick_destination(self, spec: TenantSpec, allowed: bool | None,
                         data_class: str) -> str | None:
        choices = [d for d in spec.destinations
                   if allowed is None
                   or self.estate.decide(spec.id, d, data_class).allowed == allowed]
        return self.rng.choice(choices) if choices else None

    def op_check_allowed(self, spec: TenantSpec, allowed: bool = True) -> list[Any]:
        data_class = self.rng.choice(["phi", "phi", "personal"])
        # A tenant with no destination of that outcome asks about any of its destinations.
        dest = self.pick_destination(spec, allowed, data_class) or \
            self.rng.choice(spec.destinations)
        actor = f"dr-{self.rng.randrange(40):02d}"
        return [self.check(spec, dest, data_class, actor, self.rng.choice(PURPOSES))[1]]

    def op_check_blocked(self, spec: TenantSpec) -> list[Any]:
        return self.op_check_allowed(spec, allowed=False)

    def op_transfer(self, spec: TenantSpec, allowed: bool = True) -> list[Any]:
        if not spec.keys:
            return self.op_put(spec)
        data_class = self.rng.choice(["phi"] * 6 + ["personal"] * 2 + ["anonymised"] * 2)
        dest = self.pick_destination(spec, allowed, data_class)
        if dest is None:
            return self.op_get(spec)
        actor = self.rng.choice(["svc-transfer", f"dr-{self.rng.randrange(40):02d}"])
        purpose = self.rng.choice(["second-opinion", "research", "treatment"])
        decision, check = self.check(spec, dest, data_class, actor, purpose)
        key = self.key(spec, self.rng.choice(spec.keys))
        fields = {**self.base(spec, actor, purpose), "data_class": decision.data_class,
                  **self.storage(spec, dest), "source_location": spec.location,
                  "destination_location": dest, "object_key": key,
                  "decision_id": check.event_id, **self.estate.decision_fields(decision)}
        if data_class == "anonymised":
            fields["deid"] = ("profile=dicom-basic edition=2025b options=retain-uids "
                              f"removed=41 replaced=12 in=sha256:{self.rng.getrandbits(64):016x}"
                              f" out=sha256:{self.rng.getrandbits(64):016x}")
        if not decision.allowed:
            self.tick(0.001)
            return [check, self.event(time=self.now, operation="transfer", outcome="blocked",
                                      **fields, error="TransferBlocked: transfer blocked: "
                                      + "; ".join(decision.reasons))]
        self.tick(self.rng.uniform(0.001, 0.01))
        return [check, *self.written_ahead("transfer", fields, {
            "size": self.size("image"),
            "checksum": f"sha256:{self.rng.getrandbits(256):064x}"})]

    def op_transfer_blocked(self, spec: TenantSpec) -> list[Any]:
        return self.op_transfer(spec, allowed=False)

    def take_key(self, spec: TenantSpec) -> int | None:
        if not spec.keys:
            return None
        i = self.rng.randrange(len(spec.keys))
        spec.keys[i], spec.keys[-1] = spec.keys[-1], spec.keys[i]
        return spec.keys.pop()

    def op_delete(self, spec: TenantSpec) -> list[Any]:
        n = self.take_key(spec)
        if n is None:
            return self.op_put(spec)
        fields = {**self.base(spec, "svc-ingest", "treatment"), "data_class": "phi",
                  **self.storage(spec), "object_key": self.key(spec, n)}
        return self.written_ahead("delete", fields, {})

    def op_retention_delete(self, spec: TenantSpec) -> list[Any]:
        n = self.take_key(spec)
        if n is None:
            return self.op_put(spec)
        key = self.key(spec, n)
        size = self.size("image")
        when = (self.now - timedelta(hours=24, minutes=self.rng.randrange(600))).isoformat()
        fields = {**self.base(spec, "retention-sweeper", "retention:imaging_upload"),
                  "data_class": "phi", **self.storage(spec), "object_key": key,
                  "size": size, "checksum": f"sha256:{self.rng.getrandbits(256):064x}",
                  "reasons": (f"expired: category imaging_upload keeps 24 h; created {when}",)}
        return self.written_ahead("retention_delete", fields, {
            "reasons": (*fields["reasons"], "0 old version(s) and delete marker(s) of the "
                        "key deleted with it")})

    def op_erase(self, spec: TenantSpec) -> list[Any]:
        self.erasures += 1
        request = f"er-{self.erasures:05d}"
        out: list[Any] = []
        for provider in ("azure", "aws"):
            target = self.estate.target(spec.location, provider)
            fields = {**self.base(spec, "erasure-worker", f"erasure:{request}"),
                      "source_location": spec.location, "provider": target.provider,
                      "region": target.region, "bucket": target.bucket,
                      "served_by": "primary",
                      "reasons": (f"{provider}: erasure starting (attempt 1)",
                                  "stated: patient request under GDPR Art. 17")}
            deleted = self.rng.randrange(1, 400)
            out += self.written_ahead("erase", fields, {
                "size": deleted * 2_000_000,
                "reasons": (f"{provider}: {deleted} objects, 0 old versions deleted, 0 held, "
                            "status done", "stated: patient request under GDPR Art. 17")})
        return out

    def op_egress_compute(self, spec: TenantSpec) -> list[Any]:
        decision = self.estate.decide(spec.id, spec.location, "phi")
        country = self.estate.map.locations[spec.location].country
        fields = {**self.base(spec, "svc-ai-contour", "radiotherapy-planning"),
                  "data_class": "phi", "source_location": spec.location,
                  **self.estate.decision_fields(decision),
                  "destination_country": country, "is_transfer": False,
                  "endpoint": COMPUTE[spec.location]}
        return self.written_ahead("egress", fields, {
            "status": 200, "size": self.size("image"), "bytes_received": self.size("doc")})

    def op_egress_processor(self, spec: TenantSpec) -> list[Any]:
        processor, endpoint, country = PROCESSOR
        decision = self.estate.decide(spec.id, country, "personal")
        fields = {**self.base(spec, "svc-letters", "treatment"), "data_class": "personal",
                  "source_location": spec.location, **self.estate.decision_fields(decision),
                  "endpoint": endpoint, "processor": processor}
        if not decision.allowed:
            return [self.event(time=self.now, operation="egress", outcome="blocked", **fields,
                               error="EgressBlocked: " + "; ".join(decision.reasons))]
        return self.written_ahead("egress", fields, {
            "status": 200, "size": self.size("body"), "bytes_received": self.size("doc")})

    def events(self, n: int) -> Iterator[list[Any]]:
        """Batches of events, exactly ``n`` in all."""
        batch: list[Any] = []
        made = 0
        while made < n:
            events = self.operation()
            if made + len(events) > n:  # the last few: single decisions, no open intent
                spec = self.rng.choice(TENANTS)
                events = [self.check(spec, spec.location, "phi", "svc-transfer",
                                     "treatment")[1] for _ in range(n - made)]
            batch += events
            made += len(events)
            if len(batch) >= BATCH:
                yield batch
                batch = []
        if batch:
            yield batch


def fill(log: Path, n: int) -> None:
    """Fill a new log at ``log`` with ``n`` events (written to a temporary name first, so
    an interrupted fill is never mistaken for a complete one)."""
    from residency_sdk.audit import AuditLog

    partial = log.with_name(log.name + ".partial")
    for stale in log.parent.glob(partial.name + "*"):
        stale.unlink()
    started = time.perf_counter()
    audit = AuditLog(partial)
    try:
        done = 0
        for batch in Filler(n).events(n):
            audit.append_many(batch, durable=False)
            done += len(batch)
            if done % 100_000 < len(batch):
                rate = done / (time.perf_counter() - started)
                print(f"  filled {done:>9,} events ({rate:,.0f}/s)", flush=True)
        audit.flush()
        assert len(audit) == n, (len(audit), n)
    finally:
        audit.close()
    for suffix in ("-wal", "-shm"):  # a clean close checkpoints the WAL; move any leftover
        side = Path(str(partial) + suffix)
        if side.exists():
            side.rename(Path(str(log) + suffix))
    partial.rename(log)
    print(f"  fill: {n:,} events in {time.perf_counter() - started:.1f} s", flush=True)


# --- the measured child ------------------------------------------------------------------


def child(log: Path) -> None:
    """Build and render the report once; print the measurements as one JSON line."""
    import resource

    wall0, cpu0 = time.perf_counter(), time.process_time()
    from residency_sdk.audit.render import FORMATS, render
    from residency_sdk.audit.report import build_report

    wall1 = time.perf_counter()
    report = build_report(log)
    wall2 = time.perf_counter()
    sizes: dict[str, int] = {}
    failed: dict[str, str] = {}
    for fmt in FORMATS:
        if fmt == "pdf":  # rendered by headless Chromium: not the report's own cost
            continue
        try:
            sizes[fmt] = len(render(report, fmt))
        except Exception as exc:  # one renderer's bug must not hide the build's figures
            failed[fmt] = f"{type(exc).__name__}: {exc}"
    wall3 = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({**_memory_now(),
        "import_s": wall1 - wall0, "build_s": wall2 - wall1, "render_s": wall3 - wall2,
        "total_s": wall3 - wall1, "cpu_s": time.process_time() - cpu0,
        # VmHWM is this process's own peak; ru_maxrss survives exec on Linux and would
        # report the parent's (the filler's) peak after a fill.
        "peak_rss_mb": _memory_now().get("end_vmhwm_mb", usage.ru_maxrss / 1024),
        "events": report.chain.events, "chain": report.chain_state.status,
        "violations": report.violation_total, "flows": len(report.flows),
        "blocked_rows": len(report.blocked), "tenants": len(report.tenants),
        "rendered_bytes": sizes, "render_errors": failed}))


def _memory_now() -> dict[str, float]:
    """Where the memory is at the end (Linux): anonymous (the heap, SQLite's caches and
    temp tables) versus file-backed pages, in MB; empty elsewhere."""
    out: dict[str, float] = {}
    try:
        with open("/proc/self/status") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                    out[f"end_{name.lower()}_mb"] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


def run_round(log: Path) -> dict[str, Any]:
    from residency_sdk.audit.chain import HMAC_KEY_ENV

    env = {k: v for k, v in os.environ.items() if k != HMAC_KEY_ENV}  # the log is unkeyed
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child",
                           str(log)], capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1],
                "stderr": proc.stderr[-4000:], "process_s": elapsed}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = elapsed
    return result


# --- the parent --------------------------------------------------------------------------


def workdir_for(keep: Path | None) -> Path:
    if keep is not None:
        path = keep
    else:
        base = Path("/tmp") if Path("/tmp").is_dir() else Path(tempfile.gettempdir())
        path = Path(tempfile.mkdtemp(prefix="bench-report-", dir=base))
    path.mkdir(parents=True, exist_ok=True)
    from bench_audit import filesystem  # the parent's only: the child's imports are timed

    resolved = path.resolve()
    fstype = filesystem(resolved)
    if resolved.is_relative_to("/dev/shm") or fstype in ("tmpfs", "ramfs"):
        sys.exit(f"{resolved} is on {fstype} (memory): the log must be on a disk")
    return resolved


def machine(workdir: Path) -> dict[str, Any]:
    from bench_audit import filesystem

    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"nproc": affinity or os.cpu_count(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "platform": platform.platform(), "dir": str(workdir),
            "filesystem": filesystem(workdir)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the log in DIR and reuse a complete one found there")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child)
        return
    if args.events < 1 or args.rounds < 1:
        parser.error("--events and --rounds must be at least 1")

    workdir = workdir_for(args.keep)
    facts = machine(workdir)
    log = workdir / f"report-{args.events}-v{GENERATOR_VERSION}.db"
    print(f"python {facts['python']}, sqlite {facts['sqlite']}, {facts['nproc']} cpus, "
          f"dir {workdir} ({facts['filesystem']})", flush=True)
    try:
        if log.exists():
            print(f"  reusing {log}", flush=True)
        else:
            fill(log, args.events)
        facts["log_bytes"] = _log_size(log)
        facts["load_before"] = os.getloadavg()
        rounds = []
        for i in range(args.rounds):
            result = run_round(log)
            rounds.append(result)
            if "error" in result:
                print(f"  round {i + 1}: FAILED: {result['error']}\n{result['stderr']}",
                      flush=True)
            else:
                print(f"  round {i + 1}: total {result['total_s']:.2f} s, "
                      f"peak {result['peak_rss_mb']:.0f} MB", flush=True)
        facts["load_after"] = os.getloadavg()
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    ok = [r for r in rounds if "error" not in r]
    if any(r.get("render_errors") for r in ok):
        print("  warning: some renderings failed; render and total times leave them out")
    median = ({k: statistics.median(r[k] for r in ok)
               for k in ("import_s", "build_s", "render_s", "total_s", "cpu_s",
                         "peak_rss_mb", "process_s")} if ok else {})
    print_table(args.events, facts, rounds, median)
    if args.json is not None:
        args.json.write_text(json.dumps({
            "events": args.events, "machine": facts, "rounds": rounds, "median": median,
            "targets": {"wall_s": TARGET_WALL_S, "peak_rss_mb": TARGET_RSS_MB}},
            indent=2) + "\n")
    if not ok:
        sys.exit("every round failed")


def print_table(n: int, facts: dict[str, Any], rounds: list[dict[str, Any]],
                median: dict[str, float]) -> None:
    def verdict(value: float, target: float) -> str:
        return "ok" if value <= target else "OVER"

    print(f"\nreport over {n:,} events; log {facts['log_bytes'] / 1e6:,.0f} MB on disk "
          f"({facts['filesystem']}); {facts['nproc']} cpus; load "
          f"{' '.join(f'{x:.2f}' for x in facts['load_before'])} before, "
          f"{' '.join(f'{x:.2f}' for x in facts['load_after'])} after; python "
          f"{facts['python']}, sqlite {facts['sqlite']}\n")
    print("| round | build (verify + aggregate) | render all | total wall | CPU | "
          "peak RSS | vs targets (8 s, 200 MB) |")
    print("|---|---|---|---|---|---|---|")
    rows = [(str(i + 1), r) for i, r in enumerate(rounds)]
    if median:
        rows.append(("median", median))
    for label, r in rows:
        if "error" in r:
            print(f"| {label} | failed: {r['error']} | | | | | |")
            continue
        render_s = f"{r['render_s']:.2f} s" + (
            f" ({len(r['render_errors'])} format(s) FAILED)" if r.get("render_errors") else "")
        print(f"| {label} | {r['build_s']:.2f} s | {render_s} | "
              f"{r['total_s']:.2f} s | {r['cpu_s']:.2f} s | {r['peak_rss_mb']:.0f} MB | "
              f"wall {verdict(r['total_s'], TARGET_WALL_S)}, "
              f"RSS {verdict(r['peak_rss_mb'], TARGET_RSS_MB)} |")
    first = next((r for r in rounds if "error" not in r), None)
    if first is not None:
        print(f"\nchain {first['chain']}, {first['events']:,} events, {first['flows']} flows, "
              f"{first['blocked_rows']} blocked rows, {first['tenants']} tenants, "
              f"{first['violations']} violations; rendered bytes {first['rendered_bytes']}; "
              f"interpreter + imports {first['import_s']:.2f} s (not in the totals)")
        for fmt, error in first.get("render_errors", {}).items():
            print(f"render {fmt} FAILED: {error}")


if __name__ == "__main__":
    main()
