"""Tracked erasure requests: planned from the tenant's lineage, executed per backend,
verified, keys destroyed last, receipted.

This is the one implementation of tenant erasure: ``res.erase(tenant)``
(:meth:`ErasureTracker.erase`) records a request and runs it, returning an
:class:`ErasureReceipt`; the CLI's ``residency erasure request/run/status`` and
:class:`ErasureTracker` work on the same requests.

A request records a tenant's erasure (deletion on request, or all data within 30 days of
contract termination) with its deadline. Each run of it (:meth:`ErasureTracker.run`)
plans the backends first: every backend of the tenant's location (each provider's
primary and in-country failover; ``providers`` narrows the providers there), plus every
location and provider the tenant's lineage (:mod:`residency_sdk.lineage`) says its data
reached (a ``transfer`` to another location, a write to another provider), read from
every location. The plan only grows: a backend once planned stays planned, an explicit
``providers`` never removes a place the lineage names, and a location whose lineage
cannot be read keeps the request open (named in ``lineage_unreachable``). Then, on each
planned backend:

1. delete every object under the tenant's prefix (``tenants/<id>/``), except what a legal
   hold keeps (the ``legal_hold`` metadata marker, or the provider's own lock such as S3
   object lock); each delete is conditional on the object examined, and an object
   re-uploaded in between is examined again (the new one is the tenant's too); then purge
   the residue no listing shows (the store's ``purge_residue`` capability: on S3
   noncurrent versions, delete markers and incomplete multipart uploads; locally the
   leftovers of interrupted writes), so a versioned bucket keeps no copy;
2. verify: a fresh listing of the prefix must show nothing left (held objects excepted).

When every planned backend is verified (nothing held, every lineage location read):

3. destroy the tenant's key material on every planned backend
   (:meth:`ObjectStore.destroy_tenant_key
   <residency_sdk.storage.base.ObjectStore.destroy_tenant_key>`: the local key file
   shredded, a KMS key scheduled for deletion), so backups and stray copies the provider
   keeps become unreadable; last, because a held copy must stay readable;
4. drop the tenant's lineage and its tenant records in every location (they name it);
5. write a receipt (each location and backend: found, deleted, verified; each key's fate)
   and record it in the audit trail as an ``erase`` event whose ``checksum`` is the
   receipt's SHA-256, so :func:`verify_receipt` can prove the stored receipt is the
   audited one.

A request with ``scope="location"`` (the old location of ``move_tenant``) erases only the
backends of its own location and destroys only their keys: the moved data lives on in the
new location, and so does the lineage a later erasure plans from.

Every step is written ahead in the audit trail: an ``erase`` intent is durable before a
backend (or a key) is touched, its result is the outcome (if the intent cannot be
recorded, nothing is deleted and :class:`AuditUnavailable` is raised, the request staying
open). A backend's events name the backend's location (``source_location``), so a map
with per-location audit sinks keeps each location's erasure in its own trail; the
receipt is recorded in the tenant's location.

State is one JSON file per request under ``<state_dir>/erasure/``, rewritten atomically
after each backend, every few deletions and around each key destruction, so re-running
an interrupted erasure finishes it whatever step it died in: verified backends are
skipped, the others are listed and emptied again (deletion is idempotent), keys already
destroyed are not asked again. The request also keeps the options it was made with (the
region map file, the local root, its state folder: :class:`RequestOptions`), so
``residency erasure run ID --state-dir DIR`` needs nothing else. Held objects leave the
request ``blocked``, open, and visible in :meth:`ErasureTracker.status` against its
deadline.

The per-object step and the bounded workers are the shared sweep engine
(:mod:`residency_sdk.sweep`); this package keeps only the erasure policy, one module a
job:

- :mod:`~residency_sdk.erasure.request`: the request, its progress per backend and per
  key, and its state files;
- :mod:`~residency_sdk.erasure.plan`: which backends a run erases (location, lineage);
- :mod:`~residency_sdk.erasure.deletion`: steps 1 and 2 on one backend;
- :mod:`~residency_sdk.erasure.key_destruction`: step 3 on one backend;
- :mod:`~residency_sdk.erasure.receipt`: step 5, the receipt and its proof in the audit
  trail, and :class:`ErasureReceipt` (what ``res.erase`` returns);
- :mod:`~residency_sdk.erasure.incomplete`: the error raised for a request left open;
- :mod:`~residency_sdk.erasure.status`: a request against its deadline, and the command
  that finishes it;
- :mod:`~residency_sdk.erasure.tracker`: :class:`ErasureTracker`, which makes, runs (in
  the order above, step 4 included) and reports requests.

Everything public is imported from here: ``from residency_sdk.erasure import ...``.
"""

from residency_sdk.erasure.receipt import (
    BackendErasure,
    ErasureReceipt,
    KeyErasure,
    audit_log_events,
    receipt_digest,
    verify_receipt,
)
from residency_sdk.erasure.request import (
    DEFAULT_DEADLINE_DAYS,
    BackendProgress,
    BackendStatus,
    ErasureRequest,
    KeyProgress,
    KeyState,
    RequestOptions,
    RequestStatus,
    Scope,
    load_request,
    load_requests,
    map_file,
)
from residency_sdk.erasure.status import run_command, status_row
from residency_sdk.erasure.tracker import ErasureTracker

__all__ = [
    "DEFAULT_DEADLINE_DAYS",
    "BackendErasure",
    "BackendProgress",
    "BackendStatus",
    "ErasureReceipt",
    "ErasureRequest",
    "ErasureTracker",
    "KeyErasure",
    "KeyProgress",
    "KeyState",
    "RequestOptions",
    "RequestStatus",
    "Scope",
    "audit_log_events",
    "load_request",
    "load_requests",
    "map_file",
    "receipt_digest",
    "run_command",
    "status_row",
    "verify_receipt",
]
