"""Start-up (issue 19): a lazy package, shipped data tables, the bounded C YAML loader.

- ``import residency_sdk`` imports nothing but its version until a name is used, and every
  exported name still resolves (``from residency_sdk import X``, ``rs.X``, ``__all__``).
- Loading a map reads the shipped tables: no cloud SDK (not even botocore's region data)
  and no pycountry, which is no longer a dependency: country codes and provider regions
  behave as before with both blocked from import.
- The YAML loader parses in C when libyaml is there, with the same bounds as the pure
  Python one: a YAML bomb, a duplicate key and deep nesting are refused (an error, never
  a crash or a silent last-key-wins).
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

import residency_sdk as rs
from residency_sdk import _yamlio
from residency_sdk.countries import iso3166_table, iso_alpha2_codes, normalise_country
from residency_sdk.regionmap import load_region_map
from residency_sdk.regions import packaged_maps_dir, provider_regions, provider_regions_table

ROOT = Path(__file__).resolve().parents[2]
CLOUD_SDKS = ("boto3", "botocore", "awscrt", "google", "azure", "pulumi")

# A finder, first on sys.meta_path, that refuses the named top-level packages as if they
# were not installed (they are, in the test environment).
BLOCKER = """\
import sys

class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is blocked by the test")
        return None

sys.meta_path.insert(0, _Blocked())
"""


def run_python(code: str, tmp_path: Path, *, blocked: tuple[str, ...] = ()) -> str:
    """Run ``code`` in a fresh interpreter (the repository importable, its state in
    ``tmp_path``) with ``blocked`` packages unimportable; returns its stdout."""
    script = BLOCKER.format(blocked=set(blocked)) + textwrap.dedent(code)
    env = {"PYTHONPATH": str(ROOT), "HOME": str(tmp_path),
           "RESIDENCY_STATE_DIR": str(tmp_path / "state")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


# --- the lazy package ------------------------------------------------------------------


def test_bare_import_loads_only_the_version(tmp_path: Path) -> None:
    out = run_python("""
        import sys, residency_sdk
        print(sorted(m for m in sys.modules if m.startswith("residency_sdk")))
        print(sorted(m for m in sys.modules if m.split(".")[0] in {"pydantic", "yaml"}))
    """, tmp_path)
    ours, third_party = out.splitlines()
    assert ours == "['residency_sdk', 'residency_sdk._version']"
    assert third_party == "[]"


def test_every_export_resolves_to_its_module_attribute() -> None:
    assert set(rs.__all__) == set(rs._EXPORTS) | {"__version__"}
    for name in rs.__all__:
        value = getattr(rs, name)
        assert value is not None, name
        if name != "__version__":
            module, _, attribute = rs._EXPORTS[name].partition(":")
            owner = sys.modules[f"residency_sdk.{module}"]
            assert getattr(owner, attribute or name) is value, name
    assert set(rs.__all__) <= set(dir(rs))
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        _ = rs.NoSuchThing  # type: ignore[attr-defined]


def test_from_import_works_for_exports_and_the_deid_subpackage(tmp_path: Path) -> None:
    out = run_python("""
        from residency_sdk import DeploymentReport, Residency, TransferBlocked, deid
        print(DeploymentReport.__name__, Residency.__name__, TransferBlocked.__mro__[1].__name__,
              deid.__name__)
    """, tmp_path)
    assert out.split() == ["VerifyReport", "Residency", "ResidencyError", "residency_sdk.deid"]


def _type_checking_names(path: Path) -> set[str]:
    """The names an ``if TYPE_CHECKING:`` block of ``path`` imports."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) \
                and node.test.id == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom)
                names.update(alias.asname or alias.name for alias in stmt.names)
    return names


@pytest.mark.parametrize("package", ["residency_sdk", "residency_sdk.audit"])
def test_type_checking_imports_match_the_lazy_exports(package: str) -> None:
    """mypy sees the ``if TYPE_CHECKING:`` imports, users get ``_EXPORTS``: the same
    names, from the same modules."""
    module = importlib.import_module(package)
    path = Path(module.__file__ or "")
    assert _type_checking_names(path) == set(module._EXPORTS)
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.module
                for alias in stmt.names:
                    target = module._EXPORTS[alias.asname or alias.name]
                    where, _, attribute = target.partition(":")
                    assert stmt.module == f"{package}.{where}", (alias.name, target)
                    assert (attribute or alias.asname or alias.name) == alias.name


def test_audit_log_import_leaves_the_report_and_renderers_out(tmp_path: Path) -> None:
    out = run_python("""
        import sys
        from residency_sdk.audit import AuditLog, verify_log
        print(sorted(m for m in sys.modules if m.startswith("residency_sdk.audit.")))
    """, tmp_path)
    loaded = set(ast.literal_eval(out))
    assert "residency_sdk.audit.log" in loaded and "residency_sdk.audit.verify" in loaded
    assert not loaded & {"residency_sdk.audit.report", "residency_sdk.audit.render",
                         "residency_sdk.audit.html", "residency_sdk.audit.combine"}, loaded


# --- no cloud SDK, no pycountry --------------------------------------------------------


def test_load_resolve_and_decide_import_no_cloud_sdk_nor_pycountry(tmp_path: Path) -> None:
    watched = sorted({*CLOUD_SDKS, "pycountry"})
    out = run_python(f"""
        import sys
        import residency_sdk as rs
        res = rs.Residency.load()
        tenant = rs.Tenant(id="clinic-1", country="DE")
        placement = res.resolve(tenant)
        print(placement.location, placement.storage.country, res.check_placement(tenant).allowed)
        res.close()
        print(sorted({{m.split(".")[0] for m in sys.modules}} & set({watched!r})))
    """, tmp_path)
    region, verdict = out.splitlines()
    assert region.split() == ["DE", "DE", "True"]
    assert verdict == "[]"


def test_countries_work_with_pycountry_blocked(tmp_path: Path) -> None:
    """Every ISO 3166-1 code is accepted, whatever its case and blanks; the aliases and
    malformed values are refused with the same hints as before: from the shipped table."""
    out = run_python("""
        import json
        from residency_sdk.countries import iso_alpha2_codes, normalise_country
        from residency_sdk.errors import InvalidCountry
        codes = sorted(iso_alpha2_codes())
        accepted = [normalise_country(f" {c.lower()} ") for c in codes]
        refused = {}
        for value in ["UK", "EU", "EEA", "DEU", "", "XX", "D", "ZZZ1", 276]:
            try:
                normalise_country(value)
            except InvalidCountry as exc:
                refused[str(value)] = str(exc)
        print(json.dumps({"codes": codes, "accepted": accepted, "refused": refused}))
    """, tmp_path, blocked=("pycountry",))
    data = json.loads(out)
    assert len(data["codes"]) == 249 and data["accepted"] == data["codes"]
    assert {"DE", "GB", "TR", "US", "SS", "BQ", "CW", "SX", "AX", "EH"} <= set(data["codes"])
    assert not {"UK", "EU", "XK", "AN", "CS", "YU"} & set(data["codes"])
    refused = data["refused"]
    assert set(refused) == {"UK", "EU", "EEA", "DEU", "", "XX", "D", "ZZZ1", "276"}
    assert "the United Kingdom's ISO code is 'GB'" in refused["UK"]
    assert "is a group: pass the member state's own code" in refused["EU"]
    assert "use the two-letter (alpha-2) code, not alpha-3" in refused["DEU"]


def test_map_load_with_cloud_sdks_and_pycountry_blocked(tmp_path: Path) -> None:
    """Region existence comes from the shipped list: an AWS region botocore knows but the
    reviewed table lacks is still unreviewed-but-known, and a made-up one is refused."""
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("extends: default\nname: t\ncloud_regions:\n  aws:\n"
                       "    me-central-1: AE\n", encoding="utf-8")
    bogus = tmp_path / "bogus.yaml"
    bogus.write_text("extends: default\nname: t\ncloud_regions:\n  aws:\n"
                     "    eu-central-9: DE\n", encoding="utf-8")
    out = run_python(f"""
        from residency_sdk.regionmap import load_region_map
        from residency_sdk.errors import MapError
        [entry] = load_region_map({str(overlay)!r}).unreviewed_regions
        print(entry.region, entry.provider_knows)
        try:
            load_region_map({str(bogus)!r})
        except MapError as exc:
            print(exc)
    """, tmp_path, blocked=(*CLOUD_SDKS, "pycountry"))
    known, refusal = out.splitlines()
    assert known == "me-central-1 True"
    assert "cloud_regions.aws.eu-central-9" in refusal
    assert "not an AWS region known to botocore's endpoints data" in refusal


# --- the shipped tables ----------------------------------------------------------------


def _dated(table: dict[str, Any]) -> None:
    assert table["source"] and table["generator"].startswith("scripts/refresh_")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", table["as_of"])
    assert table["as_of"] < table["review_by"]


def test_iso3166_table_is_sourced_and_complete() -> None:
    table = iso3166_table()
    _dated(table)
    countries = table["countries"]
    assert table["count"] == len(countries) == 249
    for field, pattern in (("alpha_2", r"[A-Z]{2}"), ("alpha_3", r"[A-Z]{3}"),
                           ("numeric", r"\d{3}")):
        values = [c[field] for c in countries]
        assert len(set(values)) == 249, field
        assert all(re.fullmatch(pattern, v) for v in values), field
    assert all(c["name"] for c in countries)
    assert {c["alpha_2"] for c in countries} == iso_alpha2_codes()
    assert next(c for c in countries if c["alpha_2"] == "DE")["alpha_3"] == "DEU"


def test_provider_regions_table_covers_every_reviewed_aws_region() -> None:
    table = provider_regions_table()
    _dated(table)
    aws = provider_regions("aws")
    assert aws is not None and "botocore" in table["providers"]["aws"]["source"]
    reviewed = yaml.safe_load((packaged_maps_dir() / "cloud_regions.yaml").read_text())
    assert set(reviewed["aws"]) <= aws
    assert {"cn-north-1", "us-gov-west-1"} <= aws  # every partition, as botocore has
    # Providers without a shipped list are not checked for existence (as before).
    assert provider_regions("nosuchcloud") is None


def test_the_packaged_map_still_compiles() -> None:
    region_map = load_region_map()
    assert region_map.locations["DE"].country == "DE"
    assert normalise_country("de") == "DE"


# --- YAML: the C path keeps the bounds -------------------------------------------------

LOADERS = [pytest.param(_yamlio._BoundedSafeLoader, id="python")]
if yaml.__with_libyaml__:
    LOADERS.append(pytest.param(_yamlio._LOADER, id="libyaml"))


def test_libyaml_is_used_when_pyyaml_has_it() -> None:
    # PyYAML's wheels ship libyaml: without it start-up is ~25 ms slower (a fault here).
    assert yaml.__with_libyaml__, "PyYAML was built without libyaml: reinstall its wheel"
    assert _yamlio._LOADER is not _yamlio._BoundedSafeLoader
    assert "CParser" in {c.__name__ for c in _yamlio._LOADER.__mro__}


@pytest.fixture(params=LOADERS)
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> type:
    monkeypatch.setattr(_yamlio, "_LOADER", request.param)
    return request.param  # type: ignore[no-any-return]


def bomb(levels: int = 30) -> str:
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 7) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_yaml_bomb_is_refused(loader: type) -> None:
    with pytest.raises(rs.MapError, match=f"more than {_yamlio.MAX_ALIASES} aliases"):
        _yamlio.load_yaml_text(bomb(), source="bomb.yaml")


def test_aliases_up_to_the_cap_still_load(loader: type) -> None:
    text = "base: &b {x: 1}\n" + "".join(f"k{i}: *b\n" for i in range(_yamlio.MAX_ALIASES))
    data = _yamlio.load_yaml_text(text, source="ok.yaml")
    assert len(data) == _yamlio.MAX_ALIASES + 1 and data["k0"] == {"x": 1}


def test_duplicate_key_is_refused_with_its_line(loader: type) -> None:
    text = "routes:\n  TR: DE\n  TR: GB\n"
    with pytest.raises(rs.MapError, match=r"line 3, column 3.*duplicate key 'TR'"):
        _yamlio.load_yaml_text(text, source="dup.yaml")


def test_deep_nesting_is_an_error_not_a_crash(loader: type) -> None:
    # libyaml's own composer would overflow the C stack here and kill the process.
    depth = 200_000
    with pytest.raises(rs.MapError, match="nesting is too deep"):
        _yamlio.load_yaml_text("[" * depth + "]" * depth, source="deep.yaml")


def test_size_and_encoding_limits(loader: type) -> None:
    with pytest.raises(rs.MapError, match="larger than"):
        _yamlio.load_yaml_text("a: " + "x" * _yamlio.MAX_FILE_BYTES, source="big.yaml")
    with pytest.raises(rs.MapError, match="not valid Unicode"):
        _yamlio.load_yaml_text("a: \ud800\n", source="surrogate.yaml")
    with pytest.raises(rs.MapError, match="invalid YAML"):
        _yamlio.load_yaml_text("a: \x00\n", source="nul.yaml")


def test_both_loaders_read_the_packaged_files_alike() -> None:
    for path in sorted(packaged_maps_dir().glob("**/*.yaml")):
        text = path.read_text(encoding="utf-8")
        expected = yaml.safe_load(text)
        assert yaml.load(text, Loader=_yamlio._LOADER) == expected, path
        assert yaml.load(text, Loader=_yamlio._BoundedSafeLoader) == expected, path
