"""OAuth2 client credentials for the Sendcloud API, as an ``httpx.Auth`` flow.

The token is fetched once, cached, and refreshed shortly before it expires (halfway through a
short lifetime); a 401 refreshes it once and replays the request. A lock makes concurrent
requests share one refresh. The client credentials go to the token URL only, form-urlencoded
before the Basic encoding as RFC 6749 section 2.3.1 asks; the bearer token goes to the API
only.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any
from urllib.parse import quote_plus

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
        # RFC 6749 section 2.3.1: form-urlencode each, then Basic-encode the pair
        pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
        basic = base64.b64encode(pair.encode()).decode()
        self._credentials = f"Basic {basic}"
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self.refreshes = 0

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        raise RuntimeError("the Sendcloud client is asynchronous")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        async with self._lock:
            if self._token is None or self._clock() >= self._refresh_at:
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
        self._refresh_at = self._clock() + refresh_after(float(lifetime))
        self.refreshes += 1


def refresh_after(lifetime: float) -> float:
    """Seconds until a token of ``lifetime`` is replaced: ``REFRESH_MARGIN_SECONDS`` before it
    expires, or halfway through a lifetime shorter than twice that margin (a 30 s token is
    not fetched anew for every request)."""
    return max(lifetime - REFRESH_MARGIN_SECONDS, lifetime / 2)


async def _read(response: httpx.Response) -> httpx.Response:
    await response.aread()
    return response


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    return body if isinstance(body, dict) else {}
