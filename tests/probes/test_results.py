"""What a shop URL is probed at, and what probes mean: pure, explicit times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor.probes.results import (
    FAILING,
    RESULTS,
    Outcome,
    Result,
    advance,
    days_left,
    describe,
    verify_result,
)
from monitor.probes.targets import Target, target_of

T0 = datetime(2026, 11, 27, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://Shop.Example.com/store", Target("https", "shop.example.com", 443)),
        ("http://shop.example.com", Target("http", "shop.example.com", 80)),
        ("https://shop.example.com:8443/x?y=1", Target("https", "shop.example.com", 8443)),
        ("https://shop.example.com./", Target("https", "shop.example.com", 443)),
        ("https://[2001:db8::1]:444/", Target("https", "2001:db8::1", 444)),
        ("HTTPS://user:pw@shop.example.com/", Target("https", "shop.example.com", 443)),
        ("ftp://shop.example.com/", None),
        ("shop.example.com", None),
        ("https://", None),
        ("https://shop.example.com:99999/", None),
        ("https://shop.example.com:0/", None),
        ("", None),
        (None, None),
    ],
)
def test_the_target_of_a_shop_url(url: str | None, expected: Target | None) -> None:
    assert target_of(url) == expected


def test_targets_print_as_urls_and_one_host_port_is_one_target() -> None:
    assert str(Target("https", "2001:db8::1", 444)) == "https://[2001:db8::1]:444"
    urls = [f"https://shop.example.com/store-{n}" for n in range(100)]
    assert {target_of(u) for u in urls} == {Target("https", "shop.example.com", 443)}


def test_the_result_set_is_the_documented_one() -> None:
    assert [str(r) for r in RESULTS] == [
        "ok",
        "expired",
        "not_yet_valid",
        "untrusted",
        "hostname_mismatch",
        "tls_error",
        "refused",
        "timeout",
        "dns",
        "private_address",
        "plaintext_ok",
    ]
    assert Result.PRIVATE_ADDRESS not in FAILING
    assert Result.OK not in FAILING
    assert Result.PLAINTEXT_OK not in FAILING
    assert Result.DNS in FAILING


@pytest.mark.parametrize(
    ("code", "result"),
    [
        (10, Result.EXPIRED),
        (9, Result.NOT_YET_VALID),
        (62, Result.HOSTNAME_MISMATCH),
        (18, Result.UNTRUSTED),
        (19, Result.UNTRUSTED),
        (20, Result.UNTRUSTED),
        (21, Result.UNTRUSTED),
        (23, Result.UNTRUSTED),  # revoked
    ],
)
def test_verify_codes(code: int, result: Result) -> None:
    assert verify_result(code) is result


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_a_run_of_failures_counts_and_starts_over_after_a_success() -> None:
    state = advance(None, "https://a:443", Outcome(Result.TIMEOUT, at(0)))
    assert (state.failures, state.failing_since) == (1, at(0))
    state = advance(state, "https://a:443", Outcome(Result.REFUSED, at(60)))
    assert (state.failures, state.failing_since, state.result) == (2, at(0), Result.REFUSED)
    state = advance(state, "https://a:443", Outcome(Result.OK, at(120)))
    assert (state.failures, state.failing_since, state.success) == (0, None, True)
    state = advance(state, "https://a:443", Outcome(Result.EXPIRED, at(180)))
    assert (state.failures, state.failing_since) == (1, at(180))
    # a probe not made (its address is private) is no failure, and ends a run
    state = advance(state, "https://a:443", Outcome(Result.PRIVATE_ADDRESS, at(240)))
    assert (state.failures, state.failing_since, state.success) == (0, None, False)


def test_what_is_visible_changes_with_the_result_not_with_the_time() -> None:
    first = advance(None, "t", Outcome(Result.OK, at(0), at(60 * 24 * 30), "CA"))
    second = advance(first, "t", Outcome(Result.OK, at(60), at(60 * 24 * 30), "CA"))
    assert first.visible() == second.visible()
    renewed = advance(second, "t", Outcome(Result.OK, at(120), at(60 * 24 * 90), "CA"))
    assert renewed.visible() != second.visible()


def test_plain_words() -> None:
    state = advance(None, "t", Outcome(Result.OK, at(0), T0 + timedelta(days=41, hours=3)))
    assert describe(state, T0) == "TLS certificate valid, expires in 41 days"
    state = advance(None, "t", Outcome(Result.OK, at(0), T0 + timedelta(hours=30)))
    assert describe(state, T0) == "TLS certificate valid, expires in 30 hours"
    state = advance(None, "t", Outcome(Result.EXPIRED, at(0), T0 - timedelta(days=3)))
    state = advance(state, "t", Outcome(Result.EXPIRED, at(1), T0 - timedelta(days=3)))
    assert describe(state, T0) == "TLS certificate expired 3 days ago (2 probes in a row)"
    state = advance(None, "t", Outcome(Result.PRIVATE_ADDRESS, at(0)))
    assert describe(state, T0) == "not probed: resolves to a private address"
    assert days_left(T0 + timedelta(hours=12), T0) == 0.5
