"""Packaging promises: no cloud SDK at import, py.typed, schema in sync."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import residency_sdk as rs
from residency_sdk.regionmap import region_map_json_schema
from residency_sdk.regions import packaged_maps_dir

ROOT = Path(__file__).resolve().parents[2]


def test_import_does_not_import_cloud_sdks_or_pulumi():
    code = (
        "import sys, residency_sdk as rs; rs.Residency.load();"
        "bad = {m.split('.')[0] for m in sys.modules} & "
        "{'boto3','botocore','google','azure','pulumi','duckdb'};"
        "print(','.join(sorted(bad)))"
    )
    # Loading a map reads the shipped region tables: not even botocore's data is imported.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(ROOT)})
    loaded = set(filter(None, out.stdout.strip().split(",")))
    assert loaded == set(), loaded


def test_bare_import_imports_no_third_party_cloud_module():
    code = ("import sys, residency_sdk; print(','.join(m for m in sys.modules "
            "if m.split('.')[0] in {'boto3','botocore','google','azure','pulumi'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""


def test_package_ships_py_typed():
    assert (Path(rs.__file__).parent / "py.typed").exists()


def test_schema_json_is_in_sync_with_the_models():
    shipped = json.loads((packaged_maps_dir() / "schema.json").read_text())
    assert shipped == region_map_json_schema(), (
        "region_maps/schema.json is stale: run `residency map schema --out "
        "region_maps/schema.json`")


def _exported_errors() -> list[type[Exception]]:
    return [getattr(rs, name) for name in rs.__all__
            if isinstance(getattr(rs, name), type) and issubclass(getattr(rs, name), Exception)]


def test_every_exported_error_is_a_residency_error_rooted_on_exception():
    errors = _exported_errors()
    assert len(errors) > 30
    for error in errors:
        assert issubclass(error, rs.ResidencyError), error
    assert rs.ResidencyError.__bases__ == (Exception,)
    assert not issubclass(rs.ResidencyError, ValueError)


# Input and configuration errors keep ValueError; a refusal on legal grounds is not one.
INPUT_ERRORS = ("InvalidCountry", "NoRoute", "UnknownDataClass", "UnknownMechanism",
                "InvalidTenant", "MapError", "InvalidKey", "InsecureEndpoint",
                "BackendNotConfigured", "SDKNotInstalled", "BucketNotFound", "NoSuchBackend",
                "UnknownLocation", "InvalidLocalLocation", "UnknownRetentionCategory",
                "InfraError", "AuditKeyError", "AuditFormatError", "NotDicom")
NOT_INPUT_ERRORS = ("TransferBlocked", "PlacementBlocked", "BAARequired", "ObjectNotFound",
                    "BackendUnavailable", "AccessDenied", "IntegrityError", "ChainBroken",
                    "ErasureIncomplete", "ResidencyViolation", "DeidentificationRefused",
                    "NotAnonymised", "KeyDestroyed", "ObjectChanged")


@pytest.mark.parametrize("name", INPUT_ERRORS)
def test_input_and_configuration_errors_are_value_errors(name: str) -> None:
    error = getattr(rs, name)
    assert issubclass(error, rs.InputError) and issubclass(error, ValueError)


@pytest.mark.parametrize("name", NOT_INPUT_ERRORS)
def test_refusals_and_failures_are_not_value_errors(name: str) -> None:
    assert not issubclass(getattr(rs, name), ValueError)


def test_standard_meanings_of_backend_errors() -> None:
    assert issubclass(rs.BackendUnavailable, ConnectionError)
    assert issubclass(rs.ErasureUnavailable, ConnectionError)
    assert issubclass(rs.AccessDenied, PermissionError)
    assert str(rs.AccessDenied("denied: fix the key policy")) == "denied: fix the key policy"
    for meaning in ("SDKNotInstalled", "BucketNotFound", "NoSuchBackend", "UnknownLocation",
                    "InvalidLocalLocation"):
        assert issubclass(getattr(rs, meaning), rs.BackendNotConfigured), meaning
