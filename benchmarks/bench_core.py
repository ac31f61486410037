"""Throughput of routing and transfer decisions, against a bare dict lookup in the same run.

Targets (issue 2): resolve >= 1,000,000/s and within 5x of the dict lookup;
check_transfer >= 300,000/s (audited). Transfer rules issue: a cached decision resting on
scoped, dated agreements (the day, counterparty and scope in its key) >= 1,000,000/s, the
decision alone (audit off). Run: `.venv/bin/python benchmarks/bench_core.py`.
"""

from __future__ import annotations

import json
import platform
import sys
import timeit

import residency_sdk as rs

N = 1_000_000
REPEAT = 5


def best_rate(stmt: str, namespace: dict[str, object], number: int) -> float:
    """Operations per second of the best of REPEAT runs (least disturbed by the machine)."""
    times = timeit.repeat(stmt, globals=namespace, number=number, repeat=REPEAT)
    return number / min(times)


def main() -> dict[str, float]:
    res = rs.Residency.load()
    tenant = rs.Tenant(id="clinic-17", country="TR", agreements={"kvkk_standard_contract"})
    table = {"TR": res.resolve(tenant)}
    mixed = [rs.Tenant(id=f"t{i}", country=c, agreements=a) for i, (c, a) in enumerate(
        [("DE", {"scc"}), ("TR", {"kvkk_standard_contract"}), ("US", {"baa"}), ("GB", set()),
         ("NZ", {"nz_model_clauses"}), ("FR", {"dpf_eu"})])]
    decide_only = rs.Residency.load(audit=False, audit_off_reason="benchmark: decisions")
    scc = rs.Agreement("scc", counterparty="Acme Imaging Inc.", destinations=["US"],
                       data_classes=["phi", "personal"], signed_on="2026-01-15",
                       expires_on="2036-01-14", reference="SCC-2026-017")
    scoped = rs.Tenant(id="clinic-at", country="AT",
                       agreements={scc, rs.Agreement("bcr", destinations=["US", "IN"])})
    ns: dict[str, object] = {"res": res, "tenant": tenant, "table": table, "key": "TR",
                             "mixed": mixed, "bare": decide_only, "scoped": scoped}
    results = {
        "dict_lookup_per_s": best_rate("table[key]", ns, N),
        "resolve_per_s": best_rate("res.resolve(tenant)", ns, N),
        "check_transfer_per_s": best_rate(
            "res.check_transfer(tenant, 'US', 'phi')", ns, N // 2),
        "check_transfer_mixed_per_s": 6 * best_rate(
            "for t in mixed: res.check_transfer(t, 'US', 'phi')", ns, N // 12),
        "check_transfer_scoped_per_s": best_rate(
            "bare.check_transfer(scoped, 'US', 'phi', counterparty='Acme Imaging Inc.')",
            ns, N),
    }
    results["resolve_vs_dict_ratio"] = results["dict_lookup_per_s"] / results["resolve_per_s"]
    return results


if __name__ == "__main__":
    figures = main()
    print(f"python {platform.python_version()} on {platform.machine()}, "
          f"{platform.processor() or 'cpu'}", file=sys.stderr)
    for name, value in figures.items():
        shown = f"{value:,.2f}x" if name.endswith("ratio") else f"{value:,.0f}/s"
        print(f"{name:30s} {shown}")
    ok = (figures["resolve_per_s"] >= 1_000_000 and figures["resolve_vs_dict_ratio"] <= 5
          and figures["check_transfer_per_s"] >= 300_000
          and figures["check_transfer_scoped_per_s"] >= 1_000_000)
    print(json.dumps({"targets_met": ok}))
