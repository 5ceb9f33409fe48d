"""The reads once per probe interval: the inventory and the status mappings, against the
simulator; the inventory's announcements from explicit lists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitor.daemon import new_worker
from monitor.exporter.metrics import Metrics
from monitor.health import derive
from monitor.sendcloud import Integration
from monitor.simulator import SimIntegration, Simulator
from monitor.store import AccountSnapshot, Observation, ReadOutcome, Store
from monitor.survey import Inventory, Survey
from tests.conftest import LogCapture, account_for


def records(*ids: int) -> list[Integration]:
    return [Integration(i, shop_url=f"https://shop{i}.example.com/", type="shopify") for i in ids]


def announced(logs: LogCapture) -> list[tuple[str, int, bool, str]]:
    return [
        (e["event"], e["integration_id"], e["monitored"], e["message"])
        for e in logs.lines()
        if e["event"] in ("integration_appeared", "integration_disappeared")
    ]


def test_a_walk_announces_each_unmonitored_integration_once(captured_logs: LogCapture) -> None:
    seen: list[dict[int, bool]] = []
    inventory = Inventory("eu", on_change=lambda account, found: seen.append(dict(found)))
    inventory.walked(records(1, 2, 3), configured=(1, 2))
    inventory.walked(records(1, 2, 3), configured=(1, 2))
    inventory.walked(records(1, 2, 4), configured=(1, 2))
    assert inventory.unmonitored == (4,)
    assert announced(captured_logs) == [
        (
            "integration_appeared",
            3,
            False,
            "integration 3 (shopify, https://shop3.example.com/) appeared; it is not monitored",
        ),
        (
            "integration_appeared",
            4,
            False,
            "integration 4 (shopify, https://shop4.example.com/) appeared; it is not monitored",
        ),
        (
            "integration_disappeared",
            3,
            False,
            "integration 3 (shopify, https://shop3.example.com/) disappeared from the account; "
            "it was not monitored",
        ),
    ]
    assert seen == [{1: True, 2: True, 3: False}, {1: True, 2: True, 4: False}]  # when it moved
    restarted = Inventory("eu", known=seen[-1])  # what the history kept
    restarted.walked(records(1, 2, 4), configured=(1, 2))
    assert len(announced(captured_logs)) == 3  # nothing new


def snapshot(*ids: int) -> AccountSnapshot:
    now = datetime.now(UTC)
    return AccountSnapshot(
        "eu",
        {r.id: Observation(r.id, ReadOutcome.OK, r, derive(r, now, 7200)) for r in records(*ids)},
        1,
        now,
    )


def test_all_mode_announces_what_comes_and_goes_after_the_first_poll(
    captured_logs: LogCapture,
) -> None:
    inventory = Inventory("eu")
    inventory.polled(snapshot(1, 2))  # the first poll: the baseline
    assert announced(captured_logs) == []
    inventory.polled(snapshot(1, 2, 3))
    inventory.polled(snapshot(1, 3))
    assert [(e, i, m) for e, i, m, _ in announced(captured_logs)] == [
        ("integration_appeared", 3, True),
        ("integration_disappeared", 2, True),
    ]
    assert announced(captured_logs)[0][3].endswith("appeared; it is monitored from now on")
    assert announced(captured_logs)[1][3].endswith(
        "disappeared from the account; its series and alerts end"
    )
    assert inventory.unmonitored == ()


async def test_mappings_and_the_inventory_within_the_budget(captured_logs: LogCapture) -> None:
    shops = [
        SimIntegration(1, type="prestashop_v2"),
        SimIntegration(2, type="woocommerce"),
        SimIntegration(3, type="shopify"),
        SimIntegration(4),
    ]
    with Simulator(shops) as sim:
        account = account_for(sim, (1, 2, 3))
        store = Store(["default"])
        worker = new_worker(account, store, Metrics(store, ["default"]))
        await worker.poller.poll()
        survey = Survey(
            account,
            worker.client,
            store,
            Inventory("default"),
            interval_seconds=10,
            mapping_types=frozenset({"prestashop_v2", "woocommerce"}),
            clock=lambda: datetime.now(UTC),
        )
        await survey.survey()
        assert set(survey.mappings) == {1}
        assert set(survey.unsupported) == {2}
        assert survey.inventory.unmonitored == (4,)
        assert store.get("default").unmonitored is None  # the store's assess is not set here
        asked = sim.request_count("/shop-order-statuses")
        assert asked == 2
        await survey.survey()
        assert sim.request_count("/shop-order-statuses") == asked + 1  # 2 is remembered
        # a changed record of the unsupported one is asked again
        sim.update(2, updated_at=datetime.now(UTC) + timedelta(seconds=1))
        await worker.poller.poll()
        await survey.survey()
        assert sim.request_count("/shop-order-statuses") == asked + 3
        # a failed read keeps the mapping read before
        sim.inject_fault(503, count=10)
        await survey.survey()
        assert set(survey.mappings) == {1}
        await worker.client.aclose()
    assert [e["integration_id"] for e in captured_logs.events("status_mapping_unsupported")] == [
        2,
        2,
    ]
    assert len(captured_logs.events("survey_read_failed")) == 1
