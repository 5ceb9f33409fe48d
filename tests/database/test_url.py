"""The database URL: parsed once, its password kept out of every string but the driver's."""

from __future__ import annotations

import pytest

from monitor.database.url import MASK, DatabaseURL, DatabaseURLError

SECRET = "p@ss:w/rd 100%"
URL = "postgresql://monitor:p%40ss%3Aw%2Frd%20100%25@db.example:6432/fleet?sslmode=verify-full"


def test_the_parts_are_parsed_and_the_password_decoded() -> None:
    url = DatabaseURL(URL)
    assert (url.host, url.port, url.database, url.user) == ("db.example", 6432, "fleet", "monitor")
    assert url.password == SECRET
    assert url.parameters == {"sslmode": "verify-full"}
    assert url.connect_kwargs() == {
        "host": "db.example",
        "port": 6432,
        "dbname": "fleet",
        "user": "monitor",
        "password": SECRET,
        "sslmode": "verify-full",
    }
    assert DatabaseURL("postgres://u@h/d").port == 5432  # libpq's other scheme, default port


def test_the_password_is_masked_everywhere_but_the_driver() -> None:
    url = DatabaseURL(URL)
    for text in (str(url), repr(url), url.masked, f"{url}", f"{url!r}"):
        assert SECRET not in text
        assert "p%40ss" not in text
        assert MASK in text
    assert url.masked == f"postgresql://monitor:{MASK}@db.example:6432/fleet"
    assert url.scrub(f"failed for {SECRET} and p%40ss%3Aw%2Frd%20100%25") == (
        f"failed for {MASK} and {MASK}"
    )
    assert set(url.secrets) == {SECRET, "p%40ss%3Aw%2Frd%20100%25"}


def test_a_url_without_a_password_has_nothing_to_hide() -> None:
    url = DatabaseURL("postgresql://monitor@[::1]/fleet")
    assert url.secrets == ()
    assert url.masked == "postgresql://monitor@[::1]:5432/fleet"
    assert "password" not in url.connect_kwargs()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mysql://monitor:hunter22@h/d", "must start with postgresql://"),
        ("postgresql://monitor:hunter22@/d", "no host"),
        ("postgresql://monitor:hunter22@h:port/d", "malformed"),
        ("postgresql://monitor:hunter22@h", "one database"),
        ("postgresql://monitor:hunter22@h/a/b", "one database"),
        ("postgresql://:hunter22@h/d", "no user"),
        ("postgresql://monitor:hunter22@h/d#x", "fragment"),
        ("postgresql://monitor:hunter22@h/d?password=hunter22", "unknown parameter 'password'"),
    ],
)
def test_a_bad_url_is_refused_without_echoing_it(text: str, message: str) -> None:
    with pytest.raises(DatabaseURLError, match=message) as refused:
        DatabaseURL(text)
    assert "hunter22" not in str(refused.value)
