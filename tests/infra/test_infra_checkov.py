"""Checkov on the Terraform export of every location: no failed check outside the
documented skip list (residency_sdk/infra/checkov_skips.py, docs/infra.md)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from components import missing

from residency_sdk.infra import build_plan
from residency_sdk.infra.checkov_skips import CHECKOV_SKIPS, unexpected_failures
from residency_sdk.infra.terraform import write
from residency_sdk.regionmap import load_region_map

ROOT = Path(__file__).resolve().parents[2]
CHECKOV = ROOT / ".checkov-venv" / "bin" / "checkov"
DEFAULT_MAP = load_region_map()


def checkov(root: Path, files: list[str]) -> dict[str, Any]:
    """One Checkov run over ``files`` (relative to ``root``); ~5 s however many files."""
    if not CHECKOV.exists():
        missing(f"checkov is not installed at {CHECKOV}",
                "run scripts/test.sh (it creates .checkov-venv)")
    proc = subprocess.run(
        [str(CHECKOV), "-f", *files, "--framework", "terraform_json", "--skip-download",
         "-o", "json"],
        cwd=root, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    report = report[0] if isinstance(report, list) else report
    assert report["summary"]["parsing_errors"] == 0, proc.stderr[-2000:]
    return report


def results(report: dict[str, Any], kind: str, loc: str) -> list[dict[str, Any]]:
    return [r for r in report["results"][kind] if r["file_path"] == f"/{loc}/main.tf.json"]


def failures(entries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(f["check_id"], f["resource"]) for f in entries]


@pytest.fixture(scope="module")
def export_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The export of every location of the default map, with every location guardrail
    rendered (SCP + attachment, org policy, policy assignment), all scanned in one run."""
    root = tmp_path_factory.mktemp("tf-export")
    for loc in DEFAULT_MAP.locations:
        write(build_plan(DEFAULT_MAP, loc, aws_org_target="ou-ab12-cdefgh34",
                         gcp_folder="123456789012"), root / loc)
        resources = json.loads((root / loc / "main.tf.json").read_text())["resource"]
        assert {"aws_organizations_policy", "aws_organizations_policy_attachment",
                "google_org_policy_policy", "azurerm_resource_group_policy_assignment"} \
            <= set(resources)
    return checkov(root, [f"{loc}/main.tf.json" for loc in DEFAULT_MAP.locations])


@pytest.mark.parametrize("loc", sorted(DEFAULT_MAP.locations))
def test_checkov_has_no_failed_check_outside_the_documented_skips(
        loc: str, export_report: dict[str, Any]) -> None:
    passed = {p["check_id"] for p in results(export_report, "passed_checks", loc)}
    assert len(passed) >= 50  # it really evaluated this location's resources
    assert unexpected_failures(failures(results(export_report, "failed_checks", loc))) == []
    # the checks the issue names as must-pass for residency storage
    assert {"CKV_AWS_145", "CKV_AWS_7", "CKV2_AWS_6", "CKV_AWS_21", "CKV2_AWS_61",
            "CKV2_AWS_64", "CKV_GCP_29", "CKV_GCP_114", "CKV_AZURE_44", "CKV_AZURE_3",
            "CKV_AZURE_190", "CKV_AZURE_59", "CKV2_AZURE_1", "CKV2_AZURE_38",
            "CKV2_AZURE_40"} <= passed


def test_checkov_catches_a_weakened_export(tmp_path: Path) -> None:
    """The gate can fail: drop the SSE config and KMS rotation and Checkov says so."""
    write(build_plan(DEFAULT_MAP, "DE"), tmp_path / "DE")
    main = tmp_path / "DE" / "main.tf.json"
    doc = json.loads(main.read_text())
    del doc["resource"]["aws_s3_bucket_server_side_encryption_configuration"]
    doc["resource"]["aws_kms_key"]["key"]["enable_key_rotation"] = False
    main.write_text(json.dumps(doc))
    report = checkov(tmp_path, ["DE/main.tf.json"])
    bad = {cid for cid, _ in unexpected_failures(failures(results(report, "failed_checks",
                                                                  "DE")))}
    assert {"CKV_AWS_145", "CKV_AWS_7"} <= bad


def test_every_skip_is_documented_with_its_reason() -> None:
    doc = (ROOT / "docs" / "infra.md").read_text()
    for skip in CHECKOV_SKIPS:
        assert skip.check_id in doc, f"{skip.check_id} missing from docs/infra.md"
        assert len(skip.reason) > 40
