"""The fault matrix: every way the API can misbehave, survived without losing or leaking."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest

from monitor.daemon import open_pollers
from monitor.exporter.metrics import Metrics
from monitor.poller import AccountPoller
from monitor.simulator import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, SimIntegration, Simulator
from monitor.store import ReadOutcome, Store
from tests.conftest import FakeClock, LogCapture, account_for, metric_samples, metric_value, scraped

SECRETS = (
    DEMO_PUBLIC_KEY,
    DEMO_SECRET_KEY,
    base64.b64encode(f"{DEMO_PUBLIC_KEY}:{DEMO_SECRET_KEY}".encode()).decode(),
)

# (fault kind, status, reason counted in sendcloud_api_errors_total, or None when accepted)
MATRIX = [
    ("status", 500, "server_error"),
    ("status", 503, "server_error"),
    ("status", 400, "unexpected_status"),
    ("malformed_json", 200, "invalid_json"),
    ("html", 200, "invalid_json"),
    ("truncated", 200, "connection_reset"),
    ("reset", 200, "connection_reset"),
    ("oversized", 200, "body_too_large"),
    ("slow", 200, "timeout"),
    ("wrong_types", 200, "invalid_record"),
    ("missing_fields", 200, "invalid_record"),
    ("far_future", 200, None),  # any RFC 3339 value is taken: clock skew, clamped
    ("epoch", 200, None),  # very stale, but a fact
    ("unknown_fields", 200, None),
]


class Rig:
    def __init__(
        self,
        sim: Simulator,
        poller: AccountPoller,
        store: Store,
        metrics: Metrics,
        clock: FakeClock,
    ) -> None:
        self.sim, self.poller, self.store, self.metrics, self.clock = (
            sim,
            poller,
            store,
            metrics,
            clock,
        )

    async def poll(self) -> None:
        self.clock.advance(60)
        await self.poller.poll()

    def samples(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return metric_samples(self.text())

    def value(self, name: str, **labels: str) -> float | None:
        return metric_value(self.text(), name, **labels)

    def text(self) -> str:
        return scraped(self.metrics)


@pytest.fixture
def world() -> Iterator[tuple[Simulator, FakeClock]]:
    clock = FakeClock()
    shops = [SimIntegration(i, "healthy", f"Shop {i}") for i in range(1, 251)]
    shops[1] = SimIntegration(
        2, "failing", "Shop 2", started_failing_at=clock() - timedelta(hours=1)
    )
    with Simulator(shops, clock=clock) as sim:
        yield sim, clock


@pytest.fixture
async def rig(world: tuple[Simulator, FakeClock]) -> AsyncIterator[Rig]:
    sim, clock = world
    account = account_for(sim, (1, 2, 3), request_timeout_seconds=0.5)
    store = Store([account.name])
    metrics = Metrics(store, [account.name], clock=clock)
    async with open_pollers([account], store, metrics, clock=clock) as (poller,):
        rig = Rig(sim, poller, store, metrics, clock)
        await rig.poll()  # a capped list walk: the account is large, GETs from now on
        await rig.poll()
        assert sorted(rig.sim.requests[-3:]) == [
            "/integrations/1",
            "/integrations/2",
            "/integrations/3",
        ]
        yield rig


@pytest.mark.parametrize(
    ("kind", "status", "reason"), MATRIX, ids=[f"{k}-{s}" for k, s, _ in MATRIX]
)
async def test_one_integration_misbehaves(
    rig: Rig, captured_logs: LogCapture, kind: str, status: int, reason: str | None
) -> None:
    before = rig.value("integration_failing_seconds", integration_id="2")
    assert before is not None
    rig.sim.inject_fault(status, count=1000, integration_id=2, kind=kind, delay=1.0)
    await rig.poll()
    up = rig.value("integration_up", integration_id="2")
    if reason is None:
        assert up == 1
        assert rig.store.get("default").integrations[2].status is ReadOutcome.OK
    else:
        assert up == 0
        observation = rig.store.get("default").integrations[2]
        assert observation.status is ReadOutcome.ERROR
        assert observation.error_reason == reason
        assert (
            rig.value("sendcloud_api_errors_total", endpoint="get_integration", reason=reason) == 1
        )
        # the last good values are kept, frozen at the last successful read
        assert rig.value("integration_failing_seconds", integration_id="2") == before
        assert (
            rig.value(
                "integration_info",
                integration_id="2",
                shop_name="Shop 2",
                shop_url="https://shop2.example.com/",
                integration_type="api",
                feedback_type="eager",
                service_point_enabled="true",
                webhook_active="true",
            )
            == 1
        )
    for other in ("1", "3"):  # the others are untouched
        assert rig.value("integration_up", integration_id=other) == 1
        assert rig.value("integration_failing", integration_id=other) == 0
    assert rig.store.get("default").account_error is None

    rig.sim._faults.clear()
    await rig.poll()
    assert rig.value("integration_up", integration_id="2") == 1
    for secret in SECRETS:
        assert secret not in captured_logs.text
        assert secret not in rig.text()


GLOBAL = [("status", 503), ("html", 200), ("reset", 200), ("status", 401)]


@pytest.mark.parametrize(("kind", "status"), GLOBAL, ids=[f"{k}-{s}" for k, s in GLOBAL])
async def test_the_whole_api_misbehaves(
    rig: Rig, captured_logs: LogCapture, kind: str, status: int
) -> None:
    rig.sim.inject_fault(status, count=1000, kind=kind)
    await rig.poll()
    await rig.poll()
    snapshot = rig.store.get("default")
    assert snapshot.account_error is not None
    for integration_id in ("1", "2", "3"):
        assert rig.value("integration_up", integration_id=integration_id) == 0
        assert rig.value("integration_failing_seconds", integration_id=integration_id) is not None
    events = [
        e["event"]
        for e in captured_logs.lines()
        if e["event"] in ("account_poll_failed", "sendcloud_auth_failed")
    ]
    assert len(events) == 1  # once per episode, not per poll or per integration
    assert rig.value("integration_monitor_polls_total", outcome="error") == 2
    rig.sim._faults.clear()
    await rig.poll()
    assert rig.store.get("default").account_error is None
    assert rig.value("integration_up", integration_id="1") == 1
    for secret in SECRETS:
        assert secret not in captured_logs.text


async def test_a_broken_record_in_a_list_hides_nothing_else(captured_logs: LogCapture) -> None:
    clock = FakeClock()
    with Simulator([SimIntegration(i) for i in (1, 2, 3)], clock=clock) as sim:
        account = account_for(sim, None)
        store = Store([account.name])
        async with open_pollers([account], store, Metrics(store, ["default"]), clock=clock) as (
            poller,
        ):
            await poller.poll()
            sim.inject_fault(count=2, integration_id=2, kind="wrong_types")  # list and GET
            await poller.poll()
            integrations = store.get("default").integrations
            assert integrations[1].status is ReadOutcome.OK
            assert integrations[3].status is ReadOutcome.OK
            assert integrations[2].status is ReadOutcome.ERROR
            assert integrations[2].record is not None  # last good record kept
