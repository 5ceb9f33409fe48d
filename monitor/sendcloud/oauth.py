"""OAuth2 client credentials for the Sendcloud API, as an ``httpx.Auth`` flow.

The token is fetched once, cached, and refreshed shortly before it expires; a 401 refreshes it
once and replays the request. A lock makes concurrent requests share one refresh. The client
credentials go to the token URL only, the bearer token to the API only.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any

import httpx

from monitor.sendcloud.errors import AuthFailed, InvalidResponse

DEFAULT_TOKEN_URL = "https://account.sendcloud.com/oauth2/token/"  # noqa: S105 - a URL
REFRESH_MARGIN_SECONDS = 60.0


class OAuth2ClientCredentials(httpx.Auth):
    """Bearer tokens from the client-credentials grant (client id/secret = public/secret key)."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str = "api",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._token_url = token_url
        self._scope = scope
        basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        self._credentials = f"Basic {basic}"
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.refreshes = 0

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        raise RuntimeError("the Sendcloud client is asynchronous")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        async with self._lock:
            if self._token is None or self._clock() >= self._expires_at - REFRESH_MARGIN_SECONDS:
                self._store(await _read((yield self._token_request())))
            token = self._token
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        async with self._lock:  # rejected: refresh once (unless another request just did)
            if self._token == token:
                self._store(await _read((yield self._token_request())))
            token = self._token
        request.headers["Authorization"] = f"Bearer {token}"
        yield request

    def _token_request(self) -> httpx.Request:
        return httpx.Request(
            "POST",
            self._token_url,
            data={"grant_type": "client_credentials", "scope": self._scope},
            headers={"Authorization": self._credentials, "Accept": "application/json"},
        )

    def _store(self, response: httpx.Response) -> None:
        if response.status_code in (400, 401, 403):
            raise AuthFailed(
                f"the OAuth2 token endpoint rejected the client credentials "
                f"({response.status_code})",
                status=response.status_code,
            )
        if response.status_code != 200:
            raise InvalidResponse(
                f"the OAuth2 token endpoint answered {response.status_code}",
                status=response.status_code,
                reason="token_error",
            )
        body = _json_object(response)
        token, lifetime = body.get("access_token"), body.get("expires_in", 3600)
        if not isinstance(token, str) or not token or not isinstance(lifetime, int | float):
            raise InvalidResponse(
                "the OAuth2 token response has no usable access_token",
                status=200,
                reason="token_error",
            )
        self._token = token
        self._expires_at = self._clock() + float(lifetime)
        self.refreshes += 1


async def _read(response: httpx.Response) -> httpx.Response:
    await response.aread()
    return response


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    return body if isinstance(body, dict) else {}
