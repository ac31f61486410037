"""Infrastructure from the region map: the plan (storage and location guardrails), its
Terraform export, stack outputs.

Pure Python; the Pulumi program in ``infra/`` renders the same :class:`InfraPlan`.
"""

from __future__ import annotations

from residency_sdk.infra.plan import BucketPlan as BucketPlan
from residency_sdk.infra.plan import ExpiryRule as ExpiryRule
from residency_sdk.infra.plan import GuardrailPlan as GuardrailPlan
from residency_sdk.infra.plan import InfraPlan as InfraPlan
from residency_sdk.infra.plan import KeyPlan as KeyPlan
from residency_sdk.infra.plan import ProviderPlan as ProviderPlan
from residency_sdk.infra.plan import build_plan as build_plan
