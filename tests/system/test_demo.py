"""``demo`` where a user meets it: a read-only root with no writable /tmp or /var/tmp (the
compose file's ``read_only: true`` without a tmpfs), the address from ``MONITOR_LISTEN_ADDRESS``,
and ``make demo LISTEN=...``. The container image itself runs the same way in
tests/system/test_image.py (``--read-only-tmpfs=false``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port
from tests.daemon_process import DaemonProcess

#: Mounts in a namespace of the daemon's own: /tmp and /var/tmp read-only (the working
#: directory, tempfile's last resort, is /tmp too), the state directory (if any) writable.
READ_ONLY_TMP = """
set -e
mount --bind /tmp /tmp && mount -o remount,bind,ro /tmp
mount --bind /var/tmp /var/tmp && mount -o remount,bind,ro /var/tmp
if [ -n "$STATE_DIR" ]; then
  mount --bind "$STATE_DIR" "$STATE_DIR" && mount -o remount,bind,rw "$STATE_DIR"
fi
cd /tmp
exec "$@"
"""


def read_only_tmp(state_dir: Path | None) -> list[str]:
    """The wrapper command: a mount namespace (root, or a user namespace) with READ_ONLY_TMP."""
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI runs as root and can make a mount namespace: {probe.stderr!r}")
        pytest.skip("a mount namespace needs root")
    script = f"STATE_DIR='{state_dir or ''}'\n{READ_ONLY_TMP}"
    return ["unshare", "-m", "sh", "-c", script, "sh"]


def demo_env(port: int, **extra: str) -> dict[str, str]:
    """No TMPDIR: tempfile would look in /tmp, /var/tmp, /usr/tmp and the working directory."""
    return {"MONITOR_LISTEN_ADDRESS": f"127.0.0.1:{port}", **extra}


@pytest.mark.timeout(60)
def test_demo_with_a_state_directory_needs_no_writable_tmp(tmp_path: Path) -> None:
    """It made a temporary directory even with MONITOR_STATE_FILE set, so a read-only root
    without a tmpfs failed (``No usable temporary directory found``). Now everything is in the
    state directory, and the address comes from MONITOR_LISTEN_ADDRESS (no --listen)."""
    state = tmp_path / "state"
    state.mkdir()
    port = free_port()
    env = demo_env(port, MONITOR_STATE_FILE=str(state / "alerts.json"))
    daemon = DaemonProcess(["demo", "--interval", "2"], env, port, wrapper=read_only_tmp(state))
    try:
        daemon.wait_ready()
        daemon.wait_for(
            lambda: daemon.metric("integration_monitor_history_up") == 1, 15, "the history"
        )
        daemon.wait_for(lambda: (state / "alerts.json").exists(), 15, "the alert state")
        [started] = daemon.events("demo_started")
        assert started["history_file"] == str(state / "history.db")
        assert started["metrics"] == f"http://127.0.0.1:{port}/metrics"
        assert not daemon.events("demo_without_history")
        code, _ = daemon.terminate()
    finally:
        daemon.kill()
    assert code == 0
    # everything the demo keeps is in the state directory: the alerts, the history and the
    # certificates of its shop whose certificate expires soon
    assert sorted(p.name for p in state.iterdir() if not p.name.startswith("history.db")) == [
        "alerts.json",
        "demo-shop-tls",
    ]
    assert (state / "history.db").is_file()
    assert json.loads((state / "alerts.json").read_text())["alerts"]


@pytest.mark.timeout(60)
def test_demo_without_any_writable_directory_starts_and_says_what_it_needs() -> None:
    port = free_port()
    daemon = DaemonProcess(["demo"], demo_env(port), port, wrapper=read_only_tmp(None))
    try:
        daemon.wait_ready()
        assert daemon.metric("integration_failing", integration_id="1002") == 1
        assert daemon.metric("integration_monitor_history_enabled") == 0
        [warning] = daemon.events("demo_without_history")
        assert warning["level"] == "warning"
        assert "No usable temporary directory" in warning["reason"]
        assert "MONITOR_STATE_FILE" in warning["hint"]
        code, _ = daemon.terminate()
    finally:
        daemon.kill()
    assert code == 0


@pytest.mark.timeout(120)
def test_make_demo_takes_the_address() -> None:
    port = free_port()
    venv = Path(sys.prefix)
    # -o: the virtual environment this test runs in is taken as it is, never rebuilt
    command = ["make", "-C", str(ROOT), "-o", f"{venv}/.installed", f"VENV={venv}", "demo"]
    make = subprocess.Popen(
        [*command, f"LISTEN=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert make.poll() is None, "make demo exited"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "make demo did not answer on LISTEN"
            time.sleep(0.2)
    finally:
        os.killpg(make.pid, signal.SIGTERM)  # make and the demo it started, nothing else
        make.wait(timeout=10)
