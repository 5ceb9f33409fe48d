"""The store's interface, the same tests on both backends: SQLite (a file) and PostgreSQL (a real
server of the tests' own). What only a shared database does — concurrent writers and claims from
two replicas — runs on PostgreSQL with two stores (two pools) on one database."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from monitor.database.backend import Backend, Batch, Transition
from monitor.database.claims import CLAIMED, DUPLICATE, OutboxEvent
from monitor.database.fleet import FleetAccount, FleetIntegration, FleetUpdate, Replica, changes
from monitor.database.postgres import PostgresBackend
from monitor.database.schema import SCHEMA_VERSION
from monitor.notify.quiet import Mute
from tests.conftest import T0

NOW = T0.timestamp()


def tr(integration_id: int, state: str, at: float, account: str = "acme") -> Transition:
    return Transition(account, integration_id, state, at)


def alert(kind: str, at: float, *, origin: float | None = 100.0, fp: str = "fp1") -> OutboxEvent:
    body = {"alert": "IntegrationFailing", "kind": kind, "fingerprint": fp, "at": at}
    return OutboxEvent(fp, "IntegrationFailing", "acme", 7, kind, at, 100.0, origin, body)


async def test_a_fresh_store_is_migrated_to_the_current_version(backend: Backend) -> None:
    assert await backend.schema_version() == SCHEMA_VERSION
    assert await backend.open_intervals() == {}


async def test_transitions_make_intervals_and_are_idempotent(backend: Backend) -> None:
    await backend.write(Batch(NOW, [tr(1, "healthy", NOW), tr(2, "healthy", NOW)]))
    await backend.write(Batch(NOW + 60, [tr(1, "failing", NOW + 60)]))
    # the same transition again (a second replica), and an older observation after a newer one
    await backend.write(Batch(NOW + 65, [tr(1, "failing", NOW + 65), tr(1, "healthy", NOW + 30)]))
    spans = await backend.account_spans("acme", NOW - 10, NOW + 1000)
    assert spans == {
        1: [("healthy", NOW, NOW + 60), ("failing", NOW + 60, None)],
        2: [("healthy", NOW, None)],
    }
    assert await backend.intervals("acme", 1, NOW + 61, NOW + 70) == [("failing", NOW + 60, None)]
    assert await backend.open_intervals() == {"acme": {1: "failing", 2: "healthy"}}
    assert await backend.open_intervals(["other"]) == {}


async def test_two_transitions_of_one_integration_in_one_batch_apply_in_order(
    backend: Backend,
) -> None:
    batch = [tr(1, "healthy", NOW), tr(1, "failing", NOW + 60), tr(1, "healthy", NOW + 120)]
    await backend.write(Batch(NOW + 120, batch))
    assert (await backend.account_spans("acme", NOW, NOW + 200))[1] == [
        ("healthy", NOW, NOW + 60),
        ("failing", NOW + 60, NOW + 120),
        ("healthy", NOW + 120, None),
    ]


async def test_ended_and_forgotten_integrations_close_their_intervals(backend: Backend) -> None:
    await backend.write(
        Batch(NOW, [tr(1, "healthy", NOW), tr(2, "failing", NOW), tr(3, "stale", NOW, "other")])
    )
    await backend.write(Batch(NOW + 60, ended=[("acme", 2, NOW + 60)]))
    await backend.write(Batch(NOW + 90, forgotten=[("other", NOW + 90)]))
    assert await backend.open_intervals() == {"acme": {1: "healthy"}}
    assert (await backend.account_spans("acme", NOW, NOW + 100))[2] == [("failing", NOW, NOW + 60)]
    assert await backend.account_spans("other", NOW, NOW + 100) == {3: [("stale", NOW, NOW + 90)]}


async def test_names_and_stream_positions_are_kept(backend: Backend) -> None:
    later = (T0 + timedelta(microseconds=5)).isoformat()
    await backend.write(
        Batch(
            NOW,
            names=[("acme", 1, "Shop", "shopify"), ("acme", 2, None, None)],
            positions=[("acme", 40, T0.isoformat())],
        )
    )
    await backend.write(
        Batch(NOW, names=[("acme", 1, "Shop renamed", "shopify")], positions=[("acme", 41, later)])
    )
    assert await backend.names("acme") == {1: ("Shop renamed", "shopify"), 2: (None, None)}
    assert await backend.stream_positions() == {"acme": (41, T0 + timedelta(microseconds=5))}


async def test_stream_positions_never_move_back_on_postgresql(postgres_url: str) -> None:
    """Two replicas read the same stream: the one that lags must not undo the other."""
    store = PostgresBackend(postgres_url)
    await store.open()
    try:
        ahead = (T0 + timedelta(seconds=5)).isoformat()
        await store.write(Batch(NOW, positions=[("acme", 50, ahead)]))
        await store.write(Batch(NOW, positions=[("acme", 45, T0.isoformat())]))
        assert await store.stream_positions() == {"acme": (50, T0 + timedelta(seconds=5))}
    finally:
        await store.close()


async def test_mutes_are_added_read_and_ended(backend: Backend) -> None:
    mute = Mute(
        id="m1",
        account="acme",
        until=T0 + timedelta(hours=2),
        reason="maintenance",
        author="ops@example.com",
        created=T0,
        integration_type="shopify",
    )
    await backend.add_mute(mute)
    assert await backend.active_mutes(T0 + timedelta(hours=1)) == [mute]
    assert await backend.active_mutes(T0 + timedelta(hours=3)) == []
    assert await backend.end_mute("m1", T0 + timedelta(minutes=30))
    assert not await backend.end_mute("m1", T0 + timedelta(minutes=40))  # ended already
    assert await backend.active_mutes(T0 + timedelta(minutes=31)) == []


async def test_claimed_events_go_through_the_outbox_once(backend: Backend) -> None:
    claims = await backend.claim(
        [alert("fired", NOW), alert("fired", NOW + 4)], producer="replica-a"
    )
    assert [(c.claimed, c.reason) for c in claims] == [(True, CLAIMED), (False, DUPLICATE)]
    assert claims[0].episode_id == claims[1].episode_id
    taken = await backend.take("notifier-1", NOW + 5)
    assert [(i.kind, i.fingerprint, i.producer, i.attempts) for i in taken] == [
        ("fired", "fp1", "replica-a", 1)
    ]
    assert taken[0].body["at"] == NOW  # the first one's details
    assert await backend.take("notifier-1", NOW + 6) == []  # not twice to the same holder
    # the holder died before marking it: the next notifier takes it again, and can tell
    again = await backend.take("notifier-2", NOW + 40)
    assert [(i.id, i.attempts) for i in again] == [(taken[0].id, 2)]
    assert await backend.mark_sent([taken[0].id], "notifier-2", NOW + 41) == 1
    assert await backend.mark_sent([taken[0].id], "notifier-1", NOW + 42) == 0
    assert await backend.take("notifier-3", NOW + 50) == []


async def test_claims_are_the_histories_episodes(backend: Backend) -> None:
    cause = {"code": 503, "message": "shop down"}
    fired = alert("fired", NOW)
    with_cause = OutboxEvent(
        "fp1", fired.alert, "acme", 7, "cause", NOW + 30, 100.0, 100.0, {"cause": cause}
    )
    await backend.claim(
        [fired, with_cause, alert("escalated", NOW + 3600), alert("resolved", NOW + 4000)],
        producer="a",
    )
    assert await backend.episodes("acme", 7, NOW - 10, NOW + 5000) == [
        {
            "alert": "IntegrationFailing",
            "integration_id": 7,
            "fired": "2026-11-27T12:00:00Z",
            "escalated": "2026-11-27T13:00:00Z",
            "resolved": "2026-11-27T13:06:40Z",
            "cause": cause,
        }
    ]
    assert await backend.episodes("acme", 8, NOW - 10, NOW + 5000) == []
    assert [i.kind for i in await backend.take("n", NOW)] == [
        "fired",
        "cause",
        "escalated",
        "resolved",
    ]


async def test_events_sent_while_the_database_was_away_are_stored_as_sent(
    backend: Backend,
) -> None:
    claims = await backend.claim([alert("fired", NOW)], producer="a", delivered=True)
    assert claims[0].claimed
    assert await backend.take("n", NOW) == []
    # the other replica's copy, replayed too: a duplicate, counted by its producer
    again = await backend.claim([alert("fired", NOW + 3)], producer="b", delivered=True)
    assert (again[0].claimed, again[0].reason) == (False, DUPLICATE)


async def test_a_newer_episode_sends_the_old_ones_resolved(backend: Backend) -> None:
    await backend.claim([alert("fired", NOW, origin=100.0)], producer="a")
    await backend.claim([alert("fired", NOW + 600, origin=500.0)], producer="b")
    taken = await backend.take("n", NOW + 601)
    assert [(i.kind, i.body["kind"], i.body.get("ends_at")) for i in taken] == [
        ("fired", "fired", None),
        ("resolved", "resolved", "2026-11-27T12:10:00Z"),
        ("fired", "fired", None),
    ]
    assert taken[0].episode_id == taken[1].episode_id != taken[2].episode_id


async def test_the_fleet_state_is_written_and_read(backend: Backend) -> None:
    account = FleetAccount("acme", "replica-a", NOW, 60.0, shard=0, shards=2)
    rows = {
        1: FleetIntegration(
            "acme", 1, "healthy", "Shop", None, "shopify", None, NOW - 50, None, NOW
        ),
        2: FleetIntegration("acme", 2, "failing", None, None, None, NOW - 900, NOW - 50, None, NOW),
    }
    changed, gone = changes({}, rows)
    await backend.publish([FleetUpdate(account, changed, gone)])
    await backend.claim([alert("fired", NOW)], producer="replica-a")
    fleet = await backend.fleet()
    assert fleet.accounts == {"acme": account}
    assert fleet.integrations == {("acme", 1): rows[1], ("acme", 2): rows[2]}
    assert [(f.alert, f.account, f.integration_id, f.fired) for f in fleet.firing] == [
        ("IntegrationFailing", "acme", 7, NOW)
    ]
    # a later poll: one integration gone, the other's fetch time moved a little (not written)
    later = {1: FleetIntegration("acme", 1, "healthy", "Shop", None, "shopify", None, NOW + 10)}
    changed, gone = changes(rows, later)
    assert (changed, gone) == ([], [2])
    account = FleetAccount("acme", "replica-b", NOW + 60, 60.0, shard=0, shards=2)
    await backend.publish([FleetUpdate(account, changed, gone)])
    fleet = await backend.fleet()
    assert fleet.accounts["acme"].replica == "replica-b"
    assert set(fleet.integrations) == {("acme", 1)}


async def test_replicas_register_and_beat(backend: Backend) -> None:
    replica = Replica("pod-0", "pod-0.example", "1.0.0", NOW, NOW, shard=0, shards=2)
    await backend.register(replica)
    await backend.heartbeat("pod-0", NOW + 30)
    assert await backend.replicas() == [
        Replica("pod-0", "pod-0.example", "1.0.0", NOW, NOW + 30, shard=0, shards=2)
    ]


async def test_pruning_drops_what_is_past_the_horizon(backend: Backend) -> None:
    await backend.write(Batch(NOW, [tr(1, "healthy", NOW - 1000), tr(1, "failing", NOW)]))
    await backend.claim([alert("fired", NOW - 900), alert("resolved", NOW - 800)], producer="a")
    await backend.prune(NOW + 1)  # the healthy interval ended at NOW, the episode before
    assert (await backend.account_spans("acme", 0, NOW + 10))[1] == [("failing", NOW, None)]
    assert await backend.episodes("acme", 7, 0, NOW + 10) == []
    assert await backend.take("n", NOW) == []


# -- two replicas on one PostgreSQL --------------------------------------------------------------


@pytest.fixture
async def two_stores(postgres_url: str) -> list[PostgresBackend]:
    stores = [PostgresBackend(postgres_url), PostgresBackend(postgres_url)]
    for store in stores:
        await store.open()
    yield stores  # type: ignore[misc]
    for store in stores:
        await store.close()


async def test_two_replicas_claiming_the_same_events_at_once_send_each_once(
    two_stores: list[PostgresBackend],
) -> None:
    a, b = two_stores
    fingerprints = [f"fp{n}" for n in range(20)]
    batch_a = [alert("fired", NOW, fp=fp) for fp in fingerprints]
    batch_b = [alert("fired", NOW + 2, fp=fp) for fp in reversed(fingerprints)]
    claims_a, claims_b = await asyncio.gather(
        a.claim(batch_a, producer="a"), b.claim(batch_b, producer="b")
    )
    claimed = [c.event.fingerprint for c in claims_a + claims_b if c.claimed]
    assert sorted(claimed) == sorted(fingerprints)
    assert len(await a.take("n", NOW + 3, limit=100)) == 20
    fleet = await a.fleet()
    assert len(fleet.firing) == 20


async def test_two_replicas_writing_the_same_transitions_at_once_keep_one_history(
    two_stores: list[PostgresBackend],
) -> None:
    a, b = two_stores
    first = [tr(i, "healthy", NOW) for i in range(200)]
    await asyncio.gather(a.write(Batch(NOW, first)), b.write(Batch(NOW, first)))
    changed_a = [tr(i, "failing", NOW + 60) for i in range(0, 200, 2)]
    changed_b = [tr(i, "failing", NOW + 62) for i in range(0, 200, 2)]
    await asyncio.gather(a.write(Batch(NOW + 60, changed_a)), b.write(Batch(NOW + 62, changed_b)))
    spans = await a.account_spans("acme", NOW - 1, NOW + 100)
    assert len(spans) == 200
    for integration_id, found in spans.items():
        if integration_id % 2:
            assert found == [("healthy", NOW, None)]
        else:
            assert len(found) == 2
            assert found[0][0] == "healthy"
            assert found[1][0] == "failing"
            assert found[1][2] is None
            assert found[0][2] == found[1][1] in (NOW + 60, NOW + 62)


def reopened(backend: Backend) -> Backend:
    """The same store as a restarted process opens it."""
    if isinstance(backend, PostgresBackend):
        return PostgresBackend(backend.url)
    from monitor.database.sqlite import SqliteBackend

    assert isinstance(backend, SqliteBackend)
    return SqliteBackend(backend.path)


async def test_a_restarted_process_goes_on_where_the_store_stands(backend: Backend) -> None:
    """Open intervals, open episodes and unsent events outlive the process that wrote them: its
    successor's repeated fired is the same episode, its resolve ends it, and what was never
    marked sent is still there to send."""
    await backend.write(Batch(NOW, [tr(1, "failing", NOW)]))
    await backend.claim([alert("fired", NOW)], producer="a")
    [taken] = await backend.take("notifier-a", NOW + 1)
    await backend.close()
    store = reopened(backend)
    await store.open()
    try:
        assert await store.open_intervals() == {"acme": {1: "failing"}}
        claims = await store.claim([alert("fired", NOW + 70)], producer="a")
        assert (claims[0].claimed, claims[0].reason) == (False, DUPLICATE)
        [again] = await store.take("notifier-b", NOW + 80)
        assert (again.id, again.attempts) == (taken.id, 2)  # maybe sent before: it can tell
        await store.write(Batch(NOW + 120, [tr(1, "healthy", NOW + 120)]))
        assert [
            c.claimed for c in await store.claim([alert("resolved", NOW + 120)], producer="a")
        ] == [True]
        assert await store.open_intervals() == {"acme": {1: "healthy"}}
        [episode] = await store.episodes("acme", 7, NOW - 1, NOW + 200)
        assert episode["resolved"] == "2026-11-27T12:02:00Z"
    finally:
        await store.close()
