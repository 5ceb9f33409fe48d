"""One versioned schema, written twice: for SQLite and for PostgreSQL. Version N means the
same tables on both, so a history can be copied from one to the other.

Versions 1 to 5 are the history file as it has always been (SQLite's ``PRAGMA user_version``
numbering is kept, so every existing file migrates forward); version 6 adds what several
replicas share: the alert episodes' identity (``origin``, ``starts_at``) and notification
bookkeeping, the **outbox** of alert events, the **fleet** state (accounts and integrations as
last written) and the **replicas**.

Times are Unix seconds (SQLite ``REAL``, PostgreSQL ``double precision``) on both engines: the
readers get the same rows from both, and the status page's spans need no conversion.

Each migration runs under a lock: SQLite's write lock (``BEGIN IMMEDIATE``, and the version is
checked again under it), PostgreSQL's ``pg_advisory_xact_lock`` taken before the version is
read (every step then runs in that one transaction; DDL is transactional there), so two
replicas starting together migrate once and neither fails.
"""

from __future__ import annotations

import sqlite3

from monitor.database.errors import SchemaError

SQLITE_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE intervals (
        account TEXT NOT NULL,
        integration_id INTEGER NOT NULL,
        state TEXT NOT NULL,
        since REAL NOT NULL,
        until REAL
    );
    CREATE INDEX intervals_by_integration ON intervals (account, integration_id, since);
    CREATE INDEX intervals_open ON intervals (until) WHERE until IS NULL;
    CREATE TABLE episodes (
        fingerprint TEXT NOT NULL,
        alert TEXT NOT NULL,
        account TEXT NOT NULL,
        integration_id INTEGER,
        fired REAL NOT NULL,
        escalated REAL,
        resolved REAL,
        cause TEXT
    );
    CREATE INDEX episodes_by_integration ON episodes (account, integration_id, fired);
    CREATE TABLE integrations (
        account TEXT NOT NULL,
        integration_id INTEGER NOT NULL,
        shop_name TEXT,
        integration_type TEXT,
        PRIMARY KEY (account, integration_id)
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value REAL NOT NULL);
    """,
    # 2: mutes, made with `integration-monitor mute` or POST /api/v1/mutes
    """
    CREATE TABLE mutes (
        id TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        integration_id INTEGER,
        integration_type TEXT,
        created REAL NOT NULL,
        until REAL NOT NULL,
        reason TEXT NOT NULL,
        author TEXT NOT NULL
    );
    CREATE INDEX mutes_by_until ON mutes (until);
    """,
    # 3: where each account's exception-log stream stands
    """
    CREATE TABLE stream_positions (
        account TEXT PRIMARY KEY,
        last_id INTEGER NOT NULL,
        last_time TEXT NOT NULL -- RFC 3339: the exact microsecond the stream compares with
    );
    """,
    # 4: when each episode's condition began by the API's own timestamps (started_failing_at
    # for IntegrationFailing), beside when the monitor fired it; older episodes: when fired
    """
    ALTER TABLE episodes ADD COLUMN started REAL;
    UPDATE episodes SET started = fired;
    """,
    # 5: configuration changes (updated_at moved), the last updated_at of each integration,
    # the shop probes' state and the inventory of unmonitored integrations, across restarts
    """
    CREATE TABLE changes (
        account TEXT NOT NULL,
        integration_id INTEGER NOT NULL,
        updated_at REAL NOT NULL,
        previous REAL NOT NULL,
        detected REAL NOT NULL
    );
    CREATE INDEX changes_by_integration ON changes (account, integration_id, updated_at);
    CREATE TABLE updates (
        account TEXT NOT NULL,
        integration_id INTEGER NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (account, integration_id)
    );
    CREATE TABLE probes (
        target TEXT PRIMARY KEY,
        result TEXT NOT NULL,
        at REAL NOT NULL,
        expires_at REAL,
        issuer TEXT,
        detail TEXT,
        failures INTEGER NOT NULL,
        failing_since REAL
    );
    CREATE TABLE inventory (
        account TEXT NOT NULL,
        integration_id INTEGER NOT NULL,
        monitored INTEGER NOT NULL,
        seen REAL NOT NULL,
        PRIMARY KEY (account, integration_id)
    );
    """,
    # 6: what replicas share: episode identity, the outbox, the fleet, the replicas
    """
    ALTER TABLE episodes ADD COLUMN origin REAL;
    ALTER TABLE episodes ADD COLUMN starts_at REAL;
    ALTER TABLE episodes ADD COLUMN last_notified REAL;
    ALTER TABLE episodes ADD COLUMN repeats INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX episodes_by_fingerprint ON episodes (fingerprint, resolved);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        episode_id INTEGER NOT NULL,
        kind TEXT NOT NULL,
        seq INTEGER NOT NULL,
        fingerprint TEXT NOT NULL,
        account TEXT NOT NULL,
        body TEXT NOT NULL,
        created REAL NOT NULL,
        producer TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        attempt_at REAL,
        attempt_by TEXT,
        sent REAL,
        sent_by TEXT,
        UNIQUE (episode_id, kind, seq)
    );
    CREATE INDEX outbox_pending ON outbox (id) WHERE sent IS NULL;
    CREATE TABLE fleet_accounts (
        account TEXT PRIMARY KEY,
        shard INTEGER,
        shards INTEGER,
        replica TEXT NOT NULL,
        written_at REAL NOT NULL,
        interval_seconds REAL NOT NULL,
        last_cycle_success REAL,
        api_error TEXT,
        auth_ok INTEGER NOT NULL
    );
    CREATE TABLE fleet_integrations (
        account TEXT NOT NULL,
        integration_id INTEGER NOT NULL,
        state TEXT NOT NULL,
        shop_name TEXT,
        shop_url TEXT,
        integration_type TEXT,
        started_failing_at REAL,
        last_fetched_at REAL,
        unreadable_since REAL,
        written_at REAL NOT NULL,
        PRIMARY KEY (account, integration_id)
    );
    CREATE TABLE replicas (
        replica TEXT PRIMARY KEY,
        shard INTEGER,
        shards INTEGER,
        host TEXT NOT NULL,
        version TEXT NOT NULL,
        started REAL NOT NULL,
        seen REAL NOT NULL
    );
    """,
)

POSTGRES_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE intervals (
        account text NOT NULL,
        integration_id bigint NOT NULL,
        state text NOT NULL,
        since double precision NOT NULL,
        until double precision
    );
    CREATE INDEX intervals_by_integration ON intervals (account, integration_id, since);
    -- one open interval per integration: two replicas writing the same transition insert once
    CREATE UNIQUE INDEX intervals_open ON intervals (account, integration_id) WHERE until IS NULL;
    CREATE TABLE episodes (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        fingerprint text NOT NULL,
        alert text NOT NULL,
        account text NOT NULL,
        integration_id bigint,
        fired double precision NOT NULL,
        escalated double precision,
        resolved double precision,
        cause text
    );
    CREATE INDEX episodes_by_integration ON episodes (account, integration_id, fired);
    CREATE TABLE integrations (
        account text NOT NULL,
        integration_id bigint NOT NULL,
        shop_name text,
        integration_type text,
        PRIMARY KEY (account, integration_id)
    );
    CREATE TABLE meta (key text PRIMARY KEY, value double precision NOT NULL);
    """,
    """
    CREATE TABLE mutes (
        id text PRIMARY KEY,
        account text NOT NULL,
        integration_id bigint,
        integration_type text,
        created double precision NOT NULL,
        until double precision NOT NULL,
        reason text NOT NULL,
        author text NOT NULL
    );
    CREATE INDEX mutes_by_until ON mutes (until);
    """,
    """
    CREATE TABLE stream_positions (
        account text PRIMARY KEY,
        last_id bigint NOT NULL,
        last_time text NOT NULL
    );
    """,
    """
    ALTER TABLE episodes ADD COLUMN started double precision;
    UPDATE episodes SET started = fired;
    """,
    """
    CREATE TABLE changes (
        account text NOT NULL,
        integration_id bigint NOT NULL,
        updated_at double precision NOT NULL,
        previous double precision NOT NULL,
        detected double precision NOT NULL
    );
    CREATE INDEX changes_by_integration ON changes (account, integration_id, updated_at);
    CREATE TABLE updates (
        account text NOT NULL,
        integration_id bigint NOT NULL,
        updated_at double precision NOT NULL,
        PRIMARY KEY (account, integration_id)
    );
    CREATE TABLE probes (
        target text PRIMARY KEY,
        result text NOT NULL,
        at double precision NOT NULL,
        expires_at double precision,
        issuer text,
        detail text,
        failures bigint NOT NULL,
        failing_since double precision
    );
    CREATE TABLE inventory (
        account text NOT NULL,
        integration_id bigint NOT NULL,
        monitored bigint NOT NULL,
        seen double precision NOT NULL,
        PRIMARY KEY (account, integration_id)
    );
    """,
    """
    ALTER TABLE episodes ADD COLUMN origin double precision;
    ALTER TABLE episodes ADD COLUMN starts_at double precision;
    ALTER TABLE episodes ADD COLUMN last_notified double precision;
    ALTER TABLE episodes ADD COLUMN repeats integer NOT NULL DEFAULT 0;
    CREATE INDEX episodes_by_fingerprint ON episodes (fingerprint, id);
    -- at most one open episode per alert: the claim's second guard after its lock
    CREATE UNIQUE INDEX episodes_open ON episodes (fingerprint) WHERE resolved IS NULL;
    CREATE TABLE outbox (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        episode_id bigint NOT NULL REFERENCES episodes (id) ON DELETE CASCADE,
        kind text NOT NULL,
        seq integer NOT NULL,
        fingerprint text NOT NULL,
        account text NOT NULL,
        body text NOT NULL,
        created double precision NOT NULL,
        producer text NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        attempt_at double precision,
        attempt_by text,
        sent double precision,
        sent_by text,
        UNIQUE (episode_id, kind, seq)
    );
    CREATE INDEX outbox_pending ON outbox (id) WHERE sent IS NULL;
    CREATE TABLE fleet_accounts (
        account text PRIMARY KEY,
        shard integer,
        shards integer,
        replica text NOT NULL,
        written_at double precision NOT NULL,
        interval_seconds double precision NOT NULL,
        last_cycle_success double precision,
        api_error text,
        auth_ok boolean NOT NULL
    );
    CREATE TABLE fleet_integrations (
        account text NOT NULL,
        integration_id bigint NOT NULL,
        state text NOT NULL,
        shop_name text,
        shop_url text,
        integration_type text,
        started_failing_at double precision,
        last_fetched_at double precision,
        unreadable_since double precision,
        written_at double precision NOT NULL,
        PRIMARY KEY (account, integration_id)
    );
    CREATE TABLE replicas (
        replica text PRIMARY KEY,
        shard integer,
        shards integer,
        host text NOT NULL,
        version text NOT NULL,
        started double precision NOT NULL,
        seen double precision NOT NULL
    );
    """,
)
SCHEMA_VERSION = len(SQLITE_MIGRATIONS)
assert len(POSTGRES_MIGRATIONS) == SCHEMA_VERSION

#: PostgreSQL: the version table, created (if missing) under the migration lock.
POSTGRES_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL, applied double "
    "precision NOT NULL DEFAULT extract(epoch FROM now()))"
)
#: The advisory lock keys of this application: (class, object) pairs of pg_advisory_lock's
#: two-int form, so they cannot collide with the single bigint keys other software uses.
LOCK_CLASS = 0x5C10  # "sendcloud integration monitor"
MIGRATION_LOCK = (LOCK_CLASS, 1)
NOTIFIER_LOCK = (LOCK_CLASS, 2)
#: the claims' locks: this class with ``hashtext(fingerprint)``, one lock per alert
CLAIM_LOCK_CLASS = LOCK_CLASS + 1


def newer(version: int, where: str) -> SchemaError:
    return SchemaError(
        f"{where} has schema version {version}, newer than this monitor's {SCHEMA_VERSION}: "
        "upgrade the monitor (every replica on one database runs the same version)"
    )


def statements(script: str) -> list[str]:
    """The statements of one migration step (none of them contains a semicolon)."""
    return [s.strip() for s in script.split(";") if s.strip() and not _comment_only(s)]


def _comment_only(statement: str) -> bool:
    return all(line.strip().startswith("--") or not line.strip() for line in statement.split("\n"))


def migrate_sqlite(db: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring a SQLite file to ``target``; returns the version it had. ``db`` must be in
    autocommit mode (``isolation_level=None``). Each step checks the version again under the
    write lock, so the daemon's writer and a CLI can both migrate."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise newer(version, "the history file")
    for number in range(version, target):
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("PRAGMA user_version").fetchone()[0] == number:
                for statement in statements(SQLITE_MIGRATIONS[number]):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number + 1}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return version
