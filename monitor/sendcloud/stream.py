"""The account's exception logs as a stream: ``GET /integrations/logs``, read incrementally.

Sendcloud writes an exception log each time it fails to talk to a shop, long before it gives
up and sets ``started_failing_at``. Each cycle reads the newest pages (100 logs a page, at most
``max_pages``) until it reaches the logs it has seen: the pages come newest first, so it stops
at the first page that reaches back to the position (the newest log time seen, less a grace
for logs that arrive late). Logs are taken once by their ID, whatever their order or how often
they come. When a storm has more new logs than the pages allow, the newest are read and the
rest are skipped and counted (estimated from the log IDs, which increase with time), never
silently lost: the position jumps to what was read, so a storm never takes the budget from
polling. A first start reads back ``horizon`` (1 h) only.

A restart goes on from the saved position and reads back the same ``horizon``: the logs read
before it are taken again into the recent activity (so a warning that held before the restart
holds after it) but not counted again. A log dated in the future is read as dated now (as the
health derivation clamps what the record's timestamps give): one dated tomorrow would be the
position and hide every later log. Those more than ``skew_tolerance`` ahead are counted (within
it, clocks that differ a little are not news).

What ``IntegrationErrorsRising`` judges is each integration's logs dated within ``window`` at
the read (``Activity.recent``): computed here once, it is both the daemon's condition and what
``/metrics`` exports for the shipped rule, so both count the same logs, whenever they were read.

Only what the monitor needs is kept of a log: its ID, integration, time, exception type and
response code; and, of each integration's newest log, the raw object for its cause (the
alerting redacts and allowlists it before anything is shown).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

import httpx

PAGE_SIZE = 100
MAX_PAGES = 3
HORIZON = timedelta(hours=1)
#: How late a log may arrive (its ``created_at`` older than the newest seen) and still be read.
LATE_GRACE = timedelta(minutes=5)
#: How long each integration's log times are kept (the longest early-warning window).
KEEP = timedelta(hours=1)
#: The default window of IntegrationErrorsRising (the alerting's errors_rising_window_seconds).
WINDOW = timedelta(minutes=15)
#: Exception types with a label of their own per account; the rest are ``other``.
TOP_TYPES = 10
SEEN_IDS = 50_000


class LogSource(Protocol):
    async def account_logs(
        self, url: httpx.URL | None = None, *, page_size: int = PAGE_SIZE
    ) -> tuple[list[dict[str, Any]], httpx.URL | None]: ...


@dataclass(frozen=True)
class Position:
    """Where the stream stands: the newest log read (persisted across restarts)."""

    last_id: int
    last_time: datetime


@dataclass(frozen=True)
class Activity:
    """One integration's recent exception logs: their times (within KEEP), the newest, and how
    many are dated within the stream's window at the read (``recent``)."""

    times: tuple[datetime, ...]
    newest: Mapping[str, Any]
    recent: int = 0

    def count_since(self, since: datetime) -> int:
        return sum(1 for t in self.times if t >= since)


@dataclass(frozen=True, slots=True)
class Counts:
    """The stream's per-integration counters as of one poll (what ``/metrics`` shows): logs
    read since start, the newest one's time, and the logs within the window (None until the
    stream has been read since start: unknown). Only integrations with a log are in them."""

    totals: Mapping[int, int]
    last_at: Mapping[int, datetime]
    recent: Mapping[int, int] | None = None


@dataclass(frozen=True)
class _Log:
    id: int
    integration_id: int
    created_at: datetime
    exception_type: str
    code_class: str
    raw: Mapping[str, Any]


@dataclass
class ReadResult:
    new: int = 0
    pages: int = 0
    skipped: int = 0
    invalid: int = 0
    clamped: int = 0  # new logs dated more than skew_tolerance ahead (read as dated now)
    reached: bool = True


@dataclass
class ExceptionStream:
    """One account's stream: position, recent activity per integration, and counts."""

    max_pages: int = MAX_PAGES
    horizon: timedelta = HORIZON
    position: Position | None = None
    on_position: Callable[[Position], None] = lambda position: None
    #: IntegrationErrorsRising's window: ``Activity.recent`` counts the logs within it
    window: timedelta = WINDOW
    #: how far ahead of the clock a log may be dated before it is counted as clamped
    skew_tolerance: timedelta = timedelta(seconds=60)
    #: reads that succeeded in this process (0: the recent activity is not known yet)
    reads: int = 0
    #: integration -> logs read since start (the counters of /metrics)
    totals: collections.Counter[int] = field(default_factory=collections.Counter)
    #: (exception type label, response code class) -> logs read since start
    kinds: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    skipped: int = 0
    #: logs dated more than skew_tolerance ahead of the clock, read as dated now
    clamped: int = 0
    last_at: dict[int, datetime] = field(default_factory=dict)
    _times: dict[int, collections.deque[datetime]] = field(default_factory=dict)
    _newest: dict[int, _Log] = field(default_factory=dict)
    _seen: collections.OrderedDict[int, None] = field(default_factory=collections.OrderedDict)
    _types: set[str] = field(default_factory=set)
    _floor: tuple[datetime, int] | None = None

    async def read(
        self,
        source: LogSource,
        now: datetime,
    ) -> ReadResult:
        """One cycle's read; raises the API's errors (the caller counts and logs them)."""
        first = self.reads == 0
        stop = (self.position.last_time - LATE_GRACE) if self.position else now - self.horizon
        if self.position is not None and first:
            # a restart (or an account added again): what was read before it is at or before
            # its position (the IDs seen then are not kept); the horizon is read back all the
            # same, so the recent activity is known again, without counting anything twice
            self._floor = (self.position.last_time, self.position.last_id)
            stop = min(stop, now - self.horizon)
        result = ReadResult(reached=False)
        #: (log, counted: not read before a restart, dated beyond the skew tolerance)
        fresh: list[tuple[_Log, bool, bool]] = []
        url: httpx.URL | None = None
        oldest: _Log | None = None
        while result.pages < self.max_pages:
            items, following = await source.account_logs(url, page_size=PAGE_SIZE)
            result.pages += 1
            for item in items:
                parsed = _parse(item)
                if parsed is None:
                    result.invalid += 1
                    continue
                written = parsed.created_at
                skewed = written - now > self.skew_tolerance
                if written > now:  # dated in the future: read as dated now
                    parsed = replace(parsed, created_at=now)
                if parsed.created_at < stop:
                    result.reached = True  # the page reaches back to what was read before
                    continue
                if oldest is None or parsed.created_at < oldest.created_at:
                    oldest = parsed
                if parsed.id in self._seen:
                    continue
                fresh.append((parsed, not self._before_floor(parsed, written), skewed))
            if result.reached or following is None:
                result.reached = True
                break
            url = following
        if not result.reached and self.position is not None and oldest is not None:
            result.skipped = max(0, oldest.id - self.position.last_id - 1)
            self.skipped += result.skipped
        fresh.sort(key=lambda entry: (entry[0].created_at, entry[0].id))
        for entry, counted, _ in fresh:
            self._take(entry, counted=counted)
        result.new = sum(1 for _, counted, _ in fresh if counted)
        result.clamped = sum(1 for _, counted, skewed in fresh if counted and skewed)
        self.clamped += result.clamped
        self._prune(now)
        self.reads += 1
        newest = max((e for e, _, _ in fresh), key=lambda e: (e.created_at, e.id), default=None)
        if newest is not None and (
            self.position is None
            or (newest.created_at, newest.id) > (self.position.last_time, self.position.last_id)
        ):
            self.position = Position(newest.id, newest.created_at)
            self.on_position(self.position)
        return result

    def _before_floor(self, entry: _Log, written: datetime) -> bool:
        """Whether a log was read (and counted) before this process took over the position:
        at or before it; or dated after it (it was read as dated then, being in the future)
        but written before the position's log (log IDs grow with time: it was among the
        newest when that log was read)."""
        if self._floor is None:
            return False
        floor_time, floor_id = self._floor
        if (entry.created_at, entry.id) <= self._floor:
            return True
        return entry.id <= floor_id and written > floor_time

    def counts(self, activity: Mapping[int, Activity] | None = None) -> Counts:
        """A copy of the per-integration counters, for the account's snapshot; with the
        ``activity`` of the read, the logs each integration has within the window."""
        recent = None if activity is None else {i: a.recent for i, a in activity.items()}
        return Counts(dict(self.totals), dict(self.last_at), recent)

    def activity(self, now: datetime) -> dict[int, Activity]:
        """Each integration with logs within KEEP, and its logs within ``window`` as of
        ``now``: the snapshot's ``exceptions``."""
        since = now - self.window
        return {
            integration_id: Activity(
                tuple(times), self._newest[integration_id].raw, sum(1 for t in times if t >= since)
            )
            for integration_id, times in self._times.items()
            if times
        }

    def _take(self, entry: _Log, *, counted: bool = True) -> None:
        self._seen[entry.id] = None
        while len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)
        if counted:
            self.totals[entry.integration_id] += 1
            self.kinds[(self._type_label(entry.exception_type), entry.code_class)] += 1
        self._times.setdefault(entry.integration_id, collections.deque()).append(entry.created_at)
        known = self._newest.get(entry.integration_id)
        if known is None or entry.created_at >= known.created_at:
            self._newest[entry.integration_id] = entry
            self.last_at[entry.integration_id] = entry.created_at

    def _type_label(self, exception_type: str) -> str:
        """The type as a label: the first TOP_TYPES types of the account keep theirs."""
        if exception_type in self._types:
            return exception_type
        if len(self._types) < TOP_TYPES:
            self._types.add(exception_type)
            return exception_type
        return "other"

    def _prune(self, now: datetime) -> None:
        horizon = now - max(KEEP, self.window)
        for integration_id in list(self._times):
            times = self._times[integration_id]
            while times and times[0] < horizon:
                times.popleft()
            if not times:
                del self._times[integration_id]
                self._newest.pop(integration_id, None)


def _parse(item: Mapping[str, Any]) -> _Log | None:
    """The fields the stream needs, or None for a log it cannot use."""
    log_id, integration_id = item.get("id"), item.get("integration_id")
    if not isinstance(log_id, int) or isinstance(log_id, bool) or log_id < 1:
        return None
    if not isinstance(integration_id, int) or isinstance(integration_id, bool):
        return None
    created = item.get("created_at")
    try:
        created_at = datetime.fromisoformat(created) if isinstance(created, str) else None
    except ValueError:
        created_at = None
    if created_at is None or created_at.tzinfo is None:
        return None
    kind = item.get("exception_type")
    exception_type = kind[:100] if isinstance(kind, str) and kind else "unknown"
    return _Log(
        log_id,
        integration_id,
        created_at,
        exception_type,
        code_class(item.get("response_code")),
        item,
    )


def code_class(code: object) -> str:
    """A response code as a bounded label: ``4xx``, ``5xx``, ``other`` or ``none``."""
    if not isinstance(code, int) or isinstance(code, bool):
        return "none"
    if 400 <= code < 500:
        return "4xx"
    if 500 <= code < 600:
        return "5xx"
    return "other"
