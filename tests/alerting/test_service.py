"""The alerting service end to end in-process: simulator -> poller -> alerter -> sinks.

A scripted scenario (fail, flap, recover, stale, deleted, auth failure, restart) must produce
exactly the documented events, each valid against docs/alert-event.schema.json.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from monitor.alerting.rules import AlertRules
from monitor.alerting.service import CAUSE_FAILED, CAUSE_PENDING, Alerter
from monitor.daemon import open_pollers
from monitor.exporter.metrics import Metrics
from monitor.health import derive
from monitor.notify.sinks import AlertmanagerSink, StdoutSink
from monitor.poller import AccountPoller
from monitor.sendcloud import parse_integration
from monitor.simulator import SimIntegration, Simulator
from monitor.store import AccountSnapshot, Observation, ReadOutcome, Store
from tests.conftest import FakeClock, LogCapture, account_for, metric_value, scraped
from tests.notify.test_sinks import alertmanager

__all__ = ["alertmanager"]  # the fixture, shared with the sink tests

SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "alert-event.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(
    SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)


class Recorder:
    """A sink that keeps what it was handed (our own Sink interface, not a mocked server)."""

    name = "recorder"

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.firing: list[list[dict[str, Any]]] = []

    def submit(
        self, account: str, events: Sequence[dict[str, Any]], firing: Sequence[dict[str, Any]]
    ) -> None:
        self.events += events
        self.firing.append(list(firing))

    async def aclose(self) -> None:
        return None


class World:
    def __init__(
        self,
        sim: Simulator,
        clock: FakeClock,
        poller: AccountPoller,
        recorder: Recorder,
        metrics: Metrics,
    ) -> None:
        self.sim, self.clock, self.poller, self.recorder = sim, clock, poller, recorder
        self.metrics = metrics
        self.minute = 0
        self.alerters: list[Alerter] = []

    async def until(self, minute: int) -> None:
        """Poll once a minute up to and including ``minute``."""
        while self.minute <= minute:
            self.clock.now = self.start + timedelta(minutes=self.minute)
            await self.poller.poll()
            self.minute += 1

    @property
    def start(self) -> Any:
        return self.sim.epoch

    def attach(self, alerter: Alerter) -> None:
        self.poller.after_cycle = alerter.on_snapshot

    def summary(self) -> list[tuple[str, int | None, str]]:
        """The notifications (cause follow-ups left out: see ``causes``)."""
        return [
            (e["alert"], e["integration_id"], e["kind"])
            for e in self.recorder.events
            if e["kind"] != "cause"
        ]

    def causes(self) -> list[dict[str, Any]]:
        return [e for e in self.recorder.events if e["kind"] == "cause"]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    clock = FakeClock()
    now = clock()
    shops = [
        SimIntegration(1, "healthy", "Alpha shop", type="shopify"),
        SimIntegration(2, "stale", "Beta shop", last_fetched_at=now - timedelta(hours=5)),
        SimIntegration(3, "deleted", "Gamma shop"),
        SimIntegration(4, "healthy", "Delta shop"),
    ]
    with Simulator(shops, clock=clock) as sim:
        account = account_for(sim, (1, 2, 3, 4))
        store = Store([account.name])
        metrics = Metrics(store, [account.name])
        async with open_pollers([account], store, metrics, clock=clock) as (poller,):
            world = World(sim, clock, poller, Recorder(), metrics)
            yield world
            for alerter in world.alerters:  # stop lookups still in flight
                await alerter.aclose()


def make_alerter(world: World, state_file: Path | None, **kwargs: Any) -> Alerter:
    async def fetch_logs(account: str, integration_id: int) -> list[dict[str, Any]]:
        return await world.poller.client.integration_logs(integration_id, page_size=10)

    alerter = Alerter(
        kwargs.pop("rules", AlertRules(failing_for_seconds=600, stale_for_seconds=0)),
        [world.recorder, StdoutSink(world.metrics.delivery)],
        clock=world.clock,
        ids_configured={"default": kwargs.pop("ids_configured_all", True)},
        fetch_logs=fetch_logs,
        state_file=state_file,
        on_alert=world.metrics.alert_emitted,
        on_firing=world.metrics.alerts_firing,
        **kwargs,
    )
    world.attach(alerter)
    world.alerters.append(alerter)
    return alerter


async def test_scripted_scenario_across_a_restart(
    world: World, tmp_path: Path, captured_logs: LogCapture
) -> None:
    state_file = tmp_path / "alerts.json"
    make_alerter(world, state_file)
    await world.until(0)
    world.sim.update(1, scenario="failing")  # fails from minute 0, seen by the next poll
    await world.until(14)
    world.sim.update(1, scenario="healthy")  # recovers...
    await world.until(16)
    world.sim.update(1, scenario="failing")  # ...flaps for three minutes: below the grace
    await world.until(19)
    world.sim.update(1, scenario="healthy")
    await world.until(29)
    world.sim.update(2, last_fetched_at=world.clock())  # fetched again
    await world.until(39)
    world.sim.inject_fault(401, count=2)  # keys rejected for two polls
    await world.until(45)
    assert world.summary() == [
        ("IntegrationFetchStale", 2, "fired"),
        ("IntegrationNotFound", 3, "fired"),
        ("IntegrationFailing", 1, "fired"),
        ("IntegrationFailing", 1, "resolved"),
        ("IntegrationFetchStale", 2, "resolved"),
        ("SendcloudAuthFailing", None, "fired"),
        ("SendcloudAuthFailing", None, "resolved"),
    ]
    [fired] = [e for e in world.recorder.events if e["alert"] == "IntegrationFailing"][:1]
    assert fired["starts_at"] == world.start.isoformat().replace("+00:00", "Z")
    assert fired["severity"] == "warning"
    assert fired["shop_name"] == "Alpha shop"
    assert fired["cause"] is None  # the notification does not wait for the lookup...
    assert fired["cause_error"] == CAUSE_PENDING
    [follow_up] = world.causes()  # ...which follows with the next evaluation
    assert follow_up["fingerprint"] == fired["fingerprint"]
    assert follow_up["cause"]["exception_type"] == "requests.exceptions.HTTPError"
    assert follow_up["cause"]["host"] == "shop1.example.com"
    assert follow_up["cause"]["logs_since_failing"] >= 1

    # Restart: a new alerter from the state file; integration 3 is still missing
    before = len(world.summary())
    make_alerter(world, state_file)
    await world.until(50)
    assert len(world.summary()) == before  # nothing re-fired
    world.sim.add(SimIntegration(3, "healthy", "Gamma shop"))
    await world.until(51)
    assert world.summary()[before:] == [("IntegrationNotFound", 3, "resolved")]

    for event in world.recorder.events:
        VALIDATOR.validate(event)
    logged = captured_logs.events("alert")
    assert [(e["alert"], e["status"]) for e in logged] == [
        (e["alert"], e["status"]) for e in world.recorder.events
    ]
    for line in logged:
        VALIDATOR.validate(line)
    text = captured_logs.text + json.dumps(world.recorder.events) + state_file.read_text()
    for secret in ("shop-secret-1", "shop-token-1", "webhook-token", "demo-secret-key"):
        assert secret not in text


async def test_escalation_and_repeat(world: World) -> None:
    make_alerter(
        world,
        None,
        rules=AlertRules(
            failing_for_seconds=600,
            failing_critical_after_seconds=900,
            repeat_interval_seconds=1200,
        ),
    )
    world.sim.update(1, scenario="failing", started_failing_at=world.clock() - timedelta(minutes=5))
    await world.until(30)
    failing = [
        e
        for e in world.recorder.events
        if e["alert"] == "IntegrationFailing" and e["kind"] != "cause"
    ]
    assert [(e["kind"], e["severity"]) for e in failing] == [
        ("fired", "warning"),
        ("escalated", "critical"),
        ("repeat", "critical"),
    ]
    # once found, the cause travels with every later notification and the firing list
    assert failing[0]["cause"] is None
    assert failing[1]["cause"]["host"] == "shop1.example.com"
    [listed] = [e for e in world.recorder.firing[-1] if e["alert"] == "IntegrationFailing"]
    assert listed["cause"]["exception_type"] == "requests.exceptions.HTTPError"
    # every evaluation hands the sinks the complete list of firing alerts
    assert {e["alert"] for e in world.recorder.firing[-1]} == {
        "IntegrationFailing",
        "IntegrationFetchStale",
        "IntegrationNotFound",
    }


async def test_cause_lookup_failure_never_blocks_the_alert(world: World) -> None:
    make_alerter(world, None)
    world.sim.update(1, scenario="failing", started_failing_at=world.clock() - timedelta(hours=1))
    world.sim.inject_fault(500, count=10, integration_id=1)  # only /integrations/1/logs is asked
    alerter = world.poller.after_cycle.__self__  # type: ignore[union-attr]
    await world.until(0)
    await asyncio.gather(*alerter._lookups)
    await world.until(1)
    fired, follow_up = [e for e in world.recorder.events if e["alert"] == "IntegrationFailing"]
    assert (fired["kind"], fired["cause"], fired["cause_error"]) == ("fired", None, CAUSE_PENDING)
    assert (follow_up["kind"], follow_up["cause"]) == ("cause", None)
    assert "server_error" in follow_up["cause_error"]
    VALIDATOR.validate(fired)
    VALIDATOR.validate(follow_up)


async def test_slow_cause_lookup_times_out(world: World) -> None:
    async def slow(account: str, integration_id: int) -> list[dict[str, Any]]:
        await asyncio.sleep(5)
        return []

    alerter = make_alerter(world, None, cause_timeout_seconds=0.2)
    alerter._fetch_logs = slow
    world.sim.update(1, scenario="failing", started_failing_at=world.clock() - timedelta(hours=1))
    await world.until(0)
    await asyncio.gather(*alerter._lookups)
    await world.until(1)
    [fired, follow_up] = [e for e in world.recorder.events if e["alert"] == "IntegrationFailing"]
    assert fired["cause"] is None
    assert follow_up["cause"] is None
    assert "within 0.2 s" in follow_up["cause_error"]


async def test_alert_metrics(world: World) -> None:
    make_alerter(world, None)
    await world.until(1)

    text = scraped(world.metrics)
    assert (
        'integration_monitor_alerts_total{alert="IntegrationNotFound",status="firing"} 1.0' in text
    )
    assert 'integration_monitor_alerts_firing{alert="IntegrationFetchStale"} 1.0' in text
    assert 'integration_monitor_alerts_firing{alert="IntegrationFailing"} 0.0' in text
    assert 'integration_monitor_alert_deliveries_total{outcome="success",sink="stdout"} 2.0' in text


async def test_a_hanging_webhook_never_delays_polling(world: World) -> None:
    from monitor.notify.sinks import WebhookSink
    from tests.receivers import Receiver, running

    receiver = Receiver()
    receiver.release.clear()  # answers nothing until released
    with running(receiver):
        sink = WebhookSink(
            "slow", receiver.url, observe=world.metrics.delivery, depth=world.metrics.queue_depth
        )
        alerter = make_alerter(world, None)
        alerter.sinks.append(sink)
        await world.until(3)  # four poll cycles, events for stale and not-found included
        assert receiver.received.wait(timeout=5)
        assert not receiver.answered.is_set()  # still hanging, yet every poll completed
        assert world.minute == 4
        receiver.release.set()
        await sink.aclose()


async def test_one_bad_optional_field_still_alerts_on_the_valid_failure(world: World) -> None:
    make_alerter(world, None)
    world.sim.update(
        1,
        scenario="failing",
        started_failing_at=world.start - timedelta(hours=2),
        extra={"updated_at": "31/02/2026", "type": ["not", "a", "string"]},
    )
    await world.until(0)
    [fired] = [
        e
        for e in world.recorder.events
        if e["integration_id"] == 1 and e["alert"] == "IntegrationFailing"
    ]
    assert (fired["alert"], fired["kind"], fired["severity"]) == (
        "IntegrationFailing",
        "fired",
        "critical",
    )
    assert fired["integration_type"] is None  # the bad field is null, the rest is kept
    assert fired["shop_name"] == "Alpha shop"


async def test_an_outage_neither_fires_nor_resolves_nor_escalates(world: World) -> None:
    """Unknown is not ageing: a failure 890 s old at the outage's start must not cross the
    900 s threshold while nobody can see it, and the open alert must stay open."""
    rules = AlertRules(failing_for_seconds=900, failing_critical_after_seconds=1800)
    make_alerter(world, None, rules=rules)
    world.sim.update(1, scenario="failing", started_failing_at=world.start - timedelta(seconds=890))
    world.sim.update(4, scenario="failing", started_failing_at=world.start - timedelta(minutes=20))
    await world.until(0)
    before = world.summary()
    assert ("IntegrationFailing", 4, "fired") in before
    assert ("IntegrationFailing", 1, "fired") not in before
    world.sim.inject_fault(503, count=10**6)
    await world.until(12)  # 4 would escalate at 30 min, 1 would fire at once
    during = world.summary()[len(before) :]
    assert all(alert == "SendcloudAPIUnreachable" for alert, _, _ in during)
    assert ("SendcloudAPIUnreachable", None, "fired") in during
    world.sim.clear_faults()
    await world.until(13)
    after = world.summary()[len(before) + len(during) :]
    assert ("IntegrationFailing", 4, "resolved") not in after
    assert ("IntegrationFailing", 4, "escalated") in after  # 33 min now: the data says so
    assert ("IntegrationFailing", 1, "fired") in after
    assert ("SendcloudAPIUnreachable", None, "resolved") in after


async def test_alertmanager_sees_one_alert_per_condition_through_escalation_restart_and_resolve(
    world: World, tmp_path: Path, alertmanager: str
) -> None:
    """Labels never change during an alert's life: escalation is a second alert
    (IntegrationFailingCritical), the cause reaches the description, a restart from the state
    file neither duplicates nor loses the resolve, and the resolve ends both exactly once."""
    state_file = tmp_path / "alerts.json"
    rules = AlertRules(
        failing_for_seconds=600, failing_critical_after_seconds=1800, stale_for_seconds=10**6
    )
    world.sim.remove(3)  # keep only the alerts this test is about
    world.sim.update(2, last_fetched_at=world.clock())

    def with_alertmanager() -> Alerter:
        alerter = make_alerter(world, state_file, rules=rules, ids_configured_all=False)
        alerter.sinks.append(
            AlertmanagerSink(
                alertmanager,
                clock=lambda: datetime.now(UTC),  # Alertmanager compares endsAt with real time
                observe=world.metrics.delivery,
                depth=world.metrics.queue_depth,
                backoff_seconds=0.01,
            )
        )
        return alerter

    async def eventually(
        expected: list[tuple[str, str, str]], description: str = ""
    ) -> list[dict[str, Any]]:
        """Alertmanager's active alerts once they are exactly ``expected`` (alertname,
        severity, integration_id), each description containing ``description``."""
        seen: list[tuple[str, str, str]] = []
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                response = await client.get(alertmanager + "/api/v2/alerts")
                alerts = [a for a in response.json() if a["status"]["state"] == "active"]
                seen = sorted(
                    (
                        a["labels"]["alertname"],
                        a["labels"]["severity"],
                        a["labels"].get("integration_id"),
                    )
                    for a in alerts
                )
                if seen == expected and all(
                    description in a["annotations"]["description"] for a in alerts
                ):
                    return alerts
                await asyncio.sleep(0.1)
        raise AssertionError(f"Alertmanager shows {seen}, expected {expected}")

    alerter = with_alertmanager()
    world.sim.update(
        1, scenario="failing", started_failing_at=world.clock() - timedelta(minutes=20)
    )
    await world.until(0)
    await eventually([("IntegrationFailing", "warning", "1")])
    await asyncio.gather(*alerter._lookups)
    await world.until(1)  # the cause arrived: the re-post carries it
    [alert] = await eventually(
        [("IntegrationFailing", "warning", "1")],
        "Last error: exception requests.exceptions.HTTPError",
    )
    assert "host shop1.example.com" in alert["annotations"]["description"]

    await world.until(10)  # 30 min failing: critical, as a second alert; the first is unchanged
    both = [("IntegrationFailing", "warning", "1"), ("IntegrationFailingCritical", "critical", "1")]
    await eventually(both)

    await alerter.aclose()  # a restart: a new alerter from the state file
    restarted = with_alertmanager()
    before = len(world.summary())
    await world.until(12)
    await eventually(both)
    assert world.summary()[before:] == []  # nothing re-fired

    world.sim.update(1, scenario="healthy")
    await world.until(13)
    await eventually([])
    assert [k for a, _, k in world.summary() if a == "IntegrationFailing"] == [
        "fired",
        "escalated",
        "resolved",
    ]
    await restarted.aclose()


def failing_snapshot(account: str, failing: bool, at: datetime) -> AccountSnapshot:
    record, _ = parse_integration(
        {"id": 1, "started_failing_at": at - timedelta(hours=1) if failing else None}
    )
    health = derive(record, at, 3600)
    return AccountSnapshot(account, {1: Observation(1, ReadOutcome.OK, record, health)}, 1, at)


async def test_firing_counts_add_up_over_accounts_as_they_change() -> None:
    clock = FakeClock()
    seen: list[dict[str, int]] = []
    alerter = Alerter(
        AlertRules(failing_for_seconds=0),
        [],
        clock=clock,
        ids_configured={"eu": False, "us": False},
        on_firing=lambda counts: seen.append(dict(counts)),
    )
    await alerter.on_snapshot(failing_snapshot("eu", True, clock()))
    await alerter.on_snapshot(failing_snapshot("us", True, clock()))
    assert seen[-1]["IntegrationFailing"] == 2
    assert alerter.firing_counts()["IntegrationFailing"] == 2
    assert {k.account for k in alerter.states} == {"eu", "us"}
    await alerter.on_snapshot(failing_snapshot("us", True, clock()))  # still one each
    assert alerter.firing_counts()["IntegrationFailing"] == 2
    alerter.end_account("eu")
    assert seen[-1]["IntegrationFailing"] == 1
    await alerter.on_snapshot(failing_snapshot("us", False, clock()))  # recovered
    assert seen[-1]["IntegrationFailing"] == 0
    assert alerter.states == {}
    await alerter.aclose()


async def test_a_cause_lookup_that_raises_is_recorded_and_retried(world: World) -> None:
    """A reload restarting the account (KeyError on its worker) or a closed client used to kill
    the lookup task silently; the alert then had no cause until its next repeat, hours later."""
    alerter = make_alerter(world, None)
    real = alerter._fetch_logs
    assert real is not None
    calls = 0

    async def restarting(account: str, integration_id: int) -> list[dict[str, Any]]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyError(account)  # the worker is gone for a moment
        return await real(account, integration_id)

    alerter._fetch_logs = restarting
    world.sim.update(1, scenario="failing", started_failing_at=world.clock() - timedelta(hours=1))
    await world.until(0)
    await asyncio.gather(*alerter._lookups)
    await world.until(1)  # the failure is delivered; the lookup starts again
    await asyncio.gather(*alerter._lookups)
    await world.until(2)  # the cause arrives
    causes = world.causes()
    assert causes[0]["cause_error"] == CAUSE_FAILED
    assert calls == 2
    assert causes[-1]["cause"] is not None
    assert causes[-1]["cause_error"] is None
    for event in causes:
        VALIDATOR.validate(event)


async def test_not_found_fires_when_the_exported_count_reaches_the_shipped_rules_threshold(
    tmp_path: Path,
) -> None:
    """IntegrationNotFound and SendcloudIntegrationNotFound judge the same count — polls in a
    row that answered 404, unreadable polls not counted — also across a restart."""
    rules_file = Path(__file__).parents[2] / "deploy" / "prometheus" / "rules.yml"
    found = re.search(r"integration_not_found_polls >= (\d+)", rules_file.read_text())
    assert found is not None
    threshold = int(found[1])
    assert threshold == AlertRules().not_found_polls
    clock = FakeClock(datetime(2026, 11, 1, tzinfo=UTC))
    state = tmp_path / "alerts.json"
    store = Store(["acme"])
    metrics = Metrics(store, ["acme"], clock=clock, poll_intervals={"acme": 60})

    def alerter() -> Alerter:
        made = Alerter(
            AlertRules(), [Recorder()], clock=clock, ids_configured={"acme": True}, state_file=state
        )
        metrics.not_found_polls = made.not_found_polls
        return made

    def exported() -> float:
        return (
            metric_value(scraped(metrics), "integration_not_found_polls", integration_id="7") or 0
        )

    current = alerter()
    timeline = ["404", "restart", "error", "404", "404", "restart", "404", "found"]
    for step in timeline:
        clock.advance(60)
        if step == "restart":
            await current.aclose()
            current = alerter()
            continue
        outcome = {"404": ReadOutcome.NOT_FOUND, "error": ReadOutcome.ERROR}.get(step)
        if outcome is None:
            record, _ = parse_integration({"id": 7, "last_fetched_at": clock().isoformat()})
            observation = Observation(7, ReadOutcome.OK, record, derive(record, clock(), 7200))
        else:
            observation = Observation(7, outcome, None, None)
        snapshot = AccountSnapshot("acme", {7: observation}, 1, clock())
        store.put(snapshot)
        await current.on_snapshot(snapshot)
        fires = any(s.firing for s in current.states.values())
        assert fires == (exported() >= threshold), (step, exported())
    assert exported() == 0
    await current.aclose()
