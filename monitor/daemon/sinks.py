"""The alerts' way out: the sinks built from the configuration — stdout, the webhooks, the
Alertmanager, the routed Apprise receivers — with the notifying ones behind the quiet gate and
the history's episode recorder last; and what the quiet gate holds now."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from monitor.alerting import Sink
from monitor.exporter.metrics import Metrics
from monitor.history import EpisodeRecorder, HistoryStore
from monitor.history.mutes import QuietSource
from monitor.notify.dispatch import Fleet, Router
from monitor.notify.gate import QuietGate
from monitor.notify.quiet import Hold
from monitor.notify.receivers import AppriseReceiver
from monitor.notify.sinks import AlertmanagerSink, StdoutSink, WebhookSink
from monitor.settings import AccountConfig, AlertingSettings, Outbound, ReceiverConfig
from monitor.store import AccountSnapshot, Store


class Holds:
    """What the quiet gate holds now (maintenance windows, mutes), per integration and per
    account of the store: for the scrapes (the reason) and the status page (the text). Read
    from the HTTP server's threads."""

    def __init__(self, quiet: QuietSource, store: Store, clock: Callable[[], datetime]) -> None:
        self.quiet = quiet
        self.store = store
        self._clock = clock

    def reasons(self) -> dict[tuple[str, int], str]:
        """Why each held integration's notifications wait (scrapes: the reason only)."""
        return {key: hold.reason for key, hold in self.integrations(self._clock()).items()}

    def account_reasons(self) -> dict[str, str]:
        """Why each held account's own alerts wait (scrapes: the reason only)."""
        active = self.quiet().at(self._clock())
        if not active:
            return {}
        found = {}
        for account in self.store.snapshots():
            hold = active.account_hold(account)
            if hold is not None:
                found[account] = hold.reason
        return found

    def integrations(self, now: datetime) -> dict[tuple[str, int], Hold]:
        """Each held integration's hold (the status page shows its text)."""
        active = self.quiet().at(now)
        if not active:
            return {}
        found = {}
        for account, snapshot in self.store.snapshots().items():
            for integration_id, observation in snapshot.integrations.items():
                kind = observation.record.type if observation.record else None
                hold = active.integration_hold(account, integration_id, kind)
                if hold is not None:
                    found[(account, integration_id)] = hold
        return found


class Sinks:
    """Builds the alerter's sinks from a configuration (at the start, and when a reload
    changes what they are built from: ``delivery``)."""

    def __init__(
        self,
        metrics: Metrics,
        clock: Callable[[], datetime],
        quiet: QuietSource,
        history: HistoryStore | None,
        store: Store,
        accounts: Callable[[], Sequence[AccountConfig]],
    ) -> None:
        self.metrics = metrics
        self._clock = clock
        self.quiet = quiet
        self.history = history
        self.store = store
        #: the accounts configured now (they change with a reload)
        self._accounts = accounts

    def build(self, alerting: AlertingSettings, outbound: Outbound) -> list[Sink]:
        """stdout, then the notifying sinks behind the quiet gate, then the history."""
        stdout, *notifying = build_sinks(
            alerting, outbound, self.metrics, self._clock, self.evaluation_gap, self.fleet
        )
        sinks: list[Sink] = [stdout, QuietGate(notifying, self.quiet, self._clock)]
        if self.history is not None:
            sinks.append(EpisodeRecorder(self.history, self._clock))
        return sinks

    def fleet(self) -> list[tuple[str, int, str | None, str | None]]:
        """Every integration watched now, with its type and its shop certificate's issuer
        (a route's scope for platform incidents: one platform, or one CA)."""
        return [
            (account, i, o.record.type if o.record else None, _issuer(snapshot, i))
            for account, snapshot in self.store.snapshots().items()
            for i, o in snapshot.integrations.items()
        ]

    def evaluation_gap(self) -> float:
        """The longest time between two evaluations of one account (its poll interval)."""
        return max((a.poll_interval_seconds for a in self._accounts()), default=0.0)


def delivery(alerting: AlertingSettings, outbound: Outbound) -> tuple[object, ...]:
    """What the sinks are built from (``build_sinks``): a reload that leaves it unchanged
    keeps them."""
    return (
        outbound,
        alerting.alertmanager,
        alerting.receivers,
        alerting.routes,
        alerting.default_receivers,
        alerting.group_wait_seconds,
    )


def build_sinks(
    alerting: AlertingSettings,
    outbound: Outbound,
    metrics: Metrics,
    clock: Callable[[], datetime],
    evaluation_gap: Callable[[], float],
    fleet: Fleet = lambda: (),
) -> list[Sink]:
    """stdout always; then the configured webhooks, Alertmanager and the routed receivers.
    ``evaluation_gap`` is the longest time between two evaluations of an account now (it
    changes with a reload); ``fleet`` the integrations watched now (platform incidents)."""
    sinks: list[Sink] = [StdoutSink(metrics.delivery)]
    for webhook in outbound.webhooks:
        sinks.append(
            WebhookSink(
                webhook.name,
                webhook.url.get_secret_value(),
                hmac_secret=webhook.hmac_secret.get_secret_value() if webhook.hmac_secret else None,
                slack=webhook.slack,
                timeout_seconds=webhook.timeout_seconds,
                max_attempts=webhook.max_attempts,
                queue_size=webhook.queue_size,
                observe=metrics.delivery,
                depth=metrics.queue_depth,
            )
        )
    if alerting.alertmanager is not None:
        sinks.append(
            AlertmanagerSink(
                alerting.alertmanager.url,
                clock=clock,
                evaluation_gap=evaluation_gap,
                resend_interval_seconds=alerting.alertmanager.resend_interval_seconds,
                timeout_seconds=alerting.alertmanager.timeout_seconds,
                max_attempts=alerting.alertmanager.max_attempts,
                observe=metrics.delivery,
                depth=metrics.queue_depth,
            )
        )
    if outbound.receivers:
        sinks.append(
            Router(
                alerting.route_tree(),
                receivers(outbound.receivers, metrics),
                group_wait_seconds=alerting.group_wait_seconds,
                fleet=fleet,
            )
        )
    return sinks


def receivers(configs: Sequence[ReceiverConfig], metrics: Metrics) -> dict[str, AppriseReceiver]:
    return {
        r.name: AppriseReceiver(
            r.name,
            r.url.get_secret_value(),
            timeout_seconds=r.timeout_seconds,
            max_attempts=r.max_attempts,
            queue_size=r.queue_size,
            observe=metrics.delivery,
            depth=metrics.queue_depth,
        )
        for r in configs
    }


def _issuer(snapshot: AccountSnapshot, integration_id: int) -> str | None:
    findings = snapshot.findings.get(integration_id)
    probe = findings.probe if findings is not None else None
    return probe.outcome.issuer if probe is not None else None
