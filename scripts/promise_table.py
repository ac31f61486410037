"""Parse the enforced-promises table of ``docs/promises.md``.

Shared by the table's own test (``tests/promises/test_promise_table.py``: every row names
a guard and a test that exist) and the mutation script (``scripts/mutate_guards.py``:
every guard survives no mutation the named tests should catch). Standard library only.
"""

from __future__ import annotations

import ast
import importlib
import re
from dataclasses import dataclass
from pathlib import Path

COLUMNS = ("ID", "Company", "Promise", "Enforced by", "Guard", "Test")
_TEST = re.compile(r"`(tests/[\w/.-]+\.py)::(\w+)(?:\[[^\]]*\])?`")
_GUARD = re.compile(r"`(residency_sdk(?:\.\w+)*):([\w.]+)`")


@dataclass(frozen=True)
class Guard:
    """A function a promise depends on: ``module:qualname`` (``Class.method`` for a method)."""

    module: str
    qualname: str

    def __str__(self) -> str:
        return f"{self.module}:{self.qualname}"

    def path(self, root: Path) -> Path:
        """The source file of the guard's module under ``root``."""
        return root / Path(*self.module.split(".")).with_suffix(".py")

    def mutant_pattern(self) -> str:
        """mutmut's name pattern for this function's mutants (``x_f`` / ``xǁClassǁmethod``)."""
        parts = self.qualname.split(".")
        if len(parts) == 1:
            return f"{self.module}.x_{parts[0]}__mutmut_*"
        return f"{self.module}.x\u01c1{parts[0]}\u01c1{parts[1]}__mutmut_*"


@dataclass(frozen=True)
class Row:
    """One promise: its id, company, wording, enforcement, guards and tests."""

    id: str
    company: str
    promise: str
    enforced_by: str
    guards: tuple[Guard, ...]
    tests: tuple[tuple[str, str], ...]


def parse_enforced(text: str) -> list[Row]:
    """The rows of the table under '## Enforced promises'."""
    section = text.split("## Enforced promises", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("|") or line.startswith("|---") or line.startswith("| ID "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) != len(COLUMNS):
            raise ValueError(f"promise row does not have {len(COLUMNS)} cells "
                             f"({', '.join(COLUMNS)}): {line!r}")
        row_id, company, promise, enforced, guard, test = cells
        rows.append(Row(row_id, company, promise, enforced,
                        tuple(Guard(m, q) for m, q in _GUARD.findall(guard)),
                        tuple(_TEST.findall(test))))
    return rows


def defined_tests(path: Path) -> set[str]:
    """Names of the test functions defined in ``path`` (module level or in classes)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return {node.name for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.name.startswith("test")}


def guard_problem(guard: Guard) -> str | None:
    """Why ``guard`` does not name a function of the package (None: it does)."""
    try:
        obj: object = importlib.import_module(guard.module)
    except ImportError as exc:
        return f"module {guard.module} cannot be imported ({exc})"
    for part in guard.qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return f"{guard.module} has no {guard.qualname}"
    if not callable(obj):
        return f"{guard} is not a function"
    return None


def row_problems(rows: list[Row], root: Path) -> list[str]:
    """One message per row whose guard or test reference does not resolve (empty: fine)."""
    problems = []
    for row in rows:
        if not row.guards:
            problems.append(f"{row.id}: names no guard (`residency_sdk.module:function`)")
        for guard in row.guards:
            why = guard_problem(guard)
            if why is not None:
                problems.append(f"{row.id}: guard {why}")
        if not row.tests:
            problems.append(f"{row.id}: names no test (`tests/...py::test_name`)")
        for file, name in row.tests:
            path = root / file
            if not path.is_file():
                problems.append(f"{row.id}: test file {file} does not exist")
            elif name not in defined_tests(path):
                problems.append(f"{row.id}: {file} has no test function {name!r}")
    return problems
