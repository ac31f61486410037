"""One test per enforceable promise of the five seed privacy policies (see
docs/promises.md, which names each test). The example maps in region_maps/examples/ are
the configurations a company with that policy would run."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import struct
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import yaml
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

import residency_sdk as rs
from residency_sdk.audit import verify_log
from residency_sdk.erasure import audit_log_events
from residency_sdk.infra.plan import build_plan
from residency_sdk.infra.terraform import write as write_terraform
from residency_sdk.marks import CATEGORY_META
from residency_sdk.regionmap import load_region_map
from residency_sdk.storage.factory import open_store
from residency_sdk.storage.keys import tenant_key

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "region_maps" / "examples"
EXAMPLE_MAPS = sorted(EXAMPLES.glob("*.yaml"))


def _map(name: str) -> Path:
    return EXAMPLES / f"{name}.yaml"


def _in_memory(target: rs.StorageTarget, _location: str) -> rs.ObjectStore:
    """Objects in memory: these promises are about routing, retention and audit, not
    about a backend (each backend's own promises are proven on it)."""
    return rs.MemoryStore(target)


def _tenant(country: str, *agreements: str) -> rs.Tenant:
    return rs.Tenant(id=f"clinic-{uuid.uuid4().hex[:10]}", country=country,
                     agreements=frozenset(agreements))


# --- the example maps --------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLE_MAPS, ids=lambda p: p.stem)
def test_every_example_map_validates_and_extends_default(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    assert raw["extends"] == "default"
    region_map = load_region_map(path)
    assert region_map.name == path.stem
    assert all(loc.retention for loc in region_map.locations.values())
    # The map is also what the router and the infra plan read: both accept it.
    res = rs.Residency.load(path)
    for loc_id in region_map.locations:
        assert build_plan(region_map, loc_id).location == loc_id
    assert res.map.name == path.stem


def test_there_is_one_example_map_per_seed_policy() -> None:
    assert {p.stem for p in EXAMPLE_MAPS} == {"mdai", "medagento", "mvision",
                                              "med_dimensions", "medsee"}


# --- retention periods, enforced by the sweep -------------------------------------------

# (map, location, category, retention in hours) straight from each policy's text.
RETENTION_PROMISES = [
    ("mvision", "DE", "imaging_upload", 24),
    ("mvision", "DE", "operational_log", 3653 * 24),
    ("mvision", "US", "billing", 3653 * 24),
    ("mvision", "DE", "audit", 2192 * 24),
    ("medagento", "US", "clinical_record", 2557 * 24),
    ("medagento", "US", "account_data", 30 * 24),
    ("medagento", "US", "audit", 2192 * 24),
    ("mdai", "US", "backup", 35 * 24),
    ("mdai", "US", "operational_log", 90 * 24),
    ("med_dimensions", "US", "patient_information", 2557 * 24),
    ("medsee", "IN", "operational_log", 365 * 24),
    ("medsee", "IN", "account_data", 730 * 24),
]


@pytest.mark.parametrize(("name", "location", "category", "hours"), RETENTION_PROMISES,
                         ids=lambda v: str(v))
def test_example_map_retention_is_enforced_by_the_sweep(name: str, location: str,
                                                       category: str, hours: int,
                                                       tmp_path: Path) -> None:
    res = rs.Residency.load(_map(name), storage=_in_memory, audit=str(tmp_path / "a.db"))
    assert res.map.locations[location].retention[category].period == timedelta(hours=hours)
    country = res.map.locations[location].country
    tenant = _tenant(country, "baa") if country == "US" else _tenant(country)
    store = res.storage_for(tenant)
    store.put("obj", b"data", data_class="personal", metadata={CATEGORY_META: category})
    start = datetime.now(UTC)

    def sweep_at(age: timedelta) -> Any:
        return res.retention_sweep(location, clock=lambda: start + age).run()

    assert sweep_at(timedelta(hours=hours) - timedelta(minutes=5)).total("deleted") == 0
    assert store.exists("obj")
    assert sweep_at(timedelta(hours=hours, minutes=5)).total("deleted") == 1
    assert not store.exists("obj")
    res.audit.flush()
    [event] = [e for e in audit_log_events(tmp_path / "a.db")
               if e.operation == "retention_delete" and e.outcome == "ok"]
    assert event.tenant_id == tenant.id and event.purpose == f"retention:{category}"


@pytest.mark.parametrize("provider_harness", ["gcp"], indirect=True)
def test_24h_upload_copies_on_the_failover_backend_are_swept_too(provider_harness: Any,
                                                                tmp_path: Path) -> None:
    # "No copies are retained": the sweep covers the in-country failover bucket as well.
    res = rs.Residency.load(provider_harness.write_map(tmp_path))
    tenant = _tenant("DE")
    res.storage_for(tenant).put("ct.dcm", b"img", data_class="phi",
                                metadata={CATEGORY_META: "imaging_upload"})
    targets = res.location_targets("DE", ["gcp"])
    assert [role for role, _ in targets] == ["primary", "failover"]
    failover = res.store(targets[1][1], "DE")
    failover.put(tenant_key(tenant, "ct.dcm"), b"img",
                 metadata={CATEGORY_META: "imaging_upload"})
    later = datetime.now(UTC) + timedelta(hours=25)
    report = res.retention_sweep("DE", providers=["gcp"], clock=lambda: later).run()
    deleted = {(i.backend.endswith("@failover"), i.key) for i in report.items
               if i.action == "deleted"}
    key = tenant_key(tenant, "ct.dcm")
    assert {(False, key), (True, key)} <= deleted
    for _, target in targets:
        assert not res.store(target, "DE").exists(key)


def test_retention_settings_become_the_infra_lifecycle_rules() -> None:
    region_map = load_region_map(_map("mvision"))
    plan = build_plan(region_map, "DE")
    for provider in plan.providers:
        rules = {r.category: r for r in provider.data.expiry}
        assert rules["imaging_upload"].period_hours == 24 and rules["imaging_upload"].days == 1
        assert rules["operational_log"].days == 3653
        assert provider.audit.lock_days == 2192


# --- hosting and transfers ---------------------------------------------------------------

SERVICE_LOCATIONS = [("DE", "DE"), ("AT", "DE"), ("IT", "DE"), ("CH", "CH"), ("GB", "GB"),
                     ("FR", "FR"), ("US", "US"), ("AU", "AU"), ("NZ", "AU"), ("TR", "DE")]


@pytest.mark.parametrize(("country", "location"), SERVICE_LOCATIONS)
def test_mvision_service_location_table(country: str, location: str) -> None:
    res = rs.Residency.load(_map("mvision"))
    assert res.resolve(_tenant(country)).location == location


def test_mvision_locations_host_on_azure_and_google_cloud_in_country() -> None:
    region_map = load_region_map(_map("mvision"))
    for loc in region_map.locations.values():
        for provider in ("azure", "gcp"):
            target = loc.backends[provider]
            assert target.country == loc.country
        assert loc.default_provider == "azure" or loc.id == "US"


def test_med_dimensions_hosts_on_aws_azure_and_google_cloud() -> None:
    loc = load_region_map(_map("med_dimensions")).locations["US"]
    assert loc.default_provider == "aws"
    assert {p for p, t in loc.backends.items() if t.baa} >= {"aws", "azure", "gcp"}


def test_medsee_indian_data_stays_in_india_on_aws() -> None:
    res = rs.Residency.load(_map("medsee"))
    placement = res.resolve(_tenant("IN"))
    assert placement.location == "IN" and placement.storage.provider == "aws"
    assert (placement.storage.region, placement.storage.failover_region) == (
        "ap-south-1", "ap-south-2")
    assert placement.storage.country == "IN"
    assert placement.compute is not None and placement.compute.region == "ap-south-1"


def test_transfers_out_of_the_eea_need_a_chapter_v_tool() -> None:
    res = rs.Residency.load(_map("mvision"))
    # An Austrian clinic: German health data cannot rest on SCCs (§ 393 SGB V, LEGAL_FACTS
    # 12; see tests/core/test_transfer_law.py).
    blocked = res.check_transfer(_tenant("AT"), "US", "phi")
    assert not blocked.allowed and "scc" in blocked.reasons[-1]
    allowed = res.check_transfer(_tenant("AT", "scc"), "US", "phi")
    assert allowed.allowed and allowed.mechanism == "scc"
    with pytest.raises(rs.TransferBlocked):
        res.require_transfer(_tenant("FR"), "US", "personal")


def test_uk_transfers_need_the_uk_addendum_or_idta() -> None:
    res = rs.Residency.load(_map("med_dimensions"))
    assert not res.check_transfer(_tenant("GB"), "US", "phi").allowed
    assert not res.check_transfer(_tenant("GB", "scc"), "US", "phi").allowed
    assert res.check_transfer(_tenant("GB", "uk_addendum"), "US", "phi").allowed
    assert res.check_transfer(_tenant("GB", "uk_idta"), "US", "phi").allowed


def test_the_most_stringent_regime_applies_when_several_govern() -> None:
    res = rs.Residency.load(_map("mvision"))
    # Turkish data stored in Germany leaving for the US: KVKK and GDPR must both allow.
    only_kvkk = res.check_transfer(_tenant("TR", "kvkk_standard_contract"), "US", "phi")
    assert not only_kvkk.allowed and set(only_kvkk.regimes) >= {"kvkk", "gdpr"}
    both = res.check_transfer(_tenant("TR", "kvkk_standard_contract", "scc"), "US", "phi")
    assert both.allowed


def test_us_phi_leaves_the_us_only_under_a_baa() -> None:
    res = rs.Residency.load(_map("mvision"))
    assert res.resolve(_tenant("US")).location == "US"
    assert not res.check_transfer(_tenant("US"), "DE", "phi").allowed
    assert res.check_transfer(_tenant("US", "baa"), "DE", "phi").allowed


def test_anonymised_data_moves_freely_pseudonymised_data_does_not() -> None:
    res = rs.Residency.load(_map("mvision"))
    clinic = _tenant("DE")
    assert res.check_transfer(clinic, "US", "anonymised").allowed
    # Pseudonymised images are still personal health data: the phi class.
    assert not res.check_transfer(clinic, "US", "phi").allowed


def test_india_transfers_follow_the_dpdp_negative_list() -> None:
    res = rs.Residency.load(_map("medsee"))
    decision = res.check_transfer(_tenant("IN"), "DE", "personal", source="IN")
    assert decision.allowed and "india_dpdp" in decision.regimes


# --- BAA, encryption, TLS, audit ------------------------------------------------------------


def test_phi_only_on_backends_covered_by_a_baa(tmp_path: Path) -> None:
    overlay = tmp_path / "no-baa.yaml"
    overlay.write_text(yaml.safe_dump({
        "extends": str(_map("medagento")), "name": "medagento-no-baa",
        "locations": {"US": {"backends": {"local": {"baa": False}}}}}))
    res = rs.Residency.load(overlay, local_root=tmp_path / "data")
    store = res.storage_for(_tenant("US", "baa"))
    with pytest.raises(rs.BAARequired):
        store.put("note.txt", b"phi", data_class="phi")
    assert not store.exists("note.txt")
    assert all(t.baa for p, t in load_region_map(_map("medagento")).locations["US"]
               .backends.items())


# The local store's stored format, version 1 (residency_sdk/storage/_local_blob.py and
# local_keys.py): read here independently of the store's own code.
_BLOB_MAGIC = b"RSDKLE01"
_BLOB_HKDF_INFO = b"residency-sdk local store v1"
_WRAP_HKDF_INFO = b"residency-sdk local tenant-key wrap v1"
_AES_256_KEY_BYTES = 32


def _hkdf_256(key: bytes, salt: bytes | None, info: bytes) -> AESGCM:
    """AES-GCM under a 256-bit key derived from ``key`` (HKDF-SHA256, as the format says)."""
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=_AES_256_KEY_BYTES, salt=salt,
                       info=info).derive(key))


def _decrypt_local_blob(root: Path, location: str, tenant_id: str, stored_key: str,
                        blob: bytes) -> bytes:
    """Decrypt a one-chunk local blob from the files alone: the location key file (a
    256-bit key), the tenant key it wraps (a 256-bit key), then the blob sealed with
    AES-256-GCM under a key derived from the tenant key. Any shorter key, another cipher or
    another layout fails here."""
    keys = root / location / ".keys"
    tenant_doc = json.loads(
        (keys / "tenants" / f"{hashlib.sha256(tenant_id.encode()).hexdigest()[:40]}.json")
        .read_text())
    location_doc = json.loads((keys / f"{tenant_doc['kek']}.json").read_text())
    assert location_doc["algorithm"] == tenant_doc["algorithm"] == "AES-256-GCM"
    location_key = base64.b64decode(location_doc["key"])
    assert len(location_key) == _AES_256_KEY_BYTES
    aad = json.dumps(["residency-sdk tenant key v1", location, tenant_id,
                      tenant_doc["key_id"]]).encode()
    tenant_key_bytes = _hkdf_256(location_key, None, _WRAP_HKDF_INFO).decrypt(
        base64.b64decode(tenant_doc["nonce"]), base64.b64decode(tenant_doc["wrapped"]), aad)
    assert len(tenant_key_bytes) == _AES_256_KEY_BYTES
    # header: magic, key-id length, key id, 32-byte salt, 7-byte nonce prefix, chunk size
    assert blob.startswith(_BLOB_MAGIC)
    kid_len = blob[len(_BLOB_MAGIC)]
    kid_end = len(_BLOB_MAGIC) + 1 + kid_len
    assert blob[len(_BLOB_MAGIC) + 1:kid_end].decode() == tenant_doc["key_id"]
    salt, prefix = blob[kid_end:kid_end + 32], blob[kid_end + 32:kid_end + 39]
    header_end = kid_end + 39 + 4
    aead = _hkdf_256(tenant_key_bytes, salt, _BLOB_HKDF_INFO)
    nonce = prefix + struct.pack(">I", 0) + b"\x01"  # chunk 0, the last one
    return aead.decrypt(nonce, blob[header_end:], blob[:header_end] + stored_key.encode())


def _medagento_on(harness: Any, tmp_path: Path) -> Path:
    """The MedAgento map with ``harness``'s provider's backends on its emulator."""
    doc = yaml.safe_load(harness.write_map(tmp_path).read_text())
    doc.update({"extends": str(_map("medagento")), "name": f"medagento-{harness.provider}"})
    path = tmp_path / "medagento-emulated.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_phi_is_encrypted_at_rest_with_aes_256(provider_harness: Any, tmp_path: Path) -> None:
    """MedAgento PHI written through the facade is encrypted at rest with AES-256, shown
    by what each backend stores or was sent and reports back, never by a label:

    - local: the stored files decrypt only as AES-256-GCM under 256-bit keys;
    - aws: the PutObject asked for SSE-KMS with the tenant's key, and moto's HeadObject
      reports ``aws:kms`` with that key (not the bucket default), a KMS key of spec
      SYMMETRIC_DEFAULT (AES-256-GCM) in the location's region;
    - gcp: the upload named the location's Cloud KMS key; the emulator never reports
      ``kms_key_name`` (TEST_INFRA.md), so what it reports can only be checked to be that
      key or nothing;
    - azure: the upload named the location's encryption scope; Azurite drops scopes
      (TEST_INFRA.md), so the reported scope, likewise, is that scope or nothing.
    Cloud KMS keys and Azure encryption scopes are AES-256 by the providers' definition;
    the emulators cannot show the cipher itself."""
    provider = provider_harness.provider
    tenant = _tenant("US", "baa")
    sent: list[dict[str, str]] = []

    def opener(target: rs.StorageTarget, location: str) -> rs.ObjectStore:
        if target.provider == "azure":
            from residency_sdk.storage.azure import AzureStore

            return AzureStore(target, raw_request_hook=lambda r: sent.append(
                {"method": r.http_request.method, "url": r.http_request.url,
                 **dict(r.http_request.headers)}))
        return open_store(target, local_root=provider_harness.local_root, location=location)

    res = rs.Residency.load(_medagento_on(provider_harness, tmp_path), storage=opener,
                            local_root=provider_harness.local_root if provider == "local"
                            else None)
    target = res.backend("US", provider)
    adapter: Any = res.store(target, "US")
    if provider == "aws":
        adapter.client.meta.events.register("before-send.s3.PutObject", lambda request, **kw:
                                             sent.append({"url": request.url, **{
                                                 k.lower(): v.decode() if isinstance(
                                                     v, bytes) else v for k, v in
                                                 request.headers.items()}}))
    elif provider == "gcp":
        adapter.client._http.hooks["response"].append(
            lambda response, *a, **kw: sent.append({"url": response.request.url, "body": bytes(
                response.request.body or b"") if isinstance(response.request.body, bytes)
                else b""}))
    secret = b"PATIENT-NAME-JANE-DOE" * 10
    info = res.storage_for(tenant, provider=provider).put("note.txt", secret,
                                                           data_class="phi")
    stored = tenant_key(tenant, "note.txt")
    try:
        if provider == "local":
            assert info.encryption == "local:aes-256-gcm"
            root = provider_harness.local_root
            files = [p for p in root.rglob("*") if p.is_file()]
            assert files and all(b"PATIENT-NAME" not in p.read_bytes() for p in files)
            [blob] = (root / "US" / target.bucket).glob("tenants/*/note.txt/@v-*")
            assert _decrypt_local_blob(root, "US", tenant.id, stored,
                                       blob.read_bytes()) == secret
        elif provider == "aws":
            tenant_kms = adapter.tenant_key_id(tenant.id)
            assert tenant_kms and tenant_kms != provider_harness.kms_keys["US"]
            [put] = [h for h in sent if urlsplit(h["url"]).path.endswith("/" + stored)]
            assert put["x-amz-server-side-encryption"] == "aws:kms"
            assert put["x-amz-server-side-encryption-aws-kms-key-id"] == tenant_kms
            head = provider_harness.aws_client("s3", target.region).head_object(
                Bucket=target.bucket, Key=stored)
            assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms",
                                                                          tenant_kms)
            meta = provider_harness.aws_client("kms", target.region).describe_key(
                KeyId=tenant_kms)["KeyMetadata"]
            assert (meta["KeySpec"], meta["KeyUsage"], meta["KeyState"]) == (
                "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", "Enabled")
            assert meta["Arn"].split(":")[3] == target.region == "us-east-1"
        elif provider == "gcp":
            # a multipart upload: the object's name is in the JSON part of the body
            uploads = [h["url"] for h in sent if "/upload/" in h["url"]
                       and f'"name": "{stored}"'.encode() in h["body"]]
            assert len(uploads) == 1, [h["url"] for h in sent]
            for url in uploads:
                assert parse_qs(urlsplit(url).query)["kmsKeyName"] == [target.kms_key]
            assert "/locations/us-central1/" in target.kms_key
            blob = provider_harness.gcs_client().bucket(target.bucket).get_blob(stored)
            assert blob is not None and blob.kms_key_name in (None, target.kms_key)
        else:
            writes = [h for h in sent if h["method"] == "PUT"
                      and quote(stored, safe="/") in h["url"]]
            assert writes
            for request in writes:
                assert request.get("x-ms-encryption-scope") == target.encryption_scope \
                    == "residency-us-cmk"
            props = adapter.head(stored)
            assert props.kms_key in (None, target.encryption_scope)
    finally:
        res.close()


def test_every_example_map_names_an_in_location_key_for_aws_and_gcp() -> None:
    """The aws and gcp backends of every example map name a customer-managed key (the
    adapters refuse to write without one), and a GCP key path names the backend's own
    region."""
    for path in EXAMPLE_MAPS:
        for loc in load_region_map(path).locations.values():
            for provider in ("aws", "gcp"):
                target = loc.backends.get(provider)
                assert target is None or target.kms_key, (path.stem, loc.id, provider)
                if provider == "gcp" and target is not None:
                    assert f"/locations/{target.region}/" in str(target.kms_key)


def test_keys_rotate_and_tls_is_at_least_1_2_in_the_infra_plan(tmp_path: Path) -> None:
    """MedAgento's US plan rotates every provider's key every 90 days and asks for TLS 1.2
    at least, and the Terraform export carries exactly that: KMS rotation 90 days, the
    Cloud KMS rotation period of 90 days, the Key Vault key's P90D rotation policy, the S3
    bucket policy denying TLS below 1.2 and the storage account's TLS1_2 minimum.
    (GCS has no TLS setting to export: Google serves it with TLS 1.2 or newer only.)"""
    plan = build_plan(load_region_map(_map("medagento")), "US")
    assert {p.provider for p in plan.providers} == {"aws", "gcp", "azure"}
    for provider in plan.providers:
        assert provider.key.rotation_days == 90
        assert provider.min_tls == "1.2"
    write_terraform(plan, tmp_path)
    resources = json.loads((tmp_path / "main.tf.json").read_text())["resource"]
    [aws_key] = resources["aws_kms_key"].values()
    assert (aws_key["enable_key_rotation"], aws_key["rotation_period_in_days"]) == (True, 90)
    [gcp_key] = resources["google_kms_crypto_key"].values()
    assert gcp_key["rotation_period"] == f"{90 * 86400}s"
    assert gcp_key["purpose"] == "ENCRYPT_DECRYPT"
    [azure_key] = resources["azurerm_key_vault_key"].values()
    [policy] = azure_key["rotation_policy"]
    assert policy["automatic"] == [{"time_after_creation": "P90D"}]
    [account] = resources["azurerm_storage_account"].values()
    assert account["min_tls_version"] == "TLS1_2"
    assert account["https_traffic_only_enabled"] is True
    bucket_policies = resources["aws_s3_bucket_policy"]
    assert set(bucket_policies) == {"data", "audit"}
    for bucket_policy in bucket_policies.values():
        statements = {st["Sid"]: st for st in json.loads(bucket_policy["policy"])["Statement"]}
        assert statements["DenyOldTls"]["Effect"] == "Deny"
        assert statements["DenyOldTls"]["Condition"] == {
            "NumericLessThan": {"s3:TlsVersion": 1.2}}
        assert statements["DenyInsecureTransport"]["Condition"] == {
            "Bool": {"aws:SecureTransport": "false"}}


@pytest.mark.parametrize("endpoint", ["http://inference.example.com",
                                      "ftp://storage.example.com", "http://10.0.0.5:9000"])
def test_plain_http_endpoints_are_refused(endpoint: str, tmp_path: Path) -> None:
    overlay = tmp_path / "insecure.yaml"
    overlay.write_text(yaml.safe_dump({
        "extends": "default", "name": "insecure",
        "locations": {"DE": {"backends": {"aws": {"region": "eu-central-1",
                                                  "endpoint": endpoint}}}}}))
    with pytest.raises(rs.MapError, match="refused"):
        rs.Residency.load(overlay)


def test_every_phi_access_is_audited_with_who_when_what(tmp_path: Path) -> None:
    audit = tmp_path / "audit.db"
    res = rs.Residency.load(_map("medagento"), storage=_in_memory, audit=str(audit))
    tenant = _tenant("US", "baa")
    store = res.storage_for(tenant, actor="dr.house", purpose="treatment")
    before = datetime.now(UTC)
    store.put("notes/1.txt", b"phi", data_class="phi")
    store.get("notes/1.txt")
    store.delete("notes/1.txt")
    res.audit.flush()
    events = [e for e in audit_log_events(audit) if e.tenant_id == tenant.id
              and e.operation in ("put", "get", "delete") and e.outcome != "intent"
              and e.purpose not in ("tenant_record", "lineage")]
    assert [e.operation for e in events] == ["put", "get", "delete"]
    for event in events:
        assert event.actor == "dr.house" and event.purpose == "treatment"
        assert event.object_key == "notes/1.txt" and event.time >= before


def test_tampering_with_the_audit_trail_is_detected(tmp_path: Path) -> None:
    audit = tmp_path / "audit.db"
    res = rs.Residency.load(_map("medagento"), storage=_in_memory, audit=str(audit))
    store = res.storage_for(_tenant("US", "baa"), actor="dr.house")
    store.put("a.txt", b"phi", data_class="phi")
    store.get("a.txt")
    assert verify_log(audit).broken is None
    with sqlite3.connect(audit) as conn:
        conn.execute("UPDATE audit_events SET event = replace(event, 'dr.house', 'nobody')")
    assert verify_log(audit).broken is not None
