"""The history through the whole daemon: a shop fails and recovers, the API tells it, a restart
leaves its downtime unknown, and a broken history file never stops polling or alerting."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
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


class Times(HTMLParser):
    """Each table row's cells: their text and the ``datetime`` of the <time> in them; and the
    <time> elements outside tables (the header)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[tuple[str, str | None]]]] = []
        self.header_times: list[dict[str, str | None]] = []
        self._cell: list[str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag == "td":
            self._cell = ["", None]
        elif tag == "time":
            if self._cell is not None:
                self._cell[1] = dict(attrs).get("datetime")
            else:
                self.header_times.append(dict(attrs))

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.tables[-1][-1].append((self._cell[0] or "", self._cell[1]))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell[0] = (self._cell[0] or "") + data


def moment(iso: str | None) -> datetime:
    assert iso is not None
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


@pytest.mark.timeout(90)
def test_the_page_of_a_shop_failing_for_40_minutes_says_40_minutes(tmp_path: Path) -> None:
    """A shop Sendcloud reports failing for 40 minutes, as a merchant's support person opens
    its page in a monitor that just started: the page, the history API and the report all
    count from Sendcloud's started_failing_at, as the status page does — never from the
    moment the monitor first saw it."""
    now = datetime.now(UTC)
    started = (now - timedelta(minutes=40)).replace(microsecond=0)
    shops = [
        SimIntegration(1, "healthy", "Steady shop"),
        SimIntegration(2, "failing", "Woo shop", started_failing_at=started),
    ]
    with Simulator(shops) as sim:
        port = free_port()
        history = tmp_path / "history.db"
        env = monitor_env(sim, port, MONITOR_HISTORY_FILE=str(history))
        daemon = DaemonProcess(["run"], env, port)
        try:
            daemon.wait_ready()
            path = "/api/v1/integrations/default/2/history"
            daemon.wait_for(
                lambda: bool(api(daemon, path).json().get("episodes")), 10, "the episode"
            )
            page = daemon.get("/integrations/default/2")
            document = api(daemon, path).json()
            status = daemon.get("/status.json").json()
            unknown = [
                api(daemon, "/api/v1/integrations/nobody/2/history"),
                api(daemon, "/api/v1/integrations/default/99/history"),
                api(daemon, "/api/v1/availability", account="nobody"),
            ]
            month = now.strftime("%Y-%m")
            report = run_once(
                ["report", "--account", "default", "--month", month, "--format", "json"],
                {"MONITOR_HISTORY_FILE": str(history)},
            )
            typo = run_once(
                ["report", "--account", "defualt", "--month", month],
                {"MONITOR_HISTORY_FILE": str(history)},
            )
            assert daemon.terminate()[0] == 0
        finally:
            daemon.kill()
    [row] = [r for r in status["integrations"] if r["integration_id"] == 2]
    assert moment(row["failing_since"]) == started
    assert 40 * 60 <= row["failing_seconds"] < 41 * 60  # what the status page says: 40m

    assert page.status_code == 200
    times = Times()
    times.feed(page.text)
    # the header: "Now: failing for 40m", the time it began on hover
    [now_failing] = [t for t in times.header_times if t.get("class") == "failing-for"]
    assert moment(now_failing["datetime"]) == started
    _, episodes, timeline, _changes = times.tables
    [episode] = [cells for cells in episodes if cells and cells[0][0] == "IntegrationFailing"]
    began, fired, resolved, lasted = episode[1], episode[2], episode[3], episode[4]
    assert moment(began[1]) == started  # "Began 40m ago", not when the monitor fired
    assert began[0] == "40m ago"
    assert moment(fired[1]) > now  # the alert itself fired when the monitor started
    assert resolved[0] == "still firing"
    assert lasted[0] == "40m"
    [failing] = [cells for cells in timeline if cells and cells[0][0] == "failing"]
    assert moment(failing[1][1]) == started  # "failing since 40m ago ..."
    assert (failing[2][0], failing[3][0]) == ("now", "40m")  # "... for 40m"

    VALIDATOR.validate(document)
    assert [(i["state"], moment(i["since"])) for i in document["intervals"]] == [
        ("failing", started)
    ]
    assert moment(document["episodes"][0]["started"]) == started
    for answer in unknown:  # a name it does not know is not an empty history
        assert answer.status_code == 404
        VALIDATOR.validate(answer.json())

    assert report.returncode == 0, report.stderr
    figures = json.loads(report.stdout)
    assert moment(figures["to"]) <= datetime.now(UTC)  # the current month ends now
    assert figures["so_far"] is True
    [woo] = [line for line in figures["integrations"] if line["integration_id"] == 2]
    assert moment(woo["incident_list"][0]["started"]) == started
    assert typo.returncode == 2
    assert typo.stdout == ""
    assert "'defualt'" in typo.stderr
    assert "default" in typo.stderr.replace("'defualt'", "")
