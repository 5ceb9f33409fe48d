"""End to end with the real stack: simulator -> daemon -> Prometheus (shipped rules) ->
Alertmanager -> a webhook receiver; then every Grafana panel query against that Prometheus."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from monitor.simulator import SimIntegration, Simulator
from tests.conftest import free_port, require_binary
from tests.daemon_process import DaemonProcess
from tests.receivers import Receiver, running
from tests.test_deploy import DEPLOY, dashboard

JOB = "sendcloud-integration-monitor"


def wait(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = condition()
        except httpx.TransportError:
            result = None
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def fast_rules(path: Path) -> Path:
    """A test-only copy of the shipped rules with every `for` shortened to 2 s."""
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "2s"
    path.write_text(yaml.safe_dump(rules))
    return path


@pytest.fixture
def process_group() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def start(processes: list[subprocess.Popen[bytes]], args: list[str], log: Path) -> None:
    with log.open("wb") as out:
        processes.append(subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT))


def ready(url: str) -> bool:
    return httpx.get(url, timeout=1).status_code == 200


def start_alertmanager(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path, port: int, webhook_url: str
) -> str:
    """A real Alertmanager notifying ``webhook_url`` at once (group_wait and interval 1 s);
    its URL (not waited for)."""
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "route": {
                    "receiver": "test",
                    "group_by": ["alertname", "integration_id"],
                    "group_wait": "1s",
                    "group_interval": "1s",
                    "repeat_interval": "1h",
                },
                "receivers": [
                    {
                        "name": "test",
                        "webhook_configs": [{"url": webhook_url, "send_resolved": True}],
                    }
                ],
            }
        )
    )
    start(
        processes,
        [
            require_binary("prometheus-alertmanager"),
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'am'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        tmp_path / "alertmanager.log",
    )
    return f"http://127.0.0.1:{port}"


def start_prometheus(
    processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
    port: int,
    monitor_port: int | list[int],
    *,
    rules: Path | None = None,
    alertmanager_port: int | None = None,
) -> str:
    """A real Prometheus scraping the monitor (or each of several) every second with ``rules``
    (default: the shipped rules with every ``for`` shortened to 2 s), sending to an Alertmanager
    when given; its URL (not waited for)."""
    ports = monitor_port if isinstance(monitor_port, list) else [monitor_port]
    document: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules or fast_rules(tmp_path / "rules.yml"))],
        "scrape_configs": [
            {
                "job_name": JOB,
                "static_configs": [{"targets": [f"127.0.0.1:{port}" for port in ports]}],
            }
        ],
    }
    if alertmanager_port is not None:
        document["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]
        }
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(document))
    start(
        processes,
        [
            require_binary("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'prom'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--rules.alert.resend-delay=1s",
        ],
        tmp_path / "prometheus.log",
    )
    return f"http://127.0.0.1:{port}"


@pytest.mark.timeout(150)
def test_scrape_rule_alertmanager_receiver_and_every_dashboard_query(
    tmp_path: Path, process_group: list[subprocess.Popen[bytes]]
) -> None:
    require_binary("prometheus")  # before anything starts: skipped on a laptop, failed in CI
    require_binary("prometheus-alertmanager")
    now = datetime.now(UTC)
    shops = [
        SimIntegration(1, "healthy", "Alpha shop", type="shopify"),
        SimIntegration(
            2,
            "failing",
            "Beta shop",
            type="woocommerce",
            started_failing_at=now - timedelta(minutes=30),
        ),
    ]
    with Simulator(shops) as sim, running(Receiver()) as receiver:
        monitor_port, prom_port, am_port = free_port(), free_port(), free_port()
        env = {
            "SENDCLOUD_API_URL": sim.url,
            "SENDCLOUD_PUBLIC_KEY": "demo-public-key",
            "SENDCLOUD_SECRET_KEY": "demo-secret-key",
            "MONITOR_INTEGRATION_IDS": "all",
            "MONITOR_POLL_INTERVAL_SECONDS": "5",
            "MONITOR_LISTEN_ADDRESS": f"127.0.0.1:{monitor_port}",
        }
        daemon = DaemonProcess(["run"], env, monitor_port)
        try:
            am = start_alertmanager(process_group, tmp_path, am_port, receiver.url)
            prom = start_prometheus(
                process_group, tmp_path, prom_port, monitor_port, alertmanager_port=am_port
            )
            daemon.wait_ready()
            wait(lambda: ready(prom + "/-/ready"), 30, "prometheus")
            wait(lambda: ready(am + "/-/ready"), 30, "alertmanager")

            def prometheus_alerts() -> list[dict[str, Any]]:
                response = httpx.get(prom + "/api/v1/alerts", timeout=5).json()
                return [a for a in response["data"]["alerts"] if a["state"] == "firing"]

            def failing_alert() -> dict[str, Any] | None:
                return next(
                    (
                        a
                        for a in prometheus_alerts()
                        if a["labels"]["alertname"] == "SendcloudIntegrationFailing"
                    ),
                    None,
                )

            alert = wait(failing_alert, 60, "SendcloudIntegrationFailing in Prometheus")
            assert alert["labels"]["integration_id"] == "2"
            assert alert["labels"]["shop_name"] == "Beta shop"
            assert "Beta shop" in alert["annotations"]["summary"]
            firing_ids = {a["labels"].get("integration_id") for a in prometheus_alerts()}
            assert "1" not in firing_ids  # the healthy shop never alerts

            def delivered(status: str) -> list[dict[str, Any]]:
                return [
                    a
                    for body in receiver.bodies
                    for a in body["alerts"]
                    if a["labels"]["alertname"] == "SendcloudIntegrationFailing"
                    and a["status"] == status
                ]

            [notified] = wait(lambda: delivered("firing"), 30, "the alert at the receiver")[:1]
            assert notified["labels"]["integration_id"] == "2"
            assert notified["annotations"]["summary"] == alert["annotations"]["summary"]

            time.sleep(3)  # a few more scrapes, so rate() over the dashboard window has data
            check_dashboard_queries(prom)

            sim.update(2, scenario="healthy")
            wait(lambda: failing_alert() is None, 40, "the alert to resolve in Prometheus")
            [resolved] = wait(lambda: delivered("resolved"), 30, "the resolution at the receiver")[
                :1
            ]
            assert resolved["labels"]["integration_id"] == "2"
            daemon.terminate()
        finally:
            daemon.kill()


def substitute(expr: str) -> str:
    for variable, value in (
        ("$account", ".*"),
        ("$integration_type", ".*"),
        ("$__rate_interval", "10s"),
        ("$__interval", "1s"),
    ):
        expr = expr.replace(variable, value)
    assert "$" not in expr.replace("$labels", ""), expr
    return expr


def check_dashboard_queries(prom: str) -> None:
    """Every panel's PromQL is valid and returns data (no typos, no dead panels)."""
    end = time.time()
    checked = 0
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            expr = substitute(target["expr"])
            if target.get("instant"):
                response = httpx.get(prom + "/api/v1/query", params={"query": expr}, timeout=10)
            else:
                response = httpx.get(
                    prom + "/api/v1/query_range",
                    timeout=10,
                    params={"query": expr, "start": end - 20, "end": end, "step": "1s"},
                )
            body = response.json()
            assert body["status"] == "success", (panel["title"], expr, body)
            assert body["data"]["result"], f"panel {panel['title']!r} returns no data: {expr}"
            checked += 1
    assert checked >= 15
    variables = [v for v in dashboard()["templating"]["list"] if v["type"] == "query"]
    for variable in variables:  # label_values(integration_info, X): the label must exist
        label = variable["definition"].split(",")[1].strip(" )")
        series = httpx.get(prom + "/api/v1/series", params={"match[]": "integration_info"}).json()
        if label != "account":  # single-account setups carry no account label
            assert any(label in s for s in series["data"]), label
