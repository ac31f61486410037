"""Mutation-check the guards that docs/promises.md says each promise depends on.

For every row of the enforced-promises table, the Guard column names the functions
(``module:function``) whose breakage must make the row's tests fail. This script runs
mutmut (https://mutmut.readthedocs.io) over exactly those functions: each mutant (one
small change: a flipped comparison, a dropped argument, a changed constant, ...) runs the
tests the table names that call the function (mutmut records which tests call which
function in one clean run first); a mutant no test notices *survived*. Only the named
tests count: a test that should pin a guard down is named in its row.

    python scripts/mutate_guards.py                # every guard, about 25 minutes on 2 vCPUs
    python scripts/mutate_guards.py --rows MA-5    # the guards of some rows only
    python scripts/mutate_guards.py --write-docs   # also refresh docs/reliability.md
    python scripts/mutate_guards.py --merge A.json B.json --write-docs  # runs over parts

It works in a scratch copy (``--work``, default ``/tmp/residency-mutation``) with its own
virtual environment (``.mutation-venv``, created on first use: the SDK with every extra
plus ``mutmut``, pinned in the ``mutation`` extra), so the checkout is never modified.
Survivors that are harmless are explained in ``scripts/mutation_survivors.toml`` (keyed
by guard and the mutated line); the report lists every survivor with its reason, or as
UNEXPLAINED. Exit status 1 when fewer than 95 % of the mutants are killed or a survivor is
unexplained. Not part of CI (about 25 minutes); the latest result lives in
``docs/reliability.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from promise_table import Guard, Row, parse_enforced

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "docs" / "promises.md"
SURVIVORS = REPO / "scripts" / "mutation_survivors.toml"
RELIABILITY = REPO / "docs" / "reliability.md"
THRESHOLD = 0.95
# What the tests read besides the package: mutmut runs them inside its mutants/ copy.
ALSO_COPY = ["tests", "region_maps", "docs", "infra", "examples", "scripts", "pyproject.toml",
             "requirements.lock"]
# mutmut statuses that mean a test noticed the mutant.
KILLED = {"killed", "timeout", "segfault", "caught by type check"}
DOCS_BEGIN = "<!-- mutation-report:begin -->"
DOCS_END = "<!-- mutation-report:end -->"


@dataclass
class GuardResult:
    """The mutants of one guard function and what became of them."""

    guard: Guard
    rows: list[str]
    statuses: Counter[str] = field(default_factory=Counter)
    survivors: list[dict[str, str]] = field(default_factory=list)

    @property
    def tried(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != "not checked")

    @property
    def killed(self) -> int:
        return sum(self.statuses[s] for s in KILLED)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.merge:
        return _finish(_merge([Path(f) for f in args.merge]), args.write_docs)
    rows = parse_enforced(TABLE.read_text(encoding="utf-8"))
    if args.rows:
        wanted = set(args.rows.split(","))
        unknown = wanted - {r.id for r in rows}
        if unknown:
            sys.exit(f"unknown row(s) {sorted(unknown)}: see the ID column of {TABLE}")
        rows = [r for r in rows if r.id in wanted]
    guards = _guards(rows)
    # Exactly the named tests: whole files would run every storage test of the suite for
    # each mutant of a hot guard (the tenant store's audit wrapper), hours per run.
    tests = sorted({f"{file}::{name}" for r in rows for file, name in r.tests})
    python = Path(args.python) if args.python else _mutation_venv(args.venv)
    work = Path(args.work)
    if args.collect:
        # An interrupted run: report what was tried (mutants not reached are not counted).
        report = _report(_collect(python, work, guards), args.collect_minutes)
        report["interrupted"] = True
        (work / "mutation-report.json").write_text(json.dumps(report, indent=2) + "\n")
        return _finish(report, args.write_docs)
    started = time.monotonic()
    _prepare(work, guards, tests)
    patterns = [g.mutant_pattern() for g in guards]
    print(f"mutating {len(guards)} guard functions of {len(rows)} promises with the "
          f"{len(tests)} tests the Test column names (test functions, not files: name every "
          f"test that should count); log: {work / 'mutmut.log'}", flush=True)
    _run_mutmut(python, work, patterns, args.max_children)
    results = _collect(python, work, guards)
    minutes = (time.monotonic() - started) / 60
    report = _report(results, minutes)
    (work / "mutation-report.json").write_text(json.dumps(report, indent=2) + "\n")
    return _finish(report, args.write_docs)


def _finish(report: dict[str, Any], write_docs: bool) -> int:
    summary = _markdown(report)
    print(summary)
    if write_docs:
        _write_docs(summary)
    ok = report["killed_ratio"] >= THRESHOLD and not report["unexplained"]
    return 0 if ok else 1


def _merge(paths: list[Path]) -> dict[str, Any]:
    """One report from the reports of runs over parts of the table (``--rows``), with
    the survivors explained again from the current ``mutation_survivors.toml``. A guard
    that two parts mutated (rows of both name it) counts a mutant as killed when either
    part's tests killed it: both are real runs over the same source (when one part was
    interrupted and tried fewer of the guard's mutants, the fuller part counts)."""
    explained = _load_explanations()
    by_guard: dict[str, dict[str, Any]] = {}
    survived: dict[str, dict[str, dict[str, str]]] = {}
    minutes = 0.0
    for path in paths:
        part = json.loads(path.read_text())
        minutes += part["minutes"]
        mine: dict[str, dict[str, dict[str, str]]] = {}
        for s in part["survivors"]:
            mine.setdefault(s["guard"], {})[s["mutant"]] = s
        for guard in part["by_guard"]:
            name = guard["guard"]
            if name not in by_guard:
                by_guard[name] = dict(guard)
                survived[name] = mine.get(name, {})
                continue
            if guard["tried"] != by_guard[name]["tried"]:
                # An interrupted part tried fewer of its mutants: keep the fuller run.
                if guard["tried"] > by_guard[name]["tried"]:
                    rows = sorted(set(by_guard[name]["rows"]) | set(guard["rows"]))
                    by_guard[name] = dict(guard, rows=rows)
                    survived[name] = mine.get(name, {})
                continue
            by_guard[name]["rows"] = sorted(set(by_guard[name]["rows"]) | set(guard["rows"]))
            survived[name] = {m: s for m, s in survived[name].items()
                              if m in mine.get(name, {})}
    survivors = []
    for name, guard in by_guard.items():
        guard["killed"] = guard["tried"] - len(survived[name])
        for s in survived[name].values():
            reason = explained.get((s["guard"], s["change"].strip()))
            survivors.append(dict(s, reason=reason or "UNEXPLAINED"))
    tried = sum(g["tried"] for g in by_guard.values())
    killed = sum(g["killed"] for g in by_guard.values())
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"), "minutes": round(minutes, 1),
        "parts": len(paths), "guards": len(by_guard), "tried": tried, "killed": killed,
        "killed_ratio": killed / tried if tried else 0.0,
        "by_guard": list(by_guard.values()), "survivors": survivors,
        "unexplained": [s["mutant"] for s in survivors if s["reason"] == "UNEXPLAINED"],
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", help="comma-separated row ids (default: every row)")
    parser.add_argument("--work", default="/tmp/residency-mutation",
                        help="scratch folder, recreated on every run")
    parser.add_argument("--venv", default=str(REPO / ".mutation-venv"),
                        help="virtual environment with the SDK and mutmut (created if absent)")
    parser.add_argument("--python", help="use this interpreter instead (mutmut installed)")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--collect", action="store_true",
                        help="report on the mutants an interrupted run in --work reached")
    parser.add_argument("--collect-minutes", type=float, default=0.0,
                        help="with --collect: how long the interrupted run took")
    parser.add_argument("--merge", nargs="+", metavar="REPORT",
                        help="combine mutation-report.json files of runs over parts of the table")
    parser.add_argument("--write-docs", action="store_true",
                        help=f"replace the mutation section of {RELIABILITY.relative_to(REPO)}")
    return parser


def _guards(rows: list[Row]) -> dict[Guard, list[str]]:
    """Each guard with the ids of the rows that depend on it, in table order."""
    by_guard: dict[Guard, list[str]] = {}
    for row in rows:
        for guard in row.guards:
            by_guard.setdefault(guard, []).append(row.id)
    return by_guard


def _mutation_venv(venv: str) -> Path:
    python = Path(venv) / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} (SDK with every extra, mutmut)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-c",
                        str(REPO / "requirements.lock"), "-e",
                        f"{REPO}[all,test,mutation]"], check=True)
    return python


def _prepare(work: Path, guards: dict[Guard, list[str]], tests: list[str]) -> None:
    """A fresh copy of the checkout (tracked and new files) with mutmut's settings."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard",
                             "-z"], cwd=REPO, check=True, capture_output=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            target = work / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    # The emulators installed by scripts/test.sh are found next to tests/ (a link, not
    # a 186 MB copy); mutmut keeps what already exists in mutants/.
    (work / "mutants").mkdir()
    if (REPO / ".emulators").exists():
        (work / "mutants" / ".emulators").symlink_to(REPO / ".emulators")
    pyproject = work / "pyproject.toml"
    if "mutmut" in tomllib.loads(pyproject.read_text()).get("tool", {}):
        sys.exit("pyproject.toml already has [tool.mutmut]: this script writes its own")
    files = sorted({str(g.path(Path("."))) for g in guards})
    config = {
        "source_paths": ["residency_sdk"],
        "only_mutate": files,
        "also_copy": ALSO_COPY,
        "pytest_add_cli_args_test_selection": tests,
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-q", "-x"],
        "use_git_change_detection": False,
    }
    lines = ["", "[tool.mutmut]"] + [f"{k} = {json.dumps(v)}" for k, v in config.items()]
    pyproject.write_text(pyproject.read_text() + "\n".join(lines) + "\n")


def _run_mutmut(python: Path, work: Path, patterns: list[str], children: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESIDENCY_")}
    log = work / "mutmut.log"
    with open(log, "wb") as out:
        proc = subprocess.run([str(python), "-m", "mutmut", "run", "--max-children",
                               str(children), *patterns], cwd=work, env=env,
                              stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        sys.exit(f"mutmut failed with exit status {proc.returncode}:\n{tail}")


def _collect(python: Path, work: Path, guards: dict[Guard, list[str]]) -> list[GuardResult]:
    listing = subprocess.run([str(python), "-m", "mutmut", "results", "--all", "true"],
                             cwd=work, check=True, capture_output=True, text=True).stdout
    results = {g: GuardResult(g, rows) for g, rows in guards.items()}
    explained = _load_explanations()
    for line in listing.splitlines():
        name, _, status = line.strip().rpartition(": ")
        guard = next((g for g in guards if fnmatch(name, g.mutant_pattern())), None)
        if guard is None:
            continue
        result = results[guard]
        result.statuses[status] += 1
        if status in KILLED or status == "not checked":
            continue
        diff = _mutated_lines(python, work, name)
        reason = explained.get((str(guard), diff))
        result.survivors.append({"mutant": name, "status": status, "change": diff,
                                 "reason": reason or "UNEXPLAINED"})
    return list(results.values())


def _mutated_lines(python: Path, work: Path, name: str) -> str:
    """The mutant as ``-old`` / ``+new`` lines (stable across runs, unlike its number)."""
    shown = subprocess.run([str(python), "-m", "mutmut", "show", name], cwd=work,
                           capture_output=True, text=True).stdout
    changed = [line for line in shown.splitlines()
               if re.match(r"^[-+](?![-+])", line)]
    return "\n".join(line[0] + line[1:].strip() for line in changed)


def _load_explanations() -> dict[tuple[str, str], str]:
    if not SURVIVORS.exists():
        return {}
    doc = tomllib.loads(SURVIVORS.read_text())
    return {(s["guard"], s["change"].strip()): s["reason"] for s in doc.get("survivor", [])}


def _report(results: list[GuardResult], minutes: float) -> dict[str, Any]:
    tried = sum(r.tried for r in results)
    killed = sum(r.killed for r in results)
    survivors = [dict(s, guard=str(r.guard), rows=", ".join(r.rows))
                 for r in results for s in r.survivors]
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "minutes": round(minutes, 1),
        "guards": len(results),
        "tried": tried,
        "killed": killed,
        "killed_ratio": killed / tried if tried else 0.0,
        "by_guard": [{"guard": str(r.guard), "rows": r.rows, "tried": r.tried,
                      "killed": r.killed, "statuses": dict(r.statuses)} for r in results],
        "survivors": survivors,
        "unexplained": [s["mutant"] for s in survivors if s["reason"] == "UNEXPLAINED"],
    }


def _markdown(report: dict[str, Any]) -> str:
    by_guard: list[dict[str, Any]] = report["by_guard"]
    survivors: list[dict[str, str]] = report["survivors"]
    parts = report.get("parts", 1)
    how = (f"in {parts} runs over parts of the table (`--rows`), {report['minutes']} minutes in "
           "all" if parts > 1 else f"{report['minutes']} minutes")
    if report.get("interrupted"):
        how += ", interrupted: the mutants it had not reached are not counted"
    lines = [
        f"Latest run: {report['date']}, {how} on this machine "
        f"(`python scripts/mutate_guards.py`): **{report['killed']} of {report['tried']} "
        f"mutants killed ({100 * report['killed_ratio']:.1f} %)** over "
        f"{report['guards']} guard functions.",
        "",
        "| Guard | Promises | Mutants | Killed |",
        "|---|---|---|---|",
    ]
    for g in by_guard:
        lines.append(f"| `{g['guard']}` | {', '.join(g['rows'])} | {g['tried']} "
                     f"| {g['killed']} |")
    lines += ["", f"Survivors ({len(survivors)}), each with why it is harmless:", ""]
    if survivors:
        lines += ["| Guard | Change | Reason |", "|---|---|---|"]
        for s in survivors:
            change = s["change"].replace("|", "\\|").replace("\n", "<br>")
            lines.append(f"| `{s['guard']}` | `{change}` | {s['reason']} |")
    else:
        lines.append("none.")
    return "\n".join(lines)


def _write_docs(summary: str) -> None:
    text = RELIABILITY.read_text(encoding="utf-8")
    if DOCS_BEGIN not in text:
        sys.exit(f"{RELIABILITY} has no {DOCS_BEGIN} marker")
    head, rest = text.split(DOCS_BEGIN, 1)
    tail = rest.split(DOCS_END, 1)[1]
    RELIABILITY.write_text(f"{head}{DOCS_BEGIN}\n{summary}\n{DOCS_END}{tail}",
                           encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
