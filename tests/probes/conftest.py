"""Shops on 127.0.0.1 with certificates made by trustme, and a probe runner aimed at them."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme

from monitor.probes.runner import ProbeRunner
from monitor.probes.tls import verifying_context
from monitor.simulator.shops import ShopServer


class Shops:
    """Certificates of a CA the probes trust (and of one they do not), served on loopback."""

    def __init__(self, tmp_path: Path) -> None:
        self.ca = trustme.CA(organization_name="Trusted test CA")
        self.other_ca = trustme.CA(organization_name="Unknown test CA")
        self.ca_file = tmp_path / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.servers: list[ShopServer] = []

    def context(
        self,
        *names: str,
        not_after: datetime | None = None,
        not_before: datetime | None = None,
        ca: trustme.CA | None = None,
    ) -> ssl.SSLContext:
        leaf = (ca or self.ca).issue_cert(
            *(names or ("localhost", "127.0.0.1")), not_after=not_after, not_before=not_before
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(context)
        return context

    def serve(self, mode: str = "tls", context: ssl.SSLContext | None = None) -> ShopServer:
        if mode == "tls" and context is None:
            context = self.context()
        server = ShopServer(mode, context).start()  # type: ignore[arg-type]
        self.servers.append(server)
        return server

    def runner(self, **overrides: object) -> ProbeRunner:
        values: dict[str, object] = {
            "interval_seconds": 60.0,
            "concurrency": 4,
            "timeout_seconds": 3.0,
            "context": verifying_context(self.ca_file),
            "allow_private": True,
            "clock": lambda: datetime.now(UTC),
        }
        values.update(overrides)
        return ProbeRunner(**values)  # type: ignore[arg-type]

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture
def shops(tmp_path: Path) -> Iterator[Shops]:
    found = Shops(tmp_path)
    yield found
    found.stop()


def days(n: float) -> datetime:
    return datetime.now(UTC) + timedelta(days=n)


Clock = Callable[[], datetime]
