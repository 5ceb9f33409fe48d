"""The benchmark still runs (a short version; the numbers are for people, not assertions)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_binary

ROOT = Path(__file__).parents[2]


def quick(script: str) -> str:
    """What a benchmark prints with ``--quick``."""
    result = subprocess.run(
        [sys.executable, script, "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=True,
    )
    return result.stdout


@pytest.mark.timeout(120)
def test_the_quick_benchmark_runs_and_reports_every_column() -> None:
    require_binary("prometheus-blackbox-exporter")  # the comparison column
    header, _, row = quick("bench/daemon.py").splitlines()[1:4]
    columns = [c.strip() for c in header.split("|")]
    values = dict(zip(columns, (c.strip() for c in row.split("|")), strict=True))
    assert columns[0] == "scenario"
    assert float(values["scrape / floor"]) > 0
    assert "CPU / scrape (gzip)" in values  # the daemon served gzip
    assert values["RSS steady"].endswith("MiB")
    assert values["API GETs / round"] == values["floor GETs / round"]  # the floor's same GETs
    assert float(values["daemon / floor"]) > 0
    assert int(values["samples"]) > 200 * 5  # several series per integration
    assert float(values["daemon / blackbox"]) > 0
    assert values["blackbox CPU / cycle"].endswith(" s")


@pytest.mark.timeout(120)
def test_the_quick_history_benchmark_runs_and_reports_every_figure() -> None:
    rows = {
        cells[0].strip(): cells[1].strip()
        for cells in (line.split("|") for line in quick("bench/history.py").splitlines())
        if len(cells) == 3
    }
    assert float(rows["poll cycle CPU (reference)"].removesuffix(" s")) > 0
    assert float(rows["history write / cycle"]) > 0
    assert rows["database size per million transitions"].endswith("MiB")
    assert float(rows["status page with 30-day strips, cold"].removesuffix(" s")) > 0
    assert float(rows["status page, strips cached (60 s)"].removesuffix(" s")) > 0
    assert float(rows["30-day report (HTML)"].removesuffix(" s")) > 0


@pytest.mark.timeout(150)
def test_the_quick_incident_benchmark_runs_and_every_cause_arrives_once() -> None:
    header, _, row = quick("bench/incident.py").splitlines()
    values = dict(
        zip(
            [c.strip() for c in header.split("|")],
            [c.strip() for c in row.split("|")],
            strict=True,
        )
    )
    assert values["fired"].startswith("100 ")
    assert values["lookups"] == "100"
    assert values["repeated"] == "0"
    assert values["last cause"].endswith(" s")  # every cause arrived
