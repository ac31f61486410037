"""``residency put|get|ls|rm`` and the storage part of ``residency demo``."""

from __future__ import annotations

import json
import os
from pathlib import Path

from typer.testing import CliRunner

import residency_sdk as rs
from residency_sdk.cli.app import app
from residency_sdk.cli.demo import DemoSummary, show_storage

runner = CliRunner()


def _run(*args: str, input: bytes | None = None) -> tuple[int, str, bytes]:
    result = runner.invoke(app, list(args), input=input)
    return result.exit_code, result.stdout, result.stdout_bytes


def test_put_get_ls_rm_round_trip(tmp_path: Path) -> None:
    root = tmp_path / "root"
    src = tmp_path / "scan.dcm"
    payload = os.urandom(3 * 1024 * 1024 + 5)
    src.write_bytes(payload)
    who = ("--tenant", "charite", "--country", "DE", "--local-root", str(root))
    code, out, _ = _run("put", "studies/1/scan.dcm", str(src), *who, "--json")
    assert code == 0, out
    report = json.loads(out)["object"]
    assert (report["key"], report["size"], report["location"], report["encryption"]) == (
        "studies/1/scan.dcm", len(payload), "DE", "local:aes-256-gcm")
    code, out, _ = _run("put", "notes.txt", "-", *who, "--data-class", "personal",
                        input=b"from stdin")
    assert code == 0, out
    code, out, _ = _run("ls", *who, "--json")
    listed = json.loads(out)["objects"]
    assert [(o["key"], o["data_class"]) for o in listed] == [
        ("notes.txt", "personal"), ("studies/1/scan.dcm", "phi")]
    dest = tmp_path / "back.dcm"
    code, out, _ = _run("get", "studies/1/scan.dcm", *who, "--out", str(dest), "--json")
    assert code == 0, out
    assert dest.read_bytes() == payload
    code, _, raw = _run("get", "notes.txt", *who)
    assert code == 0 and raw == b"from stdin"
    code, out, _ = _run("rm", "notes.txt", *who, "--json")
    assert code == 0 and json.loads(out)["deleted"] == "notes.txt"
    code, out, _ = _run("rm", "notes.txt", *who, "--json")
    assert code == 1 and json.loads(out)["error_type"] == "ObjectNotFound"


def test_refusals_exit_1_with_the_reason(tmp_path: Path) -> None:
    root = str(tmp_path / "root")
    code, out, _ = _run("put", "x", "-", "--tenant", "ankara", "--country", "TR",
                        "--local-root", root, "--json", input=b"phi")
    assert code == 1
    body = json.loads(out)
    assert body["error_type"] == "PlacementBlocked" and "kvkk_standard_contract" in body["error"]
    code, out, _ = _run("put", "x", "-", "--tenant", "acibadem", "--country", "TR",
                        "--mechanism", "kvkk_standard_contract", "--local-root", root,
                        "--json", input=b"phi")
    assert code == 0 and json.loads(out)["object"]["location"] == "DE"
    code, out, _ = _run("get", "../acibadem/x", "--tenant", "other", "--country", "DE",
                        "--local-root", root, "--out", str(tmp_path / "o"), "--json")
    assert code == 2 and json.loads(out)["error_type"] == "InvalidKey"
    assert not (tmp_path / "o").exists()
    code, out, _ = _run("get", "missing", "--tenant", "acibadem", "--country", "TR",
                        "--mechanism", "kvkk_standard_contract", "--local-root", root,
                        "--out", str(tmp_path / "o"), "--json")
    assert code == 1 and json.loads(out)["error_type"] == "ObjectNotFound"
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.part"))


def test_cloud_provider_without_local_root_needs_its_backend(tmp_path: Path) -> None:
    code, out, _ = _run("ls", "--tenant", "c", "--country", "DE", "--provider", "local",
                        "--json")
    assert code == 2 and "local_root" in json.loads(out)["error"]


def test_show_storage_records_blocked_and_allowed_copies(tmp_path: Path) -> None:
    res = rs.Residency.load()
    summary = DemoSummary()
    show_storage(res, summary, quiet=True, root=tmp_path / "demo")
    section = summary.sections["storage"]
    stored = {o["tenant"]: o for o in section["objects"]}
    assert set(stored) == {"charite-berlin", "mayo-rochester", "acibadem-istanbul"}
    assert all(o["read_back_ok"] and o["encryption"] == "local:aes-256-gcm"
               for o in stored.values())
    assert [r["tenant"] for r in section["refused"]] == ["ankara-clinic"]
    transfers = {t["to"]: t for t in section["transfers"]}
    assert transfers["US"]["allowed"] is False
    assert transfers["US"]["present_at_destination"] is False
    assert transfers["GB"]["allowed"] is True
    assert transfers["GB"]["present_at_destination"] is True
    us_bucket = tmp_path / "demo" / "US" / "residency-us-local-data"
    assert (us_bucket / "tenants" / "mayo-rochester").is_dir()  # US tenants live there
    assert not (us_bucket / "tenants" / "charite-berlin").exists()  # nothing was copied
