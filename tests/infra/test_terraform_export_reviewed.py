"""The Terraform export is exactly the configuration that was reviewed, attribute by attribute.

Every attribute the export writes for a provider is a control somebody relies on: the key's
rotation and deletion window, the vault's purge protection, the account's minimum TLS
version and disabled shared keys, the bucket's public-access block, the audit container's
immutability period, the lifecycle rules that delete expired and noncurrent versions... A
renamed attribute is silently ignored or rejected by Terraform, a changed value weakens the
control, and Checkov (``test_infra_checkov.py``) checks only the subset it has policies for,
when it is installed.

So the rendered export of the default map's DE location (all three clouds, with a GCP
project and an Azure encryption scope) is compared, resource by resource, with
``reviewed/terraform-default-DE.json``. A deliberate change to the export must update that
file in the same change, where the reviewer sees the difference::

    python -c "import json; from residency_sdk.infra import build_plan; \\
    from residency_sdk.infra.terraform import render; \\
    from residency_sdk.regionmap import load_region_map; \\
    print(json.dumps(render(build_plan(load_region_map(), 'DE')), indent=2, sort_keys=True))" \\
    > tests/infra/reviewed/terraform-default-DE.json

The branches the default map does not take (no GCP project in the key path, no Azure
encryption scope) are asserted with their expected values written out below.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from residency_sdk.infra import build_plan
from residency_sdk.infra.plan import InfraPlan
from residency_sdk.infra.terraform import render, write
from residency_sdk.regionmap import load_region_map

REVIEWED = Path(__file__).parent / "reviewed" / "terraform-default-DE.json"
FILES = ["main.tf.json", "outputs.tf.json", "variables.tf.json", "versions.tf.json"]


def _reviewed() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(REVIEWED.read_text(encoding="utf-8"))
    return doc


def _rendered(plan: InfraPlan) -> dict[str, Any]:
    # Through JSON, as Terraform reads it (tuples become lists).
    doc: dict[str, Any] = json.loads(json.dumps(render(plan)))
    return doc


def _differences(want: Any, got: Any, path: str = "") -> list[str]:
    """Where ``got`` differs from ``want`` (JSON paths), compactly: pytest's own diff of
    two large documents takes minutes."""
    if isinstance(want, dict) and isinstance(got, dict):
        out = [f"{path}.{k}: missing" for k in want if k not in got]
        out += [f"{path}.{k}: unexpected" for k in got if k not in want]
        for k in want:
            if k in got:
                out += _differences(want[k], got[k], f"{path}.{k}")
        return out
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        return [d for i, (w, g) in enumerate(zip(want, got, strict=True))
                for d in _differences(w, g, f"{path}[{i}]")]
    return [] if want == got and type(want) is type(got) else [
        f"{path}: {got!r:.200} instead of the reviewed {want!r:.200}"]


def _assert_same(want: Any, got: Any, what: str) -> None:
    found = _differences(want, got)
    if found:
        pytest.fail(f"{what} differs from the reviewed export: " + "; ".join(found[:10]),
                    pytrace=False)


def _de() -> InfraPlan:
    return build_plan(load_region_map(), "DE")


def _replace_provider(plan: InfraPlan, provider: str, **changes: Any) -> InfraPlan:
    providers = tuple(dataclasses.replace(p, **changes) if p.provider == provider else p
                      for p in plan.providers)
    return dataclasses.replace(plan, providers=providers)


def test_the_reviewed_file_is_the_de_export_of_all_three_clouds() -> None:
    reviewed = _reviewed()
    assert sorted(reviewed) == FILES
    resources = reviewed["main.tf.json"]["resource"]
    for key_type in ("aws_kms_key", "google_kms_crypto_key", "azurerm_key_vault_key"):
        assert list(resources[key_type]) == ["key" if "azurerm" not in key_type else "cmk"]
    backends = reviewed["outputs.tf.json"]["output"]["residency"]["value"]["backends"]
    assert sorted(backends) == ["aws", "azure", "gcp"]


@pytest.mark.parametrize("provider_prefix", ["aws_", "google_", "azurerm_"])
def test_terraform_export_resources_are_exactly_the_reviewed_configuration(
        provider_prefix: str) -> None:
    want = _reviewed()["main.tf.json"]["resource"]
    got = _rendered(_de())["main.tf.json"]["resource"]
    types = sorted(t for t in {*want, *got} if t.startswith(provider_prefix))
    assert types, provider_prefix
    for rtype in types:
        _assert_same(want.get(rtype), got.get(rtype), rtype)


def test_terraform_export_outputs_name_the_reviewed_buckets_keys_and_scope() -> None:
    got = _rendered(_de())
    want = _reviewed()
    _assert_same(want["outputs.tf.json"], got["outputs.tf.json"], "outputs.tf.json")
    backends = got["outputs.tf.json"]["output"]["residency"]["value"]["backends"]
    # What `residency infra outputs` hands the SDK: the key each adapter must see.
    assert backends["aws"]["kms_key"] == "alias/residency-de"
    assert backends["gcp"]["kms_key"] == (
        "projects/residency-de/locations/europe-west3/keyRings/residency/cryptoKeys/data")
    assert backends["azure"]["kms_key"] == "${azurerm_key_vault_key.cmk.versionless_id}"
    assert backends["azure"]["encryption_scope"] == "residency-de-cmk"


def test_terraform_export_whole_documents_are_the_reviewed_ones(tmp_path: Path) -> None:
    written = write(_de(), tmp_path)
    assert sorted(p.name for p in written) == FILES
    reviewed = _reviewed()
    for path in written:
        _assert_same(reviewed[path.name], json.loads(path.read_text(encoding="utf-8")),
                     path.name)


def test_azure_export_without_an_encryption_scope_leaves_the_container_on_the_account_key(
        ) -> None:
    plan = _replace_provider(_de(), "azure", encryption_scope=None)
    got = _rendered(plan)
    resources = got["main.tf.json"]["resource"]
    assert "azurerm_storage_encryption_scope" not in resources
    assert resources["azurerm_storage_container"]["data"] == {
        "name": resources["azurerm_storage_container"]["data"]["name"],
        "storage_account_id": "${azurerm_storage_account.account.id}",
        "container_access_type": "private"}
    # The account still encrypts with the customer-managed key.
    assert resources["azurerm_storage_account_customer_managed_key"]["cmk"] == {
        "storage_account_id": "${azurerm_storage_account.account.id}",
        "key_vault_id": "${azurerm_key_vault.vault.id}",
        "key_name": "${azurerm_key_vault_key.cmk.name}",
        "user_assigned_identity_id": "${azurerm_user_assigned_identity.storage.id}"}
    azure = got["outputs.tf.json"]["output"]["residency"]["value"]["backends"]["azure"]
    assert azure["encryption_scope"] is None


def test_azure_export_with_an_encryption_scope_pins_the_data_container_to_it() -> None:
    resources = _rendered(_de())["main.tf.json"]["resource"]
    assert resources["azurerm_storage_encryption_scope"] == {"scope": {
        "name": "residency-de-cmk",
        "storage_account_id": "${azurerm_storage_account.account.id}",
        "source": "Microsoft.KeyVault",
        "key_vault_key_id": "${azurerm_key_vault_key.cmk.versionless_id}",
        "infrastructure_encryption_required": True}}
    data = resources["azurerm_storage_container"]["data"]
    assert data["default_encryption_scope"] == "${azurerm_storage_encryption_scope.scope.name}"
    assert data["encryption_scope_override_enabled"] is False


def test_gcp_export_without_a_project_in_the_key_path_reports_the_key_by_its_terraform_id(
        ) -> None:
    plan = _de()
    gcp = next(p for p in plan.providers if p.provider == "gcp")
    plan = _replace_provider(plan, "gcp", key=dataclasses.replace(gcp.key, project=None))
    got = _rendered(plan)
    backend = got["outputs.tf.json"]["output"]["residency"]["value"]["backends"]["gcp"]
    assert backend["kms_key"] == "${google_kms_crypto_key.key.id}"
    assert "default" not in got["variables.tf.json"]["variable"]["gcp_project"]
    # The resources themselves do not depend on the project: they use the variable.
    want = _reviewed()["main.tf.json"]["resource"]
    for rtype, bodies in got["main.tf.json"]["resource"].items():
        if rtype.startswith("google_"):
            _assert_same(want[rtype], bodies, rtype)


def test_gcp_export_names_the_key_path_of_the_map_when_it_has_a_project() -> None:
    backend = _rendered(_de())["outputs.tf.json"]["output"]["residency"]["value"][
        "backends"]["gcp"]
    assert backend == {
        "region": "europe-west3", "failover_region": "europe-west10", "country": "DE",
        "bucket": backend["bucket"], "audit_bucket": backend["audit_bucket"],
        "kms_key": "projects/residency-de/locations/europe-west3/keyRings/residency"
                   "/cryptoKeys/data"}
    assert backend["bucket"] != backend["audit_bucket"]
