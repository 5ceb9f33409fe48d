"""The exporter side: what Prometheus and people read over HTTP.

- ``families``: the per-integration and per-account families and the samples of a snapshot;
- ``exposition``: ``/metrics`` rendered once per poll, elapsed seconds per scrape, cached gzip;
- ``metrics``: the daemon's own metrics, and the ``/metrics`` endpoint serving them all;
- ``status``: the status document — the page at ``/``, ``/status.json`` and ``check``'s rows;
- ``pages``: the integration and account pages (their last 30 days, from the history);
- ``badges``: flat SVG badges of an integration's state and availability;
- ``mutes``: ``/api/v1/mutes``, the mutes over HTTP (writes need basic auth users);
- ``server``: the HTTP server and its endpoints, with connection limits;
- ``webconfig``: ``--web.config.file``, TLS and basic auth as in Prometheus' exporter-toolkit.

May import ``monitor.sendcloud``, ``monitor.health``, ``monitor.store``, ``monitor.history``
and the base modules.
"""

from monitor.exporter.exposition import Exposition
from monitor.exporter.metrics import Metrics
from monitor.exporter.server import HttpServer, make_app
from monitor.exporter.webconfig import WebConfig, load_web_config

__all__ = ["Exposition", "HttpServer", "Metrics", "WebConfig", "load_web_config", "make_app"]
