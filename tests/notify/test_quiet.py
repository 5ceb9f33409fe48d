"""Maintenance windows and mutes, pure: explicit times, Alertmanager's time-interval semantics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from monitor.notify.quiet import (
    MONTHS,
    WEEKDAYS,
    Mute,
    Quiet,
    TimeInterval,
    TimeRange,
    Window,
    parse_duration,
    parse_minutes,
    parse_ranges,
)
from monitor.notify.routes import Matchers
from monitor.settings import MaintenanceSettings

# 2026-12-01 is a Tuesday
TUESDAY_NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def interval(**fields: object) -> TimeInterval:
    return MaintenanceSettings.model_validate({"name": "w", **fields}).window().interval  # type: ignore[return-value]


def test_times_are_minutes_of_the_day_end_exclusive() -> None:
    evening = interval(times=[{"start_time": "18:00", "end_time": "24:00"}])
    assert evening.contains(TUESDAY_NOON.replace(hour=18))
    assert evening.contains(TUESDAY_NOON.replace(hour=23, minute=59))
    assert not evening.contains(TUESDAY_NOON.replace(hour=17, minute=59))
    assert not evening.contains(TUESDAY_NOON.replace(hour=0))


def test_weekdays_months_years_are_inclusive_ranges_by_name_or_number() -> None:
    workdays = interval(weekdays=["monday:friday"])
    assert workdays.contains(TUESDAY_NOON)
    assert not workdays.contains(TUESDAY_NOON + timedelta(days=4))  # Saturday
    assert interval(months=["november:december"]).contains(TUESDAY_NOON)
    assert not interval(months=["1:11"]).contains(TUESDAY_NOON)
    assert interval(years=["2026"]).contains(TUESDAY_NOON)
    assert not interval(years=["2027:2030"]).contains(TUESDAY_NOON)


def test_days_of_the_month_count_from_the_end_too() -> None:
    last = interval(days_of_month=["-1"])
    assert last.contains(datetime(2026, 2, 28, tzinfo=UTC))
    assert not last.contains(datetime(2026, 2, 27, tzinfo=UTC))
    assert last.contains(datetime(2028, 2, 29, tzinfo=UTC))  # a leap year
    first_days = interval(days_of_month=["1:3", "-2:-1"])
    assert first_days.contains(TUESDAY_NOON)
    assert first_days.contains(datetime(2026, 12, 30, tzinfo=UTC))
    assert not first_days.contains(datetime(2026, 12, 15, tzinfo=UTC))


def test_the_location_decides_the_day_and_the_hour_across_daylight_saving() -> None:
    amsterdam = interval(
        times=[{"start_time": "02:00", "end_time": "03:00"}], location="Europe/Amsterdam"
    )
    assert amsterdam.contains(datetime(2026, 12, 1, 1, 30, tzinfo=UTC))  # winter: UTC+1
    assert amsterdam.contains(datetime(2026, 7, 1, 0, 30, tzinfo=UTC))  # summer: UTC+2
    assert not amsterdam.contains(datetime(2026, 7, 1, 1, 30, tzinfo=UTC))
    # Monday in Auckland while still Sunday in UTC
    monday = interval(weekdays=["monday"], location="Pacific/Auckland")
    assert monday.contains(datetime(2026, 11, 29, 20, 0, tzinfo=UTC))


def test_a_recurring_window_knows_when_it_ends_and_starts_again() -> None:
    nightly = Window("nightly", interval=TimeInterval(times=(TimeRange(120, 210),)))
    inside = TUESDAY_NOON.replace(hour=2, minute=30)
    assert nightly.active(inside)
    assert nightly.until(inside) == TUESDAY_NOON.replace(hour=3, minute=30)
    assert nightly.next_start(inside) == datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
    assert nightly.next_start(TUESDAY_NOON) == datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
    one_off = Window("migration", start=TUESDAY_NOON, end=TUESDAY_NOON + timedelta(hours=2))
    assert not one_off.active(TUESDAY_NOON - timedelta(seconds=1))
    assert one_off.active(TUESDAY_NOON)
    assert not one_off.active(TUESDAY_NOON + timedelta(hours=2))
    assert one_off.next_start(TUESDAY_NOON - timedelta(hours=1)) == TUESDAY_NOON
    assert one_off.next_start(TUESDAY_NOON) is None


def labels(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "account": "acme-nl",
        "alert": "IntegrationFailing",
        "severity": "warning",
        "integration_type": "shopify",
        "integration_id": 7,
    }
    return {**base, **fields}


def test_a_mute_is_held_before_a_window_and_both_match_like_routes() -> None:
    mute = Mute(
        "m1",
        "acme-nl",
        TUESDAY_NOON + timedelta(hours=2),
        "re-keying",
        "alice",
        TUESDAY_NOON,
        integration_id=7,
    )
    window = Window(
        "acme",
        Matchers(account="acme-*"),
        start=TUESDAY_NOON - timedelta(hours=1),
        end=TUESDAY_NOON + timedelta(hours=1),
    )
    quiet = Quiet((window,), (mute,))
    held = quiet.hold(labels(), TUESDAY_NOON)
    assert held is not None
    assert held.reason == "mute"
    assert held.text == "muted by alice until 2026-12-01T14:00:00Z: re-keying"
    other = quiet.hold(labels(integration_id=8), TUESDAY_NOON)
    assert other is not None
    assert other.text == "in maintenance (acme) until 2026-12-01T13:00:00Z"
    assert quiet.hold(labels(account="beta"), TUESDAY_NOON) is None
    later = TUESDAY_NOON + timedelta(hours=1, minutes=30)  # the window ended, the mute holds
    assert [quiet.hold(labels(integration_id=i), later) is not None for i in (7, 8)] == [
        True,
        False,
    ]
    assert quiet.hold(labels(), TUESDAY_NOON + timedelta(hours=2)) is None  # expired


def test_a_window_for_one_alert_is_not_an_integrations_hold() -> None:
    window = Window(
        "stale at night",
        Matchers(alert="IntegrationFetchStale"),
        start=TUESDAY_NOON,
        end=TUESDAY_NOON + timedelta(hours=1),
    )
    active = Quiet((window,)).at(TUESDAY_NOON)
    assert active.hold(labels(alert="IntegrationFetchStale")) is not None
    assert active.hold(labels()) is None
    assert active.integration_hold("acme-nl", 7, "shopify") is None


def test_a_type_mute_holds_only_that_type() -> None:
    mute = Mute(
        "m",
        "acme-nl",
        TUESDAY_NOON + timedelta(hours=1),
        "why",
        "bob",
        TUESDAY_NOON,
        integration_type="shopify",
    )
    active = Quiet((), (mute,)).at(TUESDAY_NOON)
    assert active.integration_hold("acme-nl", 1, "shopify") is not None
    assert active.integration_hold("acme-nl", 1, "woocommerce") is None
    assert (
        active.hold(
            labels(integration_id=None, alert="SendcloudAuthFailing", integration_type=None)
        )
        is None
    )


def test_the_account_hold_is_what_holds_every_alert_of_the_account_itself() -> None:
    """The exported account hold equals the gate's hold of SendcloudAuthFailing and
    SendcloudAPIUnreachable, for every kind of mute and window."""
    until = TUESDAY_NOON + timedelta(hours=1)
    whole = Mute("a", "acme-nl", until, "keys", "alice", TUESDAY_NOON)
    one = Mute("b", "beta", until, "shop", "alice", TUESDAY_NOON, integration_id=7)
    typed = Mute("c", "gamma", until, "type", "alice", TUESDAY_NOON, integration_type="shopify")
    windows = (
        Window("delta", Matchers(account="delta"), start=TUESDAY_NOON, end=until),
        Window(
            "eps shops", Matchers(account="eps", integration_id=3), start=TUESDAY_NOON, end=until
        ),
        Window(
            "zeta auth",
            Matchers(account="zeta", alert="SendcloudAuthFailing"),
            start=TUESDAY_NOON,
            end=until,
        ),
    )
    active = Quiet(windows, (whole, one, typed)).at(TUESDAY_NOON)
    for account in ("acme-nl", "beta", "gamma", "delta", "eps", "zeta", "other"):
        exported = active.account_hold(account)
        for alert in ("SendcloudAuthFailing", "SendcloudAPIUnreachable"):
            gate = active.hold(
                {"account": account, "alert": alert, "severity": "critical", "integration_id": None}
            )
            if account == "zeta":  # a window for one alert holds it, but is not the account's
                assert exported is None
                continue
            assert (gate is None) == (exported is None), (account, alert)
            assert gate is None or exported is None or gate.reason == exported.reason
    assert [a for a in ("acme-nl", "delta") if active.account_hold(a)] == ["acme-nl", "delta"]


def test_parsers() -> None:
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("1w") == timedelta(days=7)
    for bad in ("", "2", "h", "2x", "-1h", "0m"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)
    assert parse_minutes("24:00") == 1440
    for bad in ("24:01", "9", "12:60", "ab:cd"):
        with pytest.raises(ValueError, match=r"HH:MM|time of day"):
            parse_minutes(bad)
    assert parse_ranges(["saturday:sunday"], WEEKDAYS, 0, 6) == ((5, 6),)
    assert parse_ranges(["december", "1:2"], MONTHS, 1, 12) == ((12, 12), (1, 2))
    for bad in (["friday:monday"], ["funday"], ["7"]):
        with pytest.raises(ValueError, match=r"backwards|neither|out of range"):
            parse_ranges(bad, WEEKDAYS, 0, 6)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "either start and end"),
        ({"start": "2026-12-01T10:00:00Z", "weekdays": ["monday"]}, "either start and end"),
        ({"start": "2026-12-01T10:00:00Z"}, "both start and end"),
        ({"start": "2026-12-01T10:00:00", "end": "2026-12-01T11:00:00"}, "time zone offset"),
        ({"start": "2026-12-01T11:00:00Z", "end": "2026-12-01T10:00:00Z"}, "before end"),
        ({"weekdays": ["monday"], "location": "Mars/Olympus"}, "unknown time zone"),
        ({"times": [{"start_time": "18:00", "end_time": "09:00"}]}, "before end_time"),
        ({"months": ["smarch"]}, "neither a name"),
    ],
)
def test_invalid_windows_say_what_is_wrong(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        MaintenanceSettings.model_validate({"name": "w", **fields})
