"""The gate in front of the notifying sinks: what maintenance and mutes hold waits there.

During a hold an alert's conditions are still evaluated, logged on stdout, recorded in the
history and shown; the gate keeps its events from webhooks, receivers and Alertmanager (for
which it is not firing). When the hold ends with the alert still firing, it is notified once,
as ``fired``; an alert that fired and resolved inside the hold sends nothing. The quiet in
force is read at each evaluation, so a new mute or a window's end takes effect at the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime

import structlog

from monitor.alerting import Event, Sink
from monitor.notify.quiet import Hold, Quiet
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
        self._held: set[str] = set()  # fingerprints held now
        self._notified: set[str] = set()  # fingerprints firing and notified

    def submit(self, account: str, events: Sequence[Event], firing: Sequence[Event]) -> None:
        active = self._quiet().at(self._clock())
        passed: list[Event] = []
        if active:  # firing alerts a hold began for (also those notified before it)
            for alert in firing:
                self._hold(alert, active.hold(labels_of(alert)))
        for event in events:
            fingerprint = event["fingerprint"]
            hold = active.hold(labels_of(event)) if active else None
            if hold is not None:
                self._hold(event, hold)
                if event["status"] == "resolved":
                    self._held.discard(fingerprint)
                    self._notified.discard(fingerprint)
                continue
            if fingerprint in self._held:  # its hold ended with this evaluation
                self._held.discard(fingerprint)
                if event["status"] == "firing":
                    event = {**event, "kind": "fired"}
            passed.append(event)
        for alert in firing if self._held else ():  # holds that ended while it kept firing
            fingerprint = alert["fingerprint"]
            if fingerprint in self._held and not (active and active.hold(labels_of(alert))):
                self._held.discard(fingerprint)
                if all(e["fingerprint"] != fingerprint for e in passed):
                    passed.append({**alert, "kind": "fired"})
        for event in passed:
            if event["status"] == "firing":
                self._notified.add(event["fingerprint"])
            else:
                self._notified.discard(event["fingerprint"])
        visible = (
            [a for a in firing if a["fingerprint"] not in self._held] if self._held else firing
        )
        for sink in self.sinks:
            sink.submit(account, passed, visible)

    def _hold(self, event: Event, hold: Hold | None) -> None:
        fingerprint = event["fingerprint"]
        if hold is None or fingerprint in self._held:
            return
        self._held.add(fingerprint)
        log.info(
            "alert_held",
            alert=event["alert"],
            account=event["account"],
            integration_id=event["integration_id"],
            reason=hold.reason,
            hold=hold.text,
        )

    def held(self) -> int:
        return len(self._held)

    async def aclose(self) -> None:
        """The sinks drain together: a shutdown waits for the slowest, not for their sum."""
        await asyncio.gather(*(sink.aclose() for sink in self.sinks))
