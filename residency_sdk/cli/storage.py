"""Operator commands on tenant objects: ``residency put|get|ls|rm``.

Every command goes through the tenant store (``Residency.storage_for``), so the same
residency checks and audit events apply as in application code: every command is audited
(``--audit SINK``, else the default sink; ``--no-audit`` switches it off, on record).
``--local-root DIR`` (or the ``local_root`` setting: ``RESIDENCY_LOCAL_ROOT``, the config
file) uses the embedded local backend of each location.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from residency_sdk.cli.common import (
    EXIT_BACKEND,
    EXIT_USAGE,
    AuditOption,
    JsonOption,
    MapOption,
    NoAuditOption,
    OutputOption,
    console,
    err_console,
    fail,
    load_residency,
    print_json,
    residency_errors,
    wants_json,
)
from residency_sdk.errors import ObjectNotFound
from residency_sdk.model import Tenant

if TYPE_CHECKING:
    from residency_sdk.storage.tenant_store import StoredObject, TenantStore

TenantOption = Annotated[str, typer.Option("--tenant", "-t", help="Tenant id.")]
CountryOption = Annotated[str, typer.Option("--country", "-c", help="Tenant jurisdiction (ISO).")]
ProviderOption = Annotated[
    str | None, typer.Option("--provider", "-p", help="Backend of the location (default: the "
                             "map's default provider, or local with --local-root).")]
LocalRootOption = Annotated[
    Path | None, typer.Option("--local-root", file_okay=False,
                              help="Use the embedded local backend under this folder "
                                   "(default: the `local_root` setting: "
                                   "$RESIDENCY_LOCAL_ROOT or the config file).")]
MechanismOption = Annotated[
    list[str] | None, typer.Option("--mechanism", "-m", help="A signed mechanism flag.")]
DataClassOption = Annotated[str, typer.Option("--data-class", "-d", help="phi, personal, "
                                              "anonymised.")]


def register(app: typer.Typer) -> None:
    """Add ``put``, ``get``, ``ls`` and ``rm`` to ``app``."""
    app.command("put")(put)
    app.command("get")(get)
    app.command("ls")(ls)
    app.command("rm")(rm)


def _open_tenant_store(tenant_id: str, country: str, mechanism: list[str] | None,
                       provider: str | None, local_root: Path | None, map_path: Path | None,
                       as_json: bool, audit: str | None, no_audit: bool) -> TenantStore:
    res = load_residency(map_path, as_json, audit=audit, no_audit=no_audit,
                         local_root=local_root)
    with residency_errors(as_json):
        tenant = Tenant(id=tenant_id, country=country, agreements=frozenset(mechanism or ()))
        return res.storage_for(tenant, provider=provider, actor="cli")
    raise AssertionError("unreachable")  # pragma: no cover


def object_dict(info: StoredObject) -> dict[str, Any]:
    """An object report as plain JSON-able data."""
    return {"key": info.key, "size": info.size, "checksum": info.checksum,
            "encryption": info.encryption, "kms_key": info.kms_key,
            "data_class": info.data_class, "location": info.location,
            "provider": info.provider, "region": info.region, "bucket": info.bucket,
            "served_by": info.served_by, "stored_key": info.stored_key,
            "last_modified": info.last_modified.isoformat() if info.last_modified else None,
            "metadata": info.metadata}


@contextmanager
def _progress(label: str, total: int | None, enabled: bool) -> Iterator[Any]:
    """A rich progress bar on stderr; yields the callback adapters call with increments."""
    if not enabled:
        yield None
        return
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), console=err_console,
                  transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def put(
    key: Annotated[str, typer.Argument(help="Object key, relative to the tenant's prefix.")],
    tenant: TenantOption, country: CountryOption,
    source: Annotated[str, typer.Argument(help="File to upload, or '-' for stdin.")] = "-",
    provider: ProviderOption = None, local_root: LocalRootOption = None,
    map_path: MapOption = None, data_class: DataClassOption = "phi",
    mechanism: MechanismOption = None, as_json: JsonOption = False, output: OutputOption = None,
    category: Annotated[str | None, typer.Option(
        "--category", help="Retention category of the map (e.g. imaging_upload): the object "
                           "is deleted when its period ends.")] = None,
    evidence: Annotated[Path | None, typer.Option(
        "--evidence", dir_okay=False,
        help="Evidence of the data's de-identification (the <name>.evidence.json `residency "
             "deid` writes), for --data-class anonymised.")] = None,
    audit: AuditOption = None, no_audit: NoAuditOption = False,
) -> None:
    """Store a file (streamed, encrypted, checksummed) for a tenant. Exit 1 when refused.
    Data declared anonymised is checked (DICOM content, evidence); what fails is stored
    as phi where phi is allowed, and refused where it is not."""
    as_json = wants_json(as_json, output)
    store = _open_tenant_store(tenant, country, mechanism, provider, local_root, map_path,
                               as_json, audit, no_audit)
    with residency_errors(as_json):
        record = None
        if evidence is not None:
            from residency_sdk.deid.evidence import Evidence

            try:
                record = Evidence.model_validate_json(evidence.read_bytes())
            except (OSError, ValueError) as exc:
                fail(f"--evidence {evidence}: not a readable evidence record "
                     f"({type(exc).__name__})", as_json=as_json)
        if source == "-":
            info = store.put(key, sys.stdin.buffer, data_class=data_class,
                             category=category, evidence=record)
        else:
            path = Path(source)
            if not path.is_file():
                fail(f"source {source!r} is not a readable file", as_json=as_json,
                     code=EXIT_USAGE)
            with path.open("rb") as fh, _progress(f"put {key}", path.stat().st_size,
                                                  not as_json) as progress:
                info = store.put(key, fh, data_class=data_class, progress=progress,
                                 category=category, evidence=record)
    if as_json:
        print_json({"ok": True, "object": object_dict(info)})
    else:
        console.print("[green]stored[/] " + escape(
            f"{info.key} ({info.size} bytes) in {info.location} {info.provider} "
            f"{info.bucket} (served by {info.served_by}), {info.encryption}, "
            f"{info.checksum}"), highlight=False, soft_wrap=True)
        if info.data_class != data_class.strip().lower():
            err_console.print(f"[yellow]stored as {escape(str(info.data_class))}[/], not "
                              f"{escape(data_class)}: it did not pass as anonymised "
                              "(`residency deid check` says why)", highlight=False)


def get(
    key: Annotated[str, typer.Argument(help="Object key, relative to the tenant's prefix.")],
    tenant: TenantOption, country: CountryOption,
    out: Annotated[Path | None, typer.Option("--out", "-o", dir_okay=False,
                                             help="Write here (default: stdout).")] = None,
    provider: ProviderOption = None, local_root: LocalRootOption = None,
    map_path: MapOption = None, mechanism: MechanismOption = None, as_json: JsonOption = False,
    output: OutputOption = None,
    audit: AuditOption = None, no_audit: NoAuditOption = False,
) -> None:
    """Read an object (checksum verified) to a file or stdout."""
    as_json = wants_json(as_json, output)
    if as_json and out is None:
        fail("--json needs --out FILE (stdout carries the JSON report)", as_json=True,
             code=EXIT_USAGE)
    if out is not None and not out.parent.is_dir():
        fail(f"cannot write {out}: its folder {out.parent} does not exist: create it, or "
             "give another --out", as_json=as_json, code=EXIT_BACKEND)
    store = _open_tenant_store(tenant, country, mechanism, provider, local_root, map_path,
                               as_json, audit, no_audit)
    with residency_errors(as_json):
        info = store.head(key)
        reader = store.open(key)
        with reader:
            if out is None:
                _copy(reader, sys.stdout.buffer, None)
                sys.stdout.flush()
            else:
                tmp = out.with_name(f".{out.name}.part")
                try:
                    with tmp.open("wb") as fh, _progress(f"get {key}", info.size,
                                                         not as_json) as progress:
                        _copy(reader, fh, progress)
                    tmp.replace(out)  # a failed read never leaves a partial file at `out`
                finally:
                    tmp.unlink(missing_ok=True)
    if as_json:
        print_json({"ok": True, "object": object_dict(info), "out": str(out)})
    elif out is not None:
        console.print("[green]read[/] " + escape(f"{info.key} ({info.size} bytes) -> {out}"),
                      highlight=False, soft_wrap=True)


def _copy(reader: BinaryIO, writer: BinaryIO, progress: Any) -> None:
    while chunk := reader.read(1024 * 1024):
        writer.write(chunk)
        if progress is not None:
            progress(len(chunk))


def ls(
    tenant: TenantOption, country: CountryOption,
    prefix: Annotated[str, typer.Argument(help="Key prefix (relative).")] = "",
    provider: ProviderOption = None, local_root: LocalRootOption = None,
    map_path: MapOption = None, mechanism: MechanismOption = None, as_json: JsonOption = False,
    output: OutputOption = None,
    audit: AuditOption = None, no_audit: NoAuditOption = False,
) -> None:
    """List a tenant's objects."""
    as_json = wants_json(as_json, output)
    store = _open_tenant_store(tenant, country, mechanism, provider, local_root, map_path,
                               as_json, audit, no_audit)
    with residency_errors(as_json):
        objects = [object_dict(info) for info in store.list(prefix)]
    if as_json:
        print_json({"ok": True, "tenant": tenant, "location": store.location,
                    "objects": objects})
        return
    table = Table(title=escape(f"{tenant} in {store.location} ({store.target.provider} "
                               f"{store.target.bucket})"))
    for col in ("key", "size", "data class", "modified"):
        table.add_column(col, overflow="fold")
    for obj in objects:
        table.add_row(escape(obj["key"]), str(obj["size"]), escape(obj["data_class"] or "-"),
                      obj["last_modified"] or "-")
    console.print(table)


def rm(
    key: Annotated[str, typer.Argument(help="Object key, relative to the tenant's prefix.")],
    tenant: TenantOption, country: CountryOption,
    provider: ProviderOption = None, local_root: LocalRootOption = None,
    map_path: MapOption = None, mechanism: MechanismOption = None, as_json: JsonOption = False,
    output: OutputOption = None,
    audit: AuditOption = None, no_audit: NoAuditOption = False,
) -> None:
    """Delete one object. Exit 1 when it does not exist."""
    as_json = wants_json(as_json, output)
    store = _open_tenant_store(tenant, country, mechanism, provider, local_root, map_path,
                               as_json, audit, no_audit)
    with residency_errors(as_json):
        deleted = store.delete(key)
    if not deleted:
        fail(str(ObjectNotFound(key, f"tenant {tenant}")), as_json=as_json,
             error_type="ObjectNotFound")
    if as_json:
        print_json({"ok": True, "deleted": key})
    else:
        console.print(f"[green]deleted[/] {escape(key)}", highlight=False, soft_wrap=True)
