"""OAuth2 client credentials against the simulator's token endpoint."""

from __future__ import annotations

import asyncio

import pytest

from monitor.sendcloud import AuthFailed, SendcloudClient
from monitor.sendcloud.oauth import REFRESH_MARGIN_SECONDS, OAuth2ClientCredentials
from monitor.settings import load_settings
from monitor.simulator import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, Simulator


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def oauth_client(sim: Simulator, clock: Clock, secret: str = DEMO_SECRET_KEY) -> SendcloudClient:
    auth = OAuth2ClientCredentials(sim.token_url, DEMO_PUBLIC_KEY, secret, clock=clock)
    return SendcloudClient(sim.url, "unused", "unused", auth=auth)


async def test_token_is_fetched_once_and_reused(sim: Simulator) -> None:
    client = oauth_client(sim, Clock())
    for integration_id in (1, 2, 3, 4):
        assert (await client.get_integration(integration_id)).id == integration_id
    await client.aclose()
    assert sim.token_requests == 1


async def test_concurrent_requests_share_one_refresh(sim: Simulator) -> None:
    client = oauth_client(sim, Clock())
    records = await asyncio.gather(*(client.get_integration(1) for _ in range(20)))
    await client.aclose()
    assert len(records) == 20
    assert sim.token_requests == 1


async def test_token_is_refreshed_before_it_expires(sim: Simulator) -> None:
    clock = Clock()
    sim.token_lifetime = 600
    client = oauth_client(sim, clock)
    await client.get_integration(1)
    clock.now += 600 - REFRESH_MARGIN_SECONDS - 1
    await client.get_integration(1)
    assert sim.token_requests == 1
    clock.now += 2  # inside the refresh margin
    await client.get_integration(1)
    await client.aclose()
    assert sim.token_requests == 2


async def test_a_401_refreshes_once_and_replays(sim: Simulator) -> None:
    client = oauth_client(sim, Clock())
    await client.get_integration(1)
    sim.revoke_tokens()
    sim.requests.clear()
    record = await client.get_integration(2)
    await client.aclose()
    assert record.id == 2
    assert sim.token_requests == 2
    assert sim.requests == ["/integrations/2", "/integrations/2"]  # rejected, then replayed


async def test_wrong_client_secret_is_an_auth_failure_without_the_secret(sim: Simulator) -> None:
    client = oauth_client(sim, Clock(), secret="wrong-client-secret")
    with pytest.raises(AuthFailed) as error:
        await client.get_integration(1)
    await client.aclose()
    assert "wrong-client-secret" not in str(error.value)
    assert sim.request_count() == 0  # nothing reached the API


def test_oauth2_from_environment() -> None:
    env = {
        "SENDCLOUD_PUBLIC_KEY": "id",
        "SENDCLOUD_SECRET_KEY": "secret",
        "SENDCLOUD_AUTH": "oauth2",
        "SENDCLOUD_OAUTH2_TOKEN_URL": "http://127.0.0.1:9/oauth2/token/",
    }
    _, [account] = load_settings(None, env)
    assert account.auth == "oauth2"
    assert account.oauth2_token_url == "http://127.0.0.1:9/oauth2/token/"
    _, [default] = load_settings(None, {"SENDCLOUD_PUBLIC_KEY": "id", "SENDCLOUD_SECRET_KEY": "s"})
    assert default.auth == "basic"
    assert default.oauth2_token_url == "https://account.sendcloud.com/oauth2/token/"
