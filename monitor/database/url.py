"""The database URL: ``postgresql://user:password@host:port/dbname?sslmode=…``, parsed here once
so that the password lives in one object that never shows it.

libpq and psycopg echo parts of a malformed connection string in their errors (``unexpected
spaces found in "<password>"``), so the URL is checked here first, handed to psycopg as
separate keywords, and every message that comes back from the driver is scrubbed of the
password before it goes anywhere (:meth:`DatabaseURL.scrub`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

MASK = "********"
SCHEMES = ("postgresql", "postgres")
#: Query parameters taken from the URL (libpq's names); anything else is refused by name.
PARAMETERS = frozenset(
    {
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslcrl",
        "target_session_attrs",
        "application_name",
        "connect_timeout",
    }
)


class DatabaseURLError(ValueError):
    """The URL cannot be used; the message never contains the URL's password."""


class DatabaseURL:
    """A parsed ``postgresql://`` URL. ``str()`` and ``repr()`` mask the password."""

    __slots__ = ("_password", "database", "host", "parameters", "port", "user")

    def __init__(self, text: str) -> None:
        try:
            parts = urlsplit(text.strip())
            port = parts.port
        except ValueError:  # a bad port or IPv6 literal: urllib's message may quote it
            raise DatabaseURLError(
                "the database URL is malformed (check the host and the port)"
            ) from None
        if parts.scheme not in SCHEMES:
            raise DatabaseURLError(
                "the database URL must start with postgresql:// (a SQLite history needs no URL)"
            )
        if not parts.hostname:
            raise DatabaseURLError("the database URL has no host")
        if parts.fragment:
            raise DatabaseURLError("the database URL must not have a #fragment")
        database = unquote(parts.path.lstrip("/"))
        if not database or "/" in database:
            raise DatabaseURLError("the database URL must name one database: …/dbname")
        parameters: dict[str, str] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key not in PARAMETERS:
                raise DatabaseURLError(
                    f"the database URL has an unknown parameter {key!r} "
                    f"(known: {', '.join(sorted(PARAMETERS))})"
                )
            parameters[key] = value
        self.host: str = parts.hostname
        self.port: int = port or 5432
        self.database = database
        self.user = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password is not None else None
        self.parameters = parameters
        if self.user is None:
            raise DatabaseURLError("the database URL has no user (postgresql://USER:…@host/db)")

    @property
    def password(self) -> str | None:
        """The secret itself; only for the driver."""
        return self._password

    @property
    def secrets(self) -> tuple[str, ...]:
        """What log scrubbing must know of (the password as written and as it travels)."""
        if not self._password:
            return ()
        return tuple({self._password, quote(self._password, safe="")})

    def connect_kwargs(self) -> dict[str, Any]:
        """psycopg's connection keywords (no connection string to be echoed in an error)."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "dbname": self.database,
            "user": self.user,
        }
        if self._password is not None:
            kwargs["password"] = self._password
        kwargs.update(self.parameters)
        return kwargs

    def scrub(self, text: str) -> str:
        """``text`` with every form of the password masked."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text

    @property
    def masked(self) -> str:
        auth = quote(self.user or "", safe="")
        if self._password is not None:
            auth += ":" + MASK
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"postgresql://{auth}@{host}:{self.port}/{quote(self.database, safe='')}"

    def __str__(self) -> str:
        return self.masked

    def __repr__(self) -> str:
        return f"DatabaseURL({self.masked!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DatabaseURL):
            return NotImplemented
        return self.connect_kwargs() == other.connect_kwargs()

    def __hash__(self) -> int:
        return hash((self.host, self.port, self.database, self.user))
