"""What the store raises: one base class, so a caller can tell the store's trouble from a bug.
No message of these ever contains the database URL's password."""

from __future__ import annotations


class DatabaseError(Exception):
    """The store cannot do what was asked (the reason is in the message)."""


class DatabaseUnavailable(DatabaseError):
    """The database cannot be reached, or did not answer within the timeout."""


class SchemaError(DatabaseError):
    """The database has a schema this monitor cannot use (newer than it knows)."""
