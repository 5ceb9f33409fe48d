"""The Sendcloud v3 Integrations API: the only code that speaks HTTP to Sendcloud.

- ``client``: :class:`SendcloudClient`, one per account — pagination, retries, limits;
- ``records``: :class:`Integration` and its validation from API data;
- ``mapping``: the PrestaShop v2 status mapping (:class:`StatusMapping`) from API data;
- ``errors``: :class:`ApiError` and its subclasses, the client's typed failures;
- ``oauth``: OAuth2 client credentials as an ``httpx.Auth`` flow;
- ``budget``: :class:`RequestBudget`, the request rate of one API key (token bucket), shared
  by the accounts of that key (:class:`BudgetShare`);
- ``transport``: the request path under httpx (aiohttp's engine, no cookies) and how a
  failed request is classified.

May import only ``monitor`` itself (the version).
"""

from monitor.sendcloud.budget import Budget, BudgetShare, RequestBudget, smallest_interval
from monitor.sendcloud.client import (
    MAX_BODY_BYTES,
    MAX_LIST_PAGES,
    ClientEvents,
    ListPage,
    ListResult,
    ListWalk,
    NoEvents,
    SendcloudClient,
    parse_retry_after,
)
from monitor.sendcloud.errors import (
    INTERNAL_ERROR,
    INVALID_ANSWER_REASONS,
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
from monitor.sendcloud.mapping import CATEGORIES, MappingEntry, StatusMapping
from monitor.sendcloud.oauth import DEFAULT_TOKEN_URL, OAuth2ClientCredentials
from monitor.sendcloud.records import Integration, parse_integration, public_url

__all__ = [
    "CATEGORIES",
    "DEFAULT_TOKEN_URL",
    "INTERNAL_ERROR",
    "INVALID_ANSWER_REASONS",
    "MAX_BODY_BYTES",
    "MAX_LIST_PAGES",
    "ApiError",
    "AuthFailed",
    "Budget",
    "BudgetShare",
    "ClientEvents",
    "Integration",
    "InvalidRecord",
    "InvalidResponse",
    "ListPage",
    "ListResult",
    "ListWalk",
    "MappingEntry",
    "NoEvents",
    "NotFound",
    "OAuth2ClientCredentials",
    "RateLimited",
    "RequestBudget",
    "SendcloudClient",
    "ServerError",
    "StatusMapping",
    "Unreachable",
    "Unsupported",
    "parse_integration",
    "parse_retry_after",
    "public_url",
    "smallest_interval",
]
