"""The alerting service end to end in-process: simulator -> poller -> alerter -> sinks.

A scripted scenario (fail, flap, recover, stale, deleted, auth failure, restart) must produce
exactly the documented events, each valid against docs/alert-event.schema.json.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from monitor.alerting import Alerter
from monitor.alerts import AlertRules
from monitor.metrics import Metrics
from monitor.poller import AccountPoller
from monitor.scheduler import open_pollers
from monitor.simulator import SimIntegration, Simulator
from monitor.sinks import StdoutSink
from monitor.state import Store

from .conftest import FakeClock, LogCapture, account_for

SCHEMA = json.loads((Path(__file__).parents[1] / "docs" / "alert-event.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(
    SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)


class Recorder:
    """A sink that keeps what it was handed (our own Sink interface, not a mocked server)."""

    name = "recorder"

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.firing: list[list[dict[str, Any]]] = []

    def submit(self, events: Sequence[dict[str, Any]], firing: Sequence[dict[str, Any]]) -> None:
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
        return [(e["alert"], e["integration_id"], e["kind"]) for e in self.recorder.events]


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
            yield World(sim, clock, poller, Recorder(), metrics)


def make_alerter(world: World, state_file: Path | None, **kwargs: Any) -> Alerter:
    async def fetch_logs(account: str, integration_id: int) -> list[dict[str, Any]]:
        return await world.poller.client.integration_logs(integration_id, page_size=10)

    alerter = Alerter(
        kwargs.pop("rules", AlertRules(failing_for_seconds=600, stale_for_seconds=0)),
        [world.recorder, StdoutSink(world.metrics.delivery)],
        clock=world.clock,
        ids_configured={"default": True},
        fetch_logs=fetch_logs,
        state_file=state_file,
        on_alert=world.metrics.alert_emitted,
        on_firing=world.metrics.alerts_firing,
        **kwargs,
    )
    world.attach(alerter)
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
    fired = world.recorder.events[2]
    assert fired["starts_at"] == world.start.isoformat().replace("+00:00", "Z")
    assert world.recorder.events[2]["severity"] == "warning"
    assert fired["shop_name"] == "Alpha shop"
    assert fired["cause"]["exception_type"] == "requests.exceptions.HTTPError"
    assert fired["cause"]["host"] == "shop.example.com"
    assert fired["cause"]["logs_since_failing"] >= 1

    # Restart: a new alerter from the state file; integration 3 is still missing
    before = len(world.recorder.events)
    make_alerter(world, state_file)
    await world.until(50)
    assert len(world.recorder.events) == before  # nothing re-fired
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
        (e["kind"], e["severity"])
        for e in world.recorder.events
        if e["alert"] == "IntegrationFailing"
    ]
    assert failing == [("fired", "warning"), ("escalated", "critical"), ("repeat", "critical")]
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
    await world.until(0)
    [fired] = [e for e in world.recorder.events if e["alert"] == "IntegrationFailing"]
    assert fired["cause"] is None
    assert "server_error" in fired["cause_error"]
    VALIDATOR.validate(fired)


async def test_slow_cause_lookup_times_out(world: World) -> None:
    async def slow(account: str, integration_id: int) -> list[dict[str, Any]]:
        await asyncio.sleep(5)
        return []

    alerter = make_alerter(world, None, cause_timeout_seconds=0.2)
    alerter._fetch_logs = slow
    world.sim.update(1, scenario="failing", started_failing_at=world.clock() - timedelta(hours=1))
    await world.until(0)
    [fired] = [e for e in world.recorder.events if e["alert"] == "IntegrationFailing"]
    assert fired["cause"] is None
    assert "within 0.2 s" in fired["cause_error"]


async def test_alert_metrics(world: World) -> None:
    make_alerter(world, None)
    await world.until(1)
    from prometheus_client import generate_latest

    text = generate_latest(world.metrics.registry).decode()
    assert (
        'integration_monitor_alerts_total{alert="IntegrationNotFound",status="firing"} 1.0' in text
    )
    assert 'integration_monitor_alerts_firing{alert="IntegrationFetchStale"} 1.0' in text
    assert 'integration_monitor_alerts_firing{alert="IntegrationFailing"} 0.0' in text
    assert 'integration_monitor_alert_deliveries_total{outcome="success",sink="stdout"} 2.0' in text


async def test_a_hanging_webhook_never_delays_polling(world: World) -> None:
    from monitor.sinks import WebhookSink

    from .receivers import Receiver, running

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
