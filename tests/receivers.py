"""A real HTTP receiver on loopback for webhook tests: scripted statuses, optional delay, and
signature checking as a careful receiver does it (timestamp + body, replays refused)."""

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
        self,
        statuses: list[int] | None = None,
        delay: float = 0.0,
        secret: bytes | None = None,
        max_age_seconds: float = 300.0,
    ) -> None:
        self.statuses = list(statuses or [])
        self.delay = delay
        self.secret = secret
        self.bodies: list[Any] = []
        self.attempts = 0
        self.signatures_ok: list[bool] = []
        self.rejected_replays = 0
        self.max_age_seconds = max_age_seconds
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
                if receiver.secret is not None and not receiver.verify(self.headers, body):
                    status = 401
                if status < 300:
                    receiver.bodies.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                receiver.answered.set()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True

    def verify(self, headers: Any, body: bytes) -> bool:
        """The documented check: HMAC over ``timestamp.body``, timestamp at most 5 min old."""
        assert self.secret is not None
        timestamp = headers.get("X-Signature-Timestamp", "")
        expected = hmac.new(
            self.secret, timestamp.encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        valid = hmac.compare_digest(expected, headers.get("X-Signature-SHA256", ""))
        self.signatures_ok.append(valid)
        fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) <= self.max_age_seconds
        if valid and not fresh:
            self.rejected_replays += 1
        return valid and fresh

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
