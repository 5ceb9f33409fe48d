"""The receivers' sink: route each event, group per route across accounts, deliver.

Every event goes to the routes that take it (:mod:`monitor.notify.routes`); a route's events of
all accounts that arrive within ``group_wait`` become one group, screened for a platform-wide
incident (:mod:`monitor.notify.grouping`), and each group is one message
(:mod:`monitor.notify.messages`) queued on each of the route's receivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

import structlog

from monitor.alerting import Event
from monitor.notify.grouping import GROUP_WAIT_SECONDS, Grouper, IncidentDesk, collapse
from monitor.notify.messages import Message, message
from monitor.notify.routes import RouteTree, labels_of

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
    ) -> None:
        self.tree = tree
        self.receivers = dict(receivers)
        self._routes = {r.key: r for r in (*tree.routes, tree.default)}
        self._grouper = Grouper(group_wait_seconds)
        self._desk = IncidentDesk()
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

    async def aclose(self) -> None:
        """What is still gathering goes out now; then the receivers drain and close."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        for key, events in self._grouper.drain():
            self._dispatch(key, events)
        await asyncio.gather(*(r.aclose() for r in self.receivers.values()))
