"""The receivers' sink: route each event, group per route across accounts, deliver.

Every event goes to the routes that take it (:mod:`monitor.notify.routes`); a route's events of
all accounts that arrive within ``group_wait`` become one group, screened for a platform-wide
incident (:mod:`monitor.notify.grouping`), and each group is one message
(:mod:`monitor.notify.messages`) queued on each of the route's receivers.

The follow-ups a platform incident holds are state (:class:`monitor.alerting.HoldingSink`):
saved with the open alerts and restored after a restart, handed to the next router at a
reload. A reload that changes a route ends that route's incidents: what they held goes out
at once, by the routes then in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from typing import Any, Protocol

import structlog

from monitor.alerting import Event
from monitor.notify.grouping import (
    GROUP_WAIT_SECONDS,
    PLATFORM_MINIMUM,
    Grouper,
    IncidentDesk,
    collapse,
)
from monitor.notify.messages import Message, message
from monitor.notify.routes import Route, RouteTree, labels_of

log = structlog.get_logger(__name__)

#: (account, integration_id, integration_type, issuer of its shop's certificate) of every
#: integration watched now.
Fleet = Callable[[], Iterable[tuple[str, int, str | None, str | None]]]


class Receiver(Protocol):
    name: str

    def put(self, message: Message) -> None: ...

    async def aclose(self) -> None: ...


class Router:
    name = "routes"

    def __init__(
        self,
        tree: RouteTree,
        receivers: Mapping[str, Receiver],
        *,
        group_wait_seconds: float = GROUP_WAIT_SECONDS,
        fleet: Fleet = lambda: (),
        monotonic: Callable[[], float] = time.monotonic,
        incident_minimum: int = PLATFORM_MINIMUM,
    ) -> None:
        self.tree = tree
        self.receivers = dict(receivers)
        self._routes = {r.key: r for r in (*tree.routes, tree.default)}
        self._grouper = Grouper(group_wait_seconds)
        self._desk = IncidentDesk(incident_minimum)
        self._fleet = fleet
        self._monotonic = monotonic
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="router")

    def submit(self, account: str, events: Sequence[Event], firing: Sequence[Event]) -> None:
        now = self._monotonic()
        for event in events:
            for route in self.tree.routes_for(labels_of(event)):
                if route.receivers:
                    self._grouper.add(route.key, [event], now)
        self._wakeup.set()

    async def _run(self) -> None:
        while True:
            due = self._grouper.next_due()
            timeout = None if due is None else max(0.0, due - self._monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            self._wakeup.clear()
            for key, events in self._grouper.due(self._monotonic()):
                self._dispatch(key, events)

    def _dispatch(self, key: str, events: Sequence[Event]) -> None:
        route = self._routes[key]
        population, certificates = self._population(key)
        for group, note in self._desk.screen(key, collapse(events), population, certificates):
            text = message(group, note=note)
            for name in route.receivers:
                self.receivers[name].put(text)
            if note is not None:  # a likely platform incident started, or it is over
                over = all(e["status"] == "resolved" for e in group)
                name = "platform_incident_over" if over else "platform_incident"
                (log.info if over else log.warning)(name, route=key, events=len(group), note=note)

    def _population(self, key: str) -> tuple[Callable[[str], int], Callable[[str], int]]:
        """Counters of the route's integrations: of one type, and with a certificate from one
        issuer (what a platform incident is measured against)."""
        route = self._routes[key]

        def count(index: int, value: str) -> int:
            return sum(
                1
                for member in self._fleet()
                if member[index] == value
                and self.tree.in_scope(route, member[0], member[1], member[2])
            )

        return functools.partial(count, 2), functools.partial(count, 3)

    def incident_members(self) -> dict[str, set[str]]:
        """Route key -> the fingerprints whose follow-ups its platform incidents hold now."""
        found: dict[str, set[str]] = {}
        for (key, _), incident in self._desk.incidents.items():
            found.setdefault(key, set()).update(incident.members)
        return found

    # -- what it holds, across restarts and reloads (HoldingSink) --------------------------

    @property
    def revision(self) -> int:
        return self._desk.revision

    def holds(self) -> dict[str, Any]:
        return {
            "incidents": self._desk.state(),
            "routes": {key: _signature(route) for key, route in self._routes.items()},
        }

    def restore_holds(self, saved: Mapping[str, Any]) -> None:
        signatures = saved.get("routes")
        incidents = saved.get("incidents")
        if not isinstance(signatures, Mapping) or not isinstance(incidents, list):
            return

        def same_route(key: str) -> bool:
            route = self._routes.get(key)
            return route is not None and signatures.get(key) == _signature(route)

        for incident in self._desk.restore(incidents, same_route):
            # its route changed: what it held goes out by the routes in force now
            log.info(
                "platform_incident_over",
                integration_type=incident.integration_type,
                reason="its route changed",
            )
            self.submit("", [*incident.recovered.values(), *incident.held.values()], [])

    def hand_over(self, account: str, firing: Sequence[Event]) -> None:
        return None  # the receivers hear events, not the list of what fires

    def settle(self) -> None:
        for key, events in self._grouper.drain():
            self._dispatch(key, events)

    def forget(self, fingerprints: Set[str]) -> None:
        self._desk.forget(fingerprints)

    async def aclose(self) -> None:
        """What is still gathering goes out now; then the receivers drain and close."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self.settle()
        await asyncio.gather(*(r.aclose() for r in self.receivers.values()))


def _signature(route: Route) -> str:
    """What makes a route the same route across a restart or a reload (its key is its place)."""
    go_on = " (continue)" if route.continue_ else ""
    return route.matchers.describe() + go_on
