"""The cached /metrics exposition says exactly what prometheus-client's own rendering says."""

from __future__ import annotations

import gzip
import subprocess
import zlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.exporter.exposition import Exposition, Segment, crc32_combine, inflated, joined
from monitor.exporter.metrics import Metrics
from monitor.exporter.server import HttpServer
from monitor.health import derive
from monitor.probes import Outcome, Result, ShopProbe
from monitor.sendcloud import parse_integration
from monitor.sendcloud.stream import Counts
from monitor.store import AccountSnapshot, FailedCheck, Findings, Observation, ReadOutcome, Store
from tests.conftest import FakeClock, metric_samples, require_binary
from tests.exporter.reference import reference_text

T0 = datetime(2026, 11, 27, 12, tzinfo=UTC)
HOUR = (T0 - timedelta(hours=1)).isoformat()


def observation(integration_id: int, status: ReadOutcome, **fields: Any) -> Observation:
    record = parse_integration({"id": integration_id, **fields})[0]
    health = derive(record, T0 - timedelta(minutes=5), 7200)
    return Observation(integration_id, status, record, health, error_reason=None)


def world(name: str = 'Shop "quoted" \\ and\nnewline') -> tuple[Store, Metrics, FakeClock]:
    store = Store(["eu", "us"])
    observations = [
        observation(1, ReadOutcome.OK, shop_name=name, started_failing_at=HOUR, type="shopify"),
        observation(2, ReadOutcome.OK, last_fetched_at=(T0 - timedelta(hours=3)).isoformat()),
        observation(3, ReadOutcome.ERROR, started_failing_at=HOUR),  # frozen
        Observation(4, ReadOutcome.NOT_FOUND, None, None, error_reason="not_found"),
        Observation(5, ReadOutcome.ERROR, None, None, error_reason="timeout"),  # never read
        observation(6, ReadOutcome.OK),  # no timestamps at all
    ]
    # the log stream's counters: shop 1 logged three times, the others start at 0
    counts = Counts({1: 3}, {1: T0 - timedelta(minutes=10)})
    integrations = {o.integration_id: o for o in observations}
    # shop 1's certificate expires in 5 days; shop 2's shop untrusted twice, and misconfigured
    probe = ShopProbe("https://a:443", Outcome(Result.OK, T0, T0 + timedelta(days=5), "CA"))
    failing = ShopProbe("https://b:443", Outcome(Result.UNTRUSTED, T0), 2, T0)
    findings = {
        1: Findings(probe),
        2: Findings(failing, (FailedCheck("feedback_off", "off"), FailedCheck('a"b', "x"))),
        3: Findings(probe),  # frozen: its last record's shop
    }
    store.put(
        AccountSnapshot(
            "eu",
            integrations,
            3,
            T0,
            exception_counts=counts,
            findings=findings,
            unmonitored=(8, 9),
        )
    )
    store.put(AccountSnapshot("us", {}, 1, None, auth_ok=False, account_error="auth_failed"))
    clock = FakeClock(T0)
    metrics = Metrics(store, ["eu", "us"], clock=clock, poll_intervals={"eu": 60, "us": 60})
    metrics.client_events("eu").request("get_integration", "200", 0.2)
    metrics.observe_cycle("eu", 1.0, True)
    return store, metrics, clock


def test_the_shop_probe_and_check_series() -> None:
    store, metrics, clock = world()
    ours = metric_samples(exposed(Exposition(store, metrics.own, clock)).decode())

    def of(name: str, integration_id: int, **extra: str) -> float | None:
        labels = {"account": "eu", "integration_id": str(integration_id), **extra}
        return ours.get((name, frozenset(labels.items())))

    assert of("integration_shop_probe_success", 1) == 1
    assert of("integration_shop_probe_result", 1, result="ok") == 1
    assert of("integration_shop_certificate_expiry_timestamp_seconds", 1) == (
        (T0 + timedelta(days=5)).timestamp()
    )
    assert of("integration_shop_probe_consecutive_failures", 2) == 2
    assert of("integration_shop_probe_success", 2) == 0
    assert of("integration_shop_probe_result", 2, result="untrusted") == 1
    assert of("integration_shop_probe_result", 2, result="ok") is None  # only the current one
    assert of("integration_shop_certificate_expiry_timestamp_seconds", 2) is None
    assert of("integration_misconfigured", 2, check="feedback_off") == 1
    assert of("integration_misconfigured", 1, check="feedback_off") is None  # absent: passes
    assert of("integration_shop_probe_success", 6) is None  # not probed
    unmonitored = "integration_monitor_unmonitored_integrations"
    assert ours[(unmonitored, frozenset({("account", "eu")}))] == 2
    assert (unmonitored, frozenset({("account", "us")})) not in ours  # not known: absent


def exposed(exposition: Exposition) -> bytes:
    fixed, live = exposition.parts()
    return fixed.text() + live


def test_same_families_samples_and_values_as_prometheus_client() -> None:
    store, metrics, clock = world()
    exposition = Exposition(store, metrics.own, clock)
    for minutes in (0, 7, 90):  # the elapsed values move with the scrape's time
        clock.now = T0 + timedelta(minutes=minutes)
        ours = metric_samples(exposed(exposition).decode())
        reference = metric_samples(reference_text(store, metrics, clock))
        assert ours == reference
    eu = frozenset({("account", "eu"), ("integration_id", "1")})
    assert ours[("integration_exceptions_total", eu)] == 3
    assert (
        ours[("integration_last_exception_timestamp_seconds", eu)]
        == (T0 - timedelta(minutes=10)).timestamp()
    )
    quiet = frozenset({("account", "eu"), ("integration_id", "2")})
    assert ours[("integration_exceptions_total", quiet)] == 0  # initialised at 0
    failing = {k: v for k, v in ours.items() if k[0] == "integration_failing_seconds"}
    assert (
        failing[
            ("integration_failing_seconds", frozenset({("account", "eu"), ("integration_id", "1")}))
        ]
        == 3600 + 90 * 60
    )
    assert (
        failing[
            ("integration_failing_seconds", frozenset({("account", "eu"), ("integration_id", "3")}))
        ]
        == 3300
    )  # frozen


def test_the_fixed_part_is_rendered_once_per_poll() -> None:
    store, metrics, clock = world()
    exposition = Exposition(store, metrics.own, clock)
    first, _ = exposition.parts()
    clock.advance(30)
    again, _ = exposition.parts()
    assert again is first  # a scrape between polls renders only the elapsed seconds
    snapshot = store.get("eu")
    next_poll = replace(snapshot, integrations=dict(snapshot.integrations), cycles_completed=4)
    store.put(next_poll)
    after, _ = exposition.parts()
    assert after is not first
    assert after.text() == first.text()  # nothing changed but the snapshot object


def test_gzip_is_one_member_of_a_cached_block_and_a_fresh_one() -> None:
    store, metrics, clock = world()
    exposition = Exposition(store, metrics.own, clock)
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen.update(status=status, headers=dict(headers))

    [body] = exposition({"HTTP_ACCEPT_ENCODING": "gzip, deflate"}, start_response)
    assert seen["headers"]["Content-Encoding"] == "gzip"
    assert seen["headers"]["Content-Type"].startswith("text/plain; version=0.0.4")
    assert gzip.decompress(body) == exposed(exposition)
    single = zlib.decompressobj(zlib.MAX_WBITS | 16)  # what httpx and most clients do
    assert single.decompress(body) == exposed(exposition)
    assert single.eof
    assert single.unused_data == b""  # one member, not several
    plain = b"".join(exposition({}, start_response))
    assert "Content-Encoding" not in seen["headers"]
    assert plain == exposed(exposition)
    assert int(seen["headers"]["Content-Length"]) == len(plain)


def test_promtool_check_metrics_is_clean() -> None:
    promtool = require_binary("promtool")
    store, metrics, clock = world()
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=exposed(Exposition(store, metrics.own, clock)),
        capture_output=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@settings(max_examples=60)
@given(name=st.text(), url=st.text(), kind=st.text(max_size=20))
def test_any_string_from_the_api_renders_like_prometheus_client(
    name: str, url: str, kind: str
) -> None:
    store, metrics, clock = world(name)
    snapshot = store.get("eu")
    odd = observation(9, ReadOutcome.OK, shop_name=name, shop_url=url, type=kind)
    store.put(AccountSnapshot("eu", {**snapshot.integrations, 9: odd}, 4, T0))
    exposition = Exposition(store, metrics.own, clock)
    assert metric_samples(exposed(exposition).decode()) == metric_samples(
        reference_text(store, metrics, clock)
    )


@settings(max_examples=200)
@given(texts=st.lists(st.binary(max_size=3000), max_size=6))
def test_segments_concatenate_into_one_stream_with_the_right_crc(texts: list[bytes]) -> None:
    whole = joined(Segment.of(text) for text in texts)
    expected = b"".join(texts)
    assert whole.text_size == len(expected)
    assert whole.crc == zlib.crc32(expected)
    assert zlib.decompressobj(-zlib.MAX_WBITS).decompress(whole.deflated) == expected
    assert b"".join(inflated(whole.deflated, chunk_bytes=512)) == expected


def test_crc32_combine_across_the_zero_buffer_size() -> None:
    first, second = b"a" * 10, bytes(range(256)) * 5000  # longer than the 1 MiB zero buffer
    assert crc32_combine(zlib.crc32(first), zlib.crc32(second), len(second)) == zlib.crc32(
        first + second
    )


def test_one_account_polling_does_not_recompress_the_others() -> None:
    store, metrics, clock = world()
    exposition = Exposition(store, metrics.own, clock)
    first, _ = exposition.parts()
    us = store.get("us")
    store.put(AccountSnapshot("us", {}, us.cycles_completed + 1, T0, auth_ok=True))
    after, _ = exposition.parts()
    eu_segment = exposition._accounts["eu"].fixed["integration_info"]
    assert eu_segment.deflated in after.segment.deflated  # reused as it was
    assert b'sendcloud_api_auth_ok{account="us"} 1.0' in after.text()
    assert b'sendcloud_api_auth_ok{account="us"} 0.0' in first.text()


@pytest.mark.parametrize(
    ("accept_encoding", "compressed"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("br;q=1.0, gzip;q=0.5", True),
        ("*", True),
        ("gzip;q=0", False),
        ("gzip;q=0.0, deflate", False),
        ("*;q=0", False),
        ("identity", False),
        ("", False),
    ],
)
def test_gzip_only_when_accepted_and_caches_told_it_varies(
    accept_encoding: str, compressed: bool
) -> None:
    store, metrics, clock = world()
    server = HttpServer("127.0.0.1", 0, Exposition(store, metrics.own, clock))
    server.start()
    try:
        response = httpx.get(
            f"http://127.0.0.1:{server.port}/metrics",
            headers={"Accept-Encoding": accept_encoding},
        )
    finally:
        server.stop()
    assert response.headers["Vary"] == "Accept-Encoding"
    assert (response.headers.get("Content-Encoding") == "gzip") is compressed
    assert "integration_up" in response.text  # httpx decodes gzip: the same text either way
