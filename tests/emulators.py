"""Start and stop the storage emulators on loopback, plus small fault servers.

Used by ``tests/conftest.py`` and ``benchmarks/bench_storage.py``. Every process is started
in its own session (process group) so stopping it by PID also stops the children it
spawns (Azurite's node launcher, werkzeug reloaders).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
AZURITE_BIN = REPO_ROOT / ".emulators" / "node_modules" / ".bin" / "azurite-blob"

# Azurite's published development account (not a secret: it is in Microsoft's docs).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")


class EmulatorError(RuntimeError):
    """An emulator could not be started."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Emulator:
    """One running emulator process."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop the emulator's whole process group, by PID."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def _http_ready(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except urllib.error.HTTPError:
            return True  # it answered: it is up
        except OSError:
            return False
    return probe


def _start(name: str, argv: list[str], port: int, probe_path: str, log_dir: Path,
           timeout: float = 30.0) -> Emulator:
    if not Path(argv[0]).exists():
        raise EmulatorError(f"{name}: {argv[0]} is not installed")
    log = log_dir / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=log_dir)
    emulator = Emulator(name, port, proc, log)
    probe = _http_ready(f"http://127.0.0.1:{port}{probe_path}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmulatorError(f"{name} exited with {proc.returncode}: "
                                f"{log.read_text(errors='replace')[-2000:]}")
        if probe():
            return emulator
        time.sleep(0.1)
    emulator.stop()
    raise EmulatorError(f"{name} did not answer on port {port} within {timeout:.0f}s")


def start_moto(log_dir: Path) -> Emulator:
    """moto server (S3 + KMS)."""
    port = free_port()
    return _start("moto", [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                  port, "/moto-api/", log_dir)


def start_gcs(log_dir: Path) -> Emulator:
    """gcp-storage-emulator, in memory."""
    port = free_port()
    return _start("gcs", [str(VENV_BIN / "gcp-storage-emulator"), "start", "--host",
                          "127.0.0.1", "--port", str(port), "--in-memory"],
                  port, "/storage/v1/b", log_dir)


def start_azurite(log_dir: Path) -> Emulator:
    """Azurite blob service, in memory."""
    port = free_port()
    return _start("azurite", [str(AZURITE_BIN), "--blobHost", "127.0.0.1", "--blobPort",
                              str(port), "--inMemoryPersistence", "--skipApiVersionCheck",
                              "--disableTelemetry"],
                  port, f"/{AZURITE_ACCOUNT}?comp=list", log_dir)


def azurite_connection_string(port: int) -> str:
    """The connection string of Azurite's development account on ``port``."""
    return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};")


def azurite_credential_string() -> str:
    """A connection string holding only the development account's credential: the
    endpoint comes from the region map (``endpoint:``), as the adapter requires."""
    return f"AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"


# --- fault injection ---------------------------------------------------------------------


@dataclass
class FaultServer:
    """An HTTP server on loopback answering every request with ``status`` (counts them)."""

    status: int
    requests: int = 0
    paths: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @contextlib.contextmanager
    def running(self) -> Iterator[FaultServer]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                with outer.lock:
                    outer.requests += 1
                    outer.paths.append(f"{self.command} {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                body = b'{"error": {"code": %d, "message": "injected"}}' % outer.status
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


class LoopbackListener:
    """A TCP listener on a free loopback port that hands each accepted connection to
    :meth:`handle` on its own thread; a context manager that stops on exit."""

    backlog = 64

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(self.backlog)
        self.port = int(self._sock.getsockname()[1])
        self._stop = threading.Event()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.handle(conn)

    def handle(self, conn: socket.socket) -> None:
        """Serve one accepted connection (called on the accept thread: do not block)."""
        raise NotImplementedError


class RewritingProxy(LoopbackListener):
    """A TCP proxy to an emulator that replaces byte strings in the server's answers.

    Replacements keep the length, so HTTP framing stays valid: this models corruption in
    transit, or a service reporting a checksum that does not match what was sent.
    """

    def __init__(self, upstream_port: int, replace: dict[bytes, bytes]) -> None:
        for old, new in replace.items():
            assert len(old) == len(new), "replacements must keep the length"
        super().__init__()
        self.upstream_port = upstream_port
        self.replace = replace
        self.hits = 0

    def handle(self, conn: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        threading.Thread(target=self._pump, args=(conn, upstream, False), daemon=True).start()
        threading.Thread(target=self._pump, args=(upstream, conn, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, rewrite: bool) -> None:
        keep = max((len(k) for k in self.replace), default=1) - 1 if rewrite else 0
        pending = b""
        try:
            while True:
                ready, _, _ = select.select([src], [], [], 0.05)
                if not ready:
                    if pending:  # nothing more is coming soon: flush the held-back tail
                        dst.sendall(pending)
                        pending = b""
                    continue
                data = src.recv(65536)
                if not data:
                    break
                pending += data
                if rewrite:
                    for old, new in self.replace.items():
                        if old in pending:
                            self.hits += pending.count(old)
                            pending = pending.replace(old, new)
                cut = len(pending) - keep
                if cut > 0:
                    dst.sendall(pending[:cut])
                    pending = pending[cut:]
            if pending:
                dst.sendall(pending)
        except (OSError, ValueError):
            pass  # the other direction closed the sockets first
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()


class SilentServer(LoopbackListener):
    """A TCP server on loopback that misbehaves at the connection level: ``mode="reset"``
    accepts and resets every connection at once; ``mode="hang"`` accepts and never
    answers. ``connections`` counts accepted connections."""

    def __init__(self, mode: str) -> None:
        assert mode in ("reset", "hang")
        super().__init__()
        self.mode = mode
        self.connections = 0
        self._held: list[socket.socket] = []

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        for conn in self._held:
            with contextlib.suppress(OSError):
                conn.close()

    def handle(self, conn: socket.socket) -> None:
        self.connections += 1
        if self.mode == "reset":
            # SO_LINGER 0: close() sends RST, the client sees "connection reset".
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
        else:
            self._held.append(conn)
