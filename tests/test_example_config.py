"""The shipped example configuration loads and documents every option."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from monitor.alerting.rules import AlertRules
from monitor.settings import (
    ENV_VARS,
    AccountSettings,
    AlertingSettings,
    AlertmanagerSettings,
    BadgeSettings,
    ChecksSettings,
    Defaults,
    HistorySettings,
    IntegrationOverride,
    MaintenanceSettings,
    MatchSettings,
    ProbeSettings,
    ReceiverSettings,
    RouteSettings,
    Settings,
    TimeRangeSettings,
    WebhookSettings,
    load_settings,
)

EXAMPLE = Path(__file__).parent.parent / "config" / "monitor.example.yaml"


def test_example_loads(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t\n")
    hook = tmp_path / "hook"
    hook.write_text("https://hooks.example.com/T0/B0/abc\n")
    text = EXAMPLE.read_text().replace("/run/secrets/sendcloud_eu_secret_key", str(secret))
    text = text.replace("/run/secrets/ops_webhook_url", str(hook))
    mail = tmp_path / "mail"
    mail.write_text(
        "mailto://monitor:pw-in-the-url@127.0.0.1:2525?from=monitor@example.com&to=oncall@example.com\n"
    )
    teams = tmp_path / "teams"
    teams.write_text("json://127.0.0.1:8080/teams-token-in-the-path\n")
    text = text.replace("/run/secrets/oncall_mail_url", str(mail))
    text = text.replace("/run/secrets/acme_teams_url", str(teams))
    copy = tmp_path / "monitor.yaml"
    copy.write_text(text)
    settings, accounts = load_settings(copy, {})
    assert settings.listen_address == "0.0.0.0:9877"
    assert [a.name for a in accounts] == ["eu-shops", "us-shops"]
    assert accounts[0].stale_after(23452346) == 93600
    assert accounts[0].ignored(23452346) == {"feedback_off", "duplicate_shop"}
    assert settings.probes == ProbeSettings()  # every value shown is the default
    assert accounts[0].secret_key.get_secret_value() == "s3cr3t"
    assert accounts[1].integration_ids is None
    [webhook] = settings.alerting.resolved_webhooks()
    assert webhook.url.get_secret_value() == "https://hooks.example.com/T0/B0/abc"
    assert settings.alerting.rules().failing_for_seconds == 900
    assert "https://hooks.example.com/T0/B0/abc" in settings.secrets()
    assert {"pw-in-the-url", "teams-token-in-the-path"} <= set(settings.secrets())
    assert settings.alerting.route_tree().receivers_for({"account": "acme-nl"}) == ["acme-teams"]
    migration, backups = settings.alerting.windows()
    assert migration.active(datetime(2026, 12, 5, 23, 0, tzinfo=UTC))
    assert not migration.active(datetime(2026, 12, 6, 1, 0, tzinfo=UTC))  # 02:00 +01:00
    assert backups.active(datetime(2026, 12, 1, 1, 30, tzinfo=UTC))  # 02:30 in Amsterdam
    assert not backups.active(datetime(2026, 12, 5, 1, 30, tzinfo=UTC))  # a Saturday


def test_every_option_and_variable_is_documented() -> None:
    text = EXAMPLE.read_text()
    models: list[type[BaseModel]] = [
        Settings,
        Defaults,
        AccountSettings,
        IntegrationOverride,
        AlertingSettings,
        WebhookSettings,
        AlertmanagerSettings,
        ReceiverSettings,
        RouteSettings,
        MatchSettings,
        MaintenanceSettings,
        TimeRangeSettings,
        HistorySettings,
        BadgeSettings,
        ProbeSettings,
        ChecksSettings,
    ]
    for model in models:
        for name, field in model.model_fields.items():
            key = field.alias or name  # as written in YAML (continue_ is `continue`)
            assert f"{key}:" in text, f"{model.__name__}.{key} is not in the example"
    for variable in ENV_VARS:
        assert variable in text


def test_the_configuration_page_documents_every_environment_variable() -> None:
    readme = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    for variable in [*ENV_VARS, "MONITOR_CONFIG_FILE", "MONITOR_WEB_CONFIG_FILE"]:
        assert f"`{variable}`" in readme, variable


#: Which model documents the keys under each path of the example (accounts are examples).
_MODELS: dict[tuple[str, ...], type[BaseModel]] = {
    (): Settings,
    ("defaults",): Defaults,
    ("alerting",): AlertingSettings,
    ("alerting", "webhooks"): WebhookSettings,
    ("alerting", "alertmanager"): AlertmanagerSettings,
    ("alerting", "receivers"): ReceiverSettings,
    ("alerting", "routes"): RouteSettings,
    ("alerting", "routes", "match"): MatchSettings,
    ("alerting", "maintenance"): MaintenanceSettings,
    ("alerting", "maintenance", "match"): MatchSettings,
    ("alerting", "maintenance", "times"): TimeRangeSettings,
    ("history",): HistorySettings,
    ("badges",): BadgeSettings,
    ("probes",): ProbeSettings,
}
_KEY = re.compile(r"^(?P<indent>\s*)(?P<item>- )?(?P<key>[a-z_]+):(?P<value>.*)$")


def presented_defaults() -> list[tuple[tuple[str, ...], str, Any]]:
    """(path, key, value) of every scalar the example shows without marking it an example
    (no "example" in the comments right above it)."""
    found = []
    stack: list[tuple[int, str]] = []
    comments: list[str] = []
    for line in EXAMPLE.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith(("#", "- #")):
            comments.append(stripped)
            continue
        match = _KEY.match(line)
        if match is None:
            comments = []
            continue
        indent = len(match["indent"]) + (2 if match["item"] else 0)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = tuple(key for _, key in stack)
        value = match["value"].split(" #")[0].strip()
        if value:
            marked = any("example" in comment.lower() for comment in comments)
            if path in _MODELS and not marked:
                found.append((path, match["key"], yaml.safe_load(value)))
        else:
            stack.append((indent, match["key"]))
        comments = []
    return found


def test_every_value_the_example_presents_as_default_is_the_default() -> None:
    shown = presented_defaults()
    assert len(shown) > 25  # the parser found the blocks
    for path, key, value in shown:
        fields = {f.alias or n: f for n, f in _MODELS[path].model_fields.items()}
        field = fields[key]
        assert value == field.default, f"{'.'.join((*path, key))}: {value!r} != {field.default!r}"


def test_the_shipped_rules_use_the_daemons_default_thresholds() -> None:
    """A user who keeps the defaults gets the same alerts from the daemon and from Prometheus."""
    rules = yaml.safe_load((EXAMPLE.parent.parent / "deploy/prometheus/rules.yml").read_text())
    expr = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    defaults = AlertingSettings().rules()
    assert defaults == AlertRules()  # one set of defaults, not two

    def threshold(alert: str, pattern: str) -> float:
        found = re.search(pattern, expr[alert])
        assert found is not None, alert
        return float(found[1])

    failing = r"integration_failing_seconds > (\d+)"
    assert threshold("SendcloudIntegrationFailing", failing) == defaults.failing_for_seconds
    assert (
        threshold("SendcloudIntegrationFailingCritical", failing)
        == defaults.failing_critical_after_seconds
    )
    stale = r"integration_fetch_stale_threshold_seconds > (\d+)"
    assert threshold("SendcloudIntegrationFetchStale", stale) == defaults.stale_for_seconds
