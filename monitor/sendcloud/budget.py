"""The request budget of one Sendcloud account: a token bucket shared by every caller.

Sendcloud allows 1000 GET requests a minute per account and answers 429 beyond. Polls, list
walks and exception-log lookups of an account all take from one budget (900 a minute by
default), spread over the minute with a burst of about one second's worth, so the daemon never
bursts into the limit. A 429 pauses the whole account for its Retry-After.

When the bucket runs dry, the next caller waits until it is full again rather than for one
token: a long list walk then goes out in bursts of ten, asleep in between, instead of one
request per wake-up. The rate and the largest burst are the same either way; the CPU is not,
since a request made after the process slept costs about twice one made right after another
(a 10 000-integration walk at 900 a minute: 0.22 s one at a time, 0.15 s ten at a time).
The price is latency: a request may wait up to one burst's time longer (0.7 s at 900 a
minute), so a walk that runs the bucket dry ends at most that much later.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

Sleep = Callable[[float], Awaitable[None]]


class RequestBudget:
    """``await acquire()`` before each request; it waits until the budget allows one."""

    def __init__(
        self,
        per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self._capacity = max(1.0, min(10.0, self._rate))
        self._tokens = self._capacity
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()
        self.acquired = 0  # requests let through so far

    async def acquire(self) -> float:
        """Take one request from the budget; returns the seconds spent waiting for it."""
        waited = 0.0
        async with self._lock:  # one waiter at a time: first come, first served
            while True:
                now = self._clock()
                self._refill(now)
                delay = max(0.0, self._paused_until - now)
                if delay == 0.0 and self._tokens >= 1.0 - 1e-9:
                    self._tokens = max(0.0, self._tokens - 1.0)
                    self.acquired += 1
                    return waited
                if delay == 0.0:  # dry: wait for a whole burst, not one request
                    delay = max(1e-6, (self._capacity - self._tokens) / self._rate)
                await self._sleep(delay)
                waited += delay

    def pause(self, seconds: float) -> None:
        """Stop every request of the account for ``seconds`` (after a 429)."""
        now = self._clock()
        self._refill(now)
        self._paused_until = max(self._paused_until, now + seconds)
        self._tokens = 0.0

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
        self._updated = now


def smallest_interval(requests_per_cycle: int, per_minute: float) -> float:
    """The shortest poll interval at which a cycle of this many requests fits the budget."""
    return math.ceil(requests_per_cycle * 60.0 / per_minute)
