"""Prometheus metrics: per-integration series built at scrape time, plus self-metrics.

Per-integration values come from a custom collector that reads the last poll results from the
store and the clock *at scrape time*: ``integration_failing_seconds`` is right at every scrape,
and integrations that vanished from the account or the configuration simply stop being
yielded. The daemon polls in the background rather than at scrape time because Sendcloud
rate-limits (1000 GET/min per account) and several Prometheus replicas would multiply calls.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor import __version__
from monitor.health import utcnow
from monitor.sendcloud import INTERNAL_ERROR, INVALID_ANSWER_REASONS, ClientEvents
from monitor.store import AccountSnapshot, Observation, Status, Store

_POLL_FROM = (
    " Computed at scrape time from the integration's last successful read; frozen at that"
    " read while the integration cannot be read (integration_up 0)."
)
REQUEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
POLL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


@dataclass(frozen=True)
class Family:
    name: str
    help: str
    per_account: bool = False  # labels: account only (else account and integration_id)


#: The per-integration and per-account families, in exposition order. The two elapsed-time
#: families come first; only they depend on the scrape's time.
FAILING_SECONDS = "integration_failing_seconds"
STALENESS_SECONDS = "integration_fetch_staleness_seconds"
INFO = "integration_info"
FAMILIES = (
    Family(
        FAILING_SECONDS,
        "Seconds since Sendcloud started failing to fetch orders from the integration "
        "(now - started_failing_at); 0 when not failing." + _POLL_FROM,
    ),
    Family(
        STALENESS_SECONDS,
        "Seconds since orders were last fetched (now - last_fetched_at, or now - created_at "
        "when never fetched)." + _POLL_FROM,
    ),
    Family(
        "integration_failing",
        "1 when started_failing_at is set, else 0; as of the last successful read.",
    ),
    Family(
        "integration_fetch_stale",
        "1 when the fetch staleness exceeded the integration's stale threshold at the last "
        "successful read, else 0.",
    ),
    Family(
        "integration_fetch_stale_threshold_seconds",
        "The configured staleness threshold for the integration.",
    ),
    Family(
        "integration_started_failing_timestamp_seconds",
        "started_failing_at as Unix time; absent while the integration is not failing.",
    ),
    Family(
        "integration_last_fetched_timestamp_seconds",
        "last_fetched_at as Unix time; absent while orders were never fetched.",
    ),
    Family(INFO, "Integration metadata from Sendcloud; join on integration_id with group_left."),
    Family("integration_up", "1 when the last poll returned the integration, else 0."),
    Family("integration_not_found", "1 when the API answered 404 for the integration, else 0."),
    Family(
        "integration_last_poll_success_timestamp_seconds",
        "When the integration was last read successfully (age of the values above).",
    ),
    Family(
        "integration_monitor_last_poll_success_timestamp_seconds",
        "When the last poll cycle without an account-wide error finished.",
        per_account=True,
    ),
    Family(
        "sendcloud_api_auth_ok",
        "0 while the Sendcloud API rejects the account's credentials, else 1.",
        per_account=True,
    ),
)
ELAPSED = frozenset({FAILING_SECONDS, STALENESS_SECONDS})


def account_samples(snapshot: AccountSnapshot) -> Iterator[tuple[str, float]]:
    """(family, value) of one account's own series."""
    yield "sendcloud_api_auth_ok", 1.0 if snapshot.auth_ok else 0.0
    if snapshot.last_cycle_success is not None:
        yield (
            "integration_monitor_last_poll_success_timestamp_seconds",
            snapshot.last_cycle_success.timestamp(),
        )


def integration_samples(observation: Observation) -> Iterator[tuple[str, float]]:
    """(family, value) of one integration's series that do not depend on the scrape's time
    (all but the elapsed ones, see ``elapsed_samples``, and ``integration_info``)."""
    yield "integration_up", 1.0 if observation.status is Status.OK else 0.0
    yield "integration_not_found", 1.0 if observation.status is Status.NOT_FOUND else 0.0
    if observation.last_success is not None:
        yield (
            "integration_last_poll_success_timestamp_seconds",
            observation.last_success.timestamp(),
        )
    health, record = observation.health, observation.record
    if not observation.has_values or health is None or record is None:
        return
    yield "integration_failing", float(health.failing)
    yield "integration_fetch_stale", float(health.stale)
    yield "integration_fetch_stale_threshold_seconds", health.stale_after_seconds
    if record.started_failing_at is not None:
        yield "integration_started_failing_timestamp_seconds", record.started_failing_at.timestamp()
    if record.last_fetched_at is not None:
        yield "integration_last_fetched_timestamp_seconds", record.last_fetched_at.timestamp()


def elapsed_samples(observation: Observation, at: datetime) -> Iterator[tuple[str, float]]:
    health = observation.health
    assert health is not None
    yield FAILING_SECONDS, health.failing_seconds_at(at)
    staleness = health.staleness_seconds_at(at)
    if staleness is not None:
        yield STALENESS_SECONDS, staleness


def info_labels(observation: Observation) -> dict[str, str] | None:
    """The labels of ``integration_info``, or None when there is no record to describe."""
    if not observation.has_values or observation.record is None:
        return None
    return _info_labels(observation)


class IntegrationCollector(Collector):
    """Yields fresh metric families from the store on every scrape (prometheus-client's own
    rendering; the reference that the cached
    :class:`~monitor.exporter.exposition.Exposition` matches)."""

    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self._clock()
        gauges = {
            f.name: GaugeMetricFamily(
                f.name,
                f.help,
                labels=["account"] if f.per_account else ["account", "integration_id"],
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
                samples = list(integration_samples(observation))
                at = observation.values_at(now)
                if at is not None:
                    samples += elapsed_samples(observation, at)
                for name, value in samples:
                    gauges[name].add_metric(labels, value)
                found = info_labels(observation)
                if found is not None:
                    info.add_metric(labels, found)
        for family in FAMILIES:
            yield info if family.name == INFO else gauges[family.name]


def _info_labels(observation: Observation) -> dict[str, str]:
    record = observation.record
    assert record is not None
    return {
        "shop_name": record.shop_name or "",
        "shop_url": record.shop_url or "",
        "integration_type": record.type or "",
        "feedback_type": record.feedback_type or "",
        "service_point_enabled": _flag(record.service_point_enabled),
        "webhook_active": _flag(record.webhook_active),
    }


def _flag(value: bool | None) -> str:
    return "" if value is None else str(value).lower()


class Metrics:
    """Every metric of the daemon, registered in one injected registry."""

    def __init__(
        self,
        store: Store,
        accounts: list[str],
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], datetime] = utcnow,
        poll_intervals: Mapping[str, float] | None = None,
        shard: str = "",
    ) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created: unused series
        #: The daemon's own metrics (counters, histograms, ...): small, rendered per scrape.
        self.own = CollectorRegistry()
        # Every series carries `account`, also with one account: adding a second one (or a
        # reload) never changes the identity of existing series.
        account = ("account",)  # a tuple: spliced into the label lists below
        self._requests = Counter(
            "sendcloud_api_requests",
            "Requests to the Sendcloud API by endpoint and HTTP status "
            "(code=network_error when no response arrived).",
            [*account, "endpoint", "code"],
            registry=self.own,
        )
        self._request_seconds = Histogram(
            "sendcloud_api_request_duration_seconds",
            "Duration of Sendcloud API requests, including reading the body.",
            [*account, "endpoint"],
            buckets=REQUEST_BUCKETS,
            registry=self.own,
        )
        self._api_errors = Counter(
            "sendcloud_api_errors",
            "Sendcloud API requests that failed after their retries, by endpoint and reason.",
            [*account, "endpoint", "reason"],
            registry=self.own,
        )
        self._throttled = Counter(
            "sendcloud_api_throttled",
            "429 answers from Sendcloud; each pauses the account for its Retry-After.",
            list(account),
            registry=self.own,
        )
        self._budget_wait = Counter(
            "sendcloud_api_budget_wait_seconds",
            "Seconds requests waited for the account's request budget.",
            list(account),
            registry=self.own,
        )
        self._poll_seconds = Histogram(
            "integration_monitor_poll_duration_seconds",
            "Duration of one poll cycle of an account.",
            list(account),
            buckets=POLL_BUCKETS,
            registry=self.own,
        )
        self._polls = Counter(
            "integration_monitor_polls",
            "Poll cycles by outcome (error: an account-wide failure such as auth or outage).",
            [*account, "outcome"],
            registry=self.own,
        )
        self._scheduler_events = Counter(
            "integration_monitor_scheduler_events",
            "Scheduler trouble: polls skipped because the previous one still ran, missed runs, "
            "and job crashes.",
            [*account, "event"],
            registry=self.own,
        )
        self._alerts = Counter(
            "integration_monitor_alerts",
            "Alert events emitted, by alert and status (firing includes repeats and escalations).",
            ["alert", "status"],
            registry=self.own,
        )
        self._deliveries = Counter(
            "integration_monitor_alert_deliveries",
            "Alert deliveries by sink and outcome (success, failed after retries, dropped from "
            "a full queue).",
            ["sink", "outcome"],
            registry=self.own,
        )
        self._queue_depth = Gauge(
            "integration_monitor_alert_queue_depth",
            "Alert deliveries waiting in a sink's queue.",
            ["sink"],
            registry=self.own,
        )
        self._firing = Gauge(
            "integration_monitor_alerts_firing",
            "Alerts firing now, by alert.",
            ["alert"],
            registry=self.own,
        )
        self._interval = Gauge(
            "integration_monitor_poll_interval_seconds",
            "The configured poll interval (for alert rules: no successful poll for N intervals).",
            list(account),
            registry=self.own,
        )
        self._polling_start = Gauge(
            "integration_monitor_polling_start_timestamp_seconds",
            "When this process started polling the account (its start, or the reload that added "
            "or changed the account): the shipped rules count missing polls from here until the "
            "first successful one.",
            list(account),
            registry=self.own,
        )
        self._reload_ok = Gauge(
            "integration_monitor_config_last_reload_successful",
            "1 when the last configuration (re)load succeeded, 0 when it was rejected.",
            registry=self.own,
        )
        self._reload_time = Gauge(
            "integration_monitor_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully (start or reload).",
            registry=self.own,
        )
        build = Info(
            "integration_monitor_build",
            "Version of the monitor and of Python it runs on, and the replica's shard (i/n).",
            registry=self.own,
        )
        build.info(
            {"version": __version__, "python_version": platform.python_version(), "shard": shard}
        )
        self._per_account: tuple[Counter | Gauge | Histogram, ...] = (
            self._requests,
            self._request_seconds,
            self._api_errors,
            self._throttled,
            self._budget_wait,
            self._poll_seconds,
            self._polls,
            self._scheduler_events,
            self._interval,
            self._polling_start,
        )
        self._clock = clock
        self.collector = IntegrationCollector(store, clock)
        #: Everything, rendered by prometheus-client itself: the reference that the cached
        #: exposition (what /metrics serves) matches, and what tests read.
        self.registry = registry if registry is not None else CollectorRegistry()
        self.registry.register(self.own)
        self.registry.register(self.collector)
        for name in accounts:
            self.add_account(name, (poll_intervals or {}).get(name))

    def add_account(self, name: str, poll_interval: float | None) -> None:
        """Series of a new account: zeros from the start rather than absent series, so that
        ``increase()`` in the shipped rules sees the first error, throttle and failed poll."""
        if poll_interval is not None:
            self._interval.labels(name).set(poll_interval)
        self._polling_start.labels(name).set(self._clock().timestamp())
        self._polls.labels(name, "success")
        self._polls.labels(name, "error")
        self._throttled.labels(name)
        for endpoint in ("list_integrations", "get_integration"):
            for reason in INVALID_ANSWER_REASONS:
                self._api_errors.labels(name, endpoint, reason)
        self._api_errors.labels(name, "poll", INTERNAL_ERROR)

    def remove_account(self, name: str) -> None:
        """An account that left the configuration: every series labelled with it ends (its
        per-integration series end with the store)."""
        for metric in self._per_account:
            metric.remove_by_labels({"account": name})

    def config_loaded(self, ok: bool, at: datetime) -> None:
        self._reload_ok.set(1.0 if ok else 0.0)
        if ok:
            self._reload_time.set(at.timestamp())

    def client_events(self, account: str) -> ClientEvents:
        """The hook the client of ``account`` reports its requests to."""
        return _ClientMetrics(
            account,
            requests=self._requests,
            durations=self._request_seconds,
            errors=self._api_errors,
            throttled=self._throttled,
            budget_wait=self._budget_wait,
        )

    def observe_cycle(self, account: str, seconds: float, ok: bool) -> None:
        self._poll_seconds.labels(account).observe(seconds)
        self._polls.labels(account, "success" if ok else "error").inc()

    def scheduler_event(self, account: str, event: str) -> None:
        self._scheduler_events.labels(account, event).inc()

    def alert_emitted(self, alert: str, status: str) -> None:
        self._alerts.labels(alert, status).inc()

    def delivery(self, sink: str, outcome: str) -> None:
        self._deliveries.labels(sink, outcome).inc()

    def queue_depth(self, sink: str, depth: int) -> None:
        self._queue_depth.labels(sink).set(depth)

    def alerts_firing(self, counts: Mapping[str, int]) -> None:
        for alert, count in counts.items():
            self._firing.labels(alert).set(count)


class _ClientMetrics:
    """:class:`ClientEvents` for one account, recorded as metrics."""

    def __init__(
        self,
        account: str,
        *,
        requests: Counter,
        durations: Histogram,
        errors: Counter,
        throttled: Counter,
        budget_wait: Counter,
    ) -> None:
        self._account = account
        self._requests = requests
        self._durations = durations
        self._errors = errors
        self._throttled = throttled.labels(account)
        self._budget_wait = budget_wait.labels(account)

    def request(self, endpoint: str, code: str, seconds: float) -> None:
        self._requests.labels(self._account, endpoint, code).inc()
        self._durations.labels(self._account, endpoint).observe(seconds)

    def error(self, endpoint: str, reason: str) -> None:
        self._errors.labels(self._account, endpoint, reason).inc()

    def throttled(self, pause_seconds: float) -> None:
        self._throttled.inc()

    def budget_wait(self, seconds: float) -> None:
        self._budget_wait.inc(seconds)
