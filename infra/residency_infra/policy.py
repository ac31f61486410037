"""Residency policy over the resources a Pulumi program registers (CrossGuard in spirit).

CrossGuard needs the Pulumi CLI and pins libraries that break the SDK, so these checks are
plain Python over ``(type, name, inputs)`` records, the shape the engine (or a
``pulumi.runtime.Mocks``) receives, with camelCase input names. Three mandatory policies:

- ``storage-in-location``: every storage, key and key-container resource sits in a region
  of the stack's country (a resource with no region fails: we never accept the provider's
  default region);
- ``storage-encrypted``: every bucket / storage account is encrypted with a
  customer-managed key;
- ``guardrail-in-location``: every location guardrail (AWS region-deny SCP, GCP
  ``gcp.resourceLocations`` policy, Azure "Allowed locations" assignment) allows only
  single regions of the stack's country, and says which (an SCP without an
  ``aws:RequestedRegion`` deny, a multi-region GCP value group, an empty list all fail).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from residency_sdk.infra.documents import AZURE_ALLOWED_LOCATIONS_DEFINITION

# resource type -> input holding its region
REGIONAL_TYPES: dict[str, str] = {
    "aws:s3/bucket:Bucket": "region",
    "aws:kms/key:Key": "region",
    "gcp:storage/bucket:Bucket": "location",
    "gcp:kms/keyRing:KeyRing": "location",
    "azure-native:storage:StorageAccount": "location",
    "azure-native:keyvault:Vault": "location",
    "azure-native:resources:ResourceGroup": "location",
}
STORAGE_TYPES = ("aws:s3/bucket:Bucket", "gcp:storage/bucket:Bucket",
                 "azure-native:storage:StorageAccount")
T_SCP = "aws:organizations/policy:Policy"
T_ORG_POLICY = "gcp:orgpolicy/policy:Policy"
T_ASSIGNMENT = "azure-native:authorization:PolicyAssignment"
_GCP_REGION_GROUP = re.compile(r"^in:(?P<region>[a-z0-9-]+)-locations$")
_PROVIDER = {"aws": "aws", "gcp": "gcp", "azure-native": "azure"}


@dataclass(frozen=True, slots=True)
class RegisteredResource:
    """One resource as registered: Pulumi type token, logical name, resolved inputs."""

    type: str
    name: str
    inputs: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Violation:
    """A policy a resource breaks, and why."""

    policy: str
    resource: str
    message: str


def check_resources(resources: Iterable[RegisteredResource], *, country: str,
                    region_table: Mapping[str, Mapping[str, str]]) -> list[Violation]:
    """Every violation of the residency policies among ``resources`` for a stack whose
    location lies in ``country``; ``region_table`` maps provider -> region -> country."""
    items = list(resources)
    return [*_check_regions(items, country, region_table), *_check_encryption(items),
            *_check_guardrails(items, country, region_table)]


def guardrail_regions(res: RegisteredResource) -> tuple[str, list[str]] | None:
    """``(provider, allowed values as written)`` of a location guardrail resource, None for
    any other resource (GCP values are value groups, ``in:<region>-locations``)."""
    if res.type == T_SCP and res.inputs.get("type", "SERVICE_CONTROL_POLICY") == \
            "SERVICE_CONTROL_POLICY":
        doc = json.loads(str(res.inputs.get("content") or "{}"))
        found: list[str] = []
        for st in doc.get("Statement", []):
            cond = (st.get("Condition") or {}).get("StringNotEquals") or {}
            if st.get("Effect") == "Deny" and "aws:RequestedRegion" in cond:
                value = cond["aws:RequestedRegion"]
                found.extend([value] if isinstance(value, str) else value)
        return "aws", found
    if res.type == T_ORG_POLICY and str(res.inputs.get("name", "")).endswith(
            "/policies/gcp.resourceLocations"):
        values: list[str] = []
        for rule in (res.inputs.get("spec") or {}).get("rules") or []:
            values.extend((rule.get("values") or {}).get("allowedValues") or [])
        return "gcp", values
    if res.type == T_ASSIGNMENT and res.inputs.get("policyDefinitionId") == \
            AZURE_ALLOWED_LOCATIONS_DEFINITION:
        param = (res.inputs.get("parameters") or {}).get("listOfAllowedLocations") or {}
        return "azure", list(param.get("value") or [])
    return None


def _check_guardrails(items: list[RegisteredResource], country: str,
                      table: Mapping[str, Mapping[str, str]]) -> list[Violation]:
    found = []
    for res in items:
        got = guardrail_regions(res)
        if got is None:
            continue
        provider, regions = got
        if not regions:
            found.append(Violation("guardrail-in-location", res.name,
                                   f"{res.type} names no allowed region: it would not "
                                   "restrict locations at all"))
        for region in regions:
            m = _GCP_REGION_GROUP.fullmatch(region) if provider == "gcp" else None
            where = table.get(provider, {}).get((m["region"] if m else region).lower())
            if where != country:
                found.append(Violation(
                    "guardrail-in-location", res.name,
                    f"{res.type} allows {provider} location {region!r} "
                    f"({where or 'not a single region of a known country'}), outside the "
                    f"stack's country {country}"))
    return found


def _check_regions(items: list[RegisteredResource], country: str,
                   table: Mapping[str, Mapping[str, str]]) -> list[Violation]:
    found = []
    for res in items:
        key = REGIONAL_TYPES.get(res.type)
        if key is None:
            continue
        provider = _PROVIDER[res.type.split(":", 1)[0]]
        region = res.inputs.get(key)
        if not isinstance(region, str) or not region:
            found.append(Violation("storage-in-location", res.name,
                                   f"{res.type} has no explicit `{key}`: it would land in the "
                                   "provider's default region"))
            continue
        where = table.get(provider, {}).get(region.lower())
        if where != country:
            found.append(Violation(
                "storage-in-location", res.name,
                f"{res.type} in {provider} region {region!r} ({where or 'unknown country'}) "
                f"is outside the stack's country {country}"))
    return found


def _check_encryption(items: list[RegisteredResource]) -> list[Violation]:
    sse_kms = {
        str(r.inputs.get("bucket")) for r in items
        if r.type == "aws:s3/bucketServerSideEncryptionConfiguration:"
                     "BucketServerSideEncryptionConfiguration"
        and any(_aws_rule_uses_kms(rule) for rule in r.inputs.get("rules") or [])
    }
    found = []
    for res in items:
        if res.type not in STORAGE_TYPES:
            continue
        if res.type.startswith("aws:"):
            ok = str(res.inputs.get("bucket")) in sse_kms
            why = "no SSE-KMS default-encryption configuration with a KMS key targets it"
        elif res.type.startswith("gcp:"):
            ok = bool((res.inputs.get("encryption") or {}).get("defaultKmsKeyName"))
            why = "no encryption.defaultKmsKeyName (customer-managed key)"
        else:
            enc = res.inputs.get("encryption") or {}
            ok = (str(enc.get("keySource", "")).lower() == "microsoft.keyvault"
                  and bool(enc.get("keyVaultProperties"))
                  and enc.get("requireInfrastructureEncryption") is True)
            why = ("encryption is not a Key Vault customer-managed key with infrastructure "
                   "encryption")
        if not ok:
            found.append(Violation("storage-encrypted", res.name, f"{res.type}: {why}"))
    return found


def _aws_rule_uses_kms(rule: Any) -> bool:
    default = (rule or {}).get("applyServerSideEncryptionByDefault") or {}
    return default.get("sseAlgorithm") == "aws:kms" and bool(default.get("kmsMasterKeyId"))
