"""A report a merchant can be sent: an account's availability over a window, per integration
and in total, with its incidents (start, end, duration, cause) and the daily availability.
Composed from the history store and the one availability definition; rendered as JSON, CSV,
Markdown or a self-contained, print-friendly HTML page with an inline SVG chart."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

from monitor.alerting.cause import cause_text
from monitor.history.availability import Availability, Interval, availability, combined, daily
from monitor.history.documents import figures as figures_of
from monitor.history.store import HistoryStore, Names

FORMATS = ("html", "csv", "json", "md")


@dataclass(frozen=True)
class Line:
    integration_id: int
    shop_name: str | None
    integration_type: str | None
    figures: Availability
    causes: tuple[str | None, ...]  # the cause of each incident, in order (None: not known)


@dataclass(frozen=True)
class Report:
    account: str
    window_from: datetime
    window_to: datetime  # the period asked for ends here, or now if that is earlier
    lines: tuple[Line, ...]
    total: Availability
    days: tuple[tuple[str, float | None], ...]  # (day, the account's availability that day)
    so_far: bool = False  # the period asked for goes on past now (the current month)

    @property
    def unknown_share(self) -> float | None:
        """The share of the integrations' time nothing is known of (None: no integration):
        the unknown seconds of all integrations over the window length times their number."""
        fleet = sum(self.total.seconds.values())
        return self.total.seconds["unknown"] / fleet if self.lines and fleet > 0 else None


class UnknownAccount(LookupError):
    """The history has nothing of the account; ``known`` lists the accounts it has."""

    def __init__(self, account: str, known: Sequence[str]) -> None:
        names = ", ".join(known) if known else "none yet"
        super().__init__(f"the history has nothing of account {account!r} (it has: {names})")
        self.known = tuple(known)


def compose(
    account: str,
    intervals: Mapping[int, Sequence[Interval]],
    names: Mapping[int, Names],
    episodes: Sequence[Mapping[str, Any]],
    window_from: datetime,
    window_to: datetime,
    now: datetime,
) -> Report:
    """Pure: what the store holds, for one account and window, as a report. A window that
    goes on past ``now`` ends at ``now``: nothing is known of the future."""
    so_far = window_to > now
    until = window_to = max(window_from, min(window_to, now))
    lines = []
    for integration_id in sorted(intervals):
        mine = intervals[integration_id]
        figures = availability(mine, window_from, window_to, now)
        name, kind = names.get(integration_id, (None, None))
        lines.append(
            Line(
                integration_id,
                name,
                kind,
                figures,
                tuple(_cause_of(i.started, integration_id, episodes) for i in figures.incidents),
            )
        )
    empty = availability([], window_from, window_to, now)
    total = combined([line.figures for line in lines]) if lines else empty
    first = window_from.astimezone(UTC).date()
    last = (until - timedelta(microseconds=1)).astimezone(UTC).date()  # ``until`` is exclusive
    count = max(0, (last - first).days + 1) if until > window_from else 0
    healthy = [0.0] * count
    known = [0.0] * count
    for mine in intervals.values():
        for index, day in enumerate(daily(mine, first, count, until)):
            healthy[index] += day.healthy_seconds
            known[index] += day.known_seconds
    days = tuple(
        ((first + timedelta(days=i)).isoformat(), healthy[i] / known[i] if known[i] else None)
        for i in range(count)
    )
    return Report(account, window_from, window_to, tuple(lines), total, days, so_far)


def build(
    store: HistoryStore, account: str, window_from: datetime, window_to: datetime, now: datetime
) -> Report:
    """Read the history file (works while the daemon writes it) and compose the report;
    :class:`UnknownAccount` when the file has nothing of the account."""
    if not store.knows(account):
        raise UnknownAccount(account, store.accounts())
    return compose(
        account,
        store.account_intervals(account, window_from, window_to),
        store.names(account),
        store.episodes(account, None, window_from, window_to),
        window_from,
        window_to,
        now,
    )


def _cause_of(
    started: datetime, integration_id: int, episodes: Sequence[Mapping[str, Any]]
) -> str | None:
    """The cause of the IntegrationFailing episode that began (by Sendcloud's timestamp, or
    fired) closest after ``started``."""
    best: tuple[float, str | None] | None = None
    for episode in episodes:
        if episode.get("alert") != "IntegrationFailing":
            continue
        if episode.get("integration_id") != integration_id:
            continue
        began = str(episode.get("started") or episode["fired"])
        gap = (datetime.fromisoformat(began.replace("Z", "+00:00")) - started).total_seconds()
        if gap >= -60 and (best is None or gap < best[0]):
            cause = episode.get("cause")
            best = (gap, cause_text(cause) if isinstance(cause, dict) else None)
    return best[1] if best is not None else None


# -- rendering ---------------------------------------------------------------------------------


def render(report: Report, form: str) -> str:
    return {"json": to_json, "csv": to_csv, "md": to_markdown, "html": to_html}[form](report)


def to_json(report: Report) -> str:
    return json.dumps(
        {
            "account": report.account,
            "from": _iso(report.window_from),
            "to": _iso(report.window_to),
            "so_far": report.so_far,
            "total": {**figures_of(report.total), "unknown_share": report.unknown_share},
            "integrations": [
                {
                    "integration_id": line.integration_id,
                    "shop_name": line.shop_name,
                    "integration_type": line.integration_type,
                    **figures_of(line.figures),
                    "incident_list": [
                        {
                            "started": _iso(incident.started),
                            "ended": _iso(incident.ended),
                            "seconds": round(incident.seconds, 3),
                            "cause": cause,
                        }
                        for incident, cause in zip(line.figures.incidents, line.causes, strict=True)
                    ],
                }
                for line in report.lines
            ],
            "daily_availability": [
                {"day": day, "availability": ratio} for day, ratio in report.days
            ],
        },
        indent=1,
    )


CSV_COLUMNS = (
    "integration_id",
    "shop_name",
    "integration_type",
    "availability",
    "healthy_seconds",
    "failing_seconds",
    "stale_seconds",
    "not_found_seconds",
    "unknown_seconds",
    "incidents",
    "longest_incident_seconds",
    "mean_time_to_recovery_seconds",
)


def to_csv(report: Report) -> str:
    """One row per integration, then one row ``total`` for the account."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    rows = [
        (str(line.integration_id), line.shop_name, line.integration_type, line.figures)
        for line in report.lines
    ]
    rows.append(("total", None, None, report.total))
    for identity, name, kind, figures in rows:
        writer.writerow(
            [
                identity,
                name or "",
                kind or "",
                "" if figures.ratio is None else f"{figures.ratio:.6f}",
                *(
                    f"{figures.seconds[state]:.0f}"
                    for state in ("healthy", "failing", "stale", "not_found", "unknown")
                ),
                len(figures.incidents),
                f"{figures.longest_incident_seconds:.0f}",
                ""
                if figures.mean_time_to_recovery_seconds is None
                else f"{figures.mean_time_to_recovery_seconds:.0f}",
            ]
        )
    return out.getvalue()


def to_markdown(report: Report) -> str:
    lines = [
        f"# Availability of account {report.account}",
        "",
        f"{_period(report)}: "
        f"{_percent(report.total.ratio)} available, {len(report.total.incidents)} incidents, "
        f"longest {_duration(report.total.longest_incident_seconds)}, "
        f"{_unknown(report)}.",
        "",
        "| Shop | Type | Availability | Failing | Stale | Unknown | Incidents | Longest |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for line in report.lines:
        f = line.figures
        lines.append(
            f"| {_md(line.shop_name or f'integration {line.integration_id}')} | "
            f"{_md(line.integration_type or '')} | {_percent(f.ratio)} | "
            f"{_duration(f.seconds['failing'])} | {_duration(f.seconds['stale'])} | "
            f"{_duration(f.seconds['unknown'])} | {len(f.incidents)} | "
            f"{_duration(f.longest_incident_seconds)} |"
        )
    incidents = _incidents(report)
    if incidents:
        lines += [
            "",
            "## Incidents",
            "",
            "| Shop | Started | Ended | Duration | Cause |",
            "|---|---|---|---|---|",
        ]
        for name, started, ended, seconds, cause in incidents:
            lines.append(f"| {_md(name)} | {started} | {ended} | {seconds} | {_md(cause)} |")
    return "\n".join(lines) + "\n"


def to_html(report: Report) -> str:
    """Self-contained and print-friendly: no external asset, everything escaped."""
    total = report.total
    rows = "".join(
        f"<tr><td>{escape(line.shop_name or f'integration {line.integration_id}')}</td>"
        f"<td>{escape(line.integration_type or '')}</td><td>{_percent(line.figures.ratio)}</td>"
        f"<td>{_duration(line.figures.seconds['failing'])}</td>"
        f"<td>{_duration(line.figures.seconds['stale'])}</td>"
        f"<td>{_duration(line.figures.seconds['unknown'])}</td>"
        f"<td>{len(line.figures.incidents)}</td>"
        f"<td>{_duration(line.figures.longest_incident_seconds)}</td></tr>"
        for line in report.lines
    )
    incidents = "".join(
        f"<tr><td>{escape(name)}</td><td>{started}</td><td>{ended}</td><td>{seconds}</td>"
        f"<td>{escape(cause)}</td></tr>"
        for name, started, ended, seconds, cause in _incidents(report)
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Availability of {escape(report.account)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>Availability of account {escape(report.account)}</h1>"
        f"<p>{_period(report)}</p>"
        f"<p class='total'><b>{_percent(total.ratio)}</b> available · "
        f"{len(total.incidents)} incidents · longest {_duration(total.longest_incident_seconds)}"
        f" · {_unknown(report)}</p>"
        f"<h2>Daily availability</h2>{_chart(report.days)}"
        "<h2>Integrations</h2><table><thead><tr><th>Shop</th><th>Type</th><th>Availability</th>"
        "<th>Failing</th><th>Stale</th><th>Unknown</th><th>Incidents</th><th>Longest</th></tr>"
        f"</thead><tbody>{rows}</tbody></table>"
        "<h2>Incidents</h2><table><thead><tr><th>Shop</th><th>Started</th><th>Ended</th>"
        f"<th>Duration</th><th>Cause</th></tr></thead><tbody>{incidents}</tbody></table>"
        "<p class='note'>Availability = healthy ÷ (healthy + failing + stale + not found); "
        "time the monitor could not read the API, or was not running, is unknown and left "
        "out. The headline's unknown share is of all the integrations' time.</p></body></html>"
    )


_STYLE = (
    "body{font:13px/1.4 system-ui,sans-serif;margin:2rem;color:#1d2330}"
    "table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}"
    "th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #ddd}"
    "th{background:#f4f6f9}.note{color:#555}.total{font-size:1.1rem}"
    "@media print{body{margin:0}h2{break-after:avoid}tr{break-inside:avoid}}"
)


def _chart(days: Sequence[tuple[str, float | None]]) -> str:
    """Inline SVG bars: one per day, its height the account's availability of what is known of
    the day, on a 0-100 % scale; a day nothing is known of is a hatched grey stub marked "no
    data", never a bar; dates below (first, last and every seventh day)."""
    if not days:
        return "<p>No days in the window.</p>"
    left, plot, base = 44, 110, 118  # the plot: 0 % at y=base, 100 % at y=base-plot
    width = 760
    bar = (width - left - 8) / len(days)
    parts = [
        "<defs><pattern id='nodata' width='4' height='4' patternUnits='userSpaceOnUse' "
        "patternTransform='rotate(45)'><rect width='2' height='4' fill='#9aa0a6'/></pattern>"
        "</defs>"
    ]
    for share, label in ((1.0, "100 %"), (0.5, "50 %"), (0.0, "0 %")):
        y = base - share * plot
        parts.append(
            f"<line x1='{left}' x2='{width - 8}' y1='{y:.1f}' y2='{y:.1f}' stroke='#e3e6ec'/>"
            f"<text x='{left - 6}' y='{y + 4:.1f}' text-anchor='end'>{label}</text>"
        )
    last = len(days) - 1
    for index, (day, ratio) in enumerate(days):
        x = left + index * bar
        if ratio is None:
            parts.append(
                f"<rect class='nodata' x='{x + 1:.1f}' y='{base - 6}' "
                f"width='{max(bar - 2, 1):.1f}' height='6' fill='url(#nodata)'>"
                f"<title>{day}: no data</title></rect>"
            )
        else:
            colour = "#2e7d32" if ratio >= 0.99 else "#f9a825" if ratio >= 0.95 else "#c62828"
            tall = max(1.0, ratio * plot)
            parts.append(
                f"<rect class='day' x='{x + 1:.1f}' y='{base - tall:.1f}' "
                f"width='{max(bar - 2, 1):.1f}' height='{tall:.1f}' fill='{colour}'>"
                f"<title>{day}: {_percent(ratio)}</title></rect>"
            )
        if index in (0, last) or (index % 7 == 0 and last - index >= 4):
            parts.append(
                f"<text class='date' x='{x + bar / 2:.1f}' y='{base + 16}' "
                f"text-anchor='middle'>{day[5:]}</text>"
            )
    legend = (
        f"<rect x='{left}' y='{base + 26}' width='10' height='8' fill='url(#nodata)'/>"
        f"<text x='{left + 14}' y='{base + 34}'>no data (the monitor could not read the API "
        "or was not running)</text>"
        if any(ratio is None for _, ratio in days)
        else ""
    )
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{base + 42}' "
        "role='img' aria-label='daily availability' font-family='system-ui,sans-serif' "
        f"font-size='10' fill='#4a5263'>{''.join(parts)}{legend}</svg>"
    )


def _incidents(report: Report) -> list[tuple[str, str, str, str, str]]:
    found = []
    for line in report.lines:
        name = line.shop_name or f"integration {line.integration_id}"
        for incident, cause in zip(line.figures.incidents, line.causes, strict=True):
            found.append(
                (
                    name,
                    _minute(incident.started),
                    _minute(incident.ended) if incident.ended else "ongoing",
                    _duration(incident.seconds),
                    cause or "",
                )
            )
    return sorted(found, key=lambda row: row[1])


def _percent(ratio: float | None) -> str:
    return "unknown" if ratio is None else f"{ratio * 100:.2f} %"


def _duration(seconds: float) -> str:
    """``3d 4h``, ``2h 5min``, ``12min``, ``1min 30s``, ``40s``; ``-`` for none at all (a flap
    of a minute is never ``0min``)."""
    if seconds <= 0:
        return "-"
    if seconds < 1:
        return "<1s"
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}min"
    if minutes >= 10 or (minutes and not secs):
        return f"{minutes}min"
    return f"{minutes}min {secs}s" if minutes else f"{secs}s"


def _period(report: Report) -> str:
    end = "now" if report.so_far else _day(report.window_to)
    return f"{_day(report.window_from)} to {end} (UTC" + (
        f", {_day(report.window_to)})" if report.so_far else ")"
    )


def _unknown(report: Report) -> str:
    """Unknown time as a share of the integrations' time: a sum over integrations would read
    as more than the window itself."""
    share = report.unknown_share
    if share is None:
        return "no integrations"
    return f"unknown {_share(share)} of the time"


def _share(ratio: float) -> str:
    return "0 %" if ratio == 0 else "<0.1 %" if ratio < 0.001 else f"{ratio * 100:.1f} %"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _day(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _minute(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
