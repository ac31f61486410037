"""Throughput of the retention sweep and of a tracked erasure.

Local backend (always), and the S3 emulator (moto server, started here on 127.0.0.1) with
``--s3``. Figures are printed as JSON and recorded in docs/retention-erasure.md.
Run: `.venv/bin/python benchmarks/bench_retention.py [--objects 2000] [--s3]`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

import residency_sdk as rs
from residency_sdk.marks import CATEGORY_META
from residency_sdk.model import StorageTarget
from residency_sdk.storage.base import ObjectStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _fill(res: rs.Residency, n: int) -> rs.Tenant:
    tenant = rs.Tenant(id="bench-clinic", country="DE")
    store = res.storage_for(tenant)
    for i in range(n):
        # Half expire (24 h uploads), half are kept (6-year audit records).
        category = "imaging_upload" if i % 2 == 0 else "audit"
        store.put(f"obj/{i:06d}", b"x" * 1024, data_class="phi",
                  metadata={CATEGORY_META: category})
    return tenant


def run(res: rs.Residency, n: int, state: Path, providers: list[str]) -> dict[str, Any]:
    started = time.perf_counter()
    tenant = _fill(res, n)
    fill_s = time.perf_counter() - started
    later = datetime.now(UTC) + timedelta(hours=25)
    t0 = time.perf_counter()
    report = res.retention_sweep("DE", providers=providers, clock=lambda: later,
                            state_dir=state).run()
    sweep_s = time.perf_counter() - t0
    assert report.total("deleted") == n // 2, report.to_dict()["totals"]
    tracker = res.erasure_tracker(state)
    t0 = time.perf_counter()
    done = tracker.run(tracker.request(tenant, providers=providers).id)
    erase_s = time.perf_counter() - t0
    assert done.status == "completed"
    return {"objects": n, "fill_s": round(fill_s, 2),
            "sweep_examined_per_s": round(report.total("examined") / sweep_s),
            "sweep_s": round(sweep_s, 2),
            "erasure_objects_per_s": round(sum(b.deleted for b in done.backends.values())
                                           / erase_s),
            "erasure_s": round(erase_s, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--s3", action="store_true", help="also run against moto server")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        res = rs.Residency.load(local_root=root / "data")
        results["local"] = run(res, args.objects, root / "state-local", ["local"])
        if args.s3:
            results["s3_moto"] = _s3(root, args.objects)
    print(json.dumps(results, indent=2))


def _s3(root: Path, n: int) -> dict[str, Any]:
    import os

    import boto3
    from emulators import start_moto

    moto = start_moto(root)
    try:
        os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
        kms = boto3.client("kms", region_name="eu-central-1", endpoint_url=moto.endpoint)
        key = kms.create_key()["KeyMetadata"]["Arn"]
        s3 = boto3.client("s3", region_name="eu-central-1", endpoint_url=moto.endpoint)
        s3.create_bucket(Bucket="residency-de-aws-data",
                         CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
        s3.put_bucket_encryption(Bucket="residency-de-aws-data",
                                 ServerSideEncryptionConfiguration={"Rules": [{
                                     "ApplyServerSideEncryptionByDefault": {
                                         "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}}]})
        overlay = root / "s3.yaml"
        overlay.write_text(yaml.safe_dump({
            "extends": "default", "name": "bench-s3", "locations": {"DE": {
                "default_provider": "aws", "backends": {"aws": {
                    "region": "eu-central-1", "endpoint": moto.endpoint, "kms_key": key}}}}}))
        # The tenant's first write asks every location whether its id is bound there,
        # and an erasure reads every location's lineage: the other locations are served
        # by local stand-ins (no cloud account here), DE's S3 backend by moto.
        from residency_sdk.storage.factory import open_store
        from residency_sdk.storage.local import LocalStore

        def opener(target: StorageTarget, location: str) -> ObjectStore:
            if location == "DE" and target.provider == "aws":
                return open_store(target, location=location)
            stand_in = target.model_copy(update={
                "provider": "local", "bucket": f"{target.provider}-{target.bucket}"})
            return LocalStore(stand_in, root / "stand-ins", location=location)

        res = rs.Residency.load(overlay, storage=opener, state_dir=root / "state-s3")
        return run(res, n, root / "state-s3", ["aws"])
    finally:
        moto.stop()


if __name__ == "__main__":
    main()
