"""The alerting service: after each poll cycle, evaluate the rules, add the cause, deliver.

Pure rule logic lives in :mod:`monitor.alerts`; this module does the I/O around it: the
exception-log lookup (bounded by a timeout, never blocking the alert), the sinks, the state
file and the metrics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from monitor import statefile
from monitor.alerts import (
    ALERTS,
    INTEGRATION_FAILING,
    AlertEvent,
    AlertKey,
    AlertRules,
    AlertState,
    conditions_for,
    evaluate,
    event_fields,
)
from monitor.cause import cause_from_logs
from monitor.sendcloud import ApiError
from monitor.sinks import Sink
from monitor.state import AccountSnapshot

log = structlog.get_logger("monitor.alerts")

LogsFetcher = Callable[[str, int], Awaitable[list[dict[str, Any]]]]  # (account, integration_id)
AlertObserver = Callable[[str, str], None]  # (alert, status)
FiringObserver = Callable[[Mapping[str, int]], None]


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
    ) -> None:
        self.rules = rules
        self.sinks = list(sinks)
        self._clock = clock
        self._ids_configured = ids_configured
        self._fetch_logs = fetch_logs
        self._cause_timeout = cause_timeout_seconds
        self._state_file = state_file
        self._on_alert = on_alert
        self._on_firing = on_firing
        self.states: dict[AlertKey, AlertState] = {}
        if state_file is not None:
            self.states = {
                k: s for k, s in statefile.load(state_file).items() if k.account in ids_configured
            }
            if self.states:
                log.info("alert_state_restored", path=str(state_file), alerts=len(self.states))
        self._on_firing(self.firing_counts())

    async def on_snapshot(self, snapshot: AccountSnapshot) -> list[dict[str, Any]]:
        """Evaluate one account after its poll; returns the events it emitted."""
        now = self._clock()
        account = snapshot.account
        conditions, unknown = conditions_for(
            snapshot, ids_configured=self._ids_configured.get(account, False)
        )
        previous = {k: s for k, s in self.states.items() if k.account == account}
        evaluation = evaluate(previous, conditions, unknown, now, self.rules)
        events = [await self._fields(event, snapshot) for event in evaluation.events]
        firing = [
            event_fields(AlertEvent(s, "firing", "active", now), self.rules)
            for s in evaluation.states.values()
            if s.firing
        ]
        changed = _persistent(previous) != _persistent(evaluation.states)
        self.states = {k: s for k, s in self.states.items() if k.account != account}
        self.states.update(evaluation.states)
        for event in events:
            self._on_alert(event["alert"], event["status"])
        for sink in self.sinks:
            sink.submit(events, firing)
        self._on_firing(self.firing_counts())
        if changed and self._state_file is not None:
            self._save()
        return events

    def firing_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(ALERTS, 0)
        for state in self.states.values():
            if state.firing:
                counts[state.key.alert] += 1
        return counts

    async def _fields(self, event: AlertEvent, snapshot: AccountSnapshot) -> dict[str, Any]:
        fields = event_fields(event, self.rules)
        if event.state.key.alert == INTEGRATION_FAILING and event.status == "firing":
            fields["cause"], fields["cause_error"] = await self._cause(event.state)
        return fields

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
        try:
            statefile.save(self._state_file, self.states)
        except OSError as exc:
            log.error("alert_state_not_saved", path=str(self._state_file), error=exc.strerror)

    async def aclose(self) -> None:
        await asyncio.gather(*(sink.aclose() for sink in self.sinks))


def _persistent(states: Mapping[AlertKey, AlertState]) -> dict[AlertKey, AlertState]:
    """What is worth a write: everything but the context that changes on every poll."""
    return {
        k: replace(
            s,
            context=replace(s.context, failing_seconds=None, staleness_seconds=None),
            observations=0 if s.firing else s.observations,
        )
        for k, s in states.items()
    }
