"""What the CLI prints: rich markup in values prints as written, and nothing is wrapped or
cut when the output is piped (CliRunner's output is not a terminal)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from residency_sdk.cli import app

runner = CliRunner()

MARKUP = "[red]x[/red]"
TAG = "[azure]"
NAME_MARKUP = "[red]x[bold]"  # no slash: usable as a file name


def invoke(*args: str, **kwargs: Any) -> Any:
    return runner.invoke(app, list(args), **kwargs)


def test_object_keys_with_markup_print_as_written(tmp_path: Path) -> None:
    root = str(tmp_path / "root")
    key = f"studies/{MARKUP}/{TAG}.dcm"
    who = ("-t", "c1", "-c", "DE", "--local-root", root)
    stored = invoke("put", key, "-", *who, input=b"bytes")
    assert stored.exit_code == 0, stored.output
    assert key in stored.stdout
    listed = invoke("ls", *who)
    assert listed.exit_code == 0 and key in listed.stdout
    target = tmp_path / f"{TAG}.out"
    read = invoke("get", key, *who, "--out", str(target))
    assert read.exit_code == 0 and key in read.stdout and str(target) in read.stdout
    removed = invoke("rm", key, *who)
    assert removed.exit_code == 0 and key in removed.stdout
    missing = invoke("rm", key, *who)
    assert missing.exit_code == 1 and key in missing.stderr


def test_values_in_error_messages_print_as_written() -> None:
    result = invoke("resolve", "--country", MARKUP)
    assert result.exit_code == 2 and f"'{MARKUP}'" in result.stderr
    result = invoke("transfer", "check", "-c", "DE", "--to", TAG)
    assert result.exit_code == 2 and TAG in result.stderr


def test_paths_with_markup_print_as_written(tmp_path: Path) -> None:
    folder = tmp_path / TAG / NAME_MARKUP
    folder.mkdir(parents=True)
    overlay = folder / "map.yaml"
    overlay.write_text("extends: default\nname: bracketed\n", encoding="utf-8")
    result = invoke("map", "validate", str(overlay))
    assert result.exit_code == 0 and f"valid {overlay}:" in result.stdout
    keys = invoke("keys", "list", "--local-root", str(folder))
    assert keys.exit_code == 0 and str(folder) in keys.stdout
    odd = folder / f"{NAME_MARKUP}.bin"
    odd.write_bytes(b"not dicom")
    check = invoke("deid", "check", str(odd))
    assert check.exit_code == 1 and f"FAIL {odd}" in check.stdout


def test_an_ipv6_url_prints_its_brackets() -> None:
    url = "https://[::1]:8443/infer"
    result = invoke("egress", "check", "-c", "DE", "--url", url)
    assert result.exit_code == 1 and url in result.stdout


def test_a_300_character_value_is_whole_on_one_line_when_piped(tmp_path: Path) -> None:
    # Three path segments (a file name has at most 255 bytes): 300 characters in all.
    key = "/".join(("a" * 100, "b" * 100, "c" * 98))
    assert len(key) == 300
    root = str(tmp_path / "root")
    who = ("-t", "c1", "-c", "DE", "--local-root", root)
    assert invoke("put", key, "-", *who, input=b"x").exit_code == 0
    listed = invoke("ls", *who)
    assert listed.exit_code == 0
    assert any(key in line for line in listed.stdout.splitlines()), listed.stdout
    assert "…" not in listed.stdout
    # And as JSON, naturally.
    data = json.loads(invoke("ls", *who, "--output", "json").stdout)
    assert [o["key"] for o in data["objects"]] == [key]


def test_a_long_message_is_not_wrapped_when_piped(tmp_path: Path) -> None:
    folder = tmp_path
    while len(str(folder)) < 300:
        folder = folder / ("d" * 60)
    folder.mkdir(parents=True)
    overlay = folder / "map.yaml"
    overlay.write_text("extends: default\nname: deep\n", encoding="utf-8")
    result = invoke("map", "validate", str(overlay))
    assert result.exit_code == 0
    assert f"valid {overlay}: " in result.stdout.splitlines()[0]


def test_a_table_is_as_wide_as_its_content_when_piped() -> None:
    result = invoke("map", "show")
    assert result.exit_code == 0
    widest = max(len(line) for line in result.stdout.splitlines())
    assert widest < 400  # not padded out to the piped layout width
