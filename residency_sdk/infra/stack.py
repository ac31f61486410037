"""Pulumi stack configuration files (``infra/Pulumi.<location>.yaml``) from a plan."""

from __future__ import annotations

from typing import Any

import yaml

from residency_sdk.infra.plan import InfraPlan


def stack_file_name(plan: InfraPlan) -> str:
    """``Pulumi.<location>.yaml``: the stack name is the lower-case location id."""
    return f"Pulumi.{plan.location.lower()}.yaml"


def stack_config(plan: InfraPlan, map_path: str | None = None) -> dict[str, Any]:
    """The stack's config: its location, the map (when not the packaged one), the
    guardrails' OU/account and folder when the plan has them, and each provider's default
    region, so even a resource without an explicit region (there is none; the policy
    module fails one) would stay in the country."""
    config: dict[str, Any] = {"residency:location": plan.location}
    if map_path:
        config["residency:map"] = map_path
    for g in plan.guardrails:  # only when given: an empty key means "skipped, with a note"
        if g.config_key and g.target:
            config[g.config_key] = g.target
    for p in plan.providers:
        if p.provider == "aws":
            config["aws:region"] = p.region
        elif p.provider == "gcp":
            config["gcp:region"] = p.region
            if p.key.project:
                config["gcp:project"] = p.key.project
        else:
            config["azure-native:location"] = p.region
    return {"config": config}


def render_stack_yaml(plan: InfraPlan, map_path: str | None = None) -> str:
    """The text of ``Pulumi.<location>.yaml``."""
    header = (f"# Stack {plan.location.lower()}: residency location {plan.location} "
              f"({plan.country}, {plan.regime}).\n"
              "# Generated from the region map by `residency infra export --format pulumi-stack`;"
              "\n# edit the map and regenerate rather than editing this file.\n")
    return header + yaml.safe_dump(stack_config(plan, map_path), sort_keys=False)
