"""A real PostgreSQL for the tests: a cluster of its own on a temporary directory and a free
loopback port, started by the tests and stopped after them.

Debian's server lives in /usr/lib/postgresql/<version>/bin (not on PATH); ``initdb`` and
``postgres`` refuse to run as root, so as root they run as the ``postgres`` system user
(``runuser``). Setup goes through the cluster's Unix socket (trusted); the tests connect over
TCP to 127.0.0.1 as a role with a password (scram-sha-256), so the URL's secret is a real one.
Without the binaries a test skips, except in CI (``CI=true``), where it fails.

Each pytest-xdist worker is its own session, so it starts its own cluster: two workers never
share one. Each test gets a database of its own (``CREATE DATABASE``: about 30 ms).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import free_port

ROLE = "monitor"
#: the role's password: characters a URL must escape, so the tests see it in both forms
PASSWORD = "s3cret p@ss/w0rd%"
SERVER_SETTINGS = (
    "fsync=off",  # test data: durability is not what these tests are about
    "synchronous_commit=off",
    "full_page_writes=off",
    "shared_buffers=16MB",
    "max_connections=60",
)


def postgres_bin() -> Path:
    """The newest installed server's bin directory; skip (or fail in CI) without one."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is required in CI (.ci/run installs Debian's postgresql)")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    return found[-1].parent


class Cluster:
    """One PostgreSQL cluster: ``start``, ``stop``, databases, and admin statements."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="monitor-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self._names = itertools.count(1)
        self._run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-instructions",
            ]
        )

    def _run(self, command: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=check)

    def start(self) -> None:
        """Start on a free port (another worker may take the one chosen: then another)."""
        for _ in range(5):
            port = self.port or free_port()
            options = " ".join(
                [f"-p {port}", f"-k {self.root}", "-c listen_addresses=127.0.0.1"]
                + [f"-c {s}" for s in SERVER_SETTINGS]
            )
            result = self._run(
                [
                    str(self.bin / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-o",
                    options,
                    "-l",
                    str(self.log),
                    "-w",
                    "-t",
                    "30",
                    "start",
                ],
                check=False,
            )
            if result.returncode == 0:
                self.port = port
                self._ensure_role()
                return
            if "could not bind" not in self.log.read_text(errors="replace"):
                break
            self.port = 0
        raise RuntimeError(f"PostgreSQL did not start: {self.log.read_text(errors='replace')}")

    def stop(self, mode: str = "fast") -> None:
        self._run(
            [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"],
            check=False,
        )

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def admin(self, statement: str, *args: object) -> list[tuple[object, ...]]:
        """One statement as the superuser, over the Unix socket (autocommit)."""
        import psycopg

        with psycopg.connect(
            host=str(self.root), port=self.port, user="postgres", dbname="postgres",
            autocommit=True, connect_timeout=10,
        ) as conn:  # fmt: skip
            cursor = conn.execute(statement.encode(), args or None)
            return cursor.fetchall() if cursor.description else []

    def _ensure_role(self) -> None:
        if not self.admin("SELECT 1 FROM pg_roles WHERE rolname = %s", ROLE):
            self.admin(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")

    def create_database(self) -> str:
        """A new, empty database owned by the role; returns its URL (password included)."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        self.admin(f"CREATE DATABASE {name} OWNER {ROLE}")
        return self.url(name)

    def url(self, database: str, password: str = PASSWORD, port: int | None = None) -> str:
        return (
            f"postgresql://{ROLE}:{quote(password, safe='')}@127.0.0.1:"
            f"{port or self.port}/{database}"
        )

    def sessions(self, database: str) -> int:
        """Connections open to ``database`` now."""
        rows = self.admin("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", database)
        return int(rows[0][0])  # type: ignore[call-overload]

    def terminate(self, database: str) -> None:
        """Ends every session of ``database`` (what a failover or an admin does)."""
        self.admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
            "AND pid <> pg_backend_pid()",
            database,
        )


@contextlib.contextmanager
def running_cluster() -> Iterator[Cluster]:
    cluster = Cluster(postgres_bin())
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


class Proxy:
    """A TCP relay on 127.0.0.1 in front of a server. ``freeze()``: nothing moves any more while
    every connection stays open (a network partition, a frozen host); ``thaw()`` undoes it;
    ``cut()`` closes every connection (a failover, a restart)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._frozen = threading.Event()
        self._stopped = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            with self._lock:
                self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while not self._stopped.is_set():
            if self._frozen.is_set():
                time.sleep(0.02)
                continue
            try:
                ready, _, _ = select.select([source], [], [], 0.05)
                if not ready or self._frozen.is_set():  # frozen meanwhile: it stays unread
                    continue
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
            except OSError:
                break
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def url(self, database: str) -> str:
        return f"postgresql://{ROLE}:{quote(PASSWORD, safe='')}@127.0.0.1:{self.port}/{database}"

    def freeze(self) -> None:
        self._frozen.set()

    def thaw(self) -> None:
        self._frozen.clear()

    def cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._stopped.set()
        self.cut()
        self._listener.close()
