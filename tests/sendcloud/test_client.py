"""The Sendcloud client against the simulator over real loopback HTTP (and MockTransport for
byte-level oddities the simulator does not produce)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
import stamina

from monitor.sendcloud import (
    MAX_BODY_BYTES,
    ApiError,
    AuthFailed,
    InvalidResponse,
    NotFound,
    RateLimited,
    SendcloudClient,
    ServerError,
    Unreachable,
    parse_retry_after,
)
from monitor.sendcloud import client as sendcloud
from monitor.simulator import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, SimIntegration, Simulator
from tests.conftest import LogCapture, free_port


class Recorded:
    """ClientEvents that keep what they are told."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.errors: list[tuple[str, str]] = []
        self.pauses: list[float] = []
        self.waited = 0.0

    def request(self, endpoint: str, code: str, seconds: float) -> None:
        self.requests.append((endpoint, code))

    def error(self, endpoint: str, reason: str) -> None:
        self.errors.append((endpoint, reason))

    def throttled(self, pause_seconds: float) -> None:
        self.pauses.append(pause_seconds)

    def budget_wait(self, seconds: float) -> None:
        self.waited += seconds


def client_for(sim: Simulator, secret: str = DEMO_SECRET_KEY, **kwargs: object) -> SendcloudClient:
    return SendcloudClient(sim.url, DEMO_PUBLIC_KEY, secret, **kwargs)  # type: ignore[arg-type]


async def test_get_integration(sim: Simulator) -> None:
    client = client_for(sim)
    record = await client.get_integration(2)
    await client.aclose()
    assert record.id == 2
    assert record.shop_name == "Failing shop"
    assert record.type == "woocommerce"
    assert record.started_failing_at is not None
    assert record.started_failing_at.tzinfo is not None
    assert not hasattr(record, "webhook_url")


async def test_not_found_is_typed(sim: Simulator) -> None:
    client = client_for(sim)
    with pytest.raises(NotFound):
        await client.get_integration(5)  # deleted scenario
    with pytest.raises(NotFound):
        await client.get_integration(999)
    await client.aclose()


async def test_wrong_credentials_raise_auth_failed(sim: Simulator) -> None:
    client = client_for(sim, secret="wrong")
    with pytest.raises(AuthFailed) as error:
        await client.get_integration(1)
    await client.aclose()
    assert error.value.status == 401
    assert "wrong" not in str(error.value)
    assert sim.request_count("/integrations/1") == 1  # never retried


@pytest.fixture
def big_sim() -> Iterator[Simulator]:
    with Simulator([SimIntegration(i, shop_name=f"Shop {i}") for i in range(1, 58)]) as simulator:
        yield simulator


async def test_list_follows_link_over_several_pages(big_sim: Simulator) -> None:
    client = client_for(big_sim)
    result = await client.list_integrations(page_size=10)
    await client.aclose()
    assert [r.id for r in result.integrations] == list(range(1, 58))
    assert result.complete
    assert result.pages == 6
    assert big_sim.request_count("/integrations") == 6


async def test_list_stops_at_max_pages(big_sim: Simulator) -> None:
    client = client_for(big_sim)
    result = await client.list_integrations(page_size=10, max_pages=2)
    await client.aclose()
    assert len(result.integrations) == 20
    assert not result.complete
    assert result.pages == 2


async def test_link_to_another_origin_is_not_followed(big_sim: Simulator) -> None:
    with Simulator([SimIntegration(99)]) as foreign:  # a real server that must see nothing
        big_sim.next_link_base = foreign.origin
        client = client_for(big_sim)
        with pytest.raises(InvalidResponse, match="another origin"):
            await client.list_integrations(page_size=10)
        await client.aclose()
        assert foreign.request_count() == 0
    assert big_sim.request_count() == 1


async def test_link_to_same_host_other_port_is_not_followed(big_sim: Simulator) -> None:
    big_sim.next_link_base = f"http://127.0.0.1:{free_port()}"
    client = client_for(big_sim)
    with pytest.raises(InvalidResponse, match="another origin"):
        await client.list_integrations(page_size=10)
    await client.aclose()


async def test_server_errors_are_retried_then_succeed(sim: Simulator) -> None:
    sim.inject_fault(503, count=2, integration_id=1)
    client = client_for(sim)
    record = await client.get_integration(1)
    await client.aclose()
    assert record.id == 1
    assert sim.request_count("/integrations/1") == 3


async def test_retries_are_bounded(sim: Simulator) -> None:
    sim.inject_fault(502, count=10, integration_id=1)
    client = client_for(sim, max_attempts=3)
    with pytest.raises(ServerError):
        await client.get_integration(1)
    await client.aclose()
    assert sim.request_count("/integrations/1") == 3


async def test_each_retry_is_one_debug_line_naming_the_reason(
    sim: Simulator, captured_logs: LogCapture
) -> None:
    sim.inject_fault(503, count=2, integration_id=1)
    client = client_for(sim, max_attempts=3)
    assert (await client.get_integration(1)).id == 1
    await client.aclose()
    retries = captured_logs.events("retry_scheduled")
    assert [(r["level"], r["attempt"], r["error"]) for r in retries] == [
        ("debug", 1, "server_error"),
        ("debug", 2, "server_error"),
    ]
    assert not [e for e in captured_logs.lines() if e["level"] in ("warning", "error")]


async def test_without_a_budget_a_429_waits_its_retry_after(sim: Simulator) -> None:
    sim.inject_fault(429, count=1, integration_id=1)
    client = client_for(sim, max_attempts=2)
    with stamina.set_testing(False):  # real waits: the Retry-After is what is tested
        started = time.monotonic()
        assert (await client.get_integration(1)).id == 1
        waited = time.monotonic() - started
    await client.aclose()
    assert 1.0 <= waited < 10.0  # Retry-After: 1 s, plus up to 1 s of jitter


async def test_rate_limit_carries_retry_after(sim: Simulator) -> None:
    sim.inject_fault(429, count=5)
    client = client_for(sim, max_attempts=1)
    with pytest.raises(RateLimited) as error:
        await client.get_integration(1)
    await client.aclose()
    assert error.value.retry_after == 1


async def test_connection_refused_is_unreachable() -> None:
    client = SendcloudClient(f"http://127.0.0.1:{free_port()}/api/v3", "p", "s", max_attempts=2)
    with pytest.raises(Unreachable):
        await client.get_integration(1)
    await client.aclose()


async def test_observer_sees_every_request(sim: Simulator) -> None:
    events = Recorded()
    client = client_for(sim, events=events)
    await client.get_integration(1)
    with pytest.raises(NotFound):
        await client.get_integration(5)
    await client.list_integrations()
    await client.aclose()
    assert events.requests == [
        ("get_integration", "200"),
        ("get_integration", "404"),
        ("list_integrations", "200"),
    ]


def mock_client(handler: httpx.MockTransport, events: Recorded | None = None) -> SendcloudClient:
    return SendcloudClient("https://api.test/api/v3", "p", "s", transport=handler, events=events)


@pytest.mark.parametrize(
    ("status", "body", "headers", "error"),
    [
        (200, b"<html>maintenance</html>", {"content-type": "text/html"}, "not JSON"),
        (200, b'{"data": "nope"}', {}, "not an object"),
        (200, b'{"data": {"id": "abc"}}', {}, "no valid id"),
        (200, b'{"data": {"shop_name": "no id"}}', {}, "no valid id"),
        (200, b'{"data": {"id": 2}}', {}, "asked for integration 1, got 2"),
        (200, b'{"data": {"id": 1', {}, "not JSON"),
        (418, b"", {}, "unexpected status 418"),
    ],
)
async def test_bad_bodies_become_invalid_response(
    status: int, body: bytes, headers: dict[str, str], error: str
) -> None:
    client = mock_client(
        httpx.MockTransport(lambda r: httpx.Response(status, content=body, headers=headers))
    )
    with pytest.raises(InvalidResponse, match=error):
        await client.get_integration(1)
    await client.aclose()


async def test_unknown_fields_and_nulls_are_accepted() -> None:
    payload = {
        "data": {
            "id": 1,
            "shop_name": None,
            "brand_new_field": {"x": 1},
            "last_fetched_at": None,
            "created_at": "2026-01-01T00:00:00+01:00",
        }
    }
    client = mock_client(httpx.MockTransport(lambda r: httpx.Response(200, json=payload)))
    record = await client.get_integration(1)
    await client.aclose()
    assert record.shop_name is None
    assert record.created_at == datetime(2025, 12, 31, 23, tzinfo=UTC)


async def test_oversized_body_is_refused() -> None:
    big = b'{"data": {"id": 1, "shop_name": "' + b"x" * (MAX_BODY_BYTES + 10) + b'"}}'
    client = mock_client(httpx.MockTransport(lambda r: httpx.Response(200, content=big)))
    with pytest.raises(InvalidResponse, match="larger than"):
        await client.get_integration(1)
    await client.aclose()


async def test_bad_records_in_a_list_are_skipped_and_counted() -> None:
    payload = {"data": [{"id": 1}, {"id": "x"}, "junk", {"id": 3}]}
    client = mock_client(httpx.MockTransport(lambda r: httpx.Response(200, json=payload)))
    result = await client.list_integrations()
    await client.aclose()
    assert [r.id for r in result.integrations] == [1, 3]
    assert result.invalid == 2


async def test_pagination_loop_is_detected() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        link = '<https://api.test/api/v3/integrations?cursor=same>; rel="next"'
        return httpx.Response(200, json={"data": []}, headers={"Link": link})

    client = mock_client(httpx.MockTransport(handler))
    with pytest.raises(InvalidResponse, match="loops"):
        await client.list_integrations()
    await client.aclose()


async def test_basic_auth_header_is_sent_and_first_page_asks_for_page_size() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=json.dumps({"data": []}).encode())

    client = mock_client(httpx.MockTransport(handler))
    await client.list_integrations()
    await client.aclose()
    assert seen[0].headers["authorization"] == "Basic cDpz"  # base64("p:s")
    assert seen[0].url.params["page_size"] == "100"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("Fri, 27 Nov 2026 12:01:00 GMT", 60.0),
        ("Fri, 27 Nov 2026 11:00:00 GMT", 0.0),
        ("soon", None),
        (None, None),
        ("\u00b2", None),  # '²'.isdigit() is true, float('²') raises
        ("\u0661\u0662", None),  # Arabic-Indic digits: isdigit() too
        ("9" * 400, float("9" * 400)),  # huge: capped later, never an overflow here
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    assert parse_retry_after(value, now) == expected


async def test_a_404_on_the_collection_is_an_account_error_not_not_found() -> None:
    events = Recorded()
    client = mock_client(
        httpx.MockTransport(lambda r: httpx.Response(404, text="<h1>nginx</h1>")), events
    )
    with pytest.raises(ApiError) as raised:
        await client.list_integrations()
    assert not isinstance(raised.value, NotFound)
    assert raised.value.reason == "not_found"
    assert events.errors == [("list_integrations", "not_found")]
    with pytest.raises(NotFound):  # on one integration a 404 still means it is gone
        await client.get_integration(1)
    await client.aclose()


async def test_one_invalid_optional_field_is_nulled_and_counted(sim: Simulator) -> None:
    sim.update(
        2,
        started_failing_at=datetime(2026, 11, 27, 11, tzinfo=UTC),
        extra={"updated_at": "not a date", "type": 5, "service_point_carriers": "oops"},
    )
    events = Recorded()
    client = client_for(sim, events=events)
    record = await client.get_integration(2)
    listed = await client.list_integrations()
    await client.aclose()
    assert record.started_failing_at == datetime(2026, 11, 27, 11, tzinfo=UTC)
    assert (record.updated_at, record.type, record.service_point_carriers) == (None, None, None)
    assert record.shop_name == "Failing shop"
    assert 2 in {r.id for r in listed.integrations}
    assert events.errors.count(("get_integration", "invalid_field")) == 3
    assert events.errors.count(("list_integrations", "invalid_field")) == 3


async def test_an_answer_for_another_id_is_invalid() -> None:
    events = Recorded()
    client = mock_client(
        httpx.MockTransport(lambda r: httpx.Response(200, json={"data": {"id": 99}})), events
    )
    with pytest.raises(InvalidResponse) as raised:
        await client.get_integration(1)
    await client.aclose()
    assert raised.value.reason == "id_mismatch"
    assert events.errors == [("get_integration", "id_mismatch")]


async def test_a_list_that_never_ends_stops_at_the_page_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sendcloud, "MAX_LIST_PAGES", 25)
    pages = iter(range(10**6))

    def handler(request: httpx.Request) -> httpx.Response:
        link = f'<https://api.test/api/v3/integrations?cursor={next(pages)}>; rel="next"'
        return httpx.Response(200, json={"data": [{"id": 1}]}, headers={"Link": link})

    client = mock_client(httpx.MockTransport(handler))
    result = await client.list_integrations()
    await client.aclose()
    assert (result.pages, result.complete) == (25, False)


async def test_an_unchanged_record_is_returned_as_the_known_object(sim: Simulator) -> None:
    client = client_for(sim)
    first = {r.id: r for r in (await client.list_integrations()).integrations}
    sim.update(2, shop_name="Renamed shop")
    again = (await client.list_integrations(known=first.get)).integrations
    await client.aclose()
    assert len(again) == len(first)
    for record in again:
        if record.id == 2:
            assert record is not first[2]
            assert record.shop_name == "Renamed shop"
        else:
            assert record is first[record.id]  # equal, so the very same object


async def test_status_mapping_unsupported_and_invalid(sim: Simulator) -> None:
    from monitor.sendcloud import Unsupported

    sim.update(
        1,
        type="prestashop_v2",
        status_mapping=[
            {"status_category": "READY_TO_SEND", "external_id": 11, "is_valid": True},
            {"status_category": "CANCEL", "external_id": None},
        ],
    )
    events = Recorded()
    client = client_for(sim, events=events)
    mapping = await client.status_mapping(1)
    assert [(e.status_category, e.external_id, e.is_valid) for e in mapping.entries] == [
        ("READY_TO_SEND", "11", True),
        ("CANCEL", None, True),
    ]
    with pytest.raises(Unsupported):
        await client.status_mapping(2)  # woocommerce: a 400 that says so
    assert events.errors == []  # an answer, not an error: never counted
    sim.update(1, status_mapping=[{"external_id": "1"}])
    with pytest.raises(InvalidResponse) as raised:
        await client.status_mapping(1)
    await client.aclose()
    assert raised.value.reason == "invalid_record"
    assert events.errors == [("status_mapping", "invalid_record")]
    assert ("status_mapping", "400") in events.requests
