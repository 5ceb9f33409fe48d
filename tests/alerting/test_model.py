"""A model-based property test of the pure core (hypothesis stateful testing).

Random timelines of one account — records changing, shops recovering and failing again between
two polls, reads failing, account-wide outages, restarts from the state file — drive the same
functions the daemon runs: health derivation, the snapshot's exported values, alert conditions
and the alert state machine. At every step:

- the daemon's alert state equals the shipped rules' conditions evaluated on the values it
  exports (their thresholds read from ``deploy/prometheus/rules.yml``);
- each episode fires at most once and resolves exactly once, and its ``starts_at`` never moves;
- nothing fires, escalates or resolves while the integration cannot be read.

The default run is short; ``MODEL_EXAMPLES=2000`` runs it longer.
"""

from __future__ import annotations

import os
import re
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from monitor.alerting import persistence
from monitor.alerting.rules import (
    INTEGRATION_FAILING,
    INTEGRATION_FETCH_STALE,
    AlertKey,
    AlertRules,
    AlertState,
    conditions_for,
    evaluate,
)
from monitor.exporter.families import elapsed_samples, integration_samples
from monitor.health import derive
from monitor.sendcloud import parse_integration
from monitor.store import AccountSnapshot, Observation, ReadOutcome

ACCOUNT = "acme"
IDS = (1, 2, 3)
STALE_AFTER = 7200.0
T0 = datetime(2026, 11, 1, tzinfo=UTC)
RULES_FILE = Path(__file__).parents[2] / "deploy" / "prometheus" / "rules.yml"


def _thresholds() -> dict[str, float]:
    rules = yaml.safe_load(RULES_FILE.read_text())
    expr = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"] if "alert" in r}

    def number(alert: str, pattern: str) -> float:
        found = re.search(pattern, expr[alert])
        assert found is not None
        return float(found[1])

    return {
        "failing": number("SendcloudIntegrationFailing", r"failing_seconds > (\d+)"),
        "critical": number("SendcloudIntegrationFailingCritical", r"failing_seconds > (\d+)"),
        "stale": number("SendcloudIntegrationFetchStale", r"threshold_seconds > (\d+)"),
    }


THRESHOLDS = _thresholds()
# Durations are whole seconds plus a half, steps whole seconds: no value ever sits exactly on a
# threshold, where ">" (the rules) and ">=" (the grace) would differ by one evaluation.
seconds = st.integers(min_value=0, max_value=4 * 3600).map(lambda s: s + 0.5)


class Timeline(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.last_poll = T0
        self.rules = AlertRules()
        self.records: dict[int, dict[str, Any]] = {
            i: {"id": i, "shop_name": f"shop {i}", "last_fetched_at": T0} for i in IDS
        }
        self.unreadable: set[int] = set()
        self.outage = False
        self.observations: dict[int, Observation] = {}
        self.states: dict[AlertKey, AlertState] = {}
        self.history: dict[AlertKey, list[dict[str, Any]]] = {}
        self.directory = tempfile.TemporaryDirectory()
        self.step_events: list[Any] = []
        self.poll()

    def teardown(self) -> None:
        self.directory.cleanup()

    # -- the world changes -------------------------------------------------------------------

    @rule(integration=st.sampled_from(IDS), ago=seconds)
    def starts_failing(self, integration: int, ago: float) -> None:
        record = self.records[integration]
        if record.get("started_failing_at") is None:
            record["started_failing_at"] = self.now - timedelta(seconds=ago)

    @rule(integration=st.sampled_from(IDS))
    def recovers(self, integration: int) -> None:
        self.records[integration]["started_failing_at"] = None

    @rule(integration=st.sampled_from(IDS), fraction=st.floats(0.0, 1.0))
    def recovers_and_fails_again_between_polls(self, integration: int, fraction: float) -> None:
        gap = (self.now - self.last_poll).total_seconds()
        moment = self.last_poll + timedelta(seconds=int(gap * fraction) + 0.5)
        if moment < self.now:
            self.records[integration]["started_failing_at"] = moment

    @rule(integration=st.sampled_from(IDS), ago=seconds)
    def orders_fetched(self, integration: int, ago: float) -> None:
        fetched = self.now - timedelta(seconds=ago)
        if fetched > self.records[integration]["last_fetched_at"]:
            self.records[integration]["last_fetched_at"] = fetched

    @rule(integration=st.sampled_from(IDS))
    def read_fails(self, integration: int) -> None:
        self.unreadable.add(integration)

    @rule(integration=st.sampled_from(IDS))
    def read_works(self, integration: int) -> None:
        self.unreadable.discard(integration)

    @rule()
    def outage_toggles(self) -> None:
        self.outage = not self.outage

    @rule()
    def restart_from_the_state_file(self) -> None:
        """The process ends: the alert states survive through the state file, the last
        snapshot does not."""
        path = Path(self.directory.name) / "alerts.json"
        persistence.save(path, self.states)
        self.states = persistence.load(path)
        self.observations = {}

    @rule(step=st.integers(min_value=1, max_value=1800))
    def time_passes(self, step: int) -> None:
        self.now += timedelta(seconds=step)

    @rule()
    def a_poll_runs(self) -> None:
        self.poll()

    # -- the daemon's pure core --------------------------------------------------------------

    def poll(self) -> None:
        observations: dict[int, Observation] = {}
        for integration in IDS:
            before = self.observations.get(integration)
            if self.outage or integration in self.unreadable:
                observations[integration] = Observation(
                    integration,
                    ReadOutcome.ERROR,
                    before.record if before else None,
                    before.health if before else None,
                    error_reason="server_error",
                    unreadable_since=(before.unreadable_since if before else None) or self.now,
                )
                continue
            record, _ = parse_integration(self.records[integration])
            health = derive(record, self.now, STALE_AFTER)
            observations[integration] = Observation(integration, ReadOutcome.OK, record, health)
        self.observations = observations
        snapshot = AccountSnapshot(
            ACCOUNT,
            observations,
            account_error="server_error" if self.outage else None,
        )
        conditions, unknown = conditions_for(snapshot, ids_configured=False)
        previous = self.states
        evaluation = evaluate(previous, conditions, unknown, self.now, self.rules)
        self.states = evaluation.states
        self.step_events = evaluation.events
        for event in evaluation.events:
            key = event.state.key
            self.history.setdefault(key, []).append(
                {"kind": event.kind, "status": event.status, "starts_at": event.state.since}
            )
            if key.integration_id is not None:
                # nothing fires, escalates or resolves while the integration cannot be read
                assert key in previous or event.kind == "fired"
                assert not self.outage, event
                assert key.integration_id not in self.unreadable, event
        self.last_poll = self.now

    # -- what must hold ----------------------------------------------------------------------

    def exported(self, integration: int) -> dict[str, float] | None:
        """The integration's series as /metrics has them now (None: no values exported)."""
        observation = self.observations.get(integration)
        if observation is None or not observation.has_values:
            return None
        values = dict(integration_samples(observation))
        at = observation.values_at(self.now)
        assert at is not None
        values.update(elapsed_samples(observation, at))
        return values

    @precondition(lambda self: self.now == self.last_poll)  # the daemon evaluates at polls
    @invariant()
    def daemon_and_rules_agree(self) -> None:
        for integration in IDS:
            values = self.exported(integration)
            if values is None:
                continue  # after a restart, before the first read: no series to judge
            failing = values["integration_failing_seconds"]
            stale = (
                values["integration_fetch_stale"] == 1
                and values.get("integration_fetch_staleness_seconds", 0.0)
                - values["integration_fetch_stale_threshold_seconds"]
                > THRESHOLDS["stale"]
            )
            failing_state = self.states.get(AlertKey(INTEGRATION_FAILING, ACCOUNT, integration))
            stale_state = self.states.get(AlertKey(INTEGRATION_FETCH_STALE, ACCOUNT, integration))
            fires = failing_state is not None and failing_state.firing
            assert fires == (failing > THRESHOLDS["failing"]), (integration, failing)
            critical = fires and failing_state is not None and failing_state.severity == "critical"
            assert critical == (failing > THRESHOLDS["critical"]), (integration, failing)
            assert (stale_state is not None and stale_state.firing) == stale, integration

    @invariant()
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
                assert state.since == open_since, key

    @precondition(lambda self: bool(self.states))
    @invariant()
    def firing_states_were_announced(self) -> None:
        for key, state in self.states.items():
            if state.firing:
                assert self.history.get(key), key


TestTimeline = Timeline.TestCase
TestTimeline.settings = settings(
    max_examples=int(os.environ.get("MODEL_EXAMPLES", "60")),
    stateful_step_count=40,
    deadline=None,
)
