"""The fleet's current state as the store keeps it, and what a replica writes of it. Pure.

Every replica writes, per account it polls, one :class:`FleetAccount` row per poll (which
shard and replica, when: the age every other replica shows), and of the account's
integrations only the rows that changed since it last wrote them (:func:`changes`): a steady
cycle writes one row per account, not one per integration. What changes on every poll of a
healthy shop — the time Sendcloud last fetched its orders — is written only when it moved by
more than ``fetched_resolution`` seconds (the readers' staleness is that much less precise;
a shop going stale is a state change and is written at once). The alerts firing and their
causes are not here: they are the open alert episodes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

#: The default precision of ``last_fetched_at`` in the store: a quarter of the default stale
#: threshold (2 h), so the staleness another replica shows is off by at most that much.
FETCHED_RESOLUTION_SECONDS = 1800.0


@dataclass(frozen=True, slots=True)
class FleetAccount:
    """One account as last written, and by whom."""

    account: str
    replica: str
    written_at: float  # Unix seconds: the age of everything of this account
    interval_seconds: float  # its poll interval: readers judge the age by it
    shard: int | None = None
    shards: int | None = None
    last_cycle_success: float | None = None
    api_error: str | None = None
    auth_ok: bool = True


@dataclass(frozen=True, slots=True)
class FleetIntegration:
    """What the status page shows of one integration, as of its last change."""

    account: str
    integration_id: int
    state: str
    shop_name: str | None = None
    shop_url: str | None = None
    integration_type: str | None = None
    started_failing_at: float | None = None
    last_fetched_at: float | None = None
    unreadable_since: float | None = None
    written_at: float = 0.0


@dataclass(frozen=True, slots=True)
class FleetUpdate:
    """One account's write: its row, the integrations that changed, those that are gone."""

    account: FleetAccount
    changed: Sequence[FleetIntegration] = ()
    gone: Sequence[int] = ()


@dataclass(frozen=True, slots=True)
class Replica:
    """A replica that writes to the store (``seen`` is its last heartbeat)."""

    replica: str
    host: str
    version: str
    started: float
    seen: float
    shard: int | None = None
    shards: int | None = None


def same(old: FleetIntegration, new: FleetIntegration, fetched_resolution: float) -> bool:
    """Whether ``new`` needs no write over ``old`` (``written_at`` aside)."""
    if old.last_fetched_at != new.last_fetched_at:
        if old.last_fetched_at is None or new.last_fetched_at is None:
            return False
        if abs(new.last_fetched_at - old.last_fetched_at) >= fetched_resolution:
            return False
    return replace(old, last_fetched_at=None, written_at=0.0) == replace(
        new, last_fetched_at=None, written_at=0.0
    )


def changes(
    written: Mapping[int, FleetIntegration],
    current: Mapping[int, FleetIntegration],
    fetched_resolution: float = FETCHED_RESOLUTION_SECONDS,
) -> tuple[list[FleetIntegration], list[int]]:
    """What to write of one account: the rows of ``current`` that differ from what was last
    ``written`` (new ones included), and the integrations that are gone."""
    changed = [
        row
        for integration_id, row in current.items()
        if (old := written.get(integration_id)) is None or not same(old, row, fetched_resolution)
    ]
    gone = [integration_id for integration_id in written if integration_id not in current]
    return changed, gone
