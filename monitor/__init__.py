"""Sendcloud integration health monitor: polls the Integrations API, exports Prometheus metrics."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sendcloud-integration-monitor")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
