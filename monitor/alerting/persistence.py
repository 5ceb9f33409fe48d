"""Open alerts on disk, so a restart neither re-fires nor forgets to resolve.

With them, what the sinks hold back (``holds``: the alerts a maintenance window or a mute
keeps from the receivers, a platform incident's held follow-ups), so that a hold that ends
while the daemon is down is released after the restart as if it had never stopped.

Written atomically (temporary file, fsync, rename) after each change. A missing file is a
clean start; a corrupt or incompatible one logs one warning and is a clean start too. A file
of the previous format (open alerts only) is read as open alerts with nothing held.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from monitor.alerting.rules import AlertKey, AlertState, Context

FORMAT_VERSION = 2
#: Versions still read: 1 had the open alerts only.
READABLE_VERSIONS = (1, 2)
log = structlog.get_logger(__name__)
#: What each holding sink keeps back, by the sink's name (JSON, the sink's own format).
Holds = Mapping[str, Any]


@dataclass(frozen=True)
class Saved:
    """The content of a state file: the open alerts and what the sinks hold back."""

    alerts: dict[AlertKey, AlertState] = field(default_factory=dict)
    holds: dict[str, Any] = field(default_factory=dict)


def save(path: Path, states: Mapping[AlertKey, AlertState], holds: Holds | None = None) -> None:
    document = {
        "version": FORMAT_VERSION,
        "alerts": [_encode(s) for s in states.values()],
        "holds": dict(holds or {}),
    }
    data = json.dumps(document, indent=1, sort_keys=True).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # make the rename itself durable
    finally:
        os.close(directory)


def load(path: Path) -> dict[AlertKey, AlertState]:
    """The saved open alerts; empty, with one warning, when the file is missing (a first start)
    or cannot be used."""
    return load_all(path).alerts


def load_all(path: Path) -> Saved:
    """The saved open alerts and holds; empty, with one warning, when the file is missing (a
    first start) or cannot be used."""
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        log.warning("alert_state_missing", path=str(path), action="start clean")
        return Saved()
    except (OSError, ValueError) as exc:
        log.warning("alert_state_unreadable", path=str(path), error=str(exc), action="start clean")
        return Saved()
    if not isinstance(document, dict) or document.get("version") not in READABLE_VERSIONS:
        log.warning(
            "alert_state_incompatible",
            path=str(path),
            found_version=document.get("version") if isinstance(document, dict) else None,
            expected_version=FORMAT_VERSION,
            action="start clean",
        )
        return Saved()
    try:
        states = [_decode(item) for item in document["alerts"]]
        holds = document.get("holds") or {}
        if not isinstance(holds, dict):
            raise TypeError("holds is not an object")
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("alert_state_unreadable", path=str(path), error=repr(exc), action="start clean")
        return Saved()
    return Saved({state.key: state for state in states}, holds)


def _encode(state: AlertState) -> dict[str, Any]:
    return {
        "key": list(state.key),
        "since": state.since.isoformat(),
        "observations": state.observations,
        "firing_since": _iso(state.firing_since),
        "last_notified": _iso(state.last_notified),
        "severity": state.severity,
        "episode": _iso(state.episode),
        "context": {
            k: _iso(v) if isinstance(v, datetime) else v for k, v in asdict(state.context).items()
        },
    }


def _decode(item: dict[str, Any]) -> AlertState:
    alert, account, integration_id = item["key"]
    if not isinstance(alert, str) or not isinstance(account, str):
        raise ValueError("bad alert key")
    context = dict(item.get("context") or {})
    for name in (*_TIMES, "started_failing_at", "last_fetched_at"):
        context[name] = _time(context.get(name))
    context["failed_checks"] = tuple(context.get("failed_checks") or ())
    return AlertState(
        key=AlertKey(alert, account, None if integration_id is None else int(integration_id)),
        since=_required_time(item["since"]),
        observations=int(item["observations"]),
        firing_since=_time(item.get("firing_since")),
        last_notified=_time(item.get("last_notified")),
        severity=str(item["severity"]),
        context=Context(**context),
        episode=_time(item.get("episode")),
    )


#: The context's timestamps of the shop and check alerts (a file written before them has none).
_TIMES = ("certificate_expires_at", "config_changed_at")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _time(value: object) -> datetime | None:
    return None if value is None else _required_time(value)


def _required_time(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError("timestamp is not a string")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("timestamp without offset")
    return parsed
