"""``anonymised`` is earned at the storage facade (issue 17): content checked on put and
on transfer, evidence kept with the object and shown in the audit report, the tenant's
de-identification key kept (and erased) in its location.

Local backend throughout; one moto run for the transfer path.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import yaml
from facade_dicom import PATIENT_NAME, read, sample, study

import residency_sdk as rs
from residency_sdk import marks
from residency_sdk.audit.render import render
from residency_sdk.audit.report import build_report
from residency_sdk.deid import EVIDENCE_META, check_dicom, deidentify_dicom, external_evidence
from residency_sdk.deid_records import evidence_key, key_record_key
from residency_sdk.errors import (
    BAARequired,
    InputError,
    NotAnonymised,
    PlacementBlocked,
    TransferBlocked,
)
from residency_sdk.events import AuditEvent
from residency_sdk.storage.base import ObjectStore
from residency_sdk.storage.keys import tenant_key

DE = rs.Tenant(id="charite-research", country="DE")  # no transfer mechanism to the US


@dataclass
class Env:
    res: rs.Residency
    root: Path
    audit: Path
    events: list[AuditEvent] = field(default_factory=list)

    def raw(self, location: str) -> ObjectStore:
        """The location's backend, bypassing the facade."""
        return self.res.store(self.res.backend(location), location)

    def of(self, operation: str, key: str | None = None) -> list[AuditEvent]:
        """Outcome events of ``operation`` on tenant objects (SDK records apart)."""
        return [e for e in self.events if e.operation == operation and e.outcome != "intent"
                and e.purpose is None and (key is None or e.object_key == key)]


def _load(tmp_path: Path, map_path: Path | None = None) -> Env:
    events: list[AuditEvent] = []
    res = rs.Residency.load(map_path, local_root=tmp_path / "data",
                            audit=tmp_path / "audit.db", audit_hooks=[events.append])
    return Env(res, tmp_path / "data", tmp_path / "audit.db", events)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = _load(tmp_path)
    yield e
    e.res.close()


def _labelled(env: Env, tenant: rs.Tenant, key: str, data: bytes,
              data_class: str = "anonymised") -> None:
    """Write ``data`` marked as ``data_class`` straight to the backend (what a write from
    before this check, or around the facade, leaves behind)."""
    meta = marks.write_marks({}, data_class=data_class, tenant_id=tenant.id,
                             created=datetime.now(UTC))
    env.raw("DE").put(tenant_key(tenant, key), data, metadata=meta)


# --- put: the content check ----------------------------------------------------------


def test_dicom_with_patient_name_declared_anonymised_is_stored_as_phi(env: Env) -> None:
    """Where phi may be stored, the write proceeds as phi, and the event says why."""
    store = env.res.storage_for(DE)
    info = store.put("scan.dcm", sample(), data_class="anonymised")
    assert info.data_class == "phi"
    assert env.raw("DE").head(info.stored_key).metadata[marks.DATA_CLASS_META] == "phi"
    [event] = env.of("put", "scan.dcm")
    assert (event.outcome, event.data_class, event.deid) == ("ok", "phi", None)
    [reason] = event.reasons
    assert reason.startswith("declared anonymised but not verified as such, treated as phi")
    for attribute in ("PatientName (0010,0010)", "PatientID (0010,0020)",
                      "PatientIdentityRemoved (0012,0062)"):
        assert attribute in reason
    assert "CompressedSamples" not in reason  # the patient's name itself is never recorded


@pytest.mark.parametrize("refusal", ["placement", "baa"])
def test_dicom_declared_anonymised_is_refused_where_phi_is_not_allowed(
        tmp_path: Path, refusal: str) -> None:
    if refusal == "placement":  # a TR tenant without KVKK's contract may not place phi
        e, tenant, cause = _load(tmp_path), rs.Tenant(id="ankara", country="TR"), \
            PlacementBlocked
    else:  # the DE backend has no BAA: phi is refused there
        overlay = tmp_path / "no-baa.yaml"
        overlay.write_text(yaml.safe_dump({
            "extends": "default", "name": "no-baa",
            "locations": {"DE": {"backends": {"local": {"baa": False}}}}}))
        e, tenant, cause = _load(tmp_path, overlay), DE, BAARequired
    data = study(1)[0]
    with pytest.raises(NotAnonymised) as caught:
        e.res.storage_for(tenant).put("scan.dcm", data, data_class="anonymised")
    error = caught.value
    assert isinstance(error.refusal, cause)
    assert {"PatientName", "PatientID", "OtherPatientIDsSequence"} <= set(error.found)
    assert "PatientName (0010,0010)" in str(error) and PATIENT_NAME not in str(error)
    assert not e.raw("DE").exists(tenant_key(tenant, "scan.dcm"))
    [event] = e.of("put", "scan.dcm")
    assert (event.outcome, event.data_class) == ("blocked", "phi")
    assert event.error is not None and event.error.startswith("NotAnonymised")
    # The same bytes de-identified are anonymised and may be stored there.
    out = deidentify_dicom(data, tenant=tenant, key=e.res.deid_key(tenant))
    stored = e.res.storage_for(tenant).put("scan.dcm", out.data, data_class="anonymised",
                                           evidence=out.evidence)
    assert stored.data_class == "anonymised"
    e.res.close()


def test_non_dicom_declared_anonymised_needs_evidence_about_its_bytes(env: Env) -> None:
    store = env.res.storage_for(DE)
    csv = b"site,count\nberlin,3\n"
    assert store.put("stats.csv", csv, data_class="anonymised").data_class == "phi"
    assert "not a DICOM Part 10 object" in env.of("put", "stats.csv")[0].reasons[0]
    evidence = external_evidence(csv, tenant_id=DE.id, method="k-anonymity (k=5) export",
                                 tool="stats-pipeline 2.3", reviewer="dpo@charite.example")
    info = store.put("stats.csv", csv, data_class="anonymised", evidence=evidence)
    assert info.data_class == "anonymised"
    assert info.metadata[EVIDENCE_META] == evidence.digest()
    assert env.of("put", "stats.csv")[-1].deid == evidence.summary()
    # Evidence about other bytes does not vouch for these.
    other = b"site,count\nberlin,3\nname,Erika Mustermann\n"
    assert store.put("other.csv", other, data_class="anonymised",
                     evidence=evidence).data_class == "phi"
    assert "about other bytes" in env.of("put", "other.csv")[0].reasons[0]
    # Another tenant's evidence does not either.
    foreign = external_evidence(csv, tenant_id="someone-else", method="m", tool="t")
    assert store.put("third.csv", csv, data_class="anonymised",
                     evidence=foreign).data_class == "phi"
    assert "tenant 'someone-else'" in env.of("put", "third.csv")[0].reasons[0]
    with pytest.raises(InputError, match="data_class='anonymised' only"):
        store.put("x.csv", csv, data_class="phi", evidence=evidence)


class _Stream(io.RawIOBase):
    """A stream that cannot seek (a socket, a pipe)."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._inner.read(min(len(buffer), 1000))
        buffer[: len(chunk)] = chunk
        return len(chunk)


@pytest.mark.parametrize("kind", ["seekable", "stream"])
def test_file_objects_are_checked_and_stored_whole(env: Env, kind: str) -> None:
    store = env.res.storage_for(DE)
    out = deidentify_dicom(study(1)[0], tenant=DE, key=env.res.deid_key(DE))
    csv = b"a,b\n" * 100_000
    evidence = external_evidence(csv, tenant_id=DE.id, method="aggregate", tool="t")

    def wrap(data: bytes) -> BinaryIO:
        return io.BytesIO(data) if kind == "seekable" else _Stream(data)  # type: ignore[return-value]

    dicom = store.put("a.dcm", wrap(out.data), data_class="anonymised", evidence=out.evidence)
    assert dicom.data_class == "anonymised" and store.get("a.dcm") == out.data
    table = store.put("b.csv", wrap(csv), data_class="anonymised", evidence=evidence)
    assert table.data_class == "anonymised" and store.get("b.csv") == csv
    raw = sample()
    assert store.put("c.dcm", wrap(raw), data_class="anonymised").data_class == "phi"
    assert store.get("c.dcm") == raw


def test_evidence_is_kept_beside_the_object_in_the_tenants_location(env: Env) -> None:
    out = deidentify_dicom(study(1)[0], tenant=DE, key=env.res.deid_key(DE))
    info = env.res.storage_for(DE).put("deid.dcm", out.data, data_class="anonymised",
                                       evidence=out.evidence)
    digest = info.metadata[EVIDENCE_META]
    assert digest == out.evidence.digest()
    assert env.res.deid_records.evidence(DE, digest) == out.evidence
    record = env.raw("DE").get(evidence_key(DE.id, digest))
    assert json.loads(record)["output_sha256"] == out.evidence.output_sha256
    [event] = env.of("put", "deid.dcm")
    assert event.data_class == "anonymised" and event.deid == out.evidence.summary()
    evidence_writes = [e for e in env.events if e.purpose == "deid_evidence"]
    assert [e.outcome for e in evidence_writes] == ["intent", "ok"]


# --- transfers -----------------------------------------------------------------------


def test_dicom_with_patient_name_labelled_anonymised_does_not_cross_to_the_us(
        env: Env) -> None:
    """The issue's case: a DICOM with PatientName and PatientID, labelled anonymised,
    from Germany to the US with no agreement. Stored through the facade it became phi;
    labelled around it, the transfer's own check treats it as phi. Either way: blocked,
    nothing in the US, and the report shows the refusal, not a flow."""
    raw = sample()
    env.res.storage_for(DE).put("via-facade.dcm", raw, data_class="anonymised")
    with pytest.raises(TransferBlocked):
        env.res.transfer(DE, "via-facade.dcm", to="US", data_class="anonymised")
    _labelled(env, DE, "labelled.dcm", raw)
    with pytest.raises(NotAnonymised) as caught:
        env.res.transfer(DE, "labelled.dcm", to="US", data_class="anonymised")
    assert isinstance(caught.value.refusal, TransferBlocked)
    assert not caught.value.refusal.decision.allowed
    assert {"PatientName", "PatientID"} <= set(caught.value.found)
    assert "PatientName (0010,0010)" in str(caught.value)
    us = env.raw("US")
    assert not any(us.list(f"tenants/{DE.id}/"))
    [event] = env.of("transfer", "labelled.dcm")
    assert (event.outcome, event.data_class, event.deid) == ("blocked", "phi", None)
    assert any("PatientName (0010,0010)" in r for r in event.reasons)
    env.res.close()
    report = build_report(env.audit)
    # The allowed anonymised *decision* is listed as a decision; no data moved.
    assert not [f for f in report.flows if "transfer" in f["operations"]]
    assert report.anonymised_transfers == []
    blocked = {(b["operation"], b["data_class"]) for b in report.blocked}
    assert ("transfer", "phi") in blocked


def test_a_deidentified_study_crosses_to_the_us_and_the_report_shows_its_evidence(
        env: Env) -> None:
    key = env.res.deid_key(DE)
    store = env.res.storage_for(DE)
    evidences = []
    for i, original in enumerate(study(3)):
        out = deidentify_dicom(original, tenant=DE, key=key)
        store.put(f"study/{i}.dcm", out.data, data_class="anonymised", evidence=out.evidence)
        copy = env.res.transfer(DE, f"study/{i}.dcm", to="US", data_class="anonymised")
        assert copy.location == "US" and copy.metadata[EVIDENCE_META] == out.evidence.digest()
        assert env.raw("US").get(copy.stored_key) == out.data
        evidences.append(out.evidence)
    transfers = env.of("transfer")
    assert [(e.outcome, e.mechanism, e.data_class) for e in transfers] == [
        ("ok", "anonymised", "anonymised")] * 3
    assert [e.deid for e in transfers] == [ev.summary() for ev in evidences]
    # The evidence stays home: the copy names it, the US holds no record of it.
    assert not any(env.raw("US").list("_residency/deid-evidence/"))
    env.res.close()
    report = build_report(env.audit)
    assert report.ok and report.totals["anonymised_transfers"] == 3
    rows = report.anonymised_transfers
    assert [(r["object_key"], r["location"], r["destination"]) for r in rows] == [
        (f"study/{i}.dcm", "DE", "US") for i in range(3)]
    assert [r["deid"] for r in rows] == [ev.summary() for ev in evidences]
    markdown = render(report, "md")
    assert "## De-identified transfers" in markdown
    assert all(f"evidence sha256:{ev.digest()}" in markdown for ev in evidences)
    assert markdown.count(",deid,") == 0 and render(report, "csv").count("\ndeid,") == 3
    assert json.loads(render(report, "json"))["anonymised_transfers"][0]["deid"] == \
        evidences[0].summary()
    assert "De-identified transfers" in render(report, "html")


def test_an_object_altered_after_its_evidence_is_treated_as_phi(env: Env) -> None:
    out = deidentify_dicom(study(1)[0], tenant=DE, key=env.res.deid_key(DE))
    info = env.res.storage_for(DE).put("deid.dcm", out.data, data_class="anonymised",
                                       evidence=out.evidence)
    # Someone puts the original back under the de-identified object's marks.
    env.raw("DE").put(info.stored_key, sample(), metadata=info.metadata)
    with pytest.raises(NotAnonymised) as caught:
        env.res.transfer(DE, "deid.dcm", to="US", data_class="anonymised")
    assert any("about other bytes" in p for p in caught.value.problems)
    assert "PatientName" in caught.value.found
    # An object naming evidence its location does not hold fails as well.
    env.raw("DE").put(info.stored_key, out.data, metadata=info.metadata)
    env.raw("DE").delete(evidence_key(DE.id, info.metadata[EVIDENCE_META]))
    with pytest.raises(NotAnonymised, match="does not hold"):
        env.res.transfer(DE, "deid.dcm", to="US", data_class="anonymised")
    assert not env.raw("US").exists(info.stored_key)


def test_an_object_that_fails_the_check_moves_as_phi_where_phi_may_go(env: Env) -> None:
    """A tenant with SCCs may send phi to the US: the object moves, decided and marked
    as phi, with the reason in the event."""
    # An Austrian clinic: § 393 SGB V keeps German health data out of SCC transfers
    # (LEGAL_FACTS 12); Austria is routed to the DE location all the same.
    with_scc = rs.Tenant(id="vienna-scc", country="AT", agreements=frozenset({"scc"}))
    _labelled(env, with_scc, "labelled.dcm", sample())
    copy = env.res.transfer(with_scc, "labelled.dcm", to="US", data_class="anonymised")
    assert copy.data_class == "phi"
    [event] = env.of("transfer", "labelled.dcm")
    assert (event.outcome, event.data_class, event.mechanism) == ("ok", "phi", "scc")
    assert any("treated as phi" in r for r in event.reasons) and event.deid is None


# --- the tenant's key ----------------------------------------------------------------


def test_the_deid_key_lives_in_the_tenants_location_and_is_erased_with_it(
        tmp_path: Path) -> None:
    env = _load(tmp_path)
    key = env.res.deid_key(DE)
    assert env.res.deid_key(DE) is key and "secret" not in repr(key)
    other = env.res.deid_key(rs.Tenant(id="leeds", country="GB"))
    assert other.secret != key.secret and other.key_id != key.key_id
    assert env.raw("DE").exists(key_record_key(DE.id))
    assert not env.raw("US").exists(key_record_key(DE.id))
    # Encrypted at rest like any object of the location: the secret is in no file.
    for path in env.root.rglob("*"):
        if path.is_file():
            assert key.secret not in path.read_bytes(), path
    purposes = [(e.operation, e.outcome) for e in env.events if e.purpose == "deid_key"]
    assert purposes[:4] == [("get", "intent"), ("get", "ok"), ("put", "intent"), ("put", "ok")]
    out = deidentify_dicom(study(1)[0], tenant=DE, key=key)
    env.res.storage_for(DE).put("deid.dcm", out.data, data_class="anonymised",
                                evidence=out.evidence)
    env.res.close()

    again = _load(tmp_path)  # another process reads the same key from the location
    assert again.res.deid_key(DE) == key
    receipt = again.res.erase(DE, state_dir=tmp_path / "state")
    assert receipt.objects == 1
    assert not again.raw("DE").exists(key_record_key(DE.id))
    assert not any(again.raw("DE").list(f"_residency/deid-evidence/{DE.id}/"))
    dropped = [e.object_key for e in again.events
               if e.operation == "delete" and e.outcome == "ok"
               and e.purpose in ("deid_key", "deid_evidence")]
    assert key_record_key(DE.id) in dropped and len(dropped) == 2
    # After erasure a new key is made: the old UID mapping cannot be recomputed.
    assert again.res.deid_key(DE).secret != key.secret
    again.res.close()


def test_an_unreadable_key_record_is_never_replaced(env: Env) -> None:
    env.raw("DE").put(key_record_key(DE.id), b"{not json")
    with pytest.raises(rs.IntegrityError, match="restore it from backup"):
        env.res.deid_key(DE)
    assert env.raw("DE").get(key_record_key(DE.id)) == b"{not json"


# --- one cloud backend ---------------------------------------------------------------


@pytest.mark.emulator
def test_transfer_path_on_s3(emulators: Any, monkeypatch: pytest.MonkeyPatch,
                             tmp_path: Path) -> None:
    from storage_harness import ProviderHarness

    aws = ProviderHarness("aws", emulators, monkeypatch, tmp_path)
    events: list[AuditEvent] = []
    res = rs.Residency.load(aws.write_map(tmp_path), audit_hooks=[events.append],
                            audit=tmp_path / "audit.db")
    tenant = rs.Tenant(id=f"charite-{tmp_path.name[-8:]}", country="DE")
    store = res.storage_for(tenant)
    assert store.target.provider == "aws"
    original = study(1)[0]
    assert store.put("scan.dcm", original, data_class="anonymised").data_class == "phi"
    with pytest.raises(TransferBlocked):
        res.transfer(tenant, "scan.dcm", to="US", data_class="anonymised")
    out = deidentify_dicom(original, tenant=tenant, key=res.deid_key(tenant))
    store.put("deid.dcm", out.data, data_class="anonymised", evidence=out.evidence)
    copy = res.transfer(tenant, "deid.dcm", to="US", data_class="anonymised")
    us = res.store(res.backend("US"), "US")
    assert us.get(copy.stored_key) == out.data and check_dicom(out.data).ok
    assert read(us.get(copy.stored_key)).PatientName == ""
    assert not us.exists(tenant_key(tenant, "scan.dcm"))
    [event] = [e for e in events if e.operation == "transfer" and e.outcome == "ok"]
    assert event.deid == out.evidence.summary()
    res.close()
    [row] = build_report(tmp_path / "audit.db").anonymised_transfers
    assert row["deid"] == out.evidence.summary()


def test_the_report_lists_anonymised_transfers_with_or_without_evidence(
        tmp_path: Path) -> None:
    """A transfer recorded as anonymised before the SDK verified it carries no evidence:
    the report lists it as such, for an auditor to look at."""
    from residency_sdk.audit import AuditLog

    common: dict[str, Any] = dict(
        operation="transfer", outcome="ok", tenant_id=DE.id, tenant_country="DE",
        source_location="DE", destination_location="US", destination_country="US",
        is_transfer=True, provider="local", bucket="residency-us-local")
    log = AuditLog(tmp_path / "audit.db")
    log.append(AuditEvent(**common, data_class="anonymised", mechanism="anonymised",
                          object_key="legacy.dcm"))
    log.append(AuditEvent(**common, data_class="phi", mechanism="scc", object_key="p.dcm"))
    log.append(AuditEvent(**common, data_class="anonymised", mechanism="anonymised",
                          object_key="deid/a.dcm", deid="DICOM PS3.15 ...; evidence sha256:ab"))
    log.close()
    report = build_report(tmp_path / "audit.db")
    assert report.totals["anonymised_transfers"] == 2
    assert [(r["object_key"], r["deid"]) for r in report.anonymised_transfers] == [
        ("legacy.dcm", None), ("deid/a.dcm", "DICOM PS3.15 ...; evidence sha256:ab")]
    assert "| legacy.dcm | **none recorded** |" in render(report, "md")


def test_without_pydicom_dicom_cannot_pass_as_anonymised(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """pydicom is an extra: without it non-DICOM data with evidence still passes, and a
    DICOM object declared anonymised is refused with the extra named, never stored as
    anonymised unchecked."""
    import sys

    monkeypatch.setitem(sys.modules, "pydicom", None)  # `import pydicom` now fails
    store = env.res.storage_for(DE)
    csv = b"n=3"
    evidence = external_evidence(csv, tenant_id=DE.id, method="aggregate", tool="t")
    assert store.put("a.csv", csv, data_class="anonymised",
                     evidence=evidence).data_class == "anonymised"
    with pytest.raises(rs.SDKNotInstalled, match=r"residency-sdk\[dicom\]"):
        store.put("b.dcm", sample(), data_class="anonymised")
    assert not store.exists("b.dcm")


class _Flaky(ObjectStore):
    """A store that can be switched off (every call then raises BackendUnavailable)."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner, self.target, self.down = inner, inner.target, False

    def __getattribute__(self, name: str) -> Any:
        if name in ("put", "get", "open", "head", "list", "delete", "exists") and \
                object.__getattribute__(self, "down"):
            raise rs.BackendUnavailable(f"{name}: primary switched off by the test")
        return object.__getattribute__(self, name)

    def put(self, key: str, data: Any, **kw: Any) -> Any:
        return self.inner.put(key, data, **kw)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def open(self, key: str) -> Any:
        return self.inner.open(key)

    def head(self, key: str) -> Any:
        return self.inner.head(key)

    def list(self, prefix: str = "") -> Any:
        return self.inner.list(prefix)

    def delete(self, key: str, **kw: Any) -> bool:
        return self.inner.delete(key, **kw)


def test_a_second_key_is_never_made_while_the_primary_is_down(tmp_path: Path) -> None:
    overlay = tmp_path / "failover.yaml"
    overlay.write_text(yaml.safe_dump({
        "extends": "default", "name": "failover",
        "locations": {"DE": {"default_provider": "local",
                             "backends": {"local": {"failover_region": "local-de-failover"}}}}}))
    stores: dict[str, _Flaky] = {}

    def opener(target: Any, location: str) -> ObjectStore:
        return stores.setdefault(f"{location}:{target.bucket}",
                                 _Flaky(rs.MemoryStore(target)))

    def client() -> rs.Residency:
        return rs.Residency.load(overlay, storage=opener, audit=False,
                                 audit_off_reason="test")

    key = client().deid_key(DE)
    primary = next(s for k, s in stores.items()
                   if k.startswith("DE:") and not k.endswith("-failover"))
    failover = next(s for k, s in stores.items() if k.startswith("DE:") and k.endswith("-failover"))
    assert failover.inner.exists(key_record_key(DE.id))  # written to both
    primary.down = True
    assert client().deid_key(DE) == key  # read from the failover's copy
    failover.inner.delete(key_record_key(DE.id))
    with pytest.raises(rs.BackendUnavailable, match="map the tenant's UIDs differently"):
        client().deid_key(DE)
    other = rs.Tenant(id="new-tenant", country="DE")
    with pytest.raises(rs.BackendUnavailable):
        client().deid_key(other)  # not created while the primary cannot say "none"
    primary.down = False
    assert client().deid_key(DE) == key
