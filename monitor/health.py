"""Health derivation: pure functions, time passed in.

Each poll derives an integration's :class:`Health` once, at the moment its record arrived
(``read_at``). Everything else — metrics, alert conditions, transition logs, ``check`` — reads
that one derivation. Only the elapsed-time values (failing seconds, staleness seconds) depend on
*when* they are asked for; :meth:`Health.failing_seconds_at` and
:meth:`Health.staleness_seconds_at` answer that, and callers decide the time: the scrape's
``now`` while the integration is readable, ``read_at`` (frozen) while it is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from monitor.sendcloud import Integration

DEFAULT_CLOCK_SKEW_TOLERANCE_SECONDS = 60.0


def utcnow() -> datetime:
    """The daemon's wall clock. Looked up at call time, so freezegun can freeze it."""
    return datetime.now(UTC)


class State(StrEnum):
    """What one integration is, in one word (the order is the severity order of ``check``)."""

    FAILING = "failing"
    NOT_FOUND = "not_found"
    UNKNOWN = "unknown"  # cannot be read now (and maybe never was)
    STALE = "stale"
    HEALTHY = "healthy"


@dataclass(frozen=True, slots=True)
class Health:
    """One integration's record as understood at ``read_at``.

    ``failing_since`` and ``fetched_since`` are the API's timestamps, except that a timestamp
    in the future is replaced by ``read_at`` (durations are clamped to zero, never negative).
    ``clock_skew`` says a timestamp lay further in the future than the tolerance.
    """

    read_at: datetime
    failing_since: datetime | None  # set while failing
    fetched_since: datetime | None  # last_fetched_at, or created_at if never fetched
    stale_after_seconds: float
    stale: bool
    clock_skew: bool

    @property
    def failing(self) -> bool:
        return self.failing_since is not None

    @property
    def state(self) -> State:
        if self.failing:
            return State.FAILING
        return State.STALE if self.stale else State.HEALTHY

    def failing_seconds_at(self, at: datetime) -> float:
        """Seconds failing as of ``at`` (0 when not failing)."""
        if self.failing_since is None:
            return 0.0
        return max(0.0, (at - self.failing_since).total_seconds())

    def staleness_seconds_at(self, at: datetime) -> float | None:
        """Seconds since the last fetch as of ``at``; None when never fetched nor created."""
        if self.fetched_since is None:
            return None
        return max(0.0, (at - self.fetched_since).total_seconds())

    @property
    def failing_seconds(self) -> float:
        """As of the read."""
        return self.failing_seconds_at(self.read_at)

    @property
    def staleness_seconds(self) -> float | None:
        """As of the read."""
        return self.staleness_seconds_at(self.read_at)


def derive(
    record: Integration,
    read_at: datetime,
    stale_after_seconds: float,
    skew_tolerance_seconds: float = DEFAULT_CLOCK_SKEW_TOLERANCE_SECONDS,
) -> Health:
    """Failing from ``started_failing_at``; staleness from ``last_fetched_at`` (or
    ``created_at`` for an integration that was never fetched)."""
    tolerance = timedelta(seconds=skew_tolerance_seconds)
    skew = False
    failing_since = record.started_failing_at
    if failing_since is not None and failing_since > read_at:
        skew = failing_since - read_at > tolerance
        failing_since = read_at
    fetched_since = record.last_fetched_at or record.created_at
    if fetched_since is not None and fetched_since > read_at:
        skew = skew or fetched_since - read_at > tolerance
        fetched_since = read_at
    staleness = None if fetched_since is None else (read_at - fetched_since).total_seconds()
    return Health(
        read_at=read_at,
        failing_since=failing_since,
        fetched_since=fetched_since,
        stale_after_seconds=stale_after_seconds,
        stale=staleness is not None and staleness > stale_after_seconds,
        clock_skew=skew,
    )


#: (flag, event when it starts, event when it ends or None)
_EVENTS: tuple[tuple[str, str, str | None], ...] = (
    ("failing", "integration_failing", "integration_recovered"),
    ("stale", "integration_stale", "integration_fresh"),
    ("clock_skew", "integration_clock_skew", None),
)


def transitions(previous: Health | None, current: Health) -> list[str]:
    """Event names for the flags of ``current`` that differ from ``previous`` (the last
    successful read). ``previous=None`` is the unknown state before the first read: flags
    already set are announced once, cleared ones are not."""
    if previous is not None and (
        (previous.failing_since is None) is (current.failing_since is None)
        and previous.stale == current.stale
        and previous.clock_skew == current.clock_skew
    ):
        return []  # no flag moved: the case of almost every integration in every poll
    events: list[str] = []
    for name, started, ended in _EVENTS:
        was = bool(getattr(previous, name)) if previous is not None else False
        now_true = bool(getattr(current, name))
        if now_true and not was:
            events.append(started)
        elif was and not now_true and ended is not None:
            events.append(ended)
    return events
