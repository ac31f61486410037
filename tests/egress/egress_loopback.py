"""Real loopback HTTP servers for the egress tests, counting the TCP connections they
accept (so a test can assert that a refused request never reached them)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes


class _Handler(BaseHTTPRequestHandler):
    server: CountingServer

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        received = Received(self.command, self.path,
                            {k.lower(): v for k, v in self.headers.items()}, body)
        if self.server.on_request is not None:
            self.server.on_request(received)
        self.server.record(received)
        if self.path.startswith("/redirect") and self.server.redirect_to:
            self.send_response(302)
            self.send_header("Location", self.server.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        out = json.dumps({"ok": True, "server": self.server.label, "path": self.path,
                          "received": len(body)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


class CountingServer(ThreadingHTTPServer):
    """A threading HTTP server on 127.0.0.1 (a free port) that counts accepted TCP
    connections and records each request. ``/redirect...`` answers 302 to
    ``redirect_to`` when set; anything else 200 with a small JSON body. ``on_request``
    (when set) sees each request before it is answered."""

    daemon_threads = True

    def __init__(self, label: str) -> None:
        self.label = label
        self.redirect_to: str | None = None
        self.on_request: Callable[[Received], None] | None = None
        """Called with each request as it arrives, before it is answered."""
        self.connections = 0
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)
        self._thread = threading.Thread(target=self.serve_forever, args=(0.02,),
                                        name=f"loopback-{label}",
                                        daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def verify_request(self, request: Any, client_address: Any) -> bool:
        with self._lock:
            self.connections += 1
        return True

    def record(self, received: Received) -> None:
        with self._lock:
            self.requests.append(received)

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)
