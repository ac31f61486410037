"""What a tracked erasure plans (``plan_backends``) and how it destroys a tenant's key
material on one backend (``destroy_key``), pinned call by call.

Both are called directly, in-process, so every argument's and value's effect can be
observed: the plan is built from the packaged ``default`` region map (DE, FR, CH, US:
cloud backends with and without in-country failovers, and a ``local`` one) through a
``rs.Residency`` whose store opener refuses to open anything (planning only reads the map)
and a fake lineage; the key destruction runs on a store pool whose only store is a
scripted fake, with an audit emitter and a ``save`` that record, in one shared log, what
they were told and when. No emulator, network or subprocess is involved.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

import residency_sdk as rs
from residency_sdk.erasure.key_destruction import destroy_key
from residency_sdk.erasure.plan import PlannedBackend, plan_backends
from residency_sdk.erasure.request import (
    WHOLE_LINEAGE,
    BackendProgress,
    ErasureRequest,
    KeyProgress,
)
from residency_sdk.errors import AuditUnavailable, IntegrityError, ResidencyError, StorageError
from residency_sdk.events import AuditEmitter, AuditEvent
from residency_sdk.lineage import Lineage
from residency_sdk.model import StorageTarget, Tenant
from residency_sdk.regionmap import Role, load_region_map
from residency_sdk.storage.base import KeyDestruction
from residency_sdk.storage.memory import MemoryStore
from residency_sdk.storage.pool import StorePool

MAP_PATH = Path(__file__).resolve().parents[2] / "region_maps" / "default.yaml"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
FINISHED = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
EFFECTIVE = datetime(2026, 12, 9, 9, 30, tzinfo=UTC)
REQUEST_ID = "er-20261201-0a1b2c3d"
TENANT = Tenant(id="clinic-1", country="US")
INTERRUPTED = "by an interrupted earlier run of this request"


def _request(**over: Any) -> ErasureRequest:
    fields: dict[str, Any] = {
        "id": REQUEST_ID, "tenant_id": "clinic-1", "tenant_country": "DE", "location": "DE",
        "map_name": "default", "requested_at": NOW, "deadline": NOW + timedelta(days=30)}
    fields.update(over)
    return ErasureRequest(**fields)


# --- plan_backends -----------------------------------------------------------------------


def _refuse(target: StorageTarget, location: str) -> MemoryStore:
    raise AssertionError(f"planning opened a store: {target.provider} in {location}")


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[rs.Residency]:
    """The default map with its cloud backends (no local root); opening any store fails."""
    folder = tmp_path_factory.mktemp("cloud")
    res = rs.Residency.load(MAP_PATH, audit=str(folder / "audit.db"), storage=_refuse)
    yield res
    res.close()


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[rs.Residency]:
    """The default map on the embedded local backend; opening any store fails."""
    folder = tmp_path_factory.mktemp("local")
    res = rs.Residency.load(MAP_PATH, audit=str(folder / "audit.db"),
                            local_root=folder / "data", storage=_refuse)
    yield res
    res.close()


@dataclass
class FakeTrace:
    found: list[tuple[str, str]]
    unreachable: dict[str, str]

    def reached(self) -> list[tuple[str, str]]:
        return list(self.found)


@dataclass
class FakeLineage:
    """Answers ``trace`` with the pairs and unreachable locations given (or raises)."""

    found: list[tuple[str, str]] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)
    error: Exception | None = None
    asked: list[str] = field(default_factory=list)

    def trace(self, tenant_id: str) -> FakeTrace:
        self.asked.append(tenant_id)
        if self.error is not None:
            raise self.error
        return FakeTrace(self.found, dict(self.unreachable))

    def as_lineage(self) -> Lineage:
        return cast(Lineage, self)


def _planned(res: rs.Residency, location: str, provider: str,
             role: Role = "primary") -> PlannedBackend:
    loc = res.policy.location(location)
    target = loc.backends[provider] if role == "primary" else loc.failovers[provider]
    suffix = "@failover" if role == "failover" else ""
    name = f"{location}/{provider}:{target.bucket}{suffix}"
    return PlannedBackend(name, location, role, target)


def _earlier(location: str | None, provider: str) -> BackendProgress:
    return BackendProgress(backend=f"old-{provider}", provider=provider, region="r",
                           bucket="b", role="primary", location=location)


def _cannot_open(res: rs.Residency, location: str, provider: str) -> str:
    with pytest.raises(ResidencyError) as caught:
        res.policy.location(location).targets([provider])
    return (f"the tenant's data reached provider {provider!r} in {location}, which region "
            f"map 'default' cannot open ({caught.value}); restore that backend in the map, "
            "or erase it there yourself, and run again")


def test_the_home_providers_come_first_then_the_lineage_sorted_then_earlier_backends(
        cloud: rs.Residency) -> None:
    request = _request(lineage_unreachable={"GB": "an older run's reason"}, backends={
        "a": _earlier("CH", "azure"), "b": _earlier(None, "local"),
        "c": _earlier("FR", "aws")})
    lineage = FakeLineage(found=[("US", "gcp"), ("FR", "aws"), ("DE", "azure")])

    plan = plan_backends(request, cloud.policy, cloud.stores, lineage.as_lineage())

    assert lineage.asked == ["clinic-1"]
    assert plan == [
        # DE's providers in the pool's data_providers order (aws, gcp, azure),
        # each primary then its failover; aws has none.
        _planned(cloud, "DE", "aws"),
        _planned(cloud, "DE", "gcp"), _planned(cloud, "DE", "gcp", "failover"),
        _planned(cloud, "DE", "azure"), _planned(cloud, "DE", "azure", "failover"),
        # then the lineage's pairs sorted (DE/azure already planned)
        _planned(cloud, "FR", "aws"),
        _planned(cloud, "US", "gcp"), _planned(cloud, "US", "gcp", "failover"),
        # then the earlier run's backends (FR/aws already planned; no location: DE)
        _planned(cloud, "CH", "azure"), _planned(cloud, "CH", "azure", "failover"),
        _planned(cloud, "DE", "local"),
    ]
    assert [p.name for p in plan][:3] == [
        "DE/aws:residency-de-aws-data", "DE/gcp:residency-de-gcp-data",
        "DE/gcp:residency-de-gcp-data-failover@failover"]
    assert request.lineage_unreachable == {}  # replaced, the old reason is gone


def test_the_requests_providers_narrow_the_home_location_in_their_order(
        cloud: rs.Residency) -> None:
    request = _request(providers=["azure", "aws"])

    plan = plan_backends(request, cloud.policy, cloud.stores, FakeLineage().as_lineage())

    assert plan == [_planned(cloud, "DE", "azure"), _planned(cloud, "DE", "azure", "failover"),
                    _planned(cloud, "DE", "aws")]


def test_a_location_scope_ignores_the_lineage(cloud: rs.Residency) -> None:
    request = _request(scope="location", providers=["aws"],
                       lineage_unreachable={"GB": "an older run's reason"})
    lineage = FakeLineage(found=[("US", "gcp")], unreachable={"FR": "StorageError: down"})

    plan = plan_backends(request, cloud.policy, cloud.stores, lineage.as_lineage())

    assert lineage.asked == []
    assert plan == [_planned(cloud, "DE", "aws")]
    assert request.lineage_unreachable == {}


def test_without_a_lineage_a_local_pool_plans_only_the_local_backend(
        local: rs.Residency) -> None:
    request = _request()

    plan = plan_backends(request, local.policy, local.stores, None)

    assert plan == [_planned(local, "DE", "local")]
    assert [p.name for p in plan] == ["DE/local:residency-de-local-data"]
    assert request.lineage_unreachable == {}


def test_an_unreadable_lineage_is_recorded_under_the_whole_lineage_key(
        cloud: rs.Residency) -> None:
    request = _request(providers=["aws"], backends={"a": _earlier("CH", "aws")})
    lineage = FakeLineage(error=IntegrityError("corrupt footprint"))

    plan = plan_backends(request, cloud.policy, cloud.stores, lineage.as_lineage())

    assert WHOLE_LINEAGE == "*"
    assert request.lineage_unreachable == {"*": "IntegrityError: corrupt footprint"}
    assert plan == [_planned(cloud, "DE", "aws"), _planned(cloud, "CH", "aws")]


def test_audit_unavailable_from_the_trace_is_raised_not_recorded(
        cloud: rs.Residency) -> None:
    request = _request(lineage_unreachable={"GB": "an older run's reason"})
    lineage = FakeLineage(error=AuditUnavailable("audit down"))

    with pytest.raises(AuditUnavailable, match="audit down"):
        plan_backends(request, cloud.policy, cloud.stores, lineage.as_lineage())
    assert request.lineage_unreachable == {"GB": "an older run's reason"}


def test_a_place_the_map_cannot_open_is_recorded_with_its_fix_and_skipped(
        cloud: rs.Residency) -> None:
    request = _request(providers=["aws"])
    lineage = FakeLineage(found=[("ZZ", "aws"), ("FR", "aws"), ("DE", "oracle")],
                          unreachable={"GB": "BackendUnavailable: down"})

    plan = plan_backends(request, cloud.policy, cloud.stores, lineage.as_lineage())

    # DE/oracle sorts first: skipping it must not stop the planning of FR/aws after it.
    assert plan == [_planned(cloud, "DE", "aws"), _planned(cloud, "FR", "aws")]
    assert request.lineage_unreachable == {
        "GB": "BackendUnavailable: down",
        "DE": _cannot_open(cloud, "DE", "oracle"),
        "ZZ": _cannot_open(cloud, "ZZ", "aws"),
    }
    assert request.lineage_unreachable["DE"].startswith(
        "the tenant's data reached provider 'oracle' in DE, which region map 'default' "
        "cannot open (location DE has no 'oracle' backend")


# --- destroy_key -------------------------------------------------------------------------


Log = list[tuple[Any, ...]]


class KeyStore(MemoryStore):
    """A store whose key calls answer what the test scripts, logged in ``log``."""

    def __init__(self, target: StorageTarget, log: Log) -> None:
        super().__init__(target)
        self.log = log
        self.key_id: str | Exception | None = "key-1"
        self.destroyed: KeyDestruction | Exception = KeyDestruction(
            tenant_id="clinic-1", status="destroyed")

    def tenant_key_id(self, tenant_id: str) -> str | None:
        self.log.append(("tenant_key_id", tenant_id))
        if isinstance(self.key_id, Exception):
            raise self.key_id
        return self.key_id

    def destroy_tenant_key(self, tenant_id: str) -> KeyDestruction:
        self.log.append(("destroy_tenant_key", tenant_id))
        if isinstance(self.destroyed, Exception):
            raise self.destroyed
        return self.destroyed


class Audit:
    """Records the intents and outcomes it is given, in the shared log."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.events: list[AuditEvent] = []

    def intent(self, event: AuditEvent) -> AuditEvent:
        self.log.append(("intent", event.outcome))
        self.events.append(event)
        return event

    def emit(self, event: AuditEvent) -> None:
        self.log.append(("emit", event.outcome))
        self.events.append(event)


@dataclass
class Run:
    """One destroy_key call's world: the item, store, audit and what save saw."""

    item: PlannedBackend
    request: ErasureRequest
    store: KeyStore
    audit: Audit
    log: Log
    saves: list[KeyProgress]

    def run(self, actor: str | None = "run-actor") -> None:
        def opener(target: StorageTarget, location: str) -> MemoryStore:
            self.log.append(("open", target, location))
            return self.store

        def save(request: ErasureRequest) -> None:
            assert request is self.request
            self.log.append(("save", request.keys[self.item.name].status))
            self.saves.append(request.keys[self.item.name].model_copy(deep=True))

        destroy_key(self.request, TENANT, self.item, stores=StorePool(opener=opener),
                    audit=cast(AuditEmitter, self.audit), clock=lambda: FINISHED,
                    actor=actor, save=save)

    @property
    def progress(self) -> KeyProgress:
        return self.request.keys[self.item.name]


def _world(role: Role = "primary", progress: dict[str, Any] | None = None) -> Run:
    us = load_region_map(MAP_PATH).locations["US"]
    target = us.backends["aws"] if role == "primary" else us.failovers["aws"]
    suffix = "@failover" if role == "failover" else ""
    item = PlannedBackend(f"US/aws:{target.bucket}{suffix}", "US", role, target)
    request = _request(tenant_country="US", location="US", actor="request-actor",
                       reason="contract ended", purpose="gdpr art 17")
    if progress is not None:
        request.keys[item.name] = KeyProgress(backend=item.name, location="US",
                                              provider="aws", **progress)
    log: Log = []
    return Run(item, request, KeyStore(target, log), Audit(log), log, [])


def _fields(event: AuditEvent) -> dict[str, Any]:
    return event.model_dump(exclude={"event_id", "time", "schema_", "sdk_version"})


def _event(run: Run, outcome: str, *, actor: str = "run-actor", reason: str,
           error: str | None = None, intent_id: str | None = None,
           served_by: str = "primary", region: str = "us-east-1",
           bucket: str = "residency-us-aws-data") -> dict[str, Any]:
    return {
        "operation": "erase", "outcome": outcome, "actor": actor,
        "purpose": f"erasure_keys:{REQUEST_ID}", "tenant_id": "clinic-1",
        "tenant_country": "US", "data_class": None, "source_location": "US",
        "destination_location": None, "destination_country": None, "is_transfer": False,
        "provider": "aws", "region": region, "bucket": bucket, "served_by": served_by,
        "object_key": None, "size": None, "checksum": None, "mechanism": None,
        "regimes": (), "reasons": (f"{run.item.name}: {reason}", "reason: contract ended",
                                   "purpose: gdpr art 17"),
        # Audit events name the agreements a decision rests on (LEGAL_FACTS 12); a key
        # destruction rests on none.
        "agreements": (),
        "error": error, "intent_id": intent_id,
        # A key destruction rests on no residency decision (event schema v3).
        "decision_id": None, "basis": (),
        # The egress fields (issue 16) are for HTTP calls: a key destruction has none.
        "endpoint": None, "processor": None, "status": None, "bytes_received": None,
        "deid": None}


def test_the_intent_comes_first_and_destroying_is_saved_before_the_destroy_call() -> None:
    run = _world()
    run.run()

    assert run.log == [
        ("intent", "intent"),
        ("open", run.item.target, "US"),
        ("tenant_key_id", "clinic-1"),
        ("save", "destroying"),
        ("destroy_tenant_key", "clinic-1"),
        ("emit", "ok"),
        ("save", "destroyed"),
    ]
    # What save saw just before the destroying call: the key id is already recorded.
    assert run.saves[0] == KeyProgress(backend=run.item.name, location="US", provider="aws",
                                       status="destroying", key_id="key-1")
    assert run.progress == KeyProgress(
        backend=run.item.name, location="US", provider="aws", status="destroyed",
        key_id="key-1", detail="", error=None, finished_at=FINISHED)
    assert run.saves[1] == run.progress
    intent, ok = run.audit.events
    assert _fields(intent) == _event(run, "intent",
                                     reason="destroying the tenant's key material")
    assert _fields(ok) == _event(run, "ok", reason="key key-1 destroyed",
                                 intent_id=intent.event_id)


def test_a_failover_backend_is_served_by_failover_and_names_the_requests_actor() -> None:
    run = _world("failover")
    run.run(actor=None)

    intent, ok = run.audit.events
    where = {"served_by": "failover", "region": "us-west-2",
             "bucket": "residency-us-aws-data-failover", "actor": "request-actor"}
    assert _fields(intent) == _event(run, "intent", **where,
                                     reason="destroying the tenant's key material")
    assert _fields(ok) == _event(run, "ok", **where, reason="key key-1 destroyed",
                                 intent_id=intent.event_id)
    assert run.progress.backend == "US/aws:residency-us-aws-data-failover@failover"


def test_a_known_key_id_is_not_asked_again_and_the_stores_answer_is_recorded() -> None:
    run = _world(progress={"key_id": "key-0"})
    run.store.destroyed = KeyDestruction(tenant_id="clinic-1", status="scheduled",
                                         key_id="key-9", detail="KMS deletion window 7 days",
                                         effective_at=EFFECTIVE)
    run.run()

    assert ("tenant_key_id", "clinic-1") not in run.log
    assert run.saves[0].key_id == "key-0"
    assert run.progress == KeyProgress(
        backend=run.item.name, location="US", provider="aws", status="scheduled",
        key_id="key-9", effective_at=EFFECTIVE, detail="KMS deletion window 7 days",
        finished_at=FINISHED)
    assert run.audit.events[1].reasons[0] == (
        f"{run.item.name}: key key-9 disabled, deletion scheduled on 2026-12-09")


def test_a_settled_key_is_left_alone_without_any_call_or_event() -> None:
    run = _world(progress={"status": "absent", "key_id": "key-1"})
    before = run.progress.model_copy(deep=True)
    run.run()

    assert run.log == []
    assert run.audit.events == []
    assert run.progress == before


def test_a_storage_error_marks_the_key_failed_with_an_error_event_and_no_raise() -> None:
    run = _world()
    run.store.destroyed = StorageError("kms down")
    run.run()

    assert run.log == [
        ("intent", "intent"),
        ("open", run.item.target, "US"),
        ("tenant_key_id", "clinic-1"),
        ("save", "destroying"),
        ("destroy_tenant_key", "clinic-1"),
        ("emit", "error"),
    ]
    assert run.progress == KeyProgress(
        backend=run.item.name, location="US", provider="aws", status="failed",
        key_id="key-1", error="StorageError: kms down")
    intent, error = run.audit.events
    assert _fields(error) == _event(
        run, "error", reason="key destruction failed: StorageError: kms down",
        error="StorageError: kms down", intent_id=intent.event_id)


def test_audit_unavailable_from_the_store_is_raised() -> None:
    run = _world()
    run.store.key_id = AuditUnavailable("audit down")

    with pytest.raises(AuditUnavailable, match="audit down"):
        run.run()
    assert [e.outcome for e in run.audit.events] == ["intent"]
    assert ("destroy_tenant_key", "clinic-1") not in run.log


@pytest.mark.parametrize("before", ["destroying", "failed"])
def test_a_resumed_run_finding_its_recorded_key_absent_records_it_destroyed(
        before: str) -> None:
    run = _world(progress={"status": before, "key_id": "key-1",
                           "error": "StorageError: old"})
    run.store.destroyed = KeyDestruction(tenant_id="clinic-1", status="absent")
    run.run()

    assert run.progress == KeyProgress(
        backend=run.item.name, location="US", provider="aws", status="destroyed",
        key_id="key-1", detail=INTERRUPTED, error=None, finished_at=FINISHED)
    assert run.saves[0].error is None
    intent, ok = run.audit.events
    assert intent.error is None  # the old error is not the intent's
    assert ok.reasons[0] == f"{run.item.name}: key key-1 destroyed ({INTERRUPTED})"
    assert ok.error is None


def test_a_resumed_run_keeps_the_stores_own_detail_of_an_absent_key() -> None:
    run = _world(progress={"status": "destroying", "key_id": "key-1"})
    run.store.destroyed = KeyDestruction(tenant_id="clinic-1", status="absent",
                                         detail="deleted by the operator")
    run.run()

    assert run.progress.status == "destroyed"
    assert run.progress.detail == "deleted by the operator"


def test_an_absent_key_stays_absent_when_the_run_is_not_resumed() -> None:
    run = _world(progress={"status": "pending", "key_id": "key-1"})
    run.store.destroyed = KeyDestruction(tenant_id="clinic-1", status="absent")
    run.run()

    assert run.progress.status == "absent"
    assert run.progress.detail == ""


def test_an_absent_key_stays_absent_when_no_key_id_was_ever_recorded() -> None:
    run = _world(progress={"status": "destroying"})
    run.store.key_id = None
    run.store.destroyed = KeyDestruction(tenant_id="clinic-1", status="absent")
    run.run()

    assert ("tenant_key_id", "clinic-1") in run.log
    assert run.progress.status == "absent"
    assert run.progress.key_id is None
    assert run.progress.detail == ""


def test_a_resumed_run_leaves_a_scheduled_key_scheduled() -> None:
    run = _world(progress={"status": "destroying", "key_id": "key-1"})
    run.store.destroyed = KeyDestruction(tenant_id="clinic-1", status="scheduled",
                                         effective_at=EFFECTIVE)
    run.run()

    assert run.progress.status == "scheduled"
    assert run.progress.detail == ""
    assert run.progress.key_id == "key-1"
