"""Mutes in the history file: shared by the CLI and the daemon's writer, migrated from schema 1,
surviving restarts, and never lost to a file that cannot be read."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from monitor.history import HistoryError, HistoryStore, MuteStore
from monitor.history.mutes import QuietSource
from monitor.history.store import MIGRATIONS, SCHEMA_VERSION
from monitor.store import AccountSnapshot
from tests.conftest import T0, LogCapture, captured_logs

__all__ = ["captured_logs"]


def test_mutes_survive_a_new_store_and_end_when_removed_or_expired(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    first = MuteStore(path)
    mute = first.add(
        account="acme-nl",
        integration_id=7,
        until=T0 + timedelta(hours=2),
        reason="re-keying",
        author="alice",
        now=T0,
    )
    other = first.add(
        account="acme-nl",
        integration_type="shopify",
        until=T0 + timedelta(hours=1),
        reason="Shopify incident",
        author="bob",
        now=T0,
    )
    again = MuteStore(path)  # a restart, or the CLI beside the daemon
    assert [m.id for m in again.active(T0)] == [mute.id, other.id]
    assert [m.id for m in again.active(T0 + timedelta(minutes=90))] == [mute.id]
    assert again.active(T0)[0] == mute
    ended = again.remove(mute.id, T0 + timedelta(minutes=10))
    assert ended == mute
    assert again.remove(mute.id, T0 + timedelta(minutes=11)) is None
    assert [m.id for m in first.active(T0 + timedelta(minutes=10))] == [other.id]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"until": T0}, "in the future"),
        ({"until": T0 + timedelta(days=40)}, "at most 31 days"),
        ({"reason": "  "}, "needs a reason"),
        ({"integration_type": "shopify"}, "not both"),
    ],
)
def test_a_mute_must_end_have_a_reason_and_one_target(
    tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    fields: dict[str, object] = {
        "account": "a",
        "integration_id": 1,
        "until": T0 + timedelta(hours=1),
        "reason": "why",
        "author": "me",
        "now": T0,
    }
    with pytest.raises(ValueError, match=message):
        MuteStore(tmp_path / "h.db").add(**{**fields, **changes})  # type: ignore[arg-type]
    assert not (tmp_path / "h.db").exists()


def test_the_cli_and_the_daemons_writer_share_the_file_and_its_migration(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    with sqlite3.connect(path) as db:  # a file of the previous version: no mutes table
        db.executescript(MIGRATIONS[0] + "PRAGMA user_version = 1;")
    assert MuteStore(path).active(T0) == []  # read-only: nothing to migrate for that
    writer = HistoryStore(path, clock=lambda: T0)
    writer.start()
    try:
        writer.record(AccountSnapshot("acme-nl", {}, 1, T0), T0)
        mute = MuteStore(path).add(
            account="acme-nl", until=T0 + timedelta(hours=1), reason="why", author="me", now=T0
        )
        writer.record(AccountSnapshot("acme-nl", {}, 2, T0), T0 + timedelta(seconds=5))
        assert writer.flush(timeout=10)
        assert writer.up
    finally:
        writer.close(T0 + timedelta(seconds=6))
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert [m.id for m in MuteStore(path).active(T0)] == [mute.id]


def test_an_unreadable_file_keeps_the_last_mutes_known(
    tmp_path: Path, captured_logs: LogCapture
) -> None:
    path = tmp_path / "history.db"
    store = MuteStore(path)
    store.add(account="a", until=T0 + timedelta(hours=1), reason="why", author="me", now=T0)
    ticks = iter(range(100))
    source = QuietSource(store, (), lambda: T0, monotonic=lambda: float(next(ticks)) * 2)
    assert len(source().mutes) == 1
    for extra in path.parent.glob("history.db*"):
        extra.unlink()
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(HistoryError):
        store.active(T0)
    assert len(source().mutes) == 1  # kept, not forgotten
    assert len(source().mutes) == 1
    [warning] = captured_logs.events("mutes_unreadable")
    assert warning["kept"] == 1
    assert "not a database" in warning["error"]


def test_without_a_history_file_mutes_live_in_memory() -> None:
    store = MuteStore(None)
    mute = store.add(account="a", until=T0 + timedelta(hours=1), reason="x", author="me", now=T0)
    assert store.active(T0) == [mute]
    assert store.remove(mute.id, T0) == mute
    assert store.active(T0) == []


def test_mutes_that_ended_longer_than_the_retention_ago_are_pruned(tmp_path: Path) -> None:
    """The docstring promised it, the pruning forgot the table: ended mutes stayed forever."""
    path = tmp_path / "history.db"
    mutes = MuteStore(path)
    day = timedelta(days=1)
    old = mutes.add(account="a", until=T0 + timedelta(hours=1), reason="x", author="me", now=T0)
    recent = mutes.add(
        account="a", until=T0 + 2 * day + timedelta(hours=1), reason="y", author="me", now=T0
    )
    active = mutes.add(
        account="a", until=T0 + 3 * day + timedelta(hours=1), reason="z", author="me", now=T0
    )
    writer = HistoryStore(path, retention_days=1, clock=lambda: T0 + 3 * day)
    assert writer.claim() is None
    writer.start()
    writer.record(AccountSnapshot("a", {}, 1, T0 + 3 * day), T0 + 3 * day)  # the day's pruning
    writer.close(T0 + 3 * day)
    with sqlite3.connect(path) as db:
        kept = [row[0] for row in db.execute("SELECT id FROM mutes ORDER BY until")]
    assert old.id not in kept  # ended two days before, with a retention of one
    assert kept == [recent.id, active.id]  # ended within the retention, and in force
