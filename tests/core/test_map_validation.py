"""Malformed region maps and rules: always a MapError with file, path and value."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import residency_sdk as rs
from residency_sdk.regionmap import compile_region_map, load_region_map
from residency_sdk.regions import packaged_maps_dir
from residency_sdk.rules import compile_transfer_rules

DEFAULT = yaml.safe_load((packaged_maps_dir() / "default.yaml").read_text())
RULES = yaml.safe_load((packaged_maps_dir() / "transfer_rules.yaml").read_text())


def compile_doc(doc: Any) -> Any:
    return compile_region_map(doc, file="test-map.yaml", base_dir=packaged_maps_dir())


def mutated(**changes: Any) -> dict[str, Any]:
    """The default document with dotted paths replaced (None deletes)."""
    doc = copy.deepcopy(DEFAULT)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = doc
        for part in parents:
            node = node[part]
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value
    return doc


def write(tmp_path: Path, text: str, name: str = "map.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


CASES = {
    "route to undefined location": (
        mutated(routes__TR="IN"), "routes.TR", "'IN'"),
    "unknown country in a route": (
        mutated(routes__XX="DE"), "routes.XX", "'XX'"),
    "unknown group member": (
        mutated(groups__EU__members=["DE", "ZZ"]), "groups.EU.members.1", "'ZZ'"),
    "backend region abroad": (
        mutated(locations__DE__backends__aws__region="eu-west-1"),
        "locations.DE.backends.aws.region", "'eu-west-1'"),
    "failover region abroad": (
        mutated(locations__DE__backends__azure__failover_region="francecentral"),
        "locations.DE.backends.azure.failover_region", "'francecentral'"),
    "gcp region abroad": (
        mutated(locations__CH__backends__gcp__region="europe-west3"),
        "locations.CH.backends.gcp.region", "'europe-west3'"),
    "unknown region": (
        mutated(locations__US__backends__gcp__region="mars-north1"),
        "locations.US.backends.gcp.region", "'mars-north1'"),
    "missing region": (
        mutated(locations__GB__backends__aws={"baa": True}), "locations.GB.backends.aws.region",
        ""),
    "default provider without backend": (
        mutated(locations__FR__backends__gcp=None, locations__FR__default_provider="gcp"),
        "locations.FR.default_provider", "'gcp'"),
    "unknown provider": (
        mutated(locations__FR__backends__ibm={"region": "x"}), "locations.FR.backends.ibm", ""),
    "wrong type": (mutated(routes=["EU", "DE"]), "routes", ""),
    "extra field": (mutated(locations__AU__colour="red"), "locations.AU.colour", "'red'"),
    "location not a country": (
        mutated(locations__XX=copy.deepcopy(DEFAULT["locations"]["DE"])),
        "locations.XX.country", "'XX'"),
    "insecure endpoint": (
        mutated(locations__US__backends__aws__endpoint="http://s3.example.com"),
        "locations.US.backends.aws.endpoint", "http://s3.example.com"),
    "bad bucket template": (
        mutated(locations__US__backends__aws__bucket="Bad_Bucket"),
        "locations.US.backends.aws.bucket", "'Bad_Bucket'"),
    "group cycle": (
        mutated(groups__EU__members=["EEA"]), "groups.E", ""),
    "retention with two units": (
        mutated(retention__audit={"days": 1, "hours": 2, "source": "s", "as_of": "2026"}),
        "retention.audit", ""),
    "version": (mutated(version=2), "version", "2"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hand_written_malformed_maps(case):
    doc, path, value = CASES[case]
    with pytest.raises(rs.MapError) as info:
        compile_doc(doc)
    message = str(info.value)
    assert message.startswith("test-map.yaml at ")
    assert path in message, message
    assert value in message, message


def test_same_specificity_routes_conflict():
    doc = mutated(groups__DACH={"members": ["DE", "AT", "CH"], "source": "s", "as_of": "d"},
                  groups__ALPS={"members": ["AT", "CH", "IT"], "source": "s", "as_of": "d"})
    doc["routes"] = {"DACH": "DE", "ALPS": "CH", **doc["routes"]}
    del doc["routes"]["CH"]
    with pytest.raises(rs.MapError, match="two routes of the same specificity"):
        compile_doc(doc)


def test_smaller_group_is_more_specific_than_larger():
    doc = mutated(groups__DACH={"members": ["DE", "AT", "CH"], "source": "s", "as_of": "d"})
    doc["routes"]["DACH"] = "CH"
    del doc["routes"]["CH"]
    compiled = compile_doc(doc)
    assert compiled.routes["AT"].location == "CH"  # DACH (3) beats EU (27)
    assert compiled.routes["IT"].location == "DE"


def test_duplicate_route_in_yaml_is_refused_with_its_line(tmp_path):
    path = write(tmp_path, """\
        extends: default
        name: dup
        routes:
          TR: DE
          TR: GB
        """)
    with pytest.raises(rs.MapError, match=r"line 5.*duplicate key 'TR'") as info:
        load_region_map(path)
    assert str(path) in str(info.value)


def test_yaml_syntax_error_names_line(tmp_path):
    path = write(tmp_path, "name: x\nroutes: {EU: DE\n")
    with pytest.raises(rs.MapError, match="line"):
        load_region_map(path)


def test_yaml_bomb_is_refused_quickly(tmp_path):
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 30):
        lines.append(f"a{i}: &a{i} [*a{i-1},*a{i-1},*a{i-1},*a{i-1},*a{i-1},*a{i-1},*a{i-1}]")
    path = write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(rs.MapError, match="aliases"):
        load_region_map(path)


def test_huge_file_is_refused(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("name: x\n# " + "x" * (3 * 1024 * 1024) + "\n")
    with pytest.raises(rs.MapError, match="larger than"):
        load_region_map(path)


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n", "42\n"])
def test_non_mapping_documents(tmp_path, text):
    with pytest.raises(rs.MapError, match="mapping"):
        load_region_map(write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(rs.MapError, match="cannot read"):
        load_region_map(tmp_path / "nope.yaml")


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(rs.MapError, match="UTF-8"):
        load_region_map(path)


def test_overlay_adds_india_and_removes_a_route(tmp_path):
    path = write(tmp_path, """\
        extends: default
        name: with-india
        routes:
          IN: IN
          TR: null
        locations:
          IN:
            name: India
            default_provider: aws
            backends:
              aws: {region: ap-south-1, failover_region: ap-south-2, baa: true}
              gcp: {region: asia-south1, baa: true}
        """)
    res = rs.Residency.load(path)
    placement = res.resolve(rs.Tenant(id="aiims", country="IN"))
    assert placement.location == "IN" and placement.storage.region == "ap-south-1"
    assert res.resolve(rs.Tenant(id="x", country="FR")).location == "FR"  # inherited
    with pytest.raises(rs.NoRoute):
        res.resolve(rs.Tenant(id="x", country="TR"))
    # India's DPDP regime (negative list) governs data placed there from India.
    assert res.check_placement(rs.Tenant(id="aiims", country="IN")).allowed


def test_overlay_can_extend_the_region_table(tmp_path):
    path = write(tmp_path, """\
        extends: default
        name: new-region
        cloud_regions:
          gcp: {europe-west12: it}
        routes: {IT: IT}
        locations:
          IT:
            name: Italy
            default_provider: gcp
            backends:
              gcp: {region: europe-west12, baa: true}
        """)
    res = rs.Residency.load(path)
    assert res.resolve(rs.Tenant(id="x", country="IT")).storage.region == "europe-west12"


def test_extends_cycle_is_refused(tmp_path):
    write(tmp_path, "extends: b.yaml\nname: a\n", "a.yaml")
    write(tmp_path, "extends: a.yaml\nname: b\n", "b.yaml")
    with pytest.raises(rs.MapError, match="extends"):
        load_region_map(tmp_path / "a.yaml")


def test_rules_country_governed_twice():
    rules = copy.deepcopy(RULES)
    rules["regimes"]["uk_gdpr"]["governs"] = ["GB", "IE"]
    with pytest.raises(rs.MapError, match="governed by two regimes") as info:
        compile_transfer_rules(rules, file="rules.yaml", groups=load_region_map().groups)
    assert "regimes.uk_gdpr.governs" in str(info.value)


@pytest.mark.parametrize(
    ("change", "path"),
    [(("gdpr", "mechanisms", 0, "flag", "sccs"), "regimes.gdpr.mechanisms.0.flag"),
     (("kvkk", "restricts", 0, None, "health"), "regimes.kvkk.restricts.0"),
     (("app8", "governs", 0, None, "AUS"), "regimes.app8.governs.0"),
     (("gdpr", "adequacy", 4, "requires", "dpff"), "regimes.gdpr.adequacy.4.requires")],
)
def test_rules_cross_references(change, path):
    rules = copy.deepcopy(RULES)
    regime, field, index, sub, value = change
    if sub is None:
        rules["regimes"][regime][field][index] = value
    else:
        rules["regimes"][regime][field][index][sub] = value
    with pytest.raises(rs.MapError) as info:
        compile_transfer_rules(rules, file="rules.yaml", groups=load_region_map().groups)
    assert path in str(info.value) and repr(value) in str(info.value)


# --- generated malformed maps ------------------------------------------------------

junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


ALL_PATHS = _paths(DEFAULT)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(ALL_PATHS), junk), min_size=1, max_size=3))
def test_generated_malformed_maps_never_escape_as_tracebacks(edits):
    doc = copy.deepcopy(DEFAULT)
    for path, value in edits:
        node = doc
        try:
            for part in path[:-1]:
                node = node[part]
            node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    try:
        compiled = compile_doc(doc)
    except rs.MapError as exc:
        assert str(exc).startswith("test-map.yaml")
    else:
        # Whatever survived validation must still honour the residency invariants.
        for loc in compiled.locations.values():
            for target in loc.backends.values():
                assert target.country == loc.country
        for route in compiled.routes.values():
            assert route.location in compiled.locations


@settings(max_examples=200, deadline=None)
@given(junk)
def test_arbitrary_documents_are_refused_cleanly(doc):
    with pytest.raises(rs.MapError):
        compile_doc(doc)


# Overlay texts, some valid, most a little broken: pure junk text is almost never a map,
# so without these the "loaded" half of the contract below would never run.
_ROUTE_KEYS = st.sampled_from(["IS", "JP", "CA", "FR", "EU", "ZZ", "de", "1", ""])
_ROUTE_VALUES = st.sampled_from(["FR", "DE", "AU", "US", "XX", "", "[]", "{location: DE}"])
overlay_text = st.builds(
    lambda key, value, tail: f"extends: default\nroutes:\n  {key}: {value}\n{tail}",
    _ROUTE_KEYS, _ROUTE_VALUES,
    st.sampled_from(["", "# comment\n", "name: fuzz\n"]) | st.text(max_size=40))


def _assert_loaded_map_is_consistent(path: Path, region_map: Any) -> None:
    """A map that loaded honours the residency invariants, and the router built from the
    same file sends every overlaid route where the text said."""
    for loc in region_map.locations.values():
        for target in (*loc.backends.values(), *loc.failovers.values()):
            assert target.country == loc.country, (loc.id, target)
    for country, route in region_map.routes.items():
        assert route.location in region_map.locations, (country, route)
    policy = rs.ResidencyPolicy.load(path)
    overlay = yaml.safe_load(path.read_text(encoding="utf-8"))
    for country, location in (overlay.get("routes") or {}).items():
        if location is None or country in region_map.groups:
            continue  # null removes the route; a group's members may have their own
        placement = policy.resolve_country(country)
        assert placement.location == location == region_map.routes[country].location
        assert placement.storage.country == region_map.locations[location].country


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200) | overlay_text)
@example("extends: default\nroutes:\n  IS: FR\n")  # loads: the "loaded" half always runs
@example("extends: default\nroutes:\n  IS: XX\n")  # refused: unknown location
@example("routes: [\n")  # refused: invalid YAML
def test_arbitrary_yaml_text_is_refused_or_loaded(tmp_path_factory, text):
    """Any text is either refused with a MapError (an InputError, so a ResidencyError)
    whose message names the file and says what is wrong, or loads into a map whose routes
    and backends honour the residency invariants and which the router follows. Any other
    exception escapes and fails the test."""
    path = tmp_path_factory.mktemp("fuzz") / "m.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        region_map = load_region_map(path)
    except rs.MapError as exc:
        assert isinstance(exc, rs.InputError) and isinstance(exc, rs.ResidencyError)
        # The file named is this one or a map it extends (`extends: missing.yaml`).
        assert exc.file is not None and Path(exc.file).parent in (path.parent,
                                                                  packaged_maps_dir()), exc
        where, _, problem = str(exc).partition(": ")
        assert where.startswith(exc.file), str(exc)
        assert problem.strip(), f"no problem named in {exc}"
    else:
        _assert_loaded_map_is_consistent(path, region_map)


# --- the map cannot lie about where a region or an endpoint is (issue 11) -------------

BUILTIN = yaml.safe_load((packaged_maps_dir() / "cloud_regions.yaml").read_text())
KNOWN = sorted((p, r, c) for p in ("aws", "gcp", "azure") for r, c in BUILTIN[p].items())
COUNTRIES = sorted({c for _, _, c in KNOWN})


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(KNOWN), st.sampled_from(COUNTRIES))
def test_cloud_regions_never_change_a_builtin_country(known, claimed):
    provider, region, real = known
    try:
        compiled = compile_doc(mutated(cloud_regions={provider: {region: claimed}}))
    except rs.MapError as exc:
        assert claimed != real
        assert f"cloud_regions.{provider}.{region}" in str(exc) and f"is in {real}" in str(exc)
    else:
        assert claimed == real and compiled.regions[provider][region] == real
        assert compiled.unreviewed_regions == ()


# (whose domain, form): a form naming a region {r} under that provider's domain
ENDPOINT_FORMS = [
    ("aws", "https://s3.{r}.amazonaws.com"),
    ("aws", "https://s3-fips.dualstack.{r}.amazonaws.com"),
    ("aws", "https://runtime.sagemaker.{r}.amazonaws.com"),
    ("gcp", "https://storage.{r}.rep.googleapis.com"),
    ("gcp", "https://{r}-aiplatform.googleapis.com"),
    ("azure", "https://x.{r}.inference.ml.azure.com"),
    ("gcp", "https://storage.googleapis.com"),
    ("azure", "https://residencyde.blob.core.windows.net"),
    ("azure", "https://residencyus.blob.core.windows.net"),
    (None, "https://proxy.{r}.example"),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(location=st.sampled_from(sorted(DEFAULT["locations"])),
       provider=st.sampled_from(["aws", "gcp", "azure"]),
       form=st.sampled_from(ENDPOINT_FORMS), named=st.sampled_from(KNOWN),
       stated=st.sampled_from([None, "DE", "US"]), on_compute=st.booleans())
def test_no_accepted_endpoint_names_a_region_abroad(location, provider, form, named, stated,
                                                    on_compute):
    owner, template = form
    endpoint = template.format(r=named[1])
    doc = copy.deepcopy(DEFAULT)
    loc = doc["locations"][location]
    entry: dict[str, Any] = {"endpoint": endpoint}
    if stated:
        entry |= {"endpoint_country": stated, "endpoint_source": "generated"}
    if on_compute:
        region = next(r for p, r, c in KNOWN if p == provider and c == location)
        loc["compute"] = [{"provider": provider, "region": region, **entry}]
    else:
        loc["backends"][provider].update(entry)
    try:
        compiled = compile_doc(doc)
    except rs.MapError as exc:
        assert str(exc).startswith(f"test-map.yaml at locations.{location}.")
        return
    country = compiled.locations[location].country
    if "{r}" in template and owner == named[0]:  # the host names a region of its owner
        assert named[2] == country, (endpoint, location)
    assert stated in (None, country)
    target = (compiled.locations[location].compute[0] if on_compute
              else compiled.locations[location].backends[provider])
    assert target.endpoint_country in (None, country)
