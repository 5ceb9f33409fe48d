"""The per-integration and per-account families of ``/metrics``: their names, help and the
samples one snapshot gives them. Pure: observations in, (family, value) pairs out.

The values come from the last poll results and, for the two elapsed-time families, from the
time they are asked for: ``integration_failing_seconds`` is right at every scrape, and
integrations that left the account or the configuration simply stop being yielded. The daemon
polls in the background rather than at scrape time because Sendcloud rate-limits (1000 GET/min
per account) and several Prometheus replicas would multiply calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from monitor.sendcloud.stream import Counts
from monitor.store import AccountSnapshot, Findings, Observation, ReadOutcome

_POLL_FROM = (
    " Computed at scrape time from the integration's last successful read; frozen at that"
    " read while the integration cannot be read (integration_up 0)."
)


@dataclass(frozen=True)
class Family:
    name: str
    help: str
    per_account: bool = False  # labels: account only (else account and integration_id)
    kind: str = "gauge"  # or "counter" (its name ends in _total)
    label: str | None = None  # one more label (its values: a small fixed set)


#: The per-integration and per-account families, in exposition order. The two elapsed-time
#: families come first; only they depend on the scrape's time.
FAILING_SECONDS = "integration_failing_seconds"
STALENESS_SECONDS = "integration_fetch_staleness_seconds"
INFO = "integration_info"
EXCEPTIONS_TOTAL = "integration_exceptions_total"
LAST_EXCEPTION = "integration_last_exception_timestamp_seconds"
EXCEPTIONS_IN_WINDOW = "integration_exceptions_in_window"
PROBE_SUCCESS = "integration_shop_probe_success"
PROBE_RESULT = "integration_shop_probe_result"
PROBE_FAILURES = "integration_shop_probe_consecutive_failures"
CERTIFICATE_EXPIRY = "integration_shop_certificate_expiry_timestamp_seconds"
MISCONFIGURED = "integration_misconfigured"
UNMONITORED = "integration_monitor_unmonitored_integrations"
_PROBED = (
    " Absent until the shop was probed, and for integrations without an http(s) shop URL; the"
    " same for every integration on one host and port (probed once)."
)
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
    Family(
        "integration_up",
        "1 when the integration's last read succeeded (a poll cut short by its deadline keeps "
        "what it did not reach as it was: the next reads it first), else 0.",
    ),
    Family("integration_not_found", "1 when the API answered 404 for the integration, else 0."),
    Family(
        "integration_last_poll_success_timestamp_seconds",
        "When the integration was last read successfully (age of the values above).",
    ),
    Family(
        EXCEPTIONS_TOTAL,
        "Exception logs Sendcloud wrote for the integration, read from the account's log "
        "stream since the monitor started.",
        kind="counter",
    ),
    Family(
        LAST_EXCEPTION,
        "created_at of the integration's newest exception log read (absent before one).",
    ),
    Family(
        EXCEPTIONS_IN_WINDOW,
        "Exception logs of the integration dated within the alerting's "
        "errors_rising_window_seconds (15 min by default) at the last read of the account's "
        "log stream, whenever they were read: what IntegrationErrorsRising counts (the shipped "
        "rule compares it with errors_rising_count). Absent until the stream has been read "
        "since the monitor started.",
    ),
    Family(
        PROBE_SUCCESS,
        "1 when the last probe of the integration's shop succeeded (a verified TLS handshake; "
        "for an http:// shop a TCP connect), else 0." + _PROBED,
    ),
    Family(
        PROBE_RESULT,
        "1 for the result of the last probe of the integration's shop (ok, expired, "
        "not_yet_valid, untrusted, hostname_mismatch, tls_error, refused, timeout, dns, "
        "private_address, plaintext_ok); only the current result is exported." + _PROBED,
        label="result",
    ),
    Family(
        PROBE_FAILURES,
        "Probes of the integration's shop that failed in a row (0 after a success, and for "
        "private_address, which is not probed); IntegrationShopUnreachable at 2." + _PROBED,
    ),
    Family(
        CERTIFICATE_EXPIRY,
        "notAfter of the shop's TLS leaf certificate as Unix time, whenever the last probe read "
        "one (also when it failed verification: expired, untrusted, another host name)." + _PROBED,
    ),
    Family(
        MISCONFIGURED,
        "1 for each configuration check that fails for the integration (feedback_off, "
        "webhook_without_url, service_points_without_carriers, duplicate_shop, "
        "status_mapping); absent while it passes, or when it is switched off (checks.ignore).",
        label="check",
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
    Family(
        UNMONITORED,
        "Integrations of the account that the monitor does not watch (with configured "
        "integration_ids), from the last inventory walk (once per probes.interval_seconds); "
        "absent with integration_ids: all, or before the first walk.",
        per_account=True,
    ),
)
ELAPSED = frozenset({FAILING_SECONDS, STALENESS_SECONDS})


def account_samples(snapshot: AccountSnapshot) -> Iterator[tuple[str, float]]:
    """(family, value) of one account's own series."""
    yield "sendcloud_api_auth_ok", 1.0 if snapshot.auth_ok else 0.0
    if snapshot.unmonitored is not None:
        yield UNMONITORED, float(len(snapshot.unmonitored))
    if snapshot.last_cycle_success is not None:
        yield (
            "integration_monitor_last_poll_success_timestamp_seconds",
            snapshot.last_cycle_success.timestamp(),
        )


def integration_samples(
    observation: Observation, counts: Counts | None = None
) -> Iterator[tuple[str, float]]:
    """(family, value) of one integration's series that do not depend on the scrape's time
    (all but the elapsed ones, see ``elapsed_samples``, and ``integration_info``); with the
    account's log-stream ``counts``, its exception counter (0 until a log), newest log and the
    logs within the early warning's window (once the stream has been read)."""
    if counts is not None:
        integration_id = observation.integration_id
        yield EXCEPTIONS_TOTAL, float(counts.totals.get(integration_id, 0))
        at = counts.last_at.get(integration_id)
        if at is not None:
            yield LAST_EXCEPTION, at.timestamp()
        if counts.recent is not None:
            yield EXCEPTIONS_IN_WINDOW, float(counts.recent.get(integration_id, 0))
    yield "integration_up", 1.0 if observation.status is ReadOutcome.OK else 0.0
    yield "integration_not_found", 1.0 if observation.status is ReadOutcome.NOT_FOUND else 0.0
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


def finding_samples(findings: Findings | None) -> Iterator[tuple[str, str | None, float]]:
    """(family, the value of its extra label or None, value) of one integration's findings:
    its shop probe and the configuration checks that fail."""
    if findings is None:
        return
    probe = findings.probe
    if probe is not None:
        yield PROBE_SUCCESS, None, 1.0 if probe.success else 0.0
        yield PROBE_RESULT, str(probe.result), 1.0
        yield PROBE_FAILURES, None, float(probe.failures)
        if probe.outcome.expires_at is not None:
            yield CERTIFICATE_EXPIRY, None, probe.outcome.expires_at.timestamp()
    for failed in findings.failed:
        yield MISCONFIGURED, failed.check, 1.0


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
