"""docs/promises.md: every row of the enforced-promises table names a test that exists.

The checker parses the Markdown table, takes every ``tests/...py::test_name`` reference in
the Test column, and finds the function in that file with :mod:`ast` (a test that was
renamed or deleted fails this test, naming the row). The referenced tests themselves run
in the normal suite.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TABLE = REPO / "docs" / "promises.md"
COMPANIES = ("MVision AI", "MedAgento", "MD.ai", "Med Dimensions", "Medsee")
_REF = re.compile(r"`(tests/[\w/.-]+\.py)::(\w+)(?:\[[^\]]*\])?`")


@dataclass(frozen=True)
class Row:
    id: str
    company: str
    promise: str
    enforced_by: str
    tests: tuple[tuple[str, str], ...]


def parse_enforced(text: str) -> list[Row]:
    """The rows of the table under '## Enforced promises'."""
    section = text.split("## Enforced promises", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("|") or line.startswith("|---") or line.startswith("| ID "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) != 5:
            raise AssertionError(f"promise row does not have 5 cells: {line!r}")
        row_id, company, promise, enforced, test = cells
        rows.append(Row(row_id, company, promise, enforced, tuple(_REF.findall(test))))
    return rows


def parse_out_of_scope(text: str) -> list[tuple[str, str, str]]:
    """(company, promise, why) rows of the table under '## Out of scope'."""
    section = text.split("## Out of scope", 1)[1]
    rows = []
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| Company "):
            company, promise, why = (c.strip() for c in line.strip().strip("|").split(" | "))
            rows.append((company, promise, why))
    return rows


def defined_tests(path: Path) -> set[str]:
    """Names of the test functions defined in ``path`` (module level or in classes)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return {node.name for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.name.startswith("test")}


def missing_tests(rows: list[Row], root: Path) -> list[str]:
    """One message per row whose test reference does not resolve (empty: all fine)."""
    problems = []
    for row in rows:
        if not row.tests:
            problems.append(f"{row.id}: names no test (`tests/...py::test_name`)")
        for file, name in row.tests:
            path = root / file
            if not path.is_file():
                problems.append(f"{row.id}: test file {file} does not exist")
            elif name not in defined_tests(path):
                problems.append(f"{row.id}: {file} has no test function {name!r}")
    return problems


def test_every_row_names_a_test_that_exists() -> None:
    rows = parse_enforced(TABLE.read_text(encoding="utf-8"))
    assert len(rows) >= 30
    assert missing_tests(rows, REPO) == []


def test_rows_are_unique_and_name_a_seed_company() -> None:
    rows = parse_enforced(TABLE.read_text(encoding="utf-8"))
    assert len({r.id for r in rows}) == len(rows)
    for row in rows:
        assert row.company in COMPANIES, row
        assert row.promise and row.enforced_by
    # Every company has enforced promises and out-of-scope ones listed with a reason.
    assert {r.company for r in rows} == set(COMPANIES)
    out = parse_out_of_scope(TABLE.read_text(encoding="utf-8"))
    assert {company for company, _, _ in out} == set(COMPANIES)
    assert all(why for _, _, why in out)


def test_every_example_map_is_referenced() -> None:
    text = TABLE.read_text(encoding="utf-8")
    for path in (REPO / "region_maps" / "examples").glob("*.yaml"):
        assert f"region_maps/examples/{path.name}" in text


@pytest.mark.parametrize(("cell", "problem"), [
    ("`tests/promises/test_seed_promises.py::test_that_was_renamed`", "has no test function"),
    ("`tests/promises/test_gone.py::test_anything`", "does not exist"),
    ("see the suite", "names no test"),
])
def test_the_checker_catches_a_missing_test(cell: str, problem: str) -> None:
    table = ("## Enforced promises\n\n| ID | Company | Promise | Enforced by | Test |\n"
             "|---|---|---|---|---|\n"
             f"| X-1 | Medsee | a promise | a feature | {cell} |\n")
    [message] = missing_tests(parse_enforced(table), REPO)
    assert message.startswith("X-1: ") and problem in message
