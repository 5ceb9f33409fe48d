"""No secret in any output: every secret the daemon knows, with a unique marker, through a normal
cycle with alerts, a fault cycle, an auth failure, ``validate-config`` and ``check``; then every
output is searched for every marker (and the Basic-auth encoding of the keys)."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import yaml

from monitor.simulator import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, SimIntegration, Simulator
from tests.conftest import free_port
from tests.daemon_process import DaemonProcess, run_once
from tests.receivers import Receiver, running

PUBLIC = "pk-marker-public-5a1f"
SECRET = "sk-marker-secret-7c3e"
WEBHOOK_TOKEN = "wh-marker-token-9e2d"
HMAC_SECRET = "hm-marker-hmac-4d8b"
WEB_PASSWORD = "pw-marker-web-1b6a"
SHOP_PASSWORD = "shop-marker-userinfo-3f0c"
#: Secrets the simulator puts in every record and exception log (webhook_url, request headers).
SIMULATOR_SECRETS = ("webhook-token-", "shop-secret-", "shop-token-")


@pytest.mark.timeout(120)
def test_no_secret_reaches_any_output(tmp_path: Path) -> None:
    web_hash = bcrypt.hashpw(WEB_PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    (tmp_path / "web.yml").write_text(yaml.safe_dump({"basic_auth_users": {"prom": web_hash}}))
    (tmp_path / "secret_key").write_text(SECRET + "\n")
    (tmp_path / "hmac").write_text(HMAC_SECRET)
    state_file = tmp_path / "state" / "alerts.json"
    now = datetime.now(UTC)
    shops = [
        SimIntegration(1, "failing", "Failing shop", started_failing_at=now - timedelta(hours=2)),
        SimIntegration(2, "healthy", "Userinfo shop", f"https://admin:{SHOP_PASSWORD}@shop.test/"),
    ]
    with (
        Simulator(shops, public_key=PUBLIC, secret_key=SECRET) as sim,
        running(Receiver(secret=HMAC_SECRET.encode())) as webhook,
        running(Receiver()) as alertmanager,
    ):
        (tmp_path / "hook_url").write_text(f"{webhook.url}/{WEBHOOK_TOKEN}")
        config = tmp_path / "monitor.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "sendcloud": {"auth": "oauth2", "oauth2_token_url": sim.token_url},
                    "alerting": {
                        "state_file": str(state_file),
                        "unreachable_for_seconds": 0,
                        "webhooks": [
                            {
                                "name": "ops",
                                "url_file": str(tmp_path / "hook_url"),
                                "hmac_secret_file": str(tmp_path / "hmac"),
                            }
                        ],
                        "alertmanager": {"url": alertmanager.url.removesuffix("/hook")},
                    },
                }
            )
        )
        port = free_port()
        env = {
            "MONITOR_CONFIG_FILE": str(config),
            "MONITOR_WEB_CONFIG_FILE": str(tmp_path / "web.yml"),
            "SENDCLOUD_API_URL": sim.url,
            "SENDCLOUD_PUBLIC_KEY": PUBLIC,
            "SENDCLOUD_SECRET_KEY_FILE": str(tmp_path / "secret_key"),
            "MONITOR_INTEGRATION_IDS": "all",
            "MONITOR_POLL_INTERVAL_SECONDS": "5",
            "MONITOR_LISTEN_ADDRESS": f"127.0.0.1:{port}",
            "MONITOR_LOG_LEVEL": "debug",  # the most verbose the daemon gets
        }
        daemon = DaemonProcess(["run"], env, port)
        auth = ("prom", WEB_PASSWORD)
        outputs: dict[str, str] = {}
        try:
            ready = daemon.base + "/readyz"
            daemon.wait_for(lambda: httpx.get(ready, auth=auth).status_code == 200, 20, "ready")
            daemon.wait_for(lambda: bool(webhook.bodies and alertmanager.bodies), 20, "alerts")
            tokens = list(sim._tokens)
            assert tokens  # the OAuth2 flow really ran

            def errors() -> float:
                return metric(daemon, auth, "sendcloud_api_errors_total")

            # one poll each: html and 500 are not retried, a reset is retried three times (and
            # each attempt on a kept-alive connection once more by aiohttp, RFC 9112 9.3.1)
            for kind, status, count in (("html", 200, 1), ("reset", 200, 6), ("status", 500, 1)):
                before = errors()
                sim.inject_fault(status, count=count, kind=kind)
                daemon.wait_for(lambda b=before: errors() > b, 15, f"a {kind} fault cycle")
            sim.inject_fault(401, count=10**6)  # the token is refreshed once, then auth fails
            daemon.wait_for(
                lambda: metric(daemon, auth, "sendcloud_api_auth_ok") == 0, 15, "auth failure"
            )
            daemon.wait_for(lambda: state_file.exists(), 5, "the state file")
            outputs["/metrics"] = httpx.get(daemon.base + "/metrics", auth=auth).text
            outputs["/"] = httpx.get(daemon.base + "/", auth=auth).text
            code, _ = daemon.terminate()
        finally:
            daemon.kill()
        assert code == 0
        tokens += list(sim._tokens)
        assert webhook.signatures_ok
        assert all(webhook.signatures_ok)
        outputs["daemon stdout+stderr"] = daemon.output
        outputs["state file"] = state_file.read_text()
        outputs["webhook bodies"] = json.dumps(webhook.bodies)
        outputs["alertmanager payloads"] = json.dumps(alertmanager.bodies)
        for command in (["validate-config"], ["check"]):
            result = run_once(command, env)
            outputs[" ".join(command)] = result.stdout + result.stderr
    basic = base64.b64encode(f"{PUBLIC}:{SECRET}".encode()).decode()
    markers = (PUBLIC, SECRET, WEBHOOK_TOKEN, HMAC_SECRET, WEB_PASSWORD, web_hash, SHOP_PASSWORD)
    for where, text in outputs.items():
        assert text, f"{where} is empty: nothing was checked"
        for marker in (*markers, basic, *tokens, *SIMULATOR_SECRETS):
            assert marker not in text, f"{marker!r} leaked into {where}"
    assert "Failing shop" in outputs["webhook bodies"]  # the outputs are the real thing


def metric(daemon: DaemonProcess, auth: tuple[str, str], name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(daemon.base + "/metrics", auth=auth, timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def invalid_configs(tmp_path: Path, api_url: str) -> dict[str, dict[str, Any]]:
    """Configurations rejected by model-level validators, each carrying every kind of secret
    in the block the error is located at."""
    webhook = {
        "name": "ops",
        "url": f"https://hooks.example.com/{WEBHOOK_TOKEN}",
        "hmac_secret": HMAC_SECRET,
    }
    account = {"public_key": PUBLIC, "secret_key": SECRET, "integration_ids": "all"}
    return {
        "http api_url": {
            "sendcloud": {**account, "api_url": "http://sendcloud.example/api/v3"},
            "alerting": {"webhooks": [webhook]},
        },
        "duplicate accounts": {
            "accounts": [{**account, "name": "eu", "api_url": api_url}] * 2,
            "alerting": {"webhooks": [webhook]},
        },
        "duplicate webhooks": {
            "sendcloud": {**account, "api_url": api_url},
            "alerting": {"webhooks": [webhook, webhook]},
        },
        "http alertmanager": {
            "sendcloud": {**account, "api_url": api_url},
            "alerting": {"alertmanager": {"url": f"http://am.example/{WEBHOOK_TOKEN}"}},
        },
    }


@pytest.mark.parametrize("command", [["check"], ["validate-config"], ["run"]])
def test_an_invalid_configuration_prints_no_secret(tmp_path: Path, command: list[str]) -> None:
    """The errors of model-level validators are located at a whole block (`()`, `sendcloud`,
    `accounts[i]`): their input, keys and URLs included, must never be printed."""
    for name, document in invalid_configs(tmp_path, "http://127.0.0.1:9/api/v3").items():
        config = tmp_path / "monitor.yaml"
        config.write_text(yaml.safe_dump(document))
        result = run_once(command, {"MONITOR_CONFIG_FILE": str(config)})
        text = result.stdout + result.stderr
        assert result.returncode != 0, (name, text)
        assert "invalid configuration" in text, (name, text)  # it was the validation that spoke
        for marker in (PUBLIC, SECRET, WEBHOOK_TOKEN, HMAC_SECRET):
            assert marker not in text, f"{marker!r} leaked from {name} ({command}): {text}"


@pytest.mark.timeout(60)
def test_a_rejected_reload_with_rotated_secrets_prints_none_of_them(tmp_path: Path) -> None:
    """The reload failure's log line and the body of POST /-/reload carry the *new* secrets'
    block, which the scrubber does not know yet."""
    with Simulator([SimIntegration(1, "healthy", "Shop")]) as sim:
        config = tmp_path / "monitor.yaml"
        account = {"public_key": DEMO_PUBLIC_KEY, "secret_key": DEMO_SECRET_KEY}
        config.write_text(yaml.safe_dump({"sendcloud": {**account, "api_url": sim.url}}))
        port = free_port()
        env = {"MONITOR_CONFIG_FILE": str(config), "MONITOR_LISTEN_ADDRESS": f"127.0.0.1:{port}"}
        daemon = DaemonProcess(["run"], env, port)
        bodies = []
        try:
            daemon.wait_ready()
            for document in invalid_configs(tmp_path, sim.url).values():
                config.write_text(yaml.safe_dump(document))
                response = httpx.post(daemon.base + "/-/reload", timeout=10)
                assert response.status_code >= 400
                bodies.append(response.text)
            failures = daemon.events("config_reload_failed")
            assert len(failures) == len(bodies)
            assert daemon.metric("integration_monitor_config_last_reload_successful") == 0
            code, _ = daemon.terminate()
        finally:
            daemon.kill()
    assert code == 0
    for text in [*bodies, daemon.output]:
        for marker in (PUBLIC, SECRET, WEBHOOK_TOKEN, HMAC_SECRET):
            assert marker not in text, f"{marker!r} leaked: {text}"


#: Ordinary user names in receiver URLs: never secrets, never masked.
USERS = ("monitor", "info", "admin", "alerts")
#: Passwords that are words, or parts of the words every line is made of.
PASSWORDS = ("even", "form", "port", "level")
ROTATED_PASSWORDS = ("logger", "timestamp", "pw")
_LEVELS = {"debug", "info", "warning", "error", "critical"}


@pytest.mark.timeout(120)
def test_receiver_urls_with_ordinary_user_names_leave_the_log_lines_intact(
    tmp_path: Path,
) -> None:
    """The docs' own kind of receiver URL (``mailto://monitor:pw@…``), with ordinary user
    names and passwords that are common words: every JSON line keeps its event, logger, level
    and keys; the receivers' names and users are shown; the passwords are not — also after a
    reload that rotates them (one shorter than any threshold)."""
    now = datetime.now(UTC)
    config = tmp_path / "monitor.yaml"
    port = free_port()
    refused = free_port()  # nothing listens there: deliveries to it fail and are logged

    def receivers(users: tuple[str, ...], passwords: tuple[str, ...], hook: str) -> list[Any]:
        found = []
        for user, password in zip(users, passwords, strict=False):
            target = hook if user == users[0] else f"127.0.0.1:{refused}/alerts"
            found.append({"name": user, "url": f"json://{user}:{password}@{target}"})
        return found

    with (
        Simulator(
            [
                SimIntegration(
                    1, "failing", "Failing shop", started_failing_at=now - timedelta(hours=2)
                )
            ]
        ) as sim,
        running(Receiver()) as hook,
    ):
        target = hook.url.removeprefix("http://")

        def write(users: tuple[str, ...], passwords: tuple[str, ...]) -> None:
            document = {
                "listen_address": f"127.0.0.1:{port}",
                "log_level": "debug",
                "sendcloud": {
                    "api_url": sim.url,
                    "public_key": DEMO_PUBLIC_KEY,
                    "secret_key": DEMO_SECRET_KEY,
                    "integration_ids": "all",
                    "poll_interval_seconds": 5,
                },
                "alerting": {
                    "group_wait_seconds": 0,
                    "receivers": [
                        {**r, "max_attempts": 1} for r in receivers(users, passwords, target)
                    ],
                },
            }
            config.write_text(yaml.safe_dump(document))

        write(USERS, PASSWORDS)
        daemon = DaemonProcess(["run", "--config", str(config)], {}, port)
        try:
            daemon.wait_ready()
            daemon.wait_for(lambda: len(hook.bodies) == 1, 20, "the first alert at the hook")
            daemon.wait_for(
                lambda: len(daemon.events("alert_delivery_failed")) == len(USERS) - 1,
                20,
                "the failed deliveries",
            )
            before = len(daemon.lines)
            write(("alerts", "monitor", "info"), ROTATED_PASSWORDS)
            response = httpx.post(daemon.base + "/-/reload", timeout=10)
            assert response.status_code == 200, response.text
            sim.add(
                SimIntegration(
                    2, "failing", "Second shop", started_failing_at=now - timedelta(hours=2)
                )
            )
            daemon.wait_for(lambda: len(hook.bodies) == 2, 20, "the alert after the reload")
            daemon.wait_for(
                lambda: len(daemon.events("alert_delivery_failed")) == len(USERS) + 1,
                20,
                "the failed deliveries after the reload",
            )
            code, _ = daemon.terminate()
        finally:
            daemon.kill()
    assert code == 0
    lines = [json.loads(line) for line in daemon.lines if line.startswith("{")]
    assert len(lines) == len(daemon.lines), daemon.output  # every line is a JSON line
    assert any(line["event"] == "config_reloaded" for line in lines[before:])
    for line in lines:
        assert "*" not in "".join(line), line  # no key was touched
        if line["logger"].startswith("monitor"):  # a library's event is its message
            assert re.fullmatch(r"[a-z][a-z0-9_]*", line["event"]), line
        assert "*" not in line["event"], line
        assert re.fullmatch(r"[a-z][a-z0-9_.]*", line["logger"]), line
        assert line["level"] in _LEVELS, line
        datetime.fromisoformat(line["timestamp"])
    failed = [line for line in lines if line["event"] == "alert_delivery_failed"]
    assert sorted(line["sink"] for line in failed) == sorted(
        ["receiver:info", "receiver:admin", "receiver:alerts", "receiver:monitor", "receiver:info"]
    )  # the names, which are the users too, are intact
    values = [
        str(v) for line in lines for k, v in line.items() if k not in ("event", "logger", "level")
    ]
    for password in (*PASSWORDS, *ROTATED_PASSWORDS):
        word = re.compile(rf"(?<![A-Za-z0-9_]){password}(?![A-Za-z0-9_])")
        assert not any(word.search(v) for v in values), password


ROTATED_SECRET = "sk-rotated-9b41e7"
APPRISE_PASSWORD = "ap-pass-52c8d0"


def broken_yaml(api_url: str) -> dict[str, tuple[str, int, int]]:
    """YAML syntax errors on (or around) the lines that hold secrets: the text, and the line
    and column PyYAML reports (1-based). Each would be quoted by PyYAML's own message."""
    head = f"sendcloud:\n  api_url: {api_url}\n  public_key: {DEMO_PUBLIC_KEY}\n"
    return {
        "unterminated quote on the rotated key": (
            head + f'  secret_key: "{ROTATED_SECRET}\n  integration_ids: all\n',
            6,
            1,
        ),
        "a colon in the current key": (
            head + f"  secret_key: {DEMO_SECRET_KEY}: {ROTATED_SECRET}\n",
            4,
            len(f"  secret_key: {DEMO_SECRET_KEY}:"),  # at the colon
        ),
        "a tab before the receiver's password": (
            head
            + f"  secret_key: {DEMO_SECRET_KEY}\nalerting:\n  receivers:\n  - name: mail\n"
            + f"\turl: mailtos://monitor:{APPRISE_PASSWORD}@smtp.example.com\n",
            8,
            1,
        ),
    }


@pytest.mark.timeout(60)
def test_a_yaml_syntax_error_on_reload_names_the_place_never_the_line(tmp_path: Path) -> None:
    """A rotated key, the current one and an Apprise password on a line PyYAML cannot parse:
    the POST /-/reload answer, the config_reload_failed line and validate-config name the
    file, line, column and kind of error, and none of the line's text."""
    with Simulator([SimIntegration(1, "healthy", "Shop")]) as sim:
        config = tmp_path / "monitor.yaml"
        account = {"public_key": DEMO_PUBLIC_KEY, "secret_key": DEMO_SECRET_KEY}
        config.write_text(yaml.safe_dump({"sendcloud": {**account, "api_url": sim.url}}))
        port = free_port()
        env = {"MONITOR_CONFIG_FILE": str(config), "MONITOR_LISTEN_ADDRESS": f"127.0.0.1:{port}"}
        daemon = DaemonProcess(["run"], env, port)
        answers: list[tuple[str, int, str]] = []
        validated = []
        cases = broken_yaml(sim.url)
        try:
            daemon.wait_ready()
            for text, _, _ in cases.values():
                config.write_text(text)
                response = httpx.post(daemon.base + "/-/reload", timeout=10)
                answers.append((text, response.status_code, response.text))
                validated.append(run_once(["validate-config"], env))
            failures = daemon.events("config_reload_failed")
            assert daemon.metric("integration_monitor_config_last_reload_successful") == 0
            assert daemon.get("/readyz").status_code == 200  # the old configuration runs on
            code, _ = daemon.terminate()
        finally:
            daemon.kill()
    assert code == 0
    assert len(failures) == len(cases)
    for (name, (text, line, column)), (_, status, body), failure, result in zip(
        cases.items(), answers, failures, validated, strict=True
    ):
        place = f"{config}, line {line}, column {column}: YAML syntax error"
        assert status == 500, (name, body)
        assert place in body, (name, body)
        assert place in failure["reason"], (name, failure)
        assert result.returncode == 2, (name, result.stderr)
        assert place in result.stderr, (name, result.stderr)
        shown = [body, json.dumps(failure), result.stdout + result.stderr]
        for secret in (ROTATED_SECRET, DEMO_SECRET_KEY, APPRISE_PASSWORD):
            for where in shown:
                assert secret not in where, (name, secret, where)
        for line_text in text.splitlines():  # not a fragment of any line of the file either
            value = line_text.partition(":")[2].strip()
            if len(value) > 4:
                assert not any(value in where for where in shown), (name, value)
    assert DEMO_SECRET_KEY not in daemon.output
    assert ROTATED_SECRET not in daemon.output
