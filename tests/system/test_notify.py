"""Routed receivers in the running daemon: several accounts, a real incident at the simulator,
one message per route across accounts, the platform-incident hold, and its end."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.simulator import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, SimIntegration, Simulator
from tests.conftest import free_port
from tests.daemon_process import DaemonProcess
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
            # the cause follow-ups of every shop were held (they were logged on stdout)
            causes = [e for e in daemon.events("alert") if e["kind"] == "cause"]
            assert len(causes) >= 30

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
