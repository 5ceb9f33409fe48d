"""The episode and claim rules, pure: which of two replicas' events are sent, whatever order they
arrive in. The backends run the same rules (tests/database/test_store.py)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.alerting.rules import AlertEvent, AlertKey, AlertState, Context, fingerprint
from monitor.database.claims import (
    CLAIMED,
    DUPLICATE,
    LATE,
    NOTHING_OPEN,
    TOO_SOON,
    Episode,
    OutboxEvent,
    decide,
    resolved_body,
)
from tests.conftest import T0

FP = "f00d"


def event(
    kind: str,
    at: float,
    *,
    starts: float = 0.0,
    origin: float | None = None,
    cause: str | None = None,
    gap: float = 0.0,
) -> OutboxEvent:
    body: dict[str, Any] = {"kind": kind, "status": "resolved" if kind == "resolved" else "firing"}
    if cause is not None:
        body["cause"] = {"message": cause}
    return OutboxEvent(FP, "IntegrationFailing", "acme", 7, kind, at, starts, origin, body, gap)


class Memory:
    """The backends' application of a decision, in memory (the reference they follow)."""

    def __init__(self) -> None:
        self.episodes: list[Episode] = []
        self.sent: list[tuple[int, str, int]] = []  # (episode, kind, seq)
        self.reasons: list[str] = []

    def offer(self, e: OutboxEvent) -> bool:
        decision = decide(e, list(reversed(self.episodes[-16:])))
        if decision.supersedes is not None:
            self._set(decision.supersedes.id, resolved=e.at)
            self._send(decision.supersedes.id, "resolved", 0)
        if decision.opens:
            sets = dict(decision.sets)
            episode_id = len(self.episodes) + 1
            self.episodes.append(
                Episode(
                    episode_id,
                    FP,
                    e.origin,
                    e.starts_at,
                    e.at,
                    escalated=sets.get("escalated"),
                    cause=sets.get("cause"),
                    last_notified=sets.get("last_notified"),
                    repeats=sets.get("repeats", 0),
                )
            )
        elif decision.episode is not None:
            episode_id = decision.episode.id
            self._set(episode_id, **decision.sets)
        else:
            self.reasons.append(decision.reason)
            return False
        claimed = decision.claim and self._send(episode_id, e.kind, decision.seq)
        self.reasons.append(decision.reason if claimed or not decision.claim else DUPLICATE)
        return claimed

    def _set(self, episode_id: int, **values: Any) -> None:
        self.episodes[episode_id - 1] = replace(self.episodes[episode_id - 1], **values)

    def _send(self, episode_id: int, kind: str, seq: int) -> bool:
        if (episode_id, kind, seq) in self.sent:
            return False  # the outbox's unique key
        self.sent.append((episode_id, kind, seq))
        return True


def test_two_replicas_of_one_episode_send_each_kind_once() -> None:
    memory = Memory()
    a = [event("fired", 100, starts=10, origin=10, cause="A's"), event("resolved", 900, starts=10)]
    b = [event("fired", 104, starts=10, origin=10, cause="B's"), event("resolved", 905, starts=10)]
    claimed = [memory.offer(e) for e in (a[0], b[0], a[1], b[1])]
    assert claimed == [True, False, True, False]
    assert memory.reasons == [CLAIMED, DUPLICATE, CLAIMED, DUPLICATE]
    assert memory.sent == [(1, "fired", 0), (1, "resolved", 0)]
    assert memory.episodes[0].cause == '{"message": "A\'s"}'  # the first one's details


def test_a_late_fired_after_the_resolve_is_not_a_new_episode() -> None:
    """Replica B polled later: its fired arrives after A's fired and resolved."""
    memory = Memory()
    assert memory.offer(event("fired", 100, starts=10, origin=10))
    assert memory.offer(event("resolved", 900, starts=10, origin=10))
    assert not memory.offer(event("fired", 950, starts=10, origin=10))
    assert not memory.offer(event("resolved", 990, starts=10, origin=10))
    assert memory.reasons[2:] == [LATE, DUPLICATE]
    assert len(memory.episodes) == 1


def test_without_an_origin_a_late_copy_is_told_by_its_start() -> None:
    """API unreachable has no API timestamp: B's condition began before A's episode ended, so
    B's fired is a late copy; a condition that begins after it is a new episode."""
    memory = Memory()
    assert memory.offer(event("fired", 300, starts=0))
    assert memory.offer(event("resolved", 600, starts=0))
    assert not memory.offer(event("fired", 310, starts=5))  # arrives late, began at 5 < 600
    assert memory.reasons[-1] == LATE
    assert memory.offer(event("fired", 1000, starts=700))  # began after the resolve
    assert [e.resolved for e in memory.episodes] == [600, None]


def test_a_flap_one_replica_missed_still_resolves_and_refires_once() -> None:
    """A sees the shop recover and fail again (a later started_failing_at); B polled in
    between neither time. B's stream goes on with the first episode's origin."""
    memory = Memory()
    assert memory.offer(event("fired", 100, starts=10, origin=10))  # A
    assert not memory.offer(event("fired", 104, starts=10, origin=10))  # B
    assert memory.offer(event("resolved", 500, starts=10, origin=10))  # A: recovered
    assert memory.offer(event("fired", 500, starts=450, origin=450))  # A: failing again
    assert not memory.offer(event("escalated", 520, starts=10, origin=10))  # B, old episode
    assert memory.reasons[-1] == LATE
    assert memory.offer(event("escalated", 540, starts=450, origin=450))  # A: the new one
    assert not memory.offer(event("resolved", 900, starts=10, origin=10))  # B: old, done
    assert memory.offer(event("resolved", 904, starts=450, origin=450))  # A
    assert memory.sent == [
        (1, "fired", 0),
        (1, "resolved", 0),
        (2, "fired", 0),
        (2, "escalated", 0),
        (2, "resolved", 0),
    ]


def test_a_newer_episode_ends_the_open_one_even_if_its_replica_never_saw_it() -> None:
    """B (just started) fires the new episode; A, which fired the old one, is gone: the old
    episode's resolved is sent once, from the new fired's time."""
    memory = Memory()
    assert memory.offer(event("fired", 100, starts=10, origin=10))
    assert memory.offer(event("fired", 700, starts=650, origin=650))
    assert memory.sent == [(1, "fired", 0), (1, "resolved", 0), (2, "fired", 0)]
    assert memory.episodes[0].resolved == 700
    assert not memory.offer(event("resolved", 705, starts=10, origin=10))  # A after all
    assert memory.reasons[-1] == DUPLICATE


def test_an_earlier_origin_is_a_correction_of_the_open_episode() -> None:
    memory = Memory()
    assert memory.offer(event("fired", 100, starts=10, origin=10))
    assert not memory.offer(event("fired", 160, starts=8, origin=8))  # the API said 8 after all
    assert memory.offer(event("resolved", 900, starts=8, origin=8))
    assert len(memory.episodes) == 1
    assert memory.episodes[0].resolved == 900


def test_a_resolved_with_nothing_open_is_dropped() -> None:
    memory = Memory()
    assert not memory.offer(event("resolved", 100))
    assert memory.reasons == [NOTHING_OPEN]
    assert memory.episodes == []


def test_an_episode_the_store_never_saw_fire_opens_with_the_first_firing_event() -> None:
    """The fired went out while the database was away and was never replayed: the next
    escalation opens the episode and is sent as what it is."""
    memory = Memory()
    assert memory.offer(event("escalated", 4000, starts=10, origin=10))
    assert memory.sent == [(1, "escalated", 0)]
    assert memory.episodes[0].escalated == 4000
    assert not memory.offer(event("fired", 4004, starts=10, origin=10))
    assert not memory.offer(event("escalated", 4004, starts=10, origin=10))


def test_repeats_are_sent_once_per_gap_whoever_sends_them() -> None:
    gap = 1800.0  # half a 1 h repeat interval
    memory = Memory()
    assert memory.offer(event("fired", 0, starts=0, origin=0, gap=gap))
    assert not memory.offer(event("fired", 30, starts=0, origin=0, gap=gap))
    sent = [
        memory.offer(event("repeat", at, starts=0, origin=0, gap=gap))
        for at in (3600, 3630, 7200, 7230, 10800, 10830)
    ]
    assert sent == [True, False, True, False, True, False]
    assert TOO_SOON in memory.reasons
    assert [s for s in memory.sent if s[1] == "repeat"] == [
        (1, "repeat", 1),
        (1, "repeat", 2),
        (1, "repeat", 3),
    ]


def test_a_cause_is_sent_once_and_a_late_one_completes_the_history() -> None:
    memory = Memory()
    assert memory.offer(event("fired", 0, starts=0, origin=0))
    assert memory.offer(event("cause", 60, starts=0, origin=0, cause="A found"))
    assert not memory.offer(event("cause", 65, starts=0, origin=0, cause="B found"))
    assert memory.episodes[0].cause == '{"message": "A found"}'
    memory2 = Memory()
    assert memory2.offer(event("fired", 0, starts=0, origin=0))
    assert memory2.offer(event("resolved", 50, starts=0, origin=0))
    assert not memory2.offer(event("cause", 60, starts=0, origin=0, cause="late"))
    assert memory2.episodes[0].cause == '{"message": "late"}'


def test_the_outbox_event_carries_the_alerts_own_episode_identity() -> None:
    key = AlertKey("IntegrationFailing", "acme", 7)
    origin = T0 - timedelta(hours=1)
    state = AlertState(
        key, since=origin, firing_since=T0, context=Context(shop_name="Shop"), episode=origin
    )
    e = OutboxEvent.from_alert(
        AlertEvent(state, "firing", "fired", T0), {"cause": {"code": 500}}, repeat_gap=60
    )
    assert (e.fingerprint, e.alert, e.account, e.integration_id) == (
        fingerprint(key),
        "IntegrationFailing",
        "acme",
        7,
    )
    assert (e.kind, e.at, e.starts_at, e.origin) == (
        "fired",
        T0.timestamp(),
        origin.timestamp(),
        origin.timestamp(),
    )
    assert e.cause == '{"code": 500}'
    account_alert = AlertState(AlertKey("SendcloudAPIUnreachable", "acme"), since=T0)
    unreachable = OutboxEvent.from_alert(AlertEvent(account_alert, "firing", "fired", T0), {})
    assert unreachable.origin is None


def test_a_superseded_episodes_resolved_says_so() -> None:
    body = resolved_body({"alert": "IntegrationFailing", "status": "firing", "kind": "fired"}, 0)
    assert body == {
        "alert": "IntegrationFailing",
        "status": "resolved",
        "kind": "resolved",
        "ends_at": "1970-01-01T00:00:00Z",
    }


def replica_stream(
    episodes: list[tuple[float, float]], delay: float, origin: bool, cause: str
) -> list[OutboxEvent]:
    """What one replica sends for the alert's episodes (start, end), seeing each ``delay``
    seconds after it happened."""
    stream = []
    for start, end in episodes:
        stamp = start if origin else None
        starts = start if origin else start + delay  # without an origin: its first sight
        stream.append(event("fired", start + delay, starts=starts, origin=stamp, cause=cause))
        stream.append(event("resolved", end + delay, starts=starts, origin=stamp))
    return stream


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.tuples(st.integers(60, 600), st.integers(60, 600)), min_size=1, max_size=4),
    delays=st.tuples(st.integers(0, 30), st.integers(0, 30)),
    jitter=st.lists(st.floats(0, 5), min_size=32, max_size=32),
    origin=st.booleans(),
)
def test_two_replicas_events_in_any_arrival_order_send_each_episode_once(
    gaps: list[tuple[int, int]], delays: tuple[int, int], jitter: list[float], origin: bool
) -> None:
    """Both replicas see the same episodes, each some seconds late and with its own cause;
    their events arrive in time order give or take a few seconds (each replica's own in its
    order). Every episode is sent as one fired and one resolved, and ends."""
    episodes, t = [], 1000.0
    for quiet, length in gaps:
        start = t + quiet + 60  # episodes of one alert lie more than a poll apart
        episodes.append((start, start + length))
        t = start + length
    arrivals = []
    for replica, (delay, cause) in enumerate(zip(delays, "AB", strict=True)):
        for n, e in enumerate(replica_stream(episodes, delay, origin, cause)):
            arrivals.append((e.at + jitter[replica * 16 + n], replica, n, e))
    arrivals.sort(key=lambda a: (a[1], a[2]))  # each replica's own order ...
    for replica in (0, 1):  # ... whatever the jitter: a replica writes in order
        mine = [a for a in arrivals if a[1] == replica]
        for before, after in itertools.pairwise(mine):
            if after[0] < before[0]:
                arrivals[arrivals.index(after)] = (before[0], *after[1:])
    memory = Memory()
    for *_, e in sorted(arrivals, key=lambda a: (a[0], a[1], a[2])):
        memory.offer(e)
    kinds = sorted(kind for _, kind, _ in memory.sent)
    assert kinds == sorted(["fired", "resolved"] * len(episodes)), memory.reasons
    assert all(e.resolved is not None for e in memory.episodes)
    assert len(memory.episodes) == len(episodes)


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="active"):
        event("active", 0)
