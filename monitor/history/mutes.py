"""Mutes, kept in the history file: the CLI (``mute``, ``unmute``, ``mutes``) and the daemon's
``/api/v1/mutes`` write the same table the running daemon reads, so whoever may write the state
directory may mute, and a mute survives restarts. Mutes expire by themselves (``until``);
ended ones stay in the file as a record and are pruned with the history's retention (those
that ended longer than ``history.retention_days`` ago go with the day's pruning).

Without a history file (no state directory) the daemon keeps its mutes in memory only.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from monitor.history.store import HistoryError, migrate
from monitor.notify.quiet import Mute, Quiet, Window, parse_duration

log = structlog.get_logger(__name__)

#: The longest a mute may last (a forgotten mute must not silence a shop for good).
MAX_MUTE_DAYS = 31


class MuteStore:
    """The mutes of one history file (or of memory, without one). ``expected`` says whether the
    file must exist (the daemon's writer has it open): a missing file is then an error, never
    "no mutes" — it was removed, and the writer is about to write it again."""

    def __init__(self, path: Path | None, *, expected: Callable[[], bool] = lambda: False) -> None:
        self.path = path
        self._expected = expected
        self._memory: dict[str, Mute] = {}
        self._lock = threading.Lock()

    def _missing(self) -> HistoryError:
        return HistoryError(f"the history file {self.path} is missing (removed while in use?)")

    def add(
        self,
        *,
        account: str,
        until: datetime,
        reason: str,
        author: str,
        now: datetime,
        integration_id: int | None = None,
        integration_type: str | None = None,
    ) -> Mute:
        if until <= now:
            raise ValueError("a mute must end in the future")
        if (until - now).days >= MAX_MUTE_DAYS:
            raise ValueError(f"a mute lasts at most {MAX_MUTE_DAYS} days")
        if not reason.strip():
            raise ValueError("a mute needs a reason")
        if integration_id is not None and integration_type is not None:
            raise ValueError("mute one integration or one integration type, not both")
        mute = Mute(
            id=secrets.token_hex(4),
            account=account,
            until=until,
            reason=reason.strip()[:500],
            author=author,
            created=now,
            integration_id=integration_id,
            integration_type=integration_type,
        )
        if self.path is None:
            with self._lock:
                self._memory[mute.id] = mute
            return mute
        with self._writer() as db:
            db.execute(
                "INSERT INTO mutes VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    mute.id,
                    mute.account,
                    mute.integration_id,
                    mute.integration_type,
                    now.timestamp(),
                    until.timestamp(),
                    mute.reason,
                    mute.author,
                ),
            )
        return mute

    def remove(self, mute_id: str, now: datetime) -> Mute | None:
        """Ends a mute now (it stays on record, ended); None when no active mute has that id."""
        found = [m for m in self.active(now) if m.id == mute_id]
        if not found:
            return None
        if self.path is None:
            with self._lock:
                self._memory.pop(mute_id, None)
        else:
            with self._writer() as db:
                db.execute("UPDATE mutes SET until = ? WHERE id = ?", (now.timestamp(), mute_id))
        return found[0]

    def active(self, now: datetime) -> list[Mute]:
        """The mutes in force at ``now``, oldest first; raises HistoryError."""
        if self.path is None:
            with self._lock:
                return sorted(
                    (m for m in self._memory.values() if m.until > now), key=lambda m: m.created
                )
        if not self.path.exists():
            if self._expected():
                raise self._missing()
            return []
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=1.0)
        except sqlite3.Error as exc:
            raise HistoryError(f"cannot read the mutes: {exc}") from None
        try:
            rows = db.execute(
                "SELECT id, account, integration_id, integration_type, created, until, reason, "
                "author FROM mutes WHERE until > ? ORDER BY created, rowid",
                (now.timestamp(),),
            ).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # a file the daemon has not migrated yet
                return []
            raise HistoryError(f"cannot read the mutes: {exc}") from None
        except sqlite3.Error as exc:
            raise HistoryError(f"cannot read the mutes: {exc}") from None
        finally:
            db.close()
        return [_mute(*row) for row in rows]

    @contextlib.contextmanager
    def _writer(self) -> Iterator[sqlite3.Connection]:
        assert self.path is not None
        if self._expected() and not self.path.exists():
            raise self._missing()  # a new file here would hide the one being written again
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise HistoryError(f"cannot write the mutes to {self.path}: {exc}") from None
        try:
            db.execute("PRAGMA journal_mode=WAL")
            migrate(db)
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise HistoryError(f"cannot write the mutes to {self.path}: {exc}") from None
        finally:
            db.close()


def _mute(
    mute_id: str,
    account: str,
    integration_id: int | None,
    integration_type: str | None,
    created: float,
    until: float,
    reason: str,
    author: str,
) -> Mute:
    return Mute(
        id=mute_id,
        account=account,
        integration_id=integration_id,
        integration_type=integration_type,
        created=datetime.fromtimestamp(created, UTC),
        until=datetime.fromtimestamp(until, UTC),
        reason=reason,
        author=author,
    )


def mute_request(body: bytes, now: datetime) -> dict[str, Any]:
    """The fields of a POST /api/v1/mutes body; raises ValueError with what is wrong."""
    try:
        document = json.loads(body or b"null")
    except ValueError:
        raise ValueError("the body must be JSON") from None
    if not isinstance(document, dict):
        raise ValueError("the body must be a JSON object")
    allowed = {"account", "integration_id", "integration_type", "for", "until", "reason"}
    unknown = sorted(set(document) - allowed)
    if unknown:
        raise ValueError(f"unknown fields: {', '.join(unknown)}")
    account = document.get("account")
    if not isinstance(account, str) or not account:
        raise ValueError("account is required")
    integration_id = document.get("integration_id")
    if integration_id is not None and (
        not isinstance(integration_id, int) or isinstance(integration_id, bool)
    ):
        raise ValueError("integration_id must be a number")
    kind = document.get("integration_type")
    if kind is not None and not isinstance(kind, str):
        raise ValueError("integration_type must be a string")
    reason = document.get("reason")
    if not isinstance(reason, str):
        raise ValueError("reason is required")
    if ("for" in document) == ("until" in document):
        raise ValueError("give either for (e.g. 2h) or until (RFC 3339)")
    if "for" in document:
        until = now + parse_duration(str(document["for"]))
    else:
        try:
            until = datetime.fromisoformat(str(document["until"]))
        except ValueError:
            raise ValueError("until must be an RFC 3339 time") from None
        if until.tzinfo is None:
            raise ValueError("until needs an offset, e.g. Z")
    return {
        "account": account,
        "integration_id": integration_id,
        "integration_type": kind,
        "until": until,
        "reason": reason,
    }


#: How often the daemon reads the mutes again (a mute made by the CLI applies within this).
REFRESH_SECONDS = 1.0


class QuietSource:
    """What is quiet now, for the daemon: the configured windows and the mutes of the store,
    read again at most once a second. A store that cannot be read keeps the last mutes known
    (one warning line), never none; ``problem`` says why while it lasts (the status page shows
    it) and ``on_status`` hears whether the mutes could be read (a metric)."""

    def __init__(
        self,
        mutes: MuteStore,
        windows: tuple[Window, ...],
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
        on_status: Callable[[bool], None] = lambda readable: None,
    ) -> None:
        self.mutes = mutes
        self.windows = windows
        self._clock = clock
        self._monotonic = monotonic
        self._on_status = on_status
        self._known: tuple[Mute, ...] = ()
        self._read_at: float | None = None
        self._ever_read = False
        #: why the mutes cannot be read now, or None
        self.problem: str | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Quiet:
        with self._lock:
            now = self._monotonic()
            if self._read_at is None or now - self._read_at >= REFRESH_SECONDS:
                self._read_at = now
                try:
                    self._known = tuple(self.mutes.active(self._clock()))
                except HistoryError as exc:
                    if self.problem is None:
                        log.warning("mutes_unreadable", error=str(exc), kept=len(self._known))
                    self.problem = str(exc)
                    self._on_status(False)
                else:
                    if self.problem is not None:
                        log.info("mutes_readable", mutes=len(self._known))
                    self.problem = None
                    self._ever_read = True
                    self._on_status(True)
            return Quiet(self.windows, self._known)

    def notice(self) -> str | None:
        """For the operator, while the mutes cannot be read: which mutes are applied."""
        self()
        problem = self.problem
        if problem is None:
            return None
        if not self._ever_read:
            return (
                f"Mutes are not applied: they cannot be read ({problem}). Mutes made with "
                "`integration-monitor mute` or the API are ignored until the history file can "
                "be read."
            )
        return (
            f"Mutes cannot be read ({problem}): the {len(self._known)} mutes read before stay "
            "in force; new mutes and unmutes are not applied until the history file can be read."
        )

    def refresh(self) -> None:
        """Read the mutes at the next call (after a change through the API)."""
        with self._lock:
            self._read_at = None
