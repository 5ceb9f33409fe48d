"""``make status-page``: screenshots of the demo's status page and of one integration's
history page for the README.

python -m tests.screenshot docs/status-page.png
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from tests.browser import screenshot
from tests.conftest import free_port
from tests.daemon_process import DaemonProcess


def main(target: str) -> int:
    chromium = shutil.which("chromium")
    if chromium is None:
        print("chromium is needed (apt-get install chromium)", file=sys.stderr)
        return 1
    port = free_port()
    daemon = DaemonProcess(["demo", "--listen", f"127.0.0.1:{port}"], {}, port)
    try:
        daemon.wait_ready()
        daemon.wait_for(
            lambda: any(r["cause"] for r in daemon.get("/status.json").json()["integrations"]),
            20,
            "a looked-up cause to show",
        )
        history = "/api/v1/integrations/demo/1002/history"
        daemon.wait_for(
            lambda: any(e["cause"] for e in daemon.get(history).json().get("episodes", [])),
            20,
            "the cause in the history",
        )
        # a laptop's width: the page must fit it without scrolling sideways
        screenshot(chromium, daemon.base + "/", Path(target), size="1280,760")
        # the history page of the demo's shop failing for 40 minutes (Sendcloud's time)
        page = Path(target).with_name("integration-page.png")
        screenshot(chromium, daemon.base + "/integrations/demo/1002", page, size="1100,620")
        daemon.terminate()
    finally:
        daemon.kill()
    print(f"wrote {target} and {Path(target).with_name('integration-page.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "docs/status-page.png"))
