"""Shields-style flat SVG badges: the current state of an integration, and its availability over
a window. Pure: text in, SVG out; no external font or asset, everything escaped."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from html import escape

#: The colour of each state (and of availability bands), as on the status page.
COLOURS = {
    "healthy": "#2e7d32",
    "failing": "#c62828",
    "stale": "#f9a825",
    "not_found": "#6a1b9a",
    "unknown": "#616161",
}
LABEL_COLOUR = "#555"
#: Average advance of a character of Verdana at 11 px (shields.io sizes its badges so too).
CHAR_WIDTH = 6.8
PADDING = 10


def badge(label: str, message: str, colour: str) -> str:
    """A flat badge: ``label`` on grey, ``message`` on ``colour``."""
    left = round(len(label) * CHAR_WIDTH + PADDING)
    right = round(len(message) * CHAR_WIDTH + PADDING)
    width = left + right
    label_text, message_text = escape(label), escape(message)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" '
        f'aria-label="{label_text}: {message_text}"><title>{label_text}: {message_text}</title>'
        f'<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" '
        f'stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>'
        f'<clipPath id="r"><rect width="{width}" height="20" rx="3" fill="#fff"/></clipPath>'
        f'<g clip-path="url(#r)"><rect width="{left}" height="20" fill="{LABEL_COLOUR}"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{escape(colour)}"/>'
        f'<rect width="{width}" height="20" fill="url(#s)"/></g>'
        f'<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" '
        f'font-size="11"><text x="{left / 2}" y="14">{label_text}</text>'
        f'<text x="{left + right / 2}" y="14">{message_text}</text></g></svg>'
    )


def state_badge(state: str) -> str:
    return badge("sendcloud sync", state.replace("_", " "), COLOURS.get(state, COLOURS["unknown"]))


def uptime_badge(window: str, ratio: float | None) -> str:
    """Availability over ``window`` (e.g. 30d): green from 99 %, amber from 95 %, else red;
    grey when nothing is known of the window."""
    if ratio is None:
        return badge(f"uptime {window}", "unknown", COLOURS["unknown"])
    colour = (
        COLOURS["healthy"]
        if ratio >= 0.99
        else COLOURS["stale"]
        if ratio >= 0.95
        else COLOURS["failing"]
    )
    return badge(f"uptime {window}", f"{ratio * 100:.2f}%", colour)


StateOf = Callable[[str, int], str | None]  # (account, id) -> state, or None if not watched
UptimeOf = Callable[[str, int, timedelta], float | None]  # availability over the last window
_BADGE = re.compile(r"^/badge/([A-Za-z0-9_.-]{1,64})/(\d{1,12})(/uptime)?\.svg$")
#: The badges served without credentials: under an account's key, never its name.
PUBLIC_PREFIX = "/public/badge/"
_PUBLIC = re.compile(r"^/public/badge/([0-9a-f]{32})/(\d{1,12})(/uptime)?\.svg$")
_WINDOW = re.compile(r"^(\d{1,4})([hd])$")
MAX_WINDOW = timedelta(days=400)


def badge_key(secret: str, account: str) -> str:
    """An account's badge key, as healthchecks.io keys its badges: an HMAC-SHA256 of the
    account's name under the configured secret, 128 bits in hex. Unguessable without the
    secret, the same in every replica and after restarts; a new secret revokes every URL."""
    digest = hmac.new(secret.encode(), b"badge\0" + account.encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


def route(
    path: str, query: Mapping[str, list[str]], state_of: StateOf, uptime_of: UptimeOf | None
) -> tuple[int, str]:
    """``/badge/{account}/{id}.svg`` and ``/badge/{account}/{id}/uptime.svg?window=30d``:
    (HTTP status, SVG). An unknown integration is a 404 with a grey "not watched" badge."""
    match = _BADGE.match(path)
    if match is None:
        return 404, badge("sendcloud sync", "no such badge", COLOURS["unknown"])
    return _serve(match[1], int(match[2]), bool(match[3]), query, state_of, uptime_of)


def public_route(
    path: str,
    query: Mapping[str, list[str]],
    accounts: Mapping[str, str],
    state_of: StateOf,
    uptime_of: UptimeOf | None,
) -> tuple[int, str]:
    """``/public/badge/{key}/{id}.svg`` and ``.../{id}/uptime.svg``, needing no credentials:
    ``accounts`` maps each account's key to its name. They reveal the badge and nothing else:
    a wrong key and an integration the account does not have are the same 404."""
    match = _PUBLIC.match(path)
    account = accounts.get(match[1]) if match is not None else None
    if match is None or account is None:
        return 404, badge("sendcloud sync", "no such badge", COLOURS["unknown"])
    return _serve(
        account, int(match[2]), bool(match[3]), query, state_of, uptime_of, "no such badge"
    )


def _serve(
    account: str,
    integration_id: int,
    uptime: bool,
    query: Mapping[str, list[str]],
    state_of: StateOf,
    uptime_of: UptimeOf | None,
    unknown: str = "not watched",
) -> tuple[int, str]:
    state = state_of(account, integration_id)
    if state is None:
        return 404, badge("sendcloud sync", unknown, COLOURS["unknown"])
    if not uptime:
        return 200, state_badge(state)
    text = (query.get("window") or ["30d"])[0]
    found = _WINDOW.match(text)
    span = timedelta(**{"hours" if found[2] == "h" else "days": int(found[1])}) if found else None
    if span is None or not timedelta(0) < span <= MAX_WINDOW:
        return 400, badge("uptime", "window: e.g. 24h, 7d, 30d", COLOURS["unknown"])
    if uptime_of is None:
        return 200, uptime_badge(text, None)
    return 200, uptime_badge(text, uptime_of(account, integration_id, span))
