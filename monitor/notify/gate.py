"""The gate in front of the notifying sinks: what maintenance and mutes hold waits there.

During a hold an alert's conditions are still evaluated, logged on stdout, recorded in the
history and shown; the gate keeps its events from webhooks, receivers and Alertmanager (for
which it is not firing). When the hold ends with the alert still firing, it is notified once,
as ``fired``; an alert that resolved while held sends nothing. The quiet in force is read at
each evaluation, so a new mute or a window's end takes effect at the next one.

What the gate holds is state (:class:`monitor.alerting.service.HoldingSink`): saved with the
open alerts, restored after a restart, handed to the next gate at a reload. So a mute that
expires, or a window removed from the configuration, while the daemon is down or across a
reload is released at the first evaluation after it, as if the daemon had never stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence, Set
from datetime import datetime
from typing import Any

import structlog

from monitor.alerting import Event, HoldingSink, Sink
from monitor.notify.quiet import ActiveQuiet, Hold, Quiet
from monitor.notify.routes import labels_of

log = structlog.get_logger(__name__)


class QuietGate:
    name = "quiet"

    def __init__(
        self,
        sinks: Sequence[Sink],
        quiet: Callable[[], Quiet],
        clock: Callable[[], datetime],
    ) -> None:
        self.sinks = list(sinks)
        self._quiet = quiet
        self._clock = clock
        #: fingerprints of firing alerts held now: the notifying sinks have not been told
        #: that they fire (since their hold began)
        self._held: set[str] = set()
        self._revision = 0

    def submit(self, account: str, events: Sequence[Event], firing: Sequence[Event]) -> None:
        """One evaluation of ``account``: holds begin, and end for what fires (``fired``)."""
        active = self._quiet().at(self._clock())
        passed: list[Event] = []
        if active:  # firing alerts a hold began for (also those notified before it)
            self._hold_firing(firing, active)
        for event in events:
            fingerprint = event["fingerprint"]
            hold = active.hold(labels_of(event)) if active else None
            if event["status"] == "resolved":
                if fingerprint in self._held:  # resolved while held: nothing to say
                    self._release(fingerprint)
                elif hold is None:
                    passed.append(event)
                continue
            if hold is not None:
                self._hold(event, hold)
                continue
            if fingerprint in self._held:  # its hold ended with this evaluation
                self._release(fingerprint)
                event = {**event, "kind": "fired"}
            passed.append(event)
        if self._held:  # holds that ended while the alert kept firing
            sent = {e["fingerprint"] for e in passed}
            for alert in firing:
                fingerprint = alert["fingerprint"]
                if fingerprint not in self._held or (active and active.hold(labels_of(alert))):
                    continue
                self._release(fingerprint)
                if fingerprint not in sent:
                    passed.append({**alert, "kind": "fired"})
        visible = self._visible(firing)
        for sink in self.sinks:
            sink.submit(account, passed, visible)

    def hand_over(self, account: str, firing: Sequence[Event]) -> None:
        """Firing alerts outside an evaluation (a restart, new sinks): a hold in force applies
        to them; nothing is released, since only an evaluation knows it still fires."""
        active = self._quiet().at(self._clock())
        if active:
            self._hold_firing(firing, active)
        visible = self._visible(firing)
        for sink in self.sinks:
            if isinstance(sink, HoldingSink):
                sink.hand_over(account, visible)
            else:
                sink.submit(account, [], visible)

    def _visible(self, firing: Sequence[Event]) -> Sequence[Event]:
        """The firing alerts the notifying sinks may know of (Alertmanager's active list)."""
        if not self._held:
            return firing
        return [a for a in firing if a["fingerprint"] not in self._held]

    def _hold_firing(self, firing: Sequence[Event], active: ActiveQuiet) -> None:
        for alert in firing:
            self._hold(alert, active.hold(labels_of(alert)))

    def _hold(self, event: Event, hold: Hold | None) -> None:
        fingerprint = event["fingerprint"]
        if hold is None or fingerprint in self._held:
            return
        self._held.add(fingerprint)
        self._revision += 1
        for sink in self._holding():  # what they held of it is said by its release here
            sink.forget({fingerprint})
        log.info(
            "alert_held",
            alert=event["alert"],
            account=event["account"],
            integration_id=event["integration_id"],
            reason=hold.reason,
            hold=hold.text,
        )

    def _release(self, fingerprint: str) -> None:
        self._held.discard(fingerprint)
        self._revision += 1

    def held(self) -> int:
        return len(self._held)

    @property
    def revision(self) -> int:
        return self._revision + sum(s.revision for s in self._holding())

    def _holding(self) -> list[HoldingSink]:
        return [sink for sink in self.sinks if isinstance(sink, HoldingSink)]

    def holds(self) -> dict[str, Any]:
        return {
            "held": sorted(self._held),
            "sinks": {sink.name: sink.holds() for sink in self._holding()},
        }

    def restore_holds(self, saved: Mapping[str, Any]) -> None:
        held = saved.get("held")
        if isinstance(held, list):
            self._held |= {f for f in held if isinstance(f, str)}
            self._revision += 1
        inner = saved.get("sinks")
        for sink in self._holding():
            mine = inner.get(sink.name) if isinstance(inner, Mapping) else None
            if isinstance(mine, Mapping):
                sink.restore_holds(mine)
            sink.forget(self._held)

    def forget(self, fingerprints: Set[str]) -> None:
        for sink in self._holding():
            sink.forget(fingerprints)

    def settle(self) -> None:
        for sink in self._holding():
            sink.settle()

    async def aclose(self) -> None:
        """The sinks drain together: a shutdown waits for the slowest, not for their sum."""
        await asyncio.gather(*(sink.aclose() for sink in self.sinks))
