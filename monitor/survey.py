"""What the monitor reads from Sendcloud besides the polls, once per probe interval: the
account's inventory and the PrestaShop v2 status mappings.

- **Inventory.** With configured integration IDs, one list walk per interval finds the
  account's integrations that nobody monitors: their number is exported and each new one is
  announced once (an ``integration_appeared`` info line); one that leaves the account is too.
  With ``all``, the polls' own lists are the inventory (no extra request): an integration that
  appears is announced once when its monitoring starts, one that leaves once when its series
  and alerts end. What was seen is kept in the history file, so a restart announces only what
  changed while it was down.
- **Status mappings.** For integrations of the mapping types (``prestashop_v2``), one
  ``GET /shop-order-statuses/mapping`` each per interval. An answer that the integration has
  none (400/404) is remembered — not asked again until its type or ``updated_at`` changes, or
  the monitor restarts — and a failed read keeps the last mapping read.

Every request goes through the account's client, so it takes from the account's request
budget like a poll; a survey never runs beside itself and never makes a poll wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

import structlog

from monitor.checks import Assessor
from monitor.probes.runner import ProbeRunner
from monitor.probes.tls import verifying_context
from monitor.sendcloud import ApiError, Integration, StatusMapping, Unsupported
from monitor.settings import AccountConfig, ProbeSettings
from monitor.store import AccountSnapshot, ReadOutcome, Store

log = structlog.get_logger(__name__)

#: Share of the interval one survey may take (it is cut, and logged, after that).
SURVEY_DEADLINE_SHARE = 0.9

InventoryObserver = Callable[[str, Mapping[int, bool]], None]  # (account, id -> monitored)


class SurveyClient(Protocol):
    async def list_integrations(self) -> Any: ...

    async def status_mapping(self, integration_id: int) -> StatusMapping: ...


def describe(integration_id: int, record: Integration | None) -> str:
    """``integration 123 (shopify, shop.example)``"""
    details = []
    if record is not None and record.type:
        details.append(record.type)
    if record is not None and record.shop_url:
        details.append(record.shop_url)
    elif record is not None and record.shop_name:
        details.append(record.shop_name)
    return f"integration {integration_id}" + (f" ({', '.join(details)})" if details else "")


class Inventory:
    """Which integrations an account has, as last seen, and the info lines for changes."""

    def __init__(
        self,
        account: str,
        known: Mapping[int, bool] | None = None,
        on_change: InventoryObserver = lambda account, seen: None,
    ) -> None:
        self.account = account
        #: id -> monitored; None until a first walk or poll (then: no announcements)
        self.known: dict[int, bool] | None = dict(known) if known is not None else None
        self._on_change = on_change
        self._names: dict[int, Integration] = {}

    @property
    def unmonitored(self) -> tuple[int, ...] | None:
        if self.known is None:
            return None
        return tuple(sorted(i for i, monitored in self.known.items() if not monitored))

    def walked(self, listed: Iterable[Integration], configured: Iterable[int]) -> None:
        """An inventory walk (configured IDs): every integration the list gave."""
        wanted = set(configured)
        records = {r.id: r for r in listed}
        seen = {i: i in wanted for i in records}
        self._update(seen, records, announce_first=True)

    def polled(self, snapshot: AccountSnapshot) -> None:
        """A poll of an account in ``all`` mode whose list walk succeeded: its integrations
        are the inventory (the first one is the baseline: nothing announced)."""
        records = {
            i: o.record
            for i, o in snapshot.integrations.items()
            if o.record is not None and o.status is not ReadOutcome.NOT_FOUND
        }
        seen = dict.fromkeys(snapshot.integrations, True)
        self._update(seen, records, announce_first=False)

    def _update(
        self, seen: dict[int, bool], records: Mapping[int, Integration], *, announce_first: bool
    ) -> None:
        before = self.known
        if before == seen:
            self._names.update(records)
            return
        first = before is None
        before = before or {}
        for integration_id in sorted(seen.keys() - before.keys()):
            monitored = seen[integration_id]
            if first and (monitored or not announce_first):
                continue
            what = describe(integration_id, records.get(integration_id))
            log.info(
                "integration_appeared",
                account=self.account,
                integration_id=integration_id,
                monitored=monitored,
                message=f"{what} appeared; "
                + ("it is monitored from now on" if monitored else "it is not monitored"),
            )
        for integration_id in sorted(before.keys() - seen.keys()):
            monitored = before[integration_id]
            what = describe(integration_id, self._names.get(integration_id))
            log.info(
                "integration_disappeared",
                account=self.account,
                integration_id=integration_id,
                monitored=monitored,
                message=f"{what} disappeared from the account"
                + ("; its series and alerts end" if monitored else "; it was not monitored"),
            )
        for integration_id in [i for i in self._names if i not in seen]:
            del self._names[integration_id]
        self._names.update(records)
        self.known = seen
        self._on_change(self.account, seen)


class Survey:
    """One account's reads once per probe interval (its task: :meth:`run`)."""

    def __init__(
        self,
        account: AccountConfig,
        client: SurveyClient,
        store: Store,
        inventory: Inventory,
        *,
        interval_seconds: float,
        mapping_types: frozenset[str],
        clock: Callable[[], datetime],
    ) -> None:
        self.account = account
        self.client = client
        self.store = store
        self.inventory = inventory
        self.interval = interval_seconds
        self.mapping_types = mapping_types
        self._clock = clock
        self.mappings: dict[int, StatusMapping] = {}
        #: integrations whose mapping the API does not offer -> (type, updated_at) then
        self.unsupported: dict[int, tuple[str | None, datetime | None]] = {}
        self._failing: str | None = None  # why the last read failed, while it does
        self.surveys = 0

    async def run(self, first_poll: asyncio.Event) -> None:
        """After the account's first poll, and then once per interval (cancelled at stop)."""
        await first_poll.wait()
        while True:
            await self.survey()
            await asyncio.sleep(self.interval)

    async def survey(self) -> None:
        """One survey, within most of the interval; its failures are logged, never raised. An
        account that cannot be read now (rejected keys, an outage) is left alone until the
        next interval: its polls already say so, more requests would not help."""
        if self.store.get(self.account.name).account_error is not None:
            return
        self.surveys += 1
        try:
            async with asyncio.timeout(SURVEY_DEADLINE_SHARE * self.interval):
                if self.account.integration_ids is not None:
                    await self._walk()
                await self.read_mappings(self.store.get(self.account.name))
        except TimeoutError:
            log.warning(
                "survey_cut_short",
                account=self.account.name,
                hint="the inventory walk and status mappings did not fit the probe interval; "
                "lengthen probes.interval_seconds",
            )
        self.store.refresh(self.account.name)

    async def _walk(self) -> None:
        try:
            result = await self.client.list_integrations()
        except ApiError as exc:
            self._failed("list_integrations", exc)
            return
        if not result.complete:
            return  # a cursor that never ends: nothing can be said of what was not listed
        ids = self.account.integration_ids or ()
        self.inventory.walked(result.integrations, ids)

    async def read_mappings(self, snapshot: AccountSnapshot) -> None:
        """The status mapping of each integration of a mapping type (one at a time)."""
        wanted = {
            i: o.record
            for i, o in snapshot.integrations.items()
            if o.record is not None
            and o.status is ReadOutcome.OK
            and o.record.type in self.mapping_types
        }
        for gone in [i for i in self.mappings if i not in wanted]:
            del self.mappings[gone]
        for integration_id, record in sorted(wanted.items()):
            remembered = self.unsupported.get(integration_id)
            if remembered == (record.type, record.updated_at):
                continue
            try:
                mapping = await self.client.status_mapping(integration_id)
            except Unsupported:
                self.unsupported[integration_id] = (record.type, record.updated_at)
                self.mappings.pop(integration_id, None)
                log.info(
                    "status_mapping_unsupported",
                    account=self.account.name,
                    integration_id=integration_id,
                    integration_type=record.type,
                    hint="not asked again until its type or configuration changes",
                )
                continue
            except ApiError as exc:
                self._failed("status_mapping", exc)
                continue
            self.unsupported.pop(integration_id, None)
            self.mappings[integration_id] = mapping
            self._recovered()

    def _failed(self, what: str, exc: ApiError) -> None:
        if self._failing != exc.reason:
            log.warning(
                "survey_read_failed",
                account=self.account.name,
                request=what,
                reason=exc.reason,
                hint="the last values read are kept; tried again next interval",
            )
        self._failing = exc.reason

    def _recovered(self) -> None:
        if self._failing is not None:
            log.info("survey_read_recovered", account=self.account.name)
        self._failing = None

    async def aclose(self) -> None:
        return None


async def stop(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Cancel survey tasks and wait for them."""
    found = list(tasks)
    for task in found:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*found, return_exceptions=True)


async def findings_once(
    store: Store,
    assessor: Assessor,
    clients: Mapping[str, tuple[AccountConfig, SurveyClient]],
    probes: ProbeSettings,
    clock: Callable[[], datetime],
) -> None:
    """For ``check``, after its one poll: each shop probed once, each status mapping read
    once, and every account assessed again with what they found."""
    runner = ProbeRunner(
        interval_seconds=probes.interval_seconds,
        concurrency=probes.concurrency,
        timeout_seconds=probes.timeout_seconds,
        context=verifying_context(probes.ca_file),
        allow_private=probes.allow_private_addresses,
        clock=clock,
    )
    targets = set().union(*(assessor.targets(store.get(name)) for name in clients))
    try:
        states = await runner.probe_now(targets)
    finally:
        await runner.aclose()
    mappings: dict[str, dict[int, StatusMapping]] = {}
    for name, (account, client) in clients.items():
        survey = Survey(
            account,
            client,
            store,
            Inventory(name),
            interval_seconds=probes.interval_seconds,
            mapping_types=assessor.mapping_types,
            clock=clock,
        )
        await survey.read_mappings(store.get(name))
        mappings[name] = survey.mappings
    assessor.probes = lambda: states
    assessor.mappings = lambda account: mappings.get(account, {})
    for name in clients:
        store.refresh(name)
