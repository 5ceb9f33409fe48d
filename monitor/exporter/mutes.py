"""``/api/v1/mutes``: list the mutes in force, make one, end one (server threads).

Writing needs basic auth users in the web config, so that each change names who made it (an
audit line with the user); without them the write endpoints answer 403 and say so.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog

from monitor.history import HistoryError, MuteStore
from monitor.history.mutes import mute_request

log = structlog.get_logger(__name__)


#: Why a mute for (account, integration_id) would hold nothing here, or None.
TargetCheck = Callable[[str, int | None], str | None]


class MutesApi:
    def __init__(
        self,
        mutes: MuteStore,
        clock: Callable[[], datetime],
        writers_known: bool,
        on_change: Callable[[], None],
        check: TargetCheck = lambda account, integration_id: None,
    ) -> None:
        self.mutes = mutes
        self._clock = clock
        self._writers_known = writers_known
        self._on_change = on_change
        #: refuses a mute for an account or integration this monitor does not watch (as the
        #: CLI does): it would be stored and never hold anything
        self._check = check

    def __call__(self, method: str, path: str, user: str | None, body: bytes) -> tuple[int, Any]:
        now = self._clock()
        mute_id = path.removeprefix("/api/v1/mutes").strip("/")
        if method == "GET" and not mute_id:
            try:
                return 200, {"mutes": [m.to_json() for m in self.mutes.active(now)]}
            except HistoryError as exc:
                return 503, {"error": str(exc)}
        if method not in ("POST", "DELETE") or (method == "POST") == bool(mute_id):
            return 405, {"error": "GET or POST /api/v1/mutes, DELETE /api/v1/mutes/{id}"}
        if not self._writers_known or user is None:
            return 403, {
                "error": "changing mutes needs basic_auth_users in the web config "
                "(--web.config.file), so that each change names who made it; use "
                "`integration-monitor mute` where the state directory is writable"
            }
        try:
            if method == "DELETE":
                removed = self.mutes.remove(mute_id, now)
                if removed is None:
                    return 404, {"error": f"no active mute {mute_id!r}"}
                log.info("mute_removed", user=user, via="api", **removed.to_json())
                self._on_change()
                return 200, {"mute": removed.to_json()}
            request = mute_request(body, now)
            problem = self._check(request["account"], request["integration_id"])
            if problem is not None:
                return 400, {"error": problem}
            mute = self.mutes.add(author=user, now=now, **request)
        except ValueError as exc:
            return 400, {"error": str(exc)}
        except HistoryError as exc:
            return 503, {"error": str(exc)}
        log.info("mute_created", user=user, via="api", **mute.to_json())
        self._on_change()
        return 201, {"mute": mute.to_json()}
