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
"""

from __future__ import annotations

import contextlib
import json
import queue
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
    # 4: configuration changes (updated_at moved), the last updated_at of each integration,
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


class HistoryError(Exception):
    """The history file cannot be used (the reason is in the message)."""


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

    def start(self) -> None:
        self._thread.start()

    def record(self, snapshot: AccountSnapshot, at: datetime) -> None:
        """One account's poll: the state of each of its integrations as of ``at``."""
        states = {i: recorded_state(o) for i, o in snapshot.integrations.items()}
        seen = self._records.setdefault(snapshot.account, {})
        names = {}
        updated = {}
        for integration_id, observation in snapshot.integrations.items():
            record = observation.record
            if record is not None and seen.get(integration_id) is not record:
                seen[integration_id] = record  # a list walk keeps unchanged records as they are
                names[integration_id] = (record.shop_name, record.type)
                if record.updated_at is not None and observation.status is ReadOutcome.OK:
                    updated[integration_id] = record.updated_at
        self._put(_Poll(snapshot.account, at, states, names, updated))

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
            item = self._queue.get()
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
                return

    def _write(self, batch: list[_Item]) -> None:
        if not batch:
            return
        try:
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
        db = sqlite3.connect(self.path, timeout=1.0, isolation_level=None, check_same_thread=True)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            migrate(db)
            self._open = _open_intervals(db)
            self._updated = {}
            for account, integration_id, updated_at in db.execute("SELECT * FROM updates"):
                self._updated.setdefault(account, {})[integration_id] = updated_at
            last = db.execute("SELECT value FROM meta WHERE key = 'last_write'").fetchone()
            if self._open and last is not None:  # a crash: they end where the file stopped
                with db:
                    db.execute("UPDATE intervals SET until = ? WHERE until IS NULL", (last[0],))
                self._open = {}
        except BaseException:
            db.close()
            raise
        db.isolation_level = "DEFERRED"
        self._db = db
        return db

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
        db.execute("DELETE FROM changes WHERE updated_at < ?", (horizon,))

    def _fail(self, exc: BaseException) -> None:
        reason = str(exc) or type(exc).__name__
        self._on_failure("write")
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None  # reopened at the next batch
        self._names = {}  # the failed transaction wrote none of them
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
        query = (
            "SELECT alert, integration_id, fired, escalated, resolved, cause FROM episodes "
            "WHERE account = ? AND fired < ? AND (resolved IS NULL OR resolved > ?)"
        )
        args: list[object] = [account, _ts(until), _ts(since)]
        if integration_id is not None:
            query += " AND integration_id = ?"
            args.append(integration_id)
        with self._reader() as db:
            rows = db.execute(query + " ORDER BY fired", args).fetchall()
        return [
            {
                "alert": alert,
                "integration_id": found_id,
                "fired": _iso(fired),
                "escalated": _iso(escalated),
                "resolved": _iso(resolved),
                "cause": json.loads(cause) if cause else None,
            }
            for alert, found_id, fired, escalated, resolved, cause in rows
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


def _write_episode(db: sqlite3.Connection, event: Mapping[str, object], at: float) -> None:
    fingerprint, kind = str(event["fingerprint"]), event["kind"]
    cause = event.get("cause")  # already redacted and allowlisted by the alerting
    text = json.dumps(cause, sort_keys=True) if isinstance(cause, dict) else None
    if kind == "fired":
        db.execute(
            "INSERT INTO episodes VALUES (?, ?, ?, ?, ?, NULL, NULL, ?)",
            (fingerprint, event["alert"], event["account"], event["integration_id"], at, text),
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
