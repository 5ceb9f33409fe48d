"""Poll cycles against the simulator: request plans, outcomes, kept values, transition logs."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta

import pytest

from monitor.daemon import open_pollers
from monitor.exporter.metrics import Metrics
from monitor.poller import AccountPoller, Plan, choose_plan
from monitor.simulator import SimIntegration, Simulator
from monitor.store import ReadOutcome, Store
from tests.conftest import FakeClock, LogCapture, account_for, metric_value, scraped


@pytest.mark.parametrize(
    ("ids", "last_pages", "plan"),
    [
        (None, None, Plan(use_list=True)),
        (None, 40, Plan(use_list=True)),
        ((1,), None, Plan(use_list=False)),
        ((1, 2, 3), None, Plan(use_list=True, max_pages=2)),  # probe: cheaper only if < 3 pages
        ((1, 2, 3), 1, Plan(use_list=True, max_pages=2)),
        ((1, 2, 3), 3, Plan(use_list=False)),  # three pages cost as much as three GETs
        ((1, 2, 3), 50, Plan(use_list=False)),
    ],
)
def test_choose_plan(ids: tuple[int, ...] | None, last_pages: int | None, plan: Plan) -> None:
    assert choose_plan(ids, last_pages) == plan


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def world(clock: FakeClock) -> Iterator[Simulator]:
    now = clock()
    integrations = [
        SimIntegration(1, "healthy", "Healthy shop"),
        SimIntegration(2, "failing", "Failing shop", started_failing_at=now - timedelta(hours=1)),
        SimIntegration(3, "stale", "Stale shop", last_fetched_at=now - timedelta(hours=5)),
        SimIntegration(4, "never_fetched", "New shop", created_at=now - timedelta(hours=3)),
        SimIntegration(5, "deleted", "Deleted shop"),
    ]
    with Simulator(integrations, clock=clock) as simulator:
        yield simulator


class Rig:
    def __init__(self, poller: AccountPoller, store: Store) -> None:
        self.poller = poller
        self.store = store

    async def poll(self) -> None:
        await self.poller.poll()

    def observation(self, integration_id: int):  # type: ignore[no-untyped-def]
        return self.store.get("default").integrations[integration_id]


async def rig_for(
    sim: Simulator, clock: FakeClock, ids: tuple[int, ...] | None
) -> AsyncIterator[Rig]:
    account = account_for(sim, ids)
    store = Store([account.name])
    async with open_pollers([account], store, Metrics(store, [account.name]), clock=clock) as (
        poller,
    ):
        yield Rig(poller, store)


async def test_single_id_uses_one_get(world: Simulator, clock: FakeClock) -> None:
    async for rig in rig_for(world, clock, (2,)):
        await rig.poll()
        assert world.requests == ["/integrations/2"]
        assert rig.observation(2).status is ReadOutcome.OK


async def test_small_account_is_listed_and_missing_ids_confirmed(
    world: Simulator, clock: FakeClock
) -> None:
    async for rig in rig_for(world, clock, (1, 2, 5)):
        await rig.poll()
        assert world.requests == ["/integrations", "/integrations/5"]
        assert rig.observation(1).status is ReadOutcome.OK
        assert rig.observation(5).status is ReadOutcome.NOT_FOUND
        assert 3 not in rig.store.get("default").integrations  # not configured


async def test_large_account_falls_back_to_gets_and_remembers() -> None:
    clock = FakeClock()
    with Simulator([SimIntegration(i) for i in range(1, 301)], clock=clock) as big:
        async for rig in rig_for(big, clock, (1, 250, 299)):
            await rig.poll()
            # two pages of 100 (capped below 3 GETs), then the two IDs not seen yet
            assert big.requests == [
                "/integrations",
                "/integrations",
                "/integrations/250",
                "/integrations/299",
            ]
            assert {i: rig.observation(i).status for i in (1, 250, 299)} == dict.fromkeys(
                (1, 250, 299), ReadOutcome.OK
            )
            big.requests.clear()
            await rig.poll()
            assert sorted(big.requests) == [
                "/integrations/1",
                "/integrations/250",
                "/integrations/299",
            ]


async def test_all_mode_lists_and_drops_deleted_integrations(
    world: Simulator, clock: FakeClock, captured_logs: LogCapture
) -> None:
    async for rig in rig_for(world, clock, None):
        await rig.poll()
        assert sorted(rig.store.get("default").integrations) == [1, 2, 3, 4]
        world.remove(3)
        world.add(SimIntegration(6, "healthy", "Brand new shop"))
        world.requests.clear()
        await rig.poll()
        assert world.requests == ["/integrations", "/integrations/3"]  # confirm the vanished one
        assert sorted(rig.store.get("default").integrations) == [1, 2, 4, 6]
        [gone] = captured_logs.events("integration_not_found")
        assert gone["integration_id"] == 3
        assert gone["shop_name"] == "Stale shop"


async def test_errors_keep_the_last_good_values_and_stay_isolated(clock: FakeClock) -> None:
    shops = [SimIntegration(i, "failing" if i == 2 else "healthy") for i in range(1, 251)]
    with Simulator(shops, clock=clock) as world:
        async for rig in rig_for(world, clock, (1, 2)):
            await check_kept_values(world, rig, clock)


async def check_kept_values(world: Simulator, rig: Rig, clock: FakeClock) -> None:
    await rig.poll()  # a capped list walk learns the account is large: GETs from now on
    await rig.poll()
    good = rig.observation(2)
    clock.advance(60)
    world.requests.clear()
    world.inject_fault(500, count=10, integration_id=2)
    await rig.poll()
    assert world.request_count("/integrations/1") == 1
    after = rig.observation(2)
    assert after.status is ReadOutcome.ERROR
    assert after.error_reason == "server_error"
    assert after.record == good.record
    assert after.last_success == good.last_success
    assert rig.observation(1).status is ReadOutcome.OK
    assert rig.observation(1).last_success == clock()


async def test_transitions_are_logged_once(
    world: Simulator, clock: FakeClock, captured_logs: LogCapture
) -> None:
    async for rig in rig_for(world, clock, (1, 2, 3, 4, 5)):
        await rig.poll()
        first = [
            (e["event"], e["integration_id"])
            for e in captured_logs.lines()
            if e["event"].startswith("integration_")
        ]
        assert sorted(first) == [
            ("integration_failing", 2),
            ("integration_not_found", 5),
            ("integration_stale", 3),
            ("integration_stale", 4),
        ]
        failing = captured_logs.events("integration_failing")[0]
        assert failing["level"] == "debug"  # the alert events are the notification stream
        assert failing["shop_name"] == "Failing shop"
        assert failing["failing_seconds"] == 3600
        assert failing["account"] == "default"

        clock.advance(60)
        await rig.poll()
        assert len(captured_logs.lines()) == len(first)  # nothing changed, nothing logged

        world.update(2, scenario="healthy")
        world.update(3, last_fetched_at=clock())
        clock.advance(60)
        await rig.poll()
        recovered = captured_logs.events("integration_recovered")
        fresh = captured_logs.events("integration_fresh")
        assert [e["integration_id"] for e in recovered] == [2]
        assert [e["integration_id"] for e in fresh] == [3]
        assert recovered[0]["level"] == "debug"


async def test_auth_failure_logged_once_per_episode(
    world: Simulator, clock: FakeClock, captured_logs: LogCapture
) -> None:
    async for rig in rig_for(world, clock, (1, 2)):
        world.inject_fault(401, count=3)  # one list request per cycle
        for _ in range(3):
            await rig.poll()
        snapshot = rig.store.get("default")
        assert not snapshot.auth_ok
        assert snapshot.last_cycle_success is None
        [error] = captured_logs.events("sendcloud_auth_failed")
        assert error["level"] == "error"
        assert error["account"] == "default"
        assert "Sendcloud panel" in error["hint"]
        assert captured_logs.events("integration_poll_failed") == []  # not one per integration
        await rig.poll()  # faults used up
        assert rig.store.get("default").auth_ok
        assert len(captured_logs.events("sendcloud_auth_recovered")) == 1


async def test_account_outage_is_one_event_and_recovery_another(
    clock: FakeClock, captured_logs: LogCapture
) -> None:
    with Simulator([SimIntegration(i) for i in (1, 2, 3)], clock=clock) as sim:
        async for rig in rig_for(sim, clock, None):
            await rig.poll()
            sim.inject_fault(503, count=6)  # three attempts per cycle, two cycles
            await rig.poll()
            await rig.poll()
            assert len(captured_logs.events("account_poll_failed")) == 1
            assert rig.observation(1).status is ReadOutcome.ERROR
            await rig.poll()
            assert len(captured_logs.events("account_poll_recovered")) == 1
            assert rig.observation(1).status is ReadOutcome.OK


async def test_auth_failure_in_all_mode_on_the_first_poll(
    world: Simulator, clock: FakeClock, captured_logs: LogCapture
) -> None:
    async for rig in rig_for(world, clock, None):
        world.inject_fault(403, count=1)
        await rig.poll()
        snapshot = rig.store.get("default")
        assert not snapshot.auth_ok
        assert snapshot.account_error == "auth_failed"
        assert len(captured_logs.events("sendcloud_auth_failed")) == 1


@pytest.mark.parametrize("ids", [None, (1, 2, 3, 4)])
async def test_a_404_on_the_collection_is_an_account_error(
    world: Simulator, clock: FakeClock, captured_logs: LogCapture, ids: tuple[int, ...] | None
) -> None:
    async for rig in rig_for(world, clock, ids):
        await rig.poll()
        before = {i: rig.observation(i) for i in (1, 2, 3, 4)}
        world.inject_fault(404, count=100, endpoint="list")  # a proxy, a wrong api_url
        await rig.poll()
        snapshot = rig.store.get("default")
        assert snapshot.account_error == "not_found"
        for integration_id, good in before.items():
            after = rig.observation(integration_id)
            assert after.status is ReadOutcome.ERROR  # unknown, not gone
            assert after.health == good.health  # frozen at the last read
        assert captured_logs.events("integration_not_found") == []
        [failed] = captured_logs.events("account_poll_failed")
        assert failed["reason"] == "not_found"


async def test_health_is_derived_at_the_time_the_record_arrived(
    world: Simulator, clock: FakeClock
) -> None:
    class Ticking(FakeClock):
        def __call__(self) -> datetime:
            self.advance(1)  # every look at the clock is a second later
            return self.now

    ticking = Ticking(clock())
    async for rig in rig_for(world, ticking, (1, 2)):
        await rig.poll()
        reads = {rig.observation(i).last_success for i in (1, 2)}
        snapshot = rig.store.get("default")
        assert None not in reads
        assert snapshot.last_cycle_success is not None
        assert all(r is not None and r <= snapshot.last_cycle_success for r in reads)


async def test_a_cycle_past_its_deadline_keeps_what_it_read_and_the_rest_frozen(
    clock: FakeClock, captured_logs: LogCapture
) -> None:
    shops = [SimIntegration(i, "failing") for i in (1, 2, 3)]
    with Simulator(shops, clock=clock) as sim:
        account = account_for(sim, (1, 2, 3), poll_interval_seconds=5.0, max_concurrency=1)
        store = Store([account.name])
        async with open_pollers([account], store, Metrics(store, [account.name]), clock=clock) as (
            poller,
        ):
            await poller.poll()  # the list is walked: ids known, one page
            first = dict(store.get("default").integrations)
            clock.advance(60)
            sim.inject_fault(kind="slow", delay=6.0, count=1, endpoint="list")
            await poller.poll()  # 4.5 s deadline: the list does not arrive in time
            second = store.get("default")
    cut = captured_logs.events("poll_cycle_cut_short")
    assert [e["reason"] for e in cut] == ["deadline"]
    assert second.account_error == "deadline"
    unread = [o for o in second.integrations.values() if o.status is ReadOutcome.ERROR]
    assert len(unread) == 3
    for observation in unread:
        assert observation.error_reason == "deadline"
        assert observation.health == first[observation.integration_id].health


async def test_a_list_that_never_ends_is_cut_and_nothing_is_dropped(
    clock: FakeClock, captured_logs: LogCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from monitor.sendcloud import client as sendcloud

    with Simulator([SimIntegration(i) for i in range(1, 251)], clock=clock) as sim:
        async for rig in rig_for(sim, clock, None):
            await rig.poll()  # 250 integrations, 3 pages of 100
            assert len(rig.store.get("default").integrations) == 250
            monkeypatch.setattr(sendcloud, "MAX_LIST_PAGES", 2)
            await rig.poll()
            snapshot = rig.store.get("default")
            assert len(snapshot.integrations) == 250  # the unread ones are kept, not dropped
            kept = [o for o in snapshot.integrations.values() if o.status is ReadOutcome.ERROR]
            assert {o.error_reason for o in kept} == {"page_cap"}
            assert len(kept) == 50
            await rig.poll()
    assert [e["reason"] for e in captured_logs.events("poll_cycle_cut_short")] == ["page_cap"]


async def test_the_plan_is_announced_once_at_start(
    world: Simulator, clock: FakeClock, captured_logs: LogCapture
) -> None:
    async for rig in rig_for(world, clock, None):
        rig.poller.announce_plan()
    ids = tuple(range(1, 2001))
    async for rig in rig_for(world, clock, ids):  # 2000 GETs a minute: more than 900
        rig.poller.announce_plan()
    every, listed = captured_logs.events("poll_plan")
    assert (every["integrations"], every["level"]) == ("all", "info")
    assert every["requests_per_cycle"] == "known after the first walk"
    assert (listed["integrations"], listed["requests_per_cycle"]) == (2000, 2000)
    assert listed["budget_share"] == round(2000 / 900, 3)
    [warning] = captured_logs.events("poll_interval_too_short")
    assert warning["level"] == "warning"
    # 2000 requests at 900/min take 134 s: the interval whose 90 % (the deadline) holds them
    assert warning["smallest_feasible_interval_seconds"] == 149


async def test_a_corrupt_health_field_makes_that_integration_unreadable_not_healthy(
    world: Simulator, clock: FakeClock
) -> None:
    """started_failing_at "garbage", true or 12345 (epoch seconds) used to read as null — not
    failing, integration_up 1 — or as 1970. Now that integration is unreadable (frozen at its
    last good read, reason invalid_field) and the others are read as usual."""
    async for rig in rig_for(world, clock, None):
        await rig.poll()
        good = rig.observation(2)
        assert good.state.value == "failing"
        for _ in range(3):  # "garbage", True, 12345 in turn
            world.inject_fault(kind="bad_failing_at", integration_id=2, count=1)
            clock.advance(60)
            await rig.poll()
            broken = rig.observation(2)
            assert (broken.status, broken.error_reason) == (ReadOutcome.ERROR, "invalid_field")
            assert broken.health is good.health  # frozen at the last good read
            assert broken.state.value == "failing"  # the last known state, not "healthy"
            assert rig.observation(1).status is ReadOutcome.OK
        clock.advance(60)
        await rig.poll()
        assert rig.observation(2).status is ReadOutcome.OK
        assert rig.observation(2).unreadable_since is None


class _Broken:
    """A client whose list walk raises what no error class covers (a bug in the monitor)."""

    async def list_pages(self, *args: object, **kwargs: object) -> AsyncIterator[None]:
        raise RuntimeError("a bug")
        yield  # an async generator, as the client's


async def test_an_unexpected_exception_in_a_cycle_leaves_the_account_unreadable(
    world: Simulator, clock: FakeClock, captured_logs: LogCapture
) -> None:
    account = account_for(world, None)
    store = Store([account.name])
    metrics = Metrics(store, [account.name])
    async with open_pollers([account], store, metrics, clock=clock) as (poller,):
        await poller.poll()
        before = store.get(account.name).integrations[2]
        poller.client = _Broken()  # type: ignore[assignment]
        for _ in range(2):
            clock.advance(60)
            await poller.poll()
        snapshot = store.get(account.name)
        assert snapshot.account_error == "internal_error"
        assert {o.status for o in snapshot.integrations.values()} == {ReadOutcome.ERROR}
        assert snapshot.integrations[2].health is before.health  # frozen, never "up"
    [crash] = captured_logs.events("poll_cycle_crashed")  # once per episode, with traceback
    assert crash["exception"][0]["exc_type"] == "RuntimeError"
    errors = metric_value(
        scraped(metrics),
        "sendcloud_api_errors_total",
        account=account.name,
        endpoint="poll",
        reason="internal_error",
    )
    assert errors == 2


async def test_a_poll_started_after_stop_does_nothing(world: Simulator, clock: FakeClock) -> None:
    async for rig in rig_for(world, clock, None):
        rig.poller.stop()
        await rig.poll()
        assert world.requests == []


async def test_a_walk_cut_by_its_deadline_keeps_its_pages_and_goes_on_next_cycle(
    clock: FakeClock, captured_logs: LogCapture
) -> None:
    """A large account on a slow API: 5 pages of 0.3 s against a 0.9 s deadline. The pages of
    a cut cycle used to be thrown away (and the account reported ready with nothing read); now
    each cycle keeps its pages, the next goes on from the page after, and the account is ready
    once every integration has been read."""
    with Simulator([SimIntegration(i) for i in range(1, 501)], clock=clock) as sim:
        sim.inject_fault(kind="slow", delay=0.3, count=1000, endpoint="list")
        account = account_for(sim, None, poll_interval_seconds=1.0)
        store = Store([account.name])
        async with open_pollers([account], store, Metrics(store, [account.name]), clock=clock) as (
            poller,
        ):
            poller.announce_plan()
            await poller.poll()
            first = store.get(account.name)
            assert 0 < len(first.integrations) < 500  # the pages read are kept
            assert {o.status for o in first.integrations.values()} == {ReadOutcome.OK}
            assert first.account_error is None
            assert not store.ready()  # some integrations were never read
            cycles = 1
            while not store.ready() and cycles < 12:
                clock.advance(1)
                await poller.poll()
                cycles += 1
            snapshot = store.get(account.name)
            assert store.ready()
            assert sorted(snapshot.integrations) == list(range(1, 501))
            assert {o.status for o in snapshot.integrations.values()} == {ReadOutcome.OK}
            assert snapshot.list_pages == 5
            # the next walk goes on over the cycles: what a cycle does not reach keeps its values
            clock.advance(1)
            await poller.poll()
            again = store.get(account.name)
            assert len(again.integrations) == 500
            assert {o.status for o in again.integrations.values()} == {ReadOutcome.OK}
            newer = [i for i, o in again.integrations.items() if o is not snapshot.integrations[i]]
            assert 0 < len(newer) < 500
    requested = [p for p in sim.requests if p == "/integrations"]
    assert len(requested) >= 5  # every page, each once per walk: none read twice in a walk
    # the plan line, completed once the first walk ended; then the interval that fits
    every, complete = captured_logs.events("poll_plan")[-2:]
    assert every["requests_per_cycle"] == "known after the first walk"
    assert (complete["integrations"], complete["requests_per_cycle"]) == (500, 5)
    assert complete["walk_cycles"] >= 2
    [warning] = captured_logs.events("poll_interval_too_short")
    assert warning["smallest_feasible_interval_seconds"] == math.ceil(warning["walk_seconds"] / 0.9)
    assert warning["smallest_feasible_interval_seconds"] >= 2
    assert len(captured_logs.events("poll_cycle_cut_short")) == 1  # once per episode


async def test_configured_ids_cut_by_the_deadline_keep_what_was_read_before(
    clock: FakeClock,
) -> None:
    """Per-ID GETs past the deadline: the IDs read before and not this time keep their values
    as they are (integration_up 1, nothing changes for their alerts) and go first next time."""
    with Simulator([SimIntegration(i) for i in range(1, 301)], clock=clock) as sim:
        account = account_for(sim, (1, 250, 299), poll_interval_seconds=1.0, max_concurrency=1)
        store = Store([account.name])
        async with open_pollers([account], store, Metrics(store, [account.name]), clock=clock) as (
            poller,
        ):
            await poller.poll()  # two pages and two GETs: the account is too large to list
            before = store.get(account.name).integrations
            clock.advance(1)
            sim.inject_fault(kind="slow", delay=2.0, count=1, integration_id=250)
            await poller.poll()  # GET 1, then GET 250 arrives after the 0.9 s deadline
            cut = store.get(account.name).integrations
            clock.advance(1)
            sim.requests.clear()
            await poller.poll()
            after = store.get(account.name).integrations
    assert cut[1].last_success == clock() - timedelta(seconds=1)  # read in the cut cycle
    assert cut[250] is before[250]  # kept as it was
    assert cut[299] is before[299]
    assert sim.requests[:2] == ["/integrations/250", "/integrations/299"]  # oldest first
    assert {o.last_success for o in after.values()} == {clock()}


async def test_unusable_logs_of_the_stream_are_counted_with_one_warning(
    world: Simulator, clock: FakeClock, captured_logs: LogCapture
) -> None:
    from monitor.sendcloud.stream import ExceptionStream

    account = account_for(world, None)
    store = Store([account.name])
    metrics = Metrics(store, [account.name])
    async with open_pollers([account], store, metrics, clock=clock) as (poller,):
        poller.stream = ExceptionStream()
        await poller.poll()  # the first poll: the stream is read from the second on
        assert (
            metric_value(
                scraped(metrics),
                "sendcloud_api_errors_total",
                endpoint="account_logs",
                reason="invalid_record",
            )
            == 0
        )
        world.append_raw_log({"id": "not-a-number", "integration_id": 1})
        world.append_raw_log({"id": 77, "integration_id": 1, "created_at": "yesterday"})
        world.append_log(1)
        await poller.poll()
        world.append_raw_log({"id": 78, "created_at": clock().isoformat()})
        await poller.poll()
        text = scraped(metrics)
    invalid = metric_value(
        text, "sendcloud_api_errors_total", endpoint="account_logs", reason="invalid_record"
    )
    # counted on each page they are read on, as unusable list records are: 2, then 2 + 1
    assert invalid == 5
    assert metric_value(text, "integration_exceptions_total", integration_id="1") == 1
    [warning] = captured_logs.events("exception_logs_invalid")
    assert warning["level"] == "warning"
