"""Configuration checks: what is quietly wrong in an integration's record, pure.

From the records the daemon reads anyway (no extra request) — and, for PrestaShop v2, the
status mapping read once per probe interval — each check says whether one integration is set
up so that something silently never happens:

- ``feedback_off``: ``feedback_type: none`` — the shop is never told an order shipped (not for
  PrestaShop v2, whose status mapping decides feedback instead);
- ``webhook_without_url``: ``webhook_active`` without a ``webhook_url`` — parcel updates go
  nowhere;
- ``service_points_without_carriers``: ``service_point_enabled`` without carriers — the
  checkout's service-point picker offers nothing;
- ``duplicate_shop``: two integrations of one account on one shop (the URLs compared
  normalised: scheme, ``www.``, default port, case of the host and trailing slashes aside) —
  orders imported twice, or fetched by the wrong one;
- ``status_mapping``: a PrestaShop v2 status mapping that points at a deleted shop status
  (``is_valid: false``) or leaves a category unmapped (two categories may share one status).

A check can be switched off per account or per integration (``checks.ignore``). The
:class:`Assessor` puts it all together for the store: each integration's probe and failed
checks, once per snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from urllib.parse import urlsplit

from monitor.probes import ShopProbe, Target, target_of
from monitor.sendcloud import CATEGORIES, Integration, StatusMapping
from monitor.store import AccountSnapshot, FailedCheck, Findings

FEEDBACK_OFF = "feedback_off"
WEBHOOK_WITHOUT_URL = "webhook_without_url"
SERVICE_POINTS_WITHOUT_CARRIERS = "service_points_without_carriers"
DUPLICATE_SHOP = "duplicate_shop"
STATUS_MAPPING = "status_mapping"
CHECKS = (
    FEEDBACK_OFF,
    WEBHOOK_WITHOUT_URL,
    SERVICE_POINTS_WITHOUT_CARRIERS,
    DUPLICATE_SHOP,
    STATUS_MAPPING,
)
#: The integration type whose status mapping is read when nothing else is configured.
DEFAULT_MAPPING_TYPES = ("prestashop_v2",)
_DEFAULT_PORTS = {"https": 443, "http": 80}


def normalised_shop(url: str | None) -> str | None:
    """The shop a URL names, for comparing two: host in lower case without ``www.`` and a
    trailing dot, a port only when it is not the scheme's default, the path without trailing
    slashes; scheme, query and fragment left out."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").rstrip(".").lower()
        port = parts.port
    except ValueError:
        return None
    if not host:
        return None
    host = host.removeprefix("www.")
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme.lower()):
        host += f":{port}"
    return host + parts.path.rstrip("/")


def record_checks(record: Integration, *, mapping_type: bool) -> list[FailedCheck]:
    """The checks one record fails on its own (``duplicate_shop`` and ``status_mapping`` need
    more than the record)."""
    failed = []
    if record.feedback_type == "none" and not mapping_type:
        failed.append(
            FailedCheck(
                FEEDBACK_OFF,
                "feedback is off (feedback_type: none): the shop is never told an order shipped",
            )
        )
    if record.webhook_active and record.has_webhook_url is False:
        failed.append(
            FailedCheck(
                WEBHOOK_WITHOUT_URL,
                "the parcel webhook is active but has no URL: parcel updates go nowhere",
            )
        )
    if record.service_point_enabled and record.service_point_carriers == ():
        failed.append(
            FailedCheck(
                SERVICE_POINTS_WITHOUT_CARRIERS,
                "service points are enabled without a carrier: the checkout offers none",
            )
        )
    return failed


def mapping_problems(mapping: StatusMapping) -> list[str]:
    """What is wrong with a status mapping, in plain words (empty: nothing)."""
    problems = []
    seen = set()
    for entry in mapping.entries:
        seen.add(entry.status_category)
        if entry.external_id is None:
            problems.append(f"{entry.status_category} is unmapped")
        elif not entry.is_valid:
            problems.append(
                f"{entry.status_category} points at a deleted shop status ({entry.external_id})"
            )
    problems += [f"{category} is unmapped" for category in CATEGORIES if category not in seen]
    return problems


def mapping_check(mapping: StatusMapping) -> FailedCheck | None:
    problems = mapping_problems(mapping)
    if not problems:
        return None
    return FailedCheck(STATUS_MAPPING, "the order status mapping is broken: " + "; ".join(problems))


def duplicates(shops: Mapping[int, str | None]) -> dict[int, list[int]]:
    """Integration -> the others of the account on the same (normalised) shop."""
    by_shop: dict[str, list[int]] = {}
    for integration_id, shop in shops.items():
        if shop is not None:
            by_shop.setdefault(shop, []).append(integration_id)
    return {
        integration_id: sorted(i for i in ids if i != integration_id)
        for ids in by_shop.values()
        if len(ids) > 1
        for integration_id in ids
    }


def duplicate_check(others: list[int]) -> FailedCheck:
    named = ", ".join(str(i) for i in others)
    noun = "integration" if len(others) == 1 else "integrations"
    return FailedCheck(
        DUPLICATE_SHOP,
        f"{noun} {named} of this account {'is' if len(others) == 1 else 'are'} "
        "on the same shop: orders may be imported twice",
    )


Ignored = Callable[[str, int], frozenset[str]]  # (account, integration_id) -> checks off
_Derived = tuple[Integration, Target | None, str | None, str | None, list[FailedCheck]]


class Assessor:
    """Each snapshot's findings (the store's ``assess``): per integration its shop's latest
    probe and the checks that fail. Reads the current probe states, status mappings and
    inventory through callables; records unchanged since the last snapshot reuse what was
    derived from them (a list walk returns unchanged records as the same objects)."""

    def __init__(
        self,
        *,
        probes: Callable[[], Mapping[str, ShopProbe]] = dict,
        mappings: Callable[[str], Mapping[int, StatusMapping]] = lambda account: {},
        ignored: Ignored = lambda account, integration_id: frozenset(),
        mapping_types: frozenset[str] = frozenset(DEFAULT_MAPPING_TYPES),
        unmonitored: Callable[[str], tuple[int, ...] | None] = lambda account: None,
    ) -> None:
        self.probes = probes
        self.mappings = mappings
        self.ignored = ignored
        self.mapping_types = mapping_types
        self.unmonitored = unmonitored
        #: account -> integration -> (the record, its target and the target's name, its shop,
        #: its own checks)
        self._derived: dict[str, dict[int, _Derived]] = {}
        self._findings: dict[str, dict[int, Findings]] = {}  # the last ones, to reuse
        self._twins: dict[str, dict[int, list[int]]] = {}  # duplicate shops, while unchanged

    def forget(self, account: str) -> None:
        self._derived.pop(account, None)
        self._findings.pop(account, None)
        self._twins.pop(account, None)

    def targets(self, snapshot: AccountSnapshot) -> set[Target]:
        """The targets of an account's integrations that have a record (what to probe)."""
        derived = self._derived.get(snapshot.account, {})
        return {
            target
            for integration_id in snapshot.integrations
            if (found := derived.get(integration_id)) is not None
            and (target := found[1]) is not None
        }

    def __call__(self, snapshot: AccountSnapshot) -> AccountSnapshot:
        account = snapshot.account
        before = self._derived.get(account, {})
        derived = {}
        changed = False
        for integration_id, observation in snapshot.integrations.items():
            record = observation.record
            if record is None or not observation.has_values:
                continue
            found = before.get(integration_id)
            if found is None or found[0] is not record:
                changed = True
                target = target_of(record.shop_url)
                found = (
                    record,
                    target,
                    str(target) if target is not None else None,
                    normalised_shop(record.shop_url),
                    record_checks(record, mapping_type=record.type in self.mapping_types),
                )
            derived[integration_id] = found
        self._derived[account] = derived
        probes = self.probes()
        mappings = self.mappings(account)
        twins = self._twins.get(account)
        if twins is None or changed or len(derived) != len(before):
            twins = self._twins[account] = duplicates({i: d[3] for i, d in derived.items()})
        old = self._findings.get(account, {})
        findings: dict[int, Findings] = {}
        for integration_id, (record, _, name, _, own) in derived.items():
            failed = list(own)
            if integration_id in twins:
                failed.append(duplicate_check(twins[integration_id]))
            mapping = mappings.get(integration_id)
            if mapping is not None and record.type in self.mapping_types:
                broken = mapping_check(mapping)
                if broken is not None:
                    failed.append(broken)
            ignored = self.ignored(account, integration_id)
            kept = tuple(f for f in failed if f.check not in ignored)
            probe = probes.get(name) if name is not None else None
            if probe is None and not kept:
                continue
            previous = old.get(integration_id)
            if previous is not None and previous.probe is probe and previous.failed == kept:
                findings[integration_id] = previous  # the same object: nothing to render anew
            else:
                findings[integration_id] = Findings(probe, kept)
        self._findings[account] = findings
        return replace(snapshot, findings=findings, unmonitored=self.unmonitored(account))
