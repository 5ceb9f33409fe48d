"""The quiet gate with the real Alerter: during a hold nothing reaches the notifying sinks; what
still fires at its end is notified once; what fired and resolved inside sends nothing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from monitor.alerting.rules import AlertKey, AlertRules, fingerprint
from monitor.alerting.service import Alerter
from monitor.health import derive
from monitor.notify.dispatch import Router
from monitor.notify.gate import QuietGate
from monitor.notify.messages import Message
from monitor.notify.quiet import Mute, Quiet, Window
from monitor.notify.routes import Matchers, RouteTree
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


def muted(until: datetime, integration_id: int = 1) -> Quiet:
    return Quiet(
        (), (Mute("m", "acme", until, "re-keying", "alice", T0, integration_id=integration_id),)
    )


def kinds(recorder: Recorder) -> list[tuple[int, str]]:
    return [(e["integration_id"], e["kind"]) for e in recorder.events]


async def test_a_mute_that_expires_while_the_daemon_is_down_is_released_once_after_it(
    tmp_path: Path,
) -> None:
    """What the gate holds is saved with the alerts: the restarted daemon releases it at its
    first evaluation, as if it had never stopped (before: nothing, until a repeat)."""
    clock = FakeClock(T0)
    state = tmp_path / "alerts.json"
    quiet = muted(T0 + timedelta(minutes=5))
    recorder = Recorder()
    gate = QuietGate([recorder], lambda: quiet, clock)
    rules = AlertRules(failing_for_seconds=0)
    alerter = Alerter(rules, [gate], clock=clock, ids_configured={"acme": False}, state_file=state)
    await alerter.on_snapshot(snapshot(clock, {1}, 1))  # fires, held by the mute
    assert recorder.events == []
    assert gate.held() == 1
    await alerter.aclose()

    clock.advance(600)  # the mute expired while the daemon was down
    recorder = Recorder()
    gate = QuietGate([recorder], lambda: quiet, clock)
    alerter = Alerter(rules, [gate], clock=clock, ids_configured={"acme": False}, state_file=state)
    assert recorder.events == []  # the hand-over releases nothing: is it still failing?
    assert recorder.firing == [[]]  # ... and Alertmanager's active list does not have it yet
    await alerter.on_snapshot(snapshot(clock, {1}, 2))
    assert kinds(recorder) == [(1, "fired")]
    assert recorder.firing[-1] == ["1"]
    for cycle in (3, 4):
        clock.advance(60)
        await alerter.on_snapshot(snapshot(clock, {1}, cycle))
    assert kinds(recorder) == [(1, "fired")]  # once
    await alerter.aclose()

    # and once more across another restart: nothing again, it was notified
    recorder = Recorder()
    alerter = Alerter(
        rules,
        [QuietGate([recorder], lambda: quiet, clock)],
        clock=clock,
        ids_configured={"acme": False},
        state_file=state,
    )
    clock.advance(60)
    await alerter.on_snapshot(snapshot(clock, {1}, 5))
    await alerter.on_snapshot(snapshot(clock, set(), 6))
    assert kinds(recorder) == [(1, "resolved")]


async def test_an_alert_that_resolved_while_held_and_down_says_nothing(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    state = tmp_path / "alerts.json"
    quiet = muted(T0 + timedelta(minutes=5))
    rules = AlertRules(failing_for_seconds=0)
    recorder = Recorder()
    alerter = Alerter(
        rules,
        [QuietGate([recorder], lambda: quiet, clock)],
        clock=clock,
        ids_configured={"acme": False},
        state_file=state,
    )
    await alerter.on_snapshot(snapshot(clock, {1}, 1))
    await alerter.aclose()
    clock.advance(600)  # the mute expired and the shop recovered, both while down
    alerter = Alerter(
        rules,
        [QuietGate([recorder], lambda: quiet, clock)],
        clock=clock,
        ids_configured={"acme": False},
        state_file=state,
    )
    await alerter.on_snapshot(snapshot(clock, set(), 2))  # resolved: never announced, no resolve
    clock.advance(60)
    await alerter.on_snapshot(snapshot(clock, set(), 3))
    assert recorder.events == []
    assert alerter.holds() == {"quiet": {"held": [], "sinks": {}}}


async def test_a_reload_hands_what_is_held_to_the_new_gate() -> None:
    """A reload that removes the window builds new sinks: the new gate takes over what the old
    one held, whichever is applied first — the new windows or the new sinks."""
    clock = FakeClock(T0)
    window = Window("migration", Matchers(account="acme"), T0, T0 + timedelta(days=1))
    old_recorder, new_recorder = Recorder(), Recorder()
    windows: tuple[Window, ...] = (window,)
    old_gate = QuietGate([old_recorder], lambda: Quiet(windows), clock)
    rules = AlertRules(failing_for_seconds=0)
    alerter = Alerter(rules, [old_gate], clock=clock, ids_configured={"acme": False})
    await alerter.on_snapshot(snapshot(clock, {1, 2}, 1))
    assert old_gate.held() == 2
    windows = ()  # the window is gone before the new sinks arrive
    await alerter.replace_delivery(
        rules, [QuietGate([new_recorder], lambda: Quiet(windows), clock)]
    )
    assert new_recorder.events == []
    assert new_recorder.firing == [[]]
    clock.advance(60)
    await alerter.on_snapshot(snapshot(clock, {1}, 2))  # 2 recovered meanwhile: nothing of it
    assert kinds(new_recorder) == [(1, "fired")]
    assert old_recorder.events == []


async def test_a_hold_that_ends_as_the_alert_resolves_sends_no_lonely_resolve() -> None:
    clock = FakeClock(T0)
    quiet = muted(T0 + timedelta(minutes=5))
    recorder = Recorder()
    alerter = Alerter(
        AlertRules(failing_for_seconds=0),
        [QuietGate([recorder], lambda: quiet, clock)],
        clock=clock,
        ids_configured={"acme": False},
    )
    await alerter.on_snapshot(snapshot(clock, {1}, 1))  # fired inside the mute
    clock.advance(600)
    await alerter.on_snapshot(snapshot(clock, set(), 2))  # the mute ended; so did the failure
    assert recorder.events == []  # no resolve of an alert its receivers never heard of


class Inbox:
    """A routed receiver: what each message it is given carries, as structure."""

    def __init__(self) -> None:
        self.messages: list[list[tuple[str, str, str]]] = []  # (fingerprint, kind, severity)

    def put(self, message: Message) -> None:
        self.messages.append([(a.fingerprint, a.kind, a.severity) for a in message.alerts])

    async def aclose(self) -> None:
        return None


async def test_a_shop_muted_during_a_platform_incident_hears_nothing_until_its_mute_ends() -> None:
    """The incident holds the shop's escalation; a mute that begins then holds the shop: when
    the incident ends, the escalation it held is not sent (the shop is muted), and when the
    mute ends the shop is notified once, as fired, critical."""
    clock = FakeClock(T0)
    quiet = Quiet()
    inbox = Inbox()
    router = Router(
        RouteTree.of([], ["oncall"]),
        {"oncall": inbox},
        group_wait_seconds=0,
        fleet=lambda: [("acme", i, "shopify") for i in (1, 2, 3)],
        incident_minimum=2,
    )
    rules = AlertRules(failing_for_seconds=0, failing_critical_after_seconds=120)
    alerter = Alerter(
        rules,
        [QuietGate([router], lambda: quiet, clock)],
        clock=clock,
        ids_configured={"acme": False},
    )

    async def poll(failing: set[int], cycle: int) -> None:
        await alerter.on_snapshot(snapshot(clock, failing, cycle))
        router.settle()

    await poll({1, 2, 3}, 1)  # all three: a platform incident
    assert [k for _, k, _ in inbox.messages[0]] == ["fired"] * 3
    shop3 = fingerprint(AlertKey("IntegrationFailing", "acme", 3))
    clock.advance(180)
    await poll({1, 2, 3}, 2)  # escalations: held by the incident
    quiet = muted(clock() + timedelta(minutes=10), integration_id=3)
    clock.advance(60)
    await poll({1, 2, 3}, 3)  # shop 3 muted
    clock.advance(60)
    await poll({3}, 4)  # 1 and 2 recover: the incident is over
    assert len(inbox.messages) == 2
    assert sorted(k for _, k, _ in inbox.messages[1]) == ["resolved", "resolved"]
    clock.advance(600)  # the mute ended: shop 3 once, as it is now
    await poll({3}, 5)
    assert inbox.messages[2:] == [[(shop3, "fired", "critical")]]
    await alerter.aclose()


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
