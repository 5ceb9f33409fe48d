"""Alert delivery: stdout (always), generic webhooks, Alertmanager.

``submit`` never blocks and never does I/O: events go into a bounded in-memory queue (the
oldest is dropped, and counted, when it is full) that a worker task drains with timeouts and
retries. A slow or dead receiver therefore never slows polling.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import json
import random
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

import httpx
import structlog

from monitor import __version__

Event = dict[str, Any]
DeliveryObserver = Callable[[str, str], None]  # (sink, outcome)
DepthObserver = Callable[[str, int], None]  # (sink, queue depth)
Sleep = Callable[[float], Awaitable[None]]

log = structlog.get_logger("monitor.alerts")


class Sink(Protocol):
    name: str

    def submit(self, events: Sequence[Event], firing: Sequence[Event]) -> None:
        """Hand over this evaluation's events and every alert firing now (non-blocking)."""

    async def aclose(self) -> None: ...


class StdoutSink:
    """Each event as one structured log line named ``alert``."""

    name = "stdout"

    def __init__(self, observe: DeliveryObserver) -> None:
        self._observe = observe

    def submit(self, events: Sequence[Event], firing: Sequence[Event]) -> None:
        for event in events:
            if event["status"] == "resolved":
                level = "info"
            else:
                level = "error" if event["severity"] == "critical" else "warning"
            getattr(log, level)("alert", **event)
            self._observe(self.name, "success")

    async def aclose(self) -> None:
        return None


class _Delivery:
    """A bounded queue of request bodies and the task that POSTs them, with retries."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        timeout_seconds: float,
        max_attempts: int,
        queue_size: int,
        observe: DeliveryObserver,
        depth: DepthObserver,
        headers: Callable[[bytes], dict[str, str]] = lambda body: {},
        backoff_seconds: float = 1.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.name = name
        self._url = url
        self._queue: collections.deque[bytes] = collections.deque()
        self._queue_size = queue_size
        self._max_attempts = max_attempts
        self._backoff = backoff_seconds
        self._observe = observe
        self._depth = depth
        self._headers = headers
        self._sleep = sleep
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds),
            headers={
                "User-Agent": f"sendcloud-integration-monitor/{__version__}",
                "Content-Type": "application/json",
            },
        )
        self._task = asyncio.create_task(self._run(), name=f"sink {name}")
        depth(name, 0)

    def put(self, body: bytes) -> None:
        if len(self._queue) >= self._queue_size:
            self._queue.popleft()
            self._observe(self.name, "dropped")
        self._queue.append(body)
        self._depth(self.name, len(self._queue))
        self._idle.clear()
        self._wakeup.set()

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                body = self._queue.popleft()
                self._depth(self.name, len(self._queue))
                self._observe(self.name, "success" if await self._post(body) else "failed")
            self._idle.set()

    async def _post(self, body: bytes) -> bool:
        for attempt in range(1, self._max_attempts + 1):
            try:
                response = await self._http.post(
                    self._url, content=body, headers=self._headers(body)
                )
                if response.status_code < 300:
                    return True
                retryable = response.status_code >= 500 or response.status_code == 429
                reason = f"status {response.status_code}"
            except httpx.HTTPError as exc:
                retryable, reason = True, type(exc).__name__
            if not retryable or attempt == self._max_attempts:
                log.warning(
                    "alert_delivery_failed", sink=self.name, reason=reason, attempts=attempt
                )
                return False
            delay = random.uniform(0, min(30.0, self._backoff * 2 ** (attempt - 1)))  # noqa: S311
            await self._sleep(delay)
        return False

    async def aclose(self, drain_seconds: float = 2.0) -> None:
        """Give queued deliveries a moment, then stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), drain_seconds)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._http.aclose()


class WebhookSink:
    """POST each event as JSON (or a Slack-compatible ``{"text": ...}`` body)."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        hmac_secret: str | None = None,
        slack: bool = False,
        timeout_seconds: float = 5.0,
        max_attempts: int = 5,
        queue_size: int = 1000,
        observe: DeliveryObserver,
        depth: DepthObserver,
        backoff_seconds: float = 1.0,
    ) -> None:
        self.name = f"webhook:{name}"
        self._slack = slack
        secret = hmac_secret.encode() if hmac_secret else None

        def sign(body: bytes) -> dict[str, str]:
            if secret is None:
                return {}
            return {"X-Signature-SHA256": hmac.new(secret, body, hashlib.sha256).hexdigest()}

        self._delivery = _Delivery(
            self.name,
            url,
            timeout_seconds=timeout_seconds,
            max_attempts=max_attempts,
            queue_size=queue_size,
            observe=observe,
            depth=depth,
            headers=sign,
            backoff_seconds=backoff_seconds,
        )

    def submit(self, events: Sequence[Event], firing: Sequence[Event]) -> None:
        for event in events:
            payload: dict[str, Any] = {"text": slack_text(event)} if self._slack else event
            self._delivery.put(json.dumps(payload).encode())

    async def aclose(self) -> None:
        await self._delivery.aclose()


def slack_text(event: Event) -> str:
    icon = (
        ":white_check_mark:"
        if event["status"] == "resolved"
        else (":rotating_light:" if event["severity"] == "critical" else ":warning:")
    )
    text = f"{icon} [{event['status'].upper()}] {event['alert']}: {event['summary']}"
    cause = event.get("cause")
    if isinstance(cause, dict) and cause.get("exception"):
        text += f"\nCause: {cause['exception']}"
    return text + f"\nRunbook: {event['runbook_url']}"


class AlertmanagerSink:
    """Posts to Alertmanager's ``/api/v2/alerts``: every firing alert on every evaluation (so
    Alertmanager keeps it active), and resolved ones with ``endsAt``."""

    name = "alertmanager"

    def __init__(
        self,
        url: str,
        *,
        keep_alive: timedelta,
        clock: Callable[[], datetime],
        timeout_seconds: float = 5.0,
        max_attempts: int = 3,
        observe: DeliveryObserver,
        depth: DepthObserver,
        backoff_seconds: float = 1.0,
    ) -> None:
        self._keep_alive = keep_alive
        self._clock = clock
        self._delivery = _Delivery(
            self.name,
            url.rstrip("/") + "/api/v2/alerts",
            timeout_seconds=timeout_seconds,
            max_attempts=max_attempts,
            queue_size=100,
            observe=observe,
            depth=depth,
            backoff_seconds=backoff_seconds,
        )

    def submit(self, events: Sequence[Event], firing: Sequence[Event]) -> None:
        resolved = [e for e in events if e["status"] == "resolved"]
        if not firing and not resolved:
            return
        ends = (self._clock() + self._keep_alive).isoformat()
        alerts = [alertmanager_alert(e, ends_at=ends) for e in firing]
        alerts += [alertmanager_alert(e, ends_at=e["ends_at"]) for e in resolved]
        self._delivery.put(json.dumps(alerts).encode())

    async def aclose(self) -> None:
        await self._delivery.aclose()


def alertmanager_alert(event: Event, *, ends_at: str) -> dict[str, Any]:
    labels = {
        "alertname": event["alert"],
        "severity": event["severity"],
        "account": event["account"],
    }
    if event["integration_id"] is not None:
        labels["integration_id"] = str(event["integration_id"])
    description = event["summary"]
    cause = event.get("cause")
    if isinstance(cause, dict) and cause.get("exception"):
        description += f" Last error: {cause['exception']}"
    annotations = {
        "summary": event["summary"],
        "description": description,
        "runbook_url": event["runbook_url"],
    }
    if event.get("shop_name"):
        annotations["shop_name"] = event["shop_name"]
    return {
        "labels": labels,
        "annotations": annotations,
        "startsAt": event["starts_at"],
        "endsAt": ends_at,
    }
