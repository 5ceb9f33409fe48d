"""OAuth2 client credentials against the simulator's token endpoint."""

from __future__ import annotations

import asyncio

import pytest

from monitor.sendcloud import AuthFailed, SendcloudClient
from monitor.sendcloud.oauth import (
    REFRESH_MARGIN_SECONDS,
    OAuth2ClientCredentials,
    refresh_after,
)
from monitor.settings import load_settings
from monitor.simulator import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, SimIntegration, Simulator


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


async def test_a_short_lived_token_is_not_fetched_for_every_request(sim: Simulator) -> None:
    clock = Clock()
    sim.token_lifetime = 30  # under the 60 s refresh margin
    client = oauth_client(sim, clock)
    for _ in range(5):
        await client.get_integration(1)
        clock.now += 2
    assert sim.token_requests == 1  # 10 s into a 30 s token
    clock.now += 6  # 16 s: past half its life
    await client.get_integration(1)
    await client.aclose()
    assert sim.token_requests == 2


@pytest.mark.parametrize(
    ("lifetime", "refreshed_after"),
    [(3600, 3540), (120, 60), (100, 50), (30, 15), (1, 0.5), (0, 0)],
)
def test_refresh_time(lifetime: float, refreshed_after: float) -> None:
    assert refresh_after(lifetime) == refreshed_after


@pytest.mark.parametrize(
    ("public_key", "secret_key"),
    [("id:with:colons", "plain"), ("plain", "s3cr+t with spaces%20&=/"), ("ü-ñ", "日本")],
)
async def test_client_credentials_are_form_urlencoded_before_basic(
    public_key: str, secret_key: str
) -> None:
    with Simulator([SimIntegration(1)], public_key=public_key, secret_key=secret_key) as sim:
        auth = OAuth2ClientCredentials(sim.token_url, public_key, secret_key, clock=Clock())
        client = SendcloudClient(sim.url, "unused", "unused", auth=auth)
        assert (await client.get_integration(1)).id == 1
        await client.aclose()
        assert sim.token_requests == 1


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
