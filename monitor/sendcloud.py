"""Sendcloud v3 Integrations API client: typed records in, typed errors out.

One :class:`SendcloudClient` (one ``httpx.AsyncClient``) per account. Every response becomes
either a parsed model or one of the :class:`ApiError` subclasses, so callers never look at
status codes. Pagination follows ``Link: rel="next"`` only while it stays on the configured
origin: credentials are never sent anywhere else.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from monitor import __version__

USER_AGENT = f"sendcloud-integration-monitor/{__version__}"
MAX_PAGE_SIZE = 100
MAX_BODY_BYTES = 5 * 1024 * 1024
RETRYABLE_STATUS = frozenset({429, 502, 503, 504})


class Integration(BaseModel):
    """An integration as the API returns it. Unknown fields are ignored and ``webhook_url``
    is deliberately not kept: it may carry a token."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: int
    shop_name: str | None = None
    shop_url: str | None = None
    type: str | None = None
    started_failing_at: datetime | None = None
    last_fetched_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    service_point_enabled: bool | None = None
    webhook_active: bool | None = None
    feedback_type: str | None = None

    @field_validator("started_failing_at", "last_fetched_at", "created_at", "updated_at")
    @classmethod
    def _assume_utc(cls, value: datetime | None) -> datetime | None:
        """RFC 3339 requires an offset; a timestamp without one is read as UTC."""
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


@dataclass(frozen=True)
class ListResult:
    integrations: list[Integration]
    complete: bool  # False when max_pages stopped the walk before the last page
    pages: int
    invalid: int  # records skipped because they did not parse


class ApiError(Exception):
    """A request that produced no usable answer. ``reason`` is a short, stable label."""

    reason = "error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotFound(ApiError):
    reason = "not_found"


class AuthFailed(ApiError):
    reason = "auth_failed"


class RateLimited(ApiError):
    reason = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None, status: int = 429) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class ServerError(ApiError):
    reason = "server_error"


class InvalidResponse(ApiError):
    reason = "invalid_response"


class Unreachable(ApiError):
    """Connection refused or reset, DNS failure, timeout: no HTTP answer at all."""

    reason = "unreachable"


class RequestObserver(Protocol):
    """Receives one call per HTTP request (metrics hook; keeps the client free of metrics)."""

    def __call__(self, endpoint: str, code: str, seconds: float) -> None: ...


def _ignore(endpoint: str, code: str, seconds: float) -> None:
    return None


Sleep = Callable[[float], Awaitable[None]]


class SendcloudClient:
    """Talks to one account. ``transport`` lets tests plug in ``httpx.MockTransport``."""

    def __init__(
        self,
        api_url: str,
        public_key: str,
        secret_key: str,
        *,
        timeout_seconds: float = 10.0,
        max_connections: int = 8,
        max_attempts: int = 3,
        backoff_seconds: float = 0.5,
        observer: RequestObserver = _ignore,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.base_url = httpx.URL(api_url.rstrip("/") + "/")
        self._observer = observer
        self._max_attempts = max_attempts
        self._backoff = backoff_seconds
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            auth=httpx.BasicAuth(public_key, secret_key),
            timeout=httpx.Timeout(timeout_seconds, connect=min(5.0, timeout_seconds)),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            follow_redirects=False,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get_integration(self, integration_id: int) -> Integration:
        """GET /integrations/{id}; raises NotFound for a deleted or unknown integration."""
        response, raw = await self._request("get_integration", f"integrations/{integration_id}")
        body = _json(response, raw)
        data = body.get("data") if isinstance(body, dict) else None
        return _parse_integration(data)

    async def list_integrations(
        self, *, page_size: int = MAX_PAGE_SIZE, max_pages: int | None = None
    ) -> ListResult:
        """Every integration of the account, page by page, up to ``max_pages``.

        Records that fail to parse are skipped (and counted): one bad record must not hide the
        rest; the caller confirms missing ones individually.
        """
        url: httpx.URL | str = "integrations"
        params: dict[str, Any] | None = {"page_size": page_size}
        seen: set[str] = set()
        found: list[Integration] = []
        invalid = 0
        pages = 0
        while True:
            response, raw = await self._request("list_integrations", url, params)
            pages += 1
            body = _json(response, raw)
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise InvalidResponse("list response has no 'data' array", status=200)
            for item in data:
                try:
                    found.append(_parse_integration(item))
                except InvalidResponse:
                    invalid += 1
            next_url = self._next_link(response)
            if next_url is None or (max_pages is not None and pages >= max_pages):
                return ListResult(found, complete=next_url is None, pages=pages, invalid=invalid)
            if str(next_url) in seen:
                raise InvalidResponse("pagination loops back to a page already read", status=200)
            seen.add(str(next_url))
            url, params = next_url, None

    async def integration_logs(
        self, integration_id: int, *, page_size: int = 10
    ) -> list[dict[str, Any]]:
        """The most recent exception logs of one integration (first page only), as raw objects:
        they carry request details that callers must redact before use."""
        response, raw = await self._request(
            "integration_logs", f"integrations/{integration_id}/logs", {"page_size": page_size}
        )
        data = _json(response, raw).get("data") if isinstance(_json(response, raw), dict) else None
        if not isinstance(data, list):
            raise InvalidResponse("logs response has no 'data' array", status=200)
        return [item for item in data if isinstance(item, dict)]

    def _next_link(self, response: httpx.Response) -> httpx.URL | None:
        link = response.links.get("next", {}).get("url")
        if not link:
            return None
        target = response.url.join(link)
        if (target.scheme, target.host, target.port) != (
            self.base_url.scheme,
            self.base_url.host,
            self.base_url.port,
        ):
            raise InvalidResponse(
                f"refusing to follow a pagination link to another origin ({target.host})",
                status=response.status_code,
            )
        return target

    async def _request(
        self, endpoint: str, url: httpx.URL | str, params: dict[str, Any] | None = None
    ) -> tuple[httpx.Response, bytes]:
        """One logical GET with a bounded retry of transient failures."""
        attempt = 1
        while True:
            try:
                return await self._attempt(endpoint, url, params)
            except (Unreachable, ServerError, RateLimited) as exc:
                if attempt >= self._max_attempts or not _retryable(exc):
                    raise
                await self._sleep(self._delay(attempt, exc))
                attempt += 1

    def _delay(self, attempt: int, exc: ApiError) -> float:
        cap = float(self._backoff * 2 ** (attempt - 1))
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return min(exc.retry_after, 4 * cap) + random.uniform(0, self._backoff)  # noqa: S311
        return random.uniform(0, cap)  # noqa: S311 - jitter, not cryptography

    async def _attempt(
        self, endpoint: str, url: httpx.URL | str, params: dict[str, Any] | None
    ) -> tuple[httpx.Response, bytes]:
        started = time.perf_counter()
        code = "network_error"
        try:
            async with self._http.stream("GET", url, params=params) as response:
                code = str(response.status_code)
                raw = await _read_capped(response)
        except httpx.TimeoutException as exc:
            raise Unreachable(f"timed out: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            raise Unreachable(f"connection failed: {type(exc).__name__}") from None
        finally:
            self._observer(endpoint, code, time.perf_counter() - started)
        _raise_for_status(response, raw)
        return response, raw


def _retryable(exc: ApiError) -> bool:
    return isinstance(exc, Unreachable) or exc.status in RETRYABLE_STATUS


async def _read_capped(response: httpx.Response) -> bytes:
    """Read the body, aborting past MAX_BODY_BYTES so a runaway response cannot eat memory."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise InvalidResponse(
                f"response body larger than {MAX_BODY_BYTES} bytes", status=response.status_code
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _raise_for_status(response: httpx.Response, raw: bytes) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    detail = _error_detail(raw)
    if status == 404:
        raise NotFound(f"not found: {detail}", status=status)
    if status in (401, 403):
        raise AuthFailed(f"authentication failed ({status}): {detail}", status=status)
    if status == 429:
        raise RateLimited(
            "rate limited (429)", retry_after=parse_retry_after(response.headers.get("Retry-After"))
        )
    if status >= 500:
        raise ServerError(f"server error ({status})", status=status)
    raise InvalidResponse(f"unexpected status {status}: {detail}", status=status)


def _error_detail(raw: bytes) -> str:
    """The JSON:API error title/detail, if the body is one; short and never the raw body."""
    try:
        errors = json.loads(raw).get("errors")
        first = errors[0] if isinstance(errors, list) else errors
        text = str(first.get("detail") or first.get("title") or first.get("code"))
    except Exception:  # any body that is not a JSON:API error document
        return "no error details"
    return text[:200]


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _json(response: httpx.Response, raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        kind = response.headers.get("content-type", "unknown content type")
        raise InvalidResponse(f"body is not JSON ({kind})", status=response.status_code) from None


def _parse_integration(data: object) -> Integration:
    if not isinstance(data, dict):
        raise InvalidResponse("integration record is not an object", status=200)
    try:
        return Integration.model_validate(data)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
        raise InvalidResponse(f"integration record has invalid fields: {fields}") from None
