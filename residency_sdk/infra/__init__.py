"""Infrastructure from the region map: the plan, its Terraform export, stack outputs.

Pure Python; the Pulumi program in ``infra/`` renders the same :class:`InfraPlan`.
"""

from __future__ import annotations

from residency_sdk.infra.plan import (
    BucketPlan,
    ExpiryRule,
    InfraPlan,
    KeyPlan,
    ProviderPlan,
    build_plan,
)

__all__ = ["BucketPlan", "ExpiryRule", "InfraPlan", "KeyPlan", "ProviderPlan", "build_plan"]
