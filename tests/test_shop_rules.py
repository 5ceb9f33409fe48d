"""The shipped rules for shop probes and configuration checks fire exactly when the daemon's
own alerts do, at the daemon's thresholds: the same series through both, the rules in promtool
(``ALERTS``), the daemon's rules with an explicit ``now`` at each evaluation."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from monitor.alerting.rules import (
    INTEGRATION_MISCONFIGURED,
    SHOP_CERTIFICATE_EXPIRING,
    SHOP_UNREACHABLE,
    AlertKey,
    AlertRules,
    AlertState,
    conditions_for,
    evaluate,
)
from monitor.health import derive
from monitor.probes import Outcome, Result, ShopProbe
from monitor.sendcloud import Integration
from monitor.settings import AlertingSettings, ProbeSettings
from monitor.store import AccountSnapshot, FailedCheck, Findings, Observation, ReadOutcome
from tests.conftest import ROOT, require_binary

RULES_FILE = ROOT / "deploy" / "prometheus" / "rules.yml"
#: promtool's time starts at 0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SHIPPED = {
    SHOP_CERTIFICATE_EXPIRING: "SendcloudShopCertificateExpiring",
    SHOP_UNREACHABLE: "SendcloudShopUnreachable",
    INTEGRATION_MISCONFIGURED: "SendcloudIntegrationMisconfigured",
}
LABELS = 'instance="m:9877",job="sendcloud-integration-monitor",account="acme"'


def daemon_rules() -> AlertRules:
    """The daemon's rules as the default configuration makes them."""
    return AlertingSettings().rules(ProbeSettings())


class Daemon:
    """The daemon's alerts over one integration, evaluated at explicit times."""

    def __init__(self) -> None:
        self.rules = daemon_rules()
        self.states: dict[AlertKey, AlertState] = {}

    def firing(self, now: datetime, findings: Findings) -> set[tuple[str, str]]:
        record = Integration(1, shop_url="https://shop.example.com/", created_at=EPOCH)
        observation = Observation(1, ReadOutcome.OK, record, derive(record, now, 10**9))
        snapshot = AccountSnapshot("acme", {1: observation}, 1, now, findings={1: findings})
        conditions, unknown = conditions_for(
            snapshot, ids_configured=True, rules=self.rules, now=now
        )
        self.states = evaluate(self.states, conditions, unknown, now, self.rules).states
        found = set()
        for key, state in self.states.items():
            if state.firing:
                found.add((SHIPPED[key.alert], "warning"))
                if state.severity == "critical":
                    found.add((SHIPPED[key.alert], "critical"))
        return found


def series(name: str, values: list[float | None], labels: str = "") -> dict[str, str]:
    """A series as promtool reads it; a value gone (the exporter stopped exposing it) is a
    staleness marker, as a scrape writes it."""
    text = " ".join(
        ("stale" if n and values[n - 1] is not None else "_") if v is None else repr(float(v))
        for n, v in enumerate(values)
    )
    return {"series": f'{name}{{{LABELS},integration_id="1"{labels}}}', "values": text}


def promtool(
    tmp_path: Path, interval: str, steps: int, inputs: list[dict[str, str]], tests: Any
) -> None:
    names = 'shop_name="S",shop_url="u",integration_type="t"'
    info = f'integration_info{{{LABELS},integration_id="1",{names}}}'
    document = {
        "rule_files": [str(RULES_FILE)],
        "evaluation_interval": interval,
        "tests": [
            {
                "interval": interval,
                "input_series": [*inputs, {"series": info, "values": f"1x{steps}"}],
                "promql_expr_test": tests,
            }
        ],
    }
    path = tmp_path / "generated_test.yml"
    path.write_text(yaml.safe_dump(document))
    result = subprocess.run(
        [require_binary("promtool"), "test", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def expectation(step: int, unit: str, firing: set[tuple[str, str]]) -> dict[str, Any]:
    return {
        "expr": "count by (alertname, severity) (ALERTS{alertstate='firing', "
        "alertname=~'SendcloudShop.*|SendcloudIntegrationMisconfigured'})",
        "eval_time": f"{step}{unit}",
        "exp_samples": [
            {"labels": f'{{alertname="{name}", severity="{severity}"}}', "value": 1}
            for name, severity in sorted(firing)
        ],
    }


def test_certificates_and_probes_alert_in_both_at_the_same_hours(tmp_path: Path) -> None:
    """A certificate that expires on day 16, then renewed on day 17; a probe that fails now
    and then, twice in a row at times, once only at others — hour by hour."""
    hours = 17 * 24
    expires = [16 * 86400.0 if h < 17 * 24 - 6 else 120 * 86400.0 for h in range(hours)]
    failures = [(0, 1, 2, 3, 0, 1, 0, 2, 2, 0, 0, 0)[h % 12] for h in range(hours)]
    daemon = Daemon()
    tests = []
    since = None
    for hour in range(hours):
        now = EPOCH + timedelta(hours=hour)
        at = now - timedelta(minutes=5)  # the probe behind the value
        result = Result.REFUSED if failures[hour] else Result.OK
        expiry = EPOCH + timedelta(seconds=expires[hour])
        since = (since or at) if failures[hour] else None  # when the run of failures began
        probe = ShopProbe(
            "https://shop.example.com:443", Outcome(result, at, expiry), failures[hour], since
        )
        firing = daemon.firing(now, Findings(probe))
        if hour % 6 == 0 or hour > 13 * 24 - 3:  # every 6 h, and every hour near the edges
            tests.append(expectation(hour, "h", firing))
    seen = {s["labels"] for t in tests for s in t["exp_samples"]}
    assert seen == {  # the generated test covers every alert and severity
        '{alertname="SendcloudShopCertificateExpiring", severity="critical"}',
        '{alertname="SendcloudShopCertificateExpiring", severity="warning"}',
        '{alertname="SendcloudShopUnreachable", severity="warning"}',
    }
    inputs = [
        series("integration_shop_certificate_expiry_timestamp_seconds", expires),
        series("integration_shop_probe_consecutive_failures", failures),
        series("integration_shop_probe_result", [1.0] * hours, ',result="refused"'),
    ]
    promtool(tmp_path, "1h", hours, inputs, tests)


def test_a_failing_check_alerts_in_both_at_the_second_poll(tmp_path: Path) -> None:
    """One poll a minute (the default): the check fails from minute 5 to 14, passes for a
    minute (no alert: one poll only), then fails again from 16."""
    minutes = 30
    present = [5 <= m <= 14 or m == 16 or m >= 18 for m in range(minutes)]
    daemon = Daemon()
    tests = []
    for minute in range(minutes):
        failed = (FailedCheck("feedback_off", "off"),) if present[minute] else ()
        firing = daemon.firing(EPOCH + timedelta(minutes=minute), Findings(None, failed))
        tests.append(expectation(minute, "m", firing))
    assert [t["eval_time"] for t in tests if t["exp_samples"]][:2] == ["6m", "7m"]
    inputs = [
        series(
            "integration_misconfigured",
            [1.0 if p else None for p in present],
            ',check="feedback_off"',
        )
    ]
    promtool(tmp_path, "1m", minutes, inputs, tests)


def test_the_rules_file_states_the_daemons_thresholds() -> None:
    rules = daemon_rules()
    text = RULES_FILE.read_text()
    assert f"< {rules.certificate_warning_days:g} * 86400" in text
    assert f"< {rules.certificate_critical_days:g} * 86400" in text
    assert f"integration_shop_probe_consecutive_failures >= {rules.unreachable_probes}" in text
    groups = yaml.safe_load(text)["groups"]
    [misconfigured] = [
        r
        for g in groups
        for r in g["rules"]
        if r.get("alert") == "SendcloudIntegrationMisconfigured"
    ]
    poll = 60  # the default poll interval: `for` is one poll less than the polls it takes
    assert misconfigured["for"] == f"{(rules.misconfigured_polls - 1) * poll // 60}m"
