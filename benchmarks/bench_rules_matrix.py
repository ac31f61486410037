"""Time to build and render the full rules matrix of the packaged default map.

Target (issue): the whole matrix (build plus each rendering) in under 2 s.
Run: `.venv/bin/python benchmarks/bench_rules_matrix.py`. Each figure is the median of
RUNS runs, in seconds.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from collections.abc import Callable

from residency_sdk.policy import ResidencyPolicy
from residency_sdk.rules_matrix import build_matrix

RUNS = 5
TARGET_S = 2.0


def median_seconds(work: Callable[[], object]) -> float:
    """Median wall time of RUNS calls of ``work``."""
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> dict[str, float]:
    policy = ResidencyPolicy.load()
    matrix = build_matrix(policy)
    results = {
        "load_policy_s": median_seconds(ResidencyPolicy.load),
        "build_s": median_seconds(lambda: build_matrix(policy)),
        "render_md_s": median_seconds(matrix.to_markdown),
        "render_html_s": median_seconds(matrix.to_html),
        "render_json_s": median_seconds(lambda: json.dumps(matrix.to_json(), indent=2,
                                                           ensure_ascii=False)),
        "render_csv_s": median_seconds(matrix.to_csv),
    }
    results["build_and_render_all_s"] = sum(
        v for k, v in results.items() if k.startswith(("build", "render")))
    results["cells"] = float(len(matrix.cells))
    return results


if __name__ == "__main__":
    figures = main()
    print(f"python {platform.python_version()} on {platform.machine()}, "
          f"{platform.processor() or 'cpu'}", file=sys.stderr)
    for name, value in figures.items():
        shown = f"{value:,.0f}" if name == "cells" else f"{value * 1000:,.1f} ms"
        print(f"{name:26s} {shown}")
    print(json.dumps({"targets_met": figures["build_and_render_all_s"] < TARGET_S}))
