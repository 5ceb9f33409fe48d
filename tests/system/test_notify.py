"""Routed receivers in the running daemon: several accounts, a real incident at the simulator,
one message per route across accounts, the platform-incident hold, and its end."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from monitor.simulator import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, SimIntegration, Simulator
from tests.conftest import free_port
from tests.daemon_process import DaemonProcess, run_once
from tests.receivers import Receiver, running

TOKEN = "route-token-9b1e77"  # in the receivers' URL paths: never in the output


def config(path: Path, sim: Simulator, port: int, acme: Receiver, rest: Receiver) -> Path:
    account = {
        "api_url": sim.url,
        "public_key": DEMO_PUBLIC_KEY,
        "secret_key": DEMO_SECRET_KEY,
        "integration_ids": "all",
    }
    hook = "json://127.0.0.1:{}/" + TOKEN
    path.write_text(
        yaml.safe_dump(
            {
                "listen_address": f"127.0.0.1:{port}",
                "defaults": {"poll_interval_seconds": 5},
                "accounts": [{"name": n, **account} for n in ("acme-nl", "acme-be", "beta")],
                "alerting": {
                    "failing_for_seconds": 0,
                    "receivers": [
                        {"name": "acme", "url": hook.format(acme.server.server_address[1])},
                        {"name": "rest", "url": hook.format(rest.server.server_address[1])},
                    ],
                    "routes": [{"match": {"account": "acme-*"}, "receivers": ["acme"]}],
                    "default_receivers": ["rest"],
                    # the accounts poll 5 s apart at most: one group catches all of them
                    "group_wait_seconds": 6,
                },
            }
        )
    )
    return path


def wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(120)
def test_a_platform_incident_is_one_message_per_route_and_holds_its_follow_ups(
    tmp_path: Path,
) -> None:
    shops = [SimIntegration(i, "healthy", f"Shop {i}", type="shopify") for i in range(1, 25)]
    shops += [SimIntegration(i, "healthy", f"Woo {i}", type="woocommerce") for i in range(25, 29)]
    with Simulator(shops) as sim, running(Receiver()) as acme, running(Receiver()) as rest:
        port = free_port()
        path = config(tmp_path / "monitor.yaml", sim, port, acme, rest)
        daemon = DaemonProcess(["run", "--config", str(path)], {}, port)
        try:
            daemon.wait_ready(timeout=30)
            daemon.wait_for(
                lambda: (
                    (daemon.metric("integration_monitor_polls_total", account="beta") or 0) >= 1
                ),
                20,
                "every account polled",
            )
            for shop in range(1, 21):  # 20 of 24 shopify shops, in every account
                sim.update(shop, scenario="failing")
            wait(lambda: acme.bodies and rest.bodies, 30, "the incident's messages")
            time.sleep(8)  # escalation-free, but the causes follow at the next evaluations
            [to_acme] = acme.bodies
            [to_rest] = rest.bodies
            assert to_acme["title"] == "[FIRING:40] IntegrationFailing (2 accounts)"
            assert to_acme["message"].startswith(
                "40 shopify integrations in 2 accounts failing since"
            )
            assert "Likely a platform-side incident: 40 of 48 shopify" in to_acme["message"]
            assert to_rest["title"] == "[FIRING:20] IntegrationFailing (beta)"
            assert "Likely a platform-side incident: 20 of 24 shopify" in to_rest["message"]
            assert "acme" not in to_rest["message"]
            # the causes came from the account's log stream: with the alerts, no lookup at all
            assert "Cause: 503 Server Error" in to_acme["message"]
            lookups = [p for p in sim.requests if re.fullmatch(r"/integrations/\d+/logs", p)]
            assert lookups == []
            assert "/integrations/logs" in sim.requests

            for shop in range(1, 21):
                sim.update(shop, scenario="healthy")
            wait(lambda: len(acme.bodies) == 2 and len(rest.bodies) == 2, 30, "the end")
            time.sleep(1)
            over = acme.bodies[1]
            assert over["title"] == "[RESOLVED:40] IntegrationFailing (2 accounts)"
            assert "platform incident is over: 40 of 40 integrations recovered" in over["message"]
            assert "platform incident is over: 20 of 20" in rest.bodies[1]["message"]
            assert len(acme.bodies) == 2
            assert len(rest.bodies) == 2
            for name in ("platform_incident", "platform_incident_over"):
                assert sorted(e["route"] for e in daemon.events(name)) == ["default", "route 1"]
            assert (
                daemon.metric(
                    "integration_monitor_alert_deliveries_total",
                    sink="receiver:acme",
                    outcome="success",
                )
                == 2
            )
        finally:
            daemon.terminate()
        assert TOKEN not in daemon.output


@pytest.mark.timeout(120)
def test_a_reload_rotates_a_receiver_and_adds_a_window_and_mutes_survive_a_restart(
    tmp_path: Path,
) -> None:
    """Where receivers meet reload (a rotated URL file, a new window) and restart (a mute)."""
    shops = [SimIntegration(i, "healthy", f"Shop {i}", type="shopify") for i in (1, 2)]
    state = tmp_path / "state" / "alerts.json"
    url_file = tmp_path / "receiver-url"
    old_token, new_token = "old-token-1c4f9e", "new-token-77ab02"
    with Simulator(shops) as sim, running(Receiver()) as old, running(Receiver()) as new:
        port = free_port()
        url_file.write_text(f"json://127.0.0.1:{old.server.server_address[1]}/{old_token}\n")
        document: dict[str, Any] = {
            "listen_address": f"127.0.0.1:{port}",
            "defaults": {"poll_interval_seconds": 5},
            "sendcloud": {
                "api_url": sim.url,
                "public_key": DEMO_PUBLIC_KEY,
                "secret_key": DEMO_SECRET_KEY,
                "integration_ids": "all",
            },
            "alerting": {
                "state_file": str(state),
                "failing_for_seconds": 0,
                "group_wait_seconds": 0,
                "receivers": [{"name": "hook", "url_file": str(url_file)}],
            },
        }
        path = tmp_path / "monitor.yaml"
        path.write_text(yaml.safe_dump(document))
        daemon = DaemonProcess(["run", "--config", str(path)], {}, port)
        try:
            daemon.wait_ready(timeout=30)
            # the secret rotates and a window for shop 2 arrives with one reload
            url_file.write_text(f"json://127.0.0.1:{new.server.server_address[1]}/{new_token}\n")
            document["alerting"]["maintenance"] = [
                {
                    "name": "shop 2 migration",
                    "match": {"integration_id": 2},
                    "start": "2026-01-01T00:00:00Z",
                    "end": "2030-01-01T00:00:00Z",
                }
            ]
            path.write_text(yaml.safe_dump(document))
            reloaded = httpx.post(daemon.base + "/-/reload", timeout=10)
            assert reloaded.status_code == 200, reloaded.text
            assert daemon.metric("integration_notifications_held", integration_id="2") == 1
            sim.update(1, scenario="failing")
            sim.update(2, scenario="failing")
            wait(lambda: new.bodies, 20, "the alert at the rotated receiver")
            time.sleep(6)  # another evaluation: shop 2 stays held
            titles = [b["title"] for b in new.bodies]
            assert titles[0] == "[FIRING:1] IntegrationFailing (default)"
            assert set(titles[1:]) <= {"[CAUSE:1] IntegrationFailing (default)"}
            assert all("Shop 1" in b["message"] for b in new.bodies)
            assert not any("Shop 2" in b["message"] for b in new.bodies)
            assert old.bodies == []

            muted = run_once(
                [
                    "mute",
                    "--account",
                    "default",
                    "--integration",
                    "1",
                    "--for",
                    "1h",
                    "--reason",
                    "calling the merchant",
                ],
                {"MONITOR_STATE_FILE": str(state)},
            )
            assert muted.returncode == 0, muted.stderr
            daemon.terminate()
            output = daemon.output
            daemon = DaemonProcess(["run", "--config", str(path)], {}, port)
            daemon.wait_ready(timeout=30)
            daemon.wait_for(
                lambda: daemon.metric("integration_notifications_held", integration_id="1") == 1,
                10,
                "the mute after the restart",
            )
            rows = {
                r["integration_id"]: r for r in daemon.get("/status.json").json()["integrations"]
            }
            assert "calling the merchant" in rows[1]["quiet"]
            assert rows[2]["quiet"].startswith("in maintenance (shop 2 migration)")
        finally:
            daemon.terminate()
        for token in (old_token, new_token):
            assert token not in output + daemon.output


@pytest.mark.timeout(120)
def test_a_platform_incident_with_escalations_releases_them_to_the_shops_that_outlast_it(
    tmp_path: Path,
) -> None:
    """The incident holds its shops' follow-ups; when it ends, the shops still failing get what
    they missed — here their escalation — at once, not at a repeat hours later."""
    shops = [SimIntegration(i, "healthy", f"Shop {i}", type="shopify") for i in range(1, 25)]
    with Simulator(shops) as sim, running(Receiver()) as hook:
        port = free_port()
        path = tmp_path / "monitor.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "listen_address": f"127.0.0.1:{port}",
                    "defaults": {"poll_interval_seconds": 5},
                    "sendcloud": {
                        "api_url": sim.url,
                        "public_key": DEMO_PUBLIC_KEY,
                        "secret_key": DEMO_SECRET_KEY,
                        "integration_ids": "all",
                    },
                    "alerting": {
                        "failing_for_seconds": 0,
                        "failing_critical_after_seconds": 8,
                        "group_wait_seconds": 1,
                        "receivers": [
                            {
                                "name": "oncall",
                                "url": f"json://127.0.0.1:{hook.server.server_address[1]}/{TOKEN}",
                            }
                        ],
                    },
                }
            )
        )
        daemon = DaemonProcess(["run", "--config", str(path)], {}, port)
        try:
            daemon.wait_ready(timeout=30)
            for shop in range(1, 21):  # 20 of 24
                sim.update(shop, scenario="failing")
            wait(lambda: hook.bodies, 30, "the incident's message")
            assert hook.bodies[0]["title"] == "[FIRING:20] IntegrationFailing (default)"
            assert "Likely a platform-side incident: 20 of 24 shopify" in hook.bodies[0]["message"]

            def escalated() -> int:
                return sum(1 for e in daemon.events("alert") if e["kind"] == "escalated")

            wait(lambda: escalated() == 20, 30, "the escalations (on stdout)")
            time.sleep(2)  # past group_wait: held, not sent
            assert len(hook.bodies) == 1

            for shop in range(1, 13):  # 12 of 20 recover: it is over; 8 outlast it
                sim.update(shop, scenario="healthy")
            wait(lambda: len(hook.bodies) >= 3, 30, "the end and what the others missed")
            time.sleep(7)  # another poll: nothing more
            over, missed = hook.bodies[1:]
            assert over["title"] == "[RESOLVED:12] IntegrationFailing (default)"
            assert "platform incident is over: 12 of 20 integrations recovered" in over["message"]
            assert missed["title"] == "[FIRING:8] IntegrationFailing (default)"
            assert missed["type"] == "failure"  # critical
            for shop in range(13, 21):
                assert f"Shop {shop} " in missed["message"]
            assert "Shop 1 " not in missed["message"]
        finally:
            daemon.terminate()
        assert TOKEN not in daemon.output
