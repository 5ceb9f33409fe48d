"""A bounded queue of messages and the task that sends them, with retries.

Every sink and receiver delivers through one: ``put`` never blocks (when the queue is full the
oldest message is dropped, and counted), a task sends one message at a time, retrying what may
pass next time (no answer, 5xx, 429, a receiver's own temporary failure) with stamina's
exponential backoff and jitter, and ``aclose`` gives what is queued a moment before it stops:
what is still queued or being sent then is dropped — counted (``dropped``) and logged once, never
waited for (a SIGTERM stops the daemon within its 5 s whatever a receiver does).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import httpx
import stamina
import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")
DeliveryObserver = Callable[[str, str], None]  # (sink, outcome)
DepthObserver = Callable[[str, int], None]  # (sink, queue depth)
#: The longest wait between two attempts of one delivery.
MAX_BACKOFF_SECONDS = 30.0
#: How long ``aclose`` lets queued deliveries go out before it drops the rest.
DRAIN_SECONDS = 1.5


class Undeliverable(Exception):
    """A message that was not delivered; ``reason`` is safe to log (never a URL or token)."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


def _worth_retrying(exc: Exception) -> bool:
    return isinstance(exc, httpx.HTTPError) or (isinstance(exc, Undeliverable) and exc.retryable)


class Delivery(Generic[T]):
    """Sends what is ``put`` through ``send``, which raises :class:`Undeliverable` or an
    ``httpx.HTTPError`` when a message did not go through."""

    def __init__(
        self,
        name: str,
        send: Callable[[T], Awaitable[None]],
        *,
        max_attempts: int,
        queue_size: int,
        observe: DeliveryObserver,
        depth: DepthObserver,
        backoff_seconds: float = 1.0,
    ) -> None:
        self.name = name
        self._send = send
        self._queue: collections.deque[T] = collections.deque()
        self._queue_size = queue_size
        self._max_attempts = max_attempts
        self._backoff = backoff_seconds
        self._observe = observe
        self._depth = depth
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._sending = False  # a message is being sent (taken from the queue)
        self._task = asyncio.create_task(self._run(), name=f"sink {name}")
        depth(name, 0)

    def put(self, message: T) -> None:
        if len(self._queue) >= self._queue_size:
            self._queue.popleft()
            self._observe(self.name, "dropped")
        self._queue.append(message)
        self._depth(self.name, len(self._queue))
        self._idle.clear()
        self._wakeup.set()

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                message = self._queue.popleft()
                self._depth(self.name, len(self._queue))
                self._sending = True
                delivered = await self.deliver(message)
                self._sending = False
                self._observe(self.name, "success" if delivered else "failed")
            self._idle.set()

    async def deliver(self, message: T) -> bool:
        """Send one message now, with retries; False (and one warning line) when it failed."""
        return await self.attempt(message) is None

    async def attempt(self, message: T) -> str | None:
        """Send one message now, with retries: None, or why it failed."""
        tried = 0
        try:
            async for attempt in stamina.retry_context(
                on=_worth_retrying,
                attempts=self._max_attempts,
                timeout=None,
                wait_initial=self._backoff,
                wait_max=MAX_BACKOFF_SECONDS,
                wait_jitter=self._backoff,
            ):
                with attempt:
                    tried = attempt.num
                    await self._send(message)
        except (Undeliverable, httpx.HTTPError) as exc:
            reason = exc.reason if isinstance(exc, Undeliverable) else type(exc).__name__
            log.warning("alert_delivery_failed", sink=self.name, reason=reason, attempts=tried)
            return reason
        return None

    async def aclose(self, drain_seconds: float = DRAIN_SECONDS) -> None:
        """Give queued deliveries a moment, then stop: what is left — queued, or being sent
        and its retries — is dropped, counted and logged, never waited for."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), drain_seconds)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        dropped = len(self._queue) + (1 if self._sending else 0)
        self._queue.clear()
        self._sending = False
        if dropped:
            for _ in range(dropped):
                self._observe(self.name, "dropped")
            self._depth(self.name, 0)
            log.warning(
                "alert_deliveries_dropped",
                sink=self.name,
                deliveries=dropped,
                reason=f"still queued or being sent {drain_seconds:g} s after the sink was closed "
                "(shutdown or reload)",
            )
