"""The exception-log stream in the running daemon, with what it meets: a real Prometheus running
the shipped rules, an incident, a storm, the request budget."""

from __future__ import annotations

import json
import re
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from monitor.simulator import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, SimIntegration, Simulator
from tests.conftest import ROOT, free_port, metric_samples, require_binary
from tests.daemon_process import DaemonProcess, monitor_env
from tests.receivers import Receiver, running
from tests.system.test_stack import process_group, ready, start_prometheus, wait

__all__ = ["process_group"]

SHOPS = 100
ACME_1 = {("account", "default"), ("integration_id", "1")}
ACME_2 = {("account", "default"), ("integration_id", "2")}


def lookups(sim: Simulator) -> int:
    """Per-integration exception-log requests the simulator answered."""
    return sum(1 for p in sim.requests if re.fullmatch(r"/integrations/\d+/logs", p))


def firing(prometheus: str, alertname: str) -> set[str]:
    alerts = httpx.get(prometheus + "/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return {
        a["labels"]["integration_id"]
        for a in alerts
        if a["labels"]["alertname"] == alertname and a["state"] == "firing"
    }


@pytest.mark.timeout(180)
def test_an_incident_warns_early_in_both_paths_and_its_causes_cost_no_lookup(
    tmp_path: Path, process_group: list[subprocess.Popen[bytes]]
) -> None:
    require_binary("prometheus")  # before anything starts: skipped on a laptop, failed in CI
    shops = [SimIntegration(i, "healthy", f"Shop {i}", type="shopify") for i in range(1, SHOPS + 1)]
    with Simulator(shops) as sim:
        port, prom_port = free_port(), free_port()
        config = tmp_path / "monitor.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    # two rounds may land in one cycle on a busy machine: room for them
                    "defaults": {"exception_logs_max_pages": 10},
                    "alerting": {"failing_for_seconds": 900},
                }
            )
        )
        env = monitor_env(sim, port, MONITOR_CONFIG_FILE=str(config))
        daemon = DaemonProcess(["run"], env, port)
        prom = start_prometheus(process_group, tmp_path, prom_port, port)
        try:
            daemon.wait_ready()
            wait(lambda: ready(prom + "/-/ready"), 30, "prometheus")
            # Prometheus has the counters at 0 before the first log: increase() sees every one
            wait(
                lambda: httpx.get(
                    prom + "/api/v1/query",
                    params={"query": "count(integration_exceptions_total)"},
                    timeout=5,
                ).json()["data"]["result"],
                30,
                "the counters in Prometheus",
            )
            polls_before = daemon.metric("integration_monitor_polls_total", outcome="success") or 0
            polling_since = time.monotonic()
            # 100 shops start logging: two logs each per cycle (two pages), three cycles
            for _ in range(3):
                sim.append_logs(
                    [i for i in range(1, SHOPS + 1) for _ in range(2)],
                    exception_type="requests.exceptions.ConnectTimeout",
                )
                time.sleep(5)
            started = time.monotonic()
            expected = {str(i) for i in range(1, SHOPS + 1)}
            wait(
                lambda: (
                    daemon.metric(
                        "integration_monitor_alerts_firing", alert="IntegrationErrorsRising"
                    )
                    == SHOPS
                ),
                30,
                "the daemon's early warnings",
            )
            wait(
                lambda: firing(prom, "SendcloudIntegrationErrorsRising") == expected,
                30,
                "Prometheus's early warnings",
            )
            assert time.monotonic() - started < 20  # about one interval (5 s), on a busy machine
            assert firing(prom, "SendcloudIntegrationFailing") == set()  # before any failure
            assert daemon.get("/").text.count("errors rising") >= SHOPS  # on the status page
            rising = [e for e in daemon.events("alert") if e["alert"] == "IntegrationErrorsRising"]
            assert {e["cause"]["exception_type"] for e in rising} == {
                "requests.exceptions.ConnectTimeout"
            }

            # then 50 of them fail (for 16 minutes already: past both graces)
            since = datetime.now(UTC) - timedelta(minutes=16)
            for shop in range(1, 51):
                sim.update(shop, scenario="failing", started_failing_at=since)
            wait(
                lambda: (
                    daemon.metric("integration_monitor_alerts_firing", alert="IntegrationFailing")
                    == 50
                ),
                15,
                "the daemon's failing alerts",
            )
            wait(lambda: len(firing(prom, "SendcloudIntegrationFailing")) == 50, 15, "Prometheus")
            wait(
                lambda: (
                    firing(prom, "SendcloudIntegrationErrorsRising")
                    == {str(i) for i in range(51, 101)}
                ),
                15,
                "the warnings of the failing shops resolved in Prometheus",
            )
            assert (
                daemon.metric("integration_monitor_alerts_firing", alert="IntegrationErrorsRising")
                == 50
            )
            fired = [
                e
                for e in daemon.events("alert")
                if e["alert"] == "IntegrationFailing" and e["kind"] == "fired"
            ]
            assert len(fired) == 50
            assert all(e["cause"] is not None for e in fired)  # at once, from the stream
            assert lookups(sim) == 0  # not one per-integration lookup
            # polling kept its schedule (one cycle per 5 s) and the budget held
            polls = (
                daemon.metric("integration_monitor_polls_total", outcome="success") or 0
            ) - polls_before
            assert polls >= (time.monotonic() - polling_since) // 5 - 1
            assert daemon.events("poll_interval_too_short") == []
            assert (
                daemon.metric("sendcloud_exception_logs_skipped_total", account="default") or 0
            ) == 0
        finally:
            daemon.terminate()
        shop_secrets = [
            line for line in daemon.lines if "shop-secret-" in line or "shop-token-" in line
        ]
        assert shop_secrets == []  # the logs' request details never reach the output


@pytest.mark.timeout(90)
def test_a_storm_of_ten_thousand_logs_is_bounded_counted_and_delays_no_poll(tmp_path: Path) -> None:
    with Simulator([SimIntegration(i, "healthy", f"Shop {i}") for i in range(1, 21)]) as sim:
        port = free_port()
        daemon = DaemonProcess(["run"], monitor_env(sim, port), port)
        try:
            daemon.wait_ready()
            sim.append_log(1)
            daemon.wait_for(
                lambda: (
                    (daemon.metric("integration_exceptions_total", integration_id="1") or 0) == 1
                ),
                10,
                "the first log read",
            )
            before = sum(1 for p in sim.requests if p == "/integrations/logs")
            polls = daemon.metric("integration_monitor_polls_total", outcome="success") or 0
            sim.append_logs([1 + n % 20 for n in range(10_000)])
            daemon.wait_for(
                lambda: (
                    (
                        daemon.metric("sendcloud_exception_logs_skipped_total", account="default")
                        or 0
                    )
                    > 0
                ),
                10,
                "the storm's cycle",
            )
            assert (
                daemon.metric("sendcloud_exception_logs_skipped_total", account="default") == 9_700
            )
            reads = sum(1 for p in sim.requests if p == "/integrations/logs") - before
            assert reads == 3  # bounded: three pages in the storm's cycle
            [skip] = daemon.events("exception_logs_skipped")
            assert (skip["skipped"], skip["pages"]) == (9_700, 3)
            total = sum(
                daemon.metric("integration_exceptions_total", integration_id=str(i)) or 0
                for i in range(1, 21)
            )
            assert total == 301
            time.sleep(11)  # two more cycles, on time
            after = daemon.metric("integration_monitor_polls_total", outcome="success") or 0
            assert after - polls >= 3
            durations = daemon.metric("integration_monitor_poll_duration_seconds_sum") or 0
            count = daemon.metric("integration_monitor_poll_duration_seconds_count") or 1
            assert durations / count < 2.0
        finally:
            daemon.terminate()


@pytest.mark.timeout(90)
def test_a_restart_goes_on_where_the_stream_stood(tmp_path: Path) -> None:
    state = tmp_path / "state" / "alerts.json"
    with Simulator([SimIntegration(i, "healthy", f"Shop {i}") for i in (1, 2)]) as sim:
        port = free_port()
        env = monitor_env(sim, port, MONITOR_STATE_FILE=str(state))

        def read(daemon: DaemonProcess, integration_id: int) -> float:
            return (
                daemon.metric("integration_exceptions_total", integration_id=str(integration_id))
                or 0
            )

        daemon = DaemonProcess(["run"], env, port)
        try:
            daemon.wait_ready()
            sim.append_logs([1, 1, 2])
            daemon.wait_for(lambda: read(daemon, 1) == 2, 15, "the logs read")
            time.sleep(1)  # the position reaches the history file with the writer's next batch
        finally:
            daemon.terminate()
        sim.append_logs([2, 2])  # while it is down
        daemon = DaemonProcess(["run"], env, port)
        try:
            daemon.wait_ready()
            daemon.wait_for(lambda: read(daemon, 2) == 2, 15, "the logs since the stop")
            time.sleep(6)  # another cycle: nothing read twice
            assert (read(daemon, 1), read(daemon, 2)) == (0, 2)
        finally:
            daemon.terminate()


def exceptions_read(daemon: DaemonProcess, integration_id: int) -> float:
    return daemon.metric("integration_exceptions_total", integration_id=str(integration_id)) or 0


def rising(daemon: DaemonProcess) -> set[int]:
    """The integrations whose IntegrationErrorsRising the daemon fired and has not resolved."""
    state: dict[int, str] = {}
    for event in daemon.events("alert"):
        if event["alert"] == "IntegrationErrorsRising" and event["kind"] in ("fired", "resolved"):
            state[event["integration_id"]] = event["kind"]
    return {i for i, kind in state.items() if kind == "fired"}


@pytest.mark.timeout(120)
def test_a_log_dated_tomorrow_blinds_nothing_across_a_restart(tmp_path: Path) -> None:
    """One exception log dated tomorrow used to become the stream's position: no later log was
    counted (no integration_exceptions_total, no IntegrationErrorsRising), and the position
    was saved in the history file, so a restart stayed blind."""
    state = tmp_path / "state" / "alerts.json"  # the history file lies beside it
    with Simulator([SimIntegration(i, "healthy", f"Shop {i}") for i in (1, 2, 3)]) as sim:
        port = free_port()
        env = monitor_env(sim, port, MONITOR_STATE_FILE=str(state))
        daemon = DaemonProcess(["run"], env, port)
        try:
            daemon.wait_ready()
            sim.append_log(1, created_at=datetime.now(UTC) + timedelta(days=1))
            daemon.wait_for(lambda: exceptions_read(daemon, 1) == 1, 15, "the log of tomorrow")
            assert daemon.metric("sendcloud_exception_logs_clamped_total", account="default") == 1
            [skew] = daemon.events("exception_log_clock_skew")
            assert skew["logs"] == 1
            for _ in range(5):  # then ordinary logs
                sim.append_log(2)
            daemon.wait_for(lambda: exceptions_read(daemon, 2) == 5, 15, "the ordinary logs")
            daemon.wait_for(lambda: rising(daemon) == {2}, 10, "the early warning")
            time.sleep(1)  # the position reaches the history file with the writer's next batch
        finally:
            daemon.terminate()
        sim.append_log(3)  # while it is down
        daemon = DaemonProcess(["run"], env, port)
        try:
            daemon.wait_ready()
            daemon.wait_for(lambda: exceptions_read(daemon, 3) == 1, 15, "the log while down")
            sim.append_log(3)
            daemon.wait_for(lambda: exceptions_read(daemon, 3) == 2, 15, "a log after restart")
            # nothing counted twice (the log of tomorrow neither), the window read back
            assert (exceptions_read(daemon, 1), exceptions_read(daemon, 2)) == (0, 0)
            assert daemon.metric("sendcloud_exception_logs_clamped_total", account="default") == 0
            assert daemon.metric("integration_exceptions_in_window", integration_id="2") == 5
            assert (
                daemon.metric("integration_monitor_alerts_firing", alert="IntegrationErrorsRising")
                == 1
            )
        finally:
            daemon.terminate()
        assert [e for e in daemon.events("alert") if e["alert"] == "IntegrationErrorsRising"] == []


@pytest.mark.timeout(120)
def test_a_restart_while_errors_rise_sends_no_resolved_and_fired_pair(tmp_path: Path) -> None:
    """The first poll after a start does not read the stream; "no activity" used to be taken
    as clear: a webhook got fired, then resolved at the restart (and fired again on new logs)
    while the shipped rule kept firing. Before the stream is read, the condition is unknown."""
    state = tmp_path / "state" / "alerts.json"
    shops = [SimIntegration(i, "healthy", f"Shop {i}", type="shopify") for i in (1, 2)]
    with Simulator(shops) as sim, running(Receiver()) as hook:
        port = free_port()
        config = tmp_path / "monitor.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "alerting": {
                        "state_file": str(state),
                        "webhooks": [{"name": "ops", "url": hook.url}],
                    }
                }
            )
        )
        env = monitor_env(sim, port, MONITOR_CONFIG_FILE=str(config))

        def rising_events() -> list[tuple[str, str]]:
            return [
                (e["status"], e["kind"])
                for body in hook.bodies
                for e in body["events"]
                if e["alert"] == "IntegrationErrorsRising"
            ]

        for _ in range(6):
            sim.append_log(1)
        daemon = DaemonProcess(["run"], env, port)
        try:
            daemon.wait_ready()
            daemon.wait_for(lambda: bool(rising_events()), 20, "the early warning delivered")
            time.sleep(1)
        finally:
            daemon.terminate()
        daemon = DaemonProcess(["run"], env, port)
        try:
            daemon.wait_ready()  # the first poll: the stream is not read yet
            sim.append_log(1)
            daemon.wait_for(
                lambda: daemon.metric("integration_exceptions_in_window", integration_id="1") == 7,
                20,
                "the stream read after the restart",
            )
            time.sleep(6)  # one more evaluation
            assert (
                daemon.metric("integration_monitor_alerts_firing", alert="IntegrationErrorsRising")
                == 1
            )
        finally:
            daemon.terminate()
        assert rising_events() == [("firing", "fired")]


def promtool_series(scrapes: list[dict[tuple[str, frozenset[tuple[str, str]]], float]]) -> str:
    """The scraped series as promtool input series, one scrape a minute (absent: ``_``)."""
    keys = sorted({key for scrape in scrapes for key in scrape}, key=str)
    lines = []
    for name, labels in keys:
        selector = ",".join(
            f'{k}="{v}"' for k, v in sorted({*labels, ("instance", "m:9877"), ("job", "monitor")})
        )
        values = " ".join(
            _number(scrape[(name, labels)]) if (name, labels) in scrape else "_"
            for scrape in scrapes
        )
        lines.append(f"      - series: '{name}{{{selector}}}'\n        values: '{values}'")
    return "\n".join(lines)


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


@pytest.mark.timeout(120)
def test_a_first_start_on_old_logs_fires_in_neither_path(tmp_path: Path) -> None:
    """A first start reads back an hour: 40-minute-old logs arrive at once. The shipped rule
    counted logs when they were read (increase of the counter) and fired on them; the daemon
    counts by created_at and did not. The rule now reads what the daemon's window holds: the
    series this daemon exported, run through the shipped rules in promtool, fire what the
    daemon fires."""
    promtool = require_binary("promtool")
    now = datetime.now(UTC)
    shops = [SimIntegration(i, "healthy", f"Shop {i}", type="shopify") for i in (1, 2)]
    with Simulator(shops) as sim:
        for minutes in range(40, 46):  # shop 1: six logs, 40 to 45 minutes old
            sim.append_log(1, created_at=now - timedelta(minutes=minutes))
        for minutes in range(1, 7):  # shop 2: six logs in the last minutes
            sim.append_log(2, created_at=now - timedelta(minutes=minutes))
        port = free_port()
        daemon = DaemonProcess(["run"], monitor_env(sim, port), port)
        scrapes = []
        try:
            daemon.wait_ready()
            for _ in range(6):  # the first poll, then the stream's reads
                text = daemon.get("/metrics").text
                scrapes.append(
                    {
                        key: value
                        for key, value in metric_samples(text).items()
                        if key[0]
                        in (
                            "integration_exceptions_in_window",
                            "integration_exceptions_total",
                            "integration_failing",
                            "integration_info",
                        )
                    }
                )
                time.sleep(5)
        finally:
            daemon.terminate()
    # the catch-up read counted shop 1's old logs at once: what the old rule fired on
    assert scrapes[-1][("integration_exceptions_total", frozenset(ACME_1))] == 6
    assert rising(daemon) == {2}
    last = len(scrapes) - 1
    window_2 = ("integration_exceptions_in_window", frozenset(ACME_2))
    assert window_2 not in scrapes[0]  # unknown before the stream's first read: absent
    assert scrapes[-1][window_2] == 6
    assert scrapes[-1][("integration_exceptions_in_window", frozenset(ACME_1))] == 0

    def warned(minute: int) -> bool:
        """What the daemon's own condition says at that scrape: shop 2 has 6 logs in it."""
        known = [s[window_2] for s in scrapes[: minute + 1] if window_2 in s]
        return bool(known) and known[-1] >= 5

    expected = {
        "exp_labels": {
            "severity": "warning",
            "instance": "m:9877",
            "job": "monitor",
            "account": "default",
            "integration_id": "2",
            "shop_name": "Shop 2",
            "shop_url": shops[1].shop_url,
            "integration_type": "shopify",
        },
        "exp_annotations": {
            "summary": "Errors rising for Shop 2: Sendcloud keeps failing to reach the shop",
            "description": "Sendcloud wrote 6 exception logs for integration 2 (shopify, "
            f"{shops[1].shop_url}) in 15 minutes; it is not failing yet.",
            "runbook_url": "docs/runbook.md#sendcloudintegrationerrorsrising",
        },
    }
    tests = (
        "rule_files:\n"
        f"  - {ROOT / 'deploy' / 'prometheus' / 'rules.yml'}\n"
        "evaluation_interval: 1m\n"
        "tests:\n"
        "  - interval: 1m\n"
        "    input_series:\n"
        f"{promtool_series(scrapes)}\n"
        "    alert_rule_test:\n"
        + "".join(
            f"      - eval_time: {minute}m\n"
            "        alertname: SendcloudIntegrationErrorsRising\n"
            f"        exp_alerts: {json.dumps([expected] if warned(minute) else [])}\n"
            for minute in range(last + 1)
        )
    )
    path = tmp_path / "first_start_test.yml"
    path.write_text(tests)
    result = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr + tests


@pytest.mark.timeout(90)
def test_an_account_removed_and_added_again_goes_on_from_its_latest_position(
    tmp_path: Path,
) -> None:
    """A reload that adds an account back used to resume its stream from the position read at
    start (here: none, a first start), so it counted again what it had read before."""
    state = tmp_path / "state" / "alerts.json"
    with Simulator([SimIntegration(i, "healthy", f"Shop {i}") for i in (1, 2)]) as sim:
        port = free_port()
        config = tmp_path / "monitor.yaml"
        eu = {
            "name": "eu",
            "api_url": sim.url,
            "public_key": DEMO_PUBLIC_KEY,
            "secret_key": DEMO_SECRET_KEY,
            "poll_interval_seconds": 5,
        }

        keep = {**eu, "name": "keep"}  # the same key: one budget for both, said at start

        def write(accounts: list[dict[str, object]]) -> None:
            config.write_text(
                yaml.safe_dump(
                    {
                        "listen_address": f"127.0.0.1:{port}",
                        "alerting": {"state_file": str(state)},
                        "accounts": accounts,
                    }
                )
            )

        def read() -> float | None:
            return daemon.metric("integration_exceptions_total", account="eu", integration_id="1")

        write([keep, eu])
        daemon = DaemonProcess(["run", "--config", str(config)], {}, port)
        try:
            daemon.wait_ready()
            [shared] = daemon.events("request_budget_shared")
            assert shared["accounts"] == ["keep", "eu"]
            sim.append_logs([1, 1])
            daemon.wait_for(lambda: read() == 2, 15, "the logs read")
            write([keep])
            assert httpx.post(daemon.base + "/-/reload", timeout=10).status_code == 200
            daemon.wait_for(lambda: read() is None, 10, "the account's series gone")
            sim.append_log(1)  # while the account is not polled
            write([keep, eu])
            assert httpx.post(daemon.base + "/-/reload", timeout=10).status_code == 200
            daemon.wait_for(lambda: (read() or 0) >= 1, 20, "the stream read again")
            time.sleep(6)  # another cycle
            assert read() == 1  # only the log written meanwhile
        finally:
            daemon.terminate()
