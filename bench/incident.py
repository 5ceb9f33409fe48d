"""Benchmark: how soon the causes of a large incident arrive.

The daemon as a process against the simulator: 10 000 integrations in one account, 1 000 of
them failing for three hours, their exception logs older than the stream's first read-back
(one hour), so each cause takes one per-integration lookup (``GET /integrations/{id}/logs``).
The account polls every 60 s at the default budget (900 requests a minute): its list walk
takes about 100 of them, the rest is headroom the lookups may use.

It prints when the daemon was ready, when the 1 000 ``IntegrationFailing`` alerts fired, how
many causes had arrived (``kind: cause`` events) after 1, 2, 3 and 5 minutes, when the last
one did, the lookups made and how many were made twice for one integration, and the polls'
longest duration (the lookups must not slow them). It asserts nothing.

    python bench/incident.py               # up to 15 minutes
    python bench/incident.py --limit 300   # stop after 5 minutes, whatever has arrived
    python bench/incident.py --quick       # 1 000 integrations, 100 failing (the test suite)
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.daemon import free_port, wait  # noqa: E402

MARKS = (60, 120, 180, 300)


def start_simulator(count: int, failing_every: int, port: int) -> subprocess.Popen[bytes]:
    code = (
        "from datetime import timedelta\n"
        "from monitor.health import utcnow\n"
        "from monitor.simulator import SimIntegration, Simulator\n"
        "since = utcnow() - timedelta(hours=3)\n"
        f"shops = [SimIntegration(i, 'failing' if i % {failing_every} == 0 else 'healthy', "
        f"f'Shop {{i}}', started_failing_at=since if i % {failing_every} == 0 else None) "
        f"for i in range(1, {count + 1})]\n"
        f"Simulator(shops, port={port}).serve_forever()\n"
    )
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)


class Output:
    """The daemon's alert events as they come, with the seconds since it started."""

    def __init__(self, process: subprocess.Popen[str], started: float) -> None:
        self.events: list[tuple[float, dict[str, object]]] = []
        self._process = process
        self._started = started
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == "alert":
                self.events.append((time.monotonic() - self._started, entry))

    def kinds(self, kind: str) -> list[float]:
        """When each IntegrationFailing event of ``kind`` came."""
        return [
            at
            for at, e in list(self.events)
            if e["kind"] == kind and e["alert"] == "IntegrationFailing"
        ]


def poll_seconds_max(base: str) -> float:
    """The longest poll cycle so far, as the histogram's buckets tell it (an upper bound)."""
    text = httpx.get(base + "/metrics", timeout=30).text
    counts = [
        (float(le), float(value))
        for le, value in re.findall(
            r'^integration_monitor_poll_duration_seconds_bucket\{[^}]*le="([^"]+)"\} (\S+)$',
            text,
            re.M,
        )
        if le != "+Inf"
    ]
    total = max((v for _, v in counts), default=0.0)
    for le, value in sorted(counts):
        if value == total:
            return le
    return float("inf")


def run(integrations: int, failing_every: int, limit: float) -> dict[str, str]:
    failing = integrations // failing_every
    sim_port, port = free_port(), free_port()
    simulator = start_simulator(integrations, failing_every, sim_port)
    requests_url = f"http://127.0.0.1:{sim_port}/_simulator/requests"
    try:
        wait(requests_url)
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "monitor.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "listen_address": f"127.0.0.1:{port}",
                        "log_level": "info",
                        "defaults": {"poll_interval_seconds": 60},
                        "sendcloud": {
                            "api_url": f"http://127.0.0.1:{sim_port}/api/v3",
                            "public_key": "demo-public-key",
                            "secret_key": "demo-secret-key",
                            "integration_ids": "all",
                        },
                    }
                )
            )
            started = time.monotonic()
            daemon = subprocess.Popen(
                [sys.executable, "-m", "monitor", "run", "--config", str(config)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            output = Output(daemon, started)
            base = f"http://127.0.0.1:{port}"
            try:
                wait(base + "/readyz", timeout=120)
                ready = time.monotonic() - started
                while time.monotonic() - started < limit and len(output.kinds("cause")) < failing:
                    time.sleep(1)
                longest_poll = poll_seconds_max(base)
            finally:
                daemon.terminate()
                daemon.wait(timeout=30)
        lookups = collections.Counter(
            p
            for p in httpx.get(requests_url, timeout=30).json()["requests"]
            if re.fullmatch(r"/integrations/\d+/logs", p)
        )
    finally:
        simulator.terminate()
        simulator.wait(timeout=15)
    fired = output.kinds("fired")
    causes = sorted(output.kinds("cause"))
    row = {
        "scenario": f"{integrations} integrations, {failing} failing",
        "ready after": f"{ready:.1f} s",
        "fired": f"{len(fired)} by {max(fired):.0f} s" if fired else "0",
    }
    for mark in MARKS:
        if mark <= limit:
            row[f"causes by {mark} s"] = str(sum(1 for at in causes if at <= mark))
    done = len(causes) >= failing
    row["last cause"] = f"{causes[-1]:.0f} s" if done else f"not all by {limit:.0f} s"
    row["lookups"] = str(sum(lookups.values()))
    row["repeated"] = str(sum(n - 1 for n in lookups.values() if n > 1))
    row["longest poll"] = f"<= {longest_poll:g} s"
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 000 integrations, 100 failing")
    parser.add_argument("--limit", type=float, default=900.0, help="seconds to wait at most")
    args = parser.parse_args()
    integrations = 1000 if args.quick else 10_000
    row = run(integrations, 10, 120.0 if args.quick else args.limit)
    print(" | ".join(row))
    print("-|-".join("-" * len(k) for k in row))
    print(" | ".join(row.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
