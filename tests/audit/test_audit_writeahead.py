"""Write-ahead audit: no data operation runs unless its intent is durable first.

Issue 12, point 5: with the audit database on a full disk, ``put`` and ``delete`` used to
change the data and then raise a raw ``sqlite3.OperationalError``, leaving no event. Now
the intent event is durable before the operation touches a backend: if it cannot be
written, nothing happens and the caller gets :class:`AuditUnavailable`; a process killed
between intent and outcome leaves an intent that verification lists as "outcome
unknown", never silence.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import residency_sdk as rs
from residency_sdk.audit import AuditLog, verify_log
from residency_sdk.erasure import audit_log_events
from residency_sdk.errors import AuditUnavailable
from residency_sdk.events import AuditEvent
from residency_sdk.marks import CATEGORY_META, CREATED_META
from residency_sdk.model import StorageTarget
from residency_sdk.storage.keys import tenant_key
from residency_sdk.storage.memory import MemoryStore

DE = rs.Tenant(id="charite-berlin", country="DE")
ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          check=False)


# --- (a) the audit database on a full disk -----------------------------------------------

# Runs in its own process: RLIMIT_FSIZE caps how far any file may grow (with SIGXFSZ
# ignored, a write past it fails with EFBIG), so once the limit is set just above what is
# on disk, the audit log cannot grow while the objects (a few hundred bytes each) still
# fit. That is the disk-full failure SQLite reports as SQLITE_FULL, for real.
_FULL_DISK = """
import json, os, resource, signal, sys
from pathlib import Path
import residency_sdk as rs

root, log = Path(sys.argv[1]), Path(sys.argv[2])
res = rs.Residency.load(local_root=root, audit=str(log))
store = res.storage_for(rs.Tenant(id="charite-berlin", country="DE"), actor="test")
store.put("kept.dcm", b"before the disk filled up")
getattr(res.audit, "flush", lambda: None)()  # (so this script also runs before issue 12)
sizes = [p.stat().st_size for p in log.parent.glob(log.name + "*")]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (max(sizes) + 1, resource.RLIM_INFINITY))
outcome = {}
for name, call in (("put", lambda: store.put("new.dcm", b"written while the disk is full")),
                   ("delete", lambda: store.delete("kept.dcm"))):
    try:
        call()
        outcome[name] = None
    except BaseException as exc:
        outcome[name] = [type(exc).__module__, type(exc).__name__, str(exc)]
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
print(json.dumps(outcome))
sys.stdout.flush()
os._exit(0)  # the log stays failed; nothing more to flush
"""


def test_full_audit_disk_changes_no_data_and_raises_audit_unavailable(tmp_path: Path) -> None:
    root, log = tmp_path / "data", tmp_path / "audit" / "audit.db"
    log.parent.mkdir()
    done = _run(_FULL_DISK, str(root), str(log))
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    for operation in ("put", "delete"):
        assert outcome[operation] is not None, f"{operation} ran with the audit disk full"
        module, name, message = outcome[operation]
        # The caller's error is the SDK's, naming the log and the fix; never a raw driver one.
        assert (module, name) == ("residency_sdk.errors", "AuditUnavailable"), outcome
        assert "OperationalError" not in message and str(log) in message, message
    # Nothing changed: the new object was never written, the old one never deleted.
    res = rs.Residency.load(local_root=root, audit=False)
    store = res.storage_for(DE)
    assert store.get("kept.dcm") == b"before the disk filled up"
    assert not store.exists("new.dcm")
    res.close()


def test_a_failing_sink_stops_every_data_path(tmp_path: Path) -> None:
    """Each data path refuses to run when its intent cannot be recorded: the store's
    operations, a transfer, a retention deletion, an erasure, a tenant move."""
    failing = _Switchable()
    res = rs.Residency.load(local_root=tmp_path / "data", audit=failing,
                            state_dir=tmp_path / "state")
    store = res.storage_for(DE)
    store.put("scan.dcm", b"phi", category="imaging_upload")
    raw = res.store(store.target, store.location)
    stored = tenant_key(DE, "scan.dcm")
    expired = dict(raw.head(stored).metadata, **{CREATED_META: "2020-01-01T00:00:00+00:00"})
    raw.put(stored, b"phi", metadata=expired)
    failing.down = True

    attempts: dict[str, Any] = {
        "put": lambda: store.put("other.dcm", b"phi"),
        "get": lambda: store.get("scan.dcm"),
        "open": lambda: store.open("scan.dcm"),
        "head": lambda: store.head("scan.dcm"),
        "exists": lambda: store.exists("scan.dcm"),
        "list": lambda: list(store.list()),
        "delete": lambda: store.delete("scan.dcm"),
        "transfer": lambda: res.transfer(rs.Tenant(id="charite-berlin", country="DE",
                                                   agreements=frozenset({"scc"})),
                                         "scan.dcm", to="US", data_class="anonymised"),
        "retention sweep": lambda: res.retention_sweep("DE").run(),
        "erase": lambda: res.erase(DE),
        "tenant move": lambda: res.move_tenant(DE, "AT"),
    }
    for name, attempt in attempts.items():
        before = failing.refused
        with pytest.raises(AuditUnavailable):
            attempt()
        assert failing.refused > before, name
    failing.down = False
    assert store.get("scan.dcm") == b"phi"  # deleted by none of them
    assert not store.exists("other.dcm")
    assert not res.store(res.backend("US"), "US").exists(stored)
    res.close()


class _Switchable:
    """A sink that can be switched off: it then refuses to make anything durable (a
    durable append, or a flush of what was queued)."""

    def __init__(self) -> None:
        self.events: list[tuple[AuditEvent, bool]] = []
        self.down = False
        self.refused = 0
        self.name = "switchable test sink"

    def append(self, event: AuditEvent, *, durable: bool = True) -> None:
        if self.down and durable:
            self.refused += 1
            raise OSError(28, "No space left on device")
        self.events.append((event, durable))

    def flush(self) -> None:
        """Queued events are kept in memory: durable only while the sink is up."""
        if self.down:
            self.refused += 1
            raise OSError(28, "No space left on device")

    def close(self) -> None:
        """Nothing to release."""


# --- (b) the intent is durable before the backend is called ------------------------------


class _Recording(MemoryStore):
    """A memory store that, at each call, reads the audit log from disk (another
    connection, as a crash would leave it) and remembers what it found."""

    def __init__(self, target: StorageTarget, log: Path,
                 seen: list[tuple[str, str, list[AuditEvent]]]) -> None:
        super().__init__(target)
        self.log = log
        self.seen = seen

    def _look(self, call: str, key: str) -> None:
        if not key.startswith("tenants/"):
            return  # the tenant's country record: audited too, checked elsewhere
        self.seen.append((call, key, list(audit_log_events(self.log))))

    def put(self, key: str, data: Any, **kwargs: Any) -> Any:
        self._look("put", key)
        return super().put(key, data, **kwargs)

    def get(self, key: str) -> bytes:
        self._look("get", key)
        return super().get(key)

    def delete(self, key: str) -> bool:
        self._look("delete", key)
        return super().delete(key)


def test_the_intent_is_on_disk_before_the_backend_is_called(tmp_path: Path) -> None:
    log = tmp_path / "audit.db"
    stores: dict[str, _Recording] = {}
    calls: list[tuple[str, str, list[AuditEvent]]] = []  # every store's, in order

    def opener(target: StorageTarget, location: str) -> _Recording:
        return stores.setdefault(f"{location}:{target.bucket}",
                                 _Recording(target, log, calls))

    with AuditLog(log) as audit:
        res = rs.Residency.load(storage=opener, audit=audit)
        # An Austrian clinic: § 393 SGB V keeps German health data out of SCC transfers
        # (LEGAL_FACTS 12); Austria is routed to the DE location all the same.
        tenant = rs.Tenant(id="vienna-clinic", country="AT", agreements=frozenset({"scc"}))
        store = res.storage_for(tenant, actor="dr-who")
        store.put("scan.dcm", b"phi", data_class="phi",
                  metadata={CATEGORY_META: "imaging_upload"})
        # A read's intent is committed while the backend answers and is on disk before
        # the data is handed back (nothing read leaves the store unaudited).
        first_read = len(calls)
        assert store.get("scan.dcm") == b"phi"
        reads = range(first_read, len(calls))
        on_disk = list(audit_log_events(log))
        read_intents = [e for e in on_disk if e.operation == "get" and e.outcome == "intent"]
        assert len(read_intents) == 1 and read_intents[0].object_key == "scan.dcm"
        res.transfer(tenant, "scan.dcm", to="US", data_class="phi")
        store.delete("scan.dcm")
        assert [(c, k) for c, k, _ in calls if c != "get"] \
            == [("put", "tenants/vienna-clinic/scan.dcm"),
                ("put", "tenants/vienna-clinic/scan.dcm"),  # the transfer's copy, in US
                ("delete", "tenants/vienna-clinic/scan.dcm")]
        expected = {"put": "put", "get": "get", "delete": "delete"}
        for i, (call, key, on_disk) in enumerate(calls):
            if i in reads:
                continue
            mine = [e for e in on_disk if e.object_key == key.removeprefix(
                "tenants/vienna-clinic/") and e.purpose not in ("tenant_record", "lineage")]
            last = mine[-1]
            # The newest event about the object on disk is the intent of this very call
            # (the transfer's copy reads the source, then writes under the transfer intent).
            assert last.outcome == "intent", (call, [(e.operation, e.outcome) for e in mine])
            assert last.operation in (expected[call], "transfer"), (call, last)
            assert not any(e.intent_id == last.event_id for e in on_disk)  # not done yet
        res.close()
    # Afterwards every intent has its outcome.
    result = verify_log(log)
    assert result.ok and result.outcome_unknown == ()


# --- (c) killed between intent and outcome -----------------------------------------------

_KILLED = """
import sys, time
from pathlib import Path
import residency_sdk as rs
from residency_sdk.storage.memory import MemoryStore

log, ready = sys.argv[1], Path(sys.argv[2])

class Hanging(MemoryStore):
    def put(self, key, data, **kwargs):
        if key.startswith("tenants/"):
            # The intent is durable. So are, after this flush, the queued outcomes of what
            # ran before it (the lineage marker's write): the put itself never finishes.
            res.audit.flush()
            ready.write_text("in put")
            time.sleep(600)
        return super().put(key, data, **kwargs)

res = rs.Residency.load(storage=lambda target, location: Hanging(target), audit=log)
res.storage_for(rs.Tenant(id="charite-berlin", country="DE")).put("scan.dcm", b"phi")
"""


def test_sigkill_between_intent_and_outcome_shows_as_outcome_unknown(tmp_path: Path) -> None:
    log, ready = tmp_path / "audit.db", tmp_path / "ready"
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_KILLED), str(log),
                              str(ready)], cwd=ROOT, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            assert time.monotonic() < deadline, "the child never reached the put"
            time.sleep(0.02)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        if child.stderr is not None:
            child.stderr.close()
    result = verify_log(log)
    assert result.ok, result.to_dict()  # a crash is not tampering
    [(seq, event_id, operation, tenant_id, key)] = result.outcome_unknown
    assert (operation, tenant_id, key) == ("put", "charite-berlin", "scan.dcm")
    [intent] = [e for e in audit_log_events(log) if e.event_id == event_id]
    assert intent.outcome == "intent" and seq >= 1
