"""The request path (httpx on aiohttp's engine) against real sockets on 127.0.0.1: every way a
connection fails is classified as httpx's own transport classifies it, and no cookie is kept."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from monitor.sendcloud import SendcloudClient, Unreachable
from monitor.sendcloud.transport import (
    NoCookies,
    failure_reason,
    failure_text,
    new_transport,
    refused,
)

Behaviour = Callable[[socket.socket], None]


def _close(conn: socket.socket) -> None:
    conn.close()


def _garbage(conn: socket.socket) -> None:
    conn.sendall(b"HELLO WORLD\r\n\r\n")
    conn.close()


def _slow_headers(conn: socket.socket) -> None:
    time.sleep(1.5)
    conn.close()


def _truncated(conn: socket.socket) -> None:
    conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"data')
    conn.close()


def _reset(conn: socket.socket) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def _slow_body(conn: socket.socket) -> None:
    conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"data')
    time.sleep(1.5)
    conn.close()


def _bad_length(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n{}")
    conn.close()


BEHAVIOURS: dict[str, tuple[Behaviour, str]] = {
    "hang-up": (_close, "connection_reset"),
    "garbage": (_garbage, "connection_reset"),
    "slow-headers": (_slow_headers, "timeout"),
    "truncated": (_truncated, "connection_reset"),
    "reset": (_reset, "connection_reset"),
    "slow-body": (_slow_body, "timeout"),
    "bad-length": (_bad_length, "connection_reset"),
}


@pytest.fixture
def misbehaving() -> Iterator[Callable[[Behaviour], int]]:
    """Starts a server on 127.0.0.1 that reads a request and then does ``behaviour``."""
    sockets: list[socket.socket] = []

    def start(behaviour: Behaviour) -> int:
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()
        sockets.append(server)

        def serve() -> None:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                conn.recv(65536)
                behaviour(conn)

        threading.Thread(target=serve, daemon=True).start()
        return int(server.getsockname()[1])

    yield start
    for server in sockets:
        server.close()


def refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def reason_with(transport: httpx.AsyncBaseTransport | None, port: int) -> str:
    async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(0.5)) as client:
        with pytest.raises(httpx.TransportError) as raised:
            async with client.stream("GET", f"http://127.0.0.1:{port}/") as response:
                await response.aread()
    return failure_reason(raised.value)


@pytest.mark.parametrize("name", list(BEHAVIOURS))
async def test_each_failure_is_classified_as_httpx_classifies_it(
    misbehaving: Callable[[Behaviour], int], name: str
) -> None:
    behaviour, expected = BEHAVIOURS[name]
    port = misbehaving(behaviour)
    assert await reason_with(None, port) == expected  # httpx's own transport
    assert await reason_with(new_transport(max_connections=2), port) == expected


async def test_a_refused_connection_is_a_connect_error_on_both_paths() -> None:
    port = refused_port()
    assert await reason_with(None, port) == "connect_error"
    # httpx-aiohttp raises ConnectTimeout for it: the cause decides, not the class
    assert await reason_with(new_transport(max_connections=2), port) == "connect_error"


async def test_a_refused_connection_is_said_so_at_once_on_both_paths() -> None:
    """httpx-aiohttp calls it ConnectTimeout: the words come from the error underneath."""
    port = refused_port()
    for transport in (None, new_transport(max_connections=2)):
        async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5)) as client:
            with pytest.raises(httpx.TransportError) as raised:
                await client.get(f"http://127.0.0.1:{port}/")
        assert failure_text(raised.value) == "connection refused"
        assert refused(raised.value)


async def test_a_name_that_does_not_resolve_is_said_so() -> None:
    for transport in (None, new_transport(max_connections=2)):
        async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5)) as client:
            with pytest.raises(httpx.TransportError) as raised:
                await client.get("http://sendcloud-api.invalid/")
        assert failure_text(raised.value) == "host name not found"
        assert not refused(raised.value)


async def test_the_client_reports_a_refused_connection_at_once_and_names_it() -> None:
    """Nothing listens there: one attempt, reported as "connection refused" (the metric's
    reason stays ``connect_error``), never a timeout after retries; the next poll tries
    again."""
    port = refused_port()
    seen: list[tuple[str, str]] = []

    class Events:
        def request(self, endpoint: str, code: str, seconds: float) -> None:
            seen.append((endpoint, code))

        def error(self, endpoint: str, reason: str) -> None:
            seen.append((endpoint, reason))

        def throttled(self, pause_seconds: float) -> None: ...

        def budget_wait(self, seconds: float) -> None: ...

    client = SendcloudClient(
        f"http://127.0.0.1:{port}/api/v3", "p", "s", backoff_seconds=0.01, events=Events()
    )
    try:
        with pytest.raises(Unreachable) as raised:
            await client.get_integration(1)
    finally:
        await client.aclose()
    assert raised.value.reason == "connect_error"
    assert str(raised.value) == "connection refused"
    assert seen == [("get_integration", "network_error"), ("get_integration", "connect_error")]


class _CookieServer:
    """Answers every request with a Set-Cookie and records the Cookie header it got."""

    def __init__(self) -> None:
        self.cookies: list[str | None] = []
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen()
        self.port = int(self._server.getsockname()[1])
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with conn:
                while request := conn.recv(65536):
                    lines = request.decode("latin-1").split("\r\n")
                    cookies = [h for h in lines if h.lower().startswith("cookie:")]
                    cookie = cookies[0].split(":", 1)[1].strip() if cookies else None
                    self.cookies.append(cookie)
                    body = b'{"data": []}'
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Set-Cookie: session=proxy-session; Path=/\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                    )

    def close(self) -> None:
        self._server.close()


async def test_no_cookie_is_kept_or_sent() -> None:
    server = _CookieServer()
    client = SendcloudClient(f"http://127.0.0.1:{server.port}/api/v3", "p", "s")
    try:
        for _ in range(3):
            await client.account_logs()
    finally:
        await client.aclose()
        server.close()
    assert server.cookies == [None, None, None]


def test_the_null_jar_stores_nothing() -> None:
    jar = httpx.Cookies(NoCookies())
    response = httpx.Response(
        200,
        headers={"Set-Cookie": "a=b; Path=/"},
        request=httpx.Request("GET", "http://127.0.0.1/"),
    )
    jar.extract_cookies(response)
    assert len(jar) == 0
