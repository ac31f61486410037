"""Every storage operation is written ahead and recorded whole (promises MV-14, MA-4).

``TenantStore._audited`` runs each data operation as: a durable ``intent`` event, then the
backend, then an outcome event naming the intent; ``TenantStore._event`` fills each event
(who, when, what, where). These tests watch the trail from the backend's side, with a
sink that records which events were durable when the backend was touched, on the local
backend (real files) of a map whose DE location has an in-country failover.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import yaml

import residency_sdk as rs
from residency_sdk.errors import AuditUnavailable, BackendUnavailable, ObjectNotFound
from residency_sdk.events import AuditEvent
from residency_sdk.regionmap import StorageTarget
from residency_sdk.storage.base import ObjectStore
from residency_sdk.storage.factory import open_store

PAYLOAD = b"DICM" + bytes(range(200)) * 10


class RecordingSink:
    """An audit sink (``append(event, durable=)``, ``flush``) that keeps what it was told
    in order and what was durable; ``fail_flush`` makes its flush fail as a full disk
    would."""

    def __init__(self) -> None:
        self.durable: list[AuditEvent] = []
        self.queued: list[AuditEvent] = []
        self.fail_flush = False

    def append(self, event: AuditEvent, *, durable: bool = True) -> None:
        self.queued.append(event)
        if durable:
            self.flush()

    def flush(self) -> None:
        if self.fail_flush:
            raise AuditUnavailable("audit log disk full (injected)")
        self.durable += self.queued
        self.queued.clear()

    def close(self) -> None:
        """Nothing to release."""

    @property
    def events(self) -> list[AuditEvent]:
        return self.durable + self.queued

    def durable_intents(self, operation: str) -> list[AuditEvent]:
        return [e for e in self.durable if e.operation == operation
                and e.outcome == "intent" and e.purpose is None]


@dataclass
class Env:
    res: rs.Residency
    sink: RecordingSink
    down: set[str]
    seen: list[tuple[str, list[AuditEvent], list[AuditEvent]]] = field(default_factory=list)
    """(backend call, the durable intents of that operation then, the queued ones)."""
    readers: list[BinaryIO] = field(default_factory=list)

    def tenant_events(self, operation: str, outcome: str | None = None) -> list[AuditEvent]:
        """Events of ``operation`` on tenant objects (SDK records apart)."""
        return [e for e in self.sink.events if e.operation == operation and e.purpose is None
                and (outcome is None or e.outcome == outcome)]


def _watched(store: ObjectStore, env_ref: list[Env], role: str, location: str,
             ) -> ObjectStore:
    """``store`` whose calls on tenant objects note what the audit trail held at that
    moment, and which fail like an outage when ``role`` is down (DE's backends only: a
    first write asks every location whether the tenant id is bound elsewhere)."""

    def wrap(name: str) -> Any:
        original = getattr(type(store), name)

        def call(self: ObjectStore, *args: Any, **kwargs: Any) -> Any:
            env = env_ref[0]
            if isinstance(args[0], str) and args[0].startswith("tenants/"):
                intents = [e for e in env.sink.durable if e.outcome == "intent"]
                env.seen.append((name, intents, list(env.sink.queued)))
            if role in env.down and location == "DE":
                raise BackendUnavailable(f"{self.target.bucket} is down (injected)")
            result = original(self, *args, **kwargs)
            if name == "open":
                env.readers.append(result)
            return result

        return call

    watched = type(f"Watched{type(store).__name__}", (type(store),),
                   {name: wrap(name) for name in ("put", "get", "open", "head", "delete")})
    store.__class__ = watched
    return store


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    overlay = tmp_path / "de-failover.yaml"
    overlay.write_text(yaml.safe_dump({
        "extends": "default", "name": "de-failover",
        "locations": {"DE": {"backends": {"local": {"failover_region": "local-de-failover"}}}}}))
    root = tmp_path / "data"
    ref: list[Env] = []

    def opener(target: StorageTarget, location: str) -> ObjectStore:
        role = "failover" if target.bucket.endswith("-failover") else "primary"
        return _watched(open_store(target, local_root=root, location=location), ref, role,
                        location)

    sink = RecordingSink()
    res = rs.Residency.load(overlay, audit=sink, local_root=root, storage=opener)
    ref.append(Env(res, sink, set()))
    yield ref[0]
    res.close()


def _tenant(country: str = "DE", *agreements: str) -> rs.Tenant:
    return rs.Tenant(id=f"clinic-{country.lower()}-audit", country=country,
                     agreements=frozenset(agreements))


# --- written ahead ------------------------------------------------------------------------


def test_a_write_touches_the_backend_only_after_its_intent_is_durable(env: Env) -> None:
    store = env.res.storage_for(_tenant(), actor="dr-weber", purpose=None)
    # The first write binds the tenant and records its lineage (durable writes of their
    # own); the second is the store's alone.
    for key in ("studies/1.dcm", "studies/2.dcm", "studies/3.dcm"):
        env.seen.clear()
        store.put(key, PAYLOAD, data_class="phi")
        [(_, durable, _)] = [s for s in env.seen if s[0] == "put"]
        intent = [e for e in durable if e.operation == "put" and e.purpose is None][-1]
        assert (intent.object_key, intent.data_class, intent.actor) == (key, "phi", "dr-weber")
        assert intent.bucket == store.target.bucket and intent.served_by is None


def test_a_read_commits_its_intent_while_the_backend_answers_and_before_returning(
        env: Env) -> None:
    """A read's intent is queued when the backend is asked (the commit overlaps the round
    trip) and durable before the data is handed over."""
    store = env.res.storage_for(_tenant())
    store.put("studies/1.dcm", PAYLOAD, data_class="phi")
    env.seen.clear()
    assert store.get("studies/1.dcm") == PAYLOAD
    (_, durable, queued) = next(s for s in env.seen if s[0] == "get")
    assert not [e for e in durable if e.operation == "get"]
    [queued_intent] = [e for e in queued if e.operation == "get" and e.outcome == "intent"]
    assert queued_intent.object_key == "studies/1.dcm"
    assert [e.event_id for e in env.sink.durable_intents("get")] == [queued_intent.event_id]


def test_a_read_whose_intent_cannot_be_made_durable_returns_nothing(env: Env) -> None:
    store = env.res.storage_for(_tenant())
    store.put("studies/1.dcm", PAYLOAD, data_class="phi")
    env.sink.fail_flush = True
    with pytest.raises(AuditUnavailable, match="disk full"):
        store.get("studies/1.dcm")
    env.readers.clear()
    with pytest.raises(AuditUnavailable, match="disk full"):
        store.open("studies/1.dcm")
    # The reader the backend opened was closed, not handed to anyone.
    [reader] = env.readers
    assert reader.closed
    env.sink.fail_flush = False


# --- what the events say --------------------------------------------------------------


def test_a_put_is_recorded_as_an_intent_and_an_outcome_naming_it(env: Env) -> None:
    tenant = _tenant()
    store = env.res.storage_for(tenant, actor="dr-weber", purpose="diagnosis")
    info = store.put("studies/1.dcm", io.BytesIO(PAYLOAD), data_class="phi")
    [intent] = [e for e in env.sink.events if e.operation == "put" and e.outcome == "intent"
                and e.purpose == "diagnosis"]
    [ok] = [e for e in env.sink.events if e.operation == "put" and e.outcome == "ok"
            and e.purpose == "diagnosis"]
    for event in (intent, ok):
        assert (event.actor, event.purpose, event.tenant_id, event.tenant_country) == (
            "dr-weber", "diagnosis", tenant.id, "DE")
        assert (event.object_key, event.data_class, event.source_location) == (
            "studies/1.dcm", "phi", "DE")
        assert (event.provider, event.region, event.bucket) == (
            "local", store.target.region, store.target.bucket)
        assert event.error is None
    assert (intent.served_by, intent.size, intent.checksum, intent.intent_id) == (
        None, None, None, None)
    assert (ok.served_by, ok.intent_id) == ("primary", intent.event_id)
    assert ok.size == len(PAYLOAD) == info.size
    assert ok.checksum == info.checksum and ok.checksum is not None


def test_a_read_outcome_names_its_intent_and_what_was_read(env: Env) -> None:
    store = env.res.storage_for(_tenant())
    info = store.put("studies/1.dcm", PAYLOAD, data_class="phi")
    head = store.head("studies/1.dcm")
    [intent] = env.tenant_events("head", "intent")
    [ok] = env.tenant_events("head", "ok")
    assert intent.object_key == ok.object_key == "studies/1.dcm"
    assert ok.intent_id == intent.event_id and ok.served_by == "primary"
    assert ok.size == head.size == info.size and ok.checksum == info.checksum


def test_a_failed_operation_is_recorded_with_its_intent_and_the_error(env: Env) -> None:
    store = env.res.storage_for(_tenant())
    with pytest.raises(ObjectNotFound):
        store.get("studies/missing.dcm")
    [intent] = env.tenant_events("get", "intent")
    [failed] = env.tenant_events("get", "error")
    assert failed.intent_id == intent.event_id
    assert failed.object_key == "studies/missing.dcm"
    assert failed.error is not None and failed.error.startswith("ObjectNotFound: ")
    assert (failed.served_by, failed.size) == (None, None)


def test_a_write_served_by_the_failover_names_each_backend_in_its_events(env: Env) -> None:
    """The intent names the backend the operation is aimed at (the primary); the outcome
    the one that served it (the in-country failover)."""
    store = env.res.storage_for(_tenant())
    assert store.failover is not None
    env.down.add("primary")
    info = store.put("studies/outage.dcm", PAYLOAD, data_class="phi")
    assert info.served_by == "failover"
    [intent] = env.tenant_events("put", "intent")
    [ok] = env.tenant_events("put", "ok")
    assert (intent.bucket, intent.region) == (store.target.bucket, store.target.region)
    assert (ok.served_by, ok.bucket, ok.region) == (
        "failover", store.failover.bucket, store.failover.region)
    assert ok.bucket != intent.bucket


def test_a_failure_on_both_backends_is_recorded_against_the_primary(env: Env) -> None:
    store = env.res.storage_for(_tenant())
    assert store.failover is not None
    env.down.update({"primary", "failover"})
    with pytest.raises(BackendUnavailable):
        store.put("studies/lost.dcm", PAYLOAD, data_class="phi")
    [failed] = env.tenant_events("put", "error")
    assert (failed.bucket, failed.served_by) == (store.target.bucket, None)
    assert failed.error is not None and failed.error.startswith("BackendUnavailable: ")


@pytest.mark.parametrize(("tenant", "expected"), [
    (_tenant("DE"), ("allowed", False, None, (), ("data already lives in DE: no transfer",),
                     "DE")),
    (_tenant("TR", "kvkk_standard_contract"),
     ("allowed", True, "kvkk_standard_contract", ("kvkk",), None, "DE")),
], ids=["in-country", "tr-data-placed-in-de"])
def test_the_placement_event_carries_the_whole_decision(env: Env, tenant: rs.Tenant,
                                                        expected: tuple[Any, ...]) -> None:
    env.res.storage_for(tenant)
    [event] = env.tenant_events("placement")
    decision = env.res.policy.placement_decision(tenant, "phi")
    outcome, is_transfer, mechanism, regimes, reasons, destination = expected
    assert (event.outcome, event.is_transfer, event.mechanism, event.regimes) == (
        outcome, is_transfer, mechanism, regimes)
    assert event.reasons == (reasons or decision.reasons) and event.reasons
    assert event.destination_country == destination == decision.destination
    assert (event.tenant_country, event.source_location) == (tenant.country, "DE")


def test_a_write_declared_anonymised_that_fails_its_check_is_recorded_as_phi_throughout(
        env: Env) -> None:
    """The check relabels the write: its intent and its outcome both say ``phi`` and
    why, not the class the caller declared."""
    store = env.res.storage_for(_tenant())
    info = store.put("reports/1.txt", b"Findings: none.", data_class="anonymised")
    assert info.data_class == "phi"
    [intent] = env.tenant_events("put", "intent")
    [ok] = env.tenant_events("put", "ok")
    for event in (intent, ok):
        assert event.data_class == "phi"
        [reason] = event.reasons
        assert reason.startswith("declared anonymised but not verified as such, treated as "
                                 "phi: not a DICOM Part 10 object")
