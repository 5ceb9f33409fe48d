"""Routes: which receivers hear an alert event, pure.

As in Alertmanager, routes are tried in order; the first that matches takes the event, unless
it has ``continue``, when the following routes are tried too. An event no route takes goes to
the default route. Matchers are on the event's labels: ``account``, ``alert`` and
``integration_type`` as glob patterns (``acme-*``, ``Integration*``), ``severity`` and
``integration_id`` exactly; a route without matchers takes everything.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from monitor.alerting.rules import ALERTS

#: The labels a route can match on, in the order they are printed.
LABELS = ("account", "alert", "severity", "integration_type", "integration_id")
#: The severities an alert event carries.
SEVERITIES = ("warning", "critical")
DEFAULT = "default"


@dataclass(frozen=True)
class Matchers:
    account: str | None = None
    alert: str | None = None
    severity: str | None = None
    integration_type: str | None = None
    integration_id: int | None = None

    def matches(self, labels: Mapping[str, Any]) -> bool:
        for name in ("account", "alert", "integration_type"):
            pattern = getattr(self, name)
            if pattern is not None and not fnmatch.fnmatchcase(
                str(labels.get(name) or ""), pattern
            ):
                return False
        if self.severity is not None and labels.get("severity") != self.severity:
            return False
        return self.integration_id is None or labels.get("integration_id") == self.integration_id

    def in_scope(self, account: str, integration_id: int, integration_type: str | None) -> bool:
        """Whether an integration is one this route speaks of, whatever the alert and severity
        (the population a platform-wide incident is measured against)."""
        labels = {
            "account": account,
            "integration_id": integration_id,
            "integration_type": integration_type,
        }
        return Matchers(
            self.account, None, None, self.integration_type, self.integration_id
        ).matches(labels)

    def describe(self) -> str:
        found = [
            f"{name}={getattr(self, name)}" for name in LABELS if getattr(self, name) is not None
        ]
        return ", ".join(found) or "everything"


@dataclass(frozen=True)
class Route:
    """One route: its matchers, the receivers it notifies, and whether evaluation continues."""

    key: str  # "route 1", "route 2", ... or "default": its name in logs, tests and metrics
    receivers: tuple[str, ...]
    matchers: Matchers = field(default_factory=Matchers)
    continue_: bool = False


@dataclass(frozen=True)
class RouteTree:
    routes: tuple[Route, ...]
    default: Route

    @classmethod
    def of(
        cls, routes: Sequence[tuple[Matchers, Sequence[str], bool]], default: Sequence[str]
    ) -> RouteTree:
        return cls(
            tuple(
                Route(f"route {number}", tuple(receivers), matchers, go_on)
                for number, (matchers, receivers, go_on) in enumerate(routes, start=1)
            ),
            Route(DEFAULT, tuple(default)),
        )

    def routes_for(self, labels: Mapping[str, Any]) -> list[Route]:
        """The routes that take an event with these labels (the default route when none)."""
        taken = []
        for route in self.routes:
            if route.matchers.matches(labels):
                taken.append(route)
                if not route.continue_:
                    break
        return taken or [self.default]

    def receivers_for(self, labels: Mapping[str, Any]) -> list[str]:
        """Every receiver an event reaches, each once, in route order."""
        found: list[str] = []
        for route in self.routes_for(labels):
            found += [r for r in route.receivers if r not in found]
        return found

    def in_scope(
        self, route: Route, account: str, integration_id: int, integration_type: str | None
    ) -> bool:
        """Whether a route speaks of an integration, whatever the alert: its matchers take it;
        for the default route, no route takes every alert of it."""
        if route is not self.default:
            return route.matchers.in_scope(account, integration_id, integration_type)
        return not any(
            r.matchers.alert is None
            and r.matchers.severity is None
            and not r.continue_
            and r.matchers.in_scope(account, integration_id, integration_type)
            for r in self.routes
        )

    def render(self) -> str:
        """The tree as text (``validate-config``, ``routes test``)."""
        lines = ["routes:"]
        for route in self.routes:
            go_on = " (continue)" if route.continue_ else ""
            lines.append(
                f"  {route.key}: {route.matchers.describe()}{go_on} -> "
                f"{', '.join(route.receivers) or '(nobody)'}"
            )
        lines.append(
            f"  default: everything else -> {', '.join(self.default.receivers) or '(nobody)'}"
        )
        return "\n".join(lines)


def labels_of(event: Mapping[str, Any]) -> dict[str, Any]:
    return {name: event.get(name) for name in LABELS}


def parse_labels(pairs: Sequence[str]) -> dict[str, Any]:
    """``alert=IntegrationFailing account=acme-nl`` as labels; raises ValueError."""
    labels: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or name not in LABELS:
            raise ValueError(
                f"expected label=value with a label among {', '.join(LABELS)}: {pair!r}"
            )
        if name == "integration_id":
            if not value.isdigit() or int(value) <= 0:
                raise ValueError(f"integration_id must be a positive number: {value!r}")
            labels[name] = int(value)
        elif name == "severity" and value not in SEVERITIES:
            raise ValueError(f"severity is {' or '.join(SEVERITIES)}, not {value!r}")
        elif name == "alert" and value not in ALERTS:
            raise ValueError(f"alert is one of {', '.join(ALERTS)}, not {value!r}")
        else:
            labels[name] = value
    return labels
