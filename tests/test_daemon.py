"""The APScheduler wiring: first poll at once, no overlapping polls, clean stop mid-poll."""

from __future__ import annotations

import asyncio
import time

import httpx

from monitor.daemon import Daemon
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
