# mypy: disable-error-code="call-overload,no-any-return"
# (nested plain-dict inputs are valid Pulumi inputs; the providers' TypedDict overloads
# reject dicts whose values mix Outputs and literals)
"""The clouds' own location guardrails, one per provider of the location's plan:

- AWS: a Service Control Policy denying every request outside the location's regions
  (global services exempt), attached to the location's OU or member account;
- GCP: the ``gcp.resourceLocations`` organisation policy on the location's folder;
- Azure: the built-in "Allowed locations" policy assigned at the stack's resource group.

The allowed regions, names and targets come from the plan (the same data the Terraform
export renders). A guardrail without a target (no ``residency:awsOrgTargetId`` /
``residency:gcpFolderId``) is not registered; the plan's note is logged as a warning and
reported in the ``guardrails`` stack output.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
import pulumi_azure_native as az
import pulumi_gcp as gcp

from residency_sdk.infra.documents import (
    AZURE_ALLOWED_LOCATIONS_DEFINITION,
    GCP_RESOURCE_LOCATIONS,
    aws_region_deny_scp_content,
    azure_allowed_locations_parameters,
    gcp_location_values,
)
from residency_sdk.infra.plan import GuardrailPlan, InfraPlan


class LocationGuardrails(pulumi.ComponentResource):
    """Every guardrail of ``plan`` that has a target. ``azure_rg`` is the resource group
    the Azure storage component created (the Azure assignment's scope)."""

    def __init__(self, name: str, plan: InfraPlan,
                 azure_rg: az.resources.ResourceGroup | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("residency:guardrails:Location", name, None, opts)
        self.registered: dict[str, pulumi.CustomResource] = {}
        for g in plan.guardrails:
            if not g.enforced:
                pulumi.log.warn(g.note or f"{g.provider} guardrail skipped", resource=self)
                continue
            labels = plan.provider(g.provider).labels
            if g.provider == "aws":
                self.registered["aws"] = self._aws(name, g, labels)
            elif g.provider == "gcp":
                self.registered["gcp"] = self._gcp(name, g)
            else:
                if azure_rg is None:
                    raise ValueError("the Azure guardrail needs the stack's resource group")
                self.registered["azure"] = self._azure(name, g, azure_rg)
        self.register_outputs({provider: res.urn for provider, res in self.registered.items()})

    def _aws(self, name: str, g: GuardrailPlan,
             labels: dict[str, str]) -> aws.organizations.Policy:
        policy = aws.organizations.Policy(
            f"{name}-aws-region-deny", name=g.name, type="SERVICE_CONTROL_POLICY",
            description=f"residency {labels['residency-location'].upper()}: deny requests "
                        f"outside {', '.join(g.allowed_regions)} (global services exempt)",
            content=aws_region_deny_scp_content(g.allowed_regions), tags=labels,
            opts=pulumi.ResourceOptions(parent=self))
        aws.organizations.PolicyAttachment(
            f"{name}-aws-region-deny", policy_id=policy.id, target_id=g.target,
            opts=pulumi.ResourceOptions(parent=policy))
        return policy

    def _gcp(self, name: str, g: GuardrailPlan) -> gcp.orgpolicy.Policy:
        # inherit_from_parent false: the folder's policy replaces what it would inherit,
        # so exactly the location's regions remain (merging could only widen the set).
        return gcp.orgpolicy.Policy(
            f"{name}-gcp-resource-locations",
            name=f"{g.target}/policies/{GCP_RESOURCE_LOCATIONS}", parent=g.target,
            spec={"inherit_from_parent": False, "rules": [
                {"values": {"allowed_values": gcp_location_values(g.allowed_regions)}}]},
            opts=pulumi.ResourceOptions(parent=self))

    def _azure(self, name: str, g: GuardrailPlan,
               rg: az.resources.ResourceGroup) -> az.authorization.PolicyAssignment:
        where = ", ".join(g.allowed_regions)
        return az.authorization.PolicyAssignment(
            f"{name}-azure-allowed-locations", policy_assignment_name=g.name, scope=rg.id,
            policy_definition_id=AZURE_ALLOWED_LOCATIONS_DEFINITION,
            parameters=azure_allowed_locations_parameters(g.allowed_regions),
            display_name=f"residency: allowed locations ({where})",
            description=f"Only {where} (the region map's regions for this location) may hold "
                        "resources of this resource group",
            enforcement_mode="Default",
            non_compliance_messages=[
                {"message": f"Residency: resources of this group must be in {where}"}],
            opts=pulumi.ResourceOptions(parent=self))
