"""The storage test harness: lazily started emulators and per-provider provisioning.

Imported by ``tests/conftest.py`` (fixtures) and by tests that need a harness for a provider
of their own choosing; kept out of conftest so it has an importable, unique module name.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from components import missing
from emulators import (
    AZURITE_ACCOUNT,
    Emulator,
    EmulatorError,
    azurite_connection_string,
    azurite_credential_string,
    start_azurite,
    start_gcs,
    start_moto,
)

PROVIDERS = ("local", "aws", "gcp", "azure")

# Process-wide settings that would point a client at another endpoint or account than the
# region map's; the harness clears them (the adapters refuse them when they differ).
PROCESS_WIDE_OVERRIDES = (
    "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL_KMS", "STORAGE_EMULATOR_HOST", "API_ENDPOINT_OVERRIDE",
    "GOOGLE_API_USE_MTLS_ENDPOINT", "AZURE_STORAGE_CONNECTION_STRING",
    "RESIDENCY_AZURE_CONNECTION_STRING")
_STARTERS = {"aws": start_moto, "gcp": start_gcs, "azure": start_azurite}
_EMULATOR_HINTS = {
    "aws": "pip install 'moto[server]' (the test extra)",
    "gcp": "pip install gcp-storage-emulator (the test extra)",
    "azure": "npm install azurite in .emulators/ (scripts/test.sh does it)",
}


class Emulators:
    """Lazily started emulators, one per cloud provider, stopped by PID at session end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._running: dict[str, Emulator] = {}
        self._failed: dict[str, str] = {}
        self.provisioned: dict[str, dict[str, Any]] = {}

    def get(self, provider: str) -> Emulator:
        """The running emulator for ``provider``; fail (CI) or skip if it cannot start."""
        if provider in self._running:
            return self._running[provider]
        if provider not in self._failed:
            try:
                self._running[provider] = _STARTERS[provider](self.log_dir)
                return self._running[provider]
            except EmulatorError as exc:
                self._failed[provider] = str(exc)
        missing(f"{provider} emulator unavailable: {self._failed[provider]}",
                _EMULATOR_HINTS[provider])

    def endpoint(self, provider: str) -> str:
        """``http://127.0.0.1:PORT`` of the provider's emulator (the Azurite account URL for
        azure)."""
        emulator = self.get(provider)
        if provider == "azure":
            return f"{emulator.endpoint}/{AZURITE_ACCOUNT}"
        return emulator.endpoint

    def stop_all(self) -> None:
        for emulator in self._running.values():
            emulator.stop()
        self._running.clear()


def adapter_class(provider: str) -> Any:
    """The adapter class of a cloud provider (imported on demand)."""
    if provider == "aws":
        from residency_sdk.storage.s3 import S3Store

        return S3Store
    if provider == "gcp":
        from residency_sdk.storage.gcs import GCSStore

        return GCSStore
    from residency_sdk.storage.azure import AzureStore

    return AzureStore


def _default_map() -> Any:
    from residency_sdk.regionmap import load_region_map

    return load_region_map(None)


class ProviderHarness:
    """Everything a test needs to run one provider against its emulator."""

    def __init__(self, provider: str, emulators: Emulators, monkeypatch: pytest.MonkeyPatch,
                 tmp_path: Path) -> None:
        self.provider = provider
        self.emulators = emulators
        self.local_root = tmp_path / "local-root"
        self.endpoint: str | None = None
        if provider != "local":
            self.endpoint = emulators.endpoint(provider)
        self._set_env(monkeypatch)
        self.kms_keys: dict[str, str] = {}
        if provider != "local":
            state = emulators.provisioned.get(provider)
            if state is None:
                state = self._provision()
                emulators.provisioned[provider] = state
            self.kms_keys = state["kms_keys"]

    # --- environment -------------------------------------------------------------------

    def _set_env(self, mp: pytest.MonkeyPatch) -> None:
        # Dummy AWS credentials only: nothing here can reach a real account.
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_SESSION_TOKEN", "testing")
        # Endpoints come from the map only: the adapters refuse any process-wide endpoint
        # that differs from it, so none may leak in from the developer's shell or
        # ~/.aws/config.
        for name in PROCESS_WIDE_OVERRIDES:
            mp.delenv(name, raising=False)
        mp.setenv("AWS_CONFIG_FILE", str(self.local_root.parent / "no-aws-config"))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(self.local_root.parent / "no-aws-creds"))
        if self.provider == "azure":
            # Only the credential: the endpoint is the map's. It names the emulator's
            # account, which the overlay names as every location's `account`.
            mp.setenv("RESIDENCY_AZURE_CONNECTION_STRING", azurite_credential_string())

    # --- the map ----------------------------------------------------------------------

    def backend_overlay(self, location: str) -> dict[str, Any]:
        """The overlay entry for one location's backend of this provider."""
        if self.provider == "local":
            return {}
        # The emulator's endpoint is named in the map: no environment variable points
        # any client anywhere.
        entry: dict[str, Any] = {"endpoint": self.endpoint}
        if self.provider == "aws":
            entry["kms_key"] = self.kms_keys[location]
        if self.provider == "azure":
            entry["account"] = AZURITE_ACCOUNT  # the account the endpoint serves
        return entry

    def write_map(self, tmp_path: Path, extra: dict[str, Any] | None = None) -> Path:
        """Write the overlay map for this provider into ``tmp_path``; return its path.

        ``extra`` is deep-merged into each location's overlay entry for this provider's
        backend (e.g. ``{"DE": {"bucket": "misplaced"}}``).
        """
        locations: dict[str, Any] = {}
        for loc_id in _default_map().locations:
            backend = {**self.backend_overlay(loc_id), **((extra or {}).get(loc_id, {}))}
            entry: dict[str, Any] = {"default_provider": self.provider}
            if backend:
                entry["backends"] = {self.provider: backend}
            locations[loc_id] = entry
        doc = {"extends": "default", "name": f"test-{self.provider}", "locations": locations}
        path = tmp_path / f"map-{self.provider}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def residency(self, tmp_path: Path, **kwargs: Any) -> Any:
        """``Residency.load`` of this provider's map (with ``local_root`` for ``local``)."""
        from residency_sdk import Residency

        if self.provider == "local":
            kwargs.setdefault("local_root", self.local_root)
        return Residency.load(self.write_map(tmp_path), **kwargs)

    def open(self, target: Any, *, verify_on_open: bool = True) -> Any:
        """The adapter for ``target`` through the production factory.

        ``verify_on_open=False`` (cloud providers only) builds the adapter without its
        bucket-region check, for fault-injection tests whose server in front of the
        bucket answers every request (the check would be what they test)."""
        from residency_sdk.storage.factory import open_store

        if verify_on_open or self.provider == "local":
            return open_store(target, local_root=self.local_root)
        return adapter_class(self.provider)(target, verify_on_open=False)

    def target(self, map_path: Path, location: str = "DE") -> Any:
        """This provider's storage target of ``location`` in the map at ``map_path``."""
        from residency_sdk.regionmap import load_region_map

        return load_region_map(map_path).locations[location].backends[self.provider]

    # --- provisioning -----------------------------------------------------------------

    def _provision(self) -> dict[str, Any]:
        kms_keys: dict[str, str] = {}
        region_map = _default_map()
        from residency_sdk.regions import failover_bucket

        for loc_id, location in region_map.locations.items():
            target = location.backends.get(self.provider)
            if target is None:
                continue
            if self.provider == "aws":
                kms_keys[loc_id] = self.aws_kms_key(target.region)
            pairs = [(target.bucket, target.region)]
            if target.failover_region:
                pairs.append((failover_bucket(target.bucket), target.failover_region))
            for bucket, region in pairs:
                self.make_bucket(bucket, region, kms_key=kms_keys.get(loc_id, target.kms_key),
                                 scope=target.encryption_scope)
        return {"kms_keys": kms_keys}

    def aws_client(self, service: str, region: str) -> Any:
        import boto3

        return boto3.client(service, region_name=region, endpoint_url=self.endpoint,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def aws_kms_key(self, region: str) -> str:
        """Create a KMS key in moto in ``region`` and return its ARN."""
        kms = self.aws_client("kms", region)
        return str(kms.create_key(Description="residency test key")["KeyMetadata"]["Arn"])

    def make_bucket(self, bucket: str, region: str, *, kms_key: str | None = None,
                    scope: str | None = None, encrypted: bool = True,
                    public_blocked: bool = True) -> None:
        """Create ``bucket`` in ``region`` on this provider's emulator, encrypted with
        ``kms_key`` (or not) and with public access blocked (or not)."""
        if self.provider == "aws":
            s3 = self.aws_client("s3", region)
            kwargs: dict[str, Any] = {"Bucket": bucket}
            if region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
            s3.create_bucket(**kwargs)
            if encrypted:
                s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms_key}}]})
            if public_blocked:
                s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
                    "BlockPublicAcls": True, "IgnorePublicAcls": True,
                    "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
        elif self.provider == "gcp":
            client = self.gcs_client()
            created = client.create_bucket(bucket)
            # The emulator ignores location and encryption at creation (TEST_INFRA.md).
            created._patch_property("location", region.upper())
            if encrypted:
                created.default_kms_key_name = kms_key
            if public_blocked:
                created.iam_configuration.public_access_prevention = "enforced"
            created.patch()
        elif self.provider == "azure":
            from azure.storage.blob import BlobServiceClient

            port = self.emulators.get("azure").port
            service = BlobServiceClient.from_connection_string(
                azurite_connection_string(port))
            options: dict[str, Any] = {}
            if encrypted and scope:
                from azure.storage.blob import ContainerEncryptionScope

                options["container_encryption_scope"] = ContainerEncryptionScope(
                    default_encryption_scope=scope, prevent_encryption_scope_override=True)
            service.create_container(bucket, public_access=None if public_blocked else "blob",
                                     **options)
            service.close()

    def gcs_client(self) -> Any:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project="test", credentials=AnonymousCredentials(),
                              client_options=ClientOptions(api_endpoint=self.endpoint))


