"""The collector: values computed at scrape time, series that come and go, promtool-clean."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from monitor.exporter.metrics import Metrics
from monitor.health import derive, utcnow
from monitor.sendcloud import parse_integration
from monitor.store import AccountSnapshot, Observation, ReadOutcome, Store
from tests.conftest import metric_samples, metric_value, require_binary, scraped

T0 = datetime(2026, 11, 27, 12, tzinfo=UTC)


def observation(
    integration_id: int, status: ReadOutcome = ReadOutcome.OK, **fields: object
) -> Observation:
    record = parse_integration({"id": integration_id, **fields})[0] if fields else None
    ok = status is ReadOutcome.OK and record is not None
    return Observation(
        integration_id=integration_id,
        status=status,
        record=record,
        health=derive(record, T0, 7200) if ok and record is not None else None,
    )


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return metric_samples(scraped(metrics))


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metric_value(scraped(metrics), name, **labels)


def store_with(*observations: Observation, account: str = "default") -> Store:
    store = Store([account])
    store.put(
        AccountSnapshot(
            account=account,
            integrations={o.integration_id: o for o in observations},
            cycles_completed=1,
            last_cycle_success=T0,
        )
    )
    return store


FAILING = {
    "shop_name": 'Shop "quoted" \\ name\nnewline',
    "shop_url": "https://shop.example.com/",
    "type": "shopify",
    "started_failing_at": "2026-11-27T11:00:00Z",
    "last_fetched_at": "2026-11-27T10:59:00Z",
    "service_point_enabled": True,
    "webhook_active": False,
    "feedback_type": "eager",
    "webhook_url": "https://hooks.example.com/?token=hook-secret",
}


def test_values_are_computed_at_scrape_time() -> None:
    store = store_with(observation(7, **FAILING))
    with freeze_time(T0) as frozen:
        metrics = Metrics(store, ["default"], clock=lambda: utcnow())
        assert value(metrics, "integration_failing_seconds", integration_id="7") == 3600
        frozen.tick(timedelta(minutes=5))  # no poll in between: the scrape still moves on
        assert value(metrics, "integration_failing_seconds", integration_id="7") == 3900
        assert value(metrics, "integration_fetch_staleness_seconds", integration_id="7") == 3960


def test_every_per_integration_series() -> None:
    store = store_with(observation(7, **FAILING))
    metrics = Metrics(store, ["default"], clock=lambda: T0 + timedelta(hours=2))
    assert value(metrics, "integration_failing", integration_id="7") == 1
    # the flag is decided at the read (1h01m then); only elapsed seconds move at scrape time
    assert value(metrics, "integration_fetch_stale", integration_id="7") == 0
    assert value(metrics, "integration_fetch_staleness_seconds", integration_id="7") == 10860
    assert value(metrics, "integration_fetch_stale_threshold_seconds", integration_id="7") == 7200
    assert (
        value(metrics, "integration_started_failing_timestamp_seconds", integration_id="7")
        == datetime(2026, 11, 27, 11, tzinfo=UTC).timestamp()
    )
    assert (
        value(metrics, "integration_last_fetched_timestamp_seconds", integration_id="7")
        == datetime(2026, 11, 27, 10, 59, tzinfo=UTC).timestamp()
    )
    assert value(metrics, "integration_up", integration_id="7") == 1
    assert value(metrics, "integration_not_found", integration_id="7") == 0
    assert value(
        metrics, "integration_last_poll_success_timestamp_seconds", integration_id="7"
    ) == (T0.timestamp())
    info = value(
        metrics,
        "integration_info",
        integration_id="7",
        shop_name=FAILING["shop_name"],  # type: ignore[arg-type]
        shop_url="https://shop.example.com/",
        integration_type="shopify",
        feedback_type="eager",
        service_point_enabled="true",
        webhook_active="false",
    )
    assert info == 1
    assert value(metrics, "integration_monitor_last_poll_success_timestamp_seconds") == (
        T0.timestamp()
    )
    assert value(metrics, "sendcloud_api_auth_ok") == 1


def test_webhook_url_is_never_exported() -> None:
    store = store_with(observation(7, **FAILING))
    text = scraped(Metrics(store, ["default"], clock=lambda: T0))
    assert "hook-secret" not in text
    assert "hooks.example.com" not in text
    assert not re.search(r'[{,]type="', text)  # the API's type is exported as integration_type


def test_not_failing_has_zero_and_no_start_timestamp() -> None:
    store = store_with(observation(8, last_fetched_at="2026-11-27T11:59:00Z"))
    metrics = Metrics(store, ["default"], clock=lambda: T0)
    assert value(metrics, "integration_failing_seconds", integration_id="8") == 0
    assert value(metrics, "integration_failing", integration_id="8") == 0
    assert (
        value(metrics, "integration_started_failing_timestamp_seconds", integration_id="8") is None
    )


def test_not_found_and_never_read() -> None:
    store = store_with(observation(9, ReadOutcome.NOT_FOUND), observation(10, ReadOutcome.ERROR))
    metrics = Metrics(store, ["default"], clock=lambda: T0)
    assert value(metrics, "integration_up", integration_id="9") == 0
    assert value(metrics, "integration_not_found", integration_id="9") == 1
    assert value(metrics, "integration_up", integration_id="10") == 0
    assert value(metrics, "integration_not_found", integration_id="10") == 0
    assert value(metrics, "integration_failing_seconds", integration_id="9") is None
    assert value(metrics, "integration_failing_seconds", integration_id="10") is None


def test_error_with_last_good_record_keeps_values_frozen_and_is_down() -> None:
    good = observation(7, **FAILING)
    kept = Observation(7, ReadOutcome.ERROR, good.record, good.health, error_reason="timeout")
    metrics = Metrics(store_with(kept), ["default"], clock=lambda: T0 + timedelta(hours=5))
    assert value(metrics, "integration_up", integration_id="7") == 0
    assert value(metrics, "integration_failing_seconds", integration_id="7") == 3600  # frozen
    assert value(metrics, "integration_failing", integration_id="7") == 1
    assert (
        value(metrics, "integration_last_poll_success_timestamp_seconds", integration_id="7")
        == T0.timestamp()
    )


def test_integrations_that_leave_lose_their_series() -> None:
    store = store_with(observation(7, **FAILING), observation(8, **FAILING))
    metrics = Metrics(store, ["default"], clock=lambda: T0)
    assert value(metrics, "integration_up", integration_id="8") == 1
    store.put(AccountSnapshot("default", {7: observation(7, **FAILING)}, 2, T0))
    assert value(metrics, "integration_up", integration_id="8") is None
    assert not [key for key in samples(metrics) if ("integration_id", "8") in key[1]]


def test_every_series_carries_the_account_also_with_one_account() -> None:
    metrics = Metrics(store_with(observation(7, **FAILING)), ["default"], clock=lambda: T0)
    per_account = [
        (name, labels)
        for name, labels in samples(metrics)
        if name.startswith(("integration_", "sendcloud_"))
        and not name.startswith(
            (
                "integration_monitor_alert",
                "integration_monitor_build",
                "integration_monitor_config",
                "integration_monitor_history",  # one history file per process
                "integration_monitor_mutes",  # and the mutes in it
                "integration_monitor_shop_probe",  # one probe per shop, whatever the account
            )
        )
    ]
    assert per_account
    for name, labels in per_account:
        assert ("account", "default") in labels, name


def test_several_accounts() -> None:
    store = Store(["eu", "us"])
    store.put(AccountSnapshot("eu", {7: observation(7, **FAILING)}, 1, T0))
    metrics = Metrics(store, ["eu", "us"], clock=lambda: T0)
    assert value(metrics, "integration_failing_seconds", account="eu", integration_id="7") == 3600
    assert value(metrics, "sendcloud_api_auth_ok", account="us") == 1
    metrics.client_events("us").request("get_integration", "200", 0.1)
    metrics.observe_cycle("us", 0.2, True)
    assert (
        value(
            metrics,
            "sendcloud_api_requests_total",
            account="us",
            endpoint="get_integration",
            code="200",
        )
        == 1
    )
    assert value(metrics, "integration_monitor_poll_duration_seconds_count", account="us") == 1


def test_self_metrics() -> None:
    metrics = Metrics(store_with(), ["default"], clock=lambda: T0)
    observe = metrics.client_events("default").request
    observe("list_integrations", "200", 0.3)
    observe("get_integration", "network_error", 5.0)
    metrics.observe_cycle("default", 1.5, False)
    assert (
        value(metrics, "sendcloud_api_requests_total", endpoint="list_integrations", code="200")
        == 1
    )
    assert (
        value(metrics, "sendcloud_api_request_duration_seconds_count", endpoint="get_integration")
        == 1
    )
    assert value(metrics, "integration_monitor_polls_total", outcome="error") == 1
    assert value(metrics, "integration_monitor_polls_total", outcome="success") == 0
    assert value(metrics, "integration_monitor_poll_duration_seconds_sum") == 1.5
    build = [k for k in samples(metrics) if k[0] == "integration_monitor_build_info"]
    assert len(build) == 1
    assert ("version", __import__("monitor").__version__) in build[0][1]


def exposition(metrics: Metrics) -> bytes:
    return scraped(metrics).encode()


@pytest.mark.parametrize("accounts", [["default"], ["eu", "us"]])
def test_promtool_check_metrics_is_clean(accounts: list[str]) -> None:
    promtool = require_binary("promtool")
    store = Store(accounts)
    for account in accounts:
        store.put(
            AccountSnapshot(
                account,
                {
                    7: observation(7, **FAILING),
                    8: observation(8, ReadOutcome.NOT_FOUND),
                    9: observation(9, last_fetched_at="2026-11-27T11:00:00Z"),
                },
                1,
                T0,
            )
        )
    metrics = Metrics(store, accounts, clock=lambda: T0)
    for account in accounts:
        metrics.client_events(account).request("get_integration", "200", 0.1)
        metrics.observe_cycle(account, 0.5, True)
        metrics.scheduler_event(account, "missed")
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition(metrics),
        capture_output=True,
        timeout=30,
        check=False,
    )
    findings = (result.stdout + result.stderr).decode()
    assert result.returncode == 0, findings
    assert findings.strip() == ""


def test_a_removed_account_loses_every_series_and_a_new_one_starts_at_zero() -> None:
    """Counters and histograms of a removed account used to stay after a reload; a new account
    had no error or throttle series until its first one, so increase() missed it."""
    store = Store(["eu", "us"])
    metrics = Metrics(store, ["eu", "us"], poll_intervals={"eu": 60, "us": 60})
    for account in ("eu", "us"):
        events = metrics.client_events(account)
        events.request("list_integrations", "200", 0.1)
        events.error("list_integrations", "timeout")
        events.throttled(1.0)
        events.budget_wait(0.5)
        metrics.observe_cycle(account, 0.2, True)
        metrics.scheduler_event(account, "missed")
    text = generate_latest(metrics.own).decode()
    assert 'sendcloud_api_throttled_total{account="us"} 1.0' in text
    metrics.remove_account("us")
    metrics.add_account("asia", 60)
    families = list(text_string_to_metric_families(generate_latest(metrics.own).decode()))
    accounts = {s.labels.get("account") for f in families for s in f.samples} - {None}
    assert accounts == {"eu", "asia"}
    zero = {
        (s.name, s.labels.get("endpoint"), s.labels.get("reason"))
        for f in families
        for s in f.samples
        if s.labels.get("account") == "asia" and s.value == 0
    }
    assert ("sendcloud_api_throttled_total", None, None) in zero
    assert ("sendcloud_api_errors_total", "list_integrations", "invalid_json") in zero
    assert ("sendcloud_api_errors_total", "poll", "internal_error") in zero
