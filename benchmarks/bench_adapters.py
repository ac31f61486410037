"""64 MiB through each cloud adapter against the best raw SDK call, on the emulators.

Starts moto server, gcp-storage-emulator and Azurite on 127.0.0.1 (``tests/emulators.py``,
as the test suite does) and, for each measured operation, runs the SDK adapter and every
raw variant in turn, ``--rounds`` times (the order rotates each round: A B C, B C A, ...).
The figure of each variant is its median; the ratio is the best raw variant's median
time over the SDK's (1.0 = as fast as the fastest raw call; above 1.0 faster).

Targets (issue 19):

- Azure 64 MiB ``put`` and ``get``: >= 0.9 x the raw azure-storage-blob client's managed
  transfer (``upload_blob`` / ``download_blob().readinto``, default and tuned
  ``max_concurrency``);
- S3 ``get()`` of 64 MiB: >= 0.95 x raw boto3 (``get_object`` + ``read``, or
  ``download_fileobj``);
- GCS 64 MiB ``put``: >= 0.9 x the best raw upload (single-request multipart upload, or
  resumable).

The SDK keeps its checks while measured: the adapter's checksum is computed and compared
with the service's on every put and get, the encryption parameters (KMS key, encryption
scope, CMEK) go with every write; the raw calls verify nothing.

    .venv/bin/python benchmarks/bench_adapters.py [--mb 64] [--rounds 7]
        [--providers aws,gcp,azure] [--write-docs]

``--write-docs`` replaces the figures block (``<!-- bench-adapters:start -->``) in
docs/storage.md.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

from bench_storage import provision, write_docs  # noqa: E402
from emulators import azurite_connection_string, start_azurite, start_gcs, start_moto  # noqa: E402

from residency_sdk.model import StorageTarget  # noqa: E402

MB = 1024 * 1024
DOCS = REPO / "docs" / "storage.md"
START, END = "<!-- bench-adapters:start -->", "<!-- bench-adapters:end -->"
SETTLE = 0.2  # seconds between two measured calls
TARGETS = {("azure", "put"): 0.9, ("azure", "get"): 0.9, ("aws", "get"): 0.95,
           ("gcp", "put"): 0.9}

Variant = Callable[[str], Any]


def _aws_raw(target: StorageTarget, data: bytes) -> dict[str, dict[str, Variant]]:
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    client = boto3.client("s3", region_name=target.region, endpoint_url=target.endpoint,
                          config=Config(s3={"addressing_style": "path"},
                                        max_pool_connections=16))
    bucket = target.bucket

    def get_read(key: str) -> bytes:
        return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())

    def download(key: str, config: TransferConfig) -> bytes:
        out = io.BytesIO()
        client.download_fileobj(bucket, key, out, Config=config)
        return out.getvalue()

    default, tuned = TransferConfig(), TransferConfig(max_concurrency=4)
    return {"get": {"raw get_object+read": get_read,
                    "raw download_fileobj (10 threads)": lambda k: download(k, default),
                    "raw download_fileobj (4 threads)": lambda k: download(k, tuned)}}


def _gcp_raw(target: StorageTarget, data: bytes) -> dict[str, dict[str, Variant]]:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="bench", credentials=AnonymousCredentials(),
                            client_options=ClientOptions(api_endpoint=target.endpoint))
    bucket = client.bucket(target.bucket)

    def single_request(key: str) -> None:
        # What upload_from_file does at or below 8 MiB: one multipart/related request.
        blob = bucket.blob(key, kms_key_name=target.kms_key)
        blob._do_multipart_upload(client, io.BytesIO(data), "application/octet-stream",
                                  len(data), None, None, None, None, None, checksum=None)

    def resumable(key: str, chunk: int | None) -> None:
        bucket.blob(key, chunk_size=chunk, kms_key_name=target.kms_key).upload_from_file(
            io.BytesIO(data), size=len(data), checksum=None)

    return {"put": {"raw single-request upload": single_request,
                    "raw resumable (one chunk)": lambda k: resumable(k, None),
                    "raw resumable (8 MiB chunks)": lambda k: resumable(k, 8 * MB)}}


def _azure_raw(target: StorageTarget, data: bytes, port: int) -> dict[str, dict[str, Variant]]:
    from azure.storage.blob import BlobServiceClient

    conn = azurite_connection_string(port)
    default = BlobServiceClient.from_connection_string(conn).get_container_client(
        target.bucket)
    # Blocks instead of one Put Blob: what tuning max_concurrency is for.
    blocks = BlobServiceClient.from_connection_string(
        conn, max_single_put_size=8 * MB, max_block_size=8 * MB).get_container_client(
        target.bucket)
    scope = target.encryption_scope

    def put(cc: Any, key: str, threads: int) -> None:
        cc.upload_blob(key, data, overwrite=True, encryption_scope=scope,
                       max_concurrency=threads)

    def get(key: str, threads: int) -> memoryview:
        out = io.BytesIO()
        default.download_blob(key, max_concurrency=threads).readinto(out)
        return out.getbuffer()

    return {"put": {"raw upload_blob (default)": lambda k: put(default, k, 1),
                    "raw upload_blob (8 MiB blocks, 4 threads)": lambda k: put(blocks, k, 4),
                    "raw upload_blob (8 MiB blocks, 8 threads)": lambda k: put(blocks, k, 8)},
            "get": {"raw readinto (default)": lambda k: get(k, 1),
                    "raw readinto (4 threads)": lambda k: get(k, 4),
                    "raw readinto (8 threads)": lambda k: get(k, 8)}}


def bench_provider(provider: str, endpoint: str, port: int, size: int,
                   rounds: int) -> list[dict[str, Any]]:
    """Every operation of ``provider`` with a target, SDK against raw, interleaved."""
    from residency_sdk.storage.factory import open_store

    target = provision(provider, endpoint, port)
    store = open_store(target)
    data = os.urandom(size)
    raw = {"aws": lambda: _aws_raw(target, data), "gcp": lambda: _gcp_raw(target, data),
           "azure": lambda: _azure_raw(target, data, port)}[provider]()
    rows = []
    for op, variants in raw.items():
        every: dict[str, Variant] = {"SDK": (lambda k: store.put(k, data)) if op == "put"
                                     else store.get, **variants}
        if op == "get":
            store.put("bench/object", data)
        times: dict[str, list[float]] = {name: [] for name in every}
        names = list(every)
        for r in range(rounds + 1):  # the first round warms connections up, not counted
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                key = f"bench/{name}/{r}" if op == "put" else "bench/object"
                # Let the emulator finish with the previous call (its GC, its log) so
                # whoever comes next is not charged for it.
                gc.collect()
                time.sleep(SETTLE)
                started = time.perf_counter()
                out = every[name](key)
                spent = time.perf_counter() - started
                if op == "get" and len(out) != size:
                    raise SystemExit(f"{provider} {name}: read {len(out)} bytes, not {size}")
                if op == "put":
                    store.delete(key)
                if r:
                    times[name].append(spent)
        medians = {name: statistics.median(t) for name, t in times.items()}
        best = min((n for n in medians if n != "SDK"), key=medians.__getitem__)
        rows.append({
            "provider": provider, "op": op, "mb": size // MB,
            "sdk_s": medians["SDK"], "best_raw": best, "best_raw_s": medians[best],
            "ratio": medians[best] / medians["SDK"], "target": TARGETS[(provider, op)],
            "raw_s": {n: round(m, 4) for n, m in medians.items() if n != "SDK"},
        })
        print(json.dumps(rows[-1]), flush=True)
    store.close()
    return rows


def table(rows: list[dict[str, Any]], rounds: int) -> str:
    """The docs' figures block."""
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; emulators on 127.0.0.1; medians of {rounds} "
        "interleaved rounds; ratio = best raw time / SDK time.",
        "",
        "| provider | operation | SDK | best raw variant | best raw | ratio (target) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        mbs = r["mb"] / r["sdk_s"]
        verdict = "ok" if r["ratio"] >= r["target"] else "MISSED"
        lines.append(
            f"| {r['provider']} | {r['mb']} MiB {r['op']} | {r['sdk_s']:.3f} s "
            f"({mbs:.0f} MiB/s) | {r['best_raw']} | {r['best_raw_s']:.3f} s | "
            f"{r['ratio']:.2f} (>= {r['target']}) {verdict} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=64, help="object size in MiB")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--providers", default="aws,gcp,azure")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    starters = {"aws": start_moto, "gcp": start_gcs, "azure": start_azurite}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as logs:
        for provider in args.providers.split(","):
            emulator = starters[provider](Path(logs))
            try:
                rows += bench_provider(provider, emulator.endpoint, emulator.port,
                                       args.mb * MB, args.rounds)
            finally:
                emulator.stop()
    text = table(rows, args.rounds)
    print(text)
    if args.write_docs:
        write_docs(text, START, END, DOCS)
        print(f"figures written to {DOCS}")


if __name__ == "__main__":
    main()
