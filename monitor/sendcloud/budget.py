"""The request budget of one Sendcloud API key: a token bucket shared by every caller.

Sendcloud allows 1000 GET requests a minute per API key and answers 429 beyond. Polls, list
walks and exception-log lookups all take from one budget (900 a minute by default), spread
over the minute with a burst of about one second's worth, so the daemon never bursts into the
limit. A 429 pauses every request made with the key for its Retry-After. Accounts configured
with the same key share one budget (:meth:`RequestBudget.share`): each gets its own count of
requests and, for planning, an equal part of the rate.

When the bucket runs dry, the next caller waits until it is full again rather than for one
token: a long list walk then goes out in bursts of ten, asleep in between, instead of one
request per wake-up. The rate and the largest burst are the same either way; the CPU is not,
since a request made after the process slept costs about twice one made right after another
(a 10 000-integration walk at 900 a minute: 0.22 s one at a time, 0.15 s ten at a time).
The price is latency: a request may wait up to one burst's time longer (0.7 s at 900 a
minute), so a walk that runs the bucket dry ends at most that much later.

**Background requests** (the exception-log lookups of alerts' causes) take what the polls leave:
one is let through only while no poll request waits, and while a poll cycle of the key runs
(:meth:`RequestBudget.cycle`) only from a full bucket, so a poll never waits for a lookup
beyond the one burst the bucket holds. Between polls they may use the whole rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol

Sleep = Callable[[float], Awaitable[None]]


class Budget(Protocol):
    """What the client and the poller take from a budget (a bucket, or one account's share)."""

    @property
    def per_minute(self) -> float: ...

    @property
    def acquired(self) -> int: ...

    async def acquire(self, *, background: bool = False) -> float: ...

    def pause(self, seconds: float) -> None: ...

    def cycle(self) -> contextlib.AbstractContextManager[None]: ...


class RequestBudget:
    """``await acquire()`` before each request; it waits until the budget allows one."""

    def __init__(
        self,
        per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self.set_rate(per_minute)
        self._tokens = self._capacity
        self._updated = clock()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()
        self._background = asyncio.Lock()
        self._waiting = 0  # poll requests waiting for (or holding) the lock
        self._cycles = 0  # poll cycles running now
        self.acquired = 0  # poll requests let through so far
        self.background_acquired = 0  # background requests let through so far
        self.holders = 0  # accounts sharing this budget (see share())

    def set_rate(self, per_minute: float) -> None:
        """The rate (a reload may lower it for accounts that share the key)."""
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self._capacity = max(1.0, min(10.0, self._rate))
        if hasattr(self, "_tokens"):
            self._tokens = min(self._tokens, self._capacity)

    def share(self) -> BudgetShare:
        """One account's use of this budget."""
        return BudgetShare(self)

    async def acquire(self, *, background: bool = False) -> float:
        """Take one request from the budget; returns the seconds spent waiting for it."""
        if background:
            return await self._acquire_background()
        waited = 0.0
        self._waiting += 1
        try:
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
        finally:
            self._waiting -= 1

    async def _acquire_background(self) -> float:
        """A request after the polls: only while none waits, and during a poll cycle only
        from a full bucket (the poll's next request always finds the rest)."""
        waited = 0.0
        async with self._background:  # background requests queue among themselves
            while True:
                now = self._clock()
                self._refill(now)
                delay = max(0.0, self._paused_until - now)
                if delay == 0.0:
                    floor = self._background_floor()
                    if self._waiting == 0 and self._tokens >= floor - 1e-9:
                        self._tokens = max(0.0, self._tokens - 1.0)
                        self.background_acquired += 1
                        return waited
                    # a poll waits, or the bucket is below what a poll must find: look again
                    # when it could be there (at least one request's time)
                    missing = max(0.0, min(floor, self._capacity) - self._tokens)
                    delay = max(1.0, missing) / self._rate
                await self._sleep(delay)
                waited += delay

    def _background_floor(self) -> float:
        """Tokens the bucket must hold for a background request to take one."""
        if self._cycles == 0:
            return 1.0
        # during a poll: only a full bucket, and never the one request of a one-token bucket
        return self._capacity if self._capacity >= 2.0 else math.inf

    @contextlib.contextmanager
    def cycle(self) -> Iterator[None]:
        """Mark a poll cycle running (background requests then take only a full bucket)."""
        self._cycles += 1
        try:
            yield
        finally:
            self._cycles -= 1

    def pause(self, seconds: float) -> None:
        """Stop every request of the key for ``seconds`` (after a 429)."""
        now = self._clock()
        self._refill(now)
        self._paused_until = max(self._paused_until, now + seconds)
        self._tokens = 0.0

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
        self._updated = now


class BudgetShare:
    """One account's use of a :class:`RequestBudget` that other accounts of the same API key
    may share: the same bucket, its own count of requests, and an equal part of the rate for
    planning (``per_minute``). ``release()`` when the account stops."""

    def __init__(self, budget: RequestBudget) -> None:
        self.budget = budget
        self.acquired = 0
        self._released = False
        budget.holders += 1

    @property
    def per_minute(self) -> float:
        """This account's part of the rate: the whole rate divided among the sharers."""
        return self.budget.per_minute / max(1, self.budget.holders)

    async def acquire(self, *, background: bool = False) -> float:
        waited = await self.budget.acquire(background=background)
        if not background:
            self.acquired += 1
        return waited

    def pause(self, seconds: float) -> None:
        self.budget.pause(seconds)

    def cycle(self) -> contextlib.AbstractContextManager[None]:
        return self.budget.cycle()

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.budget.holders -= 1


def smallest_interval(requests_per_cycle: int, per_minute: float, share: float = 1.0) -> float:
    """The shortest poll interval at which a cycle of this many requests fits the budget
    within ``share`` of the interval (the part a cycle may take: its deadline)."""
    return math.ceil(requests_per_cycle * 60.0 / per_minute / share - 1e-9)
