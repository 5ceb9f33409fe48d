"""The notifier role: one replica at a time routes, groups, holds and delivers the fleet's
alert events from the outbox; the others only produce them.

The role is a session-level advisory lock (``pg_try_advisory_lock``) held on a connection of
its own — never a pooled one, which would go back to the pool still holding it (PostgreSQL 14
or newer: the role's session sets ``idle_session_timeout``). PostgreSQL
releases the lock when that connection ends, so the role moves when the holder's process or its
connection dies:

- a killed process: its socket closes, the server ends the session at once, and another replica
  takes the role at its next check (at most ``check_seconds`` later);
- a holder that stops answering (a network partition, a frozen host): its session is idle, and
  the server ends it after ``idle_session_timeout``, set on that session to ``failover_seconds``
  less one check; another replica takes the role within ``failover_seconds`` in all;
- the holder itself counts its role as held only until one ``idle_session_timeout`` after the
  start of its last successful check — never past the moment the server may hand the lock to
  another — so two replicas never both believe they are the notifier.

The holder checks its connection every ``check_seconds`` (a third of ``failover_seconds``); a
failed check, or one slower than ``check_seconds``, gives the role up (the connection is closed
on this side) and the next check competes for it again. Connecting is bounded on its own
(``connect_seconds``) and counts in no lease: a lease runs from the start of the round trip that
took or kept the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable
from typing import Any

import psycopg
import structlog
from psycopg import AsyncConnection

from monitor.database.postgres import connect_kwargs, within
from monitor.database.schema import NOTIFIER_LOCK
from monitor.database.url import DatabaseURL

log = structlog.get_logger(__name__)

FAILOVER_SECONDS = 30.0
RoleObserver = Callable[[bool], None]


class NotifierRole:
    """Competes for the notifier role and keeps it while its connection lives. ``held`` may be
    read at any time; :meth:`check` is one round (the :meth:`run` loop calls it)."""

    def __init__(
        self,
        url: DatabaseURL | str,
        *,
        failover_seconds: float = FAILOVER_SECONDS,
        on_change: RoleObserver = lambda held: None,
        monotonic: Callable[[], float] = time.monotonic,
        name: str = "",
    ) -> None:
        if failover_seconds < 3:
            raise ValueError("failover_seconds must be at least 3")
        self.url = url if isinstance(url, DatabaseURL) else DatabaseURL(url)
        self.failover_seconds = failover_seconds
        self.check_seconds = failover_seconds / 3
        #: the server ends a silent holder's session after this; the holder's own lease is as long
        self.lease_seconds = failover_seconds - self.check_seconds
        self.name = name
        self._on_change = on_change
        self._monotonic = monotonic
        self._kwargs = connect_kwargs(
            self.url, self.check_seconds, application_name="integration-monitor notifier"
        )
        #: connecting is bounded on its own (libpq's connect_timeout is whole seconds)
        self.connect_seconds = max(2.0, self.check_seconds)
        self._conn: AsyncConnection[Any] | None = None
        self._locked = False  # the server granted the lock on this connection
        self._lease_until: float | None = None
        self._task: asyncio.Task[None] | None = None
        #: a new token each time the role is taken: marks what this holding took from the outbox
        self.token: str | None = None

    def __repr__(self) -> str:
        return f"NotifierRole({self.url.masked!r}, held={self.held})"

    @property
    def held(self) -> bool:
        return self._lease_until is not None and self._monotonic() < self._lease_until

    async def check(self) -> bool:
        """One round: keep the role (a round trip on its connection) or try to take it.
        Never raises for the database's trouble; returns whether the role is held."""
        before = self.held
        try:
            if self._conn is None or self._conn.closed:  # (not counted in any lease)
                await within(self._connect, self.connect_seconds, lambda: [self._conn])
            started = self._monotonic()
            await within(self._keep_or_take, self.check_seconds, lambda: [self._conn])
        except (TimeoutError, psycopg.Error, OSError) as exc:
            if self._locked:
                log.warning(
                    "notifier_role_lost", replica=self.name, error=self.url.scrub(_first_line(exc))
                )
            await self._drop()
        else:
            if self._locked:  # the server keeps the lock at least this long after that start
                self._lease_until = started + self.lease_seconds
        after = self.held
        if after != before:
            if after:
                self.token = secrets.token_hex(8)
                log.info("notifier_role_taken", replica=self.name)
            self._on_change(after)
        return after

    async def _connect(self) -> None:
        self._conn = await AsyncConnection.connect(**self._kwargs, autocommit=True)
        await self._conn.execute(
            "SELECT set_config('idle_session_timeout', %s, false)",
            (str(round(self.lease_seconds * 1000)),),
        )

    async def _keep_or_take(self) -> None:
        assert self._conn is not None
        if self._locked:
            await self._conn.execute("SELECT 1")
            return
        cursor = await self._conn.execute("SELECT pg_try_advisory_lock(%s, %s)", NOTIFIER_LOCK)
        row = await cursor.fetchone()
        self._locked = row is not None and bool(row[0])

    async def _drop(self) -> None:
        self._locked = False
        self._lease_until = None
        self.token = None
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            conn.pgconn.finish()  # no round trip: the server may not be answering

    async def run(self) -> None:
        """Check every ``check_seconds`` until cancelled."""
        while True:
            await self.check()
            await asyncio.sleep(self.check_seconds)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="notifier role")

    async def stop(self) -> None:
        """Give the role up at once (closing the connection releases the lock)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        held = self.held
        conn, self._conn, self._lease_until, self.token = self._conn, None, None, None
        self._locked = False
        if conn is not None:
            with contextlib.suppress(psycopg.Error, TimeoutError):
                await asyncio.wait_for(conn.close(), 1.0)
        if held:
            self._on_change(False)


class SoleNotifier:
    """The role in one process with no shared database (SQLite): always held."""

    held = True
    token = "sole"  # noqa: S105 (a name, not a secret)

    async def check(self) -> bool:
        return True

    def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
