"""Egress guard benchmark: the latency ``res.compute_for`` adds to an HTTP request.

Run:  .venv/bin/python benchmarks/bench_egress.py [--rounds 40] [--block 100] [--dir DIR]
                                                  [--profile N]

A 1 KiB POST to a loopback HTTP/1.1 keep-alive server (a separate process, so the server
does not compete with the client for the GIL; one connection reused, so connection setup
does not count), measured in ONE run, interleaved: each round runs one block of
``--block`` requests of every variant, in a rotating order, and the per-request times of
all rounds are pooled (the first round is a warm-up and discarded):

(a)  plain ``httpx.Client``
(b)  ``res.compute_for(tenant, purpose=...)`` with the audit off (the guard alone: decide,
     strip the class header, count bytes)
(c)  ``compute_for`` audited to the default SQLite ``AuditLog`` (group commit), in each
     ``audit_durability``: ``c_group`` (intent and outcome join the log's next group
     commit; nobody waits), ``c_response`` (the default: the intent's commit overlaps
     the request, the response waits for it) and ``c_send`` (the intent is durable before
     a byte is sent: one commit per request on the critical path)
(d)  ``httpx.AsyncClient`` vs ``res.async_compute_for``: ``d_guarded`` (audit off),
     ``d_group`` and ``d_response`` (audited)

Prints per-request medians (microseconds) and each variant's ratio to its plain client,
then ``{"targets_met": ...}``: the guard alone and the guard audited with group commit
(b, c_group, d_guarded, d_group) within 1.10x. The waiting modes are shown for what they
cost: for scale the run also times a bare SQLite WAL commit with fsync on the same disk
(``sqlite_commit_fsync``), the floor of one durable intent per request. ``--profile N``
then runs N group-audited requests under cProfile and prints where their time goes. The
audit logs live in DIR (default: a new folder under the system temp dir, which must be a
real disk, not /dev/shm: fsync on tmpfs costs nothing), removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import http.server
import io
import json
import multiprocessing
import multiprocessing.connection
import os
import platform
import pstats
import shutil
import socketserver
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import yaml

import residency_sdk as rs

PAYLOAD = os.urandom(1024)
TARGET = 1.10
TENANT = rs.Tenant(id="clinic-berlin", country="DE")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True
    _BODY = b'{"ok":true}'
    _REPLY = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
              + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.wfile.write(self._REPLY)  # status, headers and body in one write

    def log_message(self, *args: object) -> None:
        pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def _serve(port_out: multiprocessing.connection.Connection) -> None:
    server = _Server(("127.0.0.1", 0), _Handler)
    port_out.send(server.server_address[1])
    server.serve_forever()


def _write_map(path: Path, url: str) -> Path:
    """The default map with DE's compute endpoint at the loopback server."""
    path.write_text(yaml.safe_dump({
        "extends": "default", "name": "bench-egress", "locations": {"DE": {"compute": [
            {"provider": "azure", "region": "germanywestcentral", "endpoint": url}]}}}))
    return path


def _sync_block(client: httpx.Client, url: str, n: int, out: list[int]) -> None:
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        response = client.post(url, content=PAYLOAD)
        out.append(clock() - t0)
        if response.status_code != 200:
            raise RuntimeError(f"server answered {response.status_code}")


async def _async_block(client: httpx.AsyncClient, url: str, n: int, out: list[int]) -> None:
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        response = await client.post(url, content=PAYLOAD)
        out.append(clock() - t0)
        if response.status_code != 200:
            raise RuntimeError(f"server answered {response.status_code}")


def main() -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--block", type=int, default=100)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-egress-", dir=args.dir))

    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(there,), daemon=True)
    server.start()
    try:
        base = f"http://127.0.0.1:{here.recv()}"
        url = base + "/v1/infer"
        map_path = _write_map(work / "map.yaml", base)
        off = rs.Residency.load(map_path, audit=False, state_dir=work / "state",
                                audit_off_reason="benchmark: the guard without the audit")
        audited = rs.Residency.load(map_path, audit=str(work / "audit.db"))

        def client(durability: str) -> httpx.Client:
            return audited.compute_for(TENANT, purpose="benchmark", actor="bench",
                                       audit_durability=durability)  # type: ignore[arg-type]

        def aclient(durability: str) -> httpx.AsyncClient:
            return audited.async_compute_for(TENANT, purpose="benchmark", actor="bench",
                                             audit_durability=durability)  # type: ignore[arg-type]

        loop = asyncio.new_event_loop()
        sync_clients: dict[str, httpx.Client] = {
            "a_plain": httpx.Client(),
            "b_guarded": off.compute_for(TENANT, purpose="benchmark", actor="bench"),
            "c_group": client("group"),
            "c_response": client("before_response"),
            "c_send": client("before_send"),
        }
        async_clients: dict[str, httpx.AsyncClient] = {
            "d_plain": httpx.AsyncClient(),
            "d_guarded": off.async_compute_for(TENANT, purpose="benchmark", actor="bench"),
            "d_group": aclient("group"),
            "d_response": aclient("before_response"),
        }

        def sync_run(client: httpx.Client) -> Callable[[list[int]], None]:
            return lambda out: _sync_block(client, url, args.block, out)

        def async_run(client: httpx.AsyncClient) -> Callable[[list[int]], None]:
            return lambda out: loop.run_until_complete(
                _async_block(client, url, args.block, out))

        runs = {name: sync_run(c) for name, c in sync_clients.items()}
        runs.update({name: async_run(c) for name, c in async_clients.items()})
        times: dict[str, list[int]] = {name: [] for name in runs}
        names = list(runs)
        for rnd in range(args.rounds + 1):
            order = names[rnd % len(names):] + names[:rnd % len(names)]
            for name in order:
                sink: list[int] = [] if rnd == 0 else times[name]  # round 0: warm-up
                runs[name](sink)
        floor = _bare_commits(work / "bare.db", 2_000)
        if args.profile:
            _profile(sync_clients["c_group"], url, args.profile)
        for client in sync_clients.values():
            client.close()
        for aclient in async_clients.values():
            loop.run_until_complete(aclient.aclose())
        loop.close()
        commits = getattr(audited.audit.sinks[0], "commits", None)
        off.close()
        audited.close()
    finally:
        server.terminate()
        server.join(5)
        shutil.rmtree(work, ignore_errors=True)

    figures = {f"{name}_median_us": statistics.median(t) / 1000 for name, t in times.items()}
    figures.update({f"{name}_p90_us": statistics.quantiles(t, n=10)[-1] / 1000
                    for name, t in times.items()})
    m = {name: statistics.median(t) for name, t in times.items()}
    for name in times:
        if name not in ("a_plain", "d_plain"):
            plain = "d_plain" if name.startswith("d_") else "a_plain"
            figures[f"{name}_over_{plain}_ratio"] = m[name] / m[plain]
    figures["sqlite_commit_fsync_median_us"] = floor / 1000
    figures["c_group_minus_a_median_us"] = (m["c_group"] - m["a_plain"]) / 1000
    figures["requests_per_variant"] = float(len(times["a_plain"]))
    if commits is not None:
        figures["audit_commits"] = float(commits)
    return figures


def _bare_commits(path: Path, n: int) -> float:
    """Median ns of one bare SQLite WAL commit with fsync (synchronous=FULL), 1 row."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, event TEXT)")
    row = "x" * 900  # about the size of an egress event's JSON
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t (event) VALUES (?)", (row,))
        db.execute("COMMIT")
        out.append(time.perf_counter_ns() - t0)
    db.close()
    return statistics.median(out)


def _profile(client: httpx.Client, url: str, n: int) -> None:
    """Where an audited request's time goes (cumulative, top 25 functions)."""
    profiler = cProfile.Profile()
    profiler.enable()
    _sync_block(client, url, n, [])
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
    print(out.getvalue(), file=sys.stderr)


if __name__ == "__main__":
    figures = main()
    print(f"python {platform.python_version()} on {platform.machine()}, "
          f"{platform.processor() or 'cpu'}, {os.cpu_count()} cpus; 1 KiB POST, loopback "
          "HTTP/1.1 keep-alive", file=sys.stderr)
    for name, value in figures.items():
        if name.endswith("ratio"):
            shown = f"{value:.3f}x"
        elif name.endswith("_us"):
            shown = f"{value:,.1f} us"
        else:
            shown = f"{value:,.0f}"
        print(f"{name:34s} {shown}")
    ok = all(figures[k] <= TARGET for k in (
        "b_guarded_over_a_plain_ratio", "c_group_over_a_plain_ratio",
        "d_guarded_over_d_plain_ratio", "d_group_over_d_plain_ratio"))
    print(json.dumps({"targets_met": ok}))
