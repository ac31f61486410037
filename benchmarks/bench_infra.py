"""Infra timings: plan build, Terraform render, one mocked Pulumi stack run, Checkov.

Run:  .venv/bin/python benchmarks/bench_infra.py [--checkov]

No target is asserted in tests; the figures measured on the project machine are in
docs/infra.md. A mocked stack run is what each infra test pays per stack.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from residency_sdk.infra import build_plan
from residency_sdk.infra.terraform import render, write
from residency_sdk.regionmap import load_region_map

ROOT = Path(__file__).resolve().parents[1]


def per_call(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkov", action="store_true", help="also time one Checkov scan")
    args = parser.parse_args()
    region_map = load_region_map()
    locs = sorted(region_map.locations)
    t_plan = per_call(lambda: [build_plan(region_map, loc) for loc in locs], 50) / len(locs)
    plans = [build_plan(region_map, loc) for loc in locs]
    t_render = per_call(lambda: [render(p) for p in plans], 50) / len(plans)
    print(f"build_plan        {t_plan * 1e3:8.2f} ms per location")
    print(f"terraform render  {t_render * 1e3:8.2f} ms per location")

    sys.path.insert(0, str(ROOT / "tests" / "infra"))
    start = time.perf_counter()
    from infra_mocks import run_stack

    run_stack("de")
    first = time.perf_counter() - start
    t_stack = per_call(lambda: [run_stack(s) for s in ("ch", "gb", "fr", "us", "au")], 1) / 5
    print(f"mocked stack run  {first:8.2f} s first (imports providers), "
          f"{t_stack:.2f} s each after")

    if args.checkov:
        with tempfile.TemporaryDirectory() as tmp:
            for p in plans:
                write(p, Path(tmp) / p.location)
            start = time.perf_counter()
            subprocess.run(
                [str(ROOT / ".checkov-venv/bin/checkov"), "-f",
                 *[f"{p.location}/main.tf.json" for p in plans], "--framework",
                 "terraform_json", "--skip-download", "-o", "json"],
                cwd=tmp, capture_output=True, check=False)
            print(f"checkov, {len(plans)} locations in one run  "
                  f"{time.perf_counter() - start:6.2f} s")


if __name__ == "__main__":
    main()
