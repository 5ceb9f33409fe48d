"""Slow and idle clients cannot pin the HTTP server: a real daemon process, real sockets.

Bounded: at most 500 connections, all to 127.0.0.1, closed by the test at the end.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from monitor.exporter.server import CONNECTION_TIMEOUT_SECONDS, HttpServer, make_app
from monitor.simulator import Simulator
from tests.conftest import free_port
from tests.daemon_process import DaemonProcess
from tests.system.test_e2e import PUBLIC, SECRET, daemon_env


def proc_status(pid: int) -> dict[str, int]:
    """Threads and VmRSS (KiB) of a process, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Threads", "VmRSS"):
            fields[key] = int(value.split()[0])
    return fields


@contextlib.contextmanager
def idle_connections(
    port: int, count: int, first_bytes: bytes = b""
) -> Iterator[list[socket.socket]]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if first_bytes:
                sock.sendall(first_bytes)
            sockets.append(sock)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True when the server closed the connection (EOF or reset) within ``within`` seconds."""
    end = time.monotonic() + within
    try:
        while (left := end - time.monotonic()) > 0:
            sock.settimeout(left)
            if sock.recv(1024) == b"":
                return True
    except (ConnectionResetError, ssl.SSLError):
        return True
    except TimeoutError:
        return False
    return False


@pytest.fixture
def e2e_sim() -> Iterator[Simulator]:
    with Simulator(public_key=PUBLIC, secret_key=SECRET) as sim:
        yield sim


def scrape_families(response: httpx.Response) -> set[str]:
    return {f.name for f in text_string_to_metric_families(response.text)}


@pytest.mark.timeout(90)
def test_500_idle_connections_neither_block_scrapes_nor_stay(e2e_sim: Simulator) -> None:
    port = free_port()
    daemon = DaemonProcess(["run"], daemon_env(e2e_sim, port), port)
    try:
        daemon.wait_ready()
        pid = daemon.process.pid
        baseline = proc_status(pid)
        with idle_connections(port, 500) as idle:
            opened = time.monotonic()
            response = httpx.get(daemon.base + "/metrics", timeout=2)  # answered within 2 s
            assert response.status_code == 200
            assert "integration_monitor_polls" in scrape_families(response)
            deadline = opened + CONNECTION_TIMEOUT_SECONDS + 5
            still_open = [s for s in idle if not closed_by_server(s, deadline - time.monotonic())]
            assert still_open == [], f"{len(still_open)} idle connections were not closed"
        time.sleep(1)  # the handler threads finish after closing
        after = proc_status(pid)
        assert after["Threads"] <= baseline["Threads"] + 2, (baseline, after)
        assert after["VmRSS"] <= baseline["VmRSS"] + 30 * 1024, (baseline, after)
        assert httpx.get(daemon.base + "/metrics", timeout=2).status_code == 200
        code, _ = daemon.terminate()
    finally:
        daemon.kill()
    assert code == 0


@pytest.mark.timeout(90)
def test_half_finished_tls_handshakes_are_dropped(tmp_path: Path, e2e_sim: Simulator) -> None:
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "server.pem")
    )
    ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    web = tmp_path / "web.yml"
    web.write_text("tls_server_config: {cert_file: server.pem, key_file: server.pem}\n")
    port = free_port()
    env = daemon_env(e2e_sim, port, MONITOR_WEB_CONFIG_FILE=str(web))
    daemon = DaemonProcess(["run"], env, port)
    trust = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    base = f"https://127.0.0.1:{port}"
    try:
        daemon.wait_for(
            lambda: httpx.get(base + "/readyz", verify=trust).status_code == 200, 20, "ready"
        )
        baseline = proc_status(daemon.process.pid)
        # a TLS record header and nothing more: the handshake never finishes
        with idle_connections(port, 100, first_bytes=b"\x16\x03\x01") as stuck:
            opened = time.monotonic()
            assert httpx.get(base + "/metrics", verify=trust, timeout=2).status_code == 200
            deadline = opened + CONNECTION_TIMEOUT_SECONDS + 5
            still_open = [s for s in stuck if not closed_by_server(s, deadline - time.monotonic())]
            assert still_open == []
        time.sleep(1)
        after = proc_status(daemon.process.pid)
        assert after["Threads"] <= baseline["Threads"] + 2, (baseline, after)
        code, _ = daemon.terminate()
    finally:
        daemon.kill()
    assert code == 0


def test_connections_beyond_the_cap_are_closed_not_queued() -> None:
    app = make_app(CollectorRegistry(), lambda: True)
    server = HttpServer("127.0.0.1", 0, app, timeout_seconds=30, max_connections=5)
    server.start()
    try:
        with idle_connections(server.port, 5) as held, idle_connections(server.port, 1) as extra:
            assert closed_by_server(extra[0], 5)  # closed at once, not after 30 s
            assert server.rejected == 1
            for sock in held:  # the held ones are still being waited on
                assert not closed_by_server(sock, 0.2)
        # once the slots are free again, requests are served
        deadline = time.monotonic() + 5
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert response.status_code == 200
    finally:
        server.stop()
