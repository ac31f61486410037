"""The example imaging service, started with uvicorn in a subprocess on a free loopback
port, driven over HTTP with httpx. Two inference stubs (DE and AU) stand in for the
locations' model servers and a drafter stub for a third-party report-drafting processor;
the test's region map (extending the MVision map) declares their loopback URLs as the
locations' compute endpoints and the processor's host, and the service reaches them only
through ``res.async_compute_for``. Everything is stored on the embedded local backend."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from imaging_stack import REPO, TENANTS, Stack, running_stack

import residency_sdk as rs
from residency_sdk.erasure import audit_log_events
from residency_sdk.storage.keys import tenant_key


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("imaging")) as running:
        yield running


def _study(tag: str) -> bytes:
    return b"DICM" + hashlib.sha256(tag.encode()).digest() * 64


def test_upload_is_stored_in_the_clinics_location_and_inferred_there(stack: Stack) -> None:
    data = _study("berlin-1")
    with stack.client("clinic-berlin") as http:
        response = http.post("/studies", content=data,
                             headers={"content-type": "application/dicom"})
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["location"] == "DE" and body["provider"] == "local"
        assert body["result"]["model"]["served_in"] == "DE"
        assert body["result"]["model"]["input_sha256"] == hashlib.sha256(data).hexdigest()
        assert body["sha256"] == hashlib.sha256(data).hexdigest()
        fetched = http.get(f"/studies/{body['study_id']}")
        original = http.get(f"/studies/{body['study_id']}/original")
    assert original.status_code == 200 and original.content == data
    assert original.headers["content-type"] == "application/dicom"
    with stack.client("clinic-istanbul") as http:  # another clinic's study is not there
        assert http.get(f"/studies/{body['study_id']}/original").status_code == 404
    assert fetched.status_code == 200
    assert fetched.json()["result"] == body["result"]
    assert fetched.json()["location"] == "DE"
    assert body["study_id"] in {r["study_id"] for r in stack.received("DE")}
    assert body["study_id"] not in {r["study_id"] for r in stack.received("AU")}
    # On disk, in the DE location's directory, encrypted (not the plaintext bytes).
    store = stack.residency().storage_for(rs.Tenant(id="clinic-berlin", country="DE"))
    key = f"studies/{body['study_id']}/original.dcm"
    assert store.get(key) == data
    assert store.head(key).metadata["category"] == "imaging_upload"
    assert store.exists(f"studies/{body['study_id']}/result.json")
    blobs = list((stack.local_root / "DE").rglob("@v-*"))
    assert blobs and all(data not in p.read_bytes() for p in blobs)
    # The model call went through the guard: audited as egress to DE's compute endpoint.
    [sent] = [e for e in stack.egress_events("clinic-berlin")
              if e.endpoint == stack.stubs["DE"].url + "/v1/infer"][-1:]
    assert (sent.outcome, sent.status, sent.size, sent.data_class, sent.processor,
            sent.purpose, sent.actor) == ("ok", 200, len(data), "phi", None, "inference",
                                          "imaging-service")
    assert sent.destination_country == "DE" and not sent.is_transfer


def test_multipart_upload_from_turkey_lands_in_germany(stack: Stack) -> None:
    data = _study("istanbul-1") * 300  # spans many reads of the incremental parser
    with stack.client("clinic-istanbul") as http:
        response = http.post("/studies", data={"note": "before the file"},
                             files={"file": ("ct.dcm", data, "application/dicom")})
        assert response.status_code == 201, response.text
        body = response.json()
        original = http.get(f"/studies/{body['study_id']}/original")
    assert body["location"] == "DE" and body["result"]["model"]["served_in"] == "DE"
    # Exactly the file part's bytes: no boundary, part headers or other field in them.
    assert (body["size"], body["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    assert original.content == data


def test_australian_clinic_uses_the_australian_model(stack: Stack) -> None:
    with stack.client("clinic-sydney") as http:
        response = http.post("/studies", content=_study("sydney-1"))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["location"] == "AU" and body["result"]["model"]["served_in"] == "AU"
    assert body["study_id"] in {r["study_id"] for r in stack.received("AU")}
    assert body["study_id"] not in {r["study_id"] for r in stack.received("DE")}
    assert any(e.endpoint == stack.stubs["AU"].url + "/v1/infer" and e.outcome == "ok"
               for e in stack.egress_events("clinic-sydney"))


def test_blocked_transfer_abroad_is_451_with_the_reason_and_copies_nothing(
        stack: Stack) -> None:
    with stack.client("clinic-berlin") as http:
        study = http.post("/studies", content=_study("berlin-2")).json()["study_id"]
        response = http.post(f"/studies/{study}/transfer", json={"to": "US"})
    assert response.status_code == 451, response.text
    detail = response.json()["detail"]
    assert detail["error"] == "transfer_blocked" and detail["to"] == "US"
    assert any("GDPR" in reason and "scc" in reason for reason in detail["reasons"])
    # Two blocking rules (LEGAL_FACTS 12): the § 393 SGB V overlay (only an adequacy
    # finding, i.e. a DPF-certified recipient, unblocks German health data) and the GDPR.
    assert any("§ 393 SGB V" in reason for reason in detail["reasons"])
    assert [sorted(alts) for alts in detail["unblock_with"]] == [
        ["dpf_eu"], ["bcr", "dpf_eu", "scc"]]
    res = stack.residency()
    tenant = rs.Tenant(id="clinic-berlin", country="DE")
    [(_, us_target)] = res.location_targets("US", ["local"])
    us_store = res.store(us_target, "US")
    assert not us_store.exists(tenant_key(tenant, f"studies/{study}/original.dcm"))
    blocked = [e for e in audit_log_events(stack.audit)
               if e.operation == "transfer" and e.outcome == "blocked"
               and e.tenant_id == "clinic-berlin"]
    assert blocked and blocked[-1].destination_country == "US"


def test_lawful_transfer_with_scc_is_copied(stack: Stack) -> None:
    data = _study("vienna-1")
    with stack.client("clinic-vienna") as http:
        study = http.post("/studies", content=data).json()["study_id"]
        response = http.post(f"/studies/{study}/transfer", json={"to": "US"})
    assert response.status_code == 200, response.text
    assert response.json()["copied_to"] == "US"
    res = stack.residency()
    [(_, us_target)] = res.location_targets("US", ["local"])
    tenant = rs.Tenant(id="clinic-vienna", country="AT", agreements={rs.Agreement(
        "scc", destinations=["US"], reference="SCC-VIE-1", signed_on=date(2025, 6, 1))})
    copy = res.store(us_target, "US").get(
        tenant_key(tenant, f"studies/{study}/original.dcm"))
    assert copy == data
    # The audit trail names the scoped agreement the transfer rests on (the clinic's
    # only transfer: its decision, then the copy).
    rested_on = [(e.operation, e.outcome, e.destination_country, e.agreements)
                 for e in audit_log_events(stack.audit) if e.tenant_id == "clinic-vienna"
                 and e.operation in ("transfer", "transfer_check") and e.outcome != "intent"]
    assert rested_on == [("transfer_check", "allowed", "US", ("scc[SCC-VIE-1]",)),
                         ("transfer", "ok", "US", ("scc[SCC-VIE-1]",))], rested_on


def test_location_without_a_model_fails_closed(stack: Stack) -> None:
    before = len(stack.received("DE")) + len(stack.received("AU"))
    with stack.client("clinic-paris") as http:
        response = http.post("/studies", content=_study("paris-1"))
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert detail["error"] == "no_compute_in_location" and detail["location"] == "FR"
    assert len(stack.received("DE")) + len(stack.received("AU")) == before
    with stack.client("clinic-paris") as http:  # stored in France, without a result
        stored = http.get(f"/studies/{detail['study_id']}")
    assert stored.status_code == 200 and stored.json()["location"] == "FR"
    assert stored.json()["result"] is None


def test_unknown_clinic_bad_input_and_unknown_destination(stack: Stack) -> None:
    with stack.client(None) as http:
        assert http.post("/studies", content=b"x").status_code == 403
    with stack.client("clinic-nowhere") as http:
        response = http.post("/studies", content=b"x")
        assert response.status_code == 403
        assert "not registered" in response.json()["detail"]["message"]
    with stack.client("clinic-berlin") as http:
        assert http.post("/studies", content=b"").status_code == 400
        assert http.get("/studies/../../etc").status_code == 404
        assert http.get("/studies/" + "0" * 32).status_code == 404
        study = http.post("/studies", content=_study("berlin-3")).json()["study_id"]
        response = http.post(f"/studies/{study}/transfer", json={"to": "Atlantis"})
        assert response.status_code == 400
        assert "not a residency location" in response.json()["detail"]["message"]


def test_report_draft_goes_to_the_declared_processor(stack: Stack) -> None:
    with stack.client("clinic-berlin") as http:
        study = http.post("/studies", content=_study("berlin-draft")).json()
        before = len(stack.drafted())
        response = http.post(f"/studies/{study['study_id']}/report-draft",
                             json={"modality": "MR"})
        assert response.status_code == 200, response.text
        stored = http.get(f"/studies/{study['study_id']}").json()
    body = response.json()
    assert body["draft"]["drafter"] == "stub-drafter-1" and "nodule" in body["draft"]["text"]
    # The processor got the summary only: modality and findings, no image, no study id.
    [received] = stack.drafted()[before:]
    findings = study["result"]["model"]["findings"]
    assert received["summary"] == {"modality": "MR", "model": "stub-segmenter-1",
                                   "findings": findings}
    assert study["study_id"] not in json.dumps(received)
    assert received["data_class_header"] is None
    assert stored["result"] == study["result"]
    store = stack.residency().storage_for(rs.Tenant(id="clinic-berlin", country="DE"))
    saved = json.loads(store.get(body["stored_at"]))
    assert saved["draft"] == body["draft"]
    # Audited: egress of personal data to the processor, in the US, under its SCC.
    events = [e for e in stack.egress_events("clinic-berlin", until=2)
              if e.processor == "report_drafter"]
    assert [(e.outcome, e.status, e.data_class, e.destination_country, e.is_transfer,
             e.purpose, e.endpoint) for e in events] == [
        ("ok", 200, "personal", "US", True, "report_drafting",
         stack.drafter.url + "/v1/draft")]
    assert events[0].agreements == ("scc[SCC-DRAFT-1]",)


@pytest.mark.parametrize(("clinic", "law", "why"), [
    ("clinic-izmir", "KVKK", "kvkk_standard_contract[KVKK-IZM-1] covers DE, not US"),
    ("clinic-sydney", "Australian Privacy Principle 8", "app8_contract"),
])
def test_blocked_report_draft_is_451_with_the_reasons_and_sends_nothing(
        stack: Stack, clinic: str, law: str, why: str) -> None:
    with stack.client(clinic) as http:
        upload = http.post("/studies", content=_study(f"{clinic}-draft"))
        assert upload.status_code == 201, upload.text
        study = upload.json()["study_id"]
        before = len(stack.drafted())
        response = http.post(f"/studies/{study}/report-draft")
    assert response.status_code == 451, response.text
    detail = response.json()["detail"]
    assert detail["error"] == "egress_blocked" and detail["host"] == "127.0.0.1"
    assert any(law in reason and why in reason for reason in detail["reasons"]), detail
    assert detail["unblock_with"]
    assert len(stack.drafted()) == before  # refused before a byte was sent
    blocked = [e for e in stack.egress_events(clinic, until=2) if e.outcome == "blocked"]
    assert [(e.processor, e.data_class, e.destination_country) for e in blocked] == [
        ("report_drafter", "personal", "US")]
    # The inference for the same study went to the clinic's own location, as before.
    inference = [e for e in stack.egress_events(clinic) if e.processor is None]
    assert inference and {e.outcome for e in inference} == {"ok"}


def test_report_draft_needs_an_inference_result(stack: Stack) -> None:
    with stack.client("clinic-berlin") as http:
        response = http.post("/studies/" + "0" * 32 + "/report-draft")
    assert response.status_code == 404
    assert response.json()["detail"]["error"] == "no_result"


def test_the_removed_compute_mapping_is_refused_at_start_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "examples"))
    from imaging_service.config import ConfigError, ServiceConfig

    (tmp_path / "tenants.json").write_text(json.dumps(TENANTS))
    with pytest.raises(ConfigError, match="declare each location's model server"):
        ServiceConfig.from_env({"IMAGING_TENANTS": str(tmp_path / "tenants.json"),
                                "IMAGING_COMPUTE": "{}"})
