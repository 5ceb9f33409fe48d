"""The one versioned schema: a fresh store, a history file of an earlier version migrated forward
with everything in it, a newer schema refused, and replicas migrating one database at once."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from monitor.database.errors import SchemaError
from monitor.database.postgres import PostgresBackend
from monitor.database.schema import (
    POSTGRES_MIGRATIONS,
    SCHEMA_VERSION,
    SQLITE_MIGRATIONS,
    statements,
)
from monitor.database.sqlite import SqliteBackend
from monitor.health import derive
from monitor.history import HistoryStore, MuteStore
from monitor.history import store as history_store
from monitor.sendcloud import parse_integration
from monitor.store import AccountSnapshot, Observation, ReadOutcome
from tests.conftest import T0


def test_the_sqlite_steps_are_the_history_files_own() -> None:
    """Versions 1 to 4 are the history file as the daemon writes it today, byte for byte, so
    every file it made migrates forward."""
    assert SQLITE_MIGRATIONS[: len(history_store.MIGRATIONS)] == history_store.MIGRATIONS


def test_both_engines_have_the_same_tables_at_every_version() -> None:
    def tables(script: str) -> list[str]:
        return [
            s.split()[2]
            for s in statements(script)
            if s.upper().lstrip("-\n ").startswith("CREATE TABLE")
        ]

    assert len(SQLITE_MIGRATIONS) == len(POSTGRES_MIGRATIONS) == SCHEMA_VERSION
    for sqlite_step, postgres_step in zip(SQLITE_MIGRATIONS, POSTGRES_MIGRATIONS, strict=True):
        assert tables(sqlite_step) == tables(postgres_step)


def snapshot(at: datetime, state: str) -> AccountSnapshot:
    fields: dict[str, object] = {"id": 1, "shop_name": "Shop", "last_fetched_at": at.isoformat()}
    if state == "failing":
        fields["started_failing_at"] = (at - timedelta(minutes=1)).isoformat()
    record, _ = parse_integration(fields)
    observation = Observation(1, ReadOutcome.OK, record, derive(record, at, 7200))
    return AccountSnapshot("acme", {1: observation}, 1, at)


def today_file(path: Path) -> None:
    """A history file as today's daemon leaves it: intervals, an episode, names, a mute and a
    stream position (the schema version of monitor/history/store.py)."""
    history = HistoryStore(path, clock=lambda: T0)
    history.start()
    history.record(snapshot(T0, "healthy"), T0)
    history.record(snapshot(T0 + timedelta(minutes=5), "failing"), T0 + timedelta(minutes=5))
    fired = {
        "fingerprint": "abc",
        "kind": "fired",
        "alert": "IntegrationFailing",
        "account": "acme",
        "integration_id": 1,
        "cause": {"code": 500},
    }
    history.episode(fired, T0 + timedelta(minutes=20))
    history.stream_position("acme", 41, T0)
    assert history.flush()
    history.close(T0 + timedelta(minutes=30))
    MuteStore(path).add(
        account="acme",
        until=T0 + timedelta(days=1),
        reason="planned",
        author="ops",
        now=T0,
    )
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(history_store.MIGRATIONS)


async def test_a_history_file_of_today_migrates_forward_with_everything_in_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "history.sqlite"
    today_file(path)
    store = SqliteBackend(path)
    await store.open()
    try:
        assert await store.schema_version() == SCHEMA_VERSION
        # the failing interval begins when Sendcloud says the failure began (a minute before
        # the poll at minute 5 saw it)
        start, changed, end = (T0 + timedelta(minutes=m) for m in (0, 4, 30))
        assert await store.account_spans("acme", 0, end.timestamp() + 1) == {
            1: [
                ("healthy", start.timestamp(), changed.timestamp()),
                ("failing", changed.timestamp(), end.timestamp()),
            ]
        }
        assert await store.names("acme") == {1: ("Shop", None)}
        assert await store.stream_positions() == {"acme": (41, T0)}
        [mute] = await store.active_mutes(T0 + timedelta(hours=1))
        assert (mute.account, mute.reason, mute.author) == ("acme", "planned", "ops")
        [episode] = await store.episodes("acme", 1, 0, end.timestamp() + 1)
        assert episode["fired"] == "2026-11-27T12:20:00Z"
        assert episode["cause"] == {"code": 500}
        # its open episode goes on: a second fired is the same episode, its resolve resolves it
        from monitor.database.claims import OutboxEvent

        def event(kind: str, minutes: int) -> OutboxEvent:
            at = (T0 + timedelta(minutes=minutes)).timestamp()
            return OutboxEvent(
                "abc", "IntegrationFailing", "acme", 1, kind, at, T0.timestamp(), None, {}
            )

        claims = await store.claim([event("fired", 40), event("resolved", 50)], producer="a")
        assert [c.claimed for c in claims] == [False, True]
        [episode] = await store.episodes("acme", 1, 0, end.timestamp() + 3600)
        assert episode["resolved"] == "2026-11-27T12:50:00Z"
    finally:
        await store.close()


async def test_a_newer_history_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    store = SqliteBackend(path)
    with pytest.raises(SchemaError, match="newer than this monitor"):
        await store.open()
    await store.close()


async def test_a_newer_database_is_refused(postgres_url: str) -> None:
    store = PostgresBackend(postgres_url)
    await store.open()
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION + 1,)
        )
    await store.close()
    again = PostgresBackend(postgres_url)
    with pytest.raises(SchemaError, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
        await again.open()
    await again.close()


async def test_replicas_starting_together_migrate_once(postgres_url: str) -> None:
    """Four replicas open one empty database at the same moment: each waits for the
    migration lock, one migrates, all start."""
    stores = [PostgresBackend(postgres_url) for _ in range(4)]
    try:
        await asyncio.gather(*(store.open() for store in stores))
        assert [await store.schema_version() for store in stores] == [SCHEMA_VERSION] * 4
        async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
            cursor = await conn.execute("SELECT version FROM schema_version ORDER BY version")
            assert [row[0] for row in await cursor.fetchall()] == list(range(1, SCHEMA_VERSION + 1))
    finally:
        await asyncio.gather(*(store.close() for store in stores))


async def test_a_half_done_migration_leaves_nothing_behind(postgres_url: str) -> None:
    """A migration runs in one transaction: a failure in a later step undoes the earlier."""
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE replicas (taken integer)")  # step 4 will collide
    store = PostgresBackend(postgres_url)
    with pytest.raises(Exception, match="replicas"):
        await store.open()
    await store.close()
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name IN "
            "('intervals', 'schema_version', 'mutes')"
        )
        assert (await cursor.fetchone()) == (0,)
