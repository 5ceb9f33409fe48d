"""Cause extraction from exception logs: the useful fields, never a credential."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from monitor.cause import MAX_MESSAGE, cause_from_logs, redact_text

START = datetime(2026, 11, 27, 10, tzinfo=UTC)


def log_entry(created_at: str, **fields: object) -> dict[str, object]:
    return {
        "id": 1,
        "base_url": "https://shop.example.com",
        "full_url": "https://shop.example.com/orders.json?token=shop-token&page=2",
        "method": "GET",
        "response_code": 401,
        "request": {"headers": {"Authorization": "Bearer shop-secret-value"}, "payload": "pw=x"},
        "response": {"headers": {"Set-Cookie": "session=abc"}, "body": "denied"},
        "created_at": created_at,
        "exception_type": "requests.exceptions.HTTPError",
        "exception": "401 Client Error for url https://shop.example.com/orders.json?token=shop-token",
        **fields,
    }


def test_newest_log_is_the_cause_and_nothing_secret_is_copied() -> None:
    logs = [
        log_entry("2026-11-27T09:00:00Z", exception="old"),
        log_entry("2026-11-27T10:30:00+00:00"),
        log_entry("2026-11-27T10:10:00Z", exception="middle"),
    ]
    cause = cause_from_logs(logs, START)
    assert cause is not None
    assert cause["created_at"] == "2026-11-27T10:30:00+00:00"
    assert cause["exception_type"] == "requests.exceptions.HTTPError"
    assert cause["response_code"] == 401
    assert cause["method"] == "GET"
    assert cause["host"] == "shop.example.com"
    assert cause["logs_since_failing"] == 2
    assert cause["logs_read"] == 3
    text = repr(cause)
    for secret in ("shop-token", "shop-secret-value", "session=abc", "pw=x", "denied"):
        assert secret not in text
    assert set(cause) == {
        "exception_type",
        "exception",
        "response_code",
        "method",
        "host",
        "created_at",
        "logs_since_failing",
        "logs_read",
    }


def test_no_logs_no_cause() -> None:
    assert cause_from_logs([], START) is None


def test_odd_fields_are_tolerated() -> None:
    cause = cause_from_logs(
        [{"created_at": "yesterday", "response_code": "500", "exception": None, "full_url": 3}],
        START,
    )
    assert cause is not None
    assert cause["response_code"] is None
    assert cause["exception"] is None
    assert cause["host"] is None
    assert cause["created_at"] is None


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer abcdef123456", "abcdef123456"),
        ("failed with Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
        ("GET https://x.example.com/a?access_token=s3cr3t&b=1 failed", "s3cr3t"),
        ("api_key=abc123xyz rejected", "abc123xyz"),
        ("password: hunter22 is wrong", "hunter22"),
        ("https://user:pa55word@shop.example.com/api", "pa55word"),
        (
            "key 0123456789abcdef0123456789abcdef0123 invalid",
            "0123456789abcdef0123456789abcdef0123",
        ),
    ],
)
def test_redact_text(text: str, secret: str) -> None:
    assert secret not in redact_text(text)


def test_messages_are_truncated() -> None:
    redacted = redact_text("x " * 400)
    assert len(redacted) == MAX_MESSAGE
    assert redacted.endswith("…")
