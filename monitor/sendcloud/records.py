"""Integration records as the API sends them, validated into compact typed values."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

from pydantic import AfterValidator, BeforeValidator, Field, TypeAdapter, ValidationError

from monitor.sendcloud.errors import InvalidRecord, InvalidResponse


def _public_url_or_none(value: str | None) -> str | None:
    """The shop URL becomes a label, an event field and a log value: it keeps only scheme,
    host, port and path — never ``user:password@``, a query string or a fragment."""
    return None if value is None else public_url(value)


def _utc(value: datetime | None) -> datetime | None:
    """RFC 3339 requires an offset; a timestamp without one is read as UTC. Any other value
    the API sends is taken as it is: a future one is clock skew for the health derivation to
    handle, not a reason to drop the record."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


_Stamp = Annotated[datetime | None, AfterValidator(_utc)]


def _rfc3339_utc_or_none(value: object) -> datetime | None:
    """A field that decides health is an RFC 3339 string or null, nothing else: pydantic would
    read ``12345`` (or ``"12345"``) as epoch seconds, and a lax reading of garbage as null
    would say *not failing*. Without an offset it is read as UTC (one call per field: this
    runs for three fields of every record of every page)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("expected an RFC 3339 timestamp or null") from None
    elif isinstance(value, datetime):  # built in Python, not JSON
        parsed = value
    else:
        raise ValueError("expected an RFC 3339 timestamp or null")
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


_HealthStamp = Annotated[datetime | None, BeforeValidator(_rfc3339_utc_or_none)]


def _present(value: object) -> object:
    """Whether a URL is there (null or blank: no), never the URL itself; anything but a
    string or null is left to fail validation."""
    if value is None:
        return False
    return bool(value.strip()) if isinstance(value, str) else value


#: ``webhook_url`` read as "is one set": the URL may carry a token and is never kept.
_HasUrl = Annotated[bool | None, Field(validation_alias="webhook_url"), BeforeValidator(_present)]
#: The fields the health derivation reads: an invalid one makes the integration's health
#: unknown (never null, which would read as healthy).
HEALTH_FIELDS = frozenset({"started_failing_at", "last_fetched_at", "created_at"})


@dataclass(frozen=True, slots=True)
class Integration:
    """An integration as the API returns it. Unknown fields are ignored and ``webhook_url``
    is deliberately not kept — it may carry a token — only whether one is set
    (``has_webhook_url``; None when the record does not say). A slotted dataclass, not a pydantic
    model: the daemon keeps one per integration, and at 10 000 of them the difference is
    about 14 MB. :func:`parse_integration` validates API data into it."""

    id: int
    shop_name: str | None = None
    shop_url: Annotated[str | None, AfterValidator(_public_url_or_none)] = None
    type: str | None = None
    started_failing_at: _HealthStamp = None
    last_fetched_at: _HealthStamp = None
    created_at: _HealthStamp = None
    updated_at: _Stamp = None
    service_point_enabled: bool | None = None
    webhook_active: bool | None = None
    feedback_type: str | None = None
    service_point_carriers: tuple[str, ...] | None = None
    has_webhook_url: _HasUrl = None


_RECORD = TypeAdapter(Integration)


@dataclass(frozen=True, slots=True)
class _Page:
    data: list[Integration]


_PAGE = TypeAdapter(_Page)


#: A URL that is public already and that urlsplit/urlunsplit would give back unchanged.
_PUBLIC_ALREADY = re.compile(r"https?://[a-z0-9.-]+(?:/[^?#@\\\s\x00-\x1f\x7f]*)?")


def public_url(url: str) -> str:
    """``url`` without userinfo, query string and fragment (what may be shown anywhere)."""
    if _PUBLIC_ALREADY.fullmatch(url):  # most shop URLs: no parsing
        return url
    return _public_url_parsed(url)


def _public_url_parsed(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # not a URL we can take apart: show nothing of it rather than all of it
        return ""
    if not host:  # no "//": drop whatever could be a query, a fragment or userinfo
        return url.split("?", 1)[0].split("#", 1)[0].rsplit("@", 1)[-1]
    netloc = f"[{host}]" if ":" in host else host
    netloc += f":{port}" if port is not None else ""
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def parse_page(raw: bytes) -> list[Integration] | None:
    """Every record of a list page, validated in one pass from the body's bytes (pydantic's
    Rust core parses the JSON), or None when the body is not a page of clean records: then the
    caller parses it record by record with :func:`parse_integration`, which says what is
    wrong. Both give equal records for a clean page."""
    try:
        return _PAGE.validate_json(raw).data
    except ValidationError:
        return None


def parse_integration(data: object) -> tuple[Integration, list[str]]:
    """An integration record, and the names of optional fields that were invalid and are
    null instead (only fields that decide nothing). A missing or invalid ``id`` makes the
    record invalid (InvalidResponse); an invalid field that decides health makes that one
    integration unreadable (InvalidRecord, which names it)."""
    if not isinstance(data, dict):
        raise InvalidResponse(
            "integration record is not an object", status=200, reason="invalid_record"
        )
    try:
        return _RECORD.validate_python(data), []
    except ValidationError as exc:
        bad = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})
    if "id" in bad or "id" not in data:
        raise InvalidResponse(
            "integration record has no valid id", status=200, reason="invalid_record"
        )
    deciding = sorted(HEALTH_FIELDS.intersection(bad))
    if deciding:
        integration_id = _RECORD.validate_python({"id": data["id"]}).id
        raise InvalidRecord(
            f"integration {integration_id}: invalid {', '.join(deciding)}",
            integration_id=integration_id,
        )
    try:
        return _RECORD.validate_python({k: v for k, v in data.items() if k not in bad}), bad
    except ValidationError:  # cannot happen for optional fields; be safe all the same
        raise InvalidResponse(
            "integration record is invalid", status=200, reason="invalid_record"
        ) from None
