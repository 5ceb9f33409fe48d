"""Grouping across accounts and platform-wide incidents, pure (times are passed in).

Within a route, the events of every account that arrive within ``group_wait`` go out as one
message (each alert once, at its newest). When more than half — and at least
``PLATFORM_MINIMUM`` — of one integration type in the route's scope start failing in one group,
it is likely the platform's own incident (Shopify down for everyone): the message says so, and
the follow-ups of those shops (escalations, repeats, causes, recoveries) are held while it
lasts. It ends when more than half of its shops have recovered: one message says so and lists
the recoveries, one more carries what the shops still failing missed (the newest follow-up of
each: its cause, an escalation), and those shops are notified on their own from then on.
The same holds for one certificate authority: when more than half — and at least
``PLATFORM_MINIMUM`` — of the shops whose certificates it issued start failing their probe or
expiring together (``IntegrationShopUnreachable``, ``IntegrationShopCertificateExpiring``), it
is one incident of that CA, not many of shops.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from monitor.alerting import Event

GROUP_WAIT_SECONDS = 10.0
#: The fewest shops of one type failing together that can make a platform incident.
PLATFORM_MINIMUM = 10
Group = tuple[list[Event], str | None]  # the events of one message, and its note
#: What an incident is of: ("integration_type", "shopify") or ("certificate_issuer", "ACME CA")
Scope = tuple[str, str]
#: The alerts of a shop probe: their incidents are a certificate authority's.
SHOP_ALERTS = frozenset({"IntegrationShopUnreachable", "IntegrationShopCertificateExpiring"})


def scope_of(event: Event) -> Scope | None:
    """The platform a firing event may be part of an incident of, if any."""
    if event["alert"] == "IntegrationFailing":
        return ("integration_type", event.get("integration_type") or "")
    if event["alert"] in SHOP_ALERTS and event.get("certificate_issuer"):
        return ("certificate_issuer", str(event["certificate_issuer"]))
    return None


class Grouper:
    """Events per route key, each key released ``wait`` seconds after its first event."""

    def __init__(self, wait: float = GROUP_WAIT_SECONDS) -> None:
        self.wait = wait
        self._pending: dict[str, tuple[float, list[Event]]] = {}

    def add(self, key: str, events: Iterable[Event], now: float) -> None:
        _, found = self._pending.setdefault(key, (now, []))
        found.extend(events)

    def next_due(self) -> float | None:
        return min((first + self.wait for first, _ in self._pending.values()), default=None)

    def due(self, now: float) -> list[tuple[str, list[Event]]]:
        ready = [k for k, (first, _) in self._pending.items() if first + self.wait <= now]
        return [(key, self._pending.pop(key)[1]) for key in ready]

    def drain(self) -> list[tuple[str, list[Event]]]:
        """Everything pending, at once (shutdown)."""
        found = [(key, events) for key, (_, events) in self._pending.items()]
        self._pending.clear()
        return found


def collapse(events: Sequence[Event]) -> list[Event]:
    """One event per alert (fingerprint) in a group, at its newest: a shop that fired and then
    got its cause within ``group_wait`` is one firing event with the cause, not two."""
    found: dict[str, Event] = {}
    for event in events:
        first = found.get(event["fingerprint"])
        if first is not None and first["kind"] == "fired" and event["status"] == "firing":
            event = {**event, "kind": "fired"}
        found[event["fingerprint"]] = event
    return list(found.values())


@dataclass
class PlatformIncident:
    integration_type: str  # the integration type, or the certificate issuer
    population: int
    members: set[str] = field(default_factory=set)  # fingerprints
    #: fingerprint -> the recovery of a member, held until the incident ends
    recovered: dict[str, Event] = field(default_factory=dict)
    #: fingerprint -> the newest follow-up (escalation, repeat, cause) of a member still
    #: failing, held until the incident ends
    held: dict[str, Event] = field(default_factory=dict)
    kind: str = "integration_type"  # or "certificate_issuer": what ``integration_type`` names

    @property
    def scope(self) -> Scope:
        return (self.kind, self.integration_type)

    def to_json(self, key: str) -> dict[str, Any]:
        return {
            "route": key,
            "integration_type": self.integration_type,
            "kind": self.kind,
            "population": self.population,
            "members": sorted(self.members),
            "recovered": list(self.recovered.values()),
            "held": list(self.held.values()),
        }

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> tuple[str, PlatformIncident]:
        """Raises KeyError, TypeError or ValueError for what is not one."""
        incident = cls(
            str(item["integration_type"]),
            int(item["population"]),
            kind=str(item.get("kind", "integration_type")),
        )
        incident.members = {str(f) for f in item["members"]}
        incident.recovered = {str(e["fingerprint"]): dict(e) for e in item["recovered"]}
        incident.held = {str(e["fingerprint"]): dict(e) for e in item["held"]}
        return str(item["route"]), incident


def merge_follow_up(before: Event | None, event: Event) -> Event:
    """One held follow-up per shop: the newest (it carries the cause and the severity of all
    before it), an escalation when one was held (a ``severity: critical`` route must hear it)."""
    if before is not None and before["kind"] == "escalated" and event["kind"] != "escalated":
        return {**event, "kind": "escalated"}
    return event


class IncidentDesk:
    """The platform incidents of every route, by (route key, integration type)."""

    def __init__(self, minimum: int = PLATFORM_MINIMUM) -> None:
        self.minimum = minimum
        self.incidents: dict[tuple[str, Scope], PlatformIncident] = {}
        self.revision = 0  # changes with what the incidents hold

    def screen(
        self,
        key: str,
        events: Sequence[Event],
        population: Callable[[str], int],
        certificates: Callable[[str], int] = lambda issuer: 0,
    ) -> list[Group]:
        """The messages one released group makes: its events less the held follow-ups (with
        a note when a platform incident starts), then, per incident that ended, one message
        with its recoveries and one with the held follow-ups of the shops still failing.
        ``population`` counts the route's integrations of a type, ``certificates`` those whose
        shop certificate a CA issued."""
        mine = {t: i for (k, t), i in self.incidents.items() if k == key}
        member_of = {f: i for i in mine.values() for f in i.members}
        kept: list[Event] = []
        for event in events:
            fingerprint = event["fingerprint"]
            incident = member_of.get(fingerprint)
            if incident is None:
                kept.append(event)
                continue
            self.revision += 1
            if event["kind"] == "fired":  # a new episode, or the end of a quiet hold
                incident.held.pop(fingerprint, None)
                incident.recovered.pop(fingerprint, None)
                kept.append(event)
            elif event["status"] == "resolved":
                incident.held.pop(fingerprint, None)
                incident.recovered[fingerprint] = event
            else:
                incident.held[fingerprint] = merge_follow_up(incident.held.get(fingerprint), event)
        notes = []
        started: dict[Scope, list[Event]] = {}
        for event in kept:
            scope = scope_of(event) if event["kind"] == "fired" else None
            if scope is not None:
                started.setdefault(scope, []).append(event)
        for scope, group in started.items():
            known = mine.get(scope)
            if known is not None:  # more shops of a running incident
                known.members |= {e["fingerprint"] for e in group}
                self.revision += 1
                continue
            kind, name = scope
            total = (
                (population if kind == "integration_type" else certificates)(name) if name else 0
            )
            if len(group) >= self.minimum and len(group) * 2 > total:
                incident = PlatformIncident(name, total, kind=kind)
                incident.members = {e["fingerprint"] for e in group}
                self.incidents[(key, scope)] = incident
                self.revision += 1
                notes.append(_started_note(kind, name, len(group), total))
        found: list[Group] = [(kept, " ".join(notes) or None)] if kept else []
        for scope, incident in list(mine.items()):
            recovered = len(incident.recovered)
            if recovered * 2 > len(incident.members):
                del self.incidents[(key, scope)]
                self.revision += 1
                still = len(incident.members) - recovered
                what = (
                    f"{scope[1]} platform incident"
                    if scope[0] == "integration_type"
                    else f"incident of the certificate authority {scope[1]}"
                )
                found.append(
                    (
                        list(incident.recovered.values()),
                        f"The likely {what} is over: {recovered} "
                        f"of {len(incident.members)} integrations recovered; {still} still "
                        "failing are notified on their own from now on.",
                    )
                )
                if incident.held:  # what they missed while it lasted
                    found.append((list(incident.held.values()), None))
        return found

    def forget(self, fingerprints: Set[str]) -> None:
        """Drop the held follow-ups of these shops (a quiet hold speaks for them now)."""
        for incident in self.incidents.values():
            for fingerprint in fingerprints & incident.held.keys():
                del incident.held[fingerprint]
                self.revision += 1

    def state(self) -> list[dict[str, Any]]:
        """The running incidents, as JSON (saved with the alerts)."""
        return [incident.to_json(key) for (key, _), incident in self.incidents.items()]

    def restore(self, saved: Sequence[Any], keep: Callable[[str], bool]) -> list[PlatformIncident]:
        """Take over the saved incidents of the routes ``keep`` accepts (an unusable entry is
        skipped, never raised); returns those of the other routes, for their owner to end."""
        ended = []
        for item in saved:
            try:
                key, incident = PlatformIncident.from_json(item)
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
            if keep(key):
                self.incidents[(key, incident.scope)] = incident
            else:
                ended.append(incident)
        self.revision += 1
        return ended


def _started_note(kind: str, name: str, count: int, total: int) -> str:
    if kind == "integration_type":
        return (
            f"Likely a platform-side incident: {count} of {total} "
            f"{name} integrations in this route started failing together. "
            "Their follow-ups are held until it ends or a shop outlasts it."
        )
    return (
        f"Likely an incident of the certificate authority {name}: {count} of {total} shops "
        "with its certificates in this route started failing their probe or expiring together. "
        "Their follow-ups are held until it ends or a shop outlasts it."
    )
