"""Start and stop a real PostgreSQL server on loopback for the test suite.

Used by the ``postgres_server``/``postgres_url`` fixtures in ``tests/conftest.py``. The
server is Debian's ``postgresql`` package (``scripts/test.sh`` installs it when missing): a
fresh cluster in a temporary folder, listening on 127.0.0.1 on a free port, stopped by its
PID at the end. PostgreSQL refuses to run as root, so when the suite runs as root
``initdb`` and ``pg_ctl`` run as the ``postgres`` user the package creates
(``su postgres -s /bin/sh -c ...``), in a folder owned by that user.

Authentication: ``trust`` for every role on loopback, except the role
:data:`PASSWORD_ROLE`, which must give its password (SCRAM), so tests can check that a
password never shows in a name or a message.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

PASSWORD_ROLE = "residency_pw"
"""The one role that authenticates with a password (``scram-sha-256``)."""

_PG_HBA = f"""\
# Written by tests/pgserver.py: loopback only.
local all all trust
host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
"""


_STARTED: list[PostgresServer] = []
"""Servers this process started: any still there at interpreter exit are destroyed (a
safety net for a session that ends without its fixture teardown)."""


def _destroy_leftovers() -> None:
    for server in _STARTED:
        server.destroy()


atexit.register(_destroy_leftovers)


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server could be started (binaries missing, start failed)."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path)) or (0,)


def find_bindir() -> Path | None:
    """The folder holding ``initdb``/``pg_ctl``/``postgres``: ``$RESIDENCY_PG_BINDIR``,
    else ``pg_config --bindir``, else the newest ``/usr/lib/postgresql/*/bin``."""
    candidates: list[str] = []
    if os.environ.get("RESIDENCY_PG_BINDIR"):
        candidates.append(os.environ["RESIDENCY_PG_BINDIR"])
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                 timeout=10, check=True).stdout.strip()
            candidates.append(out)
    candidates.extend(sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key,
                             reverse=True))
    for candidate in candidates:
        path = Path(candidate)
        if all((path / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return path
    return None


@dataclass
class PostgresServer:
    """One PostgreSQL cluster in ``root`` (data in ``root/data``, socket in ``root``)."""

    root: Path
    port: int
    bindir: Path
    run_as: str | None
    """The user that owns and runs the cluster (``postgres`` when we are root)."""
    pid: int | None = None
    databases: list[str] = field(default_factory=list)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    @property
    def url(self) -> str:
        """The superuser's URL to the ``postgres`` database (no password: ``trust``)."""
        return self.url_for("postgres")

    def url_for(self, dbname: str, *, user: str = "postgres", password: str | None = None,
                **params: str) -> str:
        """A ``postgresql://`` URL to ``dbname`` on this server."""
        auth = user if password is None else f"{user}:{password}"
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}" + (
            f"?{query}" if query else "")

    # --- lifecycle ---------------------------------------------------------------------

    def _run(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run a server tool, as ``run_as`` when that is another user than us."""
        if self.run_as is not None:
            argv = ["su", self.run_as, "-s", "/bin/sh", "-c", shlex.join(argv)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              check=False, cwd="/")

    def initdb(self) -> None:
        done = self._run([str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust",
                          "-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync"],
                         timeout=120)
        if done.returncode != 0:
            raise PostgresUnavailable(f"initdb failed ({done.returncode}): "
                                      f"{(done.stderr or done.stdout)[-2000:]}")
        hba = self.data / "pg_hba.conf"
        hba.write_text(_PG_HBA)

    def start(self, timeout: float = 60.0) -> None:
        """Start the server on ``port`` and wait until it accepts TCP connections."""
        options = (f"-k {self.root} -p {self.port} -h 127.0.0.1 -c max_connections=200 "
                   "-c password_encryption=scram-sha-256")
        done = self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l",
                          str(self.log), "-o", options, "-w", "-t", str(int(timeout)),
                          "start"], timeout=timeout + 10)
        if done.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise PostgresUnavailable(f"pg_ctl start failed ({done.returncode}): "
                                      f"{done.stderr.strip()} {tail}")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return
            except psycopg.Error as exc:
                last = str(exc)
            time.sleep(0.1)
        raise PostgresUnavailable(f"PostgreSQL on port {self.port} did not accept "
                                  f"connections within {timeout:.0f}s: {last}")

    def alive(self) -> bool:
        """True while the postmaster runs (an exited one waiting to be reaped, a zombie,
        counts as gone: in a container PID 1 may reap it only a second later)."""
        if self.pid is None:
            return False
        with contextlib.suppress(OSError, IndexError):
            stat = Path(f"/proc/{self.pid}/stat").read_text()
            return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def stop(self) -> None:
        """Stop the server: ``pg_ctl stop -m immediate``, then SIGKILL its PID if it is
        still there. The data folder is kept (:meth:`start` restarts it)."""
        if self.pid is None:
            return
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            # --no-wait: pg_ctl's own wait polls coarsely; we watch the PID instead.
            self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                       "-W", "stop"], timeout=30)
        deadline = time.monotonic() + 10
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self.pid = None

    def destroy(self) -> None:
        """Stop the server and delete its folder."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # --- helpers for tests -------------------------------------------------------------

    def execute(self, sql: str, dbname: str = "postgres") -> None:
        """Run one statement as the superuser, outside a transaction."""
        import psycopg

        with psycopg.connect(self.url_for(dbname), autocommit=True) as conn:
            conn.execute(sql.encode())

    def create_database(self, prefix: str = "audit") -> str:
        """A fresh, empty database; returns its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.execute(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        return self.url_for(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by :meth:`create_database` (closing its sessions)."""
        name = url.rsplit("/", 1)[1].split("?", 1)[0]
        with contextlib.suppress(Exception):
            self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_postgres(timeout: float = 60.0) -> PostgresServer:
    """Initialise and start a throwaway PostgreSQL on a free loopback port.

    Raises :class:`PostgresUnavailable` (with the reason) when it cannot.
    """
    bindir = find_bindir()
    if bindir is None:
        raise PostgresUnavailable(
            "PostgreSQL server binaries not found (initdb/pg_ctl): install Debian's "
            "`postgresql` package (scripts/test.sh does when run as root) or set "
            "RESIDENCY_PG_BINDIR")
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise PostgresUnavailable(f"psycopg is not installed ({exc}): pip install "
                                  "'residency-sdk[postgres]'") from None
    run_as: str | None = None
    parent: str | None = None
    owner: tuple[int, int] | None = None
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable(
                "running as root and there is no `postgres` user to run the server as: "
                "install Debian's `postgresql` package") from None
        run_as, owner = "postgres", (user.pw_uid, user.pw_gid)
        # The folder must be reachable by the postgres user: not under a root-only tmp.
        parent = "/tmp" if os.path.isdir("/tmp") else None
    root = Path(tempfile.mkdtemp(prefix="residency-pg-", dir=parent))
    if owner is not None:
        os.chown(root, *owner)
    server = PostgresServer(root=root, port=free_port(), bindir=bindir, run_as=run_as)
    try:
        server.initdb()
        for attempt in range(3):  # the free port may be taken between probe and bind
            try:
                server.start(timeout)
                _STARTED.append(server)
                return server
            except PostgresUnavailable:
                server.stop()
                if attempt == 2:
                    raise
                server.port = free_port()
    except (PostgresUnavailable, OSError, subprocess.SubprocessError) as exc:
        server.destroy()
        raise PostgresUnavailable(str(exc)) from None
    raise AssertionError("unreachable")
