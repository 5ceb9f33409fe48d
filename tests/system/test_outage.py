"""An outage through the whole path: simulator -> daemon -> real Prometheus with the shipped rules.

While the Sendcloud API cannot be read (5xx, then timeouts, then 401), no integration alert may
fire, escalate or resolve — neither in Prometheus nor in the daemon's own alert stream — and the
alert that was firing before the outage keeps firing. Only the monitor-level alerts speak.
"""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from monitor.simulator import SimIntegration, Simulator
from tests.conftest import free_port, require_binary
from tests.daemon_process import DaemonProcess
from tests.system.test_e2e import PUBLIC, SECRET, daemon_env
from tests.system.test_stack import process_group, ready, start_prometheus, wait

__all__ = ["process_group"]  # the fixture, imported for pytest

STALE_AFTER = 7200
INTERVAL = 5.0
PHASE_SECONDS = 17.0  # each of the three kinds of outage: over 3 poll cycles, 10 in all
AlertId = tuple[str, str]  # (alertname, integration_id)


class Prom:
    def __init__(self, url: str) -> None:
        self.url = url

    def firing(self) -> set[tuple[str, str | None]]:
        response = httpx.get(self.url + "/api/v1/alerts", timeout=5).json()
        return {
            (a["labels"]["alertname"], a["labels"].get("integration_id"))
            for a in response["data"]["alerts"]
            if a["state"] == "firing"
        }

    def integration_alerts(self) -> set[tuple[str, str | None]]:
        return {a for a in self.firing() if a[0].startswith("SendcloudIntegration")}


def integration_alert_events(daemon: DaemonProcess, since: int) -> list[dict[str, Any]]:
    return [e for e in daemon.events("alert")[since:] if e["integration_id"] is not None]


@pytest.mark.timeout(240)
def test_an_outage_fires_only_monitor_alerts_and_keeps_open_ones_open(
    tmp_path: Path, process_group: list[subprocess.Popen[bytes]]
) -> None:
    require_binary("prometheus")  # before anything starts: skipped on a laptop, failed in CI
    now = datetime.now(UTC)
    shops = [
        SimIntegration(1, "healthy", "Near failing shop"),
        SimIntegration(2, "healthy", "Near stale shop"),
        SimIntegration(
            3, "failing", "Long failing shop", started_failing_at=now - timedelta(hours=2)
        ),
        SimIntegration(4, "healthy", "Healthy shop"),
    ]
    config = tmp_path / "monitor.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "defaults": {
                    "poll_interval_seconds": INTERVAL,
                    "request_timeout_seconds": 1,
                    "auth_retry_seconds": 0,
                    "stale_after_seconds": STALE_AFTER,
                },
                "alerting": {"unreachable_for_seconds": 5},
            }
        )
    )
    with Simulator(shops, public_key=PUBLIC, secret_key=SECRET) as sim:
        monitor_port, prom_port = free_port(), free_port()
        env = daemon_env(sim, monitor_port, MONITOR_CONFIG_FILE=str(config))
        daemon = DaemonProcess(["run"], env, monitor_port)
        try:
            prom = Prom(f"http://127.0.0.1:{prom_port}")
            start_prometheus(process_group, tmp_path, prom_port, monitor_port)
            daemon.wait_ready()
            wait(lambda: ready(prom.url + "/-/ready"), 30, "prometheus")
            before = {
                ("SendcloudIntegrationFailing", "3"),
                ("SendcloudIntegrationFailingCritical", "3"),
            }
            wait(lambda: prom.integration_alerts() == before, 30, "the pre-outage alerts")

            # 1 is 880 s into failing (900 s fires), 2 is 30 s short of stale, as last read
            sim.update(
                1, scenario="failing", started_failing_at=datetime.now(UTC) - timedelta(seconds=880)
            )
            sim.update(2, last_fetched_at=datetime.now(UTC) - timedelta(seconds=STALE_AFTER - 30))
            daemon.wait_for(
                lambda: daemon.metric("integration_failing", integration_id="1") == 1,
                2 * INTERVAL,
                "the last good read",
            )
            sim.inject_fault(503, count=10**6)  # the outage starts at once
            events_before = len(daemon.events("alert"))
            integration_events_before = len(integration_alert_events(daemon, 0))
            daemon.wait_for(
                lambda: daemon.metric("integration_up", integration_id="1") == 0,
                2 * INTERVAL,
                "the first failed poll",
            )
            frozen_failing = daemon.metric("integration_failing_seconds", integration_id="1")
            assert frozen_failing is not None
            assert frozen_failing < 895

            seen: set[tuple[str, str | None]] = set()

            def watch(seconds: float) -> None:
                """Sample Prometheus and the daemon every second of the outage."""
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    firing = prom.firing()
                    seen.update(firing)
                    integration = {a for a in firing if a[0].startswith("SendcloudIntegration")}
                    assert integration == before, f"integration alerts changed: {integration}"
                    failing = daemon.metric("integration_failing_seconds", integration_id="1")
                    assert failing == frozen_failing  # frozen, not ageing
                    assert daemon.metric("integration_fetch_stale", integration_id="2") == 0
                    time.sleep(1)

            watch(PHASE_SECONDS)
            sim.clear_faults()
            sim.inject_fault(kind="slow", delay=2.0, count=10**6)  # every request times out
            watch(PHASE_SECONDS)
            sim.clear_faults()
            sim.inject_fault(401, count=10**6)
            watch(PHASE_SECONDS)
            assert daemon.metric("integration_up", integration_id="1") == 0
            during = integration_alert_events(daemon, 0)[integration_events_before:]
            assert during == [], during
            monitor_events = {
                (e["alert"], e["status"]) for e in daemon.events("alert")[events_before:]
            }
            assert ("SendcloudAPIUnreachable", "firing") in monitor_events
            assert ("SendcloudAuthFailing", "firing") in monitor_events
            assert {"SendcloudMonitorPollsFailing", "SendcloudAuthFailing"} <= {a for a, _ in seen}

            sim.clear_faults()  # the API is back
            daemon.wait_for(
                lambda: daemon.metric("integration_up", integration_id="1") == 1,
                3 * INTERVAL,
                "the first good read after the outage",
            )
            after = {
                ("SendcloudIntegrationFailing", "1"),  # now past 900 s: the data says so
                ("SendcloudIntegrationFailing", "3"),
                ("SendcloudIntegrationFailingCritical", "3"),
            }
            wait(lambda: prom.integration_alerts() == after, 20, "the justified alerts")
            events = integration_alert_events(daemon, integration_events_before)
            assert [(e["alert"], e["integration_id"], e["kind"]) for e in events] == [
                ("IntegrationFailing", 1, "fired")
            ]
            code, _ = daemon.terminate()
        finally:
            daemon.kill()
    assert code == 0
    resolved = [e for e in daemon.events("alert") if e["status"] == "resolved"]
    assert {e["alert"] for e in resolved} <= {"SendcloudAPIUnreachable", "SendcloudAuthFailing"}
