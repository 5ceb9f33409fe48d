"""The status of every integration at a glance: one document for the status page, for
``/status.json`` and for ``check``. Pure: snapshots, firing alerts and ``now`` in, data out.

Everything shown comes from the health derived at the last read (:mod:`monitor.health`); only
the elapsed times are extended to ``now`` (frozen while an integration cannot be read), exactly
as the metrics do.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime
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
class Status:
    generated_at: str
    version: str
    accounts: tuple[AccountStatus, ...]
    firing_alerts: int
    integrations: tuple[Row, ...]
    #: maintenance windows active now or starting within a week: "NAME: from T until T"
    maintenance: tuple[str, ...] = ()

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


FiringAlerts = Mapping[tuple[str, int], Iterable[str]]  # (account, id) -> alert names
Causes = Mapping[tuple[str, int], str]  # (account, id) -> cause text
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
    maintenance: tuple[str, ...] = (),
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
                auth_ok=s.auth_ok,
                unmonitored=s.unmonitored,
            )
            for s in snapshots.values()
        ),
        firing_alerts=firing_alerts,
        integrations=tuple(rows),
        maintenance=maintenance,
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
        cause=causes.get(key),
        unreadable_since=_iso(observation.unreadable_since),
        history=history.get(key),
        quiet=holds.get(key),
    )


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
.muted{color:#6b7280}nav a{margin-right:1rem}input{padding:.3rem;width:18rem}
.strip{display:inline-flex;gap:1px}.day{display:inline-block;width:6px;height:18px;border-radius:1px}
.day.healthy{background:#2e7d32}.day.failing{background:#c62828}.day.stale{background:#f9a825}
.day.not_found{background:#6a1b9a}.day.unknown{background:#c4c7cc}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
"""
_SCRIPT = """
document.getElementById('filter').addEventListener('input', function (e) {
  var needle = e.target.value.toLowerCase();
  document.querySelectorAll('tbody tr').forEach(function (row) {
    row.hidden = needle !== '' && row.textContent.toLowerCase().indexOf(needle) < 0;
  });
});
"""


def render_html(status: Status, now: datetime) -> str:
    """The status page: server-rendered, every value from the API escaped, no external asset,
    readable without JavaScript (a few lines filter the rows when it runs)."""
    counts = summary_counts(status.integrations)
    shown = status.integrations[:PAGE_ROWS]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta http-equiv='refresh' content='30'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<title>Sendcloud integration monitor</title>",
        f"<style>{STYLE}</style></head><body><header>",
        "<h1>Sendcloud integrations</h1>",
        f"<p>{_counts_line(counts)} · {status.firing_alerts} alerts firing"
        f" · version {escape(status.version)} · generated {escape(status.generated_at)}</p>",
        *(_account_line(account, now) for account in status.accounts),
        *(f"<p class='quiet'>Maintenance: {escape(m)}</p>" for m in status.maintenance),
        "<nav><a href='/metrics'>/metrics</a><a href='/healthz'>/healthz</a>"
        "<a href='/readyz'>/readyz</a><a href='/status.json'>/status.json</a></nav>",
        "</header><p><label>Filter <input id='filter' type='search' "
        "placeholder='shop, type, state, account'></label></p>",
        "<table><thead><tr><th>Account</th><th>Shop</th><th>Type</th><th>State</th>"
        "<th>Failing for</th><th>Last fetched</th><th>Last read</th><th>Cause</th>"
        "<th>Last 30 days</th><th>24 h · 7 d · 30 d</th><th>Shop checks</th></tr></thead>"
        "<tbody>",
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


def _account_line(account: AccountStatus, now: datetime) -> str:
    if not account.auth_ok:
        health = "<strong>API keys rejected</strong>"
    elif account.api_error:
        health = f"<strong>API unreadable</strong> ({escape(account.api_error)})"
    else:
        health = "API ok"
    last = when(account.last_cycle_success, now) if account.last_cycle_success else "never"
    unmonitored = ""
    if account.unmonitored:
        ids = ", ".join(str(i) for i in account.unmonitored[:20])
        more = f" and {len(account.unmonitored) - 20} more" if len(account.unmonitored) > 20 else ""
        unmonitored = f"; not monitored: {ids}{more}"
    return (
        f"<p>Account <b>{escape(account.name)}</b>: {health}; last good poll {last}"
        f"{unmonitored}</p>"
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
    failing = duration(row.failing_seconds) if row.failing_seconds is not None else "-"
    fetched = when(row.last_fetched_at, now) if row.last_fetched_at else "never"
    read = when(row.last_read_at, now) if row.last_read_at else "never"
    state_text = row.state.replace("_", " ")
    if row.unreadable_since is not None:
        state_text += (
            "</span> <span class='muted unreadable'>unreadable since "
            f"{when(row.unreadable_since, now)}"
        )
    if "IntegrationErrorsRising" in row.alerts:
        state_text += "</span> <span class='state stale rising'>errors rising"
    if row.quiet is not None:
        state_text += f"</span> <span class='muted quiet'>{escape(row.quiet)}"
    return (
        f"<tr class='{row.state}'><td><a href='{account_link(row.account)}'>"
        f"{escape(row.account)}</a></td>"
        f"<td>{shop} <span class='muted'>#{row.integration_id}</span></td>"
        f"<td>{escape(row.integration_type or '')}</td>"
        f"<td><span class='state {row.state}'>{state_text}</span></td>"
        f"<td>{failing}</td><td>{fetched}</td><td>{read}</td>"
        f"<td>{escape(row.cause or '')}</td>{history_cells(row.history)}"
        f"{findings_cell(row)}</tr>"
    )


def findings_cell(row: Row) -> str:
    """The probe of the shop and the failed checks, in words (problems not muted)."""
    if not row.findings:
        return "<td class='muted findings'>-</td>"
    bad = row.warned or row.probe_result not in (None, "ok", "plaintext_ok", "private_address")
    lines = "<br>".join(escape(text) for text in row.findings)
    return f"<td class='findings{'' if bad else ' muted'}'>{lines}</td>"


#: The HTML of each summary, while it lives: integrations steady for the whole window share one
#: summary (and so one rendering) per page.
_CELLS: weakref.WeakKeyDictionary[Summary, str] = weakref.WeakKeyDictionary()


def history_cells(history: Summary | None) -> str:
    """The 30-day strip (each day in its worst state's colour, its availability as text for
    screen readers and on hover) and the availability over 24 h, 7 d and 30 d."""
    if history is None:
        return "<td class='muted'>no history</td><td class='muted'>-</td>"
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
    windows = " · ".join(percent(value) for value in history.windows.values())
    return f"<td><span class='strip'>{cells}</span></td><td>{windows}</td>"


def percent(ratio: float | None) -> str:
    return "unknown" if ratio is None else f"{ratio * 100:.2f} %"


def when(iso: str | None, now: datetime) -> str:
    """Relative and absolute (UTC) time."""
    if iso is None:
        return "-"
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    ago = duration(max(0.0, (now - moment).total_seconds()))
    absolute = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{ago} ago <span class='muted'>({absolute})</span>"


def linkable(url: str) -> bool:
    """Only web links: a ``javascript:`` URL from the API must never become a link."""
    return url.lower().startswith(("https://", "http://"))
