"""Alert rules as a pure state machine: conditions in, alert states and events out.

An alert fires when its condition has held for its grace period (``for``), measured from the
API's own timestamps where they exist (``started_failing_at``; ``last_fetched_at`` + stale
threshold) and from the first observation otherwise. Then: exactly one ``firing`` event per
episode, a repeat every ``repeat_interval_seconds``, one escalation of ``IntegrationFailing`` to
``critical``, and exactly one ``resolved`` event. Conditions that clear before their grace
produce nothing. Nothing here reads a clock or does I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from monitor.probes import target_of
from monitor.probes.results import days_left
from monitor.sendcloud import Integration
from monitor.store import AccountSnapshot, Findings, ReadOutcome

INTEGRATION_FAILING = "IntegrationFailing"
INTEGRATION_FETCH_STALE = "IntegrationFetchStale"
INTEGRATION_NOT_FOUND = "IntegrationNotFound"
AUTH_FAILING = "SendcloudAuthFailing"
API_UNREACHABLE = "SendcloudAPIUnreachable"
INTEGRATION_ERRORS_RISING = "IntegrationErrorsRising"
SHOP_CERTIFICATE_EXPIRING = "IntegrationShopCertificateExpiring"
SHOP_UNREACHABLE = "IntegrationShopUnreachable"
INTEGRATION_MISCONFIGURED = "IntegrationMisconfigured"
ALERTS = (
    INTEGRATION_FAILING,
    INTEGRATION_FETCH_STALE,
    INTEGRATION_NOT_FOUND,
    INTEGRATION_ERRORS_RISING,
    SHOP_CERTIFICATE_EXPIRING,
    SHOP_UNREACHABLE,
    INTEGRATION_MISCONFIGURED,
    AUTH_FAILING,
    API_UNREACHABLE,
)
#: The alerts of a shop probe (evaluated also while Sendcloud's record cannot be read: the
#: probe does not depend on it).
SHOP_ALERTS = frozenset({SHOP_CERTIFICATE_EXPIRING, SHOP_UNREACHABLE})
ACCOUNT_ALERTS = frozenset({AUTH_FAILING, API_UNREACHABLE})


@dataclass(frozen=True)
class AlertRules:
    """Thresholds and timing of the alert rules (see docs/alerts.md for the defaults' why)."""

    failing_for_seconds: float = 900.0
    failing_critical_after_seconds: float = 3600.0
    stale_for_seconds: float = 900.0
    not_found_polls: int = 2
    auth_failing_for_seconds: float = 0.0
    unreachable_for_seconds: float = 300.0
    repeat_interval_seconds: float = 4 * 3600.0  # 0: never repeat
    runbook_base_url: str = "docs/runbook.md"
    #: IntegrationErrorsRising: at least this many exception logs within the window, for an
    #: integration that is not failing
    errors_rising_count: int = 5
    errors_rising_window_seconds: float = 900.0
    #: IntegrationShopCertificateExpiring: warning under this many days left, critical under
    #: the second (probes.certificate_*_days)
    certificate_warning_days: float = 14.0
    certificate_critical_days: float = 3.0
    #: IntegrationShopUnreachable: this many failing probes in a row
    unreachable_probes: int = 2
    #: IntegrationMisconfigured: a check failing at this many polls in a row
    misconfigured_polls: int = 2
    #: an alert firing within this long after the integration's updated_at says so
    change_window_seconds: float = 86400.0
    #: False: shops are not probed, their alerts resolve; True: an integration whose shop was
    #: not probed yet keeps its shop alerts as they are (after a restart)
    probes_enabled: bool = True

    def grace(self, alert: str) -> float:
        return {
            INTEGRATION_FAILING: self.failing_for_seconds,
            INTEGRATION_FETCH_STALE: self.stale_for_seconds,
            AUTH_FAILING: self.auth_failing_for_seconds,
            API_UNREACHABLE: self.unreachable_for_seconds,
        }.get(alert, 0.0)

    def runbook_url(self, alert: str) -> str:
        return f"{self.runbook_base_url}#{alert.lower()}"


class AlertKey(NamedTuple):
    alert: str
    account: str
    integration_id: int | None = None


@dataclass(frozen=True)
class Context:
    """What the event says about the integration (or account) at evaluation time."""

    shop_name: str | None = None
    shop_url: str | None = None
    integration_type: str | None = None
    started_failing_at: datetime | None = None
    failing_seconds: float | None = None
    last_fetched_at: datetime | None = None
    staleness_seconds: float | None = None
    detail: str | None = None
    #: the shop alerts: the probe's result and the certificate read (its notAfter, issuer and
    #: the days left at the evaluation)
    probe_result: str | None = None
    certificate_expires_at: datetime | None = None
    certificate_issuer: str | None = None
    certificate_days_left: float | None = None
    #: IntegrationMisconfigured: the checks that fail
    failed_checks: tuple[str, ...] = ()
    #: the integration's updated_at, when it lies within change_window_seconds of now
    config_changed_at: datetime | None = None


@dataclass(frozen=True)
class Condition:
    """An alert condition that holds right now. ``since`` is when it began according to the
    API, or None to count from the first observation."""

    key: AlertKey
    since: datetime | None
    context: Context
    #: The API's own timestamp of this episode, as sent (``started_failing_at``;
    #: ``last_fetched_at`` or ``created_at`` for staleness); None for account alerts.
    episode: datetime | None = None


@dataclass(frozen=True)
class AlertState:
    """One alert episode, pending or firing. Persisted across restarts."""

    key: AlertKey
    since: datetime  # when the condition began (API time or first observation)
    observations: int = 1  # consecutive evaluations the condition held
    firing_since: datetime | None = None
    last_notified: datetime | None = None
    severity: str = "warning"
    context: Context = field(default_factory=Context)
    episode: datetime | None = None  # see Condition.episode

    @property
    def firing(self) -> bool:
        return self.firing_since is not None


@dataclass(frozen=True)
class AlertEvent:
    """A notification: ``firing`` (first, repeat or escalation) or ``resolved``."""

    state: AlertState
    status: str  # firing | resolved
    kind: str  # fired | repeat | escalated | resolved
    at: datetime


@dataclass(frozen=True)
class Evaluation:
    states: dict[AlertKey, AlertState]
    events: list[AlertEvent]


#: The alerts of one integration (all unknown while it cannot be read).
_PER_INTEGRATION = (
    INTEGRATION_FAILING,
    INTEGRATION_FETCH_STALE,
    INTEGRATION_NOT_FOUND,
    INTEGRATION_ERRORS_RISING,
)


def conditions_for(
    snapshot: AccountSnapshot,
    *,
    ids_configured: bool,
    rules: AlertRules | None = None,
    now: datetime | None = None,
) -> tuple[list[Condition], set[AlertKey]]:
    """Conditions holding in ``snapshot`` (from each integration's health as derived at its
    read, and its findings: probe and checks), and the keys whose state is unknown this time
    (integrations that could not be read, or every integration during an account-wide error;
    ``IntegrationErrorsRising`` before the account's log stream has been read since start):
    unknown is neither firing nor resolved. ``now`` is the evaluation's time (the days left of
    a certificate); without it, or without ``rules``, the shop and check alerts are not
    evaluated."""
    account = snapshot.account
    findings_of = snapshot.findings if rules is not None and now is not None else {}
    conditions: list[Condition] = []
    unknown: set[AlertKey] = set()
    if not snapshot.auth_ok:
        conditions.append(
            Condition(AlertKey(AUTH_FAILING, account), None, Context(detail=snapshot.account_error))
        )
    elif snapshot.account_error is not None:
        conditions.append(
            Condition(
                AlertKey(API_UNREACHABLE, account), None, Context(detail=snapshot.account_error)
            )
        )
    for integration_id, observation in snapshot.integrations.items():
        if (
            rules is not None
            and now is not None
            and observation.status is not (ReadOutcome.NOT_FOUND)
        ):
            found, unsure = _findings_conditions(
                account,
                integration_id,
                observation.record,
                findings_of.get(integration_id),
                rules,
                now,
            )
            if observation.status is ReadOutcome.ERROR or snapshot.account_error is not None:
                # the record is the last good one: the checks on it say nothing new
                found = [c for c in found if c.key.alert != INTEGRATION_MISCONFIGURED]
            conditions += found
            unknown |= unsure
        if observation.status is ReadOutcome.ERROR or snapshot.account_error is not None:
            unknown.update(AlertKey(alert, account, integration_id) for alert in _PER_INTEGRATION)
            unknown.add(AlertKey(INTEGRATION_MISCONFIGURED, account, integration_id))
            continue
        if observation.status is ReadOutcome.NOT_FOUND:
            if ids_configured:
                key = AlertKey(INTEGRATION_NOT_FOUND, account, integration_id)
                conditions.append(Condition(key, None, Context()))
            continue
        record, health = observation.record, observation.health
        assert record is not None
        assert health is not None
        if not snapshot.exceptions_known and health.failing_since is None:
            # the stream not read yet since start: cannot tell (a failing one is not rising)
            unknown.add(AlertKey(INTEGRATION_ERRORS_RISING, account, integration_id))
        activity = snapshot.exceptions.get(integration_id)
        rising = (
            activity is not None
            and health.failing_since is None
            and rules is not None
            and activity.recent >= rules.errors_rising_count
        )
        stale = health.stale and health.fetched_since is not None
        if health.failing_since is None and not rising and not stale:
            continue  # nothing can hold: most integrations, every cycle
        context = Context(
            shop_name=record.shop_name,
            shop_url=record.shop_url,
            integration_type=record.type,
            started_failing_at=record.started_failing_at,
            failing_seconds=health.failing_seconds,
            last_fetched_at=record.last_fetched_at,
            staleness_seconds=health.staleness_seconds,
            config_changed_at=_changed_at(record, now, rules),
        )
        if health.failing_since is not None:
            key = AlertKey(INTEGRATION_FAILING, account, integration_id)
            conditions.append(
                Condition(key, health.failing_since, context, record.started_failing_at)
            )
        if rising:
            # the logs dated within the window at the stream's read (the window is the
            # stream's, set from errors_rising_window_seconds): what /metrics exports as
            # integration_exceptions_in_window for the shipped rule
            assert activity is not None
            detail = replace(context, detail=f"{activity.recent} exception logs")
            key = AlertKey(INTEGRATION_ERRORS_RISING, account, integration_id)
            conditions.append(Condition(key, None, detail))
        if stale:
            assert health.fetched_since is not None
            since = health.fetched_since + timedelta(seconds=health.stale_after_seconds)
            episode = record.last_fetched_at or record.created_at
            key = AlertKey(INTEGRATION_FETCH_STALE, account, integration_id)
            conditions.append(Condition(key, min(since, health.read_at), context, episode))
    return conditions, unknown


def _changed_at(
    record: Integration, now: datetime | None, rules: AlertRules | None
) -> datetime | None:
    """The integration's updated_at when it lies within the change window before ``now``."""
    changed = record.updated_at
    if changed is None or now is None or rules is None or changed > now:
        return None
    return changed if (now - changed).total_seconds() <= rules.change_window_seconds else None


def _findings_conditions(
    account: str,
    integration_id: int,
    record: Integration | None,
    findings: Findings | None,
    rules: AlertRules,
    now: datetime,
) -> tuple[list[Condition], set[AlertKey]]:
    """The shop alerts (from the probe of the integration's shop) and IntegrationMisconfigured
    (from the checks that fail) of one integration."""
    conditions: list[Condition] = []
    unknown: set[AlertKey] = set()
    if record is None:
        return conditions, unknown
    probe = findings.probe if findings is not None else None
    failed = findings.failed if findings is not None else ()
    if probe is None:
        if rules.probes_enabled and target_of(record.shop_url) is not None:
            # not probed yet (a start without saved probes): neither firing nor resolved
            unknown |= {AlertKey(alert, account, integration_id) for alert in SHOP_ALERTS}
        if not failed:
            return conditions, unknown
    context = Context(
        shop_name=record.shop_name,
        shop_url=record.shop_url,
        integration_type=record.type,
        started_failing_at=record.started_failing_at,
        last_fetched_at=record.last_fetched_at,
        config_changed_at=_changed_at(record, now, rules),
    )
    if probe is not None:
        outcome = probe.outcome
        shop = replace(
            context,
            probe_result=str(outcome.result),
            certificate_expires_at=outcome.expires_at,
            certificate_issuer=outcome.issuer,
            detail=outcome.detail,
        )
        expires = outcome.expires_at
        if expires is not None:
            left = days_left(expires, now)
            if left < rules.certificate_warning_days:
                since = min(now, expires - timedelta(days=rules.certificate_warning_days))
                key = AlertKey(SHOP_CERTIFICATE_EXPIRING, account, integration_id)
                ctx = replace(shop, certificate_days_left=left)
                conditions.append(Condition(key, since, ctx, episode=expires))
        if probe.failing and probe.failures >= rules.unreachable_probes:
            key = AlertKey(SHOP_UNREACHABLE, account, integration_id)
            conditions.append(Condition(key, probe.failing_since, shop, probe.failing_since))
    if failed:
        key = AlertKey(INTEGRATION_MISCONFIGURED, account, integration_id)
        ctx = replace(
            context,
            failed_checks=tuple(f.check for f in failed),
            detail="; ".join(f.text for f in failed),
        )
        conditions.append(Condition(key, None, ctx))
    return conditions, unknown


def evaluate(
    previous: Mapping[AlertKey, AlertState],
    conditions: Iterable[Condition],
    unknown: set[AlertKey],
    now: datetime,
    rules: AlertRules,
) -> Evaluation:
    """Advance every alert of one evaluation scope (one account) to ``now``."""
    states: dict[AlertKey, AlertState] = {}
    events: list[AlertEvent] = []
    active = {c.key: c for c in conditions}
    for key, condition in active.items():
        before = previous.get(key)
        if before is not None and _new_episode(before, condition):
            if before.firing:
                events.append(AlertEvent(before, "resolved", "resolved", now))
            before = None
        state = _advance(before, condition, now)
        state, event = _notify(state, now, rules)
        states[key] = state
        if event is not None:
            events.append(event)
    for key, state in previous.items():
        if key in active:
            continue
        if key in unknown:
            states[key] = state  # cannot tell: keep as it is
        elif state.firing:
            events.append(AlertEvent(state, "resolved", "resolved", now))
    return Evaluation(states, events)


def _new_episode(state: AlertState, condition: Condition) -> bool:
    """Whether ``condition`` is a new episode rather than the one ``state`` tracks: the API's
    own timestamp moved later — the shop recovered between two polls and failed again (or was
    fetched, and is stale again). The old alert resolves and the new one starts from the new
    timestamp, with its own grace and severity, as the shipped rules see it: the elapsed time
    they compare with their thresholds starts over. A timestamp that moved earlier is a
    correction of the same episode."""
    if state.episode is None or condition.episode is None:
        return False
    return condition.episode > state.episode


def _advance(state: AlertState | None, condition: Condition, now: datetime) -> AlertState:
    if state is None:
        return AlertState(
            key=condition.key,
            since=condition.since or now,
            context=condition.context,
            episode=condition.episode,
        )
    # a firing alert keeps its start (starts_at never changes within an alert)
    since = state.since if state.firing else (condition.since or state.since)
    return replace(
        state,
        since=since,
        observations=state.observations + 1,
        context=condition.context,
        episode=condition.episode or state.episode,
    )


def _notify(
    state: AlertState, now: datetime, rules: AlertRules
) -> tuple[AlertState, AlertEvent | None]:
    severity = _severity(state, rules)
    if not state.firing:
        if not _grace_over(state, now, rules):
            return state, None
        fired = replace(state, firing_since=now, last_notified=now, severity=severity)
        return fired, AlertEvent(fired, "firing", "fired", now)
    if severity != state.severity and severity == "critical":
        escalated = replace(state, severity=severity, last_notified=now)
        return escalated, AlertEvent(escalated, "firing", "escalated", now)
    repeat = rules.repeat_interval_seconds
    last = state.last_notified or now
    if repeat > 0 and (now - last).total_seconds() >= repeat:
        repeated = replace(state, last_notified=now)
        return repeated, AlertEvent(repeated, "firing", "repeat", now)
    return state, None


def _grace_over(state: AlertState, now: datetime, rules: AlertRules) -> bool:
    if state.key.alert == INTEGRATION_NOT_FOUND:
        return state.observations >= rules.not_found_polls
    if state.key.alert == INTEGRATION_MISCONFIGURED:
        return state.observations >= rules.misconfigured_polls
    return (now - state.since).total_seconds() >= rules.grace(state.key.alert)


def _severity(state: AlertState, rules: AlertRules) -> str:
    if state.key.alert == INTEGRATION_FAILING:
        failing = state.context.failing_seconds or 0.0
        return "critical" if failing >= rules.failing_critical_after_seconds else "warning"
    if state.key.alert == SHOP_CERTIFICATE_EXPIRING:
        left = state.context.certificate_days_left
        return (
            "critical"
            if left is not None and left < rules.certificate_critical_days
            else ("warning")
        )
    if state.key.alert in ACCOUNT_ALERTS:
        return "critical"
    return "warning"


def fingerprint(key: AlertKey) -> str:
    """Stable identity of one alert on one integration (or account), across restarts."""
    text = f"{key.alert}|{key.account}|{'' if key.integration_id is None else key.integration_id}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def summary(state: AlertState) -> str:
    """One human sentence."""
    ctx, key = state.context, state.key
    shop = f"{ctx.shop_name or 'integration'} (integration {key.integration_id}"
    shop += f", {ctx.integration_type})" if ctx.integration_type else ")"
    if key.alert == INTEGRATION_FAILING:
        return (
            f"Sendcloud cannot fetch orders from {shop}: failing for {_human(ctx.failing_seconds)}."
            + _change_note(state)
        )
    if key.alert == INTEGRATION_FETCH_STALE:
        return f"No orders fetched from {shop} for {_human(ctx.staleness_seconds)}." + _change_note(
            state
        )
    if key.alert == INTEGRATION_NOT_FOUND:
        return f"Integration {key.integration_id} is configured but Sendcloud does not know it."
    if key.alert == INTEGRATION_ERRORS_RISING:
        return (
            f"Sendcloud keeps failing to talk to {shop}: {ctx.detail} in the last minutes, "
            "not failing yet." + _change_note(state)
        )
    if key.alert == SHOP_CERTIFICATE_EXPIRING:
        return _expiring(shop, ctx) + _change_note(state)
    if key.alert == SHOP_UNREACHABLE:
        reason = PROBE_WORDS.get(ctx.probe_result or "", ctx.probe_result or "failing")
        return (
            f"Sendcloud will not reach {shop}: its shop probe fails ({reason}), "
            f"since {_iso(state.since)}." + _change_note(state)
        )
    if key.alert == INTEGRATION_MISCONFIGURED:
        return f"{shop} is misconfigured: {ctx.detail}." + _change_note(state)
    if key.alert == AUTH_FAILING:
        return (
            f"Sendcloud rejects the API keys of account {key.account}: check them in the "
            "Sendcloud panel."
        )
    return f"The Sendcloud API cannot be read for account {key.account} ({ctx.detail})."


#: A failing probe's result in words (summaries).
PROBE_WORDS = {
    "expired": "its TLS certificate expired",
    "not_yet_valid": "its TLS certificate is not valid yet",
    "untrusted": "its TLS certificate is not trusted",
    "hostname_mismatch": "its TLS certificate is for another host name",
    "tls_error": "the TLS handshake fails",
    "refused": "the connection is refused",
    "timeout": "it does not answer in time",
    "dns": "its host name does not resolve",
}
#: What the start of each alert's condition is called in a change note.
_STARTED = {
    INTEGRATION_FAILING: "it started failing",
    INTEGRATION_FETCH_STALE: "it went stale",
    INTEGRATION_ERRORS_RISING: "its errors started rising",
    SHOP_UNREACHABLE: "its shop probe started failing",
    SHOP_CERTIFICATE_EXPIRING: "its certificate came within the warning window",
    INTEGRATION_MISCONFIGURED: "the check first failed",
}


def _expiring(shop: str, ctx: Context) -> str:
    left = ctx.certificate_days_left or 0.0
    when = _iso(ctx.certificate_expires_at) or "?"
    if left < 0:
        return f"The TLS certificate of {shop} expired {_human(-left * 86400)} ago ({when})."
    return f"The TLS certificate of {shop} expires in {_human(left * 86400)} ({when})."


def _change_note(state: AlertState) -> str:
    """ " Its configuration changed 12m before it started failing." when updated_at lies within
    the change window (the context only has it then)."""
    changed = state.context.config_changed_at
    if changed is None:
        return ""
    started = _STARTED.get(state.key.alert, "this began")
    delta = (state.since - changed).total_seconds()
    relation = "before" if delta >= 0 else "after"
    return (
        f" Its configuration changed {_human(abs(delta))} {relation} {started} "
        f"(updated_at {_iso(changed)})."
    )


def event_fields(event: AlertEvent, rules: AlertRules) -> dict[str, Any]:
    """The documented event schema (docs/alerts.md, docs/alert-event.schema.json)."""
    state, ctx = event.state, event.state.context
    return {
        "alert": state.key.alert,
        "status": event.status,
        "kind": event.kind,
        "severity": state.severity,
        "account": state.key.account,
        "integration_id": state.key.integration_id,
        "shop_name": ctx.shop_name,
        "shop_url": ctx.shop_url,
        "integration_type": ctx.integration_type,
        "started_failing_at": _iso(ctx.started_failing_at),
        "failing_seconds": _round(ctx.failing_seconds),
        "last_fetched_at": _iso(ctx.last_fetched_at),
        "staleness_seconds": _round(ctx.staleness_seconds),
        "starts_at": _iso(state.since),
        "ends_at": _iso(event.at) if event.status == "resolved" else None,
        "fingerprint": fingerprint(state.key),
        "summary": summary(state),
        "runbook_url": rules.runbook_url(state.key.alert),
        **_extra_fields(state),
    }


def _extra_fields(state: AlertState) -> dict[str, Any]:
    """The fields only some events have: the probe's for the shop alerts, the checks for
    IntegrationMisconfigured, the change for an alert within the change window."""
    ctx, alert = state.context, state.key.alert
    extra: dict[str, Any] = {}
    if alert in SHOP_ALERTS:
        extra["probe_result"] = ctx.probe_result
        extra["certificate_expires_at"] = _iso(ctx.certificate_expires_at)
        extra["certificate_issuer"] = ctx.certificate_issuer
    if alert == INTEGRATION_MISCONFIGURED:
        extra["failed_checks"] = list(ctx.failed_checks)
    if ctx.config_changed_at is not None:
        extra["config_changed_at"] = _iso(ctx.config_changed_at)
    return extra


def _human(seconds: float | None) -> str:
    total = int(seconds or 0)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [f"{days}d"] if days else []
    parts += [f"{hours}h"] if hours else []
    parts += [f"{minutes}m"] if minutes or not parts else []
    return " ".join(parts)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None
