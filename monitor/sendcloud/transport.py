"""The request path under ``httpx.AsyncClient``: aiohttp's HTTP/1.1 engine, without cookies.

httpx keeps its API for the client (auth flows, streaming with a cap, ``response.links``,
``MockTransport`` in tests); only the transport changes. ``bench/client.py`` measures the
choice: per GET of a 100-record page, httpx's own transport (httpcore + h11) costs about twice
the CPU of ``httpx_aiohttp.AiohttpTransport``.

Two things the aiohttp transport does differently, handled here:

- it keeps aiohttp's cookie jar: the API needs no cookies, and a cookie set by a proxy must not
  ride along on later requests, so both aiohttp's jar and httpx's are no-ops (:class:`NoCookies`);
- it reports a refused connection and a server hang-up as ``httpx.ConnectTimeout``:
  :func:`failure_reason` classifies a failed request by the aiohttp error underneath, and
  :func:`failure_text` says what happened in words (``connection refused``).

And one it does as browsers do: a GET whose kept-alive connection turns out dead (reset or
closed by the server) is sent once more on a new connection (RFC 9112, 9.3.1), inside one
attempt of the client's retries. The API may so see one request more than the budget counted;
that happens only when a connection dies.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import socket
import ssl
import urllib.request
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

#: Idle sockets are closed after this long (as httpx's default keep-alive expiry).
KEEPALIVE_SECONDS = 5.0


class NoCookies(http.cookiejar.CookieJar):
    """A cookie jar that keeps nothing: no ``Set-Cookie`` is stored, none is sent."""

    def extract_cookies(self, response: Any, request: urllib.request.Request) -> None:
        return None

    def add_cookie_header(self, request: urllib.request.Request) -> None:
        return None


def new_transport(
    *,
    max_connections: int,
    ssl_context: ssl.SSLContext | None = None,
) -> httpx.AsyncBaseTransport:
    """A pooled transport for the API (its session is made on first use, inside the loop).

    Proxies from the environment (``HTTPS_PROXY``, ``NO_PROXY``, read when the session is
    made) apply, as with httpx's own transport; TLS verifies against the CA bundle httpx uses.
    """
    context = ssl_context or httpx.create_ssl_context()

    def session() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=max_connections,
            limit_per_host=0,
            keepalive_timeout=KEEPALIVE_SECONDS,
            ssl=context,
        )
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            # aiohttp looks proxies up again on every request when it trusts the environment
            # (about a third of a GET's CPU): only when the environment names a proxy
            trust_env=bool(urllib.request.getproxies()),
            auto_decompress=False,  # httpx decodes the body itself
        )

    return _Transport(client=session)


class _Transport(AiohttpTransport):
    """httpx-aiohttp's transport; an aiohttp error it does not map (a malformed response, say)
    becomes an httpx error too, so the client sees only httpx's failure classes."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except aiohttp.ClientError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc


def failure_text(exc: httpx.TransportError) -> str:
    """What happened, as an operator says it (``connection refused``, ``host name not
    found``, ``timed out``, ``TLS certificate not trusted``): from the error underneath, not
    the httpx class — httpx-aiohttp calls a refused connection ``ConnectTimeout``."""
    for cause in _causes(exc):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "host name not found"
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate not accepted ({cause.verify_message})"
        if isinstance(cause, ssl.SSLError):
            return "TLS handshake failed"
        if isinstance(cause, aiohttp.ServerDisconnectedError):
            return "the server closed the connection"
        if isinstance(cause, ConnectionResetError):
            return "connection reset"
    reason = failure_reason(exc)
    return {
        "timeout": "timed out",
        "connect_error": "could not connect",
        "connection_reset": "the connection broke off (no complete answer)",
    }.get(reason, "no answer")


def refused(exc: httpx.TransportError) -> bool:
    """Whether nothing listens at the address: trying again at once would only delay saying
    so (the next poll tries again)."""
    return any(isinstance(cause, ConnectionRefusedError) for cause in _causes(exc))


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and the errors under it (``__cause__``, ``__context__``, aiohttp's
    ``os_error``), outermost first."""
    found: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop(0)
        if current is None or any(current is seen for seen in found):
            continue
        found.append(current)
        todo += [current.__cause__, current.__context__, getattr(current, "os_error", None)]
    return found


def failure_reason(exc: httpx.TransportError) -> str:
    """Why a request got no response: ``timeout``, ``connect_error``, ``connection_reset`` or
    ``unreachable`` — the same for httpx's own transport and the aiohttp one."""
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientError | asyncio.TimeoutError):
        return _aiohttp_reason(cause)
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect_error"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return "connection_reset"
    return "unreachable"


def _aiohttp_reason(cause: BaseException) -> str:
    if isinstance(cause, asyncio.TimeoutError):  # ServerTimeoutError, ConnectionTimeoutError
        return "timeout"
    if isinstance(cause, aiohttp.ClientConnectorError):  # refused, DNS, no route
        return "connect_error"
    if isinstance(
        cause,
        aiohttp.ServerDisconnectedError
        | aiohttp.ClientPayloadError
        | aiohttp.ClientOSError
        | aiohttp.ClientResponseError,  # a malformed response, as h11's RemoteProtocolError
    ):
        return "connection_reset"
    return "unreachable"
