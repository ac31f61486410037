"""The routing CLI: output, --json and exit codes 0/1/2."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from residency_sdk.cli import app

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_resolve_turkey_shows_germany_and_the_missing_mechanism():
    code, out = run("resolve", "--country", " tr ")
    assert code == 1
    assert "location DE" in out and "kvkk_standard_contract" in out and "missing" in out


def test_resolve_json_with_the_mechanism_held():
    code, out = run("resolve", "--country", "TR", "-m", "kvkk_standard_contract", "--json")
    data = json.loads(out)
    assert code == 0 and data["ok"] is True
    assert data["placement"]["location"] == "DE"
    assert data["placement"]["storage"]["region"] == "germanywestcentral"
    assert data["placement_decision"]["mechanism"] == "kvkk_standard_contract"


@pytest.mark.parametrize("country", ["UK", "", "CA"])
def test_resolve_invalid_or_unrouted_fails_closed_with_json_error(country):
    code, out = run("resolve", "--country", country, "--json")
    data = json.loads(out)
    assert code == 2 and data["ok"] is False
    assert data["error_type"] in {"InvalidCountry", "NoRoute"}
    assert repr(country) in data["error"]


def test_transfer_check_blocked_and_allowed():
    code, out = run("transfer", "check", "--country", "DE", "--to", "US",
                    "--data-class", "personal")
    assert code == 1 and "BLOCKED" in out and "scc" in out
    code, out = run("transfer", "check", "--country", "DE", "--to", "US",
                    "--data-class", "personal", "--mechanism", "scc", "--json")
    assert code == 0 and json.loads(out)["decision"]["mechanism"] == "scc"


def test_transfer_check_unknown_data_class_is_a_usage_error_with_the_fix():
    code, out = run("transfer", "check", "-c", "DE", "--to", "US", "-d", "personl", "--json")
    assert code == 2 and "personl" in json.loads(out)["error"]


def test_usage_errors_exit_2():
    assert run("transfer", "check", "--country", "DE")[0] == 2
    assert run("no-such-command")[0] == 2


def test_map_validate_good_and_bad(tmp_path):
    code, out = run("map", "validate", "region_maps/default.yaml", "--json")
    assert code == 0 and json.loads(out)["locations"] == ["AU", "CH", "DE", "FR", "GB", "US"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: default\nname: bad\nroutes: {TR: IN}\n")
    code, out = run("map", "validate", str(bad), "--json")
    data = json.loads(out)
    assert code == 2 and "routes.TR" in data["error"] and "'IN'" in data["error"]


def test_map_show_lists_routes_and_locations():
    code, out = run("map", "show")
    assert code == 0 and "not FR: own route" in out and "germanywestcent" in out
    data = json.loads(run("map", "show", "--json")[1])
    assert data["routes"]["NZ"] == {"location": "AU", "matched": "NZ"}


def test_demo_runs_on_the_embedded_default():
    code, out = run("demo", "--json")
    data = json.loads(out)
    assert code == 0
    locations = {p["tenant"]: p["location"] for p in data["placements"]}
    assert locations["acibadem-istanbul"] == "DE" and locations["auckland-city"] == "AU"
    assert any(not t["allowed"] for t in data["transfers"])
    assert any(t["allowed"] for t in data["transfers"])
