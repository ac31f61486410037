"""The tracked erasure request: its state model and its state files.

An :class:`ErasureRequest` is what a request records (tenant, location, scope, deadline,
the options it was made with) and how far it got: per backend a
:class:`BackendProgress`, per backend's key material a :class:`KeyProgress`. Its JSON
form is the state file ``<state_dir>/erasure/<id>.json``, read back with
:func:`load_request` / :func:`load_requests` (no map or client needed) and rewritten
atomically with :func:`save_request`. Requests recorded by older versions are brought
up to date here (:func:`name_backend_locations`).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from residency_sdk.errors import ErasureError
from residency_sdk.regionmap import RegionMap
from residency_sdk.regions import packaged_maps_dir
from residency_sdk.sweep import BackendRecord, atomic_write_json

DEFAULT_DEADLINE_DAYS = 30
_REQUEST_ID = re.compile(r"^er-[0-9]{8}-[0-9a-f]{8}$")

RequestStatus = Literal["requested", "in_progress", "blocked", "completed"]
BackendStatus = Literal["pending", "verified", "blocked", "failed"]
Scope = Literal["tenant", "location"]
"""What a request erases: ``tenant``, everything of the tenant wherever its lineage says
its data went (and then its key material, lineage and records); ``location``, only the
backends of the request's own location (the old location of a move: the moved data, the
other locations' keys and the lineage are kept)."""
KeyState = Literal["pending", "destroying", "destroyed", "scheduled", "absent",
                   "unsupported", "failed"]
_KEY_DONE = frozenset({"destroyed", "scheduled", "absent", "unsupported"})
WHOLE_LINEAGE = "*"
"""``lineage_unreachable``'s key when the trace failed as a whole (a corrupt record)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class BackendProgress(BackendRecord):
    """The erasure's progress on one backend."""

    location: str | None = None
    """The location of the backend (None only in requests recorded before erasure
    planned from lineage: the request's own location)."""
    status: BackendStatus = "pending"
    found: int = 0
    """Objects found under the tenant's prefix (deleted, held or left), over all runs."""
    deleted: int = 0
    bytes: int = 0
    versions_deleted: int = 0
    held: list[str] = Field(default_factory=list)
    remaining: int | None = None
    error: str | None = None
    unreachable: bool = False
    """True when the last attempt failed because the backend could not be reached."""
    verified_at: datetime | None = None


class KeyProgress(_Model):
    """The destruction of the tenant's key material on one backend (crypto-shredding)."""

    backend: str
    location: str
    provider: str
    status: KeyState = "pending"
    """``destroying`` while a call may have destroyed it (saved before the call, so a
    re-run after a crash tells a key it destroyed from one that never existed)."""
    key_id: str | None = None
    effective_at: datetime | None = None
    detail: str = ""
    error: str | None = None
    finished_at: datetime | None = None

    @property
    def done(self) -> bool:
        """True once the key's fate is settled (destroyed, scheduled, absent, or the
        backend keeps no per-tenant key)."""
        return self.status in _KEY_DONE

    def summary(self) -> str:
        """What happened to the key, in words (receipts, CLI)."""
        key = self.key_id or "(id unknown)"
        if self.status == "destroyed":
            return f"key {key} destroyed" + (f" ({self.detail})" if self.detail else "")
        if self.status == "scheduled":
            when = f" on {self.effective_at:%Y-%m-%d}" if self.effective_at else ""
            return f"key {key} disabled, deletion scheduled{when}"
        if self.status == "absent":
            return "no key of the tenant here (never made, or destroyed earlier)"
        if self.status == "unsupported":
            return f"no per-tenant key: {self.detail or 'the backend keeps none'}"
        if self.status == "failed":
            return f"key destruction failed: {self.error}"
        return "key not destroyed yet"


class RequestOptions(_Model):
    """What a request was made with, so running it needs nothing else
    (``residency erasure run ID --state-dir DIR``)."""

    map_path: str | None = None
    """The region map file (absolute); None for the packaged default map."""
    local_root: str | None = None
    """The embedded backend's root folder (absolute); None when data lives in the
    cloud backends."""
    state_dir: str
    """The state folder the request is kept in (absolute)."""


class ErasureRequest(_Model):
    """One tracked erasure request (its JSON form is the state file)."""

    id: str
    tenant_id: str
    tenant_country: str
    location: str
    map_name: str
    providers: list[str] | None = None
    scope: Scope = "tenant"
    options: RequestOptions | None = None
    """The options it was made with (None in requests recorded before they were kept)."""
    requested_at: datetime
    terminated_at: datetime | None = None
    deadline: datetime
    reason: str | None = None
    purpose: str | None = None
    actor: str | None = None
    status: RequestStatus = "requested"
    attempts: int = 0
    last_run_at: datetime | None = None
    backends: dict[str, BackendProgress] = {}
    lineage_unreachable: dict[str, str] = {}
    """Locations whose lineage of the tenant could not be read on the last run (location
    -> why): the erasure cannot know every copy, so it stays open."""
    keys: dict[str, KeyProgress] = {}
    """Per backend: the destruction of the tenant's key material (after every backend is
    verified)."""
    forgotten_at: datetime | None = None
    """When the tenant's lineage and records were dropped (a ``tenant`` scope)."""
    lineage_deleted: int = 0
    records_deleted: int = 0
    cleanup_error: str | None = None
    """Why dropping the lineage and records failed on the last run (None when not)."""
    completed_at: datetime | None = None
    receipt: dict[str, Any] | None = None
    receipt_sha256: str | None = None
    receipt_event_id: str | None = None

    @property
    def is_open(self) -> bool:
        """True until every backend is verified empty and the receipt is recorded."""
        return self.status != "completed"

    @property
    def locations(self) -> tuple[str, ...]:
        """Every location the request covers (its own first, then the others sorted)."""
        others = {b.location or self.location for b in self.backends.values()}
        return (self.location, *sorted(others - {self.location}))

    def overdue(self, now: datetime) -> bool:
        """True when the request is still open after its deadline."""
        return self.is_open and now > self.deadline

    def time_left(self, now: datetime) -> timedelta:
        """Time until the deadline (negative once passed)."""
        return self.deadline - now

    def keys_state(self) -> Literal["pending", "failed", "done"]:
        """Where the key destruction stands: ``done`` once every planned backend's key
        is settled, ``failed`` when one could not be destroyed, else ``pending``."""
        if any(k.status == "failed" for k in self.keys.values()):
            return "failed"
        settled = {name for name, k in self.keys.items() if k.done}
        return "done" if self.backends and settled >= set(self.backends) else "pending"


def map_file(region_map: RegionMap) -> str | None:
    """The file ``region_map`` was loaded from, absolute; None for the packaged default
    (or a map that is no file: a request then runs with the packaged map's name check)."""
    file = Path(region_map.file)
    try:
        if file.resolve() == (packaged_maps_dir() / "default.yaml").resolve():
            return None
        return str(file.resolve()) if file.is_file() else None
    except OSError:
        return None


def load_request(state_dir: str | Path, request_id: str) -> ErasureRequest:
    """Request ``request_id`` from ``<state_dir>/erasure/``, needing no map or client
    (the CLI reads a request's options before it knows which map to load);
    :class:`ErasureError` when there is none or its state file is corrupt."""
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
        raise ErasureError(f"invalid erasure request id {request_id!r}: ids look like "
                           "'er-20261122-1a2b3c4d' (see `residency erasure status`)")
    folder = Path(state_dir) / "erasure"
    path = folder / f"{request_id}.json"
    try:
        return ErasureRequest.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise ErasureError(f"no erasure request {request_id!r} in {folder}: check the "
                           "id and --state-dir") from None
    except ValidationError as exc:
        raise ErasureError(f"erasure state file {path} is corrupt: {exc.errors()[0]['msg']}"
                           "; restore it from backup") from None


def load_requests(state_dir: str | Path, *, open_only: bool = False) -> list[ErasureRequest]:
    """Every request kept in ``state_dir`` (oldest deadline first); only the open ones
    with ``open_only``."""
    folder = Path(state_dir) / "erasure"
    found = [load_request(state_dir, p.stem) for p in sorted(folder.glob("er-*.json"))]
    if open_only:
        found = [r for r in found if r.is_open]
    return sorted(found, key=lambda r: (r.deadline, r.id))


def save_request(state_dir: str | Path, request: ErasureRequest) -> None:
    """Write ``request``'s state file in ``<state_dir>/erasure/`` (atomically)."""
    folder = Path(state_dir) / "erasure"
    atomic_write_json(folder / f"{request.id}.json", request.model_dump(mode="json"))


def name_backend_locations(request: ErasureRequest) -> None:
    """Give the backends of a request recorded before erasure planned from lineage their
    location (the request's own) and location-qualified names."""
    for name, progress in list(request.backends.items()):
        if progress.location is not None:
            continue
        progress.location = request.location
        progress.backend = f"{request.location}/{name}"
        del request.backends[name]
        request.backends[progress.backend] = progress


def stated_reasons(request: ErasureRequest) -> tuple[str, ...]:
    """The request's reason and purpose, as the ``reasons`` of its audit events."""
    return tuple(f"{name}: {value}" for name, value in
                 (("reason", request.reason), ("purpose", request.purpose)) if value)
