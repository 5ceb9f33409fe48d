"""The sinks: stdout (always), generic webhooks, Alertmanager.

``submit`` gets everything one account's evaluation produced and never blocks nor does I/O:
bodies go into a bounded in-memory queue (the oldest is dropped, and counted, when it is full)
that a worker task drains with timeouts and retries. A slow or dead receiver therefore never
slows polling. An incident is one message: a webhook gets one POST per account and evaluation
with every event in it and a summary of what they share; stdout adds one ``incident`` line to
the per-event lines when a group is large.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx
import stamina
import structlog

from monitor import __version__
from monitor.alerting import Event

#: A group larger than this also gets an ``incident`` summary line on stdout.
INCIDENT_THRESHOLD = 10
#: Shops listed by name in a Slack message; the rest are counted.
SLACK_SHOPS = 5
DeliveryObserver = Callable[[str, str], None]  # (sink, outcome)
DepthObserver = Callable[[str, int], None]  # (sink, queue depth)

log = structlog.get_logger(__name__)


class StdoutSink:
    """Each event as one structured log line named ``alert``."""

    name = "stdout"

    def __init__(self, observe: DeliveryObserver) -> None:
        self._observe = observe

    def submit(self, account: str, events: Sequence[Event], firing: Sequence[Event]) -> None:
        for event in events:
            if event["status"] == "resolved" or event["kind"] == "cause":
                level = "info"
            else:
                level = "error" if event["severity"] == "critical" else "warning"
            getattr(log, level)("alert", **event)
            self._observe(self.name, "success")
        if len(events) > INCIDENT_THRESHOLD:
            log.warning(
                "incident",
                account=events[0]["account"],
                events=len(events),
                alerts=dict(collections.Counter(f"{e['alert']}:{e['kind']}" for e in events)),
                summary=group_summary(events),
            )

    async def aclose(self) -> None:
        return None


#: The longest wait between two attempts of one delivery.
MAX_BACKOFF_SECONDS = 30.0


class _Refused(Exception):
    """The receiver answered, but not with success."""

    def __init__(self, status: int) -> None:
        super().__init__(f"status {status}")
        self.reason = f"status {status}"
        self.retryable = status >= 500 or status == 429


def _worth_retrying(exc: Exception) -> bool:
    return isinstance(exc, httpx.HTTPError) or (isinstance(exc, _Refused) and exc.retryable)


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
        """POST with retries of what may pass next time (no answer, 5xx, 429): stamina's
        exponential backoff with jitter, at most 30 s apart."""
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
                    await self._send(body)
        except (_Refused, httpx.HTTPError) as exc:
            reason = exc.reason if isinstance(exc, _Refused) else type(exc).__name__
            log.warning("alert_delivery_failed", sink=self.name, reason=reason, attempts=tried)
            return False
        return True

    async def _send(self, body: bytes) -> None:
        response = await self._http.post(self._url, content=body, headers=self._headers(body))
        if response.status_code >= 300:
            raise _Refused(response.status_code)

    async def aclose(self, drain_seconds: float = 1.5) -> None:
        """Give queued deliveries a moment, then stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), drain_seconds)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._http.aclose()


class WebhookSink:
    """One POST per account and evaluation: every event of the group, with a summary (JSON),
    or the summary and the first few shops (Slack-compatible ``{"text": ...}``).

    With an HMAC secret, ``X-Signature-Timestamp`` is the Unix time of the attempt and
    ``X-Signature-SHA256`` is HMAC-SHA256(secret, timestamp + "." + body): a receiver that
    checks both and refuses old timestamps cannot be fed a replayed delivery.
    """

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
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = f"webhook:{name}"
        self._slack = slack
        secret = hmac_secret.encode() if hmac_secret else None

        def sign(body: bytes) -> dict[str, str]:
            if secret is None:
                return {}
            timestamp = str(int(wall_clock()))
            return {
                "X-Signature-Timestamp": timestamp,
                "X-Signature-SHA256": signature(secret, timestamp, body),
            }

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

    def submit(self, account: str, events: Sequence[Event], firing: Sequence[Event]) -> None:
        if not events:
            return
        payload = {"text": slack_text(events)} if self._slack else group_payload(events)
        self._delivery.put(json.dumps(payload).encode())

    async def aclose(self) -> None:
        await self._delivery.aclose()


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over ``timestamp.body``, hex (what ``X-Signature-SHA256`` carries)."""
    return hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def group_payload(events: Sequence[Event]) -> dict[str, Any]:
    """The JSON webhook body: one account's events of one evaluation (docs/alerts.md)."""
    account = events[0]["account"]
    alerts = {e["alert"] for e in events}
    common: dict[str, Any] = {"account": account}
    if len(alerts) == 1:
        common["alert"] = next(iter(alerts))
    return {
        "version": "2",
        "groupKey": f"{account}:" + ",".join(sorted(alerts)),
        "status": "firing" if any(e["status"] == "firing" for e in events) else "resolved",
        "account": account,
        "commonLabels": common,
        "summary": group_summary(events),
        "events": list(events),
    }


def group_summary(events: Sequence[Event]) -> str:
    """One sentence for a group of events: what happened to how many, since when, and what
    most of them share (integration type, exception type, host)."""
    if len(events) == 1:
        return str(events[0]["summary"])
    parts = []
    groups: dict[tuple[str, str], list[Event]] = {}
    for event in events:
        groups.setdefault((event["alert"], event["kind"]), []).append(event)
    for (alert, kind), group in groups.items():
        parts.append(_describe(alert, kind, group))
    return "; ".join(parts) + "."


_VERBS = {
    "IntegrationFailing": "failing",
    "IntegrationFetchStale": "not fetched for longer than their threshold",
    "IntegrationNotFound": "not found",
    "SendcloudAuthFailing": "rejecting the API keys",
    "SendcloudAPIUnreachable": "unreadable",
}


def _describe(alert: str, kind: str, group: Sequence[Event]) -> str:
    kind_text = {"resolved": "recovered from", "cause": "cause found for"}.get(kind)
    integration_type = _mostly([e.get("integration_type") for e in group])
    noun = "account" if group[0]["integration_id"] is None else "integration"
    noun += "" if len(group) == 1 else "s"
    if integration_type:
        noun = f"{integration_type} {noun}"
    if kind_text is not None:
        return f"{len(group)} {noun}: {kind_text} {alert}"
    since = min(str(e["starts_at"]) for e in group)
    text = f"{len(group)} {noun} {_VERBS.get(alert, alert)} since {since[11:16]} UTC"
    if kind != "fired":
        text += f" ({kind})"
    causes = [e.get("cause") or {} for e in group]
    exception = _mostly([_short_type(c.get("exception_type")) for c in causes])
    host = _mostly_host([c.get("host") for c in causes])
    if exception or host:
        text += ", mostly " + " to ".join(x for x in (exception and f"`{exception}`", host) if x)
    return text


def _mostly(values: Sequence[str | None]) -> str | None:
    """The value more than half of ``values`` share, if any."""
    counts = collections.Counter(v for v in values if v)
    if not counts:
        return None
    value, count = counts.most_common(1)[0]
    return value if count * 2 > len(values) else None


def _mostly_host(hosts: Sequence[str | None]) -> str | None:
    """The host most share, or ``*.domain`` when most share only their domain."""
    exact = _mostly(hosts)
    if exact is not None:
        return exact
    domain = _mostly([".".join(h.split(".")[-2:]) if h else None for h in hosts])
    return f"*.{domain}" if domain else None


def _short_type(name: object) -> str | None:
    return name.rsplit(".", 1)[-1] if isinstance(name, str) and name else None


def slack_text(events: Sequence[Event]) -> str:
    """The group summary, then the first few shops with their cause and runbook."""
    first = events[0]
    if first["status"] == "resolved":
        icon = ":white_check_mark:"
    else:
        critical = any(e["severity"] == "critical" for e in events)
        icon = ":rotating_light:" if critical else ":warning:"
    lines = [f"{icon} {group_summary(events)}"]
    for event in events[:SLACK_SHOPS]:
        line = f"• [{event['status'].upper()}] {event['alert']}: {event['summary']}"
        cause = event.get("cause")
        if isinstance(cause, dict) and cause.get("exception"):
            line += f" Cause: {cause['exception']}"
        lines.append(line + f" <{event['runbook_url']}|runbook>")
    if len(events) > SLACK_SHOPS:
        lines.append(f"…and {len(events) - SLACK_SHOPS} more")
    return "\n".join(lines)


#: How often every active alert is sent to Alertmanager again, whatever the evaluations do.
RESEND_INTERVAL_SECONDS = 60.0


class AlertmanagerSink:
    """Posts to Alertmanager's ``/api/v2/alerts`` as Prometheus does: every active alert on a
    timer of its own (``resend_interval``), independent of evaluations, and at each evaluation
    that changed something; resolved ones once with their ``endsAt``.

    Evaluations pause — an auth back-off, cycles stretched by the request budget, a reload that
    lengthens the interval — and an alert whose ``endsAt`` passed is resolved by Alertmanager.
    So ``endsAt`` is now + 4 x max(resend interval, longest evaluation gap), renewed by every
    resend: an alert leaves Alertmanager only when it is resolved here or the daemon is gone.
    """

    name = "alertmanager"

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], datetime],
        evaluation_gap: Callable[[], float] = lambda: 0.0,
        resend_interval_seconds: float = RESEND_INTERVAL_SECONDS,
        timeout_seconds: float = 5.0,
        max_attempts: int = 3,
        observe: DeliveryObserver,
        depth: DepthObserver,
        backoff_seconds: float = 1.0,
    ) -> None:
        self._clock = clock
        self._evaluation_gap = evaluation_gap
        self._resend_seconds = resend_interval_seconds
        self._active: dict[str, list[Event]] = {}  # account -> its firing alerts
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
        self._resender = asyncio.create_task(self._resend_forever(), name="alertmanager resend")

    def ends_at(self) -> str:
        """The ``endsAt`` of an active alert sent now."""
        horizon = 4 * max(self._resend_seconds, self._evaluation_gap())
        return (self._clock() + timedelta(seconds=horizon)).isoformat()

    def submit(self, account: str, events: Sequence[Event], firing: Sequence[Event]) -> None:
        if firing:
            self._active[account] = list(firing)
        else:
            self._active.pop(account, None)
        resolved = [e for e in events if e["status"] == "resolved"]
        if not firing and not resolved:
            return
        ends = self.ends_at()
        alerts = [a for e in firing for a in alertmanager_alerts(e, ends_at=ends)]
        alerts += [a for e in resolved for a in alertmanager_alerts(e, ends_at=e["ends_at"])]
        self._delivery.put(json.dumps(alerts).encode())

    def resend(self) -> None:
        """Every active alert of every account once more, with a fresh ``endsAt``."""
        ends = self.ends_at()
        alerts = [
            alert
            for firing in self._active.values()
            for event in firing
            for alert in alertmanager_alerts(event, ends_at=ends)
        ]
        if alerts:
            self._delivery.put(json.dumps(alerts).encode())

    async def _resend_forever(self) -> None:
        while True:
            await asyncio.sleep(self._resend_seconds)
            self.resend()

    async def aclose(self) -> None:
        self._resender.cancel()
        await asyncio.gather(self._resender, return_exceptions=True)
        await self._delivery.aclose()


#: Each alert's severity label, fixed for the alert's whole life: a label that changed would
#: make Alertmanager see a new alert. Escalation of IntegrationFailing is a second alert,
#: IntegrationFailingCritical, as in the shipped Prometheus rules.
AM_SEVERITY = {
    "IntegrationFailing": "warning",
    "IntegrationFailingCritical": "critical",
    "IntegrationFetchStale": "warning",
    "IntegrationNotFound": "warning",
    "SendcloudAuthFailing": "critical",
    "SendcloudAPIUnreachable": "critical",
}


def alertmanager_alerts(event: Event, *, ends_at: str) -> list[dict[str, Any]]:
    """The Alertmanager alerts of one alert state: itself, plus IntegrationFailingCritical
    while (or when, for a resolve) it is critical. Labels never change during an alert's life:
    alertname, severity (fixed per alertname), account, integration_id."""
    names = [event["alert"]]
    if event["alert"] == "IntegrationFailing" and event["severity"] == "critical":
        names.append("IntegrationFailingCritical")
    return [_alertmanager_alert(event, name, ends_at) for name in names]


def _alertmanager_alert(event: Event, name: str, ends_at: str) -> dict[str, Any]:
    labels = {"alertname": name, "severity": AM_SEVERITY.get(name, "warning")}
    labels["account"] = event["account"]
    if event["integration_id"] is not None:
        labels["integration_id"] = str(event["integration_id"])
    description = event["summary"]
    cause = event.get("cause")
    if isinstance(cause, dict):
        found = [
            f"{label} {cause[field]}"
            for label, field in (
                ("exception", "exception_type"),
                ("message", "exception"),
                ("host", "host"),
                ("response code", "response_code"),
            )
            if cause.get(field) is not None
        ]
        description += " Last error: " + "; ".join(found) + "." if found else ""
    annotations = {
        "summary": event["summary"],
        "description": description,
        "runbook_url": event["runbook_url"],
    }
    for field in ("shop_name", "shop_url", "integration_type"):
        if event.get(field):
            annotations[field] = event[field]
    return {
        "labels": labels,
        "annotations": annotations,
        "startsAt": event["starts_at"],
        "endsAt": ends_at,
    }
