"""Benchmark: the daemon as a process against the simulator, each figure beside its floor.

For each scenario it prints, in one table:

- when the daemon was ready, and the API GETs of a poll round (every account once);
- the daemon's CPU per round, counted over steady polling windows with no scrape inside, and
  the **floor** for the same round: the same GETs with the daemon's request path against the
  same simulator, the same pages validated, nothing else (``bench/floor.py``, measured in this
  run), with the daemon as a multiple of it; and CPU per 1 000 integrations, so that the
  growth from 1 000 to 100 000 integrations shows;
- CPU per scrape (gzip, as Prometheus asks) against prometheus-client's own
  ``generate_latest()`` for exactly the same samples (measured here, in the same run);
- RSS steady and peak;
- when Debian's ``prometheus-blackbox-exporter`` is installed, for one account, its CPU for one
  cycle (one probe per integration, as Prometheus would) and the daemon's as a fraction of it.

Then each target of docs/operations.md's capacity section, met or not. It asserts nothing.

    python bench/daemon.py            # every scenario (about 15 minutes)
    python bench/daemon.py --only 3   # one scenario, by number
    python bench/daemon.py --quick    # a small run that proves the benchmark still works
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")
BLACKBOX = shutil.which("prometheus-blackbox-exporter") or shutil.which("blackbox_exporter")
#: Probes in flight at once (Prometheus scrapes probe targets concurrently).
PROBE_CONCURRENCY = 8


@dataclass(frozen=True)
class Scenario:
    name: str
    integrations: int  # in the simulator
    accounts: int  # each watching every integration of the simulator ("all" mode)
    interval: float
    cycles: int
    scrapes: int
    history: bool = True  # as shipped with a state directory


SCENARIOS = (
    Scenario("1 000 integrations", 1000, 1, 10, 3, 20),
    Scenario("10 000 integrations", 10_000, 1, 20, 3, 10),
    Scenario("100 000 integrations (10 x 10 000)", 10_000, 10, 120, 2, 3),
    Scenario("500 accounts x 20", 20, 500, 30, 2, 10),
    # the same without a history file: the history's own cost, measured in the same run
    Scenario("500 accounts x 20, no history", 20, 500, 30, 2, 10, history=False),
)

#: Enough rounds that their CPU spans several of /proc's 10 ms clock ticks (one round of 200
#: integrations was sometimes read as zero).
QUICK = (Scenario("quick: 200 integrations", 200, 1, 5, 8, 5),)


@dataclass(frozen=True)
class Target:
    """A goal of the capacity section: a figure of one scenario and its limit."""

    scenario: str
    what: str
    figure: str  # a key of the row
    limit: float
    unit: str = ""


TARGETS = (
    Target("500 accounts x 20", "CPU per round of 500 polls", "CPU / round", 1.0, " s"),
    Target("10 000 integrations", "CPU per steady cycle", "CPU / round", 0.3, " s"),
    Target("100 000 integrations (10 x 10 000)", "ready after", "ready after", 240, " s"),
    Target("100 000 integrations (10 x 10 000)", "RSS steady", "RSS steady", 400, " MiB"),
    Target("100 000 integrations (10 x 10 000)", "CPU per cycle", "CPU / round", 3.0, " s"),
    Target("100 000 integrations (10 x 10 000)", "scrape / floor", "scrape / floor", 0.25),
)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mib(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(value.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def start_simulator(count: int, port: int) -> subprocess.Popen[bytes]:
    code = (
        "from monitor.simulator import SimIntegration, Simulator\n"
        f"shops = [SimIntegration(i, 'failing' if i % 10 == 0 else 'healthy', f'Shop {{i}}') "
        f"for i in range(1, {count + 1})]\n"
        f"Simulator(shops, port={port}).serve_forever()\n"
    )
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)


def wait(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready")


def polls(metrics_text: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(metrics_text)
        for s in family.samples
        if s.name == "integration_monitor_polls_total"
    )


class Replay:
    """The parsed samples as a collector: prometheus-client renders exactly them."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def floor_seconds(text: str, repeat: int = 3) -> float:
    registry = CollectorRegistry()
    registry.register(Replay(list(text_string_to_metric_families(text))))  # type: ignore[arg-type]
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        generate_latest(registry)
        best = min(best, time.process_time() - started)
    return best


def run(scenario: Scenario) -> dict[str, str]:
    sim_port, port = free_port(), free_port()
    simulator = start_simulator(scenario.integrations, sim_port)
    api = f"http://127.0.0.1:{sim_port}/api/v3"
    try:
        wait(f"http://127.0.0.1:{sim_port}/_simulator/requests")
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "monitor.yaml"
            accounts = [
                {
                    "name": f"account-{n}",
                    "api_url": api,
                    "public_key": "demo-public-key",
                    "secret_key": "demo-secret-key",
                    "integration_ids": "all",
                }
                for n in range(scenario.accounts)
            ]
            settings: dict[str, object] = {
                "listen_address": f"127.0.0.1:{port}",
                "log_level": "error",
                "defaults": {"poll_interval_seconds": scenario.interval},
                "accounts": accounts,
                # what is measured is polling: the simulated shops do not exist (their probes
                # would be DNS failures, not handshakes); the configuration checks still run
                "probes": {"enabled": False},
            }
            if scenario.history:
                settings["history"] = {"path": str(Path(tmp) / "history.db")}
            config.write_text(yaml.safe_dump(settings))
            # the floor before and after the daemon: the machine drifts over minutes, and the
            # mean of the two is what the daemon saw
            before = floor_cpu(scenario, api)
            daemon = subprocess.Popen(
                [sys.executable, "-m", "monitor", "run", "--config", str(config)],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
            )
            try:
                row = measure(scenario, daemon.pid, f"http://127.0.0.1:{port}", sim_port)
            finally:
                daemon.terminate()
                daemon.wait(timeout=30)
            row.update(floor(before, floor_cpu(scenario, api), row))
            row.update(blackbox(scenario, api, Path(tmp), row))
            return row
    finally:
        simulator.terminate()
        simulator.wait(timeout=15)


def measure(scenario: Scenario, pid: int, base: str, sim_port: int) -> dict[str, str]:
    started = time.monotonic()
    wait(base + "/readyz", timeout=max(120.0, 3 * scenario.interval))
    ready_after = time.monotonic() - started
    time.sleep(1)
    gzip_headers = {"Accept-Encoding": "gzip"}
    # scrapes first, between two polls: their CPU alone
    cpu = cpu_seconds(pid)
    for _ in range(scenario.scrapes):
        response = httpx.get(base + "/metrics", headers=gzip_headers, timeout=120)
    scrape_cpu = (cpu_seconds(pid) - cpu) / scenario.scrapes
    gzip = response.headers.get("Content-Encoding") == "gzip"
    text = response.text
    # steady: every account has polled twice (first polls create every record, alert state
    # and history row, and 500 accounts start over a minute)
    deadline = time.monotonic() + 4 * scenario.interval + 120
    while polls(text) < 2 * scenario.accounts and time.monotonic() < deadline:
        time.sleep(min(5.0, scenario.interval / 4))
        text = httpx.get(base + "/metrics", timeout=120).text
    # then whole poll rounds: the CPU is read before the scrape that counts the polls
    requests_url = f"http://127.0.0.1:{sim_port}/_simulator/requests"
    before_requests = len(httpx.get(requests_url, timeout=30).json()["requests"])
    before_polls, cpu = polls(text), cpu_seconds(pid)
    time.sleep(scenario.cycles * scenario.interval)
    window_cpu = cpu_seconds(pid) - cpu
    requests = len(httpx.get(requests_url, timeout=30).json()["requests"]) - before_requests
    text = httpx.get(base + "/metrics", timeout=120).text
    rounds = (polls(text) - before_polls) / scenario.accounts
    round_cpu = window_cpu / max(rounds, 1)
    steady, peak = rss_mib(pid)
    samples = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    floor = floor_seconds(text)
    integrations = scenario.integrations * scenario.accounts
    return {
        "scenario": scenario.name,
        "ready after": f"{ready_after:.1f} s",
        "samples": str(samples),
        "API GETs / round": f"{requests / max(rounds, 1):.0f}",
        "CPU / round": f"{round_cpu:.3f} s",
        "CPU / round / 1 000 integrations": f"{round_cpu / integrations * 1000:.3f} s",
        "CPU / scrape (gzip)" if gzip else "CPU / scrape (NOT gzip)": f"{scrape_cpu * 1000:.0f} ms",
        "generate_latest floor": f"{floor * 1000:.0f} ms",
        "scrape / floor": f"{scrape_cpu / floor:.2f}" if floor else "-",
        "RSS steady": f"{steady:.0f} MiB",
        "RSS peak": f"{peak:.0f} MiB",
    }


def floor_cpu(scenario: Scenario, api: str) -> tuple[float, int]:
    """(CPU, GETs) of the floor of one round (bench/floor.py, in its own process)."""
    command = [sys.executable, str(ROOT / "bench" / "floor.py"), "--api", api]
    command += ["--accounts", str(scenario.accounts)]
    out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    measured = json.loads(out)
    return measured["cpu_per_round"], measured["gets_per_round"]


def floor(
    before: tuple[float, int], after: tuple[float, int], row: dict[str, str]
) -> dict[str, str]:
    """The floor of a round (the mean of its measures before and after the daemon ran) and
    the daemon as a multiple of it."""
    cpu = (before[0] + after[0]) / 2
    daemon = float(row["CPU / round"].split()[0])
    return {
        "floor GETs / round": str(after[1]),
        "floor CPU / round": f"{cpu:.3f} s",
        "daemon / floor": f"{daemon / cpu:.2f}" if cpu else "-",
    }


def blackbox(scenario: Scenario, api: str, tmp: Path, row: dict[str, str]) -> dict[str, str]:
    """blackbox_exporter's CPU for one cycle (one probe per integration), and the daemon's CPU
    per cycle as a fraction of it; dashes where it does not apply or is not installed."""
    if BLACKBOX is None or scenario.accounts != 1:
        return {"blackbox CPU / cycle": "-", "daemon / blackbox": "-"}
    config = tmp / "blackbox.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "modules": {
                    "sendcloud": {
                        "prober": "http",
                        "timeout": "10s",
                        "http": {
                            "method": "GET",
                            "valid_status_codes": [200],
                            "basic_auth": {
                                "username": "demo-public-key",
                                "password": "demo-secret-key",
                            },
                        },
                    }
                }
            }
        )
    )
    port = free_port()
    exporter = subprocess.Popen(
        [BLACKBOX, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait(f"http://127.0.0.1:{port}/-/healthy")
        probe = f"http://127.0.0.1:{port}/probe"
        with httpx.Client(timeout=30) as client:

            def one(integration_id: int) -> bool:
                target = f"{api}/integrations/{integration_id}"
                text = client.get(probe, params={"module": "sendcloud", "target": target}).text
                return "probe_success 1" in text

            cpu = cpu_seconds(exporter.pid)
            with ThreadPoolExecutor(PROBE_CONCURRENCY) as pool:
                ok = sum(pool.map(one, range(1, scenario.integrations + 1)))
            spent = cpu_seconds(exporter.pid) - cpu
    finally:
        exporter.terminate()
        exporter.wait(timeout=15)
    if ok != scenario.integrations:
        return {
            "blackbox CPU / cycle": f"{ok}/{scenario.integrations} probes ok",
            "daemon / blackbox": "-",
        }
    daemon = float(row["CPU / round"].split()[0])
    return {
        "blackbox CPU / cycle": f"{spent:.3f} s",
        "daemon / blackbox": f"{daemon / spent:.2f}" if spent else "-",
    }


def target_line(target: Target, row: dict[str, str]) -> str:
    figure = float(row[target.figure].split()[0])
    met = "yes" if figure <= target.limit else "NO"
    shown = f"{row[target.figure]}"
    if target.figure == "CPU / round":
        shown += f" ({row.get('daemon / floor', '-')} x floor)"
    return f"{target.scenario}: {target.what} | {shown} | <= {target.limit:g}{target.unit} | {met}"


def history_cost(rows: dict[str, dict[str, str]]) -> list[str]:
    """The history's own cost: 500 accounts x 20 with and without it, in the same run."""
    on, off = rows.get("500 accounts x 20"), rows.get("500 accounts x 20, no history")
    if on is None or off is None:
        return []
    ratio = float(on["CPU / round"].split()[0]) / float(off["CPU / round"].split()[0])
    return [f"500 accounts x 20: history on / off | {ratio:.2f} | (noise: +-10 %) | -"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small scenario")
    parser.add_argument(
        "--only", type=int, choices=range(1, len(SCENARIOS) + 1), help="one scenario, by number"
    )
    args = parser.parse_args()
    scenarios = QUICK if args.quick else SCENARIOS
    if args.only:
        scenarios = (SCENARIOS[args.only - 1],)
    rows = [run(s) for s in scenarios]
    print(f"# {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    keys = list(dict.fromkeys(k for row in rows for k in row))
    widths = [max(len(k), *(len(r.get(k, "-")) for r in rows)) for k in keys]
    print(" | ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(row.get(k, "-").ljust(w) for k, w in zip(keys, widths, strict=True)))
    by_name = {row["scenario"]: row for row in rows}
    lines = [target_line(t, by_name[t.scenario]) for t in TARGETS if t.scenario in by_name]
    history = history_cost(by_name)
    if lines or history:
        print()
        print("target | figure | limit | met")
        print("-|-|-|-")
        for line in lines + history:
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
