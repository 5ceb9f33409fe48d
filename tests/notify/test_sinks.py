"""Delivery sinks against real receivers: a local HTTP server and a real Alertmanager."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitor.notify.sinks import AlertmanagerSink, StdoutSink, WebhookSink, group_summary
from tests.conftest import LogCapture, free_port, require_binary
from tests.receivers import Receiver, running

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


async def test_webhook_delivers_one_signed_post_per_group() -> None:
    counts = Counts()
    with running(Receiver(secret=b"shared-secret")) as receiver:
        sink = webhook(receiver.url, counts, hmac_secret="shared-secret")
        sink.submit("acme", [event(), event("resolved", integration_id=8)], [])
        sink.submit("acme", [event("resolved")], [])
        await until(lambda: len(receiver.bodies) == 2)
        await sink.aclose()
    first, second = receiver.bodies
    assert (first["status"], second["status"]) == ("firing", "resolved")
    assert [e["integration_id"] for e in first["events"]] == [7, 8]
    assert first["account"] == "default"
    assert first["groupKey"] == "default:IntegrationFailing"
    assert receiver.signatures_ok == [True, True]
    assert counts.outcomes == {("webhook:ops", "success"): 2}


async def test_a_replayed_delivery_is_refused_by_a_checking_receiver() -> None:
    counts = Counts()
    with running(Receiver(secret=b"shared-secret")) as receiver:
        old = time.time() - 301  # a captured delivery, sent again more than 5 minutes later
        sink = webhook(receiver.url, counts, hmac_secret="shared-secret", wall_clock=lambda: old)
        sink.submit("acme", [event()], [])
        await until(lambda: counts.outcomes.get(("webhook:ops", "failed")) == 1)
        await sink.aclose()
    assert receiver.signatures_ok == [True]  # the signature itself is valid...
    assert receiver.rejected_replays == 1  # ...but too old: refused (401, not retried)
    assert receiver.bodies == []


def test_a_signature_over_the_body_alone_is_refused() -> None:
    with running(Receiver(secret=b"shared-secret")) as receiver:
        body = json.dumps({"events": []}).encode()
        old_style = hmac.new(b"shared-secret", body, hashlib.sha256).hexdigest()
        response = httpx.post(
            receiver.url,
            content=body,
            headers={
                "X-Signature-SHA256": old_style,
                "X-Signature-Timestamp": str(int(time.time())),
            },
        )
    assert response.status_code == 401
    assert receiver.signatures_ok == [False]


async def test_webhook_retries_server_errors_then_succeeds() -> None:
    counts = Counts()
    with running(Receiver(statuses=[500, 503, 200])) as receiver:
        sink = webhook(receiver.url, counts)
        sink.submit("acme", [event()], [])
        await until(lambda: len(receiver.bodies) == 1)
        await sink.aclose()
    assert receiver.attempts == 3
    assert counts.outcomes == {("webhook:ops", "success"): 1}


async def test_webhook_receiver_down_is_counted_as_failed() -> None:
    counts = Counts()
    sink = webhook(f"http://127.0.0.1:{free_port()}/hook", counts, max_attempts=3)
    sink.submit("acme", [event()], [])
    await until(lambda: counts.outcomes.get(("webhook:ops", "failed")) == 1)
    await sink.aclose()


async def test_webhook_client_errors_are_not_retried() -> None:
    counts = Counts()
    with running(Receiver(statuses=[400, 200])) as receiver:
        sink = webhook(receiver.url, counts)
        sink.submit("acme", [event()], [])
        await until(lambda: counts.outcomes.get(("webhook:ops", "failed")) == 1)
        await sink.aclose()
    assert receiver.attempts == 1


async def test_slow_receiver_never_holds_up_the_caller_and_full_queue_drops_oldest() -> None:
    counts = Counts()
    receiver = Receiver()
    receiver.release.clear()  # the receiver hangs until released
    with running(receiver):
        sink = webhook(receiver.url, counts, queue_size=2)
        sink.submit("acme", [event(integration_id=1)], [])
        await until(receiver.received.is_set)  # the first delivery hangs in the receiver
        for n in range(2, 7):
            sink.submit("acme", [event(integration_id=n)], [])  # returns at once: nothing awaited
        sink.submit("acme", [], [event()])  # nothing changed: nothing to send
        assert not receiver.answered.is_set()
        assert counts.depths["webhook:ops"] == 2
        receiver.release.set()
        await until(lambda: len(receiver.bodies) == 3)
        await sink.aclose()
    delivered = [b["events"][0]["integration_id"] for b in receiver.bodies]
    assert delivered == [1, 5, 6]  # the newest two waited in the queue, 2-4 were dropped
    assert counts.outcomes[("webhook:ops", "dropped")] == 3


async def test_closing_with_deliveries_queued_and_in_flight_drops_and_counts_them(
    captured_logs: LogCapture,
) -> None:
    """A shutdown while the receiver hangs (its timeout 30 s): the close takes the drain, not
    the timeout; the one being sent and the two queued are counted as dropped, in one line."""
    counts = Counts()
    receiver = Receiver()
    receiver.release.clear()  # the receiver hangs until released
    with running(receiver):
        sink = webhook(receiver.url, counts, timeout_seconds=30)
        for n in (1, 2, 3):
            sink.submit("acme", [event(integration_id=n)], [])
        await until(receiver.received.is_set)
        started = time.monotonic()
        await sink.aclose()
        closing = time.monotonic() - started
        receiver.release.set()
    assert closing < 10  # the drain (1.5 s), never the receiver's 30 s
    assert counts.outcomes == {("webhook:ops", "dropped"): 3}
    assert counts.depths["webhook:ops"] == 0
    [dropped] = captured_logs.events("alert_deliveries_dropped")
    assert (dropped["sink"], dropped["deliveries"], dropped["level"]) == (
        "webhook:ops",
        3,
        "warning",
    )


async def test_slack_format() -> None:
    counts = Counts()
    with running(Receiver()) as receiver:
        sink = webhook(receiver.url, counts, slack=True)
        sink.submit("acme", [event(severity="critical")], [])
        await until(lambda: len(receiver.bodies) == 1)
        await sink.aclose()
    [body] = receiver.bodies
    assert set(body) == {"text"}
    assert "IntegrationFailing" in body["text"]
    assert "503 Server Error" in body["text"]


def incident(count: int) -> list[dict[str, Any]]:
    """A platform-wide incident: most shops are Shopify, failing with ConnectTimeout."""
    return [
        event(
            integration_id=i,
            integration_type="shopify" if i % 10 else "woocommerce",
            starts_at=f"2026-11-27T10:{2 + i % 3:02d}:00+00:00",
            summary=f"Sendcloud cannot fetch orders from Shop {i}.",
            cause={
                "exception_type": "httpx.ConnectTimeout" if i % 5 else "ssl.SSLError",
                "exception": "timed out",
                "host": f"shop-{i}.myshopify.com",
            },
        )
        for i in range(1, count + 1)
    ]


def test_a_group_summary_says_what_most_share() -> None:
    summary = group_summary(incident(412))
    assert summary == (
        "412 shopify integrations failing since 10:02 UTC, "
        "mostly `ConnectTimeout` to *.myshopify.com."
    )
    mixed = [*incident(3), event("resolved", kind="resolved", integration_id=99)]
    assert "1 integration: recovered from IntegrationFailing" in group_summary(mixed)


async def test_a_thousand_failing_shops_are_one_post_and_one_slack_message() -> None:
    counts = Counts()
    with running(Receiver()) as json_receiver, running(Receiver()) as slack_receiver:
        as_json = webhook(json_receiver.url, counts)
        as_slack = webhook(slack_receiver.url, counts, slack=True)
        for sink in (as_json, as_slack):
            sink.submit("acme", incident(1000), [])
        await until(lambda: len(json_receiver.bodies) == len(slack_receiver.bodies) == 1)
        await as_json.aclose()
        await as_slack.aclose()
    [body] = json_receiver.bodies
    assert len(body["events"]) == 1000
    assert body["summary"].startswith("1000 shopify integrations failing")
    [slack] = slack_receiver.bodies
    lines = slack["text"].splitlines()
    assert "1000 shopify integrations failing" in lines[0]
    assert len(lines) == 1 + 5 + 1  # the summary, five shops, and how many more
    assert lines[-1] == "…and 995 more"


def test_stdout_adds_one_incident_line_to_a_large_group(captured_logs: LogCapture) -> None:
    counts = Counts()
    StdoutSink(counts.observe).submit("acme", incident(20), [])
    StdoutSink(counts.observe).submit("acme", incident(3), [])
    assert len(captured_logs.events("alert")) == 23  # one line per event, for machines
    [line] = captured_logs.events("incident")
    assert line["level"] == "warning"
    assert line["events"] == 20
    assert line["alerts"] == {"IntegrationFailing:fired": 20}
    assert line["summary"].startswith("20 shopify integrations failing")


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
        clock=lambda: now,
        observe=counts.observe,
        depth=counts.depth,
        backoff_seconds=0.01,
    )
    firing = event(starts_at=(now - timedelta(minutes=30)).isoformat())
    sink.submit("acme", [firing], [firing])

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
    sink.submit("acme", [resolved], [])
    await until(lambda: active() == [])
    await sink.aclose()
    assert counts.outcomes[("alertmanager", "success")] == 2


async def test_an_expiring_certificate_is_two_alertmanager_alerts_once_critical(
    alertmanager: str,
) -> None:
    """As the shipped rules have it: one IntegrationShopCertificateExpiring alert with
    severity warning from 14 days, a second one with severity critical under 3 days; each
    alert's labels stay the same for its whole life."""
    from monitor.notify.sinks import alertmanager_alerts

    now = datetime.now(UTC)
    counts = Counts()
    sink = AlertmanagerSink(
        alertmanager,
        clock=lambda: now,
        observe=counts.observe,
        depth=counts.depth,
        backoff_seconds=0.01,
    )
    fields = {
        "alert": "IntegrationShopCertificateExpiring",
        "starts_at": (now - timedelta(days=12)).isoformat(),
        "cause": None,
    }
    warning = event(**fields)
    assert [a["labels"]["severity"] for a in alertmanager_alerts(warning, ends_at="x")] == [
        "warning"
    ]
    critical = event(**{**fields, "severity": "critical", "kind": "escalated"})
    sink.submit("acme", [critical], [critical])

    def active() -> list[tuple[str, str]]:
        response = httpx.get(alertmanager + "/api/v2/alerts", params={"active": "true"})
        return sorted(
            (a["labels"]["alertname"], a["labels"]["severity"])
            for a in response.json()
            if a["status"]["state"] == "active"
        )

    await until(lambda: len(active()) == 2)
    assert active() == [
        ("IntegrationShopCertificateExpiring", "critical"),
        ("IntegrationShopCertificateExpiring", "warning"),
    ]
    resolved = event("resolved", **{**fields, "severity": "critical"}, ends_at=now.isoformat())
    sink.submit("acme", [resolved], [])
    await until(lambda: active() == [])
    await sink.aclose()
