"""The alert state machine as tables over a fake clock: no I/O, time passed in."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from monitor.alerting.rules import (
    API_UNREACHABLE,
    AUTH_FAILING,
    INTEGRATION_ERRORS_RISING,
    INTEGRATION_FAILING,
    INTEGRATION_FETCH_STALE,
    INTEGRATION_NOT_FOUND,
    AlertKey,
    AlertRules,
    AlertState,
    Condition,
    Context,
    Evaluation,
    conditions_for,
    evaluate,
    event_fields,
    fingerprint,
)
from monitor.health import derive
from monitor.sendcloud import parse_integration
from monitor.sendcloud.stream import Activity
from monitor.store import AccountSnapshot, Observation, ReadOutcome

T0 = datetime(2026, 11, 27, 12, tzinfo=UTC)
# The tables below were written for a 10-minute failing grace and no stale grace.
RULES = AlertRules(repeat_interval_seconds=4 * 3600, failing_for_seconds=600, stale_for_seconds=0)
FAILING = AlertKey(INTEGRATION_FAILING, "shop", 7)


class Run:
    """Feeds one condition (or none) per minute and records the event kinds."""

    def __init__(self, rules: AlertRules = RULES) -> None:
        self.rules = rules
        self.states: dict[AlertKey, AlertState] = {}
        self.log: list[tuple[int, str, str]] = []

    def step(
        self, minute: int, *conditions: Condition, unknown: set[AlertKey] | None = None
    ) -> None:
        now = T0 + timedelta(minutes=minute)
        result = evaluate(self.states, conditions, unknown or set(), now, self.rules)
        self.states = result.states
        self.log += [(minute, e.kind, e.state.severity) for e in result.events]


def failing(since_minute: float, now_minute: float) -> Condition:
    seconds = (now_minute - since_minute) * 60
    return Condition(
        FAILING,
        T0 + timedelta(minutes=since_minute),
        Context(shop_name="Beta", failing_seconds=seconds),
    )


def test_failing_fires_after_grace_from_the_api_timestamp() -> None:
    run = Run()
    for minute in range(12):
        run.step(minute, failing(0, minute))
    assert run.log == [(10, "fired", "warning")]


def test_already_failing_for_long_fires_at_once_and_critical() -> None:
    run = Run()
    run.step(0, failing(-180, 0))  # a daemon started while the shop fails for 3 hours
    run.step(1, failing(-180, 1))
    assert run.log == [(0, "fired", "critical")]


def test_flap_shorter_than_grace_produces_nothing() -> None:
    run = Run()
    for minute in range(5):
        run.step(minute, failing(0, minute))
    for minute in range(5, 8):
        run.step(minute)  # recovered before 10 minutes
    for minute in range(8, 15):
        run.step(minute, failing(8, minute))
    assert run.log == []
    assert FAILING in run.states


def test_escalation_once_then_resolve_once() -> None:
    run = Run()
    for minute in range(0, 70):
        run.step(minute, failing(0, minute))
    run.step(70)
    run.step(71)
    assert run.log == [
        (10, "fired", "warning"),
        (60, "escalated", "critical"),
        (70, "resolved", "critical"),
    ]
    assert run.states == {}


def test_repeat_interval() -> None:
    run = Run(replace(RULES, repeat_interval_seconds=3600, failing_critical_after_seconds=10**9))
    for minute in range(0, 200, 5):
        run.step(minute, failing(0, minute))
    assert run.log == [
        (10, "fired", "warning"),
        (70, "repeat", "warning"),
        (130, "repeat", "warning"),
        (190, "repeat", "warning"),
    ]


def test_repeat_zero_never_repeats() -> None:
    run = Run(replace(RULES, repeat_interval_seconds=0, failing_critical_after_seconds=10**9))
    for minute in range(0, 600, 30):
        run.step(minute, failing(0, minute))
    assert [kind for _, kind, _ in run.log] == ["fired"]


def test_unknown_keeps_the_state_and_does_not_resolve() -> None:
    run = Run()
    for minute in range(0, 12):
        run.step(minute, failing(0, minute))
    run.step(12, unknown={FAILING})  # the API could not be read
    run.step(13, unknown={FAILING})
    assert [kind for _, kind, _ in run.log] == ["fired"]
    run.step(14)
    assert [kind for _, kind, _ in run.log] == ["fired", "resolved"]


def test_not_found_counts_polls() -> None:
    run = Run()
    key = AlertKey(INTEGRATION_NOT_FOUND, "shop", 9)
    run.step(0, Condition(key, None, Context()))
    assert run.log == []
    run.step(1, Condition(key, None, Context()))
    assert run.log == [(1, "fired", "warning")]


@pytest.mark.parametrize(("alert", "grace_minutes"), [(AUTH_FAILING, 0), (API_UNREACHABLE, 5)])
def test_account_alerts_count_from_first_observation(alert: str, grace_minutes: int) -> None:
    run = Run()
    key = AlertKey(alert, "shop")
    for minute in range(8):
        run.step(minute, Condition(key, None, Context(detail="unreachable")))
    assert run.log == [(grace_minutes, "fired", "critical")]


def snapshot(
    *observations: Observation, auth_ok: bool = True, account_error: str | None = None
) -> AccountSnapshot:
    return AccountSnapshot(
        "shop",
        {o.integration_id: o for o in observations},
        1,
        T0,
        auth_ok=auth_ok,
        account_error=account_error,
        exceptions_known=True,
    )


def obs(integration_id: int, status: ReadOutcome = ReadOutcome.OK, **fields: object) -> Observation:
    record = parse_integration({"id": integration_id, **fields})[0] if fields else None
    health = derive(record, T0, 3600) if record is not None and status is ReadOutcome.OK else None
    return Observation(integration_id, status, record, health)


def test_conditions_from_a_snapshot() -> None:
    snap = snapshot(
        obs(1, started_failing_at="2026-11-27T11:00:00Z", last_fetched_at="2026-11-27T11:59:00Z"),
        obs(2, last_fetched_at="2026-11-27T09:00:00Z"),  # stale since 10:00 (threshold 1 h)
        obs(3, ReadOutcome.NOT_FOUND),
        obs(4, ReadOutcome.ERROR),
    )
    conditions, unknown = conditions_for(snap, ids_configured=True)
    found = {(c.key.alert, c.key.integration_id): c.since for c in conditions}
    assert found == {
        (INTEGRATION_FAILING, 1): datetime(2026, 11, 27, 11, tzinfo=UTC),
        (INTEGRATION_FETCH_STALE, 2): datetime(2026, 11, 27, 10, tzinfo=UTC),
        (INTEGRATION_NOT_FOUND, 3): None,
    }
    assert {k.integration_id for k in unknown} == {4}
    conditions, _ = conditions_for(snap, ids_configured=False)
    assert INTEGRATION_NOT_FOUND not in {c.key.alert for c in conditions}


def test_account_error_makes_integrations_unknown() -> None:
    snap = snapshot(obs(1, ReadOutcome.ERROR), auth_ok=False, account_error="auth_failed")
    conditions, unknown = conditions_for(snap, ids_configured=True)
    assert [c.key.alert for c in conditions] == [AUTH_FAILING]
    assert len(unknown) == 4  # each alert of the integration, the early warning too
    snap = snapshot(obs(1, ReadOutcome.ERROR), account_error="unreachable")
    conditions, _ = conditions_for(snap, ids_configured=True)
    assert [c.key.alert for c in conditions] == [API_UNREACHABLE]


def test_event_fields_and_fingerprint() -> None:
    run = Run(replace(RULES, runbook_base_url="https://runbooks.example.com/sendcloud.md"))
    run.step(0, failing(-30, 0))
    state = run.states[FAILING]
    result = evaluate(run.states, [], set(), T0 + timedelta(minutes=5), run.rules)
    [resolved] = result.events
    fields = event_fields(resolved, run.rules)
    assert fields["status"] == "resolved"
    assert fields["ends_at"] == "2026-11-27T12:05:00Z"
    assert fields["starts_at"] == "2026-11-27T11:30:00Z"
    assert fields["runbook_url"] == "https://runbooks.example.com/sendcloud.md#integrationfailing"
    assert fields["fingerprint"] == fingerprint(state.key)
    assert fingerprint(state.key) != fingerprint(AlertKey(INTEGRATION_FAILING, "shop", 8))
    assert "Beta" in fields["summary"]
    assert "30m" in fields["summary"]


def episode(since_minute: float, now_minute: float) -> Condition:
    """A failing condition that carries its API timestamp, as conditions_for builds it."""
    condition = failing(since_minute, now_minute)
    return replace(condition, episode=condition.since)


def test_a_later_started_failing_at_is_a_new_episode_not_the_old_alert() -> None:
    """The shop recovered between two polls and failed again: the old alert resolves (with its
    own starts_at), the new one starts over as a warning — as the shipped rules do, whose
    integration_failing_seconds > 900 fell back below the threshold."""
    run = Run(replace(RULES, failing_critical_after_seconds=3600))
    run.step(0, episode(-120, 0))  # failing for 2 h: fires at once, critical
    first = run.states[FAILING]
    assert (first.severity, first.since) == ("critical", T0 - timedelta(hours=2))
    run.step(1, episode(0.5, 1))  # a new started_failing_at, 30 s ago
    assert run.log == [(0, "fired", "critical"), (1, "resolved", "critical")]
    second = run.states[FAILING]
    assert not second.firing
    assert (second.since, second.severity) == (T0 + timedelta(seconds=30), "warning")
    run.step(11, episode(0.5, 11))  # 10.5 min later: past the 10-minute grace
    assert run.log[-1] == (11, "fired", "warning")
    assert run.states[FAILING].since == T0 + timedelta(seconds=30)


def test_a_timestamp_that_moved_later_past_the_grace_resolves_and_fires_anew() -> None:
    """Failing for 2 h, then a started_failing_at only 16 min old: a new episode that is past
    its grace already. The old alert (critical) resolves, the new one fires as a warning, as
    the shipped rules have it (failing_seconds fell below 3600, stayed above 900)."""
    run = Run(replace(RULES, failing_critical_after_seconds=3600))
    run.step(0, episode(-120, 0))
    run.step(1, episode(-15, 1))
    assert run.log == [
        (0, "fired", "critical"),
        (1, "resolved", "critical"),
        (1, "fired", "warning"),
    ]
    assert run.states[FAILING].since == T0 - timedelta(minutes=15)


def test_a_timestamp_that_moved_earlier_is_the_same_episode() -> None:
    run = Run()
    run.step(0, episode(-120, 0))
    run.step(1, episode(-180, 1))  # corrected to an earlier start
    assert [kind for _, kind, _ in run.log] == ["fired"]
    assert run.states[FAILING].since == T0 - timedelta(hours=2)  # starts_at does not move


def test_a_clamped_future_timestamp_is_not_a_new_episode_every_poll() -> None:
    """A started_failing_at in the future is clamped to the read time, which moves every poll;
    the episode is the API's own timestamp, which does not."""
    future = T0 + timedelta(days=365)
    run = Run(replace(RULES, failing_for_seconds=0))
    for minute in range(5):
        now = T0 + timedelta(minutes=minute)
        run.step(minute, Condition(FAILING, now, Context(failing_seconds=0), episode=future))
    assert [kind for _, kind, _ in run.log] == ["fired"]


def test_errors_rising_is_unknown_until_the_stream_is_read() -> None:
    """After a start the first poll does not read the log stream: "no logs" there is not a
    clear window. The alert firing from before the restart is kept until the stream says."""
    key = AlertKey(INTEGRATION_ERRORS_RISING, "shop", 1)
    firing = AlertState(key, T0 - timedelta(minutes=5), 3, T0 - timedelta(minutes=5))
    healthy = obs(1, last_fetched_at="2026-11-27T11:59:00Z")
    failing = obs(2, started_failing_at="2026-11-27T11:00:00Z")
    before = replace(snapshot(healthy, failing), exceptions_known=False)
    conditions, unknown = conditions_for(before, ids_configured=False, rules=RULES)
    assert key in unknown
    assert AlertKey(INTEGRATION_ERRORS_RISING, "shop", 2) not in unknown  # failing: not rising
    assert events_of(key, evaluate({key: firing}, conditions, unknown, T0, RULES)) == []
    # read, with six logs in the window: it holds; read, with none: it resolves
    newest = {"exception_type": "requests.exceptions.SSLError"}
    read = replace(before, exceptions_known=True, exceptions={1: Activity((T0,) * 6, newest, 6)})
    conditions, unknown = conditions_for(read, ids_configured=False, rules=RULES)
    assert {c.key for c in conditions} == {AlertKey(INTEGRATION_FAILING, "shop", 2), key}
    assert events_of(key, evaluate({key: firing}, conditions, unknown, T0, RULES)) == []
    quiet = replace(read, exceptions={})
    conditions, unknown = conditions_for(quiet, ids_configured=False, rules=RULES)
    assert events_of(key, evaluate({key: firing}, conditions, unknown, T0, RULES)) == ["resolved"]


def events_of(key: AlertKey, evaluation: Evaluation) -> list[str]:
    return [e.kind for e in evaluation.events if e.state.key == key]
