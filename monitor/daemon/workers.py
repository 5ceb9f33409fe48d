"""The per-account workers: each account's client and poller, the request budget of each API
key (shared by the accounts configured with it), the connection pool every account shares, and
the scheduler's poll jobs (their events counted and logged; polls in flight stopped within a
bound when their account stops)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import structlog
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from monitor.exporter.metrics import Metrics
from monitor.health import utcnow
from monitor.poller import AccountPoller
from monitor.schedule import job_options
from monitor.sendcloud import SendcloudClient
from monitor.sendcloud.budget import BudgetShare, RequestBudget, Sleep
from monitor.sendcloud.oauth import OAuth2ClientCredentials
from monitor.sendcloud.transport import new_transport
from monitor.settings import AccountConfig
from monitor.store import Store

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Worker:
    """One account at work: its configuration, client and poller, and its share of the
    request budget of its API key."""

    config: AccountConfig
    client: SendcloudClient
    poller: AccountPoller
    budget: BudgetShare


def budget_key(account: AccountConfig) -> str:
    """What Sendcloud limits requests by: the API key (at its API). A digest: the key itself
    is kept nowhere else."""
    text = f"{account.api_url.rstrip('/')}\0{account.public_key.get_secret_value()}"
    return hashlib.sha256(text.encode()).hexdigest()


class Budgets:
    """One request budget per API key: accounts configured with the same key share it (at the
    lowest of their ``max_requests_per_minute``); a budget no account holds any more goes."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, sleep: Sleep = asyncio.sleep
    ) -> None:
        self._budgets: dict[str, RequestBudget] = {}
        self._clock = clock
        self._sleep = sleep

    def share(self, account: AccountConfig, accounts: Sequence[AccountConfig]) -> BudgetShare:
        """``account``'s share; ``accounts``: every account configured now (the rate of a
        shared key is the lowest any of them allows)."""
        key = budget_key(account)
        rate = min(
            [a.max_requests_per_minute for a in accounts if budget_key(a) == key]
            + [account.max_requests_per_minute]
        )
        budget = self._budgets.get(key)
        if budget is None or budget.holders == 0:
            budget = self._budgets[key] = RequestBudget(rate, clock=self._clock, sleep=self._sleep)
        elif budget.per_minute != rate:
            budget.set_rate(rate)
        return budget.share()

    @staticmethod
    def shared(accounts: Sequence[AccountConfig]) -> list[list[AccountConfig]]:
        """The groups of accounts that use one key (two or more)."""
        groups: dict[str, list[AccountConfig]] = {}
        for account in accounts:
            groups.setdefault(budget_key(account), []).append(account)
        return [group for group in groups.values() if len(group) > 1]


def new_worker(
    account: AccountConfig,
    store: Store,
    metrics: Metrics,
    *,
    clock: Callable[[], datetime] = utcnow,
    transport: httpx.AsyncBaseTransport | None = None,
    budget: BudgetShare | None = None,
) -> Worker:
    budget = budget or RequestBudget(account.max_requests_per_minute).share()
    events = metrics.client_events(account.name)
    client = SendcloudClient(
        account.api_url,
        account.public_key.get_secret_value(),
        account.secret_key.get_secret_value(),
        timeout_seconds=account.request_timeout_seconds,
        max_connections=account.max_concurrency,
        events=events,
        budget=budget,
        auth=_auth(account),
        transport=transport,
    )
    poller = AccountPoller(
        account,
        client,
        store,
        clock=clock,
        on_cycle=metrics.observe_cycle,
        budget=budget,
        events=events,
    )
    return Worker(account, client, poller, budget)


@contextlib.asynccontextmanager
async def open_pollers(
    accounts: list[AccountConfig],
    store: Store,
    metrics: Metrics,
    *,
    clock: Callable[[], datetime] = utcnow,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[list[AccountPoller]]:
    """One client and one poller per account (for ``check`` and tests); clients closed on exit.
    Accounts of one API key share its request budget."""
    budgets = Budgets()
    workers = [
        new_worker(
            a,
            store,
            metrics,
            clock=clock,
            transport=transport,
            budget=budgets.share(a, accounts),
        )
        for a in accounts
    ]
    try:
        yield [worker.poller for worker in workers]
    finally:
        for worker in workers:
            await worker.client.aclose()


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


class SharedTransport(httpx.AsyncBaseTransport):
    """One connection pool for every account: hundreds of accounts of one API origin share
    sockets and TLS state instead of holding a pool (and an SSL context) each. Closing a
    client leaves it open; its owner closes it at shutdown."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        return None  # shared: see ``inner``


def shared_pool() -> httpx.AsyncBaseTransport:
    """The daemon's connection pool (each account's concurrency is bounded by its poller)."""
    return new_transport(max_connections=SHARED_POOL_CONNECTIONS)


#: Sockets to the API at most, over all accounts.
SHARED_POOL_CONNECTIONS = 64


#: Polls in flight when their account stops (a reload, the shutdown) get this long to finish,
#: and this long more to return once abandoned.
POLL_GRACE_SECONDS = 1.5
POLL_UNWIND_SECONDS = 0.5
_EVENT_NAMES = {
    EVENT_JOB_ERROR: "job_error",
    EVENT_JOB_MISSED: "missed",
    EVENT_JOB_MAX_INSTANCES: "skipped_overrun",
}


class Workers(Mapping[str, Worker]):
    """The accounts at work, by name: each one's worker and its poll job on the scheduler,
    the request budgets of their API keys, and the connection pool they share."""

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        clock: Callable[[], datetime],
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self._clock = clock
        self._pool = transport or shared_pool()
        self._transport = SharedTransport(self._pool)
        self._workers: dict[str, Worker] = {}
        self._budgets = Budgets()
        self._shared_budgets: list[list[str]] = []  # as announced last
        #: the poll jobs' scheduler (None before the daemon runs)
        self.scheduler: AsyncIOScheduler | None = None

    def __getitem__(self, name: str) -> Worker:
        return self._workers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._workers)

    def __len__(self) -> int:
        return len(self._workers)

    def new_scheduler(self) -> AsyncIOScheduler:
        """The scheduler of the poll jobs, its job events counted and logged; created inside
        the running loop (APScheduler's AsyncIOScheduler binds to it)."""
        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.add_listener(
            self._on_job_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES
        )
        self.scheduler = scheduler
        return scheduler

    def new(self, account: AccountConfig, accounts: Sequence[AccountConfig]) -> Worker:
        """An account's client and poller, with its share of its API key's budget
        (``accounts``: every account configured now); at work from now on."""
        worker = new_worker(
            account,
            self.store,
            self.metrics,
            clock=self._clock,
            transport=self._transport,
            budget=self._budgets.share(account, accounts),
        )
        self._workers[account.name] = worker
        return worker

    def schedule(self, worker: Worker, first: datetime | None = None) -> None:
        """The worker's poll job; its first poll runs at ``first`` (now)."""
        assert self.scheduler is not None
        account = worker.config
        worker.poller.announce_plan()
        self.scheduler.add_job(
            worker.poller.poll,
            id=account.name,
            name=f"poll {account.name}",
            **job_options(account.poll_interval_seconds, first or datetime.now(UTC)),
        )

    def remove(self, names: Sequence[str]) -> list[Worker]:
        """These accounts' workers leave, their jobs removed (``stop`` them then)."""
        assert self.scheduler is not None
        leaving = [self._workers.pop(n) for n in names]
        for worker in leaving:
            self.scheduler.remove_job(worker.config.name)
        return leaving

    async def stop(self, workers: list[Worker], *, reason: str) -> None:
        """Let polls in flight finish for a moment, then abandon the rest cleanly (their jobs
        return normally: no job error, no traceback), and close the clients."""
        pollers = [w.poller for w in workers]
        waiting = [asyncio.ensure_future(p.idle.wait()) for p in pollers]
        if waiting:
            _, pending = await asyncio.wait(waiting, timeout=POLL_GRACE_SECONDS)
            for task in pending:
                task.cancel()
        stopped = [p.account.name for p in pollers if p.stop()]
        if stopped:
            event = "shutdown_cancelled_polls" if reason == "shutdown" else "reload_cancelled_polls"
            log.info(event, polls=len(stopped), accounts=stopped)
            unwinding = [asyncio.ensure_future(p.idle.wait()) for p in pollers]
            _, pending = await asyncio.wait(unwinding, timeout=POLL_UNWIND_SECONDS)
            for task in pending:
                task.cancel()
        for worker in workers:
            worker.budget.release()
            await worker.client.aclose()

    def announce_shared_budgets(self, accounts: Sequence[AccountConfig]) -> None:
        """Once (at start, and when a reload changes them): the accounts that share an API
        key, and so one request budget (Sendcloud limits requests per key)."""
        groups = Budgets.shared(accounts)
        names = [[a.name for a in group] for group in groups]
        if names == self._shared_budgets:
            return
        self._shared_budgets = names
        for group in groups:
            log.info(
                "request_budget_shared",
                accounts=[a.name for a in group],
                max_requests_per_minute=min(a.max_requests_per_minute for a in group),
                hint="these accounts use the same API key, and Sendcloud limits requests per "
                "key: they share one request budget, each planning with an equal part of it",
            )

    async def aclose(self) -> None:
        """The shared connection pool closes (the clients are closed by ``stop``)."""
        await self._pool.aclose()

    def _on_job_event(self, event: JobEvent) -> None:
        name = _EVENT_NAMES.get(event.code, "other")
        self.metrics.scheduler_event(str(event.job_id), name)
        if name == "job_error":
            log.error(
                "poll_crashed", account=event.job_id, error=repr(getattr(event, "exception", None))
            )
        else:
            log.warning("poll_not_run", account=event.job_id, reason=name)
