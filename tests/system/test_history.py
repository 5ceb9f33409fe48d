"""The history through the whole daemon: a shop fails and recovers, the API tells it, a restart
leaves its downtime unknown, and a broken history file never stops polling or alerting."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jsonschema
import pytest

from monitor.simulator import SimIntegration, Simulator
from tests.conftest import ROOT, free_port
from tests.daemon_process import DaemonProcess, monitor_env, run_once

SCHEMA = json.loads((ROOT / "docs" / "history-api.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(
    SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)


def api(daemon: DaemonProcess, path: str, **params: str) -> httpx.Response:
    return httpx.get(daemon.base + path, params=params, timeout=5)


@pytest.mark.timeout(90)
def test_a_failure_and_a_recovery_across_a_restart_as_the_api_tells_them(tmp_path: Path) -> None:
    state = tmp_path / "state"
    now = datetime.now(UTC)
    shops = [
        SimIntegration(1, "healthy", "Steady shop"),
        SimIntegration(2, "failing", "Broken shop", started_failing_at=now - timedelta(hours=1)),
    ]
    with Simulator(shops) as sim:
        port = free_port()
        env = monitor_env(sim, port, MONITOR_STATE_FILE=str(state / "alerts.json"))
        daemon = DaemonProcess(["run"], env, port)
        try:
            daemon.wait_ready()
            daemon.wait_for(
                lambda: daemon.metric("integration_monitor_history_up") == 1, 5, "the history"
            )
            sim.update(2, scenario="healthy", started_failing_at=None)
            daemon.wait_for(
                lambda: daemon.metric("integration_failing", integration_id="2") == 0,
                15,
                "the recovery",
            )
            assert daemon.terminate()[0] == 0
        finally:
            daemon.kill()
        assert (state / "history.db").exists()  # beside the state file, by default
        time.sleep(1.5)  # downtime
        daemon = DaemonProcess(["run"], env, port)
        try:
            daemon.wait_ready()
            path = "/api/v1/integrations/default/2/history"
            daemon.wait_for(  # the writer gathers half a second of polls per transaction
                lambda: api(daemon, path).json()["intervals"][-1]["until"] is None,
                5,
                "the first poll after the restart in the history",
            )
            history = api(daemon, path)
            assert history.status_code == 200, history.text
            document = history.json()
            VALIDATOR.validate(document)
            states = [i["state"] for i in document["intervals"]]
            assert states[:2] == ["failing", "healthy"]
            assert document["intervals"][-1]["until"] is None  # open: polled again
            stop = datetime.fromisoformat(document["intervals"][-2]["until"])
            start = datetime.fromisoformat(document["intervals"][-1]["since"])
            assert start - stop >= timedelta(seconds=1)  # the downtime: no interval, unknown
            assert [e["alert"] for e in document["episodes"]] == ["IntegrationFailing"]
            assert document["episodes"][0]["resolved"] is not None
            rows = api(daemon, "/api/v1/availability", account="default")
            assert rows.status_code == 200
            VALIDATOR.validate(rows.json())
            by_id = {r["integration_id"]: r for r in rows.json()["integrations"]}
            assert by_id[1]["availability"] == 1.0
            assert 0 < by_id[2]["availability"] < 1
            assert by_id[2]["incidents"] == 1
            assert by_id[2]["seconds"]["unknown"] > 0  # before the first start, and the downtime
            for bad in ({"account": "default", "from": "yesterday"}, {}):
                refused = api(daemon, "/api/v1/availability", **bad)
                assert refused.status_code == 400
                VALIDATOR.validate(refused.json())
            assert api(daemon, "/api/v1/integrations/default/x/history").status_code == 400
            badge = api(daemon, "/badge/default/2/uptime.svg", window="1d")
            assert badge.headers["content-type"] == "image/svg+xml"
            assert badge.headers["cache-control"] == "max-age=60"
            percent = f"{by_id[2]['availability'] * 100:.0f}"
            assert percent in badge.text or str(int(percent) - 1) in badge.text
            assert "healthy" in api(daemon, "/badge/default/1.svg").text
            # the report reads the file while the daemon writes it
            since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
            result = run_once(
                ["report", "--account", "default", "--from", since, "--format", "json"],
                {"MONITOR_STATE_FILE": str(state / "alerts.json")},
            )
            assert result.returncode == 0, result.stderr
            lines = {r["integration_id"]: r for r in json.loads(result.stdout)["integrations"]}
            assert lines[2]["incidents"] == 1
            assert lines[1]["availability"] == 1.0
            assert daemon.terminate()[0] == 0
        finally:
            daemon.kill()


@pytest.mark.timeout(60)
def test_a_corrupt_history_file_never_stops_polling_or_alerting(tmp_path: Path) -> None:
    history = tmp_path / "history.db"
    history.write_bytes(b"garbage, not a database " * 64)
    now = datetime.now(UTC)
    shops = [SimIntegration(1, "failing", "Broken", started_failing_at=now - timedelta(hours=1))]
    with Simulator(shops) as sim:
        port = free_port()
        env = monitor_env(sim, port, MONITOR_HISTORY_FILE=str(history))
        daemon = DaemonProcess(["run"], env, port)
        try:
            daemon.wait_ready()
            daemon.wait_for(
                lambda: daemon.metric("integration_monitor_history_up") == 0, 10, "history down"
            )
            assert daemon.metric("integration_failing", integration_id="1") == 1
            assert [e["alert"] for e in daemon.events("alert")] == ["IntegrationFailing"]
            daemon.wait_for(
                lambda: (
                    (daemon.metric("integration_monitor_history_failures_total", kind="write") or 0)
                    >= 2
                ),
                15,
                "a second attempt",
            )
            assert len(daemon.events("history_write_failed")) == 1
            history.unlink()  # the operator moves the broken file away
            daemon.wait_for(
                lambda: daemon.metric("integration_monitor_history_up") == 1, 15, "the recovery"
            )
            found = api(daemon, "/api/v1/integrations/default/1/history").json()
            assert [i["state"] for i in found["intervals"]] == ["failing"]
            assert daemon.terminate()[0] == 0
        finally:
            daemon.kill()
