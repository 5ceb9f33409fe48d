"""When each shop is probed: once per interval per distinct target, off the poll path.

The runner is one task on the event loop beside the polls. It knows the targets in use (the
daemon hands it each account's after every poll), probes each once per ``interval_seconds`` —
however many integrations share it — at most ``concurrency`` at a time, each within
``timeout_seconds`` (lookup, connect and handshake together). A new target is probed soon (new
ones are spread at about 20 a second, so a first start with thousands of shops does not burst),
then in its own phase. Nothing here waits on a poll or makes one wait: a probe that hangs holds
one of its own slots until its timeout, and host lookups run in the probes' own threads.

Each probe's :class:`ShopProbe` is kept here (and handed to ``on_probe`` to be persisted); a
probe whose visible outcome changed — result, expiry, issuer, failures in a row — is reported to
``on_change`` so the integrations on it show it before their next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

import structlog

from monitor.probes.lookup import NotResolved, PrivateAddress, Resolver
from monitor.probes.results import Outcome, Result, ShopProbe, advance
from monitor.probes.targets import Target
from monitor.probes.tcp import probe_tcp
from monitor.probes.tls import probe_tls

log = structlog.get_logger(__name__)

#: New targets are first probed at about this rate (a first start with many shops).
FIRST_PROBES_PER_SECOND = 20.0

ProbeObserver = Callable[[ShopProbe, float], None]  # (state, seconds the probe took)


class ProbeRunner:
    """The shop probes of the whole process (every account's targets, each probed once)."""

    def __init__(
        self,
        *,
        interval_seconds: float,
        concurrency: int,
        timeout_seconds: float,
        context: ssl.SSLContext,
        allow_private: bool,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
        on_probe: ProbeObserver = lambda state, seconds: None,
        on_change: Callable[[str], None] = lambda target: None,
    ) -> None:
        self.interval = interval_seconds
        self.timeout = timeout_seconds
        self.context = context
        self.allow_private = allow_private
        self._clock = clock
        self._monotonic = monotonic
        self._on_probe = on_probe
        self._on_change = on_change
        self._slots = asyncio.Semaphore(concurrency)
        self._resolver = Resolver(threads=min(concurrency, 8))
        #: str(target) -> its latest probe (also restored ones, until their target is gone)
        self.states: dict[str, ShopProbe] = {}
        self._by_account: dict[str, frozenset[Target]] = {}
        self._accounts: dict[str, set[str]] = {}  # str(target) -> the accounts using it
        self._due: dict[Target, float] = {}  # monotonic time of each target's next probe
        self._running: dict[Target, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self.probes_made = 0  # probes started, since the start (tests, the self-metric)

    # -- the targets in use ---------------------------------------------------------------------

    def set_targets(self, account: str, targets: Iterable[Target]) -> None:
        """The targets of one account's integrations now; new ones are scheduled."""
        found = frozenset(targets)
        if self._by_account.get(account) == found:
            return  # the same shops as last poll: most polls
        self._by_account[account] = found
        self._reschedule()

    def forget(self, account: str) -> None:
        """An account that left the configuration."""
        self._by_account.pop(account, None)
        self._reschedule()

    def accounts_of(self, target: str) -> set[str]:
        """The accounts with an integration on ``target`` (its ``str()``)."""
        return set(self._accounts.get(target, ()))

    def in_use(self) -> set[Target]:
        return set().union(*self._by_account.values()) if self._by_account else set()

    def restore(self, states: Mapping[str, ShopProbe]) -> None:
        """Probes made before a restart: each target is next probed one interval after its
        last probe (a restart neither probes again at once nor resets a run of failures)."""
        self.states.update(states)

    def _reschedule(self) -> None:
        self._accounts = {}
        for account, targets in self._by_account.items():
            for target in targets:
                self._accounts.setdefault(str(target), set()).add(account)
        wanted = self.in_use()
        for gone in [t for t in self._due if t not in wanted]:  # no integration uses it now
            del self._due[gone]
            self.states.pop(str(gone), None)
        new = sorted(t for t in wanted if t not in self._due)
        if not new:
            return
        now, wall = self._monotonic(), self._clock()
        spread = min(self.interval, len(new) / FIRST_PROBES_PER_SECOND)
        fresh = [t for t in new if str(t) not in self.states]
        for target in new:
            last = self.states.get(str(target))
            if last is not None:  # restored: in its own phase
                wait = self.interval - (wall - last.outcome.at).total_seconds()
                self._due[target] = now + min(self.interval, max(0.0, wait))
        for n, target in enumerate(fresh):
            self._due[target] = now + spread * n / len(fresh)
        self._wake.set()

    # -- probing ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Probe what is due, forever (cancelled at shutdown)."""
        try:
            while True:
                now = self._monotonic()
                due = [t for t, at in self._due.items() if at <= now and t not in self._running]
                for target in due:
                    self._due[target] = now + self.interval
                    task = asyncio.create_task(self._probe(target), name=f"probe {target}")
                    self._running[target] = task
                    task.add_done_callback(functools.partial(self._done, target))
                waiting = [at for t, at in self._due.items() if t not in self._running]
                timeout = max(0.0, min(waiting) - self._monotonic()) if waiting else None
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
        finally:
            await self.aclose()

    def _done(self, target: Target, task: asyncio.Task[None]) -> None:
        self._running.pop(target, None)
        self._wake.set()  # its next probe is due in an interval: the loop waits for that

    async def aclose(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)
        self._resolver.close()

    async def probe_now(self, targets: Iterable[Target]) -> dict[str, ShopProbe]:
        """Probe each target once, now (``check``): every state, by target."""
        await asyncio.gather(*(self._probe(t) for t in set(targets)))
        return dict(self.states)

    async def _probe(self, target: Target) -> None:
        async with self._slots:
            self.probes_made += 1
            started = self._monotonic()
            try:
                outcome = await self._outcome(target)
            except Exception:  # a bug: the target keeps its last state
                log.exception("shop_probe_crashed", target=str(target))
                return
            seconds = self._monotonic() - started
        key = str(target)
        before = self.states.get(key)
        state = advance(before, key, outcome)
        self.states[key] = state
        self._on_probe(state, seconds)
        if before is None or before.visible() != state.visible():
            self._announce(state, before)
            self._on_change(key)

    async def _outcome(self, target: Target) -> Outcome:
        try:
            async with asyncio.timeout(self.timeout):
                addresses = await self._resolver.public(
                    target.host, target.port, allow_private=self.allow_private
                )
                if target.tls:
                    return await probe_tls(
                        target, addresses, context=self.context, clock=self._clock
                    )
                return await probe_tcp(target, addresses, clock=self._clock)
        except TimeoutError:
            return Outcome(Result.TIMEOUT, self._clock(), detail=f"{self.timeout:g} s")
        except NotResolved:
            return Outcome(Result.DNS, self._clock())
        except PrivateAddress:
            return Outcome(Result.PRIVATE_ADDRESS, self._clock())

    def _announce(self, state: ShopProbe, before: ShopProbe | None) -> None:
        """One line when what a target shows changes (not for every probe)."""
        outcome = state.outcome
        fields = {
            "target": state.target,
            "result": str(outcome.result),
            "previous_result": str(before.result) if before is not None else None,
            "failures": state.failures,
            "expires_at": outcome.expires_at.isoformat() if outcome.expires_at else None,
            "issuer": outcome.issuer,
            "detail": outcome.detail,
        }
        if state.failing and (before is None or not before.failing):
            log.warning("shop_probe_failing", **fields)
        elif not state.failing and before is not None and before.failing:
            log.info("shop_probe_recovered", **fields)
        else:
            log.debug("shop_probe_changed", **fields)
