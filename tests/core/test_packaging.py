"""Packaging promises: no cloud SDK at import, py.typed, schema in sync."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import residency_sdk as rs
from residency_sdk.regionmap import packaged_maps_dir, region_map_json_schema

ROOT = Path(__file__).resolve().parents[2]


def test_import_does_not_import_cloud_sdks_or_pulumi():
    code = (
        "import sys, residency_sdk as rs; rs.Residency.load();"
        "bad = {m.split('.')[0] for m in sys.modules} & "
        "{'boto3','botocore','google','azure','pulumi','duckdb'};"
        "print(','.join(sorted(bad)))"
    )
    # Loading a map may consult botocore's bundled region list (data, no client, no network).
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(ROOT)})
    loaded = set(filter(None, out.stdout.strip().split(",")))
    assert loaded <= {"botocore"}, loaded


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


def test_every_error_is_a_residency_error_and_a_value_error():
    errors = [getattr(rs, name) for name in rs.__all__
              if isinstance(getattr(rs, name), type) and issubclass(getattr(rs, name), Exception)]
    assert len(errors) > 10
    for error in errors:
        assert issubclass(error, rs.ResidencyError) and issubclass(error, ValueError)
