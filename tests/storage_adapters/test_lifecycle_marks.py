"""The lifecycle rules of the infra plan select the objects the storage facade writes.

For each cloud, an object stored with a retention category is read back from the emulator
through the provider's own API (S3 GetObjectTagging, Azure Get Blob Tags, GCS customTime),
and the lifecycle rules of the Terraform export of the infra plan for that location are
evaluated against what the emulator reports: exactly the category's rule selects the
object, with the category's period; an object without a category is selected by none.
"""

from __future__ import annotations

import io
import math
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import residency_sdk as rs
from residency_sdk.errors import StorageError, UnknownRetentionCategory
from residency_sdk.infra import terraform
from residency_sdk.infra.plan import build_plan
from residency_sdk.lifecycle import TAG_KEY

CLOUDS = ["aws", "gcp", "azure"]
LOCATION = "DE"
CATEGORY = "imaging_upload"


def _tenant() -> rs.Tenant:
    return rs.Tenant(id=f"t-{uuid.uuid4().hex[:10]}", country="DE")


@pytest.fixture
def tenant_store(provider_harness: Any, tmp_path: Path) -> Iterator[Any]:
    """A fresh tenant's store; its objects are deleted afterwards, since the emulator
    buckets are shared by the session (a retention sweep elsewhere would see them)."""
    res = provider_harness.residency(tmp_path)
    store = res.storage_for(_tenant(), provider=provider_harness.provider)
    try:
        yield res, store
    finally:
        for obj in list(store.list()):
            store.delete(obj.key)
        res.close()


def _main_tf(res: rs.Residency) -> dict[str, Any]:
    main: dict[str, Any] = terraform.render(build_plan(res.map, LOCATION))["main.tf.json"]
    return main["resource"]


def _reported_marks(harness: Any, target: Any, key: str) -> dict[str, Any]:
    """What the emulator itself reports: tags (S3, Azure) or custom time (GCS)."""
    if harness.provider == "aws":
        s3 = harness.aws_client("s3", target.region)
        tag_set = s3.get_object_tagging(Bucket=target.bucket, Key=key)["TagSet"]
        return {"tags": {t["Key"]: t["Value"] for t in tag_set}}
    if harness.provider == "azure":
        from azure.storage.blob import BlobServiceClient
        from emulators import azurite_connection_string

        port = harness.emulators.get("azure").port
        with BlobServiceClient.from_connection_string(azurite_connection_string(port)) as svc:
            return {"tags": svc.get_blob_client(target.bucket, key).get_blob_tags(),
                    "path": f"{target.bucket}/{key}"}
    blob = harness.gcs_client().bucket(target.bucket).get_blob(key)
    return {"custom_time": blob.custom_time}


def _selecting_rules(provider: str, resources: dict[str, Any], marks: dict[str, Any],
                     bucket: str) -> list[dict[str, Any]]:
    """The data bucket's expiry rules of the Terraform export that select an object with
    ``marks`` (rules deleting current versions only)."""
    if provider == "aws":
        rules = resources["aws_s3_bucket_lifecycle_configuration"]["data"]["rule"]
        assert resources["aws_s3_bucket"]["data"]["bucket"] == bucket
        selected = []
        for rule in rules:
            if "expiration" not in rule:
                continue
            (flt,) = rule["filter"]
            if "tag" in flt:
                (tag,) = flt["tag"]
                if marks["tags"].get(tag["key"]) == tag["value"]:
                    selected.append(rule)
            elif flt.get("prefix") == "":
                selected.append(rule)
        return selected
    if provider == "azure":
        rules = resources["azurerm_storage_management_policy"]["lifecycle"]["rule"]
        selected = []
        for rule in rules:
            (flt,) = rule["filters"]
            (action,) = rule["actions"]
            if "base_blob" not in action or not any(
                    marks["path"].startswith(p) for p in flt["prefix_match"]):
                continue
            if all(marks["tags"].get(m["name"]) == m["value"] and m["operation"] == "=="
                   for m in flt.get("match_blob_index_tag", [])):
                selected.append(rule)
        return selected
    body = resources["google_storage_bucket"]["data"]
    assert body["name"] == bucket
    custom_time = marks["custom_time"]
    selected = []
    for rule in body["lifecycle_rule"]:
        (condition,) = rule["condition"]
        if "with_state" in condition:  # noncurrent versions only
            continue
        if "days_since_custom_time" in condition and custom_time is not None:
            selected.append(rule)
        elif set(condition) - {"days_since_custom_time"}:
            selected.append(rule)  # anything else would select by age: must not exist
    return selected


def _expiry_days(provider: str, rule: dict[str, Any], marks: dict[str, Any],
                 created: Any) -> float:
    """Days after creation at which ``rule`` deletes the object."""
    if provider == "aws":
        return float(rule["expiration"][0]["days"])
    if provider == "azure":
        (action,) = rule["actions"]
        return float(action["base_blob"][0]["delete_after_days_since_creation_greater_than"])
    (condition,) = rule["condition"]
    eligible = marks["custom_time"] + timedelta(days=condition["days_since_custom_time"])
    return (eligible - created) / timedelta(days=1)


@pytest.mark.parametrize("provider_harness", CLOUDS, indirect=True)
def test_lifecycle_rule_of_the_plan_selects_what_the_facade_wrote(
        provider_harness: Any, tenant_store: Any) -> None:
    provider = provider_harness.provider
    res, store = tenant_store
    period = res.map.locations[LOCATION].retention[CATEGORY].period
    tagged = store.put("scan.dcm", b"pixels", data_class="phi", category=CATEGORY)
    plain = store.put("notes.txt", b"keep", data_class="phi")
    assert tagged.category == CATEGORY and plain.category is None
    assert tagged.expires_at == tagged.created_at + period
    resources = _main_tf(res)
    target = store.target

    marks = _reported_marks(provider_harness, target, tagged.stored_key)
    if provider != "gcp":
        assert marks["tags"] == {TAG_KEY: CATEGORY}
    (rule,) = _selecting_rules(provider, resources, marks, target.bucket)
    days = _expiry_days(provider, rule, marks, tagged.created_at)
    if provider == "gcp":
        # The custom time puts the rule's start exactly at the retention expiry.
        assert abs(days - period / timedelta(days=1)) < 1 / 86400
    else:
        assert days == max(1, math.ceil(period / timedelta(hours=24)))

    unmarked = _reported_marks(provider_harness, target, plain.stored_key)
    assert unmarked.get("tags", {}) == {} and unmarked.get("custom_time") is None
    assert _selecting_rules(provider, resources, unmarked, target.bucket) == []


@pytest.mark.parametrize("provider_harness", CLOUDS, indirect=True)
def test_streamed_block_uploads_carry_the_marks_too(provider_harness: Any,
                                                    tmp_path: Path) -> None:
    """Multipart (S3), resumable (GCS) and block (Azure) uploads are marked like small
    ones: the mark is part of the upload request, not a call made afterwards."""
    from residency_sdk.marks import EXPIRES_META

    provider = provider_harness.provider
    target = provider_harness.target(provider_harness.write_map(tmp_path), LOCATION)
    size = 5 * 1024 * 1024 + 17
    if provider == "aws":
        from residency_sdk.storage.s3 import S3Store

        adapter: Any = S3Store(target, chunk_size=5 * 1024 * 1024,
                               multipart_threshold=5 * 1024 * 1024)
    elif provider == "gcp":
        from residency_sdk.storage.gcs import GCSStore

        adapter = GCSStore(target, chunk_size=1024 * 1024, multipart_threshold=1024 * 1024)
    else:
        from residency_sdk.storage.azure import AzureStore

        adapter = AzureStore(target, chunk_size=1024 * 1024, multipart_threshold=1024 * 1024)
    key = f"lifecycle/{uuid.uuid4().hex}.bin"
    meta = {"category": CATEGORY, EXPIRES_META: "2031-05-06T07:08:09+00:00"}
    try:
        adapter.put(key, io.BytesIO(b"x" * size), metadata=meta)
        marks = _reported_marks(provider_harness, target, key)
        if provider == "gcp":
            assert marks["custom_time"].isoformat() == "2031-05-05T07:08:09+00:00"
        else:
            assert marks["tags"] == {TAG_KEY: CATEGORY}
    finally:
        adapter.delete(key)
        adapter.close()


@pytest.mark.parametrize("provider_harness", CLOUDS, indirect=True)
def test_held_objects_get_no_mark_so_no_cloud_rule_deletes_them(
        provider_harness: Any, tenant_store: Any) -> None:
    provider = provider_harness.provider
    res, store = tenant_store
    held = store.put("case/ct.dcm", b"pixels", category=CATEGORY,
                     metadata={"legal_hold": "true"})
    assert held.category == CATEGORY  # the sweep still knows what it is (and skips it)
    marks = _reported_marks(provider_harness, store.target, held.stored_key)
    assert marks.get("tags", {}) == {} and marks.get("custom_time") is None
    assert _selecting_rules(provider, _main_tf(res), marks, store.target.bucket) == []


@pytest.mark.parametrize("provider_harness", ["local", *CLOUDS], indirect=True)
def test_unknown_category_is_refused_before_any_byte_is_sent(
        provider_harness: Any, tenant_store: Any) -> None:
    _, store = tenant_store
    for bad in ("imaging", "report", "IMAGING_UPLOAD"):
        with pytest.raises(UnknownRetentionCategory, match=f"{bad!r}.*imaging_upload"):
            store.put("scan.dcm", b"pixels", category=bad)
        with pytest.raises(UnknownRetentionCategory):
            store.put("scan.dcm", b"pixels", metadata={"category": bad})
    with pytest.raises(StorageError, match="given twice"):
        store.put("scan.dcm", b"pixels", category=CATEGORY, metadata={"category": "x"})
    assert not store.exists("scan.dcm")
    # The metadata form is the same write as the argument form.
    via_meta = store.put("scan.dcm", b"pixels", metadata={"category": CATEGORY})
    assert via_meta.category == CATEGORY and via_meta.expires_at is not None



def test_cli_put_takes_the_category_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from residency_sdk.cli.app import app

    runner = CliRunner()
    who = ["--tenant", "charite", "--country", "DE", "--local-root", str(tmp_path / "root")]
    ok = runner.invoke(app, ["put", "up/ct.dcm", "-", *who, "--category", CATEGORY, "--json"],
                       input=b"pixels")
    assert ok.exit_code == 0, ok.stdout
    meta = json.loads(ok.stdout)["object"]["metadata"]
    assert meta["category"] == CATEGORY and meta["residency_expires_at"]
    bad = runner.invoke(app, ["put", "up/x.dcm", "-", *who, "--category", "imaging",
                              "--json"], input=b"pixels")
    assert bad.exit_code == 2
    assert json.loads(bad.stdout)["error_type"] == "UnknownRetentionCategory"
