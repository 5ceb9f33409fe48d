"""Configuration reload without restart (SIGHUP and POST /-/reload), against a real daemon."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from monitor.simulator import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, SimIntegration, Simulator
from tests.conftest import free_port, metric_value
from tests.daemon_process import DaemonProcess

ROTATED = "sk-rotated-after-reload-4e1"


def account(name: str, sim: Simulator, ids: list[int], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "api_url": sim.url,
        "public_key": DEMO_PUBLIC_KEY,
        "integration_ids": ids,
        "poll_interval_seconds": 5,
        **extra,
    }


@pytest.mark.timeout(120)
def test_reload_swaps_accounts_keeps_state_and_rejects_bad_configs(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    shops = [
        SimIntegration(1, "healthy", "EU shop"),
        SimIntegration(3, "failing", "US shop", started_failing_at=now - timedelta(hours=2)),
        SimIntegration(4, "healthy", "Asia shop"),
        SimIntegration(5, "failing", "Stable shop", started_failing_at=now - timedelta(hours=2)),
    ]
    secret_file = tmp_path / "eu_secret"
    secret_file.write_text(DEMO_SECRET_KEY)
    config = tmp_path / "monitor.yaml"
    port = free_port()
    with Simulator(shops) as sim:

        def write(accounts: list[dict[str, Any]], **top: Any) -> None:
            document = {"listen_address": f"127.0.0.1:{port}", "accounts": accounts, **top}
            config.write_text(yaml.safe_dump(document))

        eu = account("eu", sim, [1], secret_key_file=str(secret_file))
        us = account("us", sim, [3], secret_key=DEMO_SECRET_KEY)
        stable = account("stable", sim, [5], secret_key=DEMO_SECRET_KEY)
        write([eu, us, stable])
        daemon = DaemonProcess(["run", "--config", str(config)], {}, port)
        try:
            daemon.wait_ready()

            def metric(name: str, **labels: str) -> float | None:
                return metric_value(daemon.get("/metrics").text, name, **labels)

            def fired(account_name: str) -> list[dict[str, Any]]:
                return [
                    e
                    for e in daemon.events("alert")
                    if e["account"] == account_name and e["kind"] == "fired"
                ]

            daemon.wait_for(lambda: fired("us") and fired("stable"), 15, "both alerts firing")
            loaded = metric("integration_monitor_config_last_reload_success_timestamp_seconds")
            assert metric("integration_monitor_config_last_reload_successful") == 1

            # 1. an invalid configuration: one error line, the old one keeps running
            write([eu, us, {**stable, "poll_interval_seconds": 1}])
            daemon.process.send_signal(signal.SIGHUP)
            daemon.wait_for(
                lambda: metric("integration_monitor_config_last_reload_successful") == 0,
                10,
                "the rejection",
            )
            [failed] = daemon.events("config_reload_failed")
            assert failed["level"] == "error"
            assert "poll_interval_seconds" in failed["reason"]
            assert metric("integration_up", account="us", integration_id="3") == 1

            # 2. keys rotated (the secret file), us removed, asia added, stable unchanged
            polls_before = metric(
                "integration_monitor_polls_total", account="stable", outcome="success"
            )
            sim.rotate_keys(DEMO_PUBLIC_KEY, ROTATED)
            secret_file.write_text(ROTATED)
            asia = account("asia", sim, [4], secret_key=ROTATED)
            stable_rotated = {**stable, "secret_key": ROTATED}
            write([eu, asia, stable_rotated])
            response = httpx.post(daemon.base + "/-/reload", timeout=30)
            assert response.status_code == 200, response.text
            [reloaded] = daemon.events("config_reloaded")
            assert reloaded["added"] == ["asia"]
            assert reloaded["removed"] == ["us"]
            assert sorted(reloaded["changed"]) == ["eu", "stable"]  # their keys changed
            daemon.wait_for(
                lambda: metric("integration_up", account="asia", integration_id="4") == 1,
                15,
                "the added account polled",
            )
            daemon.wait_for(
                lambda: (
                    metric("integration_up", account="eu", integration_id="1") == 1
                    and metric("sendcloud_api_auth_ok", account="eu") == 1
                    and metric("integration_monitor_polls_total", account="eu", outcome="success")
                    >= 2
                ),
                15,
                "eu polling with the rotated key",
            )
            assert metric("integration_up", account="us", integration_id="3") is None
            # every series of the removed account ends: counters and histograms too
            from prometheus_client.parser import text_string_to_metric_families

            left = [
                sample.name
                for family in text_string_to_metric_families(daemon.get("/metrics").text)
                for sample in family.samples
                if sample.labels.get("account") == "us"
            ]
            assert left == []
            assert metric("sendcloud_api_throttled_total", account="asia") == 0  # from the start
            assert metric("integration_monitor_config_last_reload_successful") == 1
            assert metric("integration_monitor_config_last_reload_success_timestamp_seconds") > (
                loaded or 0
            )
            stable_polls = metric(
                "integration_monitor_polls_total", account="stable", outcome="success"
            )
            assert stable_polls is not None
            assert polls_before is not None
            assert stable_polls >= polls_before  # counters continue, not reset
            daemon.process.send_signal(signal.SIGHUP)  # the same configuration again: no change
            daemon.wait_for(lambda: len(daemon.events("config_reloaded")) == 2, 10, "a no-op")
            code, _ = daemon.terminate()
        finally:
            daemon.kill()
    assert code == 0
    resolved_us = [
        e for e in daemon.events("alert") if e["account"] == "us" and e["status"] == "resolved"
    ]
    assert [e["alert"] for e in resolved_us] == ["IntegrationFailing"]  # ended cleanly, once
    assert len(fired("stable")) == 1  # its open alert was kept, not fired again
    noop = daemon.events("config_reloaded")[1]
    assert (noop["added"], noop["removed"], noop["changed"]) == ([], [], [])
    assert ROTATED not in daemon.output
    assert not [
        e
        for e in daemon.events()
        if e["level"] == "error"
        and e["event"]
        not in (
            "config_reload_failed",
            "alert",
        )
    ]


@pytest.mark.timeout(60)
def test_a_rotated_webhook_url_file_is_picked_up(tmp_path: Path) -> None:
    from tests.receivers import Receiver, running

    port = free_port()
    hook_file = tmp_path / "hook_url"
    config = tmp_path / "monitor.yaml"
    with (
        Simulator([SimIntegration(1, "healthy", "Shop")]) as sim,
        running(Receiver()) as old,
        running(Receiver()) as new,
    ):
        hook_file.write_text(old.url)
        config.write_text(
            yaml.safe_dump(
                {
                    "listen_address": f"127.0.0.1:{port}",
                    "alerting": {"webhooks": [{"name": "ops", "url_file": str(hook_file)}]},
                    "accounts": [account("eu", sim, [1], secret_key=DEMO_SECRET_KEY)],
                }
            )
        )
        daemon = DaemonProcess(["run", "--config", str(config)], {}, port)
        try:
            daemon.wait_ready()
            hook_file.write_text(new.url)  # the same configuration, a rotated URL in its file
            assert httpx.post(daemon.base + "/-/reload", timeout=30).status_code == 200
            sim.update(
                1, scenario="failing", started_failing_at=datetime.now(UTC) - timedelta(hours=1)
            )
            daemon.wait_for(lambda: bool(new.bodies), 15, "the alert at the new URL")
            code, _ = daemon.terminate()
        finally:
            daemon.kill()
    assert code == 0
    assert old.bodies == []
    assert new.url not in daemon.output


@pytest.mark.timeout(90)
def test_a_reload_that_changes_only_a_window_keeps_the_sinks_and_their_queue(
    tmp_path: Path,
) -> None:
    """Deliveries waiting for a slow webhook survive a reload that only moves a maintenance
    window: the sinks are kept. (Before, every sink was rebuilt and what waited in the old
    ones was cancelled, uncounted.)"""
    from tests.receivers import Receiver, running

    port = free_port()
    config = tmp_path / "monitor.yaml"
    failing_since = datetime.now(UTC) - timedelta(hours=1)
    shops = [
        SimIntegration(n, "failing", f"Shop {n}", started_failing_at=failing_since)
        for n in (1, 2, 3)
    ]
    receiver = Receiver()
    receiver.release.clear()  # the webhook hangs until released: deliveries queue up
    with Simulator(shops) as sim, running(receiver):

        def write(window_start: str) -> None:
            document = {
                "listen_address": f"127.0.0.1:{port}",
                "accounts": [
                    account(f"shop-{n}", sim, [n], secret_key=DEMO_SECRET_KEY) for n in (1, 2, 3)
                ],
                "alerting": {
                    "webhooks": [{"name": "ops", "url": receiver.url}],
                    "maintenance": [
                        {
                            "name": "next migration",
                            "match": {"account": "shop-1"},
                            "start": window_start,
                            "end": "2031-01-02T00:00:00Z",
                        }
                    ],
                },
            }
            config.write_text(yaml.safe_dump(document))

        write("2031-01-01T00:00:00Z")
        daemon = DaemonProcess(["run", "--config", str(config)], {}, port)
        try:
            daemon.wait_ready()

            def queued() -> float:
                text = daemon.get("/metrics").text
                return metric_value(text, "integration_monitor_alert_queue_depth") or 0.0

            daemon.wait_for(lambda: queued() >= 2, 15, "two deliveries waiting")
            write("2031-01-01T06:00:00Z")  # the window moves; nothing else changes
            reloaded = httpx.post(daemon.base + "/-/reload", timeout=30)
            assert reloaded.status_code == 200, reloaded.text
            receiver.release.set()
            accounts = {"shop-1", "shop-2", "shop-3"}
            daemon.wait_for(
                lambda: {b["account"] for b in receiver.bodies} == accounts,
                15,
                "every account's alert",
            )
            text = daemon.get("/metrics").text
            outcome = {
                o: metric_value(
                    text,
                    "integration_monitor_alert_deliveries_total",
                    sink="webhook:ops",
                    outcome=o,
                )
                or 0.0  # none dropped: the series may not exist
                for o in ("success", "dropped")
            }
            assert outcome == {"success": len(receiver.bodies), "dropped": 0}
        finally:
            daemon.terminate()
    fired = [e for b in receiver.bodies for e in b["events"] if e["kind"] == "fired"]
    assert sorted(e["integration_id"] for e in fired) == [1, 2, 3]
