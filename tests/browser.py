"""Headless Chromium (Debian's package) for the status page: the DOM after scripts ran, the
page's console messages, and screenshots. Used by the browser test and ``make status-page``."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from dataclasses import dataclass
from html import unescape
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


#: Run after the page's own scripts: the text a reader sees; then, with every disclosure
#: opened (the longest the page gets), what overflows the viewport sideways and which times and
#: availability figures wrap onto more than one line; written into the title.
_MEASURE = """<script>
(function () {
  var text = document.body.innerText;
  document.querySelectorAll('details').forEach(function (d) { d.open = true; });
  var root = document.documentElement, width = window.innerWidth, over = [];
  document.querySelectorAll('body *').forEach(function (e) {
    var box = e.getBoundingClientRect();
    if (box.width > 0 && box.right > width + 0.5 && e.className !== 'sr') {
      over.push(e.tagName.toLowerCase() + '.' + e.className);
    }
  });
  function wrapped(selector) {
    return Array.prototype.filter.call(document.querySelectorAll(selector), function (e) {
      return e.getClientRects().length > 1 || e.getBoundingClientRect().height > 24;
    }).map(function (e) { return e.textContent; });
  }
  document.title = JSON.stringify({
    scroll_width: root.scrollWidth, client_width: root.clientWidth, inner_width: width,
    overflowing: over.slice(0, 20), wrapped_times: wrapped('time'),
    wrapped_figures: wrapped('.window'), text: text
  });
})();
</script>"""


@dataclass(frozen=True)
class Layout:
    scroll_width: int  # document.documentElement.scrollWidth
    client_width: int
    inner_width: int
    overflowing: list[str]  # elements reaching past the viewport's right edge (all opened)
    wrapped_times: list[str]  # <time> elements on more than one line
    wrapped_figures: list[str]  # availability figures on more than one line
    text: str  # what a reader sees at first (innerText: no attributes, disclosures closed)


def layout(binary: str, html: str, width: int, directory: Path) -> Layout:
    """``html`` (a page as served) laid out in a window ``width`` pixels wide."""
    page = directory / f"layout-{width}.html"
    page.write_text(html.replace("</body>", _MEASURE + "</body>"))
    result = _run(binary, f"--window-size={width},900", "--dump-dom", page.as_uri())
    title = re.search(r"<title>(.*?)</title>", result.stdout, re.S)
    assert title is not None, result.stdout[:500]
    return Layout(**json.loads(unescape(title.group(1))))
