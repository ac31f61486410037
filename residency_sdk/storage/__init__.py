"""Storage: one interface over local, S3, GCS and Azure Blob, guarded by residency.

Users hold a :class:`~residency_sdk.storage.tenant_store.TenantStore` from
:meth:`Residency.storage_for <residency_sdk.client.Residency.storage_for>`. Underneath,
one adapter per provider implements :class:`~residency_sdk.storage.base.ObjectStore`
(:mod:`.local`, :mod:`.s3`, :mod:`.gcs`, :mod:`.azure`, and :mod:`.memory` for tests);
:mod:`.factory` opens them lazily (no cloud SDK is imported until a store of that
provider is opened) and :mod:`.pool` shares them. :mod:`.deployment` checks what is really
deployed. The public names are exported from :mod:`residency_sdk` itself.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from residency_sdk.storage.async_store import AsyncTenantStore
    from residency_sdk.storage.batch import BatchResult, PutItem

# Loaded on first use (PEP 562): importing an adapter module must not import anyio.
_EXPORTS = {"AsyncTenantStore": "async_store", "BatchResult": "batch", "PutItem": "batch"}
__all__ = ["AsyncTenantStore", "BatchResult", "PutItem"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
