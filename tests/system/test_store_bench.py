"""The store benchmark still runs and reports every figure (the numbers are for people)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.postgres import postgres_bin


@pytest.mark.timeout(150)
def test_the_quick_store_benchmark_reports_every_layer_on_both_engines() -> None:
    postgres_bin()  # it starts a cluster of its own
    result = subprocess.run(
        [sys.executable, "bench/store.py", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=140,
        check=True,
    )
    lines = [line for line in result.stdout.splitlines() if " | " in line]
    header = [c.strip() for c in lines[0].split("|")]
    rows = [
        dict(zip(header, (c.strip() for c in line.split("|")), strict=True)) for line in lines[2:]
    ]
    thin = [r for r in rows if r["layer"] == "thin layer"]
    assert {r["engine"] for r in thin} == {"sqlite", "postgresql"}
    for row in rows:
        assert float(row["CPU / write"].removesuffix(" ms")) > 0
        assert float(row["CPU / read"].removesuffix(" ms")) > 0
        assert row["RSS"].endswith("MiB")
    for row in thin:
        assert row["x thin"] == "1.00"
    # every layer read the same rows on the same engine
    for engine in ("sqlite", "postgresql"):
        assert len({r["rows read"] for r in rows if r["engine"] == engine}) == 1
