"""A platform-wide incident: 100 of 1 000 shops start failing in the same cycle.

One webhook POST per account and evaluation, with a summary; polls keep their schedule while
100 cause lookups run in the background; the request budget is never exceeded (the simulator
enforces it and would answer 429).
"""

from __future__ import annotations

import collections
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from monitor.simulator import SimIntegration, Simulator
from tests.conftest import free_port
from tests.daemon_process import DaemonProcess, monitor_env
from tests.receivers import Receiver, running

INTERVAL = 5.0
BUDGET = 900


def samples(daemon: DaemonProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(daemon.get("/metrics").text)
        for s in family.samples
    }


def total(
    values: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in values.items() if n == name and wanted <= ls)


@pytest.mark.timeout(120)
def test_a_hundred_shops_failing_at_once_is_one_message(tmp_path: Path) -> None:
    shops = [SimIntegration(i, "healthy", f"Shop {i}", type="shopify") for i in range(1, 1001)]
    config = tmp_path / "monitor.yaml"
    with (
        # the budget spreads requests over the minute with a burst of 10 at most: the simulator
        # answers 429 to anything beyond that in any sliding minute
        Simulator(shops, rate_limit_per_minute=BUDGET + 10) as sim,
        running(Receiver()) as webhook,
    ):
        config.write_text(
            yaml.safe_dump(
                {
                    "defaults": {"max_requests_per_minute": BUDGET},
                    "alerting": {"webhooks": [{"name": "ops", "url": webhook.url}]},
                }
            )
        )
        port = free_port()
        env = monitor_env(sim, port, MONITOR_CONFIG_FILE=str(config))
        daemon = DaemonProcess(["run"], env, port)
        try:
            daemon.wait_ready()
            started = time.monotonic()
            before = samples(daemon)  # every POST from here on belongs to a poll counted here
            polls_before = total(before, "integration_monitor_polls_total")
            assert webhook.attempts == 0
            since = datetime.now(UTC) - timedelta(hours=2)
            for i in range(1, 101):  # a shop system's outage: 100 shops at once
                sim.update(i, scenario="failing", started_failing_at=since)
            daemon.wait_for(lambda: len(webhook.bodies) >= 1, 3 * INTERVAL, "the incident POST")
            time.sleep(3 * INTERVAL)  # three more cycles while 100 causes are looked up
            posts = webhook.attempts  # first: any POST seen now comes from a poll counted next
            after = samples(daemon)
            elapsed = time.monotonic() - started
            code, _ = daemon.terminate()
        finally:
            daemon.kill()
    assert code == 0
    polls = total(after, "integration_monitor_polls_total") - polls_before
    assert polls >= 3
    # one POST per evaluation at most (the incident, then the causes as they arrive)
    assert 1 <= posts <= polls
    first = webhook.bodies[0]
    fired = [e for e in first["events"] if e["kind"] == "fired"]
    assert len(fired) == 100
    assert first["summary"].startswith("100 shopify integrations failing since")
    causes = [e for body in webhook.bodies[1:] for e in body["events"] if e["kind"] == "cause"]
    assert causes  # lookups went on in the background...
    assert all(b["summary"] for b in webhook.bodies)
    # ...while every poll kept its schedule: none skipped or missed, all within the interval
    assert total(after, "integration_monitor_scheduler_events_total") == 0
    count = total(after, "integration_monitor_poll_duration_seconds_count")
    assert total(after, "integration_monitor_poll_duration_seconds_bucket", le="5.0") == count
    # and the API never saw more than the budget: the simulator enforces it with 429s
    assert sim.throttled == 0
    assert total(after, "sendcloud_api_requests_total", code="429") == 0
    assert elapsed < 60  # the whole incident fits in one sliding minute of the limit


@pytest.mark.timeout(240)
def test_a_thousand_causes_are_looked_up_once_each_within_the_budget(tmp_path: Path) -> None:
    """1 000 shops failing since before the stream's first read-back (their logs are three hours
    old): each cause takes one per-integration lookup. The lookups used to drain at a tenth of
    the budget (90 a minute) beside the unused rest; now they take what the polls leave, and
    each integration is looked up once in its episode: not again for a repeat or an
    escalation, nor when the lookup found nothing. (How soon they arrive: bench/incident.py.)"""
    since = datetime.now(UTC) - timedelta(hours=3)
    shops = [
        SimIntegration(
            i, "failing", f"Shop {i}", started_failing_at=since, log_count=3 if i % 2 else 0
        )
        for i in range(1, 1001)
    ]
    config = tmp_path / "monitor.yaml"
    with Simulator(shops, rate_limit_per_minute=BUDGET + 10) as sim:
        config.write_text(
            yaml.safe_dump(
                {
                    "defaults": {"max_requests_per_minute": BUDGET},
                    "alerting": {
                        "repeat_interval_seconds": 30,
                        # escalated a minute into the test, while the lookups go on
                        "failing_critical_after_seconds": 3 * 3600 + 60,
                    },
                }
            )
        )
        port = free_port()
        daemon = DaemonProcess(
            ["run"], monitor_env(sim, port, MONITOR_CONFIG_FILE=str(config)), port
        )

        def failing(kind: str) -> list[dict[str, object]]:
            return [
                e
                for e in daemon.events("alert")
                if e["alert"] == "IntegrationFailing" and e["kind"] == kind
            ]

        try:
            daemon.wait_ready()
            daemon.wait_for(lambda: len(failing("cause")) == 1000, 180, "the 1 000 causes")
            daemon.wait_for(lambda: len(failing("escalated")) == 1000, 60, "the escalations")
            daemon.wait_for(lambda: len(failing("repeat")) >= 1000, 60, "the repeats")
            time.sleep(2 * INTERVAL)
            after = samples(daemon)
        finally:
            daemon.terminate()
    lookups = collections.Counter(
        p for p in sim.requests if re.fullmatch(r"/integrations/\d+/logs", p)
    )
    assert len(lookups) == 1000
    assert set(lookups.values()) == {1}  # none made twice
    causes = failing("cause")
    found = [e for e in causes if e["cause"] is not None]
    assert len(found) == 500
    nothing = {e["cause_error"] for e in causes if e["cause"] is None}
    assert nothing == {"no exception logs for this integration"}
    # within the budget, polls on schedule
    assert sim.throttled == 0
    assert total(after, "integration_monitor_scheduler_events_total") == 0
