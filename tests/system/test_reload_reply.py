"""What a reload says it changed, and the maintenance windows as data: a real daemon, a
reload that touches receivers, routes, windows and thresholds (and one that touches nothing),
the answer of POST /-/reload, the config_reloaded line and /status.json."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from monitor.simulator import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, SimIntegration, Simulator
from tests.conftest import free_port
from tests.daemon_process import DaemonProcess

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def receiver(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "url": f"json://127.0.0.1:9/{path}"}


@pytest.mark.timeout(60)
def test_the_reload_answer_names_what_changed_and_windows_are_data(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    upcoming = (now + timedelta(days=2)).replace(microsecond=0)
    config = tmp_path / "monitor.yaml"
    port = free_port()
    with Simulator([SimIntegration(1, "healthy", "Shop")]) as sim:

        def write(alerting: dict[str, Any]) -> None:
            account = {"public_key": DEMO_PUBLIC_KEY, "secret_key": DEMO_SECRET_KEY}
            document = {
                "listen_address": f"127.0.0.1:{port}",
                "sendcloud": {**account, "api_url": sim.url, "poll_interval_seconds": 5},
                "alerting": alerting,
            }
            config.write_text(yaml.safe_dump(document))

        before: dict[str, Any] = {
            "receivers": [receiver("mail", "a"), receiver("pager", "b")],
            "routes": [{"match": {"severity": "critical"}, "receivers": ["pager"]}],
            "default_receivers": ["mail"],
            "maintenance": [
                {
                    "name": "old window",
                    "start": (now + timedelta(days=30)).isoformat(),
                    "end": (now + timedelta(days=31)).isoformat(),
                }
            ],
        }
        after: dict[str, Any] = {
            "receivers": [receiver("mail", "a2"), receiver("chat", "c")],  # pager removed
            "routes": [{"match": {"severity": "critical"}, "receivers": ["chat"]}],
            "default_receivers": ["mail"],
            "failing_for_seconds": 600,
            "maintenance": [
                {
                    "name": "all day",
                    "match": {"account": "default", "alert": "Integration*"},
                    "times": [{"start_time": "00:00", "end_time": "24:00"}],
                    "weekdays": [WEEKDAYS[now.weekday()]],
                },
                {
                    "name": "migration",
                    "start": upcoming.isoformat(),
                    "end": (upcoming + timedelta(hours=1)).isoformat(),
                },
            ],
        }
        write(before)
        daemon = DaemonProcess(["run", "--config", str(config)], {}, port)
        try:
            daemon.wait_ready()
            write(after)
            changed = httpx.post(daemon.base + "/-/reload", timeout=10)
            again = httpx.post(daemon.base + "/-/reload", timeout=10)
            document = daemon.get("/status.json").json()
            page = daemon.get("/").text
            code, _ = daemon.terminate()
        finally:
            daemon.kill()
    assert code == 0
    assert changed.status_code == 200, changed.text
    assert changed.text.splitlines() == [
        "receivers: added chat; removed pager; changed mail",
        "routes: changed route 1",
        "maintenance windows: added all day, migration; removed old window",
        "alerting settings: changed failing_for_seconds",
    ]
    assert (again.status_code, again.text) == (200, "nothing changed\n")
    first, second = daemon.events("config_reloaded")
    assert (first["added"], first["removed"], first["changed"]) == ([], [], [])  # accounts
    assert first["receivers"] == {"added": ["chat"], "removed": ["pager"], "changed": ["mail"]}
    assert first["routes"] == {"added": [], "removed": [], "changed": ["route 1"]}
    assert first["maintenance"]["added"] == ["all day", "migration"]
    assert first["alerting"]["changed"] == ["failing_for_seconds"]
    assert all(not any(v.values()) for k, v in second.items() if isinstance(v, dict))
    assert "a2" not in changed.text  # names, never the URLs
    assert document["maintenance"] == [
        {
            "name": "all day",
            "matchers": {"account": "default", "alert": "Integration*"},
            "start": today.isoformat().replace("+00:00", "Z"),
            "end": (today + timedelta(days=1)).isoformat().replace("+00:00", "Z"),
            "active": True,
        },
        {
            "name": "migration",
            "matchers": {},
            "start": upcoming.isoformat().replace("+00:00", "Z"),
            "end": (upcoming + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
            "active": False,
        },
    ]
    # the page keeps saying it in words
    assert (
        "Maintenance: all day (account=default, alert=Integration*): now, until "
        f"{(today + timedelta(days=1)).strftime('%Y-%m-%dT%H:%MZ')}" in page
    )
    assert f"Maintenance: migration: from {upcoming.strftime('%Y-%m-%dT%H:%MZ')} until " in page
