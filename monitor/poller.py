"""One poll cycle of one account: plan the requests, fetch, classify, announce changes.

The cycle reads the clock once, at its start, and passes that ``now`` down; the result is a new
:class:`AccountSnapshot` in the store. Log events are written only when something changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

import httpx
import structlog

from monitor.health import derive, transitions, utcnow
from monitor.sendcloud import (
    INTERNAL_ERROR,
    ApiError,
    AuthFailed,
    ClientEvents,
    Integration,
    ListPage,
    ListWalk,
    NoEvents,
    NotFound,
)
from monitor.sendcloud.budget import Budget, smallest_interval
from monitor.sendcloud.stream import Activity, ExceptionStream
from monitor.settings import AccountConfig
from monitor.store import AccountSnapshot, Observation, ReadOutcome, Store

#: The longest a cycle's read of the exception-log stream may take.
STREAM_SECONDS = 10.0

log = structlog.get_logger(__name__)

AUTH_HINT = (
    "check this account's public and secret API key in the Sendcloud panel "
    "(Settings > Integrations > Sendcloud API) and that the keys are still active"
)


class IntegrationSource(Protocol):
    """The part of the Sendcloud client a poll needs (a real client, or a fake in tests)."""

    async def get_integration(self, integration_id: int) -> Integration: ...

    def list_pages(
        self,
        walk: ListWalk,
        *,
        max_pages: int | None = None,
        known: Callable[[int], Integration | None] = ...,
    ) -> AsyncIterator[ListPage]: ...

    async def integration_logs(
        self, integration_id: int, *, page_size: int = 10
    ) -> list[dict[str, Any]]: ...

    async def account_logs(
        self, url: httpx.URL | None = None, *, page_size: int = 100
    ) -> tuple[list[dict[str, Any]], httpx.URL | None]: ...


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


#: Share of the poll interval one cycle may take, everything included.
CYCLE_DEADLINE_SHARE = 0.9
#: Why a cycle stops before it has read everything: its deadline, or the list's page cap.
CUT_REASONS = frozenset({"deadline", "page_cap"})


@dataclass(frozen=True, slots=True)
class Read:
    """What one request for an integration produced, and when it arrived."""

    outcome: Integration | ApiError
    at: datetime


@dataclass
class _Walk:
    """``all`` mode: the walk of the integration list under way. A cycle cut by its deadline
    keeps the pages it read, and the next cycle goes on from the page after, so a list too
    long (or too slow) for one interval is still read whole, over several cycles."""

    pages: ListWalk = field(default_factory=ListWalk)
    seen: set[int] = field(default_factory=set)  # the integrations it listed so far
    seconds: float = 0.0  # time the cycles spent on it
    cycles: int = 0  # cycles it ran in


@dataclass
class _Fetch:
    """What a cycle's fetching learnt besides the records."""

    list_pages: int | None
    account_error: ApiError | None = None
    cut: str | None = None  # "deadline" or "page_cap" when the cycle was cut short
    walked: _Walk | None = None  # ``all`` mode: the walk that ended in this cycle


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
        budget: Budget | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        events: ClientEvents | None = None,
    ) -> None:
        self.account = account
        self.budget = budget
        self._auth_backoff = account.auth_retry_seconds
        self._monotonic = monotonic
        self._auth_retry_at: float | None = None
        self._warned_budget = False
        self.client = client
        self.after_cycle: AfterCycle | None = None  # e.g. the alerter
        #: the account's exception-log stream, read once a cycle after the poll (None: off)
        self.stream: ExceptionStream | None = None
        self._stream_error: str | None = None
        self._store = store
        self._clock = clock
        self._on_cycle = on_cycle
        self._log = log.bind(account=account.name)
        self._account_error: str | None = None
        self._cut: str | None = None
        self._last_requests = 0
        self._walk = _Walk()
        self._walks_done = 0
        self._warned_invalid_logs = False
        self._skewed_logs = False
        self._running: asyncio.Task[AccountSnapshot] | None = None
        self._stopping = False
        self._crashed = False
        self._events = events or NoEvents()
        self.idle = asyncio.Event()
        self.idle.set()

    async def poll(self) -> AccountSnapshot:
        """One full cycle; never raises for API trouble (that is recorded in the snapshot).

        The whole cycle — pages, GETs, retries, 429 pauses, budget waits — runs under one
        deadline within the poll interval. After an auth failure the account is left alone for
        ``auth_retry_seconds``: rejected keys do not get better by hammering the API.
        """
        if self._stopping:  # a run the scheduler started after stop(): nothing to do
            return self._store.get(self.account.name)
        if self._auth_retry_at is not None and self._monotonic() < self._auth_retry_at:
            return self._store.get(self.account.name)
        self.idle.clear()
        started = time.perf_counter()
        requests_before = self.budget.acquired if self.budget else 0
        self._running = asyncio.create_task(self._cycle_and_after())
        try:
            snapshot = await self._running
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not self._stopping or (task is not None and task.cancelling()):
                raise  # cancelled from outside: not ours to swallow
            return self._store.get(self.account.name)  # stopped: a clean end, not a crash
        finally:
            self._running = None
            self.idle.set()
        self._auth_retry_at = None if snapshot.auth_ok else self._monotonic() + self._auth_backoff
        if self.budget is not None:
            self._last_requests = self.budget.acquired - requests_before
            if self.account.integration_ids is not None:  # all mode: when a walk ends
                self._check_budget(self._last_requests)
        ok = self._account_error is None
        self._on_cycle(self.account.name, time.perf_counter() - started, ok)
        return snapshot

    def stop(self) -> bool:
        """Abandon the cycle in flight, if any (at shutdown): its ``poll`` returns normally
        with the last snapshot, nothing half-done is stored. True if a cycle was running."""
        self._stopping = True
        if self._running is None:
            return False
        self._running.cancel()
        return True

    async def _cycle_and_after(self) -> AccountSnapshot:
        try:
            snapshot = await self._cycle()
        except Exception:  # a bug, or an answer no error class covers: never "up" from here
            snapshot = self._crashed_cycle()
        else:
            self._crashed = False
        if self.after_cycle is not None:
            await self._after(snapshot)
        return snapshot

    def _crashed_cycle(self) -> AccountSnapshot:
        """The snapshot of a cycle that raised: counted, logged once per episode with its
        traceback, and every integration unreadable (values frozen at their last good read)."""
        self._events.error("poll", INTERNAL_ERROR)
        if not self._crashed:
            self._crashed = True
            self._log.exception(
                "poll_cycle_crashed",
                hint="the account's integrations keep their last good values (integration_up "
                "0) until a cycle succeeds; please report this with the traceback",
            )
        previous = self._store.get(self.account.name)
        error = ApiError("the poll cycle failed inside the monitor", reason=INTERNAL_ERROR)
        reads = {i: Read(error, self._clock()) for i in self._expected(previous, {})}
        self._announce_account(error)
        self._walk = _Walk()
        snapshot = replace(
            previous,
            integrations=self._observe(previous, reads),
            cycles_completed=previous.cycles_completed + 1,
            account_error=error.reason,
            covered=True,  # the account answered: the monitor failed, and says so
        )
        self._store.put(snapshot)
        return snapshot

    def announce_plan(self) -> None:
        """One line at start: what is polled, how, at what cost; a warning when the plan
        cannot fit the interval within the request budget (then the interval that would).
        In ``all`` mode the cost is known after the first walk of the list: the line is
        given again then, complete (``_announce_walk``)."""
        ids = self.account.integration_ids
        if ids is None:
            plan, requests = "list (100 integrations a page)", None
        elif len(ids) == 1:
            plan, requests = "per-ID GET", 1
        else:
            plan, requests = "list capped at N-1 pages, else per-ID GETs", len(ids)
        self._log_plan(
            plan,
            "all" if ids is None else len(ids),
            requests if requests is not None else "known after the first walk",
        )
        if requests is not None:
            self._check_budget(requests)  # the same warning a real cycle would give

    def _log_plan(
        self, plan: str, integrations: int | str, requests: int | str, **extra: Any
    ) -> None:
        per_minute = self.budget.per_minute if self.budget else None
        interval = self.account.poll_interval_seconds
        share = None
        if isinstance(requests, int) and per_minute:
            share = round(requests / (per_minute * interval / 60.0), 3)
        self._log.info(
            "poll_plan",
            integrations=integrations,
            plan=plan,
            requests_per_cycle=requests,
            max_requests_per_minute=per_minute,
            budget_share=share,
            poll_interval_seconds=interval,
            stale_after_seconds=self.account.stale_after_seconds,
            **extra,
        )

    def _announce_walk(self, walk: _Walk) -> None:
        """``all`` mode, when a walk of the list has ended: after the first, the plan line
        again with the real cost (the list's pages, and the stream's page); after any, the
        warning when the walk does not fit its interval, within the budget or in time (a slow
        API), with the interval at which every integration is read."""
        self._walks_done += 1
        requests = walk.pages.pages + (1 if self.stream is not None else 0)
        if self._walks_done == 1:
            self._log_plan(
                "list (100 integrations a page)",
                len(walk.seen),
                requests,
                walk_seconds=round(walk.seconds, 3),
                walk_cycles=walk.cycles,
            )
        self._check_budget(requests, walk.seconds if walk.cycles > 1 else None)

    def _check_budget(self, requests: int, walk_seconds: float | None = None) -> None:
        """Warn once when a cycle needs more of the budget than its interval allows (or, for a
        walk of the list spread over several cycles, more time): the interval named is the
        smallest at which a cycle fits within its deadline, and the one at which each
        integration is read meanwhile."""
        if self.budget is None or self._warned_budget:
            return
        needed = smallest_interval(requests, self.budget.per_minute, CYCLE_DEADLINE_SHARE)
        if walk_seconds is not None:
            needed = max(needed, math.ceil(walk_seconds / CYCLE_DEADLINE_SHARE))
        if needed <= self.account.poll_interval_seconds:
            return
        self._warned_budget = True
        listing = self.account.integration_ids is None
        self._log.warning(
            "poll_interval_too_short",
            requests_per_cycle=requests,
            max_requests_per_minute=self.budget.per_minute,
            poll_interval_seconds=self.account.poll_interval_seconds,
            smallest_feasible_interval_seconds=needed,
            **({"walk_seconds": round(walk_seconds, 3)} if walk_seconds is not None else {}),
            hint=(
                "the list walk goes on over several cycles: each integration is read about "
                "every smallest_feasible_interval_seconds"
                if listing
                else "cycles are stretched to stay within the request budget"
            )
            + "; raise poll_interval_seconds or monitor fewer integrations",
        )

    async def _after(self, snapshot: AccountSnapshot) -> None:
        """Run the after-cycle hook; its failure must not turn into a failed poll."""
        assert self.after_cycle is not None
        try:
            await self.after_cycle(snapshot)
        except Exception:
            self._log.exception("after_cycle_failed")

    async def _cycle(self) -> AccountSnapshot:
        # the exception-log stream is read beside the poll, within the same deadline, once a
        # poll has shown the account readable (never beside the first poll, nor after an
        # account-wide failure: rejected keys cost one request a back-off, not two)
        previous = self._store.get(self.account.name)
        readable = previous.cycles_completed > 0 and previous.account_error is None
        cycle = self.budget.cycle() if self.budget is not None else contextlib.nullcontext()
        with cycle:  # background requests (cause lookups) wait for a full bucket meanwhile
            streaming = None
            if self.stream is not None and readable:
                streaming = asyncio.create_task(self._read_stream())
            try:
                return await self._poll_cycle(streaming)
            finally:
                if streaming is not None and not streaming.done():
                    streaming.cancel()  # a poll cancelled (shutdown, reload) ends its read too

    async def _poll_cycle(
        self, streaming: asyncio.Task[Mapping[int, Activity]] | None
    ) -> AccountSnapshot:
        previous = self._store.get(self.account.name)
        reads: dict[int, Read] = {}
        fetch = _Fetch(list_pages=previous.list_pages)
        deadline = self._monotonic() + self._deadline_seconds()
        try:
            async with asyncio.timeout(self._deadline_seconds()):
                await self._fetch(previous, reads, fetch)
        except TimeoutError:
            fetch.cut = "deadline"
        expected = self._expected(previous, reads)
        unread = expected - reads.keys()
        # what was read before and not this time keeps its last values as they are: past the
        # deadline the next cycle reads it first (the walk goes on from here, the GETs go
        # oldest first), and a walk that ended here read it in an earlier cycle. Past the page
        # cap it will not be read: unreadable (frozen). What was never read is unknown.
        walked = fetch.walked.seen if fetch.walked is not None else set()
        kept = {
            i: previous.integrations[i]
            for i in unread
            if i in previous.integrations and (fetch.cut == "deadline" or i in walked)
        }
        if fetch.cut is None:
            self._cut = None
        else:
            self._announce_cut(fetch.cut, read=len(reads), unread=len(unread))
            if not reads and fetch.account_error is None:
                fetch.account_error = ApiError("poll cycle cut short", reason=fetch.cut)
            error = ApiError("not read before the cycle was cut short", reason=fetch.cut)
            reads.update((i, Read(error, self._clock())) for i in unread - kept.keys())
        account_error = fetch.account_error
        if account_error is not None:
            at = self._clock()
            reads = {i: Read(account_error, at) for i in expected}
            kept = {}
        else:
            account_error = _account_wide_error(r.outcome for r in reads.values())
        self._announce_account(account_error)
        observations = {**kept, **self._observe(previous, reads)}
        exceptions = previous.exceptions
        if streaming is not None and account_error is not None:
            streaming.cancel()  # the account cannot be read: neither can its stream
        elif streaming is not None:
            exceptions = await self._stream_result(streaming, deadline - self._monotonic())
        known = self.stream is None or self.stream.reads > 0
        snapshot = AccountSnapshot(
            account=self.account.name,
            integrations=observations,
            cycles_completed=previous.cycles_completed + 1,
            last_cycle_success=self._clock()
            if account_error is None
            else previous.last_cycle_success,
            auth_ok=not isinstance(account_error, AuthFailed),
            account_error=account_error.reason if account_error is not None else None,
            list_pages=fetch.list_pages,
            covered=previous.covered or self._covered(fetch, account_error, observations),
            exceptions=exceptions,
            exceptions_known=known,
            exception_counts=self.stream.counts(exceptions if known else None)
            if self.stream is not None
            else None,
        )
        self._store.put(snapshot)
        if fetch.walked is not None:
            self._announce_walk(fetch.walked)
        return snapshot

    def _covered(
        self,
        fetch: _Fetch,
        account_error: ApiError | None,
        observations: Mapping[int, Observation],
    ) -> bool:
        """Whether this cycle completes the account's first full read: the account answered
        as a whole, a walk of the list ended, or (configured IDs) each one was reached."""
        if account_error is not None:
            return account_error.reason not in CUT_REASONS
        if self.account.integration_ids is None:
            return fetch.walked is not None or fetch.cut is None
        return all(
            o.health is not None or o.error_reason not in CUT_REASONS for o in observations.values()
        )

    async def _stream_result(
        self, streaming: asyncio.Task[Mapping[int, Activity]], remaining: float
    ) -> Mapping[int, Activity]:
        """The stream's read, given what is left of the cycle's deadline: a read that does
        not finish in time is dropped (its logs come with the next cycle's)."""
        assert self.stream is not None
        try:
            return await asyncio.wait_for(streaming, max(0.0, remaining))
        except TimeoutError:
            self._stream_failed("deadline")
            return self.stream.activity(self._clock())

    def _stream_failed(self, reason: str) -> None:
        if self._stream_error != reason:
            self._log.warning("exception_logs_unreadable", reason=reason)
        self._stream_error = reason

    async def _read_stream(self) -> Mapping[int, Activity]:
        """The cycle's read of the exception-log stream (beside the poll, within the same
        budget, bounded in pages and time); its failure is one warning and costs the poll
        nothing: the activity known stays."""
        assert self.stream is not None
        now = self._clock()
        try:
            async with asyncio.timeout(STREAM_SECONDS):
                result = await self.stream.read(self.client, now)
        except (ApiError, TimeoutError) as exc:
            self._stream_failed(exc.reason if isinstance(exc, ApiError) else "timeout")
            return self.stream.activity(now)
        if self._stream_error is not None:
            self._log.info("exception_logs_readable")
            self._stream_error = None
        if result.skipped:
            self._log.warning(
                "exception_logs_skipped",
                skipped=result.skipped,
                pages=result.pages,
                hint="more new exception logs than stream_max_pages allow in one cycle: the "
                "newest were read",
            )
        self._announce_unusable_logs(result.invalid, result.clamped)
        return self.stream.activity(now)

    def _announce_unusable_logs(self, invalid: int, clamped: int) -> None:
        """Logs of a stream page that cannot be used are counted (``sendcloud_api_errors_total
        {endpoint="account_logs",reason="invalid_record"}``) with one warning; logs dated
        beyond the skew tolerance are read as dated now, counted by the stream, with one
        warning per episode."""
        for _ in range(invalid):
            self._events.error("account_logs", "invalid_record")
        if invalid and not self._warned_invalid_logs:
            self._warned_invalid_logs = True
            self._log.warning(
                "exception_logs_invalid",
                invalid=invalid,
                hint="exception logs without a usable id, integration_id or created_at are "
                "skipped; they are counted in sendcloud_api_errors_total",
            )
        if clamped and not self._skewed_logs:
            self._log.warning(
                "exception_log_clock_skew",
                logs=clamped,
                tolerance_seconds=self.account.clock_skew_tolerance_seconds,
                hint="exception logs dated in the future are read as dated now; check the "
                "clocks (sendcloud_exception_logs_clamped_total counts them)",
            )
        self._skewed_logs = clamped > 0

    def _deadline_seconds(self) -> float:
        """90 % of the interval. With configured IDs, 90 % of the interval the request budget
        makes necessary when that is longer, so a cycle that cannot fit its interval is
        stretched (with one warning) instead of cut at the same place every time; in ``all``
        mode a walk cut short goes on from where it stopped next cycle instead."""
        interval = self.account.poll_interval_seconds
        ids = self.account.integration_ids
        if self.budget is not None and ids is not None:
            expected = max(self._last_requests, len(ids))
            needed = smallest_interval(expected, self.budget.per_minute, CYCLE_DEADLINE_SHARE)
            interval = max(interval, needed)
        return CYCLE_DEADLINE_SHARE * interval

    def _expected(self, previous: AccountSnapshot, reads: Mapping[int, Read]) -> set[int]:
        """The integrations this cycle is about: the configured IDs, or in ``all`` mode every
        one known before or seen now (an unreadable one keeps its last values)."""
        ids = self.account.integration_ids
        return set(ids) if ids is not None else previous.integrations.keys() | reads.keys()

    async def _fetch(
        self, previous: AccountSnapshot, reads: dict[int, Read], fetch: _Fetch
    ) -> None:
        """Fill ``reads`` as answers arrive, so a cycle cut short keeps what it got."""
        ids = self.account.integration_ids
        if ids is None:
            await self._walk_list(previous, reads, fetch)
            return
        plan = choose_plan(ids, previous.list_pages)
        if plan.use_list:
            walk = ListWalk()
            wanted = set(ids)
            try:
                async for page in self.client.list_pages(
                    walk, max_pages=plan.max_pages, known=_last_records(previous)
                ):
                    _take_page(page, reads, self._clock(), wanted)
            except ApiError as exc:
                fetch.account_error = exc
                return
            fetch.list_pages = walk.pages if walk.done else len(ids)
        missing = self._expected(previous, reads) - reads.keys()
        await self._get_many(_oldest_read_first(missing, previous), reads)

    async def _walk_list(
        self, previous: AccountSnapshot, reads: dict[int, Read], fetch: _Fetch
    ) -> None:
        """``all`` mode: walk the list from where the last cycle stopped, each page kept as it
        arrives. When the walk ends, the integrations known but not listed are confirmed with
        a GET (a 404: gone), and — if this cycle did not begin that walk — a new one starts
        at the first page, within what is left of the deadline."""
        fresh = self._walk.pages.pages == 0
        while True:
            walk = self._walk
            walk.cycles += 1
            started = self._monotonic()
            try:
                async for page in self.client.list_pages(walk.pages, known=_last_records(previous)):
                    walk.seen.update(_take_page(page, reads, self._clock()))
            except ApiError as exc:
                fetch.account_error = exc
                self._walk = _Walk()  # the next cycle starts over (a bad cursor, a loop)
                return
            finally:
                walk.seconds += self._monotonic() - started
            self._walk = _Walk()
            if not walk.pages.done:  # the page cap: a cursor that never ends
                fetch.cut = "page_cap"  # keep the rest as they were
                return
            fetch.list_pages = walk.pages.pages
            fetch.walked = walk
            missing = previous.integrations.keys() - walk.seen - reads.keys()
            await self._get_many(_oldest_read_first(missing, previous), reads)
            if fresh:
                return
            fresh = True  # a walk that began in an earlier cycle ended: begin the next one

    async def _get_many(self, ids: Iterable[int], reads: dict[int, Read]) -> None:
        """GET each ID, at most ``max_concurrency`` at a time, recording each on arrival."""
        limit = asyncio.Semaphore(self.account.max_concurrency)

        async def one(integration_id: int) -> None:
            async with limit:
                outcome: Integration | ApiError
                try:
                    outcome = await self.client.get_integration(integration_id)
                except ApiError as exc:
                    outcome = exc
                reads[integration_id] = Read(outcome, self._clock())

        await asyncio.gather(*(one(i) for i in ids))

    def _observe(
        self, previous: AccountSnapshot, reads: Mapping[int, Read]
    ) -> dict[int, Observation]:
        drop_not_found = self.account.integration_ids is None
        observations: dict[int, Observation] = {}
        for integration_id, read in sorted(reads.items()):
            before = previous.integrations.get(integration_id)
            observation = self._observation(integration_id, read, before)
            self._announce(observation, before)
            if drop_not_found and observation.status is ReadOutcome.NOT_FOUND:
                continue  # left the account: its series go away
            observations[integration_id] = observation
        return observations

    def _observation(
        self, integration_id: int, read: Read, before: Observation | None
    ) -> Observation:
        """Derive health once, at the time the record arrived; keep the last good one (frozen)
        when the integration could not be read."""
        outcome = read.outcome
        if isinstance(outcome, Integration):
            health = derive(
                outcome,
                read.at,
                self.account.stale_after(integration_id),
                self.account.clock_skew_tolerance_seconds,
            )
            return Observation(integration_id, ReadOutcome.OK, outcome, health)
        not_found = isinstance(outcome, NotFound)
        since = before.unreadable_since if before is not None else None
        return Observation(
            integration_id,
            ReadOutcome.NOT_FOUND if not_found else ReadOutcome.ERROR,
            before.record if before else None,
            before.health if before else None,
            error_reason=outcome.reason,
            unreadable_since=None if not_found else (since or read.at),
        )

    def _announce(self, current: Observation, before: Observation | None) -> None:
        """Log transitions of one integration (never on a poll where nothing changed)."""
        was_found = before is None or before.status is not ReadOutcome.NOT_FOUND
        if current.status is ReadOutcome.NOT_FOUND:
            if was_found:
                self._emit("integration_not_found", current)
            return
        if current.status is ReadOutcome.ERROR:
            if self._account_error is None and (
                before is None or before.status is not ReadOutcome.ERROR
            ):
                self._log.warning(
                    "integration_poll_failed",
                    integration_id=current.integration_id,
                    reason=current.error_reason,
                )
            return
        assert current.health is not None
        previous = before.health if before is not None and was_found else None
        for event in transitions(previous, current.health):
            self._emit(event, current)

    def _emit(self, event: str, current: Observation) -> None:
        record, health = current.record, current.health
        fields: dict[str, Any] = {
            "integration_id": current.integration_id,
            "shop_name": record.shop_name if record else None,
        }
        if record is not None and health is not None and current.status is ReadOutcome.OK:
            fields.update(
                failing_seconds=round(health.failing_seconds, 3),
                started_failing_at=_iso(record.started_failing_at),
                staleness_seconds=_round(health.staleness_seconds),
                last_fetched_at=_iso(record.last_fetched_at),
                stale_after_seconds=health.stale_after_seconds,
            )
        # Transitions are debug-level: the ``alert`` events are the notification stream.
        level = "warning" if event == "integration_clock_skew" else "debug"
        getattr(self._log, level)(event, **fields)

    def _announce_cut(self, reason: str, *, read: int, unread: int) -> None:
        """Once per episode: a cycle that ran out of time or pages keeps the last values."""
        if reason == self._cut:
            return
        self._cut = reason
        self._log.warning(
            "poll_cycle_cut_short",
            reason=reason,
            integrations_read=read,
            integrations_kept=unread,
            hint="the last good values are kept for what was not read; lengthen "
            "poll_interval_seconds if this repeats",
        )

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


def _take_page(
    page: ListPage, reads: dict[int, Read], at: datetime, wanted: set[int] | None = None
) -> list[int]:
    """One list page's records (and its unreadable ones) into ``reads``; returns the IDs."""
    taken = []
    for record in page.integrations:
        if wanted is None or record.id in wanted:
            reads[record.id] = Read(record, at)
            taken.append(record.id)
    for integration_id, exc in page.unreadable.items():
        if wanted is None or integration_id in wanted:
            reads[integration_id] = Read(exc, at)
            taken.append(integration_id)
    return taken


def _oldest_read_first(ids: Iterable[int], previous: AccountSnapshot) -> list[int]:
    """Never-read integrations first, then the longest unread: a cycle cut short by its
    deadline reads different integrations next time instead of starving the same ones."""

    def key(integration_id: int) -> tuple[float, int]:
        before = previous.integrations.get(integration_id)
        last = before.last_success if before is not None else None
        return (last.timestamp() if last is not None else float("-inf"), integration_id)

    return sorted(ids, key=key)


def _last_records(snapshot: AccountSnapshot) -> Callable[[int], Integration | None]:
    """The last record read of each integration, by id."""

    def known(integration_id: int) -> Integration | None:
        observation = snapshot.integrations.get(integration_id)
        return observation.record if observation is not None else None

    return known


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
