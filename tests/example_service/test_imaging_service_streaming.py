"""The example service streams: a 300 MiB study goes from the client's generator to the
store, to the location's model and back to the client, and the service process's peak
RSS stays within 100 MB (read from the kernel, ``VmHWM``, and sampled with psutil while
the bytes flow). Then the service is stopped as an orchestrator stops it (SIGTERM): its
lifespan closes the Residency, so the audit log is complete, its chain verifies, and its
head is anchored at the very end (an audit log's ``close`` anchors the head; nothing else
would within the test's minute)."""

from __future__ import annotations

import hashlib
import random
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from imaging_stack import Stack, running_stack

from residency_sdk.audit import verify_log
from residency_sdk.audit.anchors import open_anchor
from residency_sdk.erasure import audit_log_events

MIB = 1024 * 1024
STUDY_MIB = 300
PEAK_RSS_LIMIT = 100 * 1000 * 1000  # bytes: the "peak RSS <= 100 MB"


class Study:
    """300 MiB of pseudo-random bytes, made chunk by chunk as the client sends them (the
    client never holds the study either), hashed on the way."""

    def __init__(self, mib: int, seed: int = 19) -> None:
        self.mib = mib
        self.seed = seed
        self.sha256 = ""

    def chunks(self) -> Iterator[bytes]:
        rng = random.Random(self.seed)
        hasher = hashlib.sha256()
        for _ in range(self.mib):
            chunk = rng.randbytes(MIB)
            hasher.update(chunk)
            yield chunk
        self.sha256 = hasher.hexdigest()


class RssSampler:
    """Samples a process's RSS every 20 ms in a thread (a second witness beside the
    kernel's high-water mark)."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            self.samples += 1
            self._stop.wait(0.02)


def vm_hwm(pid: int) -> int:
    """The process's peak resident set size so far, in bytes (``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    # Its own service process: the peak measured is this test's, nothing else's.
    env = {"RESIDENCY_AUDIT_ANCHORS": str(tmp_path / "anchors")}
    with running_stack(tmp_path, env) as running:
        yield running


@pytest.mark.slow
def test_300_mib_upload_streams_through_in_bounded_memory_and_shutdown_closes_the_sdk(
        stack: Stack, tmp_path: Path) -> None:
    pid = stack.service.proc.pid
    study = Study(STUDY_MIB)
    with RssSampler(pid) as sampler, stack.client("clinic-berlin", timeout=120) as http:
        response = http.post("/studies", content=study.chunks(),
                             headers={"content-type": "application/dicom"})
        assert response.status_code == 201, response.text[:2000]
        body = response.json()
        # Whole and intact in the store, and at the DE model (streamed back out of the
        # store to it), without the service ever holding it.
        assert body["size"] == STUDY_MIB * MIB
        assert body["sha256"] == study.sha256
        assert body["result"]["model"]["input_sha256"] == study.sha256
        assert body["result"]["model"]["served_in"] == "DE"
        downloaded = hashlib.sha256()
        size = 0
        with http.stream("GET", f"/studies/{body['study_id']}/original") as download:
            assert download.status_code == 200
            assert download.headers["content-length"] == str(STUDY_MIB * MIB)
            for chunk in download.iter_bytes():
                downloaded.update(chunk)
                size += len(chunk)
        assert (size, downloaded.hexdigest()) == (STUDY_MIB * MIB, study.sha256)
        peak = vm_hwm(pid)
    assert sampler.samples > 10
    assert peak <= PEAK_RSS_LIMIT, f"service peak RSS {peak / 1e6:.1f} MB (VmHWM)"
    assert sampler.peak <= PEAK_RSS_LIMIT, f"sampled peak RSS {sampler.peak / 1e6:.1f} MB"
    [received] = [r for r in stack.received("DE") if r["study_id"] == body["study_id"]]
    assert received["size"] == STUDY_MIB * MIB

    # SIGTERM: uvicorn runs the lifespan's exit, which closes the stores, the clients and
    # the Residency (the audit log commits what is queued and anchors its head), then
    # exits by the signal it got.
    assert stack.service.stop() in (0, -signal.SIGTERM)
    log = stack.service.log.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    result = verify_log(stack.audit, anchors=[str(tmp_path / "anchors")])
    assert result.ok, result.to_dict()
    assert not result.outcome_unknown  # every operation's outcome was recorded
    anchored = open_anchor(str(tmp_path / "anchors")).checkpoints(result.log_id or "")
    assert anchored and anchored[-1].seq == result.head_seq, (
        "the head was not anchored at shutdown: the lifespan did not close the audit log")
    key = f"studies/{body['study_id']}/original.dcm"
    ops = [(e.operation, e.outcome, e.size) for e in audit_log_events(stack.audit)
           if e.tenant_id == "clinic-berlin" and e.object_key == key
           and e.outcome != "intent"]
    assert ("put", "ok", STUDY_MIB * MIB) in ops
    assert [op for op in ops if op[0] == "get"] and all(op[1] == "ok" for op in ops), ops
