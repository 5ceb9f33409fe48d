"""Benchmark: scrape rendering and one poll cycle for a large fleet.

Reports numbers; asserts nothing. Run with ``make bench``.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import statistics
import time
from datetime import UTC, datetime, timedelta

from prometheus_client import generate_latest
from pydantic import SecretStr

from monitor import logs
from monitor.metrics import Metrics
from monitor.scheduler import open_pollers
from monitor.settings import AccountConfig
from monitor.simulator import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, SimIntegration, Simulator
from monitor.state import Store

FLEET = 5000
NOW = datetime.now(UTC)


def fleet() -> list[SimIntegration]:
    shops = []
    for i in range(1, FLEET + 1):
        scenario = ("healthy", "failing", "stale", "never_fetched")[i % 4]
        shops.append(
            SimIntegration(
                i,
                scenario,
                f"Shop {i}",
                f"https://shop{i}.example.com/",
                started_failing_at=NOW - timedelta(minutes=i % 300)
                if scenario == "failing"
                else None,
            )
        )
    return shops


async def poll(sim: Simulator, store: Store, metrics: Metrics) -> float:
    account = AccountConfig(
        "bench",
        sim.url,
        SecretStr(DEMO_PUBLIC_KEY),
        SecretStr(DEMO_SECRET_KEY),
        None,
        60,
        7200,
        8,
        30,
    )
    async with open_pollers([account], store, metrics) as (poller,):
        started = time.perf_counter()
        await poller.poll()
        return time.perf_counter() - started


def main() -> None:
    logs.configure("json", level=logging.ERROR)  # transitions for 5000 shops are not the point
    with Simulator(fleet()) as sim:
        store = Store(["bench"])
        metrics = Metrics(store, ["bench"])
        seconds = asyncio.run(poll(sim, store, metrics))
        pages = sim.request_count("/integrations")
    print(
        f"poll cycle, {FLEET} integrations in all mode: {seconds * 1000:.0f} ms, {pages} requests"
    )
    started = time.perf_counter()
    families = list(metrics.collector.collect())
    samples = sum(len(f.samples) for f in families)
    print(f"collect() alone: {(time.perf_counter() - started) * 1000:.0f} ms, {samples} samples")
    timings = []
    size = 0
    for _ in range(5):
        started = time.perf_counter()
        size = len(generate_latest(metrics.registry))
        timings.append(time.perf_counter() - started)
    print(
        f"scrape render, {FLEET} integrations: median {statistics.median(timings) * 1000:.0f} ms,"
        f" {size / 1024:.0f} KiB"
    )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {rss:.0f} MiB")


if __name__ == "__main__":
    main()
