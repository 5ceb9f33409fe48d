"""The last poll results, shared between the poller (writer) and the HTTP server (readers).

Each poll builds a new immutable :class:`AccountSnapshot` and swaps it in under a lock; a scrape
takes the current snapshots and works on them without holding anything. The collector may run
on another thread than the event loop, so nothing here is asyncio-specific.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from monitor.health import Conditions
from monitor.sendcloud import Integration


class Status(Enum):
    OK = "ok"  # the last poll returned the integration
    NOT_FOUND = "not_found"  # the API answered 404
    ERROR = "error"  # the last poll could not read it; ``record`` is the last good one, if any


@dataclass(frozen=True)
class Observation:
    """One integration as of the last poll."""

    integration_id: int
    status: Status
    record: Integration | None
    stale_after_seconds: float
    last_success: datetime | None = None
    error_reason: str | None = None
    conditions: Conditions | None = None  # last announced conditions (None before any data)


@dataclass(frozen=True)
class AccountSnapshot:
    """Everything known about one account after its latest poll cycle."""

    account: str
    integrations: Mapping[int, Observation] = field(default_factory=dict)
    cycles_completed: int = 0
    last_cycle_success: datetime | None = None
    auth_ok: bool = True
    account_error: str | None = None  # reason of an account-wide failure in the last cycle
    list_pages: int | None = None  # pages of the last complete list walk (request planning)


class Store:
    """Thread-safe holder of the latest snapshot per account."""

    def __init__(self, accounts: list[str]) -> None:
        self._lock = threading.Lock()
        self._snapshots = {name: AccountSnapshot(account=name) for name in accounts}

    def put(self, snapshot: AccountSnapshot) -> None:
        with self._lock:
            self._snapshots = {**self._snapshots, snapshot.account: snapshot}

    def get(self, account: str) -> AccountSnapshot:
        with self._lock:
            return self._snapshots[account]

    def snapshots(self) -> Mapping[str, AccountSnapshot]:
        with self._lock:
            return self._snapshots

    def ready(self) -> bool:
        """True once every account has completed at least one poll cycle."""
        return all(s.cycles_completed > 0 for s in self.snapshots().values())
