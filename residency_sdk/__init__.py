"""residency-sdk: keep regulated health data in the country where it must live.

    import residency_sdk as rs
    res = rs.Residency.load()
    placement = res.resolve(rs.Tenant(id="clinic-17", country="TR",
                                      agreements={"kvkk_standard_contract"}))
    res.require_transfer(tenant, to="US", data_class="phi")  # raises rs.TransferBlocked

Importing this package never imports a cloud SDK.
"""

from residency_sdk._version import __version__
from residency_sdk.errors import (
    AuditError,
    AuditFormatError,
    AuditKeyError,
    AuditLogClosed,
    BAARequired,
    BackendNotConfigured,
    BackendUnavailable,
    ChainBroken,
    EncryptionError,
    ErasureBlocked,
    ErasureError,
    ErasureIncomplete,
    ErasureUnavailable,
    InfraCrossesBorder,
    InfraError,
    InsecureEndpoint,
    IntegrityError,
    InvalidCountry,
    InvalidKey,
    InvalidTenant,
    MapError,
    NoRoute,
    ObjectNotFound,
    PlacementBlocked,
    ReadInterrupted,
    ResidencyError,
    ResidencyViolation,
    RetentionError,
    StorageError,
    TransferBlocked,
    UnknownDataClass,
    UnknownMechanism,
    UnknownRetentionCategory,
)
from residency_sdk.events import AuditEvent, AuditHook
from residency_sdk.model import (
    ComputeTarget,
    Decision,
    Placement,
    RegimeVerdict,
    StorageTarget,
    Tenant,
)
from residency_sdk.router import Residency

__all__ = [
    "AuditError",
    "AuditEvent",
    "AuditFormatError",
    "AuditHook",
    "AuditKeyError",
    "AuditLogClosed",
    "BAARequired",
    "BackendNotConfigured",
    "BackendUnavailable",
    "ChainBroken",
    "ComputeTarget",
    "Decision",
    "EncryptionError",
    "ErasureBlocked",
    "ErasureError",
    "ErasureIncomplete",
    "ErasureUnavailable",
    "InfraCrossesBorder",
    "InfraError",
    "InsecureEndpoint",
    "IntegrityError",
    "InvalidCountry",
    "InvalidKey",
    "InvalidTenant",
    "MapError",
    "NoRoute",
    "ObjectNotFound",
    "Placement",
    "PlacementBlocked",
    "ReadInterrupted",
    "RegimeVerdict",
    "Residency",
    "ResidencyError",
    "ResidencyViolation",
    "RetentionError",
    "StorageError",
    "StorageTarget",
    "Tenant",
    "TransferBlocked",
    "UnknownDataClass",
    "UnknownMechanism",
    "UnknownRetentionCategory",
    "__version__",
]
