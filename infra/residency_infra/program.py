"""The Pulumi program: the stack name (or ``residency:location``) picks the location, the
region map's plan for it picks everything else: storage per provider, and the clouds' own
location guardrails (:mod:`residency_infra.guardrails`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pulumi

from residency_infra.aws import AwsResidencyStorage
from residency_infra.azure import AzureResidencyStorage
from residency_infra.gcp import GcpResidencyStorage
from residency_infra.guardrails import LocationGuardrails
from residency_sdk.infra.plan import InfraPlan, build_plan
from residency_sdk.regionmap import load_region_map

PROJECT_DIR = Path(__file__).resolve().parent.parent


@dataclass
class Deployed:
    """What one run registered: the plan and the per-provider components."""

    plan: InfraPlan
    components: dict[str, pulumi.ComponentResource] = field(default_factory=dict)
    exports: dict[str, object] = field(default_factory=dict)
    guardrails: dict[str, dict[str, object]] = field(default_factory=dict)


def load_stack_plan() -> InfraPlan:
    """The plan for the current stack, from config ``residency:location`` (default: the
    stack name), ``residency:map`` (default: the packaged map),
    ``residency:azureRedundancy`` (ZRS or LRS), and the guardrails' attachment points
    ``residency:awsOrgTargetId`` (OU or member account) and ``residency:gcpFolderId``."""
    config = pulumi.Config("residency")
    location = config.get("location") or pulumi.get_stack()
    map_path = config.get("map")
    if map_path and not Path(map_path).is_absolute():
        map_path = str(PROJECT_DIR / map_path)
    region_map = load_region_map(map_path)
    return build_plan(region_map, location, azure_redundancy=config.get("azureRedundancy"),
                      aws_org_target=config.get("awsOrgTargetId"),
                      gcp_folder=config.get("gcpFolderId"))


def run(plan: InfraPlan | None = None) -> Deployed:
    """Register every resource of ``plan`` (default: the current stack's) and export the
    outputs ``residency infra outputs`` reads back."""
    plan = plan or load_stack_plan()
    deployed = Deployed(plan)
    backends: dict[str, pulumi.Output[dict[str, object]]] = {}
    for p in plan.providers:
        name = f"{plan.prefix}-{plan.location.lower()}-{p.provider}"
        common: dict[str, object] = {"region": p.region, "failover_region": p.failover_region,
                                     "country": p.country}
        if p.provider == "aws":
            aws_c = AwsResidencyStorage(name, p)
            backends["aws"] = _backend(common, bucket=aws_c.data.bucket,
                                       audit_bucket=aws_c.audit.bucket, kms_key=p.key.alias)
            deployed.components["aws"] = aws_c
        elif p.provider == "gcp":
            gcp_c = GcpResidencyStorage(name, p)
            backends["gcp"] = _backend(common, bucket=gcp_c.data.name,
                                       audit_bucket=gcp_c.audit.name, kms_key=gcp_c.key.id)
            deployed.components["gcp"] = gcp_c
        else:
            az_c = AzureResidencyStorage(name, p)
            backends["azure"] = _backend(
                common, account=az_c.account.name, bucket=az_c.data.name,
                audit_bucket=az_c.audit.name, kms_key=az_c.key.key_uri,
                encryption_scope=p.encryption_scope)
            deployed.components["azure"] = az_c
    azure = deployed.components.get("azure")
    deployed.components["guardrails"] = LocationGuardrails(
        f"{plan.prefix}-{plan.location.lower()}-guardrails", plan,
        azure_rg=azure.rg if isinstance(azure, AzureResidencyStorage) else None)
    deployed.exports = {"location": plan.location, "country": plan.country,
                        "map": plan.map_name, "regime": plan.regime, "backends": backends}
    deployed.guardrails = plan.guardrail_summary()
    pulumi.export("residency", deployed.exports)
    pulumi.export("guardrails", deployed.guardrails)
    return deployed


def _backend(common: dict[str, object],
             **values: pulumi.Input[str] | None) -> pulumi.Output[dict[str, object]]:
    """One backend's output record: fixed plan values plus resolved resource outputs."""
    return pulumi.Output.all(**{k: v for k, v in values.items() if v is not None}).apply(
        lambda resolved: {**common, **resolved})
