"""The daemon: it builds the parts and coordinates them. Its lifecycle — ``run``: the claim on
the history file, the server, the scheduler, each account's worker, survey and stream, the first
polls spread; each poll's aftermath (history, probes, alerter); a reload applied part by part —
and the signals of readiness (``monitor_started``, ``no_accounts_to_poll``, the configuration
metric).

The scheduler is created inside the running loop (APScheduler's AsyncIOScheduler binds to it).
Shutdown order matters: pause the scheduler, let in-flight polls finish (bounded), shut the
scheduler down, let the sinks drain (bounded: what is left is dropped and counted), close the
history, then the HTTP clients and the server — all within ``SHUTDOWN_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import structlog
from pydantic import SecretStr

from monitor.alerting.service import Alerter
from monitor.config_errors import ConfigError
from monitor.daemon.positions import Positions
from monitor.daemon.probing import Probing
from monitor.daemon.reload import Loader, account_changes, reload_reply, reread, restart_values
from monitor.daemon.sinks import Holds, Sinks, delivery
from monitor.daemon.web import Views
from monitor.daemon.workers import Workers
from monitor.exporter.metrics import Metrics
from monitor.exporter.mutes import MutesApi
from monitor.exporter.server import HttpServer, make_app
from monitor.exporter.webconfig import WebConfig, protect
from monitor.health import utcnow
from monitor.history import HistoryError, HistoryStore
from monitor.history.mutes import MuteStore, QuietSource
from monitor.schedule import first_poll_delays
from monitor.settings import (
    AccountConfig,
    AlertingSettings,
    HistorySettings,
    Outbound,
    ProbeSettings,
    Settings,
    alerting_changes,
)
from monitor.store import AccountSnapshot, Store

log = structlog.get_logger(__name__)

#: A SIGTERM ends the process within this (docs/configuration.md): polls in flight get
#: POLL_GRACE_SECONDS (and POLL_UNWIND_SECONDS to return once abandoned), queued deliveries
#: the sinks' drain (``DRAIN_SECONDS``; what is left is dropped, counted and logged), the
#: history's last write what remains of SHUTDOWN_BUDGET_SECONDS; the rest is the interpreter's.
SHUTDOWN_SECONDS = 5.0
SHUTDOWN_BUDGET_SECONDS = 4.5
#: A second daemon on the same history file waits this long for the first to stop (a restart
#: that overlaps) before it refuses to start.
HISTORY_CLAIM_SECONDS = 6.0


class Daemon:
    """The long-running monitor. ``run`` returns after ``stop`` is set and cleanup is done;
    ``reload`` applies a new configuration (SIGHUP, POST /-/reload) without a restart."""

    def __init__(
        self,
        accounts: list[AccountConfig],
        listen: tuple[str, int],
        *,
        alerting: AlertingSettings | None = None,
        web_config: WebConfig | None = None,
        clock: Callable[[], datetime] = utcnow,
        transport: httpx.AsyncBaseTransport | None = None,
        loader: Loader | None = None,
        shard: str | None = None,
        history: HistorySettings | None = None,
        badge_secret: SecretStr | None = None,
        settings: Settings | None = None,
        probes: ProbeSettings | None = None,
    ) -> None:
        self.accounts = accounts
        #: what a reload may not change, as started (None: nothing to compare, e.g. the demo)
        self._restart_values = restart_values(settings) if settings is not None else None
        self.alerting = alerting or AlertingSettings()
        self.alerter: Alerter | None = None
        self._configs = {a.name: a for a in accounts}
        self.store = Store([a.name for a in accounts])  # assessed by the probing (below)
        self.metrics = Metrics(
            self.store,
            [a.name for a in accounts],
            clock=clock,
            poll_intervals={a.name: a.poll_interval_seconds for a in accounts},
            shard=shard or "",
        )
        self._clock = clock
        self._shard = shard
        self._outbound = self.alerting.resolved_outbound()  # as loaded (files read now)
        self._loader = loader
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reloading = asyncio.Lock()
        self.history = self._history(history or HistorySettings())
        history_store = self.history
        self.mutes = MuteStore(
            history_store.path if history_store is not None else None,
            expected=lambda: history_store is not None and history_store.opened,
        )
        self.quiet = QuietSource(
            self.mutes, self.alerting.windows(), clock, on_status=self.metrics.mutes_status
        )
        self.holds = Holds(self.quiet, self.store, clock)
        self.metrics.holds = self.holds.reasons
        self.metrics.account_holds = self.holds.account_reasons
        self.sinks = Sinks(
            self.metrics, clock, self.quiet, self.history, self.store, lambda: self.accounts
        )
        self.workers = Workers(self.store, self.metrics, clock, transport)
        self.probing = Probing(
            probes or ProbeSettings(), self.store, self.history, self.metrics, clock, self._configs
        )
        self.store.assess = self.probing.assessor
        self.positions = Positions(self.history)
        self.metrics.streams = lambda: dict(self.positions.streams)
        web = web_config or WebConfig()
        self.views = Views(
            self.store,
            self.history,
            self.quiet,
            self.holds.integrations,
            clock,
            alerter=lambda: self.alerter,
            probes=lambda: self.probing.settings,
            accounts=lambda: self.accounts,
            auth=bool(web.users),
            badge_secret=badge_secret,
        )
        app = make_app(
            self.metrics.exposition,
            self.store.ready,
            self.views.status,
            self.reload_blocking,
            api=self.views.api,
            badges=self.views.badges,
            pages=self.views.page,
            # writing mutes needs basic auth users: each change names who made it
            mutes=MutesApi(
                self.mutes,
                clock,
                bool(web.users),
                self.quiet.refresh,
                check=self.views.mute_problem,
            ),
            public_badges=self.views.public_badges,
        )
        self.server = HttpServer(*listen, protect(app, web), ssl_context=web.ssl_context)

    def _history(self, settings: HistorySettings) -> HistoryStore | None:
        """The history store, when a path is configured (or implied by the state file)."""
        path = settings.resolved_path(self.alerting.state_file)
        self.metrics.history_enabled(path is not None)
        if path is None:
            return None
        return HistoryStore(
            path,
            retention_days=settings.retention_days,
            on_status=self.metrics.history_status,
            on_failure=self.metrics.history_failure,
            clock=self._clock,
        )

    async def _after_cycle(self, snapshot: AccountSnapshot) -> object:
        """After each poll: the history records the states, the probes learn the account's
        shops, the inventory its integrations, the alerter evaluates."""
        stored = self.store.get(snapshot.account)
        if stored.cycles_completed == snapshot.cycles_completed:
            snapshot = stored  # the same poll, with its findings
        if self.history is not None:
            self.history.record(snapshot, self._clock())
        self.probing.polled(snapshot)
        assert self.alerter is not None
        return await self.alerter.on_snapshot(snapshot)

    async def run(self, stop: asyncio.Event) -> None:
        """Serve and poll until ``stop`` is set. Raises HistoryInUse, before anything starts,
        when another process writes the history file."""
        self._loop = asyncio.get_running_loop()
        if self.history is not None:
            try:
                await self._claim_history(self.history, stop)
            except HistoryInUse:
                self.server.stop()
                raise
            self.history.start()
        self.quiet()  # the mutes as they are at the start: readable or not (metric, page)
        self.server.start()
        log.info(
            "monitor_started",
            listen_port=self.server.port,
            accounts=[a.name for a in self.accounts],
        )
        self.metrics.config_loaded(True, self._clock())
        scheduler = self.workers.new_scheduler()
        self.alerter = self._alerter()
        self.metrics.not_found_polls = self.alerter.not_found_polls
        self.probing.restore_inventories()
        self.probing.start()
        try:
            start = datetime.now(UTC)
            for account, delay in zip(self.accounts, first_poll_delays(self.accounts), strict=True):
                self._start(account, start + timedelta(seconds=delay))
            self._announce_empty()
            self.workers.announce_shared_budgets(self.accounts)
            scheduler.start()
            await stop.wait()
        finally:
            deadline = time.monotonic() + SHUTDOWN_BUDGET_SECONDS
            if scheduler.running:
                scheduler.pause()
            await self.probing.stop()
            await self.workers.stop(list(self.workers.values()), reason="shutdown")
            if scheduler.running:
                scheduler.shutdown(wait=False)
            await self.alerter.aclose()  # the sinks drain for DRAIN_SECONDS at most
            if self.history is not None:  # open intervals end now; what follows is unknown
                await asyncio.to_thread(
                    self.history.close,
                    self._clock(),
                    timeout=max(0.2, deadline - time.monotonic()),
                )
            await self.workers.aclose()
            self.server.stop()
            log.info("monitor_stopped")

    async def _claim_history(self, history: HistoryStore, stop: asyncio.Event) -> None:
        """This process's claim on the history file. Held by another process: wait a moment
        (a restart whose old process is still stopping), then refuse to start, naming it."""
        deadline = time.monotonic() + HISTORY_CLAIM_SECONDS
        waiting = False
        while (holder := history.claim()) is not None:
            if time.monotonic() >= deadline or stop.is_set():
                log.error(
                    "history_in_use",
                    path=str(history.path),
                    holder=holder,
                    hint="one process writes a history file: give each shard and replica its "
                    "own state directory (alerting.state_file) or history.path; the monitor "
                    "does not start",
                )
                raise HistoryInUse(history.path, holder)
            if not waiting:
                log.warning("history_in_use_waiting", path=str(history.path), holder=holder)
                waiting = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)

    def _announce_empty(self) -> None:
        """Once, when this process has no account to poll (an empty shard, or a reload that
        removed every account): not an error; it serves /metrics and waits for a reload."""
        if not self.accounts:
            log.warning(
                "no_accounts_to_poll",
                shard=self._shard,
                hint="this replica's shard holds no account, or none is configured; it stays "
                "ready and serves /metrics, and starts polling when a reload adds accounts",
            )

    def _start(self, account: AccountConfig, first: datetime | None = None) -> None:
        """An account's client, poller and job; its first poll runs at ``first`` (now)."""
        assert self.alerter is not None
        worker = self.workers.new(account, self.accounts)
        worker.poller.after_cycle = self._after_cycle
        worker.poller.stream = self.positions.stream(account, self._errors_rising_window())
        # cause lookups take from the same budget, after the polls
        self.alerter.cause_budgets[account.name] = worker.budget
        self._configs[account.name] = account
        self.store.add(account.name)
        self.probing.start_survey(worker)
        self.workers.schedule(worker, first)

    def _errors_rising_window(self) -> timedelta:
        return timedelta(seconds=self.alerting.rules().errors_rising_window_seconds)

    def reload_blocking(self) -> tuple[bool, str]:
        """``reload`` from another thread (the HTTP server's POST /-/reload)."""
        if self._loop is None:
            return False, "the monitor is not running yet"
        future = asyncio.run_coroutine_threadsafe(self.reload(), self._loop)
        return future.result(timeout=30)

    async def reload(self) -> tuple[bool, str]:
        """Re-read the YAML file, the environment and secret files; validate the whole; swap.

        An invalid configuration is rejected with one error line and the running one stays.
        Accounts that did not change keep their state, budget and open alerts; changed ones are
        restarted (keeping their last values and alerts); removed ones stop, their series end
        and their alerts resolve; added ones start polling at once.
        """
        async with self._reloading:
            if self._loader is None:
                return False, "this monitor has no configuration file to reload (demo mode)"
            try:
                new = reread(self._loader, self._restart_values)
            except ConfigError as exc:
                log.error("config_reload_failed", reason=str(exc))
                self.metrics.config_loaded(False, self._clock())
                return False, str(exc)
            settings, accounts, outbound = new.settings, new.accounts, new.outbound
            had_accounts = bool(self.accounts)
            alerting = alerting_changes(self.alerting, settings.alerting, self._outbound, outbound)
            summary = await self._apply(settings, accounts, outbound)
            history = self._apply_retention(settings.history)
            if history:
                alerting = {**alerting, "history": history}
            self.views.set_badge_secret(new.badge_secret)
            self.metrics.config_loaded(True, self._clock())
            if had_accounts:
                self._announce_empty()
            log.info("config_reloaded", **summary, **alerting)
            return True, reload_reply(summary, alerting)

    async def _apply(
        self, settings: Settings, accounts: list[AccountConfig], outbound: Outbound
    ) -> dict[str, list[str]]:
        assert self.alerter is not None
        new = {a.name: a for a in accounts}
        change = account_changes({n: w.config for n, w in self.workers.items()}, accounts)
        removed, changed, added = change.removed, change.changed, change.added
        leaving = self.workers.remove(removed + changed)
        await self.probing.stop_surveys(removed + changed)
        await self.workers.stop(leaving, reason="reload")
        for name in removed:
            self.positions.forget(name)
            self.probing.forget(name)
            self._configs.pop(name, None)
            self.store.remove(name)
            self.metrics.remove_account(name)
            self.alerter.end_account(name)
            if self.history is not None:
                self.history.forget(name, self._clock())
        # the windows are read by the quiet gate at each evaluation: a reload that changes
        # only them (or the rules' thresholds) keeps every sink and what is queued in it; new
        # sinks take over what the old ones held, so the order of these steps does not matter
        self.quiet.windows = settings.alerting.windows()
        probes_changed = settings.probes != self.probing.settings
        if probes_changed:  # the runner and every survey start again with the new settings
            await self.probing.restart(settings.probes, self.workers, changed)
        rules = settings.alerting.rules(self.probing.settings)
        delivery_changed = delivery(settings.alerting, outbound) != delivery(
            self.alerting, self._outbound
        )
        if delivery_changed or probes_changed:
            sinks = self.sinks.build(settings.alerting, outbound)
            await self.alerter.replace_delivery(rules, sinks)
        else:
            self.alerter.rules = rules
        self.accounts, self.alerting, self._outbound = accounts, settings.alerting, outbound
        # the accounts that stay polling too
        self.positions.set_window(self._errors_rising_window())
        for name in changed + added:
            account = new[name]
            self.alerter.ids_configured[name] = account.integration_ids is not None
            self.metrics.add_account(name, account.poll_interval_seconds)
            self._start(account)
        self.workers.announce_shared_budgets(self.accounts)
        return change.summary()

    def _apply_retention(self, settings: HistorySettings) -> dict[str, list[str]]:
        """A new ``history.retention_days`` applies at the next write (what changed)."""
        retention = timedelta(days=settings.retention_days)
        if self.history is None or self.history.retention == retention:
            return {}
        self.history.set_retention(settings.retention_days)
        return {"changed": ["retention_days"]}

    def _alerter(self) -> Alerter:
        """The alerting service, hooked after every poll cycle; needs the running loop."""

        async def fetch_logs(account: str, integration_id: int) -> list[dict[str, Any]]:
            # the alerter took the request from the account's budget already (before its
            # timeout), in the background: after the polls
            return await self.workers[account].client.integration_logs(
                integration_id,
                page_size=self.alerting.cause_logs_page_size,
                background=True,
                prepaid=self.alerter is not None and account in self.alerter.cause_budgets,
            )

        return Alerter(
            self.alerting.rules(self.probing.settings),
            self.sinks.build(self.alerting, self._outbound),
            clock=self._clock,
            ids_configured={a.name: a.integration_ids is not None for a in self.accounts},
            fetch_logs=fetch_logs,
            cause_timeout_seconds=self.alerting.cause_timeout_seconds,
            state_file=self.alerting.state_file,
            on_alert=self.metrics.alert_emitted,
            on_firing=self.metrics.alerts_firing,
        )


class HistoryInUse(HistoryError):
    """Another process holds the history file: this one does not start."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"the history file {path} is in use by {holder}")
        self.path = path
        self.holder = holder
