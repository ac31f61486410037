"""Run the Pulumi program under ``pulumi.runtime.set_mocks`` and record what it registers.

The mocks stand in for the cloud provider engines only (no Pulumi CLI exists here): they
echo inputs back as outputs and fake the computed ids/ARNs/URIs the program needs. The
program, the components and the plan run for real.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi

INFRA_DIR = Path(__file__).resolve().parents[2] / "infra"
if str(INFRA_DIR) not in sys.path:
    sys.path.insert(0, str(INFRA_DIR))

from residency_infra.policy import RegisteredResource  # noqa: E402

ACCOUNT = "123456789012"
AZURE_NAME_INPUT = {
    "azure-native:resources:ResourceGroup": "resourceGroupName",
    "azure-native:managedidentity:UserAssignedIdentity": "resourceName",
    "azure-native:keyvault:Vault": "vaultName",
    "azure-native:keyvault:Key": "keyName",
    "azure-native:storage:StorageAccount": "accountName",
    "azure-native:storage:BlobContainer": "containerName",
    "azure-native:storage:EncryptionScope": "encryptionScopeName",
}


class RecordingMocks(pulumi.runtime.Mocks):
    """Records every registered resource; fakes what real providers would compute."""

    def __init__(self) -> None:
        self.resources: list[RegisteredResource] = []
        self.ids: dict[tuple[str, str], str] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        rid, out = self._fake(args)
        self.ids[(args.typ, args.name)] = rid
        return rid, out

    def _fake(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        self.resources.append(RegisteredResource(args.typ, args.name, inputs))
        out = dict(inputs)
        rid = f"{args.name}-id"
        t = args.typ
        if t == "aws:s3/bucket:Bucket":
            rid = inputs["bucket"]
            out["arn"] = f"arn:aws:s3:::{rid}"
        elif t == "aws:kms/key:Key":
            rid = f"key-{args.name}"
            out.update(keyId=rid, arn=f"arn:aws:kms:{inputs['region']}:{ACCOUNT}:key/{rid}")
        elif t == "gcp:kms/keyRing:KeyRing":
            project = inputs.get("project") or "mock-project"
            rid = f"projects/{project}/locations/{inputs['location']}/keyRings/{inputs['name']}"
        elif t == "gcp:kms/cryptoKey:CryptoKey":
            rid = f"{inputs['keyRing']}/cryptoKeys/{inputs['name']}"
        elif t == "gcp:storage/bucket:Bucket":
            rid = inputs["name"]
        elif t == "aws:organizations/policy:Policy":
            rid = "p-mock0001"
            out["arn"] = f"arn:aws:organizations::{ACCOUNT}:policy/o-mock/{rid}"
        elif t == "azure-native:resources:ResourceGroup":
            out["name"] = inputs["resourceGroupName"]
            rid = f"/subscriptions/sub/resourceGroups/{out['name']}"
        elif t in AZURE_NAME_INPUT:
            out["name"] = inputs[AZURE_NAME_INPUT[t]]
            rid = f"/subscriptions/sub/resourceGroups/rg/{t}/{out['name']}"
            if t == "azure-native:keyvault:Vault":
                out["properties"] = {**inputs.get("properties", {}),
                                     "vaultUri": f"https://{out['name']}.vault.azure.net/"}
            elif t == "azure-native:keyvault:Key":
                out["keyUri"] = f"https://{inputs['vaultName']}.vault.azure.net/keys/{out['name']}"
            elif t == "azure-native:storage:StorageAccount" and "identity" in inputs:
                # inputs list the identity ids; the service answers with a map by id
                ids = inputs["identity"].get("userAssignedIdentities") or []
                out["identity"] = {**inputs["identity"],
                                   "userAssignedIdentities": {i: {} for i in ids}}
            elif t == "azure-native:managedidentity:UserAssignedIdentity":
                out["principalId"] = f"principal-{out['name']}"
        return rid, out

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/ci",
                    "userId": "ci", "id": ACCOUNT}
        if args.token == "gcp:storage/getProjectServiceAccount:getProjectServiceAccount":
            email = "service-1@gs-project-accounts.iam.gserviceaccount.com"
            return {"emailAddress": email, "member": f"serviceAccount:{email}", "id": "agent"}
        if args.token == "azure-native:authorization:getClientConfig":
            return {"tenantId": "tenant", "subscriptionId": "sub", "objectId": "obj",
                    "clientId": "client"}
        raise AssertionError(f"unexpected invoke {args.token}")


@dataclass
class StackRun:
    """What one stack's program registered, and its exported outputs."""

    stack: str
    resources: list[RegisteredResource]
    outputs: dict[str, Any]
    """The ``residency`` stack output."""
    guardrails: dict[str, Any] = field(default_factory=dict)
    """The ``guardrails`` stack output."""
    ids: dict[tuple[str, str], str] = field(default_factory=dict)
    """The (faked) id of every registered resource, by (type, name)."""
    warnings: list[str] = field(default_factory=list)
    """What the program logged as warnings."""

    def of_type(self, token: str) -> list[RegisteredResource]:
        return [r for r in self.resources if r.type == token]

    def one(self, token: str, name: str) -> RegisteredResource:
        found = [r for r in self.resources if r.type == token and r.name == name]
        assert len(found) == 1, f"{token} {name}: {[r.name for r in self.of_type(token)]}"
        return found[0]

    def only(self, token: str) -> RegisteredResource:
        """The single resource of type ``token``."""
        found = self.of_type(token)
        assert len(found) == 1, f"{token}: {[r.name for r in found]}"
        return found[0]


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _ensure_event_loop() -> None:
    """Pulumi's mocks schedule on the main thread's current loop. A test that ran
    ``asyncio.run`` or ``anyio.run`` before leaves none set (the runner clears it), so a
    later stack would fail with "no current event loop": give pulumi a fresh one."""
    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        loop = None
    if loop is None or loop.is_closed():
        asyncio.set_event_loop(asyncio.new_event_loop())


def run_stack(stack: str, config: dict[str, str] | None = None,
              extra: Any = None) -> StackRun:
    """Run the residency program as stack ``stack`` under mocks. ``extra`` (a callable) may
    register additional resources in the same stack, e.g. planted bad ones."""
    from residency_infra import program

    mocks = RecordingMocks()
    capture = _Capture()
    logger = logging.getLogger(f"residency-infra-test-{stack}")
    logger.propagate = False
    logger.handlers = [capture]
    _ensure_event_loop()
    pulumi.runtime.set_mocks(mocks, project="residency", stack=stack, preview=False,
                             logger=logger)
    pulumi.runtime.set_all_config({f"residency:{k}": v for k, v in (config or {}).items()})
    captured: dict[str, Any] = {}
    guardrails: dict[str, Any] = {}

    @pulumi.runtime.test
    def _program() -> pulumi.Output[Any]:
        deployed = program.run()
        if extra is not None:
            extra()
        guardrails.update(deployed.guardrails)
        out = pulumi.Output.from_input(deployed.exports)
        return out.apply(captured.update)

    _program()
    return StackRun(stack, mocks.resources, captured, guardrails, dict(mocks.ids),
                    list(capture.messages))
