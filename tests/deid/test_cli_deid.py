"""``residency deid``, ``residency deid check``, ``residency export`` and
``residency put --evidence`` (issue 17)."""

from __future__ import annotations

import json
from pathlib import Path

from facade_dicom import PATIENT_NAME, burned_in_capture, read, sample, study
from typer.testing import CliRunner

import residency_sdk as rs
from residency_sdk.cli.app import app
from residency_sdk.deid import Evidence, check_dicom
from residency_sdk.storage.keys import tenant_prefix

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout


def _who(root: Path) -> tuple[str, ...]:
    return ("--tenant", "charite", "--country", "DE", "--local-root", str(root))


def test_deid_writes_deidentified_files_with_their_evidence(tmp_path: Path) -> None:
    src = tmp_path / "in"
    (src / "series").mkdir(parents=True)
    originals = study(2)
    for i, data in enumerate(originals):
        (src / "series" / f"{i}.dcm").write_bytes(data)
    (src / "ct.dcm").write_bytes(sample())
    out = tmp_path / "out"
    root = tmp_path / "root"
    code, stdout = _run("deid", str(src / "series"), str(src / "ct.dcm"), "--out", str(out),
                        *_who(root), "--json")
    assert code == 0, stdout
    body = json.loads(stdout)
    assert body["ok"] and body["key_id"].startswith("deid-de-")
    assert [Path(f["output"]).relative_to(out).as_posix() for f in body["files"]] == [
        "series/0.dcm", "series/1.dcm", "ct.dcm"]
    for entry in body["files"]:
        data = Path(entry["output"]).read_bytes()
        evidence = Evidence.model_validate_json(Path(entry["evidence"]).read_bytes())
        assert check_dicom(data, evidence=evidence).ok
        assert evidence.digest() == entry["evidence_digest"] and evidence.tenant_id == "charite"
        assert PATIENT_NAME.encode() not in data
    # The tenant's key came from its location: a second run maps the study the same way.
    code, stdout = _run("deid", str(src / "series"), "--out", str(tmp_path / "again"),
                        *_who(root), "--json")
    assert code == 0, stdout
    first = read((out / "series" / "0.dcm").read_bytes()).StudyInstanceUID
    assert read((tmp_path / "again" / "series" / "0.dcm").read_bytes()).StudyInstanceUID \
        == first
    # Outputs are not overwritten by accident.
    code, stdout = _run("deid", str(src / "ct.dcm"), "--out", str(out), *_who(root), "--json")
    assert code == 1 and "pass --force" in json.loads(stdout)["error"]


def test_deid_refuses_burned_in_images_unless_pixels_are_declared_clean(
        tmp_path: Path) -> None:
    capture = tmp_path / "capture.dcm"
    capture.write_bytes(burned_in_capture())
    root = tmp_path / "root"
    code, stdout = _run("deid", str(capture), "--out", str(tmp_path / "out"), *_who(root),
                        "--json")
    assert code == 1
    [entry] = json.loads(stdout)["files"]
    assert entry["error_type"] == "DeidentificationRefused"
    assert not (tmp_path / "out" / "capture.dcm").exists()
    code, stdout = _run("deid", str(capture), "--out", str(tmp_path / "out"), *_who(root),
                        "--pixels-cleaned", "--json")
    assert code == 0, stdout
    code, stdout = _run("deid", str(capture), "--out", str(tmp_path / "o2"), *_who(root),
                        "--option", "blur_faces")
    assert code == 2


def test_deid_check_names_the_attributes_that_fail(tmp_path: Path) -> None:
    original = tmp_path / "ct.dcm"
    original.write_bytes(sample())
    code, stdout = _run("deid", "check", str(original), "--json")
    assert code == 1
    [verdict] = json.loads(stdout)["files"]
    assert not verdict["ok"] and {"PatientName", "PatientID"} <= set(verdict["found"])
    assert any(p.startswith("PatientIdentityRemoved (0012,0062)") for p in verdict["problems"])
    code, text = _run("deid", "check", str(original))
    assert code == 1 and "FAIL" in text and "PatientName (0010,0010)" in text
    assert "private attribute(s) carry values" in text
    out = tmp_path / "out"
    code, _ = _run("deid", str(original), "--out", str(out), *_who(tmp_path / "root"))
    assert code == 0
    code, stdout = _run("deid", "check", str(out), "--json")
    assert code == 0 and json.loads(stdout)["ok"]
    # Evidence beside a file must be about exactly its bytes.
    tampered = out / "ct.dcm"
    tampered.write_bytes(tampered.read_bytes() + b"\x00\x00")
    code, stdout = _run("deid", "check", str(tampered), "--json")
    assert code == 1
    assert any("other bytes" in p for p in json.loads(stdout)["files"][0]["problems"])
    # A non-DICOM file passes only with evidence.
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"aggregate only")
    code, stdout = _run("deid", "check", str(notes), "--json")
    assert code == 1 and not json.loads(stdout)["files"][0]["dicom"]


def test_put_with_evidence_then_export_from_the_command_line(tmp_path: Path) -> None:
    root = tmp_path / "root"
    src = tmp_path / "scan.dcm"
    src.write_bytes(study(1)[0])
    code, _ = _run("deid", str(src), "--out", str(tmp_path / "out"), *_who(root))
    assert code == 0
    deid_file = tmp_path / "out" / "scan.dcm"
    code, stdout = _run("put", "deid/scan.dcm", str(deid_file), *_who(root),
                        "--data-class", "anonymised", "--evidence",
                        str(tmp_path / "out" / "scan.dcm.evidence.json"), "--json")
    assert code == 0, stdout
    assert json.loads(stdout)["object"]["data_class"] == "anonymised"
    code, stdout = _run("put", "raw/scan.dcm", str(src), *_who(root),
                        "--data-class", "anonymised", "--json")
    assert code == 0 and json.loads(stdout)["object"]["data_class"] == "phi"
    code, stdout = _run("export", "raw/scan.dcm", *_who(root), "--to", "US", "--json")
    assert code == 0, stdout
    [item] = json.loads(stdout)["export"]["objects"]
    assert (item["source_key"], item["copy_key"], item["destination"]) == (
        "raw/scan.dcm", "deid/raw/scan.dcm", "US")
    res = rs.Residency.load(local_root=root, audit=False, audit_off_reason="test listing")
    us = res.store(res.backend("US"), "US")
    prefix = tenant_prefix("charite")
    assert [i.key for i in us.list(prefix)] == [f"{prefix}deid/raw/scan.dcm"]
    res.close()
    code, stdout = _run("export", "raw/scan.dcm", *_who(root), "--to", "MARS", "--json")
    assert code == 2 and json.loads(stdout)["error_type"] == "UnknownLocation"
