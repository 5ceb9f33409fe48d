"""A Sendcloud v3 Integrations API simulator: a real HTTP server on loopback.

It serves ``GET /integrations``, ``GET /integrations/{id}``, ``GET /integrations/{id}/logs``,
``GET /integrations/logs`` (every exception log of the account, newest first, a date-time
``cursor``) and ``GET /shop-order-statuses/mapping?integration_id=N`` (PrestaShop v2 only; a
400 for any other type) as the spec describes them (Basic auth, JSON:API errors, cursor
pagination with a ``Link`` header), from scripted scenarios whose timestamps follow the
simulator's clock. It powers ``integration-monitor demo`` and the test suite.

Tests change it while it runs through the Python methods, or over HTTP through the control
endpoints under ``/_simulator/`` (no auth; loopback tool only):

- ``PATCH /_simulator/integrations/{id}``: JSON with ``scenario`` and/or fields to set
  (``updated_at``, ``status_mapping``, ``extra`` among them)
- ``DELETE /_simulator/integrations/{id}``: the integration answers 404 from then on
- ``POST /_simulator/logs``: JSON ``{"integration_id": N, ...}`` appends an exception log
  (``{"integration_ids": [...]}`` many at once)
- ``POST /_simulator/faults``: ``{"status": 503, "count": 2, "integration_id": null}``
- ``GET /_simulator/requests``: the API requests served so far
"""

from __future__ import annotations

import base64
import binascii
import collections
import json
import math
import re
import secrets
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qs, unquote_plus, urlencode, urlsplit

from monitor.health import utcnow

DEMO_PUBLIC_KEY = "demo-public-key"
DEMO_SECRET_KEY = "demo-secret-key"  # noqa: S105 - the simulator's built-in demo credential
API_PREFIX = "/api/v3"
TOKEN_PATH = "/oauth2/token/"  # noqa: S105 - a path
DEFAULT_PAGE_SIZE = 25
HEALTHY_FETCH_PERIOD = timedelta(minutes=5)

Scenario = Literal["healthy", "failing", "stale", "never_fetched", "deleted", "flapping"]
T = TypeVar("T")
SCENARIOS: tuple[str, ...] = Scenario.__args__  # type: ignore[attr-defined]


#: The integration type whose status mapping the simulator serves (as the spec says).
MAPPING_TYPE = "prestashop_v2"
#: A status mapping without a problem (the spec's example has two categories on one status).
GOOD_MAPPING: tuple[dict[str, Any], ...] = (
    {"status_category": "READY_TO_SEND", "external_id": "11", "is_valid": True},
    {"status_category": "IN_TRANSIT", "external_id": "11", "is_valid": True},
    {"status_category": "DELIVERED", "external_id": "12", "is_valid": True},
    {"status_category": "CANCEL", "external_id": "6", "is_valid": True},
)
#: Record fields that trip each configuration check that one record can fail on its own
#: (``duplicate_shop``: two integrations with one ``shop_url``; ``status_mapping``: a
#: ``status_mapping`` with ``is_valid: false`` or ``external_id: null``).
MISCONFIGURED: dict[str, dict[str, Any]] = {
    "feedback_off": {"feedback_type": "none"},
    "webhook_without_url": {"webhook_active": True, "webhook_url": None},
    "service_points_without_carriers": {
        "service_point_enabled": True,
        "service_point_carriers": [],
    },
}


@dataclass
class SimIntegration:
    """One simulated integration. Timestamps set here are used as they are; the scenario fills
    in the ones that move with the clock (a healthy shop is fetched every few minutes). Each
    has a shop URL of its own unless given one (two on one shop trip ``duplicate_shop``)."""

    id: int
    scenario: Scenario = "healthy"
    shop_name: str = "Simulated shop"
    shop_url: str = ""  # default: https://shop{id}.example.com/
    type: str = "api"
    created_at: datetime = field(default_factory=lambda: utcnow() - timedelta(days=30))
    started_failing_at: datetime | None = None
    last_fetched_at: datetime | None = None
    flap_period_seconds: float = 60.0
    extra: dict[str, Any] = field(default_factory=dict)
    #: exception logs a failing shop has (0: a shop that fails without one)
    log_count: int = 3
    #: updated_at as rendered (default: created_at)
    updated_at: datetime | None = None
    #: the answer of the status mapping endpoint (prestashop_v2 only; default: GOOD_MAPPING)
    status_mapping: list[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if not self.shop_url:
            self.shop_url = f"https://shop{self.id}.example.com/"

    def settle(self, now: datetime) -> None:
        """Pin the timestamps a scenario needs but were not given, as of ``now``."""
        if self.scenario == "failing" and self.started_failing_at is None:
            self.started_failing_at = now
        elif self.scenario == "stale" and self.last_fetched_at is None:
            self.last_fetched_at = now - timedelta(hours=5)

    def render(self, now: datetime, epoch: datetime) -> dict[str, Any] | None:
        """The API representation at ``now``, or None when the integration is deleted."""
        if self.scenario == "deleted":
            return None
        started, fetched = self.started_failing_at, self.last_fetched_at
        if self.scenario == "healthy":
            started, fetched = None, fetched or _last_periodic_fetch(now, epoch)
        elif self.scenario == "failing" and started is not None:
            fetched = fetched or started - timedelta(minutes=1)
        elif self.scenario == "stale":
            started = None
        elif self.scenario == "never_fetched":
            started, fetched = None, None
        elif self.scenario == "flapping":
            phase = int((now - epoch).total_seconds() // self.flap_period_seconds)
            phase_start = epoch + timedelta(seconds=phase * self.flap_period_seconds)
            failing = phase % 2 == 1
            started = phase_start if failing else None
            fetched = phase_start - timedelta(seconds=1) if failing else now
        return {
            "id": self.id,
            "shop_name": self.shop_name,
            "shop_url": self.shop_url,
            "type": self.type,
            "started_failing_at": _iso(started),
            "last_fetched_at": _iso(fetched),
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at or self.created_at),
            "service_point_enabled": True,
            "service_point_carriers": ["ups", "dhl"],
            "webhook_active": True,
            "webhook_url": f"https://hooks.example.com/sendcloud?token=webhook-token-{self.id}",
            "feedback_type": "eager",
            **self.extra,
        }

    def mapping(self) -> dict[str, Any]:
        """The status mapping endpoint's ``data``."""
        entries = self.status_mapping if self.status_mapping is not None else GOOD_MAPPING
        return {"integration_id": self.id, "mapping": [dict(e) for e in entries]}

    def logs(self, now: datetime) -> list[dict[str, Any]]:
        """Exception logs, newest first; a failing shop has a few, carrying the kind of
        request details (an Authorization header, a token in the URL) a monitor must not leak."""
        rendered = self.render(now, now)
        if rendered is None or rendered["started_failing_at"] is None:
            return []
        since = datetime.fromisoformat(rendered["started_failing_at"])
        return [
            {
                "id": self.id * 1000 + n,
                "integration_id": self.id,
                "base_url": self.shop_url,
                "full_url": f"{self.shop_url.rstrip('/')}/orders.json?token=shop-token-{self.id}",
                "method": "GET",
                "response_code": 503,
                "response": {"headers": {"Content-Type": "text/html"}, "body": "<html>503</html>"},
                "request": {
                    "headers": {"Authorization": f"Bearer shop-secret-{self.id}"},
                    "payload": None,
                },
                # distinct times (a date-time cursor cannot tell equal ones apart)
                "created_at": (since + timedelta(minutes=5 * n, milliseconds=self.id % 1000))
                .astimezone(UTC)
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z"),
                "exception_type": "requests.exceptions.HTTPError",
                "exception": f"503 Server Error: Service Unavailable for url: {self.shop_url}",
                "protected": False,
                "additional_data": "",
            }
            for n in range(self.log_count - 1, -1, -1)
        ]


def demo_integrations(
    now: datetime, expiring_shop_url: str = "https://localhost:8443/"
) -> list[SimIntegration]:
    """What ``integration-monitor demo`` shows: one integration per scenario, a shop whose
    certificate is about to expire (at ``expiring_shop_url``: the demo serves it on loopback)
    and a misconfigured one."""
    return [
        SimIntegration(
            1001, "healthy", "Healthy Shopify store", "https://healthy.example.com/", "shopify"
        ),
        SimIntegration(
            1002,
            "failing",
            "WooCommerce shop failing for 40 minutes",
            "https://woo.example.com/",
            "woocommerce",
            started_failing_at=now - timedelta(minutes=40),
        ),
        SimIntegration(
            1003,
            "failing",
            "Magento shop failing for 3 hours",
            "https://magento.example.com/",
            "magento",
            started_failing_at=now - timedelta(hours=3),
        ),
        SimIntegration(
            1004,
            "stale",
            "Prestashop not fetched for 5 hours",
            "https://presta.example.com/",
            "prestashop",
            last_fetched_at=now - timedelta(hours=5),
        ),
        SimIntegration(
            1005,
            "never_fetched",
            "New API integration, never fetched",
            "https://custom.example.com/",
            "api",
            created_at=now - timedelta(hours=3),
        ),
        SimIntegration(
            1006,
            "flapping",
            "Lightspeed shop flapping every minute",
            "https://lightspeed.example.com/",
            "lightspeed",
        ),
        SimIntegration(1007, "deleted", "Deleted shop", "https://deleted.example.com/", "api"),
        SimIntegration(
            1008,
            "healthy",
            "Shop whose TLS certificate expires in 4 days",
            expiring_shop_url,
            "shopify",
        ),
        SimIntegration(
            1009,
            "healthy",
            "Misconfigured WooCommerce shop",
            "https://misconfigured.example.com/",
            "woocommerce",
            extra={**MISCONFIGURED["feedback_off"], **MISCONFIGURED["webhook_without_url"]},
        ),
    ]


@dataclass
class Fault:
    """Misbehaviour for the next ``count`` matching requests (records, for record faults).

    Kinds: ``status`` (answer ``status``), ``malformed_json``, ``html`` (a maintenance page with
    200), ``truncated`` (the body stops early), ``reset`` (the connection drops), ``oversized``
    (a 6 MB body), ``slow`` (answer after ``delay`` seconds), ``bad_link`` (a ``Link`` header
    whose next URL is not a URL), ``bad_retry_after`` (a 429 whose Retry-After is ``²``), and
    the record faults ``wrong_types``, ``missing_fields``, ``unknown_fields``, ``far_future``,
    ``epoch``, and ``bad_failing_at`` (``started_failing_at`` neither a timestamp nor null:
    ``"garbage"``, ``true`` and ``12345`` in turn).
    """

    kind: str = "status"
    status: int = 503
    count: int = 1
    integration_id: int | None = None  # None: any API request
    delay: float = 0.0
    endpoint: str | None = None  # "list", "get" or "logs"; None: any

    def remaining_for(self, integration_id: int | None, endpoint: str | None = None) -> bool:
        """Whether this fault hits a request: a fault for no endpoint hits the poll's (list,
        get, logs); the account's log stream only when named (``account_logs``)."""
        if self.endpoint is None and endpoint == "account_logs":
            return False
        return (
            self.count > 0
            and self.integration_id in (None, integration_id)
            and self.endpoint in (None, endpoint)
        )


RECORD_FAULTS = frozenset(
    {"wrong_types", "missing_fields", "unknown_fields", "far_future", "epoch", "bad_failing_at"}
)
FAULT_KINDS = (
    frozenset(
        {
            "status",
            "malformed_json",
            "html",
            "truncated",
            "reset",
            "oversized",
            "slow",
            "bad_link",
            "bad_retry_after",
        }
    )
    | RECORD_FAULTS
)
#: The values ``bad_failing_at`` gives ``started_failing_at``, one per faulty record in turn.
BAD_FAILING_AT: tuple[object, ...] = ("garbage", True, 12345)


@dataclass
class Reply:
    """What the handler sends: JSON ``payload``, or raw ``body``; possibly late or broken."""

    status: int
    payload: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    content_type: str = "application/json"
    delay: float = 0.0
    truncate: bool = False
    reset: bool = False


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up mid-answer (a monitor stopped mid-poll) is not news; anything
        else still gets socketserver's traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class Simulator:
    """The simulated API and its state. Use as a context manager, or ``start()``/``stop()``."""

    def __init__(
        self,
        integrations: list[SimIntegration] | None = None,
        *,
        public_key: str = DEMO_PUBLIC_KEY,
        secret_key: str = DEMO_SECRET_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], datetime] = utcnow,
        rate_limit_per_minute: int | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        #: exception logs appended by tests (append_log), beside the generated ones of failing
        #: shops; newest last
        self._logs: list[dict[str, Any]] = []
        #: when each log appended raw (append_raw_log) is served as written, by id() of it
        self._raw_times: dict[int, datetime] = {}
        self._next_log_id = 10_000_000
        self.rate_limit_per_minute = rate_limit_per_minute
        self._monotonic = monotonic
        self._window: collections.deque[float] = collections.deque()
        self.throttled = 0  # 429s answered by the rate limit
        self.token_lifetime = 3600  # seconds, for OAuth2 access tokens
        self.token_requests = 0
        self._tokens: dict[str, float] = {}  # OAuth2 access token -> expiry (monotonic)
        self._faults: list[Fault] = []
        self.requests: list[str] = []
        self.clock = clock
        self.epoch = clock()
        self._integrations: dict[int, SimIntegration] = {}
        for integration in integrations or []:
            self.add(integration)
        self.next_link_base: str | None = None  # tests: advertise pages on another origin
        self._auth = "Basic " + base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()
        self._keys = (public_key, secret_key)
        self._server = _Server((host, port), _make_handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def origin(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def url(self) -> str:
        """The API base URL to configure the monitor with."""
        return self.origin + API_PREFIX

    @property
    def token_url(self) -> str:
        """The OAuth2 token endpoint (client credentials: the same keys as Basic auth)."""
        return self.origin + TOKEN_PATH

    def start(self) -> Simulator:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # quick shutdown()
            name="sendcloud-simulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Serve in the calling thread (for ``integration-monitor simulator``)."""
        self._server.serve_forever()

    # -- changing the simulated world -------------------------------------------------------

    def add(self, integration: SimIntegration) -> None:
        integration.settle(self.clock())
        with self._lock:
            self._integrations[integration.id] = integration

    def update(self, integration_id: int, **changes: Any) -> None:
        """Change fields of an integration. A new ``scenario`` starts now: ``failing`` fails
        from this moment, ``healthy`` clears the failure and is fetched again."""
        with self._lock:
            current = self._integrations[integration_id]
            if "scenario" in changes and changes["scenario"] != current.scenario:
                changes = {"started_failing_at": None, "last_fetched_at": None, **changes}
            updated = replace(current, **changes)
            updated.settle(self.clock())
            self._integrations[integration_id] = updated

    def remove(self, integration_id: int) -> None:
        """Delete for good: gone from the list and 404 on GET."""
        with self._lock:
            self._integrations.pop(integration_id, None)

    def inject_fault(
        self,
        status: int = 503,
        count: int = 1,
        integration_id: int | None = None,
        kind: str = "status",
        delay: float = 0.0,
        endpoint: str | None = None,
    ) -> None:
        """Misbehave for the next ``count`` matching API requests (see :class:`Fault`)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(sorted(FAULT_KINDS))}")
        if endpoint not in (None, "list", "get", "logs", "account_logs"):
            raise ValueError("endpoint must be list, get, logs or account_logs")
        with self._lock:
            self._faults.append(Fault(kind, status, count, integration_id, delay, endpoint))

    def clear_faults(self) -> None:
        """End every injected fault now (an outage that is over)."""
        with self._lock:
            self._faults.clear()

    def rotate_keys(self, public_key: str, secret_key: str) -> None:
        """Accept only a new key pair from now on (as after rotating keys in the panel)."""
        with self._lock:
            self._auth = "Basic " + base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()
            self._keys = (public_key, secret_key)

    def revoke_tokens(self) -> None:
        """Invalidate every OAuth2 access token issued so far."""
        with self._lock:
            self._tokens.clear()

    def handle_token(self, form: dict[str, list[str]], authorization: str | None) -> Reply:
        """``POST /oauth2/token/`` with ``grant_type=client_credentials``."""
        with self._lock:
            self.token_requests += 1
            if _client_credentials(authorization) != self._keys:
                return Reply(401, {"error": "invalid_client"})
            if form.get("grant_type") != ["client_credentials"]:
                return Reply(400, {"error": "unsupported_grant_type"})
            if form.get("scope", ["api"]) != ["api"]:
                return Reply(400, {"error": "invalid_scope"})
            token = secrets.token_urlsafe(24)
            self._tokens[token] = self._monotonic() + self.token_lifetime
            return Reply(
                200,
                {
                    "access_token": token,
                    "token_type": "Bearer",
                    "expires_in": self.token_lifetime,
                    "scope": "api",
                },
            )

    def _authorized(self, authorization: str | None) -> bool:
        if authorization == self._auth:
            return True
        scheme, _, token = (authorization or "").partition(" ")
        expiry = self._tokens.get(token)
        return scheme == "Bearer" and expiry is not None and self._monotonic() < expiry

    def request_count(self, prefix: str = "") -> int:
        with self._lock:
            return sum(1 for path in self.requests if path.startswith(prefix))

    # -- serving ----------------------------------------------------------------------------

    def handle_api(
        self, path: str, query: dict[str, list[str]], authorization: str | None
    ) -> Reply:
        with self._lock:
            self.requests.append(path)
            if not self._authorized(authorization):
                return _error(401, "authentication_failed", "Invalid username/password.")
            limited = self._rate_limited()
            if limited is not None:
                return limited
            if re.fullmatch(r"/shop-order-statuses/mapping/?", path):
                # which integration's mapping was asked for: tests count them one by one
                self.requests[-1] += "?integration_id=" + query.get("integration_id", [""])[0]
                return self._mapping(query)
            if re.fullmatch(r"/integrations/logs/?", path):
                fault = self._take_fault(None, record=False, endpoint="account_logs")
                if fault is not None and fault.kind not in ("slow", "bad_link"):
                    return _fault_reply(fault)
                return self._log_page(path, query, self._account_logs(self.clock()))
            match = re.fullmatch(r"/integrations(?:/(\d+))?(/logs)?/?", path)
            if match is None:
                return _error(404, "not_found", "Unknown endpoint.")
            integration_id = int(match.group(1)) if match.group(1) else None
            endpoint = "logs" if match.group(2) else ("get" if integration_id else "list")
            fault = self._take_fault(integration_id, record=False, endpoint=endpoint)
            if fault is not None and fault.kind not in ("slow", "bad_link"):
                return _fault_reply(fault)
            reply = self._answer(path, query, integration_id, bool(match.group(2)))
            if fault is not None:
                reply.delay = fault.delay
                if fault.kind == "bad_link":
                    reply.headers["Link"] = '<//[not-an-address]/integrations>; rel="next"'
            return reply

    def _answer(
        self, path: str, query: dict[str, list[str]], integration_id: int | None, logs: bool
    ) -> Reply:
        now = self.clock()
        if integration_id is None:
            listed = [i for i in self._sorted() if i.scenario != "deleted"]
            return self._page(path, query, listed, lambda i: self._record(i, now))
        integration = self._integrations.get(integration_id)
        record = self._record(integration, now) if integration else None
        if integration is None or record is None:
            return _error(
                404,
                "not_found",
                "The Integration could not be found with the search criteria given",
            )
        if logs:
            mine = [x for x in self._account_logs(now) if x.get("integration_id") == integration_id]
            return self._log_page(path, query, mine)
        return Reply(200, {"data": record})

    def _mapping(self, query: dict[str, list[str]]) -> Reply:
        """``GET /shop-order-statuses/mapping``: the spec's answer for a PrestaShop v2
        integration, its 400 for a request without ``integration_id``, and a 400 saying so for
        any other type (the spec supports only PrestaShop v2)."""
        raw = query.get("integration_id", [""])[0]
        if not raw.isdigit():
            return _error(400, "non_field_errors", "Integration ID is a required GET parameter")
        integration = self._integrations.get(int(raw))
        if integration is None or integration.scenario == "deleted":
            return _error(404, "not_found", "The Integration could not be found")
        if integration.type != MAPPING_TYPE:
            return _error(
                400, "non_field_errors", "Only the Prestashop V2 integration is supported."
            )
        return Reply(200, {"data": integration.mapping()})

    def _account_logs(self, now: datetime) -> list[dict[str, Any]]:
        """Every exception log of the account, newest first: the failing shops' own and the
        appended ones."""
        found = [
            log
            for i in self._integrations.values()
            if i.scenario in ("failing", "flapping")  # the others log nothing: no rendering
            for log in i.logs(now)
        ]
        found += self._logs
        return sorted(found, key=lambda x: (self._log_time(x), str(x.get("id"))), reverse=True)

    def _log_time(self, entry: dict[str, Any]) -> datetime:
        """When a log was written: its ``created_at``, or for a raw one when it was added."""
        raw = self._raw_times.get(id(entry))
        return raw if raw is not None else datetime.fromisoformat(entry["created_at"])

    def _log_page(
        self, path: str, query: dict[str, list[str]], logs: list[dict[str, Any]]
    ) -> Reply:
        """Exception logs as the spec pages them: newest first, ``cursor`` a date-time (the
        logs older than it), ``page_size`` 1-100, the next page in a ``Link`` header."""
        try:
            size = int(query.get("page_size", [str(DEFAULT_PAGE_SIZE)])[0])
        except ValueError:
            return _error(400, "invalid", "page_size must be a number.")
        if not 1 <= size <= 100:
            return _error(400, "invalid", "page_size must be between 1 and 100.")
        cursor = query.get("cursor", [""])[0]
        if cursor:
            try:
                before = datetime.fromisoformat(cursor)
            except ValueError:
                return _error(400, "invalid", "cursor must be a date-time.")
            if before.tzinfo is None:
                return _error(400, "invalid", "cursor needs a time zone offset.")
            logs = [x for x in logs if self._log_time(x) < before]
        page = logs[:size]
        headers: dict[str, str] = {}
        if len(logs) > size:
            base = self.next_link_base or self.origin
            params = urlencode({"cursor": self._log_time(page[-1]).isoformat(), "page_size": size})
            headers["Link"] = f'<{base}{API_PREFIX}{path}?{params}>; rel="next"'
        return Reply(200, {"data": page}, headers)

    def append_log(
        self,
        integration_id: int,
        *,
        exception_type: str = "requests.exceptions.ConnectionError",
        exception: str = "Connection refused",
        response_code: int | None = None,
        created_at: datetime | None = None,
        log_id: int | None = None,
    ) -> dict[str, Any]:
        """A new exception log (while it runs): now, or at ``created_at`` (late, out of
        order); ``log_id`` again makes a duplicate."""
        with self._lock:
            if log_id is None:
                self._next_log_id += 1
                log_id = self._next_log_id
            at = created_at or self.clock()
            shop = self._integrations.get(integration_id)
            base = shop.shop_url if shop else "https://shop.example.com/"
            entry = {
                "id": log_id,
                "integration_id": integration_id,
                "base_url": base,
                "full_url": f"{base.rstrip('/')}/orders.json?token=shop-token-{integration_id}",
                "method": "GET",
                "response_code": response_code,
                "response": None,
                "request": {"headers": {"Authorization": f"Bearer shop-secret-{integration_id}"}},
                "created_at": at.astimezone(UTC).isoformat(timespec="microseconds"),
                "exception_type": exception_type,
                "exception": exception,
                "protected": False,
                "additional_data": "",
            }
            self._logs.append(entry)
            return entry

    def append_raw_log(self, entry: dict[str, Any]) -> None:
        """A log exactly as given, however broken (an unusable record of the stream), served
        among the others as if written now."""
        with self._lock:
            self._raw_times[id(entry)] = self.clock()
            self._logs.append(entry)

    def append_logs(self, integration_ids: list[int], **fields: Any) -> None:
        """Many at once (a storm), each a microsecond after the one before."""
        start = self.clock()
        for n, integration_id in enumerate(integration_ids):
            self.append_log(integration_id, created_at=start + timedelta(microseconds=n), **fields)

    def _record(self, integration: SimIntegration, now: datetime) -> dict[str, Any] | None:
        record = integration.render(now, self.epoch)
        fault = self._take_fault(integration.id, record=True)
        return record if record is None or fault is None else _broken_record(record, fault)

    def _rate_limited(self) -> Reply | None:
        """Sendcloud's limit: more than N requests in the last minute answer 429."""
        if self.rate_limit_per_minute is None:
            return None
        now = self._monotonic()
        while self._window and self._window[0] <= now - 60.0:
            self._window.popleft()
        if len(self._window) >= self.rate_limit_per_minute:
            self.throttled += 1
            retry_after = max(1, math.ceil(self._window[0] + 60.0 - now))
            reply = _error(429, "too_many_requests", "Rate limit exceeded.")
            reply.headers["Retry-After"] = str(retry_after)
            return reply
        self._window.append(now)
        return None

    def _sorted(self) -> Iterator[SimIntegration]:
        return iter(sorted(self._integrations.values(), key=lambda i: i.id))

    def _take_fault(
        self, integration_id: int | None, *, record: bool, endpoint: str | None = None
    ) -> Fault | None:
        for fault in self._faults:
            if (
                fault.remaining_for(integration_id, endpoint)
                and (fault.kind in RECORD_FAULTS) == record
            ):
                fault.count -= 1
                return fault
        return None

    def _page(
        self,
        path: str,
        query: dict[str, list[str]],
        items: list[T],
        render: Callable[[T], dict[str, Any] | None],
    ) -> Reply:
        """One page of ``items`` (only that page is rendered), with a Link to the next."""
        try:
            size = int(query.get("page_size", [str(DEFAULT_PAGE_SIZE)])[0])
            offset = _decode_cursor(query.get("cursor", [""])[0])
        except ValueError:
            return _error(400, "invalid", "Invalid page_size or cursor.")
        if not 1 <= size <= 100:
            return _error(400, "invalid", "page_size must be between 1 and 100.")
        headers: dict[str, str] = {}
        if offset + size < len(items):
            base = self.next_link_base or self.origin
            params = urlencode({"cursor": _encode_cursor(offset + size), "page_size": size})
            headers["Link"] = f'<{base}{API_PREFIX}{path}?{params}>; rel="next"'
        page = [render(item) for item in items[offset : offset + size]]
        return Reply(200, {"data": [item for item in page if item is not None]}, headers)

    def handle_control(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        match = re.fullmatch(r"/integrations/(\d+)", path)
        if match and method == "PATCH":
            integration_id = int(match.group(1))
            changes = {k: _parse_field(k, v) for k, v in dict(body or {}).items()}
            if integration_id not in self._integrations:
                self.add(SimIntegration(integration_id, **changes))
            else:
                self.update(integration_id, **changes)
            return 200, {"ok": True}
        if match and method == "DELETE":
            self.remove(int(match.group(1)))
            return 200, {"ok": True}
        if path == "/faults" and method == "POST":
            self.inject_fault(**dict(body))
            return 200, {"ok": True}
        if path == "/faults" and method == "DELETE":
            self.clear_faults()
            return 200, {"ok": True}
        if path == "/logs" and method == "POST":
            fields = dict(body or {})
            ids = fields.pop("integration_ids", None)
            if ids is not None:
                self.append_logs([int(i) for i in ids], **fields)
            else:
                self.append_log(int(fields.pop("integration_id")), **fields)
            return 200, {"ok": True}
        if path == "/requests" and method == "GET":
            with self._lock:
                return 200, {"requests": list(self.requests)}
        return 404, {"error": "unknown control endpoint"}


def _make_handler(sim: Simulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "SendcloudSimulator/1"
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms ACK stalls

        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet: tests and the demo read their own logs

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_PATCH(self) -> None:
            self._dispatch("PATCH")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_DELETE(self) -> None:
            self._dispatch("DELETE")

        def _dispatch(self, method: str) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if parts.path.startswith("/_simulator/"):
                try:
                    body = json.loads(raw) if raw else None
                    status, payload = sim.handle_control(method, parts.path[11:], body)
                except (ValueError, TypeError, KeyError) as exc:
                    status, payload = 400, {"error": str(exc)}
                self._send(Reply(status, payload))
            elif parts.path == TOKEN_PATH and method == "POST":
                form = parse_qs(raw.decode("utf-8", "replace"))
                self._send(sim.handle_token(form, self.headers.get("Authorization")))
            elif parts.path.startswith(API_PREFIX + "/") and method == "GET":
                path = parts.path[len(API_PREFIX) :]
                auth = self.headers.get("Authorization")
                self._send(sim.handle_api(path, parse_qs(parts.query), auth))
            else:
                self._send(_error(404, "not_found", "Unknown endpoint."))

        def _send(self, reply: Reply) -> None:
            if reply.delay:
                time.sleep(reply.delay)
            if reply.reset:  # drop the connection with a TCP reset, no answer at all
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True
                return
            data = reply.body if reply.body is not None else json.dumps(reply.payload).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            length = len(data) * 2 if reply.truncate else len(data)
            self.send_header("Content-Length", str(length))
            if reply.status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="api"')
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            if reply.truncate:
                self.close_connection = True

    return Handler


def _client_credentials(authorization: str | None) -> tuple[str, str] | None:
    """Client id and secret from a token request's Basic header: RFC 6749 section 2.3.1 has
    both form-urlencoded before the Basic encoding, so they are decoded after it."""
    scheme, _, encoded = (authorization or "").partition(" ")
    try:
        raw = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, colon, client_secret = raw.partition(":")
    if scheme != "Basic" or not colon:
        return None
    return unquote_plus(client_id), unquote_plus(client_secret)


def _error(status: int, code: str, detail: str) -> Reply:
    title = {401: "Unauthorized", 404: "Not Found", 400: "Bad Request"}.get(status, "Error")
    error = {"status": str(status), "code": code, "title": title, "detail": detail}
    return Reply(status, {"errors": [error]})


def _fault_reply(fault: Fault) -> Reply:
    if fault.kind == "status":
        reply = _error(fault.status, "injected", "Injected fault.")
        if fault.status == 429:
            reply.headers["Retry-After"] = "1"
        return reply
    if fault.kind == "bad_retry_after":
        reply = _error(429, "injected", "Injected fault.")
        reply.headers["Retry-After"] = "\u00b2"
        return reply
    if fault.kind == "malformed_json":
        return Reply(200, body=b'{"data": {"id": 1, "shop_name": ')
    if fault.kind == "html":
        html = b"<html><body><h1>Down for maintenance</h1></body></html>"
        return Reply(200, body=html, content_type="text/html")
    if fault.kind == "truncated":
        return Reply(200, body=b'{"data": {"id": 1, "shop_name": "cut', truncate=True)
    if fault.kind == "reset":
        return Reply(200, reset=True)
    padding = b"x" * (6 * 1024 * 1024)  # oversized
    return Reply(200, body=b'{"data": {"id": 1, "shop_name": "' + padding + b'"}}')


def _broken_record(record: dict[str, Any], fault: Fault) -> dict[str, Any]:
    kind = fault.kind
    if kind == "wrong_types":
        return {**record, "id": "not-a-number", "webhook_active": {"nested": True}}
    if kind == "missing_fields":
        return {"shop_name": record["shop_name"]}
    if kind == "unknown_fields":
        return {**record, "brand_new_field": {"added": "later"}, "another": [1, 2, 3]}
    if kind == "far_future":
        return {**record, "started_failing_at": "9999-12-31T23:59:59Z"}
    if kind == "bad_failing_at":
        return {**record, "started_failing_at": BAD_FAILING_AT[fault.count % len(BAD_FAILING_AT)]}
    return {**record, "last_fetched_at": "1970-01-01T00:00:00Z"}  # epoch


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("bad cursor") from None
    prefix, _, number = text.partition(":")
    if prefix != "offset" or not number.isdigit():
        raise ValueError("bad cursor")
    return int(number)


def _parse_field(name: str, value: Any) -> Any:
    times = ("created_at", "started_failing_at", "last_fetched_at", "updated_at")
    if name in times and value is not None:
        return datetime.fromisoformat(value)
    if name == "scenario" and value not in SCENARIOS:
        raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}")
    return value


def _last_periodic_fetch(now: datetime, epoch: datetime) -> datetime:
    period = HEALTHY_FETCH_PERIOD.total_seconds()
    elapsed = (now - epoch).total_seconds()
    return now - timedelta(seconds=elapsed % period + 30)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
