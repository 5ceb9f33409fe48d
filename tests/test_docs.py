"""The alert documentation stays true: examples validate, every option and alert is described."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from monitor.alerting.rules import ALERTS, AlertKey, fingerprint
from monitor.exporter.metrics import Metrics
from monitor.health import derive
from monitor.probes import Outcome, Result, ShopProbe
from monitor.sendcloud import parse_integration
from monitor.settings import (
    ENV_VARS,
    AccountSettings,
    AlertingSettings,
    AlertmanagerSettings,
    Defaults,
    MaintenanceSettings,
    MatchSettings,
    ReceiverSettings,
    RouteSettings,
    Settings,
    WebhookSettings,
)
from monitor.store import AccountSnapshot, FailedCheck, Findings, Observation, ReadOutcome, Store
from tests.conftest import scraped

DOCS = Path(__file__).parents[1] / "docs"
T0 = datetime(2026, 11, 27, 12, tzinfo=UTC)
TEXT = (DOCS / "alerts.md").read_text()
SCHEMA = json.loads((DOCS / "alert-event.schema.json").read_text())


def examples() -> list[dict[str, object]]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", TEXT, re.S)]


def test_every_example_validates_against_the_schema() -> None:
    validator = jsonschema.Draft202012Validator(
        SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    found = examples()
    assert {e["alert"] for e in found} == set(ALERTS)
    assert {e["kind"] for e in found} == {"fired", "cause", "escalated", "repeat", "resolved"}
    for example in found:
        validator.validate(example)


def test_example_fingerprints_are_real() -> None:
    for example in examples():
        integration_id = example["integration_id"]
        assert integration_id is None or isinstance(integration_id, int)
        key = AlertKey(str(example["alert"]), str(example["account"]), integration_id)
        assert example["fingerprint"] == fingerprint(key)


def test_every_option_is_documented() -> None:
    for model, prefix in (
        (AlertingSettings, ""),
        (WebhookSettings, "webhooks[]."),
        (AlertmanagerSettings, "alertmanager."),
        (ReceiverSettings, "receivers[]."),
        (RouteSettings, "routes[]."),
        (MatchSettings, "routes[].match."),
        (MaintenanceSettings, "maintenance[]."),
    ):
        for name, field in model.model_fields.items():
            name = field.alias or name
            if name in ("webhooks", "alertmanager", "receivers", "routes", "maintenance"):
                continue
            assert f"`{prefix}{name}" in TEXT, f"{prefix}{name} is not documented"


REFERENCE = {name: (DOCS / f"{name}.md").read_text() for name in ("configuration", "metrics")}


def test_every_setting_is_documented_on_a_page() -> None:
    """Each key of the configuration has a page that names it (alerting keys: alerts.md; the
    rest: configuration.md, where the example file is the full reference)."""
    text = REFERENCE["configuration"]
    for variable in ENV_VARS:
        assert f"`{variable}`" in text, variable
    assert "config/monitor.example.yaml" in text
    example = (DOCS.parent / "config" / "monitor.example.yaml").read_text()
    for model in (Settings, Defaults, AccountSettings):
        for name in model.model_fields:
            assert f"{name}:" in example, f"{model.__name__}.{name}"


def exported_families() -> set[str]:
    """Every family /metrics serves for a store with a failing, a stale and a missing shop."""
    return {family.name for family in exported_metrics()}


def exported_metrics() -> list[Metric]:
    """What /metrics serves for a store with a failing, a stale and a missing shop, parsed."""
    store = Store(["eu"])
    record, _ = parse_integration(
        {"id": 7, "started_failing_at": T0.isoformat(), "last_fetched_at": T0.isoformat()}
    )
    observations = {
        7: Observation(7, ReadOutcome.OK, record, derive(record, T0, 7200)),
        8: Observation(8, ReadOutcome.NOT_FOUND, None, None),
    }
    # shop 7 probed (its certificate read), failing a configuration check; one unmonitored
    probe = ShopProbe("https://a:443", Outcome(Result.OK, T0, T0, "CA"))
    findings = {7: Findings(probe, (FailedCheck("feedback_off", "off"),))}
    store.put(AccountSnapshot("eu", observations, 1, T0, findings=findings, unmonitored=(9,)))
    metrics = Metrics(store, ["eu"], clock=lambda: T0, poll_intervals={"eu": 60})
    metrics.shop_probes_enabled(lambda: 1)
    metrics.shop_probe("ok", 0.1)
    events = metrics.client_events("eu")
    events.request("list_integrations", "200", 0.1)
    metrics.observe_cycle("eu", 0.2, True)
    metrics.scheduler_event("eu", "missed")
    metrics.alert_emitted("IntegrationFailing", "firing")
    metrics.delivery("stdout", "success")
    metrics.queue_depth("stdout", 0)
    metrics.alerts_firing({"IntegrationFailing": 1})
    metrics.config_loaded(True, T0)
    return list(text_string_to_metric_families(scraped(metrics)))


def documented_metrics() -> set[str]:
    table = REFERENCE["metrics"].split("| Metric | Type | Meaning |", 1)[1].split("\n\n")[0]
    return {
        re.sub(r"\{.*", "", found)
        for found in re.findall(r"^\| `([a-z_]+(?:\{[a-z_,]*\})?)`", table, re.M)
    }


def test_every_metric_is_documented_and_every_documented_metric_exists() -> None:
    exported = {_family(name) for name in exported_families()}
    documented = {_family(name) for name in documented_metrics()}
    assert exported == documented, (exported - documented, documented - exported)


def _family(name: str) -> str:
    """A documented or exported name, as its family (without _total/_info)."""
    return re.sub(r"_(total|info)$", "", name)


def test_every_endpoint_is_documented() -> None:
    source = (DOCS.parent / "monitor" / "exporter" / "server.py").read_text()
    paths = set(re.findall(r'path == "(/[^"]*)"', source))
    assert {"/metrics", "/healthz", "/readyz", "/status.json", "/", "/-/reload"} <= paths
    for path in paths:
        assert f"`{path}`" in REFERENCE["metrics"] or f"`POST {path}`" in REFERENCE["metrics"], path
