"""Transfer-rules review commands: ``rules matrix`` and ``rules diff``.

Neither touches data nor decides a real transfer (each cell is a hypothetical question
to the rules), so neither is audited.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

from residency_sdk.cli.common import (
    EXIT_BLOCKED,
    EXIT_USAGE,
    emit_document,
    fail,
    map_or_setting,
    residency_errors,
)
from residency_sdk.errors import InvalidCountry, UnknownDataClass
from residency_sdk.policy import ResidencyPolicy
from residency_sdk.rules_matrix import (
    DIFF_FORMATS,
    MATRIX_FORMATS,
    build_matrix,
    diff_matrices,
    load_policy_for_diff,
    matrices_for_diff,
    render_diff,
    render_matrix,
)

rules_app = typer.Typer(help="Review transfer rules: the matrix of what may move where, "
                             "and what changed between two rule files.",
                        no_args_is_help=True)

RulesPathOption = Annotated[
    Path | None,
    typer.Option("--map", help="Region map, or a transfer rules file (paired with the "
                 "packaged map). Default: the packaged map.", dir_okay=False),
]
OutOption = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Write to this file instead of stdout.", dir_okay=False),
]


def register(app: typer.Typer) -> None:
    """Add the ``rules`` command group to ``app``."""
    rules_app.command("matrix")(matrix)
    rules_app.command("diff")(diff)
    app.add_typer(rules_app, name="rules")


def matrix(
    map_path: RulesPathOption = None,
    origin: Annotated[list[str] | None, typer.Option(
        "--origin", help="Tenant country (repeatable; default: every routed country).")] = None,
    to: Annotated[list[str] | None, typer.Option(
        "--to", help="Destination country (repeatable; default: every country the rules "
                     "name).")] = None,
    data_class: Annotated[list[str] | None, typer.Option(
        "--data-class", "-d", help="Data class (repeatable; default: all).")] = None,
    fmt: Annotated[str, typer.Option(
        "--format", "-f", help=f"Output format: {', '.join(MATRIX_FORMATS)}.")] = "md",
    out: OutOption = None,
) -> None:
    """The transfer rules as a table, for review without reading code.

    For each origin, destination and data class: whether a tenant holding no agreement
    may move its data there, on what basis, or what would unblock it; with the source,
    as_of and review_by of every rule fact used."""
    if fmt not in MATRIX_FORMATS:
        _usage(f"unknown --format {fmt!r}: use one of {', '.join(MATRIX_FORMATS)}")
    with residency_errors(as_json=False):
        policy = _load(map_or_setting(map_path))
    try:
        result = build_matrix(policy, origins=origin or None, destinations=to or None,
                              data_classes=data_class or None)
    except (InvalidCountry, UnknownDataClass) as exc:
        _usage(str(exc))
    text = render_matrix(result, fmt)
    cells = len(result.cells)
    emit_document(text, out, f"rules matrix written to {out} ({fmt}, {cells} cells)")


def diff(
    old: Annotated[Path, typer.Argument(help="Old region map or transfer rules file.",
                                        dir_okay=False)],
    new: Annotated[Path, typer.Argument(help="New region map or transfer rules file.",
                                        dir_okay=False)],
    fmt: Annotated[str, typer.Option(
        "--format", "-f", help=f"Output format: {', '.join(DIFF_FORMATS)}.")] = "md",
    out: OutOption = None,
    fail_on_change: Annotated[bool, typer.Option(
        "--fail-on-change", help="Exit 1 when any cell changed.")] = False,
) -> None:
    """The matrix cells that differ between two rule files (or region maps).

    Lists every origin, destination and data class whose outcome (allowed, basis, what
    would unblock it) differs between OLD and NEW. A transfer rules file is paired with
    the packaged map. Exit 1 with --fail-on-change when any cell changed."""
    if fmt not in DIFF_FORMATS:
        _usage(f"unknown --format {fmt!r}: use one of {', '.join(DIFF_FORMATS)}")
    with residency_errors(as_json=False):
        before, after = matrices_for_diff(load_policy_for_diff(old),
                                          load_policy_for_diff(new))
    changes = diff_matrices(before, after)
    text = render_diff(changes, fmt, old_label=str(old), new_label=str(new))
    emit_document(text, out, f"rules diff written to {out} ({fmt}): {len(changes)} changed cell(s)")
    if fail_on_change and changes:
        raise typer.Exit(EXIT_BLOCKED)


def _load(path: Path | None) -> ResidencyPolicy:
    return ResidencyPolicy.load() if path is None else load_policy_for_diff(path)


def _usage(message: str) -> NoReturn:
    fail(message, as_json=False, code=EXIT_USAGE)
