"""Infrastructure commands: ``infra plan``, ``infra export``, ``infra outputs``."""

from __future__ import annotations

import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from residency_sdk.cli.common import (
    JsonOption,
    MapOption,
    OutputOption,
    console,
    err_console,
    map_or_setting,
    print_json,
    residency_errors,
    wants_json,
)
from residency_sdk.errors import InfraError, MapError
from residency_sdk.infra.outputs import overlay_from_outputs, read_outputs
from residency_sdk.infra.plan import InfraPlan, build_plan
from residency_sdk.infra.stack import render_stack_yaml, stack_file_name
from residency_sdk.infra.terraform import write as write_terraform
from residency_sdk.regionmap import load_region_map

infra_app = typer.Typer(help="Provision storage per residency location from the region map.",
                        no_args_is_help=True)

LocationOption = Annotated[
    str, typer.Option("--location", "-l", help="Residency location id of the map, e.g. DE.")]
RedundancyOption = Annotated[
    str | None, typer.Option("--azure-redundancy", help="Azure storage redundancy: ZRS or LRS.")]
AwsOrgTargetOption = Annotated[
    str | None, typer.Option("--aws-org-target", help="OU id (ou-...) or member account id the "
                             "region-deny SCP is attached to (stack config "
                             "residency:awsOrgTargetId); without it the SCP is skipped.")]
GcpFolderOption = Annotated[
    str | None, typer.Option("--gcp-folder", help="Folder id the gcp.resourceLocations policy "
                             "is set on (stack config residency:gcpFolderId); without it the "
                             "policy is skipped.")]


class ExportFormat(StrEnum):
    """What ``infra export`` writes."""

    terraform = "terraform"
    pulumi_stack = "pulumi-stack"


def register(app: typer.Typer) -> None:
    """Add the ``infra`` command group to ``app``."""
    app.add_typer(infra_app, name="infra")


def _plan(map_path: Path | None, location: str, redundancy: str | None,
          aws_org_target: str | None = None, gcp_folder: str | None = None) -> InfraPlan:
    return build_plan(load_region_map(map_or_setting(map_path)), location,
                      azure_redundancy=redundancy,
                      aws_org_target=aws_org_target, gcp_folder=gcp_folder)


def _print_notes(plan: InfraPlan) -> None:
    for note in plan.notes():
        err_console.print(f"[bold yellow]note:[/] {escape(note)}", highlight=False)


@infra_app.command("plan")
def plan_cmd(location: LocationOption, map_path: MapOption = None,
             azure_redundancy: RedundancyOption = None,
             aws_org_target: AwsOrgTargetOption = None, gcp_folder: GcpFolderOption = None,
             as_json: JsonOption = False, output: OutputOption = None) -> None:
    """Show the resources LOCATION needs, per provider, with their settings, and the
    clouds' location guardrails (enforced, or skipped and why)."""
    as_json = wants_json(as_json, output)
    with residency_errors(as_json):
        plan = _plan(map_path, location, azure_redundancy, aws_org_target, gcp_folder)
    if as_json:
        print_json({"ok": True, "plan": plan.to_dict(), "resources": plan.resources(),
                    "guardrails": plan.guardrail_summary(), "notes": plan.notes()})
        return
    console.print(f"[bold]{escape(plan.location)}[/] " + escape(
        f"({plan.country}, regime {plan.regime}, map {plan.map_name})"), highlight=False)
    table = Table("provider", "kind", "region", "name / settings")
    for row in plan.resources():
        settings = ", ".join(f"{k}={v}" for k, v in row["settings"].items() if v is not None)
        table.add_row(escape(row["provider"]), escape(row["kind"]), escape(row["region"]),
                      f"[bold]{escape(row['name'])}[/]\n{escape(settings)}")
    console.print(table)
    guards = Table("provider", "guardrail", "status", "applies to", "allowed regions",
                   title="Location guardrails (the cloud refuses every other region)")
    for provider, g in plan.guardrail_summary().items():
        guards.add_row(escape(provider), escape(f"{g['kind']}\n{g['name']}"),
                       escape(g["status"]), escape(g["target"] or f"(set {g['config_key']})"),
                       escape(", ".join(g["allowed_regions"])))
    console.print(guards)
    _print_notes(plan)


@infra_app.command("export")
def export_cmd(
    location: LocationOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write into.",
                                      file_okay=False)],
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="terraform or "
                                              "pulumi-stack.")] = ExportFormat.terraform,
    map_path: MapOption = None,
    azure_redundancy: RedundancyOption = None,
    aws_org_target: AwsOrgTargetOption = None,
    gcp_folder: GcpFolderOption = None,
    as_json: JsonOption = False, output: OutputOption = None,
) -> None:
    """Write LOCATION's plan as Terraform JSON, or as a Pulumi stack config file."""
    as_json = wants_json(as_json, output)
    with residency_errors(as_json):
        map_path = map_or_setting(map_path)
        plan = _plan(map_path, location, azure_redundancy, aws_org_target, gcp_folder)
        try:
            if fmt is ExportFormat.terraform:
                files = write_terraform(plan, out)
            else:
                out.mkdir(parents=True, exist_ok=True)
                target = out / stack_file_name(plan)
                target.write_text(render_stack_yaml(
                    plan, str(map_path.resolve()) if map_path else None), encoding="utf-8")
                files = [target]
        except OSError as exc:
            raise InfraError(f"cannot write to {str(out)!r}: {exc.strerror}; pass a writable "
                             "--out folder") from None
    if as_json:
        print_json({"ok": True, "location": plan.location, "format": fmt.value,
                    "files": [str(f) for f in files], "notes": plan.notes()})
    else:
        for f in files:
            console.print(f"wrote {f}", markup=False, highlight=False, soft_wrap=True)
        _print_notes(plan)


@infra_app.command("outputs")
def outputs_cmd(
    file: Annotated[Path, typer.Argument(help="`pulumi stack output --json` or "
                                         "`terraform output -json` saved to a file.",
                                         dir_okay=False)],
    extends: Annotated[str, typer.Option("--extends", help="Map the overlay extends.")] = (
        "default"),
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the overlay here.",
                                             dir_okay=False)] = None,
    as_json: JsonOption = False, output: OutputOption = None,
) -> None:
    """Turn deployed stack outputs into a region-map overlay the SDK can load."""
    as_json = wants_json(as_json, output)
    with residency_errors(as_json):
        overlay = overlay_from_outputs(read_outputs(file), extends=extends)
        text = yaml.safe_dump(overlay, sort_keys=False)
        _validate(text, out)
        if out is not None:
            out.write_text(text, encoding="utf-8")
    if as_json:
        print_json({"ok": True, "overlay": overlay, "file": str(out) if out else None})
    elif out is None:
        console.print(text, end="", highlight=False, markup=False)
    else:
        console.print(f"wrote {out}", markup=False, highlight=False, soft_wrap=True)


def _validate(text: str, out: Path | None) -> None:
    """Load the overlay as the SDK would, so a bad one is refused before it is written."""
    folder = out.resolve().parent if out is not None else None
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp if folder is None or not folder.is_dir() else folder) / (
            ".residency-overlay-check.yaml")
        probe.write_text(text, encoding="utf-8")
        try:
            load_region_map(probe)
        except MapError as exc:
            raise InfraError(f"the overlay from these outputs does not validate: {exc}") from None
        finally:
            probe.unlink(missing_ok=True)
