"""``verify_location`` / ``residency verify`` against the emulators, including buckets that
break the map's promise (misplaced, unencrypted, public, missing)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from emulators import AZURITE_ACCOUNT, RewritingProxy
from typer.testing import CliRunner

from residency_sdk import Residency
from residency_sdk.errors import ResidencyViolation
from residency_sdk.storage.deployment import BucketFacts, judge, verify_location

pytestmark = pytest.mark.emulator

REGIONS = {"aws": {"eu-central-1": "DE", "eu-west-1": "IE"}}


@pytest.fixture(params=["aws", "gcp", "azure"])
def cloud(request: pytest.FixtureRequest, emulators: Any, monkeypatch: pytest.MonkeyPatch,
          tmp_path: Path) -> Any:
    from storage_harness import ProviderHarness

    return ProviderHarness(request.param, emulators, monkeypatch, tmp_path)


# Azure's data plane reports no region (the account's region needs the management API),
# so the region checks run where the provider reports one; Azure has its own tests below.
@pytest.fixture(params=["aws", "gcp"])
def regional_cloud(request: pytest.FixtureRequest, emulators: Any,
                   monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    from storage_harness import ProviderHarness

    return ProviderHarness(request.param, emulators, monkeypatch, tmp_path)


@pytest.fixture
def azure(emulators: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    from storage_harness import ProviderHarness

    return ProviderHarness("azure", emulators, monkeypatch, tmp_path)


def _statuses(report: Any, role: str = "primary") -> dict[str, str]:
    return {c.check: c.status for c in report.checks if c.role == role}


def _bucket(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_provisioned_location_verifies(cloud: Any, tmp_path: Path) -> None:
    res = Residency.load(cloud.write_map(tmp_path))
    report = verify_location(res.policy, "DE", provider=cloud.provider)
    primary = _statuses(report)
    assert primary["exists"] == "pass"
    assert primary["public_access"] == "pass"
    if cloud.provider == "azure":
        # Azure's data plane does not report the account region; Azurite drops encryption
        # scopes (TEST_INFRA.md), so the container honestly reports no default scope.
        assert primary["region"] == "unknown"
        assert primary["encryption"] == "fail"
        assert not report.ok()
    else:
        assert primary["region"] == "pass"
        assert primary["encryption"] == "pass"
        assert report.ok()
        report.raise_for_violations()  # nothing to raise
    if cloud.provider in ("gcp", "azure"):  # DE has failover buckets for these two
        assert _statuses(report, "failover")["exists"] == "pass"


def test_failover_bucket_is_checked_too(regional_cloud: Any, tmp_path: Path) -> None:
    cloud = regional_cloud
    res = Residency.load(cloud.write_map(tmp_path))
    report = verify_location(res.policy, "US", provider=cloud.provider)
    failover = _statuses(report, "failover")
    assert failover == {"exists": "pass", "region": "pass", "encryption": "pass",
                        "public_access": "pass"}


def test_misplaced_bucket_is_a_violation(regional_cloud: Any, tmp_path: Path) -> None:
    cloud = regional_cloud
    name = _bucket("misplaced")
    wrong_region = "eu-west-1" if cloud.provider == "aws" else "europe-west1"  # IE / BE
    key = cloud.aws_kms_key(wrong_region) if cloud.provider == "aws" else \
        Residency.load().map.locations["DE"].backends["gcp"].kms_key
    cloud.make_bucket(name, wrong_region, kms_key=key)
    extra = {"DE": {"bucket": name}}
    if cloud.provider == "aws":
        extra["DE"]["kms_key"] = key
    res = Residency.load(cloud.write_map(tmp_path, extra=extra))
    report = verify_location(res.policy, "DE", provider=cloud.provider)
    assert _statuses(report)["region"] == "fail"
    bad = report.violations[0]
    assert bad.bucket == name and wrong_region in bad.detail.lower()
    assert ("IE" if cloud.provider == "aws" else "BE") in bad.detail
    with pytest.raises(ResidencyViolation, match=name):
        report.raise_for_violations()


def test_unencrypted_bucket_is_a_violation(cloud: Any, tmp_path: Path) -> None:
    name = _bucket("plain")
    region = Residency.load().map.locations["DE"].backends[cloud.provider].region
    cloud.make_bucket(name, region, encrypted=False)
    res = Residency.load(cloud.write_map(tmp_path, extra={"DE": {"bucket": name}}))
    report = verify_location(res.policy, "DE", provider=cloud.provider)
    assert _statuses(report)["encryption"] == "fail"
    assert _statuses(report)["exists"] == "pass"


def test_wrong_kms_key_is_a_violation(regional_cloud: Any, tmp_path: Path) -> None:
    # Azure (an encryption scope, not a key): test_azure_wrong_encryption_scope_...
    cloud = regional_cloud
    name = _bucket("otherkey")
    region = Residency.load().map.locations["DE"].backends[cloud.provider].region
    other = cloud.aws_kms_key(region) if cloud.provider == "aws" else \
        "projects/other/locations/europe-west3/keyRings/r/cryptoKeys/not-ours"
    cloud.make_bucket(name, region, kms_key=other)
    res = Residency.load(cloud.write_map(tmp_path, extra={"DE": {"bucket": name}}))
    report = verify_location(res.policy, "DE", provider=cloud.provider)
    assert _statuses(report)["encryption"] == "fail"
    assert other in report.violations[0].detail


def test_azure_region_is_unknown_and_a_violation_only_when_strict(azure: Any,
                                                                   tmp_path: Path) -> None:
    """Azure's data plane does not report where a storage account is: verify says so for
    the primary and the failover container (region ``unknown``, naming the management
    API it would need) instead of passing them, and ``strict`` makes that a violation."""
    res = Residency.load(azure.write_map(tmp_path))
    report = verify_location(res.policy, "US", provider="azure")
    targets = dict(res.location_targets("US", ["azure"]))
    for role in ("primary", "failover"):
        statuses = _statuses(report, role)
        assert (statuses["exists"], statuses["region"], statuses["public_access"]) == (
            "pass", "unknown", "pass"), role
    unknown = [(c.role, c.bucket, c.check) for c in report.unknown]
    assert unknown == [("primary", targets["primary"].bucket, "region"),
                       ("failover", targets["failover"].bucket, "region")]
    assert all("management API" in c.detail for c in report.unknown)
    assert not any(c.check == "region" for c in report.violations)
    with pytest.raises(ResidencyViolation, match="region: the provider does not report"):
        report.raise_for_violations(strict=True)
    assert not report.ok(strict=True)


# Azurite drops encryption scopes (TEST_INFRA.md): a proxy makes its container properties
# report a default scope, as Azure does. Both headers are 35 bytes (same-length rewrite).
_AZURITE_HEADER = b"x-ms-has-immutability-policy: false"


def _azure_reports_scope(scope: str) -> dict[bytes, bytes]:
    forged = f"x-ms-default-encryption-scope: {scope}".encode()
    assert len(forged) == len(_AZURITE_HEADER), "the scope must be 4 characters"
    return {_AZURITE_HEADER: forged}


@pytest.mark.parametrize(("reported", "status"), [("rs-d", "pass"), ("rs-x", "fail")])
def test_azure_wrong_encryption_scope_is_a_violation(azure: Any, tmp_path: Path,
                                                     reported: str, status: str) -> None:
    """The container's default encryption scope, as Azure reports it (Azurite keeps no
    scopes, so a proxy puts the header Azure sends into Azurite's answer), must be the
    map's: another scope is a violation naming it, the map's passes."""
    port = azure.emulators.get("azure").port
    with RewritingProxy(port, _azure_reports_scope(reported)) as proxy:
        endpoint = f"http://127.0.0.1:{proxy.port}/{AZURITE_ACCOUNT}"
        res = Residency.load(azure.write_map(
            tmp_path, extra={"DE": {"endpoint": endpoint, "encryption_scope": "rs-d"}}))
        report = verify_location(res.policy, "DE", provider="azure")
    assert proxy.hits >= 1
    assert _statuses(report)["encryption"] == status
    if status == "fail":
        [bad] = [c for c in report.violations if c.role == "primary"]
        assert bad.check == "encryption" and "'rs-x'" in bad.detail and "'rs-d'" in bad.detail
    else:
        assert "rs-d" in next(c.detail for c in report.checks if c.check == "encryption")


def test_public_bucket_is_a_violation(cloud: Any, tmp_path: Path) -> None:
    name = _bucket("public")
    target = Residency.load().map.locations["DE"].backends[cloud.provider]
    key = cloud.kms_keys.get("DE", target.kms_key)
    cloud.make_bucket(name, target.region, kms_key=key, public_blocked=False)
    res = Residency.load(cloud.write_map(tmp_path, extra={"DE": {"bucket": name}}))
    report = verify_location(res.policy, "DE", provider=cloud.provider)
    assert _statuses(report)["public_access"] == "fail"


def test_missing_bucket_is_a_violation(cloud: Any, tmp_path: Path) -> None:
    name = _bucket("absent")
    res = Residency.load(cloud.write_map(tmp_path, extra={"DE": {"bucket": name}}))
    report = verify_location(res.policy, "DE", provider=cloud.provider)
    assert _statuses(report) == {"exists": "fail"}


def test_cli_verify_exit_codes(tmp_path: Path, emulators: Any,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    from storage_harness import ProviderHarness

    from residency_sdk.cli.app import app

    aws = ProviderHarness("aws", emulators, monkeypatch, tmp_path)
    runner = CliRunner()
    good = runner.invoke(app, ["verify", "--location", "DE", "--provider", "aws", "--map",
                               str(aws.write_map(tmp_path)), "--json"])
    assert good.exit_code == 0, good.output
    data = json.loads(good.output)
    assert data["ok"] is True and data["violations"] == 0
    assert {c["check"] for c in data["checks"]} == {"exists", "region", "encryption",
                                                   "public_access"}

    name = _bucket("cli-misplaced")
    key = aws.aws_kms_key("eu-west-1")
    aws.make_bucket(name, "eu-west-1", kms_key=key)
    bad_map = aws.write_map(tmp_path, extra={"DE": {"bucket": name, "kms_key": key}})
    bad = runner.invoke(app, ["verify", "--location", "DE", "--provider", "aws", "--map",
                              str(bad_map)])
    assert bad.exit_code == 1
    assert "eu-west-1" in bad.output and "violation" in bad.output


# --- pure verdicts (no network) -------------------------------------------------------

def _target(**update: Any) -> Any:
    base = Residency.load().map.locations["DE"].backends["aws"]
    return base.model_copy(update=update)


def test_judge_unknown_region_country_fails() -> None:
    facts = BucketFacts(exists=True, region="xx-nowhere-9", encryption="aws:kms",
                        kms_key="alias/residency-de", public_access_blocked=True)
    checks = {c.check: c for c in judge(_target(), "DE", REGIONS, facts)}
    assert checks["region"].status == "fail"
    assert "unknown country" in checks["region"].detail


def test_judge_strict_turns_unknown_into_violation() -> None:
    from residency_sdk.storage.deployment import VerifyReport

    facts = BucketFacts(exists=True, region=None, encryption="aws:kms",
                        kms_key="alias/residency-de", public_access_blocked=None)
    report = VerifyReport("DE", "DE", judge(_target(), "DE", REGIONS, facts))
    assert report.ok() and not report.ok(strict=True)
    with pytest.raises(ResidencyViolation, match="region"):
        report.raise_for_violations(strict=True)
