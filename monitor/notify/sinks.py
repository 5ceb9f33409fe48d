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
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog

from monitor import __version__
from monitor.alerting import Event
from monitor.notify.delivery import Delivery, DeliveryObserver, DepthObserver, Undeliverable
from monitor.notify.messages import group_summary, slack_text

#: A group larger than this also gets an ``incident`` summary line on stdout.
INCIDENT_THRESHOLD = 10

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


def _refused(status: int) -> Undeliverable:
    return Undeliverable(f"status {status}", retryable=status >= 500 or status == 429)


class _Poster:
    """POSTs request bodies to one URL (a sink's own client, closed with it)."""

    def __init__(
        self,
        url: str,
        timeout_seconds: float,
        headers: Callable[[bytes], dict[str, str]] = lambda body: {},
    ) -> None:
        self._url = url
        self._headers = headers
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds),
            headers={
                "User-Agent": f"sendcloud-integration-monitor/{__version__}",
                "Content-Type": "application/json",
            },
        )

    async def __call__(self, body: bytes) -> None:
        response = await self._http.post(self._url, content=body, headers=self._headers(body))
        if response.status_code >= 300:
            raise _refused(response.status_code)

    async def aclose(self) -> None:
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

        self._poster = _Poster(url, timeout_seconds, sign)
        self._delivery: Delivery[bytes] = Delivery(
            self.name,
            self._poster,
            max_attempts=max_attempts,
            queue_size=queue_size,
            observe=observe,
            depth=depth,
            backoff_seconds=backoff_seconds,
        )

    def submit(self, account: str, events: Sequence[Event], firing: Sequence[Event]) -> None:
        if not events:
            return
        payload = {"text": slack_text(events)} if self._slack else group_payload(events)
        self._delivery.put(json.dumps(payload).encode())

    async def aclose(self) -> None:
        await self._delivery.aclose()
        await self._poster.aclose()


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
        self._poster = _Poster(url.rstrip("/") + "/api/v2/alerts", timeout_seconds)
        self._delivery: Delivery[bytes] = Delivery(
            self.name,
            self._poster,
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
        await self._poster.aclose()


#: Each alert's severity label, fixed for the alert's whole life: a label that changed would
#: make Alertmanager see a new alert. Escalation of IntegrationFailing is a second alert,
#: IntegrationFailingCritical, as in the shipped Prometheus rules.
AM_SEVERITY = {
    "IntegrationFailing": "warning",
    "IntegrationFailingCritical": "critical",
    "IntegrationFetchStale": "warning",
    "IntegrationNotFound": "warning",
    "IntegrationErrorsRising": "warning",
    "IntegrationShopCertificateExpiring": "warning",
    "IntegrationShopUnreachable": "warning",
    "IntegrationMisconfigured": "warning",
    "SendcloudAuthFailing": "critical",
    "SendcloudAPIUnreachable": "critical",
}


def alertmanager_alerts(event: Event, *, ends_at: str) -> list[dict[str, Any]]:
    """The Alertmanager alerts of one alert state: itself, plus IntegrationFailingCritical
    while (or when, for a resolve) it is critical — and for an expiring certificate, as in the
    shipped rules, a second IntegrationShopCertificateExpiring with severity critical. Labels
    never change during an alert's life: alertname, severity (fixed per alert), account,
    integration_id."""
    alert = event["alert"]
    names = [(alert, AM_SEVERITY.get(alert, "warning"))]
    if alert == "IntegrationFailing" and event["severity"] == "critical":
        names.append(("IntegrationFailingCritical", "critical"))
    if alert == "IntegrationShopCertificateExpiring" and event["severity"] == "critical":
        names.append((alert, "critical"))
    return [_alertmanager_alert(event, name, severity, ends_at) for name, severity in names]


def _alertmanager_alert(event: Event, name: str, severity: str, ends_at: str) -> dict[str, Any]:
    labels = {"alertname": name, "severity": severity}
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
