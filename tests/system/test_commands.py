"""The CLI commands read the configuration the daemon reads: ``mute``, ``unmute``, ``mutes`` and
``report`` with the daemon's own configuration file (``--config`` or MONITOR_CONFIG_FILE), as
an operator runs them beside a running daemon — typos included."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import yaml

from monitor.settings import shard_of
from monitor.simulator import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, SimIntegration, Simulator
from tests.conftest import free_port
from tests.daemon_process import DaemonProcess, run_once

#: acme-nl and acme-de are polled by shard 0 of 2, acme-be by shard 1.
SHARDS = {"acme-nl": 0, "acme-de": 0, "acme-be": 1}


def mute_args(account: str, *extra: str) -> list[str]:
    return ["mute", "--account", account, "--for", "1h", "--reason", "re-keying", *extra]


@pytest.mark.timeout(90)
def test_mute_with_the_daemons_config_file_and_a_typo(tmp_path: Path) -> None:
    assert {name: shard_of(name, 2) for name in SHARDS} == SHARDS
    state = tmp_path / "state" / "alerts.json"
    web = tmp_path / "web.yml"
    hashed = bcrypt.hashpw(b"pw-alice", bcrypt.gensalt(rounds=4)).decode()
    web.write_text(f"basic_auth_users: {{alice: '{hashed}'}}\n")
    now = datetime.now(UTC)
    shops = [
        SimIntegration(1, "healthy", "Shop one"),
        SimIntegration(2, "failing", "Shop two", started_failing_at=now - timedelta(hours=2)),
    ]
    with Simulator(shops) as sim:
        port = free_port()

        def account(name: str, **extra: Any) -> dict[str, Any]:
            keys = {"public_key": DEMO_PUBLIC_KEY, "secret_key": DEMO_SECRET_KEY}
            return {"name": name, "api_url": sim.url, "poll_interval_seconds": 5, **keys, **extra}

        config = tmp_path / "monitor.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "listen_address": f"127.0.0.1:{port}",
                    "shard": "0/2",
                    "alerting": {"state_file": str(state)},
                    "accounts": [
                        account("acme-nl", integration_ids=[1, 2]),
                        account("acme-de"),
                        account("acme-be"),
                    ],
                }
            )
        )
        # the daemon and every command get the file only: the history file is found from it
        daemon = DaemonProcess(
            ["run", "--config", str(config), "--web.config.file", str(web)], {}, port
        )
        by_flag = ["--config", str(config)]
        by_env = {"MONITOR_CONFIG_FILE": str(config)}
        try:
            daemon.wait_ready()
            history = state.parent / "history.db"
            daemon.wait_for(history.exists, 10, "the history file")

            # a typo in the account: refused, naming the accounts the configuration has
            typo = run_once([*mute_args("acme-nll"), *by_flag], {})
            assert typo.returncode == 2, typo.stderr
            assert "no account 'acme-nll'" in typo.stderr
            assert "acme-be, acme-de, acme-nl" in typo.stderr
            # an integration the account does not watch
            unwatched = run_once([*mute_args("acme-nl", "--integration", "3"), *by_flag], {})
            assert unwatched.returncode == 2
            assert "does not watch integration 3 (its integration_ids: 1, 2)" in unwatched.stderr
            # an account the other shard polls: only with --force
            elsewhere = run_once(mute_args("acme-be"), by_env)
            assert elsewhere.returncode == 2
            assert "polled by shard 1/2, not by this one (0/2)" in elsewhere.stderr
            forced = run_once([*mute_args("acme-be", "--force")], by_env)
            assert forced.returncode == 0, forced.stderr
            # a history file that does not exist: an error, and no file appears
            missing = tmp_path / "nowhere" / "history.db"
            wrong = run_once([*mute_args("acme-nl"), *by_flag, "--history", str(missing)], {})
            assert wrong.returncode == 2
            assert f"no history file {missing}" in wrong.stderr
            assert not missing.exists()
            assert not missing.parent.exists()

            # the right one, found through the configuration: the running daemon applies it
            made = run_once([*mute_args("acme-nl", "--integration", "2"), *by_flag], {})
            assert made.returncode == 0, made.stderr
            mute_id = made.stdout.split(":", 1)[0]
            daemon.wait_for(
                lambda: daemon_held(daemon, "acme-nl", "2") == 1, 10, "the mute applied"
            )
            listed = run_once(["mutes", "--output", "json"], by_env)
            assert listed.returncode == 0, listed.stderr
            assert {m["account"] for m in json.loads(listed.stdout)["mutes"]} == {
                "acme-nl",
                "acme-be",
            }
            report = run_once(
                [
                    "report",
                    "--config",
                    str(config),
                    "--account",
                    "acme-nl",
                    "--from",
                    (now - timedelta(hours=1)).isoformat(),
                    "--format",
                    "json",
                ],
                {},
            )
            assert report.returncode == 0, report.stderr
            assert json.loads(report.stdout)["account"] == "acme-nl"

            # the API refuses the same typo, with the same reason
            auth = ("alice", "pw-alice")
            refused = httpx.post(
                f"{daemon.base}/api/v1/mutes",
                auth=auth,
                json={"account": "acme-nll", "for": "1h", "reason": "typo"},
                timeout=5,
            )
            assert refused.status_code == 400
            assert "no account 'acme-nll'" in refused.json()["error"]
            not_here = httpx.post(
                f"{daemon.base}/api/v1/mutes",
                auth=auth,
                json={"account": "acme-be", "for": "1h", "reason": "another shard"},
                timeout=5,
            )
            assert not_here.status_code == 400  # this replica does not poll it
            unwatched_api = httpx.post(
                f"{daemon.base}/api/v1/mutes",
                auth=auth,
                json={"account": "acme-nl", "integration_id": 3, "for": "1h", "reason": "x"},
                timeout=5,
            )
            assert unwatched_api.status_code == 400
            assert "does not watch integration 3" in unwatched_api.json()["error"]

            ended = run_once(["unmute", mute_id, *by_flag], {})
            assert ended.returncode == 0, ended.stderr
            daemon.wait_for(
                lambda: daemon_held(daemon, "acme-nl", "2") is None, 10, "the unmute applied"
            )
            code, _ = daemon.terminate()
        finally:
            daemon.kill()
    assert code == 0


def daemon_held(daemon: DaemonProcess, account: str, integration_id: str) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    response = httpx.get(f"{daemon.base}/metrics", auth=("alice", "pw-alice"), timeout=5)
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if (
                sample.name == "integration_notifications_held"
                and sample.labels.get("account") == account
                and sample.labels.get("integration_id") == integration_id
            ):
                return float(sample.value)
    return None
