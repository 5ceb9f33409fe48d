"""The store on SQLite: one process's history file, behind the same interface as PostgreSQL.

SQLite connections belong to one thread (a connection shared across threads let readers see
half-written transactions): every write runs on one writer thread with its own connection, and
each read on a worker thread with a read-only connection of its own, so the event loop never
waits for the disk. The file is the history file as it has always been (WAL, ``synchronous =
NORMAL``), migrated forward from any earlier version under SQLite's write lock.

The claim rules are the same as PostgreSQL's (:mod:`monitor.database.claims`): in one process
they keep a restarted alerter's repeated events from being sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from monitor.database.backend import (
    Backend,
    Batch,
    Claim,
    DatabaseError,
    FiringAlert,
    Fleet,
    Names,
    OutboxItem,
    Span,
    episode_document,
    mute_of,
    mute_row,
    outbox_item,
    rounds,
    spans_of,
)
from monitor.database.claims import (
    CLAIMED,
    DUPLICATE,
    EPISODES_CONSIDERED,
    Episode,
    OutboxEvent,
    decide,
    resolved_body,
)
from monitor.database.errors import SchemaError
from monitor.database.fleet import FleetAccount, FleetIntegration, FleetUpdate, Replica
from monitor.database.schema import migrate_sqlite
from monitor.notify.quiet import Mute

T = TypeVar("T")
TIMEOUT_SECONDS = 5.0
_EPISODE_COLUMNS = (
    "rowid, fingerprint, origin, starts_at, fired, escalated, resolved, cause, last_notified, "
    "repeats"
)
_SETTABLE = frozenset({"escalated", "resolved", "cause", "last_notified", "repeats"})


class SqliteBackend:
    """The store in one SQLite file (see :class:`monitor.database.Backend`)."""

    kind = "sqlite"

    def __init__(self, path: Path, *, timeout: float = TIMEOUT_SECONDS) -> None:
        self.path = path
        self.timeout = timeout
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite writer")
        self._db: sqlite3.Connection | None = None  # the writer thread's

    def __repr__(self) -> str:
        return f"SqliteBackend({str(self.path)!r})"

    # -- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        await self._write("opening the history", lambda db: None)

    async def close(self) -> None:
        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        with contextlib.suppress(RuntimeError):  # closed already
            await asyncio.get_running_loop().run_in_executor(self._writer, close)
        self._writer.shutdown(wait=False)

    async def schema_version(self) -> int:
        return await self._read(
            "reading the schema version",
            lambda db: int(db.execute("PRAGMA user_version").fetchone()[0]),
        )

    # -- threads ------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """The writer thread's connection, opened and migrated on first use."""
        if self._db is not None:
            return self._db
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(f"cannot create {self.path.parent}: {exc.strerror}") from None
        db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            migrate_sqlite(db)
        except BaseException:
            db.close()
            raise
        self._db = db
        return db

    async def _write(self, what: str, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work`` in one write transaction (BEGIN IMMEDIATE) on the writer thread."""

        def run() -> T:
            try:
                db = self._connection()
                db.execute("BEGIN IMMEDIATE")
                try:
                    result = work(db)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
                return result
            except SchemaError:
                raise
            except (sqlite3.Error, OSError) as exc:
                if self._db is not None:  # reopened at the next call
                    with contextlib.suppress(sqlite3.Error):
                        self._db.close()
                    self._db = None
                raise DatabaseError(f"{what}: {exc}") from None

        return await asyncio.get_running_loop().run_in_executor(self._writer, run)

    async def _read(self, what: str, work: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            with self._reader(what) as db:
                return work(db)

        return await asyncio.to_thread(run)

    @contextlib.contextmanager
    def _reader(self, what: str) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=self.timeout)
        except sqlite3.Error as exc:
            raise DatabaseError(f"{what}: {exc}") from None
        try:
            yield db
        except sqlite3.Error as exc:
            raise DatabaseError(f"{what}: {exc}") from None
        finally:
            db.close()

    # -- history ------------------------------------------------------------------------------

    async def write(self, batch: Batch) -> None:
        def work(db: sqlite3.Connection) -> None:
            for account, at in batch.forgotten:
                db.execute(
                    "UPDATE intervals SET until = max(since, ?) WHERE account = ? "
                    "AND until IS NULL",
                    (at, account),
                )
            db.executemany(
                "UPDATE intervals SET until = max(since, ?) WHERE account = ? "
                "AND integration_id = ? AND until IS NULL",
                [(at, a, i) for a, i, at in batch.ended],
            )
            for round_ in rounds(batch.transitions):
                db.executemany(
                    "UPDATE intervals SET until = ?4 WHERE account = ?1 AND integration_id = ?2 "
                    "AND until IS NULL AND state <> ?3 AND since < ?4",
                    round_,
                )
                db.executemany(
                    "INSERT INTO intervals SELECT ?1, ?2, ?3, ?4, NULL WHERE NOT EXISTS (SELECT 1 "
                    "FROM intervals WHERE account = ?1 AND integration_id = ?2 AND until IS NULL)",
                    round_,
                )
            db.executemany("INSERT OR REPLACE INTO integrations VALUES (?, ?, ?, ?)", batch.names)
            db.executemany(
                "INSERT OR REPLACE INTO stream_positions VALUES (?, ?, ?)", batch.positions
            )
            db.execute(
                "INSERT INTO meta VALUES ('last_write', ?) ON CONFLICT (key) "
                "DO UPDATE SET value = max(value, excluded.value)",
                (batch.at,),
            )

        await self._write("writing the history", work)

    async def open_intervals(
        self, accounts: Collection[str] | None = None
    ) -> dict[str, dict[int, str]]:
        def work(db: sqlite3.Connection) -> dict[str, dict[int, str]]:
            rows = db.execute(
                "SELECT account, integration_id, state FROM intervals WHERE until IS NULL"
            ).fetchall()
            found: dict[str, dict[int, str]] = {}
            for account, integration_id, state in rows:
                if accounts is None or account in accounts:
                    found.setdefault(account, {})[integration_id] = state
            return found

        return await self._read("reading open intervals", work)

    async def intervals(
        self, account: str, integration_id: int, since: float, until: float
    ) -> list[Span]:
        def work(db: sqlite3.Connection) -> list[Span]:
            return db.execute(
                "SELECT state, since, until FROM intervals WHERE account = ? AND "
                "integration_id = ? AND since < ? AND (until IS NULL OR until > ?) ORDER BY since",
                (account, integration_id, until, since),
            ).fetchall()

        return await self._read("reading the history", work)

    async def account_spans(
        self, account: str, since: float, until: float
    ) -> dict[int, list[Span]]:
        def work(db: sqlite3.Connection) -> dict[int, list[Span]]:
            return spans_of(
                db.execute(
                    "SELECT integration_id, state, since, until FROM intervals WHERE account = ? "
                    "AND since < ? AND (until IS NULL OR until > ?) "
                    "ORDER BY integration_id, since",
                    (account, until, since),
                )
            )

        return await self._read("reading the history", work)

    async def names(self, account: str) -> dict[int, Names]:
        def work(db: sqlite3.Connection) -> dict[int, Names]:
            rows = db.execute(
                "SELECT integration_id, shop_name, integration_type FROM integrations "
                "WHERE account = ?",
                (account,),
            )
            return {integration_id: (name, kind) for integration_id, name, kind in rows}

        return await self._read("reading the names", work)

    async def episodes(
        self, account: str, integration_id: int | None, since: float, until: float
    ) -> list[dict[str, Any]]:
        def work(db: sqlite3.Connection) -> list[dict[str, Any]]:
            query = (
                "SELECT alert, integration_id, fired, escalated, resolved, cause FROM episodes "
                "WHERE account = ? AND fired < ? AND (resolved IS NULL OR resolved > ?)"
            )
            args: list[Any] = [account, until, since]
            if integration_id is not None:
                query += " AND integration_id = ?"
                args.append(integration_id)
            rows = db.execute(query + " ORDER BY fired, rowid", args)
            return [episode_document(*row) for row in rows]

        return await self._read("reading episodes", work)

    async def last_write(self) -> float | None:
        def work(db: sqlite3.Connection) -> float | None:
            row = db.execute("SELECT value FROM meta WHERE key = 'last_write'").fetchone()
            return row[0] if row else None

        return await self._read("reading the last write", work)

    async def stream_positions(self) -> dict[str, tuple[int, datetime]]:
        def work(db: sqlite3.Connection) -> dict[str, tuple[int, datetime]]:
            rows = db.execute("SELECT account, last_id, last_time FROM stream_positions")
            return {a: (i, datetime.fromisoformat(t)) for a, i, t in rows}

        return await self._read("reading stream positions", work)

    async def prune(self, horizon: float) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM intervals WHERE until IS NOT NULL AND until < ?", (horizon,))
            gone = "SELECT rowid FROM episodes WHERE resolved IS NOT NULL AND resolved < ?"
            db.execute(f"DELETE FROM outbox WHERE episode_id IN ({gone})", (horizon,))  # noqa: S608
            db.execute(
                "DELETE FROM episodes WHERE resolved IS NOT NULL AND resolved < ?", (horizon,)
            )
            db.execute("DELETE FROM mutes WHERE until < ?", (horizon,))

        await self._write("pruning the history", work)

    # -- mutes --------------------------------------------------------------------------------

    async def add_mute(self, mute: Mute) -> None:
        await self._write(
            "writing a mute",
            lambda db: db.execute(
                "INSERT INTO mutes VALUES (?, ?, ?, ?, ?, ?, ?, ?)", mute_row(mute)
            ),
        )

    async def end_mute(self, mute_id: str, at: datetime) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE mutes SET until = ? WHERE id = ? AND until > ?",
                (at.timestamp(), mute_id, at.timestamp()),
            )
            return cursor.rowcount == 1

        return await self._write("ending a mute", work)

    async def active_mutes(self, now: datetime) -> list[Mute]:
        def work(db: sqlite3.Connection) -> list[Mute]:
            rows = db.execute(
                "SELECT id, account, integration_id, integration_type, created, until, reason, "
                "author FROM mutes WHERE until > ? ORDER BY created, rowid",
                (now.timestamp(),),
            )
            return [mute_of(*row) for row in rows]

        return await self._read("reading the mutes", work)

    # -- the outbox ---------------------------------------------------------------------------

    async def claim(
        self, events: Sequence[OutboxEvent], *, producer: str, delivered: bool = False
    ) -> list[Claim]:
        if not events:
            return []

        def work(db: sqlite3.Connection) -> list[Claim]:
            return [_claim_one(db, event, producer, delivered) for event in events]

        return await self._write("claiming alert events", work)

    async def take(self, by: str, at: float, limit: int = 500) -> list[OutboxItem]:
        def work(db: sqlite3.Connection) -> list[OutboxItem]:
            rows = db.execute(
                "UPDATE outbox SET attempts = attempts + 1, attempt_at = ?, attempt_by = ? "
                "WHERE id IN (SELECT id FROM outbox WHERE sent IS NULL AND attempt_by IS NOT ? "
                "ORDER BY id LIMIT ?) RETURNING id, episode_id, fingerprint, account, kind, "
                "body, created, producer, attempts",
                (at, by, by, limit),
            ).fetchall()
            return sorted((outbox_item(*row) for row in rows), key=lambda item: item.id)

        return await self._write("taking events to send", work)

    async def mark_sent(self, ids: Sequence[int], by: str, at: float) -> int:
        def work(db: sqlite3.Connection) -> int:
            return sum(
                db.execute(
                    "UPDATE outbox SET sent = ?, sent_by = ? WHERE id = ? AND sent IS NULL",
                    (at, by, item_id),
                ).rowcount
                for item_id in ids
            )

        return await self._write("marking events sent", work) if ids else 0

    # -- the fleet ----------------------------------------------------------------------------

    async def publish(self, updates: Sequence[FleetUpdate]) -> None:
        def work(db: sqlite3.Connection) -> None:
            for update in updates:
                a = update.account
                db.execute(
                    "INSERT OR REPLACE INTO fleet_accounts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        a.account,
                        a.shard,
                        a.shards,
                        a.replica,
                        a.written_at,
                        a.interval_seconds,
                        a.last_cycle_success,
                        a.api_error,
                        a.auth_ok,
                    ),
                )
                db.executemany(
                    "INSERT OR REPLACE INTO fleet_integrations VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            r.account,
                            r.integration_id,
                            r.state,
                            r.shop_name,
                            r.shop_url,
                            r.integration_type,
                            r.started_failing_at,
                            r.last_fetched_at,
                            r.unreadable_since,
                            r.written_at,
                        )
                        for r in update.changed
                    ],
                )
                db.executemany(
                    "DELETE FROM fleet_integrations WHERE account = ? AND integration_id = ?",
                    [(a.account, i) for i in update.gone],
                )

        if updates:
            await self._write("writing the fleet state", work)

    async def fleet(self) -> Fleet:
        def work(db: sqlite3.Connection) -> Fleet:
            accounts = {
                row[0]: _fleet_account(*row)
                for row in db.execute(
                    "SELECT account, replica, written_at, interval_seconds, shard, shards, "
                    "last_cycle_success, api_error, auth_ok FROM fleet_accounts"
                )
            }
            integrations = {
                (row[0], row[1]): FleetIntegration(*row)
                for row in db.execute(
                    "SELECT account, integration_id, state, shop_name, shop_url, "
                    "integration_type, started_failing_at, last_fetched_at, unreadable_since, "
                    "written_at FROM fleet_integrations"
                )
            }
            firing = [
                FiringAlert(*row)
                for row in db.execute(
                    "SELECT alert, account, integration_id, fired, escalated, cause FROM "
                    "episodes WHERE resolved IS NULL ORDER BY rowid"
                )
            ]
            return Fleet(accounts, integrations, firing)

        return await self._read("reading the fleet", work)

    async def register(self, replica: Replica) -> None:
        r = replica
        await self._write(
            "registering the replica",
            lambda db: db.execute(
                "INSERT OR REPLACE INTO replicas VALUES (?, ?, ?, ?, ?, ?, ?)",
                (r.replica, r.shard, r.shards, r.host, r.version, r.started, r.seen),
            ),
        )

    async def heartbeat(self, replica: str, at: float) -> None:
        await self._write(
            "writing the replica's heartbeat",
            lambda db: db.execute("UPDATE replicas SET seen = ? WHERE replica = ?", (at, replica)),
        )

    async def replicas(self) -> list[Replica]:
        def work(db: sqlite3.Connection) -> list[Replica]:
            rows = db.execute(
                "SELECT replica, host, version, started, seen, shard, shards FROM replicas "
                "ORDER BY replica"
            )
            return [Replica(*row) for row in rows]

        return await self._read("reading the replicas", work)


def _fleet_account(
    account: str,
    replica: str,
    written_at: float,
    interval_seconds: float,
    shard: int | None,
    shards: int | None,
    last_cycle_success: float | None,
    api_error: str | None,
    auth_ok: int,
) -> FleetAccount:
    return FleetAccount(
        account,
        replica,
        written_at,
        interval_seconds,
        shard,
        shards,
        last_cycle_success,
        api_error,
        bool(auth_ok),
    )


def _claim_one(db: sqlite3.Connection, event: OutboxEvent, producer: str, delivered: bool) -> Claim:
    """One event under the write lock the transaction holds (see the PostgreSQL twin)."""
    rows = db.execute(
        f"SELECT {_EPISODE_COLUMNS} FROM episodes WHERE fingerprint = ? "  # noqa: S608
        "ORDER BY rowid DESC LIMIT ?",
        (event.fingerprint, EPISODES_CONSIDERED),
    ).fetchall()
    decision = decide(event, [Episode(*row) for row in rows])
    if decision.supersedes is not None:
        old = decision.supersedes
        db.execute(
            "UPDATE episodes SET resolved = ? WHERE rowid = ? AND resolved IS NULL",
            (event.at, old.id),
        )
        row = db.execute(
            "SELECT body FROM outbox WHERE episode_id = ? ORDER BY id DESC LIMIT 1", (old.id,)
        ).fetchone()
        body = resolved_body(json.loads(row[0]) if row else event.body, event.at)
        _enqueue(db, old.id, event, "resolved", 0, body, producer, False)
    if decision.opens:
        sets = dict(decision.sets)
        cursor = db.execute(
            "INSERT INTO episodes (fingerprint, alert, account, integration_id, fired, "
            "escalated, cause, origin, starts_at, last_notified, repeats) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.fingerprint,
                event.alert,
                event.account,
                event.integration_id,
                event.at,
                sets.get("escalated"),
                sets.get("cause"),
                event.origin,
                event.starts_at,
                sets.get("last_notified"),
                sets.get("repeats", 0),
            ),
        )
        assert cursor.lastrowid is not None
        episode_id = cursor.lastrowid
    elif decision.episode is not None:
        episode_id = decision.episode.id
        if decision.sets:
            columns = sorted(decision.sets)
            assert set(columns) <= _SETTABLE
            assignments = ", ".join(f"{c} = ?" for c in columns)
            db.execute(
                f"UPDATE episodes SET {assignments} WHERE rowid = ?",  # noqa: S608
                [decision.sets[c] for c in columns] + [episode_id],
            )
    else:
        return Claim(event, False, decision.reason)
    if not decision.claim:
        return Claim(event, False, decision.reason, episode_id)
    outbox_id = _enqueue(
        db, episode_id, event, event.kind, decision.seq, event.body, producer, delivered
    )
    if outbox_id is None:
        return Claim(event, False, DUPLICATE, episode_id)
    return Claim(event, True, CLAIMED, episode_id, outbox_id)


def _enqueue(
    db: sqlite3.Connection,
    episode_id: int,
    event: OutboxEvent,
    kind: str,
    seq: int,
    body: Any,
    producer: str,
    delivered: bool,
) -> int | None:
    cursor = db.execute(
        "INSERT INTO outbox (episode_id, kind, seq, fingerprint, account, body, created, "
        "producer, sent, sent_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (episode_id, kind, seq) DO NOTHING",
        (
            episode_id,
            kind,
            seq,
            event.fingerprint,
            event.account,
            json.dumps(body, sort_keys=True, default=str),
            event.at,
            producer,
            event.at if delivered else None,
            producer if delivered else None,
        ),
    )
    return cursor.lastrowid if cursor.rowcount == 1 else None


def _conforms(store: SqliteBackend) -> Backend:
    return store  # mypy checks that the backend implements the whole interface
