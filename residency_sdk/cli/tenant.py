"""Tenant commands: ``tenant move`` (the one way to change a tenant's country)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from residency_sdk.cli.common import (
    AuditOption,
    JsonOption,
    MapOption,
    NoAuditOption,
    OutputOption,
    console,
    load_residency,
    print_json,
    residency_errors,
    wants_json,
)
from residency_sdk.cli.retention import (
    LocalRootOption,
    ProviderOption,
    StateDirOption,
    state_dir_or_setting,
)
from residency_sdk.model import Tenant

tenant_app = typer.Typer(help="Tenants: the binding of a tenant id to its country.",
                         no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the tenant command group to ``app``."""
    app.add_typer(tenant_app, name="tenant")


@tenant_app.command("move")
def move(
    tenant_id: Annotated[str, typer.Option("--tenant", help="The tenant id.")],
    from_country: Annotated[str, typer.Option("--from", help="Its country today.")],
    to_country: Annotated[str, typer.Option("--to", help="Its new country.")],
    mechanism: Annotated[list[str] | None, typer.Option(
        "--mechanism", "-m", help="A transfer mechanism the tenant has signed (repeatable).",
    )] = None,
    provider: ProviderOption = None,
    local_root: LocalRootOption = None,
    state_dir: StateDirOption = None,
    audit: AuditOption = None,
    no_audit: NoAuditOption = False,
    actor: Annotated[str, typer.Option("--actor", help="Who asked for the move.")] = "cli",
    purpose: Annotated[str | None, typer.Option("--purpose", help="Why.")] = None,
    map_path: MapOption = None,
    as_json: JsonOption = False, output: OutputOption = None,
) -> None:
    """Move a tenant to another country: check and audit the transfer, copy and verify
    every object, rebind the tenant, erase the old location. Exit 1 when refused."""
    as_json = wants_json(as_json, output)
    state_dir = state_dir_or_setting(state_dir)
    kwargs: dict[str, Any] = {}
    if local_root is not None:
        kwargs["local_root"] = local_root
    # --state-dir holds the erasure request of the old location; the audit trail's
    # default is the same as every other command's.
    res = load_residency(map_path, as_json, audit=audit, no_audit=no_audit, **kwargs)
    with residency_errors(as_json):
        tenant = Tenant(id=tenant_id, country=from_country,
                        agreements=frozenset(mechanism or ()))
        receipt = res.move_tenant(tenant, to_country, providers=provider, actor=actor,
                                  purpose=purpose, state_dir=state_dir)
    doc = {"tenant_id": receipt.tenant_id, "from": receipt.from_country,
           "to": receipt.to_country, "from_location": receipt.from_location,
           "to_location": receipt.to_location, "objects": receipt.objects,
           "bytes": receipt.bytes, "erasure_request": receipt.erasure_request_id}
    if as_json:
        print_json({"ok": True, "move": doc})
        return
    console.print("[bold green]MOVED[/] " + escape(
        f"tenant {receipt.tenant_id}: {receipt.from_country} ({receipt.from_location}) -> "
        f"{receipt.to_country} ({receipt.to_location}), {receipt.objects} object(s), "
        f"{receipt.bytes} bytes copied and verified"
        + (f"; old location erased ({receipt.erasure_request_id})"
           if receipt.erasure_request_id else "")), highlight=False)
