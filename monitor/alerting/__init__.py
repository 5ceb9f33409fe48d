"""Alerting: from poll results to delivered notifications.

- ``rules``: the alert rules as a pure state machine (grace, repeat, escalation, resolve) and
  the event fields — time is passed in;
- ``service``: :class:`Alerter`, the service run after each poll: evaluates, delivers, looks up
  causes in the background, persists;
- ``sinks``: delivery to stdout, grouped webhooks and Alertmanager;
- ``cause``: the likely cause of a failure from the exception logs, redacted;
- ``persistence``: open alerts on disk across restarts.

May import ``monitor.sendcloud``, ``monitor.health``, ``monitor.store`` and the base modules.
"""

from monitor.alerting.rules import ALERTS, AlertRules
from monitor.alerting.service import CAUSE_PENDING, Alerter
from monitor.alerting.sinks import AlertmanagerSink, Sink, StdoutSink, WebhookSink

__all__ = [
    "ALERTS",
    "CAUSE_PENDING",
    "AlertRules",
    "Alerter",
    "AlertmanagerSink",
    "Sink",
    "StdoutSink",
    "WebhookSink",
]
