"""HTTP endpoints over real loopback HTTP."""

from __future__ import annotations

import httpx
from prometheus_client import CollectorRegistry, Gauge

from monitor.exporter.server import HttpServer, make_app


def test_endpoints() -> None:
    registry = CollectorRegistry()
    Gauge("probe_value", "A value.", registry=registry).set(3)
    ready = {"value": False}
    server = HttpServer("127.0.0.1", 0, make_app(registry, lambda: ready["value"]))
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert httpx.get(base + "/healthz").status_code == 200
        assert httpx.get(base + "/readyz").status_code == 503
        ready["value"] = True
        assert httpx.get(base + "/readyz").status_code == 200
        metrics = httpx.get(base + "/metrics")
        assert metrics.status_code == 200
        assert "probe_value 3.0" in metrics.text
        assert metrics.headers["content-type"].startswith("text/plain")
        openmetrics = httpx.get(
            base + "/metrics", headers={"Accept": "application/openmetrics-text"}
        )
        assert openmetrics.text.endswith("# EOF\n")
        landing = httpx.get(base + "/")
        assert landing.headers["content-type"].startswith("text/html")
        assert 'href="/metrics"' in landing.text
        assert httpx.get(base + "/nope").status_code == 404
    finally:
        server.stop()


def test_ipv6_loopback() -> None:
    registry = CollectorRegistry()
    try:
        server = HttpServer("::1", 0, make_app(registry, lambda: True))
    except OSError:  # no IPv6 on this machine
        return
    server.start()
    try:
        assert httpx.get(f"http://[::1]:{server.port}/healthz").status_code == 200
    finally:
        server.stop()
