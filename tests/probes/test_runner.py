"""The probe runner: one probe per distinct host and port per interval, bounded, resumable."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from monitor.checks import Assessor
from monitor.health import derive
from monitor.probes import Outcome, Result, ShopProbe, target_of
from monitor.sendcloud import Integration
from monitor.store import AccountSnapshot, Observation, ReadOutcome
from tests.probes.conftest import Shops


def fleet(urls: list[str]) -> AccountSnapshot:
    now = datetime.now(UTC)
    observations = {}
    for n, url in enumerate(urls, 1):
        record = Integration(n, shop_url=url, created_at=now)
        observations[n] = Observation(n, ReadOutcome.OK, record, derive(record, now, 7200))
    return AccountSnapshot("eu", observations, 1, now)


async def test_1000_integrations_on_10_hosts_make_10_probes_per_interval(shops: Shops) -> None:
    servers = [shops.serve() for _ in range(10)]
    urls = [f"{servers[n % 10].url}store-{n}" for n in range(1000)]
    assessor = Assessor()
    assessor(fleet(urls))
    targets = assessor.targets(fleet(urls))
    assert len(targets) == 10
    prober = shops.runner(interval_seconds=1.0, concurrency=20)
    prober.set_targets("eu", targets)
    task = asyncio.create_task(prober.run())
    await asyncio.sleep(2.6)  # rounds at about 0 (spread over 0.5 s), 1 and 2 s
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    counts = sorted(s.accepts for s in servers)
    assert counts[0] >= 2, counts
    assert counts[-1] <= 3, counts
    assert prober.probes_made == sum(counts)
    assert {state.result for state in prober.states.values()} == {Result.OK}


async def test_concurrency_and_timeout_bound_hanging_probes(shops: Shops) -> None:
    servers = [shops.serve("silent") for _ in range(6)]
    prober = shops.runner(interval_seconds=60.0, concurrency=2, timeout_seconds=0.6)
    prober.set_targets("eu", {target_of(s.url) for s in servers})  # type: ignore[misc]
    task = asyncio.create_task(prober.run())
    await asyncio.sleep(0.45)  # the first wave hangs; the others wait for a slot
    assert sum(s.accepts for s in servers) == 2
    await asyncio.sleep(2.0)  # three waves of two, each ended by its timeout
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert [s.accepts for s in servers] == [1] * 6
    assert {state.result for state in prober.states.values()} == {Result.TIMEOUT}


async def test_a_restart_resumes_each_target_in_its_phase_and_run(shops: Shops) -> None:
    server = shops.serve("silent")
    target = target_of(server.url)
    assert target is not None
    before = datetime.now(UTC) - timedelta(seconds=9)  # last probed 9 s of a 10 s interval ago
    saved = ShopProbe(str(target), Outcome(Result.TIMEOUT, before), 1, before)
    changes: list[str] = []
    prober = shops.runner(interval_seconds=10.0, timeout_seconds=0.3, on_change=changes.append)
    prober.restore({str(target): saved})
    prober.set_targets("eu", {target})
    task = asyncio.create_task(prober.run())
    await asyncio.sleep(0.5)
    assert server.accepts == 0  # not probed again at once
    await asyncio.sleep(1.2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert server.accepts == 1
    state = prober.states[str(target)]
    assert (state.failures, state.failing_since) == (2, before)  # the run goes on
    assert changes == [str(target)]


async def test_targets_no_integration_uses_are_dropped(shops: Shops) -> None:
    first, second = shops.serve(), shops.serve()
    prober = shops.runner()
    targets = {target_of(first.url), target_of(second.url)}
    prober.set_targets("eu", targets)  # type: ignore[arg-type]
    prober.set_targets("us", {target_of(first.url)})  # type: ignore[arg-type]
    await prober.probe_now(targets)  # type: ignore[arg-type]
    assert prober.accounts_of(str(target_of(first.url))) == {"eu", "us"}
    prober.set_targets("eu", set())
    assert set(prober.states) == {str(target_of(first.url))}
    prober.forget("us")
    assert prober.states == {}
    assert prober.in_use() == set()
    await prober.aclose()


async def test_a_single_target_is_probed_again_each_interval(shops: Shops) -> None:
    server = shops.serve()
    prober = shops.runner(interval_seconds=0.5)
    prober.set_targets("eu", {target_of(server.url)})  # type: ignore[arg-type]
    task = asyncio.create_task(prober.run())
    await asyncio.sleep(1.3)  # at 0, 0.5 and 1 s
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert server.accepts == 3
