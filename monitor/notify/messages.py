"""What a notification says: the wording of a group of alert events, pure.

A group is every event one message carries (one account's evaluation for a webhook; all
accounts of a route within ``group_wait`` for a receiver). Its summary says what happened to
how many, since when and what most of them share; the first few shops are listed, the rest
counted.
"""

from __future__ import annotations

import collections
import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from monitor.alerting import Event

#: Shops listed by name in a message; the rest are counted.
SLACK_SHOPS = 5
LISTED_SHOPS = 10


class Carried(NamedTuple):
    """One alert event a message carries, as structure (what its text says in words)."""

    fingerprint: str
    alert: str
    status: str
    kind: str
    severity: str
    starts_at: str


@dataclass(frozen=True)
class Message:
    """One notification: a short title, a plain-text body and the same as HTML (e-mail sends
    both parts; other services get the one they take)."""

    title: str
    text: str
    html: str
    #: info, success, warning or failure (Apprise's notification types)
    kind: str = "info"
    #: alert events it carries (0 for a test message)
    events: int = 0
    #: the same events, as structure
    alerts: tuple[Carried, ...] = ()


def message(events: Sequence[Event], *, note: str | None = None) -> Message:
    """The message of one group: a title with its status and size, the summary, an optional
    note (a likely platform incident), and the first LISTED_SHOPS shops with cause and runbook."""
    firing = [e for e in events if e["status"] == "firing"]
    status = "FIRING" if firing else "RESOLVED"
    if firing and all(e["kind"] == "cause" for e in events):
        status = "CAUSE"  # follow-ups: the cause of alerts already notified
    alerts = sorted({e["alert"] for e in events})
    accounts = sorted({e["account"] for e in events})
    where = accounts[0] if len(accounts) == 1 else f"{len(accounts)} accounts"
    title = f"[{status}:{len(events)}] {', '.join(alerts)} ({where})"
    summary = group_summary(events)
    lines = [shop_line(e) for e in events[:LISTED_SHOPS]]
    more = len(events) - LISTED_SHOPS
    text = summary + (f"\n\n{note}" if note else "") + "\n\n" + "\n".join(f"- {x}" for x in lines)
    text += f"\n…and {more} more" if more > 0 else ""
    body = f"<p>{html.escape(summary)}</p>"
    body += f"<p><strong>{html.escape(note)}</strong></p>" if note else ""
    body += "<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in lines) + "</ul>"
    body += f"<p>…and {more} more</p>" if more > 0 else ""
    critical = any(e["severity"] == "critical" for e in firing)
    kind = ("failure" if critical else "warning") if firing else "success"
    carried = tuple(
        Carried(e["fingerprint"], e["alert"], e["status"], e["kind"], e["severity"], e["starts_at"])
        for e in events
    )
    return Message(title, text, body, kind, len(events), carried)


def shop_line(event: Event) -> str:
    """``account / shop (type, #id): [FIRING] alert — summary Cause: … Runbook: …``"""
    who = event["account"]
    if event["integration_id"] is not None:
        shop = event.get("shop_name") or "integration"
        details = ", ".join(
            x for x in (event.get("integration_type"), f"#{event['integration_id']}") if x
        )
        who += f" / {shop} ({details})"
    line = f"{who}: [{str(event['status']).upper()}] {event['alert']} — {event['summary']}"
    cause = event.get("cause")
    if isinstance(cause, dict) and cause.get("exception"):
        line += f" Cause: {cause['exception']}"
    return line + f" Runbook: {event['runbook_url']}"


def trial_message(receiver: str, at: str) -> Message:
    """What ``notify-test`` sends: clearly a test, naming the receiver (never its URL)."""
    text = (
        f"This is a test message from sendcloud-integration-monitor to the receiver "
        f"'{receiver}', sent at {at}. Nothing is wrong: no alert is firing because of it."
    )
    return Message(
        f"[TEST] sendcloud-integration-monitor: receiver '{receiver}'",
        text,
        f"<p>{html.escape(text)}</p>",
        "info",
        0,
    )


def group_summary(events: Sequence[Event]) -> str:
    """One sentence for a group of events: what happened to how many, since when, and what
    most of them share (integration type, exception type, host)."""
    if len(events) == 1:
        return str(events[0]["summary"])
    parts = []
    groups: dict[tuple[str, str], list[Event]] = {}
    for event in events:
        groups.setdefault((event["alert"], event["kind"]), []).append(event)
    for (alert, kind), group in groups.items():
        parts.append(_describe(alert, kind, group))
    return "; ".join(parts) + "."


_VERBS = {
    "IntegrationFailing": "failing",
    "IntegrationFetchStale": "not fetched for longer than their threshold",
    "IntegrationNotFound": "not found",
    "IntegrationErrorsRising": "logging exceptions (errors rising)",
    "IntegrationShopCertificateExpiring": "with a shop certificate expiring",
    "IntegrationShopUnreachable": "unreachable for Sendcloud (shop probe failing)",
    "IntegrationMisconfigured": "misconfigured",
    "SendcloudAuthFailing": "rejecting the API keys",
    "SendcloudAPIUnreachable": "unreadable",
}


def _describe(alert: str, kind: str, group: Sequence[Event]) -> str:
    kind_text = {"resolved": "recovered from", "cause": "cause found for"}.get(kind)
    integration_type = _mostly([e.get("integration_type") for e in group])
    noun = "account" if group[0]["integration_id"] is None else "integration"
    noun += "" if len(group) == 1 else "s"
    if integration_type:
        noun = f"{integration_type} {noun}"
    accounts = len({e["account"] for e in group})
    if accounts > 1:
        noun += f" in {accounts} accounts"
    if kind_text is not None:
        return f"{len(group)} {noun}: {kind_text} {alert}"
    since = min(str(e["starts_at"]) for e in group)
    text = f"{len(group)} {noun} {_VERBS.get(alert, alert)} since {since[11:16]} UTC"
    if kind != "fired":
        text += f" ({kind})"
    causes = [e.get("cause") or {} for e in group]
    exception = _mostly([_short_type(c.get("exception_type")) for c in causes])
    host = _mostly_host([c.get("host") for c in causes])
    if exception or host:
        text += ", mostly " + " to ".join(x for x in (exception and f"`{exception}`", host) if x)
    return text


def _mostly(values: Sequence[str | None]) -> str | None:
    """The value more than half of ``values`` share, if any."""
    counts = collections.Counter(v for v in values if v)
    if not counts:
        return None
    value, count = counts.most_common(1)[0]
    return value if count * 2 > len(values) else None


def _mostly_host(hosts: Sequence[str | None]) -> str | None:
    """The host most share, or ``*.domain`` when most share only their domain."""
    exact = _mostly(hosts)
    if exact is not None:
        return exact
    domain = _mostly([".".join(h.split(".")[-2:]) if h else None for h in hosts])
    return f"*.{domain}" if domain else None


def _short_type(name: object) -> str | None:
    return name.rsplit(".", 1)[-1] if isinstance(name, str) and name else None


def slack_text(events: Sequence[Event]) -> str:
    """The group summary, then the first few shops with their cause and runbook."""
    first = events[0]
    if first["status"] == "resolved":
        icon = ":white_check_mark:"
    else:
        critical = any(e["severity"] == "critical" for e in events)
        icon = ":rotating_light:" if critical else ":warning:"
    lines = [f"{icon} {group_summary(events)}"]
    for event in events[:SLACK_SHOPS]:
        line = f"• [{event['status'].upper()}] {event['alert']}: {event['summary']}"
        cause = event.get("cause")
        if isinstance(cause, dict) and cause.get("exception"):
            line += f" Cause: {cause['exception']}"
        lines.append(line + f" <{event['runbook_url']}|runbook>")
    if len(events) > SLACK_SHOPS:
        lines.append(f"…and {len(events) - SLACK_SHOPS} more")
    return "\n".join(lines)
