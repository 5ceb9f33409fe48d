"""The status page in a real browser (Debian's Chromium) against the daemon and the simulator."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from monitor.simulator import SimIntegration, Simulator
from tests.browser import layout, load, screenshot
from tests.conftest import free_port, require_binary
from tests.daemon_process import DaemonProcess, run_once
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
    assert episode[3] == "still firing"
    assert episode[4] == "3h 0m"  # since Sendcloud's started_failing_at, not since it fired
    assert episode[5].startswith("shop answered 503")  # the cause, short ...
    assert "HTTPError" in episode[5]  # ... and as the alert has it, behind a disclosure
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


ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")


@pytest.mark.timeout(150)
def test_the_status_page_fits_1280_and_800_pixels_and_reads_plainly(tmp_path: Path) -> None:
    """The page as a support person opens it on a laptop (1280 px) and half a screen (800 px):
    long shop names, a muted shop with a long reason, failing shops with causes, an account
    whose keys are rejected. Nothing reaches past the window, no time or figure wraps, no raw
    timestamp is shown, causes read as short phrases, the rejected keys are an alarm."""
    chromium = require_binary("chromium")
    now = datetime.now(UTC)
    long_name = "Bakkerij de Gouden Krakeling — webwinkel voor taarten en gebak"
    shops = [
        SimIntegration(1, "healthy", long_name, "https://krakeling.example.com/", "woocommerce"),
        SimIntegration(2, "failing", "Shop 503", started_failing_at=now - timedelta(minutes=40)),
        SimIntegration(3, "failing", "Expired TLS", started_failing_at=now - timedelta(hours=5)),
        SimIntegration(4, "stale", "Nightly sync", last_fetched_at=now - timedelta(hours=5)),
        *(SimIntegration(10 + n, "healthy", f"Healthy shop {n}") for n in range(6)),
    ]
    with Simulator(shops, public_key=PUBLIC, secret_key=SECRET) as sim:
        sim.append_log(
            3,
            exception_type="requests.exceptions.SSLError",
            exception="HTTPSConnectionPool(host='tls.example.com', port=443): Max retries "
            "exceeded with url: /wp-json/wc/v3/orders (Caused by SSLError(SSLCertVerification"
            "Error(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate "
            "has expired (_ssl.c:1006)')))",
        )
        port = free_port()
        config = tmp_path / "monitor.yaml"
        accounts = [
            {"name": "bakeries-nl", "public_key": PUBLIC, "secret_key": SECRET},
            {"name": "typo-keys", "public_key": PUBLIC, "secret_key": "not-the-secret"},
        ]
        config.write_text(
            yaml.safe_dump(
                {
                    "defaults": {"poll_interval_seconds": 5},
                    "history": {"path": str(tmp_path / "history.db")},
                    "accounts": [
                        {**a, "api_url": sim.url, "integration_ids": "all"} for a in accounts
                    ],
                }
            )
        )
        env = {"MONITOR_LISTEN_ADDRESS": f"127.0.0.1:{port}", "MONITOR_CONFIG_FILE": str(config)}
        daemon = DaemonProcess(["run"], env, port)
        try:
            daemon.wait_for(lambda: daemon.get("/healthz").status_code == 200, 15, "/healthz")
            muted = run_once(
                [
                    "mute",
                    "--account",
                    "bakeries-nl",
                    "--integration",
                    "1",
                    "--for",
                    "3h",
                    "--reason",
                    "moving the shop to a new host; orders are imported by hand until Monday",
                    "--history",
                    str(tmp_path / "history.db"),
                ],
                env,
            )
            assert muted.returncode == 0, muted.stderr

            def ready() -> bool:
                rows = daemon.get("/status.json").json()["integrations"]
                causes = [r["cause_summary"] for r in rows if r["state"] == "failing"]
                return len(causes) == 2 and all(causes) and any(r["quiet"] for r in rows)

            daemon.wait_for(ready, 30, "both causes and the mute on the page")
            html = daemon.get("/").text
            for width in (1280, 800):
                screenshot(
                    chromium, daemon.base + "/", tmp_path / f"status-{width}.png", f"{width},900"
                )
            assert daemon.terminate()[0] == 0
        finally:
            daemon.kill()
    for width in (1280, 800):
        seen = layout(chromium, html, width, tmp_path)
        assert seen.inner_width == width
        assert seen.scroll_width <= seen.client_width, (width, seen.overflowing)
        assert seen.overflowing == [], width
        assert seen.wrapped_times == [], width  # "3h 1m ago" on one line
        assert seen.wrapped_figures == [], width  # "99.95 %", never a stray "%"
        assert ISO.search(seen.text) is None, width  # exact times only on hover
        assert "shop answered 503" in seen.text
        assert "TLS certificate expired" in seen.text
        assert "SSLCertVerificationError" not in seen.text  # behind the disclosure
        assert "Sendcloud rejects the API keys" in seen.text
        assert "moving the shop to a new host" in seen.text
        assert (tmp_path / f"status-{width}.png").stat().st_size > 10_000
    page = Cells()
    page.feed(html)
    assert "typo-keys" in html.split("class='alarm' role='alert'>", 1)[1].split("</div>")[0]
    [rejected] = [row for row in page.rows if row and row[0] == "typo-keys"]
    assert "API keys rejected" in rejected[1]
    [tls] = [row for row in page.rows if row and row[1].startswith("Expired TLS")]
    assert "SSLCertVerificationError" in tls[7]  # the raw text is there, one click away
