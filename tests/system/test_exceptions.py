"""The exception-log stream in the running daemon, with what it meets: a real Prometheus running
the shipped rules, an incident, a storm, the request budget."""

from __future__ import annotations

import re
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from monitor.simulator import SimIntegration, Simulator
from tests.conftest import free_port, require_binary
from tests.daemon_process import DaemonProcess, monitor_env
from tests.system.test_stack import process_group, ready, start_prometheus, wait

__all__ = ["process_group"]

SHOPS = 100


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
