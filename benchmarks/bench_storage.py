"""Storage benchmark: each adapter against the raw SDK call it wraps, on the emulators.

Starts moto server, gcp-storage-emulator and Azurite on loopback (like the test suite),
then for each provider, with the same payloads:

- 2,000 puts + 2,000 gets of 1 KiB objects, adapter vs raw client, alternating object by
  object (best of ``--rounds``);
- one 256 MB object up and down (generated chunk by chunk, never held in memory; best of
  ``--rounds``, alternating who goes first);
- peak RSS of a fresh process doing only the adapter's 256 MB upload.

Targets (issue 3): small >= 90 % of raw, large >= 95 %, peak RSS < 150 MB.

    .venv/bin/python benchmarks/bench_storage.py [--small 2000] [--large-mb 256]
        [--providers aws,gcp,azure] [--write-docs]

``--write-docs`` replaces the figures block in docs/storage.md.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from emulators import (  # noqa: E402
    AZURITE_ACCOUNT,
    azurite_connection_string,
    start_azurite,
    start_gcs,
    start_moto,
)

from residency_sdk.model import StorageTarget  # noqa: E402

MB = 1024 * 1024
CHUNK = 8 * MB
CONCURRENCY = 4
DOCS = REPO / "docs" / "storage.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


class Source(io.RawIOBase):
    """``size`` deterministic bytes produced on demand (non-seekable)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size, self.produced = size, 0
        self.block = hashlib.shake_256(b"bench").digest(MB)

    def readable(self) -> bool:
        return True

    def tell(self) -> int:  # google-resumable-media checks the stream starts at 0
        return self.produced

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self.size - self.produced)
        out = bytearray()
        pos = self.produced
        while len(out) < want:
            start = pos % MB
            take = min(MB - start, want - len(out))
            out += self.block[start:start + take]
            pos += take
        buffer[:want] = out
        self.produced += want
        return want


# --- provisioning and clients ---------------------------------------------------------


def provision(provider: str, endpoint: str, port: int) -> StorageTarget:
    """Create the benchmark bucket on the emulator; return its target."""
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
    if provider == "aws":
        import boto3

        kms = boto3.client("kms", region_name="eu-central-1", endpoint_url=endpoint)
        key = kms.create_key()["KeyMetadata"]["Arn"]
        s3 = boto3.client("s3", region_name="eu-central-1", endpoint_url=endpoint)
        s3.create_bucket(Bucket="bench-aws",
                         CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
        return StorageTarget(provider="aws", region="eu-central-1", bucket="bench-aws",
                             country="DE", kms_key=key, endpoint=endpoint)
    if provider == "gcp":
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(project="bench", credentials=AnonymousCredentials(),
                                client_options=ClientOptions(api_endpoint=endpoint))
        bucket = client.create_bucket("bench-gcp")
        # The emulator reads every bucket back as US; the adapter verifies the location on
        # open, so give the bucket the region a real DE bucket would report.
        bucket._patch_property("location", "EUROPE-WEST3")
        bucket.patch()
        return StorageTarget(provider="gcp", region="europe-west3", bucket="bench-gcp",
                             country="DE", endpoint=endpoint,
                             kms_key="projects/p/locations/europe-west3/keyRings/r/cryptoKeys/k")
    from azure.storage.blob import BlobServiceClient

    os.environ["RESIDENCY_AZURE_CONNECTION_STRING"] = azurite_connection_string(port)
    BlobServiceClient.from_connection_string(
        azurite_connection_string(port)).create_container("bench-azure")
    return StorageTarget(provider="azure", region="germanywestcentral", bucket="bench-azure",
                         country="DE", encryption_scope="bench-scope",
                         account=AZURITE_ACCOUNT, endpoint=f"{endpoint}/{AZURITE_ACCOUNT}")


class Raw:
    """The raw SDK calls each adapter wraps, with the same encryption parameters."""

    def __init__(self, target: StorageTarget, port: int) -> None:
        self.t = target
        if target.provider == "aws":
            import boto3
            from boto3.s3.transfer import TransferConfig
            from botocore.config import Config

            self.c = boto3.client("s3", region_name=target.region, endpoint_url=target.endpoint,
                                  config=Config(s3={"addressing_style": "path"}))
            self.tc = TransferConfig(multipart_threshold=16 * MB, multipart_chunksize=CHUNK,
                                     max_concurrency=CONCURRENCY)
        elif target.provider == "gcp":
            from google.api_core.client_options import ClientOptions
            from google.auth.credentials import AnonymousCredentials
            from google.cloud import storage

            self.c = storage.Client(project="bench", credentials=AnonymousCredentials(),
                                    client_options=ClientOptions(api_endpoint=target.endpoint))
            self.b = self.c.bucket(target.bucket)
        else:
            from azure.storage.blob import BlobServiceClient

            self.c = BlobServiceClient.from_connection_string(
                azurite_connection_string(port), max_single_put_size=16 * MB,
                max_block_size=CHUNK, max_single_get_size=CHUNK, max_chunk_get_size=CHUNK)
            self.cc = self.c.get_container_client(target.bucket)

    def put(self, key: str, data: bytes) -> None:
        t = self.t
        if t.provider == "aws":
            self.c.put_object(Bucket=t.bucket, Key=key, Body=data,
                              ServerSideEncryption="aws:kms", SSEKMSKeyId=t.kms_key)
        elif t.provider == "gcp":
            self.b.blob(key, kms_key_name=t.kms_key).upload_from_string(data)
        else:
            self.cc.upload_blob(key, data, overwrite=True, encryption_scope=t.encryption_scope)

    def get(self, key: str) -> bytes:
        t = self.t
        if t.provider == "aws":
            return bytes(self.c.get_object(Bucket=t.bucket, Key=key)["Body"].read())
        if t.provider == "gcp":
            return bytes(self.b.blob(key).download_as_bytes())
        return bytes(self.cc.download_blob(key).readall())

    def put_stream(self, key: str, source: io.RawIOBase) -> None:
        t = self.t
        if t.provider == "aws":
            self.c.upload_fileobj(source, t.bucket, key, Config=self.tc, ExtraArgs={
                "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": t.kms_key})
        elif t.provider == "gcp":
            self.b.blob(key, chunk_size=CHUNK, kms_key_name=t.kms_key).upload_from_file(source)
        else:
            self.cc.upload_blob(key, source, overwrite=True, max_concurrency=CONCURRENCY,
                                encryption_scope=t.encryption_scope)

    def read_stream(self, key: str) -> int:
        t = self.t
        total = 0
        if t.provider == "aws":
            body = self.c.get_object(Bucket=t.bucket, Key=key)["Body"]
            for chunk in body.iter_chunks(chunk_size=MB):
                total += len(chunk)
        elif t.provider == "gcp":
            with self.b.blob(key, chunk_size=CHUNK).open("rb") as reader:
                while chunk := reader.read(4 * MB):
                    total += len(chunk)
        else:
            for chunk in self.cc.download_blob(key, max_concurrency=1).chunks():
                total += len(chunk)
        return total


# --- measurements ---------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def small_ops(n: int, raw: Raw, store: Any, tag: str) -> tuple[float, float]:
    """Operations per second (raw, SDK) for n puts then n gets of 1 KiB each.

    The two clients alternate object by object (and who goes first), so both see the
    emulator in the same state: emulators slow down as they fill up.
    """
    payload = os.urandom(1024)
    spent = {"raw": 0.0, "sdk": 0.0}
    ops: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
        "raw": (raw.put, raw.get), "sdk": (store.put, store.get)}
    for phase in (0, 1):
        for i in range(n):
            order = ("raw", "sdk") if i % 2 else ("sdk", "raw")
            for who in order:
                key = f"small/{tag}/{who}/{i}"
                fn = ops[who][phase]
                started = time.perf_counter()
                fn(key, payload) if phase == 0 else fn(key)
                spent[who] += time.perf_counter() - started
    return 2 * n / spent["raw"], 2 * n / spent["sdk"]


def peak_rss_mb() -> float:
    """This process's RSS high-water mark (VmHWM: unlike ru_maxrss it is not inherited
    from the parent across fork + exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_child(provider: str, target_json: str, size: int) -> None:
    """Child process: only the adapter's large upload; print peak RSS in MB."""
    from residency_sdk.storage.factory import open_store

    store = open_store(StorageTarget.model_validate_json(target_json))
    store.put("rss/large", Source(size))  # type: ignore[arg-type]
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))


def bench_provider(provider: str, endpoint: str, port: int, n: int, size: int,
                   rounds: int) -> dict[str, Any]:
    from residency_sdk.storage.factory import open_store

    target = provision(provider, endpoint, port)
    store = open_store(target)
    raw = Raw(target, port)
    sdk_small = raw_small = 0.0
    for r in range(rounds):
        raw_ops, sdk_ops = small_ops(n, raw, store, f"r{r}")
        raw_small, sdk_small = max(raw_small, raw_ops), max(sdk_small, sdk_ops)
    def sdk_read(key: str) -> int:
        total = 0
        with store.open(key) as reader:
            while chunk := reader.read(4 * MB):
                total += len(chunk)
        return total

    # Best of `rounds` for the large object too, alternating who goes first; each object
    # is deleted after use so the in-memory emulators do not fill up.
    up = {"raw": float("inf"), "sdk": float("inf")}
    down = dict(up)
    for r in range(rounds):
        for who in (("raw", "sdk") if r % 2 == 0 else ("sdk", "raw")):
            key = f"large/{who}{r}"
            if who == "raw":
                up[who] = min(up[who], timed(lambda k=key: raw.put_stream(k, Source(size))))
                down[who] = min(down[who], timed(lambda k=key: raw.read_stream(k)))
            else:
                up[who] = min(up[who], timed(lambda k=key: store.put(k, Source(size))))
                down[who] = min(down[who], timed(lambda k=key: sdk_read(k)))
            store.delete(key)
    up_raw, up_sdk, down_raw, down_sdk = up["raw"], up["sdk"], down["raw"], down["sdk"]
    child = subprocess.run(
        [sys.executable, __file__, "--rss-child", provider, "--target",
         target.model_dump_json(), "--large-mb", str(size // MB)],
        capture_output=True, text=True, check=True, env=os.environ.copy())
    peak = json.loads(child.stdout.strip().splitlines()[-1])["peak_rss_mb"]
    store.close()
    mb = size / MB
    return {
        "provider": provider, "small_ops_raw": raw_small, "small_ops_sdk": sdk_small,
        "small_ratio": sdk_small / raw_small,
        "large_up_raw_mbs": mb / up_raw, "large_up_sdk_mbs": mb / up_sdk,
        "large_down_raw_mbs": mb / down_raw, "large_down_sdk_mbs": mb / down_sdk,
        "large_ratio": (up_raw + down_raw) / (up_sdk + down_sdk),
        "peak_rss_mb": peak,
    }


def table(rows: list[dict[str, Any]], n: int, size: int, rounds: int) -> str:
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; emulators on 127.0.0.1; {n} x 1 KiB puts + gets "
        f"and one {size // MB} MB object up and down (best of {rounds} each).",
        "",
        "| provider | 1 KiB ops/s raw | 1 KiB ops/s SDK | small ratio (>= 90 %) | "
        "large up MB/s raw / SDK | large down MB/s raw / SDK | large ratio (>= 95 %) | "
        "peak RSS 256 MB upload (< 150 MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['provider']} | {r['small_ops_raw']:.0f} | {r['small_ops_sdk']:.0f} | "
            f"{r['small_ratio']:.0%} {'ok' if r['small_ratio'] >= 0.9 else 'MISSED'} | "
            f"{r['large_up_raw_mbs']:.0f} / {r['large_up_sdk_mbs']:.0f} | "
            f"{r['large_down_raw_mbs']:.0f} / {r['large_down_sdk_mbs']:.0f} | "
            f"{r['large_ratio']:.0%} {'ok' if r['large_ratio'] >= 0.95 else 'MISSED'} | "
            f"{r['peak_rss_mb']:.0f} MB {'ok' if r['peak_rss_mb'] < 150 else 'MISSED'} |")
    return "\n".join(lines)


def write_docs(text: str, start: str = START, end: str = END, docs: Path = DOCS) -> None:
    """Replace the figures block between the ``start`` and ``end`` markers of ``docs``."""
    doc = docs.read_text()
    if start not in doc or end not in doc:
        raise SystemExit(f"{docs} has no {start} ... {end} block")
    head, rest = doc.split(start, 1)
    _, tail = rest.split(end, 1)
    docs.write_text(f"{head}{start}\n{text}\n{end}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large-mb", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--providers", default="aws,gcp,azure")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = args.large_mb * MB
    if args.rss_child:
        rss_child(args.rss_child, args.target, size)
        return
    starters = {"aws": start_moto, "gcp": start_gcs, "azure": start_azurite}
    rows = []
    with tempfile.TemporaryDirectory() as logs:
        for provider in args.providers.split(","):
            emulator = starters[provider](Path(logs))
            try:
                row = bench_provider(provider, emulator.endpoint, emulator.port, args.small,
                                     size, args.rounds)
            finally:
                emulator.stop()
            print(json.dumps(row), flush=True)
            rows.append(row)
    text = table(rows, args.small, size, args.rounds)
    print(text)
    if args.write_docs:
        write_docs(text)
        print(f"figures written to {DOCS}")


if __name__ == "__main__":
    main()
