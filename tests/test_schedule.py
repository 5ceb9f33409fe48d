"""When accounts poll: first polls spread, later polls on whole ticks, in phase, no drift."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from pydantic import SecretStr

from monitor.schedule import (
    FIRST_POLLS_PER_SECOND,
    TickedInterval,
    first_poll_delays,
    job_options,
    on_tick,
)
from monitor.settings import AccountConfig

FIRST = datetime(2026, 12, 2, 5, 0, 0, 300_000, tzinfo=UTC)


def account(name: str, interval: float) -> AccountConfig:
    return AccountConfig(
        name=name,
        api_url="http://127.0.0.1:1/api/v3",
        public_key=SecretStr("p"),
        secret_key=SecretStr("s"),
        integration_ids=None,
        poll_interval_seconds=interval,
        stale_after_seconds=7200.0,
        max_concurrency=4,
        request_timeout_seconds=5.0,
    )


def runs(trigger: TickedInterval, count: int) -> list[datetime]:
    found: list[datetime] = []
    previous = None
    for _ in range(count):
        previous = trigger.get_next_fire_time(previous, FIRST)
        assert previous is not None
        found.append(previous)
    return found


def test_job_options_fit_the_interval() -> None:
    options = job_options(60, FIRST)
    assert options["max_instances"] == 1
    assert options["coalesce"] is True
    assert options["misfire_grace_time"] == 30
    assert options["next_run_time"] == FIRST
    assert isinstance(options["trigger"], TickedInterval)


def test_later_polls_land_on_whole_seconds_in_phase_without_drift() -> None:
    for interval in (30.0, 12.5, 7.3):
        times = runs(TickedInterval(interval, FIRST), 10_001)
        assert times[0] == FIRST  # the first poll when it was planned
        for n, at in enumerate(times[1:], 1):
            assert at.timestamp() == int(at.timestamp())  # a whole second
            due = FIRST + timedelta(seconds=n * interval)
            assert timedelta(0) <= at - due < timedelta(seconds=1)  # never drifts
        assert all(b > a for a, b in itertools.pairwise(times))


def test_short_intervals_get_a_finer_tick() -> None:
    times = runs(TickedInterval(0.2, FIRST), 50)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert all(0.15 < gap < 0.25 for gap in gaps)
    assert TickedInterval(0.2, FIRST).tick < 0.2


def test_accounts_due_in_the_same_second_poll_together_from_their_second_poll() -> None:
    a = runs(TickedInterval(30, FIRST), 5)
    b = runs(TickedInterval(30, FIRST + timedelta(milliseconds=400)), 5)
    c = runs(TickedInterval(30, FIRST + timedelta(seconds=1)), 5)
    assert a[0] != b[0]
    assert a[1:] == b[1:]  # one wake-up for both
    assert all(y - x == timedelta(seconds=1) for x, y in zip(a[1:], c[1:], strict=True))


def test_on_tick_rounds_up() -> None:
    assert on_tick(FIRST, 1.0) == datetime(2026, 12, 2, 5, 0, 1, tzinfo=UTC)
    assert on_tick(FIRST, 0.25) == datetime(2026, 12, 2, 5, 0, 0, 500_000, tzinfo=UTC)


def test_first_polls_are_spread_at_most_ten_a_second_within_a_minute() -> None:
    accounts = [account(f"a{i}", 3600) for i in range(1000)]
    delays = first_poll_delays(accounts)
    assert delays == sorted(delays)
    assert delays[0] == 0
    assert max(delays) < 60
    assert len(set(delays)) == len(delays)
    few = first_poll_delays([account(f"a{i}", 3600) for i in range(20)])
    assert few[1] - few[0] == 1 / FIRST_POLLS_PER_SECOND


def test_first_polls_are_spread_evenly_over_half_a_short_interval() -> None:
    """500 accounts at 30 s: 10 a second would take 50 s, so they spread over 15 s — never a
    clump of hundreds at the half-interval cap."""
    delays = first_poll_delays([account(f"a{i}", 30) for i in range(500)])
    assert max(delays) < 15
    assert len(set(delays)) == 500
    per_second = [sum(1 for d in delays if s <= d < s + 1) for s in range(15)]
    assert max(per_second) - min(per_second) <= 1


async def test_the_scheduler_runs_jobs_at_the_triggers_times() -> None:
    scheduler = AsyncIOScheduler(timezone=UTC)
    planned: list[datetime] = []
    done = asyncio.Event()

    async def job() -> None:
        upcoming = scheduler.get_job("a").next_run_time
        planned.append(upcoming)
        if len(planned) == 4:
            done.set()

    first = datetime.now(UTC)
    trigger = TickedInterval(0.25, first)
    scheduler.add_job(job, id="a", **job_options(0.25, first))
    scheduler.start()
    try:
        await asyncio.wait_for(done.wait(), timeout=10)
    finally:
        scheduler.shutdown(wait=False)
    expected, previous = [], first
    for _ in range(4):
        nxt = trigger.get_next_fire_time(previous, first)
        assert nxt is not None
        expected.append(nxt)
        previous = nxt
    assert planned == expected
