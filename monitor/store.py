"""The last poll results, shared between the poller (writer) and the HTTP server (readers).

Each poll builds a new immutable :class:`AccountSnapshot` and swaps it in under a lock; a scrape
takes the current snapshots and works on them without holding anything. The collector may run
on another thread than the event loop, so nothing here is asyncio-specific.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import NamedTuple

from monitor.health import Health, State
from monitor.probes import ShopProbe
from monitor.sendcloud import Integration
from monitor.sendcloud.stream import Activity, Counts


class ReadOutcome(Enum):
    OK = "ok"  # the last read returned the integration
    NOT_FOUND = "not_found"  # the API answered 404
    ERROR = "error"  # the last poll could not read it; ``record`` is the last good one, if any


@dataclass(frozen=True, slots=True)
class Observation:
    """One integration as of the last poll.

    ``record`` and ``health`` are from the last *successful* read and are kept, unchanged,
    while the integration cannot be read: unknown is not ageing.
    """

    integration_id: int
    status: ReadOutcome
    record: Integration | None
    health: Health | None
    error_reason: str | None = None
    #: the first failed read of the current run of failed reads (None while readable)
    unreadable_since: datetime | None = None

    @property
    def last_success(self) -> datetime | None:
        return self.health.read_at if self.health is not None else None

    @property
    def state(self) -> State:
        """The state as of the last successful read — also while the integration cannot be
        read now (see ``unreadable_since``), as the frozen metrics and the alerts have it;
        unknown only when it was never read."""
        if self.status is ReadOutcome.NOT_FOUND:
            return State.NOT_FOUND
        if self.health is None:
            return State.UNKNOWN
        return self.health.state

    @property
    def has_values(self) -> bool:
        """Whether there are health values to show (a read succeeded once, and it still
        exists)."""
        return self.health is not None and self.status is not ReadOutcome.NOT_FOUND

    def values_at(self, now: datetime) -> datetime | None:
        """The time elapsed-time values are given for: ``now`` while readable, the last
        successful read while not (frozen), None when there is nothing to give."""
        if self.health is None or self.status is ReadOutcome.NOT_FOUND:
            return None
        return now if self.status is ReadOutcome.OK else self.health.read_at


class FailedCheck(NamedTuple):
    """A configuration check that fails for an integration, and what it means in plain words."""

    check: str  # feedback_off, webhook_without_url, ... (monitor.checks.CHECKS)
    text: str


@dataclass(frozen=True, slots=True)
class Findings:
    """What the monitor found out about one integration besides its record: its shop's latest
    probe and the configuration checks that fail (those switched off left out)."""

    probe: ShopProbe | None = None  # None: no shop URL to probe, not probed yet, or probes off
    failed: tuple[FailedCheck, ...] = ()


#: (account snapshot) -> the same with its findings, applied to every snapshot the store takes
Assess = Callable[["AccountSnapshot"], "AccountSnapshot"]


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
    #: every integration of the account was read (or the account answered as a whole) at
    #: least once since start: a walk cut short and resumed is not there yet
    covered: bool = False
    #: integrations with exception logs in the last hour, from the account's log stream
    exceptions: Mapping[int, Activity] = field(default_factory=dict)
    #: whether ``exceptions`` is known: the stream was read since start (or there is none);
    #: before, what the stream would say is unknown, not "no logs"
    exceptions_known: bool = False
    #: the log stream's counters per integration (None: the account has no stream)
    exception_counts: Counts | None = None
    #: per integration, what probes and configuration checks found (only those with any)
    findings: Mapping[int, Findings] = field(default_factory=dict)
    #: integrations of the account that are not monitored, from the last inventory walk
    #: (explicit IDs only; None: not known, or every integration is monitored)
    unmonitored: tuple[int, ...] | None = None


class Store:
    """Thread-safe holder of the latest snapshot per account. ``assess`` (when set) adds the
    findings to every snapshot put, before anyone can read it: they are derived once per
    poll, and again by :meth:`refresh` when a probe or an inventory walk changed them."""

    def __init__(self, accounts: list[str], *, assess: Assess | None = None) -> None:
        self._lock = threading.Lock()
        self._snapshots = {name: AccountSnapshot(account=name) for name in accounts}
        self.assess = assess

    def put(self, snapshot: AccountSnapshot) -> None:
        if self.assess is not None:
            snapshot = self.assess(snapshot)
        with self._lock:
            self._snapshots = {**self._snapshots, snapshot.account: snapshot}

    def refresh(self, account: str) -> None:
        """Assess an account's current snapshot again (its records unchanged)."""
        with self._lock:
            current = self._snapshots.get(account)
        if current is not None and current.cycles_completed > 0:
            self.put(current)

    def add(self, account: str) -> None:
        """A new account (configuration reload): empty until its first poll."""
        with self._lock:
            if account not in self._snapshots:
                self._snapshots = {**self._snapshots, account: AccountSnapshot(account=account)}

    def remove(self, account: str) -> None:
        """An account that left the configuration: its series end with the next scrape."""
        with self._lock:
            self._snapshots = {k: v for k, v in self._snapshots.items() if k != account}

    def get(self, account: str) -> AccountSnapshot:
        with self._lock:
            return self._snapshots[account]

    def snapshots(self) -> Mapping[str, AccountSnapshot]:
        with self._lock:
            return self._snapshots

    def ready(self) -> bool:
        """True once every account has completed a first full read: each integration read at
        least once (a list walk resumed over several cycles has ended), or the account
        answered as a whole (its keys rejected, the API unreachable)."""
        return all(s.cycles_completed > 0 and s.covered for s in self.snapshots().values())
