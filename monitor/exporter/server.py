"""The HTTP endpoints: /metrics, /healthz, /readyz and a landing page.

Served by a threaded WSGI server in its own threads (like prometheus-client's own
``start_http_server``), so rendering a large scrape never blocks the event loop that polls.
A slow client cannot pin the server: every connection has a deadline for its TLS handshake and
request (``timeout_seconds``), at most ``max_connections`` are served at once and the excess
are closed at once rather than queued; request lines and headers are bounded by the standard
library (64 KiB a line, 100 headers), and no endpoint reads a request body.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from html import escape
from http import HTTPStatus
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from monitor import __version__
from monitor.exporter.badges import PUBLIC_PREFIX
from monitor.exporter.status import Status, render_html

StartResponse = Callable[..., Any]
#: (method, path, user or None, body) -> (status, JSON document)
MutesApi = Callable[[str, str, str | None, bytes], tuple[int, Any]]
MAX_BODY_BYTES = 65536
Environ = dict[str, Any]

LANDING = """<!doctype html>
<html><head><title>Sendcloud integration monitor</title></head>
<body><h1>Sendcloud integration monitor</h1><p>Version {version}</p>
<ul><li><a href="/metrics">/metrics</a> Prometheus metrics</li>
<li><a href="/healthz">/healthz</a> liveness</li>
<li><a href="/readyz">/readyz</a> readiness (after each account's first full read)</li></ul>
</body></html>
"""


CONNECTION_TIMEOUT_SECONDS = 10.0
MAX_CONNECTIONS = 1024


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    timeout = 1.0  # handle_request()'s wait, should the connection it was woken for be gone
    ssl_context: ssl.SSLContext | None = None
    slots = threading.BoundedSemaphore(MAX_CONNECTIONS)  # replaced per server
    rejected = 0  # connections closed because every slot was taken

    def process_request(self, request: Any, client_address: Any) -> None:
        """One thread per connection, up to the cap; beyond it, close instead of queueing."""
        if not self.slots.acquire(blocking=False):
            self.rejected += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def get_request(self) -> tuple[socket.socket, Any]:
        """With TLS, wrap each connection; the handshake happens in the request's own thread,
        so a slow or plain-HTTP client never blocks accepting others."""
        sock, address = super().get_request()
        if self.ssl_context is None:
            return sock, address
        wrapped = self.ssl_context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        )
        return wrapped, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # failed handshakes and dropped clients are not the operator's problem


class _IPv6Server(_ThreadingServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    disable_nagle_algorithm = True
    timeout = CONNECTION_TIMEOUT_SECONDS  # socket timeout: TLS handshake, request, response

    def log_message(self, format: str, *args: Any) -> None:
        return  # scrapes every few seconds would drown the useful log lines

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        if getattr(self.server, "ssl_context", None) is not None:
            environ["HTTPS"] = "on"  # wsgiref then says wsgi.url_scheme "https"
        return environ


def make_app(
    metrics: CollectorRegistry | Callable[[Environ, StartResponse], Iterable[bytes]],
    ready: Callable[[], bool],
    status: Callable[[], tuple[Status, datetime]] | None = None,
    reload: Callable[[], tuple[bool, str]] | None = None,
    api: Callable[[str, dict[str, list[str]]], tuple[int, Any]] | None = None,
    badges: Callable[[str, dict[str, list[str]]], tuple[int, str]] | None = None,
    pages: Callable[[str, str], tuple[int, str]] | None = None,
    mutes: MutesApi | None = None,
    public_badges: Callable[[str, dict[str, list[str]]], tuple[int, str]] | None = None,
) -> Callable[[Environ, StartResponse], Iterable[bytes]]:
    """The WSGI application: dispatch by path; /metrics from a registry (prometheus-client's
    rendering) or a WSGI exposition, the status page and /status.json from ``status``
    (without it, ``/`` is a landing page), POST /-/reload to ``reload``, ``/api/v1/mutes`` to
    ``mutes`` (method, path, the user basic auth let in, the body), the rest of ``/api/v1/``
    (the history API) to ``api``; ``/public/badge/`` (served without credentials) to
    ``public_badges`` alone, and nothing else under it. ``pages`` get the path and the base URL
    the page was asked for (for the embed code of badges)."""
    metrics_app = make_wsgi_app(metrics) if isinstance(metrics, CollectorRegistry) else metrics

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path.startswith(PUBLIC_PREFIX):  # first: nothing but a badge is ever served here
            answer, svg = (
                public_badges(path, parse_qs(environ.get("QUERY_STRING", "")))
                if public_badges is not None
                else (404, "not found\n")
            )
            kind = "image/svg+xml" if public_badges is not None else "text/plain; charset=utf-8"
            return _text(
                start_response,
                f"{answer} {HTTPStatus(answer).phrase}",
                svg,
                kind,
                [("Cache-Control", "max-age=60")],
            )
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path == "/-/reload" and reload is not None:
            if environ.get("REQUEST_METHOD") != "POST":
                return _text(start_response, "405 Method Not Allowed", "use POST\n")
            ok, message = reload()
            code = "200 OK" if ok else "500 Internal Server Error"
            return _text(start_response, code, message + "\n")
        if path.startswith(("/integrations/", "/accounts/")) and pages is not None:
            answer, page = pages(path, _base_url(environ))
            status_line = f"{answer} {HTTPStatus(answer).phrase}"
            return _text(start_response, status_line, page, "text/html; charset=utf-8")
        if path.startswith("/badge/") and badges is not None:
            answer, svg = badges(path, parse_qs(environ.get("QUERY_STRING", "")))
            return _text(
                start_response,
                f"{answer} {HTTPStatus(answer).phrase}",
                svg,
                "image/svg+xml",
                [("Cache-Control", "max-age=60")],
            )
        if (path == "/api/v1/mutes" or path.startswith("/api/v1/mutes/")) and mutes is not None:
            method = environ.get("REQUEST_METHOD", "GET")
            try:
                length = min(int(environ.get("CONTENT_LENGTH") or 0), MAX_BODY_BYTES)
            except ValueError:
                length = 0
            body = environ["wsgi.input"].read(length) if length > 0 else b""
            answer, document = mutes(method, path, environ.get("REMOTE_USER"), body)
            return _text(
                start_response,
                f"{answer} {HTTPStatus(answer).phrase}",
                json.dumps(document, indent=1),
                "application/json",
            )
        if path.startswith("/api/v1/") and api is not None:
            answer, document = api(path, parse_qs(environ.get("QUERY_STRING", "")))
            return _text(
                start_response,
                f"{answer} {HTTPStatus(answer).phrase}",
                json.dumps(document, indent=1),
                "application/json",
            )
        if path == "/status.json" and status is not None:
            document = json.dumps(status()[0].to_json(), indent=1)
            return _text(start_response, "200 OK", document, "application/json")
        if path == "/" and status is not None:
            page = render_html(*status())
            return _text(start_response, "200 OK", page, "text/html; charset=utf-8")
        if path == "/healthz":
            return _text(start_response, "200 OK", "ok\n")
        if path == "/readyz":
            if ready():
                return _text(start_response, "200 OK", "ready\n")
            return _text(start_response, "503 Service Unavailable", "waiting for first poll\n")
        if path == "/":
            body = LANDING.format(version=escape(__version__))
            return _text(start_response, "200 OK", body, "text/html; charset=utf-8")
        return _text(start_response, "404 Not Found", "not found\n")

    return app


def _base_url(environ: Environ) -> str:
    """The scheme and host the client asked for (what an embed code must point at)."""
    scheme = "https" if environ.get("wsgi.url_scheme") == "https" else "http"
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}"
    return f"{scheme}://{host}"


def _text(
    start_response: StartResponse,
    status: str,
    body: str,
    kind: str = "text/plain; charset=utf-8",
    headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    data = body.encode()
    start_response(
        status, [("Content-Type", kind), ("Content-Length", str(len(data))), *(headers or [])]
    )
    return [data]


class HttpServer:
    """Serves the app from background threads; ``port`` is the bound one (0 picks a free one)."""

    def __init__(
        self,
        host: str,
        port: int,
        app: Callable[[Environ, StartResponse], Iterable[bytes]],
        ssl_context: ssl.SSLContext | None = None,
        *,
        timeout_seconds: float = CONNECTION_TIMEOUT_SECONDS,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        server_class = _IPv6Server if ":" in host else _ThreadingServer
        handler = type("Handler", (_QuietHandler,), {"timeout": timeout_seconds})
        self._server = make_server(
            host, port, app, server_class=server_class, handler_class=handler
        )
        self._server.ssl_context = ssl_context
        self._server.slots = threading.BoundedSemaphore(max_connections)
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, name="http-server", daemon=True)

    @property
    def rejected(self) -> int:
        """Connections closed at once because ``max_connections`` were being served."""
        return int(self._server.rejected)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._server.server_close()
        self._wake_r.close()
        self._wake_w.close()

    def _serve(self) -> None:
        """``serve_forever`` without its polling: it sleeps until a connection comes or
        ``stop`` wakes it (socketserver's loop wakes every ``poll_interval`` to look for a
        shutdown request; ten times a second that was a visible share of the daemon's CPU)."""
        server = self._server
        with selectors.DefaultSelector() as selector:
            selector.register(server, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping.is_set():
                ready = selector.select()
                if not self._stopping.is_set() and any(k.fileobj is server for k, _ in ready):
                    server.handle_request()  # accepts the waiting connection, then returns
                server.service_actions()
