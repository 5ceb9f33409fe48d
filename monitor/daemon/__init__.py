"""Wiring and lifecycle, one module per responsibility (bottom up; each imports only the ones
before it):

- ``reload``: re-reading the configuration, what a reload cannot change, the accounts it adds,
  changes and removes, and its reply;
- ``sinks``: the alerts' sinks as configured, the notifying ones behind the quiet gate, and what
  the gate holds now;
- ``web``: the web views (status document, pages, badges, the history API's glue), read-only,
  served from the HTTP server's threads;
- ``positions``: each account's exception-log stream and where it stands;
- ``workers``: each account's client, poller and poll job, the request budget of each API key;
- ``probing``: the shop probes and each account's survey and inventory;
- ``lifecycle``: the ``Daemon``, which builds the parts and coordinates them (run, shutdown,
  reload).

The names other code imports are re-exported here.
"""

from monitor.daemon.lifecycle import (
    HISTORY_CLAIM_SECONDS,
    SHUTDOWN_BUDGET_SECONDS,
    SHUTDOWN_SECONDS,
    Daemon,
    HistoryInUse,
)
from monitor.daemon.reload import RESTART_SETTINGS, Loader, restart_values
from monitor.daemon.sinks import build_sinks, receivers
from monitor.daemon.workers import (
    POLL_GRACE_SECONDS,
    POLL_UNWIND_SECONDS,
    SHARED_POOL_CONNECTIONS,
    Budgets,
    new_worker,
    open_pollers,
)

__all__ = [
    "HISTORY_CLAIM_SECONDS",
    "POLL_GRACE_SECONDS",
    "POLL_UNWIND_SECONDS",
    "RESTART_SETTINGS",
    "SHARED_POOL_CONNECTIONS",
    "SHUTDOWN_BUDGET_SECONDS",
    "SHUTDOWN_SECONDS",
    "Budgets",
    "Daemon",
    "HistoryInUse",
    "Loader",
    "build_sinks",
    "new_worker",
    "open_pollers",
    "receivers",
    "restart_values",
]
