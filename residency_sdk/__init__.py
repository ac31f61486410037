"""residency-sdk: keep regulated health data in the country where it must live.

    import residency_sdk as rs
    res = rs.Residency.load()
    placement = res.resolve(rs.Tenant(id="clinic-17", country="TR",
                                      agreements={"kvkk_standard_contract"}))
    res.require_transfer(tenant, to="US", data_class="phi")  # raises rs.TransferBlocked

Importing this package never imports a cloud SDK, and imports nothing else until a name is
used: every export below is loaded on first access (PEP 562), so ``import residency_sdk``
costs about as much as an empty module and ``residency resolve`` loads only what it uses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from residency_sdk._version import __version__

if TYPE_CHECKING:
    from residency_sdk.agreements import (
        Agreement,
        Derogation,
    )
    from residency_sdk.audit.log import AuditLog
    from residency_sdk.audit.report import AuditReport
    from residency_sdk.audit.verify import VerifyResult, verify_log
    from residency_sdk.client import Residency
    from residency_sdk.erasure.receipt import BackendErasure, ErasureReceipt, verify_receipt
    from residency_sdk.erasure.request import ErasureRequest
    from residency_sdk.erasure.tracker import ErasureTracker
    from residency_sdk.errors import (
        AccessDenied,
        AuditError,
        AuditFormatError,
        AuditKeyError,
        AuditLogClosed,
        AuditUnavailable,
        BAARequired,
        BackendNotConfigured,
        BackendUnavailable,
        BucketNotFound,
        CapabilityUnavailable,
        ChainBroken,
        ChainRefused,
        ConfigError,
        DeidentificationError,
        DeidentificationRefused,
        EgressBlocked,
        EncryptionError,
        EnvironmentOverride,
        ErasureBlocked,
        ErasureError,
        ErasureIncomplete,
        ErasureUnavailable,
        InfraCrossesBorder,
        InfraError,
        InputError,
        InsecureEndpoint,
        IntegrityError,
        InvalidCountry,
        InvalidKey,
        InvalidLocalLocation,
        InvalidSource,
        InvalidTenant,
        KeyDestroyed,
        MapError,
        NoRoute,
        NoSuchBackend,
        NotAnonymised,
        NotDicom,
        ObjectChanged,
        ObjectNotFound,
        PlacementBlocked,
        ReadInterrupted,
        ReportRenderError,
        ResidencyError,
        ResidencyViolation,
        RetentionError,
        SDKNotInstalled,
        StorageError,
        TenantCountryConflict,
        TransferBlocked,
        UnknownDataClass,
        UnknownLocation,
        UnknownMechanism,
        UnknownRetentionCategory,
        UnsafePath,
    )
    from residency_sdk.events import (
        AuditEmitter,
        AuditEvent,
        AuditHook,
        AuditSink,
    )
    from residency_sdk.marks import (
        CATEGORY_META,
        LEGAL_HOLD_META,
    )
    from residency_sdk.model import (
        ComputeTarget,
        Decision,
        Placement,
        RegimeVerdict,
        StorageTarget,
        Tenant,
    )
    from residency_sdk.policy import ResidencyPolicy
    from residency_sdk.regionmap import (
        Location,
        RegionMap,
    )
    from residency_sdk.retention import (
        BackendSweep,
        RetentionSweep,
        SweepItem,
        SweepReport,
    )
    from residency_sdk.storage.async_store import AsyncTenantStore
    from residency_sdk.storage.base import (
        BucketFacts,
        ObjectInfo,
        ObjectStore,
        Residue,
    )
    from residency_sdk.storage.batch import BatchResult, PutItem
    from residency_sdk.storage.deployment import VerifyReport as DeploymentReport
    from residency_sdk.storage.memory import MemoryStore
    from residency_sdk.storage.pool import (
        StoreOpener,
        StorePool,
    )
    from residency_sdk.storage.tenant_store import (
        StoredObject,
        TenantStore,
    )

# Export name -> "module" (relative to the package) or "module:attribute" when the
# attribute is exported under another name. Importing residency_sdk runs none of them:
# each is imported the first time one of its names is asked for.
_EXPORTS: dict[str, str] = {
    "Agreement": "agreements",
    "Derogation": "agreements",
    "AuditLog": "audit.log",
    "AuditReport": "audit.report",
    "VerifyResult": "audit.verify",
    "verify_log": "audit.verify",
    "Residency": "client",
    "BackendErasure": "erasure.receipt",
    "ErasureReceipt": "erasure.receipt",
    "ErasureRequest": "erasure.request",
    "ErasureTracker": "erasure.tracker",
    "verify_receipt": "erasure.receipt",
    "AccessDenied": "errors",
    "AuditError": "errors",
    "AuditFormatError": "errors",
    "AuditKeyError": "errors",
    "AuditLogClosed": "errors",
    "AuditUnavailable": "errors",
    "BAARequired": "errors",
    "BackendNotConfigured": "errors",
    "BackendUnavailable": "errors",
    "BucketNotFound": "errors",
    "CapabilityUnavailable": "errors",
    "ChainBroken": "errors",
    "ChainRefused": "errors",
    "ConfigError": "errors",
    "DeidentificationError": "errors",
    "DeidentificationRefused": "errors",
    "EgressBlocked": "errors",
    "EncryptionError": "errors",
    "EnvironmentOverride": "errors",
    "ErasureBlocked": "errors",
    "ErasureError": "errors",
    "ErasureIncomplete": "errors",
    "ErasureUnavailable": "errors",
    "InfraCrossesBorder": "errors",
    "InfraError": "errors",
    "InputError": "errors",
    "InsecureEndpoint": "errors",
    "IntegrityError": "errors",
    "InvalidCountry": "errors",
    "InvalidKey": "errors",
    "InvalidLocalLocation": "errors",
    "InvalidSource": "errors",
    "InvalidTenant": "errors",
    "KeyDestroyed": "errors",
    "MapError": "errors",
    "NoRoute": "errors",
    "NoSuchBackend": "errors",
    "NotAnonymised": "errors",
    "NotDicom": "errors",
    "ObjectChanged": "errors",
    "ObjectNotFound": "errors",
    "PlacementBlocked": "errors",
    "ReadInterrupted": "errors",
    "ReportRenderError": "errors",
    "ResidencyError": "errors",
    "ResidencyViolation": "errors",
    "RetentionError": "errors",
    "SDKNotInstalled": "errors",
    "StorageError": "errors",
    "TenantCountryConflict": "errors",
    "TransferBlocked": "errors",
    "UnknownDataClass": "errors",
    "UnknownLocation": "errors",
    "UnknownMechanism": "errors",
    "UnknownRetentionCategory": "errors",
    "UnsafePath": "errors",
    "AuditEmitter": "events",
    "AuditEvent": "events",
    "AuditHook": "events",
    "AuditSink": "events",
    "CATEGORY_META": "marks",
    "LEGAL_HOLD_META": "marks",
    "ComputeTarget": "model",
    "Decision": "model",
    "Placement": "model",
    "RegimeVerdict": "model",
    "StorageTarget": "model",
    "Tenant": "model",
    "ResidencyPolicy": "policy",
    "Location": "regionmap",
    "RegionMap": "regionmap",
    "BackendSweep": "retention",
    "RetentionSweep": "retention",
    "SweepItem": "retention",
    "SweepReport": "retention",
    "BucketFacts": "storage.base",
    "ObjectInfo": "storage.base",
    "ObjectStore": "storage.base",
    "Residue": "storage.base",
    "DeploymentReport": "storage.deployment:VerifyReport",
    "MemoryStore": "storage.memory",
    "StoreOpener": "storage.pool",
    "StorePool": "storage.pool",
    "StoredObject": "storage.tenant_store",
    "TenantStore": "storage.tenant_store",
    "AsyncTenantStore": "storage.async_store",
    "BatchResult": "storage.batch",
    "PutItem": "storage.batch",
}

__all__ = [
    "CATEGORY_META",
    "LEGAL_HOLD_META",
    "AccessDenied",
    "Agreement",
    "AsyncTenantStore",
    "AuditEmitter",
    "AuditError",
    "AuditEvent",
    "AuditFormatError",
    "AuditHook",
    "AuditKeyError",
    "AuditLog",
    "AuditLogClosed",
    "AuditReport",
    "AuditSink",
    "AuditUnavailable",
    "BAARequired",
    "BackendErasure",
    "BackendNotConfigured",
    "BackendSweep",
    "BackendUnavailable",
    "BatchResult",
    "BucketFacts",
    "BucketNotFound",
    "CapabilityUnavailable",
    "ChainBroken",
    "ChainRefused",
    "ComputeTarget",
    "ConfigError",
    "Decision",
    "DeidentificationError",
    "DeidentificationRefused",
    "DeploymentReport",
    "Derogation",
    "EgressBlocked",
    "EncryptionError",
    "EnvironmentOverride",
    "ErasureBlocked",
    "ErasureError",
    "ErasureIncomplete",
    "ErasureReceipt",
    "ErasureRequest",
    "ErasureTracker",
    "ErasureUnavailable",
    "InfraCrossesBorder",
    "InfraError",
    "InputError",
    "InsecureEndpoint",
    "IntegrityError",
    "InvalidCountry",
    "InvalidKey",
    "InvalidLocalLocation",
    "InvalidSource",
    "InvalidTenant",
    "KeyDestroyed",
    "Location",
    "MapError",
    "MemoryStore",
    "NoRoute",
    "NoSuchBackend",
    "NotAnonymised",
    "NotDicom",
    "ObjectChanged",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "Placement",
    "PlacementBlocked",
    "PutItem",
    "ReadInterrupted",
    "RegimeVerdict",
    "RegionMap",
    "ReportRenderError",
    "Residency",
    "ResidencyError",
    "ResidencyPolicy",
    "ResidencyViolation",
    "Residue",
    "RetentionError",
    "RetentionSweep",
    "SDKNotInstalled",
    "StorageError",
    "StorageTarget",
    "StoreOpener",
    "StorePool",
    "StoredObject",
    "SweepItem",
    "SweepReport",
    "Tenant",
    "TenantCountryConflict",
    "TenantStore",
    "TransferBlocked",
    "UnknownDataClass",
    "UnknownLocation",
    "UnknownMechanism",
    "UnknownRetentionCategory",
    "UnsafePath",
    "VerifyResult",
    "__version__",
    "verify_log",
    "verify_receipt",
]


def __getattr__(name: str) -> Any:
    # Not residency_sdk._lazy's helper: a bare ``import residency_sdk`` loads nothing but
    # the version. ``rs.deid`` too: the de-identifier's table and (on use) pydicom are
    # loaded only when it is first used.
    if name == "deid":
        return importlib.import_module("residency_sdk.deid")
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'residency_sdk' has no attribute {name!r}")
    module, _, attribute = target.partition(":")
    value = getattr(importlib.import_module(f"residency_sdk.{module}"), attribute or name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
