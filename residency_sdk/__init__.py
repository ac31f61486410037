"""residency-sdk: keep regulated health data in the country where it must live.

    import residency_sdk as rs
    res = rs.Residency.load()
    placement = res.resolve(rs.Tenant(id="clinic-17", country="TR",
                                      agreements={"kvkk_standard_contract"}))
    res.require_transfer(tenant, to="US", data_class="phi")  # raises rs.TransferBlocked

Importing this package never imports a cloud SDK.
"""

from residency_sdk._version import __version__
from residency_sdk.agreements import Agreement, Derogation
from residency_sdk.audit import AuditLog, AuditReport, VerifyResult, verify_log
from residency_sdk.client import Residency
from residency_sdk.erasure import (
    BackendErasure,
    ErasureReceipt,
    ErasureRequest,
    ErasureTracker,
    verify_receipt,
)
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
from residency_sdk.events import AuditEmitter, AuditEvent, AuditHook, AuditSink
from residency_sdk.marks import CATEGORY_META, LEGAL_HOLD_META
from residency_sdk.model import (
    ComputeTarget,
    Decision,
    Placement,
    RegimeVerdict,
    StorageTarget,
    Tenant,
)
from residency_sdk.policy import ResidencyPolicy
from residency_sdk.regionmap import Location, RegionMap
from residency_sdk.retention import BackendSweep, RetentionSweep, SweepItem, SweepReport
from residency_sdk.storage.base import BucketFacts, ObjectInfo, ObjectStore, Residue
from residency_sdk.storage.deployment import VerifyReport as DeploymentReport
from residency_sdk.storage.memory import MemoryStore
from residency_sdk.storage.pool import StoreOpener, StorePool
from residency_sdk.storage.tenant_store import StoredObject, TenantStore

__all__ = [
    "CATEGORY_META",
    "LEGAL_HOLD_META",
    "AccessDenied",
    "Agreement",
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
    "BucketFacts",
    "BucketNotFound",
    "CapabilityUnavailable",
    "ChainBroken",
    "ChainRefused",
    "ComputeTarget",
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


def __getattr__(name: str) -> object:
    # ``rs.deid`` is imported on first use: the de-identifier's table and (on use) pydicom
    # stay out of ``import residency_sdk``.
    if name == "deid":
        import importlib

        return importlib.import_module("residency_sdk.deid")
    raise AttributeError(f"module 'residency_sdk' has no attribute {name!r}")
