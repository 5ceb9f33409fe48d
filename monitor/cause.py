"""Why an integration fails, from its Sendcloud exception logs — redacted (pure functions).

Exception logs carry the request Sendcloud made to the shop, headers and payloads included.
Only a few fields are copied, URLs lose their query strings, messages are truncated, and
anything that looks like a credential is masked.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

MAX_MESSAGE = 300
MASK = "[redacted]"
_CREDENTIALS = (
    re.compile(r"(?i)\b(bearer|basic|token|digest)\s+[A-Za-z0-9._~+/=-]{6,}"),
    re.compile(
        r"(?i)\b([\w-]*(?:token|secret|password|passwd|api[_-]?key|auth|signature|sig)"
        r"[\w-]*)\s*[=:]\s*[^\s&,;\"']+"
    ),
    re.compile(r"(https?://)[^/\s:@]+:[^/\s@]+@"),  # user:password@ in URLs
    re.compile(r"\b[A-Za-z0-9+/_-]{32,}={0,2}"),  # long opaque strings: keys, tokens
)
_URL_QUERY = re.compile(r"(https?://[^\s?#\"']+)[?#][^\s\"']*")


def redact_text(text: str, limit: int = MAX_MESSAGE) -> str:
    """Mask credentials, drop URL query strings, truncate to ``limit`` characters."""
    text = _URL_QUERY.sub(r"\1", text)
    text = _CREDENTIALS[0].sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = _CREDENTIALS[1].sub(lambda m: f"{m.group(1)}={MASK}", text)
    text = _CREDENTIALS[2].sub(lambda m: f"{m.group(1)}{MASK}@", text)
    text = _CREDENTIALS[3].sub(MASK, text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
