"""Key commands for the embedded local backend: ``residency keys list|rotate``.

Each location of the local backend keeps its keys in ``<local root>/<location>/.keys``:
location keys (``local-<loc>-...``, the newest is current) and one key per tenant
(``tenant-<loc>-...``) wrapped by a location key. ``rotate`` makes a new location key
current and re-wraps every tenant key under it; no object is re-encrypted, older
location keys stay for the objects written under them. Tenant keys are destroyed by
erasure (crypto-shredding), never from here. Cloud keys are the provider's (KMS), see
docs/crypto-shredding.md.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from residency_sdk.cli.common import (
    EXIT_USAGE,
    AuditOption,
    JsonOption,
    MapOption,
    NoAuditOption,
    OutputOption,
    console,
    fail,
    load_residency,
    local_root_or_setting,
    map_or_setting,
    print_json,
    residency_errors,
    wants_json,
)
from residency_sdk.errors import InvalidLocalLocation
from residency_sdk.regionmap import load_region_map

keys_app = typer.Typer(
    help="Location and tenant keys of the embedded local backend (rotation, status).",
    no_args_is_help=True)

KeysLocalRootOption = Annotated[
    Path | None,
    typer.Option("--local-root", file_okay=False,
                 help="The local backend's root folder (one folder per location; default: "
                      "the `local_root` setting: $RESIDENCY_LOCAL_ROOT or the config file)."),
]
LocationsOption = Annotated[
    list[str] | None,
    typer.Option("--location", "-l", help="A location id of the map (repeatable; default: "
                 "every location that has a folder under the root)."),
]


def register(app: typer.Typer) -> None:
    """Add the ``keys`` command group to ``app``."""
    app.add_typer(keys_app, name="keys")


def _stores(map_path: Path | None, local_root: Path | None, locations: list[str] | None,
            as_json: bool, *, existing_only: bool) -> list[Any]:
    """The local store of each location asked for (or each that has a folder)."""
    with residency_errors(as_json):
        local_root = local_root_or_setting(local_root)
        map_path = map_or_setting(map_path)
    if local_root is None or not str(local_root):
        fail("name the local backend's root folder: --local-root DIR (or set "
             "RESIDENCY_LOCAL_ROOT)", as_json=as_json, code=EXIT_USAGE)
    from residency_sdk.storage.local import LocalStore

    with residency_errors(as_json):
        region_map = load_region_map(map_path)
        known = {loc_id.upper(): loc_id for loc_id in region_map.locations}
        if locations:
            chosen = []
            for name in locations:
                loc_id = known.get(name.upper())
                if loc_id is None:
                    raise InvalidLocalLocation(
                        f"location {name!r} is not in the region map (it has: "
                        f"{', '.join(sorted(known.values()))}): pass one of them to "
                        "--location")
                chosen.append(loc_id)
        else:
            chosen = sorted(loc_id for loc_id in region_map.locations
                            if not existing_only or (Path(local_root) / loc_id).is_dir())
        return [LocalStore(region_map.locations[loc_id].backend("local"), Path(local_root),
                           location=loc_id) for loc_id in chosen]
    raise AssertionError("unreachable")  # pragma: no cover


@keys_app.command("list")
def list_keys(
    location: LocationsOption = None,
    local_root: KeysLocalRootOption = None,
    map_path: MapOption = None,
    as_json: JsonOption = False, output: OutputOption = None,
) -> None:
    """Show each location's current key, the keys kept, and every tenant key with the
    location key that wraps it (never key material). Tenant keys still wrapped by an
    older location key mean a rotation did not finish: run `residency keys rotate`."""
    as_json = wants_json(as_json, output)
    stores = _stores(map_path, local_root, location, as_json, existing_only=True)
    with residency_errors(as_json):
        statuses = [store.key_status() for store in stores]
    if as_json:
        docs = [{**asdict(s), "not_rewrapped": [t.key_id for t in s.not_rewrapped]}
                for s in statuses]
        print_json({"ok": True, "keyrings": docs,
                    **({"keyring": docs[0]} if len(docs) == 1 else {})})
        return
    if not statuses:
        console.print(f"no location has keys under {escape(str(local_root))} yet",
                      highlight=False)
        return
    for status in statuses:
        table = Table(title=escape(f"{status.location}: current key "
                                   f"{status.current_key_id or '-'} "
                                   f"({len(status.location_keys)} location key(s) kept)"))
        for column in ("tenant", "tenant key", "wrapped by", "created"):
            table.add_column(column, overflow="fold")
        for t in status.tenant_keys:
            stale = " (older: rotate again)" if t.wrapped_by != status.current_key_id else ""
            table.add_row(escape(t.tenant_id), escape(t.key_id), escape(t.wrapped_by + stale),
                          escape(t.created or ""))
        console.print(table)


@keys_app.command("rotate")
def rotate(
    location: Annotated[list[str], typer.Option(
        "--location", "-l", help="The location whose key to rotate (repeatable).")],
    local_root: KeysLocalRootOption = None,
    map_path: MapOption = None,
    audit: AuditOption = None,
    no_audit: NoAuditOption = False,
    as_json: JsonOption = False, output: OutputOption = None,
) -> None:
    """Make a new location key current and re-wrap every tenant key of the location
    under it. No object is re-encrypted; older location keys stay (objects written under
    them need them). Safe to interrupt: every key stays readable, and running it again
    finishes the job. Audited (a ``key_rotate`` event in the location's trail)."""
    as_json = wants_json(as_json, output)
    with residency_errors(as_json):
        local_root = local_root_or_setting(local_root)
    stores = _stores(map_path, local_root, location, as_json, existing_only=False)
    res = load_residency(map_path, as_json, audit=audit, no_audit=no_audit,
                         local_root=local_root)
    reports = []
    with residency_errors(as_json):
        for store in stores:
            reports.append(res.rotate_location_key(store.location))
    if as_json:
        print_json({"ok": True, "rotations": [asdict(r) for r in reports]})
        return
    for r in reports:
        console.print("[bold green]ROTATED[/] " + escape(
            f"{r.location}: current key {r.current_key_id} (was "
            f"{r.previous_key_id or 'none'}); {len(r.rewrapped)} tenant key(s) re-wrapped, "
            f"{len(r.location_keys)} location key(s) kept for older objects"
            + (f"; {r.shredded} leftover(s) of an interrupted run shredded"
               if r.shredded else "")), highlight=False)
