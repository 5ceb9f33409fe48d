"""Benchmark of the history at 10 000 integrations, each figure beside its target.

- history write CPU per poll cycle with 1 % of the integrations changing state, as a ratio to
  the CPU of a real poll cycle of the same 10 000 integrations measured in this run (against
  the simulator, in this process; target <= 0.05);
- database size per million recorded transitions (extrapolated from a smaller run);
- the status page with 30-day strips for 10 000 integrations, 5 % of them failing an hour a day
  (target <= 1 s): cold, reading the history, and as the daemon serves it within a minute of
  the last computation of the strips;
- a 30-day report of an account of 10 000 integrations (target <= 5 s).

    python bench/history.py            # 10 000 integrations
    python bench/history.py --quick    # 500, to prove the benchmark still works
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import random
import resource
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.daemon import free_port, start_simulator, wait  # noqa: E402
from monitor import logs  # noqa: E402
from monitor.daemon import open_pollers  # noqa: E402
from monitor.exporter.metrics import Metrics  # noqa: E402
from monitor.exporter.status import build, render_html  # noqa: E402
from monitor.health import derive  # noqa: E402
from monitor.history import HistoryStore  # noqa: E402
from monitor.history.availability import summary_of_spans  # noqa: E402
from monitor.history.report import build as build_report  # noqa: E402
from monitor.history.report import render  # noqa: E402
from monitor.sendcloud import parse_integration  # noqa: E402
from monitor.settings import AccountConfig  # noqa: E402
from monitor.simulator import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY  # noqa: E402
from monitor.store import AccountSnapshot, Observation, ReadOutcome, Store  # noqa: E402


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def poll_cycle_cpu(count: int, cycles: int = 3) -> float:
    """CPU of one steady poll cycle of ``count`` integrations (list walk, parsing, health), in
    this process, against the simulator in a process of its own (as bench/daemon.py runs it)."""
    port = free_port()
    simulator = start_simulator(count, port)
    try:
        wait(f"http://127.0.0.1:{port}/_simulator/requests")
        account = account_for_url(f"http://127.0.0.1:{port}/api/v3")
        store = Store([account.name])

        async def run() -> float:
            async with open_pollers([account], store, Metrics(store, [account.name])) as (poller,):
                await poller.poll()  # warm: the first walk keeps every record
                started = cpu()
                for _ in range(cycles):
                    await poller.poll()
                return (cpu() - started) / cycles

        return asyncio.run(run())
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)


def account_for_url(url: str) -> AccountConfig:
    return AccountConfig(
        name="bench",
        api_url=url,
        public_key=SecretStr(DEMO_PUBLIC_KEY),
        secret_key=SecretStr(DEMO_SECRET_KEY),
        integration_ids=None,
        poll_interval_seconds=60.0,
        stale_after_seconds=7200.0,
        max_concurrency=8,
        request_timeout_seconds=10.0,
    )


def snapshots(count: int, cycles: int, change: float, start: datetime) -> list[AccountSnapshot]:
    """``cycles`` polls a minute apart, ``change`` of the integrations flipping state in each."""
    rng = random.Random(7)
    failing: set[int] = set()
    shots = []
    for cycle in range(cycles):
        at = start + timedelta(minutes=cycle)
        for integration_id in rng.sample(range(1, count + 1), max(1, int(count * change))):
            failing ^= {integration_id}
        observations = {}
        for integration_id in range(1, count + 1):
            fields: dict[str, object] = {
                "id": integration_id,
                "shop_name": f"Shop {integration_id}",
            }
            fields["last_fetched_at"] = at.isoformat()
            if integration_id in failing:
                fields["started_failing_at"] = (at - timedelta(minutes=5)).isoformat()
            record, _ = parse_integration(fields)
            observations[integration_id] = Observation(
                integration_id, ReadOutcome.OK, record, derive(record, at, 7200)
            )
        shots.append(AccountSnapshot("bench", observations, cycle + 1, at))
    return shots


def history_write_cpu(path: Path, shots: list[AccountSnapshot], start: datetime) -> float:
    """CPU of recording each poll after the first (which opens every interval), writer thread
    included: from the second ``record`` until the writer has written everything."""
    store = HistoryStore(path)
    store.start()
    store.record(shots[0], start)
    store.flush(timeout=60)
    started = cpu()
    for index, shot in enumerate(shots[1:], start=1):
        store.record(shot, start + timedelta(minutes=index))
    store.flush(timeout=60)
    spent = (cpu() - started) / (len(shots) - 1)
    store.close(start + timedelta(minutes=len(shots)), timeout=60)
    return spent


def fill_month(path: Path, count: int, now: datetime) -> None:
    """30 days of one account: 5 % of the integrations fail for an hour each day."""
    import sqlite3

    with sqlite3.connect(path) as db:
        rows = []
        start = now - timedelta(days=30)
        for integration_id in range(1, count + 1):
            t = start
            flaky = integration_id % 20 == 0
            while t < now:
                end = min(t + timedelta(days=1), now)
                if flaky:
                    mid = t + timedelta(hours=12)
                    rows.append(
                        ("bench", integration_id, "healthy", t.timestamp(), mid.timestamp())
                    )
                    back = mid + timedelta(hours=1)
                    rows.append(
                        ("bench", integration_id, "failing", mid.timestamp(), back.timestamp())
                    )
                    rows.append(
                        ("bench", integration_id, "healthy", back.timestamp(), end.timestamp())
                    )
                t = end
            if not flaky:
                rows.append(("bench", integration_id, "healthy", start.timestamp(), None))
        db.executemany("INSERT INTO intervals VALUES (?, ?, ?, ?, ?)", rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 integrations")
    args = parser.parse_args()
    logs.configure("json", level=logging.ERROR, stream=io.StringIO())  # the poller's debug lines
    count = 500 if args.quick else 10_000
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        reference = poll_cycle_cpu(count)
        start = datetime(2026, 11, 1, tzinfo=UTC)
        shots = snapshots(count, 6, 0.01, start)
        write = history_write_cpu(workdir / "write.db", shots, start)

        # every integration of 1 000 flips at every poll: 1 000 transitions a poll
        cycles = 20 if args.quick else 200
        sized = workdir / "size.db"
        history_write_cpu(sized, snapshots(1000, cycles + 1, 1.0, start), start)
        size = sized.stat().st_size + sum(p.stat().st_size for p in workdir.glob("size.db-*"))
        per_million = size / (cycles * 1000) * 1_000_000 / 2**20

        now = datetime.now(UTC)
        month = workdir / "month.db"
        setup = HistoryStore(month)  # the schema
        setup.start()
        setup.record(AccountSnapshot("schema", {}, 1, now), now)
        setup.close(now)
        fill_month(month, count, now)
        reader = HistoryStore(month)
        page_store = Store(["bench"])
        page_store.put(replace(shots[-1], account="bench"))
        started = time.perf_counter()
        spans = reader.account_spans("bench", now - timedelta(days=30), now)
        summaries = {("bench", i): summary_of_spans(v, now) for i, v in spans.items()}
        document = build(page_store.snapshots(), now, history=summaries)
        render_html(document, now)
        page = time.perf_counter() - started
        started = time.perf_counter()  # the daemon keeps the summaries for a minute
        render_html(build(page_store.snapshots(), now, history=summaries), now)
        page_warm = time.perf_counter() - started

        started = time.perf_counter()
        render(build_report(reader, "bench", now - timedelta(days=30), now, now), "html")
        report_seconds = time.perf_counter() - started

    rows = [
        ("scenario", f"{count} integrations", "target"),
        ("poll cycle CPU (reference)", f"{reference:.3f} s", ""),
        ("history write CPU / cycle (1 % changing)", f"{write:.4f} s", ""),
        ("history write / cycle", f"{write / reference:.3f}", "<= 0.05"),
        ("database size per million transitions", f"{per_million:.0f} MiB", ""),
        ("status page with 30-day strips, cold", f"{page:.2f} s", "<= 1 s"),
        ("status page, strips cached (60 s)", f"{page_warm:.2f} s", "<= 1 s"),
        ("30-day report (HTML)", f"{report_seconds:.2f} s", "<= 5 s"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, target in rows:
        print(f"{name.ljust(width)} | {value.ljust(10)} | {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
