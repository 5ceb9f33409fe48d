"""Notification: who hears an alert, when and how (what fires: ``monitor.alerting``).

- ``messages``: what a notification says (pure): a group's summary, its shops, a title;
- ``delivery``: the bounded queue with retries every sink and receiver sends through;
- ``sinks``: stdout, grouped webhooks and Alertmanager.

May import ``monitor.sendcloud``, ``monitor.health``, ``monitor.store``, ``monitor.alerting``
and the base modules.
"""

from monitor.notify.sinks import AlertmanagerSink, StdoutSink, WebhookSink

__all__ = ["AlertmanagerSink", "StdoutSink", "WebhookSink"]
