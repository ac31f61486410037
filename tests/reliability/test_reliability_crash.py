"""Crash consistency: SIGKILL at random points of an upload, a transfer, an erasure and an
audit append; afterwards the store holds the old or the new object (never part of one),
the audit log verifies, and re-running finishes the job.

A kill counts only when the worker died of it (exit status -9, no ``DONE``) and what is
left shows the operation was in progress: an upload or transfer had logged its intent
(no outcome) and read bytes, and the store does not show the new object; an erasure's
request is recorded and still open (and, killed on a deletion, some objects are gone,
not all); an audit writer had logged fewer events than it was appending. Half the runs
of the upload, transfer and erasure scenarios are killed on a progress line the worker
prints (bytes read, objects deleted), which must land mid-operation; the other half at a
random time, which may miss it (counted, not a failure); audit appends are always killed
on a progress line.

Default: a few runs per scenario; ``RESIDENCY_FULL_RELIABILITY=1``: 20 runs each.
Figures go to ``${RESIDENCY_RELIABILITY_FIGURES:-.reliability}/crash-*.json``.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reliability_support import (
    Clock,
    count,
    run_worker,
    seeded,
    sigkilled,
    unanswered_intents,
    write_figures,
)

import residency_sdk as rs
from residency_sdk.audit import verify_log
from residency_sdk.erasure import audit_log_events, verify_receipt
from residency_sdk.errors import IntegrityError, ObjectNotFound
from residency_sdk.storage import keys

RUNS = count(4, 20)
BIG = 24 * 1024 * 1024  # multipart on S3 (threshold 16 MiB), 24 chunks locally
OLD = 3 * 1024 * 1024
TENANT_COUNTRY = "DE"

pytestmark = pytest.mark.timeout(900 if RUNS > 4 else 300)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def payload(path: Path, size: int, seed: int) -> str:
    import random

    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return sha(data)


class Tally:
    """What a scenario saw; asserted zero after the figures are written."""

    def __init__(self) -> None:
        self.f: dict[str, Any] = {"runs": 0, "kills": 0, "finished_before_kill": 0,
                                  "objects_lost": 0, "corrupt_reads": 0,
                                  "audit_mismatches": 0, "reruns_completed": 0,
                                  "old_seen": 0, "new_seen": 0, "absent_seen": 0,
                                  "erasure_incomplete": 0, "killed_mid_operation": 0,
                                  "killed_outside_operation": 0, "kill_missed": 0}
        self.problems: list[str] = []

    def bad(self, figure: str, message: str) -> None:
        self.f[figure] += 1
        self.problems.append(message)

    def read(self, read: Any, *, old: str | None, new: str, what: str) -> str:
        """Classify one read after a crash: old, new, absent (only if no old) or bad."""
        try:
            got = sha(read())
        except ObjectNotFound:
            if old is not None:
                self.bad("objects_lost", f"{what}: the old object is gone")
                return "bad"
            self.f["absent_seen"] += 1
            return "absent"
        except IntegrityError as exc:
            self.bad("corrupt_reads", f"{what}: {exc}")
            return "bad"
        if got == new:
            self.f["new_seen"] += 1
            return "new"
        if got == old:
            self.f["old_seen"] += 1
            return "old"
        self.bad("corrupt_reads", f"{what}: neither the old nor the new payload")
        return "bad"

    def audit(self, path: Path, what: str) -> None:
        result = verify_log(path)
        if not result.ok:
            self.bad("audit_mismatches", f"{what}: audit log broken: {result.broken}")
        self.f["audit_events"] = result.events

    def killed(self, run: Any) -> None:
        self.f["runs"] += 1
        self.f["kills" if run.killed else "finished_before_kill"] += 1
        if run.killed and not sigkilled(run):
            self.problems.append(f"worker died with exit status {run.returncode}, not our "
                                 "SIGKILL (-9)")

    def landed(self, run: Any, in_progress: bool, *, on_progress: bool, what: str) -> None:
        """Record where the kill landed: ``in_progress`` is the evidence (an intent with
        no outcome, an open request) that the operation was under way. A kill sent on a
        progress line must land mid-operation; a timed one may miss it."""
        if sigkilled(run) and in_progress:
            self.f["killed_mid_operation"] += 1
        elif on_progress:
            self.bad("kill_missed", f"{what}: killed on a progress line, yet "
                     f"{'no operation was in progress' if sigkilled(run) else 'it finished'}")
        elif sigkilled(run):
            self.f["killed_outside_operation"] += 1

    def finish(self, scenario: str, clock: Clock, rng: Any, **extra: Any) -> None:
        write_figures(scenario, {**self.f, **extra, "duration_s": clock.seconds(),
                                 "seed": rng.seed_value})
        assert not self.problems, "\n".join(self.problems)
        assert self.f["runs"] == RUNS
        # Every progress-line kill landed mid-operation (else a problem above), so this
        # holds whatever the timed kills did: the scenario really crashed its operation.
        assert self.f["killed_mid_operation"] >= RUNS // 2, self.f


def _started(run: Any, audit: Path, operation: str, key: str) -> bool:
    """The worker's ``operation`` on ``key`` had begun when it died: its intent is in the
    audit log with no outcome, and the worker had read some of the bytes (a ``P`` line).
    (An outcome may be queued, not yet durable, when the process dies, so the missing
    outcome alone proves nothing; the caller adds what the store shows.)"""
    return bool(unanswered_intents(audit, operation, object_key=key)) and any(
        line.startswith("P ") for line in run.lines)


def tenant_files(local_root: Path, tenant_id: str) -> list[str]:
    """Every file or directory left under the tenant's prefix in any local bucket."""
    return sorted(str(p) for p in local_root.glob(f"*/*/tenants/{tenant_id}/**/*"))


def map_and_cfg(harness: Any, tmp_path: Path) -> tuple[rs.Residency, dict[str, Any]]:
    audit = tmp_path / "audit.db"
    map_path = harness.write_map(tmp_path)
    local_root = harness.local_root if harness.provider == "local" else None
    res = rs.Residency.load(map_path, audit=audit, local_root=local_root,
                            state_dir=tmp_path / "state")
    cfg = {"map": str(map_path), "audit": str(audit), "state_dir": str(tmp_path / "state"),
           "local_root": str(local_root) if local_root else None}
    return res, cfg


# --- (a) large streamed upload --------------------------------------------------------


@pytest.mark.parametrize("provider_harness", ["local", "aws"], indirect=True)
def test_crash_during_large_upload(provider_harness: Any, tmp_path: Path) -> None:
    provider = provider_harness.provider
    rng = seeded(f"crash-upload-{provider}")
    clock, tally = Clock(), Tally()
    res, cfg = map_and_cfg(provider_harness, tmp_path)
    tenant = rs.Tenant(id=f"crash-up-{provider}", country=TENANT_COUNTRY)
    store = res.storage_for(tenant)
    new_file, old_file = tmp_path / "new.bin", tmp_path / "old.bin"
    new_sha = payload(new_file, BIG, rng.randrange(2**32))
    old_sha = payload(old_file, OLD, rng.randrange(2**32))
    worker_cfg = {**cfg, "tenant": tenant.id, "payload": str(new_file)}
    # Calibrate: how long an uninterrupted upload takes in a worker.
    window = run_worker("crash-upload", {**worker_cfg, "key": "calibration"},
                        tmp_path / "cfg-calibration.json").ready_to_done or 1.0
    for i in range(RUNS):
        key = f"scan/{i}.dcm"
        had_old = i % 2 == 0
        if had_old:
            store.put(key, old_file.read_bytes())
        # Half the runs die after a random number of bytes read, half after a random time
        # (which also lands in the commit of a multipart upload, after every byte is read).
        # Bytes are read well before the object commits: a kill in the first 7/8 of them
        # lands while the upload is still under way.
        threshold = rng.randrange(0, BIG - BIG // 8)
        delay = rng.uniform(0, window * 1.1)
        by_bytes = (i // 2) % 2 == 0
        run = run_worker("crash-upload", {**worker_cfg, "key": key},
                         tmp_path / f"cfg-{i}.json",
                         kill_on=(lambda line, t=threshold: line.startswith("P ")
                                  and int(line[2:]) >= t) if by_bytes else None,
                         kill_after=None if by_bytes else delay)
        tally.killed(run)
        point = f"{threshold} bytes" if by_bytes else f"{delay:.3f}s"
        seen = tally.read(lambda k=key: store.get(k), old=old_sha if had_old else None,
                          new=new_sha, what=f"run {i} ({'old' if had_old else 'no old'} "
                          f"object, kill at {point})")
        # In progress: the put had begun (its intent is in the log, bytes were read) and
        # had not committed (the store still shows the old object, or none).
        tally.landed(run, _started(run, tmp_path / "audit.db", "put", key)
                     and seen in ("old", "absent"),
                     on_progress=by_bytes, what=f"run {i} (kill at {point})")
        tally.audit(tmp_path / "audit.db", f"run {i}")
        with open(new_file, "rb") as fh:  # re-running the upload finishes the job
            store.put(key, fh)
        if sha(store.get(key)) == new_sha:
            tally.f["reruns_completed"] += 1
        else:
            tally.bad("corrupt_reads", f"run {i}: re-upload did not store the new payload")
    # Erasing the tenant afterwards removes everything, crashed uploads' residue included.
    tally.f["crash_leftovers_before_erase"] = len(_leftovers(provider_harness, res, tenant))
    res.erase(tenant, providers=[provider])
    residue = _residue(provider_harness, res, tenant)
    tally.f["residue_after_erase"] = len(residue)
    if residue:
        tally.problems.append(f"erasure left residue of crashed uploads: {residue[:5]}")
    tally.audit(tmp_path / "audit.db", "after erasure")
    tally.finish(f"crash-upload-{provider}", clock, rng, object_bytes=BIG,
                 kill_window_s=round(window, 3), operations=tally.f["runs"] * 2 + 1)


def _leftovers(harness: Any, res: rs.Residency, tenant: rs.Tenant) -> list[str]:
    """What crashed uploads left that no listing shows: temp files of interrupted local
    puts, incomplete S3 multipart uploads."""
    if harness.provider == "local":
        return [p for p in tenant_files(harness.local_root, tenant.id) if "/@tmp-" in p]
    return [p for p in _residue(harness, res, tenant) if p.startswith("multipart upload ")]


def _residue(harness: Any, res: rs.Residency, tenant: rs.Tenant) -> list[str]:
    """What is left of the tenant on the backend: files (local), objects and incomplete
    multipart uploads (S3)."""
    if harness.provider == "local":
        return tenant_files(harness.local_root, tenant.id)
    target = res.backend(res.resolve(tenant).location, "aws")
    s3 = harness.aws_client("s3", target.region)
    prefix = keys.tenant_prefix(tenant)
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=target.bucket,
                                                 Prefix=prefix).get("Contents", [])]
    uploads = s3.list_multipart_uploads(Bucket=target.bucket, Prefix=prefix)
    left += [f"multipart upload {u['Key']}" for u in uploads.get("Uploads", [])]
    return left


# --- (b) transfer ---------------------------------------------------------------------


@pytest.mark.parametrize("provider_harness", ["local", "aws"], indirect=True)
def test_crash_during_transfer(provider_harness: Any, tmp_path: Path) -> None:
    provider = provider_harness.provider
    rng = seeded(f"crash-transfer-{provider}")
    clock, tally = Clock(), Tally()
    audit = tmp_path / "audit.db"
    res, cfg = map_and_cfg(provider_harness, tmp_path)
    tenant = rs.Tenant(id=f"crash-xfer-{provider}", country=TENANT_COUNTRY)
    store = res.storage_for(tenant)
    fr = res.store(res.backend("FR", provider), "FR")
    source = Tally()
    new = rng.randbytes(BIG)
    old = rng.randbytes(OLD)
    new_sha, old_sha = sha(new), sha(old)
    # Calibrate the kill window on an uninterrupted transfer of the same size.
    store.put("calibration", new)
    window = 1.1 * (run_worker("crash-transfer", {**cfg, "tenant": tenant.id,
                                                  "key": "calibration"},
                               tmp_path / "cfg-calibration.json").ready_to_done or 1.0)
    for i in range(RUNS):
        key = f"xfer/{i}.dcm"
        had_old = i % 2 == 0
        if had_old:  # the destination already holds an older copy
            store.put(key, old)
            res.transfer(tenant, key, "FR")
        store.put(key, new)
        # Half the runs die after a random number of bytes copied (the worker's source
        # reader announces them), half after a random time.
        by_bytes = (i // 2) % 2 == 0
        threshold = rng.randrange(0, BIG - BIG // 8)
        delay = rng.uniform(0, window)
        run = run_worker("crash-transfer", {**cfg, "tenant": tenant.id, "key": key},
                         tmp_path / f"cfg-{i}.json",
                         kill_on=(lambda line, t=threshold: line.startswith("P ")
                                  and int(line[2:]) >= t) if by_bytes else None,
                         kill_after=None if by_bytes else delay)
        tally.killed(run)
        stored = keys.tenant_key(tenant, key)
        what = (f"run {i} (kill after {threshold} bytes copied)" if by_bytes
                else f"run {i} (kill {delay:.3f}s after start)")
        seen = tally.read(lambda s=stored: fr.get(s), old=old_sha if had_old else None,
                          new=new_sha, what=f"{what}, destination")
        # In progress: the copy had begun (intent logged, source bytes read) and the
        # destination does not hold the new object yet.
        tally.landed(run, _started(run, audit, "transfer", key)
                     and seen in ("old", "absent"), on_progress=by_bytes, what=what)
        source.read(lambda k=key: store.get(k), old=None, new=new_sha, what=f"{what}, source")
        tally.audit(audit, what)
        res.transfer(tenant, key, "FR")  # re-running finishes the job
        if sha(fr.get(stored)) == new_sha:
            tally.f["reruns_completed"] += 1
        else:
            tally.bad("corrupt_reads", f"{what}: re-run transfer did not copy the new payload")
    # The source must be intact after every kill: merged into the scenario's figures.
    tally.f["source_intact"] = source.f["new_seen"]
    for figure in ("objects_lost", "corrupt_reads"):
        tally.f[figure] += source.f[figure]
    tally.problems += source.problems
    tally.finish(f"crash-transfer-{provider}", clock, rng, object_bytes=BIG,
                 kill_window_s=round(window, 3), operations=tally.f["runs"] * 2 + 1)


# --- (c) erasure ----------------------------------------------------------------------


def _fill(store: Any, rng: Any, objects: int) -> dict[str, bytes]:
    data = {f"rec/{n:04d}": rng.randbytes(rng.randrange(1, 64 * 1024)) for n in range(objects)}
    data["img/large-a"] = rng.randbytes(4 * 1024 * 1024)
    data["img/large-b"] = rng.randbytes(4 * 1024 * 1024)
    for key, value in data.items():
        store.put(key, value)
    return data


@pytest.mark.parametrize("provider_harness", ["local", "aws"], indirect=True)
def test_crash_during_erasure(provider_harness: Any, tmp_path: Path) -> None:
    provider = provider_harness.provider
    rng = seeded(f"crash-erase-{provider}")
    clock, tally = Clock(), Tally()
    audit = tmp_path / "audit.db"
    res, cfg = map_and_cfg(provider_harness, tmp_path)
    cfg["providers"] = [provider]
    objects = count(150, 400) if provider == "local" else count(40, 150)
    calib = rs.Tenant(id=f"erase-calibration-{provider}", country=TENANT_COUNTRY)
    _fill(res.storage_for(calib), rng, objects)
    window = 1.1 * (run_worker("crash-erase", {**cfg, "tenant": calib.id},
                               tmp_path / "cfg-calibration.json").ready_to_done or 1.0)
    deleted_before_rerun = 0
    for i in range(RUNS):
        tenant = rs.Tenant(id=f"erase-{provider}-{i}", country=TENANT_COUNTRY)
        store = res.storage_for(tenant)
        data = _fill(store, rng, objects)
        # Half the runs die after a random number of objects deleted (the worker prints
        # a line per deletion; at most half of them, so some are always left), half after
        # a random time.
        by_deletions = i % 2 == 0
        after = rng.randint(1, len(data) // 2)
        seen = {"n": 0}

        def on_deleted(line: str, t: int = after, s: dict[str, int] = seen) -> bool:
            s["n"] += line.startswith("D ")
            return s["n"] >= t

        delay = rng.uniform(0, window)
        absent_before = tally.f["absent_seen"]
        run = run_worker("crash-erase", {**cfg, "tenant": tenant.id},
                         tmp_path / f"cfg-{i}.json",
                         kill_on=on_deleted if by_deletions else None,
                         kill_after=None if by_deletions else delay)
        tally.killed(run)
        what = (f"run {i} (kill after {after} deletions)" if by_deletions
                else f"run {i} (kill {delay:.3f}s after start)")
        for key, value in data.items():  # each object: intact or gone, never half
            tally.read(lambda k=key, s=store: s.get(k), old=None, new=sha(value),
                       what=f"{what}, {key}")
        deleted_now = tally.f["absent_seen"] - absent_before
        deleted_before_rerun += deleted_now
        # In progress: the request is recorded and still open, and (killed on a deletion)
        # some of the tenant's objects are gone, not all.
        open_request = any(r.tenant_id == tenant.id and r.is_open for r in
                           res.erasure_tracker(cfg["state_dir"]).requests())
        partial = 0 < deleted_now < len(data) if by_deletions else True
        tally.landed(run, open_request and partial, on_progress=by_deletions, what=what)
        tally.audit(audit, what)
        # Re-running resumes the open request and finishes it.
        receipt = res.erase(tenant, providers=[provider])
        left = _residue(provider_harness, res, tenant)
        if not receipt.complete or left:
            tally.bad("erasure_incomplete", f"{what}: erasure re-run left {left[:3]}")
            continue
        tracker = res.erasure_tracker(cfg["state_dir"])
        mine = [r for r in tracker.requests() if r.tenant_id == tenant.id]
        # Killed: the interrupted request was resumed (or never recorded): one request.
        # Finished first: its request, plus the re-run's new (empty) one.
        if len(mine) != (1 if run.killed else 2) or any(r.status != "completed"
                                                         for r in mine):
            tally.bad("audit_mismatches", f"{what}: requests {[(r.id, r.status) for r in mine]}"
                      " (a re-run must resume the interrupted request, not start another)")
            continue
        for request in mine:
            verify_receipt(request, audit_log_events(audit))
        tally.f["reruns_completed"] += 1
    tally.finish(f"crash-erase-{provider}", clock, rng, objects_per_tenant=objects + 2,
                 kill_window_s=round(window, 3), operations=tally.f["runs"] * 2 + 1,
                 objects_erased_before_kill=deleted_before_rerun)


# --- (d) audit append -----------------------------------------------------------------


@pytest.mark.parametrize("batched", [False, True], ids=["per-event", "batched"])
def test_crash_during_audit_append(tmp_path: Path, batched: bool) -> None:
    name = f"crash-audit-{'batched' if batched else 'per-event'}"
    rng = seeded(name)
    clock, tally = Clock(), Tally()
    audit = tmp_path / "audit.db"
    batch = 25
    total = 0
    for i in range(RUNS):
        threshold = rng.randrange(1, 400)
        state = {"durable": 0}

        def kill_on(line: str, t: int = threshold, s: dict[str, int] = state) -> bool:
            if line.startswith("N "):
                s["durable"] = int(line[2:])
                return int(line[2:]) >= t if not batched else (line[2:] != "0"
                                                              and int(line[2:]) >= t)
            return False

        before = verify_log(audit).events if audit.exists() else 0
        run = run_worker("crash-audit", {"audit": str(audit), "tenant": f"a{i}",
                                         "events": 2000, "batched": batched,
                                         "batch_size": batch},
                         tmp_path / f"cfg-{i}.json", kill_on=kill_on)
        tally.killed(run)
        result = verify_log(audit)
        written = result.events - before
        in_flight = batch if batched else 1
        what = f"run {i} (kill after {threshold} events)"
        if not result.ok:
            tally.bad("audit_mismatches", f"{what}: chain broken: {result.broken}")
        if written < state["durable"]:
            tally.bad("objects_lost", f"{what}: {state['durable']} events were durable, only "
                      f"{written} survived")
        if written > state["durable"] + in_flight + (0 if run.killed else 2000):
            tally.bad("audit_mismatches", f"{what}: {written} events, more than appended")
        # In progress: the worker was still appending (fewer than its 2000 events logged).
        tally.landed(run, written < 2000, on_progress=True, what=what)
        total += written
        # Re-running: the log accepts appends again and the chain still verifies.
        from residency_sdk.audit import AuditLog

        with AuditLog(audit) as log:
            for n in range(5):
                log.append(rs.AuditEvent(operation="get", outcome="ok", tenant_id=f"r{i}",
                                         object_key=f"again/{n}"))
        after = verify_log(audit)
        if after.ok and after.events == result.events + 5:
            tally.f["reruns_completed"] += 1
        else:
            tally.bad("audit_mismatches", f"{what}: append after the crash failed: {after}")
        total += 5
    tally.f["audit_events"] = verify_log(audit).events
    if tally.f["audit_events"] != total:
        tally.bad("audit_mismatches", f"log holds {tally.f['audit_events']}, expected {total}")
    tally.finish(name, clock, rng, operations=total, batch_size=batch if batched else 1)

