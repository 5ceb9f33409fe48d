"""``check``, ``--version`` and ``--help``: exit codes and the table."""

from __future__ import annotations

import json

import pytest

from monitor import __version__
from monitor.cli import main
from monitor.simulator import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, Simulator
from tests.conftest import free_port


def use(monkeypatch: pytest.MonkeyPatch, url: str, ids: str, secret: str = DEMO_SECRET_KEY) -> None:
    monkeypatch.setenv("SENDCLOUD_API_URL", url)
    monkeypatch.setenv("SENDCLOUD_PUBLIC_KEY", DEMO_PUBLIC_KEY)
    monkeypatch.setenv("SENDCLOUD_SECRET_KEY", secret)
    monkeypatch.setenv("MONITOR_INTEGRATION_IDS", ids)


@pytest.mark.parametrize(
    ("ids", "code", "status"),
    [
        ("1", 0, "healthy"),
        ("1,3", 1, "stale"),
        ("1,4", 1, "stale"),  # never fetched, created 3h ago
        ("1,2,3", 2, "failing"),
        ("1,5", 2, "not_found"),
    ],
)
def test_check_exit_codes(
    sim: Simulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    ids: str,
    code: int,
    status: str,
) -> None:
    use(monkeypatch, sim.url, ids)
    assert main(["check"]) == code
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:3] == ["ACCOUNT", "ID", "SHOP"]
    assert status in table


def test_check_unreadable_api(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use(monkeypatch, sim.url, "1,2", secret="wrong-secret-key")
    assert main(["check"]) == 3
    captured = capsys.readouterr()
    assert "could not be read" in captured.out
    assert "wrong-secret-key" not in captured.out + captured.err


def test_check_api_down(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use(monkeypatch, f"http://127.0.0.1:{free_port()}/api/v3", "all")
    assert main(["check"]) == 3


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("run", "check", "demo", "validate-config", "simulator"):
        assert command in out


def test_check_with_an_invalid_configuration_is_unknown_not_critical(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MONITOR_POLL_INTERVAL_SECONDS", "1")  # below the minimum of 5
    monkeypatch.setenv("SENDCLOUD_PUBLIC_KEY", DEMO_PUBLIC_KEY)
    monkeypatch.setenv("SENDCLOUD_SECRET_KEY", DEMO_SECRET_KEY)
    assert main(["check"]) == 3  # Nagios UNKNOWN
    assert "poll_interval_seconds" in capsys.readouterr().err
    assert main(["validate-config"]) == 2  # the other commands keep exit 2


def test_an_interrupted_check_is_unknown_not_ok(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, sim.url, "1")

    def interrupted(coroutine: object) -> None:
        coroutine.close()  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    monkeypatch.setattr("monitor.cli.asyncio.run", interrupted)
    assert main(["check"]) == 3


def test_check_reads_a_collection_404_as_unknown(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use(monkeypatch, sim.url, "1,2")
    sim.inject_fault(404, count=10, endpoint="list")
    assert main(["check"]) == 3  # not "every integration is gone" (2)
    out = capsys.readouterr().out
    assert "not_found" in out.splitlines()[-1]  # the account note names the reason
    assert "unknown" in out


def test_check_json_for_scripts(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use(monkeypatch, sim.url, "1,2,3")
    assert main(["check", "--output", "json"]) == 2
    document = json.loads(capsys.readouterr().out)
    assert document["exit_code"] == 2
    assert document["summary"]["failing"] == 1
    assert [(i["integration_id"], i["state"]) for i in document["integrations"]] == [
        (2, "failing"),
        (3, "stale"),
        (1, "healthy"),
    ]
    assert main(["check", "--output", "json", "--only-problems"]) == 2
    document = json.loads(capsys.readouterr().out)
    assert [i["integration_id"] for i in document["integrations"]] == [2, 3]


def test_check_nagios_line_with_performance_data(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use(monkeypatch, sim.url, "1,3")
    assert main(["check", "--output", "nagios"]) == 1
    [line] = capsys.readouterr().out.splitlines()
    text, _, perfdata = line.partition(" | ")
    assert text.startswith("SENDCLOUD WARNING - ")
    metrics = dict(item.split("=", 1) for item in perfdata.split())
    assert metrics["stale"] == "1;;;0"
    assert metrics["healthy"] == "1;;;0"
    assert metrics["failing"] == "0;;;0"


def test_check_table_colours_only_for_a_terminal_without_no_color(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use(monkeypatch, sim.url, "1,2")
    main(["check"])
    assert "\x1b[" not in capsys.readouterr().out  # captured: not a terminal
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    main(["check"])
    assert "\x1b[31mfailing" in capsys.readouterr().out
    monkeypatch.setenv("NO_COLOR", "1")
    main(["check"])
    assert "\x1b[" not in capsys.readouterr().out
    main(["check", "--only-problems"])
    assert [line.split()[1] for line in capsys.readouterr().out.splitlines()[1:]] == ["2"]
