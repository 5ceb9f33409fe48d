"""Cause extraction from exception logs: the useful fields, never a credential."""

from __future__ import annotations

import string
from datetime import UTC, datetime

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from monitor.alerting.cause import MAX_MESSAGE, cause_from_logs, cause_summary, redact_text

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


KEYS = [
    "password",
    "passwd",
    "secret",
    "token",
    "access_token",
    "refresh_token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "client_secret",
]
# Where a secret hides in what a shop's HTTP exchange looks like; {k} the key, {s} the secret.
TEMPLATES = [
    '{{"{k}": "{s}", "id": 7}}',  # JSON
    '{{"{k}":"{s}"}}',
    "{{'{k}': '{s}'}}",  # Python repr
    "{k}={s}&page=2",  # form
    "{k}: {s}",  # header
    "{k} = {s}, retrying",
    '{k}: "{s}"',
    "POST failed; {k}={s}; status=500",
]
FREE_FORM = [
    "Authorization: Bearer {s}",
    "Authorization: Basic {s}",
    "got token {s} from cache",
    "Cookie: sessionid={s}; csrftoken=abc",
    "Set-Cookie: sid={s}; Path=/; HttpOnly",
    "GET https://admin:{s}@shop.example.com/orders failed",
    "GET https://shop.example.com/orders?consumer_key={s}&page=2 failed",
    "customer {s}@example.com ordered",
]
secrets_ = st.text(
    alphabet=string.ascii_letters + string.digits + "-_.~+/", min_size=8, max_size=40
)


def recase(key: str, flips: list[bool]) -> str:
    return "".join(
        c.upper() if flip else c for c, flip in zip(key, flips + [False] * 40, strict=False)
    )


@settings(max_examples=300)
@given(
    key=st.sampled_from(KEYS),
    template=st.sampled_from(TEMPLATES),
    secret=secrets_,
    flips=st.lists(st.booleans(), max_size=20),
)
def test_a_secret_under_any_key_in_any_syntax_never_survives(
    key: str, template: str, secret: str, flips: list[bool]
) -> None:
    text = template.format(k=recase(key, flips), s=secret)
    assume(secret not in template.format(k=key, s=""))
    assert secret not in redact_text(text, limit=10_000)


@settings(max_examples=300)
@given(template=st.sampled_from(FREE_FORM), secret=secrets_)
def test_tokens_userinfo_queries_and_addresses_never_survive(template: str, secret: str) -> None:
    assume(secret not in template.format(s=""))
    assert secret not in redact_text(template.format(s=secret), limit=10_000)


@settings(max_examples=200)
@given(
    header=st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=10, max_size=20),
    payload=st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=10, max_size=20),
    signature=st.text(
        alphabet=string.ascii_letters + string.digits + "_-", min_size=10, max_size=20
    ),
)
def test_jwts_never_survive(header: str, payload: str, signature: str) -> None:
    jwt = f"eyJ{header}.{payload}.{signature}"
    assert jwt not in redact_text(f"invalid token: {jwt} (expired)")
    assert payload not in redact_text(f"rejected {jwt}")


@pytest.mark.parametrize(
    "phone", ["+31 6 12345678", "+1 (555) 123-4567", "0612345678", "0031 20 1234567", "020-1234567"]
)
def test_phone_numbers_are_masked(phone: str) -> None:
    assert redact_text(f"customer phone {phone} invalid") == "customer phone [phone] invalid"


def test_ordinary_diagnostics_stay_readable() -> None:
    text = "503 Server Error: Service Unavailable for url: https://shop.example.com/api at 12:00:00"
    assert redact_text(text) == text


@pytest.mark.parametrize(
    ("exception_type", "exception", "code", "phrase"),
    [
        (
            "requests.exceptions.HTTPError",
            "503 Server Error: Service Unavailable for url: https://woo.example.com/",
            503,
            "shop answered 503",
        ),
        (
            "requests.exceptions.HTTPError",
            "502 Server Error: Bad Gateway for url",
            None,
            "shop answered 502",
        ),
        (
            "requests.exceptions.SSLError",
            "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate has expired",
            None,
            "TLS certificate expired",
        ),
        (
            "SSLError",
            "certificate verify failed: self-signed certificate in certificate chain",
            None,
            "TLS certificate not trusted",
        ),
        (
            "requests.exceptions.ConnectTimeout",
            "HTTPSConnectionPool(host='shop.example.com', port=443): Max retries exceeded "
            "(Caused by ConnectTimeoutError(..., 'Connection to shop.example.com timed out.'))",
            None,
            "connection timed out",
        ),
        (
            "requests.exceptions.ReadTimeout",
            "Read timed out. (read timeout=30)",
            None,
            "shop did not answer in time",
        ),
        (
            "requests.exceptions.ConnectionError",
            "Failed to establish a new connection: [Errno 111] Connection refused",
            None,
            "connection refused",
        ),
        (
            "requests.exceptions.ConnectionError",
            "Failed to resolve 'gone.example.com' ([Errno -2] Name or service not known)",
            None,
            "shop's host name not found",
        ),
        (
            "requests.exceptions.HTTPError",
            "401 Client Error: Unauthorized",
            401,
            "shop refused Sendcloud's credentials (401)",
        ),
        ("AuthenticationError", "API key expired", None, "shop refused Sendcloud's credentials"),
        (
            "HTTPError",
            "429 Client Error: Too Many Requests",
            None,
            "shop is rate-limiting Sendcloud (429)",
        ),
        ("shopify.UnknownThing", "something odd", None, "UnknownThing"),
        (None, None, None, "error"),
    ],
)
def test_a_cause_reads_as_a_short_phrase(
    exception_type: str | None, exception: str | None, code: int | None, phrase: str
) -> None:
    cause = {"exception_type": exception_type, "exception": exception, "response_code": code}
    assert cause_summary(cause) == phrase
