"""The status of every integration at a glance: one document for the status page, for
``/status.json`` and for ``check``. Pure: snapshots, firing alerts and ``now`` in, data out.

Everything shown comes from the health derived at the last read (:mod:`monitor.health`); only
the elapsed times are extended to ``now`` (frozen while an integration cannot be read), exactly
as the metrics do.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote

from monitor import __version__
from monitor.health import State
from monitor.history.availability import Summary
from monitor.probes.results import days_left, describe
from monitor.store import AccountSnapshot, Findings, Observation

#: Problems first (the order of the page and of ``check``'s table).
STATE_ORDER = {
    State.FAILING: 0,
    State.STALE: 1,
    State.NOT_FOUND: 2,
    State.UNKNOWN: 3,
    State.HEALTHY: 4,
}
#: The page shows this many rows; /status.json always has all of them.
PAGE_ROWS = 2000


@dataclass(frozen=True, slots=True)
class Row:
    account: str
    integration_id: int
    shop_name: str | None
    shop_url: str | None  # userinfo, query and fragment already stripped at parse time
    integration_type: str | None
    state: str
    failing_seconds: float | None
    staleness_seconds: float | None
    last_fetched_at: str | None
    last_read_at: str | None
    alerts: tuple[str, ...]  # alerts firing for this integration
    cause: str | None  # exception type and message of a firing alert's cause
    #: set while the integration cannot be read: ``state`` is then its last known state
    unreadable_since: str | None = None
    #: its last 30 days and availability over 24 h, 7 d and 30 d (with a history file)
    history: Summary | None = None
    #: "in maintenance (NAME) until T" or "muted by WHO until T: WHY" while notifications wait
    quiet: str | None = None
    #: the cause as a short phrase ("shop answered 503", "TLS certificate expired")
    cause_summary: str | None = None
    #: when it started failing by Sendcloud's ``started_failing_at`` (while failing)
    failing_since: str | None = None
    #: the last probe of its shop: result, the certificate's notAfter and days left
    probe_result: str | None = None
    certificate_expires_at: str | None = None
    certificate_days_left: float | None = None
    #: fewer days left than probes.certificate_warning_days
    certificate_expiring: bool = False
    #: the configuration checks that fail (checks.ignore left out)
    failed_checks: tuple[str, ...] = ()
    #: the probe and the failed checks in plain words
    findings: tuple[str, ...] = ()

    @property
    def problem(self) -> bool:
        return self.state != State.HEALTHY or self.warned

    @property
    def warned(self) -> bool:
        """A certificate expiring or a configuration check failing (``check``: WARNING)."""
        return self.certificate_expiring or bool(self.failed_checks)


@dataclass(frozen=True, slots=True)
class AccountStatus:
    name: str
    last_cycle_success: str | None
    api_error: str | None
    auth_ok: bool
    #: integrations of the account nobody monitors (configured IDs; None: not known)
    unmonitored: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """A maintenance window active now or starting within a week, as data (``/status.json``)
    and as a line of the page."""

    name: str
    #: the labels it holds (``account``, ``alert``, ``severity``, ``integration_type``,
    #: ``integration_id``); empty: every alert
    matchers: dict[str, str | int]
    #: RFC 3339: when it begins, or when the occurrence in force began (None: over a day ago)
    start: str | None
    #: RFC 3339: when it ends (None: not within the next month)
    end: str | None
    active: bool

    def text(self) -> str:
        """``nightly (account=acme-*): now, until 2026-12-08T03:00Z``."""
        scope = ", ".join(f"{k}={v}" for k, v in self.matchers.items())
        named = f"{self.name} ({scope})" if scope else self.name
        until = f" until {_minutes(self.end)}" if self.end else ""
        if self.active:
            return f"{named}: now" + ("," + until if until else "")
        return f"{named}: from {_minutes(self.start)}{until}"


def _minutes(value: str | None) -> str:
    """An RFC 3339 time in UTC to the minute: ``2026-12-08T03:00Z``."""
    return value[:16] + "Z" if value is not None else "?"


@dataclass(frozen=True, slots=True)
class Status:
    generated_at: str
    version: str
    accounts: tuple[AccountStatus, ...]
    firing_alerts: int
    integrations: tuple[Row, ...]
    #: maintenance windows active now or starting within a week
    maintenance: tuple[MaintenanceWindow, ...] = ()
    #: what the operator must know about the monitor itself (mutes that are not applied)
    notices: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Stable keys, documented in the README (``/status.json``, ``check --output json``)."""
        document = asdict(self)
        for row, source in zip(document["integrations"], self.integrations, strict=True):
            row["alerts"] = list(row["alerts"])
            row["failed_checks"] = list(row["failed_checks"])
            row["findings"] = list(row["findings"])
            del row["history"]
            row["availability"] = dict(source.history.windows) if source.history else None
        for account in document["accounts"]:
            if account["unmonitored"] is not None:
                account["unmonitored"] = list(account["unmonitored"])
        document["summary"] = summary_counts(self.integrations)
        return document


@dataclass(frozen=True, slots=True)
class Cause:
    """A firing alert's cause: a short phrase to read, and the text it came from."""

    summary: str  # "shop answered 503", "TLS certificate expired", "connection timed out"
    text: str  # exception type and message (redacted), and the response code


FiringAlerts = Mapping[tuple[str, int], Iterable[str]]  # (account, id) -> alert names
Causes = Mapping[tuple[str, int], Cause]  # (account, id) -> its cause
Histories = Mapping[tuple[str, int], Summary]  # (account, id) -> its last 30 days
Holds = Mapping[tuple[str, int], str]  # (account, id) -> why its notifications wait


def build(
    snapshots: Mapping[str, AccountSnapshot],
    now: datetime,
    *,
    firing: FiringAlerts | None = None,
    causes: Causes | None = None,
    firing_alerts: int = 0,
    history: Histories | None = None,
    holds: Holds | None = None,
    maintenance: tuple[MaintenanceWindow, ...] = (),
    notices: tuple[str, ...] = (),
    certificate_warning_days: float = 14.0,
) -> Status:
    firing = firing or {}
    causes = causes or {}
    history = history or {}
    holds = holds or {}
    rows = [
        _with_findings(
            _row(account, observation, now, firing, causes, history, holds),
            snapshot.findings.get(observation.integration_id),
            now,
            certificate_warning_days,
        )
        for account, snapshot in snapshots.items()
        for observation in snapshot.integrations.values()
    ]
    rows.sort(key=_order)
    return Status(
        generated_at=_iso(now.replace(microsecond=0)) or "",
        version=__version__,
        accounts=tuple(
            AccountStatus(
                name=s.account,
                last_cycle_success=_iso(s.last_cycle_success),
                api_error=s.account_error,
                unmonitored=s.unmonitored,
                auth_ok=s.auth_ok,
            )
            for s in snapshots.values()
        ),
        firing_alerts=firing_alerts,
        integrations=tuple(rows),
        maintenance=maintenance,
        notices=notices,
    )


def _row(
    account: str,
    observation: Observation,
    now: datetime,
    firing: FiringAlerts,
    causes: Causes,
    history: Histories,
    holds: Holds,
) -> Row:
    record, health = observation.record, observation.health
    at = observation.values_at(now)
    key = (account, observation.integration_id)
    cause = causes.get(key)
    return Row(
        account=account,
        integration_id=observation.integration_id,
        shop_name=record.shop_name if record else None,
        shop_url=record.shop_url if record else None,
        integration_type=record.type if record else None,
        state=observation.state.value,
        failing_seconds=health.failing_seconds_at(at) if health and at and health.failing else None,
        staleness_seconds=health.staleness_seconds_at(at) if health and at else None,
        last_fetched_at=_iso(record.last_fetched_at) if record else None,
        last_read_at=_iso(observation.last_success),
        alerts=tuple(sorted(firing.get(key, ()))),
        cause=cause.text if cause else None,
        unreadable_since=_iso(observation.unreadable_since),
        history=history.get(key),
        quiet=holds.get(key),
        cause_summary=cause.summary if cause else None,
        failing_since=_iso(health.failing_since) if health and health.failing else None,
    )


def _order(row: Row) -> tuple[int, float, str, int]:
    duration = row.failing_seconds if row.state == State.FAILING else row.staleness_seconds
    return (STATE_ORDER[State(row.state)], -(duration or 0.0), row.account, row.integration_id)


def summary_counts(rows: Iterable[Row]) -> dict[str, int]:
    counts = {state.value: 0 for state in STATE_ORDER}
    unreadable = 0
    for row in rows:
        counts[row.state] += 1
        unreadable += row.unreadable_since is not None
    return {**counts, "unreadable": unreadable}


def duration(seconds: float | None) -> str:
    """``2d 3h``, ``4h 12m``, ``7m``, ``45s``; ``-`` for none."""
    if seconds is None:
        return "-"
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m" if minutes else f"{secs}s"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


# -- HTML ----------------------------------------------------------------------------------------

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1d2330}
h1{font-size:1.3rem;margin:0 0 .3rem}header p{margin:.2rem 0;color:#4a5263}
table{border-collapse:collapse;width:100%;margin-top:1rem}
th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #e3e6ec;vertical-align:top}
th{background:#f4f6f9;font-weight:600}tr.failing{background:#fdecec}tr.stale{background:#fff6e0}
tr.not_found,tr.unknown{background:#f1f1f4}
.state{font-weight:600;padding:.1rem .45rem;border-radius:.3rem;white-space:nowrap}
.state.failing{background:#c62828;color:#fff}.state.stale{background:#f9a825;color:#1d2330}
.state.not_found{background:#6a1b9a;color:#fff}.state.unknown{background:#616161;color:#fff}
.state.healthy{background:#2e7d32;color:#fff}
.muted{color:#6b7280}nav a{margin-right:1rem}input{padding:.3rem;width:18rem;max-width:100%}
time,.nowrap,td.num{white-space:nowrap}
.sub{display:none;font-size:.85em}
.note{display:block;font-size:.85em;color:#4a5263;margin-top:.25rem;max-width:16rem;
overflow-wrap:anywhere}
.note .state{font-size:1em}
td.cause{min-width:8rem;max-width:24rem;overflow-wrap:anywhere}
details summary{cursor:pointer}
details .raw{font:12px/1.35 ui-monospace,monospace;color:#4a5263;margin-top:.25rem;
overflow-wrap:anywhere;white-space:pre-wrap}
.alarm{background:#c62828;color:#fff;padding:.6rem .8rem;border-radius:.3rem;margin:.6rem 0}
.alarm a{color:#fff}
.warning{background:#fff6e0;border-left:4px solid #f9a825;padding:.5rem .8rem;margin:.6rem 0}
.strip{display:inline-flex;gap:1px}.day{display:inline-block;width:6px;height:18px;border-radius:1px}
.day.healthy{background:#2e7d32}.day.failing{background:#c62828}.day.stale{background:#f9a825}
.day.not_found{background:#6a1b9a}.day.unknown{background:#c4c7cc}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
pre.embed{background:#f4f6f9;padding:.5rem;overflow-wrap:anywhere;white-space:pre-wrap;
font-size:12px}
.window{display:inline-block;white-space:nowrap;margin-right:.6rem}
@media (max-width:1100px){body{margin:1rem}th,td{padding:.3rem .4rem}.day{width:4px}
.wide{display:none}.sub{display:block}}
@media (max-width:900px){.strip-cell{display:none}}
.notice{background:#c62828;color:#fff;padding:.4rem .6rem;border-radius:.3rem;font-weight:600}
"""
_SCRIPT = """
document.getElementById('filter').addEventListener('input', function (e) {
  var needle = e.target.value.toLowerCase();
  document.querySelectorAll('tbody tr').forEach(function (row) {
    row.hidden = needle !== '' && row.textContent.toLowerCase().indexOf(needle) < 0;
  });
});
"""


def _with_findings(row: Row, findings: Findings | None, now: datetime, warning: float) -> Row:
    """The row with what the probe of its shop and the checks found."""
    if findings is None:
        return row
    probe = findings.probe
    words = [describe(probe, now)] if probe is not None else []
    words += [failed.text for failed in findings.failed]
    expires = probe.outcome.expires_at if probe is not None else None
    left = days_left(expires, now) if expires is not None else None
    return replace(
        row,
        probe_result=str(probe.result) if probe is not None else None,
        certificate_expires_at=_iso(expires),
        certificate_days_left=round(left, 3) if left is not None else None,
        certificate_expiring=left is not None and left < warning,
        failed_checks=tuple(failed.check for failed in findings.failed),
        findings=tuple(words),
    )


#: Columns of the table; ``wide`` ones give way on narrow screens (below 1100 px).
COLUMNS = (
    ("Account", ""),
    ("Shop", ""),
    ("Type", "wide"),
    ("State", ""),
    ("Failing for", ""),
    ("Last fetched", ""),
    ("Last read", "wide"),
    ("Cause", ""),
    ("Last 30 days", "strip-cell"),
    ("24 h · 7 d · 30 d", ""),
    ("Shop checks", ""),
)
#: Above this many accounts, those that read fine are summed up in one line.
ACCOUNT_LINES = 5


def render_html(status: Status, now: datetime) -> str:
    """The status page: server-rendered, every value from the API escaped, no external asset,
    readable without JavaScript (a few lines filter the rows when it runs). Every time is
    relative, its exact UTC time on hover; it fits a window of 800 px without scrolling
    sideways."""
    counts = summary_counts(status.integrations)
    shown = status.integrations[:PAGE_ROWS]
    with_rows = {row.account for row in status.integrations}
    head = "".join(
        f"<th class='{css}'>{name}</th>" if css else f"<th>{name}</th>" for name, css in COLUMNS
    )
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta http-equiv='refresh' content='30'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<title>Sendcloud integration monitor</title>",
        f"<style>{STYLE}</style></head><body><header>",
        "<h1>Sendcloud integrations</h1>",
        f"<p>{_counts_line(counts)} · {status.firing_alerts} alerts firing"
        f" · version {escape(status.version)} · generated {when(status.generated_at, now)}</p>",
        *(_account_alarm(account, now) for account in status.accounts),
        _accounts_line(status.accounts, now),
        *(f"<p class='quiet'>Maintenance: {escape(m.text())}</p>" for m in status.maintenance),
        *(f"<p class='notice' role='alert'>{escape(n)}</p>" for n in status.notices),
        "<nav><a href='/metrics'>/metrics</a><a href='/healthz'>/healthz</a>"
        "<a href='/readyz'>/readyz</a><a href='/status.json'>/status.json</a></nav>",
        "</header><p><label>Filter <input id='filter' type='search' "
        "placeholder='shop, type, state, account'></label></p>",
        f"<table><thead><tr>{head}</tr></thead><tbody>",
        *(
            _account_row(account)
            for account in status.accounts
            if account.name not in with_rows and _account_problem(account)
        ),
        *(_row_html(row, now) for row in shown),
        "</tbody></table>",
    ]
    if len(status.integrations) > len(shown):
        hidden = len(status.integrations) - len(shown)
        parts.append(
            f"<p class='muted'>{hidden} more integrations (all healthy or less urgent than the "
            "ones above): see <a href='/status.json'>/status.json</a>.</p>"
        )
    parts.append(f"<script>{_SCRIPT}</script></body></html>")
    return "".join(parts)


def _counts_line(counts: Mapping[str, int]) -> str:
    return " · ".join(f"{n} {state.replace('_', ' ')}" for state, n in counts.items())


def _account_problem(account: AccountStatus) -> bool:
    return not account.auth_ok or account.api_error is not None


def _account_alarm(account: AccountStatus, now: datetime) -> str:
    """An account whose keys are rejected is an alarm: none of its shops is being checked."""
    name = f"<a href='{account_link(account.name)}'>{escape(account.name)}</a>"
    last = (
        f"last good poll {when(account.last_cycle_success, now)}"
        if account.last_cycle_success
        else "never read"
    )
    if not account.auth_ok:
        return (
            f"<div class='alarm' role='alert'><strong>Account {name}: Sendcloud rejects the "
            f"API keys.</strong> None of its integrations is being checked ({last}). Check the "
            "public and secret key in the Sendcloud panel; a reload picks up new ones.</div>"
        )
    if account.api_error:
        return (
            f"<div class='warning' role='alert'><strong>Account {name}: the Sendcloud API "
            f"cannot be read</strong> ({escape(account.api_error)}); its integrations keep "
            f"their last known state ({last}).</div>"
        )
    return ""


def _accounts_line(accounts: Iterable[AccountStatus], now: datetime) -> str:
    fine = [a for a in accounts if not _account_problem(a)]
    if len(fine) > ACCOUNT_LINES:
        polls = [a.last_cycle_success for a in fine if a.last_cycle_success]
        oldest = f"; oldest last good poll {when(min(polls), now)}" if polls else ""
        return f"<p>{len(fine)} accounts: API ok{oldest}</p>"
    return "".join(
        f"<p>Account <b>{escape(a.name)}</b>: API ok; last good poll "
        f"{when(a.last_cycle_success, now) if a.last_cycle_success else 'not yet'}"
        f"{_unmonitored(a)}</p>"
        for a in fine
    )


def _unmonitored(account: AccountStatus) -> str:
    """The integrations of the account nobody monitors (configured IDs), if any."""
    if not account.unmonitored:
        return ""
    ids = ", ".join(str(i) for i in account.unmonitored[:20])
    more = f" and {len(account.unmonitored) - 20} more" if len(account.unmonitored) > 20 else ""
    return f"; not monitored: {ids}{more}"


def _account_row(account: AccountStatus) -> str:
    """The table's row of an account that has no integration to show because it cannot be
    read at all."""
    what = (
        "API keys rejected: none of this account's integrations is being checked"
        if not account.auth_ok
        else f"API unreadable ({escape(account.api_error or '')}): no integration read yet"
    )
    return (
        f"<tr class='failing'><td><a href='{account_link(account.name)}'>"
        f"{escape(account.name)}</a></td><td colspan='{len(COLUMNS) - 1}'>"
        f"<span class='state failing'>{'keys rejected' if not account.auth_ok else 'unreadable'}"
        f"</span> {what}</td></tr>"
    )


def integration_link(account: str, integration_id: int) -> str:
    return f"/integrations/{quote(account, safe='')}/{integration_id}"


def account_link(account: str) -> str:
    return f"/accounts/{quote(account, safe='')}"


def _row_html(row: Row, now: datetime) -> str:
    name = escape(row.shop_name or f"integration {row.integration_id}")
    url = row.shop_url
    shop = f"<a href='{integration_link(row.account, row.integration_id)}'>{name}</a>"
    if url and linkable(url):
        shop += f" <a class='muted' href='{escape(url)}' title='the shop'>↗</a>"
    kind = escape(row.integration_type or "")
    failing = duration(row.failing_seconds) if row.failing_seconds is not None else "-"
    fetched = when(row.last_fetched_at, now) if row.last_fetched_at else "never"
    read = when(row.last_read_at, now) if row.last_read_at else "never"
    notes = []
    if row.unreadable_since is not None:
        notes.append(f"unreadable since {when(row.unreadable_since, now)}")
    if "IntegrationErrorsRising" in row.alerts:
        notes.append("<span class='state stale rising'>errors rising</span>")
    if row.quiet is not None:
        notes.append(quiet_note(row.quiet, now))
    state = f"<span class='state {row.state}'>{row.state.replace('_', ' ')}</span>" + "".join(
        f"<span class='note'>{note}</span>" for note in notes
    )
    return (
        f"<tr class='{row.state}'><td><a href='{account_link(row.account)}'>"
        f"{escape(row.account)}</a></td>"
        f"<td>{shop} <span class='muted nowrap'>#{row.integration_id}</span>"
        f"<span class='sub muted'>{kind}</span></td>"
        f"<td class='wide'>{kind}</td><td>{state}</td>"
        f"<td class='num'>{failing}</td><td>{fetched}</td><td class='wide'>{read}</td>"
        f"<td class='cause'>{cause_cell(row.cause_summary, row.cause)}</td>"
        f"{history_cells(row.history)}{findings_cell(row)}</tr>"
    )


def findings_cell(row: Row) -> str:
    """The probe of the shop and the failed checks, in words (problems not muted)."""
    if not row.findings:
        return "<td class='muted findings'>-</td>"
    bad = row.warned or row.probe_result not in (None, "ok", "plaintext_ok", "private_address")
    lines = "<br>".join(escape(text) for text in row.findings)
    return f"<td class='findings{'' if bad else ' muted'}'>{lines}</td>"


_UNTIL = re.compile(r" until (\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:\d\d))")


def quiet_note(text: str, now: datetime) -> str:
    """Why notifications wait — "muted by alice: migration · ends in 2h" — its end relative
    like every other time on the page, not an RFC 3339 string in the middle of a sentence."""
    found = _UNTIL.search(text)
    if found is None:
        return escape(text)
    rest = text[: found.start()] + text[found.end() :]
    return f"{escape(rest)} · ends {when(found.group(1), now, future=True)}"


def cause_cell(summary: str | None, text: str | None) -> str:
    """The cause as a short phrase; the exception text it came from behind a disclosure."""
    if not text:
        return ""
    if not summary or summary == text:
        return escape(text)
    return (
        f"<details><summary>{escape(summary)}</summary>"
        f"<div class='raw'>{escape(text)}</div></details>"
    )


#: The HTML of each summary, while it lives: integrations steady for the whole window share one
#: summary (and so one rendering) per page.
_CELLS: weakref.WeakKeyDictionary[Summary, str] = weakref.WeakKeyDictionary()


def history_cells(history: Summary | None) -> str:
    """The 30-day strip (each day in its worst state's colour, its availability as text for
    screen readers and on hover) and the availability over 24 h, 7 d and 30 d."""
    if history is None:
        return "<td class='muted strip-cell'>no history</td><td class='muted windows'>-</td>"
    found = _CELLS.get(history)
    if found is None:
        found = _CELLS[history] = _render_cells(history)
    return found


def _render_cells(history: Summary) -> str:
    cells = "".join(
        f"<span class='day {d.worst}' title='{d.day.isoformat()}: {percent(d.ratio)}'>"
        f"<span class='sr'>{d.day.isoformat()}: {d.worst.replace('_', ' ')}, "
        f"{percent(d.ratio)}</span></span>"
        for d in history.days
    )
    windows = "".join(
        f"<span class='window' title='{name}'>{percent(value)}</span>"
        for name, value in history.windows.items()
    )
    return (
        f"<td class='strip-cell'><span class='strip'>{cells}</span></td>"
        f"<td class='windows'>{windows}</td>"
    )


def percent(ratio: float | None) -> str:
    """``99.95 %`` (a no-break space: the sign never wraps onto a line of its own)."""
    return "unknown" if ratio is None else f"{ratio * 100:.2f}\u00a0%"


def when(iso: str | None, now: datetime, *, future: bool = False) -> str:
    """The one time format of the pages: relative ("3h 1m ago", "in 2h" where ``future``),
    the exact UTC time on hover and in ``datetime``."""
    if iso is None:
        return "-"
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    seconds = (now - moment).total_seconds()
    if future and seconds <= -1:
        text = f"in {duration(-seconds)}"
    elif seconds < 1:
        text = "just now"
    else:
        text = f"{duration(seconds)} ago"
    exact = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"<time datetime='{_iso(moment)}' title='{exact}'>{text}</time>"


def linkable(url: str) -> bool:
    """Only web links: a ``javascript:`` URL from the API must never become a link."""
    return url.lower().startswith(("https://", "http://"))
