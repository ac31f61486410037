"""De-identification commands: ``deid`` (de-identify files with the tenant's key),
``deid check`` (does a file pass as anonymised?) and ``export`` (the audited research
export of stored objects).

``residency deid FILE... --out DIR`` is short for ``residency deid run FILE... --out
DIR``: a first argument that is not a sub-command name is a file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from typer.core import TyperGroup

from residency_sdk.cli.common import (
    EXIT_BLOCKED,
    EXIT_OK,
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
from residency_sdk.cli.storage import (
    CountryOption,
    LocalRootOption,
    MechanismOption,
    ProviderOption,
    TenantOption,
)
from residency_sdk.errors import ResidencyError
from residency_sdk.model import Tenant

if TYPE_CHECKING:
    from residency_sdk.deid.evidence import Option

EVIDENCE_SUFFIX = ".evidence.json"
"""The evidence written beside each de-identified file (``<name>.evidence.json``)."""


class _RunByDefault(TyperGroup):
    """``residency deid FILE...`` runs ``deid run``: a first argument that names no
    sub-command (and is not ``--help``) is taken as the start of ``run``'s arguments."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["run", *args]
        return super().parse_args(ctx, args)


deid_app = typer.Typer(
    cls=_RunByDefault, no_args_is_help=True,
    help="De-identify DICOM files with the tenant's key (PS3.15 Basic Profile), or check "
         "whether files pass as anonymised.")

OptionOption = Annotated[list[str] | None, typer.Option(
    "--option", help="A profile option (repeatable): retain_longitudinal_modified_dates, "
                     "clean_descriptors, retain_device_identity.")]
PixelsCleanedOption = Annotated[bool, typer.Option(
    "--pixels-cleaned", help="State that burned-in text was removed from the pixels (else "
                             "images flagged or known to carry it are refused); recorded "
                             "in the evidence.")]


def register(app: typer.Typer) -> None:
    """Add ``deid`` (``run``, ``check``) and ``export`` to ``app``."""
    app.add_typer(deid_app, name="deid")
    app.command("export")(export)


def _options(given: list[str] | None, as_json: bool) -> tuple[Option, ...]:
    """The --option values, each a profile option (``pixels_cleaned`` has its own flag)."""
    from residency_sdk.deid.profile import OPTIONS

    allowed = [o for o in OPTIONS if o != "pixels_cleaned"]
    for name in given or ():
        if name not in allowed:
            fail(f"unknown --option {name!r}: use one of {', '.join(allowed)} "
                 "(--pixels-cleaned states cleaned pixels)", as_json=as_json, code=EXIT_USAGE)
    return tuple(cast("Option", name) for name in given or ())


def _inputs(paths: list[Path], as_json: bool) -> list[tuple[Path, Path]]:
    """``(file, name under --out)`` for every input: a file as its own name, a folder as
    every file beneath it (relative paths kept), evidence files left out."""
    found: list[tuple[Path, Path]] = []
    for path in paths:
        if path.is_dir():
            found += [(f, path.name / f.relative_to(path)) for f in sorted(path.rglob("*"))
                      if f.is_file() and not f.name.endswith(EVIDENCE_SUFFIX)]
        elif path.is_file():
            found.append((path, Path(path.name)))
        else:
            fail(f"{path} is not a readable file or folder", as_json=as_json, code=EXIT_USAGE)
    names = [name for _, name in found]
    clashes = sorted({str(n) for n in names if names.count(n) > 1})
    if clashes:
        fail(f"two inputs would be written to the same output name: {', '.join(clashes)}; "
             "de-identify them into separate --out folders", as_json=as_json)
    return found


@contextmanager
def _bar(total: int, enabled: bool) -> Iterator[Any]:
    """A rich progress bar over files on stderr; yields ``advance(name)``."""
    if not enabled:
        yield lambda name: None
        return
    with Progress(TextColumn("[bold]de-identify"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.description}"), console=err_console,
                  transient=True) as bar:
        task = bar.add_task("", total=total)
        yield lambda name: bar.update(task, advance=1, description=str(name))


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` at ``path`` through a temporary file: no half-written output."""
    tmp = path.with_name(f".{path.name}.part")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


@deid_app.command("run")
def run(
    files: Annotated[list[Path], typer.Argument(help="DICOM files or folders of them.")],
    out: Annotated[Path, typer.Option("--out", "-o", file_okay=False,
                                      help="Folder for the de-identified files.")],
    tenant: TenantOption, country: CountryOption,
    option: OptionOption = None, pixels_cleaned: PixelsCleanedOption = False,
    mechanism: MechanismOption = None, local_root: LocalRootOption = None,
    map_path: MapOption = None, audit: AuditOption = None, no_audit: NoAuditOption = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")] = False,
    as_json: JsonOption = False, output: OutputOption = None,
) -> None:
    """De-identify DICOM files with the tenant's key (read from its location: the same
    study always maps to the same new UIDs) and write each beside its evidence
    (``<name>.evidence.json``). Exit 1 when any file was refused."""
    as_json = wants_json(as_json, output)
    from residency_sdk.deid import deidentify_dicom

    chosen = _options(option, as_json)
    inputs = _inputs(files, as_json)
    targets = [out / name for _, name in inputs]
    existing = [str(t) for t in targets if not force and t.exists()]
    if existing:
        fail(f"output exists: {', '.join(existing[:5])}: pass --force to overwrite, or "
             "another --out", as_json=as_json)
    kwargs: dict[str, Any] = {} if local_root is None else {"local_root": local_root}
    res = load_residency(map_path, as_json, audit=audit, no_audit=no_audit, **kwargs)
    with residency_errors(as_json):
        who = Tenant(id=tenant, country=country, agreements=frozenset(mechanism or ()))
        key = res.deid_key(who, actor="cli")
    results: list[dict[str, Any]] = []
    with _bar(len(inputs), not as_json) as advance:
        for (source, name), target in zip(inputs, targets, strict=True):
            entry: dict[str, Any] = {"input": str(source), "output": str(target)}
            try:
                done = deidentify_dicom(source.read_bytes(), tenant=who, key=key,
                                        options=chosen, pixels_cleaned=pixels_cleaned)
                target.parent.mkdir(parents=True, exist_ok=True)
                _write(target, done.data)
                evidence_path = target.with_name(target.name + EVIDENCE_SUFFIX)
                _write(evidence_path, done.evidence.model_dump_json(indent=2).encode())
                entry.update(ok=True, evidence=str(evidence_path),
                             evidence_digest=done.evidence.digest(),
                             counts=done.evidence.counts.model_dump())
            except (ResidencyError, OSError) as exc:
                entry.update(ok=False, error=str(exc), error_type=type(exc).__name__)
            results.append(entry)
            advance(name)
    failed = [r for r in results if not r["ok"]]
    if as_json:
        print_json({"ok": not failed, "tenant": tenant, "key_id": key.key_id,
                    "files": results})
    else:
        for r in results:
            if r["ok"]:
                c = r["counts"]
                console.print("[green]de-identified[/] " + escape(
                    f"{r['input']} -> {r['output']} (removed "
                    f"{c['removed'] + c['private_removed']}, replaced "
                    f"{c['replaced'] + c['uids_replaced']}, emptied {c['emptied']}; "
                    f"evidence {r['evidence_digest'][:16]}…)"), highlight=False,
                    soft_wrap=True)
            else:
                err_console.print("[bold red]refused[/] " + escape(f"{r['input']}: {r['error']}"),
                                  highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_BLOCKED if failed else EXIT_OK)


def check_file(path: Path) -> dict[str, Any]:
    """The facade's verdict on one file as anonymised, with the evidence written beside it
    (``<name>.evidence.json``) when there is one."""
    from residency_sdk import anonymised
    from residency_sdk.deid.evidence import Evidence

    data = path.read_bytes()
    evidence_path = path.with_name(path.name + EVIDENCE_SUFFIX)
    evidence = None
    problem = None
    if evidence_path.is_file():
        try:
            evidence = Evidence.model_validate_json(evidence_path.read_bytes())
        except ValueError as exc:
            problem = f"{evidence_path.name} is not an evidence record ({type(exc).__name__})"
    taken = anonymised.intake(data)
    verdict = anonymised.verify(taken, tenant_id=evidence.tenant_id if evidence else "",
                                evidence=evidence, evidence_problem=problem)
    return {"file": str(path), "ok": verdict.ok, "dicom": verdict.kind == "dicom",
            "sha256": hashlib.sha256(data).hexdigest(),
            "evidence": str(evidence_path) if evidence is not None else None,
            "found": list(verdict.found), "problems": list(verdict.problems)}


def _readable(problems: list[str], tags_shown: int = 8) -> list[str]:
    """Problems for a terminal: named attributes one per line, the private attributes
    (an object can carry hundreds) as one line; ``--json`` lists every one."""
    private = [p for p in problems if p.startswith("private tag")]
    lines = [p for p in problems if not p.startswith("private tag")]
    if private:
        tags = [p.split()[2] for p in private]
        more = f", … ({len(tags) - tags_shown} more)" if len(tags) > tags_shown else ""
        lines.insert(0, f"{len(tags)} private attribute(s) carry values (the profile "
                        f"removes private attributes): {', '.join(tags[:tags_shown])}{more}")
    return lines


@deid_app.command("check")
def check(
    files: Annotated[list[Path], typer.Argument(help="Files or folders to check.")],
    as_json: JsonOption = False, output: OutputOption = None,
) -> None:
    """Does each file pass as anonymised (what the storage facade requires)? A DICOM file
    must carry no attribute the profile removes and say PatientIdentityRemoved = YES; its
    evidence (``<name>.evidence.json`` beside it) must be about exactly its bytes; other
    files pass only with such evidence. Exit 0 when every file passes, 1 otherwise."""
    as_json = wants_json(as_json, output)
    inputs = _inputs(files, as_json)
    results = []
    for source, _ in inputs:
        try:
            results.append(check_file(source))
        except (ResidencyError, OSError) as exc:
            results.append({"file": str(source), "ok": False, "dicom": None,
                            "found": [], "problems": [f"{type(exc).__name__}: {exc}"]})
    passed = all(r["ok"] for r in results)
    if as_json:
        print_json({"ok": passed, "files": results})
    else:
        for r in results:
            if r["ok"]:
                how = "with its evidence" if r.get("evidence") else "content check"
                console.print("[green]PASS[/] " + escape(f"{r['file']} ({how})"),
                              highlight=False, soft_wrap=True)
                continue
            console.print("[bold red]FAIL[/] " + escape(r["file"]), highlight=False,
                          soft_wrap=True)
            for line in _readable(r["problems"]):
                console.print(f"  - {line}", highlight=False, markup=False)
    raise typer.Exit(EXIT_OK if passed else EXIT_BLOCKED)


def export(
    keys: Annotated[list[str], typer.Argument(help="The tenant's object keys to export.")],
    tenant: TenantOption, country: CountryOption,
    to: Annotated[str, typer.Option("--to", help="Destination residency location.")],
    option: OptionOption = None, pixels_cleaned: PixelsCleanedOption = False,
    mechanism: MechanismOption = None, provider: ProviderOption = None,
    local_root: LocalRootOption = None, map_path: MapOption = None,
    audit: AuditOption = None, no_audit: NoAuditOption = False,
    actor: Annotated[str, typer.Option("--actor", help="Who asked for the export.")] = "cli",
    purpose: Annotated[str | None, typer.Option(
        "--purpose", help="Why (default: research_export).")] = None,
    as_json: JsonOption = False, output: OutputOption = None,
) -> None:
    """The audited research export: de-identify KEYs inside the tenant's location (copies
    under deid/), verify them, and transfer only the copies to --to; the originals never
    leave. Exit 1 when refused."""
    as_json = wants_json(as_json, output)
    kwargs: dict[str, Any] = {} if local_root is None else {"local_root": local_root}
    res = load_residency(map_path, as_json, audit=audit, no_audit=no_audit, **kwargs)
    with residency_errors(as_json):
        who = Tenant(id=tenant, country=country, agreements=frozenset(mechanism or ()))
        receipt = res.export_anonymised(who, keys, to=to, options=_options(option, as_json),
                                        pixels_cleaned=pixels_cleaned, actor=actor,
                                        purpose=purpose, provider=provider)
    if as_json:
        print_json({"ok": True, "export": receipt.to_dict()})
        return
    table = Table(title=escape(f"exported {len(receipt.objects)} object(s) of "
                               f"{receipt.tenant_id}: {receipt.source_location} -> "
                               f"{receipt.destination}"))
    for col in ("original (stayed home)", "de-identified copy", "size", "evidence"):
        table.add_column(col, overflow="fold")
    for o in receipt.objects:
        table.add_row(escape(o.source_key), escape(o.copy_key), str(o.size),
                      escape(o.evidence_digest[:16]) + "…")
    console.print(table)
