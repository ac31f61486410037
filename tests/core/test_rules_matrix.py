"""The transfer-rules matrix and diff (SDK and `residency rules matrix|diff`).

Facts asserted here are stable in law (EU adequacy for Japan, no EU adequacy for China,
anonymised data unrestricted), not details of the shipped rules that may be revised."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from residency_sdk.cli.app import app
from residency_sdk.errors import InvalidCountry, MapError, UnknownDataClass
from residency_sdk.policy import ResidencyPolicy
from residency_sdk.regionmap import load_region_map
from residency_sdk.rules_matrix import (
    SCHEMA,
    RulesMatrix,
    build_matrix,
    diff_matrices,
    load_policy_for_diff,
    render_diff,
)

runner = CliRunner()
MARKER = "<script>|x"


@pytest.fixture(scope="module")
def policy() -> ResidencyPolicy:
    return ResidencyPolicy.load()


@pytest.fixture(scope="module")
def matrix(policy: ResidencyPolicy) -> RulesMatrix:
    return build_matrix(policy)


def packaged_rules() -> Path:
    return load_region_map().rules_file


def write_rules(tmp_path: Path, doc: dict, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def rules_doc() -> dict:
    return yaml.safe_load(packaged_rules().read_text(encoding="utf-8"))


def rules_without_jp_for_gdpr(tmp_path: Path) -> Path:
    doc = rules_doc()
    entries = doc["regimes"]["gdpr"]["adequacy"]
    for entry in entries:
        entry["countries"] = [c for c in entry["countries"] if c != "JP"]
    doc["regimes"]["gdpr"]["adequacy"] = [e for e in entries if e["countries"]]
    return write_rules(tmp_path, doc, "no-jp.yaml")


def rules_with_hostile_sources(tmp_path: Path) -> Path:
    """Every source under the gdpr regime carries markup."""
    doc = rules_doc()

    def mark(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "source" and isinstance(value, str):
                    node[key] = f"{value} {MARKER}"
                else:
                    mark(value)
        elif isinstance(node, list):
            for item in node:
                mark(item)

    mark(doc["regimes"]["gdpr"])
    return write_rules(tmp_path, doc, "hostile.yaml")


# --- the matrix ------------------------------------------------------------------------


def test_default_matrix_has_every_routed_origin_destination_and_class(
        policy: ResidencyPolicy, matrix: RulesMatrix) -> None:
    assert set(matrix.origins) == set(policy.map.routes)
    assert {"DE", "JP", "US", "GB", "CH", "TR"} <= set(matrix.destinations)
    assert set(matrix.data_classes) == set(policy.rules.data_classes)
    keys = {cell.key for cell in matrix.cells}
    assert len(keys) == len(matrix.cells) == (
        len(matrix.origins) * len(matrix.destinations) * len(matrix.data_classes))
    assert {(o, d, dc) for o in matrix.origins for d in matrix.destinations
            for dc in matrix.data_classes} == keys


def test_known_facts(policy: ResidencyPolicy, matrix: RulesMatrix) -> None:
    jp = matrix.cell("DE", "JP", "personal")
    assert jp.allowed and jp.basis == "adequacy" and jp.unblock_with == ()
    assert any(f.regime == "gdpr" and f.source for f in jp.facts)
    china = build_matrix(policy, origins=["de"], destinations=["CN"], data_classes=["PHI"])
    cn = china.cell("DE", "CN", "phi")
    assert not cn.allowed and cn.basis is None
    assert any("scc" in alternatives for alternatives in cn.unblock_with)
    assert cn.short().startswith("✗") and "scc" in cn.short()


def test_anonymised_is_allowed(matrix: RulesMatrix) -> None:
    assert matrix.cell("DE", "JP", "anonymised").allowed
    eu = [c for c in matrix.cells if c.data_class == "anonymised" and c.origin == "DE"]
    assert eu and all(c.allowed for c in eu)


def test_home_cells_are_included(matrix: RulesMatrix) -> None:
    home = matrix.cell("DE", "DE", "phi")
    assert home.allowed and not home.is_transfer and "no transfer" in home.short()


def test_unknown_country_and_data_class_are_refused(policy: ResidencyPolicy) -> None:
    with pytest.raises(InvalidCountry, match="'UK'"):
        build_matrix(policy, origins=["UK"])
    with pytest.raises(UnknownDataClass, match="'genetic'"):
        build_matrix(policy, data_classes=["genetic"])


def test_csv_has_one_header_and_equal_columns(matrix: RulesMatrix) -> None:
    rows = list(csv.reader(io.StringIO(matrix.to_csv())))
    assert rows[0][:4] == ["origin", "destination", "data_class", "allowed"]
    assert sum(row == rows[0] for row in rows) == 1
    assert len(rows) == len(matrix.cells) + 1
    assert {len(row) for row in rows} == {len(rows[0])}
    jp = next(r for r in rows[1:] if r[:3] == ["DE", "JP", "personal"])
    assert jp[3:6] == ["yes", "yes", "adequacy"]


def test_json_round_trips_with_schema(matrix: RulesMatrix) -> None:
    data = json.loads(json.dumps(matrix.to_json()))
    assert data["schema"] == SCHEMA
    assert data["map_name"] == "default" and data["rules_as_of"]
    assert RulesMatrix.from_json(data) == matrix
    with pytest.raises(MapError):
        RulesMatrix.from_json({**data, "schema": "other"})


def test_markdown_escapes_markup_from_a_rules_source(tmp_path: Path) -> None:
    hostile = build_matrix(load_policy_for_diff(rules_with_hostile_sources(tmp_path)))
    assert any(MARKER in f.source for f in hostile.facts())
    md = hostile.to_markdown()
    assert "<script>" not in md and "&lt;script&gt;\\|x" in md
    # Every table row keeps its column count: no unescaped | splits a cell.
    for block in md.split("\n\n"):
        rows = [line for line in block.splitlines() if line.startswith("| ")]
        counts = {len(re.findall(r"(?<!\\)\|", row)) for row in rows}
        assert len(counts) <= 1, block[:200]
    assert "## Facts" in md and "## phi" in md


def test_html_is_self_contained_and_escaped(tmp_path: Path) -> None:
    page = build_matrix(load_policy_for_diff(rules_with_hostile_sources(tmp_path))).to_html()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert not re.search(r"(src|href)\s*=", page, re.IGNORECASE)
    assert "<script" not in page.lower() and "&lt;script&gt;|x" in page
    assert 'class="no"' in page and 'class="ok"' in page


def test_load_policy_for_diff_refuses_other_yaml(tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text("hello: world\n", encoding="utf-8")
    with pytest.raises(MapError, match="neither a region map"):
        load_policy_for_diff(other)


# --- the diff --------------------------------------------------------------------------


def test_diff_of_identical_rules_is_empty(policy: ResidencyPolicy, tmp_path: Path) -> None:
    copy = write_rules(tmp_path, rules_doc())
    old = build_matrix(load_policy_for_diff(packaged_rules()))
    assert diff_matrices(old, build_matrix(load_policy_for_diff(copy))) == ()
    assert "no cell changed" in render_diff((), "text")


def test_diff_lists_exactly_the_cells_a_dropped_adequacy_changes(
        policy: ResidencyPolicy, matrix: RulesMatrix, tmp_path: Path) -> None:
    new = build_matrix(load_policy_for_diff(rules_without_jp_for_gdpr(tmp_path)))
    changes = diff_matrices(matrix, new)
    gdpr_origins = [o for o in matrix.origins
                    if (r := policy.rules.regime_of.get(o)) is not None and r.id == "gdpr"]
    assert gdpr_origins
    assert {(c.origin, c.destination, c.data_class) for c in changes} == {
        (o, "JP", dc) for o in gdpr_origins for dc in ("phi", "personal")}
    de = next(c for c in changes if (c.origin, c.data_class) == ("DE", "personal"))
    assert de.kind == "changed" and de.old is not None and de.new is not None
    assert de.old.allowed and not de.new.allowed
    assert de.describe().startswith("DE -> JP personal: allowed via adequacy -> blocked "
                                    "(unblock: ")
    assert "scc" in de.describe()
    rows = list(csv.reader(io.StringIO(render_diff(changes, "csv"))))
    assert len(rows) == len(changes) + 1 and {len(r) for r in rows} == {len(rows[0])}
    data = json.loads(render_diff(changes, "json"))
    assert data["changed"] == len(changes) and data["changes"][0]["old"]["allowed"] is True
    assert "| DE | JP | personal |" in render_diff(changes, "md")


def test_diff_reports_cells_present_in_one_matrix_only(matrix: RulesMatrix,
                                                       policy: ResidencyPolicy) -> None:
    smaller = build_matrix(policy, destinations=[d for d in matrix.destinations if d != "JP"])
    changes = diff_matrices(smaller, matrix)
    assert {c.kind for c in changes} == {"added"}
    assert {c.destination for c in changes} == {"JP"}
    assert len(changes) == len(matrix.origins) * len(matrix.data_classes)


# --- the CLI ---------------------------------------------------------------------------


def test_cli_matrix_csv_and_json_to_files(tmp_path: Path) -> None:
    out = tmp_path / "m.csv"
    result = runner.invoke(app, ["rules", "matrix", "--format", "csv", "--out", str(out),
                                 "--origin", "DE", "--origin", "TR", "--to", "JP",
                                 "--to", "US", "--data-class", "personal"])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [r[:3] for r in rows[1:]] == [["DE", "JP", "personal"], ["DE", "US", "personal"],
                                         ["TR", "JP", "personal"], ["TR", "US", "personal"]]
    assert rows[1][3] == "yes"
    out = tmp_path / "m.json"
    result = runner.invoke(app, ["rules", "matrix", "-f", "json", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text(encoding="utf-8"))["schema"] == SCHEMA


def test_cli_matrix_markdown_to_stdout() -> None:
    result = runner.invoke(app, ["rules", "matrix", "--origin", "DE", "--to", "JP"])
    assert result.exit_code == 0, result.output
    assert "# Transfer rules matrix" in result.stdout and "✓ adequacy" in result.stdout


def test_cli_matrix_missing_output_folder_is_a_clean_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["rules", "matrix", "--out", str(tmp_path / "no" / "m.md")])
    assert result.exit_code == 3
    assert "cannot write" in result.output and "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("args, value", [
    (["--origin", "UK"], "'UK'"), (["--to", "[red]XX"], "'[red]XX'"),
    (["--data-class", "genetic"], "'genetic'"), (["--format", "pdf"], "'pdf'")])
def test_cli_matrix_bad_input_exits_2_naming_the_value(args: list[str], value: str) -> None:
    result = runner.invoke(app, ["rules", "matrix", *args])
    assert result.exit_code == 2
    assert value in result.output and "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def test_cli_diff_exit_codes(tmp_path: Path) -> None:
    same = write_rules(tmp_path, rules_doc())
    changed = rules_without_jp_for_gdpr(tmp_path)
    result = runner.invoke(app, ["rules", "diff", str(packaged_rules()), str(same),
                                 "--fail-on-change"])
    assert result.exit_code == 0, result.output
    assert "No cell changed" in result.stdout
    result = runner.invoke(app, ["rules", "diff", str(packaged_rules()), str(changed),
                                 "--fail-on-change", "--format", "text"])
    assert result.exit_code == 1, result.output
    assert "DE -> JP personal: allowed via adequacy -> blocked" in result.stdout
    result = runner.invoke(app, ["rules", "diff", str(packaged_rules()), str(changed)])
    assert result.exit_code == 0


def test_cli_diff_of_a_map_against_rules_and_a_bad_file(tmp_path: Path) -> None:
    default_map = Path(load_region_map().file)
    out = tmp_path / "diff.json"
    result = runner.invoke(app, ["rules", "diff", str(default_map),
                                 str(rules_without_jp_for_gdpr(tmp_path)), "-f", "json",
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text(encoding="utf-8"))["changed"] > 0
    result = runner.invoke(app, ["rules", "diff", str(default_map),
                                 str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_csv_cells_never_start_a_spreadsheet_formula(tmp_path: Path) -> None:
    doc = rules_doc()
    doc["regimes"] = {("=1+1" if rid == "kvkk" else rid): spec
                      for rid, spec in doc["regimes"].items()}
    hostile = build_matrix(load_policy_for_diff(write_rules(tmp_path, doc)),
                           origins=["TR"], destinations=["JP"], data_classes=["phi"])
    assert hostile.cell("TR", "JP", "phi").regimes[0] == "=1+1"
    row = list(csv.reader(io.StringIO(hostile.to_csv())))[1]
    assert not any(value.startswith(("=", "+", "-", "@")) for value in row)
    assert "'=1+1" in row
