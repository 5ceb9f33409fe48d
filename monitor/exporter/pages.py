"""The integration page (``/integrations/{account}/{id}``) and the account page
(``/accounts/{account}``): an integration's last 30 days — timeline, alert episodes and their
causes — and an account's incidents. Server-rendered like the status page: no external assets,
everything that comes from the API or the history escaped. Pure: data in, HTML out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any

from monitor.exporter.badges import PUBLIC_PREFIX
from monitor.exporter.status import (
    STYLE,
    Row,
    account_link,
    cause_cell,
    duration,
    history_cells,
    integration_link,
    linkable,
    percent,
    quiet_note,
    when,
)
from monitor.history.availability import Availability, Interval


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<nav><a href='/'>all integrations</a></nav>{body}</body></html>"
    )


def not_found_page(text: str) -> str:
    return _page("Not found — Sendcloud integration monitor", f"<p>{escape(text)}.</p>")


def _state(state: str) -> str:
    return f"<span class='state {escape(state)}'>{escape(state.replace('_', ' '))}</span>"


def integration_page(
    row: Row,
    intervals: Sequence[Interval],
    episodes: Sequence[Mapping[str, Any]],
    now: datetime,
    changes: Sequence[Mapping[str, Any]] = (),
) -> str:
    """``episodes``' causes are text already (the alerting's wording); ``changes`` are the
    configuration changes (``updated_at`` moved) of these 30 days. Every start of a failure is
    Sendcloud's ``started_failing_at`` (the history records it so), as on the status page: a
    shop failing for 40 minutes reads "failing for 40m" here too."""
    name = row.shop_name or f"integration {row.integration_id}"
    url = row.shop_url
    shop = f"<a href='{escape(url)}'>{escape(url)}</a>" if url and linkable(url) else ""
    timeline = "".join(
        f"<tr class='{escape(i.state)}'><td>{_state(i.state)}</td>"
        f"<td>{when(_iso(i.since), now)}</td>"
        f"<td>{when(_iso(i.until), now) if i.until else 'now'}</td>"
        f"<td class='num'>{duration(((i.until or now) - i.since).total_seconds())}</td></tr>"
        for i in reversed(intervals)
    )
    notes = []
    if row.state == "failing" and row.failing_since is not None:
        began = _parse(row.failing_since)  # Sendcloud's started_failing_at
        exact = began.strftime("%Y-%m-%d %H:%M:%S UTC")
        notes.append(
            f"for <time class='failing-for' datetime='{row.failing_since}' title='since {exact}'>"
            f"{duration(row.failing_seconds)}</time>"
        )
    if row.unreadable_since:
        notes.append(f"unreadable since {when(row.unreadable_since, now)}")
    if row.quiet:
        notes.append(quiet_note(row.quiet, now))
    account = f"<a href='{account_link(row.account)}'>{escape(row.account)}</a>"
    body = (
        f"<header><h1>{escape(name)}</h1><p>Account {account} · integration "
        f"{row.integration_id} · {escape(row.integration_type or '')} {shop}</p>"
        f"<p>Now: {_state(row.state)} {' · '.join(notes)}</p></header>"
        "<h2>Last 30 days</h2><table><thead><tr><th>Last 30 days</th>"
        f"<th>24 h · 7 d · 30 d</th></tr></thead><tbody><tr>{history_cells(row.history)}</tr>"
        f"</tbody></table><h2>Alert episodes</h2>{_episodes(episodes, now)}<h2>Timeline</h2>"
        "<table><thead><tr><th>State</th><th>Since</th><th>Until</th><th>For</th></tr></thead>"
        f"<tbody>{timeline or _empty(4, 'nothing recorded in these 30 days')}</tbody></table>"
        f"<h2>Configuration changes</h2>{_changes(changes, now)}"
    )
    return _page(f"{name} — Sendcloud integration monitor", body)


def account_page(
    account: str,
    rows: Sequence[tuple[Row, Availability | None]],
    episodes: Sequence[Mapping[str, Any]],
    now: datetime,
    badge_base: str | None = None,
) -> str:
    """``badge_base``: the URL this account's badges are served under without credentials
    (``…/public/badge/KEY``, or ``…/badge/ACCOUNT`` where nothing needs credentials); None
    when badges need credentials here, and the page says how to make them embeddable."""
    lines = []
    for row, figures in sorted(rows, key=lambda pair: _worst_first(pair[1])):
        name = escape(row.shop_name or f"integration {row.integration_id}")
        longest = "-"
        if figures is not None and figures.incidents:
            longest = duration(figures.longest_incident_seconds)
        lines.append(
            f"<tr class='{escape(row.state)}'>"
            f"<td><a href='{integration_link(account, row.integration_id)}'>{name}</a></td>"
            f"<td>{_state(row.state)}</td>"
            f"<td class='num'>{percent(figures.ratio) if figures else 'unknown'}</td>"
            f"<td class='num'>{len(figures.incidents) if figures else 0}</td>"
            f"<td class='num'>{longest}</td></tr>"
        )
    incidents = [e for e in episodes if e.get("alert") == "IntegrationFailing"]
    body = (
        f"<header><h1>Account {escape(account)}</h1><p>{len(rows)} integrations · "
        f"{len(incidents)} incidents in the last 30 days</p></header>"
        "<h2>Availability, last 30 days</h2><table><thead><tr><th>Shop</th><th>State</th>"
        "<th>Availability</th><th>Incidents</th><th>Longest</th></tr></thead>"
        f"<tbody>{''.join(lines) or _empty(5, 'no integrations')}</tbody></table>"
        f"<h2>Incidents</h2>{_episodes(incidents, now, links=account)}"
        f"<h2 id='badges'>Badges</h2>{_badges([row for row, _ in rows], badge_base)}"
    )
    return _page(f"Account {account} — Sendcloud integration monitor", body)


def _badges(rows: Sequence[Row], base: str | None) -> str:
    """Each integration's badges with the HTML to embed them in a merchant's page."""
    if base is None:
        return (
            "<p class='muted'>The badges of this monitor need credentials, so no other page can "
            "show them. Set <code>badges.secret</code> (or <code>MONITOR_BADGE_SECRET</code>, "
            "<code>MONITOR_BADGE_SECRET_FILE</code>) to serve each badge also under a URL "
            "with this account's unguessable key that needs none.</p>"
        )
    items = []
    for row in sorted(rows, key=lambda r: r.integration_id):
        name = row.shop_name or f"integration {row.integration_id}"
        state = f"{base}/{row.integration_id}.svg"
        uptime = f"{base}/{row.integration_id}/uptime.svg?window=30d"
        code = (
            f'<img src="{escape(state)}" alt="Sendcloud sync of {escape(name)}"> '
            f'<img src="{escape(uptime)}" alt="Sendcloud sync uptime, 30 days">'
        )
        items.append(
            f"<tr><td>{escape(name)} <span class='muted'>#{row.integration_id}</span></td>"
            f"<td><img src='{escape(state)}' alt='state'> <img src='{escape(uptime)}' "
            f"alt='uptime'></td><td><pre class='embed'>{escape(code)}</pre></td></tr>"
        )
    keyed = PUBLIC_PREFIX in base
    note = (
        "Anyone with these URLs sees these badges and nothing else; they need no credentials. "
        "A new badge secret replaces every URL."
        if keyed
        else "This monitor's endpoints need no credentials: the badges embed as they are."
    )
    return (
        f"<p class='muted'>{note}</p>"
        "<table><thead><tr><th>Shop</th><th>Badges</th><th>HTML to embed</th></tr></thead>"
        f"<tbody>{''.join(items) or _empty(3, 'no integrations')}</tbody></table>"
    )


def _episodes(
    episodes: Sequence[Mapping[str, Any]], now: datetime, links: str | None = None
) -> str:
    """Alert episodes: when the condition began by Sendcloud's own timestamps (a failure's
    ``started_failing_at``) and how long it lasted, beside when the monitor fired it."""
    rows = []
    for episode in reversed(episodes):
        began = str(episode.get("started") or episode["fired"])
        resolved = episode.get("resolved")
        end = _parse(str(resolved)) if resolved else now
        where = ""
        integration = episode.get("integration_id")
        if links is not None:
            target = integration_link(links, int(integration)) if integration is not None else ""
            where = f"<td><a href='{target}'>#{integration}</a></td>" if target else "<td></td>"
        cause = episode.get("cause")
        summary = episode.get("cause_summary")
        rows.append(
            f"<tr>{where}<td>{escape(str(episode['alert']))}</td>"
            f"<td>{when(began, now)}</td><td>{when(str(episode['fired']), now)}</td>"
            f"<td>{when(str(resolved), now) if resolved else 'still firing'}</td>"
            f"<td class='num'>{duration((end - _parse(began)).total_seconds())}</td>"
            f"<td class='cause'>{cause_cell(_text(summary), _text(cause))}</td></tr>"
        )
    head = "<th>Integration</th>" if links is not None else ""
    empty = _empty(7 if links else 6, "no alerts in these 30 days")
    return (
        f"<table><thead><tr>{head}<th>Alert</th><th>Began</th><th>Fired</th><th>Resolved</th>"
        f"<th>For</th><th>Cause</th></tr></thead><tbody>{''.join(rows) or empty}</tbody></table>"
    )


def _text(value: object) -> str | None:
    return str(value) if value else None


def _changes(changes: Sequence[Mapping[str, Any]], now: datetime) -> str:
    rows = "".join(
        f"<tr><td>{when(str(c['updated_at']), now)}</td>"
        f"<td>{when(str(c['previous_updated_at']), now)}</td>"
        f"<td>{when(str(c['detected']), now)}</td></tr>"
        for c in reversed(changes)
    )
    return (
        "<table class='changes'><thead><tr><th>Changed (updated_at)</th><th>Before that</th>"
        "<th>Seen</th></tr></thead>"
        f"<tbody>{rows or _empty(3, 'no configuration change in these 30 days')}</tbody></table>"
    )


def _parse(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _worst_first(figures: Availability | None) -> float:
    ratio = figures.ratio if figures is not None else None
    return 2.0 if ratio is None else ratio


def _empty(columns: int, text: str) -> str:
    return f"<tr><td colspan='{columns}' class='muted'>{escape(text)}</td></tr>"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None
