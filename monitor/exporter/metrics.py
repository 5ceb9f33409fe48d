"""The daemon's own metrics (API requests, polls, alerts, configuration) and the ``/metrics``
endpoint that serves them together with the per-integration families
(:mod:`monitor.exporter.families`, rendered by :mod:`monitor.exporter.exposition`).
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Mapping
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from monitor import __version__
from monitor.exporter.exposition import Exposition
from monitor.health import utcnow
from monitor.probes import RESULTS
from monitor.sendcloud import INTERNAL_ERROR, INVALID_ANSWER_REASONS, ClientEvents
from monitor.sendcloud.stream import ExceptionStream
from monitor.store import Store

REQUEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
POLL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Metrics:
    """The daemon's own metrics, in one registry (``own``), and ``exposition``: the
    ``/metrics`` endpoint serving them with the per-integration families of ``store``.

    Every series carries ``account``, also with one account: adding a second one (or a reload)
    never changes the identity of existing series.
    """

    def __init__(
        self,
        store: Store,
        accounts: list[str],
        *,
        clock: Callable[[], datetime] = utcnow,
        poll_intervals: Mapping[str, float] | None = None,
        shard: str = "",
    ) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created: unused series
        self.own = CollectorRegistry()
        self._clock = clock
        self._api_metrics()
        self._poll_metrics()
        self._alert_metrics()
        self._history_metrics()
        self._probe_metrics()
        self._config_metrics(shard)
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
        self._probe_targets: Gauge | None = None
        #: account -> its exception-log stream (the daemon sets it)
        self.streams: Callable[[], Mapping[str, ExceptionStream]] = dict
        self.own.register(_Exceptions(lambda: self.streams(), store))
        self.exposition = Exposition(store, self.own, clock)
        for name in accounts:
            self.add_account(name, (poll_intervals or {}).get(name))

    def _api_metrics(self) -> None:
        """Requests to the Sendcloud API, their errors, throttling and budget waits."""
        account = ("account",)  # a tuple: spliced into the label lists
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

    def _poll_metrics(self) -> None:
        """Poll cycles and scheduler trouble."""
        account = ("account",)  # a tuple: spliced into the label lists
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

    def _alert_metrics(self) -> None:
        """Alert events, their delivery and what fires now."""
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
        self._firing_children: dict[str, Gauge] = {}
        self.holds: Callable[[], Mapping[tuple[str, int], str]] = dict
        self.account_holds: Callable[[], Mapping[str, str]] = dict
        self.own.register(_Holds(lambda: self.holds(), lambda: self.account_holds()))
        #: (account, integration_id) -> consecutive polls that answered 404 (the alerts')
        self.not_found_polls: Callable[[], Mapping[tuple[str, int], int]] = dict
        self.own.register(_NotFoundPolls(lambda: self.not_found_polls()))

    def _history_metrics(self) -> None:
        """The history file: whether it can be written, and what could not be."""
        self._history_up = Gauge(
            "integration_monitor_history_up",
            "1 while the history file can be written (0 also when no history is kept: see "
            "integration_monitor_history_enabled).",
            registry=self.own,
        )
        self._history_enabled = Gauge(
            "integration_monitor_history_enabled",
            "1 when a history file is configured.",
            registry=self.own,
        )
        self._history_failures = Counter(
            "integration_monitor_history_failures",
            "History writes that failed (kind=write: the file could not be written, the time is "
            "unknown in the history; kind=dropped: the queue was full).",
            ["kind"],
            registry=self.own,
        )
        for kind in ("write", "dropped"):
            self._history_failures.labels(kind)
        self._mutes_readable = Gauge(
            "integration_monitor_mutes_readable",
            "1 while the mutes (in the history file) can be read; 0 when they cannot: mutes made "
            "since are not applied, and none is when none could be read since the start.",
            registry=self.own,
        )
        self._mutes_readable.set(1.0)

    def mutes_status(self, readable: bool) -> None:
        self._mutes_readable.set(1.0 if readable else 0.0)

    def _probe_metrics(self) -> None:
        """The shop probes: how many were made, with what result, and how many targets."""
        self._shop_probes = Counter(
            "integration_monitor_shop_probes",
            "Shop probes made (a TLS handshake or a TCP connect per distinct host and port), by "
            "result.",
            ["result"],
            registry=self.own,
        )
        self._shop_probe_seconds = Histogram(
            "integration_monitor_shop_probe_duration_seconds",
            "Duration of one shop probe (lookup, connect, handshake; a timeout counts whole).",
            buckets=REQUEST_BUCKETS,
            registry=self.own,
        )
        self._probe_result_children: dict[str, Counter] = {}

    def shop_probes_enabled(self, targets: Callable[[], int]) -> None:
        """Probes are on: their counters start at 0 for every result, and the targets in use
        are counted at each scrape."""
        for result in RESULTS:
            self._probe_result_children[str(result)] = self._shop_probes.labels(str(result))
        if self._probe_targets is None:
            self._probe_targets = Gauge(
                "integration_monitor_shop_probe_targets",
                "Distinct shop hosts and ports probed (each once per probes.interval_seconds).",
                registry=self.own,
            )
        self._probe_targets.set_function(targets)

    def shop_probe(self, result: str, seconds: float) -> None:
        child = self._probe_result_children.get(result)
        if child is None:
            child = self._probe_result_children[result] = self._shop_probes.labels(result)
        child.inc()
        self._shop_probe_seconds.observe(seconds)

    def history_enabled(self, enabled: bool) -> None:
        self._history_enabled.set(1.0 if enabled else 0.0)

    def history_status(self, up: bool) -> None:
        self._history_up.set(1.0 if up else 0.0)

    def history_failure(self, kind: str) -> None:
        self._history_failures.labels(kind).inc()

    def _config_metrics(self, shard: str) -> None:
        """Poll intervals, polling starts, (re)loads and the build."""
        account = ("account",)  # a tuple: spliced into the label lists
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
        self._api_errors.labels(name, "account_logs", "invalid_record")

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
            child = self._firing_children.get(alert)
            if child is None:  # after every poll: a labels() lookup once per alert only
                child = self._firing_children[alert] = self._firing.labels(alert)
            child.set(count)


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
        self._children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._throttled = throttled.labels(account)
        self._budget_wait = budget_wait.labels(account)

    def request(self, endpoint: str, code: str, seconds: float) -> None:
        children = self._children.get((endpoint, code))
        if children is None:  # a label lookup takes a lock and builds keys: once per pair
            children = (
                self._requests.labels(self._account, endpoint, code),
                self._durations.labels(self._account, endpoint),
            )
            self._children[(endpoint, code)] = children
        children[0].inc()
        children[1].observe(seconds)

    def error(self, endpoint: str, reason: str) -> None:
        self._errors.labels(self._account, endpoint, reason).inc()

    def throttled(self, pause_seconds: float) -> None:
        self._throttled.inc()

    def budget_wait(self, seconds: float) -> None:
        self._budget_wait.inc(seconds)


class _Holds:
    """``integration_notifications_held``: 1 for each integration whose notifications a
    maintenance window or a mute holds now, and ``account_notifications_held`` for each
    account whose own alerts one holds (the shipped rules are silent for them too)."""

    def __init__(
        self,
        holds: Callable[[], Mapping[tuple[str, int], str]],
        account_holds: Callable[[], Mapping[str, str]],
    ) -> None:
        self._holds = holds
        self._account_holds = account_holds

    def describe(self) -> list[GaugeMetricFamily]:
        return list(self._families())

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "integration_notifications_held",
                "1 while a maintenance window or a mute holds the notifications of an "
                "integration (reason: maintenance or mute); absent otherwise. The shipped rules "
                "end with `unless on (...) integration_notifications_held == 1`.",
                labels=["account", "integration_id", "reason"],
            ),
            GaugeMetricFamily(
                "account_notifications_held",
                "1 while a maintenance window or a mute holds the account's own alerts (keys "
                "rejected, API unreachable; reason: maintenance or mute); absent otherwise. The "
                "shipped SendcloudAuthFailing and SendcloudMonitorPollsFailing end with "
                "`unless on (...) account_notifications_held == 1`.",
                labels=["account", "reason"],
            ),
        )

    def collect(self) -> list[GaugeMetricFamily]:
        integrations, accounts = self._families()
        for (account, integration_id), reason in sorted(self._holds().items()):
            integrations.add_metric([account, str(integration_id), reason], 1.0)
        for account, reason in sorted(self._account_holds().items()):
            accounts.add_metric([account, reason], 1.0)
        return [integrations, accounts]


class _NotFoundPolls:
    """``integration_not_found_polls``: how many polls in a row a configured integration
    answered 404, as the daemon's IntegrationNotFound counts them (kept across restarts with
    the alert state; polls that could not read it do not count), so the shipped rule fires at
    the same poll."""

    def __init__(self, polls: Callable[[], Mapping[tuple[str, int], int]]) -> None:
        self._polls = polls

    def describe(self) -> list[GaugeMetricFamily]:
        return [self._family()]

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "integration_not_found_polls",
            "Consecutive polls at which a configured integration answered 404 (polls that "
            "could not read it do not count; kept across restarts with the alert state); absent "
            "while it is found. SendcloudIntegrationNotFound fires at not_found_polls (2).",
            labels=["account", "integration_id"],
        )

    def collect(self) -> list[GaugeMetricFamily]:
        family = self._family()
        for (account, integration_id), polls in sorted(self._polls().items()):
            family.add_metric([account, str(integration_id)], float(polls))
        return [family]


class _Exceptions:
    """The exception-log stream's per-account counters, by bounded exception type and response
    code class. (The per-integration ones are part of the account's cached exposition.)"""

    def __init__(self, streams: Callable[[], Mapping[str, ExceptionStream]], store: Store) -> None:
        self._streams = streams
        self._store = store

    def describe(self) -> list[Metric]:
        return list(self._families())

    def _families(self) -> tuple[CounterMetricFamily, CounterMetricFamily, CounterMetricFamily]:
        return (
            CounterMetricFamily(
                "sendcloud_exception_logs",
                "Exception logs read from the account's stream, by exception type (the first "
                "10 types of the account; the rest: other) and response code class "
                "(4xx, 5xx, other, none).",
                labels=["account", "exception_type", "response_code"],
            ),
            CounterMetricFamily(
                "sendcloud_exception_logs_skipped",
                "Exception logs skipped because a cycle had more new ones than "
                "exception_logs_max_pages allow (estimated from the log IDs).",
                labels=["account"],
            ),
            CounterMetricFamily(
                "sendcloud_exception_logs_clamped",
                "Exception logs dated more than clock_skew_tolerance_seconds ahead of the "
                "monitor's clock, read as dated now (a log dated tomorrow would hide every "
                "later one).",
                labels=["account"],
            ),
        )

    def collect(self) -> list[Metric]:
        kinds, skipped, clamped = self._families()
        streams = self._streams()
        for account in sorted(self._store.snapshots()):
            stream = streams.get(account)
            if stream is None:
                continue
            for (kind, code), count in sorted(stream.kinds.items()):
                kinds.add_metric([account, kind, code], float(count))
            skipped.add_metric([account], float(stream.skipped))
            clamped.add_metric([account], float(stream.clamped))
        return [kinds, skipped, clamped]
