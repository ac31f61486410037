#!/usr/bin/env python3
"""Regenerate region_maps/provider_regions.json, the regions each cloud provider has.

The SDK checks that a map's AWS regions exist against this shipped list, so loading a map
never imports botocore (``import botocore.loaders`` and parsing its ``endpoints.json``
cost about 85 ms of every start-up). The list says only that a region EXISTS; which
country it is in is the reviewed table ``region_maps/cloud_regions.yaml``.

Sources:

- AWS: botocore's bundled ``data/endpoints.json`` (every partition: aws, aws-cn,
  aws-us-gov, the isolated ones), read through ``botocore.loaders`` as the SDK used to at
  run time. Needs boto3/botocore installed (``pip install 'residency-sdk[aws]'``).
- Google Cloud, Azure: their SDKs ship no offline region list, so a list is taken only
  when given as a file of region names, one a line:
  ``gcloud compute regions list --format='value(name)' > gcp.txt`` and
  ``az account list-locations --query '[].name' -o tsv > azure.txt``. A provider with no
  new file keeps the entry it already has (with that entry's own source and as_of).

    python scripts/refresh_provider_regions.py                      # AWS from botocore
    python scripts/refresh_provider_regions.py --gcp gcp.txt --azure azure.txt
    python scripts/refresh_provider_regions.py --check              # exit 1 if stale
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "region_maps" / "provider_regions.json"
REVIEW_AFTER_DAYS = 182
"""Providers open regions a few times a year: the list is due for a refresh (rerun this
script with the newest botocore) within six months of being generated."""
_REGION = re.compile(r"[a-z0-9][a-z0-9-]*")
LIST_COMMANDS = {
    "gcp": "gcloud compute regions list --format='value(name)'",
    "azure": "az account list-locations --query '[].name' -o tsv",
}


def aws_entry(today: dt.date) -> dict[str, Any]:
    """The AWS entry from botocore's bundled endpoints data."""
    try:
        import botocore
        import botocore.loaders
    except ImportError:
        raise SystemExit("botocore is needed for the AWS list: pip install 'residency-sdk[aws]'"
                         ) from None
    data = botocore.loaders.Loader().load_data("endpoints")
    regions: dict[str, str] = {}
    partitions = []
    for partition in data.get("partitions", []):
        partitions.append(partition["partition"])
        for region, info in partition["regions"].items():
            regions[region] = str(info.get("description", ""))
    return {
        "source": (f"botocore {botocore.__version__} data/endpoints.json, partitions "
                   f"{', '.join(partitions)}"),
        "as_of": today.isoformat(),
        "regions": dict(sorted(regions.items())),
    }


def file_entry(provider: str, path: Path, today: dt.date) -> dict[str, Any]:
    """A provider's entry from a file of region names (one a line, blanks ignored)."""
    names = sorted({line.strip().lower() for line in path.read_text(encoding="utf-8")
                    .splitlines() if line.strip()})
    bad = [n for n in names if not _REGION.fullmatch(n)]
    if bad:
        raise SystemExit(f"{path}: not region names: {', '.join(bad[:5])}")
    return {
        "source": f"`{LIST_COMMANDS[provider]}` output ({path.name})",
        "as_of": today.isoformat(),
        "regions": dict.fromkeys(names, ""),
    }


def build(today: dt.date, files: dict[str, Path | None],
          current: dict[str, Any] | None) -> dict[str, Any]:
    """The whole table: AWS from botocore, the others from ``files`` or ``current``."""
    providers: dict[str, Any] = {"aws": aws_entry(today)}
    for provider, path in files.items():
        if path is not None:
            providers[provider] = file_entry(provider, path, today)
        elif current and provider in current.get("providers", {}):
            providers[provider] = current["providers"][provider]
    return {
        "what": ("The regions each cloud provider has (existence only: the reviewed "
                 "region -> country table is cloud_regions.yaml). A map's AWS region "
                 "missing here is refused; a provider without an entry is not checked."),
        "source": "; ".join(f"{p}: {e['source']}" for p, e in providers.items()),
        "generator": "scripts/refresh_provider_regions.py",
        "as_of": today.isoformat(),
        "review_by": (today + dt.timedelta(days=REVIEW_AFTER_DAYS)).isoformat(),
        "providers": providers,
    }


def dump(table: dict[str, Any]) -> str:
    """JSON with one region per line (reviewable diffs when a provider opens one)."""
    return json.dumps(table, indent=1, ensure_ascii=False) + "\n"


def _without_dates(table: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in table.items() if k not in {"as_of", "review_by"}}
    out["providers"] = {p: {k: v for k, v in e.items() if k != "as_of"}
                        for p, e in table["providers"].items()}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gcp", type=Path,
                        help=f"GCP regions, one a line ({LIST_COMMANDS['gcp']})")
    parser.add_argument("--azure", type=Path,
                        help=f"Azure regions, one a line ({LIST_COMMANDS['azure']})")
    parser.add_argument("--check", action="store_true",
                        help="compare with the committed JSON (ignoring the dates)")
    args = parser.parse_args(argv)
    current = json.loads(OUT.read_text(encoding="utf-8")) if OUT.exists() else None
    table = build(dt.date.today(), {"gcp": args.gcp, "azure": args.azure}, current)
    if args.check:
        if current is None or _without_dates(current) != _without_dates(table):
            print(f"{OUT} is stale: rerun scripts/refresh_provider_regions.py", file=sys.stderr)
            return 1
        print(f"{OUT} matches {table['source']}")
        return 0
    OUT.write_text(dump(table), encoding="utf-8")
    counts = ", ".join(f"{p} {len(e['regions'])}" for p, e in table["providers"].items())
    print(f"wrote {OUT}: {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
