"""Storage: one interface over local, S3, GCS and Azure Blob, guarded by residency.

Users hold a :class:`TenantStore` from :meth:`Residency.storage_for
<residency_sdk.router.Residency.storage_for>`. Adapters (:class:`ObjectStore`) are opened
with :func:`open_store`; the local one needs ``cryptography``, the cloud ones their SDK
extra, and none of them is imported until a store of that provider is opened.
"""

from residency_sdk.storage.base import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MULTIPART_THRESHOLD,
    ObjectInfo,
    ObjectStore,
    ProgressCallback,
)
from residency_sdk.storage.facade import (
    StoredObject,
    StoreOpener,
    StorePool,
    TenantStore,
)
from residency_sdk.storage.factory import failover_target, open_store
from residency_sdk.storage.keys import (
    MAX_KEY_BYTES,
    tenant_key,
    tenant_prefix,
    validate_key,
    validate_prefix,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MULTIPART_THRESHOLD",
    "MAX_KEY_BYTES",
    "ObjectInfo",
    "ObjectStore",
    "ProgressCallback",
    "StoreOpener",
    "StorePool",
    "StoredObject",
    "TenantStore",
    "failover_target",
    "open_store",
    "tenant_key",
    "tenant_prefix",
    "validate_key",
    "validate_prefix",
]
