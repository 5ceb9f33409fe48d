"""The shipped Alertmanager configuration, unchanged, in a real Alertmanager fed by a real
Prometheus (the shipped rules) scraping two shards of the daemon, each posting its own alerts
too: every inhibition suppresses exactly its own scope — a critical its own integration's
warning, rejected keys their own account, a monitor that is down its own instance."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from monitor.settings import shard_of
from monitor.simulator import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, SimIntegration, Simulator
from tests.conftest import free_port, require_binary
from tests.daemon_process import DaemonProcess
from tests.system.test_stack import JOB, process_group, ready, start, start_prometheus, wait
from tests.test_deploy import DEPLOY

__all__ = ["process_group"]  # the fixture

Alert = dict[str, Any]


def account_of_shard(shard: int) -> str:
    return next(n for n in (f"merchant-{i}" for i in range(100)) if shard_of(n, 2) == shard)


def shipped_alertmanager(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path, port: int
) -> str:
    """A real Alertmanager with deploy/alertmanager/alertmanager.yml as shipped (its example
    receivers cannot be reached; inhibition does not depend on them)."""
    start(
        processes,
        [
            require_binary("prometheus-alertmanager"),
            f"--config.file={DEPLOY / 'alertmanager' / 'alertmanager.yml'}",
            f"--storage.path={tmp_path / 'am'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        tmp_path / "alertmanager.log",
    )
    return f"http://127.0.0.1:{port}"


def alerts(am: str) -> list[Alert]:
    """Every alert Alertmanager holds, with its inhibition state as its API reports it."""
    found: list[Alert] = httpx.get(am + "/api/v2/alerts", timeout=5).json()
    return found


def origin(alert: Alert) -> str:
    """Prometheus' alerts carry the scrape target's labels; the daemon's own do not."""
    return "prometheus" if "instance" in alert["labels"] else "daemon"


def kind(alert: Alert) -> str:
    """The alert's name, the same for both origins (Prometheus' have a Sendcloud prefix)."""
    name: str = alert["labels"]["alertname"]
    return (
        name
        if name.startswith(("SendcloudAuth", "SendcloudMonitor"))
        else name.removeprefix("Sendcloud")
    )


def key(alert: Alert) -> tuple[str, str, str, str]:
    labels = alert["labels"]
    return (origin(alert), kind(alert), labels.get("account", ""), labels.get("integration_id", ""))


def inhibitors(alert: Alert, every: list[Alert]) -> list[Alert]:
    by_fingerprint = {a["fingerprint"]: a for a in every}
    return [by_fingerprint[f] for f in alert["status"]["inhibitedBy"]]


def integration_alerts(every: list[Alert]) -> list[Alert]:
    return [a for a in every if kind(a).startswith("Integration")]


@pytest.mark.timeout(180)
def test_each_inhibition_of_the_shipped_alertmanager_suppresses_exactly_its_own_scope(
    tmp_path: Path, process_group: list[subprocess.Popen[bytes]]
) -> None:
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    now = datetime.now(UTC)
    shop_a, shop_b = account_of_shard(0), account_of_shard(1)  # one account on each shard

    def shops(critical: int, warning: int) -> list[SimIntegration]:
        return [
            SimIntegration(critical, "failing", started_failing_at=now - timedelta(hours=2)),
            SimIntegration(warning, "failing", started_failing_at=now - timedelta(minutes=30)),
        ]

    # the same integration IDs in both accounts, critical on different ones: a critical must
    # silence its own integration's warning, never the same ID's in another account
    with Simulator(shops(1, 2)) as sim_a, Simulator(shops(2, 1)) as sim_b:
        monitor_ports = [free_port(), free_port()]
        prom_port, am_port = free_port(), free_port()
        config = tmp_path / "monitor.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "defaults": {"poll_interval_seconds": 5},
                    "alerting": {"alertmanager": {"url": f"http://127.0.0.1:{am_port}"}},
                    "accounts": [
                        {
                            "name": name,
                            "api_url": sim.url,
                            "public_key": DEMO_PUBLIC_KEY,
                            "secret_key": DEMO_SECRET_KEY,
                            "integration_ids": [1, 2],
                        }
                        for name, sim in ((shop_a, sim_a), (shop_b, sim_b))
                    ],
                }
            )
        )
        daemons = [
            DaemonProcess(
                ["run", "--config", str(config), "--shard", f"{shard}/2"],
                {"MONITOR_LISTEN_ADDRESS": f"127.0.0.1:{port}"},
                port,
            )
            for shard, port in enumerate(monitor_ports)
        ]
        try:
            am = shipped_alertmanager(process_group, tmp_path, am_port)
            prom = start_prometheus(
                process_group, tmp_path, prom_port, monitor_ports, alertmanager_port=am_port
            )
            wait(lambda: ready(am + "/-/ready"), 30, "alertmanager")
            wait(lambda: ready(prom + "/-/ready"), 30, "prometheus")
            for daemon in daemons:
                daemon.wait_ready(30)

            # 1. every shop alerts, from both origins: 4 warnings and 2 criticals each
            def all_integration_alerts() -> list[Alert] | None:
                found = integration_alerts(alerts(am))
                return found if len(found) == 12 else None

            every = wait(all_integration_alerts, 60, "every integration alert in Alertmanager")
            critical = {(shop_a, "1"), (shop_b, "2")}
            for alert in every:
                labels = alert["labels"]
                mine = (labels["account"], labels["integration_id"])
                by = inhibitors(alert, every)
                if kind(alert) == "IntegrationFailing" and mine in critical:
                    assert by, f"{key(alert)} is not inhibited by its critical"
                    scopes = {(b["labels"]["account"], b["labels"]["integration_id"]) for b in by}
                    assert scopes == {mine}
                    assert {kind(b) for b in by} == {"IntegrationFailingCritical"}
                else:  # the other account's same ID, and every critical, page
                    assert alert["status"]["state"] == "active", key(alert)
            # the labels the inhibitions compare are on the alerts the shipped rules produce
            from_prometheus = [a for a in every if origin(a) == "prometheus"]
            assert len(from_prometheus) == 6
            for alert in from_prometheus:
                assert {"account", "integration_id", "job", "instance"} <= alert["labels"].keys()
            captured_b = [a["labels"] for a in from_prometheus if a["labels"]["account"] == shop_b]

            # 2. account A's keys are rejected: A's integration alerts are inhibited, B's not
            sim_a.rotate_keys("new-public-key", "new-secret-key")

            def auth_failing() -> list[Alert] | None:
                every = alerts(am)
                auth = [a for a in every if kind(a) == "SendcloudAuthFailing"]
                # both Prometheus' rule and the daemon's own alerter say so
                return every if {origin(a) for a in auth} == {"prometheus", "daemon"} else None

            every = wait(auth_failing, 60, "SendcloudAuthFailing from both origins")
            for alert in [a for a in every if kind(a) == "SendcloudAuthFailing"]:
                assert alert["labels"]["account"] == shop_a
                assert alert["status"]["state"] == "active"
            for alert in integration_alerts(every):
                by = inhibitors(alert, every)
                auth = [b for b in by if kind(b) == "SendcloudAuthFailing"]
                if alert["labels"]["account"] == shop_a:
                    assert alert["status"]["state"] == "suppressed", key(alert)
                    # Alertmanager names the first inhibitor it finds: a warning under its own
                    # critical keeps that one; every other alert of A names A's keys
                    assert {b["labels"]["account"] for b in by} == {shop_a}
                    if kind(by[0]) != "IntegrationFailingCritical":
                        assert auth, key(alert)
                else:
                    assert auth == [], f"{key(alert)} silenced by another account's keys"
                    critical_warning = (
                        kind(alert) == "IntegrationFailing"
                        and alert["labels"]["integration_id"] == "2"
                    )
                    assert (alert["status"]["state"] == "suppressed") == critical_warning

            # 3. shard 1 goes down: SendcloudMonitorDown for its instance silences nothing on
            # shard 0 (account A keeps only its own auth and critical inhibitions)
            daemons[1].terminate()
            down_instance = f"127.0.0.1:{monitor_ports[1]}"

            def monitor_down() -> list[Alert] | None:
                every = alerts(am)
                down = [a for a in every if kind(a) == "SendcloudMonitorDown"]
                return every if down else None

            every = wait(monitor_down, 60, "SendcloudMonitorDown")
            [down] = [a for a in every if kind(a) == "SendcloudMonitorDown"]
            assert down["labels"]["instance"] == down_instance
            assert down["labels"]["job"] == JOB
            for alert in integration_alerts(every):
                assert down not in inhibitors(alert, every), key(alert)
            # Prometheus resolves the alerts of a target it cannot scrape at once, so what the
            # rule silences is an alert still arriving from that instance: Prometheus' own
            # alerts of shard 1, as it sent them (captured above), are inhibited by it
            ends = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
            posted = httpx.post(
                am + "/api/v2/alerts",
                json=[{"labels": labels, "endsAt": ends} for labels in captured_b],
                timeout=5,
            )
            assert posted.status_code == 200
            every = alerts(am)
            again = [a for a in every if origin(a) == "prometheus" and a["labels"] in captured_b]
            assert len(again) == len(captured_b) == 3
            assert all(a["status"]["state"] == "suppressed" for a in again)
            by_down = {
                key(a)[1:] for a in again if a["status"]["inhibitedBy"] == [down["fingerprint"]]
            }
            # (the third, B's warning under its critical, names that critical first)
            assert by_down == {
                ("IntegrationFailingCritical", shop_b, "2"),
                ("IntegrationFailing", shop_b, "1"),
            }
            for alert in integration_alerts(every):
                if alert["labels"].get("instance") != down_instance:
                    assert down["fingerprint"] not in alert["status"]["inhibitedBy"], key(alert)
            daemons[0].terminate()
        finally:
            for daemon in daemons:
                daemon.kill()
