"""Property-based tests: arbitrary API data never crashes the parser, never produces negative
durations, never breaks the exposition format and never forges a log line."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from monitor import logs
from monitor.alerting.rules import INTEGRATION_FAILING, AlertKey, AlertState, Context
from monitor.alerting.service import _lasting, _persistent_change
from monitor.exporter.metrics import Metrics
from monitor.health import derive
from monitor.sendcloud import ApiError, Integration, SendcloudClient, parse_integration, public_url
from monitor.sendcloud.records import HEALTH_FIELDS, _public_url_parsed, parse_page
from monitor.store import AccountSnapshot, Observation, ReadOutcome, Store
from tests.conftest import scraped

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = [
    "id",
    "shop_name",
    "shop_url",
    "type",
    "started_failing_at",
    "last_fetched_at",
    "created_at",
    "updated_at",
    "service_point_enabled",
    "webhook_active",
    "feedback_type",
]
records = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), json_values, max_size=12)
timestamps = st.datetimes(timezones=st.just(UTC))  # any year the API could send


@given(records)
def test_parser_accepts_or_rejects_cleanly(data: dict[str, Any]) -> None:
    reason = None
    try:
        record, dropped = parse_integration(data)
    except ApiError as exc:
        reason = exc.reason
    else:
        assert isinstance(record.id, int)
        assert "id" not in dropped
        assert not HEALTH_FIELDS & set(dropped)  # a field that decides health is never nulled
        for name in dropped:  # an invalid optional field is null, never a crash
            assert getattr(record, name) is None
    # invalid_field: a field that decides health was neither RFC 3339 nor null
    assert reason in (None, "invalid_record", "invalid_field")


@given(st.lists(records, max_size=5))
def test_a_page_validated_whole_equals_its_records_validated_one_by_one(
    items: list[dict[str, Any]],
) -> None:
    """The fast path (one validate_json of the page's bytes) never says anything the record
    by record path would not: it gives the same records, or gives way to it."""
    whole = parse_page(json.dumps({"data": items}).encode())
    if whole is None:  # something in the page is not clean: the slow path tells what
        return
    assert whole == [parse_integration(item)[0] for item in items]
    assert all(parse_integration(item)[1] == [] for item in items)


@given(
    st.text()
    | st.builds(
        "{}://{}{}".format,
        st.sampled_from(["http", "https", "HTTPS", "ftp"]),
        st.text("abcXYZ019.-:@[]", max_size=12),
        st.text("/abc?#@ \t%\x00\x7f", max_size=12),
    )
)
def test_the_shortcut_for_public_urls_gives_what_parsing_gives(url: str) -> None:
    assert public_url(url) == _public_url_parsed(url)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([200, 201, 204, 301, 400, 404, 418, 500, 503]),
)
def test_client_turns_any_body_into_a_record_or_an_api_error(body: bytes, status: int) -> None:
    async def run() -> None:
        transport = httpx.MockTransport(lambda request: httpx.Response(status, content=body))

        client = SendcloudClient("https://api.test/api/v3", "p", "s", transport=transport)
        with contextlib.suppress(ApiError):
            await client.get_integration(1)
        with contextlib.suppress(ApiError):
            await client.list_integrations()
        await client.aclose()

    asyncio.run(run())


@given(
    started=st.none() | timestamps,
    fetched=st.none() | timestamps,
    created=st.none() | timestamps,
    now=timestamps,
    threshold=st.floats(min_value=1, max_value=10**7),
)
def test_derived_durations_are_never_negative(
    started: datetime | None,
    fetched: datetime | None,
    created: datetime | None,
    now: datetime,
    threshold: float,
) -> None:
    record = Integration(
        id=1, started_failing_at=started, last_fetched_at=fetched, created_at=created
    )
    health = derive(record, now, threshold)
    assert health.failing_seconds >= 0
    assert health.failing_seconds_at(now) >= 0
    assert health.failing == (started is not None)
    if health.staleness_seconds is None:
        assert fetched is None
        assert created is None
        assert not health.stale
    else:
        assert health.staleness_seconds >= 0
        assert health.stale == (health.staleness_seconds > threshold)


@settings(max_examples=80)
@given(name=st.text(), url=st.text(), kind=st.text(max_size=20))
def test_api_strings_cannot_break_the_exposition(name: str, url: str, kind: str) -> None:
    now = datetime(2026, 11, 27, tzinfo=UTC)
    record, _ = parse_integration(
        {
            "id": 5,
            "shop_name": name,
            "shop_url": url,
            "type": kind,
            "started_failing_at": now - timedelta(hours=1),
        }
    )
    store = Store(["default"])
    store.put(
        AccountSnapshot(
            "default", {5: Observation(5, ReadOutcome.OK, record, derive(record, now, 60))}, 1, now
        )
    )
    text = scraped(Metrics(store, ["default"], clock=lambda: now))
    families = {f.name: f for f in text_string_to_metric_families(text)}
    [info] = families["integration_info"].samples
    assert info.labels["shop_name"] == name
    assert info.labels["shop_url"] == public_url(url)
    assert info.labels["integration_type"] == kind
    [failing] = families["integration_failing_seconds"].samples
    assert failing.value == 3600
    assert failing.labels == {"account": "default", "integration_id": "5"}  # nothing injected


@settings(max_examples=80)
@given(st.text().filter(lambda text: "://" not in text))  # URLs lose their query strings
def test_api_strings_cannot_forge_log_lines(name: str) -> None:
    stream = io.StringIO()
    logs.configure("json", stream=stream)
    try:
        structlog.get_logger("t").warning("alert", shop_name=name, summary=f"about {name}")
    finally:
        logs.configure("json")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["event"] == "alert"
    assert entry["shop_name"] == logs.scrubber.scrub(name)


secret_text = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.~!$&'()*+,;=%", min_size=8)


@given(user=secret_text, password=secret_text, token=secret_text)
def test_no_userinfo_or_query_survives_a_shop_url(user: str, password: str, token: str) -> None:
    for url in (
        f"https://{user}:{password}@shop.example.com/store?token={token}",
        f"{user}:{password}@shop.example.com?{token}",
        f"https://shop.example.com/#{token}",
    ):
        shown = public_url(url)
        for secret in (password, token):
            assert secret not in shown.replace("shop.example.com", "")


def _persistent_by_copy(states: dict[Any, Any]) -> dict[Any, Any]:
    """The definition of "worth a write" the alerter's field-by-field comparison implements."""
    from dataclasses import replace

    return {
        k: replace(
            s,
            context=replace(s.context, failing_seconds=None, staleness_seconds=None),
            observations=0 if s.firing else s.observations,
        )
        for k, s in states.items()
    }


_times = st.sampled_from([None, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)])
_contexts = st.builds(
    Context,
    shop_name=st.sampled_from([None, "a", "b"]),
    shop_url=st.sampled_from([None, "https://a.example"]),
    integration_type=st.sampled_from([None, "shopify"]),
    started_failing_at=_times,
    failing_seconds=st.sampled_from([None, 1.0, 2.0]),
    last_fetched_at=_times,
    staleness_seconds=st.sampled_from([None, 1.0, 2.0]),
    detail=st.sampled_from([None, "3 exception logs"]),
)
_keys = st.sampled_from([AlertKey(INTEGRATION_FAILING, "a", i) for i in range(3)])
_states = st.dictionaries(
    _keys,
    st.builds(
        AlertState,
        key=st.just(AlertKey(INTEGRATION_FAILING, "a", 0)),
        since=st.sampled_from([datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC)]),
        observations=st.integers(1, 3),
        firing_since=_times,
        last_notified=_times,
        severity=st.sampled_from(["warning", "critical"]),
        context=_contexts,
        episode=_times,
    ),
    max_size=3,
)


@given(_states, _states)
def test_alert_state_changes_worth_a_write_are_those_of_the_copying_definition(
    before: dict[AlertKey, AlertState], after: dict[AlertKey, AlertState]
) -> None:
    expected = _persistent_by_copy(before) != _persistent_by_copy(after)
    assert _persistent_change(before, after) is expected
    assert _persistent_change(before, dict(before)) is False


def test_the_write_comparison_knows_every_context_field() -> None:
    """A new Context field must be added to the comparison (or to the elapsed ones)."""
    from dataclasses import fields

    elapsed = {"failing_seconds", "staleness_seconds", "certificate_days_left"}
    context = Context(**{f.name: f"value of {f.name}" for f in fields(Context)})  # type: ignore[arg-type]
    assert len(_lasting(context)) == len(fields(Context)) - len(elapsed)
    assert set(_lasting(context)) == {f"value of {f.name}" for f in fields(Context)} - {
        f"value of {n}" for n in elapsed
    }
