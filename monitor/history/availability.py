"""Availability from state intervals: pure, explicit times, no I/O.

One definition serves every reader (status page, API, badges, report): intervals are clipped to
the window, time no interval covers is *unknown*, and

    availability = healthy / (healthy + failing + stale + not_found)

with unknown reported beside it and excluded (time the API could not be read is neither up nor
down). An incident is a failing interval — consecutive failing intervals, or failing ones with
only unknown time between them, are one incident — counted when it overlaps the window; its
duration is what lies inside the window. Mean time to recovery is over the incidents that
ended inside the window.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

STATES = ("healthy", "failing", "stale", "not_found", "unknown")
#: The states that count towards availability (unknown does not).
KNOWN = ("healthy", "failing", "stale", "not_found")


@dataclass(frozen=True, slots=True)
class Interval:
    """One integration in one state from ``since`` until ``until`` (None: still open)."""

    state: str
    since: datetime
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Incident:
    """A failing episode, clipped to the window (``ended`` is None while it goes on)."""

    started: datetime
    ended: datetime | None
    seconds: float


@dataclass(frozen=True)
class Availability:
    window_from: datetime
    window_to: datetime
    seconds: dict[str, float]  # per state; they add up to the window length
    incidents: tuple[Incident, ...] = field(default_factory=tuple)

    @property
    def known_seconds(self) -> float:
        return sum(self.seconds[state] for state in KNOWN)

    @property
    def ratio(self) -> float | None:
        """healthy / known time, or None when nothing is known of the window."""
        known = self.known_seconds
        return self.seconds["healthy"] / known if known > 0 else None

    @property
    def longest_incident_seconds(self) -> float:
        return max((i.seconds for i in self.incidents), default=0.0)

    @property
    def mean_time_to_recovery_seconds(self) -> float | None:
        ended = [i.seconds for i in self.incidents if i.ended is not None]
        return sum(ended) / len(ended) if ended else None


def availability(
    intervals: Iterable[Interval], window_from: datetime, window_to: datetime, now: datetime
) -> Availability:
    """The figures of one integration over [window_from, window_to). Open intervals last until
    ``now``; nothing is known after ``now`` or outside every interval (unknown)."""
    if window_to < window_from:
        raise ValueError("the window ends before it starts")
    seconds = dict.fromkeys(STATES, 0.0)
    ordered = sorted(intervals, key=lambda i: i.since)
    covered = 0.0
    for interval in ordered:
        start, end = _clip(interval, window_from, min(window_to, now), now)
        if end > start:
            length = (end - start).total_seconds()
            seconds[interval.state if interval.state in seconds else "unknown"] += length
            covered += length
    total = (window_to - window_from).total_seconds()
    seconds["unknown"] += max(0.0, total - covered)
    return Availability(
        window_from, window_to, seconds, tuple(_incidents(ordered, window_from, window_to, now))
    )


def combined(figures: Sequence[Availability]) -> Availability:
    """An account's figures: the state seconds and incidents of its integrations added up
    (availability is then healthy over known time of all of them)."""
    if not figures:
        raise ValueError("no figures to combine")
    seconds = dict.fromkeys(STATES, 0.0)
    incidents: list[Incident] = []
    for figure in figures:
        for state, value in figure.seconds.items():
            seconds[state] += value
        incidents += figure.incidents
    incidents.sort(key=lambda i: i.started)
    return Availability(figures[0].window_from, figures[0].window_to, seconds, tuple(incidents))


def _clip(
    interval: Interval, window_from: datetime, window_to: datetime, now: datetime
) -> tuple[datetime, datetime]:
    until = interval.until if interval.until is not None else now
    return max(interval.since, window_from), min(until, window_to)


def _incidents(
    ordered: Sequence[Interval], window_from: datetime, window_to: datetime, now: datetime
) -> list[Incident]:
    """Failing episodes: failing intervals joined across unknown gaps, clipped to the window."""
    episodes: list[tuple[datetime, datetime | None]] = []
    current: tuple[datetime, datetime | None] | None = None
    for interval in ordered:
        if interval.state == "failing":
            if current is None:
                current = (interval.since, interval.until)
            else:  # joined across unknown time
                current = (current[0], interval.until)
        elif interval.state != "unknown" and current is not None:
            episodes.append(current)
            current = None
    if current is not None:
        episodes.append(current)
    found = []
    for started, ended in episodes:
        end = ended if ended is not None else now
        if end <= window_from or started >= window_to:
            continue  # does not overlap the window
        start_in, end_in = max(started, window_from), min(end, window_to, now)
        closed = ended if ended is not None and ended <= window_to else None
        found.append(Incident(started, closed, max(0.0, (end_in - start_in).total_seconds())))
    return found


#: Worst first: the colour of a day is its worst state (as the status page orders states).
SEVERITY = ("failing", "not_found", "stale", "unknown", "healthy")
WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
STRIP_DAYS = 30


@dataclass(frozen=True, slots=True)
class Day:
    """One day (UTC) of an integration: its worst state, and its healthy and known seconds."""

    day: date
    worst: str
    healthy_seconds: float = 0.0
    known_seconds: float = 0.0

    @property
    def ratio(self) -> float | None:
        """The day's availability, or None when nothing is known of it."""
        return self.healthy_seconds / self.known_seconds if self.known_seconds > 0 else None


@dataclass(frozen=True, eq=False)  # identity: the page memoizes its HTML per summary
class Summary:
    """What the status page shows of an integration's past: the last days and the windows."""

    days: tuple[Day, ...]
    windows: dict[str, float | None]


_DAY = 86400.0
_WINDOW_SECONDS = tuple((name, span.total_seconds()) for name, span in WINDOWS.items())
_LONGEST = max(span for _, span in _WINDOW_SECONDS)


#: An interval as the database keeps it: state, since and until as Unix times (None: open).
Span = tuple[str, float, float | None]


def summary(intervals: Sequence[Interval], now: datetime, days: int = STRIP_DAYS) -> Summary:
    """The daily strip (today last) and the availability over each of WINDOWS."""
    return summary_of_spans(
        [
            (i.state, i.since.timestamp(), None if i.until is None else i.until.timestamp())
            for i in intervals
        ],
        now,
        days,
    )


def summary_of_spans(spans: Sequence[Span], now: datetime, days: int = STRIP_DAYS) -> Summary:
    """``summary`` of intervals given as Unix times, in one pass: the status page computes this
    for every integration on every refresh, straight from the rows it read."""
    first, end, steady_before = _bounds(now, days)
    if len(spans) == 1 and spans[0][2] is None and spans[0][1] <= steady_before:
        return _steady(spans[0][0], now, days)  # most of a fleet, most of the time
    times = [
        (state, since, end if until is None or until > end else until)
        for state, since, until in spans
    ]
    windows_start = [(name, end - span) for name, span in _WINDOW_SECONDS]
    healthy = dict.fromkeys(WINDOWS, 0.0)
    known = dict.fromkeys(WINDOWS, 0.0)
    for state, begins, ends in times:
        if state not in KNOWN:
            continue
        for name, window_start in windows_start:
            seconds = ends - (begins if begins > window_start else window_start)
            if seconds > 0:
                known[name] += seconds
                if state == "healthy":
                    healthy[name] += seconds
    windows = {name: healthy[name] / known[name] if known[name] > 0 else None for name in WINDOWS}
    return Summary(tuple(_daily(times, first, days, end)), windows)


def daily(intervals: Sequence[Interval], first: date, days: int, now: datetime) -> list[Day]:
    """``days`` days (UTC) from ``first``, in one pass over the intervals: each day's worst
    state (unknown when part of it is unknown and nothing worse happened) and its seconds."""
    end = now.timestamp()
    times = [
        (i.state, i.since.timestamp(), min(i.until.timestamp() if i.until else end, end))
        for i in intervals
    ]
    return _daily(times, first, days, end)


def _daily(
    times: Sequence[tuple[str, float, float]], first: date, days: int, now: float
) -> list[Day]:
    base = datetime.combine(first, time(), UTC).timestamp()
    end = min(now, base + days * _DAY)
    healthy = [0.0] * days
    known = [0.0] * days
    worst = [_RANK["unknown"]] * days
    seen = [False] * days
    covered = [0.0] * days
    unknown = _RANK["unknown"]
    for state, begins, ends in times:
        since = max(begins, base)
        until = min(ends, end)
        if until <= since:
            continue
        rank = _RANK.get(state, unknown)
        counts = state in KNOWN
        good = state == "healthy"
        index = int((since - base) // _DAY)
        day_start = base + index * _DAY
        while index < days and day_start < until:
            day_end = day_start + _DAY
            seconds = (until if until < day_end else day_end) - (
                since if since > day_start else day_start
            )
            if seconds > 0:
                covered[index] += seconds
                if counts:
                    known[index] += seconds
                    if good:
                        healthy[index] += seconds
                if not seen[index] or rank < worst[index]:
                    worst[index] = rank
                    seen[index] = True
            index += 1
            day_start = day_end
    cells = []
    dates = _dates(first, days)
    for index in range(days):
        start = base + index * _DAY
        length = max(0.0, min(start + _DAY, now) - start)
        rank = worst[index]
        if covered[index] < length - 1e-6 and unknown < rank:
            rank = unknown  # part of the day is unknown and nothing worse happened
        cells.append(Day(dates[index], SEVERITY[rank], healthy[index], known[index]))
    return cells


_RANK = {state: rank for rank, state in enumerate(SEVERITY)}


@functools.lru_cache(maxsize=16)
def _bounds(now: datetime, days: int) -> tuple[date, float, float]:
    """The strip's first day, ``now`` as a Unix time, and the time before which an interval
    still open covers the whole strip and every window."""
    first = now.astimezone(UTC).date() - timedelta(days=days - 1)
    end = now.timestamp()
    return first, end, min(datetime.combine(first, time(), UTC).timestamp(), end - _LONGEST)


@functools.lru_cache(maxsize=16)
def _dates(first: date, days: int) -> tuple[date, ...]:
    return tuple(first + timedelta(days=index) for index in range(days))


@functools.lru_cache(maxsize=16)
def _steady(state: str, now: datetime, days: int) -> Summary:
    """The summary of an integration in one state for all of the strip and every window: the
    same for all such integrations at one ``now`` (one page render)."""
    first = now.astimezone(UTC).date() - timedelta(days=days - 1)
    since = min(datetime.combine(first, time(), UTC), now - max(WINDOWS.values()))
    interval = [Interval(state, since - timedelta(seconds=1))]
    windows = {
        name: availability(interval, now - span, now, now).ratio for name, span in WINDOWS.items()
    }
    return Summary(tuple(daily(interval, first, days, now)), windows)


def _worse(state: str, than: str) -> bool:
    order = {name: rank for rank, name in enumerate(SEVERITY)}
    return order.get(state, 3) < order.get(than, 3)
