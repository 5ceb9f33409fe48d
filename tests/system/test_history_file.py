"""The history file across processes and time, against real daemon processes: two shards given
one file, a file removed while the daemon runs, a corrupt file at the start, and a reload that
moves the file."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from monitor.settings.addresses import shard_of
from monitor.simulator import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, SimIntegration, Simulator
from tests.conftest import free_port
from tests.daemon_process import DaemonProcess, monitor_env, run_once


def held(daemon: DaemonProcess, account: str, integration_id: int) -> float | None:
    return daemon.metric(
        "integration_notifications_held",
        account=account,
        integration_id=str(integration_id),
        reason="mute",
    )


def open_intervals(path: Path) -> list[tuple[str, int, str]]:
    """(account, integration, state) of every interval still open in the file."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT account, integration_id, state FROM intervals WHERE until IS NULL "
            "ORDER BY account, integration_id"
        ).fetchall()
    return [(a, i, s) for a, i, s in rows]


def mute(
    history: Path | None, account: str, integration_id: int, config: Path | None = None
) -> str:
    """``integration-monitor mute`` as an operator types it (with the daemon's configuration
    file, and a history file when given); the new mute's ID."""
    result = run_once(
        [
            "mute",
            *(["--config", str(config)] if config is not None else []),
            *(["--history", str(history)] if history is not None else []),
            "--account",
            account,
            "--integration",
            str(integration_id),
            "--for",
            "1h",
            "--reason",
            "carrier maintenance",
        ],
        {},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split(":", 1)[0]


def names_on_two_shards() -> tuple[str, str]:
    """Two account names, the first polled by shard 0 of 2, the second by shard 1."""
    names = [f"shop-group-{n}" for n in range(20)]
    first = next(n for n in names if shard_of(n, 2) == 0)
    second = next(n for n in names if shard_of(n, 2) == 1)
    return first, second


@pytest.mark.timeout(120)
def test_two_shards_given_one_history_file_the_second_refuses_and_the_first_is_untouched(
    tmp_path: Path,
) -> None:
    """Each shard's crash recovery closed every open interval in the file, the other shard's
    too. Now the second process names the first and does not start; the first's intervals stay
    open; the CLI's mute still reaches the running shard; once the first stops, the second
    starts."""
    now = datetime.now(UTC)
    shops = [
        SimIntegration(1, "healthy", "North shop"),
        SimIntegration(2, "failing", "South shop", started_failing_at=now - timedelta(hours=1)),
    ]
    state = tmp_path / "state"  # one state directory given to both: the mistake
    history = state / "history.db"
    first_account, second_account = names_on_two_shards()
    with Simulator(shops) as sim:
        config = tmp_path / "monitor.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "alerting": {"state_file": str(state / "alerts.json")},
                    "accounts": [
                        {
                            "name": name,
                            "api_url": sim.url,
                            "public_key": DEMO_PUBLIC_KEY,
                            "secret_key": DEMO_SECRET_KEY,
                            "integration_ids": [1, 2],
                            "poll_interval_seconds": 5,
                        }
                        for name in (first_account, second_account)
                    ],
                }
            )
        )

        def shard(index: int, port: int) -> DaemonProcess:
            env = {"MONITOR_LISTEN_ADDRESS": f"127.0.0.1:{port}"}
            return DaemonProcess(
                ["run", "--config", str(config), "--shard", f"{index}/2"], env, port
            )

        first = shard(0, free_port())
        second: DaemonProcess | None = None
        try:
            first.wait_ready()
            first.wait_for(
                lambda: history.exists() and len(open_intervals(history)) == 2,
                10,
                "the first shard's intervals",
            )
            before = open_intervals(history)
            assert before == [(first_account, 1, "healthy"), (first_account, 2, "failing")]

            second = shard(1, free_port())
            assert second.process.wait(timeout=30) == 1
            [refused] = second.events("history_in_use")
            assert refused["level"] == "error"
            assert refused["path"] == str(history)
            assert refused["holder"].startswith(f"pid {first.process.pid} on host ")
            assert second.events("history_in_use_waiting")  # it waited for a restart first
            assert not second.events("monitor_started")
            assert open_intervals(history) == before  # nothing of the first's was closed

            mute_id = mute(history, first_account, 2, config)  # the CLI's short write still works
            first.wait_for(lambda: held(first, first_account, 2) == 1, 5, "the mute applied")
            assert first.metric("integration_monitor_history_up") == 1
            assert first.terminate()[0] == 0
        finally:
            first.kill()
            if second is not None:
                second.kill()

        again = shard(1, free_port())  # the file is free: the second shard starts
        try:
            again.wait_ready()
            again.wait_for(
                lambda: (second_account, 2, "failing") in open_intervals(history),
                10,
                "the second shard writing the file",
            )
            assert again.metric("integration_monitor_history_up") == 1
            assert again.terminate()[0] == 0
        finally:
            again.kill()
    listed = run_once(["mutes", "--history", str(history), "--output", "json"], {})
    assert [m["id"] for m in json.loads(listed.stdout)["mutes"]] == [mute_id]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("removed", ["history.db", "history.db*"])
def test_a_history_file_removed_while_the_daemon_runs_keeps_its_mutes_and_comes_back(
    tmp_path: Path, removed: str
) -> None:
    """Removing the file lifted every mute at once and the writes went on into the removed
    file with history_up 1. Now the mute holds throughout, the file is written again from the
    daemon's open copy (mutes, intervals) within a second or two, and writes land in it."""
    now = datetime.now(UTC)
    shops = [
        SimIntegration(1, "failing", "Muted shop", started_failing_at=now - timedelta(hours=1)),
        SimIntegration(2, "healthy", "Other shop"),
    ]
    state = tmp_path / "state"
    history = state / "history.db"
    with Simulator(shops) as sim:
        port = free_port()
        env = monitor_env(sim, port, MONITOR_STATE_FILE=str(state / "alerts.json"))
        daemon = DaemonProcess(["run"], env, port)
        try:
            daemon.wait_ready()
            daemon.wait_for(
                lambda: daemon.metric("integration_monitor_history_up") == 1, 10, "the history"
            )
            mute_id = mute(history, "default", 1)
            daemon.wait_for(lambda: held(daemon, "default", 1) == 1, 5, "the mute applied")
            for path in state.glob(removed):
                path.unlink()
            assert not history.exists()
            samples = []
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                samples.append(held(daemon, "default", 1))
                time.sleep(0.1)
            assert set(samples) == {1.0}  # never lifted, not for one scrape
            assert history.exists()
            [restored] = daemon.events("history_file_restored")
            assert restored["level"] == "error"
            assert restored["path"] == str(history)
            listed = run_once(["mutes", "--history", str(history), "--output", "json"], {})
            assert [m["id"] for m in json.loads(listed.stdout)["mutes"]] == [mute_id]
            # the open intervals went on: nothing was closed and opened again
            assert open_intervals(history) == [("default", 1, "failing"), ("default", 2, "healthy")]
            sim.update(2, scenario="failing", started_failing_at=now - timedelta(minutes=1))
            daemon.wait_for(
                lambda: ("default", 2, "failing") in open_intervals(history),
                15,
                "a later transition written to the file at the path",
            )
            assert daemon.metric("integration_monitor_history_up") == 1
            assert daemon.metric("integration_monitor_mutes_readable") == 1
            assert daemon.terminate()[0] == 0
        finally:
            daemon.kill()


class Notices(HTMLParser):
    """The text of the status page's notices (``<p class='notice'>``)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "p" and ("class", "notice") in attrs:
            self._inside = True
            self.found.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "p":
            self._inside = False

    def handle_data(self, data: str) -> None:
        if self._inside:
            self.found[-1] += data


def notices(daemon: DaemonProcess) -> tuple[list[str], list[str]]:
    """The notices of /status.json and of the page."""
    parser = Notices()
    parser.feed(daemon.get("/").text)
    return daemon.get("/status.json").json()["notices"], parser.found


@pytest.mark.timeout(60)
def test_a_corrupt_history_file_at_the_start_says_that_no_mute_is_applied(tmp_path: Path) -> None:
    """A file that cannot be read at the start means no mute is known: the page and a metric
    say so (until then only one warning line did), and both clear once the file is usable."""
    history = tmp_path / "history.db"
    history.write_bytes(b"garbage, not a database " * 64)
    with Simulator([SimIntegration(1, "healthy", "Shop")]) as sim:
        port = free_port()
        env = monitor_env(sim, port, MONITOR_HISTORY_FILE=str(history))
        daemon = DaemonProcess(["run"], env, port)
        try:
            daemon.wait_ready()
            assert daemon.metric("integration_monitor_mutes_readable") == 0
            in_json, on_page = notices(daemon)
            assert len(in_json) == 1
            assert on_page == in_json
            assert "not applied" in in_json[0]
            assert "not a database" in in_json[0]
            assert len(daemon.events("mutes_unreadable")) == 1
            history.unlink()  # the operator moves the broken file away
            daemon.wait_for(
                lambda: daemon.metric("integration_monitor_mutes_readable") == 1, 15, "readable"
            )
            assert notices(daemon) == ([], [])
            assert daemon.events("mutes_readable")
            assert daemon.terminate()[0] == 0
        finally:
            daemon.kill()


def reload(daemon: DaemonProcess) -> httpx.Response:
    return httpx.post(daemon.base + "/-/reload", timeout=30)


@pytest.mark.timeout(90)
def test_a_reload_that_moves_the_history_file_is_refused_naming_it(tmp_path: Path) -> None:
    """A reload kept the old history file, retention and state file and answered 200 with
    ``changed: []``; a mute written to the new file was ignored. Now a move of either file is
    refused (500, naming the setting; the running configuration stays), a new retention is
    applied, and the restart that applies the move honours the mute in the new file."""
    now = datetime.now(UTC)
    shops = [
        SimIntegration(1, "failing", "Shop", started_failing_at=now - timedelta(hours=1)),
        SimIntegration(2, "healthy", "Other shop"),
    ]
    old, new = tmp_path / "old", tmp_path / "new"
    port = free_port()
    config = tmp_path / "monitor.yaml"
    with Simulator(shops) as sim:

        def write(state_dir: Path, history_dir: Path, retention: int = 400, **more: Any) -> None:
            document = {
                "listen_address": f"127.0.0.1:{port}",
                "sendcloud": {
                    "api_url": sim.url,
                    "public_key": DEMO_PUBLIC_KEY,
                    "secret_key": DEMO_SECRET_KEY,
                    "integration_ids": [1, 2],
                    "poll_interval_seconds": 5,
                },
                "alerting": {"state_file": str(state_dir / "alerts.json")},
                "history": {"path": str(history_dir / "history.db"), "retention_days": retention},
                **more,
            }
            config.write_text(yaml.safe_dump(document))

        write(old, old)
        daemon = DaemonProcess(["run", "--config", str(config)], {}, port)
        try:
            daemon.wait_ready()
            daemon.wait_for(
                lambda: daemon.metric("integration_monitor_history_up") == 1, 10, "the history"
            )
            write(old, new)
            # the operator mutes with the edited file: the file it names does not exist yet
            early = run_once(
                [
                    "mute",
                    "--config",
                    str(config),
                    "--account",
                    "default",
                    "--integration",
                    "1",
                    "--for",
                    "1h",
                    "--reason",
                    "moving",
                ],
                {},
            )
            assert early.returncode == 2
            assert str(new / "history.db") in early.stderr
            assert not (new / "history.db").exists()
            refused = reload(daemon)
            assert refused.status_code == 500
            assert "history.path" in refused.text
            assert str(new / "history.db") in refused.text
            [failed] = daemon.events("config_reload_failed")
            assert "history.path" in failed["reason"]
            assert daemon.metric("integration_monitor_config_last_reload_successful") == 0

            write(new, old)  # the state file moves, the history stays
            refused = reload(daemon)
            assert refused.status_code == 500
            assert "alerting.state_file" in refused.text
            assert "history.path" not in refused.text

            write(old, old, retention=30, log_level="debug")
            refused = reload(daemon)
            assert refused.status_code == 500
            assert "log_level" in refused.text

            write(old, old, retention=30)
            applied = reload(daemon)
            assert applied.status_code == 200, applied.text
            assert "history: changed retention_days" in applied.text.splitlines()
            assert daemon.metric("integration_monitor_config_last_reload_successful") == 1

            # the running daemon still uses the old file: its mute applies, the new one's not
            assert held(daemon, "default", 1) is None
            mute(old / "history.db", "default", 2, config)
            daemon.wait_for(lambda: held(daemon, "default", 2) == 1, 5, "the old file's mute")
            assert held(daemon, "default", 1) is None
            assert not (new / "alerts.json").exists()
            assert daemon.terminate()[0] == 0
        finally:
            daemon.kill()

        write(old, new, retention=30)  # the restart applies the move
        daemon = DaemonProcess(["run", "--config", str(config)], {}, port)
        try:
            daemon.wait_ready()
            daemon.wait_for(lambda: (new / "history.db").exists(), 10, "the new history file")
            moved_mute = mute(None, "default", 1, config)  # the edited file names the new one
            daemon.wait_for(lambda: held(daemon, "default", 1) == 1, 5, "the new file's mute")
            assert held(daemon, "default", 2) is None
            listed = run_once(
                ["mutes", "--history", str(new / "history.db"), "--output", "json"], {}
            )
            assert [m["id"] for m in json.loads(listed.stdout)["mutes"]] == [moved_mute]
            assert daemon.terminate()[0] == 0
        finally:
            daemon.kill()
