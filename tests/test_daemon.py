"""The APScheduler wiring: first poll at once, no overlapping polls, clean stop mid-poll."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from monitor.daemon import (
    HISTORY_CLAIM_SECONDS,
    POLL_GRACE_SECONDS,
    POLL_UNWIND_SECONDS,
    RESTART_SETTINGS,
    SHUTDOWN_BUDGET_SECONDS,
    SHUTDOWN_SECONDS,
    Daemon,
    restart_values,
)
from monitor.notify.delivery import DRAIN_SECONDS
from monitor.schedule import TickedInterval
from monitor.settings import load_settings
from monitor.simulator import Simulator
from tests.conftest import ROOT, account_for, metric_value, scraped


async def slow_handler(request: httpx.Request) -> httpx.Response:
    await asyncio.sleep(0.6)
    return httpx.Response(200, json={"data": {"id": 1}})


async def test_overrunning_polls_are_skipped_not_stacked_and_stop_is_clean(sim: Simulator) -> None:
    account = account_for(sim, (1,), poll_interval_seconds=0.2)
    daemon = Daemon([account], ("127.0.0.1", 0), transport=httpx.MockTransport(slow_handler))
    stop = asyncio.Event()
    runner = asyncio.create_task(daemon.run(stop))
    await asyncio.sleep(1.5)
    assert daemon.store.ready()  # the first poll ran at once and finished
    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(runner, timeout=6)
    assert time.monotonic() - started < 5
    text = scraped(daemon.metrics)
    skipped = metric_value(
        text, "integration_monitor_scheduler_events_total", event="skipped_overrun"
    )
    assert skipped is not None
    assert skipped >= 1
    assert (metric_value(text, "integration_monitor_polls_total", outcome="success") or 0) >= 1


async def test_accounts_poll_on_whole_ticks_from_their_second_poll(sim: Simulator) -> None:
    """The daemon's jobs use the ticked schedule: after its first poll, each account's next
    poll is on a whole tick (0.2 s for a 1 s interval), whatever its first-poll offset."""
    accounts = [account_for(sim, (1,), name=f"a{n}", poll_interval_seconds=1.0) for n in range(3)]
    daemon = Daemon(accounts, ("127.0.0.1", 0))
    stop = asyncio.Event()
    runner = asyncio.create_task(daemon.run(stop))
    try:
        await asyncio.sleep(1.5)
        assert daemon.store.ready()
        assert daemon.workers.scheduler is not None
        for account in accounts:
            job = daemon.workers.scheduler.get_job(account.name)
            assert isinstance(job.trigger, TickedInterval)
            assert job.next_run_time.microsecond % 200_000 == 0  # on a 0.2 s tick
    finally:
        stop.set()
        await asyncio.wait_for(runner, timeout=10)


#: A value for each setting a reload cannot change, other than its default.
RESTART_VARIANTS: dict[str, dict[str, Any]] = {
    "listen_address": {"listen_address": "127.0.0.1:9999"},
    "shard": {"shard": "1/2"},
    "log_format": {"log_format": "console"},
    "log_level": {"log_level": "debug"},
    "alerting.state_file": {"alerting": {"state_file": "/var/lib/other/alerts.json"}},
    "history.path": {"history": {"path": "/var/lib/other/history.db"}},
}


def test_each_setting_a_reload_refuses_is_seen_and_the_docs_list_the_same(
    tmp_path: Path,
) -> None:
    """docs/operations.md lists what needs a restart; the code refuses a reload that changes
    one of RESTART_SETTINGS (tests/system/test_history_file.py): both lists are the same, and
    a change of each is seen (the state file also moves the history beside it)."""
    text = (ROOT / "docs" / "operations.md").read_text()
    after = text.split("Settings that need a restart", 1)[1].splitlines()
    bullets = itertools.takewhile(
        lambda line: line.startswith("- "),
        itertools.dropwhile(lambda line: not line.startswith("- "), after),
    )
    listed = [re.match(r"- `([^`]+)`", line).group(1) for line in bullets]  # type: ignore[union-attr]
    assert listed == list(RESTART_SETTINGS)
    assert set(RESTART_VARIANTS) == set(RESTART_SETTINGS)

    def loaded(document: dict[str, Any]) -> dict[str, object]:
        config = tmp_path / "monitor.yaml"
        account = {"public_key": "public-key-1", "secret_key": "secret-key-1"}
        config.write_text(yaml.safe_dump({"sendcloud": account, **document}))
        return restart_values(load_settings(config, {})[0])

    base = loaded({})
    for name, document in RESTART_VARIANTS.items():
        changed = {k for k, v in loaded(document).items() if v != base[k]}
        moved = {"history.path"} if name == "alerting.state_file" else set()
        assert changed == {name} | moved, name


def test_the_shutdown_and_claim_times_the_docs_state_are_the_codes() -> None:
    """docs/operations.md states the shutdown's parts and the claim's wait in seconds; they
    are the constants the daemon uses, and the parts fit the documented whole."""
    text = (ROOT / "docs" / "operations.md").read_text()
    stopping = text.split("## Stopping", 1)[1].split("\n## ", 1)[0]
    claim = text.split("## One process per history file", 1)[1]
    assert f"within {SHUTDOWN_SECONDS:g} s" in stopping
    assert f"polls in flight get {POLL_GRACE_SECONDS:g} s" in stopping
    assert f"queued deliveries get {DRAIN_SECONDS:g} s" in " ".join(stopping.split())
    assert f"waits up to {HISTORY_CLAIM_SECONDS:g} s" in claim
    assert POLL_GRACE_SECONDS + POLL_UNWIND_SECONDS + DRAIN_SECONDS < SHUTDOWN_BUDGET_SECONDS
    assert SHUTDOWN_BUDGET_SECONDS < SHUTDOWN_SECONDS
    assert HISTORY_CLAIM_SECONDS > SHUTDOWN_SECONDS  # a restart's old process is gone by then
