"""The egress CLI: ``egress check`` (decisions, exit codes 0/1/2, --json, audit) and
``egress allowlist`` (txt/json/squid, --location, --out) on a map with one processor."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from residency_sdk.cli.app import app
from residency_sdk.egress.allowlist import egress_allowlist
from residency_sdk.erasure import audit_log_events
from residency_sdk.regionmap import load_region_map

runner = CliRunner()

DE_COMPUTE = "https://inference.de.residency.example"
DRAFTER = "https://api.drafter.example/v1/draft"
COMPUTE_HOSTS = {f"inference.{c}.residency.example:443" for c in
                 ("de", "ch", "gb", "fr", "us", "au")}

MAP = """\
extends: default
name: drafter-test
processors:
  drafter:
    name: Drafter Inc.
    hosts: ["api.drafter.example"]
    country: US
    baa: false
    retention: "none beyond the request"
    data_classes: [personal]
    agreements: [{mechanism: scc, destinations: [US], reference: SCC-D-1}]
    source: "DPA 2026-05"
    as_of: "2026-11-01"
"""


@pytest.fixture
def map_file(tmp_path: Path) -> Path:
    path = tmp_path / "map.yaml"
    path.write_text(MAP, encoding="utf-8")
    return path


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def check(map_file: Path, *args: str) -> tuple[int, str]:
    return run("egress", "check", "--map", str(map_file), "--no-audit", *args)


def hosts_of(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


# --- egress check ------------------------------------------------------------------------


def test_the_default_map_declares_the_de_compute_endpoint():
    region_map = load_region_map(None)
    assert [t.endpoint for t in region_map.locations["DE"].compute] == [DE_COMPUTE]


def test_compute_call_to_the_tenants_own_location_is_allowed(map_file):
    code, out = check(map_file, "--country", "AT", "--url", f"{DE_COMPUTE}/v1/segment")
    assert code == 0, out
    assert out.startswith("ALLOWED phi data to https://inference.de.residency.example/v1")
    assert "kind: compute endpoint of location DE, country: DE" in out


def test_another_locations_compute_endpoint_is_blocked(map_file):
    code, out = check(map_file, "--country", "AT", "--url",
                      "https://inference.fr.residency.example/v1")
    assert code == 1 and out.startswith("BLOCKED")
    assert "compute endpoint of location FR, not of DE" in out


def test_undeclared_host_is_blocked_with_the_reason(map_file):
    code, out = check(map_file, "--country", "DE", "--url", "https://api.other.example/v1")
    assert code == 1
    assert out.startswith("BLOCKED phi data to https://api.other.example/v1")
    assert "kind: none" in out
    assert "api.other.example is neither a compute endpoint of location DE nor a " \
           "processor's host" in out


def test_processor_personal_allowed_on_the_processors_own_agreements(map_file):
    # No -m: the SCC the map declares for the processor is what the decision rests on.
    code, out = check(map_file, "--country", "DE", "--url", DRAFTER,
                      "--data-class", "personal")
    assert code == 0, out
    assert "kind: processor drafter (Drafter Inc.), country: US, via: scc" in out
    assert "rests on: scc[SCC-D-1]" in out


def test_processor_phi_blocked_for_its_missing_baa_and_data_class(map_file):
    code, out = check(map_file, "--country", "DE", "--url", DRAFTER)
    assert code == 1 and out.startswith("BLOCKED phi data")
    assert "holds no BAA (baa: false in the region map)" in out
    assert "may receive personal data, not phi" in out


def test_processor_phi_blocked_even_for_a_tenant_outside_sgb5(map_file):
    # A US tenant: no transfer at all, so only the processor's own limits refuse phi.
    code, out = check(map_file, "--country", "US", "--url", DRAFTER)
    assert code == 1
    assert "holds no BAA" in out and "not phi" in out


def test_plain_http_to_a_processor_is_blocked(map_file):
    code, out = check(map_file, "--country", "DE", "--url", "http://api.drafter.example/v1",
                      "-d", "personal")
    assert code == 1 and "plain http to api.drafter.example" in out


def test_reasons_are_printed_verbatim_not_as_rich_markup(map_file):
    code, out = check(map_file, "--country", "DE", "--url", "https://[bold]x.example/")
    assert code == 1
    assert out.startswith("BLOCKED phi data to https://[bold]x.example/\n")
    assert "  - 'https://[bold]x.example/' is not a valid URL" in out


def test_json_shape(map_file):
    code, out = check(map_file, "--country", "DE", "--url", DRAFTER, "-d", "personal",
                      "--json")
    assert code == 0
    data = json.loads(out)
    assert data["ok"] is True and data["processor_name"] == "Drafter Inc."
    egress = data["egress"]
    assert set(egress) == {"allowed", "url", "host", "data_class", "kind", "processor",
                           "country", "reasons", "agreements", "decision"}
    assert (egress["allowed"], egress["url"], egress["host"], egress["data_class"],
            egress["kind"], egress["processor"], egress["country"]) == (
        True, DRAFTER, "api.drafter.example", "personal", "processor", "drafter", "US")
    assert egress["agreements"] == ["scc[SCC-D-1]"]
    assert egress["decision"]["mechanism"] == "scc"
    assert egress["decision"]["destination"] == "US"


def test_json_blocked_undeclared_host(map_file):
    code, out = check(map_file, "--country", "DE", "--url", "https://nope.example/", "--json")
    data = json.loads(out)
    assert code == 1 and data["ok"] is False
    assert data["egress"]["kind"] is None and data["egress"]["decision"] is None
    assert "nope.example is neither" in data["egress"]["reasons"][0]


@pytest.mark.parametrize(("args", "needle"), [
    (("--country", "XX"), "XX"),
    (("--country", "JP"), "JP"),
    (("--country", "DE", "--data-class", "secret"), "secret"),
    (("--country", "DE", "-m", "handshake"), "handshake"),
])
def test_bad_input_exits_2(map_file, args, needle):
    code, out = check(map_file, "--url", DE_COMPUTE, *args, "--json")
    data = json.loads(out)
    assert code == 2 and data["ok"] is False and needle in data["error"]


def test_missing_url_is_a_usage_error(map_file):
    assert check(map_file, "--country", "DE")[0] == 2


def test_check_is_audited(map_file, tmp_path):
    log = tmp_path / "audit.db"
    code, _ = run("egress", "check", "--map", str(map_file), "--audit", str(log),
                  "--country", "DE", "--url", DRAFTER)
    assert code == 1
    events = [e for e in audit_log_events(log) if e.operation == "egress_check"]
    assert len(events) == 1
    event = events[0]
    assert (event.outcome, event.processor, event.destination_country, event.data_class,
            event.purpose) == ("blocked", "drafter", "US", "phi", "cli check")


# --- egress allowlist ------------------------------------------------------------------


def test_allowlist_txt_lists_every_declared_host_and_nothing_else(map_file):
    code, out = run("egress", "allowlist", "--map", str(map_file))
    assert code == 0
    assert out.startswith("# residency-sdk egress allow-list (host:port), region map "
                          "'drafter-test'")
    hosts = hosts_of(out)
    assert len(hosts) == len(set(hosts))
    assert set(hosts) == COMPUTE_HOSTS | {"api.drafter.example:443"}


def test_allowlist_matches_the_map(map_file):
    region_map = load_region_map(map_file)
    entries = egress_allowlist(region_map)
    assert {e.host_port for e in entries if e.kind == "processor"} == \
        set(region_map.processors["drafter"].hosts)
    assert {(e.owner, f"{e.scheme}://{e.host}") for e in entries if e.kind == "compute"} \
        == {(lid, t.endpoint) for lid, loc in region_map.locations.items()
            for t in loc.compute}


def test_allowlist_json(map_file):
    code, out = run("egress", "allowlist", "--map", str(map_file), "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["map"] == "drafter-test" and data["location"] is None
    by_host = {e["host"]: e for e in data["endpoints"]}
    assert {f"{h}:{e['port']}" for h, e in by_host.items()} == \
        COMPUTE_HOSTS | {"api.drafter.example:443"}
    assert by_host["api.drafter.example"] == {
        "scheme": "https", "host": "api.drafter.example", "port": 443, "kind": "processor",
        "owner": "drafter", "country": "US", "data_classes": ["personal"],
        "source": "DPA 2026-05"}
    de = by_host["inference.de.residency.example"]
    assert (de["kind"], de["owner"], de["country"], de["data_classes"]) == \
        ("compute", "DE", "DE", None)


def test_allowlist_squid(map_file):
    code, out = run("egress", "allowlist", "--map", str(map_file), "--format", "squid")
    assert code == 0
    rules = hosts_of(out)
    acl = [r for r in rules if r.startswith("acl residency_egress_443 dstdomain ")]
    assert len(acl) == 1
    assert {f"{h}:443" for h in acl[0].split()[3:]} == COMPUTE_HOSTS | \
        {"api.drafter.example:443"}
    assert "acl residency_egress_port_443 port 443" in rules
    assert "http_access allow residency_egress_443 residency_egress_port_443" in rules
    assert rules[-1] == "http_access deny all"
    assert all(re.match(r"(acl|http_access) ", r) for r in rules)


def test_allowlist_location_filter_keeps_processors(map_file):
    code, out = run("egress", "allowlist", "--map", str(map_file), "--location", "de")
    assert code == 0
    assert "location DE's compute endpoints" in out
    assert hosts_of(out) == ["inference.de.residency.example:443", "api.drafter.example:443"]


def test_allowlist_unknown_location_exits_2(map_file):
    code, out = run("egress", "allowlist", "--map", str(map_file), "--location", "ZZ")
    assert code == 2 and "ZZ" in out


def test_allowlist_bad_format_exits_2(map_file):
    code, out = run("egress", "allowlist", "--map", str(map_file), "--format", "nginx")
    assert code == 2 and "nginx" in out


def test_allowlist_out_file(map_file, tmp_path):
    target = tmp_path / "egress.txt"
    code, out = run("egress", "allowlist", "--map", str(map_file), "--out", str(target))
    assert code == 0 and "written to" in out
    assert set(hosts_of(target.read_text(encoding="utf-8"))) == \
        COMPUTE_HOSTS | {"api.drafter.example:443"}


def test_allowlist_out_in_a_missing_folder_is_a_clean_error(map_file, tmp_path):
    target = tmp_path / "missing" / "egress.txt"
    result = runner.invoke(app, ["egress", "allowlist", "--map", str(map_file),
                                 "--out", str(target)])
    assert result.exit_code == 3 and isinstance(result.exception, SystemExit)
    assert "cannot write" in result.output and "No such file or directory" in result.output
    assert not target.exists()
