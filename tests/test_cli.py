"""``check``, ``--version`` and ``--help``: exit codes and the table."""

from __future__ import annotations

import json
import re
import socket
import typing
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import BaseModel

from monitor import __version__
from monitor.cli import main
from monitor.settings import Settings
from monitor.simulator import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, Simulator
from tests.conftest import free_port
from tests.daemon_process import DaemonProcess, run_once


def use(monkeypatch: pytest.MonkeyPatch, url: str, ids: str, secret: str = DEMO_SECRET_KEY) -> None:
    monkeypatch.setenv("SENDCLOUD_API_URL", url)
    monkeypatch.setenv("SENDCLOUD_PUBLIC_KEY", DEMO_PUBLIC_KEY)
    monkeypatch.setenv("SENDCLOUD_SECRET_KEY", secret)
    monkeypatch.setenv("MONITOR_INTEGRATION_IDS", ids)


@pytest.mark.parametrize(
    ("ids", "code", "status"),
    [
        ("1", 0, "healthy"),
        ("1,3", 1, "stale"),
        ("1,4", 1, "stale"),  # never fetched, created 3h ago
        ("1,2,3", 2, "failing"),
        ("1,5", 2, "not_found"),
    ],
)
def test_check_exit_codes(
    sim: Simulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    ids: str,
    code: int,
    status: str,
) -> None:
    use(monkeypatch, sim.url, ids)
    assert main(["check"]) == code
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:3] == ["ACCOUNT", "ID", "SHOP"]
    assert status in table


def test_check_unreadable_api(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use(monkeypatch, sim.url, "1,2", secret="wrong-secret-key")
    assert main(["check"]) == 3
    captured = capsys.readouterr()
    assert "could not be read" in captured.out
    assert "wrong-secret-key" not in captured.out + captured.err


def test_check_api_down(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use(monkeypatch, f"http://127.0.0.1:{free_port()}/api/v3", "all")
    assert main(["check"]) == 3


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("run", "check", "demo", "validate-config", "simulator"):
        assert command in out


def test_check_with_an_invalid_configuration_is_unknown_not_critical(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MONITOR_POLL_INTERVAL_SECONDS", "1")  # below the minimum of 5
    monkeypatch.setenv("SENDCLOUD_PUBLIC_KEY", DEMO_PUBLIC_KEY)
    monkeypatch.setenv("SENDCLOUD_SECRET_KEY", DEMO_SECRET_KEY)
    assert main(["check"]) == 3  # Nagios UNKNOWN
    assert "poll_interval_seconds" in capsys.readouterr().err
    assert main(["validate-config"]) == 2  # the other commands keep exit 2


def test_an_interrupted_check_is_unknown_not_ok(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, sim.url, "1")

    def interrupted(coroutine: object) -> None:
        coroutine.close()  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    monkeypatch.setattr("monitor.cli.asyncio.run", interrupted)
    assert main(["check"]) == 3


def test_check_reads_a_collection_404_as_unknown(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use(monkeypatch, sim.url, "1,2")
    sim.inject_fault(404, count=10, endpoint="list")
    assert main(["check"]) == 3  # not "every integration is gone" (2)
    out = capsys.readouterr().out
    assert "not_found" in out.splitlines()[-1]  # the account note names the reason
    assert "unknown" in out


def test_check_json_for_scripts(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use(monkeypatch, sim.url, "1,2,3")
    assert main(["check", "--output", "json"]) == 2
    document = json.loads(capsys.readouterr().out)
    assert document["exit_code"] == 2
    assert document["summary"]["failing"] == 1
    assert [(i["integration_id"], i["state"]) for i in document["integrations"]] == [
        (2, "failing"),
        (3, "stale"),
        (1, "healthy"),
    ]
    assert main(["check", "--output", "json", "--only-problems"]) == 2
    document = json.loads(capsys.readouterr().out)
    assert [i["integration_id"] for i in document["integrations"]] == [2, 3]


def test_check_nagios_line_with_performance_data(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use(monkeypatch, sim.url, "1,3")
    assert main(["check", "--output", "nagios"]) == 1
    [line] = capsys.readouterr().out.splitlines()
    text, _, perfdata = line.partition(" | ")
    assert text.startswith("SENDCLOUD WARNING - ")
    metrics = dict(item.split("=", 1) for item in perfdata.split())
    assert metrics["stale"] == "1;;;0"
    assert metrics["healthy"] == "1;;;0"
    assert metrics["failing"] == "0;;;0"


def test_check_table_colours_only_for_a_terminal_without_no_color(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use(monkeypatch, sim.url, "1,2")
    main(["check"])
    assert "\x1b[" not in capsys.readouterr().out  # captured: not a terminal
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    main(["check"])
    assert "\x1b[31mfailing" in capsys.readouterr().out
    monkeypatch.setenv("NO_COLOR", "1")
    main(["check"])
    assert "\x1b[" not in capsys.readouterr().out
    main(["check", "--only-problems"])
    assert [line.split()[1] for line in capsys.readouterr().out.splitlines()[1:]] == ["2"]


# -- validate-config: the whole effective configuration, from the model ------------------------

#: Every secret the configuration below holds: none may be printed.
SECRETS = {
    "public": "pk-dump-public-0a1b",
    "secret": "sk-dump-secret-2c3d",
    "from_file": "sk-dump-file-4e5f",
    "hook_token": "wh-dump-token-6a7b",
    "hmac": "hm-dump-hmac-8c9d",
    "mail_password": "even",  # a word: masked where it is the password, nowhere else
    "ntfy_token": "tk0dump1token2ntfy",
}


def full_config(tmp_path: Path) -> Path:
    """A configuration that sets every section of the model (each list with an item, each
    optional block present), so that every field of every model has a place in the dump."""
    (tmp_path / "secret_key").write_text(SECRETS["from_file"])
    (tmp_path / "ntfy_url").write_text(f"ntfy://127.0.0.1:9/{SECRETS['ntfy_token']}")
    document = {
        "listen_address": "127.0.0.1:9877",
        "shard": "0/1",
        "log_format": "json",
        "log_level": "info",
        "defaults": {"poll_interval_seconds": 30, "budget_share": 0.5},
        "accounts": [
            {
                "name": "acme-nl",
                "api_url": "http://127.0.0.1:9/api/v3",
                "public_key": SECRETS["public"],
                "secret_key": SECRETS["secret"],
                "integration_ids": [1, 2],
                "integrations": {2: {"stale_after_seconds": 86400}},
                "stale_after_seconds": 3600,
            },
            {
                "name": "acme-de",
                "api_url": "http://127.0.0.1:9/api/v3",
                "public_key": SECRETS["public"],
                "secret_key_file": str(tmp_path / "secret_key"),
                "auth": "oauth2",
                "oauth2_token_url": "http://127.0.0.1:9/oauth2/token/",
            },
        ],
        "alerting": {
            "state_file": str(tmp_path / "state" / "alerts.json"),
            "webhooks": [
                {
                    "name": "ops",
                    "url": f"https://hooks.example.com/services/{SECRETS['hook_token']}",
                    "hmac_secret": SECRETS["hmac"],
                }
            ],
            "alertmanager": {"url": "http://127.0.0.1:9093"},
            "receivers": [
                {
                    "name": "mail",
                    "url": f"mailtos://monitor:{SECRETS['mail_password']}@smtp.example.com"
                    "?to=oncall@example.com",
                },
                {"name": "phone", "url_file": str(tmp_path / "ntfy_url")},
            ],
            "routes": [
                {
                    "match": {
                        "account": "acme-*",
                        "alert": "Integration*",
                        "severity": "critical",
                        "integration_type": "shopify",
                        "integration_id": 2,
                    },
                    "receivers": ["phone"],
                    "continue": True,
                }
            ],
            "maintenance": [
                {
                    "name": "nightly",
                    "match": {"account": "acme-nl"},
                    "times": [{"start_time": "02:00", "end_time": "03:00"}],
                    "weekdays": ["monday:friday"],
                    "location": "Europe/Amsterdam",
                },
                {
                    "name": "migration",
                    "start": "2030-01-01T00:00:00Z",
                    "end": "2030-01-02T00:00:00Z",
                },
            ],
        },
        "history": {"retention_days": 90},
    }
    path = tmp_path / "monitor.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def model_types(annotation: Any) -> list[type[BaseModel]]:
    """The models a field holds (itself, in a list, as dict values, or optional)."""
    origin = typing.get_origin(annotation)
    if origin is None:
        return (
            [annotation]
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else []
        )
    return [m for arg in typing.get_args(annotation) for m in model_types(arg)]


def missing_fields(model: type[BaseModel], nodes: list[Any], where: str) -> list[str]:
    """Every field of ``model`` (recursively) that the dumped ``nodes`` of it leave out; each
    nested model must be dumped at least once, so that its own fields are checked too."""
    assert nodes, f"{where} is never set: nothing of it was checked"
    missing = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        if any(key not in node for node in nodes):
            missing.append(f"{where}.{key}")
            continue
        if key == "sendcloud":  # folded into accounts in the effective dump: checked there
            assert all(node[key] is None for node in nodes)
            continue
        for inner in model_types(field.annotation):
            children: list[Any] = []
            for node in nodes:
                value = node[key]
                if isinstance(value, list):
                    children += value
                elif isinstance(value, dict) and all(isinstance(k, int) for k in value):
                    children += value.values()  # integrations: {id: {...}}
                elif value is not None:
                    children.append(value)
            missing += missing_fields(inner, children, f"{where}.{key}")
    return missing


def test_validate_config_prints_every_field_of_the_model_and_no_secret(tmp_path: Path) -> None:
    result = run_once(["validate-config", "--config", str(full_config(tmp_path))], {})
    assert result.returncode == 0, result.stderr
    dump = yaml.safe_load(result.stdout)
    assert missing_fields(Settings, [dump], "") == []
    for name, secret in SECRETS.items():
        word = re.compile(rf"(?<![\w]){re.escape(secret)}(?![\w])")
        assert not word.search(result.stdout + result.stderr), name
    # effective: defaults applied where an account sets nothing, derived paths filled in
    nl, de = dump["accounts"]
    assert (nl["poll_interval_seconds"], de["poll_interval_seconds"]) == (30, 30)
    assert (nl["stale_after_seconds"], de["stale_after_seconds"]) == (3600, 7200)
    assert dump["history"]["path"] == str(tmp_path / "state" / "history.db")
    assert dump["alerting"]["default_receivers"] == []  # routes given: nobody by default
    # secrets masked by their type, a URL still saying which service and where
    assert (nl["public_key"], nl["secret_key"], de["secret_key"]) == ("********", "********", None)
    assert de["secret_key_file"] == str(tmp_path / "secret_key")
    [hook] = dump["alerting"]["webhooks"]
    assert (hook["url"], hook["hmac_secret"]) == (
        "https://hooks.example.com/services/********",
        "********",
    )
    mail, phone = dump["alerting"]["receivers"]
    assert mail["url"] == "mailtos://monitor:********@smtp.example.com?to=********"
    assert (phone["url"], phone["url_file"]) == (None, str(tmp_path / "ntfy_url"))


def test_validate_config_says_where_a_bad_value_came_from(tmp_path: Path) -> None:
    path = tmp_path / "monitor.yaml"
    keys = {"SENDCLOUD_PUBLIC_KEY": "pk", "SENDCLOUD_SECRET_KEY": "sk"}
    path.write_text("defaults:\n  poll_interval_seconds: 1\nsendcloud:\n  api_url: ftp://x\n")
    from_file = run_once(["validate-config", "--config", str(path)], keys)
    assert from_file.returncode == 2
    # the file and key; no environment variable, since none is set
    assert f"{path}: defaults.poll_interval_seconds: got 1:" in from_file.stderr
    assert f"{path}: sendcloud.api_url: got 'ftp://x':" in from_file.stderr
    assert "environment variable" not in from_file.stderr
    # set in the environment: the variable is named, not the file
    overridden = run_once(
        ["validate-config", "--config", str(path)],
        {**keys, "MONITOR_POLL_INTERVAL_SECONDS": "2"},
    )
    assert (
        "  defaults.poll_interval_seconds (environment variable MONITOR_POLL_INTERVAL_SECONDS): "
        "got '2':" in overridden.stderr
    )
    # a YAML syntax error: the file and line, never the line's text
    path.write_text("sendcloud:\n  secret_key: sk-typo: with a colon\n")
    broken = run_once(["validate-config", "--config", str(path)], {})
    assert broken.returncode == 2
    assert f"{path}, line 2, column 22: YAML syntax error" in broken.stderr
    assert "sk-typo" not in broken.stderr


# -- errors say what happened -------------------------------------------------------------------


def test_the_simulator_on_a_port_in_use_says_so_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_once(["simulator", "--listen", f"127.0.0.1:{port}"], {})
    assert result.returncode == 1
    [line] = (result.stdout + result.stderr).splitlines()
    entry = json.loads(line)
    assert (entry["event"], entry["address"]) == ("cannot_listen", f"127.0.0.1:{port}")
    assert entry["error"] == "Address already in use"


def test_the_simulator_alone_says_where_its_api_and_token_url_are_and_stops_on_sigterm() -> None:
    """What a user needs to point the monitor at it, from its first line: the API URL (ending
    in /api/v3) and the OAuth2 token URL, both of which answer; SIGTERM ends it with 0."""
    port = free_port()
    daemon = DaemonProcess(["simulator", "--listen", f"127.0.0.1:{port}"], {}, port)
    try:
        daemon.wait_for(lambda: bool(daemon.events("simulator_started")), 15, "its first line")
        [started] = daemon.events("simulator_started")
        assert started["url"] == f"http://127.0.0.1:{port}/api/v3"
        assert started["oauth2_url"] == f"http://127.0.0.1:{port}/oauth2/token/"
        keys = (DEMO_PUBLIC_KEY, DEMO_SECRET_KEY)
        token = httpx.post(
            started["oauth2_url"], data={"grant_type": "client_credentials"}, auth=keys, timeout=5
        )
        assert token.status_code == 200
        listed = httpx.get(
            started["url"] + "/integrations",
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            timeout=5,
        )
        assert listed.status_code == 200
        assert listed.json()["data"]
        code, _ = daemon.terminate(timeout=10)
        assert code == 0
    finally:
        daemon.kill()


def test_routes_need_no_api_credentials_and_refuse_impossible_labels(tmp_path: Path) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text(  # receivers and routes only: no keys anywhere, as on a laptop
        yaml.safe_dump(
            {
                "alerting": {
                    "receivers": [{"name": "pager", "url": "ntfy://127.0.0.1:9/oncall"}],
                    "routes": [{"match": {"severity": "critical"}, "receivers": ["pager"]}],
                }
            }
        )
    )
    shown = run_once(["routes", "show", "--config", str(path)], {})
    assert shown.returncode == 0, shown.stderr
    assert "route 1: severity=critical -> pager" in shown.stdout
    reached = run_once(["routes", "test", "--config", str(path), "severity=critical"], {})
    assert (reached.returncode, reached.stdout) == (0, "pager\n")
    typo = run_once(["routes", "test", "--config", str(path), "severity=crit"], {})
    assert typo.returncode == 2
    assert "severity is warning or critical, not 'crit'" in typo.stderr


def test_a_bad_integration_id_list_is_explained_without_type_names() -> None:
    result = run_once(
        ["validate-config"],
        {
            "MONITOR_INTEGRATION_IDS": "abc",
            "SENDCLOUD_PUBLIC_KEY": "p",
            "SENDCLOUD_SECRET_KEY": "s",
        },
    )
    assert result.returncode == 2
    [problem] = result.stderr.splitlines()[1:]
    assert problem == (
        "  sendcloud.integration_ids (environment variable MONITOR_INTEGRATION_IDS): got 'abc': "
        "expected a comma-separated list of integration IDs, or all ('abc' is not a positive "
        "integer)"
    )


def test_check_says_a_refused_connection_is_refused() -> None:
    env = {
        "SENDCLOUD_API_URL": f"http://127.0.0.1:{free_port()}/api/v3",
        "SENDCLOUD_PUBLIC_KEY": "p",
        "SENDCLOUD_SECRET_KEY": "s",
    }
    result = run_once(["check"], env)
    assert result.returncode == 3
    failures = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(f["event"], f["error"]) for f in failures] == [
        ("account_poll_failed", "connection refused")
    ]


def test_a_mute_before_the_first_start_goes_into_the_configurations_own_file(
    tmp_path: Path,
) -> None:
    """Muting a shop before the daemon first runs (its state volume exists, the history file
    not yet): the mute goes into the file the daemon will read. A mistyped directory, or a
    --history path that does not exist, never becomes a new file."""
    state = tmp_path / "state"
    state.mkdir()
    config = tmp_path / "monitor.yaml"
    config.write_text(yaml.safe_dump({"alerting": {"state_file": str(state / "alerts.json")}}))
    mute = ["mute", "--config", str(config), "--account", "default", "--for", "1h"]
    made = run_once([*mute, "--reason", "planned"], {})
    assert made.returncode == 0, made.stderr
    listed = run_once(["mutes", "--config", str(config), "--output", "json"], {})
    assert [m["reason"] for m in json.loads(listed.stdout)["mutes"]] == ["planned"]
    assert (state / "history.db").is_file()

    typo = tmp_path / "stat" / "alerts.json"  # a directory that does not exist
    config.write_text(yaml.safe_dump({"alerting": {"state_file": str(typo)}}))
    refused = run_once([*mute, "--reason", "typo"], {})
    assert refused.returncode == 2
    assert not typo.parent.exists()
    by_hand = run_once([*mute, "--reason", "typo", "--history", str(state / "other.db")], {})
    assert by_hand.returncode == 2
    assert not (state / "other.db").exists()
