"""Issue 11, holes 1 and 2: a region map that lies about where data goes.

1. ``cloud_regions`` re-labelling a known region (``aws: {us-east-2: DE}``) so that a
   "German" backend lives in Ohio: refused; regions the built-in table lacks are added as
   *unreviewed* (a warning; ``map validate --strict`` refuses them).
2. Endpoints that send a location's data to another region or account: every endpoint
   must be an in-region form of its provider, a loopback emulator, or carry
   ``endpoint_country`` (the location's country) and ``endpoint_source``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from components import require
from typer.testing import CliRunner

import residency_sdk as rs
from residency_sdk.cli.app import app
from residency_sdk.regionmap import RegionMap, load_region_map
from residency_sdk.regions import region_table

runner = CliRunner()
DEFAULT = load_region_map()
SOURCE = "hospital network design v3: the proxy runs in our Frankfurt data centre"


def write_overlay(tmp_path: Path, doc: dict[str, Any], name: str = "lie.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"extends": "default", "name": "lie", **doc},
                                   sort_keys=False), encoding="utf-8")
    return path


def load(tmp_path: Path, doc: dict[str, Any]) -> RegionMap:
    return load_region_map(write_overlay(tmp_path, doc))


def backend(location: str, provider: str, **fields: Any) -> dict[str, Any]:
    return {"locations": {location: {"backends": {provider: fields}}}}


def compute(location: str, **fields: Any) -> dict[str, Any]:
    return {"locations": {location: {"compute": [fields]}}}


def refused(tmp_path: Path, doc: dict[str, Any], *needles: str) -> str:
    with pytest.raises(rs.MapError) as info:
        load(tmp_path, doc)
    message = str(info.value)
    assert message.startswith(str(tmp_path)), message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


def accepted_on_word(region_map: RegionMap) -> set[str]:
    """Paths of the endpoints accepted on a statement or as loopback emulators."""
    return {e.path for e in (*region_map.stated_endpoints, *region_map.emulator_endpoints)}


def validate(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["map", "validate", *args])
    return result.exit_code, result.output


# --- hole 1: the map cannot re-label a region ------------------------------------------


def test_aws_region_relabelled_to_germany_is_refused(tmp_path: Path) -> None:
    doc = {"cloud_regions": {"aws": {"us-east-2": "DE"}},
           **backend("DE", "aws", region="us-east-2")}
    message = refused(tmp_path, doc, "cloud_regions.aws.us-east-2", "'us-east-2'",
                      "is in US", "Remove", "eu-central-1")
    assert "not DE" in message


def test_relabel_is_refused_even_when_no_backend_uses_it(tmp_path: Path) -> None:
    refused(tmp_path, {"cloud_regions": {"aws": {"us-east-2": "de"}}},
            "cloud_regions.aws.us-east-2", "is in US")


def test_azure_failover_region_relabelled_is_refused(tmp_path: Path) -> None:
    doc = {"cloud_regions": {"azure": {"eastus": "DE"}},
           **backend("DE", "azure", failover_region="eastus")}
    refused(tmp_path, doc, "cloud_regions.azure.eastus", "'eastus'", "is in US")


def test_gcp_region_relabelled_is_refused(tmp_path: Path) -> None:
    doc = {"cloud_regions": {"gcp": {"us-central1": "DE"}},
           **backend("DE", "gcp", region="us-central1", failover_region=None)}
    refused(tmp_path, doc, "cloud_regions.gcp.us-central1", "is in US")


@pytest.mark.parametrize("region", ["US-Central1", "us-central1 ", "us\u2010central1"])
def test_region_codes_that_dodge_the_table_are_refused(tmp_path: Path, region: str) -> None:
    # Another spelling of a known region would slip past an exact lookup.
    refused(tmp_path, {"cloud_regions": {"gcp": {region: "DE"}}}, "cloud_regions.gcp.",
            "lower-case ASCII")


@pytest.mark.parametrize(("provider", "region", "country", "needle"), [
    ("gcp", "europe-west99", "Germany", "ISO 3166-1"),
    ("local", "local-de", "DE", "no cloud regions"),
])
def test_malformed_cloud_region_entries_are_refused(tmp_path: Path, provider: str,
                                                    region: str, country: str,
                                                    needle: str) -> None:
    refused(tmp_path, {"cloud_regions": {provider: {region: country}}},
            f"cloud_regions.{provider}.{region}", needle)


def test_region_table_keeps_the_builtin_countries_authoritative() -> None:
    assert region_table()["aws"]["us-east-2"] == "US"
    with pytest.raises(rs.MapError, match=r"cloud_regions\.aws\.US-EAST-2.*is in US"):
        region_table({"aws": {"US-EAST-2": "DE"}})
    table = region_table({"aws": {"us-east-2": "us"}, "gcp": {"europe-west99": "de"}})
    assert table["aws"]["us-east-2"] == "US" and table["gcp"]["europe-west99"] == "DE"


def test_an_aws_region_botocore_does_not_know_is_refused_even_unused(tmp_path: Path) -> None:
    require("botocore", "pip install 'residency-sdk[aws]'")
    refused(tmp_path, {"cloud_regions": {"aws": {"xx-fake-1": "DE"}}},
            "cloud_regions.aws.xx-fake-1", "botocore")


def test_added_region_is_unreviewed_and_listed(tmp_path: Path) -> None:
    doc = {"cloud_regions": {"gcp": {"europe-west99": "de"}},
           **backend("DE", "gcp", region="europe-west99", failover_region=None)}
    region_map = load(tmp_path, doc)
    assert region_map.locations["DE"].backends["gcp"].region == "europe-west99"
    [entry] = region_map.unreviewed_regions
    assert (entry.provider, entry.region, entry.country, entry.path) == (
        "gcp", "europe-west99", "DE", "cloud_regions.gcp.europe-west99")


def test_botocore_known_aws_region_missing_from_the_table_is_unreviewed(tmp_path: Path,
                                                                       ) -> None:
    require("botocore", "pip install 'residency-sdk[aws]'")
    region_map = load(tmp_path, {"cloud_regions": {"aws": {"me-central-1": "AE"}}})
    [entry] = region_map.unreviewed_regions
    assert entry.region == "me-central-1" and entry.provider_knows


def test_repeating_a_known_country_is_neither_refused_nor_unreviewed(tmp_path: Path) -> None:
    region_map = load(tmp_path, {"cloud_regions": {"aws": {"eu-central-1": "DE"}}})
    assert region_map.unreviewed_regions == ()


def test_validate_warns_about_unreviewed_regions_and_strict_refuses(tmp_path: Path) -> None:
    path = write_overlay(tmp_path, {
        "cloud_regions": {"gcp": {"europe-west99": "DE"}},
        **backend("DE", "gcp", region="europe-west99", failover_region=None)})
    code, out = validate(str(path))
    assert code == 0 and "warning" in out and "europe-west99" in out, out
    assert "cloud_regions.gcp.europe-west99" in out
    code, out = validate(str(path), "--json")
    data = json.loads(out)
    assert code == 0 and data["ok"] is True
    assert data["unreviewed_regions"] == [{
        "provider": "gcp", "region": "europe-west99", "country": "DE",
        "path": "cloud_regions.gcp.europe-west99", "provider_knows_region": False}]
    code, out = validate(str(path), "--strict")
    assert code == 1 and "europe-west99" in out, out
    code, out = validate(str(path), "--strict", "--json")
    data = json.loads(out)
    assert code == 1 and data["ok"] is False and data["error_type"] == "UnreviewedRegion"
    assert "europe-west99" in data["error"]


def test_strict_passes_the_packaged_maps() -> None:
    maps = sorted(Path("region_maps/examples").glob("*.yaml"))
    for path in [Path("region_maps/default.yaml"), *maps]:
        code, out = validate(str(path), "--strict", "--json")
        assert code == 0, (path, out)
        assert json.loads(out)["unreviewed_regions"] == []


# --- hole 2: endpoints checked against their region ------------------------------------


@pytest.mark.parametrize(("doc", "path", "needles"), [
    pytest.param(backend("DE", "aws", endpoint="https://s3.us-east-1.amazonaws.com"),
                 "locations.DE.backends.aws.endpoint", ("us-east-1", "in US"), id="s3-us"),
    pytest.param(backend("CH", "gcp", endpoint="https://storage.us-central1.rep.googleapis.com"),
                 "locations.CH.backends.gcp.endpoint", ("us-central1", "in US"), id="gcs-us"),
    pytest.param(backend("DE", "azure", endpoint="https://residencyus.blob.core.windows.net"),
                 "locations.DE.backends.azure.endpoint", ("residencyus", "residencyde"),
                 id="azure-other-account"),
    pytest.param(compute("DE", provider="azure", region="germanywestcentral",
                         endpoint="https://inference.us.example"),
                 "locations.DE.compute.0.endpoint", ("endpoint_country",), id="compute-us-host"),
    pytest.param(compute("DE", provider="aws", region="eu-central-1",
                         endpoint="https://runtime.sagemaker.us-east-1.amazonaws.com"),
                 "locations.DE.compute.0.endpoint", ("us-east-1", "in US"),
                 id="compute-sagemaker-us"),
    pytest.param(compute("DE", provider="gcp", region="europe-west3",
                         endpoint="https://europe-west1-aiplatform.googleapis.com"),
                 "locations.DE.compute.0.endpoint", ("europe-west1", "in BE"),
                 id="compute-vertex-belgium"),
    pytest.param(compute("DE", provider="azure", region="germanywestcentral",
                         endpoint="https://scorer.eastus.inference.ml.azure.com/score"),
                 "locations.DE.compute.0.endpoint", ("eastus", "in US"), id="compute-aml-us"),
    pytest.param(compute("DE", provider="gcp", region="europe-west3",
                         endpoint="https://europe-west3-aiplatform.googleapis.com.evil.example"),
                 "locations.DE.compute.0.endpoint", ("europe-west3",), id="compute-lookalike"),
    pytest.param(compute("DE", provider="local", region="x",
                         endpoint="https://inference.de.example"),
                 "locations.DE.compute.0.endpoint", ("no in-region endpoint form",),
                 id="compute-local"),
    pytest.param(backend("DE", "aws", endpoint="https://s3.eu-central-2.amazonaws.com"),
                 "locations.DE.backends.aws.endpoint", ("in CH",), id="s3-switzerland"),
    pytest.param(backend("US", "aws", endpoint="https://s3.us-west-2.amazonaws.com"),
                 "locations.US.backends.aws.endpoint", ("in-region S3 endpoint of us-east-1",),
                 id="s3-other-region-same-country"),
    pytest.param(backend("DE", "aws", endpoint="https://eu-central-1.s3.us-east-1.amazonaws.com"),
                 "locations.DE.backends.aws.endpoint", ("us-east-1",), id="s3-bucket-label"),
    pytest.param(backend("DE", "aws", endpoint="https://s3.eu-central-1.amazonaws.com/x"),
                 "locations.DE.backends.aws.endpoint", ("no port, path",), id="s3-path"),
    pytest.param(backend("DE", "aws", endpoint="https://s3.eu-central-1.amazonaws.com:8443"),
                 "locations.DE.backends.aws.endpoint", ("no port, path",), id="s3-port"),
    pytest.param(backend("DE", "aws", endpoint="https://s3.eu-central-1.amazonaws.com.evil.example"),
                 "locations.DE.backends.aws.endpoint", ("https://s3.eu-central-1.amazonaws.com",),
                 id="s3-lookalike"),
    pytest.param(backend("DE", "aws", endpoint="https://s3.amazonaws.com"),
                 "locations.DE.backends.aws.endpoint", ("s3.eu-central-1",), id="s3-global"),
    pytest.param(backend("US", "aws", endpoint="https://s3.us-east-1.amazonaws.com"),
                 "locations.US.backends.aws.endpoint", ("failover_region 'us-west-2'",),
                 id="s3-regional-with-failover"),
    pytest.param(backend("DE", "gcp", endpoint="https://storage.europe-west3.rep.googleapis.com"),
                 "locations.DE.backends.gcp.endpoint", ("failover_region 'europe-west10'",
                                                        "storage.googleapis.com"),
                 id="gcs-regional-with-failover"),
    pytest.param(backend("DE", "azure", endpoint="https://residencyde.dfs.core.windows.net"),
                 "locations.DE.backends.azure.endpoint", ("residencyde.blob.core.windows.net",),
                 id="azure-not-blob"),
    pytest.param(backend("DE", "azure", account=None,
                         endpoint="https://someone.blob.core.windows.net"),
                 "locations.DE.backends.azure.endpoint", ("no `account`",),
                 id="azure-no-account"),
    pytest.param(backend("DE", "local", endpoint="http://127.0.0.1:9000"),
                 "locations.DE.backends.local.endpoint", ("no endpoint",), id="local-endpoint"),
])
def test_endpoints_that_leave_their_region_are_refused(tmp_path: Path, doc: dict[str, Any],
                                                       path: str,
                                                       needles: tuple[str, ...]) -> None:
    refused(tmp_path, doc, path, *needles)


@pytest.mark.parametrize(("doc", "needles"), [
    pytest.param(backend("DE", "aws", endpoint="https://s3.us-east-1.amazonaws.com",
                         endpoint_country="DE", endpoint_source=SOURCE),
                 ("us-east-1", "in US", "whatever endpoint_country says"), id="s3-us-stated-de"),
    pytest.param(compute("DE", provider="azure", region="germanywestcentral",
                         endpoint="https://scorer.eastus.inference.ml.azure.com",
                         endpoint_country="DE", endpoint_source=SOURCE),
                 ("eastus", "in US"), id="aml-us-stated-de"),
    pytest.param(backend("DE", "azure", endpoint="https://residencyus.blob.core.windows.net",
                         endpoint_country="DE", endpoint_source=SOURCE),
                 ("residencyus",), id="azure-other-account-stated-de"),
])
def test_a_stated_country_cannot_outvote_the_host(tmp_path: Path, doc: dict[str, Any],
                                                  needles: tuple[str, ...]) -> None:
    refused(tmp_path, doc, *needles)


@pytest.mark.parametrize(("location", "provider", "endpoint"), [
    ("DE", "aws", "https://s3.eu-central-1.amazonaws.com"),
    ("DE", "aws", "https://s3.dualstack.eu-central-1.amazonaws.com/"),
    ("DE", "aws", "https://s3-fips.eu-central-1.amazonaws.com"),
    ("DE", "aws", "https://s3-fips.dualstack.eu-central-1.amazonaws.com"),
    ("DE", "aws", "https://S3.EU-CENTRAL-1.AMAZONAWS.COM"),
    ("DE", "gcp", "https://storage.googleapis.com"),  # global: serves the failover too
    ("CH", "gcp", "https://storage.googleapis.com"),
    ("CH", "gcp", "https://storage.europe-west6.rep.googleapis.com"),
    ("DE", "azure", "https://residencyde.blob.core.windows.net"),  # serves its failover too
    ("US", "azure", "https://residencyus.blob.core.windows.net"),
])
def test_in_region_storage_endpoints_are_accepted(tmp_path: Path, location: str,
                                                  provider: str, endpoint: str) -> None:
    region_map = load(tmp_path, backend(location, provider, endpoint=endpoint))
    assert region_map.locations[location].backends[provider].endpoint == endpoint
    # Accepted as an in-region form: not on the map's word, not as an emulator.
    assert accepted_on_word(region_map) == {e.path for e in DEFAULT.stated_endpoints}


@pytest.mark.parametrize(("provider", "region", "endpoint"), [
    ("aws", "eu-central-1",
     "https://runtime.sagemaker.eu-central-1.amazonaws.com/endpoints/ct/invocations"),
    ("aws", "eu-central-1", "https://bedrock-runtime.eu-central-1.amazonaws.com"),
    ("gcp", "europe-west3", "https://europe-west3-aiplatform.googleapis.com"),
    ("gcp", "europe-west10", "https://aiplatform.europe-west10.rep.googleapis.com"),
    ("gcp", "europe-west3", "https://segment-123456.europe-west3.run.app"),
    ("azure", "germanywestcentral", "https://scorer.germanywestcentral.inference.ml.azure.com/score"),
    ("azure", "germanywestcentral", "https://app.blue-1a2b.germanywestcentral.azurecontainerapps.io"),
])
def test_in_region_compute_endpoints_are_accepted(tmp_path: Path, provider: str, region: str,
                                                  endpoint: str) -> None:
    region_map = load(tmp_path, compute("DE", provider=provider, region=region,
                                        endpoint=endpoint))
    assert region_map.locations["DE"].compute[0].endpoint == endpoint
    assert "locations.DE.compute.0.endpoint" not in accepted_on_word(region_map)


def test_stated_endpoints_are_accepted_and_listed(tmp_path: Path) -> None:
    doc = backend("DE", "aws", endpoint="https://s3-proxy.hospital.example",
                  endpoint_country="de", endpoint_source=f"  {SOURCE} ")
    doc["locations"]["DE"]["compute"] = [{
        "provider": "azure", "region": "germanywestcentral",
        "endpoint": "https://ct.hospital.example/v1", "endpoint_country": "DE",
        "endpoint_source": SOURCE}]
    path = write_overlay(tmp_path, doc)
    target = load_region_map(path).locations["DE"].backends["aws"]
    assert (target.endpoint_country, target.endpoint_source) == ("DE", SOURCE)
    code, out = validate(str(path), "--json")
    assert code == 0, out
    stated = {e["path"]: e for e in json.loads(out)["stated_endpoints"]}
    assert stated["locations.DE.backends.aws.endpoint"] == {
        "path": "locations.DE.backends.aws.endpoint",
        "endpoint": "https://s3-proxy.hospital.example", "country": "DE", "source": SOURCE}
    assert stated["locations.DE.compute.0.endpoint"]["endpoint"] == \
        "https://ct.hospital.example/v1"
    code, out = validate(str(path))
    assert code == 0 and "https://s3-proxy.hospital.example serves from DE" in out, out


def test_packaged_compute_endpoints_are_stated_and_listed() -> None:
    code, out = validate("region_maps/default.yaml", "--json")
    stated = json.loads(out)["stated_endpoints"]
    assert code == 0 and len(stated) == 6
    assert all(e["path"].endswith(".compute.0.endpoint") and e["source"] for e in stated)


@pytest.mark.parametrize(("fields", "path", "needle"), [
    pytest.param({"endpoint_country": "FR", "endpoint_source": SOURCE},
                 "locations.DE.backends.aws.endpoint_country", "not the location's country DE",
                 id="other-country"),
    pytest.param({"endpoint_country": "DE"}, "locations.DE.backends.aws.endpoint_source",
                 "needs endpoint_source", id="missing-source"),
    pytest.param({"endpoint_country": "DE", "endpoint_source": "   "},
                 "locations.DE.backends.aws.endpoint_source", "needs endpoint_source",
                 id="blank-source"),
    pytest.param({"endpoint_source": SOURCE}, "locations.DE.backends.aws.endpoint_country",
                 "without endpoint_country", id="missing-country"),
    pytest.param({"endpoint_country": "Germany", "endpoint_source": SOURCE},
                 "locations.DE.backends.aws.endpoint_country", "ISO 3166-1", id="not-iso"),
])
def test_bad_endpoint_statements_are_refused(tmp_path: Path, fields: dict[str, Any],
                                             path: str, needle: str) -> None:
    doc = backend("DE", "aws", endpoint="https://s3-proxy.hospital.example", **fields)
    refused(tmp_path, doc, path, needle)


def test_stated_country_without_an_endpoint_is_refused(tmp_path: Path) -> None:
    refused(tmp_path, backend("DE", "aws", endpoint_country="DE", endpoint_source=SOURCE),
            "locations.DE.backends.aws.endpoint_country", "has none")


def test_a_compute_endpoint_stated_abroad_is_refused(tmp_path: Path) -> None:
    refused(tmp_path, compute("DE", provider="azure", region="germanywestcentral",
                              endpoint="https://inference.us.example", endpoint_country="US",
                              endpoint_source="our US cluster"),
            "locations.DE.compute.0.endpoint_country", "not the location's country DE")


def test_loopback_emulators_are_allowed_and_flagged(tmp_path: Path) -> None:
    doc = backend("DE", "aws", endpoint="http://127.0.0.1:9000")
    doc["locations"]["DE"]["backends"]["gcp"] = {"endpoint": "http://[::1]:4443"}
    path = write_overlay(tmp_path, doc)
    code, out = validate(str(path), "--json")
    assert code == 0, out
    assert {e["path"]: e["endpoint"] for e in json.loads(out)["emulator_endpoints"]} == {
        "locations.DE.backends.aws.endpoint": "http://127.0.0.1:9000",
        "locations.DE.backends.gcp.endpoint": "http://[::1]:4443"}
    code, out = validate(str(path))
    assert code == 0 and "emulator endpoint" in out and "http://[::1]:4443" in out, out
