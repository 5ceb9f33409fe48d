"""Health derivation, the one source of every health fact: pure functions with an explicit
``read_at`` (or a frozen clock), and the snapshot rules for what is frozen when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time

from monitor.health import Health, State, derive, transitions, utcnow
from monitor.sendcloud import Integration, parse_integration
from monitor.store import Observation, ReadOutcome

T0 = datetime(2026, 11, 27, 12, tzinfo=UTC)
HOUR = "2026-11-27T11:00:00Z"  # one hour before T0
SOON = "2026-11-27T12:00:30Z"  # 30 s after T0: within the default 60 s tolerance
FUTURE = "2026-11-27T12:05:00Z"  # 5 min after T0: clock skew


def record(**fields: object) -> Integration:
    return parse_integration({"id": 7, **fields})[0]


# (started_failing_at, last_fetched_at, created_at) -> (state, failing s, staleness s, skew)
DERIVATION_TABLE = [
    # every combination of null timestamps
    ((None, None, None), (State.HEALTHY, 0.0, None, False)),
    ((HOUR, None, None), (State.FAILING, 3600.0, None, False)),
    ((None, HOUR, None), (State.HEALTHY, 0.0, 3600.0, False)),
    ((None, None, "2026-11-27T09:00:00Z"), (State.STALE, 0.0, 10800.0, False)),
    ((HOUR, HOUR, None), (State.FAILING, 3600.0, 3600.0, False)),
    ((HOUR, None, "2026-11-27T09:00:00Z"), (State.FAILING, 3600.0, 10800.0, False)),
    ((None, HOUR, "2026-11-20T00:00:00Z"), (State.HEALTHY, 0.0, 3600.0, False)),
    ((HOUR, "2026-11-27T08:00:00Z", HOUR), (State.FAILING, 3600.0, 14400.0, False)),
    # stale beats healthy, failing beats stale
    ((None, "2026-11-27T08:00:00Z", None), (State.STALE, 0.0, 14400.0, False)),
    # future timestamps: clamped to zero; skew only beyond the tolerance
    ((SOON, None, None), (State.FAILING, 0.0, None, False)),
    ((FUTURE, None, None), (State.FAILING, 0.0, None, True)),
    ((None, FUTURE, None), (State.HEALTHY, 0.0, 0.0, True)),
    ((None, None, FUTURE), (State.HEALTHY, 0.0, 0.0, True)),
    ((None, SOON, None), (State.HEALTHY, 0.0, 0.0, False)),
    # any RFC 3339 value is taken: far future is skew, the epoch is very stale
    (("9999-12-31T23:59:59Z", None, None), (State.FAILING, 0.0, None, True)),
    ((None, "1970-01-01T00:00:00Z", None), (State.STALE, 0.0, 1795780800.0, False)),
    # offsets are honoured; no offset reads as UTC
    (("2026-11-27T12:30:00+02:00", None, None), (State.FAILING, 5400.0, None, False)),
    (("2026-11-27T11:00:00", None, None), (State.FAILING, 3600.0, None, False)),
]


@pytest.mark.parametrize(("timestamps", "expected"), DERIVATION_TABLE)
def test_derivation_table(
    timestamps: tuple[str | None, str | None, str | None],
    expected: tuple[State, float, float | None, bool],
) -> None:
    started, fetched, created = timestamps
    health = derive(
        record(started_failing_at=started, last_fetched_at=fetched, created_at=created), T0, 7200
    )
    assert (
        health.state,
        health.failing_seconds,
        health.staleness_seconds,
        health.clock_skew,
    ) == expected
    assert health.read_at == T0


@pytest.mark.parametrize(("age_seconds", "stale"), [(7199, False), (7200, False), (7201, True)])
def test_stale_is_strictly_above_threshold(age_seconds: int, stale: bool) -> None:
    fetched = T0 - timedelta(seconds=age_seconds)
    assert derive(record(last_fetched_at=fetched.isoformat()), T0, 7200).stale is stale


def test_skew_tolerance_is_configurable() -> None:
    future = record(started_failing_at=FUTURE)  # 300 s ahead
    assert derive(future, T0, 7200, skew_tolerance_seconds=600).clock_skew is False
    assert derive(future, T0, 7200, skew_tolerance_seconds=299).clock_skew is True


def test_clamped_failure_counts_from_the_read_not_from_the_future() -> None:
    health = derive(record(started_failing_at=FUTURE), T0, 7200)
    assert health.failing_seconds_at(T0 + timedelta(seconds=90)) == 90


@freeze_time("2026-11-27T12:00:00Z")
def test_elapsed_values_extend_to_a_later_time_and_flags_do_not() -> None:
    r = record(started_failing_at=HOUR, last_fetched_at="2026-11-27T10:30:00Z")
    health = derive(r, utcnow(), 7200)
    later = utcnow() + timedelta(minutes=40)
    assert health.failing_seconds_at(later) == 3600 + 2400
    assert health.staleness_seconds_at(later) == 5400 + 2400
    assert health.stale is False  # decided at the read, not at the scrape


def observation(status: ReadOutcome, health: Health | None) -> Observation:
    rec = record(started_failing_at=HOUR) if health is not None else None
    return Observation(
        7, status, rec, health, error_reason=None if status is ReadOutcome.OK else "x"
    )


FAILING_AT_T0 = derive(record(started_failing_at=HOUR, last_fetched_at=HOUR), T0, 7200)
LATER = T0 + timedelta(hours=3)


@pytest.mark.parametrize(
    ("status", "health", "state", "values_at"),
    [
        (ReadOutcome.OK, FAILING_AT_T0, State.FAILING, LATER),  # readable: extended to now
        (ReadOutcome.ERROR, FAILING_AT_T0, State.FAILING, T0),  # unreadable: last known, frozen
        (ReadOutcome.ERROR, None, State.UNKNOWN, None),  # never read: nothing to export
        (ReadOutcome.NOT_FOUND, FAILING_AT_T0, State.NOT_FOUND, None),  # gone: no values
    ],
)
def test_snapshot_freezes_values_while_unreadable(
    status: ReadOutcome, health: Health | None, state: State, values_at: datetime | None
) -> None:
    obs = observation(status, health)
    assert obs.state is state
    assert obs.values_at(LATER) == values_at
    if values_at is not None:
        assert health is not None
        assert health.failing_seconds_at(values_at) == 3600 + (values_at - T0).total_seconds()


def test_the_frozen_value_never_crosses_a_threshold_however_long_the_outage() -> None:
    # 890 s into failing and 30 s short of stale when the API goes away
    health = derive(
        record(
            started_failing_at=(T0 - timedelta(seconds=890)).isoformat(),
            last_fetched_at=(T0 - timedelta(seconds=7170)).isoformat(),
        ),
        T0,
        7200,
    )
    frozen = observation(ReadOutcome.ERROR, health)
    for hours in (1, 24, 24 * 30):
        at = frozen.values_at(T0 + timedelta(hours=hours))
        assert at is not None
        assert health.failing_seconds_at(at) == 890
        assert health.staleness_seconds_at(at) == 7170
    assert frozen.state is State.FAILING  # as last read: 890 s, not yet past any threshold


def health_with(*, failing: bool = False, stale: bool = False, skew: bool = False) -> Health:
    return Health(
        read_at=T0,
        failing_since=T0 if failing else None,
        fetched_since=T0,
        stale_after_seconds=7200,
        stale=stale,
        clock_skew=skew,
    )


OK = health_with()
FAILING = health_with(failing=True)
STALE = health_with(stale=True)
BOTH = health_with(failing=True, stale=True)
SKEW = health_with(failing=True, skew=True)


@pytest.mark.parametrize(
    ("previous", "current", "events"),
    [
        (None, OK, []),
        (None, FAILING, ["integration_failing"]),
        (None, BOTH, ["integration_failing", "integration_stale"]),
        (OK, OK, []),
        (OK, FAILING, ["integration_failing"]),
        (FAILING, FAILING, []),
        (FAILING, OK, ["integration_recovered"]),
        (STALE, OK, ["integration_fresh"]),
        (BOTH, OK, ["integration_recovered", "integration_fresh"]),
        (FAILING, SKEW, ["integration_clock_skew"]),
        (SKEW, SKEW, []),
        (SKEW, FAILING, []),
    ],
)
def test_transitions(previous: Health | None, current: Health, events: list[str]) -> None:
    assert transitions(previous, current) == events
