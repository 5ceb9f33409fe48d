"""The exception-log streams' positions: each account's stream, kept across reloads (the
same object: its position and counts), its position saved in the history file after each read
(a restart resumes there, no re-read) and remembered for an account a reload removes and a
later one adds again."""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog

from monitor.history import HistoryError, HistoryStore
from monitor.sendcloud.stream import ExceptionStream, Position
from monitor.settings import AccountConfig

log = structlog.get_logger(__name__)


class Positions:
    """Each account's exception-log stream (None while exception logs are off for it)."""

    def __init__(self, history: HistoryStore | None) -> None:
        self.history = history
        #: account -> its exception-log stream; kept across reloads (position, counts)
        self.streams: dict[str, ExceptionStream] = {}
        self._positions: dict[str, tuple[int, datetime]] | None = None

    def stream(self, account: AccountConfig, window: timedelta) -> ExceptionStream | None:
        """The account's exception-log stream (None when off), resumed where it stood: the
        same object after a reload, the saved position after a restart. ``window``: the
        errors-rising rule's window."""
        if account.exception_logs_max_pages == 0:
            self.streams.pop(account.name, None)
            return None
        stream = self.streams.get(account.name)
        if stream is None:
            stream = ExceptionStream(
                horizon=timedelta(seconds=account.exception_logs_first_read_seconds)
            )
            saved = self._saved_positions().get(account.name)
            if saved is not None:
                stream.position = Position(*saved)
            name = account.name
            stream.on_position = lambda p: self._remember_position(name, p)
            self.streams[account.name] = stream
        stream.max_pages = account.exception_logs_max_pages
        stream.skew_tolerance = timedelta(seconds=account.clock_skew_tolerance_seconds)
        stream.window = window
        return stream

    def forget(self, account: str) -> None:
        """An account a reload removed: its stream goes (its position is remembered)."""
        self.streams.pop(account, None)

    def set_window(self, window: timedelta) -> None:
        """A reload's errors-rising window, for every stream."""
        for stream in self.streams.values():
            stream.window = window

    def _remember_position(self, account: str, position: Position) -> None:
        """A stream's new position: in the history file (for a restart) and here (for the
        account removed by a reload and added again by a later one)."""
        self._saved_positions()[account] = (position.last_id, position.last_time)
        if self.history is not None:
            self.history.stream_position(account, position.last_id, position.last_time)

    def _saved_positions(self) -> dict[str, tuple[int, datetime]]:
        if self._positions is None:
            self._positions = {}
            if self.history is not None:
                try:
                    self._positions = self.history.stream_positions()
                except HistoryError as exc:
                    log.warning("exception_log_positions_unreadable", error=str(exc))
        return self._positions
