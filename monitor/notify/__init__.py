"""Notification: who hears an alert, when and how (what fires: ``monitor.alerting``).

- ``routes``: which receivers an event reaches (pure, as Alertmanager's routing tree);
- ``grouping``: events of every account gathered per route, platform-wide incidents (pure);
- ``messages``: what a notification says (pure): a group's summary, its shops, a title;
- ``delivery``: the bounded queue with retries every sink and receiver sends through;
- ``sinks``: stdout, grouped webhooks and Alertmanager;
- ``receivers``: Apprise receivers (e-mail, Teams, ntfy, ...), sending off the event loop;
- ``dispatch``: :class:`Router`, the routed receivers' sink: route, group, deliver;
- ``quiet``: maintenance windows and mutes, and what they hold (pure);
- ``gate``: :class:`QuietGate`, which holds the notifications of what is quiet.

May import ``monitor.sendcloud``, ``monitor.health``, ``monitor.store``, ``monitor.alerting``
and the base modules.
"""

from monitor.notify.sinks import AlertmanagerSink, StdoutSink, WebhookSink

__all__ = ["AlertmanagerSink", "StdoutSink", "WebhookSink"]
