#!/usr/bin/env python3
"""Regenerate region_maps/iso3166.json, the ISO 3166-1 country table the SDK ships.

The SDK validates country codes against this table (``residency_sdk.countries``); it does
not depend on pycountry (23 MB installed, for 249 codes). This dev-only script takes the
table from pycountry, which carries Debian's ``iso-codes`` copy of ISO 3166-1
(https://salsa.debian.org/iso-codes-team/iso-codes), and writes plain JSON: alpha-2,
alpha-3, numeric code and short name of every officially assigned code.

    pip install pycountry && python scripts/refresh_iso3166.py
    python scripts/refresh_iso3166.py --check          # exit 1 if the JSON is stale
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "region_maps" / "iso3166.json"
REVIEW_AFTER_DAYS = 365
"""ISO 3166-1 changes rarely (a new code every few years, announced by the ISO 3166
Maintenance Agency): a yearly review against the newest iso-codes release is enough."""


def build(today: dt.date) -> dict[str, Any]:
    """The table from the installed pycountry."""
    try:
        import pycountry
    except ImportError:
        raise SystemExit("this script reads pycountry: pip install pycountry") from None
    countries = sorted(
        ({"alpha_2": c.alpha_2, "alpha_3": c.alpha_3, "numeric": c.numeric, "name": c.name}
         for c in pycountry.countries),
        key=lambda c: c["alpha_2"])
    return {
        "standard": "ISO 3166-1 (officially assigned alpha-2 codes)",
        "source": (f"pycountry {version('pycountry')} (databases/iso3166-1.json, Debian "
                   "iso-codes, https://salsa.debian.org/iso-codes-team/iso-codes)"),
        "generator": "scripts/refresh_iso3166.py",
        "as_of": today.isoformat(),
        "review_by": (today + dt.timedelta(days=REVIEW_AFTER_DAYS)).isoformat(),
        "count": len(countries),
        "countries": countries,
    }


def dump(table: dict[str, Any]) -> str:
    """JSON with one country per line (a new or withdrawn code is a one-line diff)."""
    head = {k: v for k, v in table.items() if k != "countries"}
    lines = json.dumps(head, indent=1, ensure_ascii=False)[:-2]
    rows = ",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in table["countries"])
    return f'{lines},\n "countries": [\n{rows}\n ]\n}}\n'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with the committed JSON (ignoring as_of/review_by)")
    args = parser.parse_args(argv)
    table = build(dt.date.today())
    if args.check:
        current = json.loads(OUT.read_text(encoding="utf-8"))
        if current["countries"] != table["countries"]:
            print(f"{OUT} is stale: rerun scripts/refresh_iso3166.py", file=sys.stderr)
            return 1
        print(f"{OUT} matches {table['source']}")
        return 0
    OUT.write_text(dump(table), encoding="utf-8")
    print(f"wrote {OUT}: {table['count']} countries")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
