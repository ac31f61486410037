"""Where one audit chain is kept: the storage seam under the writer and the verifier.

The chain (:mod:`residency_sdk.audit.chain`), the group-committing writer
(:class:`~residency_sdk.audit.AuditLog`) and verification know nothing about SQL
dialects; a :class:`ChainStore` knows nothing about hashes. Two stores implement it: an
embedded SQLite (WAL) file (:mod:`residency_sdk.audit.sqlite_store`) and a PostgreSQL
table set shared by a fleet (:mod:`residency_sdk.audit.postgres_store`).

A store keeps three things: ``meta`` (format, log id, chain kind, creation time, key id,
key check, genesis seal), the events (``seq, event, prev_hash, hash, mac``) and one head
row (``seq, hash, counter, mac``) that exists from the moment the log is created, so an
emptied log is never mistaken for a new one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

Row = tuple[int, str, str, str, str | None]
"""One stored event: ``(seq, canonical event JSON, prev_hash, hash, mac or None)``."""


@dataclass(frozen=True, slots=True)
class Head:
    """The recorded head: the last event's position and hash, and the commit counter.

    ``counter`` grows by one with every commit and never goes back; the head's MAC (keyed
    logs) binds the log id, the counter, the position and the hash, so a head can be
    neither moved to another log nor presented as newer than it is.
    """

    seq: int
    hash: str
    counter: int
    mac: str | None


Extend = Callable[[Head | None, "tuple[int, str] | None"], "tuple[Sequence[Row], Head]"]
"""Called inside the write transaction with the recorded head (None when the head row is
missing) and the last stored event's ``(seq, hash)`` (None when there is none); returns
the rows to insert and the new head. Raising aborts the transaction."""


class ChainSnapshot(Protocol):
    """A consistent read of one log (one transaction / snapshot)."""

    def meta(self) -> dict[str, str]:
        """The log's meta table."""

    def head(self) -> Head | None:
        """The recorded head, None when the row is missing."""

    def rows(self, start: int = 1) -> Iterator[Row]:
        """Events with ``seq >= start`` in ascending ``seq`` order, streamed."""

    def outside_chain(self) -> list[int]:
        """Positions of stored rows that cannot be part of the chain (``seq <= 0``)."""


class ChainStore(Protocol):
    """Durable storage of one audit chain (SQLite file or PostgreSQL tables).

    Driver errors never escape: an unreachable or full store raises
    :class:`~residency_sdk.errors.AuditUnavailable`, something that is not a residency
    audit log :class:`~residency_sdk.errors.AuditFormatError`.
    """

    name: str
    """What messages show: the file path, or the URL without its password."""

    def initialise(self, meta: Mapping[str, str],
                   genesis: Callable[[Mapping[str, str]], Head]) -> dict[str, str]:
        """Create the log if it does not exist (``meta`` and ``genesis(meta)`` as its head,
        in one transaction, safe against a concurrent creator) and return the stored meta
        (an existing log's own, unchanged)."""

    def commit(self, extend: Extend) -> Head:
        """One durable transaction under the log's write lock (serialising every writer
        of every process and host): read the head and the last row, call ``extend``,
        insert its rows, store its head, commit (on disk when this returns)."""

    def read(self) -> AbstractContextManager[ChainSnapshot]:
        """A consistent snapshot for verification and reports."""

    def close(self) -> None:
        """Release connections (the store may be reopened after ``fork()``)."""
