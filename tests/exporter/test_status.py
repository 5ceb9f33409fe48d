"""The status document: order, frozen values, escaping; served as / and /status.json."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import bcrypt
import httpx
from prometheus_client import CollectorRegistry

from monitor.exporter.server import HttpServer, make_app
from monitor.exporter.status import Status, build, render_html
from monitor.exporter.webconfig import load_web_config, protect
from monitor.health import derive
from monitor.sendcloud import parse_integration
from monitor.store import AccountSnapshot, Observation
from monitor.store import ReadOutcome as Read

T0 = datetime(2026, 11, 27, 12, tzinfo=UTC)
EVIL = "<script>alert(1)</script>"


def observation(integration_id: int, read: Read = Read.OK, **fields: object) -> Observation:
    record = parse_integration({"id": integration_id, **fields})[0]
    unreadable_since = T0 if read is Read.ERROR else None
    return Observation(
        integration_id, read, record, derive(record, T0, 7200), unreadable_since=unreadable_since
    )


def snapshot() -> dict[str, AccountSnapshot]:
    hour = (T0 - timedelta(hours=1)).isoformat()
    observations = [
        observation(1, shop_name="Healthy", last_fetched_at=T0.isoformat()),
        observation(2, shop_name="Failing 1h", started_failing_at=hour),
        observation(
            3, shop_name="Failing 2h", started_failing_at=(T0 - timedelta(hours=2)).isoformat()
        ),
        observation(4, shop_name="Stale", last_fetched_at=(T0 - timedelta(hours=3)).isoformat()),
        observation(5, Read.ERROR, shop_name="Unreadable", started_failing_at=hour),
        observation(6, shop_name=EVIL, shop_url="javascript:alert(2)", type="<b>x</b>"),
    ]
    return {"eu": AccountSnapshot("eu", {o.integration_id: o for o in observations}, 1, T0)}


def test_problems_first_then_by_duration() -> None:
    status = build(snapshot(), T0 + timedelta(minutes=10))
    order = [(r.integration_id, r.state) for r in status.integrations]
    # 5 cannot be read now: its last known state (failing 1 h, frozen) sorts among the failing
    assert order == [
        (3, "failing"),
        (2, "failing"),
        (5, "failing"),
        (4, "stale"),
        (1, "healthy"),
        (6, "healthy"),
    ]
    assert [r.integration_id for r in status.integrations if r.unreadable_since] == [5]


def test_values_are_those_of_the_metrics_frozen_while_unreadable() -> None:
    rows = {r.integration_id: r for r in build(snapshot(), T0 + timedelta(hours=5)).integrations}
    assert rows[2].failing_seconds == 3600 + 5 * 3600  # readable: extended to now
    assert rows[5].failing_seconds == 3600  # unreadable: frozen at its last read


class Cells(HTMLParser):
    """The text of every table cell, the links, and every <script> element."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.links: list[str] = []
        self.scripts = 0
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag == "td":
            self._in_cell = True
            self.rows[-1].append("")
        elif tag == "a":
            self.links.append(dict(attrs).get("href") or "")
        elif tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.rows[-1][-1] += data


def test_everything_from_the_api_is_text_not_markup() -> None:
    page = render_html(build(snapshot(), T0), T0)
    parser = Cells()
    parser.feed(page)
    cells = [row for row in parser.rows if row]
    evil_row = next(row for row in cells if EVIL in row[1])
    assert evil_row[2] == "<b>x</b>"  # shown as text
    assert parser.scripts == 1  # only the page's own filter script
    assert not any(link.startswith("javascript:") for link in parser.links)


def served(status: Status, web_config: Path | None = None) -> HttpServer:
    app = make_app(CollectorRegistry(), lambda: True, lambda: (status, T0))
    if web_config is not None:
        app = protect(app, load_web_config(web_config))
    server = HttpServer("127.0.0.1", 0, app)
    server.start()
    return server


def test_status_json_has_the_same_rows_as_the_page(tmp_path: Path) -> None:
    status = build(snapshot(), T0)
    server = served(status)
    try:
        base = f"http://127.0.0.1:{server.port}"
        document = httpx.get(base + "/status.json").json()
        page = httpx.get(base + "/")
    finally:
        server.stop()
    assert page.headers["content-type"].startswith("text/html")
    assert [i["integration_id"] for i in document["integrations"]] == [3, 2, 5, 4, 1, 6]
    assert document["summary"] == {
        "failing": 3,
        "stale": 1,
        "not_found": 0,
        "unknown": 0,
        "healthy": 2,
        "unreadable": 1,
    }
    assert set(document["integrations"][0]) == {
        "account",
        "integration_id",
        "shop_name",
        "shop_url",
        "integration_type",
        "state",
        "failing_seconds",
        "unreadable_since",
        "availability",
        "staleness_seconds",
        "last_fetched_at",
        "last_read_at",
        "alerts",
        "cause",
        "cause_summary",
        "failing_since",
        "quiet",
        "probe_result",
        "certificate_expires_at",
        "certificate_days_left",
        "certificate_expiring",
        "failed_checks",
        "findings",
    }
    json.dumps(document)


def test_the_page_is_protected_like_metrics(tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users: {{ops: '{hashed}'}}\n")
    server = served(build(snapshot(), T0), web)
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert httpx.get(base + "/").status_code == 401
        assert httpx.get(base + "/status.json").status_code == 401
        assert httpx.get(base + "/", auth=("ops", "pw")).status_code == 200
    finally:
        server.stop()


def test_the_probe_and_the_failed_checks_in_plain_words() -> None:
    from monitor.cli import check_exit_code, render_check
    from monitor.probes import Outcome, Result, ShopProbe
    from monitor.store import FailedCheck, Findings

    now = T0 + timedelta(minutes=10)
    expiring = ShopProbe("https://a:443", Outcome(Result.OK, T0, T0 + timedelta(days=4), "CA"))
    fine = ShopProbe("https://b:443", Outcome(Result.OK, T0, T0 + timedelta(days=80), "CA"))
    untrusted = ShopProbe("https://c:443", Outcome(Result.UNTRUSTED, T0), 2, T0)
    off = FailedCheck("feedback_off", "feedback is off <now>")
    base = snapshot()["eu"]
    healthy = {i: o for i, o in base.integrations.items() if i in (1, 6)}
    findings = {1: Findings(expiring), 6: Findings(fine, (off,))}
    accounts = {"eu": AccountSnapshot("eu", healthy, 1, T0, findings=findings, unmonitored=(9,))}
    status = build(accounts, now, certificate_warning_days=14)
    rows = {r.integration_id: r for r in status.integrations}
    assert (rows[1].probe_result, rows[1].certificate_expiring) == ("ok", True)
    assert rows[1].certificate_days_left is not None
    assert 3.99 < rows[1].certificate_days_left < 4.0
    assert rows[1].findings == ("TLS certificate valid, expires in 4 days",)
    assert rows[6].failed_checks == ("feedback_off",)
    assert rows[6].findings == ("TLS certificate valid, expires in 80 days", off.text)
    assert not rows[6].certificate_expiring
    assert check_exit_code(status) == 1  # WARNING: an expiring certificate, a failed check
    document = status.to_json()
    json.dumps(document)
    assert document["accounts"][0]["unmonitored"] == [9]
    by_id = {r["integration_id"]: r for r in document["integrations"]}
    assert by_id[6]["failed_checks"] == ["feedback_off"]
    assert by_id[1]["certificate_expires_at"] == "2026-12-01T12:00:00Z"
    cells = Cells()
    cells.feed(render_html(status, now))
    texts = [row[-1] for row in cells.rows if row]
    assert "TLS certificate valid, expires in 4 days" in texts
    assert "TLS certificate valid, expires in 80 daysfeedback is off <now>" in texts
    table = render_check(status, "table", only_problems=True, color=False)
    assert "eu #1: TLS certificate valid, expires in 4 days" in table
    assert "eu #6: feedback is off <now>" in table
    nagios = render_check(status, "nagios", only_problems=False, color=False)
    assert nagios.startswith(
        "SENDCLOUD WARNING - 2 healthy; 1 certificate expiring; 1 misconfigured"
    )
    # a failing probe alone makes no WARNING: the daemon's alert waits for a second one
    untrusted_only = {
        "eu": AccountSnapshot("eu", healthy, 1, T0, findings={1: Findings(untrusted)})
    }
    assert check_exit_code(build(untrusted_only, now)) == 0
