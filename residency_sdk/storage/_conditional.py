"""What a conditional delete is conditional on (shared by every adapter's ``delete``).

``ObjectStore.delete(key, if_match=info)`` deletes only the exact write ``info`` describes
(what :meth:`~residency_sdk.storage.base.ObjectStore.head` or ``list`` reported). Each
backend conditions on one identifier of that write: the ETag (S3 ``If-Match``, Azure
``If-Match``, the local store's blob id, the memory store's etag) or the version (the GCS
generation, ``ifGenerationMatch``). An ``info`` about another key, or one without the
identifier the backend needs, cannot make the delete conditional: it is refused before
anything is sent, rather than falling back to an unconditional delete.
"""

from __future__ import annotations

from typing import Literal

from residency_sdk.errors import (
    InvalidKey,
    ObjectChanged,
    ObjectNotFound,
    ResidencyError,
    StorageError,
)
from residency_sdk.storage.base import ObjectInfo, ObjectStore


def expected_write(key: str, if_match: ObjectInfo, where: str, *,
                   field: Literal["etag", "version"] = "etag") -> str:
    """The identifier (``field`` of ``if_match``) the delete of ``key`` in ``where`` must
    match. Raises :class:`InvalidKey` when ``if_match`` describes another key and
    :class:`StorageError` when it carries no such identifier (both naming the fix)."""
    if if_match.key != key:
        raise InvalidKey(
            f"conditional delete of {key!r} in {where} was given the info of another "
            f"object ({if_match.key!r}): pass what head({key!r}) reported")
    value = getattr(if_match, field)
    if not value:
        what = "ETag" if field == "etag" else "version (generation)"
        raise StorageError(
            f"conditional delete of {key!r} in {where}: the object info carries no {what}, "
            f"so the delete cannot be tied to the write that was examined; nothing was "
            f"deleted - pass what head({key!r}) or list() reported")
    if field == "version" and not str(value).isdigit():
        # GCS generations are numbers; anything else cannot be this backend's version.
        raise StorageError(
            f"conditional delete of {key!r} in {where}: version {value!r} is not a "
            f"generation number; nothing was deleted - pass what head({key!r}) reported")
    return str(value)


def refused(store: ObjectStore, key: str, expected: str, *,
            field: Literal["etag", "version"] = "etag") -> bool:
    """What a conditional delete the service refused (412/409) means: False when the
    object is gone (some services answer a missing object's condition with 412), else
    :class:`ObjectChanged` naming what the key holds now (None when that cannot be read:
    either way nothing was deleted)."""
    where = getattr(store, "name", None) or f"{store.target.provider}:{store.target.bucket}"
    try:
        now: str | None = getattr(store.head(key), field)
    except ObjectNotFound:
        return False
    except ResidencyError:
        now = None
    raise ObjectChanged(key, expected, now, where)
