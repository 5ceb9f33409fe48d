"""The shipped Prometheus files are valid, their rules behave, and they use real metric names."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from monitor.metrics import Metrics
from monitor.sendcloud import Integration
from monitor.state import AccountSnapshot, Observation, Status, Store

from .conftest import T0, require_binary

PROMETHEUS_DIR = Path(__file__).parent.parent / "deploy" / "prometheus"


def promtool(*args: str) -> str:
    result = subprocess.run(
        [require_binary("promtool"), *args],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("check", "rules", "alerts.yml"),
        ("test", "rules", "alerts_test.yml"),
        ("check", "config", "prometheus.yml"),
    ],
)
def test_promtool(args: tuple[str, ...]) -> None:
    assert "SUCCESS" in promtool(*args)


def test_rules_use_metrics_the_monitor_exports() -> None:
    failing = Integration(id=1, started_failing_at=T0, last_fetched_at=T0, created_at=T0)
    store = Store(["default"])
    store.put(AccountSnapshot("default", {1: Observation(1, Status.OK, failing, 60, T0)}, 1, T0))
    text = generate_latest(Metrics(store, ["default"], clock=lambda: T0).registry).decode()
    exported = set(re.findall(r"^(\w+)[{ ]", text, re.M))
    used = metric_names_in_rules(PROMETHEUS_DIR / "alerts.yml")
    assert "integration_failing_seconds" in used
    assert used <= exported, used - exported


def metric_names_in_rules(path: Path) -> set[str]:
    """Metric names used in the rule expressions (label lists and matchers stripped)."""
    names: set[str] = set()
    for group in yaml.safe_load(path.read_text())["groups"]:
        for rule in group["rules"]:
            expr = re.sub(
                r"\b(on|ignoring|by|without|group_left|group_right)\s*\([^)]*\)", "", rule["expr"]
            )
            expr = re.sub(r"\{[^}]*\}", "", expr)
            names |= set(re.findall(r"\b(?:integration|sendcloud)_\w+", expr))
    return names
