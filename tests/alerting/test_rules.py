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
    assert len(unknown) == 5  # each alert of the integration, the early warning and checks too
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


# -- shop probes, configuration checks, configuration changes ------------------------------


def shop_snapshot(
    minute: float,
    probe: object | None = None,
    failed: tuple[str, ...] = (),
    status: ReadOutcome = ReadOutcome.OK,
    updated_minute: float | None = None,
) -> tuple[AccountSnapshot, datetime]:
    from monitor.store import FailedCheck, Findings

    now = T0 + timedelta(minutes=minute)
    data: dict[str, object] = {
        "id": 7,
        "shop_name": "Gamma",
        "shop_url": "https://gamma.example.com/",
        "type": "shopify",
        "created_at": (T0 - timedelta(days=90)).isoformat(),
        "last_fetched_at": now.isoformat(),
    }
    if updated_minute is not None:
        data["updated_at"] = (T0 + timedelta(minutes=updated_minute)).isoformat()
    record, _ = parse_integration(data)
    findings = Findings(probe, tuple(FailedCheck(c, f"{c} text") for c in failed))  # type: ignore[arg-type]
    observation = Observation(7, status, record, derive(record, now, 7200))
    return AccountSnapshot("shop", {7: observation}, 1, now, findings={7: findings}), now


class ShopRun(Run):
    def poll(self, minute: float, **fields: object) -> None:
        snap, now = shop_snapshot(minute, **fields)  # type: ignore[arg-type]
        conditions, unknown = conditions_for(snap, ids_configured=True, rules=self.rules, now=now)
        result = evaluate(self.states, conditions, unknown, now, self.rules)
        self.states = result.states
        self.log += [(int(minute), e.kind, e.state.severity) for e in result.events]
        self.events = [event_fields(e, self.rules) for e in result.events]


def certificate(expires_in_days: float, at_minute: float = 0) -> object:
    from monitor.probes import Outcome, Result, ShopProbe

    checked = T0 + timedelta(minutes=at_minute)
    outcome = Outcome(Result.OK, checked, T0 + timedelta(days=expires_in_days), "ACME CA")
    return ShopProbe("https://gamma.example.com:443", outcome)


def test_a_certificate_warns_under_14_days_and_turns_critical_under_3() -> None:
    run = ShopRun(replace(RULES, repeat_interval_seconds=0))
    day = 24 * 60
    run.poll(0, probe=certificate(20))
    run.poll(7 * day, probe=certificate(20))  # 13 days left
    run.poll(16 * day, probe=certificate(20))  # 4 days left
    run.poll(17 * day + 60, probe=certificate(20))  # 2 days 23 h left
    run.poll(18 * day, probe=certificate(110, 18 * day))  # renewed: resolved
    assert run.log == [
        (7 * day, "fired", "warning"),
        (17 * day + 60, "escalated", "critical"),
        (18 * day, "resolved", "critical"),
    ]


def test_the_certificate_event_tells_its_expiry_issuer_and_days() -> None:
    run = ShopRun()
    run.poll(0, probe=certificate(5))
    [event] = run.events
    assert event["alert"] == "IntegrationShopCertificateExpiring"
    assert event["certificate_expires_at"] == "2026-12-02T12:00:00Z"
    assert event["certificate_issuer"] == "ACME CA"
    assert event["probe_result"] == "ok"
    assert event["starts_at"] == "2026-11-18T12:00:00Z"  # when it came within 14 days
    assert "expires in 5d" in event["summary"]
    assert event["runbook_url"] == "docs/runbook.md#integrationshopcertificateexpiring"


def failing_probe(failures: int, since_minute: float, result: str = "untrusted") -> object:
    from monitor.probes import Outcome, Result, ShopProbe

    since = T0 + timedelta(minutes=since_minute)
    outcome = Outcome(Result(result), since + timedelta(minutes=60 * (failures - 1)))
    return ShopProbe("https://gamma.example.com:443", outcome, failures, since)


def test_a_shop_is_unreachable_after_two_failing_probes_in_a_row() -> None:
    run = ShopRun()
    run.poll(0, probe=failing_probe(1, 0))
    run.poll(30, probe=failing_probe(1, 0))
    run.poll(60, probe=failing_probe(2, 0))
    [event] = run.events
    assert event["alert"] == "IntegrationShopUnreachable"
    assert event["starts_at"] == "2026-11-27T12:00:00Z"  # since the first failing probe
    assert "not trusted" in event["summary"]
    run.poll(90, probe=failing_probe(3, 0))
    from monitor.probes import Outcome, Result, ShopProbe

    healthy = ShopProbe("https://gamma.example.com:443", Outcome(Result.OK, T0))
    run.poll(120, probe=healthy)
    assert run.log == [(60, "fired", "warning"), (120, "resolved", "warning")]


def test_a_new_run_of_failures_is_a_new_episode() -> None:
    run = ShopRun()
    run.poll(60, probe=failing_probe(2, 0))
    run.poll(200, probe=failing_probe(2, 140))  # recovered between two polls, failing again
    assert [kind for _, kind, _ in run.log] == ["fired", "resolved", "fired"]


def test_shop_alerts_wait_for_a_first_probe_and_go_with_probes_off() -> None:
    run = ShopRun()
    run.poll(60, probe=failing_probe(2, 0))
    run.poll(61)  # a restart without saved probes: not probed yet, neither fired nor resolved
    assert [kind for _, kind, _ in run.log] == ["fired"]
    off = ShopRun(replace(RULES, probes_enabled=False))
    off.states = run.states
    off.poll(62)
    assert [kind for _, kind, _ in off.log] == ["resolved"]


def test_probes_go_on_while_the_record_cannot_be_read() -> None:
    run = ShopRun()
    run.poll(60, probe=failing_probe(2, 0), status=ReadOutcome.ERROR)
    assert [kind for _, kind, _ in run.log] == ["fired"]


def test_misconfigured_after_two_polls_and_frozen_while_unreadable() -> None:
    run = ShopRun()
    run.poll(0, failed=("feedback_off",))
    run.poll(1, failed=("feedback_off",), status=ReadOutcome.ERROR)  # unknown: not counted
    assert run.log == []
    run.poll(2, failed=("feedback_off", "duplicate_shop"))
    [event] = run.events
    assert event["alert"] == "IntegrationMisconfigured"
    assert event["failed_checks"] == ["feedback_off", "duplicate_shop"]
    assert "feedback_off text; duplicate_shop text" in event["summary"]
    run.poll(3, failed=("feedback_off",), status=ReadOutcome.ERROR)
    run.poll(4)
    assert run.log == [(2, "fired", "warning"), (4, "resolved", "warning")]


def test_an_alert_within_the_change_window_says_its_configuration_changed() -> None:
    run = ShopRun(replace(RULES, change_window_seconds=3600))
    run.poll(0, probe=failing_probe(2, 0), updated_minute=-12)
    [event] = run.events
    assert event["config_changed_at"] == "2026-11-27T11:48:00Z"
    assert (
        "Its configuration changed 12m before its shop probe started failing" in (event["summary"])
    )
    late = ShopRun(replace(RULES, change_window_seconds=3600))
    late.poll(0, probe=failing_probe(2, 0), updated_minute=-61)  # outside the window
    [event] = late.events
    assert "config_changed_at" not in event
    assert "configuration changed" not in event["summary"]


def test_failing_says_so_too() -> None:
    now = T0
    record, _ = parse_integration(
        {
            "id": 7,
            "shop_name": "Delta",
            "started_failing_at": (now - timedelta(minutes=20)).isoformat(),
            "last_fetched_at": (now - timedelta(minutes=21)).isoformat(),
            "updated_at": (now - timedelta(minutes=32)).isoformat(),
        }
    )
    observation = Observation(7, ReadOutcome.OK, record, derive(record, now, 7200))
    snap = AccountSnapshot("shop", {7: observation}, 1, now)
    conditions, unknown = conditions_for(snap, ids_configured=True, rules=RULES, now=now)
    result = evaluate({}, conditions, unknown, now, RULES)
    [event] = [event_fields(e, RULES) for e in result.events]
    assert event["alert"] == "IntegrationFailing"
    assert "Its configuration changed 12m before it started failing" in event["summary"]
