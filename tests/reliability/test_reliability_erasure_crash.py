"""Crash consistency of erasure across locations (issue 13): SIGKILL a worker in the
middle of erasing a tenant whose data reached DE, GB and US, and in the middle of
destroying its keys; re-running finishes the job, nothing of the tenant is left
(a fresh listing of every backend, its lineage and records included), every key is
destroyed (a backup restored afterwards is unreadable), and the audit trail verifies.

Default: a few runs per scenario; ``RESIDENCY_FULL_RELIABILITY=1``: 20 runs each.
Figures go to ``${RESIDENCY_RELIABILITY_FIGURES:-.reliability}/crash-erase-*.json``.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reliability_support import Clock, count, run_worker, seeded, sigkilled, write_figures

import residency_sdk as rs
from residency_sdk.audit import verify_log
from residency_sdk.erasure import audit_log_events, verify_receipt
from residency_sdk.lineage import LINEAGE_PREFIX
from residency_sdk.storage import keys
from residency_sdk.tenants import RECORDS_PREFIX

WORKER = Path(__file__).with_name("erasure_crash_worker.py")
RUNS = count(4, 20)
LOCATIONS = ("DE", "GB", "US")
PER_COPY = 4  # objects copied to each of GB and US; DE holds three times as many

pytestmark = pytest.mark.timeout(900 if RUNS > 4 else 300)


class Scenario:
    """What one scenario saw; asserted clean after its figures are written."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.rng = seeded(name)
        self.clock = Clock()
        self.f: dict[str, Any] = {"runs": 0, "kills": 0, "finished_before_kill": 0,
                                  "reruns_completed": 0, "left_after_rerun": 0,
                                  "audit_broken": 0, "kill_points": {}}
        self.problems: list[str] = []

    def bad(self, figure: str, message: str) -> None:
        self.f[figure] = self.f.get(figure, 0) + 1
        self.problems.append(message)

    def killed(self, run: Any, point: str) -> None:
        self.f["runs"] += 1
        self.f["kills" if run.killed else "finished_before_kill"] += 1
        if run.killed:
            self.f["kill_points"][point] = self.f["kill_points"].get(point, 0) + 1
        if not sigkilled(run):
            self.bad("not_sigkilled", f"kill at {point}: the worker exited with status "
                     f"{run.returncode}{' after DONE' if run.done else ''}, not killed by "
                     "SIGKILL (-9) mid-erasure")

    def in_progress(self, res: rs.Residency, tenant: rs.Tenant, what: str) -> None:
        """The killed erasure was under way: its request is recorded and still open (the
        request file is the erasure's durable state; a finished one says completed)."""
        mine = [r for r in res.erasure_tracker().requests() if r.tenant_id == tenant.id]
        if len(mine) == 1 and mine[0].is_open and mine[0].status == "in_progress":
            self.f["open_request_after_kill"] = self.f.get("open_request_after_kill", 0) + 1
        else:
            self.bad("not_mid_erasure", f"{what}: requests after the kill "
                     f"{[(r.id, r.status) for r in mine]}: expected one open, in progress")

    def audit(self, path: Path, what: str) -> None:
        result = verify_log(path)
        if not result.ok:
            self.bad("audit_broken", f"{what}: audit log broken: {result.broken}")

    def finish(self, **extra: Any) -> None:
        write_figures(self.name, {**self.f, **extra, "duration_s": self.clock.seconds(),
                                  "seed": self.rng.seed_value})  # type: ignore[attr-defined]
        assert not self.problems, "\n".join(self.problems)
        assert self.f["runs"] == RUNS and self.f["kills"] == RUNS, self.f


def _tenant() -> rs.Tenant:
    # An Austrian clinic: § 393 SGB V keeps German health data out of SCC transfers
    # (LEGAL_FACTS 12); Austria is routed to the DE location all the same. The worker
    # (erasure_crash_worker.tenant_of) opens the tenant under the same country.
    return rs.Tenant(id=f"crash-erase-{uuid.uuid4().hex[:10]}", country="AT",
                     agreements=frozenset({"scc"}))


def _fill(res: rs.Residency, tenant: rs.Tenant, rng: Any) -> dict[tuple[str, str], bytes]:
    """Objects in DE, a third of them copied to GB and another third to US:
    ``(location, key) -> bytes``."""
    store = res.storage_for(tenant)
    objects: dict[tuple[str, str], bytes] = {}
    for n in range(3 * PER_COPY):
        key = f"rec/{n:03d}"
        data = rng.randbytes(rng.randrange(1, 8192))
        store.put(key, data, data_class="phi")
        objects[("DE", key)] = data
        if n % 3:
            to = LOCATIONS[n % 3]
            res.transfer(tenant, key, to)
            objects[(to, key)] = data
    return objects


def _stores(res: rs.Residency, provider: str, location: str) -> list[Any]:
    return [res.store(t, location) for _, t in res.location_targets(location, [provider])]


def _data_left(harness: Any, res: rs.Residency, tenant: rs.Tenant) -> list[str]:
    """The tenant's data objects on every backend of the three locations, listed by the
    service itself (sidecars under the local root, one per object; boto3 against moto)."""
    return [x for x in _everything_left(harness, res, tenant) if "/tenants/" in f"/{x}"
            and (harness.provider != "local" or x.endswith("/@meta"))]


def _everything_left(harness: Any, res: rs.Residency, tenant: rs.Tenant) -> list[str]:
    """Data, lineage and tenant records of ``tenant`` anywhere, by a fresh listing."""
    if harness.provider == "local":
        root = Path(harness.local_root)
        return sorted(str(p.relative_to(root)) for p in root.glob("*/*/**/*")
                      if p.is_file() and not p.relative_to(root).parts[1].startswith(".")
                      and (f"tenants/{tenant.id}/" in str(p)
                           or f"{LINEAGE_PREFIX}{tenant.id}/" in str(p)
                           or f"{RECORDS_PREFIX}{tenant.id}." in str(p)))
    left = []
    for location in LOCATIONS:
        for _role, target in res.location_targets(location, ["aws"]):
            s3 = harness.aws_client("s3", target.region)
            for prefix in (keys.tenant_prefix(tenant), f"{LINEAGE_PREFIX}{tenant.id}/",
                           f"{RECORDS_PREFIX}{tenant.id}."):
                listed = s3.list_object_versions(Bucket=target.bucket, Prefix=prefix)
                left += [f"{target.bucket}/{v['Key']}" for v in
                         listed.get("Versions", []) + listed.get("DeleteMarkers", [])]
    return sorted(left)


class _KillAfter:
    """``kill_on`` for run_worker: true on the ``n``-th ``D`` (deleted) line."""

    def __init__(self, n: int) -> None:
        self.n, self.seen, self.last = n, 0, ""

    def __call__(self, line: str) -> bool:
        if not line.startswith("D "):
            return False
        self.seen += 1
        self.last = line[2:]
        return self.seen == self.n


def _setup(harness: Any, tmp_path: Path) -> tuple[rs.Residency, dict[str, Any]]:
    audit = tmp_path / "audit.db"
    local_root = harness.local_root if harness.provider == "local" else None
    map_path = harness.write_map(tmp_path)
    res = rs.Residency.load(map_path, audit=audit, local_root=local_root,
                            state_dir=tmp_path / "state")
    cfg = {"map": str(map_path), "audit": str(audit), "state_dir": str(tmp_path / "state"),
           "local_root": str(local_root) if local_root else None,
           "providers": [harness.provider]}
    return res, cfg


def _rerun_and_check(sc: Scenario, harness: Any, res: rs.Residency, tenant: rs.Tenant,
                     audit: Path, what: str, providers: list[str] | None) -> Any:
    """Re-run the erasure in this process; check it completed, resumed the one request,
    left nothing anywhere and is the audited one. Returns the receipt (None if not)."""
    receipt = res.erase(tenant, providers=providers)
    left = _everything_left(harness, res, tenant)
    if not receipt.complete or left:
        sc.bad("left_after_rerun", f"{what}: re-run left {left[:3]} ({receipt.status})")
        return None
    mine = [r for r in res.erasure_tracker().requests() if r.tenant_id == tenant.id]
    if [r.id for r in mine] != [receipt.request_id]:
        sc.bad("audit_broken", f"{what}: requests {[(r.id, r.status) for r in mine]}: a "
               "re-run must resume the interrupted request")
        return None
    verify_receipt(mine[0], audit_log_events(audit))
    if set(receipt.locations) != set(LOCATIONS):
        sc.bad("left_after_rerun", f"{what}: receipt covers {receipt.locations}")
        return None
    sc.f["reruns_completed"] += 1
    return receipt


# --- (a) killed while erasing several locations -----------------------------------------


@pytest.mark.parametrize("provider_harness", ["local", "aws"], indirect=True)
def test_crash_during_a_multi_location_erasure(provider_harness: Any,
                                               tmp_path: Path) -> None:
    provider = provider_harness.provider
    sc = Scenario(f"crash-erase-locations-{provider}")
    audit = tmp_path / "audit.db"
    res, cfg = _setup(provider_harness, tmp_path)
    mid = 0
    for i in range(RUNS):
        tenant = _tenant()
        objects = _fill(res, tenant, sc.rng)
        per_location = {loc: sum(1 for (l_, _k) in objects if l_ == loc) for loc in LOCATIONS}
        # Pick the location the kill lands in first (deletions go DE, GB, US), then a
        # random object within it: every location gets its share of kills.
        target = LOCATIONS[i % 3] if i < 3 else sc.rng.choice(LOCATIONS)
        offset = sum(per_location[loc] for loc in LOCATIONS[:LOCATIONS.index(target)])
        last = per_location[target] - (1 if target == LOCATIONS[-1] else 0)
        kill = _KillAfter(offset + sc.rng.randint(1, last))
        run = run_worker("erase-locations", {**cfg, "tenant": tenant.id},
                         tmp_path / f"cfg-{i}.json", kill_on=kill, worker=WORKER)
        where = kill.last.split("/")[0] if kill.last else "?"
        sc.killed(run, where)
        what = f"run {i} (kill after deletion {kill.n} of {len(objects)}, in {where})"
        left = _data_left(provider_harness, res, tenant)
        if run.killed and 0 < len(left) < len(objects):
            mid += 1
        else:
            sc.bad("not_mid_erasure", f"{what}: {len(left)} of {len(objects)} objects left: "
                   "the kill did not land in the middle of the erasure")
        sc.in_progress(res, tenant, what)
        # Each object left is intact (all of it or nothing).
        for (location, key), data in objects.items():
            stored = keys.tenant_key(tenant, key)
            for store in _stores(res, provider, location):
                if store.exists(stored) and store.get(stored) != data:
                    sc.bad("corrupt_reads", f"{what}: {location} {key} is not the original")
        sc.audit(audit, what)
        _rerun_and_check(sc, provider_harness, res, tenant, audit, what, [provider])
    sc.audit(audit, "after every run")
    sc.finish(objects_per_tenant=5 * PER_COPY, killed_mid_erasure=mid,
              operations=sc.f["runs"] * 2)
    res.close()


# --- (b) killed while destroying the tenant's keys ----------------------------------------


def _key_files(root: Path, tenant: rs.Tenant) -> list[str]:
    """The tenant's key files (and leftovers of interrupted destroys) in every location:
    ``<root>/<loc>/.keys/tenants/<first 40 hex of SHA-256(id)>.*``
    (docs/crypto-shredding.md)."""
    stem = hashlib.sha256(tenant.id.encode()).hexdigest()[:40]
    return sorted(str(p.relative_to(root)) for p in root.glob(f"*/.keys/tenants/{stem}*"))


@pytest.mark.parametrize("provider_harness", ["local"], indirect=True)
def test_crash_during_key_destruction(provider_harness: Any, tmp_path: Path) -> None:
    sc = Scenario("crash-erase-keys-local")
    root = Path(provider_harness.local_root)
    audit = tmp_path / "audit.db"
    res, cfg = _setup(provider_harness, tmp_path)
    points = [f"K {step} {loc}" for loc in LOCATIONS for step in ("start", "done")]
    points.append("F start")
    order = sc.rng.sample(points, len(points))  # every point once before any twice
    backups = tmp_path / "backups"
    for i in range(RUNS):
        tenant = _tenant()
        objects = _fill(res, tenant, sc.rng)
        if len(_key_files(root, tenant)) != len(LOCATIONS):
            sc.bad("setup", f"run {i}: expected a tenant key in each of {LOCATIONS}, found "
                   f"{_key_files(root, tenant)}")
        # A "backup" of one copy per location, taken before the erasure.
        saved: dict[str, tuple[Path, Path, str, bytes]] = {}
        for (location, key), data in objects.items():
            if location in saved:
                continue
            store = res.store(res.backend(location), location)
            original = store.bucket_dir / keys.tenant_key(tenant, key)
            copy = backups / f"{i}-{location}"
            shutil.copytree(original, copy)
            saved[location] = (original, copy, keys.tenant_key(tenant, key), data)
        point = order[i % len(order)]
        run = run_worker("erase-keys", {**cfg, "tenant": tenant.id},
                         tmp_path / f"cfg-{i}.json", kill_on=lambda line, p=point: line == p,
                         worker=WORKER)
        sc.killed(run, point)
        what = f"run {i} (kill at {point!r})"
        if point not in run.lines or any(line.startswith("DONE") for line in run.lines):
            sc.bad("not_mid_erasure", f"{what}: the worker never reached the kill point, or "
                   "finished")
        sc.in_progress(res, tenant, what)
        # Keys go last: when the kill lands there, every location is already empty.
        left = _data_left(provider_harness, res, tenant)
        if left:
            sc.bad("keys_before_data", f"{what}: keys destroyed while data is left: {left[:3]}")
        # A key file renamed for shredding but not yet gone: the kill landed inside the
        # adapter's destroy (counted; the re-run must finish it all the same).
        if any(not f.endswith(".json") for f in _key_files(root, tenant)):
            sc.f["killed_inside_destroy"] = sc.f.get("killed_inside_destroy", 0) + 1
        sc.audit(audit, what)
        receipt = _rerun_and_check(sc, provider_harness, res, tenant, audit, what, None)
        if receipt is not None:
            states = sorted((k.location, k.status) for k in receipt.keys)
            if states != [(loc, "destroyed") for loc in LOCATIONS]:
                sc.bad("keys_left", f"{what}: receipt says keys {states}")
        if _key_files(root, tenant):
            sc.bad("keys_left", f"{what}: key files left: {_key_files(root, tenant)}")
        # The backups, restored into place, are unreadable (a fresh client: no key
        # cached from before).
        fresh = rs.Residency.load(local_root=root, audit=False)
        for location, (original, copy, stored, _data) in saved.items():
            shutil.copytree(copy, original)
            try:
                fresh.store(fresh.backend(location), location).get(stored)
            except rs.KeyDestroyed:
                sc.f["backups_unreadable"] = sc.f.get("backups_unreadable", 0) + 1
            else:
                sc.bad("backup_readable", f"{what}: the {location} backup is still readable")
            finally:
                shutil.rmtree(original)
        fresh.close()
    sc.audit(audit, "after every run")
    sc.finish(locations=len(LOCATIONS), operations=sc.f["runs"] * 2)
    res.close()
