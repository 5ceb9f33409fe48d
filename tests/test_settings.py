"""Configuration: YAML + environment, validation messages, secrets, exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.cli import main
from monitor.config_errors import ConfigError
from monitor.settings import DEFAULT_API_URL, load_settings
from tests.daemon_process import run_once

KEYS = {"SENDCLOUD_PUBLIC_KEY": "pub-123456", "SENDCLOUD_SECRET_KEY": "sec-abcdef-very-secret"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "monitor.yaml"
    path.write_text(text)
    return path


def test_env_only_defaults() -> None:
    settings, [account] = load_settings(None, KEYS)
    assert account.api_url == DEFAULT_API_URL
    assert account.integration_ids is None  # all
    assert account.poll_interval_seconds == 60
    assert account.stale_after_seconds == 7200
    assert settings.listen_address == "0.0.0.0:9877"
    assert settings.log_format is None


def test_env_only_everything() -> None:
    env = {
        **KEYS,
        "SENDCLOUD_API_URL": "http://127.0.0.1:8080/api/v3/",
        "MONITOR_INTEGRATION_IDS": "12, 7,12",
        "MONITOR_POLL_INTERVAL_SECONDS": "30",
        "MONITOR_STALE_AFTER_SECONDS": "900",
        "MONITOR_LISTEN_ADDRESS": "127.0.0.1:9999",
        "MONITOR_LOG_FORMAT": "console",
    }
    settings, [account] = load_settings(None, env)
    assert account.api_url == "http://127.0.0.1:8080/api/v3"
    assert account.integration_ids == (7, 12)
    assert account.poll_interval_seconds == 30
    assert account.stale_after_seconds == 900
    assert settings.listen_address == "127.0.0.1:9999"
    assert settings.log_format == "console"


def test_all_keyword_is_case_insensitive() -> None:
    _, [account] = load_settings(None, {**KEYS, "MONITOR_INTEGRATION_IDS": " ALL "})
    assert account.integration_ids is None


def test_secret_key_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    env = {"SENDCLOUD_PUBLIC_KEY": "pub-1", "SENDCLOUD_SECRET_KEY_FILE": str(secret)}
    _, [account] = load_settings(None, env)
    assert account.secret_key.get_secret_value() == "from-a-file"


def test_missing_secret_key_file_is_a_clear_error(tmp_path: Path) -> None:
    env = {"SENDCLOUD_PUBLIC_KEY": "pub-1", "SENDCLOUD_SECRET_KEY_FILE": str(tmp_path / "nope")}
    with pytest.raises(ConfigError, match="cannot read secret_key_file"):
        load_settings(None, env)


def test_missing_credentials_name_the_variables() -> None:
    with pytest.raises(ConfigError, match="SENDCLOUD_PUBLIC_KEY"):
        load_settings(None, {})
    with pytest.raises(ConfigError, match="SENDCLOUD_SECRET_KEY"):
        load_settings(None, {"SENDCLOUD_PUBLIC_KEY": "x"})


def test_yaml_multi_account_with_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
defaults:
  poll_interval_seconds: 120
  stale_after_seconds: 3600
accounts:
  - name: eu
    public_key: pub-eu
    secret_key: sec-eu
    integration_ids: [3, 1]
    integrations:
      3: {stale_after_seconds: 90000}
  - name: us
    api_url: http://127.0.0.1:1/api/v3
    public_key: pub-us
    secret_key: sec-us
    poll_interval_seconds: 30
""",
    )
    _, (eu, us) = load_settings(path, {})
    assert (eu.name, eu.integration_ids, eu.poll_interval_seconds) == ("eu", (1, 3), 120)
    assert eu.stale_after(3) == 90000
    assert eu.stale_after(1) == 3600
    assert (us.name, us.integration_ids, us.poll_interval_seconds) == ("us", None, 30)


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
listen_address: 127.0.0.1:1000
defaults: {poll_interval_seconds: 120, stale_after_seconds: 100}
accounts:
  - {name: shop, public_key: file-pub, secret_key: file-sec, integration_ids: [1]}
""",
    )
    env = {
        "MONITOR_POLL_INTERVAL_SECONDS": "15",
        "MONITOR_LISTEN_ADDRESS": "127.0.0.1:2000",
        "SENDCLOUD_SECRET_KEY": "env-sec",
    }
    settings, [account] = load_settings(path, env)
    assert account.poll_interval_seconds == 15
    assert account.stale_after_seconds == 100  # from the file, untouched
    assert account.secret_key.get_secret_value() == "env-sec"
    assert account.public_key.get_secret_value() == "file-pub"
    assert account.name == "shop"
    assert settings.listen_address == "127.0.0.1:2000"


def test_single_account_env_with_several_accounts_is_rejected(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "accounts: [{name: a, public_key: p, secret_key: s}, {name: b, public_key: p, "
        "secret_key: s}]\n",
    )
    with pytest.raises(ConfigError, match="cannot be combined with several accounts"):
        load_settings(path, {"SENDCLOUD_SECRET_KEY": "x"})


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "accounts: [{name: a, public_key: p, secret_key: s, polll: 3}]\n")
    with pytest.raises(ConfigError, match=r"accounts\[0\]\.polll: unknown key"):
        load_settings(path, {})


def test_bad_value_names_field_value_and_expectation(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(None, {**KEYS, "MONITOR_POLL_INTERVAL_SECONDS": "soon"})
    message = str(error.value)
    assert "defaults.poll_interval_seconds" in message
    assert "MONITOR_POLL_INTERVAL_SECONDS" in message
    assert "'soon'" in message
    assert "number" in message


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"MONITOR_INTEGRATION_IDS": "1,abc"}, "sendcloud.integration_ids"),
        ({"MONITOR_INTEGRATION_IDS": "0"}, "'0' is not a positive integer"),
        ({"MONITOR_POLL_INTERVAL_SECONDS": "1"}, "greater than or equal to 5"),
        ({"MONITOR_LISTEN_ADDRESS": "nowhere"}, "expected host:port"),
        ({"MONITOR_LOG_FORMAT": "xml"}, "'json' or 'console'"),
        ({"SENDCLOUD_API_URL": "ftp://x"}, "expected an http(s) URL"),
    ],
)
def test_invalid_values(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match="invalid configuration") as error:
        load_settings(None, {**KEYS, **env})
    assert fragment in str(error.value)


def test_secret_values_are_not_echoed_in_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "sendcloud: {secret_key: [not-a-string-secret-value]}\n")
    with pytest.raises(ConfigError) as error:
        load_settings(path, {})
    assert "not-a-string-secret-value" not in str(error.value)
    assert "sendcloud.secret_key" in str(error.value)


def test_yaml_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, "accounts: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_settings(path, {})


def test_missing_config_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["validate-config", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_validate_config_masks_secrets(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MONITOR_INTEGRATION_IDS", "5,6")
    assert main(["validate-config"]) == 0
    out = capsys.readouterr().out
    assert "integration_ids:\n  - 5\n  - 6" in out
    assert "********" in out
    for secret in KEYS.values():
        assert secret not in out


def test_invalid_config_from_the_command_line_is_one_message_no_traceback() -> None:
    result = run_once(["run"], {**KEYS, "MONITOR_STALE_AFTER_SECONDS": "-5"})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "defaults.stale_after_seconds" in result.stderr
    assert "MONITOR_STALE_AFTER_SECONDS" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"SENDCLOUD_API_URL": "http://panel.sendcloud.sc/api/v3"}, "api_url"),
        ({"SENDCLOUD_OAUTH2_TOKEN_URL": "http://account.example.com/token/"}, "oauth2_token_url"),
    ],
)
def test_cleartext_credentials_are_refused(
    env: dict[str, str], field: str, capsys: pytest.CaptureFixture[str]
) -> None:
    full = {"SENDCLOUD_PUBLIC_KEY": "pk", "SENDCLOUD_SECRET_KEY": "sk", **env}
    with pytest.raises(ConfigError) as raised:
        load_settings(None, full)
    assert field in str(raised.value)
    assert "https" in str(raised.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/api/v3",
        "http://127.3.4.5/api/v3",
        "http://[::1]:80/",
        "http://localhost/",
    ],
)
def test_loopback_http_is_allowed(url: str) -> None:
    _, [account] = load_settings(
        None, {"SENDCLOUD_PUBLIC_KEY": "pk", "SENDCLOUD_SECRET_KEY": "sk", "SENDCLOUD_API_URL": url}
    )
    assert account.api_url.startswith("http://")


def test_insecure_http_needs_an_explicit_opt_in(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "sendcloud: {api_url: 'http://sendcloud.internal/api/v3', public_key: p, secret_key: s,"
        " allow_insecure_http: true}\n"
        "alerting:\n  alertmanager: {url: 'http://alertmanager:9093'}\n"
    )
    with pytest.raises(ConfigError, match=r"alertmanager\.url must be https"):
        load_settings(path, {})
    path.write_text(path.read_text().replace("9093'}", "9093', allow_insecure_http: true}"))
    _, [account] = load_settings(path, {})
    assert account.api_url == "http://sendcloud.internal/api/v3"


def test_a_cleartext_webhook_is_refused_without_echoing_its_url(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "sendcloud: {public_key: p, secret_key: s}\n"
        "alerting:\n  webhooks: [{name: ops, url: 'http://hooks.example.com/T0/secret-token'}]\n"
    )
    settings, _ = load_settings(path, {})
    with pytest.raises(ConfigError) as raised:
        settings.alerting.resolved_webhooks()
    assert "webhook 'ops'" in str(raised.value)
    assert "secret-token" not in str(raised.value)


def test_probes_and_checks_from_the_file_and_the_environment(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    import trustme

    trustme.CA().cert_pem.write_to_path(str(ca))
    path = write(
        tmp_path,
        f"""
probes:
  interval_seconds: 600
  ca_file: {ca}
  certificate_warning_days: 21
  status_mapping_types: [prestashop_v2, prestashop]
accounts:
  - name: eu
    public_key: pub
    secret_key: sec
    checks: {{ignore: [feedback_off]}}
    integrations:
      7: {{checks: {{ignore: [duplicate_shop, duplicate_shop]}}}}
""",
    )
    settings, [account] = load_settings(path, {})
    assert settings.probes.enabled
    assert settings.probes.interval_seconds == 600
    assert settings.probes.ca_file == ca
    assert settings.alerting.rules(settings.probes).certificate_warning_days == 21
    assert account.ignored(7) == {"feedback_off", "duplicate_shop"}
    assert account.ignored(8) == {"feedback_off"}
    settings, _ = load_settings(path, {"MONITOR_PROBES_ENABLED": "false"})
    assert not settings.probes.enabled
    assert not settings.alerting.rules(settings.probes).probes_enabled


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("probes: {interval_seconds: 5}", "probes.interval_seconds"),
        ("probes: {certificate_critical_days: 20}", "less than certificate_warning_days"),
        ("probes: {ca_file: /nonexistent/ca.pem}", "/nonexistent/ca.pem does not exist"),
        ("probes: {alow_private_addresses: true}", "alow_private_addresses"),
        ("sendcloud: {checks: {ignore: [feedback]}}", "unknown check feedback; the checks are"),
    ],
)
def test_bad_probe_and_check_settings_are_clear_errors(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = write(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(path, KEYS)
    assert fragment in str(raised.value)


def test_a_ca_file_that_is_no_certificate_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    path = write(tmp_path, f"probes: {{ca_file: {bad}}}\n")
    with pytest.raises(ConfigError, match="not a usable PEM file"):
        load_settings(path, KEYS)
