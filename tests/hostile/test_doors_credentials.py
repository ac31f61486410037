"""Issue 11, hole 3: one process-wide credential or endpoint must not redirect every
location; and "verify on open": a bucket that is not where the map says is refused.

Against the real emulators (moto server, gcp-storage-emulator, Azurite), through the raw
adapter and through the tenant store (``rs.Residency.load(map).storage_for(tenant)``):

- ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` / a profile's ``endpoint_url`` naming
  another S3 endpoint than the map's: refused with ``EnvironmentOverride`` before any byte
  is sent, and nothing lands on that other server (a second moto server holding the same
  bucket, so the old behaviour would have written there); the same value as the map's
  endpoint works.
- ``AZURE_STORAGE_CONNECTION_STRING`` / ``RESIDENCY_AZURE_CONNECTION_STRING`` naming another
  account than the map's ``account``: refused; a per-location variable named by
  ``credentials.azure_connection_string_env`` holding the right account works, whatever the
  process-wide ones say.
- ``STORAGE_EMULATOR_HOST`` / ``API_ENDPOINT_OVERRIDE`` pointing elsewhere: refused.
- Credentials per location: ``aws_profile``, ``aws_role_arn`` (moto STS),
  ``gcp_credentials_file`` + ``gcp_project``, ``azure_identity``.
- Verify on open: an S3 bucket in us-east-1 or a GCS bucket reporting US (or the ``EU``
  multi-region) named by the DE map refuses every read and write with
  ``ResidencyViolation`` before anything lands; one region request per bucket per process,
  also for the refusal and across threads; a missing bucket is ``BucketNotFound`` and is
  not cached.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emulators import (
    AZURITE_ACCOUNT,
    AZURITE_KEY,
    Emulator,
    azurite_connection_string,
    azurite_credential_string,
    start_moto,
)
from storage_harness import ProviderHarness

import residency_sdk as rs
from residency_sdk.errors import (
    BackendNotConfigured,
    BucketNotFound,
    EnvironmentOverride,
    InsecureEndpoint,
    ResidencyViolation,
    SDKNotInstalled,
)
from residency_sdk.storage.factory import open_store

pytestmark = pytest.mark.emulator

OTHER_ACCOUNT = "otheraccount"
# A syntactically valid key that is not the emulator's: base64 of a marker we can search for.
OTHER_KEY = "T1RIRVItQUNDT1VOVC1TRUNSRVQtS0VZLU1BUktFUg=="


def _harness(provider: str, emulators: Any, monkeypatch: pytest.MonkeyPatch,
             tmp_path: Path) -> ProviderHarness:
    return ProviderHarness(provider, emulators, monkeypatch, tmp_path)


def _key(prefix: str = "doors") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}/scan.dcm"


def _tenant(prefix: str = "doors") -> rs.Tenant:
    return rs.Tenant(id=f"{prefix}-{uuid.uuid4().hex[:8]}", country="DE")


def _write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _overlay(tmp_path: Path, name: str, provider: str,
             backends: dict[str, dict[str, Any]]) -> Path:
    """A map overlay whose every location defaults to ``provider``, with ``backends``
    (location -> that provider's backend entry) merged in."""
    from residency_sdk.regionmap import load_region_map

    locations: dict[str, Any] = {}
    for loc_id in load_region_map(None).locations:
        entry: dict[str, Any] = {"default_provider": provider}
        if backends.get(loc_id):
            entry["backends"] = {provider: backends[loc_id]}
        locations[loc_id] = entry
    return _write(tmp_path / f"{name}.yaml",
                  {"extends": "default", "name": name, "locations": locations})


# --- S3: AWS_ENDPOINT_URL and friends -------------------------------------------------


@pytest.fixture(scope="module")
def rogue_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """A second S3 server holding the DE bucket too: where a process-wide endpoint would
    have sent the location's objects."""
    import boto3

    server = start_moto(tmp_path_factory.mktemp("rogue-moto"))
    try:
        s3 = boto3.client("s3", region_name="eu-central-1", endpoint_url=server.endpoint,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        s3.create_bucket(Bucket="residency-de-aws-data",
                         CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
        yield server
    finally:
        server.stop()


def _rogue_keys(rogue: Emulator) -> list[str]:
    import boto3

    s3 = boto3.client("s3", region_name="eu-central-1", endpoint_url=rogue.endpoint,
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    page = s3.list_objects_v2(Bucket="residency-de-aws-data")
    return [o["Key"] for o in page.get("Contents", [])]


@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"])
def test_aws_endpoint_variable_cannot_redirect_a_location_without_map_endpoint(
        variable: str, emulators: Any, rogue_moto: Emulator,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The production shape: the map names no endpoint (AWS's regional one). Before the
    fix boto3 took the variable and the object went to the rogue server."""
    aws = _harness("aws", emulators, monkeypatch, tmp_path)
    target = aws.target(aws.write_map(tmp_path)).model_copy(update={"endpoint": None})
    monkeypatch.setenv(variable, f"http://user:hunter2@127.0.0.1:{rogue_moto.port}")
    before = _rogue_keys(rogue_moto)
    key = _key()
    with pytest.raises(EnvironmentOverride) as excinfo:
        open_store(target).put(key, b"PHI that must stay in Germany")
    message = str(excinfo.value)
    assert variable in message and f"127.0.0.1:{rogue_moto.port}" in message
    assert "https://s3.eu-central-1.amazonaws.com" in message  # the map's (implied) one
    assert "hunter2" not in message and "user" not in message.split(variable, 1)[1][:40]
    assert "region map" in message  # the fix
    assert _rogue_keys(rogue_moto) == before


def test_aws_endpoint_variable_differing_from_the_map_is_refused(
        emulators: Any, rogue_moto: Emulator, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    aws = _harness("aws", emulators, monkeypatch, tmp_path)
    map_path = aws.write_map(tmp_path)
    target = aws.target(map_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", rogue_moto.endpoint)
    with pytest.raises(EnvironmentOverride, match="AWS_ENDPOINT_URL") as excinfo:
        open_store(target)
    assert aws.endpoint in str(excinfo.value)  # the map's endpoint is named too
    # Through the tenant store: refused too, nothing written anywhere.
    res = rs.Residency.load(map_path)
    try:
        with pytest.raises(EnvironmentOverride):
            res.storage_for(_tenant()).put("notes/a.txt", b"phi", data_class="phi")
    finally:
        res.close()
    assert _rogue_keys(rogue_moto) == []

    # The same variables naming the map's own endpoint redirect nothing: accepted.
    assert aws.endpoint is not None
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint + "/")  # same endpoint, other spelling
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", aws.endpoint.replace("http://", "HTTP://"))
    store = open_store(aws.target(map_path))
    key = _key()
    store.put(key, b"stays in eu-central-1")
    assert store.get(key) == b"stays in eu-central-1"
    res = rs.Residency.load(map_path)
    try:
        tenant_store = res.storage_for(_tenant())
        tenant_store.put("notes/a.txt", b"ok", data_class="phi")
        assert tenant_store.get("notes/a.txt") == b"ok"
    finally:
        res.close()


def test_aws_profile_endpoint_url_is_refused(emulators: Any, rogue_moto: Emulator,
                                             monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    aws = _harness("aws", emulators, monkeypatch, tmp_path)
    config = tmp_path / "aws-config"
    config.write_text(f"[default]\nendpoint_url = {rogue_moto.endpoint}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    target = aws.target(aws.write_map(tmp_path))
    with pytest.raises(EnvironmentOverride, match="endpoint_url in AWS profile 'default'"):
        open_store(target)
    config.write_text(f"[default]\nservices = redirect\n\n[services redirect]\ns3 =\n"
                      f"  endpoint_url = {rogue_moto.endpoint}\n")
    with pytest.raises(EnvironmentOverride, match="services section 'redirect'"):
        open_store(target)
    assert _rogue_keys(rogue_moto) == []


# --- S3: credentials per location -----------------------------------------------------


def _signing_keys(store: Any) -> list[str]:
    """Access key ids of every request ``store``'s S3 client signs (before-send hook)."""
    seen: list[str] = []

    def hook(request: Any, **_: Any) -> None:
        auth = request.headers.get("Authorization", b"")
        auth = auth.decode() if isinstance(auth, bytes) else str(auth)
        if "Credential=" in auth:
            seen.append(auth.split("Credential=", 1)[1].split("/", 1)[0])

    store.client.meta.events.register("before-send.s3", hook)
    return seen


def test_aws_profile_per_location(emulators: Any, monkeypatch: pytest.MonkeyPatch,
                                  tmp_path: Path) -> None:
    aws = _harness("aws", emulators, monkeypatch, tmp_path)
    (tmp_path / "aws-config").write_text("[profile residency-de]\nregion = eu-central-1\n")
    (tmp_path / "aws-creds").write_text("[residency-de]\naws_access_key_id = AKIARESIDENCYDE0001\n"
                                        "aws_secret_access_key = de-secret\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-creds"))
    map_path = aws.write_map(tmp_path, extra={"DE": {
        "credentials": {"aws_profile": "residency-de"}}})
    target = aws.target(map_path)
    assert target.credentials.aws_profile == "residency-de"
    store = open_store(target)
    keys = _signing_keys(store)
    key = _key()
    store.put(key, b"signed with the DE profile")
    assert store.get(key) == b"signed with the DE profile"
    assert keys and set(keys) == {"AKIARESIDENCYDE0001"}, keys  # not the process's "testing"

    missing = target.model_copy(update={"credentials": target.credentials.model_copy(
        update={"aws_profile": "no-such-profile"})})
    with pytest.raises(BackendNotConfigured, match="no-such-profile"):
        open_store(missing)


def test_aws_role_arn_per_location(emulators: Any, monkeypatch: pytest.MonkeyPatch,
                                   tmp_path: Path) -> None:
    aws = _harness("aws", emulators, monkeypatch, tmp_path)
    role = "arn:aws:iam::123456789012:role/residency-de-writer"
    map_path = aws.write_map(tmp_path, extra={"DE": {"credentials": {"aws_role_arn": role}}})
    store = open_store(aws.target(map_path))
    keys = _signing_keys(store)
    key = _key()
    store.put(key, b"written under the assumed role")
    assert store.get(key) == b"written under the assumed role"
    assert keys and "testing" not in keys, keys  # moto STS hands out ASIA... session keys
    assert len(set(keys)) == 1


# --- Azure: connection strings -------------------------------------------------------


def _blob_exists(port: int, container: str, key: str) -> bool:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite_connection_string(port))
    try:
        return bool(service.get_container_client(container).get_blob_client(key).exists())
    finally:
        service.close()


@pytest.mark.parametrize("variable", ["AZURE_STORAGE_CONNECTION_STRING",
                                      "RESIDENCY_AZURE_CONNECTION_STRING"])
def test_azure_global_connection_string_naming_another_account_is_refused(
        variable: str, emulators: Any, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """The default map's DE account is ``residencyde``; a process-wide string naming the
    emulator's ``devstoreaccount1`` used to win, so DE's blobs landed in that account
    while the audit reported residencyde / germanywestcentral."""
    azure = _harness("azure", emulators, monkeypatch, tmp_path)
    port = emulators.get("azure").port
    monkeypatch.delenv("RESIDENCY_AZURE_CONNECTION_STRING", raising=False)
    monkeypatch.setenv(variable, azurite_connection_string(port))
    map_path = _write(tmp_path / "plain.yaml", {"extends": "default", "name": "plain"})
    target = rs.Residency.load(map_path).map.locations["DE"].backends["azure"]
    assert target.account == "residencyde" and target.endpoint is None
    key = _key()
    with pytest.raises(EnvironmentOverride) as excinfo:
        open_store(target).put(key, b"PHI that must stay in residencyde")
    message = str(excinfo.value)
    assert variable in message and AZURITE_ACCOUNT in message and "residencyde" in message
    assert "azure_connection_string_env" in message  # the fix
    assert AZURITE_KEY not in message and "AccountKey" not in message
    assert not _blob_exists(port, target.bucket, key)
    res = rs.Residency.load(map_path)
    try:
        with pytest.raises(EnvironmentOverride):
            res.storage_for(_tenant()).put("notes/a.txt", b"phi", data_class="phi")
    finally:
        res.close()
    assert azure.provider == "azure"


def test_azure_connection_string_naming_another_endpoint_is_refused(
        emulators: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    azure = _harness("azure", emulators, monkeypatch, tmp_path)
    target = azure.target(azure.write_map(tmp_path))
    # Right account name, other endpoint: the string must not move the location.
    monkeypatch.setenv("RESIDENCY_AZURE_CONNECTION_STRING",
                       azurite_connection_string(1) + "SharedAccessSignature=sv=1&sig=SECRET")
    with pytest.raises(EnvironmentOverride, match="blob endpoint") as excinfo:
        open_store(target)
    assert "SECRET" not in str(excinfo.value)
    # An Azure cloud suffix other than the public one, with no endpoint in the map.
    plain = target.model_copy(update={"endpoint": None, "account": AZURITE_ACCOUNT})
    monkeypatch.setenv("RESIDENCY_AZURE_CONNECTION_STRING",
                       f"DefaultEndpointsProtocol=https;AccountName={AZURITE_ACCOUNT};"
                       f"AccountKey={OTHER_KEY};EndpointSuffix=core.chinacloudapi.cn")
    with pytest.raises(EnvironmentOverride, match=r"core\.chinacloudapi\.cn"):
        open_store(plain)


def _per_location_map(azure: ProviderHarness, tmp_path: Path) -> Path:
    """Every location on Azurite, each reading its own connection-string variable."""
    from residency_sdk.regionmap import load_region_map

    backends = {}
    for loc_id in load_region_map(None).locations:
        backends[loc_id] = {**azure.backend_overlay(loc_id), "credentials": {
            "azure_connection_string_env": f"RESIDENCY_AZURE_{loc_id}_CONNECTION_STRING"}}
    return _overlay(tmp_path, "per-location-azure", "azure", backends)


def test_azure_per_location_connection_string_works_whatever_the_global_ones_say(
        emulators: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    azure = _harness("azure", emulators, monkeypatch, tmp_path)
    other = (f"DefaultEndpointsProtocol=https;AccountName={OTHER_ACCOUNT};"
             f"AccountKey={OTHER_KEY};EndpointSuffix=core.windows.net")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", other)
    monkeypatch.setenv("RESIDENCY_AZURE_CONNECTION_STRING", other)
    map_path = _per_location_map(azure, tmp_path)
    from residency_sdk.regionmap import load_region_map

    for loc_id in load_region_map(None).locations:
        monkeypatch.setenv(f"RESIDENCY_AZURE_{loc_id}_CONNECTION_STRING",
                           azurite_credential_string())
    target = azure.target(map_path)
    assert target.credentials.azure_connection_string_env == \
        "RESIDENCY_AZURE_DE_CONNECTION_STRING"
    store = open_store(target)
    key = _key()
    store.put(key, b"in the DE account")
    assert store.get(key) == b"in the DE account"
    res = rs.Residency.load(map_path)
    try:
        tenant_store = res.storage_for(_tenant())
        tenant_store.put("notes/a.txt", b"ok", data_class="phi")
        assert tenant_store.get("notes/a.txt") == b"ok"
    finally:
        res.close()

    # The location's own variable naming another account is refused as well...
    monkeypatch.setenv("RESIDENCY_AZURE_DE_CONNECTION_STRING",
                       f"AccountName={OTHER_ACCOUNT};AccountKey={OTHER_KEY}")
    with pytest.raises(EnvironmentOverride, match="RESIDENCY_AZURE_DE_CONNECTION_STRING"):
        open_store(target)
    # ... and an unset one says which variable the map names.
    monkeypatch.delenv("RESIDENCY_AZURE_DE_CONNECTION_STRING")
    with pytest.raises(BackendNotConfigured, match="RESIDENCY_AZURE_DE_CONNECTION_STRING"):
        open_store(target)


def test_azure_identity_never_uses_a_global_connection_string(
        emulators: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    azure = _harness("azure", emulators, monkeypatch, tmp_path)
    target = azure.target(azure.write_map(tmp_path, extra={"DE": {
        "credentials": {"azure_identity": True}}}))
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING",
                       azurite_connection_string(emulators.get("azure").port))
    if importlib.util.find_spec("azure.identity") is None:
        with pytest.raises(SDKNotInstalled, match="azure-identity"):
            open_store(target)
        return
    # The emulator is plain http: a token is never sent there, and the refusal says so
    # (azure-storage-blob's own error was a bare ValueError).
    with pytest.raises(InsecureEndpoint, match="https") as refused:
        open_store(target)
    assert "azure_connection_string_env" in str(refused.value)
    # Over https the location authenticates with its identity, not the global string.
    account = target.account or "devstoreaccount1"
    secure = target.model_copy(update={
        "endpoint": f"https://{account}.blob.core.windows.net"})
    store = open_store(secure)
    assert type(store.service.credential).__name__ == "DefaultAzureCredential"
    assert "AccountKey" not in repr(vars(store.service.credential))


def test_azure_map_endpoint_of_another_account_is_refused(
        emulators: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    azure = _harness("azure", emulators, monkeypatch, tmp_path)
    target = azure.target(azure.write_map(tmp_path)).model_copy(
        update={"account": "residencyde"})  # the endpoint serves devstoreaccount1
    with pytest.raises(ResidencyViolation, match="serves storage account"):
        open_store(target)


# --- GCS: the library's endpoint overrides ------------------------------------------


def test_storage_emulator_host_cannot_redirect_a_location(
        emulators: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The map names no endpoint (storage.googleapis.com): STORAGE_EMULATOR_HOST used to
    send the location's objects to whatever it named (here: the emulator)."""
    gcp = _harness("gcp", emulators, monkeypatch, tmp_path)
    assert gcp.endpoint is not None
    target = gcp.target(gcp.write_map(tmp_path)).model_copy(update={"endpoint": None})
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcp.endpoint)
    key = _key()
    with pytest.raises(EnvironmentOverride, match="STORAGE_EMULATOR_HOST") as excinfo:
        open_store(target).put(key, b"PHI")
    assert "https://storage.googleapis.com" in str(excinfo.value)
    assert not gcp.gcs_client().bucket(target.bucket).blob(key).exists()
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    monkeypatch.setenv("API_ENDPOINT_OVERRIDE", "https://storage.example.net")
    with pytest.raises(EnvironmentOverride, match="API_ENDPOINT_OVERRIDE"):
        open_store(target)


def test_gcs_override_equal_to_the_map_endpoint_works_and_mtls_always_is_refused(
        emulators: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    gcp = _harness("gcp", emulators, monkeypatch, tmp_path)
    assert gcp.endpoint is not None
    target = gcp.target(gcp.write_map(tmp_path))
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcp.endpoint)
    store = open_store(target)
    key = _key()
    store.put(key, b"on the map's endpoint")
    assert store.get(key) == b"on the map's endpoint"
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    monkeypatch.setenv("GOOGLE_API_USE_MTLS_ENDPOINT", "always")
    with pytest.raises(EnvironmentOverride, match="GOOGLE_API_USE_MTLS_ENDPOINT"):
        open_store(target)


def test_gcp_credentials_file_and_project_per_location(
        emulators: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    gcp = _harness("gcp", emulators, monkeypatch, tmp_path)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    key_file = tmp_path / "de-sa.json"
    key_file.write_text(json.dumps({
        "type": "service_account", "project_id": "key-file-project",
        "private_key_id": "0123", "private_key": pem,
        "client_email": "residency-de@key-file-project.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token"}))
    target = gcp.target(gcp.write_map(tmp_path, extra={"DE": {"credentials": {
        "gcp_credentials_file": str(key_file), "gcp_project": "residency-de-project"}}}))
    target = target.model_copy(update={"endpoint": None})  # the real service: no request made
    store = open_store(target)
    assert store.client.project == "residency-de-project"
    assert store.client._credentials.service_account_email == \
        "residency-de@key-file-project.iam.gserviceaccount.com"
    assert store.client.api_endpoint == "https://storage.googleapis.com"
    broken = target.model_copy(update={"credentials": target.credentials.model_copy(
        update={"gcp_credentials_file": str(tmp_path / "missing.json")})})
    with pytest.raises(BackendNotConfigured, match=r"missing\.json"):
        open_store(broken)


# --- verify on open -------------------------------------------------------------------


def _count_location_requests(store: Any) -> list[str]:
    seen: list[str] = []
    lock = threading.Lock()

    def hook(**_: Any) -> None:
        with lock:
            seen.append("GetBucketLocation")

    store.client.meta.events.register("before-send.s3.GetBucketLocation", hook)
    return seen


def _s3_raw_keys(aws: ProviderHarness, bucket: str, region: str) -> list[str]:
    page = aws.aws_client("s3", region).list_objects_v2(Bucket=bucket)
    return [o["Key"] for o in page.get("Contents", [])]


def test_s3_bucket_in_another_region_is_refused_before_any_byte(
        emulators: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    aws = _harness("aws", emulators, monkeypatch, tmp_path)
    bucket = f"misplaced-{uuid.uuid4().hex[:10]}"
    aws.make_bucket(bucket, "us-east-1", kms_key=aws.kms_keys["DE"])
    map_path = aws.write_map(tmp_path, extra={"DE": {"bucket": bucket}})
    target = aws.target(map_path)
    assert target.region == "eu-central-1" and target.bucket == bucket
    store = open_store(target)
    requests = _count_location_requests(store)
    key = _key()
    with pytest.raises(ResidencyViolation) as excinfo:
        store.put(key, b"PHI for Germany")
    message = str(excinfo.value)
    assert bucket in message and "us-east-1" in message and "US" in message
    assert "DE" in message and "eu-central-1" in message  # expected country, the fix
    for attempt in (lambda: store.get(key), lambda: store.head(key),
                    lambda: list(store.list("")), lambda: store.delete(key),
                    lambda: store.exists(key)):
        with pytest.raises(ResidencyViolation):
            attempt()
    assert _s3_raw_keys(aws, bucket, "us-east-1") == []
    assert requests == ["GetBucketLocation"]  # the verdict is cached, the refusal too
    again = open_store(target)
    again_requests = _count_location_requests(again)
    with pytest.raises(ResidencyViolation):
        again.put(key, b"PHI")
    assert again_requests == []
    # Through the tenant store: refused, nothing lands.
    res = rs.Residency.load(map_path)
    try:
        with pytest.raises(ResidencyViolation, match=bucket):
            res.storage_for(_tenant()).put("notes/a.txt", b"phi", data_class="phi")
    finally:
        res.close()
    assert _s3_raw_keys(aws, bucket, "us-east-1") == []
    # `residency verify` still reports the bucket instead of being refused by it.
    from residency_sdk.storage.deployment import verify_location

    report = verify_location(rs.Residency.load(map_path).policy, "DE", provider="aws")
    assert {c.check: c.status for c in report.checks}["region"] == "fail"


def test_s3_region_is_asked_once_per_bucket_per_process(
        emulators: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    aws = _harness("aws", emulators, monkeypatch, tmp_path)
    bucket = f"placed-{uuid.uuid4().hex[:10]}"
    aws.make_bucket(bucket, "eu-central-1", kms_key=aws.kms_keys["DE"])
    target = aws.target(aws.write_map(tmp_path, extra={"DE": {"bucket": bucket}}))
    first = open_store(target)
    requests = _count_location_requests(first)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            first.put(f"t/{i}", b"x" * i)
            assert first.get(f"t/{i}") == b"x" * i
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert requests == ["GetBucketLocation"]  # eight threads, one request
    second = open_store(target)  # a new adapter on the same bucket: no second request
    second_requests = _count_location_requests(second)
    assert second.get("t/3") == b"xxx"
    assert second_requests == []


def test_s3_missing_bucket_is_bucket_not_found_and_not_cached(
        emulators: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    aws = _harness("aws", emulators, monkeypatch, tmp_path)
    bucket = f"later-{uuid.uuid4().hex[:10]}"
    target = aws.target(aws.write_map(tmp_path, extra={"DE": {"bucket": bucket}}))
    store = open_store(target)
    sent: list[str] = []
    store.client.meta.events.register(
        "before-send.s3", lambda request, **_: sent.append(request.method))
    with pytest.raises(BucketNotFound, match=bucket):
        store.put("k", b"v")
    assert sent == ["GET"]  # the region check only: no byte was sent to a missing bucket
    aws.make_bucket(bucket, "eu-central-1", kms_key=aws.kms_keys["DE"])
    store.put("k", b"v")  # provisioned since: asked again, and accepted
    assert store.get("k") == b"v"


def test_gcs_bucket_reporting_us_for_a_de_target_is_refused(
        emulators: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    gcp = _harness("gcp", emulators, monkeypatch, tmp_path)
    bucket = f"us-bucket-{uuid.uuid4().hex[:10]}"
    gcp.gcs_client().create_bucket(bucket)  # the emulator reads every new bucket back as US
    map_path = gcp.write_map(tmp_path, extra={"DE": {"bucket": bucket}})
    target = gcp.target(map_path)
    store = open_store(target)
    key = _key()
    with pytest.raises(ResidencyViolation) as excinfo:
        store.put(key, b"PHI for Germany")
    message = str(excinfo.value)
    assert bucket in message and "'US'" in message and "multi-region" in message
    assert "DE" in message and "europe-west3" in message
    for attempt in (lambda: store.get(key), lambda: list(store.list("")),
                    lambda: store.delete(key)):
        with pytest.raises(ResidencyViolation):
            attempt()
    assert not gcp.gcs_client().bucket(bucket).blob(key).exists()
    res = rs.Residency.load(map_path)
    try:
        with pytest.raises(ResidencyViolation, match=bucket):
            res.storage_for(_tenant()).put("notes/a.txt", b"phi", data_class="phi")
    finally:
        res.close()
    assert list(gcp.gcs_client().list_blobs(bucket)) == []


def test_gcs_eu_multi_region_fails_closed_and_is_asked_once(
        emulators: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from residency_sdk.storage.gcs import GCSStore

    gcp = _harness("gcp", emulators, monkeypatch, tmp_path)
    asked: list[str] = []
    original = getattr(GCSStore, "_bucket_location", None)

    def counting(self: GCSStore) -> Any:
        asked.append(self.target.bucket)
        assert original is not None
        return original(self)

    monkeypatch.setattr(GCSStore, "_bucket_location", counting, raising=False)
    bucket = f"eu-multi-{uuid.uuid4().hex[:10]}"
    gcp.make_bucket(bucket, "EU")
    target = gcp.target(gcp.write_map(tmp_path, extra={"DE": {"bucket": bucket}}))
    for _ in range(2):
        store = open_store(target)
        with pytest.raises(ResidencyViolation, match="spans several countries"):
            store.put(_key(), b"PHI")
    assert asked == [bucket]
    placed = f"de-placed-{uuid.uuid4().hex[:10]}"
    gcp.make_bucket(placed, "europe-west3")
    target = target.model_copy(update={"bucket": placed})
    for _ in range(2):
        store = open_store(target)
        store.put("k", b"v")
        assert store.get("k") == b"v"
    assert asked == [bucket, placed]


def test_gcs_dual_region_is_judged_by_its_data_locations() -> None:
    from residency_sdk.regionmap import load_region_map
    from residency_sdk.storage.gcs import _judge_location, _Location

    target = load_region_map(None).locations["DE"].backends["gcp"]
    _judge_location(target, _Location("EU", "dual-region", ("EUROPE-WEST3", "EUROPE-WEST10")),
                    name="gs://x", bucket="x")
    with pytest.raises(ResidencyViolation, match="EUROPE-WEST1 "):
        _judge_location(target, _Location("EU", "dual-region",
                                          ("EUROPE-WEST3", "EUROPE-WEST1")),
                        name="gs://x", bucket="x")
    with pytest.raises(ResidencyViolation, match="EUR4"):  # predefined: no known country
        _judge_location(target, _Location("EUR4", "dual-region"), name="gs://x", bucket="x")


def test_s3_wrong_region_answer_counts_as_the_bucket_region() -> None:
    """Real S3 answers a request signed for the wrong region with the bucket's region
    (moto does not): that answer is what verify on open judges."""
    import botocore.exceptions

    from residency_sdk.storage.s3 import _region_in_error

    def error(status: int, code: str, region: str | None) -> Any:
        headers = {"x-amz-bucket-region": region} if region else {}
        return botocore.exceptions.ClientError(
            {"Error": {"Code": code, "Message": "test"},
             "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers}},
            "GetBucketLocation")

    assert _region_in_error(error(301, "PermanentRedirect", "us-east-1")) == "us-east-1"
    assert _region_in_error(error(400, "AuthorizationHeaderMalformed", "eu-west-1")) == \
        "eu-west-1"
    assert _region_in_error(error(403, "AccessDenied", "us-east-1")) is None
    assert _region_in_error(error(301, "PermanentRedirect", None)) is None
