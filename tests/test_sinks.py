"""Delivery sinks against real receivers: a local HTTP server and a real Alertmanager."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitor.sinks import AlertmanagerSink, WebhookSink

from .conftest import free_port, require_binary
from .receivers import Receiver, running

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)


def event(status: str = "firing", **fields: Any) -> dict[str, Any]:
    base = {
        "alert": "IntegrationFailing",
        "status": status,
        "kind": "fired",
        "severity": "warning",
        "account": "default",
        "integration_id": 7,
        "shop_name": "Beta shop",
        "summary": "Sendcloud cannot fetch orders from Beta shop.",
        "runbook_url": "docs/x#y",
        "starts_at": (NOW - timedelta(minutes=30)).isoformat(),
        "ends_at": None,
        "cause": {"exception": "503 Server Error"},
    }
    base.update(fields)
    return base


class Counts:
    def __init__(self) -> None:
        self.outcomes: dict[tuple[str, str], int] = {}
        self.depths: dict[str, int] = {}

    def observe(self, sink: str, outcome: str) -> None:
        self.outcomes[(sink, outcome)] = self.outcomes.get((sink, outcome), 0) + 1

    def depth(self, sink: str, value: int) -> None:
        self.depths[sink] = value


async def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def webhook(url: str, counts: Counts, **kwargs: Any) -> WebhookSink:
    return WebhookSink(
        "ops", url, observe=counts.observe, depth=counts.depth, backoff_seconds=0.01, **kwargs
    )


async def test_webhook_delivers_and_signs() -> None:
    counts = Counts()
    with running(Receiver(secret=b"shared-secret")) as receiver:
        sink = webhook(receiver.url, counts, hmac_secret="shared-secret")
        sink.submit([event(), event("resolved")], [])
        await until(lambda: len(receiver.bodies) == 2)
        await sink.aclose()
    assert [b["status"] for b in receiver.bodies] == ["firing", "resolved"]
    assert receiver.signatures_ok == [True, True]
    assert counts.outcomes == {("webhook:ops", "success"): 2}


async def test_webhook_retries_server_errors_then_succeeds() -> None:
    counts = Counts()
    with running(Receiver(statuses=[500, 503, 200])) as receiver:
        sink = webhook(receiver.url, counts)
        sink.submit([event()], [])
        await until(lambda: len(receiver.bodies) == 1)
        await sink.aclose()
    assert receiver.attempts == 3
    assert counts.outcomes == {("webhook:ops", "success"): 1}


async def test_webhook_receiver_down_is_counted_as_failed() -> None:
    counts = Counts()
    sink = webhook(f"http://127.0.0.1:{free_port()}/hook", counts, max_attempts=3)
    sink.submit([event()], [])
    await until(lambda: counts.outcomes.get(("webhook:ops", "failed")) == 1)
    await sink.aclose()


async def test_webhook_client_errors_are_not_retried() -> None:
    counts = Counts()
    with running(Receiver(statuses=[400, 200])) as receiver:
        sink = webhook(receiver.url, counts)
        sink.submit([event()], [])
        await until(lambda: counts.outcomes.get(("webhook:ops", "failed")) == 1)
        await sink.aclose()
    assert receiver.attempts == 1


async def test_slow_receiver_never_holds_up_the_caller_and_full_queue_drops_oldest() -> None:
    counts = Counts()
    receiver = Receiver()
    receiver.release.clear()  # the receiver hangs until released
    with running(receiver):
        sink = webhook(receiver.url, counts, queue_size=2)
        sink.submit([event(integration_id=1)], [])
        await until(receiver.received.is_set)  # the first delivery hangs in the receiver
        for n in range(2, 7):
            sink.submit([event(integration_id=n)], [])  # returns at once: nothing awaited
        assert not receiver.answered.is_set()
        assert counts.depths["webhook:ops"] == 2
        receiver.release.set()
        await until(lambda: len(receiver.bodies) == 3)
        await sink.aclose()
    delivered = [b["integration_id"] for b in receiver.bodies]
    assert delivered == [1, 5, 6]  # the newest two waited in the queue, 2-4 were dropped
    assert counts.outcomes[("webhook:ops", "dropped")] == 3


async def test_slack_format() -> None:
    counts = Counts()
    with running(Receiver()) as receiver:
        sink = webhook(receiver.url, counts, slack=True)
        sink.submit([event(severity="critical")], [])
        await until(lambda: len(receiver.bodies) == 1)
        await sink.aclose()
    [body] = receiver.bodies
    assert set(body) == {"text"}
    assert "IntegrationFailing" in body["text"]
    assert "503 Server Error" in body["text"]


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    binary = require_binary("prometheus-alertmanager")
    port = free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text("route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp_path}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(url + "/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "alertmanager did not start"
            assert process.poll() is None, "alertmanager exited"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_alertmanager_sink_against_a_real_alertmanager(alertmanager: str) -> None:
    counts = Counts()
    now = datetime.now(UTC)
    sink = AlertmanagerSink(
        alertmanager,
        keep_alive=timedelta(minutes=5),
        clock=lambda: now,
        observe=counts.observe,
        depth=counts.depth,
        backoff_seconds=0.01,
    )
    firing = event(starts_at=(now - timedelta(minutes=30)).isoformat())
    sink.submit([firing], [firing])

    def active() -> list[dict[str, Any]]:
        response = httpx.get(alertmanager + "/api/v2/alerts", params={"active": "true"})
        return [a for a in response.json() if a["status"]["state"] == "active"]

    await until(lambda: len(active()) == 1)
    [alert] = active()
    assert alert["labels"] == {
        "alertname": "IntegrationFailing",
        "severity": "warning",
        "account": "default",
        "integration_id": "7",
    }
    assert alert["annotations"]["summary"] == firing["summary"]
    assert alert["annotations"]["runbook_url"] == "docs/x#y"
    assert "503 Server Error" in alert["annotations"]["description"]

    resolved = event(
        "resolved", starts_at=firing["starts_at"], ends_at=datetime.now(UTC).isoformat()
    )
    sink.submit([resolved], [])
    await until(lambda: active() == [])
    await sink.aclose()
    assert counts.outcomes[("alertmanager", "success")] == 2
