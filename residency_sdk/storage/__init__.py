"""Storage: one interface over local, S3, GCS and Azure Blob, guarded by residency.

Users hold a :class:`~residency_sdk.storage.tenant_store.TenantStore` from
:meth:`Residency.storage_for <residency_sdk.client.Residency.storage_for>`. Underneath,
one adapter per provider implements :class:`~residency_sdk.storage.base.ObjectStore`
(:mod:`.local`, :mod:`.s3`, :mod:`.gcs`, :mod:`.azure`, and :mod:`.memory` for tests);
:mod:`.factory` opens them lazily (no cloud SDK is imported until a store of that
provider is opened) and :mod:`.pool` shares them. :mod:`.deployment` checks what is really
deployed. The public names are exported from :mod:`residency_sdk` itself.
"""
