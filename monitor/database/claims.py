"""Which alert events are sent, once for the whole fleet: the episode and claim rules. Pure:
an event and the alert's last episodes in, a decision out; the backends run it under a lock
per alert (PostgreSQL: ``pg_advisory_xact_lock``; SQLite: its write lock) and write what it
decides, and the outbox's unique key (episode, kind, seq) guards it a second time.

**Episode identity.** Two replicas of one shard evaluate the same alert (same fingerprint) on
their own polls, a few seconds apart, and each looks up its own cause. An event belongs to:

1. the episode whose ``origin`` equals the event's: the origin is the API's own timestamp of
   the episode (``started_failing_at``; ``last_fetched_at`` or ``created_at`` for staleness),
   the same in every replica that read the same record, so an exact match is the same episode
   whatever arrives when;
2. otherwise the alert's open episode — unless both have an origin and the event's is *later*:
   the shop recovered and failed again between two polls, a new episode (as the alerting itself
   decides); the open one ends at the event's time and its ``resolved`` is sent, once (the
   replica that sent the new episode may never have seen the old one). An event with an
   *earlier* origin than the open episode is the API correcting its timestamp: the same episode;
3. otherwise, with no episode open, the last episode if the event is a late copy of it: its
   origin is earlier than that episode's, or (alerts without an origin: API unreachable, keys
   rejected, not found, errors rising) the condition began (``starts_at``, as its replica saw
   it) before that episode resolved — the replica simply polled later than the one that
   resolved it;
4. otherwise a new episode, opened by any firing event (``fired``, but also ``escalated``,
   ``repeat`` or ``cause`` from a replica whose ``fired`` the store never saw); a ``resolved``
   with nothing to resolve is dropped.

**Claims within an episode.** ``fired`` is sent once: by the event that opens the episode.
``escalated``, ``cause`` and ``resolved`` are sent once each, while the episode is open (the
first to arrive wins, whatever its details). A ``repeat`` is sent when nothing of the episode
was sent for ``repeat_gap`` seconds (the producer passes half its repeat interval: two
replicas' repeats of one episode fall within one poll interval of each other). Nothing is sent
for an episode that has ended; a late ``cause`` still completes its history.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from monitor.alerting.rules import AlertEvent, fingerprint

KINDS = ("fired", "escalated", "repeat", "cause", "resolved")
#: How many of an alert's latest episodes a claim looks at (the exact-origin match of a late
#: event is always among the latest few).
EPISODES_CONSIDERED = 16

# why an event was or was not claimed
CLAIMED = "claimed"
DUPLICATE = "duplicate"  # the same kind of the same episode was claimed already
LATE = "late"  # it belongs to an episode that has ended
TOO_SOON = "too_soon"  # a repeat within repeat_gap of the episode's last notification
NOTHING_OPEN = "nothing_open"  # a resolved with no episode to resolve
REASONS = (CLAIMED, DUPLICATE, LATE, TOO_SOON, NOTHING_OPEN)


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One alert event as a producer (a replica's alerting) offers it for sending."""

    fingerprint: str
    alert: str
    account: str
    integration_id: int | None
    kind: str  # one of KINDS
    at: float  # when it was evaluated (Unix seconds)
    starts_at: float  # when its condition began, as its producer saw it
    origin: float | None  # the API's own timestamp of the episode, where the alert has one
    body: Mapping[str, Any] = field(default_factory=dict)  # the event as receivers get it
    repeat_gap: float = 0.0  # a repeat is sent only this long after the episode's last send

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown alert event kind {self.kind!r}")

    @classmethod
    def from_alert(
        cls, event: AlertEvent, body: Mapping[str, Any], *, repeat_gap: float = 0.0
    ) -> OutboxEvent:
        """From the alerting's own event and the fields sent for it (``event_fields`` plus
        the cause)."""
        state = event.state
        return cls(
            fingerprint=fingerprint(state.key),
            alert=state.key.alert,
            account=state.key.account,
            integration_id=state.key.integration_id,
            kind=event.kind,
            at=event.at.timestamp(),
            starts_at=state.since.timestamp(),
            origin=state.episode.timestamp() if state.episode is not None else None,
            body=dict(body),
            repeat_gap=repeat_gap,
        )

    @property
    def cause(self) -> str | None:
        """The event's cause as the history keeps it (JSON, keys sorted), if it has one."""
        cause = self.body.get("cause")
        return json.dumps(cause, sort_keys=True) if isinstance(cause, dict) else None


@dataclass(frozen=True, slots=True)
class Episode:
    """One alert episode as stored (the history's episodes are these rows)."""

    id: int
    fingerprint: str
    origin: float | None
    starts_at: float | None
    fired: float
    escalated: float | None = None
    resolved: float | None = None
    cause: str | None = None
    last_notified: float | None = None
    repeats: int = 0

    @property
    def open(self) -> bool:
        return self.resolved is None


@dataclass(frozen=True, slots=True)
class Decision:
    """What one event does: which episode it belongs to (``episode``, or a new one when
    ``opens``), whether it is sent (``claim``, with the outbox key's ``seq``), which columns of
    the episode change (``sets``), and an older open episode it ends (``supersedes``: its
    ``resolved`` is sent)."""

    reason: str
    claim: bool
    episode: Episode | None = None
    opens: bool = False
    seq: int = 0
    sets: Mapping[str, Any] = field(default_factory=dict)
    supersedes: Episode | None = None


def decide(event: OutboxEvent, episodes: Sequence[Episode]) -> Decision:
    """The rules of this module's docstring; ``episodes`` are the alert's latest, newest first."""
    open_ = next((e for e in episodes if e.open), None)
    exact = (
        next((e for e in episodes if e.origin == event.origin), None)
        if event.origin is not None
        else None
    )
    supersedes = None
    target: Episode | None
    if exact is not None:
        target = exact
    elif open_ is not None:
        if _later(event.origin, open_.origin) and event.kind != "resolved":
            target, supersedes = None, open_
        else:  # the same episode, a correction of its origin, or a resolve of what is open
            target = open_
    elif episodes and _late_copy(event, episodes[0]):
        target = episodes[0]
    else:
        target = None
    if target is None:
        if event.kind == "resolved":
            return Decision(NOTHING_OPEN, claim=False)
        return _open(event, supersedes)
    return _within(event, target)


def _later(origin: float | None, than: float | None) -> bool:
    return origin is not None and than is not None and origin > than


def _late_copy(event: OutboxEvent, last: Episode) -> bool:
    """Whether ``event`` is a late copy of ``last`` (which has ended)."""
    if event.origin is not None and last.origin is not None:
        return event.origin < last.origin  # an equal one was matched exactly
    return last.resolved is not None and event.starts_at < last.resolved


def _open(event: OutboxEvent, supersedes: Episode | None) -> Decision:
    sets: dict[str, Any] = {"last_notified": event.at}
    if event.cause is not None:
        sets["cause"] = event.cause
    seq = 0
    if event.kind == "escalated":
        sets["escalated"] = event.at
    elif event.kind == "repeat":
        seq = sets["repeats"] = 1
    return Decision(CLAIMED, claim=True, opens=True, seq=seq, sets=sets, supersedes=supersedes)


def _within(event: OutboxEvent, episode: Episode) -> Decision:
    kind, at = event.kind, event.at
    history: dict[str, Any] = {}
    if episode.cause is None and event.cause is not None:
        history["cause"] = event.cause  # whoever knows a cause first completes the history
    if not episode.open:
        reason = DUPLICATE if kind == "resolved" else LATE
        return Decision(reason, claim=False, episode=episode, sets=history)
    if kind == "resolved":
        return Decision(CLAIMED, True, episode, sets={**history, "resolved": at})
    if kind == "escalated" and episode.escalated is None:
        sets = {**history, "escalated": at, "last_notified": at}
        return Decision(CLAIMED, True, episode, sets=sets)
    if kind == "cause" and episode.cause is None:  # the outbox key keeps it to one
        return Decision(CLAIMED, True, episode, sets=history)
    if kind == "repeat":
        last = episode.last_notified
        if last is not None and at - last < event.repeat_gap:
            return Decision(TOO_SOON, claim=False, episode=episode, sets=history)
        seq = episode.repeats + 1
        sets = {**history, "repeats": seq, "last_notified": at}
        return Decision(CLAIMED, True, episode, seq=seq, sets=sets)
    return Decision(DUPLICATE, claim=False, episode=episode, sets=history)


def resolved_body(body: Mapping[str, Any], at: float) -> dict[str, Any]:
    """The ``resolved`` event of an episode that a later one ended, from its last event."""
    return {
        **body,
        "status": "resolved",
        "kind": "resolved",
        "ends_at": datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z"),
    }
