"""The request budget: pure token-bucket arithmetic, and 3000 requests against a simulator that
enforces Sendcloud's 1000 a minute, on an accelerated clock."""

from __future__ import annotations

import asyncio
import time

import pytest

from monitor.sendcloud import SendcloudClient
from monitor.sendcloud.budget import RequestBudget, smallest_interval
from monitor.simulator import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, SimIntegration, Simulator
from tests.conftest import scraped


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


async def test_a_dry_bucket_sends_whole_bursts_within_the_same_limits() -> None:
    clock = Clock()
    budget = RequestBudget(600, clock=clock, sleep=clock.sleep)  # 10 a second, burst 10
    sent: list[float] = []
    for _ in range(110):
        await budget.acquire()
        sent.append(clock.now)
    assert clock.slept == pytest.approx([1.0] * 10)  # one wake-up per ten requests, not each
    for start in sent:  # never more than the burst plus the rate in any window
        assert sum(start <= t < start + 1.0 for t in sent) <= 10 + 10
        assert sum(start <= t < start + 60.0 for t in sent) <= 10 + 600


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
    # within the 90 % of the interval a cycle may take: 25 pages at 60/min need 28 s, not 25
    assert smallest_interval(25, 60, 0.9) == 28
    assert smallest_interval(900, 900, 0.9) == 67


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
            sim.url, DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, budget=budget, monotonic=virtual
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


async def test_429_pauses_the_account_and_is_counted(captured_logs: object) -> None:
    """A server stricter than the budget: 429s pause the account, retries then get through."""

    from monitor.exporter.metrics import Metrics
    from monitor.store import Store

    def virtual() -> float:
        return time.monotonic() * 60  # one real second is a budget minute

    async def sleep(seconds: float) -> None:
        await asyncio.sleep(seconds / 60)

    metrics = Metrics(Store(["default"]), ["default"])
    with Simulator([SimIntegration(1)], rate_limit_per_minute=5, monotonic=virtual) as sim:
        client = SendcloudClient(
            sim.url,
            DEMO_PUBLIC_KEY,
            DEMO_SECRET_KEY,
            budget=RequestBudget(900, clock=virtual, sleep=sleep),
            events=metrics.client_events("default"),
            monotonic=virtual,
            max_attempts=5,
        )
        for _ in range(8):
            assert (await client.get_integration(1)).id == 1
        await client.aclose()
    assert sim.throttled >= 1
    from prometheus_client.parser import text_string_to_metric_families

    text = scraped(metrics)
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    throttled = values["sendcloud_api_throttled_total"]
    waited = values["sendcloud_api_budget_wait_seconds_total"]
    assert throttled == sim.throttled
    assert waited > 0


async def test_a_cycle_too_big_for_its_interval_warns_once(captured_logs: object) -> None:
    from dataclasses import replace

    from monitor.exporter.metrics import Metrics
    from monitor.poller import AccountPoller
    from monitor.store import Store
    from tests.conftest import LogCapture, account_for

    assert isinstance(captured_logs, LogCapture)
    clock = Clock()
    with Simulator([SimIntegration(i) for i in range(1, 1001)]) as sim:
        account = replace(
            account_for(sim, None), poll_interval_seconds=5, max_requests_per_minute=60
        )
        budget = RequestBudget(60, clock=clock, sleep=clock.sleep)
        client = SendcloudClient(sim.url, DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, budget=budget)
        store = Store(["default"])
        poller = AccountPoller(
            account,
            client,
            store,
            budget=budget,
            on_cycle=Metrics(store, ["default"]).observe_cycle,
        )
        await poller.poll()  # 10 pages at one request a second: 10 s > 5 s
        await poller.poll()
        await client.aclose()
    [warning] = captured_logs.events("poll_interval_too_short")
    assert warning["requests_per_cycle"] == 10
    # 10 s of requests, within the 90 % of the interval a cycle may take
    assert warning["smallest_feasible_interval_seconds"] == 12
    assert clock.now >= 19  # the cycles took what the budget allows, not the interval


async def test_accounts_of_one_key_share_its_budget_and_count_their_own() -> None:
    clock = Clock()
    bucket = RequestBudget(600, clock=clock, sleep=clock.sleep)  # 10 a second, burst 10
    eu, us = bucket.share(), bucket.share()
    assert (eu.per_minute, us.per_minute) == (300, 300)  # each plans with its part
    for _ in range(100):
        await eu.acquire()
        await us.acquire()
    assert (eu.acquired, us.acquired) == (100, 100)
    assert clock.now == pytest.approx(19.0)  # 200 requests at the key's rate, not twice it
    us.release()
    us.release()  # once only
    assert eu.per_minute == 600


def test_budgets_are_keyed_by_the_api_key_at_the_lowest_rate() -> None:
    from pydantic import SecretStr

    from monitor.daemon import Budgets
    from tests.conftest import account_for

    with Simulator([]) as sim:
        eu = account_for(sim, None, name="eu", max_requests_per_minute=900)
        us = account_for(sim, None, name="us", max_requests_per_minute=600)
        own = account_for(sim, None, name="own", public_key=SecretStr("another-key"))
    budgets = Budgets()
    accounts = [eu, us, own]
    first, second, third = (budgets.share(a, accounts) for a in accounts)
    assert first.budget is second.budget
    assert third.budget is not first.budget
    assert first.budget.per_minute == 600  # the lowest the accounts of the key allow
    assert [[a.name for a in g] for g in Budgets.shared(accounts)] == [["eu", "us"]]


SHARED_SCALE = 20.0  # one real second is twenty budget seconds


@pytest.mark.timeout(60)
async def test_two_accounts_of_one_key_stay_within_the_keys_limit() -> None:
    """Sendcloud limits requests per API key. Two accounts configured with the same key used
    to get a budget of 900 a minute each: 1800 a minute against a limit of 1000, answered
    with 429s. One budget per key keeps both within it."""
    from monitor.daemon import Budgets
    from tests.conftest import account_for

    def virtual() -> float:
        return time.monotonic() * SHARED_SCALE

    async def sleep(seconds: float) -> None:
        await asyncio.sleep(seconds / SHARED_SCALE)

    shops = [SimIntegration(i) for i in range(1, 1001)]
    with Simulator(shops, rate_limit_per_minute=1000, monotonic=virtual) as sim:
        accounts = [account_for(sim, None, name=name) for name in ("eu", "us")]
        budgets = Budgets(clock=virtual, sleep=sleep)
        clients = [
            SendcloudClient(
                sim.url,
                DEMO_PUBLIC_KEY,
                DEMO_SECRET_KEY,
                budget=budgets.share(account, accounts),
                monotonic=virtual,
            )
            for account in accounts
        ]
        limit = asyncio.Semaphore(8)

        async def get(client: SendcloudClient, integration_id: int) -> int:
            async with limit:
                return (await client.get_integration(integration_id)).id

        started = virtual()
        ids = await asyncio.gather(
            *(get(clients[i % 2], i) for i in range(1, 1001))  # 500 for each account
        )
        elapsed_minutes = (virtual() - started) / 60
        for client in clients:
            await client.aclose()
    assert sorted(ids) == list(range(1, 1001))
    assert sim.throttled == 0
    assert 1000 / elapsed_minutes <= 910  # the key's budget, whatever the accounts


async def test_background_requests_take_what_the_polls_leave() -> None:
    """A poll cycle walks 100 pages as fast as the budget allows while cause lookups queue
    in the background: the walk is not slowed (the lookups wait for a full bucket during the
    cycle), and after the cycle the lookups get the whole rate."""

    def virtual() -> float:
        return time.monotonic() * SHARED_SCALE

    async def sleep(seconds: float) -> None:
        await asyncio.sleep(seconds / SHARED_SCALE)

    budget = RequestBudget(600, clock=virtual, sleep=sleep)  # 10 a second, burst 10
    lookups: list[float] = []

    async def lookup() -> None:
        while True:
            await budget.acquire(background=True)
            lookups.append(virtual())

    background = asyncio.create_task(lookup())
    started = virtual()
    with budget.cycle():
        for _ in range(100):
            await budget.acquire()
            await asyncio.sleep(0.002 / SHARED_SCALE)  # a page's latency
        walked = virtual() - started
        during = len(lookups)
    await sleep(10)
    background.cancel()
    after = [t for t in lookups if t > started + walked]
    assert walked <= 9 + 2  # the walk at the budget's rate: 10, then 90 at 10 a second
    assert during <= 2  # the lookups got (almost) nothing during the cycle
    assert len(after) >= 80  # and the whole rate after it (100 in 10 s)
    assert budget.acquired == 100
    assert budget.background_acquired == len(lookups)
