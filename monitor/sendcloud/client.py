"""Sendcloud v3 Integrations API client: typed records in, typed errors out.

One :class:`SendcloudClient` (one ``httpx.AsyncClient``) per account. Every response becomes
either a parsed model or one of the :class:`ApiError` subclasses, so callers never look at
status codes. Pagination follows ``Link: rel="next"`` only while it stays on the configured
origin: credentials are never sent anywhere else.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import stamina
import structlog

from monitor import __version__
from monitor.sendcloud.budget import Budget
from monitor.sendcloud.errors import (
    ApiError,
    AuthFailed,
    InvalidRecord,
    InvalidResponse,
    NotFound,
    RateLimited,
    ServerError,
    Unreachable,
    Unsupported,
)
from monitor.sendcloud.mapping import StatusMapping, parse_status_mapping
from monitor.sendcloud.records import Integration, parse_integration, parse_page
from monitor.sendcloud.transport import (
    NoCookies,
    failure_reason,
    failure_text,
    new_transport,
    refused,
)

log = structlog.get_logger(__name__)

USER_AGENT = f"sendcloud-integration-monitor/{__version__}"
MAX_PAGE_SIZE = 100
MAX_BODY_BYTES = 5 * 1024 * 1024
RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
#: Request URLs kept parsed (the list's and the stream's first pages, configured IDs).
MAX_CACHED_URLS = 10_000
#: A list walk stops here even if the API keeps sending ``next`` links.
MAX_LIST_PAGES = 10_000


@dataclass(frozen=True)
class ListResult:
    integrations: list[Integration]
    complete: bool  # False when max_pages (or MAX_LIST_PAGES) stopped the walk early
    pages: int
    invalid: int  # records skipped because they did not parse
    #: integrations whose record arrived with a field that decides health invalid
    unreadable: dict[int, InvalidRecord] = field(default_factory=dict)


@dataclass
class ListWalk:
    """Where a walk of the integration list stands. A walk may span several poll cycles: the
    next one goes on from ``next_url`` (the pages already read are not read again)."""

    next_url: httpx.URL | None = None  # the next page to read; None: the first page
    pages: int = 0  # pages read so far
    done: bool = False  # the last page was read
    followed: set[str] = field(default_factory=set)  # next links followed (a loop is an error)


@dataclass(frozen=True)
class ListPage:
    """One page of the integration list, as it arrived."""

    integrations: list[Integration]
    invalid: int  # records skipped because they did not parse
    #: integrations whose record arrived with a field that decides health invalid
    unreadable: dict[int, InvalidRecord]


class ClientEvents(Protocol):
    """What the client reports (the metrics hook; keeps the client free of metrics)."""

    def request(self, endpoint: str, code: str, seconds: float) -> None:
        """One HTTP request and its outcome (``network_error`` when no response came)."""

    def error(self, endpoint: str, reason: str) -> None:
        """One logical request that failed, after its retries."""

    def throttled(self, pause_seconds: float) -> None:
        """A 429 paused the account."""

    def budget_wait(self, seconds: float) -> None:
        """Time spent waiting for the request budget."""


class NoEvents:
    def request(self, endpoint: str, code: str, seconds: float) -> None:
        return None

    def error(self, endpoint: str, reason: str) -> None:
        return None

    def throttled(self, pause_seconds: float) -> None:
        return None

    def budget_wait(self, seconds: float) -> None:
        return None


MAX_RETRY_AFTER = 60.0
#: The longest wait between two attempts of one request.
MAX_BACKOFF_SECONDS = 10.0


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
        events: ClientEvents | None = None,
        budget: Budget | None = None,
        auth: httpx.Auth | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = httpx.URL(api_url.rstrip("/") + "/")
        self._events = events or NoEvents()
        self._budget = budget
        self._max_attempts = max_attempts
        self._backoff = backoff_seconds
        self._monotonic = monotonic
        self._urls: dict[tuple[str, tuple[tuple[str, Any], ...]], httpx.URL] = {}
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            auth=auth or httpx.BasicAuth(public_key, secret_key),
            timeout=httpx.Timeout(timeout_seconds, connect=min(5.0, timeout_seconds)),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            follow_redirects=False,
            cookies=NoCookies(),
            transport=transport or new_transport(max_connections=max_connections),
        )

    def _absolute(self, url: httpx.URL | str, params: dict[str, Any] | None) -> httpx.URL:
        """The absolute URL of a request, built once per path and query: the first page of
        a list or a log stream is the same URL every cycle, and httpx parses and merges a
        relative URL and its parameters again on every request otherwise."""
        if isinstance(url, httpx.URL) and not params:
            return url  # a next page: absolute already
        key = (str(url), tuple(sorted((params or {}).items())))
        absolute = self._urls.get(key)
        if absolute is None:
            absolute = self._http.build_request("GET", url, params=params).url
            if len(self._urls) < MAX_CACHED_URLS:
                self._urls[key] = absolute
        return absolute

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get_integration(self, integration_id: int) -> Integration:
        """GET /integrations/{id}; raises NotFound for a deleted or unknown integration."""
        endpoint = "get_integration"
        response, raw = await self._request(endpoint, f"integrations/{integration_id}")
        with self._counted(endpoint):
            body = _json(response, raw)
            record = self._parse(endpoint, body.get("data") if isinstance(body, dict) else None)
            if record.id != integration_id:
                raise InvalidResponse(
                    f"asked for integration {integration_id}, got {record.id}",
                    status=200,
                    reason="id_mismatch",
                )
            return record

    async def list_integrations(
        self,
        *,
        page_size: int = MAX_PAGE_SIZE,
        max_pages: int | None = None,
        known: Callable[[int], Integration | None] = lambda integration_id: None,
    ) -> ListResult:
        """Every integration of the account, page by page, up to ``max_pages`` (one walk,
        collected: see ``list_pages`` for a walk read as it arrives)."""
        walk = ListWalk()
        found: list[Integration] = []
        unreadable: dict[int, InvalidRecord] = {}
        invalid = 0
        async for page in self.list_pages(
            walk, page_size=page_size, max_pages=max_pages, known=known
        ):
            found.extend(page.integrations)
            unreadable.update(page.unreadable)
            invalid += page.invalid
        return ListResult(
            found, walk.done, pages=walk.pages, invalid=invalid, unreadable=unreadable
        )

    async def list_pages(
        self,
        walk: ListWalk,
        *,
        page_size: int = MAX_PAGE_SIZE,
        max_pages: int | None = None,
        known: Callable[[int], Integration | None] = lambda integration_id: None,
    ) -> AsyncIterator[ListPage]:
        """The pages of the integration list from where ``walk`` stands, each as it arrives,
        until the last page or until the walk has read ``max_pages`` (at most MAX_LIST_PAGES);
        ``walk`` is brought up to date before each page is handed over, so a caller cut short
        (its deadline) can go on from there later.

        A record equal to the one ``known`` gives for its id is returned as that very object:
        an unchanged integration costs no memory, and the new copy dies with its page instead
        of living until the whole walk ends (at 10 000 integrations, one copy fewer at peak).

        Records without a usable ``id`` are skipped (and counted): one bad record must not hide
        the rest; the caller confirms missing ones individually. A 404 here is not "every
        integration is gone" but a wrong URL or a proxy: an account-wide error.
        """
        limit = MAX_LIST_PAGES if max_pages is None else min(max_pages, MAX_LIST_PAGES)
        while not walk.done and walk.pages < limit:
            if walk.next_url is None:
                response, raw = await self._request(
                    "list_integrations", "integrations", {"page_size": page_size}
                )
            else:
                response, raw = await self._request("list_integrations", walk.next_url)
            with self._counted("list_integrations"):
                unreadable: dict[int, InvalidRecord] = {}
                invalid = 0
                records = parse_page(raw)
                if records is None:  # not a page of clean records: one by one, each counted
                    records, invalid = self._parse_each(response, raw, unreadable)
                found = []
                for record in records:
                    same = known(record.id)
                    found.append(same if same == record else record)
                next_url = self._next_link(response)
                if (
                    next_url is not None
                    and walk.pages + 1 < limit
                    and str(next_url) in walk.followed
                ):
                    raise InvalidResponse(
                        "pagination loops back to a page already read",
                        status=200,
                        reason="link_loop",
                    )
            walk.pages += 1
            if next_url is None:
                walk.done = True
            else:
                walk.followed.add(str(next_url))
            walk.next_url = next_url
            yield ListPage(found, invalid, unreadable)

    async def integration_logs(
        self,
        integration_id: int,
        *,
        page_size: int = 10,
        background: bool = False,
        prepaid: bool = False,
    ) -> list[dict[str, Any]]:
        """The most recent exception logs of one integration (first page only), as raw objects:
        they carry request details that callers must redact before use. ``background``: the
        request (and its retries) takes from the budget after the polls; ``prepaid``: the
        caller has taken the first attempt's request from the budget already."""
        response, raw = await self._request(
            "integration_logs",
            f"integrations/{integration_id}/logs",
            {"page_size": page_size},
            background=background,
            prepaid=prepaid,
        )
        with self._counted("integration_logs"):
            return [item for item in _data_list(response, raw) if isinstance(item, dict)]

    async def account_logs(
        self, url: httpx.URL | None = None, *, page_size: int = 100
    ) -> tuple[list[dict[str, Any]], httpx.URL | None]:
        """One page of the account's exception logs (newest first; ``url`` is a next page),
        as raw objects, and the next page's URL (on the API's origin, or InvalidResponse)."""
        if url is None:
            response, raw = await self._request(
                "account_logs", "integrations/logs", {"page_size": page_size}
            )
        else:
            response, raw = await self._request("account_logs", url)
        with self._counted("account_logs"):
            items = [item for item in _data_list(response, raw) if isinstance(item, dict)]
            return items, self._next_link(response)

    async def status_mapping(self, integration_id: int) -> StatusMapping:
        """GET /shop-order-statuses/mapping?integration_id=N: the PrestaShop v2 status mapping;
        raises Unsupported when the API answers that the integration has none (400 or 404)."""
        endpoint = "status_mapping"
        response, raw = await self._request(
            endpoint, "shop-order-statuses/mapping", {"integration_id": integration_id}
        )
        with self._counted(endpoint):
            return parse_status_mapping(_json(response, raw), integration_id)

    def _parse_each(
        self, response: httpx.Response, raw: bytes, unreadable: dict[int, InvalidRecord]
    ) -> tuple[list[Integration], int]:
        """A list page's records one by one: the readable ones, and how many were skipped as
        invalid; the unreadable ones (an invalid field that decides health) go to
        ``unreadable``."""
        records: list[Integration] = []
        invalid = 0
        for item in _data_list(response, raw):
            try:
                records.append(self._parse("list_integrations", item))
            except InvalidRecord as exc:
                unreadable[exc.integration_id] = exc
                self._events.error("list_integrations", exc.reason)
            except InvalidResponse as exc:
                invalid += 1
                self._events.error("list_integrations", exc.reason)
        return records, invalid

    def _parse(self, endpoint: str, data: object) -> Integration:
        """A record, with each invalid optional field set to null and counted."""
        record, dropped = parse_integration(data)
        for name in dropped:
            self._events.error(endpoint, "invalid_field")
            log.debug("invalid_field", endpoint=endpoint, integration_id=record.id, field=name)
        return record

    @contextlib.contextmanager
    def _counted(self, endpoint: str) -> Iterator[None]:
        """Report a response that arrived but cannot be used."""
        try:
            yield
        except InvalidResponse as exc:
            self._events.error(endpoint, exc.reason)
            raise

    def _next_link(self, response: httpx.Response) -> httpx.URL | None:
        try:
            link = response.links.get("next", {}).get("url")
            target = response.url.join(link) if link else None
        except (httpx.InvalidURL, ValueError):
            raise InvalidResponse(
                "the Link header's next URL is not a valid URL",
                status=response.status_code,
                reason="invalid_link",
            ) from None
        if target is None:
            return None
        if (target.scheme, target.host, target.port) != (
            self.base_url.scheme,
            self.base_url.host,
            self.base_url.port,
        ):
            raise InvalidResponse(
                f"refusing to follow a pagination link to another origin ({target.host})",
                status=response.status_code,
                reason="foreign_link",
            )
        return target

    async def _request(
        self,
        endpoint: str,
        url: httpx.URL | str,
        params: dict[str, Any] | None = None,
        *,
        background: bool = False,
        prepaid: bool = False,
    ) -> tuple[httpx.Response, bytes]:
        """One logical GET: budgeted, with a bounded retry of transient failures (stamina:
        exponential backoff with jitter; the poll cycle's own deadline cancels whatever is
        still waiting, so there is no retry timeout of its own)."""
        try:
            try:  # almost every request ends here, without setting up a retry loop
                return await self._attempt(endpoint, url, params, background, prepaid)
            except ApiError as exc:
                if self._retry_wait(exc) is False:
                    raise
                failed: ApiError | None = exc
            async for attempt in stamina.retry_context(
                on=self._retry_wait,
                attempts=self._max_attempts,
                timeout=None,
                wait_initial=self._backoff,
                wait_max=MAX_BACKOFF_SECONDS,
                wait_jitter=self._backoff,
            ):
                with attempt:
                    if failed is not None:  # the first attempt, made above: stamina counts
                        first, failed = failed, None  # it and waits as if it had made it
                        raise first
                    return await self._attempt(endpoint, url, params, background)
        except ApiError as exc:
            if not isinstance(exc, NotFound | Unsupported):
                self._events.error(endpoint, exc.reason)
            raise
        raise AssertionError("stamina ends with an answer or the last error")  # pragma: no cover

    def _retry_wait(self, exc: Exception) -> bool | float:
        """stamina's predicate: whether (and, for a 429, after how long) to try again. A 429
        has paused the whole account in its budget already, so the retry itself need not
        wait; without a budget it waits the pause."""
        if not isinstance(exc, ApiError) or not _retryable(exc):
            return False
        if not isinstance(exc, RateLimited):
            return True
        return 0.0 if self._budget is not None else exc.pause

    def _throttle(self, exc: RateLimited) -> None:
        """A 429 pauses the whole account (capped Retry-After plus jitter) and is counted,
        once, where it arrives."""
        exc.pause = min(exc.retry_after or 1.0, MAX_RETRY_AFTER) + random.uniform(0, 1)  # noqa: S311
        if self._budget is not None:
            self._budget.pause(exc.pause)
        self._events.throttled(exc.pause)

    async def _attempt(
        self,
        endpoint: str,
        url: httpx.URL | str,
        params: dict[str, Any] | None,
        background: bool = False,
        prepaid: bool = False,
    ) -> tuple[httpx.Response, bytes]:
        if self._budget is not None and not prepaid:
            waited = await self._budget.acquire(background=background)
            if waited:
                self._events.budget_wait(waited)
        started = time.perf_counter()
        code = "network_error"
        try:
            async with self._http.stream("GET", self._absolute(url, params)) as response:
                code = str(response.status_code)
                raw = await _read_capped(response)
        except httpx.TransportError as exc:
            raise Unreachable(
                failure_text(exc), reason=failure_reason(exc), retry=not refused(exc)
            ) from None
        finally:
            self._events.request(endpoint, code, time.perf_counter() - started)
        if endpoint == "status_mapping" and response.status_code in (400, 404):
            raise Unsupported(f"not supported: {_error_detail(raw)}", status=response.status_code)
        try:
            _raise_for_status(response, raw, single=endpoint == "get_integration")
        except RateLimited as exc:
            self._throttle(exc)
            raise
        return response, raw


def _retryable(exc: ApiError) -> bool:
    if isinstance(exc, Unreachable):
        return exc.retry
    return exc.status in RETRYABLE_STATUS


async def _read_capped(response: httpx.Response) -> bytes:
    """Read the body, aborting past MAX_BODY_BYTES so a runaway response cannot eat memory."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise InvalidResponse(
                f"response body larger than {MAX_BODY_BYTES} bytes",
                status=response.status_code,
                reason="body_too_large",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _raise_for_status(response: httpx.Response, raw: bytes, *, single: bool) -> None:
    """Map a status to its error. Only a 404 for one integration (``single``) means that
    integration is gone; on a collection it means a wrong URL or a proxy."""
    status = response.status_code
    if 200 <= status < 300:
        return
    detail = _error_detail(raw)
    if status == 404 and single:
        raise NotFound(f"not found: {detail}", status=status)
    if status == 404:
        raise ApiError(f"collection not found (404): {detail}", status=status, reason="not_found")
    if status in (401, 403):
        raise AuthFailed(f"authentication failed ({status}): {detail}", status=status)
    if status == 429:
        raise RateLimited(
            "rate limited (429)", retry_after=parse_retry_after(response.headers.get("Retry-After"))
        )
    if status >= 500:
        raise ServerError(f"server error ({status})", status=status)
    raise InvalidResponse(
        f"unexpected status {status}: {detail}", status=status, reason="unexpected_status"
    )


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
    if value.isascii() and value.isdigit():  # '²'.isdigit() is true, float('²') is not
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
        raise InvalidResponse(
            f"body is not JSON ({kind[:60]})", status=response.status_code, reason="invalid_json"
        ) from None


def _data_list(response: httpx.Response, raw: bytes) -> list[Any]:
    body = _json(response, raw)
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise InvalidResponse("response has no 'data' array", status=200, reason="invalid_record")
    return data
