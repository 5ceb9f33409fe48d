"""Availability math over explicit times: tables, and a property test that the state seconds
always add up to the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.history.availability import STATES, Interval, availability, combined

T0 = datetime(2026, 11, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def test_a_day_with_one_outage_and_an_unreadable_hour() -> None:
    intervals = [
        Interval("healthy", at(0), at(10)),
        Interval("failing", at(10), at(14)),
        Interval("unknown", at(14), at(15)),
        Interval("healthy", at(15), None),
    ]
    figures = availability(intervals, at(0), at(24), now=at(24))
    assert figures.seconds == {
        "healthy": 19 * 3600,
        "failing": 4 * 3600,
        "stale": 0,
        "not_found": 0,
        "unknown": 3600,
    }
    assert figures.ratio == pytest.approx(19 / 23)  # unknown excluded, never up nor down
    [incident] = figures.incidents
    assert (incident.started, incident.ended, incident.seconds) == (at(10), at(14), 4 * 3600)
    assert figures.mean_time_to_recovery_seconds == 4 * 3600


def test_time_no_interval_covers_and_the_future_are_unknown() -> None:
    figures = availability([Interval("healthy", at(2), at(4))], at(0), at(10), now=at(6))
    assert figures.seconds["healthy"] == 2 * 3600
    assert figures.seconds["unknown"] == 8 * 3600
    assert availability([], at(0), at(1), now=at(1)).ratio is None


def test_an_incident_across_unknown_time_is_one_incident_clipped_to_the_window() -> None:
    intervals = [
        Interval("failing", at(-5), at(2)),
        Interval("unknown", at(2), at(3)),
        Interval("failing", at(3), at(4)),
        Interval("healthy", at(4), None),
    ]
    figures = availability(intervals, at(0), at(24), now=at(24))
    [incident] = figures.incidents
    assert incident.started == at(-5)  # it began before the window
    assert incident.ended == at(4)
    assert incident.seconds == 4 * 3600  # what lies inside the window, unknown hour included
    assert figures.seconds["failing"] == 3 * 3600


def test_an_account_adds_its_integrations_up() -> None:
    one = availability([Interval("healthy", at(0), None)], at(0), at(10), now=at(10))
    two = availability([Interval("failing", at(0), None)], at(0), at(10), now=at(10))
    account = combined([one, two])
    assert account.ratio == 0.5
    assert len(account.incidents) == 1
    assert account.incidents[0].ended is None  # still failing


states = st.sampled_from(STATES)
offsets = st.integers(min_value=-48 * 3600, max_value=96 * 3600)


@given(
    st.lists(st.tuples(states, offsets, st.integers(0, 48 * 3600) | st.none()), max_size=30),
    offsets,
    st.integers(min_value=0, max_value=60 * 24 * 3600),
    offsets,
)
def test_state_seconds_always_add_up_to_the_window(
    raw: list[tuple[str, int, int | None]], start: int, length: int, now: int
) -> None:
    """Intervals as the store writes them never overlap: each ends where the next begins."""
    raw.sort(key=lambda item: item[1])
    intervals = []
    for index, (state, since, duration) in enumerate(raw):
        until = None if duration is None else since + duration
        if index + 1 < len(raw):
            following = raw[index + 1][1]
            until = following if until is None else min(until, following)
        intervals.append(
            Interval(
                state,
                T0 + timedelta(seconds=since),
                None if until is None else T0 + timedelta(seconds=until),
            )
        )
    window_from = T0 + timedelta(seconds=start)
    window_to = window_from + timedelta(seconds=length)
    figures = availability(intervals, window_from, window_to, now=T0 + timedelta(seconds=now))
    assert sum(figures.seconds.values()) == pytest.approx(length, abs=1e-6)
    assert all(value >= 0 for value in figures.seconds.values())
    ratio = figures.ratio
    assert ratio is None or 0.0 <= ratio <= 1.0
    assert all(0 <= i.seconds <= length for i in figures.incidents)


def test_the_daily_strip_takes_each_days_worst_state_and_availability() -> None:
    from monitor.history.availability import summary

    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    intervals = [
        Interval(
            "healthy", datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 28, 6, tzinfo=UTC)
        ),
        Interval(
            "failing", datetime(2026, 11, 28, 6, tzinfo=UTC), datetime(2026, 11, 28, 12, tzinfo=UTC)
        ),
        Interval(
            "healthy", datetime(2026, 11, 28, 12, tzinfo=UTC), datetime(2026, 11, 29, tzinfo=UTC)
        ),
        Interval(
            "unknown", datetime(2026, 11, 29, tzinfo=UTC), datetime(2026, 11, 29, 1, tzinfo=UTC)
        ),
        Interval("healthy", datetime(2026, 11, 29, 1, tzinfo=UTC), None),
    ]
    found = summary(intervals, now)
    assert len(found.days) == 30
    assert found.days[-1].day.isoformat() == "2026-11-30"  # today last
    by_day = {d.day.isoformat(): d for d in found.days}
    assert (by_day["2026-11-28"].worst, by_day["2026-11-28"].ratio) == ("failing", 0.75)
    assert (by_day["2026-11-29"].worst, by_day["2026-11-29"].ratio) == ("unknown", 1.0)
    assert (by_day["2026-11-27"].worst, by_day["2026-11-27"].ratio) == ("healthy", 1.0)
    assert (by_day["2026-11-30"].worst, by_day["2026-11-30"].ratio) == ("healthy", 1.0)
    assert found.windows["24h"] == 1.0
    assert found.windows["7d"] == pytest.approx(1 - 6 / (7 * 24 - 1))
