"""The notifier role: one holder at a time; it moves when the holder's process dies or its
connection does, within ``failover_seconds``; and a holder cut off from the database stops
counting itself the notifier before anyone else can take over."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

from monitor.database.role import NotifierRole, SoleNotifier
from tests.conftest import ROOT
from tests.postgres import Cluster, Proxy

FAILOVER = 6.0  # tight enough for a short test, loose enough for a loaded machine

HOLDER = """
import asyncio, sys
from monitor.database.role import NotifierRole

async def main():
    role = NotifierRole(sys.argv[1], failover_seconds=float(sys.argv[2]))
    while True:
        if await role.check():
            print("held", flush=True)
        await asyncio.sleep(role.check_seconds)

asyncio.run(main())
"""


async def until_held(role: NotifierRole, limit: float) -> float:
    """Seconds until ``role`` takes the role, checking as its loop does; fails after ``limit``."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if await role.check():
            return time.monotonic() - started
        await asyncio.sleep(role.check_seconds)
    raise AssertionError(f"the role was not taken within {limit} s")


async def test_one_holder_at_a_time_and_closing_its_connection_moves_the_role(
    postgres_url: str,
) -> None:
    changes: list[tuple[str, bool]] = []
    a = NotifierRole(
        postgres_url, failover_seconds=FAILOVER, on_change=lambda h: changes.append(("a", h))
    )
    b = NotifierRole(
        postgres_url, failover_seconds=FAILOVER, on_change=lambda h: changes.append(("b", h))
    )
    try:
        assert await a.check()
        assert not await b.check()
        assert await a.check()  # kept
        assert (a.held, b.held) == (True, False)
        assert a.token is not None
        await a.stop()  # a clean shutdown gives it up at once
        assert not a.held
        # the server ends a's session a moment later: b has it at its next check or so
        assert await until_held(b, FAILOVER) <= b.check_seconds + 0.5
        assert changes == [("a", True), ("a", False), ("b", True)]
    finally:
        await a.stop()
        await b.stop()


async def test_a_killed_holders_role_moves_within_the_failover(postgres_url: str) -> None:
    holder = subprocess.Popen(  # noqa: ASYNC220 (started once, read line by line)
        [sys.executable, "-c", HOLDER, postgres_url, str(FAILOVER)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    successor = NotifierRole(postgres_url, failover_seconds=FAILOVER)
    try:
        assert holder.stdout is not None
        while holder.stdout.readline().strip() != "held":  # (its log lines come first)
            assert holder.poll() is None
        assert not await successor.check()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(5)
        assert await until_held(successor, FAILOVER + 1.0) <= FAILOVER
    finally:
        holder.kill()
        holder.wait(5)
        await successor.stop()


async def test_a_holder_cut_off_from_the_database_gives_way_within_the_failover(
    postgres: Cluster, postgres_url: str
) -> None:
    """A partition: the holder's connection stays open but nothing moves. The holder's next
    check fails and it stops counting itself the notifier; the server ends its silent session
    and another replica takes the role within failover_seconds of the holder's last check."""
    proxy = Proxy(postgres.port)
    holder = NotifierRole(proxy.url(postgres_url.rsplit("/", 1)[1]), failover_seconds=FAILOVER)
    successor = NotifierRole(postgres_url, failover_seconds=FAILOVER)
    try:
        assert await holder.check()
        last_check = time.monotonic()
        proxy.freeze()
        assert not await successor.check()
        assert not await holder.check()  # its round trip did not come back in time
        assert not holder.held
        await until_held(successor, FAILOVER + 2.0)
        assert time.monotonic() - last_check <= FAILOVER + 1.0
    finally:
        proxy.close()
        await holder.stop()
        await successor.stop()


async def test_the_holder_never_counts_itself_the_notifier_past_its_lease(
    postgres_url: str,
) -> None:
    """Without a check (its loop starved), the role is held only until the lease ends: the
    moment after which the server may end its session and give the role to another."""
    now = [0.0]
    role = NotifierRole(postgres_url, failover_seconds=FAILOVER, monotonic=lambda: now[0])
    try:
        assert await role.check()
        now[0] = role.lease_seconds - 0.01
        assert role.held
        now[0] = role.lease_seconds
        assert not role.held
    finally:
        await role.stop()


async def test_one_process_is_always_the_notifier() -> None:
    sole = SoleNotifier()
    assert await sole.check()
    assert sole.held
