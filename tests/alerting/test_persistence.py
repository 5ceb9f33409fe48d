"""Open alerts on disk: a restart neither re-fires nor forgets; a bad file starts clean."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.alerting import persistence
from tests.alerting.test_rules import Run, failing
from tests.conftest import LogCapture


def test_restart_with_restored_state_neither_refires_nor_forgets(tmp_path: Path) -> None:
    run = Run()
    for minute in range(12):
        run.step(minute, failing(0, minute))
    path = tmp_path / "state" / "alerts.json"
    persistence.save(path, run.states)

    restarted = Run()
    restarted.states = persistence.load(path)
    assert restarted.states == run.states
    restarted.step(13, failing(0, 13))
    assert restarted.log == []
    restarted.step(14)
    assert restarted.log == [(14, "resolved", "warning")]


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b'{"version": 99, "alerts": []}',
        b'{"version": 1, "alerts": [{"key": 3}]}',
        b"[]",
        b"\xff\xfe",
    ],
)
def test_corrupt_or_incompatible_state_file_starts_clean(
    tmp_path: Path, content: bytes, captured_logs: LogCapture
) -> None:
    path = tmp_path / "alerts.json"
    path.write_bytes(content)
    assert persistence.load(path) == {}
    assert persistence.load(tmp_path / "missing.json") == {}
    warnings = [e["event"] for e in captured_logs.lines() if e["level"] == "warning"]
    assert len(warnings) == 2
    assert warnings[1] == "alert_state_missing"


def test_state_file_write_is_atomic_no_temporary_left(tmp_path: Path) -> None:
    run = Run()
    run.step(0, failing(-30, 0))
    path = tmp_path / "alerts.json"
    persistence.save(path, run.states)
    persistence.save(path, run.states)
    assert [p.name for p in tmp_path.iterdir()] == ["alerts.json"]


def test_what_the_sinks_hold_is_saved_with_the_alerts(tmp_path: Path) -> None:
    run = Run()
    for minute in range(12):
        run.step(minute, failing(0, minute))
    path = tmp_path / "alerts.json"
    holds = {"quiet": {"held": ["9704b9e3fbb0bb5e"], "sinks": {}}}
    persistence.save(path, run.states, holds)
    saved = persistence.load_all(path)
    assert saved.alerts == run.states
    assert saved.holds == holds


def test_a_file_of_the_previous_format_keeps_its_alerts(
    tmp_path: Path, captured_logs: LogCapture
) -> None:
    """An upgrade must not forget the open alerts: version 1 had no holds."""
    run = Run()
    for minute in range(12):
        run.step(minute, failing(0, minute))
    path = tmp_path / "alerts.json"
    persistence.save(path, run.states)
    document = json.loads(path.read_text())
    del document["holds"]
    document["version"] = 1
    path.write_text(json.dumps(document))
    saved = persistence.load_all(path)
    assert saved.alerts == run.states
    assert saved.holds == {}
    assert captured_logs.lines() == []


def test_shop_and_check_alerts_come_back_whole(tmp_path: Path) -> None:
    from tests.alerting.test_rules import ShopRun, certificate

    run = ShopRun()
    run.poll(0, probe=certificate(5), failed=("feedback_off",), updated_minute=-30)
    run.poll(1, probe=certificate(5), failed=("feedback_off",), updated_minute=-30)
    assert {key.alert for key, state in run.states.items() if state.firing} == {
        "IntegrationShopCertificateExpiring",
        "IntegrationMisconfigured",
    }
    path = tmp_path / "alerts.json"
    persistence.save(path, run.states)
    assert persistence.load(path) == run.states


def test_a_file_from_before_the_shop_alerts_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "alerts.json"
    path.write_text(
        '{"version": 1, "alerts": [{"key": ["IntegrationFailing", "eu", 7], "since": '
        '"2026-11-27T12:00:00+00:00", "observations": 3, "firing_since": '
        '"2026-11-27T12:15:00+00:00", "last_notified": "2026-11-27T12:15:00+00:00", '
        '"severity": "warning", "episode": null, "context": {"shop_name": "Old", '
        '"started_failing_at": "2026-11-27T12:00:00+00:00"}}]}'
    )
    [state] = persistence.load(path).values()
    assert state.context.shop_name == "Old"
    assert state.context.failed_checks == ()
    assert state.context.certificate_expires_at is None
