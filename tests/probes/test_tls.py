"""The probers against real servers on 127.0.0.1: certificates made by trustme (valid,
expiring in 5 days, expired, not yet valid, for another host name, from an unknown CA), a
closed port, a plain-HTTP server and one that never answers. Each gives its result, its
certificate's expiry and issuer, and its alerts; with private addresses not allowed, nothing is
connected at all (the servers' accept counts)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor.alerting.rules import (
    SHOP_CERTIFICATE_EXPIRING,
    SHOP_UNREACHABLE,
    AlertRules,
    conditions_for,
    evaluate,
)
from monitor.health import derive
from monitor.probes import Result, ShopProbe, target_of
from monitor.sendcloud import Integration
from monitor.simulator.shops import ShopServer
from monitor.store import AccountSnapshot, Findings, Observation, ReadOutcome
from tests.conftest import free_port
from tests.probes.conftest import Shops, days

RULES = AlertRules()


def alerts(probe: ShopProbe, url: str) -> dict[str, str]:
    """The shop alerts one integration on this probe fires, with their severity (the
    daemon's rules at their defaults)."""
    now = datetime.now(UTC)
    record = Integration(7, shop_name="Probed shop", shop_url=url, created_at=now)
    observation = Observation(7, ReadOutcome.OK, record, derive(record, now, 7200))
    snapshot = AccountSnapshot("eu", {7: observation}, 1, now, findings={7: Findings(probe)})
    conditions, _ = conditions_for(snapshot, ids_configured=True, rules=RULES, now=now)
    states = evaluate({}, conditions, set(), now, RULES).states
    return {key.alert: state.severity for key, state in states.items() if state.firing}


async def probe_twice(shops: Shops, url: str, **runner: object) -> ShopProbe:
    target = target_of(url)
    assert target is not None
    prober = shops.runner(**runner)
    try:
        await prober.probe_now([target])
        return (await prober.probe_now([target]))[str(target)]
    finally:
        await prober.aclose()


async def test_a_valid_certificate(shops: Shops) -> None:
    server = shops.serve(context=shops.context(not_after=days(90)))
    probe = await probe_twice(shops, server.url)
    assert probe.result is Result.OK
    assert probe.success
    assert probe.outcome.issuer == "Trusted test CA"
    assert probe.outcome.expires_at is not None
    assert abs(probe.outcome.expires_at - days(90)) < timedelta(minutes=2)
    assert probe.failures == 0
    assert alerts(probe, server.url) == {}
    assert server.accepts == 2  # one handshake per probe, nothing else


async def test_a_certificate_expiring_in_5_days_warns(shops: Shops) -> None:
    server = shops.serve(context=shops.context(not_after=days(5)))
    probe = await probe_twice(shops, server.url)
    assert probe.result is Result.OK
    assert probe.outcome.expires_at is not None
    assert abs(probe.outcome.expires_at - days(5)) < timedelta(minutes=2)
    assert alerts(probe, server.url) == {SHOP_CERTIFICATE_EXPIRING: "warning"}


async def test_a_certificate_expiring_in_2_days_is_critical(shops: Shops) -> None:
    server = shops.serve(context=shops.context(not_after=days(2)))
    probe = await probe_twice(shops, server.url)
    assert alerts(probe, server.url) == {SHOP_CERTIFICATE_EXPIRING: "critical"}


async def test_an_expired_certificate(shops: Shops) -> None:
    server = shops.serve(context=shops.context(not_before=days(-30), not_after=days(-2)))
    probe = await probe_twice(shops, server.url)
    assert probe.result is Result.EXPIRED
    assert not probe.success
    assert probe.failures == 2
    assert probe.outcome.expires_at is not None
    assert abs(probe.outcome.expires_at - days(-2)) < timedelta(minutes=2)
    assert alerts(probe, server.url) == {
        SHOP_CERTIFICATE_EXPIRING: "critical",
        SHOP_UNREACHABLE: "warning",
    }
    assert server.accepts == 4  # each probe: the verifying handshake, then one to read it


async def test_a_certificate_not_valid_yet(shops: Shops) -> None:
    server = shops.serve(context=shops.context(not_before=days(2), not_after=days(60)))
    probe = await probe_twice(shops, server.url)
    assert probe.result is Result.NOT_YET_VALID
    assert alerts(probe, server.url) == {SHOP_UNREACHABLE: "warning"}


async def test_a_certificate_for_another_host_name(shops: Shops) -> None:
    server = shops.serve(context=shops.context("other-shop.example", not_after=days(60)))
    probe = await probe_twice(shops, server.url)
    assert probe.result is Result.HOSTNAME_MISMATCH
    assert probe.outcome.expires_at is not None  # read all the same
    assert probe.outcome.issuer == "Trusted test CA"
    assert alerts(probe, server.url) == {SHOP_UNREACHABLE: "warning"}


async def test_a_certificate_from_an_unknown_ca(shops: Shops) -> None:
    server = shops.serve(context=shops.context(ca=shops.other_ca, not_after=days(60)))
    probe = await probe_twice(shops, server.url)
    assert probe.result is Result.UNTRUSTED
    assert probe.outcome.issuer == "Unknown test CA"
    assert probe.outcome.expires_at is not None
    assert alerts(probe, server.url) == {SHOP_UNREACHABLE: "warning"}


async def test_the_system_trust_store_does_not_know_the_test_ca(shops: Shops) -> None:
    from monitor.probes.tls import verifying_context

    server = shops.serve()
    probe = await probe_twice(shops, server.url, context=verifying_context(None))
    assert probe.result is Result.UNTRUSTED


async def test_a_closed_port(shops: Shops) -> None:
    url = f"https://localhost:{free_port()}/"
    probe = await probe_twice(shops, url)
    assert probe.result is Result.REFUSED
    assert probe.outcome.detail == "connection refused"
    assert alerts(probe, url) == {SHOP_UNREACHABLE: "warning"}


async def test_a_plain_http_server(shops: Shops) -> None:
    server = shops.serve("plain")
    probe = await probe_twice(shops, server.url)  # http://: a TCP connect
    assert probe.result is Result.PLAINTEXT_OK
    assert probe.success
    assert probe.outcome.expires_at is None
    assert alerts(probe, server.url) == {}
    https = server.url.replace("http://", "https://")  # an https:// URL to it: no TLS there
    probe = await probe_twice(shops, https)
    assert probe.result is Result.TLS_ERROR
    assert alerts(probe, https) == {SHOP_UNREACHABLE: "warning"}


async def test_a_server_that_never_answers_times_out(shops: Shops) -> None:
    server = shops.serve("silent")
    started = datetime.now(UTC)
    probe = await probe_twice(shops, server.url, timeout_seconds=0.5)
    assert probe.result is Result.TIMEOUT
    assert datetime.now(UTC) - started >= timedelta(seconds=1)  # two probes, each its timeout
    assert server.accepts == 2


async def test_a_name_that_does_not_resolve(shops: Shops) -> None:
    probe = await probe_twice(shops, "https://no-such-shop.invalid/")
    assert probe.result is Result.DNS


@pytest.mark.parametrize("mode", ["tls", "plain", "silent"])
async def test_without_private_addresses_nothing_is_connected(shops: Shops, mode: str) -> None:
    server = shops.serve(mode)
    for url in (server.url, server.url.replace("localhost", "127.0.0.1")):
        probe = await probe_twice(shops, url, allow_private=False)
        assert probe.result is Result.PRIVATE_ADDRESS
        assert probe.failures == 0  # not probed is not failing
        assert alerts(probe, url) == {}
    assert server.accepts == 0


def test_a_tls_shop_needs_a_certificate() -> None:
    with pytest.raises(ValueError, match="server context"):
        ShopServer("tls")
