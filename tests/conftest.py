"""Shared fixtures: the simulator on loopback, captured JSON logs, binaries for real tools."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import stamina
from pydantic import SecretStr

from monitor import logs
from monitor.exporter.exposition import inflated
from monitor.exporter.metrics import Metrics
from monitor.settings import AccountConfig
from monitor.simulator import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, SimIntegration, Simulator

T0 = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)


ROOT = Path(__file__).parents[1]  # the repository


@pytest.fixture(autouse=True)
def _retries_without_waits() -> Iterator[None]:
    """Retries happen as many times as configured, but without stamina's backoff waits (the
    daemon processes that system tests start are not affected: they wait for real)."""
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


def require_binary(name: str) -> str:
    """Path of a real tool; skipped on a laptop without it, a failure in CI."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required in CI (.ci/run installs it)")
        pytest.skip(f"{name} not installed")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def account_for(
    sim: Simulator, ids: tuple[int, ...] | None = None, **overrides: Any
) -> AccountConfig:
    values: dict[str, Any] = {
        "name": "default",
        "api_url": sim.url,
        "public_key": SecretStr(DEMO_PUBLIC_KEY),
        "secret_key": SecretStr(DEMO_SECRET_KEY),
        "integration_ids": ids,
        "poll_interval_seconds": 60.0,
        "stale_after_seconds": 7200.0,
        "max_concurrency": 4,
        "request_timeout_seconds": 5.0,
        "auth_retry_seconds": 0.0,  # poll again at once after an auth failure
    }
    values.update(overrides)
    return AccountConfig(**values)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A simulator with one integration per scenario (IDs 1..6), on a random loopback port."""
    now = datetime.now(UTC)
    integrations = [
        SimIntegration(1, "healthy", "Healthy shop", type="shopify"),
        SimIntegration(
            2,
            "failing",
            "Failing shop",
            type="woocommerce",
            started_failing_at=now - timedelta(minutes=40),
        ),
        SimIntegration(3, "stale", "Stale shop", last_fetched_at=now - timedelta(hours=5)),
        SimIntegration(
            4, "never_fetched", "Never fetched shop", created_at=now - timedelta(hours=3)
        ),
        SimIntegration(5, "deleted", "Deleted shop"),
        SimIntegration(6, "flapping", "Flapping shop", flap_period_seconds=3600),
    ]
    with Simulator(integrations) as simulator:
        yield simulator


class LogCapture:
    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.lines() if name is None or e["event"] == name]


@pytest.fixture
def captured_logs() -> Iterator[LogCapture]:
    """Logging configured exactly as in production (JSON, redaction), into a buffer."""
    capture = LogCapture()
    logs.configure(
        "json",
        level=logging.DEBUG,
        stream=capture.stream,
        secrets=(
            DEMO_PUBLIC_KEY,
            DEMO_SECRET_KEY,
            logs.basic_credential(DEMO_PUBLIC_KEY, DEMO_SECRET_KEY),
        ),
    )
    yield capture
    logs.configure("json")


Clock = Callable[[], datetime]


class FakeClock:
    """A settable clock for pollers and collectors (no freezegun near the event loop)."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def scraped(metrics: Metrics) -> str:
    """What ``/metrics`` serves for ``metrics`` now (its exposition, inflated)."""
    fixed, live = metrics.exposition.parts()
    return (b"".join(inflated(fixed.segment.deflated)) + live).decode()


def metric_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, parsed by prometheus-client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The one sample of ``name`` whose labels include ``labels`` (None when there is none)."""
    wanted = set(labels.items())
    found = [v for (n, ls), v in metric_samples(text).items() if n == name and wanted <= ls]
    assert len(found) <= 1, f"{name}{labels} matches {len(found)} samples"
    return found[0] if found else None
