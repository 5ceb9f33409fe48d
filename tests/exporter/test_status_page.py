"""The status page in a real browser (Debian's Chromium) against the daemon and the simulator."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.simulator import SimIntegration, Simulator
from tests.browser import load, screenshot
from tests.conftest import free_port, require_binary
from tests.daemon_process import DaemonProcess
from tests.exporter.test_status import Cells
from tests.system.test_e2e import PUBLIC, SECRET, daemon_env

EVIL = "<script>alert(1)</script><img src=x onerror=\"console.log('injected')\">"


@pytest.fixture
def shops() -> Iterator[Simulator]:
    now = datetime.now(UTC)
    integrations = [
        SimIntegration(1, "healthy", "Alpha shop", type="shopify"),
        SimIntegration(2, "stale", "Stale shop", last_fetched_at=now - timedelta(hours=5)),
        SimIntegration(3, "failing", "Broken shop", started_failing_at=now - timedelta(hours=3)),
        SimIntegration(4, "healthy", EVIL, "https://user:pw@evil.example.com/?x=1"),
    ]
    with Simulator(integrations, public_key=PUBLIC, secret_key=SECRET) as sim:
        yield sim


@pytest.mark.timeout(120)
def test_the_status_page_in_a_real_browser(shops: Simulator, tmp_path: Path) -> None:
    chromium = require_binary("chromium")
    port = free_port()
    daemon = DaemonProcess(["run"], daemon_env(shops, port), port)
    try:
        daemon.wait_ready()
        page = load(chromium, daemon.base + "/")
        image = screenshot(chromium, daemon.base + "/", tmp_path / "status-page.png")
        code, _ = daemon.terminate()
    finally:
        daemon.kill()
    assert code == 0
    assert page.console == []  # no errors, no uncaught exceptions, nothing injected ran
    cells = Cells()
    cells.feed(page.dom)
    rows = [row for row in cells.rows if row]
    assert "Broken shop" in rows[0][1]  # the failing shop is the first row
    assert rows[0][3] == "failing"
    assert rows[1][3] == "stale"
    evil = next(row for row in rows if "#4" in row[1])
    assert EVIL in evil[1]  # shown as text
    assert cells.scripts == 1  # the page's own filter script only
    assert "https://evil.example.com/" in cells.links  # linked, without user:pw or query
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.stat().st_size > 10_000
