"""One poll cycle of one account: plan the requests, fetch, classify, announce changes.

The cycle reads the clock once, at its start, and passes that ``now`` down; the result is a new
:class:`AccountSnapshot` in the store. Log events are written only when something changes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import structlog

from monitor.health import Conditions, derive, transitions, utcnow
from monitor.ratelimit import RequestBudget, smallest_interval
from monitor.sendcloud import ApiError, AuthFailed, Integration, NotFound, deadline
from monitor.settings import AccountConfig
from monitor.state import AccountSnapshot, Observation, Status, Store

log = structlog.get_logger("monitor.poller")

AUTH_HINT = (
    "check this account's public and secret API key in the Sendcloud panel "
    "(Settings > Integrations > Sendcloud API) and that the keys are still active"
)


class IntegrationSource(Protocol):
    """The part of the Sendcloud client a poll needs (a real client, or a fake in tests)."""

    async def get_integration(self, integration_id: int) -> Integration: ...

    async def list_integrations(self, *, max_pages: int | None = None) -> Any: ...

    async def integration_logs(
        self, integration_id: int, *, page_size: int = 10
    ) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Plan:
    """How to fetch one cycle: walk the list (at most ``max_pages``) or GET each ID."""

    use_list: bool
    max_pages: int | None = None


def choose_plan(ids: tuple[int, ...] | None, last_list_pages: int | None) -> Plan:
    """The cheapest request plan.

    ``all`` mode must list. With N configured IDs one GET each costs N requests; the list costs
    one request per page, which is only known after a walk. So walk the list capped at N-1 pages:
    if it ends in time it was cheaper (and the next cycles know it); if it hits the cap, the IDs
    not seen yet are fetched one by one and later cycles go straight to GETs.
    """
    if ids is None:
        return Plan(use_list=True)
    n = len(ids)
    if n <= 1 or (last_list_pages is not None and last_list_pages >= n):
        return Plan(use_list=False)
    return Plan(use_list=True, max_pages=n - 1)


CycleObserver = Callable[[str, float, bool], None]
AfterCycle = Callable[[AccountSnapshot], Awaitable[object]]


def _ignore_cycle(account: str, seconds: float, ok: bool) -> None:
    return None


class AccountPoller:
    """Polls one account into the store. ``poll`` is the scheduler's job."""

    def __init__(
        self,
        account: AccountConfig,
        client: IntegrationSource,
        store: Store,
        *,
        clock: Callable[[], datetime] = utcnow,
        on_cycle: CycleObserver = _ignore_cycle,
        budget: RequestBudget | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.account = account
        self.budget = budget
        self._auth_backoff = account.auth_retry_seconds
        self._monotonic = monotonic
        self._auth_retry_at: float | None = None
        self._warned_budget = False
        self.client = client
        self.after_cycle: AfterCycle | None = None  # e.g. the alerter
        self._store = store
        self._clock = clock
        self._on_cycle = on_cycle
        self._log = log.bind(account=account.name)
        self._account_error: str | None = None
        self.idle = asyncio.Event()
        self.idle.set()

    async def poll(self) -> AccountSnapshot:
        """One full cycle; never raises for API trouble (that is recorded in the snapshot).

        Retries inside the cycle stop at a deadline within the poll interval. After an auth
        failure the account is left alone for ``auth_retry_seconds``: rejected keys do not get
        better by hammering the API.
        """
        if self._auth_retry_at is not None and self._monotonic() < self._auth_retry_at:
            return self._store.get(self.account.name)
        self.idle.clear()
        started = time.perf_counter()
        requests_before = self.budget.acquired if self.budget else 0
        token = deadline.set(self._monotonic() + 0.9 * self.account.poll_interval_seconds)
        try:
            snapshot = await self._cycle(self._clock())
            if self.after_cycle is not None:
                await self._after(snapshot)
        finally:
            deadline.reset(token)
            self.idle.set()
        self._auth_retry_at = None if snapshot.auth_ok else self._monotonic() + self._auth_backoff
        if self.budget is not None:
            self._check_budget(self.budget.acquired - requests_before)
        ok = self._account_error is None
        self._on_cycle(self.account.name, time.perf_counter() - started, ok)
        return snapshot

    def _check_budget(self, requests: int) -> None:
        """Warn once when a cycle needs more of the budget than its interval allows."""
        assert self.budget is not None
        needed = smallest_interval(requests, self.budget.per_minute)
        if needed > self.account.poll_interval_seconds and not self._warned_budget:
            self._warned_budget = True
            self._log.warning(
                "poll_interval_too_short",
                requests_per_cycle=requests,
                max_requests_per_minute=self.budget.per_minute,
                poll_interval_seconds=self.account.poll_interval_seconds,
                smallest_feasible_interval_seconds=needed,
                hint="cycles are stretched to stay within the request budget; raise "
                "poll_interval_seconds or monitor fewer integrations",
            )

    async def _after(self, snapshot: AccountSnapshot) -> None:
        """Run the after-cycle hook; its failure must not turn into a failed poll."""
        assert self.after_cycle is not None
        try:
            await self.after_cycle(snapshot)
        except Exception:
            self._log.exception("after_cycle_failed")

    async def _cycle(self, now: datetime) -> AccountSnapshot:
        previous = self._store.get(self.account.name)
        ids = self.account.integration_ids
        plan = choose_plan(ids, previous.list_pages)
        outcomes: dict[int, Integration | ApiError] = {}
        list_pages = previous.list_pages
        account_error: ApiError | None = None
        if plan.use_list:
            try:
                result = await self.client.list_integrations(max_pages=plan.max_pages)
            except ApiError as exc:
                account_error = exc
            else:
                list_pages = result.pages if result.complete else len(ids or ())
                wanted = None if ids is None else set(ids)
                outcomes.update(
                    (r.id, r) for r in result.integrations if wanted is None or r.id in wanted
                )
        expected = set(ids) if ids is not None else set(previous.integrations) | set(outcomes)
        if account_error is not None:
            outcomes.update((i, account_error) for i in expected)
        else:
            missing = sorted(expected - set(outcomes))
            outcomes.update(await self._get_many(missing))
            account_error = _account_wide_error(outcomes.values())
        self._announce_account(account_error)
        observations = self._observe(previous, outcomes, now, drop_not_found=ids is None)
        snapshot = AccountSnapshot(
            account=self.account.name,
            integrations=observations,
            cycles_completed=previous.cycles_completed + 1,
            last_cycle_success=now if account_error is None else previous.last_cycle_success,
            auth_ok=not isinstance(account_error, AuthFailed),
            account_error=account_error.reason if account_error is not None else None,
            list_pages=list_pages,
        )
        self._store.put(snapshot)
        return snapshot

    async def _get_many(self, ids: Iterable[int]) -> dict[int, Integration | ApiError]:
        """GET each ID, at most ``max_concurrency`` at a time."""
        limit = asyncio.Semaphore(self.account.max_concurrency)

        async def one(integration_id: int) -> Integration | ApiError:
            async with limit:
                try:
                    return await self.client.get_integration(integration_id)
                except ApiError as exc:
                    return exc

        ids = list(ids)
        results = await asyncio.gather(*(one(i) for i in ids))
        return dict(zip(ids, results, strict=True))

    def _observe(
        self,
        previous: AccountSnapshot,
        outcomes: Mapping[int, Integration | ApiError],
        now: datetime,
        *,
        drop_not_found: bool,
    ) -> dict[int, Observation]:
        observations: dict[int, Observation] = {}
        for integration_id, outcome in sorted(outcomes.items()):
            before = previous.integrations.get(integration_id)
            observation = self._observation(integration_id, outcome, before, now)
            self._announce(observation, before)
            if drop_not_found and observation.status is Status.NOT_FOUND:
                continue  # left the account: its series go away
            observations[integration_id] = observation
        return observations

    def _observation(
        self,
        integration_id: int,
        outcome: Integration | ApiError,
        before: Observation | None,
        now: datetime,
    ) -> Observation:
        stale_after = self.account.stale_after(integration_id)
        if isinstance(outcome, Integration):
            health = derive(outcome, now, stale_after)
            return Observation(
                integration_id=integration_id,
                status=Status.OK,
                record=outcome,
                stale_after_seconds=stale_after,
                last_success=now,
                conditions=Conditions(
                    failing=health.failing,
                    stale=health.stale,
                    not_found=False,
                    clock_skew=health.clock_skew_seconds > 0,
                ),
            )
        if isinstance(outcome, NotFound):
            return Observation(
                integration_id=integration_id,
                status=Status.NOT_FOUND,
                record=None,
                stale_after_seconds=stale_after,
                last_success=before.last_success if before else None,
                error_reason=outcome.reason,
                conditions=Conditions(failing=False, stale=False, not_found=True),
            )
        return Observation(  # keep the last good record and the last announced conditions
            integration_id=integration_id,
            status=Status.ERROR,
            record=before.record if before else None,
            stale_after_seconds=stale_after,
            last_success=before.last_success if before else None,
            error_reason=outcome.reason,
            conditions=before.conditions if before else None,
        )

    def _announce(self, current: Observation, before: Observation | None) -> None:
        """Log transitions of one integration (never on a poll where nothing changed)."""
        if current.status is Status.ERROR:
            if self._account_error is None and (
                before is None or before.status is not Status.ERROR
            ):
                self._log.warning(
                    "integration_poll_failed",
                    integration_id=current.integration_id,
                    reason=current.error_reason,
                )
            return
        if current.conditions is None:
            return
        previous = before.conditions if before is not None else None
        for event in transitions(previous, current.conditions):
            self._emit(event, current, before)

    def _emit(self, event: str, current: Observation, before: Observation | None) -> None:
        record = current.record or (before.record if before else None)
        fields: dict[str, Any] = {
            "integration_id": current.integration_id,
            "shop_name": record.shop_name if record else None,
        }
        if current.record is not None and current.last_success is not None:
            health = derive(current.record, current.last_success, current.stale_after_seconds)
            fields.update(
                failing_seconds=round(health.failing_seconds, 3),
                started_failing_at=_iso(current.record.started_failing_at),
                staleness_seconds=_round(health.staleness_seconds),
                last_fetched_at=_iso(current.record.last_fetched_at),
                stale_after_seconds=current.stale_after_seconds,
            )
            if event == "integration_clock_skew":
                fields["clock_skew_seconds"] = round(health.clock_skew_seconds, 3)
        # Transitions are debug-level: the ``alert`` events are the notification stream.
        level = "warning" if event == "integration_clock_skew" else "debug"
        getattr(self._log, level)(event, **fields)

    def _announce_account(self, error: ApiError | None) -> None:
        """Account-wide trouble is logged once per episode, not once per integration."""
        previous = self._account_error
        current = error.reason if error is not None else None
        self._account_error = current
        if current == previous:
            return
        if isinstance(error, AuthFailed):
            self._log.error("sendcloud_auth_failed", status=error.status, hint=AUTH_HINT)
        elif error is not None:
            self._log.warning("account_poll_failed", reason=current, error=str(error))
        elif previous == AuthFailed.reason:
            self._log.info("sendcloud_auth_recovered")
        else:
            self._log.info("account_poll_recovered", previous_reason=previous)


def _account_wide_error(outcomes: Iterable[Integration | ApiError]) -> ApiError | None:
    """An auth failure anywhere, or every request failing, is the account's problem."""
    values = list(outcomes)
    errors = [o for o in values if isinstance(o, ApiError) and not isinstance(o, NotFound)]
    auth = next((e for e in errors if isinstance(e, AuthFailed)), None)
    if auth is not None:
        return auth
    if errors and len(errors) == len(values):
        return errors[0]
    return None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None
