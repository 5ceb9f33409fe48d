"""Features where they meet, tested the way production combines them: an empty shard with an
Alertmanager, an auth back-off longer than Alertmanager's keep-alive, a state file of a 2-shard run
restored on 3 shards, a restart of many accounts on long intervals under the shipped rules, and
answers that escape the error model in the middle of a poll."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from monitor.alerting.rules import AlertRules
from monitor.alerting.service import Alerter
from monitor.notify.sinks import WebhookSink
from monitor.settings import shard_of
from monitor.simulator import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, SimIntegration, Simulator
from monitor.store import AccountSnapshot
from tests.conftest import FakeClock, free_port, require_binary
from tests.daemon_process import DaemonProcess, monitor_env
from tests.notify.test_sinks import alertmanager
from tests.receivers import Receiver, running
from tests.system.test_stack import process_group, ready, start_prometheus, wait

__all__ = ["alertmanager", "process_group"]  # fixtures, imported for pytest


def am_active(url: str) -> set[str]:
    response = httpx.get(url + "/api/v2/alerts", params={"active": "true"}, timeout=5)
    return {a["labels"]["alertname"] for a in response.json() if a["status"]["state"] == "active"}


def write_config(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.timeout(90)
def test_an_auth_failure_longer_than_the_keep_alive_never_leaves_alertmanager(
    tmp_path: Path, alertmanager: str
) -> None:
    """Rejected keys, a 30 s back-off (no evaluation in it) and endsAt only 20 s ahead (4 x the
    5 s interval): only the resend timer keeps SendcloudAuthFailing active in Alertmanager."""
    with Simulator([SimIntegration(1, "healthy", "Shop")]) as sim:
        config = write_config(
            tmp_path / "monitor.yaml",
            {
                "defaults": {"auth_retry_seconds": 30},
                "alerting": {"alertmanager": {"url": alertmanager, "resend_interval_seconds": 1}},
            },
        )
        port = free_port()
        env = monitor_env(sim, port, secret="rejected-secret", MONITOR_CONFIG_FILE=str(config))
        daemon = DaemonProcess(["run"], env, port)
        try:
            wait(lambda: "SendcloudAuthFailing" in am_active(alertmanager), 20, "the alert")
            first = time.monotonic()
            while time.monotonic() - first < 35:  # past the back-off and past endsAt
                assert "SendcloudAuthFailing" in am_active(alertmanager), "left Alertmanager"
                time.sleep(0.5)
            polls = sum(1 for path in sim.requests if path.startswith("/integrations"))
            assert polls <= 3  # the back-off held: the alert lived on resends, not on polls
            code, _ = daemon.terminate()
        finally:
            daemon.kill()
    assert code == 0


def other_shard(name: str, count: int) -> int:
    return (shard_of(name, count) + 1) % count


@pytest.mark.timeout(60)
def test_an_empty_shard_with_alertmanager_starts_is_ready_and_resumes_on_reload(
    tmp_path: Path, alertmanager: str
) -> None:
    """The shipped StatefulSet gives every pod but one an empty shard."""
    shard = f"{other_shard('default', 2)}/2"
    with Simulator([SimIntegration(1, "healthy", "Shop")]) as sim:
        config = write_config(
            tmp_path / "monitor.yaml", {"alerting": {"alertmanager": {"url": alertmanager}}}
        )
        port = free_port()
        env = monitor_env(sim, port, MONITOR_CONFIG_FILE=str(config), MONITOR_SHARD=shard)
        daemon = DaemonProcess(["run"], env, port)
        try:
            daemon.wait_ready()
            assert daemon.get("/metrics").status_code == 200
            assert daemon.metric("integration_monitor_build_info", shard=shard) == 1
            assert daemon.metric("integration_up") is None  # nothing to poll
            assert len(daemon.events("no_accounts_to_poll")) == 1
            # a reload adds an account of this shard: it polls at once
            name = next(f"shop-{i}" for i in range(100) if f"{shard_of(f'shop-{i}', 2)}/2" == shard)
            account = {"name": name, "public_key": DEMO_PUBLIC_KEY, "secret_key": DEMO_SECRET_KEY}
            write_config(
                config,
                {
                    "alerting": {"alertmanager": {"url": alertmanager}},
                    "accounts": [{**account, "api_url": sim.url, "integration_ids": "all"}],
                },
            )
            env.pop("SENDCLOUD_PUBLIC_KEY")
            reloaded = httpx.post(daemon.base + "/-/reload", timeout=10)
            assert reloaded.status_code == 200, reloaded.text
            daemon.wait_for(
                lambda: daemon.metric("integration_up", account=name, integration_id="1") == 1,
                10,
                "the added account's first poll",
            )
            assert len(daemon.events("no_accounts_to_poll")) == 1  # said once
            assert not [e for e in daemon.events() if e.get("level") == "error"]
            code, _ = daemon.terminate()
        finally:
            daemon.kill()
    assert code == 0


def failing_snapshot(account: str, now: datetime) -> AccountSnapshot:
    from tests.alerting.test_service import failing_snapshot as build

    return build(account, True, now)


async def test_a_state_file_of_two_shards_restored_on_three_resolves_what_moved(
    tmp_path: Path,
) -> None:
    """Going from 2 to 3 replicas: the accounts that moved away end their alerts in the process
    that held them — once, where its webhook receiver hears it — and the file forgets them."""
    state_file = tmp_path / "alerts.json"
    names = [f"merchant-{i}" for i in range(40)]
    mine = [n for n in names if shard_of(n, 2) == 0]
    kept = [n for n in mine if shard_of(n, 3) == 0]
    moved = [n for n in mine if shard_of(n, 3) != 0]
    assert kept
    assert moved
    clock = FakeClock(datetime.now(UTC))
    rules = AlertRules(failing_for_seconds=0)
    first = Alerter(
        rules, [], clock=clock, ids_configured=dict.fromkeys(mine, False), state_file=state_file
    )
    for name in mine:
        await first.on_snapshot(failing_snapshot(name, clock()))
    await first.aclose()
    with running(Receiver()) as receiver:
        deliveries: list[tuple[str, str]] = []
        sink = WebhookSink(
            "ops",
            receiver.url,
            observe=lambda sink, outcome: deliveries.append((sink, outcome)),
            depth=lambda sink, depth: None,
        )
        second = Alerter(
            rules,
            [sink],
            clock=clock,
            ids_configured=dict.fromkeys(kept, False),
            state_file=state_file,
        )
        await second.aclose()
        resolved = [e for body in receiver.bodies for e in body["events"]]
    assert sorted(e["account"] for e in resolved) == sorted(moved)
    assert {(e["status"], e["alert"]) for e in resolved} == {("resolved", "IntegrationFailing")}
    restored = Alerter(
        rules, [], clock=clock, ids_configured=dict.fromkeys(kept, False), state_file=state_file
    )
    assert sorted({k.account for k in restored.states}) == sorted(kept)
    await restored.aclose()


def test_adding_one_replica_moves_about_one_in_n_plus_one_accounts() -> None:
    """Rendezvous hashing: from n to n + 1 replicas only the accounts the new replica wins move
    (about 1/(n + 1)); a modulo of the same hash would move about n/(n + 1) of them."""
    names = [f"merchant-{i}" for i in range(3000)]
    for n in (1, 2, 3, 7):
        moved = sum(shard_of(name, n) != shard_of(name, n + 1) for name in names) / len(names)
        assert abs(moved - 1 / (n + 1)) < 0.04, (n, moved)
        assert all(
            shard_of(name, n + 1) == n
            for name in names
            if shard_of(name, n) != shard_of(name, n + 1)
        )


@pytest.mark.timeout(90)
def test_a_restart_of_many_accounts_on_long_intervals_pends_no_shipped_rule(
    tmp_path: Path, process_group: list[subprocess.Popen[bytes]]
) -> None:
    """40 accounts at a 900 s interval against a real Prometheus with the shipped rules (their
    own `for:` durations): ready within seconds, and no rule pending or firing."""
    require_binary("prometheus")  # before anything starts: skipped on a laptop, failed in CI
    with Simulator([SimIntegration(1, "healthy", "Shop")]) as sim:
        key = {"public_key": DEMO_PUBLIC_KEY, "secret_key": DEMO_SECRET_KEY, "api_url": sim.url}
        config = write_config(
            tmp_path / "monitor.yaml",
            {
                "defaults": {"poll_interval_seconds": 900},
                "accounts": [{"name": f"merchant-{i}", **key} for i in range(40)],
            },
        )
        monitor_port, prom_port = free_port(), free_port()
        env = {
            "MONITOR_CONFIG_FILE": str(config),
            "MONITOR_LISTEN_ADDRESS": f"127.0.0.1:{monitor_port}",
        }
        started = time.monotonic()
        daemon = DaemonProcess(["run"], env, monitor_port)
        try:
            shipped = Path(__file__).parents[2] / "deploy" / "prometheus" / "rules.yml"
            start_prometheus(process_group, tmp_path, prom_port, monitor_port, rules=shipped)
            daemon.wait_ready(timeout=30)
            assert time.monotonic() - started < 30
            prom = f"http://127.0.0.1:{prom_port}"
            wait(lambda: ready(prom + "/-/ready"), 30, "prometheus")

            def scraped() -> bool:
                query = httpx.get(
                    prom + "/api/v1/query",
                    params={"query": "count(integration_monitor_polling_start_timestamp_seconds)"},
                    timeout=5,
                ).json()
                result = query["data"]["result"]
                return bool(result) and result[0]["value"][1] == "40"

            wait(scraped, 30, "the first scrapes")
            time.sleep(2)  # the evaluations before the first scrape saw absent(up): gone now
            end = time.monotonic() + 8  # several rule evaluations
            while time.monotonic() < end:
                alerts = httpx.get(prom + "/api/v1/alerts", timeout=5).json()["data"]["alerts"]
                assert alerts == [], alerts
                time.sleep(0.5)
            code, _ = daemon.terminate()
        finally:
            daemon.kill()
    assert code == 0


@pytest.mark.parametrize("fault", ["bad_link", "bad_retry_after"])
@pytest.mark.timeout(60)
def test_an_answer_that_escapes_the_error_model_leaves_the_account_unreadable(
    fault: str,
) -> None:
    """A malformed Link header or a Retry-After of non-ASCII digits used to raise out of the
    client: the poll died and /metrics kept integration_up 1 with live-extended values."""
    shops = [SimIntegration(i, "healthy", f"Shop {i}") for i in range(1, 4)]
    with Simulator(shops) as sim:
        port = free_port()
        daemon = DaemonProcess(["run"], monitor_env(sim, port), port)
        try:
            daemon.wait_ready()
            assert daemon.metric("integration_up", integration_id="1") == 1
            sim.inject_fault(kind=fault, count=10**6)
            daemon.wait_for(
                lambda: daemon.metric("integration_up", integration_id="1") == 0,
                15,
                "the integrations unreadable",
            )
            reason = "invalid_link" if fault == "bad_link" else "rate_limited"
            assert (daemon.metric("sendcloud_api_errors_total", reason=reason) or 0) > 0
            frozen = daemon.metric("integration_fetch_staleness_seconds", integration_id="1")
            time.sleep(1.5)
            assert (
                daemon.metric("integration_fetch_staleness_seconds", integration_id="1") == frozen
            )
            assert not daemon.events("poll_crashed")
            assert not daemon.events("poll_cycle_crashed")  # typed, not an internal error
            sim.clear_faults()
            daemon.wait_for(
                lambda: daemon.metric("integration_up", integration_id="1") == 1,
                15,
                "the recovery",
            )
            code, _ = daemon.terminate()
        finally:
            daemon.kill()
    assert code == 0


@pytest.mark.timeout(60)
def test_a_failing_integration_that_becomes_unreadable_stays_failing_everywhere() -> None:
    """Failing for 2 h, then its record arrives corrupt: the page, /status.json and the metrics keep
    its last known state (failing, sorted first) with an "unreadable since" marker, while its
    alert keeps firing; a stale shop that is readable sorts after it."""
    now = datetime.now(UTC)
    shops = [
        SimIntegration(1, "failing", "Failing shop", started_failing_at=now - timedelta(hours=2)),
        SimIntegration(2, "stale", "Stale shop", last_fetched_at=now - timedelta(days=3)),
        SimIntegration(3, "healthy", "Healthy shop"),
    ]
    with Simulator(shops) as sim:
        port = free_port()
        daemon = DaemonProcess(["run"], monitor_env(sim, port), port)
        try:
            daemon.wait_ready()
            # its record now arrives with started_failing_at neither a timestamp nor null
            sim.inject_fault(kind="bad_failing_at", count=10**6, integration_id=1)
            daemon.wait_for(
                lambda: daemon.metric("integration_up", integration_id="1") == 0,
                15,
                "integration 1 unreadable",
            )
            document = daemon.get("/status.json").json()
            rows = document["integrations"]
            assert [(r["integration_id"], r["state"]) for r in rows] == [
                (1, "failing"),
                (2, "stale"),
                (3, "healthy"),
            ]
            assert rows[0]["unreadable_since"] is not None
            assert rows[1]["unreadable_since"] is None
            assert document["summary"]["unreadable"] == 1
            assert rows[0]["alerts"] == ["IntegrationFailing"]
            assert daemon.metric("integration_failing", integration_id="1") == 1
            page = daemon.get("/").text
            assert page.index("Failing shop") < page.index("Stale shop")
            assert "unreadable since" in page
            code, _ = daemon.terminate()
        finally:
            daemon.kill()
    assert code == 0
