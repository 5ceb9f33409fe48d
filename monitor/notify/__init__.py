"""Notification: who hears an alert, when and how (what fires: ``monitor.alerting``).

- ``sinks``: delivery to stdout, grouped webhooks and Alertmanager, each with its bounded queue
  and retries.

May import ``monitor.sendcloud``, ``monitor.health``, ``monitor.store``, ``monitor.alerting``
and the base modules.
"""

from monitor.notify.sinks import AlertmanagerSink, StdoutSink, WebhookSink

__all__ = ["AlertmanagerSink", "StdoutSink", "WebhookSink"]
