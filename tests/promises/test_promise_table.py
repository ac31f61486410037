"""docs/promises.md: every row of the enforced-promises table names a test that exists.

The checker parses the Markdown table, takes every ``tests/...py::test_name`` reference in
the Test column, and finds the function in that file with :mod:`ast` (a test that was
renamed or deleted fails this test, naming the row). The referenced tests themselves run
in the normal suite.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
from promise_table import parse_enforced, row_problems  # noqa: E402

TABLE = REPO / "docs" / "promises.md"
COMPANIES = ("MVision AI", "MedAgento", "MD.ai", "Med Dimensions", "Medsee")


def parse_out_of_scope(text: str) -> list[tuple[str, str, str]]:
    """(company, promise, why) rows of the table under '## Out of scope'."""
    section = text.split("## Out of scope", 1)[1]
    rows = []
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| Company "):
            company, promise, why = (c.strip() for c in line.strip().strip("|").split(" | "))
            rows.append((company, promise, why))
    return rows


def test_every_row_names_a_guard_and_a_test_that_exist() -> None:
    rows = parse_enforced(TABLE.read_text(encoding="utf-8"))
    assert len(rows) >= 30
    assert row_problems(rows, REPO) == []


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
    table = ("## Enforced promises\n\n| ID | Company | Promise | Enforced by | Guard | Test |\n"
             "|---|---|---|---|---|---|\n"
             f"| X-1 | Medsee | a promise | a feature | `residency_sdk.rules:TransferRules.decide` "
             f"| {cell} |\n")
    [message] = row_problems(parse_enforced(table), REPO)
    assert message.startswith("X-1: ") and problem in message


@pytest.mark.parametrize(("cell", "problem"), [
    ("`residency_sdk.rules:TransferRules.decide_later`", "has no TransferRules.decide_later"),
    ("`residency_sdk.gone:anything`", "cannot be imported"),
    ("`residency_sdk.rules:__name__`", "is not a function"),
    ("the transfer rules", "names no guard"),
])
def test_the_checker_catches_a_missing_guard(cell: str, problem: str) -> None:
    table = ("## Enforced promises\n\n| ID | Company | Promise | Enforced by | Guard | Test |\n"
             "|---|---|---|---|---|---|\n"
             f"| X-1 | Medsee | a promise | a feature | {cell} "
             "| `tests/promises/test_seed_promises.py::test_plain_http_endpoints_are_refused` |\n")
    problems = row_problems(parse_enforced(table), REPO)
    assert len(problems) == 1 and problems[0].startswith("X-1: ") and problem in problems[0], \
        problems
