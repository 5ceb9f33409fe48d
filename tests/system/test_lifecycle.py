"""Lifecycle: SIGTERM in the middle of a poll, and an accelerated soak for leaks."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from monitor import logs
from monitor.daemon import Daemon
from monitor.simulator import SimIntegration, Simulator
from tests.conftest import account_for, free_port
from tests.daemon_process import DaemonProcess, monitor_env
from tests.receivers import Receiver, running


@pytest.mark.timeout(60)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_poll_mid_lookup_mid_retry_stops_cleanly(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """A poll hanging, a cause lookup hanging and a webhook being retried when the signal
    comes: exit 0 within 5 s, no error-level line, no traceback, the state file written."""
    now = datetime.now(UTC)
    shops = [
        SimIntegration(1, "failing", "Failing shop", started_failing_at=now - timedelta(hours=2)),
        *(SimIntegration(i) for i in (2, 3)),
    ]
    state_file = tmp_path / "alerts.json"
    with Simulator(shops) as sim, running(Receiver(statuses=[500] * 100)) as webhook:
        config = tmp_path / "monitor.yaml"
        config.write_text(
            yaml.safe_dump(
                {"alerting": {"state_file": str(state_file), "webhooks": [{"url": webhook.url}]}}
            )
        )
        port = free_port()
        env = monitor_env(sim, port, MONITOR_CONFIG_FILE=str(config))
        sim.inject_fault(kind="slow", delay=30.0, count=1, endpoint="logs")  # the lookup hangs
        daemon = DaemonProcess(["run"], env, port)
        try:
            daemon.wait_ready()
            daemon.wait_for(lambda: webhook.attempts >= 1, 10, "the webhook being retried")
            daemon.wait_for(lambda: sim.request_count("/integrations/1/logs") == 1, 10, "lookup")
            sim.inject_fault(kind="slow", delay=30.0, count=1, endpoint="list")  # the poll hangs
            lists = sim.request_count("/integrations")
            daemon.wait_for(
                lambda: sim.request_count("/integrations") > lists, 10, "the next poll in flight"
            )
            started = time.monotonic()
            daemon.process.send_signal(signum)
            code = daemon.process.wait(timeout=10)
            seconds = time.monotonic() - started
        finally:
            daemon.kill()
    assert code == 0
    assert seconds < 5
    lines = daemon.events()
    assert lines  # JSON lines were read
    assert [e for e in lines if e["level"] in ("error", "critical") and e["event"] != "alert"] == []
    assert [e for e in lines if "exception" in e or "exc_info" in e] == []
    assert not [line for line in daemon.lines if not line.lstrip().startswith("{")]
    assert daemon.events("shutdown_cancelled_polls")
    assert daemon.events("monitor_stopped")
    saved = json.loads(state_file.read_text())  # written whole, readable
    firing = [a["key"][0] for a in saved["alerts"] if a["firing_since"] is not None]
    assert firing == ["IntegrationFailing"]


class Silent:
    """A TCP server on 127.0.0.1 that accepts connections and never says a word: an SMTP server
    that never greets, an HTTP server that never answers."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self.connections.append(connection)

    def close(self) -> None:
        self._socket.close()
        for connection in self.connections:
            connection.close()


@pytest.mark.timeout(60)
def test_sigterm_with_receivers_that_never_answer_stops_within_5_s_and_counts_them_dropped(
    tmp_path: Path,
) -> None:
    """An e-mail receiver whose SMTP server never greets (Apprise waits 15 s for it) and a
    json:// receiver with a 25 s read timeout, both sending when SIGTERM comes: the process
    ends within 5 s, exit 0, and what was in flight is counted as dropped and logged, per
    receiver — never waited for."""
    now = datetime.now(UTC)
    shops = [SimIntegration(1, "failing", "Shop", started_failing_at=now - timedelta(hours=2))]
    smtp, http = Silent(), Silent()
    try:
        with Simulator(shops) as sim:
            config = tmp_path / "monitor.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "alerting": {
                            "state_file": str(tmp_path / "alerts.json"),
                            "group_wait_seconds": 0,
                            "receivers": [
                                {
                                    "name": "mail",
                                    "url": f"mailto://127.0.0.1:{smtp.port}?mode=insecure"
                                    "&from=monitor@example.com&to=ops@example.com",
                                    "timeout_seconds": 30,
                                },
                                {
                                    "name": "hook",
                                    "url": f"json://127.0.0.1:{http.port}/alerts?rto=25",
                                    "timeout_seconds": 30,
                                },
                            ],
                        }
                    }
                )
            )
            port = free_port()
            env = monitor_env(sim, port, MONITOR_CONFIG_FILE=str(config))
            daemon = DaemonProcess(["run"], env, port)
            try:
                daemon.wait_ready()
                daemon.wait_for(
                    lambda: smtp.connections and http.connections, 20, "both sends in flight"
                )
                code, seconds = daemon.terminate(timeout=30)
            finally:
                daemon.kill()
    finally:
        smtp.close()
        http.close()
    assert code == 0
    assert seconds < 5, f"SIGTERM took {seconds:.1f} s"
    dropped = {e["sink"]: e for e in daemon.events("alert_deliveries_dropped")}
    assert set(dropped) == {"receiver:mail", "receiver:hook"}
    assert all(e["deliveries"] == 1 and e["level"] == "warning" for e in dropped.values())
    assert daemon.events("monitor_stopped")
    assert not [e for e in daemon.events() if "exception" in e or "exc_info" in e]


SOAK_INTEGRATIONS = 1000
# About 8 cycles a second of 1000 integrations (each ~100 ms of parsing, derivation and alert
# evaluation): 20 s gives ~150 cycles, enough to see growth; SOAK_SECONDS=300 runs a few
# thousand (kept short so the whole suite stays within its time).
SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "20"))


FAULTS = ["status", "malformed_json", "html", "truncated", "reset", "wrong_types", "far_future"]


@pytest.fixture
def remote_simulator() -> Iterator[str]:
    """The simulator in its own process: the soak measures only the daemon's memory."""
    port = free_port()
    code = (
        "from monitor.simulator import SimIntegration, Simulator\n"
        f"shops = [SimIntegration(i, 'failing' if i % 7 == 0 else 'healthy') "
        f"for i in range(1, {SOAK_INTEGRATIONS + 1})]\n"
        f"Simulator(shops, port={port}).serve_forever()\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code])
    origin = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(origin + "/_simulator/requests", timeout=1)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "simulator did not start"
            time.sleep(0.1)
    try:
        yield origin
    finally:
        process.terminate()
        process.wait(timeout=10)


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    with open(os.devnull, "w") as devnull:
        logs.configure("json", stream=devnull)
        yield
    logs.configure("json")


@pytest.mark.slow
@pytest.mark.timeout(SOAK_SECONDS + 120)
@pytest.mark.usefixtures("quiet_logs")
async def test_soak_memory_and_descriptors_stay_flat(remote_simulator: str) -> None:
    await soak(remote_simulator)


async def soak(origin: str) -> None:
    sim_url = origin + "/api/v3"
    account = replace(
        account_for(RemoteSimulator(sim_url), None),  # type: ignore[arg-type]
        poll_interval_seconds=0.05,
        max_requests_per_minute=10**6,  # accelerated: the budget is tested elsewhere
    )
    daemon = Daemon([account], ("127.0.0.1", 0))
    stop = asyncio.Event()
    runner = asyncio.create_task(daemon.run(stop))
    rng = random.Random(7)  # noqa: S311 - reproducible fault schedule
    control = httpx.AsyncClient(base_url=origin + "/_simulator")

    async def cycles() -> int:
        return daemon.store.get("default").cycles_completed

    started = time.monotonic()
    baseline: tuple[int, int] | None = None
    try:
        while time.monotonic() - started < SOAK_SECONDS:
            await asyncio.sleep(0.5)
            fault = {
                "kind": rng.choice(FAULTS),
                "status": rng.choice([500, 502, 503, 429]),
                "count": rng.randint(1, 3),
            }
            if rng.random() < 0.7:
                fault["integration_id"] = rng.randint(1, SOAK_INTEGRATIONS)
            await control.post("/faults", json=fault)
            if baseline is None and await cycles() >= 100:
                baseline = (rss_kib(), open_fds())  # warm: pools, caches, first alerts
        done = await cycles()
    finally:
        stop.set()
        await asyncio.wait_for(runner, timeout=10)
        await control.aclose()
    assert baseline is not None, "fewer than 100 cycles ran"
    rss_growth = rss_kib() - baseline[0]
    fd_growth = open_fds() - baseline[1]
    print(
        f"soak: {done} cycles of {SOAK_INTEGRATIONS} integrations in {SOAK_SECONDS:.0f} s, "
        f"RSS growth after warm-up {rss_growth} KiB, fd growth {fd_growth}"
    )
    assert done >= SOAK_SECONDS * 5
    assert rss_growth < 20 * 1024
    assert fd_growth <= 2


class RemoteSimulator:
    """Just what account_for needs of a simulator running in another process."""

    def __init__(self, url: str) -> None:
        self.url = url
