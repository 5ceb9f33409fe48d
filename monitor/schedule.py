"""When each account polls: the spread of the first polls, then every interval on a tick.

Pure, time passed in. The daemon gives each account an APScheduler job with these options.

- **First polls** start at most ``FIRST_POLLS_PER_SECOND`` a second and all within
  ``FIRST_POLLS_WINDOW_SECONDS``, and never later than half an account's interval (so a restart
  of 500 accounts is ready within a minute, whatever their intervals); where 10 a second would
  take longer than half the interval, they are spread evenly over that half.
- **Later polls** keep each account's phase: the n-th poll after the first is due at
  ``first + n * interval``, moved onto the next whole tick of the wall clock (one second;
  a fifth of the interval for intervals under five seconds, as in tests). Accounts due within
  the same tick then poll together, in one wake-up of the process: the GETs of 500 accounts
  made one account at a time over 30 s cost about twice the CPU of the same GETs made ten at a
  time (1.15 s against 0.57 s on a 2-core machine; ``bench/daemon.py``'s 500-account scenario
  shows the effect on the daemon). The phase never drifts, and no random jitter is added: the
  spread of the first polls is what spreads the load over the interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.base import BaseTrigger

from monitor.settings import AccountConfig

FIRST_POLLS_PER_SECOND = 10.0
FIRST_POLLS_WINDOW_SECONDS = 60.0
#: The grid later polls are put on.
TICK_SECONDS = 1.0


def first_poll_delays(accounts: Sequence[AccountConfig]) -> list[float]:
    """When each account polls first, in seconds from start (later polls keep the spread)."""
    count = len(accounts)
    window = min(FIRST_POLLS_WINDOW_SECONDS, count / FIRST_POLLS_PER_SECOND)
    return [
        index / count * min(window, account.poll_interval_seconds / 2)
        for index, account in enumerate(accounts)
    ]


def tick_seconds(interval: float) -> float:
    """The grid of an account's later polls: a second, or finer for very short intervals."""
    return min(TICK_SECONDS, interval / 5)


def on_tick(at: datetime, tick: float) -> datetime:
    """The first whole tick (of the Unix epoch) at or after ``at``."""
    return datetime.fromtimestamp(math.ceil(at.timestamp() / tick) * tick, UTC)


class TickedInterval(BaseTrigger):  # type: ignore[misc]  # apscheduler 3 is untyped
    """Every ``interval`` seconds after ``first``, each run on the next whole tick.

    The n-th run is due at ``on_tick(first + n * interval)``: computed from ``first``, never
    from the previous run, so the ticks add no drift.
    """

    __slots__ = ("first", "interval", "tick")

    def __init__(self, interval: float, first: datetime) -> None:
        self.interval = interval
        self.first = first
        self.tick = tick_seconds(interval)

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        if previous_fire_time is None:
            return self.first
        # run n lies in [first + n*interval, first + n*interval + tick), and tick < interval
        n = math.floor((previous_fire_time - self.first).total_seconds() / self.interval + 1e-6)
        return on_tick(self.first + timedelta(seconds=(n + 1) * self.interval), self.tick)

    def __str__(self) -> str:
        return f"every {self.interval:g} s on {self.tick:g} s ticks"

    def __repr__(self) -> str:
        return f"<TickedInterval (interval={self.interval!r}, first={self.first.isoformat()!r})>"


def job_options(interval: float, first: datetime) -> dict[str, object]:
    """APScheduler options for one account's poll job, first run at ``first``."""
    return {
        "trigger": TickedInterval(interval, first),
        "next_run_time": first,
        "max_instances": 1,
        "coalesce": True,
        "misfire_grace_time": max(1, int(interval / 2)),
    }
