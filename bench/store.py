"""The store's access layer, measured: this project's thin layer over the two drivers (sqlite3,
psycopg 3 async) against SQLAlchemy Core on the same drivers, on both engines, in one run.

- **write**: CPU of one steady history transaction — 500 transitions (each ends an open
  interval and opens another) in a table of 10 000 integrations with a month of history;
- **read**: CPU of reading one account's 30-day spans (what the status page's strips need):
  2 000 integrations, a tenth of them failing an hour a day;
- **import**: CPU of importing the layer in a fresh interpreter that has imported what the
  daemon imports anyway (the alerting, the notifications, structlog);
- **RSS**: resident memory of such a process after importing the layer, opening the store and
  doing one write and one read (the benchmark's own harness is the same in every row: compare
  the rows).

SQLAlchemy is measured two ways: idiomatic Core (``update()``/``insert()`` constructs run as
executemany; PostgreSQL's ``insert().on_conflict_do_nothing()``), and ``text()`` with exactly
the thin layer's statements (what the library itself costs on top of the driver). With
SQLAlchemy not installed, only the thin layer is measured. PostgreSQL is a cluster this script
starts on a free loopback port (Debian's ``postgresql``), or ``--url``.

    python bench/store.py              # the figures of the decision (docs/architecture.md)
    python bench/store.py --quick      # small, to prove the benchmark still works
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import random
import resource
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor.database.backend import Batch, Transition, rounds  # noqa: E402
from monitor.database.postgres import PostgresBackend  # noqa: E402
from monitor.database.sqlite import SqliteBackend  # noqa: E402

DAY = 86400.0
NOW = 1_800_000_000.0
HAVE_SQLALCHEMY = importlib.util.find_spec("sqlalchemy") is not None


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Sizes:
    def __init__(self, quick: bool) -> None:
        self.integrations = 1000 if quick else 10_000  # the written table
        self.changes = 100 if quick else 500  # transitions per write
        self.writes = 5 if quick else 40
        self.account = 300 if quick else 2000  # integrations of the account read
        self.reads = 5 if quick else 30


# -- data ----------------------------------------------------------------------------------------


def history_rows(sizes: Sizes) -> list[tuple[str, int, str, float, float | None]]:
    """A month of history: every integration healthy, a tenth failing an hour a day."""
    rng = random.Random(7)
    rows: list[tuple[str, int, str, float, float | None]] = []
    for account, count in (("big", sizes.integrations), ("shop", sizes.account)):
        for integration_id in range(count):
            start = NOW - 30 * DAY
            if integration_id % 10 == 0:
                for day in range(30):
                    fail = NOW - (30 - day) * DAY + rng.uniform(0, DAY - 3600)
                    rows.append((account, integration_id, "healthy", start, fail))
                    rows.append((account, integration_id, "failing", fail, fail + 3600))
                    start = fail + 3600
            rows.append((account, integration_id, "healthy", start, None))
    return rows


def batches(sizes: Sizes) -> list[Batch]:
    """Steady writes: each flips ``changes`` integrations of the big account."""
    found = []
    state = dict.fromkeys(range(sizes.integrations), "healthy")
    for n in range(sizes.writes + 1):  # one more: the warm-up
        at = NOW + 60 * (n + 1)
        ids = [(n * sizes.changes + i) % sizes.integrations for i in range(sizes.changes)]
        transitions = []
        for integration_id in ids:
            state[integration_id] = "failing" if state[integration_id] == "healthy" else "healthy"
            transitions.append(Transition("big", integration_id, state[integration_id], at))
        found.append(Batch(at=at, transitions=transitions))
    return found


# -- the thin layer ------------------------------------------------------------------------------


class Thin:
    name = "thin layer"

    def __init__(self, engine: str, target: str) -> None:
        self.store: SqliteBackend | PostgresBackend = (
            SqliteBackend(Path(target)) if engine == "sqlite" else PostgresBackend(target)
        )

    async def open(self) -> None:
        await self.store.open()

    async def write(self, batch: Batch) -> None:
        await self.store.write(batch)

    async def read(self) -> int:
        spans = await self.store.account_spans("shop", NOW - 30 * DAY, NOW)
        return sum(len(s) for s in spans.values())

    async def close(self) -> None:
        await self.store.close()


# -- SQLAlchemy Core -----------------------------------------------------------------------------


class Alchemy:
    """The same operations through SQLAlchemy Core (async engine for both engines, as the
    daemon would need: aiosqlite is not a dependency, so SQLite runs the sync engine in a
    thread, as the thin layer does)."""

    def __init__(self, engine: str, target: str, same_sql: bool) -> None:
        self.engine_name = engine
        self.target = target
        self.same_sql = same_sql
        self.name = "SQLAlchemy text()" if same_sql else "SQLAlchemy Core"

    async def open(self) -> None:
        import sqlalchemy as sa

        self.sa = sa
        meta = sa.MetaData()
        self.intervals = sa.Table(
            "intervals",
            meta,
            sa.Column("account", sa.Text),
            sa.Column("integration_id", sa.BigInteger),
            sa.Column("state", sa.Text),
            sa.Column("since", sa.Float),
            sa.Column("until", sa.Float),
        )
        if self.engine_name == "sqlite":
            self.engine = sa.create_engine(f"sqlite:///{self.target}")
        else:
            from sqlalchemy.ext.asyncio import create_async_engine

            self.async_engine = create_async_engine(
                self.target.replace("postgresql://", "postgresql+psycopg://"), pool_size=4
            )
        self._statements()

    def _statements(self) -> None:
        sa, t = self.sa, self.intervals
        # (bindparam names may not be column names in an insert() or update())
        account, ident = sa.bindparam("b_account"), sa.bindparam("b_id")
        state, at = sa.bindparam("b_state"), sa.bindparam("b_at")
        self.close_stmt = (
            sa.update(t)
            .where(
                t.c.account == account,
                t.c.integration_id == ident,
                t.c.until.is_(None),
                t.c.state != state,
                t.c.since < at,
            )
            .values(until=at)
        )
        if self.engine_name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert

            self.open_stmt: Any = (
                insert(t)
                .values(account=account, integration_id=ident, state=state, since=at)
                .on_conflict_do_nothing(
                    index_elements=["account", "integration_id"], index_where=t.c.until.is_(None)
                )
            )
        else:
            still_open = sa.exists().where(
                t.c.account == account, t.c.integration_id == ident, t.c.until.is_(None)
            )
            self.open_stmt = sa.insert(t).from_select(
                ["account", "integration_id", "state", "since"],
                sa.select(account, ident, state, at).where(~still_open),
            )
        self.read_stmt = (
            sa.select(t.c.integration_id, t.c.state, t.c.since, t.c.until)
            .where(t.c.account == sa.bindparam("a"), t.c.since < sa.bindparam("u"))
            .where(sa.or_(t.c.until.is_(None), t.c.until > sa.bindparam("s")))
            .order_by(t.c.integration_id, t.c.since)
        )
        if self.same_sql:
            from monitor.database import postgres

            arrays = "%s::text[], %s::bigint[], %s::text[], %s::float8[]"
            assert arrays in postgres._TRANSITIONS
            self.unnest = sa.text(
                postgres._TRANSITIONS.replace(
                    arrays,
                    "CAST(:a AS text[]), CAST(:i AS bigint[]), CAST(:s AS text[]), "
                    "CAST(:t AS float8[])",
                )
            )
            self.sqlite_close = sa.text(
                "UPDATE intervals SET until = :b_at WHERE account = :b_account AND "
                "integration_id = :b_id AND until IS NULL AND state <> :b_state AND since < :b_at"
            )
            self.sqlite_open = sa.text(
                "INSERT INTO intervals SELECT :b_account, :b_id, :b_state, :b_at, NULL "
                "WHERE NOT EXISTS (SELECT 1 FROM intervals WHERE account = :b_account AND "
                "integration_id = :b_id AND until IS NULL)"
            )
            self.read_stmt = sa.text(
                "SELECT integration_id, state, since, until FROM intervals WHERE account = :a "
                "AND since < :u AND (until IS NULL OR until > :s) ORDER BY integration_id, since"
            )

    async def write(self, batch: Batch) -> None:
        for round_ in rounds(batch.transitions):
            params = [
                {"b_account": a, "b_id": i, "b_state": s, "b_at": at} for a, i, s, at in round_
            ]
            if self.engine_name == "sqlite":
                await asyncio.to_thread(self._sqlite_write, params)
            elif self.same_sql:
                cols = list(zip(*round_, strict=True))
                async with self.async_engine.begin() as conn:
                    await conn.execute(
                        self.unnest,
                        dict(zip("aist", map(list, cols), strict=True)),
                    )
            else:
                async with self.async_engine.begin() as conn:
                    await conn.execute(self.close_stmt, params)
                    await conn.execute(self.open_stmt, params)

    def _sqlite_write(self, params: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            if self.same_sql:
                conn.execute(self.sqlite_close, params)
                conn.execute(self.sqlite_open, params)
            else:
                conn.execute(self.close_stmt, params)
                conn.execute(self.open_stmt, params)

    async def read(self) -> int:
        args = {"a": "shop", "u": NOW, "s": NOW - 30 * DAY}
        if self.engine_name == "sqlite":
            rows = await asyncio.to_thread(self._sqlite_read, args)
        else:
            async with self.async_engine.connect() as conn:
                rows = (await conn.execute(self.read_stmt, args)).all()
        found: dict[int, list[tuple[str, float, float | None]]] = {}
        for integration_id, state, since, until in rows:
            found.setdefault(integration_id, []).append((state, since, until))
        return sum(len(s) for s in found.values())

    def _sqlite_read(self, args: dict[str, Any]) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(self.read_stmt, args).all())

    async def close(self) -> None:
        if self.engine_name == "sqlite":
            self.engine.dispose()
        else:
            await self.async_engine.dispose()


# -- measuring -----------------------------------------------------------------------------------

Layer = Thin | Alchemy


def make(layer: str, engine: str, target: str) -> Layer:
    if layer == "thin":
        return Thin(engine, target)
    return Alchemy(engine, target, same_sql=layer == "text")


async def prepare(engine: str, target: str, sizes: Sizes) -> None:
    """A store with the month of history (written through the thin layer, migrated)."""
    store = Thin(engine, target).store
    await store.open()
    rows = history_rows(sizes)
    if isinstance(store, SqliteBackend):
        import sqlite3

        db = sqlite3.connect(target)
        with db:
            db.executemany("INSERT INTO intervals VALUES (?, ?, ?, ?, ?)", rows)
        db.close()
    else:
        import psycopg

        async with await psycopg.AsyncConnection.connect(target) as conn:
            async with (
                conn.cursor() as cur,
                cur.copy(
                    "COPY intervals (account, integration_id, state, since, until) FROM STDIN"
                ) as copy,
            ):
                for row in rows:
                    await copy.write_row(row)
            await conn.execute("ANALYZE intervals")
    await store.close()


async def measure(layer: Layer, sizes: Sizes) -> tuple[float, float, int]:
    """(CPU per write, CPU per read, rows read) in this process."""
    await layer.open()
    try:
        writes = batches(sizes)
        await layer.write(writes[0])  # warm: caches, prepared statements, the pool
        await layer.read()
        started = cpu()
        for batch in writes[1:]:
            await layer.write(batch)
        write = (cpu() - started) / sizes.writes
        started = cpu()
        for _ in range(sizes.reads):
            count = await layer.read()
        read = (cpu() - started) / sizes.reads
        return write, read, count
    finally:
        await layer.close()


IMPORTS = {
    ("thin", "sqlite"): "import monitor.database.sqlite",
    ("thin", "postgresql"): "import monitor.database.postgres",
    ("core", "sqlite"): "import monitor.database.sqlite, sqlalchemy",
    ("core", "postgresql"): (
        "import monitor.database.postgres, sqlalchemy, sqlalchemy.ext.asyncio, "
        "sqlalchemy.dialects.postgresql.psycopg"
    ),
    ("alembic", "sqlite"): "import monitor.database.sqlite, sqlalchemy, alembic.command",
    ("alembic", "postgresql"): (
        "import monitor.database.postgres, sqlalchemy, sqlalchemy.ext.asyncio, "
        "sqlalchemy.dialects.postgresql.psycopg, alembic.command"
    ),
}

#: what the daemon has imported anyway (the store's records use them): not counted
BASE = "import monitor.notify.quiet, monitor.alerting.rules, structlog"

CHILD = """
import resource, sys, time
sys.path.insert(0, {root!r})
def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime
{base}
start = cpu()
{imports}
imported = cpu() - start
{work}
rss = int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()
print(imported, rss)
"""

WORK = """
import asyncio
from bench.store import Sizes, make
async def run():
    layer = make({layer!r}, {engine!r}, {target!r})
    from bench.store import batches
    await layer.open()
    await layer.write(batches(Sizes(True))[0])
    await layer.read()
    await layer.close()
asyncio.run(run())
"""


def child(imports: str, work: str = "") -> tuple[float, int]:
    """(import CPU, RSS) of a fresh interpreter that imports ``imports`` and runs ``work``."""
    code = CHILD.format(root=str(ROOT), base=BASE, imports=imports or "pass", work=work)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.split()
    return float(out[0]), int(out[1])


def best(runs: int, call: Callable[[], tuple[float, int]]) -> tuple[float, int]:
    results = [call() for _ in range(runs)]
    return min(r[0] for r in results), min(r[1] for r in results)


def start_postgres() -> tuple[str, Callable[[], None]]:
    from tests.postgres import Cluster

    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not bins:
        raise SystemExit("PostgreSQL is not installed: apt-get install postgresql, or --url")
    cluster = Cluster(bins[-1].parent)
    cluster.start()
    return cluster.create_database(), cluster.remove


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to prove it runs")
    parser.add_argument("--url", help="an empty PostgreSQL database (else one is started)")
    args = parser.parse_args()
    sizes = Sizes(args.quick)
    layers = ["thin", "core", "text"] if HAVE_SQLALCHEMY else ["thin"]
    stop: Callable[[], None] = lambda: None  # noqa: E731
    url = args.url
    if url is None:
        url, stop = start_postgres()
    results: dict[tuple[str, str], dict[str, Any]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for engine in ("sqlite", "postgresql"):
                for layer in layers:
                    target = str(Path(tmp) / f"{layer}.sqlite") if engine == "sqlite" else url
                    if engine == "postgresql":
                        _reset(url)
                    asyncio.run(prepare(engine, target, sizes))
                    write, read, count = asyncio.run(measure(make(layer, engine, target), sizes))
                    kind = "core" if layer == "text" else layer
                    imported, _ = best(3, lambda k=kind, e=engine: child(IMPORTS[(k, e)]))
                    work = WORK.format(layer=layer, engine=engine, target=target)
                    _, rss = best(2, lambda w=work, k=kind, e=engine: child(IMPORTS[(k, e)], w))
                    results[(engine, layer)] = {
                        "write": write,
                        "read": read,
                        "rows": count,
                        "import": imported,
                        "rss": rss,
                    }
            base_import, base_rss = best(3, lambda: child(""))
            alembic = {}
            if HAVE_SQLALCHEMY and importlib.util.find_spec("alembic") is not None:
                for engine in ("sqlite", "postgresql"):
                    alembic[engine] = best(3, lambda e=engine: child(IMPORTS[("alembic", e)]))[0]
    finally:
        stop()
    print_table(results, sizes, base_import, base_rss, alembic)
    return 0


def _reset(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


def print_table(
    results: dict[tuple[str, str], dict[str, Any]],
    sizes: Sizes,
    base_import: float,
    base_rss: int,
    alembic: dict[str, float],
) -> None:
    print(
        f"store access layers: write = {sizes.changes} transitions in one transaction "
        f"({sizes.integrations} integrations); read = one account's 30-day spans "
        f"({sizes.account} integrations); import CPU beyond a process with the daemon's own "
        f"modules; RSS of such a process after one write and one read ({base_rss / 2**20:.1f} "
        "MiB without the store)"
    )
    header = [
        "engine",
        "layer",
        "CPU / write",
        "x thin",
        "CPU / read",
        "x thin",
        "rows read",
        "import CPU",
        "RSS",
    ]
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for (engine, layer), r in results.items():
        thin = results[(engine, "thin")]
        name = {"thin": "thin layer", "core": "SQLAlchemy Core", "text": "SQLAlchemy text()"}
        print(
            " | ".join(
                [
                    engine,
                    name[layer],
                    f"{r['write'] * 1000:.2f} ms",
                    f"{r['write'] / thin['write']:.2f}",
                    f"{r['read'] * 1000:.2f} ms",
                    f"{r['read'] / thin['read']:.2f}",
                    str(r["rows"]),
                    f"{(r['import'] - base_import) * 1000:.0f} ms",
                    f"{r['rss'] / 2**20:.1f} MiB",
                ]
            )
        )
    for engine, imported in alembic.items():
        print(f"with Alembic ({engine}): import CPU {(imported - base_import) * 1000:.0f} ms")


if __name__ == "__main__":
    raise SystemExit(main())
