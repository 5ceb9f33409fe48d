"""The store's interface, the same for both backends (:mod:`monitor.database.sqlite`, one
process; :mod:`monitor.database.postgres`, a fleet), and the records that cross it.

Every method is a coroutine: PostgreSQL's I/O runs on the event loop (psycopg's async
connections), SQLite's in threads, and neither blocks the loop. Each call is bounded in time
(``timeout``): a database that is down or hangs gives :class:`DatabaseUnavailable` within it,
never a stalled caller. No message, ``repr`` or log line of a backend shows the URL's password.

**History writes are idempotent** so that two replicas polling the same accounts can both write
them: a :class:`Transition` ends the integration's open interval and opens one in its new
state only if the open interval is in another state *and began before* the transition; the
same transition written twice, or an older observation written after a newer one, changes
nothing. A store holds at most one open interval per integration.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from monitor.database.claims import OutboxEvent
from monitor.database.errors import DatabaseError, DatabaseUnavailable, SchemaError
from monitor.database.fleet import FleetAccount, FleetIntegration, FleetUpdate, Replica
from monitor.notify.quiet import Mute

Span = tuple[str, float, float | None]  # (state, since, until): Unix seconds, until None = open
Names = tuple[str | None, str | None]  # (shop name, integration type)


@dataclass(frozen=True, slots=True)
class Transition:
    """One integration observed in ``state`` at ``at`` (Unix seconds)."""

    account: str
    integration_id: int
    state: str
    at: float


@dataclass(frozen=True, slots=True)
class Batch:
    """One transaction of history writes."""

    at: float  # the newest time in it (``meta.last_write``)
    transitions: Sequence[Transition] = ()
    #: (account, integration_id, at): no longer watched, its open interval ends at ``at``
    ended: Sequence[tuple[str, int, float]] = ()
    #: (account, at): every open interval of the account ends at ``at`` (it left the config)
    forgotten: Sequence[tuple[str, float]] = ()
    #: (account, integration_id, shop name, integration type)
    names: Sequence[tuple[str, int, str | None, str | None]] = ()
    #: (account, last_id, last_time as RFC 3339): an exception-log stream's position; on
    #: PostgreSQL a position never moves back (two replicas read the same stream)
    positions: Sequence[tuple[str, int, str]] = ()


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of offering one event (``reason``: one of ``claims.REASONS``)."""

    event: OutboxEvent
    claimed: bool
    reason: str
    episode_id: int | None = None
    outbox_id: int | None = None


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A claimed event waiting to be sent. ``attempts`` > 1: it was taken before by a
    notifier that never marked it sent (it may have reached some receivers)."""

    id: int
    episode_id: int
    fingerprint: str
    account: str
    kind: str
    body: dict[str, Any]
    created: float
    producer: str
    attempts: int


@dataclass(frozen=True, slots=True)
class FiringAlert:
    """An open alert episode, for the fleet's views."""

    alert: str
    account: str
    integration_id: int | None
    fired: float
    escalated: float | None
    cause: str | None


@dataclass(frozen=True, slots=True)
class Fleet:
    """Everything the fleet's status page needs from the store, read at once."""

    accounts: dict[str, FleetAccount] = field(default_factory=dict)
    integrations: dict[tuple[str, int], FleetIntegration] = field(default_factory=dict)
    firing: list[FiringAlert] = field(default_factory=list)


class Backend(Protocol):
    """The store. ``open`` connects and migrates (under a lock); the rest may be called from
    any task once it has."""

    kind: str  # "sqlite" | "postgresql"
    timeout: float

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def schema_version(self) -> int: ...

    # -- history ------------------------------------------------------------------------------
    async def write(self, batch: Batch) -> None: ...
    async def open_intervals(
        self, accounts: Collection[str] | None = None
    ) -> dict[str, dict[int, str]]: ...
    async def intervals(
        self, account: str, integration_id: int, since: float, until: float
    ) -> list[Span]: ...
    async def account_spans(
        self, account: str, since: float, until: float
    ) -> dict[int, list[Span]]: ...
    async def names(self, account: str) -> dict[int, Names]: ...
    async def episodes(
        self, account: str, integration_id: int | None, since: float, until: float
    ) -> list[dict[str, Any]]: ...
    async def last_write(self) -> float | None: ...
    async def stream_positions(self) -> dict[str, tuple[int, datetime]]: ...
    async def prune(self, horizon: float) -> None: ...

    # -- mutes --------------------------------------------------------------------------------
    async def add_mute(self, mute: Mute) -> None: ...
    async def end_mute(self, mute_id: str, at: datetime) -> bool: ...
    async def active_mutes(self, now: datetime) -> list[Mute]: ...

    # -- the outbox ---------------------------------------------------------------------------
    async def claim(
        self, events: Sequence[OutboxEvent], *, producer: str, delivered: bool = False
    ) -> list[Claim]: ...
    async def take(self, by: str, at: float, limit: int = 500) -> list[OutboxItem]: ...
    async def mark_sent(self, ids: Sequence[int], by: str, at: float) -> int: ...

    # -- the fleet ----------------------------------------------------------------------------
    async def publish(self, updates: Sequence[FleetUpdate]) -> None: ...
    async def fleet(self) -> Fleet: ...
    async def register(self, replica: Replica) -> None: ...
    async def heartbeat(self, replica: str, at: float) -> None: ...
    async def replicas(self) -> list[Replica]: ...


def rounds(transitions: Sequence[Transition]) -> list[list[tuple[str, int, str, float]]]:
    """Transitions in rounds of at most one per integration, in their order: one statement
    (or one executemany) cannot apply two transitions of one integration in sequence. A batch
    is one round unless an account polled twice within it."""
    found: list[list[tuple[str, int, str, float]]] = []
    seen: dict[tuple[str, int], int] = {}
    for t in transitions:
        key = (t.account, t.integration_id)
        number = seen.get(key, 0)
        seen[key] = number + 1
        if number == len(found):
            found.append([])
        found[number].append((t.account, t.integration_id, t.state, t.at))
    return found


def spans_of(rows: Iterable[tuple[int, str, float, float | None]]) -> dict[int, list[Span]]:
    """(integration_id, state, since, until) rows, ordered, as each integration's spans."""
    found: dict[int, list[Span]] = {}
    for integration_id, state, start, end in rows:
        spans = found.get(integration_id)
        if spans is None:
            spans = found[integration_id] = []
        spans.append((state, start, end))
    return found


def iso(value: float | None) -> str | None:
    """Unix seconds as RFC 3339 in UTC (``Z``), as the history API gives times."""
    if value is None:
        return None
    return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")


def episode_document(
    alert: str,
    integration_id: int | None,
    fired: float,
    escalated: float | None,
    resolved: float | None,
    cause: str | None,
) -> dict[str, Any]:
    """One episode as the history API gives it (the same document as the SQLite history's)."""
    return {
        "alert": alert,
        "integration_id": integration_id,
        "fired": iso(fired),
        "escalated": iso(escalated),
        "resolved": iso(resolved),
        "cause": json.loads(cause) if cause else None,
    }


def mute_row(mute: Mute) -> tuple[Any, ...]:
    """A mute as the ``mutes`` table's columns, in order."""
    return (
        mute.id,
        mute.account,
        mute.integration_id,
        mute.integration_type,
        mute.created.timestamp(),
        mute.until.timestamp(),
        mute.reason,
        mute.author,
    )


def mute_of(
    mute_id: str,
    account: str,
    integration_id: int | None,
    integration_type: str | None,
    created: float,
    until: float,
    reason: str,
    author: str,
) -> Mute:
    return Mute(
        id=mute_id,
        account=account,
        integration_id=integration_id,
        integration_type=integration_type,
        created=datetime.fromtimestamp(created, UTC),
        until=datetime.fromtimestamp(until, UTC),
        reason=reason,
        author=author,
    )


def outbox_item(
    item_id: int,
    episode_id: int,
    fingerprint: str,
    account: str,
    kind: str,
    body: str,
    created: float,
    producer: str,
    attempts: int,
) -> OutboxItem:
    return OutboxItem(
        item_id,
        episode_id,
        fingerprint,
        account,
        kind,
        json.loads(body),
        created,
        producer,
        attempts,
    )


__all__ = [
    "Backend",
    "Batch",
    "Claim",
    "DatabaseError",
    "DatabaseUnavailable",
    "FiringAlert",
    "Fleet",
    "Names",
    "OutboxItem",
    "SchemaError",
    "Span",
    "Transition",
]
