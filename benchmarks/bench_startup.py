"""Start-up: whole-process time of `residency resolve` and of importing the SDK.

Target (issue 19): `residency resolve --country DE --json`, the whole process, in
<= 0.15 s and <= 7x `python -c pass` measured in the same run.

Each round runs every variant once, in turn (pass, import, sdk, cli, then the next round
starting one variant later), so a drift in the machine's speed hits all of them alike;
the figures are medians over the rounds, and each ratio is the median of the per-round
ratios to `python -c pass`. Variants:

- ``pass``: ``python -c pass`` (the interpreter's own start-up, the yardstick);
- ``floor``: what the SDK's dependencies cost before any of its own code runs: pydantic
  with one model built and validated, typer, PyYAML and sqlite3 imported;
- ``import``: ``python -c "import residency_sdk"``;
- ``sdk``: load the packaged map with the audit trail on, resolve a DE tenant and audit
  its placement decision (what ``resolve`` does, without the CLI);
- ``cli``: ``residency resolve --country DE --json`` (the console script).

``--baseline DIR`` adds the same three SDK variants run against another copy of the
package (``PYTHONPATH=DIR``: a folder holding ``residency_sdk/``, with the data files in
``residency_sdk/region_maps/``), e.g. the last release, interleaved with the others.

Every run gets a fresh temporary folder as its working directory, ``HOME`` and state
folder (the audit log the decisions go to), so no configuration file or earlier state
changes what is measured.

    .venv/bin/python benchmarks/bench_startup.py                # 21 rounds
    .venv/bin/python benchmarks/bench_startup.py --rounds 41 --importtime
    git archive HEAD residency_sdk region_maps | tar -x -C /tmp/before \
      && mv /tmp/before/region_maps /tmp/before/residency_sdk/ \
      && .venv/bin/python benchmarks/bench_startup.py --baseline /tmp/before
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 0.15
TARGET_RATIO = 7.0

SDK_CODE = (
    "import residency_sdk as rs\n"
    "res = rs.Residency.load()\n"
    "tenant = rs.Tenant(id='bench', country='DE')\n"
    "res.resolve(tenant)\n"
    "res.check_placement(tenant, actor='bench')\n"
    "res.close()\n"
)


FLOOR_CODE = (
    "import sqlite3\n"
    "import typer\n"
    "import yaml\n"
    "from pydantic import BaseModel\n"
    "class Tenant(BaseModel):\n"
    "    id: str\n"
    "    country: str\n"
    "Tenant(id='bench', country='DE')\n"
)
"""The floor: the libraries ``resolve`` is built on (pydantic with one model built and
validated, typer, PyYAML, sqlite3) imported, none of the SDK's own code."""

Variant = tuple[list[str], str | None]
"""A command line and the PYTHONPATH it runs with (None: this environment's package)."""


def variants(baseline: Path | None = None) -> dict[str, Variant]:
    """Variant name -> its command line (this interpreter, this environment's script)."""
    python = sys.executable
    script = Path(python).parent / "residency"
    sdk = {
        "import": [python, "-c", "import residency_sdk"],
        "sdk": [python, "-c", SDK_CODE],
        "cli": [str(script), "resolve", "--country", "DE", "--json"],
    }
    out: dict[str, Variant] = {"pass": ([python, "-c", "pass"], None),
                               "floor": ([python, "-c", FLOOR_CODE], None)}
    out.update({name: (command, None) for name, command in sdk.items()})
    if baseline is not None:
        out.update({f"{name}@base": (command, str(baseline)) for name, command in sdk.items()})
    return out


def environment(folder: Path, pythonpath: str | None = None) -> dict[str, str]:
    """The environment of every run: the caller's, with home and state in ``folder``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RESIDENCY_") and k != "PYTHONPATH"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # see compile_packages()
    env.update(HOME=str(folder), RESIDENCY_STATE_DIR=str(folder / "state"),
               XDG_STATE_HOME=str(folder / "xdg-state"))
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    return env


def timed_run(variant: Variant, folder: Path) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one whole-process run of ``variant``."""
    command, pythonpath = variant
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=folder, env=environment(folder, pythonpath),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): "
                         f"{done.stderr.decode(errors='replace')[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def compile_packages(baseline: Path | None = None) -> None:
    """Byte-compile the measured packages first, as an installed wheel is: an editable
    checkout run with ``PYTHONDONTWRITEBYTECODE=1`` (set on some machines) would
    otherwise compile every module from source on every run, and that is what would be
    measured (about 0.1 s here)."""
    import compileall

    import residency_sdk

    folders = [Path(residency_sdk.__file__).parent]
    if baseline is not None:
        folders.append(baseline / "residency_sdk")
    for folder in folders:
        compileall.compile_dir(str(folder), quiet=1)


def measure(rounds: int, warmup: int = 2,
            baseline: Path | None = None) -> dict[str, dict[str, float]]:
    """Interleaved rounds of every variant; medians and per-round ratios to ``pass``."""
    compile_packages(baseline)
    commands = variants(baseline)
    names = list(commands)
    walls: dict[str, list[float]] = {n: [] for n in names}
    cpus: dict[str, list[float]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        folder = Path(tmp)
        for round_no in range(warmup + rounds):
            shift = round_no % len(names)
            for name in names[shift:] + names[:shift]:
                wall, cpu = timed_run(commands[name], folder)
                if round_no >= warmup:
                    walls[name].append(wall)
                    cpus[name].append(cpu)
    out: dict[str, dict[str, float]] = {}
    for name in names:
        ratios = [w / p for w, p in zip(walls[name], walls["pass"], strict=True)]
        out[name] = {"median_s": statistics.median(walls[name]), "min_s": min(walls[name]),
                     "max_s": max(walls[name]), "cpu_median_s": statistics.median(cpus[name]),
                     "ratio_to_pass": statistics.median(ratios)}
    return out


def importtime_top(code: str, top: int = 15,
                   pythonpath: str | None = None) -> list[tuple[int, str]]:
    """The ``top`` slowest imports (cumulative microseconds, module) of running ``code``
    under ``python -X importtime``."""
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        done = subprocess.run([sys.executable, "-X", "importtime", "-c", code],
                              cwd=tmp, env=environment(Path(tmp), pythonpath),
                              capture_output=True,
                              text=True, check=False)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, module = line.split("|", 2)
        rows.append((int(cumulative), module.rstrip()))
    rows.sort(reverse=True)
    return rows[:top]


CLI_CODE = ("import sys\nfrom residency_sdk.cli import main\n"
            "sys.argv = ['residency', 'resolve', '--country', 'DE', '--json']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--baseline", type=Path,
                        help="also run the SDK variants with PYTHONPATH=BASELINE")
    parser.add_argument("--importtime", action="store_true",
                        help="also print the slowest imports of `import residency_sdk` "
                             "and of the resolve command")
    args = parser.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}, "
          f"{os.cpu_count()} cpus; {args.rounds} interleaved rounds", file=sys.stderr)
    figures = measure(args.rounds, baseline=args.baseline)
    print(f"{'variant':11s} {'median':>9s} {'min':>9s} {'max':>9s} {'cpu':>9s} {'x pass':>7s}")
    for name, f in figures.items():
        print(f"{name:11s} {f['median_s']:8.3f}s {f['min_s']:8.3f}s {f['max_s']:8.3f}s "
              f"{f['cpu_median_s']:8.3f}s {f['ratio_to_pass']:6.1f}x")
    if args.importtime:
        paths = [(None, "")]
        if args.baseline is not None:
            paths.append((str(args.baseline), " [baseline]"))
        for pythonpath, which in paths:
            for label, code in (("import residency_sdk", "import residency_sdk"),
                                ("residency resolve --country DE --json", CLI_CODE)):
                print(f"\npython -X importtime: {label}{which} (cumulative ms, top entries)")
                for micros, module in importtime_top(code, pythonpath=pythonpath):
                    print(f"  {micros / 1000:7.1f}  {module}")
    cli = figures["cli"]
    ok = cli["median_s"] <= TARGET_SECONDS and cli["ratio_to_pass"] <= TARGET_RATIO
    print(json.dumps({"targets_met": ok, "figures": figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
