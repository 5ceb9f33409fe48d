"""Fixtures of the store's tests: a PostgreSQL cluster per test session (per xdist worker), a
database per test, and each store test run against both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from monitor.database.backend import Backend
from tests.postgres import Cluster, running_cluster


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    """This session's cluster (skipped without PostgreSQL, a failure in CI)."""
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres: Cluster) -> str:
    """A fresh, empty database of its own, as the URL the monitor would be given."""
    return postgres.create_database()


@pytest.fixture
def own_postgres() -> Iterator[Cluster]:
    """A cluster of this test's own, for tests that stop or freeze the server."""
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """The store, opened (migrated), on each backend in turn."""
    store: Backend
    if request.param == "sqlite":
        from monitor.database.sqlite import SqliteBackend

        store = SqliteBackend(tmp_path / "history.sqlite")
    else:
        from monitor.database.postgres import PostgresBackend

        store = PostgresBackend(request.getfixturevalue("postgres_url"))
    await store.open()
    try:
        yield store
    finally:
        await store.close()
