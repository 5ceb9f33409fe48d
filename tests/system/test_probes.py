"""Shop probes in a running daemon against the simulator: one probe per distinct host and port
per interval however many integrations share it, and polls on time while probes hang until
their timeout."""

from __future__ import annotations

import asyncio
import itertools
import ssl
import time
from pathlib import Path

import pytest
import trustme

from monitor.daemon import Daemon
from monitor.probes import Result
from monitor.settings import ProbeSettings
from monitor.simulator import SimIntegration, Simulator
from monitor.simulator.shops import ShopServer
from monitor.store import AccountSnapshot
from tests.conftest import account_for, metric_value, scraped


def fleet_on(servers: list[ShopServer], count: int = 1000) -> list[SimIntegration]:
    """``count`` integrations spread over the servers, each with a URL of its own."""
    return [
        SimIntegration(n, shop_url=f"{servers[n % len(servers)].url}store-{n}")
        for n in range(1, count + 1)
    ]


def probes(**values: object) -> ProbeSettings:
    """Probe settings with intervals shorter than a configuration may have (tests only)."""
    return ProbeSettings.model_construct(allow_private_addresses=True, **values)


@pytest.mark.timeout(60)
async def test_1000_integrations_on_10_hosts_make_10_handshakes_per_interval(
    tmp_path: Path,
) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    servers = [ShopServer("tls", context).start() for _ in range(10)]
    try:
        with Simulator(fleet_on(servers)) as sim:
            account = account_for(sim, None, poll_interval_seconds=2.0)
            daemon = Daemon(
                [account],
                ("127.0.0.1", 0),
                probes=probes(interval_seconds=3.0, ca_file=ca_file),
            )
            stop = asyncio.Event()
            runner = asyncio.create_task(daemon.run(stop))
            try:
                deadline = time.monotonic() + 20
                while sum(s.accepts for s in servers) < 10:
                    assert time.monotonic() < deadline, "no first round of probes"
                    await asyncio.sleep(0.1)
                first = time.monotonic()
                await asyncio.sleep(7.0)  # two more intervals
                counts = [s.accepts for s in servers]
                assert daemon.probing.prober is not None
                made = daemon.probing.prober.probes_made
                text = scraped(daemon.metrics)
                snapshot: AccountSnapshot = daemon.store.get("default")
            finally:
                stop.set()
                await asyncio.wait_for(runner, timeout=10)
    finally:
        for server in servers:
            server.stop()
    elapsed = time.monotonic() - first
    assert 2 <= min(counts) <= max(counts) <= 4, counts  # one handshake each per interval
    assert made == sum(counts)
    assert len(snapshot.findings) == 1000  # every integration shows its shop's probe
    assert {f.probe.result for f in snapshot.findings.values() if f.probe} == {Result.OK}
    assert metric_value(text, "integration_monitor_shop_probe_targets") == 10
    ok = metric_value(text, "integration_monitor_shop_probes_total", result="ok")
    assert ok is not None
    assert ok >= 20
    assert elapsed < 12


@pytest.mark.timeout(60)
async def test_polls_stay_on_time_while_probes_hang_until_their_timeout() -> None:
    servers = [ShopServer("silent").start() for _ in range(10)]
    try:
        with Simulator(fleet_on(servers)) as sim:
            account = account_for(sim, None, poll_interval_seconds=1.0)
            daemon = Daemon(
                [account],
                ("127.0.0.1", 0),
                probes=probes(interval_seconds=60.0, timeout_seconds=4.0, concurrency=2),
            )
            polls: list[float] = []
            after = daemon._after_cycle

            async def timed(snapshot: AccountSnapshot) -> object:
                polls.append(time.monotonic())
                return await after(snapshot)

            daemon._after_cycle = timed  # type: ignore[method-assign]
            stop = asyncio.Event()
            runner = asyncio.create_task(daemon.run(stop))
            hanging: list[int] = []
            try:
                deadline = time.monotonic() + 20
                while not (daemon.probing.prober is not None and daemon.probing.prober._running):
                    assert time.monotonic() < deadline, "no probe started"
                    await asyncio.sleep(0.05)
                started = time.monotonic()
                while time.monotonic() - started < 8:
                    hanging.append(len(daemon.probing.prober._running))
                    await asyncio.sleep(0.25)
                window = [t for t in polls if started <= t <= started + 8]
                results = {state.result for state in daemon.probing.prober.states.values()}
            finally:
                stop.set()
                await asyncio.wait_for(runner, timeout=10)
    finally:
        for server in servers:
            server.stop()
    assert min(hanging) >= 1  # probes were hanging the whole time...
    assert 4 <= sum(s.accepts for s in servers) <= 6  # ...two at a time, until their 4 s timeouts
    assert results == {Result.TIMEOUT}
    assert len(window) >= 6  # ...and the 1 s polls went on: at most a slow machine's misses
    gaps = [b - a for a, b in itertools.pairwise(window)]
    assert max(gaps) < 2.5, gaps
