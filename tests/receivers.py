"""A real HTTP receiver on loopback for webhook tests: scripted statuses, optional delay."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    def __init__(
        self, statuses: list[int] | None = None, delay: float = 0.0, secret: bytes | None = None
    ) -> None:
        self.statuses = list(statuses or [])
        self.delay = delay
        self.secret = secret
        self.bodies: list[Any] = []
        self.attempts = 0
        self.signatures_ok: list[bool] = []
        self.answered = threading.Event()
        self.received = threading.Event()
        self.release = threading.Event()
        self.release.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received.set()
                receiver.release.wait(timeout=10)
                time.sleep(receiver.delay)
                receiver.attempts += 1
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                if status < 300:
                    receiver.bodies.append(json.loads(body))
                    if receiver.secret is not None:
                        expected = hmac.new(receiver.secret, body, hashlib.sha256).hexdigest()
                        given = self.headers.get("X-Signature-SHA256", "")
                        receiver.signatures_ok.append(hmac.compare_digest(expected, given))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                receiver.answered.set()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@contextmanager
def running(receiver: Receiver) -> Iterator[Receiver]:
    thread = threading.Thread(
        target=receiver.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        receiver.server.shutdown()
        receiver.server.server_close()
