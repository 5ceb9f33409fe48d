"""Alerting: what fires — from poll results to alert events (who hears them: ``monitor.notify``).

- ``rules``: the alert rules as a pure state machine (grace, repeat, escalation, resolve) and
  the event fields — time is passed in;
- ``service``: :class:`Alerter`, the service run after each poll: evaluates, hands the events to
  its sinks, looks up causes in the background, persists;
- ``cause``: the likely cause of a failure from the exception logs, redacted;
- ``persistence``: open alerts on disk across restarts.

May import ``monitor.sendcloud``, ``monitor.health``, ``monitor.store`` and the base modules.
"""

from monitor.alerting.rules import ALERTS, AlertRules
from monitor.alerting.service import CAUSE_PENDING, Alerter, Event, HoldingSink, Sink

__all__ = [
    "ALERTS",
    "CAUSE_PENDING",
    "AlertRules",
    "Alerter",
    "Event",
    "HoldingSink",
    "Sink",
]
