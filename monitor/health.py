"""Health derivation and transition detection: pure functions, time passed in.

Everything here is a function of (record, now, threshold), so it is the same at poll time, at
scrape time, and in tests; nothing reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from monitor.sendcloud import Integration


def utcnow() -> datetime:
    """The daemon's wall clock. Looked up at call time, so freezegun can freeze it."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Health:
    """What one integration's record says at ``now``."""

    failing: bool
    failing_seconds: float  # 0 when not failing; never negative
    clock_skew_seconds: float  # > 0 when started_failing_at lies in the future
    staleness_seconds: float | None  # None when neither last_fetched_at nor created_at is known
    stale: bool


def derive(record: Integration, now: datetime, stale_after_seconds: float) -> Health:
    """Failing from ``started_failing_at``; staleness from ``last_fetched_at`` (or ``created_at``
    for an integration that was never fetched)."""
    failing = record.started_failing_at is not None
    failing_seconds = 0.0
    skew = 0.0
    if record.started_failing_at is not None:
        elapsed = (now - record.started_failing_at).total_seconds()
        failing_seconds = max(0.0, elapsed)
        skew = max(0.0, -elapsed)
    reference = record.last_fetched_at or record.created_at
    staleness = None if reference is None else max(0.0, (now - reference).total_seconds())
    return Health(
        failing=failing,
        failing_seconds=failing_seconds,
        clock_skew_seconds=skew,
        staleness_seconds=staleness,
        stale=staleness is not None and staleness > stale_after_seconds,
    )


@dataclass(frozen=True)
class Conditions:
    """The facts whose changes are announced in the log."""

    failing: bool
    stale: bool
    not_found: bool
    clock_skew: bool = False


#: (condition, event when it starts, event when it ends or None)
_EVENTS: tuple[tuple[str, str, str | None], ...] = (
    ("not_found", "integration_not_found", None),
    ("failing", "integration_failing", "integration_recovered"),
    ("stale", "integration_stale", "integration_fresh"),
    ("clock_skew", "integration_clock_skew", None),
)


def transitions(previous: Conditions | None, current: Conditions) -> list[str]:
    """Event names for what changed. ``previous=None`` is the unknown state before the first
    poll: conditions already true are announced once, false ones are not."""
    events: list[str] = []
    for name, started, ended in _EVENTS:
        was = getattr(previous, name) if previous is not None else False
        now_true = getattr(current, name)
        if now_true and not was:
            events.append(started)
        elif was and not now_true and ended is not None and not current.not_found:
            events.append(ended)
    return events
