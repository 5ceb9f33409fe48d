"""The store on PostgreSQL: what every replica of a fleet shares.

All I/O is async (psycopg 3's ``AsyncConnection`` from a ``psycopg_pool.AsyncConnectionPool``,
on the caller's event loop). Every call is bounded: waiting for a connection, the server's
``statement_timeout`` and, on this side, a deadline after which the connection under the call is
closed (a server that stopped answering — a partition, a frozen host — would otherwise keep it
waiting for TCP's own timeouts) and :class:`DatabaseUnavailable` is raised. The pool replaces
closed or broken connections by itself and checks each one before handing it out, so the store
recovers when the database is back, with no restart.

Bulk writes send one statement per kind of row with arrays (``unnest``), not one statement per
row: a 500-transition batch is a handful of round trips.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import psycopg
import psycopg_pool
import structlog
from psycopg import AsyncConnection, AsyncCursor

from monitor.database.backend import (
    Backend,
    Batch,
    Claim,
    DatabaseError,
    DatabaseUnavailable,
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
from monitor.database.fleet import FleetAccount, FleetIntegration, FleetUpdate, Replica
from monitor.database.schema import (
    CLAIM_LOCK_CLASS,
    MIGRATION_LOCK,
    POSTGRES_MIGRATIONS,
    POSTGRES_VERSION_TABLE,
    SCHEMA_VERSION,
    newer,
    statements,
)
from monitor.database.url import DatabaseURL
from monitor.notify.quiet import Mute

log = structlog.get_logger(__name__)
T = TypeVar("T")

#: The default bound of one call (a connection, the statements, the answer).
TIMEOUT_SECONDS = 5.0
#: Migrations may wait for another replica's migration: a longer bound.
MIGRATE_TIMEOUT_SECONDS = 60.0
APPLICATION_NAME = "integration-monitor"
_EPISODE_COLUMNS = (
    "id, fingerprint, origin, starts_at, fired, escalated, resolved, cause, last_notified, repeats"
)
#: the episode columns a claim may set (the decision names them; nothing else is interpolated)
_SETTABLE = frozenset({"escalated", "resolved", "cause", "last_notified", "repeats"})


def connect_kwargs(
    url: DatabaseURL, timeout: float, application_name: str = APPLICATION_NAME
) -> dict[str, Any]:
    """psycopg's connection keywords with every timeout bounded: the connect (libpq's whole
    seconds, at least 2), unacknowledged data (``tcp_user_timeout``), keepalives, and the
    server's ``statement_timeout``, ``lock_timeout`` and ``idle_in_transaction_session_timeout``
    (so the server, too, gives up on a client that went away mid-transaction)."""
    millis = max(1, round(timeout * 1000))
    kwargs = url.connect_kwargs()
    kwargs.setdefault("application_name", application_name)
    kwargs.update(
        connect_timeout=str(max(2, math.ceil(timeout))),
        keepalives="1",
        keepalives_idle=str(max(1, math.ceil(timeout))),
        keepalives_interval="1",
        keepalives_count="3",
        tcp_user_timeout=str(millis),
        options=(
            f"-c statement_timeout={millis} -c lock_timeout={millis} "
            f"-c idle_in_transaction_session_timeout={max(millis * 2, 10000)}"
        ),
    )
    return kwargs


class _Connection(AsyncConnection[Any]):
    """The pool's connections: a failed connect leaves its (scrubbed) reason where the store
    can quote it, instead of the pool's bare "couldn't get a connection"."""

    @classmethod
    async def connect(  # type: ignore[override]
        cls, conninfo: str = "", *, failures: list[str], **kwargs: Any
    ) -> _Connection:
        try:
            connection = await super().connect(conninfo, **kwargs)
        except psycopg.Error as exc:
            failures[:] = [str(exc).strip()]
            raise
        failures.clear()
        return connection


class PostgresBackend:
    """The shared store on one PostgreSQL database (see :class:`monitor.database.Backend`)."""

    kind = "postgresql"

    def __init__(
        self,
        url: DatabaseURL | str,
        *,
        timeout: float = TIMEOUT_SECONDS,
        migrate_timeout: float = MIGRATE_TIMEOUT_SECONDS,
        pool_size: int = 4,
        application_name: str = APPLICATION_NAME,
    ) -> None:
        self.url = url if isinstance(url, DatabaseURL) else DatabaseURL(url)
        self.timeout = timeout
        self.migrate_timeout = migrate_timeout
        self._failures: list[str] = []
        self._kwargs = connect_kwargs(self.url, timeout, application_name)
        self._pool = psycopg_pool.AsyncConnectionPool(
            kwargs={**self._kwargs, "autocommit": True, "failures": self._failures},
            connection_class=_Connection,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=timeout,
            name="monitor",
            check=psycopg_pool.AsyncConnectionPool.check_connection,
            # a pool gives a connection up after this much failing (and the next call starts
            # afresh): a long outage must not leave it in a long backoff when the server is back
            reconnect_timeout=max(2 * timeout, 10.0),
        )

    def __repr__(self) -> str:
        return f"PostgresBackend({self.url.masked!r})"

    # -- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and migrate (once for the fleet: see :mod:`monitor.database.schema`);
        raises DatabaseError (DatabaseUnavailable, SchemaError) with what is wrong."""

        async def migrate() -> int:
            conn = await AsyncConnection.connect(**self._kwargs, autocommit=True)
            try:
                return await migrate_postgres(conn)
            finally:
                await conn.close()

        before = await self._bounded("migrating the database", migrate, self.migrate_timeout)
        if before < SCHEMA_VERSION:
            log.info(
                "database_migrated",
                database=self.url.masked,
                from_version=before,
                to_version=SCHEMA_VERSION,
            )
        try:
            await self._bounded(
                "connecting to the database",
                lambda: self._pool.open(wait=True, timeout=self.timeout),
                self.timeout + 1.0,
            )
        except BaseException:
            await self.close()  # no pool left retrying in the background
            raise

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._pool.close(timeout=1.0), 2.0)

    async def schema_version(self) -> int:
        async def work(cur: AsyncCursor[Any]) -> int:
            await cur.execute("SELECT max(version) FROM schema_version")
            row = await cur.fetchone()
            return int(row[0] or 0) if row else 0

        return await self._run("reading the schema version", work)

    # -- the bound around every call ----------------------------------------------------------

    async def _run(
        self, what: str, work: Callable[[AsyncCursor[Any]], Awaitable[T]], *, write: bool = False
    ) -> T:
        """``work`` on a pooled connection (in one transaction when ``write``), bounded."""
        holder: list[AsyncConnection[Any]] = []

        async def attempt() -> T:
            # the pool gives up a little before the bound, so its reason (the server refused,
            # the password was wrong) makes the message rather than a bare "did not answer"
            async with self._pool.connection(timeout=self.timeout * 0.75) as conn:
                holder.append(conn)
                async with conn.cursor() as cur:
                    if not write:
                        return await work(cur)
                    async with conn.transaction():
                        return await work(cur)

        return await self._bounded(what, attempt, self.timeout, holder)

    async def _bounded(
        self,
        what: str,
        call: Callable[[], Awaitable[T]],
        seconds: float,
        holder: Sequence[AsyncConnection[Any]] = (),
    ) -> T:
        try:
            return await within(call, seconds, lambda: holder)
        except TimeoutError:
            raise DatabaseUnavailable(
                f"{what}: {self.url.masked} did not answer within {seconds:g} s"
            ) from None
        except psycopg_pool.PoolTimeout:
            reason = self._failures[0] if self._failures else "none was made or freed in time"
            raise DatabaseUnavailable(
                f"{what}: no connection to {self.url.masked} within {self.timeout * 0.75:g} s "
                f"({self.url.scrub(_message(reason))})"
            ) from None
        except (psycopg.OperationalError, psycopg_pool.PoolClosed) as exc:
            raise DatabaseUnavailable(f"{what}: {self.url.scrub(_message(exc))}") from None
        except psycopg.Error as exc:
            raise DatabaseError(f"{what}: {self.url.scrub(_message(exc))}") from None

    # -- history ------------------------------------------------------------------------------

    async def write(self, batch: Batch) -> None:
        async def work(cur: AsyncCursor[Any]) -> None:
            if batch.forgotten:
                await cur.execute(
                    "UPDATE intervals i SET until = greatest(i.since, v.at) FROM unnest("
                    "%s::text[], %s::float8[]) AS v(account, at) WHERE i.account = v.account "
                    "AND i.until IS NULL",
                    _columns(_last_by(batch.forgotten, 1), 2),
                )
            if batch.ended:
                await cur.execute(
                    "UPDATE intervals i SET until = greatest(i.since, v.at) FROM unnest("
                    "%s::text[], %s::bigint[], %s::float8[]) AS v(account, integration_id, at) "
                    "WHERE i.account = v.account AND i.integration_id = v.integration_id "
                    "AND i.until IS NULL",
                    _columns(_last_by(batch.ended, 2), 3),
                )
            for round_ in rounds(batch.transitions):
                await cur.execute(_TRANSITIONS, _columns(round_, 4))
            if batch.names:
                await cur.execute(
                    "INSERT INTO integrations SELECT * FROM unnest(%s::text[], %s::bigint[], "
                    "%s::text[], %s::text[]) ON CONFLICT (account, integration_id) DO UPDATE "
                    "SET shop_name = excluded.shop_name, "
                    "integration_type = excluded.integration_type",
                    _columns(_last_by(batch.names, 2), 4),
                )
            if batch.positions:
                await cur.execute(
                    "INSERT INTO stream_positions SELECT * FROM unnest(%s::text[], %s::bigint[], "
                    "%s::text[]) ON CONFLICT (account) DO UPDATE SET last_id = excluded.last_id, "
                    "last_time = excluded.last_time WHERE (excluded.last_time::timestamptz, "
                    "excluded.last_id) > (stream_positions.last_time::timestamptz, "
                    "stream_positions.last_id)",
                    _columns(_last_by(batch.positions, 1), 3),
                )

        await self._run("writing the history", work, write=True)

    async def open_intervals(
        self, accounts: Collection[str] | None = None
    ) -> dict[str, dict[int, str]]:
        async def work(cur: AsyncCursor[Any]) -> list[tuple[str, int, str]]:
            query = "SELECT account, integration_id, state FROM intervals WHERE until IS NULL"
            if accounts is None:
                await cur.execute(query)
            else:
                await cur.execute(query + " AND account = ANY(%s)", (list(accounts),))
            return await cur.fetchall()

        found: dict[str, dict[int, str]] = {}
        for account, integration_id, state in await self._run("reading open intervals", work):
            found.setdefault(account, {})[integration_id] = state
        return found

    async def intervals(
        self, account: str, integration_id: int, since: float, until: float
    ) -> list[Span]:
        async def work(cur: AsyncCursor[Any]) -> list[Span]:
            await cur.execute(
                "SELECT state, since, until FROM intervals WHERE account = %s AND "
                "integration_id = %s AND since < %s AND (until IS NULL OR until > %s) "
                "ORDER BY since",
                (account, integration_id, until, since),
            )
            return await cur.fetchall()

        return await self._run("reading the history", work)

    async def account_spans(
        self, account: str, since: float, until: float
    ) -> dict[int, list[Span]]:
        async def work(cur: AsyncCursor[Any]) -> list[tuple[int, str, float, float | None]]:
            await cur.execute(
                "SELECT integration_id, state, since, until FROM intervals WHERE account = %s "
                "AND since < %s AND (until IS NULL OR until > %s) ORDER BY integration_id, since",
                (account, until, since),
                binary=True,
            )
            return await cur.fetchall()

        return spans_of(await self._run("reading the history", work))

    async def names(self, account: str) -> dict[int, Names]:
        async def work(cur: AsyncCursor[Any]) -> list[tuple[int, str | None, str | None]]:
            await cur.execute(
                "SELECT integration_id, shop_name, integration_type FROM integrations "
                "WHERE account = %s",
                (account,),
            )
            return await cur.fetchall()

        rows = await self._run("reading the names", work)
        return {integration_id: (name, kind) for integration_id, name, kind in rows}

    async def episodes(
        self, account: str, integration_id: int | None, since: float, until: float
    ) -> list[dict[str, Any]]:
        async def work(cur: AsyncCursor[Any]) -> list[tuple[Any, ...]]:
            query = (
                "SELECT alert, integration_id, fired, escalated, resolved, cause FROM episodes "
                "WHERE account = %s AND fired < %s AND (resolved IS NULL OR resolved > %s)"
            )
            args: list[Any] = [account, until, since]
            if integration_id is not None:
                query += " AND integration_id = %s"
                args.append(integration_id)
            await cur.execute(query + " ORDER BY fired, id", args)
            return await cur.fetchall()

        return [episode_document(*row) for row in await self._run("reading episodes", work)]

    async def last_write(self) -> float | None:
        """The newest time any replica wrote an account (the fleet's rows)."""

        async def work(cur: AsyncCursor[Any]) -> float | None:
            await cur.execute("SELECT max(written_at) FROM fleet_accounts")
            row = await cur.fetchone()
            return row[0] if row else None

        return await self._run("reading the last write", work)

    async def stream_positions(self) -> dict[str, tuple[int, datetime]]:
        async def work(cur: AsyncCursor[Any]) -> list[tuple[str, int, str]]:
            await cur.execute("SELECT account, last_id, last_time FROM stream_positions")
            return await cur.fetchall()

        rows = await self._run("reading stream positions", work)
        return {a: (i, datetime.fromisoformat(t)) for a, i, t in rows}

    async def prune(self, horizon: float) -> None:
        async def work(cur: AsyncCursor[Any]) -> None:
            await cur.execute(
                "DELETE FROM intervals WHERE until IS NOT NULL AND until < %s", (horizon,)
            )
            await cur.execute(  # their outbox rows go with them (ON DELETE CASCADE)
                "DELETE FROM episodes WHERE resolved IS NOT NULL AND resolved < %s", (horizon,)
            )
            await cur.execute("DELETE FROM mutes WHERE until < %s", (horizon,))

        await self._run("pruning the history", work, write=True)

    # -- mutes --------------------------------------------------------------------------------

    async def add_mute(self, mute: Mute) -> None:
        async def work(cur: AsyncCursor[Any]) -> None:
            await cur.execute(
                "INSERT INTO mutes VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", mute_row(mute)
            )

        await self._run("writing a mute", work, write=True)

    async def end_mute(self, mute_id: str, at: datetime) -> bool:
        async def work(cur: AsyncCursor[Any]) -> bool:
            await cur.execute(
                "UPDATE mutes SET until = %s WHERE id = %s AND until > %s",
                (at.timestamp(), mute_id, at.timestamp()),
            )
            return cur.rowcount == 1

        return await self._run("ending a mute", work, write=True)

    async def active_mutes(self, now: datetime) -> list[Mute]:
        async def work(cur: AsyncCursor[Any]) -> list[tuple[Any, ...]]:
            await cur.execute(
                "SELECT id, account, integration_id, integration_type, created, until, reason, "
                "author FROM mutes WHERE until > %s ORDER BY created, id",
                (now.timestamp(),),
            )
            return await cur.fetchall()

        return [mute_of(*row) for row in await self._run("reading the mutes", work)]

    # -- the outbox ---------------------------------------------------------------------------

    async def claim(
        self, events: Sequence[OutboxEvent], *, producer: str, delivered: bool = False
    ) -> list[Claim]:
        """Offer alert events; each is claimed (sent once, fleet-wide) or not, by the rules of
        :mod:`monitor.database.claims`, under one advisory lock per alert taken in fingerprint
        order (two replicas' batches never deadlock). ``delivered``: the producer sent them
        already (while the database was away); a claimed one is stored as sent."""
        if not events:
            return []

        async def work(cur: AsyncCursor[Any]) -> list[Claim]:
            results: dict[int, Claim] = {}
            for index in sorted(range(len(events)), key=lambda i: events[i].fingerprint):
                results[index] = await self._claim_one(cur, events[index], producer, delivered)
            return [results[i] for i in range(len(events))]

        return await self._run("claiming alert events", work, write=True)

    async def _claim_one(
        self, cur: AsyncCursor[Any], event: OutboxEvent, producer: str, delivered: bool
    ) -> Claim:
        await cur.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (CLAIM_LOCK_CLASS, event.fingerprint)
        )
        await cur.execute(
            f"SELECT {_EPISODE_COLUMNS} FROM episodes WHERE fingerprint = %s "  # noqa: S608
            "ORDER BY id DESC LIMIT %s",
            (event.fingerprint, EPISODES_CONSIDERED),
        )
        episodes = [Episode(*row) for row in await cur.fetchall()]
        decision = decide(event, episodes)
        if decision.supersedes is not None:
            await self._supersede(cur, decision.supersedes, event, producer)
        if decision.opens:
            sets = dict(decision.sets)
            await cur.execute(
                "INSERT INTO episodes (fingerprint, alert, account, integration_id, fired, "
                "escalated, cause, origin, starts_at, last_notified, repeats) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
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
            row = await cur.fetchone()
            assert row is not None
            episode_id = int(row[0])
        elif decision.episode is not None:
            episode_id = decision.episode.id
            if decision.sets:
                columns = sorted(decision.sets)
                assert set(columns) <= _SETTABLE
                assignments = ", ".join(f"{c} = %s" for c in columns)
                await cur.execute(
                    f"UPDATE episodes SET {assignments} WHERE id = %s",  # noqa: S608
                    [decision.sets[c] for c in columns] + [episode_id],
                )
        else:
            return Claim(event, False, decision.reason)
        if not decision.claim:
            return Claim(event, False, decision.reason, episode_id)
        outbox_id = await _enqueue(
            cur, episode_id, event, event.kind, decision.seq, event.body, producer, delivered
        )
        if outbox_id is None:  # the outbox key: another claim of the same (kind, seq) won
            return Claim(event, False, DUPLICATE, episode_id)
        return Claim(event, True, CLAIMED, episode_id, outbox_id)

    async def _supersede(
        self, cur: AsyncCursor[Any], old: Episode, event: OutboxEvent, producer: str
    ) -> None:
        """An older open episode ends where a newer one begins; its resolved is sent once."""
        await cur.execute(
            "UPDATE episodes SET resolved = %s WHERE id = %s AND resolved IS NULL",
            (event.at, old.id),
        )
        await cur.execute(
            "SELECT body FROM outbox WHERE episode_id = %s ORDER BY id DESC LIMIT 1", (old.id,)
        )
        row = await cur.fetchone()
        body = resolved_body(json.loads(row[0]) if row else event.body, event.at)
        await _enqueue(cur, old.id, event, "resolved", 0, body, producer, False)

    async def take(self, by: str, at: float, limit: int = 500) -> list[OutboxItem]:
        """Claimed events not yet sent, oldest first, for the notifier ``by`` (a token of this
        holding of the role): each is marked as taken (``attempts``), and events this same
        holder took already are not given again."""

        async def work(cur: AsyncCursor[Any]) -> list[tuple[Any, ...]]:
            await cur.execute(
                "UPDATE outbox SET attempts = attempts + 1, attempt_at = %s, attempt_by = %s "
                "WHERE id IN (SELECT id FROM outbox WHERE sent IS NULL AND attempt_by IS "
                "DISTINCT FROM %s ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING id, "
                "episode_id, fingerprint, account, kind, body, created, producer, attempts",
                (at, by, by, limit),
            )
            return await cur.fetchall()

        rows = await self._run("taking events to send", work, write=True)
        return sorted((outbox_item(*row) for row in rows), key=lambda item: item.id)

    async def mark_sent(self, ids: Sequence[int], by: str, at: float) -> int:
        """Marks events sent; returns how many were not marked before (healthchecks' claim)."""
        if not ids:
            return 0

        async def work(cur: AsyncCursor[Any]) -> int:
            await cur.execute(
                "UPDATE outbox SET sent = %s, sent_by = %s WHERE id = ANY(%s) AND sent IS NULL",
                (at, by, list(ids)),
            )
            return cur.rowcount

        return await self._run("marking events sent", work, write=True)

    # -- the fleet ----------------------------------------------------------------------------

    async def publish(self, updates: Sequence[FleetUpdate]) -> None:
        if not updates:
            return

        async def work(cur: AsyncCursor[Any]) -> None:
            accounts = _last_by([_account_row(u.account) for u in updates], 1)
            await cur.execute(
                "INSERT INTO fleet_accounts SELECT * FROM unnest(%s::text[], %s::int[], "
                "%s::int[], %s::text[], %s::float8[], %s::float8[], %s::float8[], %s::text[], "
                "%s::bool[]) ON CONFLICT (account) DO UPDATE SET shard = excluded.shard, "
                "shards = excluded.shards, replica = excluded.replica, "
                "written_at = excluded.written_at, interval_seconds = excluded.interval_seconds, "
                "last_cycle_success = excluded.last_cycle_success, "
                "api_error = excluded.api_error, auth_ok = excluded.auth_ok "
                "WHERE fleet_accounts.written_at <= excluded.written_at",
                _columns(accounts, 9),
            )
            rows = _last_by([_integration_row(r) for u in updates for r in u.changed], 2)
            if rows:
                await cur.execute(
                    "INSERT INTO fleet_integrations SELECT * FROM unnest(%s::text[], "
                    "%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], "
                    "%s::float8[], %s::float8[], %s::float8[], %s::float8[]) "
                    "ON CONFLICT (account, integration_id) DO UPDATE SET state = excluded.state, "
                    "shop_name = excluded.shop_name, shop_url = excluded.shop_url, "
                    "integration_type = excluded.integration_type, "
                    "started_failing_at = excluded.started_failing_at, "
                    "last_fetched_at = excluded.last_fetched_at, "
                    "unreadable_since = excluded.unreadable_since, "
                    "written_at = excluded.written_at "
                    "WHERE fleet_integrations.written_at <= excluded.written_at",
                    _columns(rows, 10),
                )
            gone = [(u.account.account, i) for u in updates for i in u.gone]
            if gone:
                await cur.execute(
                    "DELETE FROM fleet_integrations f USING unnest(%s::text[], %s::bigint[]) "
                    "AS g(account, integration_id) WHERE f.account = g.account "
                    "AND f.integration_id = g.integration_id",
                    _columns(gone, 2),
                )

        await self._run("writing the fleet state", work, write=True)

    async def fleet(self) -> Fleet:
        async def work(cur: AsyncCursor[Any]) -> Fleet:
            await cur.execute(
                "SELECT account, replica, written_at, interval_seconds, shard, shards, "
                "last_cycle_success, api_error, auth_ok FROM fleet_accounts"
            )
            accounts = {row[0]: FleetAccount(*row) for row in await cur.fetchall()}
            await cur.execute(
                "SELECT account, integration_id, state, shop_name, shop_url, integration_type, "
                "started_failing_at, last_fetched_at, unreadable_since, written_at "
                "FROM fleet_integrations",
                binary=True,
            )
            integrations = {(r[0], r[1]): FleetIntegration(*r) for r in await cur.fetchall()}
            await cur.execute(
                "SELECT alert, account, integration_id, fired, escalated, cause FROM episodes "
                "WHERE resolved IS NULL ORDER BY id"
            )
            firing = [FiringAlert(*row) for row in await cur.fetchall()]
            return Fleet(accounts, integrations, firing)

        return await self._run("reading the fleet", work)

    async def register(self, replica: Replica) -> None:
        async def work(cur: AsyncCursor[Any]) -> None:
            await cur.execute(
                "INSERT INTO replicas VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (replica) "
                "DO UPDATE SET shard = excluded.shard, shards = excluded.shards, "
                "host = excluded.host, version = excluded.version, started = excluded.started, "
                "seen = excluded.seen",
                _replica_row(replica),
            )

        await self._run("registering the replica", work, write=True)

    async def heartbeat(self, replica: str, at: float) -> None:
        async def work(cur: AsyncCursor[Any]) -> None:
            await cur.execute("UPDATE replicas SET seen = %s WHERE replica = %s", (at, replica))

        await self._run("writing the replica's heartbeat", work)

    async def replicas(self) -> list[Replica]:
        async def work(cur: AsyncCursor[Any]) -> list[tuple[Any, ...]]:
            await cur.execute(
                "SELECT replica, host, version, started, seen, shard, shards FROM replicas "
                "ORDER BY replica"
            )
            return await cur.fetchall()

        return [Replica(*row) for row in await self._run("reading the replicas", work)]


async def migrate_postgres(conn: AsyncConnection[Any]) -> int:
    """Bring the database to SCHEMA_VERSION in one transaction under the migration lock;
    returns the version it had. Two replicas starting together: the second waits for the
    first's commit, then finds nothing to do."""
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute("SET LOCAL statement_timeout = 0")
        await cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", MIGRATION_LOCK)
        await cur.execute(POSTGRES_VERSION_TABLE)
        await cur.execute("SELECT max(version) FROM schema_version")
        row = await cur.fetchone()
        version = int(row[0] or 0) if row else 0
        if version > SCHEMA_VERSION:
            raise newer(version, "the database")
        for number in range(version, SCHEMA_VERSION):
            for statement in statements(POSTGRES_MIGRATIONS[number]):
                await cur.execute(statement.encode())
            await cur.execute("INSERT INTO schema_version (version) VALUES (%s)", (number + 1,))
    return version


# A transition ends the open interval only if it is in another state and began before it, and
# opens one only where it ended one or none was open (the unique index keeps it to one when
# two replicas write the same transition at once).
_TRANSITIONS = """
WITH v AS (
    SELECT * FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::float8[])
        AS v(account, integration_id, state, at)
), closed AS (
    UPDATE intervals i SET until = v.at FROM v
    WHERE i.account = v.account AND i.integration_id = v.integration_id AND i.until IS NULL
        AND i.state <> v.state AND i.since < v.at
    RETURNING i.account, i.integration_id
)
INSERT INTO intervals (account, integration_id, state, since)
SELECT v.account, v.integration_id, v.state, v.at FROM v
WHERE EXISTS (
    SELECT 1 FROM closed c WHERE c.account = v.account AND c.integration_id = v.integration_id
) OR NOT EXISTS (
    SELECT 1 FROM intervals i
    WHERE i.account = v.account AND i.integration_id = v.integration_id AND i.until IS NULL
)
ON CONFLICT (account, integration_id) WHERE until IS NULL DO NOTHING
"""


async def _enqueue(
    cur: AsyncCursor[Any],
    episode_id: int,
    event: OutboxEvent,
    kind: str,
    seq: int,
    body: Any,
    producer: str,
    delivered: bool,
) -> int | None:
    sent = event.at if delivered else None
    await cur.execute(
        "INSERT INTO outbox (episode_id, kind, seq, fingerprint, account, body, created, "
        "producer, sent, sent_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (episode_id, kind, seq) DO NOTHING RETURNING id",
        (
            episode_id,
            kind,
            seq,
            event.fingerprint,
            event.account,
            json.dumps(body, sort_keys=True, default=str),
            event.at,
            producer,
            sent,
            producer if delivered else None,
        ),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else None


def _last_by(rows: Iterable[tuple[Any, ...]], width: int) -> list[tuple[Any, ...]]:
    """The last row of each key (its first ``width`` values): one upsert statement may not
    touch a row twice."""
    found: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for row in rows:
        found[row[:width]] = row
    return list(found.values())


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as ``width`` column arrays, for ``unnest``."""
    return [[row[i] for row in rows] for i in range(width)]


def _account_row(a: FleetAccount) -> tuple[Any, ...]:
    return (
        a.account,
        a.shard,
        a.shards,
        a.replica,
        a.written_at,
        a.interval_seconds,
        a.last_cycle_success,
        a.api_error,
        a.auth_ok,
    )


def _integration_row(r: FleetIntegration) -> tuple[Any, ...]:
    return (
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


def _replica_row(r: Replica) -> tuple[Any, ...]:
    return (r.replica, r.shard, r.shards, r.host, r.version, r.started, r.seen)


async def within(
    call: Callable[[], Awaitable[T]],
    seconds: float,
    connections: Callable[[], Iterable[AsyncConnection[Any] | None]],
) -> T:
    """``call()``, or TimeoutError after ``seconds``. A server that stopped answering
    does not answer a cancel either (psycopg waits up to 10 s for one): at the deadline the
    call's connections are closed under it, on this side only, and it ends at once."""
    task = asyncio.ensure_future(call())
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        for conn in connections():
            if conn is not None and not conn.closed:
                conn.pgconn.finish()
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
        task.add_done_callback(_consume)
        raise TimeoutError
    return task.result()


def _message(exc: BaseException | str) -> str:
    """The first line of a driver error (libpq adds hints on further lines)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _conforms(store: PostgresBackend) -> Backend:
    return store  # mypy checks that the backend implements the whole interface
