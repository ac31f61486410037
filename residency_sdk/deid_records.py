"""The tenant's de-identification records, kept in its own location: its keyed-mapping
key and the evidence of every object stored as ``anonymised`` with evidence.

Like the lineage (:mod:`residency_sdk.lineage`) and the tenant records, they are SDK
records in the location's record stores (the default provider's primary store and its
in-country failover), encrypted at rest with the location's key like any object there,
and never a tenant key (``_residency/`` is never listed, swept or transferred)::

    _residency/deid-keys/<tenant>.json                    the tenant's DeidKey
    _residency/deid-evidence/<tenant>/<digest>.json       one Evidence record

**The key** (:meth:`DeidRecords.key`) is made on first use: 32 random bytes and a random
id, written to the tenant's location before anything uses it, and read back from there
(cached per process). It never leaves the location: the de-identifier runs where the
data lives, and only the key's id is recorded in evidence. Writing it is audited ahead
(a ``put`` event with purpose ``deid_key``), and so is the first read of each process (a
``get`` event), so the trail shows who used which tenant's key and when. A key must stay
the same for the tenant's whole life (the UID and date mappings come from it): a key is
created only when the primary store says, authoritatively, that there is none; when the
primary cannot be asked and the failover holds no key, :class:`BackendUnavailable` is
raised rather than a second key made.

**Evidence** (:meth:`DeidRecords.save_evidence`) is stored under the SHA-256 of its
canonical JSON (its :meth:`~residency_sdk.deid.evidence.Evidence.digest`, which the
object's metadata holds under :data:`~residency_sdk.deid.evidence.EVIDENCE_META`), written
ahead of the object it is about and audited (purpose ``deid_evidence``). It stays in the
tenant's location even when the de-identified object is transferred: the copy carries the
digest, and the transfer's audit event the evidence summary.

Erasure drops both (:meth:`DeidRecords.forget`, called by tracked erasure with the lineage
and tenant records): once the key is gone, nobody can recompute the tenant's UID mapping.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import secrets
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal, TypeVar

from pydantic import ValidationError

from residency_sdk.deid.evidence import Evidence
from residency_sdk.deid.keys import DeidKey
from residency_sdk.errors import (
    BackendUnavailable,
    IntegrityError,
    ObjectNotFound,
)
from residency_sdk.events import AuditEmitter
from residency_sdk.marks import CREATED_META, TENANT_META
from residency_sdk.model import Tenant
from residency_sdk.policy import ResidencyPolicy
from residency_sdk.records import SdkRecords
from residency_sdk.regionmap import Location
from residency_sdk.storage.base import ObjectStore
from residency_sdk.storage.keys import SDK_PREFIX, tenant_prefix
from residency_sdk.storage.pool import StorePool

T = TypeVar("T")
KEYS_PREFIX = f"{SDK_PREFIX}deid-keys/"
EVIDENCE_PREFIX = f"{SDK_PREFIX}deid-evidence/"
KEY_PURPOSE = "deid_key"
"""The purpose of the audit events of key writes and reads."""
EVIDENCE_PURPOSE = "deid_evidence"
"""The purpose of the audit events of evidence writes."""
SECRET_BYTES = 32
_KEY_VERSION = 1


def key_record_key(tenant_id: str) -> str:
    """Where the tenant's de-identification key is kept in its location."""
    tenant_prefix(tenant_id)  # the same invariants as the data prefix
    return f"{KEYS_PREFIX}{tenant_id}.json"


def evidence_prefix(tenant_id: str) -> str:
    """``_residency/deid-evidence/<tenant>/``: where one tenant's evidence is kept."""
    tenant_prefix(tenant_id)
    return f"{EVIDENCE_PREFIX}{tenant_id}/"


def evidence_key(tenant_id: str, digest: str) -> str:
    """Where the evidence record with ``digest`` (hex SHA-256) is kept."""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise IntegrityError(f"evidence digest {digest!r} is not a hex SHA-256: the "
                             "object's metadata was altered")
    return f"{evidence_prefix(tenant_id)}{digest}.json"


def _encode_key(tenant_id: str, key: DeidKey, created: datetime) -> bytes:
    return json.dumps({"version": _KEY_VERSION, "tenant_id": tenant_id,
                       "key_id": key.key_id,
                       "secret": base64.b64encode(key.secret).decode("ascii"),
                       "created_at": created.isoformat()}, sort_keys=True).encode()


def _decode_key(data: bytes, tenant_id: str, where: str) -> DeidKey:
    try:
        doc = json.loads(data)
        if doc["tenant_id"] != tenant_id:
            raise ValueError("another tenant's key")
        return DeidKey(key_id=str(doc["key_id"]),
                       secret=base64.b64decode(doc["secret"], validate=True))
    except (ValueError, KeyError, TypeError) as exc:
        # Never make a new key over an unreadable one: every UID mapped so far hangs on it.
        raise IntegrityError(
            f"de-identification key record {where} is unreadable ({type(exc).__name__}): "
            "restore it from backup; a new key would map the tenant's UIDs differently"
        ) from None


class DeidRecords:
    """Keeps tenants' de-identification keys and evidence in their locations; one per
    client, thread-safe."""

    def __init__(self, policy: ResidencyPolicy, stores: StorePool,
                 audit: AuditEmitter | None = None, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._policy = policy
        self._stores = stores
        self._records = SdkRecords(stores, audit)
        self._clock = clock
        self._keys: dict[tuple[str, str], DeidKey] = {}
        self._lock = threading.Lock()

    # --- the key -------------------------------------------------------------------------

    def key(self, tenant: Tenant, *, actor: str | None = None) -> DeidKey:
        """``tenant``'s key, read from its location (made there on first use)."""
        home = self._policy.location_of(tenant)
        cached = self._keys.get((tenant.id, home.id))
        if cached is not None:
            return cached
        with self._lock:  # one creation per process, however many threads ask at once
            cached = self._keys.get((tenant.id, home.id))
            if cached is None:
                cached = self._load_or_create(tenant, home, actor)
                self._keys[(tenant.id, home.id)] = cached
            return cached

    def _load_or_create(self, tenant: Tenant, home: Location, actor: str | None) -> DeidKey:
        name = key_record_key(tenant.id)
        where = f"{home.id}:{name}"
        stores = self._stores.record_stores(home)

        def read() -> bytes | None:
            try:
                return stores[0].get(name)
            except ObjectNotFound:
                primary_says_absent = True
            except BackendUnavailable as exc:
                primary_says_absent = False
                if len(stores) < 2:
                    raise
                down = exc
            for other in stores[1:]:
                try:
                    return other.get(name)
                except ObjectNotFound:
                    pass
                except BackendUnavailable:
                    if not primary_says_absent:
                        raise
            if primary_says_absent:
                return None
            raise BackendUnavailable(
                f"the de-identification key of tenant {tenant.id!r} cannot be read in "
                f"location {home.id}: the primary store failed ({down}) and the failover "
                "holds no key; a new key now would map the tenant's UIDs differently from "
                "the old one: retry when the primary is back") from down

        data = self._audited("get", home, tenant, name, KEY_PURPOSE, actor, read)
        if data is not None:
            return _decode_key(data, tenant.id, where)
        key = DeidKey(key_id=f"deid-{home.id.lower()}-{secrets.token_hex(8)}",
                      secret=secrets.token_bytes(SECRET_BYTES))
        now = self._clock()
        meta = {CREATED_META: now.isoformat(), TENANT_META: tenant.id}
        record = _encode_key(tenant.id, key, now)

        def write() -> bytes:
            stores[0].put(name, record, metadata=meta)  # the primary must hold it
            for other in stores[1:]:
                # Read from the primary; the failover's copy serves its outages only.
                with contextlib.suppress(BackendUnavailable):
                    other.put(name, record, metadata=meta)
            # Read back: of two processes creating at once, both end up with the one the
            # primary kept (the window left is between this read and the other's write).
            return stores[0].get(name)

        stored = self._audited("put", home, tenant, name, KEY_PURPOSE, actor, write)
        return _decode_key(stored, tenant.id, where)

    # --- evidence ------------------------------------------------------------------------

    def save_evidence(self, tenant: Tenant, evidence: Evidence, *,
                      actor: str | None = None) -> str:
        """Store ``evidence`` in ``tenant``'s location (primary and failover: one must
        succeed), audited ahead; returns its digest (the object's
        :data:`~residency_sdk.deid.evidence.EVIDENCE_META`)."""
        home = self._policy.location_of(tenant)
        digest = evidence.digest()
        name = evidence_key(tenant.id, digest)
        data = evidence.model_dump_json().encode("utf-8")
        meta = {CREATED_META: self._clock().isoformat(), TENANT_META: tenant.id}

        self._audited("put", home, tenant, name, EVIDENCE_PURPOSE, actor,
                      lambda: self._records.write(home, name, data, meta))
        return digest

    def evidence(self, tenant: Tenant, digest: str) -> Evidence | None:
        """The evidence record ``digest`` of ``tenant`` (None when there is none); a
        record whose content does not hash to its name raises :class:`IntegrityError`."""
        home = self._policy.location_of(tenant)
        name = evidence_key(tenant.id, digest)
        first: BackendUnavailable | None = None
        data = None
        for store in self._stores.record_stores(home):
            try:
                data = store.get(name)
                break
            except ObjectNotFound:
                if first is None:
                    return None
            except BackendUnavailable as exc:
                first = first or exc
        if data is None:
            assert first is not None
            raise first
        try:
            evidence = Evidence.model_validate_json(data)
        except ValidationError as exc:
            raise IntegrityError(f"evidence record {home.id}:{name} is corrupt: "
                                 f"{exc.errors()[0]['msg']}") from None
        if evidence.digest() != digest:
            raise IntegrityError(f"evidence record {home.id}:{name} does not hash to its "
                                 "name: it was altered after it was written")
        return evidence

    # --- moving a tenant ------------------------------------------------------------------

    def move(self, old: Tenant, new: Tenant, *, actor: str | None = None) -> int:
        """Carry ``old``'s key and evidence records to ``new``'s location (a tenant move,
        whose transfer was checked by the caller), then drop them where they were.
        Without this a moved tenant would get a second key (its UIDs and dates mapped
        differently from before) and its anonymised objects would lose their evidence.
        Each write and delete is audited ahead; running it again after a crash finishes
        it (a record already moved is found at the destination). Returns records moved."""
        source = self._policy.location_of(old)
        dest = self._policy.location_of(new)
        if source.id == dest.id:
            return 0
        names = [key_record_key(old.id)]
        names += [info.key for info in self._stores.record_stores(source)[0].list(
            evidence_prefix(old.id))]
        moved = 0
        for name in names:
            data = self._records.read(source, name, what="de-identification records")
            if data is None:
                continue
            meta = {CREATED_META: self._clock().isoformat(), TENANT_META: new.id}
            purpose = KEY_PURPOSE if name.startswith(KEYS_PREFIX) else EVIDENCE_PURPOSE
            self._audited("put", dest, new, name, purpose, actor,
                          functools.partial(self._records.write, dest, name, data, meta))
            for store in self._stores.record_stores(source):
                self._audited("delete", source, old, name, purpose, actor,
                              functools.partial(store.delete, name))
            moved += 1
        with self._lock:
            self._keys = {k: v for k, v in self._keys.items() if k[0] != old.id}
        return moved

    # --- erasure -------------------------------------------------------------------------

    def forget(self, tenant: Tenant, *, actor: str | None = None) -> int:
        """Delete ``tenant``'s key and evidence records in every location (primary and
        failover), each deletion audited ahead; returns the objects deleted. Called by
        tracked erasure after the tenant's data is gone."""
        deleted = 0
        for location in self._policy.map.locations.values():
            for store in self._stores.record_stores(location):
                names = [info.key for info in store.list(evidence_prefix(tenant.id))]
                names.append(key_record_key(tenant.id))
                for name in names:
                    if not store.exists(name):
                        continue
                    purpose = KEY_PURPOSE if name.startswith(KEYS_PREFIX) else EVIDENCE_PURPOSE

                    def drop(store: ObjectStore = store, name: str = name) -> bool:
                        return store.delete(name)

                    if self._audited("delete", location, tenant, name, purpose, actor, drop):
                        deleted += 1
        with self._lock:
            self._keys = {k: v for k, v in self._keys.items() if k[0] != tenant.id}
        return deleted

    def _audited(self, operation: Literal["put", "get", "delete"], home: Location,
                 tenant: Tenant, key: str, purpose: str, actor: str | None,
                 run: Callable[[], T]) -> T:
        return self._records.audited(operation, home, tenant, key, run, purpose=purpose,
                                     actor=actor)
