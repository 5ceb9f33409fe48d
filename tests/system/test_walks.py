"""A large account whose list walk does not fit its interval, against a real daemon: the pages
of a cut cycle are kept, the walk goes on over the cycles, every integration is read, and the
daemon says it is ready only then."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from monitor.simulator import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, SimIntegration, Simulator
from tests.conftest import free_port, metric_samples
from tests.daemon_process import DaemonProcess


def last_reads(text: str) -> dict[str, float]:
    """Each integration's last successful read, from one scrape."""
    return {
        dict(labels)["integration_id"]: value
        for (name, labels), value in metric_samples(text).items()
        if name == "integration_last_poll_success_timestamp_seconds"
    }


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("integrations", "per_minute", "delay"),
    [
        # As found: 2 500 integrations at max_requests_per_minute 60 every 25 s, exactly the
        # smallest interval the daemon used to call feasible (25 pages at 60 a minute), fetched
        # 71 pages in 70 s and exported nothing. Here the same ratio five times faster: 25
        # pages at 300 a minute every 5 s, with pages of 0.15 s (the bucket's burst of 5
        # would otherwise let a 300-a-minute walk fit where a 60-a-minute one cannot).
        (2500, 300, 0.15),
        # As found: 1 200 integrations whose pages take 0.5 s, the default budget, every 5 s.
        (1200, 900, 0.5),
    ],
    ids=["budget", "slow-api"],
)
def test_a_walk_longer_than_its_interval_is_read_whole_and_ready_only_then(
    tmp_path: Path, integrations: int, per_minute: int, delay: float
) -> None:
    pages = integrations // 100
    shops = [SimIntegration(i, "healthy", f"Shop {i}") for i in range(1, integrations + 1)]
    with Simulator(shops) as sim:
        sim.inject_fault(kind="slow", delay=delay, count=1_000_000, endpoint="list")
        port = free_port()
        config = tmp_path / "monitor.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "listen_address": f"127.0.0.1:{port}",
                    "defaults": {
                        "poll_interval_seconds": 5,
                        "max_requests_per_minute": per_minute,
                    },
                    "sendcloud": {
                        "api_url": sim.url,
                        "public_key": DEMO_PUBLIC_KEY,
                        "secret_key": DEMO_SECRET_KEY,
                        "integration_ids": "all",
                    },
                }
            )
        )
        daemon = DaemonProcess(["run", "--config", str(config)], {}, port)
        try:
            # ready only once every integration has been read: at that moment, all are there
            daemon.wait_for(lambda: daemon.get("/readyz").status_code == 200, 60, "/readyz")
            text = daemon.get("/metrics").text
            up = [
                value
                for (name, _), value in metric_samples(text).items()
                if name == "integration_up"
            ]
            assert len(up) == integrations
            assert set(up) == {1.0}
            plan = daemon.events("poll_plan")
            assert plan[0]["requests_per_cycle"] == "known after the first walk"
            daemon.wait_for(lambda: len(daemon.events("poll_plan")) == 2, 20, "the whole plan")
            complete = daemon.events("poll_plan")[1]
            assert complete["integrations"] == integrations
            assert complete["requests_per_cycle"] == pages + 1  # the list, and the log stream
            assert complete["walk_cycles"] >= 2
            daemon.wait_for(
                lambda: bool(daemon.events("poll_interval_too_short")), 20, "the warning"
            )
            [warning] = daemon.events("poll_interval_too_short")
            feasible = warning["smallest_feasible_interval_seconds"]
            assert feasible > 5

            # every integration goes on being read: within two feasible intervals, each has
            # a newer read (a cut walk goes on where it stopped, then starts again)
            before = last_reads(daemon.get("/metrics").text)
            time.sleep(2 * feasible + 5)
            after = last_reads(daemon.get("/metrics").text)
            assert before.keys() == after.keys()
            stale = [i for i in before if after[i] <= before[i]]
            assert stale == []
            # said once each, not every cycle
            assert len(daemon.events("poll_interval_too_short")) == 1
            assert len(daemon.events("poll_cycle_cut_short")) == 1
            assert daemon.get("/readyz").status_code == 200
        finally:
            daemon.terminate(timeout=10)
