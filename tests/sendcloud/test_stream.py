"""The exception-log stream against the simulator: newest first, logs out of order and twice,
a storm bounded in pages with the rest counted, a first start's horizon, the position kept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from monitor.sendcloud import InvalidResponse, SendcloudClient
from monitor.sendcloud.stream import ExceptionStream, Position, code_class
from monitor.simulator import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, SimIntegration, Simulator


@pytest.fixture
async def sim_client() -> AsyncIterator[tuple[Simulator, SendcloudClient]]:
    shops = [SimIntegration(i, "healthy", f"Shop {i}") for i in range(1, 6)]
    with Simulator(shops) as sim:
        client = SendcloudClient(sim.url, DEMO_PUBLIC_KEY, DEMO_SECRET_KEY)
        try:
            yield sim, client
        finally:
            await client.aclose()


def logs_read(sim: Simulator) -> int:
    return sum(1 for p in sim.requests if p == "/integrations/logs")


async def test_new_logs_are_read_once_in_order_of_time_and_counted(
    sim_client: tuple[Simulator, SendcloudClient],
) -> None:
    sim, client = sim_client
    now = datetime.now(UTC)
    stream = ExceptionStream()
    assert (await stream.read(client, now)).new == 0
    for shop in (1, 1, 2):
        sim.append_log(shop, exception_type="requests.exceptions.SSLError", response_code=495)
    result = await stream.read(client, now)
    assert (result.new, result.pages, result.skipped) == (3, 1, 0)
    assert stream.totals == {1: 2, 2: 1}
    assert stream.kinds == {("requests.exceptions.SSLError", "4xx"): 3}
    activity = stream.activity(now)
    assert set(activity) == {1, 2}
    assert activity[1].count_since(now - timedelta(minutes=15)) == 2
    assert (activity[1].recent, activity[2].recent) == (2, 1)  # within the 15-minute window
    assert activity[1].newest["exception_type"] == "requests.exceptions.SSLError"
    # nothing new: nothing counted twice, one page read
    again = await stream.read(client, now)
    assert (again.new, again.pages) == (0, 1)
    assert stream.totals == {1: 2, 2: 1}


async def test_late_and_repeated_logs_are_taken_once(
    sim_client: tuple[Simulator, SendcloudClient],
) -> None:
    sim, client = sim_client
    now = datetime.now(UTC)
    stream = ExceptionStream()
    first = sim.append_log(3)
    await stream.read(client, now)
    # the same log again (a retry upstream), and one that arrives late with an older time
    sim.append_log(3, log_id=first["id"], created_at=datetime.fromisoformat(first["created_at"]))
    sim.append_log(4, created_at=now - timedelta(minutes=2))
    sim.append_log(4, created_at=now - timedelta(hours=2))  # too late: older than the grace
    result = await stream.read(client, now)
    assert result.new == 1
    assert stream.totals == {3: 1, 4: 1}
    assert stream.position is not None
    assert stream.position.last_id == first["id"]  # the newest read is still the newest


async def test_a_storm_is_read_in_bounded_pages_and_the_rest_counted(
    sim_client: tuple[Simulator, SendcloudClient],
) -> None:
    sim, client = sim_client
    now = datetime.now(UTC)
    positions: list[Position] = []
    stream = ExceptionStream(max_pages=3, on_position=positions.append)
    sim.append_log(1)
    await stream.read(client, now)
    before = logs_read(sim)
    sim.append_logs([1 + n % 5 for n in range(10_000)])
    result = await stream.read(client, datetime.now(UTC))
    assert logs_read(sim) - before == 3  # three pages, whatever the storm
    assert (result.pages, result.new, result.skipped) == (3, 300, 9_700)
    assert stream.skipped == 9_700
    assert sum(stream.totals.values()) == 301
    assert positions[-1].last_id == sim.append_log(1)["id"] - 1  # the newest of the storm
    # the next cycle starts from there: only what came since
    assert (await stream.read(client, datetime.now(UTC))).new == 1


async def test_a_first_start_reads_back_the_horizon_only(
    sim_client: tuple[Simulator, SendcloudClient],
) -> None:
    sim, client = sim_client
    now = datetime.now(UTC)
    sim.append_log(1, created_at=now - timedelta(hours=3))
    sim.append_log(2, created_at=now - timedelta(minutes=30))
    stream = ExceptionStream(horizon=timedelta(hours=1))
    assert (await stream.read(client, now)).new == 1
    assert set(stream.totals) == {2}


async def test_a_restart_resumes_at_the_saved_position(
    sim_client: tuple[Simulator, SendcloudClient],
) -> None:
    sim, client = sim_client
    now = datetime.now(UTC)
    saved: list[Position] = []
    sim.append_log(1)
    await ExceptionStream(on_position=saved.append).read(client, now)
    sim.append_log(2)
    resumed = ExceptionStream(position=saved[-1])
    assert (await resumed.read(client, datetime.now(UTC))).new == 1
    assert set(resumed.totals) == {2}


async def test_many_exception_types_keep_bounded_labels(
    sim_client: tuple[Simulator, SendcloudClient],
) -> None:
    sim, client = sim_client
    for n in range(30):
        sim.append_log(1, exception_type=f"custom.Error{n}", response_code=500 + n % 2 * 99)
    stream = ExceptionStream()
    await stream.read(client, datetime.now(UTC))
    types = {kind for kind, _ in stream.kinds}
    assert len(types) == 11  # ten by name, the rest "other"
    assert "other" in types
    assert {code for _, code in stream.kinds} == {"5xx"}
    assert [code_class(c) for c in (404, 503, 200, None, "500", True)] == [
        "4xx",
        "5xx",
        "other",
        "none",
        "none",
        "none",
    ]


async def test_a_next_link_to_another_origin_is_refused(
    sim_client: tuple[Simulator, SendcloudClient],
) -> None:
    sim, client = sim_client
    sim.next_link_base = "https://elsewhere.example.com"
    sim.append_logs([1] * 150)
    with pytest.raises(InvalidResponse):
        await ExceptionStream().read(client, datetime.now(UTC))


def test_the_simulator_pages_logs_as_the_spec_says() -> None:
    shops = [SimIntegration(1, "healthy", "Shop"), SimIntegration(2, "failing", "Down")]
    with Simulator(shops) as sim:
        sim.append_logs([1] * 30)
        auth = (DEMO_PUBLIC_KEY, DEMO_SECRET_KEY)
        url = f"{sim.url}/integrations/logs"
        first = httpx.get(url, params={"page_size": 25}, auth=auth, timeout=5)
        assert first.status_code == 200
        page: list[dict[str, Any]] = first.json()["data"]
        assert len(page) == 25
        times = [datetime.fromisoformat(x["created_at"]) for x in page]
        assert times == sorted(times, reverse=True)  # newest first
        following = first.links["next"]["url"]
        cursor = httpx.URL(following).params["cursor"]
        assert datetime.fromisoformat(cursor) == times[-1]  # a date-time cursor
        rest = httpx.get(following, auth=auth, timeout=5).json()["data"]
        assert len(rest) == 30 + 3 - 25  # the failing shop's own three logs too
        assert {x["id"] for x in page} & {x["id"] for x in rest} == set()
        assert {x["integration_id"] for x in rest} <= {1, 2}
        # one integration's logs, the same way
        mine = httpx.get(f"{sim.url}/integrations/2/logs", auth=auth, timeout=5).json()["data"]
        assert [x["integration_id"] for x in mine] == [2, 2, 2]
        for params, status in (
            ({"page_size": 0}, 400),
            ({"page_size": 101}, 400),
            ({"cursor": "yesterday"}, 400),
            ({"cursor": "2026-11-01T00:00:00"}, 400),
        ):
            bad = httpx.get(url, params=params, auth=auth, timeout=5)
            assert bad.status_code == status
            assert bad.json()["errors"][0]["status"] == str(status)
        assert httpx.get(url, timeout=5).status_code == 401


async def test_a_log_dated_tomorrow_is_read_as_now_and_hides_nothing(
    sim_client: tuple[Simulator, SendcloudClient],
) -> None:
    """One log dated tomorrow used to be the position: every later log was older than it, so
    none was counted again, and the position was saved so, across restarts too."""
    sim, client = sim_client
    now = datetime.now(UTC)
    stream = ExceptionStream(skew_tolerance=timedelta(seconds=60))
    sim.append_log(1, created_at=now + timedelta(days=1))
    sim.append_log(1, created_at=now + timedelta(seconds=30))  # within the tolerance
    first = await stream.read(client, now)
    assert (first.new, first.clamped, stream.clamped) == (2, 1, 1)  # counted: beyond it only
    assert stream.position is not None
    assert stream.position.last_time == now  # both read as dated now
    for _ in range(5):  # then ordinary logs, dated a moment later
        sim.append_log(2)
    later = datetime.now(UTC) + timedelta(minutes=1)
    second = await stream.read(client, later)
    assert (second.new, second.clamped) == (5, 0)
    assert stream.totals == {1: 2, 2: 5}
    assert stream.activity(later)[2].recent == 5
    # a restart from the saved position: nothing counted twice, the tomorrow log included
    resumed = ExceptionStream(position=stream.position)
    sim.append_log(3)
    after = datetime.now(UTC) + timedelta(minutes=2)
    third = await resumed.read(client, after)
    assert (third.new, third.clamped) == (1, 0)
    assert resumed.totals == {3: 1}
    # and the recent activity is read back: what the early warning counts is known again
    assert {i: a.recent for i, a in resumed.activity(after).items()} == {1: 2, 2: 5, 3: 1}


async def test_a_restart_reads_the_window_back_without_counting_it_twice(
    sim_client: tuple[Simulator, SendcloudClient],
) -> None:
    sim, client = sim_client
    now = datetime.now(UTC)
    for minutes in (50, 10, 5, 3, 2, 1):
        sim.append_log(4, created_at=now - timedelta(minutes=minutes))
    stream = ExceptionStream(horizon=timedelta(hours=1), window=timedelta(minutes=15))
    await stream.read(client, now)
    assert stream.totals == {4: 6}
    assert stream.activity(now)[4].recent == 5
    assert stream.position is not None
    resumed = ExceptionStream(
        position=stream.position, horizon=timedelta(hours=1), window=timedelta(minutes=15)
    )
    assert resumed.counts().recent is None  # not read yet: unknown
    result = await resumed.read(client, now)
    assert result.new == 0
    assert resumed.totals == {}
    assert resumed.activity(now)[4].recent == 5
    assert resumed.counts(resumed.activity(now)).recent == {4: 5}
