"""Wiring and lifecycle: clients, pollers, the APScheduler jobs and the HTTP server.

The scheduler is created inside the running loop (APScheduler's AsyncIOScheduler binds to it).
Shutdown order matters: pause the scheduler, let in-flight polls finish (bounded), shut the
scheduler down, then close the HTTP clients and the server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor.alerting import Alerter
from monitor.health import utcnow
from monitor.metrics import Metrics
from monitor.oauth import OAuth2ClientCredentials
from monitor.poller import AccountPoller
from monitor.ratelimit import RequestBudget
from monitor.sendcloud import SendcloudClient
from monitor.server import HttpServer, make_app
from monitor.settings import AccountConfig, AlertingSettings
from monitor.sinks import AlertmanagerSink, Sink, StdoutSink, WebhookSink
from monitor.state import Store
from monitor.status import Status
from monitor.status import build as build_status
from monitor.webconfig import WebConfig, protect

log = structlog.get_logger("monitor.scheduler")

#: At shutdown, polls in flight get this long to finish before they are abandoned; with the
#: sinks' drain this keeps a SIGTERM under 5 s.
POLL_GRACE_SECONDS = 1.5
#: Share of an account's request budget that cause lookups may use; polls keep the rest.
CAUSE_BUDGET_SHARE = 0.1
_EVENT_NAMES = {
    EVENT_JOB_ERROR: "job_error",
    EVENT_JOB_MISSED: "missed",
    EVENT_JOB_MAX_INSTANCES: "skipped_overrun",
}


def job_options(interval: float) -> dict[str, object]:
    """APScheduler options for one account's poll job."""
    return {
        "trigger": IntervalTrigger(seconds=interval, jitter=min(interval * 0.1, 5.0)),
        "max_instances": 1,
        "coalesce": True,
        "misfire_grace_time": max(1, int(interval / 2)),
    }


@contextlib.asynccontextmanager
async def open_pollers(
    accounts: list[AccountConfig],
    store: Store,
    metrics: Metrics,
    *,
    clock: Callable[[], datetime] = utcnow,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[list[AccountPoller]]:
    """One client and one poller per account; the clients are closed on exit."""
    budgets = [RequestBudget(account.max_requests_per_minute) for account in accounts]
    clients = [
        SendcloudClient(
            account.api_url,
            account.public_key.get_secret_value(),
            account.secret_key.get_secret_value(),
            timeout_seconds=account.request_timeout_seconds,
            max_connections=account.max_concurrency,
            events=metrics.client_events(account.name),
            budget=budget,
            auth=_auth(account),
            transport=transport,
        )
        for account, budget in zip(accounts, budgets, strict=True)
    ]
    try:
        yield [
            AccountPoller(
                account, client, store, clock=clock, on_cycle=metrics.observe_cycle, budget=budget
            )
            for account, client, budget in zip(accounts, clients, budgets, strict=True)
        ]
    finally:
        for client in clients:
            await client.aclose()


def _auth(account: AccountConfig) -> httpx.Auth | None:
    """OAuth2 client credentials when configured; None means Basic auth with the keys."""
    if account.auth != "oauth2":
        return None
    return OAuth2ClientCredentials(
        account.oauth2_token_url,
        account.public_key.get_secret_value(),
        account.secret_key.get_secret_value(),
        scope=account.oauth2_scope,
    )


class Daemon:
    """The long-running monitor. ``run`` returns after ``stop`` is set and cleanup is done."""

    def __init__(
        self,
        accounts: list[AccountConfig],
        listen: tuple[str, int],
        *,
        alerting: AlertingSettings | None = None,
        web_config: WebConfig | None = None,
        clock: Callable[[], datetime] = utcnow,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.accounts = accounts
        self.alerting = alerting or AlertingSettings()
        self.alerter: Alerter | None = None
        self.store = Store([a.name for a in accounts])
        self.metrics = Metrics(
            self.store,
            [a.name for a in accounts],
            clock=clock,
            poll_intervals={a.name: a.poll_interval_seconds for a in accounts},
        )
        app = make_app(self.metrics.registry, self.store.ready, self.status)
        web = web_config or WebConfig()
        self.server = HttpServer(*listen, protect(app, web), ssl_context=web.ssl_context)
        self._clock = clock
        self._transport = transport

    def status(self) -> tuple[Status, datetime]:
        """The status document and its time, for the page and /status.json (server threads)."""
        now = self._clock()
        alerter = self.alerter
        firing, causes = alerter.firing_by_integration() if alerter else ({}, {})
        count = sum(alerter.firing_counts().values()) if alerter else 0
        document = build_status(
            self.store.snapshots(), now, firing=firing, causes=causes, firing_alerts=count
        )
        return document, now

    async def run(self, stop: asyncio.Event) -> None:
        self.server.start()
        log.info(
            "monitor_started",
            listen_port=self.server.port,
            accounts=[a.name for a in self.accounts],
        )
        try:
            async with open_pollers(
                self.accounts,
                self.store,
                self.metrics,
                clock=self._clock,
                transport=self._transport,
            ) as pollers:
                self.alerter = self._alerter(pollers)
                try:
                    await self._schedule_until(stop, pollers)
                finally:
                    await self.alerter.aclose()
        finally:
            self.server.stop()
            log.info("monitor_stopped")

    async def _schedule_until(self, stop: asyncio.Event, pollers: list[AccountPoller]) -> None:
        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.add_listener(
            self._on_job_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES
        )
        for poller in pollers:
            poller.announce_plan()
            scheduler.add_job(
                poller.poll,
                id=poller.account.name,
                name=f"poll {poller.account.name}",
                next_run_time=datetime.now(UTC),
                **job_options(poller.account.poll_interval_seconds),
            )
        scheduler.start()
        try:
            await stop.wait()
        finally:
            scheduler.pause()
            await self._stop_polls(pollers)
            scheduler.shutdown(wait=False)

    async def _stop_polls(self, pollers: list[AccountPoller]) -> None:
        """Let polls in flight finish for a moment, then abandon the rest cleanly (their jobs
        return normally: no job error, no traceback)."""
        waiting = [asyncio.ensure_future(p.idle.wait()) for p in pollers]
        _, pending = await asyncio.wait(waiting, timeout=POLL_GRACE_SECONDS)
        for task in pending:
            task.cancel()
        stopped = [p.account.name for p in pollers if p.stop()]
        if stopped:
            log.info("shutdown_cancelled_polls", polls=len(stopped), accounts=stopped)
            await asyncio.wait([asyncio.ensure_future(p.idle.wait()) for p in pollers], timeout=1.0)

    def _alerter(self, pollers: list[AccountPoller]) -> Alerter:
        """The alerting service, hooked after every poll cycle; needs the running loop."""
        by_name = {p.account.name: p for p in pollers}
        page_size = self.alerting.cause_logs_page_size

        async def fetch_logs(account: str, integration_id: int) -> list[dict[str, Any]]:
            return await by_name[account].client.integration_logs(
                integration_id, page_size=page_size
            )

        alerter = Alerter(
            self.alerting.rules(),
            build_sinks(self.alerting, self.metrics, self._clock, self.accounts),
            clock=self._clock,
            ids_configured={a.name: a.integration_ids is not None for a in self.accounts},
            fetch_logs=fetch_logs,
            cause_timeout_seconds=self.alerting.cause_timeout_seconds,
            state_file=self.alerting.state_file,
            on_alert=self.metrics.alert_emitted,
            on_firing=self.metrics.alerts_firing,
            cause_budgets={
                a.name: RequestBudget(max(1.0, CAUSE_BUDGET_SHARE * a.max_requests_per_minute))
                for a in self.accounts
            },
        )
        for poller in pollers:
            poller.after_cycle = alerter.on_snapshot
        return alerter

    def _on_job_event(self, event: JobEvent) -> None:
        name = _EVENT_NAMES.get(event.code, "other")
        self.metrics.scheduler_event(str(event.job_id), name)
        if name == "job_error":
            log.error(
                "poll_crashed", account=event.job_id, error=repr(getattr(event, "exception", None))
            )
        else:
            log.warning("poll_not_run", account=event.job_id, reason=name)


def build_sinks(
    alerting: AlertingSettings,
    metrics: Metrics,
    clock: Callable[[], datetime],
    accounts: list[AccountConfig],
) -> list[Sink]:
    """stdout always; then the configured webhooks and Alertmanager."""
    sinks: list[Sink] = [StdoutSink(metrics.delivery)]
    for webhook in alerting.resolved_webhooks():
        sinks.append(
            WebhookSink(
                webhook.name,
                webhook.url.get_secret_value(),
                hmac_secret=webhook.hmac_secret.get_secret_value() if webhook.hmac_secret else None,
                slack=webhook.slack,
                timeout_seconds=webhook.timeout_seconds,
                max_attempts=webhook.max_attempts,
                queue_size=webhook.queue_size,
                observe=metrics.delivery,
                depth=metrics.queue_depth,
            )
        )
    if alerting.alertmanager is not None:
        longest = max(a.poll_interval_seconds for a in accounts)
        sinks.append(
            AlertmanagerSink(
                alerting.alertmanager.url,
                keep_alive=timedelta(seconds=max(300.0, 3 * longest)),
                clock=clock,
                timeout_seconds=alerting.alertmanager.timeout_seconds,
                max_attempts=alerting.alertmanager.max_attempts,
                observe=metrics.delivery,
                depth=metrics.queue_depth,
            )
        )
    return sinks
