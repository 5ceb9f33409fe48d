"""The APScheduler wiring: first poll at once, no overlapping polls, clean stop mid-poll."""

from __future__ import annotations

import asyncio
import time

import httpx

from monitor.daemon import Daemon
from monitor.schedule import TickedInterval
from monitor.simulator import Simulator
from tests.conftest import account_for, metric_value, scraped


async def slow_handler(request: httpx.Request) -> httpx.Response:
    await asyncio.sleep(0.6)
    return httpx.Response(200, json={"data": {"id": 1}})


async def test_overrunning_polls_are_skipped_not_stacked_and_stop_is_clean(sim: Simulator) -> None:
    account = account_for(sim, (1,), poll_interval_seconds=0.2)
    daemon = Daemon([account], ("127.0.0.1", 0), transport=httpx.MockTransport(slow_handler))
    stop = asyncio.Event()
    runner = asyncio.create_task(daemon.run(stop))
    await asyncio.sleep(1.5)
    assert daemon.store.ready()  # the first poll ran at once and finished
    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(runner, timeout=6)
    assert time.monotonic() - started < 5
    text = scraped(daemon.metrics)
    skipped = metric_value(
        text, "integration_monitor_scheduler_events_total", event="skipped_overrun"
    )
    assert skipped is not None
    assert skipped >= 1
    assert (metric_value(text, "integration_monitor_polls_total", outcome="success") or 0) >= 1


async def test_accounts_poll_on_whole_ticks_from_their_second_poll(sim: Simulator) -> None:
    """The daemon's jobs use the ticked schedule: after its first poll, each account's next
    poll is on a whole tick (0.2 s for a 1 s interval), whatever its first-poll offset."""
    accounts = [account_for(sim, (1,), name=f"a{n}", poll_interval_seconds=1.0) for n in range(3)]
    daemon = Daemon(accounts, ("127.0.0.1", 0))
    stop = asyncio.Event()
    runner = asyncio.create_task(daemon.run(stop))
    try:
        await asyncio.sleep(1.5)
        assert daemon.store.ready()
        assert daemon._scheduler is not None
        for account in accounts:
            job = daemon._scheduler.get_job(account.name)
            assert isinstance(job.trigger, TickedInterval)
            assert job.next_run_time.microsecond % 200_000 == 0  # on a 0.2 s tick
    finally:
        stop.set()
        await asyncio.wait_for(runner, timeout=10)
