"""Maintenance and mutes with everything they meet: a real Prometheus running the shipped rules
and a real Alertmanager notifying a webhook, the daemon posting to the same Alertmanager; the
CLI muting a running daemon through the history file; the mutes API behind basic auth."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bcrypt
import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from monitor.simulator import SimIntegration, Simulator
from tests.conftest import free_port, require_binary
from tests.daemon_process import DaemonProcess, monitor_env, run_once
from tests.receivers import Receiver, running
from tests.system.test_stack import (
    process_group,
    ready,
    start_alertmanager,
    start_prometheus,
    wait,
)

__all__ = ["process_group"]


def notified(receiver: Receiver) -> list[tuple[str, str]]:
    """(alertname, integration_id) of every firing alert Alertmanager notified, in order."""
    return [
        (a["labels"]["alertname"], a["labels"].get("integration_id", ""))
        for body in receiver.bodies
        for a in body["alerts"]
        if a["status"] == "firing"
    ]


@pytest.mark.timeout(150)
def test_during_a_window_neither_path_notifies_and_after_it_both_fire_once(
    tmp_path: Path, process_group: list[subprocess.Popen[bytes]]
) -> None:
    require_binary("prometheus")  # before anything starts: skipped on a laptop, failed in CI
    require_binary("prometheus-alertmanager")
    now = datetime.now(UTC)
    failing_since = now - timedelta(minutes=20)  # past both graces (900 s), not critical
    shops = [
        SimIntegration(1, "failing", "Held shop", started_failing_at=failing_since),
        SimIntegration(2, "failing", "Open shop", started_failing_at=failing_since),
    ]
    with Simulator(shops) as sim, running(Receiver()) as receiver:
        monitor_port, prom_port, am_port = free_port(), free_port(), free_port()
        am = start_alertmanager(process_group, tmp_path, am_port, receiver.url)
        wait(lambda: ready(am + "/-/ready"), 30, "alertmanager")
        window_end = datetime.now(UTC) + timedelta(seconds=30)
        config = tmp_path / "monitor.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "alerting": {
                        "alertmanager": {"url": am, "resend_interval_seconds": 1},
                        "maintenance": [
                            {
                                "name": "held shop migration",
                                "match": {"integration_id": 1},
                                "start": (now - timedelta(minutes=5)).isoformat(),
                                "end": window_end.isoformat(),
                            }
                        ],
                    }
                }
            )
        )
        env = monitor_env(sim, monitor_port, MONITOR_CONFIG_FILE=str(config))
        daemon = DaemonProcess(["run"], env, monitor_port)
        prom = start_prometheus(
            process_group, tmp_path, prom_port, monitor_port, alertmanager_port=am_port
        )
        try:
            daemon.wait_ready()
            wait(lambda: ready(prom + "/-/ready"), 30, "prometheus")
            # the open shop fires through both paths: both work during the window
            expected_open = {("SendcloudIntegrationFailing", "2"), ("IntegrationFailing", "2")}
            wait(lambda: expected_open <= set(notified(receiver)), 40, "the open shop's alerts")
            assert (
                daemon.metric(
                    "integration_notifications_held", integration_id="1", reason="maintenance"
                )
                == 1
            )
            assert daemon.metric("integration_notifications_held", integration_id="2") is None
            document = daemon.get("/status.json").json()
            [window] = document["maintenance"]
            assert window == {
                "name": "held shop migration",
                "matchers": {"integration_id": 1},
                "start": (now - timedelta(minutes=5)).isoformat(timespec="seconds")[:19] + "Z",
                "end": window_end.isoformat(timespec="seconds")[:19] + "Z",
                "active": True,
            }
            page = daemon.get("/").text
            assert "Maintenance: held shop migration (integration_id=1): now, until " in page
            rows = {r["integration_id"]: r for r in document["integrations"]}
            assert rows[1]["quiet"].startswith("in maintenance (held shop migration) until")
            assert rows[1]["state"] == "failing"  # still evaluated and shown
            assert rows[2]["quiet"] is None
            assert datetime.now(UTC) < window_end - timedelta(seconds=3), "the setup took too long"
            # ... and nothing of the held shop reached Alertmanager from either path
            active = httpx.get(am + "/api/v2/alerts", timeout=5).json()
            assert {a["labels"].get("integration_id") for a in active} == {"2"}
            assert all(i != "1" for _, i in notified(receiver))
            [held] = [e for e in daemon.events("alert_held") if e["integration_id"] == 1]
            assert held["reason"] == "maintenance"

            # after the window: both paths fire the held shop's alert, once each
            expected_held = {("SendcloudIntegrationFailing", "1"), ("IntegrationFailing", "1")}
            wait(
                lambda: expected_held <= set(notified(receiver)), 40, "the alerts after the window"
            )
            time.sleep(4)
            counts = {key: notified(receiver).count(key) for key in expected_held | expected_open}
            assert counts == dict.fromkeys(expected_held | expected_open, 1)
            assert daemon.metric("integration_notifications_held", integration_id="1") is None
        finally:
            daemon.terminate()


@pytest.mark.timeout(90)
def test_the_cli_mutes_a_running_daemon_and_the_api_needs_a_user(tmp_path: Path) -> None:
    state = tmp_path / "state" / "alerts.json"
    web = tmp_path / "web.yml"
    hashed = bcrypt.hashpw(b"s3cret-pw", bcrypt.gensalt(rounds=4)).decode()
    web.write_text(f"basic_auth_users: {{alice: '{hashed}'}}\n")
    shops = [
        SimIntegration(1, "healthy", "Shop one", type="shopify"),
        SimIntegration(2, "healthy", "Shop two", type="woocommerce"),
    ]
    with Simulator(shops) as sim:
        port = free_port()
        env = monitor_env(sim, port, MONITOR_STATE_FILE=str(state))
        daemon = DaemonProcess(["run", "--web.config.file", str(web)], env, port)
        auth = ("alice", "s3cret-pw")
        try:
            daemon.wait_ready()
            daemon.wait_for(lambda: (state.parent / "history.db").exists(), 10, "the history file")
            cli_env = {"MONITOR_STATE_FILE": str(state)}
            made = run_once(
                [
                    "mute",
                    "--account",
                    "default",
                    "--integration",
                    "1",
                    "--for",
                    "2h",
                    "--reason",
                    "re-keying the shop",
                ],
                cli_env,
            )
            assert made.returncode == 0, made.stderr
            mute_id = made.stdout.split(":", 1)[0]
            audit = json.loads(made.stderr.splitlines()[-1])
            assert (audit["event"], audit["via"], audit["id"]) == ("mute_created", "cli", mute_id)

            def held(integration_id: str) -> float | None:
                response = httpx.get(f"{daemon.base}/metrics", auth=auth, timeout=5)
                for family in text_string_to_metric_families(response.text):
                    for sample in family.samples:
                        if (
                            sample.name == "integration_notifications_held"
                            and sample.labels["integration_id"] == integration_id
                        ):
                            return float(sample.value)
                return None

            daemon.wait_for(lambda: held("1") == 1, 5, "the mute applied")  # within a second
            assert held("2") is None
            page = httpx.get(f"{daemon.base}/", auth=auth, timeout=5).text
            assert "muted by " in page
            assert "re-keying the shop" in page
            listed = httpx.get(f"{daemon.base}/api/v1/mutes", auth=auth, timeout=5).json()
            assert [m["id"] for m in listed["mutes"]] == [mute_id]

            # over HTTP: a user is needed and named
            anonymous = httpx.post(f"{daemon.base}/api/v1/mutes", json={}, timeout=5)
            assert anonymous.status_code == 401
            bad = httpx.post(
                f"{daemon.base}/api/v1/mutes", auth=auth, json={"account": "default"}, timeout=5
            )
            assert bad.status_code == 400
            assert "reason" in bad.json()["error"]
            created = httpx.post(
                f"{daemon.base}/api/v1/mutes",
                auth=auth,
                json={
                    "account": "default",
                    "integration_type": "woocommerce",
                    "for": "30m",
                    "reason": "nightly import",
                },
                timeout=5,
            )
            assert created.status_code == 201, created.text
            second = created.json()["mute"]
            assert second["author"] == "alice"
            daemon.wait_for(lambda: held("2") == 1, 5, "the API's mute applied")
            [line] = daemon.events("mute_created")
            assert (line["user"], line["via"], line["id"]) == ("alice", "api", second["id"])

            listed_cli = run_once(["mutes", "--output", "json"], cli_env)
            assert {m["id"] for m in json.loads(listed_cli.stdout)["mutes"]} == {
                mute_id,
                second["id"],
            }
            ended = httpx.delete(f"{daemon.base}/api/v1/mutes/{mute_id}", auth=auth, timeout=5)
            assert ended.status_code == 200
            assert (
                httpx.delete(
                    f"{daemon.base}/api/v1/mutes/{mute_id}", auth=auth, timeout=5
                ).status_code
                == 404
            )
            daemon.wait_for(lambda: held("1") is None, 5, "the unmute applied")
            assert run_once(["unmute", "--account", "default"], cli_env).returncode == 0
            daemon.wait_for(lambda: held("2") is None, 5, "the CLI's unmute applied")
        finally:
            daemon.terminate()


@pytest.mark.timeout(60)
def test_without_web_users_the_mutes_api_refuses_to_write(tmp_path: Path) -> None:
    with Simulator([SimIntegration(1, "healthy", "Shop")]) as sim:
        port = free_port()
        daemon = DaemonProcess(["run"], monitor_env(sim, port), port)
        try:
            daemon.wait_ready()
            refused = httpx.post(
                f"{daemon.base}/api/v1/mutes",
                json={"account": "default", "for": "1h", "reason": "x"},
                timeout=5,
            )
            assert refused.status_code == 403
            assert "basic_auth_users" in refused.json()["error"]
            assert httpx.get(f"{daemon.base}/api/v1/mutes", timeout=5).json() == {"mutes": []}
            assert httpx.delete(f"{daemon.base}/api/v1/mutes/abc", timeout=5).status_code == 403
        finally:
            daemon.terminate()


def fired(receiver: Receiver) -> list[tuple[str, int, str]]:
    """(alert, integration_id, kind) of every firing event the webhook received, in order."""
    return [
        (e["alert"], e["integration_id"], e["kind"])
        for body in receiver.bodies
        for e in body["events"]
        if e["status"] == "firing"
    ]


@pytest.mark.timeout(120)
def test_a_mute_that_expires_while_the_daemon_is_stopped_fires_once_after_the_restart(
    tmp_path: Path,
) -> None:
    """An ordinary rollout: the shop is muted and failing, the daemon stops, the mute expires,
    the daemon starts again. The webhook hears of the shop exactly once, at the first poll
    after the restart — not hours later at a repeat."""
    state = tmp_path / "state" / "alerts.json"
    state.parent.mkdir()  # the state volume exists before the first start
    failing_since = datetime.now(UTC) - timedelta(minutes=20)  # past the 15 min grace
    shops = [
        SimIntegration(1, "failing", "Muted shop", started_failing_at=failing_since),
        SimIntegration(2, "healthy", "Quiet shop"),
    ]
    with Simulator(shops) as sim, running(Receiver()) as hook:
        port = free_port()
        config = tmp_path / "monitor.yaml"
        config.write_text(
            yaml.safe_dump({"alerting": {"webhooks": [{"name": "oncall", "url": hook.url}]}})
        )
        env = monitor_env(sim, port, MONITOR_STATE_FILE=str(state), MONITOR_CONFIG_FILE=str(config))
        muted = run_once(
            [
                "mute",
                "--account",
                "default",
                "--integration",
                "1",
                "--for",
                "15s",
                "--reason",
                "re-keying the shop",
            ],
            {"MONITOR_STATE_FILE": str(state)},
        )
        assert muted.returncode == 0, muted.stderr
        mute_ends = datetime.now(UTC) + timedelta(seconds=15)
        daemon = DaemonProcess(["run"], env, port)
        try:
            daemon.wait_ready()
            daemon.wait_for(lambda: daemon.events("alert_held"), 10, "the alert held")
            assert daemon.metric("integration_notifications_held", integration_id="1") == 1
        finally:
            code, _ = daemon.terminate()
        assert code == 0
        assert datetime.now(UTC) < mute_ends, "the setup took too long"
        [alert] = [e for e in daemon.events("alert") if e["status"] == "firing"]
        assert (alert["integration_id"], alert["kind"]) == (1, "fired")  # on stdout: yes
        assert hook.bodies == []  # at the webhook: held
        saved = json.loads(state.read_text())
        assert saved["holds"]["quiet"]["held"] == [alert["fingerprint"]]

        while datetime.now(UTC) < mute_ends + timedelta(seconds=1):  # it expires while down
            time.sleep(0.2)
        daemon = DaemonProcess(["run"], env, port)
        try:
            daemon.wait_ready()
            wait(lambda: hook.bodies, 20, "the webhook after the restart")
            polls = (
                daemon.metric(
                    "integration_monitor_polls_total", account="default", outcome="success"
                )
                or 0
            )
            daemon.wait_for(
                lambda: (
                    (
                        daemon.metric(
                            "integration_monitor_polls_total", account="default", outcome="success"
                        )
                        or 0
                    )
                    >= polls + 2
                ),
                20,
                "two more polls",
            )
            assert fired(hook) == [("IntegrationFailing", 1, "fired")]  # exactly once
            assert daemon.metric("integration_notifications_held", integration_id="1") is None
            assert [e["kind"] for e in daemon.events("alert")] == []  # stdout had it already
        finally:
            daemon.terminate()


ACCOUNT_FAMILIES = (
    "sendcloud_api_auth_ok",
    "account_notifications_held",
    "integration_monitor_poll_interval_seconds",
    "integration_monitor_polling_start_timestamp_seconds",
    "integration_monitor_last_poll_success_timestamp_seconds",
)


def account_series(daemon: DaemonProcess) -> list[dict[str, str]]:
    """The account-level series the shipped rules read, as scraped now, for promtool: each
    constant for 30 minutes from t=0 (promtool's clock), timestamps made relative to the
    scrape."""
    now = time.time()
    series = []
    for family in text_string_to_metric_families(daemon.get("/metrics").text):
        for sample in family.samples:
            if sample.name not in ACCOUNT_FAMILIES:
                continue
            value = (
                sample.value - now if sample.name.endswith("_timestamp_seconds") else sample.value
            )
            labels = {**sample.labels, "instance": "m:9877", "job": "sendcloud-integration-monitor"}
            text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            series.append({"series": f"{sample.name}{{{text}}}", "values": f"{value:g}x30"})
    return series


def promtool_agrees(tmp_path: Path, series: list[dict[str, str]], firing: list[str]) -> None:
    """promtool evaluates the shipped rules on ``series``: at 20m (past every ``for:``) exactly
    ``firing`` of the two account rules fire."""
    promtool = require_binary("promtool")
    rules = Path(__file__).parents[2] / "deploy" / "prometheus" / "rules.yml"
    test = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": 'count by (alertname, account) (ALERTS{alertstate="firing",'
                        'alertname=~"SendcloudAuthFailing|SendcloudMonitorPollsFailing"})',
                        "eval_time": "20m",
                        "exp_samples": [
                            {
                                "labels": f'{{alertname="{name}",account="default"}}',
                                "value": 1,
                            }
                            for name in firing
                        ],
                    }
                ],
            }
        ],
    }
    path = tmp_path / f"account_hold_{len(firing)}_test.yml"
    path.write_text(json.dumps(test))  # JSON is YAML
    result = subprocess.run(
        [promtool, "test", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(90)
def test_an_account_mute_holds_rejected_keys_in_the_daemon_and_in_the_shipped_rules(
    tmp_path: Path,
) -> None:
    """The keys were rotated and the account is muted while the operator fixes them: neither
    the daemon's SendcloudAuthFailing nor the shipped rules' SendcloudAuthFailing and
    SendcloudMonitorPollsFailing notify; once unmuted, both do."""
    require_binary("promtool")
    state = tmp_path / "state" / "alerts.json"
    state.parent.mkdir()  # the state volume exists before the first start
    with Simulator([SimIntegration(1, "healthy", "Shop")]) as sim, running(Receiver()) as hook:
        port = free_port()
        config = tmp_path / "monitor.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    # the keys are tried again at every poll: the mute's end is seen within one
                    # (the release comes with the account's next evaluation)
                    "defaults": {"auth_retry_seconds": 0},
                    "alerting": {"webhooks": [{"name": "oncall", "url": hook.url}]},
                }
            )
        )
        cli = {"MONITOR_STATE_FILE": str(state)}
        mute = ["mute", "--account", "default", "--for", "1h", "--reason", "rotating the keys"]
        made = run_once(mute, cli)
        assert made.returncode == 0, made.stderr
        env = monitor_env(
            sim,
            port,
            secret="rotated-secret-key-0000",
            MONITOR_STATE_FILE=str(state),
            MONITOR_CONFIG_FILE=str(config),
        )
        daemon = DaemonProcess(["run"], env, port)
        try:
            daemon.wait_for(
                lambda: daemon.metric("sendcloud_api_auth_ok", account="default") == 0,
                20,
                "the keys rejected",
            )
            assert daemon.metric("account_notifications_held", account="default") == 1
            [held] = daemon.events("alert_held")
            assert (held["alert"], held["reason"]) == ("SendcloudAuthFailing", "mute")
            promtool_agrees(tmp_path, account_series(daemon), [])
            assert hook.bodies == []

            assert run_once(["unmute", "--account", "default"], cli).returncode == 0
            daemon.wait_for(
                lambda: daemon.metric("account_notifications_held", account="default") is None,
                10,
                "the unmute applied",
            )
            wait(lambda: hook.bodies, 20, "the daemon's alert after the mute")
            promtool_agrees(
                tmp_path,
                account_series(daemon),
                ["SendcloudAuthFailing", "SendcloudMonitorPollsFailing"],
            )
            events = [e for body in hook.bodies for e in body["events"]]
            assert [(e["alert"], e["kind"]) for e in events] == [("SendcloudAuthFailing", "fired")]
        finally:
            daemon.terminate()
