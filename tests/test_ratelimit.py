"""The request budget: pure token-bucket arithmetic, and 3000 requests against a simulator that
enforces Sendcloud's 1000 a minute, on an accelerated clock."""

from __future__ import annotations

import asyncio
import time

import pytest

from monitor.ratelimit import RequestBudget, smallest_interval
from monitor.sendcloud import SendcloudClient
from monitor.simulator import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, SimIntegration, Simulator


class Clock:
    """Virtual monotonic time; sleeping advances it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_bucket_spreads_requests_at_the_rate() -> None:
    clock = Clock()
    budget = RequestBudget(600, clock=clock, sleep=clock.sleep)  # 10 a second, burst 10
    for _ in range(110):
        await budget.acquire()
    assert budget.acquired == 110
    assert clock.now == pytest.approx(10.0)  # the burst of 10, then 100 at 10 a second


async def test_pause_stops_everything_then_resumes() -> None:
    clock = Clock()
    budget = RequestBudget(600, clock=clock, sleep=clock.sleep)
    await budget.acquire()
    budget.pause(30)
    waited = await budget.acquire()
    assert waited >= 30
    assert clock.now >= 30


def test_smallest_interval() -> None:
    assert smallest_interval(900, 900) == 60
    assert smallest_interval(3000, 900) == 200
    assert smallest_interval(1, 900) == 1


SCALE = 10.0  # one real second is ten budget seconds: 150 requests/s at a budget of 900/min


@pytest.mark.timeout(120)
async def test_3000_requests_against_1000_per_minute_get_no_429() -> None:
    def virtual() -> float:
        return time.monotonic() * SCALE

    async def sleep(seconds: float) -> None:
        await asyncio.sleep(seconds / SCALE)

    shops = [SimIntegration(i) for i in range(1, 3001)]
    with Simulator(shops, rate_limit_per_minute=1000, monotonic=virtual) as sim:
        budget = RequestBudget(900, clock=virtual, sleep=sleep)
        client = SendcloudClient(
            sim.url, DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, budget=budget, sleep=sleep, monotonic=virtual
        )
        limit = asyncio.Semaphore(8)

        async def get(integration_id: int) -> int:
            async with limit:
                return (await client.get_integration(integration_id)).id

        started = virtual()
        ids = await asyncio.gather(*(get(i) for i in range(1, 3001)))
        elapsed_minutes = (virtual() - started) / 60
        await client.aclose()
    assert sorted(ids) == list(range(1, 3001))
    assert sim.throttled == 0
    assert sim.request_count() == 3000
    rate = 3000 / elapsed_minutes
    print(f"achieved {rate:.0f} requests per budget minute (budget 900, limit 1000)")
    assert rate <= 910  # never above the budget (plus its one-second burst)
    assert rate >= 600  # and the budget is used, not wasted
