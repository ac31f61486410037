"""The SQLite audit log: appends, durability modes, keys, bad input, threads, wiring."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import KEY, event

import residency_sdk as rs
from residency_sdk.audit import GENESIS, AuditLog, verify_log
from residency_sdk.audit.chain import HMAC_KEY_ENV, link_hash
from residency_sdk.errors import (
    AuditError,
    AuditFormatError,
    AuditKeyError,
    AuditLogClosed,
    ResidencyError,
)


def test_append_chains_events_and_verifies(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with AuditLog(path) as log:
        for i in range(5):
            log.append(event(i))
        assert len(log) == 5
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT seq, event, prev_hash, hash, mac FROM audit_events "
                        "ORDER BY seq").fetchall()
    conn.close()
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5]
    prev = GENESIS
    for seq, text, prev_hash, digest, mac in rows:
        assert prev_hash == prev
        assert digest == link_hash(seq, prev_hash, text)
        assert mac is None
        prev = digest
    stored = json.loads(rows[2][1])
    assert stored["schema"] == "residency.audit/v1"
    assert stored["object_key"] == "charite-berlin/scan-2.dcm" and stored["size"] == 1002
    result = verify_log(path)
    assert result.ok and result.events == 5 and result.head_hash == prev
    assert not result.keyed and not result.hmac_checked


def test_reopened_log_continues_the_same_chain(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with AuditLog(path) as log:
        log.append(event(0))
    with AuditLog(path) as log:
        log.append(event(1))
        assert log.head()[0] == 2
    assert verify_log(path).events == 2


def test_batched_events_are_durable_only_after_flush(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    log = AuditLog(path, batched=True, batch_size=1000)
    for i in range(10):
        log.append(event(i))
    assert verify_log(path).events == 0  # still buffered in this process
    log.flush()
    assert verify_log(path).events == 10
    log.append(event(10))
    log.close()  # close flushes
    assert verify_log(path).events == 11


def test_batched_log_flushes_itself_every_batch_size(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with AuditLog(path, batched=True, batch_size=4) as log:
        for i in range(9):
            log.append(event(i))
        assert verify_log(path).events == 8
    assert verify_log(path).events == 9


def test_keyed_log_seals_every_link_and_never_stores_the_key(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    with AuditLog(path, hmac_key=KEY) as log:
        assert log.keyed and "k" * 16 not in repr(log)
        log.append_many([event(i) for i in range(3)])
    raw = path.read_bytes() + (tmp_path / "k.db-wal").read_bytes() \
        if (tmp_path / "k.db-wal").exists() else path.read_bytes()
    assert KEY not in raw
    assert verify_log(path, hmac_key=KEY).hmac_checked
    unchecked = verify_log(path)
    assert unchecked.ok and not unchecked.hmac_checked and unchecked.notes


def test_key_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HMAC_KEY_ENV, KEY.decode())
    path = tmp_path / "k.db"
    with AuditLog(path) as log:
        log.append(event(0))
        assert log.keyed
    assert verify_log(path).hmac_checked


@pytest.mark.parametrize(("create_key", "open_key", "match"), [
    (KEY, None, "is HMAC-keyed"),
    (None, KEY, "created without an HMAC key"),
    (KEY, b"x" * 32, "not the key"),
])
def test_key_mismatch_is_refused(tmp_path: Path, create_key: bytes | None,
                                 open_key: bytes | None, match: str) -> None:
    path = tmp_path / "k.db"
    AuditLog(path, hmac_key=create_key).close()
    with pytest.raises(AuditKeyError, match=match):
        AuditLog(path, hmac_key=open_key)


def test_short_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AuditKeyError, match="at least 16"):
        AuditLog(tmp_path / "k.db", hmac_key="short")


def test_bad_input_is_refused_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with AuditLog(path) as log:
        log.append(event(0))
        with pytest.raises(AuditFormatError, match="AuditEvent"):
            log.append({"operation": "put"})  # type: ignore[arg-type]
        with pytest.raises(AuditFormatError, match="naive time"):
            log.append(event(1, time=datetime(2026, 1, 1)))
        log.append(event(2))
    assert verify_log(path).events == 2


def test_times_are_stored_in_utc(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    plus2 = timezone(timedelta(hours=2))
    with AuditLog(path) as log:
        log.append(event(0, time=datetime(2026, 6, 1, 12, 0, tzinfo=plus2)))
    conn = sqlite3.connect(path)
    (text,) = conn.execute("SELECT event FROM audit_events").fetchone()
    conn.close()
    assert json.loads(text)["time"] == "2026-06-01T10:00:00.000000Z"


def test_foreign_files_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE patients (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(AuditFormatError, match="not a residency audit log"):
        AuditLog(other)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(AuditFormatError):
        AuditLog(junk)
    with pytest.raises(AuditFormatError, match="no audit log"):
        verify_log(tmp_path / "missing.db")
    with pytest.raises(AuditFormatError, match="not a residency audit log"):
        verify_log(other)
    assert issubclass(AuditFormatError, AuditError) and issubclass(AuditError, ResidencyError)


def test_closed_log_refuses_appends(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.db")
    log.close()
    log.close()  # idempotent
    with pytest.raises(AuditLogClosed):
        log.append(event(0))


def test_threads_share_one_log(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    log = AuditLog(path, batched=True, batch_size=64)

    def work(t: int) -> None:
        for i in range(250):
            log.append(event(i, actor=f"thread-{t}"))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    result = verify_log(path)
    assert result.ok and result.events == 2000


def test_residency_load_wires_the_log(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    res = rs.Residency.load(audit=str(path))
    de = rs.Tenant(id="charite-berlin", country="DE")
    res.check_transfer(de, "US", "phi", actor="dr-house", purpose="second opinion")
    res.check_transfer(de, "GB", "phi", actor="dr-house")
    res.emit(event(0))
    result = verify_log(path)
    assert result.ok and result.events == 3
    conn = sqlite3.connect(path)
    first = json.loads(conn.execute("SELECT event FROM audit_events WHERE seq = 1").fetchone()[0])
    conn.close()
    assert first["operation"] == "transfer_check" and first["outcome"] == "blocked"
    assert first["actor"] == "dr-house" and first["purpose"] == "second opinion"
    assert first["destination_country"] == "US" and first["tenant_id"] == "charite-berlin"


def test_empty_log_verifies_and_cannot_be_checkpointed(tmp_path: Path) -> None:
    from residency_sdk.audit import export_checkpoint

    path = tmp_path / "empty.db"
    AuditLog(path).close()
    result = verify_log(path)
    assert result.ok and result.events == 0 and result.head_hash == GENESIS
    with pytest.raises(AuditFormatError, match="empty"):
        export_checkpoint(path)


@pytest.mark.parametrize("key", [KEY, b"x" * 64, b"y" * 65, bytes(range(200))])
def test_sealer_is_rfc2104_hmac_sha256(key: bytes) -> None:
    import hashlib
    import hmac

    from residency_sdk.audit.chain import Sealer, link_mac

    sealer = Sealer(key)
    for message in (b"", b"1\nabc", b"z" * 1000):
        assert sealer.hexdigest(message) == hmac.new(key, message, hashlib.sha256).hexdigest()
    assert sealer.link(7, "ab" * 32) == link_mac(key, 7, "ab" * 32)
