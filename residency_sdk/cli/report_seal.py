"""``audit report verify`` and ``audit report keygen``: check a sealed transfer-audit
report against its signer's public key, and make the Ed25519 key pair that seals them.

The signing key is named by ``$RESIDENCY_REPORT_SIGNING_KEY`` when a report is rendered
(a path, never the key itself on the command line); verifiers only need the public key.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from residency_sdk.cli.common import (
    EXIT_BACKEND,
    EXIT_BLOCKED,
    JsonOption,
    OutputOption,
    console,
    err_console,
    fail,
    print_json,
    residency_errors,
    wants_json,
)

if TYPE_CHECKING:
    from residency_sdk.audit.seal import SealCheck

# Imported by every command of the CLI: cryptography and the seal module load when a
# report is verified or a key made, not before.
ReportArg = Annotated[Path, typer.Argument(
    help="The sealed report: JSON, HTML or PDF (told apart by its content).",
    exists=True, dir_okay=False)]
PublicKeyOption = Annotated[Path, typer.Option(
    "--public-key", help="The signer's Ed25519 public key: the .pub file `keygen` wrote (PEM) "
                         "or an OpenSSH `ssh-ed25519 AAAA...` line.",
    exists=True, dir_okay=False)]
OutOption = Annotated[Path, typer.Option(
    "--out", help="Where to write the private signing key (PEM, mode 0600); never "
                  "overwritten.", dir_okay=False)]
PublicOutOption = Annotated[Path | None, typer.Option(
    "--public-out", help="Where to write the public key (default: the --out path plus .pub).",
    dir_okay=False)]


def verify(report: ReportArg, public_key: PublicKeyOption, as_json: JsonOption = False,
           output: OutputOption = None) -> None:
    """Check that a sealed report is unchanged since it was sealed, and by whom."""
    as_json = wants_json(as_json, output)
    with residency_errors(as_json):
        from residency_sdk.audit.seal import load_public_key, verify_report

        key = load_public_key(public_key)
        try:
            data = report.read_bytes()
        except OSError as exc:
            fail(f"cannot read {report}: {exc.strerror or exc}", as_json=as_json,
                 code=EXIT_BACKEND)
        check = verify_report(data, key, name=str(report))
    if as_json:
        print_json({"report": str(report), **check.to_dict()})
    else:
        _print_check(report, check)
    if not check.ok:
        raise typer.Exit(EXIT_BLOCKED)


def _print_check(report: Path, check: SealCheck) -> None:
    if check.ok:
        head = f"{check.chain_head[:16]}…" if check.chain_head else "none"
        console.print(
            f"[green]sealed report OK[/]: {escape(check.format)}, key "
            f"{escape(check.key_id or '?')}, chain head {escape(head)}, generated "
            f"{escape(check.generated_at or 'unknown')}", highlight=False, soft_wrap=True)
        return
    err_console.print(f"[bold red]sealed report FAILED[/]: {escape(str(report))} "
                      f"({escape(check.format)})", highlight=False, soft_wrap=True)
    for problem in check.problems:
        err_console.print(f"  - {escape(problem)}", highlight=False, soft_wrap=True)


def keygen(out: OutOption, public_out: PublicOutOption = None) -> None:
    """Make an Ed25519 key pair for sealing reports (existing files are never replaced)."""
    public = public_out if public_out is not None else out.with_name(out.name + ".pub")
    from residency_sdk.audit.seal import SIGNING_KEY_ENV, generate_keypair

    with residency_errors(False):
        kid = generate_keypair(out, public)
    console.print(
        f"wrote signing key {escape(str(out))} (mode 0600: keep it secret) and public key "
        f"{escape(str(public))}; key id {escape(kid)}\n"
        f"seal reports: export {SIGNING_KEY_ENV}={escape(str(out))}\n"
        f"verify one: residency audit report verify REPORT --public-key "
        f"{escape(str(public))}", highlight=False, soft_wrap=True)
