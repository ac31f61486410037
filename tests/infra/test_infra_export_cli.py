"""`residency infra plan|export|outputs` and the Terraform JSON they write."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from residency_sdk.cli.app import app
from residency_sdk.infra import build_plan
from residency_sdk.infra.documents import aws_bucket_policy
from residency_sdk.infra.terraform import render
from residency_sdk.regionmap import load_region_map

runner = CliRunner()
DEFAULT_MAP = load_region_map()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout


def test_plan_json_lists_resources_of_the_location() -> None:
    code, out = invoke("infra", "plan", "--location", "DE", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["ok"] is True and data["plan"]["location"] == "DE"
    buckets = {r["name"] for r in data["resources"] if r["kind"] == "bucket"}
    assert "residency-de-aws-data" in buckets and "residency-de-azure-audit" in buckets
    assert {r["region"] for r in data["resources"] if r["provider"] == "gcp"} == {"europe-west3"}


def test_plan_table_and_refusals_exit_1_with_the_reason() -> None:
    code, out = invoke("infra", "plan", "--location", "us")
    assert code == 0 and "residency-us-aws-data" in out
    code, out = invoke("infra", "plan", "--location", "DE", "--azure-redundancy", "GZRS", "--json")
    assert code == 1
    data = json.loads(out)
    assert data["error_type"] == "InfraCrossesBorder" and "GZRS" in data["error"]
    code, out = invoke("infra", "plan", "--location", "XX", "--json")
    assert code == 2 and json.loads(out)["error_type"] == "InfraError"


def test_export_terraform_writes_the_same_plan(tmp_path: Path) -> None:
    code, out = invoke("infra", "export", "--location", "FR", "--format", "terraform",
                       "--out", str(tmp_path), "--json")
    assert code == 0, out
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "main.tf.json", "outputs.tf.json", "variables.tf.json", "versions.tf.json"]
    main = json.loads((tmp_path / "main.tf.json").read_text())
    plan = build_plan(DEFAULT_MAP, "FR")
    res = main["resource"]
    assert res["aws_s3_bucket"]["data"]["bucket"] == plan.provider("aws").data.name
    assert {r["region"] for t, rs in res.items() if t.startswith("aws_") and t != "aws_kms_alias"
            for r in rs.values()} == {"eu-west-3"}
    assert res["google_storage_bucket"]["data"]["location"] == "EUROPE-WEST9"
    assert res["azurerm_storage_account"]["account"]["account_replication_type"] == "ZRS"
    assert res["azurerm_storage_account"]["account"]["min_tls_version"] == "TLS1_2"
    lock = res["aws_s3_bucket_object_lock_configuration"]["audit"]["rule"][0]
    assert lock["default_retention"] == [{"mode": "COMPLIANCE", "days": 2192}]
    # the very bucket policy the Pulumi program registers, with a Terraform reference
    assert json.loads(res["aws_s3_bucket_policy"]["data"]["policy"]) == aws_bucket_policy(
        "${aws_s3_bucket.data.arn}")
    outputs = json.loads((tmp_path / "outputs.tf.json").read_text())
    assert outputs["output"]["residency"]["value"]["backends"]["gcp"]["kms_key"] == \
        DEFAULT_MAP.locations["FR"].backends["gcp"].kms_key


def test_export_pulumi_stack_for_a_new_location(tmp_path: Path) -> None:
    overlay = tmp_path / "in.yaml"
    overlay.write_text("""
version: 1
name: with-india
extends: default
locations:
  IN:
    name: India
    default_provider: azure
    backends:
      azure: {region: centralindia, account: residencyin}
""")
    code, out = invoke("infra", "export", "-l", "IN", "--format", "pulumi-stack",
                       "--out", str(tmp_path), "--map", str(overlay))
    assert code == 0, out
    config = yaml.safe_load((tmp_path / "Pulumi.in.yaml").read_text())["config"]
    assert config == {"residency:location": "IN", "residency:map": str(overlay.resolve()),
                      "azure-native:location": "centralindia"}


def test_outputs_become_an_overlay_the_sdk_loads(tmp_path: Path) -> None:
    tf_outputs = render(build_plan(DEFAULT_MAP, "GB"))["outputs.tf.json"]["output"]
    value = tf_outputs["residency"]["value"]
    value["backends"].pop("azure")  # its key id is a Terraform reference until applied
    value["backends"]["aws"]["bucket"] = "residency-gb-aws-data-v2"
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"residency": {"value": value, "type": "object"}}))
    target = tmp_path / "deployed.yaml"
    code, out = invoke("infra", "outputs", str(outputs), "--out", str(target))
    assert code == 0, out
    deployed = load_region_map(target)
    assert deployed.locations["GB"].backends["aws"].bucket == "residency-gb-aws-data-v2"
    assert deployed.locations["GB"].backends["gcp"] == DEFAULT_MAP.locations["GB"].backends["gcp"]


def test_outputs_refuse_unapplied_or_foreign_files(tmp_path: Path) -> None:
    tf_outputs = render(build_plan(DEFAULT_MAP, "GB"))["outputs.tf.json"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(tf_outputs))  # the .tf.json file itself, not `output -json`
    code, out = invoke("infra", "outputs", str(bad), "--json")
    assert code == 2 and "no `residency` output" in json.loads(out)["error"]
    value = tf_outputs["output"]["residency"]["value"]
    value["backends"]["gcp"]["kms_key"] = "${google_kms_crypto_key.key.id}"
    bad.write_text(json.dumps({"residency": {"value": value}}))
    code, out = invoke("infra", "outputs", str(bad), "--json")
    assert code == 2 and "terraform apply" in json.loads(out)["error"]
    bad.write_text("{not json")
    code, out = invoke("infra", "outputs", str(bad), "--json")
    assert code == 2 and "not JSON" in json.loads(out)["error"]
    bad.write_text(json.dumps({"something": 1}))
    code, out = invoke("infra", "outputs", str(bad), "--json")
    assert code == 2 and "no `residency` output" in json.loads(out)["error"]
    abroad = {"residency": {"location": "DE", "map": "default", "backends": {
        "aws": {"region": "us-east-1", "bucket": "residency-de-aws-data"}}}}
    bad.write_text(json.dumps(abroad))
    code, out = invoke("infra", "outputs", str(bad), "--json")
    assert code == 2 and "never crosses a border" in json.loads(out)["error"]
    code, out = invoke("infra", "outputs", str(tmp_path / "missing.json"), "--json")
    assert code == 2 and "cannot read" in json.loads(out)["error"]
