"""Headless Chromium (Debian's package) for the status page: the DOM after scripts ran, the
page's console messages, and screenshots. Used by the browser test and ``make status-page``."""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: Chromium as the workplace runs it: no sandbox (root), and no background network traffic.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
)
_CONSOLE = re.compile(r":CONSOLE(?::\d+)?\] \"(.*)\", source:")


@dataclass(frozen=True)
class Page:
    dom: str
    console: list[str]  # every message the page logged, errors and uncaught exceptions included


def _run(binary: str, *args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [binary, *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )


def load(binary: str, url: str) -> Page:
    result = _run(binary, "--dump-dom", url)
    return Page(result.stdout, _CONSOLE.findall(result.stderr))


def screenshot(binary: str, url: str, path: Path, size: str = "1400,900") -> Path:
    _run(binary, f"--screenshot={path}", f"--window-size={size}", url)
    return path
