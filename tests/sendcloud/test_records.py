"""Integration records: what is kept of what the API sends."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from monitor.sendcloud import InvalidRecord, InvalidResponse, parse_integration


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("https://shop.example.com/", "https://shop.example.com/"),
        (
            "https://admin:hunter22@shop.example.com:8443/store?key=s3cret#x",
            "https://shop.example.com:8443/store",
        ),
        ("http://user@[2001:db8::1]/", "http://[2001:db8::1]/"),
        ("shop.example.com/path?token=abc", "shop.example.com/path"),
        ("user:pw@shop.example.com", "shop.example.com"),
        ("https://[broken", ""),
    ],
)
def test_shop_urls_lose_userinfo_query_and_fragment(given: str, shown: str) -> None:
    record = parse_integration({"id": 1, "shop_url": given})[0]
    assert record.shop_url == shown


def test_timestamps_without_an_offset_are_utc_and_others_keep_theirs() -> None:
    record, dropped = parse_integration(
        {
            "id": 1,
            "last_fetched_at": "2026-01-01T10:00:00",
            "created_at": "2026-01-01T10:00:00+02:00",
        }
    )
    assert dropped == []
    assert record.last_fetched_at == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert record.created_at == datetime(2026, 1, 1, 8, tzinfo=UTC)


def test_an_invalid_optional_field_is_nulled_and_named() -> None:
    record, dropped = parse_integration({"id": "7", "shop_name": "A", "updated_at": "soon"})
    assert (record.id, record.shop_name, record.updated_at) == (7, "A", None)
    assert dropped == ["updated_at"]


@pytest.mark.parametrize("field", ["started_failing_at", "last_fetched_at", "created_at"])
@pytest.mark.parametrize("value", ["garbage", True, 12345, "12345", 1.5, [], {}])
def test_a_field_that_decides_health_is_never_nulled(field: str, value: object) -> None:
    """Null would read as *not failing* (or never fetched) and epoch seconds as 1970: a
    deciding field that is not an RFC 3339 string or null makes the integration unreadable."""
    with pytest.raises(InvalidRecord) as error:
        parse_integration({"id": 7, "shop_name": "A", field: value})
    assert (error.value.integration_id, error.value.reason) == (7, "invalid_field")


@pytest.mark.parametrize("data", [{"shop_name": "no id"}, {"id": "seven"}, [1, 2], "text"])
def test_a_record_without_a_valid_id_is_invalid(data: object) -> None:
    with pytest.raises(InvalidResponse) as error:
        parse_integration(data)
    assert error.value.reason == "invalid_record"
