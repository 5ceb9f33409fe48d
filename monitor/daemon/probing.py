"""The shop probes and the surveys, wired to the rest: the probe runner (resumed from the
probes saved before a restart, each probe saved and counted, what changed assessed again
shortly), each account's survey (status mappings, inventory walks; once the account could be
read) and inventory, and the assessment of each snapshot's findings that reads them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import structlog

from monitor.checks import Assessor
from monitor.daemon.workers import Worker
from monitor.exporter.metrics import Metrics
from monitor.history import HistoryError, HistoryStore
from monitor.probes import ShopProbe
from monitor.probes.runner import ProbeRunner
from monitor.probes.tls import verifying_context
from monitor.settings import AccountConfig, ProbeSettings
from monitor.store import AccountSnapshot, Store
from monitor.survey import Inventory, Survey

log = structlog.get_logger(__name__)

#: A probe that changed what its shops show updates them after this long (one update for
#: the probes that end together), rather than at their next poll.
PROBE_REFRESH_SECONDS = 1.0


class Probing:
    """The probes and surveys of the accounts in ``configs`` (the accounts polled now, kept
    by the daemon), and the ``assessor`` the store assesses each snapshot with."""

    def __init__(
        self,
        settings: ProbeSettings,
        store: Store,
        history: HistoryStore | None,
        metrics: Metrics,
        clock: Callable[[], datetime],
        configs: Mapping[str, AccountConfig],
    ) -> None:
        self.settings = settings
        self.store = store
        self.history = history
        self.metrics = metrics
        self._clock = clock
        self._configs = configs
        #: the shop probes (None when probes are off, or before run)
        self.prober: ProbeRunner | None = None
        self._prober_task: asyncio.Task[None] | None = None
        #: account -> its survey (status mappings, inventory walks) and its task
        self.surveys: dict[str, Survey] = {}
        self._survey_tasks: dict[str, asyncio.Task[None]] = {}
        self._first_polls: dict[str, asyncio.Event] = {}
        self.inventories: dict[str, Inventory] = {}
        self._saved_inventories: dict[str, dict[int, bool]] = {}
        self._refreshing: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.assessor = Assessor(
            probes=lambda: self.prober.states if self.prober is not None else {},
            mappings=lambda account: (
                self.surveys[account].mappings if account in self.surveys else {}
            ),
            ignored=self._ignored,
            mapping_types=frozenset(self.settings.status_mapping_types),
            unmonitored=self._unmonitored,
        )

    def start(self) -> None:
        """The probe runner (probes on), resumed from the probes saved before a restart."""
        self._loop = asyncio.get_running_loop()
        if not self.settings.enabled:
            log.info("shop_probes_off", hint="probes.enabled is false: no shop is probed")
            return
        settings = self.settings
        self.prober = ProbeRunner(
            interval_seconds=settings.interval_seconds,
            concurrency=settings.concurrency,
            timeout_seconds=settings.timeout_seconds,
            context=verifying_context(settings.ca_file),
            allow_private=settings.allow_private_addresses,
            clock=self._clock,
            on_probe=self._probed,
            on_change=self._probe_changed,
        )
        if self.history is not None:
            try:
                self.prober.restore(self.history.probe_states())
            except HistoryError as exc:
                log.warning("shop_probes_unreadable", error=str(exc))
        self._prober_task = asyncio.create_task(self.prober.run(), name="shop probes")
        self.metrics.shop_probes_enabled(lambda: len(self.prober.in_use()) if self.prober else 0)

    async def stop(self) -> None:
        """The surveys and the probe runner end."""
        await self.stop_surveys(list(self._survey_tasks))
        if self._prober_task is not None:
            self._prober_task.cancel()
            await asyncio.gather(self._prober_task, return_exceptions=True)
            self._prober_task = None

    async def restart(
        self, settings: ProbeSettings, workers: Mapping[str, Worker], changed: Sequence[str]
    ) -> None:
        """New probe settings (a reload): the runner and every survey start again with them,
        the probes' last results kept. ``workers``: the accounts that stay polling."""
        await self.stop()
        kept = dict(self.prober.states) if self.prober is not None else {}
        self.prober = None
        self.settings = settings
        self.assessor.mapping_types = frozenset(settings.status_mapping_types)
        self.start()
        if self.prober is not None:
            self.prober.restore(kept)
            for name in workers:
                self.prober.set_targets(name, self.assessor.targets(self.store.get(name)))
        for name in [n for n in workers if n not in changed]:
            self.start_survey(workers[name])

    def restore_inventories(self) -> None:
        """Each account's inventory as last seen (before a restart)."""
        saved: dict[str, dict[int, bool]] = {}
        if self.history is not None:
            try:
                saved = self.history.inventories()
            except HistoryError as exc:
                log.warning("inventory_unreadable", error=str(exc))
        self._saved_inventories = saved

    def _inventory(self, account: str) -> Inventory:
        found = self.inventories.get(account)
        if found is None:
            history = self.history
            saved = self._saved_inventories.get(account)
            found = Inventory(
                account,
                saved,
                on_change=(
                    (lambda name, seen: history.inventory_seen(name, seen, self._clock()))
                    if history is not None
                    else (lambda name, seen: None)
                ),
            )
            self.inventories[account] = found
        return found

    def start_survey(self, worker: Worker) -> None:
        """The account's reads once per probe interval (probes on)."""
        name = worker.config.name
        inventory = self._inventory(name)
        if not self.settings.enabled:
            return
        survey = Survey(
            worker.config,
            worker.client,
            self.store,
            inventory,
            interval_seconds=self.settings.interval_seconds,
            mapping_types=frozenset(self.settings.status_mapping_types),
            clock=self._clock,
        )
        old = self.surveys.get(name)
        if old is not None:  # a restarted account keeps what it knew
            survey.mappings, survey.unsupported = old.mappings, old.unsupported
        self.surveys[name] = survey
        first = self._first_polls.setdefault(name, asyncio.Event())
        if self.store.get(name).last_cycle_success is not None:
            first.set()
        self._survey_tasks[name] = asyncio.create_task(survey.run(first), name=f"survey {name}")

    async def stop_surveys(self, names: Sequence[str]) -> None:
        """The surveys of these accounts end (their accounts stop, or restart)."""
        tasks = [self._survey_tasks.pop(n) for n in names if n in self._survey_tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def polled(self, snapshot: AccountSnapshot) -> None:
        """After each poll: the probes learn the account's shops, the inventory its
        integrations; the account's surveys start once it could be read."""
        account = snapshot.account
        if self.prober is not None:
            self.prober.set_targets(account, self.assessor.targets(snapshot))
        config = self._configs.get(account)
        if config is not None and config.integration_ids is None and account in self.inventories:
            self.inventories[account].polled(snapshot)
        first = self._first_polls.get(account)
        if first is not None and snapshot.account_error is None:
            first.set()  # its surveys start once the account could be read

    def forget(self, account: str) -> None:
        """An account a reload removed: its survey, inventory, findings and targets go."""
        self.surveys.pop(account, None)
        self.inventories.pop(account, None)
        self._first_polls.pop(account, None)
        self.assessor.forget(account)
        if self.prober is not None:
            self.prober.forget(account)

    def _ignored(self, account: str, integration_id: int) -> frozenset[str]:
        config = self._configs.get(account)
        return config.ignored(integration_id) if config is not None else frozenset()

    def _unmonitored(self, account: str) -> tuple[int, ...] | None:
        config = self._configs.get(account)
        inventory = self.inventories.get(account)
        if config is None or config.integration_ids is None or inventory is None:
            return None
        return inventory.unmonitored

    def _probed(self, state: ShopProbe, seconds: float) -> None:
        """Each probe: persisted (a restart resumes it) and counted."""
        if self.history is not None:
            self.history.probe(state)
        self.metrics.shop_probe(str(state.result), seconds)

    def _probe_changed(self, target: str) -> None:
        """A probe changed what its shops show: their accounts are assessed again shortly
        (one refresh for the probes that end together), not only at their next poll."""
        assert self.prober is not None
        accounts = self.prober.accounts_of(target)
        if not accounts:
            return
        schedule = not self._refreshing
        self._refreshing |= accounts
        if schedule and self._loop is not None:
            self._loop.call_later(PROBE_REFRESH_SECONDS, self._refresh)

    def _refresh(self) -> None:
        accounts, self._refreshing = self._refreshing, set()
        for account in accounts:
            if account in self._configs:
                self.store.refresh(account)
