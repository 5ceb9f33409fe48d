"""Health derivation and transitions: pure functions with an explicit (or frozen) now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time

from monitor.health import Conditions, derive, transitions, utcnow
from monitor.sendcloud import Integration


def record(**fields: object) -> Integration:
    return Integration.model_validate({"id": 7, **fields})


@freeze_time("2026-11-27T12:00:00Z")
def test_failing_seconds_from_started_failing_at_with_z() -> None:
    health = derive(record(started_failing_at="2026-11-27T11:00:00Z"), utcnow(), 7200)
    assert health.failing
    assert health.failing_seconds == 3600
    assert health.clock_skew_seconds == 0


@freeze_time("2026-11-27T12:00:00Z")
def test_offsets_are_honoured() -> None:
    # 12:30+02:00 is 10:30Z: failing for 90 minutes
    health = derive(record(started_failing_at="2026-11-27T12:30:00+02:00"), utcnow(), 7200)
    assert health.failing_seconds == 5400


@freeze_time("2026-11-27T12:00:00Z")
def test_not_failing_when_null() -> None:
    health = derive(
        record(started_failing_at=None, last_fetched_at="2026-11-27T11:59:00Z"), utcnow(), 7200
    )
    assert not health.failing
    assert health.failing_seconds == 0
    assert health.staleness_seconds == 60
    assert not health.stale


@freeze_time("2026-11-27T12:00:00Z")
def test_future_started_failing_at_is_clamped_and_reported_as_skew() -> None:
    health = derive(record(started_failing_at="2026-11-27T12:05:00Z"), utcnow(), 7200)
    assert health.failing
    assert health.failing_seconds == 0
    assert health.clock_skew_seconds == 300


@freeze_time("2026-11-27T12:00:00Z")
def test_never_fetched_uses_created_at() -> None:
    health = derive(record(last_fetched_at=None, created_at="2026-11-27T09:00:00Z"), utcnow(), 7200)
    assert health.staleness_seconds == 3 * 3600
    assert health.stale


def test_no_timestamps_at_all_means_unknown_staleness_not_stale() -> None:
    health = derive(record(), datetime(2026, 1, 1, tzinfo=UTC), 7200)
    assert health.staleness_seconds is None
    assert not health.stale


@pytest.mark.parametrize(("age_seconds", "stale"), [(7199, False), (7200, False), (7201, True)])
def test_stale_is_strictly_above_threshold(age_seconds: int, stale: bool) -> None:
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    fetched = now - timedelta(seconds=age_seconds)
    assert derive(record(last_fetched_at=fetched.isoformat()), now, 7200).stale is stale


def test_timestamp_without_offset_is_read_as_utc() -> None:
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    assert derive(record(started_failing_at="2026-11-27T11:00:00"), now, 1).failing_seconds == 3600


def test_time_moves_the_values_at_later_now() -> None:
    r = record(started_failing_at="2026-11-27T11:00:00Z", last_fetched_at="2026-11-27T10:00:00Z")
    with freeze_time("2026-11-27T12:00:00Z") as frozen:
        first = derive(r, utcnow(), 7200)
        frozen.tick(timedelta(minutes=10))
        later = derive(r, utcnow(), 7200)
    assert later.failing_seconds - first.failing_seconds == 600
    assert later.staleness_seconds == 2 * 3600 + 600
    assert later.stale
    assert not first.stale


OK = Conditions(failing=False, stale=False, not_found=False)
FAILING = Conditions(failing=True, stale=False, not_found=False)
STALE = Conditions(failing=False, stale=True, not_found=False)
BOTH = Conditions(failing=True, stale=True, not_found=False)
GONE = Conditions(failing=False, stale=False, not_found=True)
SKEW = Conditions(failing=True, stale=False, not_found=False, clock_skew=True)


@pytest.mark.parametrize(
    ("previous", "current", "events"),
    [
        (None, OK, []),
        (None, FAILING, ["integration_failing"]),
        (None, BOTH, ["integration_failing", "integration_stale"]),
        (None, GONE, ["integration_not_found"]),
        (OK, OK, []),
        (OK, FAILING, ["integration_failing"]),
        (FAILING, FAILING, []),
        (FAILING, OK, ["integration_recovered"]),
        (STALE, OK, ["integration_fresh"]),
        (BOTH, OK, ["integration_recovered", "integration_fresh"]),
        (FAILING, GONE, ["integration_not_found"]),
        (GONE, GONE, []),
        (GONE, FAILING, ["integration_failing"]),
        (FAILING, SKEW, ["integration_clock_skew"]),
        (SKEW, SKEW, []),
    ],
)
def test_transitions(previous: Conditions | None, current: Conditions, events: list[str]) -> None:
    assert transitions(previous, current) == events
