"""The quiet gate with the real Alerter: during a hold nothing reaches the notifying sinks; what
still fires at its end is notified once; what fired and resolved inside sends nothing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from monitor.alerting.rules import AlertRules
from monitor.alerting.service import Alerter
from monitor.health import derive
from monitor.notify.gate import QuietGate
from monitor.notify.quiet import Mute, Quiet, Window
from monitor.notify.routes import Matchers
from monitor.sendcloud import parse_integration
from monitor.store import AccountSnapshot, Observation, ReadOutcome
from tests.conftest import T0, FakeClock


class Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.firing: list[list[str]] = []

    def submit(self, account: str, events: Sequence[Any], firing: Sequence[Any]) -> None:
        self.events += events
        self.firing.append(sorted(f"{f['integration_id']}" for f in firing))

    async def aclose(self) -> None:
        return None


def snapshot(clock: FakeClock, failing: set[int], cycle: int) -> AccountSnapshot:
    observations = {}
    for integration_id in (1, 2, 3):
        fields: dict[str, object] = {
            "id": integration_id,
            "type": "shopify",
            "last_fetched_at": clock().isoformat(),
        }
        if integration_id in failing:
            fields["started_failing_at"] = (T0 - timedelta(seconds=1)).isoformat()
        record, _ = parse_integration(fields)
        observations[integration_id] = Observation(
            integration_id, ReadOutcome.OK, record, derive(record, clock(), 7200)
        )
    return AccountSnapshot("acme", observations, cycle, clock())


async def test_a_window_holds_then_notifies_what_still_fails_once() -> None:
    clock = FakeClock(T0)
    recorder = Recorder()
    window = Window(
        "migration", Matchers(account="acme"), T0 + timedelta(minutes=1), T0 + timedelta(minutes=10)
    )
    quiet = Quiet((window,))
    gate = QuietGate([recorder], lambda: quiet, clock)
    alerter = Alerter(
        AlertRules(failing_for_seconds=0), [gate], clock=clock, ids_configured={"acme": False}
    )

    await alerter.on_snapshot(snapshot(clock, {1}, 1))  # before the window: 1 fires
    assert [(e["integration_id"], e["kind"]) for e in recorder.events] == [(1, "fired")]
    clock.advance(120)  # inside the window
    await alerter.on_snapshot(snapshot(clock, {1, 2, 3}, 2))  # 2 and 3 fire, held
    clock.advance(60)
    await alerter.on_snapshot(snapshot(clock, {1, 2}, 3))  # 3 resolves inside: nothing
    assert [(e["integration_id"], e["kind"]) for e in recorder.events] == [(1, "fired")]
    assert recorder.firing[-1] == []  # nothing is firing for the sinks during the window
    assert gate.held() == 2

    clock.advance(600)  # after the window: 1 and 2 still fail, each notified once
    await alerter.on_snapshot(snapshot(clock, {1, 2}, 4))
    assert sorted((e["integration_id"], e["kind"]) for e in recorder.events[1:]) == [
        (1, "fired"),
        (2, "fired"),
    ]
    assert recorder.firing[-1] == ["1", "2"]
    clock.advance(60)
    await alerter.on_snapshot(snapshot(clock, {1, 2}, 5))
    assert len(recorder.events) == 3  # once
    await alerter.on_snapshot(snapshot(clock, set(), 6))
    assert sorted((e["integration_id"], e["status"]) for e in recorder.events[3:]) == [
        (1, "resolved"),
        (2, "resolved"),
    ]


async def test_a_mute_made_while_firing_applies_at_the_next_evaluation_and_ends() -> None:
    clock = FakeClock(T0)
    recorder = Recorder()
    quiet = Quiet()
    gate = QuietGate([recorder], lambda: quiet, clock)
    alerter = Alerter(
        AlertRules(failing_for_seconds=0), [gate], clock=clock, ids_configured={"acme": False}
    )
    await alerter.on_snapshot(snapshot(clock, {2}, 1))
    quiet = Quiet(
        (),
        (Mute("m", "acme", T0 + timedelta(minutes=5), "re-keying", "alice", T0, integration_id=2),),
    )
    clock.advance(60)
    await alerter.on_snapshot(snapshot(clock, {2}, 2))
    assert recorder.firing[-1] == []  # Alertmanager's active list drops it, as Prometheus does
    clock.advance(300)  # expired
    await alerter.on_snapshot(snapshot(clock, {2}, 3))
    assert [(e["integration_id"], e["kind"]) for e in recorder.events] == [
        (2, "fired"),
        (2, "fired"),
    ]
    assert recorder.firing[-1] == ["2"]


async def test_shop_and_check_alerts_are_held_and_released_like_the_others() -> None:
    """An expiring certificate and a misconfigured shop during a window that matches them by
    alert name: evaluated, not notified; notified once when it ends."""
    from monitor.probes import Outcome, Result, ShopProbe
    from monitor.store import FailedCheck, Findings

    clock = FakeClock(T0)
    recorder = Recorder()
    window = Window(
        "shop work",
        Matchers(alert="Integration[SM]*"),  # the shop alerts and IntegrationMisconfigured
        T0,
        T0 + timedelta(minutes=10),
    )
    quiet = Quiet((window,))
    gate = QuietGate([recorder], lambda: quiet, clock)
    alerter = Alerter(AlertRules(), [gate], clock=clock, ids_configured={"acme": True})
    probe = ShopProbe("https://a:443", Outcome(Result.OK, T0, T0 + timedelta(days=2), "CA"))
    findings = {
        1: Findings(probe),
        2: Findings(None, (FailedCheck("feedback_off", "off"),)),
    }

    def polled(cycle: int) -> AccountSnapshot:
        base = snapshot(clock, set(), cycle)
        return AccountSnapshot("acme", base.integrations, cycle, clock(), findings=findings)

    for cycle in range(1, 4):
        await alerter.on_snapshot(polled(cycle))
        clock.advance(60)
    firing = {k.alert for k, s in alerter.states.items() if s.firing}
    assert firing == {"IntegrationShopCertificateExpiring", "IntegrationMisconfigured"}
    assert recorder.events == []  # held
    assert gate.held() == 2
    clock.advance(600)
    await alerter.on_snapshot(polled(4))
    assert sorted((e["alert"], e["kind"], e["severity"]) for e in recorder.events) == [
        ("IntegrationMisconfigured", "fired", "warning"),
        ("IntegrationShopCertificateExpiring", "fired", "critical"),
    ]
