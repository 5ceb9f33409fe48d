"""The alerting service: after each poll cycle, evaluate the rules, deliver, look up causes.

Pure rule logic lives in :mod:`monitor.alerting.rules`; this module does the I/O around it: the
sinks, the state file, the metrics and the exception-log lookups. A lookup never delays a
notification nor a poll: a newly firing ``IntegrationFailing`` goes out at once (``cause_error``
says the lookup is pending), the lookup runs in the background (a few at a time, from the
account's request budget after its polls: what the polls leave of the rate), and its result is
delivered with the account's next evaluation as a ``kind: cause`` event; from then on the alert
carries it (Alertmanager's description annotation, repeats, escalations). One lookup per
episode: one that found nothing is not made again until the alert resolves."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence, Set
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, overload, runtime_checkable

import structlog

from monitor.alerting import persistence
from monitor.alerting.cause import cause_from_logs
from monitor.alerting.rules import (
    ALERTS,
    INTEGRATION_ERRORS_RISING,
    INTEGRATION_FAILING,
    INTEGRATION_NOT_FOUND,
    AlertEvent,
    AlertKey,
    AlertRules,
    AlertState,
    Context,
    conditions_for,
    evaluate,
    event_fields,
)
from monitor.sendcloud import ApiError
from monitor.sendcloud.budget import Budget
from monitor.store import AccountSnapshot

log = structlog.get_logger(__name__)

#: One alert event, as every sink receives it (the fields: docs/alerts.md).
Event = dict[str, Any]


class Sink(Protocol):
    """Where the service hands its evaluations (implemented by ``monitor.notify``)."""

    name: str

    def submit(self, account: str, events: Sequence[Event], firing: Sequence[Event]) -> None:
        """Hand over one account's evaluation: its events and every alert of the account
        firing now (non-blocking)."""

    async def aclose(self) -> None: ...


@runtime_checkable
class HoldingSink(Sink, Protocol):
    """A sink that holds notifications back (maintenance, mutes, platform incidents). What it
    holds is state: the Alerter saves it with the open alerts (after each change, at the next
    evaluation), gives it back after a restart, and hands it to the sink that replaces it at a
    reload — so a hold that ends while the daemon is down, or across a reload, is released
    as if nothing had happened."""

    @property
    def revision(self) -> int:
        """Changes whenever what the sink holds changes (cheap: read at every evaluation)."""

    def holds(self) -> dict[str, Any]:
        """What it holds, as JSON."""

    def restore_holds(self, saved: Mapping[str, Any]) -> None:
        """Take over what was held (``holds()`` of an earlier run or of its predecessor)."""

    def hand_over(self, account: str, firing: Sequence[Event]) -> None:
        """Every alert of ``account`` firing now, outside an evaluation (a restart, new
        sinks): a hold that began applies; nothing is released (that is for the next
        evaluation, which knows whether the alert still fires)."""

    def settle(self) -> None:
        """Send at once what is still gathering, before ``holds()`` goes to a successor."""

    def forget(self, fingerprints: Set[str]) -> None:
        """These alerts are held before this sink now (a mute, a window): drop what it holds
        of them — their release there says it all, nothing of them may go out meanwhile."""


LogsFetcher = Callable[[str, int], Awaitable[list[dict[str, Any]]]]  # (account, integration_id)
Cause = tuple[dict[str, Any] | None, str | None]  # (cause, why there is none)
CAUSE_PENDING = "the exception logs are being looked up; the cause follows as a 'cause' event"
NO_LOG = "no exception log of this integration was read"
CAUSE_FAILED = "the exception logs could not be looked up; tried again at the next evaluation"
#: Cause lookups in flight at once, over all accounts (each account's budget paces its own).
CAUSE_CONCURRENCY = 8
#: The alerts whose events carry a cause (from the stream, or IntegrationFailing's lookup).
CAUSED = frozenset({INTEGRATION_FAILING, INTEGRATION_ERRORS_RISING})
AlertObserver = Callable[[str, str], None]  # (alert, status)
FiringObserver = Callable[[Mapping[str, int]], None]


class FiringAlerts(Sequence[dict[str, Any]]):
    """An account's firing alerts as events, built when a sink first looks: Alertmanager
    does on every evaluation, the other sinks only while a hold is active or ending (at
    10 000 firing alerts, 10 000 event dicts an evaluation that nobody reads otherwise)."""

    def __init__(self, build: Callable[[], list[dict[str, Any]]]) -> None:
        self._build = build
        self._events: list[dict[str, Any]] | None = None

    def _built(self) -> list[dict[str, Any]]:
        if self._events is None:
            self._events = self._build()
        return self._events

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        return self._built()[index]

    def __len__(self) -> int:
        return len(self._built())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._built())


class Alerter:
    """Holds the alert states of every account; ``on_snapshot`` is the poller's hook."""

    def __init__(
        self,
        rules: AlertRules,
        sinks: Sequence[Sink],
        *,
        clock: Callable[[], datetime],
        ids_configured: Mapping[str, bool],
        fetch_logs: LogsFetcher | None = None,
        cause_timeout_seconds: float = 3.0,
        state_file: Path | None = None,
        on_alert: AlertObserver = lambda alert, status: None,
        on_firing: FiringObserver = lambda counts: None,
        cause_budgets: Mapping[str, Budget] | None = None,
    ) -> None:
        self.rules = rules
        self.sinks = list(sinks)
        self._clock = clock
        self.ids_configured = dict(ids_configured)
        self._fetch_logs = fetch_logs
        self._cause_timeout = cause_timeout_seconds
        self._state_file = state_file
        self._on_alert = on_alert
        self._on_firing = on_firing
        #: account -> its alert states; each evaluation replaces one account's entry (by one
        #: assignment: the status page reads from another thread), so an evaluation costs the
        #: account's alerts, not every account's
        self._states: dict[str, dict[AlertKey, AlertState]] = {}
        self._firing: dict[str, dict[str, int]] = {}  # account -> alert -> firing count
        self._totals = dict.fromkeys(ALERTS, 0)  # alert -> firing count over all accounts
        self.causes: dict[AlertKey, Cause] = {}
        self._arrived: dict[str, list[AlertKey]] = {}  # causes found since the last evaluation
        self.cause_budgets = dict(cause_budgets or {})
        self._cause_slots = asyncio.Semaphore(CAUSE_CONCURRENCY)
        self._lookups: set[asyncio.Task[None]] = set()
        self._retry: set[AlertKey] = set()  # lookups that failed: tried again next evaluation
        self._saved_revision: int | None = None  # of the holds in the state file
        self._on_firing(self.firing_counts())
        if state_file is not None:
            self._restore(persistence.load_all(state_file))

    def _restore(self, saved: persistence.Saved) -> None:
        """The saved alerts of the accounts this process polls are taken over, and what the
        sinks held; those of any other account (removed from the configuration, or moved to
        another shard, while the daemon was down) end here, once, as a reload ends them:
        firing ones resolve (through the holds, so a held one stays silent)."""
        by_account: dict[str, dict[AlertKey, AlertState]] = {}
        for key, state in saved.alerts.items():
            by_account.setdefault(key.account, {})[key] = state
        for account, states in by_account.items():
            self._set(account, states)
        self._restore_holds(saved.holds)
        self._saved_revision = self._revision()
        if self._states or saved.holds:
            log.info(
                "alert_state_restored",
                path=str(self._state_file),
                alerts=len(self.states),
                holds=sorted(saved.holds),
            )
        for account in [a for a in by_account if a not in self.ids_configured]:
            ended = self.end_account(account)
            log.info("alert_state_not_owned", account=account, resolved=len(ended))
        self._hand_over()

    def _holding(self) -> list[HoldingSink]:
        return [sink for sink in self.sinks if isinstance(sink, HoldingSink)]

    def _revision(self) -> int:
        return sum(sink.revision for sink in self._holding())

    def holds(self) -> dict[str, Any]:
        """What the sinks hold back now, by sink name (saved with the alerts)."""
        return {sink.name: sink.holds() for sink in self._holding()}

    def _restore_holds(self, saved: Mapping[str, Any]) -> None:
        for sink in self._holding():
            mine = saved.get(sink.name)
            if isinstance(mine, Mapping):
                sink.restore_holds(mine)

    @property
    def states(self) -> dict[AlertKey, AlertState]:
        """Every account's alert states (any thread)."""
        return {k: s for states in list(self._states.values()) for k, s in states.items()}

    def _set(self, account: str, states: dict[AlertKey, AlertState]) -> None:
        if states:
            self._states[account] = states
        else:
            self._states.pop(account, None)
        firing = dict.fromkeys(ALERTS, 0)
        for state in states.values():
            if state.firing:
                firing[state.key.alert] += 1
        self._count(self._firing.get(account), firing)
        self._firing[account] = firing

    def _count(self, before: Mapping[str, int] | None, after: Mapping[str, int] | None) -> None:
        for alert in ALERTS:
            self._totals[alert] += (after or {}).get(alert, 0) - (before or {}).get(alert, 0)

    async def on_snapshot(self, snapshot: AccountSnapshot) -> list[dict[str, Any]]:
        """Evaluate one account after its poll; returns the events it emitted. Never waits for
        I/O: sinks queue, cause lookups run in the background."""
        now = self._clock()
        account = snapshot.account
        conditions, unknown = conditions_for(
            snapshot,
            ids_configured=self.ids_configured.get(account, False),
            rules=self.rules,
            now=now,
        )
        previous = self._states.get(account, {})
        self._stream_causes(snapshot, {c.key for c in conditions} | previous.keys())
        evaluation = evaluate(previous, conditions, unknown, now, self.rules)
        changed = _persistent_change(previous, evaluation.states)
        self._set(account, dict(evaluation.states))
        current = self._states.get(account, {})
        ended = {e.state.key for e in evaluation.events if e.status == "resolved"}
        # a cause belongs to a key that was evaluated before (found while it fired) or holds
        # now: only those can have ended, so the other accounts' causes are never scanned
        for key in (previous.keys() - current.keys()) | ended:
            self.causes.pop(key, None)  # the episode ended (a new one may have begun)
        events = [self._fields(event) for event in evaluation.events]
        events += self._cause_events(account, now)
        for alert_event in evaluation.events:
            if self._wants_cause(alert_event):
                self._look_up(alert_event.state)
        for key in [k for k in self._retry if k.account == account]:
            self._retry.discard(key)
            if key in current and current[key].firing and not self._looking_up(key):
                self._look_up(current[key])
        firing = FiringAlerts(lambda: self._firing_fields(account, now))
        self._deliver(account, events, firing)
        if self._state_file is not None and (changed or self._revision() != self._saved_revision):
            self._save()
        return events

    def end_account(self, account: str) -> list[dict[str, Any]]:
        """An account that left the configuration: its firing alerts resolve (once), its
        pending ones are dropped, nothing of it is kept."""
        now = self._clock()
        previous = self._states.get(account, {})
        evaluation = evaluate(previous, [], set(), now, self.rules)
        self._states.pop(account, None)
        self._count(self._firing.pop(account, None), None)
        for key in [k for k in self.causes if k.account == account]:
            del self.causes[key]
        self.ids_configured.pop(account, None)
        self.cause_budgets.pop(account, None)
        events = [self._fields(event) for event in evaluation.events]
        self._deliver(account, events, [])
        if self._state_file is not None and (previous or self._revision() != self._saved_revision):
            self._save()
        return events

    async def replace_delivery(self, rules: AlertRules, sinks: Sequence[Sink]) -> None:
        """New rules and sinks from a reload. What the old sinks hold goes to the new ones
        (held alerts stay held, and are released at the evaluation after their hold ends,
        whatever the reload changed); the old sinks get their drain and close. Between taking
        their holds and the swap nothing else runs, so no event falls between the two."""
        for sink in self._holding():
            sink.settle()  # what is still gathering goes out now, by the old routes
        holds = self.holds()
        old, self.sinks, self.rules = self.sinks, list(sinks), rules
        self._restore_holds(holds)
        self._hand_over()
        await asyncio.gather(*(sink.aclose() for sink in old))

    def _hand_over(self) -> None:
        """Tell the sinks every alert firing now (new sinks, a restored state): Alertmanager's
        resend timer keeps them active from the start. A holding sink applies the holds in
        force and releases nothing: that is for the next evaluation."""
        now = self._clock()
        for account in list(self._states):
            firing = self._firing_fields(account, now)
            for sink in self.sinks:
                if isinstance(sink, HoldingSink):
                    sink.hand_over(account, firing)
                else:
                    sink.submit(account, [], firing)

    def firing_by_integration(
        self,
    ) -> tuple[dict[tuple[str, int], list[str]], dict[tuple[str, int], dict[str, Any]]]:
        """For the status page (any thread): the alerts firing per (account, integration) and
        the known cause of each (redacted, as the alert carries it)."""
        firing: dict[tuple[str, int], list[str]] = {}
        for key, state in self.states.items():
            if state.firing and key.integration_id is not None:
                firing.setdefault((key.account, key.integration_id), []).append(key.alert)
        causes = {
            (key.account, key.integration_id): cause
            for key, (cause, _) in dict(self.causes).items()
            if cause is not None and key.integration_id is not None
        }
        return firing, causes

    def not_found_polls(self) -> dict[tuple[str, int], int]:
        """(account, integration_id) -> the consecutive polls that answered 404, as
        IntegrationNotFound counts them (any thread: exported for the shipped rule)."""
        return {
            (key.account, key.integration_id): state.observations
            for key, state in self.states.items()
            if key.alert == INTEGRATION_NOT_FOUND and key.integration_id is not None
        }

    def _firing_fields(self, account: str, now: datetime) -> list[dict[str, Any]]:
        return [
            self._fields(AlertEvent(s, "firing", "active", now))
            for s in self._states.get(account, {}).values()
            if s.firing
        ]

    def firing_counts(self) -> dict[str, int]:
        return dict(self._totals)

    def _deliver(
        self, account: str, events: list[dict[str, Any]], firing: Sequence[dict[str, Any]]
    ) -> None:
        for fields in events:
            if fields["kind"] != "cause":
                self._on_alert(fields["alert"], fields["status"])
        for sink in self.sinks:
            sink.submit(account, events, firing)
        self._on_firing(self.firing_counts())

    def _stream_causes(self, snapshot: AccountSnapshot, alerts: Set[AlertKey]) -> None:
        """Causes from the account's log stream: an alert (holding or kept: ``alerts``) with
        a cause whose integration has a log already read takes the newest at once, with no
        request (in an incident of a thousand shops: none). The lookup remains for those the
        stream has nothing of."""
        for integration_id, activity in snapshot.exceptions.items():
            for alert in (INTEGRATION_FAILING, INTEGRATION_ERRORS_RISING):
                key = AlertKey(alert, snapshot.account, integration_id)
                if key not in alerts or (key in self.causes and self.causes[key][0] is not None):
                    continue
                observation = snapshot.integrations.get(integration_id)
                since = None
                if observation is not None and observation.record is not None:
                    since = observation.record.started_failing_at
                cause = cause_from_logs([dict(activity.newest)], since)
                if cause is not None:
                    self.causes[key] = (cause, None)

    def _fields(self, event: AlertEvent) -> dict[str, Any]:
        fields = event_fields(event, self.rules)
        if event.state.key.alert in CAUSED and event.status == "firing":
            pending = CAUSE_PENDING if event.state.key.alert == INTEGRATION_FAILING else NO_LOG
            fields["cause"], fields["cause_error"] = self.causes.get(
                event.state.key, (None, pending)
            )
        return fields

    def _wants_cause(self, event: AlertEvent) -> bool:
        key = event.state.key
        return (
            key.alert == INTEGRATION_FAILING
            and event.status == "firing"
            and key not in self.causes
            and not self._looking_up(key)
        )

    def _looking_up(self, key: AlertKey) -> bool:
        return any(t.get_name() == repr(key) for t in self._lookups)

    def _look_up(self, state: AlertState) -> None:
        task = asyncio.create_task(self._find_cause(state), name=repr(state.key))
        self._lookups.add(task)
        task.add_done_callback(self._lookups.discard)

    async def _find_cause(self, state: AlertState) -> None:
        """One lookup: a few at a time, from the account's request budget after its polls
        (the request is taken here, before the timeout starts: the fetcher must not take it
        again), and only while the alert still fires."""
        key = state.key
        budget = self.cause_budgets.get(key.account)
        if budget is not None:  # first the account's own budget, then a global slot: one
            if not self._still_firing(key):  # account's incident cannot hold the slots of
                return  # the others
            await budget.acquire(background=True)
        async with self._cause_slots:
            if not self._still_firing(key):
                return
            try:
                cause = await self._cause(state)
            except Exception:  # a reload restarting the account, a closed client, a bug
                log.warning(
                    "cause_lookup_failed", account=key.account, integration_id=key.integration_id
                )
                cause = (None, CAUSE_FAILED)
                self._retry.add(key)
        if self._still_firing(key):
            self.causes[key] = cause
            self._arrived.setdefault(key.account, []).append(key)

    def _still_firing(self, key: AlertKey) -> bool:
        state = self._states.get(key.account, {}).get(key)
        return state is not None and state.firing

    def _cause_events(self, account: str, now: datetime) -> list[dict[str, Any]]:
        """Causes that arrived since this account's last evaluation, as follow-up events."""
        keys = self._arrived.pop(account, [])
        return [
            self._fields(AlertEvent(self._states[account][key], "firing", "cause", now))
            for key in keys
            if self._still_firing(key)
        ]

    async def _cause(self, state: AlertState) -> tuple[dict[str, Any] | None, str | None]:
        """The cause from the exception logs, or why there is none. Never raises."""
        if self._fetch_logs is None or state.key.integration_id is None:
            return None, "cause lookup is not configured"
        try:
            logs = await asyncio.wait_for(
                self._fetch_logs(state.key.account, state.key.integration_id), self._cause_timeout
            )
        except TimeoutError:
            return None, f"exception logs did not arrive within {self._cause_timeout:g} s"
        except ApiError as exc:
            return None, f"exception logs could not be read ({exc.reason})"
        cause = cause_from_logs(logs, state.context.started_failing_at)
        return cause, None if cause is not None else "no exception logs for this integration"

    def _save(self) -> None:
        assert self._state_file is not None
        revision = self._revision()
        try:
            persistence.save(self._state_file, self.states, self.holds())
        except OSError as exc:
            log.error("alert_state_not_saved", path=str(self._state_file), error=exc.strerror)
        else:
            self._saved_revision = revision

    async def aclose(self) -> None:
        """At shutdown: stop cause lookups (their results would have nowhere to go), send what
        is still gathering, write the state file (with what the sinks hold after that), give
        the sinks a moment to deliver what is queued."""
        for task in list(self._lookups):
            task.cancel()
        await asyncio.gather(*self._lookups, return_exceptions=True)
        for sink in self._holding():
            sink.settle()
        if self._state_file is not None:
            self._save()
        await asyncio.gather(*(sink.aclose() for sink in self.sinks))


def _persistent_change(
    before: Mapping[AlertKey, AlertState], after: Mapping[AlertKey, AlertState]
) -> bool:
    """Whether anything worth a write changed: everything but the context's elapsed seconds
    (they change on every poll) and, while firing, the count of observations. Compared field
    by field, without copies: a thousand alerts firing are compared at every poll."""
    if before.keys() != after.keys():
        return True
    for key, state in after.items():
        old = before[key]
        if old is state:
            continue
        if (old.since, old.firing_since, old.last_notified, old.severity, old.episode) != (
            state.since,
            state.firing_since,
            state.last_notified,
            state.severity,
            state.episode,
        ):
            return True
        if not state.firing and old.observations != state.observations:
            return True
        if old.context is not state.context and _lasting(old.context) != _lasting(state.context):
            return True
    return False


def _lasting(context: Context) -> tuple[object, ...]:
    """A context without the elapsed seconds (nor a certificate's days left)."""
    return (
        context.shop_name,
        context.shop_url,
        context.integration_type,
        context.started_failing_at,
        context.last_fetched_at,
        context.detail,
        context.probe_result,
        context.certificate_expires_at,
        context.certificate_issuer,
        context.failed_checks,
        context.config_changed_at,
    )
