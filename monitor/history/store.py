"""The history store: one SQLite file (WAL), written by one thread, read by any.

What it keeps, per integration: **state intervals** (``healthy``, ``failing``, ``stale``,
``not_found``, ``unknown`` — unreadable), written on transitions only, one transaction per
poll; and **alert episodes** (fired, escalated, resolved, cause). Time it knows nothing of —
from a stop, clean or a crash, until the next start's first poll, and any time the file could
not be written — is simply not covered by an interval, which every reader counts as unknown.

History never puts monitoring at risk: ``record`` only queues (a bounded queue; the oldest batch
is dropped, and counted, when it is full), the writer thread does the I/O, and a file that is
corrupt, locked, read-only or on a full disk gives one error line, ``up`` False and a failure
count; the writer tries again at the next batch and recovers when the file is usable again.

One process writes a history file: the daemon holds an exclusive lock (``flock``) on
``<file>.lock`` beside it for as long as it runs (:meth:`HistoryStore.claim`), so a second
daemon on the same file (two shards given one state directory) cannot close the first one's
open intervals as if it had crashed. The CLI's short writes (mutes) go through SQLite's own
locking and need no claim. A file deleted while the daemon runs is written again from the
connection the writer still has open; a file replaced by another is taken up as found.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from monitor.history.availability import Interval, Span
from monitor.probes import Outcome, Result, ShopProbe
from monitor.sendcloud import Integration
from monitor.store import AccountSnapshot, Observation, ReadOutcome

log = structlog.get_logger(__name__)

#: Schema migrations, applied in order; ``PRAGMA user_version`` says how many have run.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE intervals (
        account TEXT NOT NULL,
        integration_id INTEGER NOT NULL,
        state TEXT NOT NULL,
        since REAL NOT NULL,
        until REAL
    );
    CREATE INDEX intervals_by_integration ON intervals (account, integration_id, since);
    CREATE INDEX intervals_open ON intervals (until) WHERE until IS NULL;
    CREATE TABLE episodes (
        fingerprint TEXT NOT NULL,
        alert TEXT NOT NULL,
        account TEXT NOT NULL,
        integration_id INTEGER,
        fired REAL NOT NULL,
        escalated REAL,
        resolved REAL,
        cause TEXT
    );
    CREATE INDEX episodes_by_integration ON episodes (account, integration_id, fired);
    CREATE TABLE integrations (
        account TEXT NOT NULL,
        integration_id INTEGER NOT NULL,
        shop_name TEXT,
        integration_type TEXT,
        PRIMARY KEY (account, integration_id)
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value REAL NOT NULL);
    """,
    # 2: mutes, made with `integration-monitor mute` or POST /api/v1/mutes
    """
    CREATE TABLE mutes (
        id TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        integration_id INTEGER,
        integration_type TEXT,
        created REAL NOT NULL,
        until REAL NOT NULL,
        reason TEXT NOT NULL,
        author TEXT NOT NULL
    );
    CREATE INDEX mutes_by_until ON mutes (until);
    """,
    # 3: where each account's exception-log stream stands
    """
    CREATE TABLE stream_positions (
        account TEXT PRIMARY KEY,
        last_id INTEGER NOT NULL,
        last_time TEXT NOT NULL -- RFC 3339: the exact microsecond the stream compares with
    );
    """,
    # 4: when each episode's condition began by the API's own timestamps (started_failing_at
    # for IntegrationFailing), beside when the monitor fired it; older episodes: when fired
    """
    ALTER TABLE episodes ADD COLUMN started REAL;
    UPDATE episodes SET started = fired;
    """,
    # 5: configuration changes (updated_at moved), the last updated_at of each integration,
    # the shop probes' state and the inventory of unmonitored integrations, across restarts
    """
    CREATE TABLE changes (
        account TEXT NOT NULL,
        integration_id INTEGER NOT NULL,
        updated_at REAL NOT NULL,
        previous REAL NOT NULL,
        detected REAL NOT NULL
    );
    CREATE INDEX changes_by_integration ON changes (account, integration_id, updated_at);
    CREATE TABLE updates (
        account TEXT NOT NULL,
        integration_id INTEGER NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (account, integration_id)
    );
    CREATE TABLE probes (
        target TEXT PRIMARY KEY,
        result TEXT NOT NULL,
        at REAL NOT NULL,
        expires_at REAL,
        issuer TEXT,
        detail TEXT,
        failures INTEGER NOT NULL,
        failing_since REAL
    );
    CREATE TABLE inventory (
        account TEXT NOT NULL,
        integration_id INTEGER NOT NULL,
        monitored INTEGER NOT NULL,
        seen REAL NOT NULL,
        PRIMARY KEY (account, integration_id)
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
QUEUE_BATCHES = 1000
#: How long the writer gathers further polls before it writes what it has.
BATCH_SECONDS = 0.5
#: The most items one transaction takes (the rest go into the next, at once).
BATCH_ITEMS = 500
RETENTION_DAYS = 400
StatusObserver = Callable[[bool], None]
FailureObserver = Callable[[str], None]


def recorded_state(observation: Observation) -> str:
    """The state history records for one read: the derived state while readable, ``unknown``
    while not (never the last known state: unreadable time is neither up nor down)."""
    if observation.status is ReadOutcome.ERROR:
        return "unknown"
    return observation.state  # a StrEnum: the string itself, without the .value lookup


Names = tuple[str | None, str | None]  # (shop name, integration type)


@dataclass(frozen=True, slots=True)
class _Poll:
    account: str
    at: datetime
    states: Mapping[int, str]
    names: Mapping[int, Names]
    #: the API's started_failing_at (Unix time) of each failing integration
    failing_since: Mapping[int, float]
    #: updated_at of the records that are new objects since the last poll
    updated: Mapping[int, datetime] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Probe:
    state: ShopProbe
    at: datetime


@dataclass(frozen=True, slots=True)
class _Inventory:
    account: str
    seen: Mapping[int, bool]  # every integration of the account listed: monitored or not
    at: datetime


@dataclass(frozen=True, slots=True)
class _Forget:
    account: str
    at: datetime


@dataclass(frozen=True, slots=True)
class _Episode:
    event: Mapping[str, object]
    at: datetime


@dataclass(frozen=True, slots=True)
class _Position:
    account: str
    last_id: int
    last_time: datetime
    at: datetime


@dataclass(frozen=True, slots=True)
class _Flush:
    done: threading.Event
    at: datetime


_Item = _Poll | _Forget | _Episode | _Position | _Flush | _Probe | _Inventory
#: What the writer gathers into one transaction (the others are written at once).
_BATCHED = (_Poll, _Episode, _Position, _Probe, _Inventory)


#: How often an idle writer looks whether its file is still the one at its path.
CHECK_SECONDS = 1.0


class HistoryError(Exception):
    """The history file cannot be used (the reason is in the message)."""


def lock_path(path: Path) -> Path:
    """The lock file a daemon holds while it writes ``path``."""
    return path.with_name(path.name + ".lock")


class HistoryStore:
    """Writes through :meth:`record`, :meth:`forget` and :meth:`episode` (any thread, never
    blocking); reads through :meth:`intervals` and :meth:`episodes` (read-only connections)."""

    def __init__(
        self,
        path: Path,
        *,
        retention_days: int = RETENTION_DAYS,
        on_status: StatusObserver = lambda up: None,
        on_failure: FailureObserver = lambda kind: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.path = path
        self.retention = timedelta(days=retention_days)
        self._lock_fd: int | None = None  # the claim on the file (see claim)
        #: (device, inode) of the file the writer has open, while it has one
        self._identity: tuple[int, int] | None = None
        self._restored = False  # the file was just written again from the open connection
        self._on_status = on_status
        self._on_failure = on_failure
        self._clock = clock
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=QUEUE_BATCHES)
        #: set by a flush or close, so the writer does not wait out its batch time for them
        self._urgent = threading.Event()
        self._db: sqlite3.Connection | None = None
        #: account -> integration -> the state of its open interval
        self._open: dict[str, dict[int, str]] = {}
        self._names: dict[str, dict[int, Names]] = {}  # as last written
        #: account -> integration -> its updated_at as last written (read at connection)
        self._updated: dict[str, dict[int, float]] = {}
        #: the record each integration's names were last taken from (the poller's thread)
        self._records: dict[str, dict[int, Integration]] = {}
        self._broken: str | None = None  # why the last write failed, while it does
        self._pruned: datetime | None = None
        self._thread = threading.Thread(target=self._run, name="history writer", daemon=True)
        self.up = False

    # -- writing (any thread) -----------------------------------------------------------------

    def claim(self) -> str | None:
        """Take the file for this process: an exclusive lock on ``<file>.lock``, held until the
        writer stops. None when this process holds it (or the lock file cannot be made: then
        the writes fail and say why, and the writer claims it before its first write), else who
        holds it, e.g. ``pid 12 on host monitor-0``."""
        if self._lock_fd is not None:
            return None
        try:
            return self._take_lock()
        except OSError:
            return None

    def _take_lock(self) -> str | None:
        """The lock, or who holds it; raises OSError when the lock file cannot be made."""
        lock = lock_path(self.path)
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            os.close(fd)
            return holder or "another process"
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
        self._lock_fd = fd
        return None

    def _ensure_claim(self) -> None:
        """In the writer, before it opens the file: the claim, or a HistoryError."""
        if self._lock_fd is not None:
            return
        try:
            holder = self._take_lock()
        except OSError as exc:
            raise HistoryError(
                f"cannot lock {lock_path(self.path)}: {exc.strerror or exc}"
            ) from None
        if holder is not None:
            raise HistoryError(f"the history file is in use by {holder}")

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    @property
    def opened(self) -> bool:
        """Whether the writer has the file open: it exists then, unless someone removed it."""
        return self._identity is not None

    def set_retention(self, days: int) -> None:
        """A new retention (a reload): applied at the writer's next batch."""
        self.retention = timedelta(days=days)
        self._pruned = None

    def start(self) -> None:
        self._thread.start()

    def record(self, snapshot: AccountSnapshot, at: datetime) -> None:
        """One account's poll: the state of each of its integrations as of ``at``, and when
        each failing one started failing by Sendcloud's ``started_failing_at``."""
        states = {i: recorded_state(o) for i, o in snapshot.integrations.items()}
        seen = self._records.setdefault(snapshot.account, {})
        names = {}
        failing_since = {}
        updated = {}
        for integration_id, observation in snapshot.integrations.items():
            record = observation.record
            if record is not None and seen.get(integration_id) is not record:
                seen[integration_id] = record  # a list walk keeps unchanged records as they are
                names[integration_id] = (record.shop_name, record.type)
                if record.updated_at is not None and observation.status is ReadOutcome.OK:
                    updated[integration_id] = record.updated_at
            if states[integration_id] == "failing":
                health = observation.health
                if health is not None and health.failing_since is not None:
                    failing_since[integration_id] = health.failing_since.timestamp()
        self._put(_Poll(snapshot.account, at, states, names, failing_since, updated))

    def probe(self, state: ShopProbe) -> None:
        """A shop probe's state (the last of each target is kept)."""
        self._put(_Probe(state, state.outcome.at))

    def inventory_seen(self, account: str, seen: Mapping[int, bool], at: datetime) -> None:
        """Every integration an account's inventory walk listed (and whether it is monitored):
        what a restart compares the next walk with."""
        self._put(_Inventory(account, dict(seen), at))

    def forget(self, account: str, at: datetime) -> None:
        """An account left the configuration: its open intervals end at ``at``."""
        self._records.pop(account, None)
        self._put(_Forget(account, at))

    def episode(self, event: Mapping[str, object], at: datetime) -> None:
        """An alert event (fired, escalated, resolved, cause) of an integration's alert."""
        self._put(_Episode(dict(event), at))

    def stream_position(self, account: str, last_id: int, last_time: datetime) -> None:
        """Where an account's exception-log stream stands (written with the next batch)."""
        self._put(_Position(account, last_id, last_time, self._clock()))

    def stream_positions(self) -> dict[str, tuple[int, datetime]]:
        """Every account's saved stream position; empty when there is none (or no file)."""
        if not self.path.exists():
            return {}
        try:
            with self._reader() as db:
                rows = db.execute(
                    "SELECT account, last_id, last_time FROM stream_positions"
                ).fetchall()
        except HistoryError as exc:
            if "no such table" in str(exc):
                return {}
            raise
        return {a: (i, datetime.fromisoformat(t)) for a, i, t in rows}

    def close(self, at: datetime, timeout: float = 2.0) -> None:
        """At shutdown: what is queued is written, open intervals end at ``at``."""
        if not self._thread.is_alive():
            self._release()  # claimed, never started (the writer releases it otherwise)
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(_Forget("", at), timeout=timeout)  # "" ends every account
            self._queue.put(None, timeout=timeout)
        self._urgent.set()
        self._thread.join(timeout)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far is written (or failed); False on timeout."""
        done = threading.Event()
        try:
            self._queue.put(_Flush(done, self._clock()), timeout=timeout)
        except queue.Full:
            return False
        self._urgent.set()
        return done.wait(timeout)

    def _put(self, item: _Item) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            with contextlib.suppress(queue.Empty):
                self._queue.get_nowait()
            self._on_failure("dropped")
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(item)

    # -- the writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=CHECK_SECONDS if self._db is not None else None)
            except queue.Empty:
                self._check_file()  # idle: a file removed now is written again within a second
                continue
            batch = [item]
            # polls of many accounts arrive one by one: what comes within a moment goes into
            # one transaction (a commit costs more than the rows of a small account). The
            # writer sleeps through that moment instead of waking for each poll queued (a
            # wake-up per poll cost more CPU than the writing); a flush or close wakes it.
            if isinstance(item, _BATCHED):
                self._urgent.wait(BATCH_SECONDS)
                self._urgent.clear()
            while len(batch) < BATCH_ITEMS and isinstance(batch[-1], _BATCHED):
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            done = None in batch
            flushes = [i for i in batch if isinstance(i, _Flush)]
            self._write([i for i in batch if i is not None and not isinstance(i, _Flush)])
            for flush in flushes:
                flush.done.set()
            if done:
                if self._db is not None:
                    self._db.close()
                    self._db = None
                self._identity = None
                self._release()
                return

    def _write(self, batch: list[_Item]) -> None:
        if not batch:
            return
        try:
            self._check_file()
            db = self._connection()
            with db:
                if self._broken is not None:
                    self._resume(db)
                for item in batch:
                    self._apply(db, item)
                at = max(item.at for item in batch)
                db.execute("INSERT OR REPLACE INTO meta VALUES ('last_write', ?)", (_ts(at),))
                self._prune(db, at)
        except (sqlite3.Error, OSError, HistoryError) as exc:
            self._fail(exc)
            return
        if self._broken is not None or not self.up:
            if self._broken is not None:
                log.info("history_recovered", path=str(self.path), previous_error=self._broken)
            self._broken = None
            self.up = True
            self._on_status(True)

    def _connection(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HistoryError(f"cannot create {self.path.parent}: {exc.strerror}") from None
        self._ensure_claim()
        db = sqlite3.connect(self.path, timeout=1.0, isolation_level=None, check_same_thread=True)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            migrate(db)
            if self._restored:  # our own file, written again: what is open stays open
                self._restored = False
            else:
                self._open = _open_intervals(db)
                self._updated = {}
                for account, integration_id, updated_at in db.execute("SELECT * FROM updates"):
                    self._updated.setdefault(account, {})[integration_id] = updated_at
                last = db.execute("SELECT value FROM meta WHERE key = 'last_write'").fetchone()
                if self._open and last is not None:  # a crash: they end where the file stopped
                    with db:
                        db.execute("UPDATE intervals SET until = ? WHERE until IS NULL", (last[0],))
                    self._open = {}
            status = os.stat(self.path)
        except BaseException:
            db.close()
            raise
        db.isolation_level = "DEFERRED"
        self._db = db
        self._identity = (status.st_dev, status.st_ino)
        return db

    def _check_file(self) -> None:
        """The file the writer has open must still be the one at its path. Removed (an
        operator, a clean-up job): it is written again, whole, from the open connection, and
        the mutes, intervals and episodes in it are kept. Replaced by another file: the writer
        lets its own go and takes up the new one at the next write (what was open in it ends
        at its last write, as after a crash)."""
        if self._db is None or self._identity is None:
            return
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            self._write_again()
            return
        except OSError:
            return  # the next write says what is wrong
        if (status.st_dev, status.st_ino) == self._identity:
            return
        log.error(
            "history_file_replaced",
            path=str(self.path),
            hint="another file was put in place of the history file while the daemon ran; it "
            "is used from now on (stop the daemon before you restore or replace the file)",
        )
        self._let_go(empty_wal=True)

    def _let_go(self, *, empty_wal: bool = False) -> None:
        """Close the writer's connection (reopened at the next write). ``empty_wal``: when the
        file at the path is no longer the one open, its ``-wal`` beside the path is first
        emptied into the file it belongs to, so that no other file there ever replays it."""
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                if empty_wal:
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._db.close()
        self._db = None
        self._identity = None
        self._names = {}

    def _write_again(self) -> None:
        """The open file was removed: a copy of it (SQLite's backup, which sees its WAL too)
        goes where it was. The old connection is closed first, its ``-wal`` emptied (and, as the
        last connection, removed with the ``-shm``): the copy must not inherit them."""
        assert self._db is not None
        copy = self.path.with_name(self.path.name + ".restoring")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            target = sqlite3.connect(copy)
            try:
                self._db.backup(target)
            finally:
                target.close()
            self._let_go(empty_wal=True)
            os.replace(copy, self.path)
            self._restored = True
        except (sqlite3.Error, OSError) as exc:
            with contextlib.suppress(OSError):
                copy.unlink()
            self._fail(exc)  # what the open file held is lost; the next write starts anew
            return
        log.error(
            "history_file_restored",
            path=str(self.path),
            hint="the history file was removed while the daemon ran; it was written again from "
            "the daemon's open copy, mutes included (stop the daemon before you remove it)",
        )

    def _resume(self, db: sqlite3.Connection) -> None:
        """After failed writes: what was open ends at the last write that succeeded, so the
        time in between is unknown; the next poll opens fresh intervals."""
        last = db.execute("SELECT value FROM meta WHERE key = 'last_write'").fetchone()
        if last is not None:
            db.execute("UPDATE intervals SET until = ? WHERE until IS NULL", (last[0],))
        self._open = {}

    def _apply(self, db: sqlite3.Connection, item: _Item) -> None:
        at = _ts(item.at)
        if isinstance(item, _Poll):
            opened = self._open.setdefault(item.account, {})
            changed = [(i, s) for i, s in item.states.items() if opened.get(i) != s]
            for integration_id, state in changed:
                started = item.failing_since.get(integration_id)
                if started is not None and started < at:  # failing: since Sendcloud says so
                    _open_failing(
                        db, item.account, integration_id, started, integration_id in opened
                    )
                    opened[integration_id] = state
                    continue
                if integration_id in opened:
                    _close(db, item.account, integration_id, at)
                db.execute(
                    "INSERT INTO intervals VALUES (?, ?, ?, ?, NULL)",
                    (item.account, integration_id, state, at),
                )
                opened[integration_id] = state
            written = self._names.setdefault(item.account, {})
            for integration_id, names in item.names.items():
                if written.get(integration_id) != names:
                    db.execute(
                        "INSERT OR REPLACE INTO integrations VALUES (?, ?, ?, ?)",
                        (item.account, integration_id, *names),
                    )
                    written[integration_id] = names
            for integration_id in opened.keys() - item.states.keys():
                _close(db, item.account, integration_id, at)  # no longer watched: it ends
                del opened[integration_id]
            self._changes(db, item)
        elif isinstance(item, _Forget):
            for account in [a for a in self._open if item.account in ("", a)]:
                for integration_id in self._open.pop(account):
                    _close(db, account, integration_id, at)
        elif isinstance(item, _Episode):
            _write_episode(db, item.event, at)
        elif isinstance(item, _Position):
            db.execute(
                "INSERT OR REPLACE INTO stream_positions VALUES (?, ?, ?)",
                (item.account, item.last_id, item.last_time.isoformat()),
            )
        elif isinstance(item, _Probe):
            probe, outcome = item.state, item.state.outcome
            db.execute(
                "INSERT OR REPLACE INTO probes VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    probe.target,
                    str(outcome.result),
                    _ts(outcome.at),
                    _ts(outcome.expires_at) if outcome.expires_at else None,
                    outcome.issuer,
                    outcome.detail,
                    probe.failures,
                    _ts(probe.failing_since) if probe.failing_since else None,
                ),
            )
        elif isinstance(item, _Inventory):
            db.execute("DELETE FROM inventory WHERE account = ?", (item.account,))
            db.executemany(
                "INSERT INTO inventory VALUES (?, ?, ?, ?)",
                [(item.account, i, int(m), at) for i, m in item.seen.items()],
            )

    def _changes(self, db: sqlite3.Connection, item: _Poll) -> None:
        """Records whose updated_at moved since the last one written: a configuration change
        on the integration's timeline (the first one seen of an integration is none)."""
        known = self._updated.setdefault(item.account, {})
        for integration_id, updated_at in item.updated.items():
            value = _ts(updated_at)
            previous = known.get(integration_id)
            if previous == value:
                continue
            if previous is not None and value > previous:
                db.execute(
                    "INSERT INTO changes VALUES (?, ?, ?, ?, ?)",
                    (item.account, integration_id, value, previous, _ts(item.at)),
                )
                log.info(
                    "integration_config_changed",
                    account=item.account,
                    integration_id=integration_id,
                    updated_at=_iso(value),
                    previous_updated_at=_iso(previous),
                )
            db.execute(
                "INSERT OR REPLACE INTO updates VALUES (?, ?, ?)",
                (item.account, integration_id, value),
            )
            known[integration_id] = value

    def _prune(self, db: sqlite3.Connection, at: datetime) -> None:
        """Once a day: intervals and episodes older than the retention go."""
        if self._pruned is not None and at - self._pruned < timedelta(days=1):
            return
        self._pruned = at
        horizon = _ts(at - self.retention)
        db.execute("DELETE FROM intervals WHERE until IS NOT NULL AND until < ?", (horizon,))
        db.execute("DELETE FROM episodes WHERE resolved IS NOT NULL AND resolved < ?", (horizon,))
        db.execute("DELETE FROM mutes WHERE until < ?", (horizon,))  # ended, kept as a record
        db.execute("DELETE FROM changes WHERE updated_at < ?", (horizon,))

    def _fail(self, exc: BaseException) -> None:
        reason = str(exc) or type(exc).__name__
        self._on_failure("write")
        self._let_go()  # reopened at the next batch; the failed transaction wrote no names
        self._updated = {}  # read again with the next connection
        if self._broken is None:
            log.error(
                "history_write_failed",
                path=str(self.path),
                error=reason,
                hint="polling, metrics and alerts go on; the history misses this time "
                "(recorded as unknown) until the file can be written again",
            )
        self._broken = reason
        if self.up:
            self.up = False
        self._on_status(False)

    # -- reading (any thread) -----------------------------------------------------------------

    def intervals(
        self, account: str, integration_id: int, since: datetime, until: datetime
    ) -> list[Interval]:
        """The intervals of one integration that overlap [since, until)."""
        with self._reader() as db:
            rows = db.execute(
                "SELECT state, since, until FROM intervals WHERE account = ? AND "
                "integration_id = ? AND since < ? AND (until IS NULL OR until > ?) ORDER BY since",
                (account, integration_id, _ts(until), _ts(since)),
            ).fetchall()
        return [Interval(state, _since(start), _dt(end)) for state, start, end in rows]

    def account_intervals(
        self, account: str, since: datetime, until: datetime
    ) -> dict[int, list[Interval]]:
        """Every integration's intervals of one account that overlap [since, until)."""
        times = _Times()  # one poll's transitions share their time: convert each once
        return {
            integration_id: [
                Interval(state, times.at(start), None if end is None else times.at(end))
                for state, start, end in spans
            ]
            for integration_id, spans in self.account_spans(account, since, until).items()
        }

    def account_spans(
        self, account: str, since: datetime, until: datetime
    ) -> dict[int, list[Span]]:
        """``account_intervals`` as the rows are kept (Unix times), for readers of a whole
        fleet that need no datetimes (the status page's strips)."""
        with self._reader() as db:
            rows = db.execute(
                "SELECT integration_id, state, since, until FROM intervals WHERE account = ? "
                "AND since < ? AND (until IS NULL OR until > ?) ORDER BY integration_id, since",
                (account, _ts(until), _ts(since)),
            ).fetchall()
        found: dict[int, list[Span]] = {}
        for integration_id, state, start, end in rows:
            spans = found.get(integration_id)
            if spans is None:
                spans = found[integration_id] = []
            spans.append((state, start, end))
        return found

    def accounts(self) -> list[str]:
        """Every account the file has anything of (states, names or alert episodes)."""
        with self._reader() as db:
            rows = db.execute(
                "SELECT account FROM intervals UNION SELECT account FROM integrations "
                "UNION SELECT account FROM episodes ORDER BY account"
            ).fetchall()
        return [account for (account,) in rows]

    def knows(self, account: str, integration_id: int | None = None) -> bool:
        """Whether the file has anything of the account (or of one of its integrations), at
        any time: an unknown name is not an empty history."""
        key: tuple[object, ...] = (account,)
        which = "account = ?"
        if integration_id is not None:
            key, which = (account, integration_id), "account = ? AND integration_id = ?"
        with self._reader() as db:
            return any(
                db.execute(f"SELECT 1 FROM {table} WHERE {which} LIMIT 1", key).fetchone()  # noqa: S608 - fixed names
                for table in ("intervals", "integrations", "episodes")
            )

    def changes(
        self, account: str, integration_id: int, since: datetime, until: datetime
    ) -> list[dict[str, object]]:
        """Configuration changes of one integration (updated_at within the window)."""
        with self._reader() as db:
            rows = db.execute(
                "SELECT updated_at, previous, detected FROM changes WHERE account = ? AND "
                "integration_id = ? AND updated_at >= ? AND updated_at < ? ORDER BY updated_at",
                (account, integration_id, _ts(since), _ts(until)),
            ).fetchall()
        return [
            {"updated_at": _iso(at), "previous_updated_at": _iso(before), "detected": _iso(seen)}
            for at, before, seen in rows
        ]

    def probe_states(self) -> dict[str, ShopProbe]:
        """The last probe of every target (a restart resumes them); empty without a file."""
        rows = self._saved("SELECT * FROM probes")
        found = {}
        for target, result, at, expires_at, issuer, detail, failures, failing_since in rows:
            try:
                outcome = Outcome(Result(result), _since(at), _dt(expires_at), issuer, detail)
            except ValueError:  # a result this version does not know: probed again
                continue
            found[target] = ShopProbe(target, outcome, failures, _dt(failing_since))
        return found

    def inventories(self) -> dict[str, dict[int, bool]]:
        """Per account, what its last inventory walk listed (monitored or not)."""
        found: dict[str, dict[int, bool]] = {}
        for account, integration_id, monitored, _ in self._saved("SELECT * FROM inventory"):
            found.setdefault(account, {})[integration_id] = bool(monitored)
        return found

    def _saved(self, query: str) -> list[Any]:
        """Rows of a table a start resumes from; none without a file or the table yet."""
        if not self.path.exists():
            return []
        try:
            with self._reader() as db:
                return list(db.execute(query).fetchall())
        except HistoryError as exc:
            if "no such table" in str(exc):
                return []
            raise

    def names(self, account: str) -> dict[int, Names]:
        """The last known shop name and type of every integration of ``account``."""
        with self._reader() as db:
            rows = db.execute(
                "SELECT integration_id, shop_name, integration_type FROM integrations "
                "WHERE account = ?",
                (account,),
            ).fetchall()
        return {integration_id: (name, kind) for integration_id, name, kind in rows}

    def episodes(
        self, account: str, integration_id: int | None, since: datetime, until: datetime
    ) -> list[dict[str, object]]:
        """Alert episodes of one integration (or the whole account) overlapping the window."""
        args: list[object] = [account, _ts(until), _ts(since)]
        which = ""
        if integration_id is not None:
            which = " AND integration_id = ?"
            args.append(integration_id)
        with self._reader() as db:
            # a file an older daemon still writes (schema 3) has no `started`: when fired
            columns = {row[1] for row in db.execute("PRAGMA table_info(episodes)")}
            started = "started" if "started" in columns else "fired"
            rows = db.execute(
                f"SELECT alert, integration_id, {started}, fired, escalated, resolved, cause "  # noqa: S608 - a column name
                "FROM episodes WHERE account = ? AND fired < ? AND (resolved IS NULL OR "
                f"resolved > ?){which} ORDER BY fired",
                args,
            ).fetchall()
        return [
            {
                "alert": alert,
                "integration_id": found_id,
                "started": _iso(started),
                "fired": _iso(fired),
                "escalated": _iso(escalated),
                "resolved": _iso(resolved),
                "cause": json.loads(cause) if cause else None,
            }
            for alert, found_id, started, fired, escalated, resolved, cause in rows
        ]

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection of the calling thread; raises HistoryError when the file
        cannot be read."""
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=1.0)
        except sqlite3.Error as exc:
            raise HistoryError(f"cannot read the history: {exc}") from None
        try:
            yield db
        except sqlite3.Error as exc:
            raise HistoryError(f"cannot read the history: {exc}") from None
        finally:
            db.close()


def migrate(db: sqlite3.Connection) -> None:
    """Bring the schema to SCHEMA_VERSION; a file from a newer version is refused."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise HistoryError(
            f"the history file has schema version {version}, newer than this monitor's "
            f"{SCHEMA_VERSION}: upgrade the monitor, or move the file away"
        )
    for number in range(version, SCHEMA_VERSION):
        # the daemon's writer and a CLI (mute) may both migrate: each step checks again under
        # the write lock
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("PRAGMA user_version").fetchone()[0] == number:
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {number + 1}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


def _open_intervals(db: sqlite3.Connection) -> dict[str, dict[int, str]]:
    rows = db.execute(
        "SELECT account, integration_id, state FROM intervals WHERE until IS NULL"
    ).fetchall()
    found: dict[str, dict[int, str]] = {}
    for account, integration_id, state in rows:
        found.setdefault(account, {})[integration_id] = state
    return found


def _close(db: sqlite3.Connection, account: str, integration_id: int, at: float) -> None:
    db.execute(
        "UPDATE intervals SET until = ? WHERE account = ? AND integration_id = ? AND until IS NULL",
        (at, account, integration_id),
    )


def _open_failing(
    db: sqlite3.Connection, account: str, integration_id: int, started: float, is_open: bool
) -> None:
    """A failing interval from Sendcloud's ``started_failing_at`` rather than from the poll
    that saw it — a shop failing for 40 minutes when the monitor starts has failed for 40
    minutes — but never before what the monitor recorded of the integration: the interval it
    replaces began (that interval then becomes failing as a whole: the API says it was), or the
    last one ended (after a stop). A failing interval it continues is reopened, not repeated."""
    if is_open:
        (floor,) = db.execute(
            "SELECT since FROM intervals WHERE account = ? AND integration_id = ? "
            "AND until IS NULL",
            (account, integration_id),
        ).fetchone()
        if started <= floor:
            db.execute(
                "DELETE FROM intervals WHERE account = ? AND integration_id = ? AND until IS NULL",
                (account, integration_id),
            )
            since = floor
        else:
            since = started
            _close(db, account, integration_id, since)
    else:
        (floor,) = db.execute(
            "SELECT MAX(until) FROM intervals WHERE account = ? AND integration_id = ?",
            (account, integration_id),
        ).fetchone()
        since = started if floor is None else max(started, floor)
    reopened = db.execute(
        "UPDATE intervals SET until = NULL WHERE account = ? AND integration_id = ? "
        "AND state = 'failing' AND until = ?",
        (account, integration_id, since),
    ).rowcount
    if not reopened:
        db.execute(
            "INSERT INTO intervals VALUES (?, ?, 'failing', ?, NULL)",
            (account, integration_id, since),
        )


def _write_episode(db: sqlite3.Connection, event: Mapping[str, object], at: float) -> None:
    fingerprint, kind = str(event["fingerprint"]), event["kind"]
    cause = event.get("cause")  # already redacted and allowlisted by the alerting
    text = json.dumps(cause, sort_keys=True) if isinstance(cause, dict) else None
    if kind == "fired":
        starts = event.get("starts_at")
        started = min(at, _ts(_parse(str(starts)))) if starts else at
        db.execute(
            "INSERT INTO episodes VALUES (?, ?, ?, ?, ?, NULL, NULL, ?, ?)",
            (
                fingerprint,
                event["alert"],
                event["account"],
                event["integration_id"],
                at,
                text,
                started,
            ),
        )
        return
    column = {"escalated": "escalated", "resolved": "resolved"}.get(str(kind))
    if column is not None:
        db.execute(
            f"UPDATE episodes SET {column} = ? WHERE fingerprint = ? AND resolved IS NULL",  # noqa: S608
            (at, fingerprint),
        )
    if text is not None:
        db.execute(
            "UPDATE episodes SET cause = ? WHERE fingerprint = ? AND "
            "(resolved IS NULL OR resolved = ?)",
            (text, fingerprint, at),
        )


def _ts(value: datetime) -> float:
    return value.timestamp()


def _parse(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


class _Times:
    """Unix times as datetimes, each converted once."""

    def __init__(self) -> None:
        self._seen: dict[float, datetime] = {}

    def at(self, value: float) -> datetime:
        found = self._seen.get(value)
        if found is None:
            found = self._seen[value] = datetime.fromtimestamp(value, UTC)
        return found


def _since(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _iso(value: float | None) -> str | None:
    found = _dt(value)
    return found.isoformat().replace("+00:00", "Z") if found is not None else None


class EpisodeRecorder:
    """The alerting's sink interface, writing alert episodes into the history (a reload that
    replaces the sinks replaces this one too; the store itself stays)."""

    name = "history"

    def __init__(self, store: HistoryStore, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock

    def submit(
        self,
        account: str,
        events: Sequence[Mapping[str, object]],
        firing: Sequence[Mapping[str, object]],
    ) -> None:
        now = self._clock()
        for event in events:
            if event.get("kind") != "repeat":  # a repeat changes nothing of the episode
                self._store.episode(event, now)

    async def aclose(self) -> None:
        return None
