"""A model-based property test of the path from a condition to every receiver (hypothesis
stateful testing), with time in it.

Random timelines of two accounts — records changing, shops recovering and failing again
between two polls, reads failing, account-wide outages and rejected keys, the daemon stopping
and starting again from its state file (also while an alert is held, and while mutes and
windows begin and end), mutes made and lifted, reloads that change the maintenance windows, the
routes and the receivers, platform incidents — drive the daemon's own code: health derivation,
the exported values, the Alerter (conditions, the alert state machine, the state file, cause
lookups), the quiet gate, the router with its platform-incident desk and the messages. The
receivers are recorders at the end of that path: ``hook`` gets what a webhook (and, as its
active list, Alertmanager) gets; ``A`` and ``B`` are routed receivers.

At every evaluation:

- the daemon's alert state equals the shipped rules' conditions evaluated on the values it
  exports (thresholds read from ``deploy/prometheus/rules.yml``), and the holds it exports
  (``integration_notifications_held``, ``account_notifications_held``) are exactly the holds
  of its gate, so Prometheus fires what the daemon notifies — the rules' logic is mirrored
  here on the exported samples; ``deploy/prometheus/rules_test.yml`` and
  ``tests/system/test_quiet.py`` run the same rules in promtool;
- on stdout each episode fires at most once and resolves exactly once, its ``starts_at``
  never moves, and nothing fires, escalates or resolves while it cannot be read;
- each receiver hears what ``docs/alerts.md`` says: nothing about an alert while a window or a
  mute holds it; an alert firing and not held has been told as firing (its ``fired`` when it
  starts, or when its hold ends while it still fires — also when the hold ended while the
  daemon was down), in its current episode and severity (routed receivers: unless a platform
  incident holds its follow-ups); an alert no longer firing and not held has been told
  resolved, unless it was held after it was told (a resolve inside a hold says nothing) or a
  platform incident holds its recovery; never a ``resolved`` of an alert not told as firing,
  never ``fired`` twice in one episode without a hold in between — across restarts too.

``MODEL_EXAMPLES=2000`` runs it longer (the default run takes a few seconds).
``MODEL_PERSIST_HOLDS=0`` runs it as a daemon that does not save what it holds would: it fails
(``test_the_model_fails_when_holds_are_not_persisted`` shows that on every run).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import yaml
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from monitor.alerting import persistence
from monitor.alerting.rules import (
    INTEGRATION_FAILING,
    INTEGRATION_FETCH_STALE,
    AlertKey,
    AlertRules,
    AlertState,
    fingerprint,
)
from monitor.alerting.service import Alerter
from monitor.exporter.families import elapsed_samples, integration_samples
from monitor.health import derive
from monitor.notify.dispatch import Router
from monitor.notify.gate import QuietGate
from monitor.notify.messages import Message
from monitor.notify.quiet import Mute, Quiet, Window
from monitor.notify.routes import Matchers, RouteTree
from monitor.sendcloud import parse_integration
from monitor.store import AccountSnapshot, Observation, ReadOutcome

ACCOUNTS = ("acme", "beta")
IDS = (1, 2, 3)
KIND = "shopify"
FLEET = [(account, i, KIND) for account in ACCOUNTS for i in IDS]
STALE_AFTER = 7200.0
T0 = datetime(2026, 11, 1, tzinfo=UTC)
RULES_FILE = Path(__file__).parents[2] / "deploy" / "prometheus" / "rules.yml"
#: The routes a reload may bring (every route has receivers: every event reaches someone).
ROUTES = {
    "everyone": RouteTree.of([], ["A", "B"]),
    "by account": RouteTree.of([(Matchers(account="acme"), ["A"], False)], ["B"]),
    "critical to A": RouteTree.of([(Matchers(severity="critical"), ["A"], True)], ["B"]),
    "only A": RouteTree.of([], ["A"]),
}
RECEIVERS = ("hook", "A", "B")
PERSIST_HOLDS = os.environ.get("MODEL_PERSIST_HOLDS", "1") != "0"


def _shipped_rules() -> dict[str, float]:
    """The thresholds of the shipped rules, and a check that every rule the model mirrors
    ends with the hold it mirrors."""
    rules = yaml.safe_load(RULES_FILE.read_text())
    expr = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"] if "alert" in r}

    def number(alert: str, pattern: str) -> float:
        found = re.search(pattern, expr[alert])
        assert found is not None
        return float(found[1])

    for alert in (
        "SendcloudIntegrationFailing",
        "SendcloudIntegrationFailingCritical",
        "SendcloudIntegrationFetchStale",
    ):
        assert (
            "unless on (instance, job, account, integration_id) integration_notifications_held == 1"
            in expr[alert]
        )
    for alert in ("SendcloudAuthFailing", "SendcloudMonitorPollsFailing"):
        assert "unless on (instance, job, account) account_notifications_held == 1" in expr[alert]
    return {
        "failing": number("SendcloudIntegrationFailing", r"failing_seconds > (\d+)"),
        "critical": number("SendcloudIntegrationFailingCritical", r"failing_seconds > (\d+)"),
        "stale": number("SendcloudIntegrationFetchStale", r"threshold_seconds > (\d+)"),
    }


THRESHOLDS = _shipped_rules()
# Durations are whole seconds plus a half, steps whole seconds: no value ever sits exactly on a
# threshold, where ">" (the rules) and ">=" (the grace) would differ by one evaluation.
seconds = st.integers(min_value=0, max_value=4 * 3600).map(lambda s: s + 0.5)
accounts = st.sampled_from(ACCOUNTS)
integrations = st.sampled_from(IDS)


@dataclass(frozen=True)
class Item:
    """One alert event as a receiver heard it."""

    fingerprint: str
    status: str
    kind: str
    severity: str
    starts_at: str
    step: int
    seq: int


def coverage(what: str) -> None:
    """What a timeline went through (``--hypothesis-show-statistics``); nothing outside a
    hypothesis run."""
    with contextlib.suppress(InvalidArgument):
        hypothesis.event(what)


class Hook:
    """Where the gate hands what a webhook gets (events) and Alertmanager (the active list)."""

    name = "hook"

    def __init__(self, machine: Timeline) -> None:
        self.machine = machine
        self.active: dict[str, set[str]] = {}

    def submit(self, account: str, events: Any, firing: Any) -> None:
        self.active[account] = {a["fingerprint"] for a in firing}
        for e in events:
            self.machine.heard(
                "hook", e["fingerprint"], e["status"], e["kind"], e["severity"], e["starts_at"]
            )

    async def aclose(self) -> None:
        return None


class Inbox:
    """A routed receiver: records each message it is given."""

    def __init__(self, name: str, machine: Timeline) -> None:
        self.name = name
        self.machine = machine

    def put(self, message: Message) -> None:
        for a in message.alerts:
            self.machine.heard(self.name, a.fingerprint, a.status, a.kind, a.severity, a.starts_at)

    async def aclose(self) -> None:
        return None


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


class Timeline(RuleBasedStateMachine):
    persist_holds = PERSIST_HOLDS

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.now = T0
        self.last_poll = T0
        self.rules = AlertRules()
        self.records: dict[tuple[str, int], dict[str, Any]] = {
            (a, i): {"id": i, "shop_name": f"shop {i}", "type": KIND, "last_fetched_at": T0}
            for a in ACCOUNTS
            for i in IDS
        }
        self.unreadable: set[tuple[str, int]] = set()
        self.outage: set[str] = set()
        self.rejected: set[str] = set()
        self.observations: dict[str, dict[int, Observation]] = {}
        self.mutes: list[Mute] = []
        self.windows: tuple[Window, ...] = ()
        self.route_name = "everyone"
        self.step = 0
        self.history: dict[AlertKey, list[dict[str, Any]]] = {}  # stdout, per alert
        #: receiver -> fingerprint -> what it heard (all, and in this step)
        self.heard_log: dict[str, dict[str, list[Item]]] = {r: {} for r in RECEIVERS}
        self.this_step: dict[str, dict[str, list[Item]]] = {r: {} for r in RECEIVERS}
        self.seq = 0
        self.started_at = 0
        self.routes_changed_at = -1
        self.held_at: dict[str, int] = {}  # fingerprint -> the last step it was held at
        self.ever_members: set[str] = set()  # of a platform incident, at some time
        self.directory = tempfile.TemporaryDirectory(
            dir="/dev/shm" if Path("/dev/shm").is_dir() else None
        )
        self.state_file = Path(self.directory.name) / "alerts.json"
        self.hook = Hook(self)
        self.inboxes = {"A": Inbox("A", self), "B": Inbox("B", self)}
        self.alerter: Alerter | None = None
        self.router: Router | None = None
        self.start()

    def teardown(self) -> None:
        coverage(f"steps: {self.step // 10 * 10}+")
        if any(h["kind"] == "fired" for e in self.history.values() for h in e):
            coverage("an alert fired")
        if self.alerter is not None:
            self.loop.run_until_complete(self.alerter.aclose())
        self.loop.close()
        self.directory.cleanup()

    # -- the daemon ------------------------------------------------------------------------

    def quiet(self) -> Quiet:
        return Quiet(self.windows, tuple(self.mutes))

    def sinks(self) -> QuietGate:
        async def build() -> QuietGate:
            self.router = Router(
                ROUTES[self.route_name],
                self.inboxes,
                # its clock stands still: a group goes out when the model settles, with every
                # account's events of the poll in it
                group_wait_seconds=1,
                fleet=lambda: FLEET,
                monotonic=lambda: 0.0,
                incident_minimum=2,
            )
            return QuietGate([self.hook, self.router], self.quiet, lambda: self.now)

        return self.loop.run_until_complete(build())

    def start(self) -> None:
        self.begin_step()
        gate = self.sinks()

        async def build() -> Alerter:
            return Alerter(
                self.rules,
                [gate],
                clock=lambda: self.now,
                ids_configured=dict.fromkeys(ACCOUNTS, False),
                state_file=self.state_file,
            )

        self.alerter = self.loop.run_until_complete(build())
        self.started_at = self.step
        self.settle()
        self.mark_held()
        self.check_receivers(started=True)

    def stop(self) -> None:
        assert self.alerter is not None
        self.loop.run_until_complete(self.alerter.aclose())
        self.alerter = self.router = None
        self.observations = {}  # the last snapshots die with the process
        if not self.persist_holds:  # a daemon that saves the open alerts only
            saved = persistence.load_all(self.state_file)
            persistence.save(self.state_file, saved.alerts)

    def settle(self) -> None:
        """What is gathering goes out, cause lookups in flight finish."""
        for _ in range(3):
            self.loop.run_until_complete(asyncio.sleep(0))
        if self.router is not None:
            self.router.settle()
        members = self.incident_members()
        if members:
            coverage("a platform incident")
        if self.ever_members - members:
            coverage("a platform incident ended")
        self.ever_members |= members

    @property
    def states(self) -> dict[AlertKey, AlertState]:
        assert self.alerter is not None
        return self.alerter.states

    # -- the world changes -------------------------------------------------------------------

    @rule(account=accounts, integration=integrations, ago=seconds)
    def starts_failing(self, account: str, integration: int, ago: float) -> None:
        record = self.records[(account, integration)]
        if record.get("started_failing_at") is None:
            record["started_failing_at"] = self.now - timedelta(seconds=ago)

    @rule(account=accounts, ago=seconds)
    def most_of_a_type_fails_together(self, account: str, ago: float) -> None:
        """A platform's outage: every shop of one account (and so of the type) at once."""
        for integration in IDS:
            self.starts_failing(account, integration, ago)

    @rule(account=accounts, integration=integrations)
    def recovers(self, account: str, integration: int) -> None:
        self.records[(account, integration)]["started_failing_at"] = None

    @rule(ago=seconds)
    def the_platform_fails(self, ago: float) -> None:
        """A platform's outage: every shop of the type, in every account, at once."""
        for account in ACCOUNTS:
            self.most_of_a_type_fails_together(account, ago)

    @rule()
    def the_platform_recovers(self) -> None:
        for account in ACCOUNTS:
            for integration in IDS:
                self.recovers(account, integration)

    @rule(account=accounts, integration=integrations, fraction=st.floats(0.0, 1.0))
    def recovers_and_fails_again_between_polls(
        self, account: str, integration: int, fraction: float
    ) -> None:
        gap = (self.now - self.last_poll).total_seconds()
        moment = self.last_poll + timedelta(seconds=int(gap * fraction) + 0.5)
        if moment < self.now:
            self.records[(account, integration)]["started_failing_at"] = moment

    @rule(account=accounts, integration=integrations, ago=seconds)
    def orders_fetched(self, account: str, integration: int, ago: float) -> None:
        fetched = self.now - timedelta(seconds=ago)
        record = self.records[(account, integration)]
        if fetched > record["last_fetched_at"]:
            record["last_fetched_at"] = fetched

    @rule(account=accounts, integration=integrations)
    def read_fails_or_works_again(self, account: str, integration: int) -> None:
        self.unreadable ^= {(account, integration)}

    @rule(account=accounts)
    def outage_toggles(self, account: str) -> None:
        self.outage ^= {account}

    @rule(account=accounts)
    def keys_rejected_or_fixed(self, account: str) -> None:
        self.rejected ^= {account}

    @rule(
        account=accounts,
        integration=st.none() | integrations,
        minutes=st.integers(min_value=1, max_value=2 * 60),
    )
    def mute(self, account: str, integration: int | None, minutes: int) -> None:
        until = self.now + timedelta(minutes=minutes, seconds=0.5)
        number = f"m{len(self.mutes)}"
        self.mutes.append(Mute(number, account, until, "work", "alice", self.now, integration))

    @rule(account=accounts)
    def unmute(self, account: str) -> None:
        self.mutes = [m for m in self.mutes if m.account != account]

    @rule(
        account=st.none() | accounts,
        integration=st.none() | integrations,
        begins=st.integers(min_value=-120, max_value=240),
        minutes=st.integers(min_value=1, max_value=6 * 60),
    )
    def reload_windows(
        self, account: str | None, integration: int | None, begins: int, minutes: int
    ) -> None:
        """A reload (or, while the daemon is down, the configuration it starts with) with one
        maintenance window, replacing those before; the sinks are kept."""
        start = self.now + timedelta(minutes=begins, seconds=0.5)
        matchers = Matchers(account=account, integration_id=integration)
        self.windows = (Window("w", matchers, start, start + timedelta(minutes=minutes)),)

    @rule()
    def reload_without_windows(self) -> None:
        self.windows = ()

    @rule(name=st.sampled_from(sorted(ROUTES)))
    def reload_routes(self, name: str) -> None:
        """A reload that changes the routes and receivers: new sinks take over what the old
        ones held (while down: the configuration the daemon starts with)."""
        if name == self.route_name:
            return
        self.route_name = name
        self.routes_changed_at = self.step + 1
        if self.alerter is None:
            return
        self.begin_step()
        gate = self.sinks()
        self.loop.run_until_complete(self.alerter.replace_delivery(self.rules, [gate]))
        self.settle()
        self.mark_held()
        self.check_receivers(started=True)

    @precondition(lambda self: self.alerter is not None)
    @rule()
    def daemon_stops(self) -> None:
        self.stop()

    @precondition(lambda self: self.alerter is None)
    @rule()
    def daemon_starts(self) -> None:
        self.start()

    @precondition(lambda self: self.alerter is not None)
    @rule()
    def restart(self) -> None:
        self.stop()
        self.start()

    @rule(step=st.integers(min_value=1, max_value=1800))
    def time_passes(self, step: int) -> None:
        """Time passes, and a running daemon polls (most of what it sees)."""
        self.now += timedelta(seconds=step)
        if self.alerter is not None:
            self.poll()

    @rule(step=st.integers(min_value=1, max_value=1800))
    def time_passes_without_a_poll(self, step: int) -> None:
        self.now += timedelta(seconds=step)

    @precondition(lambda self: self.alerter is not None)
    @rule()
    def a_poll_runs(self) -> None:
        self.poll()

    # -- one poll of every account -----------------------------------------------------------

    def snapshot(self, account: str) -> AccountSnapshot:
        observations: dict[int, Observation] = {}
        previous = self.observations.get(account, {})
        down = account in self.outage or account in self.rejected
        for integration in IDS:
            before = previous.get(integration)
            if down or (account, integration) in self.unreadable:
                observations[integration] = Observation(
                    integration,
                    ReadOutcome.ERROR,
                    before.record if before else None,
                    before.health if before else None,
                    error_reason="server_error",
                    unreadable_since=(before.unreadable_since if before else None) or self.now,
                )
                continue
            record, _ = parse_integration(self.records[(account, integration)])
            health = derive(record, self.now, STALE_AFTER)
            observations[integration] = Observation(integration, ReadOutcome.OK, record, health)
        self.observations[account] = observations
        error = "auth_failed" if account in self.rejected else "server_error" if down else None
        return AccountSnapshot(
            account, observations, auth_ok=account not in self.rejected, account_error=error
        )

    def poll(self) -> None:
        assert self.alerter is not None
        self.begin_step()
        for account in ACCOUNTS:
            snapshot = self.snapshot(account)
            previous = {k for k in self.states if k.account == account}
            events = self.loop.run_until_complete(self.alerter.on_snapshot(snapshot))
            for event in events:
                key = AlertKey(event["alert"], event["account"], event["integration_id"])
                self.history.setdefault(key, []).append(
                    {
                        "kind": event["kind"],
                        "status": event["status"],
                        "starts_at": event["starts_at"],
                    }
                )
                if key.integration_id is not None and event["kind"] != "cause":
                    # nothing fires, escalates or resolves while the integration cannot be read
                    assert key in previous or event["kind"] == "fired"
                    assert account not in self.outage | self.rejected, event
                    assert (account, key.integration_id) not in self.unreadable, event
        self.settle()
        self.last_poll = self.now
        self.mark_held()
        self.daemon_and_rules_agree()
        self.episodes_fire_once_resolve_once_and_keep_their_start()
        self.check_receivers()

    # -- what the receivers heard ------------------------------------------------------------

    def begin_step(self) -> None:
        self.step += 1
        self.this_step = {r: {} for r in RECEIVERS}

    def heard(
        self, receiver: str, fp: str, status: str, kind: str, severity: str, starts_at: str
    ) -> None:
        """One event as ``receiver`` heard it, checked against what it heard before: never a
        resolve of an alert not told as firing, never a second ``fired`` of one episode
        without a hold between, an episode is first heard ``fired``. (A reload that changes
        the routes may send a routed receiver what follows an episode it did not hear begin;
        a route by severity hears an episode from its escalation on.)"""
        self.seq += 1
        item = Item(fp, status, kind, severity, starts_at, self.step, self.seq)
        log = self.heard_log[receiver].setdefault(fp, [])
        before = log[-1] if log else None
        rerouted = receiver != "hook" and self.routes_changed_at > (before.step if before else -1)
        if kind != "fired" and (before is None or before.starts_at != starts_at):
            # an episode is first heard as fired (a route by severity hears it from its
            # escalation on)
            assert rerouted or self.route_name == "critical to A", (receiver, item, before)
            assert receiver != "hook", (receiver, item, before)
        if status == "resolved" and not rerouted:
            assert before is not None, (receiver, item)
            assert before.status == "firing", (receiver, item, before)
        elif before is not None and before.status == "firing" and kind == "fired":
            if before.starts_at == starts_at:  # fired again in one episode: a hold between
                assert self.held_at.get(fp, -1) >= before.step, (receiver, item, before)
                coverage(f"{receiver}: fired again after a hold")
                if self.started_at > before.step:
                    coverage(f"{receiver}: fired again after a hold and a restart")
        elif before is not None and before.status == "resolved" and not rerouted:
            assert kind == "fired", (receiver, item, before)  # a new episode starts fired
        log.append(item)
        self.this_step[receiver].setdefault(fp, []).append(item)

    def incident_members(self) -> set[str]:
        if self.router is None:
            return set()
        return {f for members in self.router.incident_members().values() for f in members}

    def held(self, account: str, integration: int | None) -> bool:
        """The model's own reading of the quiet: does a mute or a window hold this alert?"""
        for mute in self.mutes:
            if (
                mute.account == account
                and mute.until > self.now
                and mute.integration_id in (None, integration)
            ):
                return True
        for window in self.windows:
            assert window.start is not None
            assert window.end is not None
            if window.start <= self.now < window.end:
                m = window.matchers
                if (m.account is None or m.account == account) and (
                    m.integration_id is None or m.integration_id == integration
                ):
                    return True
        return False

    def mark_held(self) -> None:
        for key in set(self.states) | set(self.history):
            if self.held(key.account, key.integration_id):
                self.held_at[fingerprint(key)] = self.step
                if key in self.states and self.states[key].firing:
                    coverage("a firing alert held")
                    if self.alerter is not None and self.started_at == self.step:
                        coverage("a firing alert held at a start")

    def check_receivers(self, *, started: bool = False) -> None:
        """What every receiver heard agrees with docs/alerts.md after this step."""
        members = self.incident_members()
        states = self.states
        for key in set(states) | set(self.history):
            fp = fingerprint(key)
            state = states.get(key)
            if self.held(key.account, key.integration_id):
                # nothing about a held alert (the recoveries an incident held aside)
                assert fp not in self.this_step["hook"], (key, self.this_step["hook"][fp])
                for item in self.this_step["A"].get(fp, []) + self.this_step["B"].get(fp, []):
                    assert item.status == "resolved", (key, item)
                    assert fp in self.ever_members, (key, item)
                continue
            if started:
                continue  # a hand-over releases nothing: the next evaluation will
            hook = self.last("hook", fp)
            routed = max(
                (x for x in (self.last("A", fp), self.last("B", fp)) if x is not None),
                key=lambda x: x.seq,
                default=None,
            )
            if state is not None and state.firing:  # told firing, this episode, this severity
                for last, incident in ((hook, False), (routed, fp in members)):
                    assert last is not None, key
                    assert last.status == "firing", (key, last)
                    assert last.starts_at == _iso(state.since), (key, last)
                    if not incident:
                        assert last.severity == state.severity, (key, last)
                continue
            # no longer firing: told resolved, unless held after it was told (or an incident
            # holds its recovery)
            for last, incident in ((hook, False), (routed, fp in members)):
                if last is not None and last.status == "firing" and not incident:
                    assert self.held_at.get(fp, -1) >= last.step, (key, last)
        # Alertmanager's active list: what fires and is not held
        if not started:
            for account in ACCOUNTS:
                expected = {
                    fingerprint(k)
                    for k, s in states.items()
                    if k.account == account
                    and s.firing
                    and not self.held(account, k.integration_id)
                }
                assert self.hook.active.get(account, set()) == expected, account

    def last(self, receiver: str, fp: str) -> Item | None:
        log = self.heard_log[receiver].get(fp)
        return log[-1] if log else None

    # -- the daemon and the shipped rules ----------------------------------------------------

    def exported(self, account: str, integration: int) -> dict[str, float] | None:
        """The integration's series as /metrics has them now (None: no values exported)."""
        observation = self.observations.get(account, {}).get(integration)
        if observation is None or not observation.has_values:
            return None
        values = dict(integration_samples(observation))
        at = observation.values_at(self.now)
        assert at is not None
        values.update(elapsed_samples(observation, at))
        return values

    def daemon_and_rules_agree(self) -> None:
        """The shipped rules on the exported samples fire exactly what the daemon notifies."""
        active = self.quiet().at(self.now)
        for account in ACCOUNTS:
            account_hold = active.account_hold(account) is not None  # what is exported
            assert account_hold == self.held(account, None), account  # = the gate's hold
            for integration in IDS:
                hold = active.integration_hold(account, integration, KIND) is not None
                assert hold == self.held(account, integration), (account, integration)
                values = self.exported(account, integration)
                if values is None:
                    continue  # after a restart, before the first read: no series to judge
                failing = values["integration_failing_seconds"]
                stale = (
                    values["integration_fetch_stale"] == 1
                    and values.get("integration_fetch_staleness_seconds", 0.0)
                    - values["integration_fetch_stale_threshold_seconds"]
                    > THRESHOLDS["stale"]
                )
                failing_state = self.states.get(AlertKey(INTEGRATION_FAILING, account, integration))
                stale_state = self.states.get(
                    AlertKey(INTEGRATION_FETCH_STALE, account, integration)
                )
                fires = failing_state is not None and failing_state.firing
                assert fires == (failing > THRESHOLDS["failing"]), (integration, failing)
                critical = (
                    fires and failing_state is not None and failing_state.severity == "critical"
                )
                assert critical == (failing > THRESHOLDS["critical"]), (integration, failing)
                assert (stale_state is not None and stale_state.firing) == stale, integration
                # Prometheus: threshold unless held; the daemon: firing and not held by its gate
                prometheus = failing > THRESHOLDS["failing"] and not hold
                assert prometheus == (fires and not self.held(account, integration))

    def episodes_fire_once_resolve_once_and_keep_their_start(self) -> None:
        for key, events in self.history.items():
            open_since = None
            for event in events:
                if event["kind"] == "fired":
                    assert open_since is None, (key, events)  # fired twice in one episode
                    open_since = event["starts_at"]
                else:
                    assert open_since is not None, (key, events)  # resolved without firing
                    assert event["starts_at"] == open_since, (key, events)
                    if event["kind"] == "resolved":
                        open_since = None
            state = self.states.get(key)
            if state is not None and state.firing:
                assert _iso(state.since) == open_since, key


EXAMPLES = int(os.environ.get("MODEL_EXAMPLES", "80"))
TestTimeline = Timeline.TestCase
TestTimeline.settings = settings(max_examples=EXAMPLES, stateful_step_count=50, deadline=None)
# a long run (and the shrinking of a timeline that fails) outlasts the suite's 60 s default
TestTimeline.pytestmark = [pytest.mark.timeout(120 + EXAMPLES)]


@pytest.mark.parametrize("persisted", [True, False])
def test_the_model_fails_when_holds_are_not_persisted(persisted: bool) -> None:
    """The model catches a daemon that does not save what it holds (MODEL_PERSIST_HOLDS=0 runs
    the random timelines that way: they fail within a few hundred examples). Here the
    timeline it finds, replayed: a muted shop fails, the daemon stops, the mute expires, the
    daemon starts — its receivers must hear the shop at the first poll."""
    machine = Timeline()
    machine.persist_holds = persisted
    try:
        machine.starts_failing("acme", 1, 1800.5)
        machine.mute("acme", 1, 30)
        machine.time_passes(60)  # a poll: it fires, held
        assert machine.last("hook", fingerprint(AlertKey(INTEGRATION_FAILING, "acme", 1))) is None
        machine.daemon_stops()
        machine.time_passes(1800)  # down: the mute expires
        machine.daemon_starts()
        if persisted:
            machine.time_passes(60)
            last = machine.last("hook", fingerprint(AlertKey(INTEGRATION_FAILING, "acme", 1)))
            assert last is not None
            assert last.kind == "fired"
        else:
            with pytest.raises(AssertionError):
                machine.time_passes(60)
    finally:
        machine.teardown()
