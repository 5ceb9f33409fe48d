"""The history file: transitions only, unknown for what is not known, migrations, and faults
(corrupt, locked, read-only, a newer schema) that never stop monitoring."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.health import derive
from monitor.history import HistoryStore, availability
from monitor.history.store import SCHEMA_VERSION
from monitor.sendcloud import parse_integration
from monitor.store import AccountSnapshot, Observation, ReadOutcome
from tests.conftest import ROOT, LogCapture

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def snapshot(at: datetime, **states: str) -> AccountSnapshot:
    """An account whose integration N (key ``iN``) is in the given state as read at ``at``."""
    observations = {}
    for key, state in states.items():
        integration_id = int(key[1:])
        fields: dict[str, object] = {"id": integration_id, "last_fetched_at": at.isoformat()}
        if state == "failing":  # since this poll (tests of Sendcloud's earlier start set it)
            fields["started_failing_at"] = at.isoformat()
        if state == "stale":
            fields["last_fetched_at"] = (at - timedelta(days=1)).isoformat()
        record, _ = parse_integration(fields)
        outcome = {"unknown": ReadOutcome.ERROR, "not_found": ReadOutcome.NOT_FOUND}.get(
            state, ReadOutcome.OK
        )
        observations[integration_id] = Observation(
            integration_id, outcome, record, derive(record, at, 7200)
        )
    return AccountSnapshot("acme", observations, 1, at)


def until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Recorded:
    def __init__(self) -> None:
        self.status: list[bool] = []
        self.failures: list[str] = []


@pytest.fixture
def recorded() -> Recorded:
    return Recorded()


def observed(path: Path, recorded: Recorded) -> HistoryStore:
    return HistoryStore(path, on_status=recorded.status.append, on_failure=recorded.failures.append)


@pytest.fixture
def store(tmp_path: Path, recorded: Recorded) -> Iterator[HistoryStore]:
    history = observed(tmp_path / "history.db", recorded)
    history.start()
    yield history
    history.close(minutes(10_000))


def one_poll(path: Path, at: datetime, stop: datetime) -> None:
    """A daemon's life on ``path``: one poll of a healthy integration 1 at ``at``, a clean stop
    at ``stop``."""
    store = HistoryStore(path)
    store.start()
    store.record(snapshot(at, i1="healthy"), at)
    store.close(stop)


def read_only(directory: Path, on: bool) -> None:
    """Make ``directory`` read-only — for root too, who ignores permission bits: the immutable
    attribute (chattr) where root runs the tests."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i" if on else "-i", str(directory)], check=True)
    else:
        directory.chmod(0o500 if on else 0o700)


def rows(path: Path) -> list[tuple[object, ...]]:
    """Every interval in the file (none while the writer has not created the schema yet)."""
    with sqlite3.connect(path) as db:
        try:
            return db.execute(
                "SELECT integration_id, state, since, until FROM intervals "
                "ORDER BY integration_id, since"
            ).fetchall()
        except sqlite3.OperationalError:
            return []


def test_transitions_only_and_unknown_never_up_nor_down(
    store: HistoryStore, recorded: Recorded
) -> None:
    store.record(snapshot(minutes(0), i1="healthy", i2="healthy"), minutes(0))
    store.record(snapshot(minutes(1), i1="healthy", i2="failing"), minutes(1))
    store.record(snapshot(minutes(2), i1="healthy", i2="failing"), minutes(2))  # no change
    store.record(snapshot(minutes(3), i1="unknown", i2="failing"), minutes(3))
    store.record(snapshot(minutes(4), i1="healthy", i2="healthy"), minutes(4))
    until(lambda: len(rows(store.path)) == 6, "six intervals")
    assert recorded.status[-1] is True
    one = store.intervals("acme", 1, minutes(0), minutes(10))
    assert [(i.state, i.since, i.until) for i in one] == [
        ("healthy", minutes(0), minutes(3)),
        ("unknown", minutes(3), minutes(4)),
        ("healthy", minutes(4), None),
    ]
    figures = availability(one, minutes(0), minutes(10), now=minutes(10))
    assert figures.seconds["unknown"] == 60  # the unreadable minute: neither up nor down
    assert figures.ratio == 1.0
    two = availability(
        store.intervals("acme", 2, minutes(0), minutes(10)),
        minutes(0),
        minutes(10),
        now=minutes(10),
    )
    assert (two.seconds["failing"], len(two.incidents)) == (180, 1)


def test_a_clean_stop_ends_the_intervals_and_the_downtime_is_unknown(
    tmp_path: Path, recorded: Recorded
) -> None:
    path = tmp_path / "history.db"
    one_poll(path, minutes(0), minutes(5))
    second = HistoryStore(path)
    second.start()
    second.record(snapshot(minutes(20), i1="healthy"), minutes(20))
    second.close(minutes(30))
    found = second.intervals("acme", 1, minutes(0), minutes(30))
    assert [(i.since, i.until) for i in found] == [
        (minutes(0), minutes(5)),
        (minutes(20), minutes(30)),
    ]
    figures = availability(found, minutes(0), minutes(30), now=minutes(30))
    assert figures.seconds == {
        "healthy": 15 * 60,
        "failing": 0,
        "stale": 0,
        "not_found": 0,
        "unknown": 15 * 60,  # while it was stopped
    }


def failing_since(at: datetime, started: datetime, **states: str) -> AccountSnapshot:
    """``snapshot`` with integration 1 failing since ``started`` by Sendcloud's timestamp."""
    shot = snapshot(at, **states)
    record, _ = parse_integration(
        {"id": 1, "last_fetched_at": at.isoformat(), "started_failing_at": started.isoformat()}
    )
    one = Observation(1, ReadOutcome.OK, record, derive(record, at, 7200))
    return AccountSnapshot("acme", {**shot.integrations, 1: one}, 1, at)


def states_of(store: HistoryStore, end: datetime) -> list[tuple[str, datetime, datetime | None]]:
    store.flush()
    found = store.intervals("acme", 1, minutes(-1000), end)
    return [(i.state, i.since, i.until) for i in found]


def test_a_failing_interval_begins_when_sendcloud_says_it_began(tmp_path: Path) -> None:
    """A shop failing for 40 minutes when the monitor first reads it has failed for 40 minutes
    in its history too; but what the monitor recorded before is never rewritten."""
    path = tmp_path / "history.db"
    store = HistoryStore(path)
    store.start()
    store.record(failing_since(minutes(0), minutes(-40)), minutes(0))
    assert states_of(store, minutes(1)) == [("failing", minutes(-40), None)]
    # it recovers; later it fails again 3 minutes before a poll sees it
    store.record(snapshot(minutes(10), i1="healthy"), minutes(10))
    store.record(failing_since(minutes(20), minutes(17)), minutes(20))
    assert states_of(store, minutes(21))[1:] == [
        ("healthy", minutes(10), minutes(17)),
        ("failing", minutes(17), None),
    ]
    # unreadable for a while, then failing still since minute 17: one failing interval again
    store.record(snapshot(minutes(25), i1="unknown"), minutes(25))
    store.record(failing_since(minutes(30), minutes(17)), minutes(30))
    assert states_of(store, minutes(31))[2:] == [("failing", minutes(17), None)]
    store.close(minutes(40))
    # a restart: still failing since minute 17, the stop in between was failing too
    again = HistoryStore(path)
    again.start()
    again.record(failing_since(minutes(50), minutes(17)), minutes(50))
    assert states_of(again, minutes(51))[2:] == [("failing", minutes(17), None)]
    again.record(snapshot(minutes(60), i1="healthy"), minutes(60))
    again.close(minutes(70))
    # another restart: failing since before the last recorded healthy time: from the stop on
    third = HistoryStore(path)
    third.start()
    third.record(failing_since(minutes(80), minutes(65)), minutes(80))
    third.close(minutes(90))
    assert states_of(third, minutes(90))[3:] == [
        ("healthy", minutes(60), minutes(70)),
        ("failing", minutes(70), minutes(90)),
    ]
    figures = availability(
        third.intervals("acme", 1, minutes(-60), minutes(90)),
        minutes(-60),
        minutes(90),
        minutes(90),
    )
    assert figures.seconds["unknown"] == 20 * 60  # before the first failure only
    assert [(i.started, i.ended) for i in figures.incidents] == [
        (minutes(-40), minutes(10)),
        (minutes(17), minutes(60)),
        (minutes(70), minutes(90)),  # closed by the stop at 90
    ]


CRASHING_WRITER = """
import os, signal, sys
from tests.history.test_store import HistoryStore, minutes, snapshot
store = HistoryStore(__import__("pathlib").Path(sys.argv[1]))
assert store.claim() is None
store.start()
store.record(snapshot(minutes(0), i1="failing"), minutes(0))
assert store.flush()
store.record(snapshot(minutes(1), i1="failing"), minutes(1))
assert store.flush()
os.kill(os.getpid(), signal.SIGKILL)  # no close(): the process dies
"""


def test_after_a_crash_open_intervals_end_at_the_last_write(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, str(path)], cwd=ROOT, check=False, timeout=60
    )
    assert crashed.returncode == -signal.SIGKILL
    assert len(rows(path)) == 1
    # a new process starts on the same file
    restarted = HistoryStore(path)
    restarted.start()
    restarted.record(snapshot(minutes(30), i1="healthy"), minutes(30))
    restarted.close(minutes(31))
    found = restarted.intervals("acme", 1, minutes(0), minutes(31))
    assert [(i.state, i.since, i.until) for i in found] == [
        ("failing", minutes(0), minutes(1)),  # ends where the file stopped, not at the restart
        ("healthy", minutes(30), minutes(31)),
    ]


def test_a_file_replaced_while_the_daemon_writes_is_taken_up_as_found(
    tmp_path: Path, captured_logs: LogCapture
) -> None:
    """A backup put back while the daemon runs: the writer lets its own file go (its last
    writes were never in the backup) and writes to the file at the path from then on; what was
    open in the backup ends at its last write, as after a crash."""
    path = tmp_path / "history.db"
    store = HistoryStore(path)
    store.start()
    store.record(snapshot(minutes(0), i1="healthy"), minutes(0))
    assert store.flush()
    with (
        contextlib.closing(sqlite3.connect(path)) as source,
        contextlib.closing(sqlite3.connect(tmp_path / "backup.db")) as backup,
    ):
        source.backup(backup)
    store.record(snapshot(minutes(5), i1="failing"), minutes(5))  # not in the backup
    assert store.flush()
    os.replace(tmp_path / "backup.db", path)  # against the advice: the daemon runs
    until(lambda: bool(captured_logs.events("history_file_replaced")), "the replacement seen")
    store.record(snapshot(minutes(10), i1="failing"), minutes(10))
    assert store.flush()
    assert store.up
    store.close(minutes(11))
    assert rows(path) == [
        (1, "healthy", minutes(0).timestamp(), minutes(0).timestamp()),  # ends at its last write
        (1, "failing", minutes(10).timestamp(), minutes(11).timestamp()),
    ]


def test_the_schema_is_versioned_and_a_newer_file_is_refused(
    tmp_path: Path, recorded: Recorded, captured_logs: LogCapture
) -> None:
    path = tmp_path / "history.db"
    one_poll(path, minutes(0), minutes(1))
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    newer = HistoryStore(
        path, on_status=recorded.status.append, on_failure=recorded.failures.append
    )
    newer.start()
    newer.record(snapshot(minutes(2), i1="healthy"), minutes(2))
    until(lambda: recorded.status == [False], "the refusal")
    newer.close(minutes(3))
    [line] = captured_logs.events("history_write_failed")
    assert "newer" in str(line["error"])
    assert rows(path)[-1][2] == minutes(0).timestamp()  # nothing was changed


@pytest.mark.parametrize("fault", ["corrupt", "locked", "read_only"])
def test_a_broken_file_never_stops_anything_and_recovers(
    tmp_path: Path, fault: str, recorded: Recorded, captured_logs: LogCapture
) -> None:
    """One error line, up False and a failure count; the writer goes on trying, and the time
    it could not write is unknown once the file is usable again."""
    directory = tmp_path / "state"
    directory.mkdir()
    path = directory / "history.db"
    holder = None
    if fault == "corrupt":
        path.write_bytes(b"this is not a database" * 100)
    elif fault == "locked":
        schema = HistoryStore(path)  # a file with the schema
        schema.start()
        schema.record(snapshot(minutes(0), i2="healthy"), minutes(0))
        schema.close(minutes(0))
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # another writer holds it
    else:
        read_only(directory, True)  # a WAL database in it cannot even be opened
    store = HistoryStore(
        path, on_status=recorded.status.append, on_failure=recorded.failures.append
    )
    store.start()
    started = time.monotonic()
    store.record(snapshot(minutes(0), i1="healthy"), minutes(0))
    store.record(snapshot(minutes(1), i1="failing"), minutes(1))
    until(lambda: recorded.failures.count("write") >= 1, "the failure")
    assert time.monotonic() - started < 5  # nothing waits on it for long
    assert recorded.status[-1] is False
    store.record(snapshot(minutes(2), i1="failing"), minutes(2))
    until(lambda: recorded.failures.count("write") >= 2, "a second attempt")
    assert len(captured_logs.events("history_write_failed")) == 1  # one line per episode
    # the file becomes usable again
    if fault == "corrupt":
        path.unlink()
    elif holder is not None:
        holder.execute("ROLLBACK")
        holder.close()
    else:
        read_only(directory, False)
    store.record(snapshot(minutes(10), i1="healthy"), minutes(10))
    until(lambda: recorded.status[-1] is True, "the recovery")
    store.close(minutes(11))
    assert captured_logs.events("history_recovered")
    found = store.intervals("acme", 1, minutes(0), minutes(11))
    assert found[-1].since == minutes(10)
    assert all(i.since >= minutes(0) for i in found)
    covered = sum(((i.until or minutes(11)) - i.since).total_seconds() for i in found)
    assert covered <= 11 * 60  # the broken time is not claimed as any state


def test_alert_episodes_with_their_escalation_resolution_and_cause(store: HistoryStore) -> None:
    base = {
        "alert": "IntegrationFailing",
        "account": "acme",
        "integration_id": 7,
        "fingerprint": "f7",
    }
    cause = {"exception_type": "SSLError", "exception": "certificate expired"}
    # fired when the monitor saw it, 40 minutes after Sendcloud says it began
    started = {"starts_at": "2026-10-31T23:20:00Z"}
    store.episode({**base, **started, "kind": "fired", "status": "firing"}, minutes(0))
    store.episode({**base, "kind": "cause", "status": "firing", "cause": cause}, minutes(1))
    store.episode({**base, "kind": "escalated", "status": "firing"}, minutes(60))
    store.episode({**base, "kind": "resolved", "status": "resolved"}, minutes(90))
    store.record(snapshot(minutes(90), i7="healthy"), minutes(90))
    until(lambda: len(rows(store.path)) == 1, "the write")
    [episode] = store.episodes("acme", 7, minutes(0), minutes(100))
    assert episode == {
        "alert": "IntegrationFailing",
        "integration_id": 7,
        "started": "2026-10-31T23:20:00Z",
        "fired": "2026-11-01T00:00:00Z",
        "escalated": "2026-11-01T01:00:00Z",
        "resolved": "2026-11-01T01:30:00Z",
        "cause": cause,
    }


def test_retention_prunes_what_is_older(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "history.db", retention_days=1)
    store.start()
    store.record(snapshot(minutes(0), i1="healthy"), minutes(0))
    store.record(snapshot(minutes(1), i1="failing"), minutes(1))
    store.close(minutes(2))
    later = HistoryStore(tmp_path / "history.db", retention_days=1)
    later.start()
    later.record(snapshot(minutes(3 * 24 * 60), i1="healthy"), minutes(3 * 24 * 60))
    later.close(minutes(3 * 24 * 60 + 1))
    assert [r[2] for r in rows(tmp_path / "history.db")] == [minutes(3 * 24 * 60).timestamp()]


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB filesystem (tmpfs; needs root, as CI has)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI runs as root and can mount a tmpfs: {result.stderr}")
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_never_stops_anything_and_recovers(
    tiny_disk: Path, recorded: Recorded, captured_logs: LogCapture
) -> None:
    filler = tiny_disk / "filler"
    filler.write_bytes(b"\0" * 300 * 1024)  # most of the disk is taken by something else
    store = observed(tiny_disk / "history.db", recorded)
    store.start()
    many = {f"i{n}": "healthy" for n in range(1, 400)}
    flipped = {f"i{n}": "failing" for n in range(1, 400)}
    for minute in range(40):  # 400 transitions a poll: the file outgrows the disk
        store.record(
            snapshot(minutes(minute), **(flipped if minute % 2 else many)), minutes(minute)
        )
        if recorded.failures:
            break
    until(lambda: "write" in recorded.failures, "the disk to be full")
    assert recorded.status[-1] is False
    [line] = captured_logs.events("history_write_failed")
    assert "full" in str(line["error"])
    filler.unlink()  # space again
    store.record(snapshot(minutes(100), **many), minutes(100))
    until(lambda: recorded.status[-1] is True, "the recovery")
    store.close(minutes(101))
    found = store.intervals("acme", 1, minutes(0), minutes(101))
    assert found[-1].since == minutes(100)  # the full-disk time is unknown, not claimed


def changed(at: datetime, updated: datetime) -> AccountSnapshot:
    record, _ = parse_integration(
        {"id": 7, "last_fetched_at": at.isoformat(), "updated_at": updated.isoformat()}
    )
    observation = Observation(7, ReadOutcome.OK, record, derive(record, at, 7200))
    return AccountSnapshot("acme", {7: observation}, 1, at)


def test_configuration_changes_across_a_restart(tmp_path: Path, captured_logs: LogCapture) -> None:
    """A moved updated_at is a change on the timeline; the first one seen is none, an equal
    or older one is none, and a change made while the daemon was down is one after it."""
    path = tmp_path / "history.db"
    history = HistoryStore(path)
    history.start()
    history.record(changed(minutes(0), minutes(-600)), minutes(0))  # first seen: no change
    history.record(changed(minutes(1), minutes(-600)), minutes(1))
    history.record(changed(minutes(2), minutes(1.5)), minutes(2))  # changed
    history.record(changed(minutes(3), minutes(1)), minutes(3))  # older: not a change
    assert history.flush()
    history.close(minutes(4))
    assert [c["updated_at"] for c in history.changes("acme", 7, minutes(-999), minutes(9))] == [
        "2026-11-01T00:01:30Z"
    ]
    restarted = HistoryStore(path)
    restarted.start()
    restarted.record(changed(minutes(10), minutes(1)), minutes(10))  # as last written
    restarted.record(changed(minutes(11), minutes(8)), minutes(11))  # changed while down
    assert restarted.flush()
    found = restarted.changes("acme", 7, minutes(-999), minutes(99))
    restarted.close(minutes(12))
    assert found == [
        {
            "updated_at": "2026-11-01T00:01:30Z",
            "previous_updated_at": "2026-10-31T14:00:00Z",
            "detected": "2026-11-01T00:02:00Z",
        },
        {
            "updated_at": "2026-11-01T00:08:00Z",
            "previous_updated_at": "2026-11-01T00:01:00Z",
            "detected": "2026-11-01T00:11:00Z",
        },
    ]
    logged = captured_logs.events("integration_config_changed")
    assert [(e["integration_id"], e["updated_at"]) for e in logged] == [
        (7, "2026-11-01T00:01:30Z"),
        (7, "2026-11-01T00:08:00Z"),
    ]


def test_probes_and_inventories_come_back_after_a_restart(tmp_path: Path) -> None:
    from monitor.probes import Outcome, Result, ShopProbe

    path = tmp_path / "history.db"
    assert HistoryStore(path).probe_states() == {}  # no file yet: nothing, no error
    history = HistoryStore(path)
    history.start()
    probe = ShopProbe(
        "https://a:443",
        Outcome(Result.EXPIRED, minutes(5), minutes(-60), "ACME CA", "certificate has expired"),
        3,
        minutes(-115),
    )
    history.probe(probe)
    history.probe(ShopProbe("http://b:80", Outcome(Result.PLAINTEXT_OK, minutes(5))))
    history.inventory_seen("acme", {1: True, 2: False}, minutes(5))
    history.inventory_seen("acme", {1: True, 3: False}, minutes(6))
    assert history.flush()
    history.close(minutes(7))
    states = HistoryStore(path).probe_states()
    assert states["https://a:443"] == probe
    assert states["http://b:80"].result is Result.PLAINTEXT_OK
    assert HistoryStore(path).inventories() == {"acme": {1: True, 3: False}}


def test_a_file_of_the_previous_schema_is_migrated(tmp_path: Path) -> None:
    from monitor.history.store import MIGRATIONS, migrate

    path = tmp_path / "history.db"
    db = sqlite3.connect(path, isolation_level=None)
    for number in range(3):
        for statement in MIGRATIONS[number].split(";"):
            if statement.strip():
                db.execute(statement)
    db.execute("PRAGMA user_version = 3")
    db.execute("INSERT INTO intervals VALUES ('acme', 1, 'healthy', 1.0, NULL)")
    migrate(db)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(MIGRATIONS)
    assert db.execute("SELECT count(*) FROM intervals").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM changes").fetchone()[0] == 0
    db.close()
