"""``integration-monitor report`` over a synthetic month: the CSV and JSON parsed, the Markdown
read, the HTML rendered in Chromium; all from the one availability definition."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.history import HistoryStore
from monitor.history.availability import Interval
from monitor.history.report import compose, render, to_html, to_markdown
from monitor.store import AccountSnapshot, Observation
from tests.browser import load
from tests.conftest import require_binary
from tests.daemon_process import run_once
from tests.history.test_store import snapshot

NOVEMBER = datetime(2026, 11, 1, tzinfo=UTC)


def hours(n: float) -> datetime:
    return NOVEMBER + timedelta(hours=n)


def november(path: Path) -> Path:
    """Shop 1 fails twice (4 h on the 12th with a cause, 1 h on the 20th); shop 2 is healthy
    but unreadable for 2 h; the monitor is down for 6 h on the 25th (unknown for both)."""
    store = HistoryStore(path)
    store.start()
    timeline = [
        (0, "healthy", "healthy"),
        (11 * 24 + 8, "failing", "healthy"),
        (11 * 24 + 12, "healthy", "healthy"),
        (15 * 24, "healthy", "unknown"),
        (15 * 24 + 2, "healthy", "healthy"),
        (19 * 24, "failing", "healthy"),
        (19 * 24 + 1, "healthy", "healthy"),
    ]
    for at, one, two in timeline:
        store.record(shops(hours(at), i1=one, i2=two), hours(at))
        if at == 11 * 24 + 8:
            fired = {"alert": "IntegrationFailing", "account": "acme", "integration_id": 1}
            fired |= {"fingerprint": "f1", "kind": "fired", "status": "firing"}
            store.episode(fired, hours(at))
            cause = {"exception_type": "AuthenticationError", "exception": "API key expired"}
            store.episode({**fired, "kind": "cause", "cause": cause}, hours(at + 0.1))
            store.episode({**fired, "kind": "resolved", "status": "resolved"}, hours(at + 4))
    store.close(hours(24 * 24))  # stopped on the 25th 00:00 ...
    again = HistoryStore(path)
    again.start()
    again.record(shops(hours(24 * 24 + 6), i1="healthy", i2="healthy"), hours(24 * 24 + 6))
    again.close(hours(30 * 24))
    return path


def named(observation: Observation, name: str) -> Observation:
    assert observation.record is not None
    return replace(observation, record=replace(observation.record, shop_name=name))


def shops(at: datetime, **states: str) -> AccountSnapshot:
    """The account at ``at``, its integrations named "Shop N"."""
    shot = snapshot(at, **states)
    return AccountSnapshot(
        "acme", {i: named(o, f"Shop {i}") for i, o in shot.integrations.items()}, 1, at
    )


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return november(tmp_path_factory.mktemp("report") / "history.db")


def report(history: Path, form: str, *extra: str) -> str:
    result = run_once(
        ["report", "--account", "acme", "--month", "2026-11", "--format", form, *extra],
        {"MONITOR_HISTORY_FILE": str(history)},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


MONTH = 30 * 24 * 3600.0
DOWN = 6 * 3600.0


def test_json_has_the_figures_of_the_one_definition(history: Path) -> None:
    document = json.loads(report(history, "json"))
    one, two = document["integrations"]
    assert (one["shop_name"], two["shop_name"]) == ("Shop 1", "Shop 2")
    assert one["seconds"]["failing"] == 5 * 3600
    assert one["seconds"]["unknown"] == DOWN
    assert one["availability"] == pytest.approx(1 - 5 * 3600 / (MONTH - DOWN))
    assert one["incidents"] == 2
    assert one["longest_incident_seconds"] == 4 * 3600
    first = one["incident_list"][0]
    assert first["started"] == "2026-11-12T08:00:00Z"
    assert first["cause"] == "AuthenticationError: API key expired"
    assert two["seconds"]["unknown"] == DOWN + 2 * 3600  # unreadable: never up, never down
    assert two["availability"] == 1.0
    assert sum(document["total"]["seconds"].values()) == pytest.approx(2 * MONTH)
    # unknown as a share of the two shops' time, never their unknown hours added up
    assert document["total"]["unknown_share"] == pytest.approx((2 * DOWN + 7200) / (2 * MONTH))
    assert document["so_far"] is False
    assert len(document["daily_availability"]) == 30
    day = {d["day"]: d["availability"] for d in document["daily_availability"]}
    assert day["2026-11-12"] == pytest.approx(1 - 4 / 48)


def test_csv_parses_with_a_total_row(history: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(report(history, "csv"))))
    assert [r["integration_id"] for r in rows] == ["1", "2", "total"]
    assert float(rows[0]["failing_seconds"]) == 5 * 3600
    assert int(rows[2]["incidents"]) == 2
    assert float(rows[2]["availability"]) == pytest.approx(
        1 - 5 * 3600 / (2 * MONTH - 2 * DOWN - 7200)
    )


def test_markdown_lists_the_incidents_with_their_cause(history: Path) -> None:
    text = report(history, "md")
    assert text.startswith("# Availability of account acme")
    row = "| Shop 1 | 2026-11-12 08:00 | 2026-11-12 12:00 | 4h 0min | "
    assert row + "AuthenticationError: API key expired |" in text


def test_the_html_report_renders_in_chromium(history: Path, tmp_path: Path) -> None:
    chromium = require_binary("chromium")
    page = tmp_path / "report.html"
    page.write_text(report(history, "html"))
    rendered = load(chromium, page.as_uri())
    assert rendered.console == []
    days = rendered.dom.count('<rect class="day"') + rendered.dom.count('class="nodata"')
    assert days == 30  # a bar per day, inline SVG
    assert "http" not in page.read_text().replace("http://www.w3.org/2000/svg", "")  # no asset
    assert "API key expired" in rendered.dom


def test_bad_windows_and_missing_files_are_clear_errors(history: Path, tmp_path: Path) -> None:
    for args in (["--month", "November"], ["--from", "yesterday"], []):
        result = run_once(
            ["report", "--account", "acme", *args], {"MONITOR_HISTORY_FILE": str(history)}
        )
        assert result.returncode == 2
        assert result.stderr.startswith("integration-monitor:")
    missing = run_once(
        ["report", "--account", "acme", "--month", "2026-11"],
        {"MONITOR_HISTORY_FILE": str(tmp_path / "none.db")},
    )
    assert missing.returncode == 2
    assert "no history file" in missing.stderr


def hourly(history: Path, integration_id: int) -> list[str | None]:
    """The integration's state at each hour of November, as the history has it (None: no
    interval, the monitor was down). The timeline changes on whole hours, so hourly samples
    see all of it (and keep promtool's 30-day windows quick)."""
    store = HistoryStore(history)
    intervals = store.intervals("acme", integration_id, NOVEMBER, hours(30 * 24))
    states: list[str | None] = []
    for hour in range(30 * 24):
        at = hours(hour)
        states.append(next((i.state for i in intervals if i.since <= at < (i.until or at)), None))
    return states


def runs(values: list[str | None]) -> str:
    """promtool's series notation: ``axN`` is N + 1 samples of a, ``_xN`` N missing ones."""
    parts = []
    index = 0
    while index < len(values):
        end = index
        while end < len(values) and values[end] == values[index]:
            end += 1
        length = end - index
        value = values[index]
        parts.append(f"_x{length}" if value is None else f"{value}x{length - 1}")
        index = end
    return " ".join(parts)


def exported(state: str | None) -> dict[str, str | None]:
    """What /metrics shows for a state (None: not scraped)."""
    if state is None:
        return dict.fromkeys(("up", "not_found", "failing", "stale"), None)
    return {
        "up": "1" if state in ("healthy", "failing", "stale") else "0",
        "not_found": "1" if state == "not_found" else "0",
        "failing": "1" if state == "failing" else "0",
        "stale": "1" if state == "stale" else "0",
    }


def test_the_shipped_recording_rule_agrees_with_the_report(history: Path, tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    series = []
    healthy = known = 0
    for integration_id in (1, 2):
        states = hourly(history, integration_id)
        columns = [exported(s) for s in states]
        labels = f'instance="m:9877",job="monitor",account="acme",integration_id="{integration_id}"'
        for name, family in (
            ("up", "integration_up"),
            ("not_found", "integration_not_found"),
            ("failing", "integration_failing"),
            ("stale", "integration_fetch_stale"),
        ):
            series.append(
                {"series": f"{family}{{{labels}}}", "values": runs([c[name] for c in columns])}
            )
        healthy += sum(1 for s in states if s == "healthy")
        known += sum(1 for s in states if s in ("healthy", "failing", "stale", "not_found"))
    sampled = healthy / known
    total = json.loads(report(history, "json"))["total"]["availability"]
    assert sampled == pytest.approx(total, rel=0.01)  # the rule's sampling and the report agree
    rules = Path(__file__).parents[2] / "deploy" / "prometheus" / "rules.yml"
    test = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1h",
        "tests": [
            {
                "interval": "1h",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": "account:integration_availability:ratio_30d",
                        "eval_time": f"{30 * 24 - 1}h",
                        "exp_samples": [
                            {
                                "labels": "account:integration_availability:ratio_30d"
                                '{account="acme",instance="m:9877",job="monitor"}',
                                "value": sampled,
                            }
                        ],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "availability_test.yml"
    path.write_text(json.dumps(test))  # JSON is YAML
    result = subprocess.run(
        [promtool, "test", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_current_month_ends_now_and_its_headline_reads_true() -> None:
    """December so far, on the 7th at 10:57: shop 1 healthy with a one-minute flap on the 3rd;
    shop 2 first read on the 3rd (the 1st and 2nd are unknown for it). The period ends now,
    unknown is a share of the shops' time, the flap lasts a minute, the chart's unknown days are
    not bars of 100 %."""
    december = datetime(2026, 12, 1, tzinfo=UTC)
    now = datetime(2026, 12, 7, 10, 57, tzinfo=UTC)
    flap = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    intervals = {
        1: [
            Interval("healthy", december, flap),
            Interval("failing", flap, flap + timedelta(seconds=65)),
            Interval("healthy", flap + timedelta(seconds=65), None),
        ],
        2: [Interval("healthy", december + timedelta(days=2), None)],
    }
    names = {1: ("Shop 1", "shopify"), 2: ("Shop 2", "woocommerce")}
    found = compose("acme", intervals, names, [], december, datetime(2027, 1, 1, tzinfo=UTC), now)
    elapsed = (now - december).total_seconds()
    assert found.window_to == now  # never into the future
    assert found.so_far
    assert sum(found.total.seconds.values()) == pytest.approx(2 * elapsed)
    assert found.unknown_share == pytest.approx(2 * 86400 / (2 * elapsed))
    assert [day for day, _ in found.days][-1] == "2026-12-07"  # no day after today
    headline = to_markdown(found).splitlines()[2]
    assert headline.startswith("2026-12-01 00:00 to now (UTC, 2026-12-07 10:57): ")
    assert "unknown 15.5 % of the time" in headline  # 2 days of 2 x 6.46 days
    assert "longest 1min 5s" in headline
    incident = next(line for line in to_markdown(found).splitlines() if "2026-12-03 09:00" in line)
    assert "| 1min 5s |" in incident
    document = json.loads(render(found, "json"))
    assert document["to"] == "2026-12-07T10:57:00Z"
    assert document["total"]["unknown_share"] == pytest.approx(found.unknown_share)
    # the chart: the 1st and 2nd (unknown for shop 2, healthy for shop 1) are days at 100 %
    # of what is known; a day nothing at all is known of is no bar but a "no data" stub
    nothing = compose("acme", {2: intervals[2]}, names, [], december, now, now)
    html = to_html(nothing)
    assert html.count("class='nodata'") == 2
    assert html.count("class='day'") == 5
    assert "<title>2026-12-01: no data</title>" in html
    dates = [part.split(">")[1].split("<")[0] for part in html.split("<text class='date'")[1:]]
    assert dates[0] == "12-01"
    assert dates[-1] == "12-07"


def test_a_report_of_an_account_the_history_does_not_know_is_refused(history: Path) -> None:
    result = run_once(
        ["report", "--account", "acne", "--month", "2026-11"],
        {"MONITOR_HISTORY_FILE": str(history)},
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("integration-monitor: ")
    assert "'acne'" in result.stderr
    assert "acme" in result.stderr
