"""Run ``integration-monitor`` as a real subprocess and read its JSON log lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from monitor.simulator import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, Simulator


def monitor_env(
    sim: Simulator,
    port: int,
    *,
    public: str = DEMO_PUBLIC_KEY,
    secret: str = DEMO_SECRET_KEY,
    **extra: str,
) -> dict[str, str]:
    """The environment of a daemon watching every integration of ``sim`` every 5 s."""
    return {
        "SENDCLOUD_API_URL": sim.url,
        "SENDCLOUD_PUBLIC_KEY": public,
        "SENDCLOUD_SECRET_KEY": secret,
        "MONITOR_INTEGRATION_IDS": "all",
        "MONITOR_POLL_INTERVAL_SECONDS": "5",
        "MONITOR_LISTEN_ADDRESS": f"127.0.0.1:{port}",
        **extra,
    }


def run_once(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``integration-monitor ARGS`` as a process that is expected to exit by itself."""
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


class DaemonProcess:
    """The daemon as an operator runs it: a process, env vars, stdout logs, SIGTERM."""

    def __init__(
        self, args: list[str], env: dict[str, str], port: int, *, wrapper: Sequence[str] = ()
    ) -> None:
        """``wrapper``: a command that execs its arguments (e.g. ``unshare -m sh -c ...``),
        so the process signalled is still the daemon."""
        self.port = port
        self.lines: list[str] = []
        full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
        self.process = subprocess.Popen(
            [*wrapper, sys.executable, "-m", "monitor", *args],
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.base + path, timeout=5)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        parsed = []
        for line in list(self.lines):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if name is None or entry.get("event") == name:
                parsed.append(entry)
        return parsed

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited while waiting for {what}:\n{self.output}")
            try:
                if condition():
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}:\n{self.output}")

    def wait_ready(self, timeout: float = 15) -> None:
        self.wait_for(lambda: self.get("/readyz").status_code == 200, timeout, "/readyz")

    def metric(self, name: str, **labels: str) -> float | None:
        from prometheus_client.parser import text_string_to_metric_families

        for family in text_string_to_metric_families(self.get("/metrics").text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return None

    def terminate(self, timeout: float = 5) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds it took)."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=2)
        return code, time.monotonic() - started

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)
