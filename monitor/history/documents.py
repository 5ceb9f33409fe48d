"""The JSON documents of the history API (``docs/history-api.schema.json``): parameters in,
documents out, with :class:`BadRequest` for parameters a client got wrong."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from monitor.history.availability import Availability, availability
from monitor.history.store import HistoryError, HistoryStore

DEFAULT_WINDOW = timedelta(days=30)
MAX_WINDOW = timedelta(days=400)


class BadRequest(ValueError):
    """A parameter the client must change; the message says which and how."""


def window(query: Mapping[str, list[str]], now: datetime) -> tuple[datetime, datetime]:
    """``from`` and ``to`` (RFC 3339, with an offset); by default the last 30 days. A window
    ends at ``now`` at the latest: nothing is known of the future."""
    until = min(_time(query, "to") or now, now)
    since = _time(query, "from") or until - DEFAULT_WINDOW
    if since >= until:
        raise BadRequest("'from' must be before 'to' and before now")
    if until - since > MAX_WINDOW:
        raise BadRequest(f"the window may span at most {MAX_WINDOW.days} days")
    return since, until


def integration_history(
    store: HistoryStore, account: str, integration_id: int, since: datetime, until: datetime
) -> dict[str, Any]:
    intervals = store.intervals(account, integration_id, since, until)
    return {
        "account": account,
        "integration_id": integration_id,
        "from": _iso(since),
        "to": _iso(until),
        "intervals": [
            {"state": i.state, "since": _iso(i.since), "until": _iso(i.until)} for i in intervals
        ],
        "episodes": store.episodes(account, integration_id, since, until),
        "changes": store.changes(account, integration_id, since, until),
    }


def availability_rows(
    store: HistoryStore, account: str, since: datetime, until: datetime, now: datetime
) -> dict[str, Any]:
    by_integration = store.account_intervals(account, since, until)
    return {
        "account": account,
        "from": _iso(since),
        "to": _iso(until),
        "integrations": [
            {"integration_id": integration_id, **figures(availability(i, since, until, now))}
            for integration_id, i in sorted(by_integration.items())
        ],
    }


def figures(found: Availability) -> dict[str, Any]:
    """The figures of item 2, as the API, badges and reports give them."""
    return {
        "availability": found.ratio,
        "seconds": {state: round(value, 3) for state, value in found.seconds.items()},
        "incidents": len(found.incidents),
        "longest_incident_seconds": round(found.longest_incident_seconds, 3),
        "mean_time_to_recovery_seconds": found.mean_time_to_recovery_seconds,
    }


def _time(query: Mapping[str, list[str]], name: str) -> datetime | None:
    values = query.get(name)
    if not values:
        return None
    try:
        parsed = datetime.fromisoformat(values[0])
    except ValueError:
        raise BadRequest(f"'{name}' must be an RFC 3339 time, e.g. 2026-11-01T00:00:00Z") from None
    if parsed.tzinfo is None:
        raise BadRequest(f"'{name}' needs an offset (Z or +01:00)")
    return parsed


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def route(
    store: HistoryStore | None, path: str, query: Mapping[str, list[str]], now: datetime
) -> tuple[int, dict[str, Any]]:
    """``GET /api/v1/...``: (HTTP status, JSON document). Errors are ``{"error": ...}``."""
    if store is None:
        return 404, {"error": "no history is kept: set history.path or MONITOR_HISTORY_FILE"}
    parts = path.strip("/").split("/")
    try:
        if parts[:3] == ["api", "v1", "availability"] and len(parts) == 3:
            account = (query.get("account") or [""])[0]
            if not account:
                raise BadRequest("'account' is required")
            since, until = window(query, now)
            if not store.knows(account):
                return 404, {"error": f"the history has nothing of account {account!r}"}
            return 200, availability_rows(store, account, since, until, now)
        if len(parts) == 6 and parts[:3] == ["api", "v1", "integrations"] and parts[5] == "history":
            if not parts[4].isdigit() or not parts[4].isascii():
                raise BadRequest("the integration id must be a number")
            since, until = window(query, now)
            account, integration_id = parts[3], int(parts[4])
            if not store.knows(account, integration_id):
                return 404, {
                    "error": f"the history has nothing of integration {integration_id} "
                    f"of account {account!r}"
                }
            return 200, integration_history(store, account, integration_id, since, until)
    except BadRequest as exc:
        return 400, {"error": str(exc)}
    except HistoryError as exc:  # not written yet, or broken: say so, never a traceback
        return 503, {"error": str(exc)}
    return 404, {"error": "not found"}
