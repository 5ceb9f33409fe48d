"""prometheus-client's own rendering of the per-integration families: the reference that
``/metrics`` (the cached :class:`~monitor.exporter.exposition.Exposition`) must equal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from monitor.exporter.families import (
    FAMILIES,
    INFO,
    account_samples,
    elapsed_samples,
    finding_samples,
    info_labels,
    integration_samples,
)
from monitor.exporter.metrics import Metrics
from monitor.store import Store


class IntegrationCollector(Collector):
    """Yields fresh metric families from the store on every collection."""

    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self._clock()
        gauges: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            f.name: (CounterMetricFamily if f.kind == "counter" else GaugeMetricFamily)(
                f.name.removesuffix("_total") if f.kind == "counter" else f.name,
                f.help,
                labels=["account"]
                if f.per_account
                else ["account", "integration_id", *([f.label] if f.label else [])],
            )
            for f in FAMILIES
            if f.name != INFO
        }
        info_help = next(f.help for f in FAMILIES if f.name == INFO)
        info = InfoMetricFamily("integration", info_help, labels=["account", "integration_id"])
        for account, snapshot in self._store.snapshots().items():
            for name, value in account_samples(snapshot):
                gauges[name].add_metric([account], value)
            for observation in snapshot.integrations.values():
                labels = [account, str(observation.integration_id)]
                samples = list(integration_samples(observation, snapshot.exception_counts))
                at = observation.values_at(now)
                if at is not None:
                    samples += elapsed_samples(observation, at)
                for name, value in samples:
                    gauges[name].add_metric(labels, value)
                findings = snapshot.findings.get(observation.integration_id)
                for name, extra, value in finding_samples(findings):
                    gauges[name].add_metric(labels + ([extra] if extra is not None else []), value)
                found = info_labels(observation)
                if found is not None:
                    info.add_metric(labels, found)
        for family in FAMILIES:
            yield info if family.name == INFO else gauges[family.name]


def reference_text(store: Store, metrics: Metrics, clock: Callable[[], datetime]) -> str:
    """The daemon's own metrics and the integrations, as prometheus-client renders them."""
    registry = CollectorRegistry()
    registry.register(metrics.own)
    registry.register(IntegrationCollector(store, clock))
    return generate_latest(registry).decode()
