"""Fixtures for the audit tests: real logs on disk, filled through the public API."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from residency_sdk.audit import AuditLog
from residency_sdk.audit.chain import HMAC_KEY_ENV
from residency_sdk.events import AuditEvent

KEY = b"k" * 16 + b"-audit-test-key-0123456789"
T0 = datetime(2026, 11, 1, 8, 0, 0, tzinfo=UTC)


def event(i: int = 0, **fields: object) -> AuditEvent:
    """A realistic data-operation event (the i-th, one second apart)."""
    base: dict[str, object] = dict(
        time=T0 + timedelta(seconds=i), operation="put", outcome="ok", actor=f"svc-{i % 3}",
        tenant_id="charite-berlin", tenant_country="DE", data_class="phi",
        source_location="DE", provider="aws", region="eu-central-1",
        bucket="residency-de-aws-data", object_key=f"charite-berlin/scan-{i}.dcm",
        size=1000 + i, checksum=f"sha256:{i:064x}")
    base.update(fields)
    return AuditEvent(**base)  # type: ignore[arg-type]


def head_row(conn: sqlite3.Connection) -> tuple[int, str, int, str | None] | None:
    """The stored head ``(seq, hash, counter, mac)``, as an attacker would read it."""
    row = conn.execute("SELECT seq, hash, counter, mac FROM audit_head WHERE id = 1").fetchone()
    return None if row is None else (int(row[0]), str(row[1]), int(row[2]), row[3])


def write_head(conn: sqlite3.Connection, head: tuple[int, str, int, str | None]) -> None:
    """Write ``head`` back as the log's head row (creating the row if it was deleted)."""
    conn.execute("INSERT OR REPLACE INTO audit_head (id, seq, hash, counter, mac) "
                 "VALUES (1, ?, ?, ?, ?)", head)


def copy_log(src: Path, dst: Path) -> None:
    """A consistent copy of a live WAL log (what a backup or an attacker's copy holds)."""
    source = sqlite3.connect(src)
    target = sqlite3.connect(dst)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


@pytest.fixture(autouse=True)
def _no_ambient_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # A key in the developer's environment must not change what the tests mean.
    monkeypatch.delenv(HMAC_KEY_ENV, raising=False)


@pytest.fixture
def make_log(tmp_path: Path) -> Callable[..., Path]:
    """``make_log(n, hmac_key=None) -> path`` of a log holding n events."""

    def make(n: int = 10, *, hmac_key: bytes | None = None, name: str = "audit.db") -> Path:
        path = tmp_path / name
        with AuditLog(path, hmac_key=hmac_key) as log:
            log.append_many([event(i) for i in range(n)])
        return path

    return make


@pytest.fixture
def db() -> Iterator[Callable[[Path], sqlite3.Connection]]:
    """Open a log's file directly, as an attacker with write access would."""
    conns: list[sqlite3.Connection] = []

    def open_(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None)
        conns.append(conn)
        return conn

    yield open_
    for conn in conns:
        conn.close()


@pytest.fixture
def anchor_dir(tmp_path: Path) -> Path:
    """A local append-only anchor folder (outside the log's reach in real deployments)."""
    return tmp_path / "anchors"
