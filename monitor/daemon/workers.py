"""The per-account workers: each account's client and poller, the request budget of each API
key (shared by the accounts configured with it), the connection pool every account shares."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import httpx

from monitor.exporter.metrics import Metrics
from monitor.health import utcnow
from monitor.poller import AccountPoller
from monitor.sendcloud import SendcloudClient
from monitor.sendcloud.budget import BudgetShare, RequestBudget, Sleep
from monitor.sendcloud.oauth import OAuth2ClientCredentials
from monitor.sendcloud.transport import new_transport
from monitor.settings import AccountConfig
from monitor.store import Store


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
