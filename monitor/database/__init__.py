"""The store behind one interface, with two backends: SQLite for one process (the history file,
as it has always been) and PostgreSQL for a fleet of replicas that share one database.

- ``url``: the ``postgresql://`` URL, parsed once; its password never shown;
- ``errors``: what the store raises;
- ``schema``: the one versioned schema, for both engines, and its migrations under a lock;
- ``claims``: pure: which alert events are sent, once for the fleet (episodes and claims);
- ``fleet``: pure: the fleet's current state as stored, and what a replica writes of it;
- ``backend``: the interface (:class:`Backend`) and the records that cross it;
- ``sqlite``: the SQLite backend (its I/O in threads);
- ``postgres``: the PostgreSQL backend (psycopg's async pool, every call bounded);
- ``role``: the notifier role, one replica at a time (an advisory lock on a connection of
  its own).

May import ``monitor.alerting`` (the alert events and their fingerprints),
``monitor.notify`` (the mute) and the base modules.
"""

from monitor.database.backend import (
    Backend,
    Batch,
    Claim,
    FiringAlert,
    Fleet,
    OutboxItem,
    Span,
    Transition,
)
from monitor.database.claims import Episode, OutboxEvent, decide
from monitor.database.errors import DatabaseError, DatabaseUnavailable, SchemaError
from monitor.database.fleet import FleetAccount, FleetIntegration, FleetUpdate, Replica, changes
from monitor.database.schema import SCHEMA_VERSION
from monitor.database.url import DatabaseURL, DatabaseURLError

__all__ = [
    "SCHEMA_VERSION",
    "Backend",
    "Batch",
    "Claim",
    "DatabaseError",
    "DatabaseURL",
    "DatabaseURLError",
    "DatabaseUnavailable",
    "Episode",
    "FiringAlert",
    "Fleet",
    "FleetAccount",
    "FleetIntegration",
    "FleetUpdate",
    "OutboxEvent",
    "OutboxItem",
    "Replica",
    "SchemaError",
    "Span",
    "Transition",
    "changes",
    "decide",
]
