"""The web views: the status document (the page and /status.json), the integration and
account pages, the badges, and the glue of the history API — read-only views of the store, the
history and the alerts, served from the HTTP server's threads."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

from pydantic import SecretStr

from monitor.alerting.cause import cause_summary, cause_text
from monitor.alerting.service import Alerter
from monitor.exporter.badges import PUBLIC_PREFIX, badge_key
from monitor.exporter.badges import public_route as public_badge_route
from monitor.exporter.badges import route as badge_route
from monitor.exporter.pages import account_page, integration_page, not_found_page
from monitor.exporter.status import Cause, MaintenanceWindow, Status
from monitor.exporter.status import build as build_status
from monitor.history import HistoryError, HistoryStore, availability
from monitor.history.availability import STRIP_DAYS, Interval, Summary, summary_of_spans
from monitor.history.documents import route as history_route
from monitor.history.mutes import QuietSource
from monitor.notify.quiet import Hold, TimeInterval
from monitor.settings import AccountConfig, ProbeSettings, mute_target_problem
from monitor.store import AccountSnapshot, Store

#: The status page's history strips are computed at most this often (they change by the day).
SUMMARY_SECONDS = 60.0


class Views:
    """What the HTTP server shows (its threads call these). ``holds``: what the quiet gate
    holds at a time; ``alerter``, ``probes`` and ``accounts``: as they are now (the alerter
    exists once the daemon runs; a reload changes the others)."""

    def __init__(
        self,
        store: Store,
        history: HistoryStore | None,
        quiet: QuietSource,
        holds: Callable[[datetime], Mapping[tuple[str, int], Hold]],
        clock: Callable[[], datetime],
        *,
        alerter: Callable[[], Alerter | None],
        probes: Callable[[], ProbeSettings],
        accounts: Callable[[], Sequence[AccountConfig]],
        auth: bool,
        badge_secret: SecretStr | None,
    ) -> None:
        self.store = store
        self.history = history
        self.quiet = quiet
        self._holds = holds
        self._clock = clock
        self._alerter = alerter
        self._probes = probes
        self._accounts = accounts
        self._auth = auth
        self._badge_secret = badge_secret
        self._badge_keys = self._keys()
        #: (when, summaries): the strips change by the day, the windows by the minute
        self._summaries_cache: tuple[float, dict[tuple[str, int], Summary]] | None = None

    def status(self) -> tuple[Status, datetime]:
        """The status document and its time, for the page and /status.json (server threads)."""
        now = self._clock()
        alerter = self._alerter()
        firing, causes = alerter.firing_by_integration() if alerter else ({}, {})
        count = sum(alerter.firing_counts().values()) if alerter else 0
        snapshots = self.store.snapshots()
        document = build_status(
            snapshots,
            now,
            firing=firing,
            causes={key: Cause(cause_summary(c), cause_text(c)) for key, c in causes.items()},
            firing_alerts=count,
            certificate_warning_days=self._probes().certificate_warning_days,
            history=self._summaries(snapshots, now),
            holds={key: hold.text for key, hold in self._holds(now).items()},
            maintenance=self._maintenance(now),
            notices=tuple(n for n in [self.quiet.notice()] if n is not None),
        )
        return document, now

    def page(self, path: str, base_url: str = "") -> tuple[int, str]:
        """``/integrations/{account}/{id}`` and ``/accounts/{account}`` (server threads)."""
        parts = [unquote(p) for p in path.strip("/").split("/")]
        document, now = self.status()
        since = now - timedelta(days=STRIP_DAYS)
        if len(parts) == 3 and parts[0] == "integrations" and parts[2].isdigit():
            account, integration_id = parts[1], int(parts[2])
            row = next(
                (
                    r
                    for r in document.integrations
                    if (r.account, r.integration_id) == (account, integration_id)
                ),
                None,
            )
            if row is None:
                return 404, not_found_page("no such integration is watched here")
            intervals, past = self._past(account, integration_id, since, now)
            return 200, integration_page(
                row, intervals, past, now, self._changes(account, integration_id, since, now)
            )
        if len(parts) == 2 and parts[0] == "accounts":
            account = parts[1]
            rows = [r for r in document.integrations if r.account == account]
            if not rows and account not in self.store.snapshots():
                return 404, not_found_page("no such account is watched here")
            by_id: dict[int, list[Interval]] = {}
            episodes: list[dict[str, object]] = []
            if self.history is not None:
                with contextlib.suppress(HistoryError):
                    by_id = self.history.account_intervals(account, since, now)
                    episodes = _with_cause_text(self.history.episodes(account, None, since, now))
            figures = [
                (r, availability(by_id[r.integration_id], since, now, now))
                if r.integration_id in by_id
                else (r, None)
                for r in rows
            ]
            badges = self._badge_base(account, base_url)
            return 200, account_page(account, figures, episodes, now, badges)
        return 404, not_found_page("not found")

    def api(self, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        """The history API (``/api/v1/``, but for the mutes)."""
        return history_route(self.history, path, query, self._clock())

    def badges(self, path: str, query: dict[str, list[str]]) -> tuple[int, str]:
        """``/badge/``: behind the web configuration's basic auth, if any."""
        return badge_route(path, query, self.state_of, self.uptime_of)

    def public_badges(self, path: str, query: dict[str, list[str]]) -> tuple[int, str]:
        """``/public/badge/``: served without credentials, by each account's badge key."""
        return public_badge_route(path, query, self._badge_keys, self.state_of, self.uptime_of)

    def mute_problem(self, account: str, integration_id: int | None) -> str | None:
        """Why a mute would hold nothing here (POST /api/v1/mutes; server threads): the
        accounts this monitor polls now, after any reload."""
        watched = {a.name: a.integration_ids for a in self._accounts()}
        return mute_target_problem(watched, account, integration_id)

    def set_badge_secret(self, secret: SecretStr | None) -> None:
        """A reload's badge secret (and the accounts it configured): the badge keys anew."""
        self._badge_secret = secret
        self._badge_keys = self._keys()

    def _keys(self) -> dict[str, str]:
        """Each account's badge key -> its name (none without a badge secret)."""
        if self._badge_secret is None:
            return {}
        secret = self._badge_secret.get_secret_value()
        return {badge_key(secret, a.name): a.name for a in self._accounts()}

    def _badge_base(self, account: str, base_url: str) -> str | None:
        """Where the account's badges are served without credentials (None: nowhere)."""
        if not self._auth:
            return f"{base_url}/badge/{quote(account, safe='')}"
        if self._badge_secret is None:
            return None
        key = badge_key(self._badge_secret.get_secret_value(), account)
        return f"{base_url}{PUBLIC_PREFIX}{key}"

    def _past(
        self, account: str, integration_id: int, since: datetime, now: datetime
    ) -> tuple[list[Interval], list[dict[str, object]]]:
        if self.history is None:
            return [], []
        try:
            intervals = self.history.intervals(account, integration_id, since, now)
            episodes = self.history.episodes(account, integration_id, since, now)
        except HistoryError:
            return [], []
        return intervals, _with_cause_text(episodes)

    def _changes(
        self, account: str, integration_id: int, since: datetime, now: datetime
    ) -> list[dict[str, object]]:
        """Configuration changes of one integration (none without a history)."""
        if self.history is None:
            return []
        try:
            return self.history.changes(account, integration_id, since, now)
        except HistoryError:
            return []

    def state_of(self, account: str, integration_id: int) -> str | None:
        """An integration's state now, as the status page shows it (server threads)."""
        snapshot = self.store.snapshots().get(account)
        observation = snapshot.integrations.get(integration_id) if snapshot else None
        return observation.state.value if observation is not None else None

    def uptime_of(self, account: str, integration_id: int, span: timedelta) -> float | None:
        """Availability over the last ``span`` from the history (server threads)."""
        if self.history is None:
            return None
        now = self._clock()
        try:
            intervals = self.history.intervals(account, integration_id, now - span, now)
        except HistoryError:
            return None
        return availability(intervals, now - span, now, now).ratio

    def _maintenance(self, now: datetime) -> tuple[MaintenanceWindow, ...]:
        """The windows active now or starting within a week, for the status page."""
        found = []
        for window in self.quiet.windows:
            matchers = {
                k: v for k, v in dataclasses.asdict(window.matchers).items() if v is not None
            }
            if window.active(now):
                starts = window.start if window.interval is None else _began(window.interval, now)
                found.append(
                    MaintenanceWindow(
                        window.name, matchers, _rfc3339(starts), _rfc3339(window.until(now)), True
                    )
                )
                continue
            starts = window.next_start(now)
            if starts is not None and starts - now <= timedelta(days=7):
                found.append(
                    MaintenanceWindow(
                        window.name,
                        matchers,
                        _rfc3339(starts),
                        _rfc3339(window.until(starts)),
                        False,
                    )
                )
        return tuple(found)

    def _summaries(
        self, snapshots: Mapping[str, AccountSnapshot], now: datetime
    ) -> dict[tuple[str, int], Summary]:
        """The last 30 days of every integration from the history (empty without one, or
        while it cannot be read: the page then says "no history")."""
        if self.history is None:
            return {}
        cached = self._summaries_cache
        if cached is not None and time.monotonic() - cached[0] < SUMMARY_SECONDS:
            return cached[1]
        found: dict[tuple[str, int], Summary] = {}
        since = now - timedelta(days=STRIP_DAYS)
        for account in snapshots:
            try:
                spans = self.history.account_spans(account, since, now)
            except HistoryError:
                return {}
            for integration_id, mine in spans.items():
                found[(account, integration_id)] = summary_of_spans(mine, now)
        self._summaries_cache = (time.monotonic(), found)
        return found


def _with_cause_text(episodes: list[dict[str, object]]) -> list[dict[str, object]]:
    """Episodes with their cause as one line of text (the alerting's wording) and as a short
    phrase (``cause_summary``)."""
    return [
        {
            **e,
            "cause": cause_text(e["cause"]) if isinstance(e["cause"], dict) else None,
            "cause_summary": cause_summary(e["cause"]) if isinstance(e["cause"], dict) else None,
        }
        for e in episodes
    ]


def _rfc3339(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _began(interval: TimeInterval, now: datetime) -> datetime | None:
    """When the occurrence of a recurring window in force at ``now`` began (None: more than
    a day ago), from the minute ``now`` falls in."""
    return _began_at(interval, now.replace(second=0, microsecond=0))


@functools.lru_cache(maxsize=64)
def _began_at(interval: TimeInterval, minute: datetime) -> datetime | None:
    for _ in range(24 * 60):
        earlier = minute - timedelta(minutes=1)
        if not interval.contains(earlier):
            return minute
        minute = earlier
    return None
