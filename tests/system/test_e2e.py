"""End to end: ``integration-monitor run`` and ``demo`` as subprocesses, scraped over HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from monitor.simulator import SimIntegration, Simulator
from tests.conftest import free_port
from tests.daemon_process import DaemonProcess, monitor_env

PUBLIC = "pk-e2e-4f1d9c2b"
SECRET = "sk-e2e-9a8b7c6d5e4f"


@pytest.fixture
def e2e_sim() -> Iterator[Simulator]:
    now = datetime.now(UTC)
    shops = [
        SimIntegration(1, "healthy", "Alpha shop", type="shopify"),
        SimIntegration(2, "failing", "Beta shop", started_failing_at=now - timedelta(hours=2)),
        SimIntegration(3, "stale", "Gamma shop", last_fetched_at=now - timedelta(hours=6)),
    ]
    with Simulator(shops, public_key=PUBLIC, secret_key=SECRET) as sim:
        yield sim


def daemon_env(sim: Simulator, port: int, **extra: str) -> dict[str, str]:
    """The e2e keys, and debug logs: transition events are debug-level."""
    return monitor_env(sim, port, public=PUBLIC, secret=SECRET, MONITOR_LOG_LEVEL="debug", **extra)


@pytest.mark.timeout(90)
def test_run_flip_failing_and_back_then_sigterm(e2e_sim: Simulator) -> None:
    port = free_port()
    daemon = DaemonProcess(["run"], daemon_env(e2e_sim, port), port)
    try:
        daemon.wait_ready()
        assert daemon.get("/healthz").status_code == 200
        assert "/metrics" in daemon.get("/").text
        assert daemon.metric("integration_failing", integration_id="1") == 0
        assert daemon.metric("integration_failing", integration_id="2") == 1
        failing_for = daemon.metric("integration_failing_seconds", integration_id="2")
        assert failing_for is not None
        assert 7190 < failing_for < 7300
        assert daemon.metric("integration_fetch_stale", integration_id="3") == 1
        assert daemon.metric("integration_info", integration_id="1", shop_name="Alpha shop") == 1
        assert [e["integration_id"] for e in daemon.events("integration_failing")] == [2]
        [alert] = [
            e
            for e in daemon.events("alert")
            if e["alert"] == "IntegrationFailing" and e["kind"] == "fired"
        ]
        assert (alert["integration_id"], alert["status"], alert["severity"]) == (
            2,
            "firing",
            "critical",
        )
        assert alert["shop_name"] == "Beta shop"
        daemon.wait_for(
            lambda: any(e["kind"] == "cause" for e in daemon.events("alert")),
            15,
            "the cause follow-up",
        )
        [cause] = [e for e in daemon.events("alert") if e["kind"] == "cause"]
        assert (cause["integration_id"], cause["fingerprint"]) == (2, alert["fingerprint"])
        assert cause["cause"]["exception_type"] == "requests.exceptions.HTTPError"

        e2e_sim.update(1, scenario="failing")
        daemon.wait_for(
            lambda: daemon.metric("integration_failing", integration_id="1") == 1,
            15,
            "integration 1 to fail",
        )
        daemon.wait_for(
            lambda: [e["integration_id"] for e in daemon.events("integration_failing")] == [2, 1],
            5,
            "the integration_failing log line",
        )
        e2e_sim.update(1, scenario="healthy")
        daemon.wait_for(
            lambda: daemon.metric("integration_failing", integration_id="1") == 0,
            15,
            "integration 1 to recover",
        )
        daemon.wait_for(
            lambda: [e["integration_id"] for e in daemon.events("integration_recovered")] == [1],
            5,
            "the integration_recovered log line",
        )
        e2e_sim.remove(3)
        daemon.wait_for(
            lambda: daemon.metric("integration_up", integration_id="3") is None,
            15,
            "the deleted integration's series to go",
        )
        metrics_text = daemon.get("/metrics").text
        code, seconds = daemon.terminate()
    finally:
        daemon.kill()
    assert code == 0
    assert seconds < 5
    assert daemon.events("monitor_stopped")
    for line in daemon.events():  # every line is structured JSON with the basic keys
        assert {"timestamp", "level", "event"} <= set(line)
    for secret in (SECRET, PUBLIC, "shop-secret-2", "shop-token-2", "webhook-token"):
        assert secret not in daemon.output
        assert secret not in metrics_text


@pytest.mark.timeout(60)
def test_auth_failure_is_one_error_and_no_secret_leaks(e2e_sim: Simulator) -> None:
    port = free_port()
    wrong = "sk-wrong-1234567890"
    env = daemon_env(e2e_sim, port, SENDCLOUD_SECRET_KEY=wrong, MONITOR_INTEGRATION_IDS="1,2,3")
    daemon = DaemonProcess(["run"], env, port)
    try:
        daemon.wait_ready()
        time.sleep(7)  # more than one 5 s interval: the account backs off (auth_retry_seconds)
        assert e2e_sim.request_count() == 1
        assert daemon.metric("sendcloud_api_auth_ok") == 0
        assert daemon.metric("integration_monitor_last_poll_success_timestamp_seconds") is None
        metrics_text = daemon.get("/metrics").text
        code, _ = daemon.terminate()
    finally:
        daemon.kill()
    assert code == 0
    errors = daemon.events("sendcloud_auth_failed")
    assert len(errors) == 1
    assert errors[0]["level"] == "error"
    for secret in (wrong, PUBLIC):
        assert secret not in daemon.output
        assert secret not in metrics_text


@pytest.mark.timeout(60)
def test_demo_shows_healthy_failing_and_stale() -> None:
    port = free_port()
    daemon = DaemonProcess(["demo", "--listen", f"127.0.0.1:{port}"], {}, port)
    try:
        daemon.wait_ready()
        failing = {
            i: daemon.metric("integration_failing", integration_id=str(i))
            for i in range(1001, 1006)
        }
        assert failing == {1001: 0, 1002: 1, 1003: 1, 1004: 0, 1005: 0}
        assert daemon.metric("integration_fetch_stale", integration_id="1001") == 0
        assert daemon.metric("integration_fetch_stale", integration_id="1004") == 1
        assert daemon.metric("integration_fetch_stale", integration_id="1005") == 1
        assert daemon.metric("integration_not_found", integration_id="1007") == 1
        code, _ = daemon.terminate()
    finally:
        daemon.kill()
    assert code == 0


@pytest.mark.timeout(60)
def test_oauth2_end_to_end(e2e_sim: Simulator) -> None:
    port = free_port()
    env = daemon_env(
        e2e_sim, port, SENDCLOUD_AUTH="oauth2", SENDCLOUD_OAUTH2_TOKEN_URL=e2e_sim.token_url
    )
    daemon = DaemonProcess(["run"], env, port)
    try:
        daemon.wait_ready()
        assert daemon.metric("integration_up", integration_id="2") == 1
        assert daemon.metric("sendcloud_api_auth_ok") == 1
        e2e_sim.revoke_tokens()  # the next poll gets a 401, refreshes once and replays
        daemon.wait_for(lambda: e2e_sim.token_requests == 2, 15, "a token refresh")
        daemon.wait_for(lambda: e2e_sim.request_count() >= 4, 15, "the replayed poll")
        assert daemon.metric("sendcloud_api_auth_ok") == 1
        metrics_text = daemon.get("/metrics").text
        code, _ = daemon.terminate()
    finally:
        daemon.kill()
    assert code == 0
    assert daemon.events("sendcloud_auth_failed") == []
    tokens = list(e2e_sim._tokens)
    assert tokens
    for secret in (SECRET, PUBLIC, *tokens):
        assert secret not in daemon.output
        assert secret not in metrics_text
