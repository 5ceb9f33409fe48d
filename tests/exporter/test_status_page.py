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


@pytest.mark.timeout(120)
def test_the_integration_and_account_pages_in_a_real_browser(
    shops: Simulator, tmp_path: Path
) -> None:
    """The history pages: a failing shop's timeline and alert episode with its cause, the
    account's incidents; the hostile shop name is text, nothing injected runs."""
    chromium = require_binary("chromium")
    port = free_port()
    env = daemon_env(shops, port, MONITOR_HISTORY_FILE=str(tmp_path / "history.db"))
    daemon = DaemonProcess(["run"], env, port)
    try:
        daemon.wait_ready()
        history = "/api/v1/integrations/default/3/history"
        daemon.wait_for(
            # 503 until the writer has created the file
            lambda: any(e["cause"] for e in daemon.get(history).json().get("episodes", [])),
            20,
            "the failing shop's cause in the history",
        )
        integration = load(chromium, daemon.base + "/integrations/default/3")
        evil = load(chromium, daemon.base + "/integrations/default/4")
        account = load(chromium, daemon.base + "/accounts/default")
        missing = daemon.get("/integrations/default/99")
        image = screenshot(chromium, daemon.base + "/integrations/default/3", tmp_path / "i.png")
        code, _ = daemon.terminate()
    finally:
        daemon.kill()
    assert code == 0
    assert missing.status_code == 404
    for page in (integration, evil, account):
        assert page.console == []
        cells = Cells()
        cells.feed(page.dom)
        assert cells.scripts == 0
    cells = Cells()
    cells.feed(integration.dom)
    rows = [row for row in cells.rows if row]
    [episode] = [row for row in rows if row and row[0] == "IntegrationFailing"]
    assert episode[2] == "still firing"
    assert "HTTPError" in episode[4]  # the cause, as the alert has it
    timeline = [row for row in rows if row and row[0] in ("failing", "healthy", "unknown")]
    assert timeline[0][0] == "failing"
    assert timeline[0][2] == "now"
    assert EVIL in evil.dom.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
    account_cells = Cells()
    account_cells.feed(account.dom)
    assert "/integrations/default/3" in account_cells.links
    incidents = [row for row in account_cells.rows if row and row[0] == "#3"]
    assert len(incidents) == 1
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
