"""Past one process: shards split the accounts, two replicas of one shard alert once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from monitor.settings import shard_of
from monitor.simulator import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, SimIntegration, Simulator
from tests.conftest import free_port, metric_samples
from tests.daemon_process import DaemonProcess
from tests.notify.test_sinks import alertmanager

__all__ = ["alertmanager"]  # the fixture
ACCOUNTS = [f"merchant-{n}" for n in range(8)]


def config(tmp_path: Path, sim: Simulator, accounts: list[str], **alerting: object) -> Path:
    path = tmp_path / "monitor.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "defaults": {"poll_interval_seconds": 5},
                "alerting": alerting,
                "accounts": [
                    {
                        "name": name,
                        "api_url": sim.url,
                        "public_key": DEMO_PUBLIC_KEY,
                        "secret_key": DEMO_SECRET_KEY,
                        "integration_ids": [1],
                    }
                    for name in accounts
                ],
            }
        )
    )
    return path


def accounts_polled(daemon: DaemonProcess) -> set[str]:
    samples = metric_samples(daemon.get("/metrics").text)
    return {dict(labels)["account"] for name, labels in samples if name == "integration_up"}


@pytest.mark.timeout(90)
def test_shards_split_the_accounts_without_overlap(tmp_path: Path) -> None:
    with Simulator([SimIntegration(1)]) as sim:
        path = config(tmp_path, sim, ACCOUNTS)
        ports = [free_port(), free_port()]
        daemons = [
            DaemonProcess(
                ["run", "--config", str(path), "--shard", f"{i}/2"],
                {"MONITOR_LISTEN_ADDRESS": f"127.0.0.1:{port}"},
                port,
            )
            for i, port in enumerate(ports)
        ]
        try:
            for daemon in daemons:
                daemon.wait_ready(timeout=30)
            polled = [accounts_polled(d) for d in daemons]
            shards = [
                d.metric("integration_monitor_build_info", shard=f"{i}/2")
                for i, d in enumerate(daemons)
            ]
            for daemon in daemons:
                daemon.terminate()
        finally:
            for daemon in daemons:
                daemon.kill()
    assert shards == [1, 1]  # each replica says which shard it is
    assert polled[0].isdisjoint(polled[1])  # no account polled (and counted) twice
    assert polled[0] | polled[1] == set(ACCOUNTS)
    for i, accounts in enumerate(polled):
        assert {shard_of(name, 2) for name in accounts} == {i}
    assert all(polled)


@pytest.mark.timeout(90)
def test_two_replicas_of_one_shard_alert_once(tmp_path: Path, alertmanager: str) -> None:
    now = datetime.now(UTC)
    shops = [
        SimIntegration(1, "failing", "Broken shop", started_failing_at=now - timedelta(hours=2))
    ]
    with Simulator(shops) as sim:
        path = config(tmp_path, sim, ["merchant"], alertmanager={"url": alertmanager})
        ports = [free_port(), free_port()]
        daemons = [
            DaemonProcess(
                ["run", "--config", str(path)],
                {"MONITOR_LISTEN_ADDRESS": f"127.0.0.1:{port}", "MONITOR_BUDGET_SHARE": "0.5"},
                port,
            )
            for port in ports
        ]
        try:
            for daemon in daemons:
                daemon.wait_ready(timeout=30)
            for daemon in daemons:
                daemon.wait_for(lambda d=daemon: bool(d.events("alert")), 15, "the alert")

            def active() -> list[dict[str, object]]:
                alerts = httpx.get(alertmanager + "/api/v2/alerts").json()
                return [a for a in alerts if a["status"]["state"] == "active"]

            daemons[0].wait_for(lambda: len(active()) == 2, 15, "Alertmanager to have them")
            names = sorted(a["labels"]["alertname"] for a in active())  # type: ignore[index]
            plans = [d.events("poll_plan")[0] for d in daemons]
            for daemon in daemons:
                daemon.terminate()
        finally:
            for daemon in daemons:
                daemon.kill()
    # both replicas post; Alertmanager keeps one alert per condition
    assert names == ["IntegrationFailing", "IntegrationFailingCritical"]
    assert [p["max_requests_per_minute"] for p in plans] == [450, 450]  # the budget is split
