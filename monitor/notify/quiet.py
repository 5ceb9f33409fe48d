"""Planned quiet, pure: maintenance windows and mutes, and which alerts they hold.

A maintenance window is a one-off ``start``/``end``, or a recurring time interval with the
fields of Alertmanager's ``time_intervals`` (``times``, ``weekdays``, ``days_of_month``,
``months``, ``years``, in ``location``, an IANA zone), with matchers as in routes. A mute is
made on the spot (an account, one of its integrations or a type of them, until a time, with a
reason and who made it). While either holds an alert its conditions are still evaluated and
shown; only its notifications wait.
"""

from __future__ import annotations

import calendar
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from monitor.notify.routes import Matchers

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = tuple(m.lower() for m in calendar.month_name[1:])
#: How far ahead the next start or end of a recurring window is looked for.
HORIZON = timedelta(days=32)


@dataclass(frozen=True)
class TimeRange:
    """Minutes of the day, [start, end): ``start_time: "09:00"``, ``end_time: "17:30"``."""

    start_minute: int
    end_minute: int


@dataclass(frozen=True)
class TimeInterval:
    """Alertmanager's time interval: every given field must match (an absent one matches
    all). Ranges are inclusive, as in Alertmanager; days of the month may count from the end
    (-1 is the last day)."""

    times: tuple[TimeRange, ...] = ()
    weekdays: tuple[tuple[int, int], ...] = ()  # 0 = Monday
    days_of_month: tuple[tuple[int, int], ...] = ()
    months: tuple[tuple[int, int], ...] = ()  # 1 = January
    years: tuple[tuple[int, int], ...] = ()
    location: str = "UTC"

    def contains(self, at: datetime) -> bool:
        local = at.astimezone(ZoneInfo(self.location))
        minute = local.hour * 60 + local.minute
        if self.times and not any(r.start_minute <= minute < r.end_minute for r in self.times):
            return False
        if self.weekdays and not _within(local.weekday(), self.weekdays):
            return False
        if self.days_of_month and not self._day_matches(local.date()):
            return False
        if self.months and not _within(local.month, self.months):
            return False
        return not self.years or _within(local.year, self.years)

    def _day_matches(self, day: date) -> bool:
        last = calendar.monthrange(day.year, day.month)[1]
        for start, end in self.days_of_month:
            low = start if start > 0 else last + start + 1
            high = end if end > 0 else last + end + 1
            if low <= day.day <= high:
                return True
        return False


def _within(value: int, ranges: Sequence[tuple[int, int]]) -> bool:
    return any(low <= value <= high for low, high in ranges)


@dataclass(frozen=True)
class Window:
    """A named maintenance window: a one-off [start, end) or a recurring interval."""

    name: str
    matchers: Matchers = field(default_factory=Matchers)
    start: datetime | None = None
    end: datetime | None = None
    interval: TimeInterval | None = None

    def active(self, at: datetime) -> bool:
        if self.interval is None:
            return self.start is not None and self.end is not None and self.start <= at < self.end
        return self.interval.contains(at)

    def until(self, at: datetime) -> datetime | None:
        """When the window active at ``at`` ends (None: not within the horizon)."""
        if self.interval is None:
            return self.end
        return _scan(self.interval, at, want=False)

    def next_start(self, at: datetime) -> datetime | None:
        """When the window next begins after ``at`` (None: not within the horizon)."""
        if self.interval is None:
            return self.start if self.start is not None and self.start > at else None
        if self.interval.contains(at):
            ends = _scan(self.interval, at, want=False)
            return None if ends is None else _scan(self.interval, ends, want=True)
        return _scan(self.interval, at, want=True)


def _scan(interval: TimeInterval, at: datetime, *, want: bool) -> datetime | None:
    """The first minute from ``at`` on where ``contains`` is ``want``."""
    minute = at.replace(second=0, microsecond=0)
    if minute < at:
        minute += timedelta(minutes=1)
    return _scan_from(interval, minute, want)


@functools.lru_cache(maxsize=256)
def _scan_from(interval: TimeInterval, minute: datetime, want: bool) -> datetime | None:
    """``_scan`` from a whole minute: every evaluation and scrape of that minute asks the
    same (a month of minutes is a few tenths of a second)."""
    end = minute + HORIZON
    while minute < end:
        if interval.contains(minute) == want:
            return minute
        minute += timedelta(minutes=1)
    return None


@dataclass(frozen=True)
class Mute:
    """Made on the spot: the account's alerts (or one integration's, or one type's) are held
    until ``until``."""

    id: str
    account: str
    until: datetime
    reason: str
    author: str
    created: datetime
    integration_id: int | None = None
    integration_type: str | None = None

    def matches(self, labels: Mapping[str, Any]) -> bool:
        if labels.get("account") != self.account:
            return False
        if self.integration_id is not None and labels.get("integration_id") != self.integration_id:
            return False
        return self.integration_type is None or labels.get("integration_type") == (
            self.integration_type
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "account": self.account,
            "integration_id": self.integration_id,
            "integration_type": self.integration_type,
            "until": _iso(self.until),
            "reason": self.reason,
            "author": self.author,
            "created": _iso(self.created),
        }


@dataclass(frozen=True)
class Hold:
    """Why an alert's notifications wait, and until when."""

    reason: str  # "maintenance" or "mute"
    until: datetime | None
    text: str  # "in maintenance (NAME) until T" or "muted by AUTHOR until T: REASON"

    @classmethod
    def of_mute(cls, mute: Mute) -> Hold:
        text = f"muted by {mute.author} until {_iso(mute.until)}: {mute.reason}"
        return cls("mute", mute.until, text)

    @classmethod
    def of_window(cls, window: Window, now: datetime) -> Hold:
        until = window.until(now)
        text = f"in maintenance ({window.name})" + (f" until {_iso(until)}" if until else "")
        return cls("maintenance", until, text)


@dataclass(frozen=True)
class Quiet:
    """The windows and mutes in force at one moment."""

    windows: tuple[Window, ...] = ()
    mutes: tuple[Mute, ...] = ()

    def at(self, now: datetime) -> ActiveQuiet:
        """What holds at ``now``: the active windows and unexpired mutes, for many lookups."""
        return ActiveQuiet(
            now,
            tuple(w for w in self.windows if w.active(now)),
            tuple(m for m in self.mutes if m.until > now),
        )

    def hold(self, labels: Mapping[str, Any], now: datetime) -> Hold | None:
        return self.at(now).hold(labels)


@dataclass(frozen=True)
class ActiveQuiet:
    now: datetime
    windows: tuple[Window, ...]
    mutes: tuple[Mute, ...]

    def __bool__(self) -> bool:
        return bool(self.windows or self.mutes)

    def hold(self, labels: Mapping[str, Any]) -> Hold | None:
        """The hold of an alert with these labels (a mute before a window), or None."""
        for mute in self.mutes:
            if mute.matches(labels):
                return Hold.of_mute(mute)
        for window in self.windows:
            if window.matchers.matches(labels):
                return Hold.of_window(window, self.now)
        return None

    def integration_hold(
        self, account: str, integration_id: int, integration_type: str | None
    ) -> Hold | None:
        """The hold of every alert of an integration (windows restricted to an alert or a
        severity hold only those: they are not an integration's hold)."""
        return self._every_alert(
            {
                "account": account,
                "integration_id": integration_id,
                "integration_type": integration_type,
            }
        )

    def account_hold(self, account: str) -> Hold | None:
        """The hold of every account-level alert of an account (``SendcloudAuthFailing``,
        ``SendcloudAPIUnreachable``): a mute of the whole account, or a window that takes the
        account's own alerts (one restricted to an alert or a severity holds only those; one
        restricted to integrations, none of them)."""
        return self._every_alert({"account": account, "integration_id": None})

    def _every_alert(self, labels: Mapping[str, Any]) -> Hold | None:
        for mute in self.mutes:
            if mute.matches(labels):
                return Hold.of_mute(mute)
        for window in self.windows:
            m = window.matchers
            if m.alert is None and m.severity is None and m.matches(labels):
                return Hold.of_window(window, self.now)
        return None


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``2h``, ``1d``, ``1w``, or ``1h30m``; raises ValueError."""
    total, number = 0, ""
    for char in text.strip():
        if char.isdigit():
            number += char
        elif char in _UNITS and number:
            total += int(number) * _UNITS[char]
            number = ""
        else:
            raise ValueError(f"expected a duration such as 30m, 2h or 1d, not {text!r}")
    if number or total <= 0:
        raise ValueError(f"expected a duration such as 30m, 2h or 1d, not {text!r}")
    return timedelta(seconds=total)


def parse_minutes(text: str) -> int:
    """``"HH:MM"`` as minutes of the day, ``"24:00"`` allowed; raises ValueError."""
    hours, sep, minutes = text.partition(":")
    if not (sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError(f"expected HH:MM, not {text!r}")
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > 24 * 60:
        raise ValueError(f"not a time of day: {text!r}")
    return value


def parse_ranges(
    values: Sequence[str], names: Sequence[str], low: int, high: int
) -> tuple[tuple[int, int], ...]:
    """Alertmanager's ``"monday:friday"``, ``"1:5"``, ``"-1"``, ``"december"``; raises
    ValueError. ``names`` (lower case) map to ``low``, ``low + 1``, ..."""
    found = []
    for value in values:
        start, _, end = str(value).partition(":")
        bounds = [_one(x, names, low, high) for x in (start, end or start)]
        if (bounds[0] >= 0) == (bounds[1] >= 0) and bounds[0] > bounds[1]:
            raise ValueError(f"a range must not run backwards: {value!r}")
        found.append((bounds[0], bounds[1]))
    return tuple(found)


def _one(text: str, names: Sequence[str], low: int, high: int) -> int:
    text = text.strip().lower()
    if text in names:
        return low + names.index(text)
    try:
        number = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither a name nor a number") from None
    if not (low <= number <= high or (low == 1 and high == 31 and -31 <= number <= -1)):
        raise ValueError(f"{number} is out of range {low}..{high}")
    return number


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None
