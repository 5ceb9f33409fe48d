"""Why an integration fails, from its Sendcloud exception logs — redacted (pure functions).

Exception logs carry the request Sendcloud made to the shop, headers and payloads included.
Only a few fields are copied, URLs lose their query strings, messages are truncated, and
anything that looks like a credential is masked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from monitor.sendcloud import public_url

MAX_MESSAGE = 300
MASK = "[redacted]"

#: Key names whose values are credentials, in any case, as part of a longer name too
#: (``shop_password``, ``X-Shopify-Access-Token``).
_KEY = (
    r"[\w-]*(?:password|passwd|secret|token|api[_-]?key|apikey|authorization|cookie|session"
    r"|signature)[\w-]*"
)
#: Values that run to the end of the header line (they contain spaces or ``;``).
_LINE_KEYS = re.compile(r"(?i)authorization|cookie")
_QUOTED_PAIR = re.compile(  # JSON and Python repr: "key": "value", 'key': 'value'
    rf"""(?i)(?P<key>["']?{_KEY}["']?)\s*[:=]\s*(?P<q>["'])(?P<value>(?:\\.|(?!(?P=q)).)*)(?P=q)"""
)
_PAIR = re.compile(  # form, header, log syntax: key=value, key: value, key = value
    rf"(?i)(?P<key>\b{_KEY})(?P<sep>\s*[:=]\s*)(?P<value>(?!\[redacted\])[^\s,;&\"'}}\]]+)"
)
_HEADER_LINE = re.compile(rf"(?im)(?P<key>\b{_KEY})(?P<sep>\s*:\s*)(?P<value>[^\r\n\"']+)")
_SCHEME_TOKEN = re.compile(r"(?i)\b(bearer|basic|digest|token)\s+[A-Za-z0-9._~+/=-]{4,}")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_URL = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s\"'<>]+")
_EMAIL = re.compile(r"[\w.!#$%&*+/=?^`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_PHONE = re.compile(
    r"(?<![\w+])(?:(?:\+|00)\d[\d\s().-]{6,}\d|0\d{2,4}[\s-]?\d{5,8}|\d{10,})(?![\w])"
)
#: Keys, tokens, hashes: long runs of mixed letters and digits.
_OPAQUE = re.compile(r"\b(?=[A-Za-z0-9+/_=-]*\d)(?=[A-Za-z0-9+/_=-]*[A-Za-z])[A-Za-z0-9+/_=-]{20,}")


def redact_text(text: str, limit: int = MAX_MESSAGE) -> str:
    """What of an exception message may leave the process: URLs reduced to scheme, host and
    path; credentials in JSON, Python-repr, form and header syntax masked; bearer/basic
    tokens, JWTs and long opaque strings masked; e-mail addresses and phone numbers (customer
    data from order payloads) masked; then truncated to ``limit`` characters."""
    text = _URL.sub(lambda m: public_url(m.group(0)) or MASK, text)
    text = _QUOTED_PAIR.sub(lambda m: f"{m['key']}: {m['q']}{MASK}{m['q']}", text)
    text = _HEADER_LINE.sub(_line_value, text)
    text = _SCHEME_TOKEN.sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = _PAIR.sub(
        lambda m: m["value"] if m["value"] == MASK else f"{m['key']}{m['sep']}{MASK}", text
    )
    text = _JWT.sub(MASK, text)
    text = _EMAIL.sub("[email]", text)
    text = _PHONE.sub("[phone]", text)
    text = _OPAQUE.sub(MASK, text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _line_value(match: re.Match[str]) -> str:
    """``Authorization: Basic abc`` and ``Cookie: a=b; c=d`` lose the whole header value."""
    if not _LINE_KEYS.search(match["key"]):
        return match.group(0)
    return f"{match['key']}{match['sep']}{MASK}"


def url_host(url: object) -> str | None:
    if not isinstance(url, str) or not url:
        return None
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def cause_from_logs(
    logs: Sequence[dict[str, Any]], started_failing_at: datetime | None
) -> dict[str, Any] | None:
    """The ``cause`` of an IntegrationFailing alert: the newest log, redacted, and how many
    logs (of the page read) are newer than the start of the failure."""
    entries = _newest_first(logs)
    if not entries:
        return None
    newest = entries[0]
    since = [e for e in entries if _not_before(e, started_failing_at)]
    code = newest.get("response_code")
    return {
        "exception_type": _short(newest.get("exception_type"), 120),
        "exception": _short(newest.get("exception"), MAX_MESSAGE),
        "response_code": code if isinstance(code, int) and not isinstance(code, bool) else None,
        "method": _short(newest.get("method"), 10),
        "host": url_host(newest.get("full_url")) or url_host(newest.get("base_url")),
        "created_at": newest.get("created_at") if _time(newest.get("created_at")) else None,
        "logs_since_failing": len(since),
        "logs_read": len(entries),
    }


def _newest_first(logs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    dated = [(t, i, e) for i, e in enumerate(logs) if (t := _time(e.get("created_at"))) is not None]
    undated = [e for e in logs if _time(e.get("created_at")) is None]
    return [e for _, _, e in sorted(dated, key=lambda x: (x[0], -x[1]), reverse=True)] + undated


def _not_before(entry: dict[str, Any], start: datetime | None) -> bool:
    created = _time(entry.get("created_at"))
    return start is None or (created is not None and created >= start)


def _short(value: object, limit: int) -> str | None:
    return redact_text(value, limit) if isinstance(value, str) and value else None


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def cause_text(cause: Mapping[str, Any]) -> str:
    """A cause in one line: ``SSLError: certificate expired (HTTP 495)``."""
    kind = cause.get("exception_type") or "error"
    message = cause.get("exception") or ""
    code = cause.get("response_code")
    text = f"{kind}: {message}" if message else str(kind)
    return text + (f" (HTTP {code})" if code is not None else "")


#: (pattern over the exception type and message, phrase), first match wins: what a person
#: reads first on the status page, with the raw text one click away.
_PHRASES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), phrase)
    for pattern, phrase in (
        (r"certificate (?:has )?expired|CERTIFICATE_EXPIRED", "TLS certificate expired"),
        (r"not yet valid", "TLS certificate not yet valid"),
        (r"self[- ]signed|unable to get local issuer|unknown ca\b", "TLS certificate not trusted"),
        (r"hostname mismatch|doesn't match|does not match", "TLS certificate for another host"),
        (r"\bSSL|\bTLS|certificate", "TLS handshake failed"),
        (r"ConnectTimeout|connect(?:ion)? timed? ?out", "connection timed out"),
        (r"ReadTimeout|read timed? ?out", "shop did not answer in time"),
        (r"Timeout|timed out", "connection timed out"),
        (r"refused", "connection refused"),
        (
            r"Name or service not known|nodename nor servname|getaddrinfo|NameResolution"
            r"|No address associated|Temporary failure in name resolution",
            "shop's host name not found",
        ),
        (
            r"reset by peer|RemoteDisconnected|Connection aborted|closed connection",
            "connection dropped by the shop",
        ),
        (r"too many redirects", "too many redirects"),
    )
)
_STATUS_IN_TEXT = re.compile(r"\b([1-5]\d\d) (?:Client|Server) Error\b")
_CREDENTIALS = re.compile(r"Authentication|Unauthori[sz]ed|Forbidden|api key|credentials", re.I)


def cause_summary(cause: Mapping[str, Any]) -> str:
    """A cause as a short phrase — ``shop answered 503``, ``TLS certificate expired``,
    ``connection timed out`` — from its type, message and response code; the exception's
    short type name when nothing is recognised."""
    kind = str(cause.get("exception_type") or "")
    message = str(cause.get("exception") or "")
    text = f"{kind} {message}"
    for pattern, phrase in _PHRASES:
        if pattern.search(text):
            return phrase
    code = cause.get("response_code")
    found = _STATUS_IN_TEXT.search(message)
    if not isinstance(code, int) and found is not None:
        code = int(found.group(1))
    if isinstance(code, int) and not isinstance(code, bool):
        if code in (401, 403):
            return f"shop refused Sendcloud's credentials ({code})"
        if code == 429:
            return "shop is rate-limiting Sendcloud (429)"
        return f"shop answered {code}"
    if _CREDENTIALS.search(text):
        return "shop refused Sendcloud's credentials"
    short = kind.rsplit(".", 1)[-1]
    return short or "error"
