"""The shipped example configuration loads and documents every option."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from monitor.settings import (
    ENV_VARS,
    AccountSettings,
    AlertingSettings,
    AlertmanagerSettings,
    Defaults,
    IntegrationOverride,
    Settings,
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
    copy = tmp_path / "monitor.yaml"
    copy.write_text(text)
    settings, accounts = load_settings(copy, {})
    assert settings.listen_address == "0.0.0.0:9877"
    assert [a.name for a in accounts] == ["eu-shops", "us-shops"]
    assert accounts[0].stale_after(23452346) == 93600
    assert accounts[0].secret_key.get_secret_value() == "s3cr3t"
    assert accounts[1].integration_ids is None
    [webhook] = settings.alerting.resolved_webhooks()
    assert webhook.url.get_secret_value() == "https://hooks.example.com/T0/B0/abc"
    assert settings.alerting.rules().failing_for_seconds == 600
    assert "https://hooks.example.com/T0/B0/abc" in settings.secrets()


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
    ]
    for model in models:
        for name in model.model_fields:
            assert f"{name}:" in text, f"{model.__name__}.{name} is not in the example"
    for variable in ENV_VARS:
        assert variable in text


def test_readme_documents_every_environment_variable() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for variable in [*ENV_VARS, "MONITOR_CONFIG_FILE", "MONITOR_WEB_CONFIG_FILE"]:
        assert f"`{variable}`" in readme, variable
