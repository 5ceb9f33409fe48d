"""The PostgreSQL backend when the database fails: a server that stops gives a clear error at once
and the store recovers by itself when it is back; a server that stops answering (a partition)
gives up within the timeout, never later; and no error, repr or log line shows the password."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import quote

import pytest

from monitor.database.backend import Batch, Transition
from monitor.database.errors import DatabaseError, DatabaseUnavailable
from monitor.database.postgres import PostgresBackend
from monitor.database.role import NotifierRole
from monitor.database.url import DatabaseURL
from tests.conftest import LogCapture
from tests.postgres import PASSWORD, Cluster, Proxy

NOW = 1_800_000_000.0
SECRETS = (PASSWORD, quote(PASSWORD, safe=""), "s3cret")


def batch(n: int) -> Batch:
    at = NOW + 60 * n
    return Batch(at, [Transition("acme", 1, "healthy" if n % 2 else "failing", at)])


def assert_secret_free(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"the password shows in: {text}"


async def test_a_stopped_database_gives_a_clear_error_and_the_store_recovers(
    own_postgres: Cluster, captured_logs: LogCapture
) -> None:
    store = PostgresBackend(own_postgres.create_database(), timeout=2.0)
    await store.open()
    try:
        await store.write(batch(0))
        own_postgres.stop("fast")
        errors = []
        for n in (1, 2):  # the connection that was cut, then no server at all
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable) as caught:
                await store.write(batch(n))
            assert time.monotonic() - started < 2.0 + 1.5
            errors.append(str(caught.value))
        assert all(e.startswith("writing the history: ") for e in errors)
        assert "Connection refused" in errors[1]  # it says why
        await asyncio.sleep(12)  # longer than the pool keeps retrying a connection by itself
        own_postgres.start()
        for n in range(3, 10):  # the first call may meet a connection of before
            try:
                await store.write(batch(n))
                break
            except DatabaseUnavailable:
                continue
        else:
            raise AssertionError("the store did not recover")
        spans = await store.intervals("acme", 1, 0, NOW + 3600)
        assert spans[0] == ("failing", NOW, NOW + 60 * n)
        assert_secret_free(*errors, captured_logs.text)
    finally:
        await store.close()


async def test_a_database_that_stops_answering_gives_up_within_the_timeout(
    postgres: Cluster, postgres_url: str, captured_logs: LogCapture
) -> None:
    proxy = Proxy(postgres.port)
    store = PostgresBackend(proxy.url(postgres_url.rsplit("/", 1)[1]), timeout=1.5)
    try:
        await store.open()
        await store.write(batch(0))
        proxy.freeze()
        for what in (lambda: store.write(batch(1)), lambda: store.account_spans("acme", 0, NOW)):
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable, match=r"within 1\.(5|125) s") as caught:
                await what()
            assert time.monotonic() - started < 1.5 + 1.2
            assert_secret_free(str(caught.value))
        proxy.thaw()
        await store.write(batch(3))  # the frozen connection was closed; a new one works
        assert await store.intervals("acme", 1, 0, NOW + 3600) == [
            ("failing", NOW, NOW + 180),
            ("healthy", NOW + 180, None),
        ]
        assert_secret_free(captured_logs.text)
    finally:
        await store.close()
        proxy.close()


async def test_the_password_shows_in_no_error_repr_or_log(
    postgres: Cluster, postgres_url: str, captured_logs: LogCapture
) -> None:
    database = postgres_url.rsplit("/", 1)[1]
    cases = {
        "wrong password": postgres.url(database, password=PASSWORD + "x"),
        "refused": postgres.url(database, port=1),
        "no such database": postgres.url("nothing_here"),
        "bad parameter": postgres_url + "?sslmode=sometimes",
    }
    messages = {}
    for case, url in cases.items():
        store = PostgresBackend(url, timeout=2.0)
        with pytest.raises(DatabaseError) as caught:
            await store.open()
        await store.close()
        messages[case] = str(caught.value)
        assert_secret_free(messages[case], repr(caught.value), repr(store), str(store.url))
    assert "password authentication failed" in messages["wrong password"]
    assert "nothing_here" in messages["no such database"]
    # what libpq echoes ("unexpected spaces found in <the password>") when a URL is handed
    # to it: here the URL is parsed first, and each part goes to the driver on its own
    raw = f"postgresql://monitor:{PASSWORD}@127.0.0.1:{postgres.port}/{database}"
    with pytest.raises(ValueError, match="database URL") as refused:
        PostgresBackend(raw)
    spaced = f"postgresql://monitor:s3cret word@127.0.0.1:{postgres.port}/{database}"
    store = PostgresBackend(spaced, timeout=2.0)
    with pytest.raises(DatabaseError, match="password authentication failed") as wrong:
        await store.open()
    await store.close()
    assert_secret_free(str(refused.value), str(wrong.value), repr(DatabaseURL(spaced)))
    role = NotifierRole(postgres_url)
    assert_secret_free(repr(role), repr(PostgresBackend(postgres_url)))
    assert_secret_free(captured_logs.text)
