"""The typed errors of the Sendcloud client: every failed request becomes one of these, so
callers never look at status codes. ``reason`` is a short label from a fixed set (a metric label).
"""

from __future__ import annotations


class ApiError(Exception):
    """A request that produced no usable answer. ``reason`` is a short, stable label (used as
    a metric label, so from a small fixed set)."""

    reason = "error"

    def __init__(
        self, message: str, *, status: int | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        if reason is not None:
            self.reason = reason


class NotFound(ApiError):
    reason = "not_found"


class AuthFailed(ApiError):
    reason = "auth_failed"


class RateLimited(ApiError):
    reason = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None, status: int = 429) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after
        #: how long the account pauses for this 429 (set where it arrived: the client)
        self.pause = 0.0


class ServerError(ApiError):
    reason = "server_error"


class InvalidResponse(ApiError):
    reason = "invalid_response"


class InvalidRecord(InvalidResponse):
    """One integration's record arrived with a field that decides its health (a timestamp)
    neither RFC 3339 nor null: that integration is unreadable this time, the others are not."""

    reason = "invalid_field"

    def __init__(self, message: str, *, integration_id: int) -> None:
        super().__init__(message, status=200)
        self.integration_id = integration_id


class Unsupported(ApiError):
    """The API does not offer this for the integration (the status mapping of an integration
    that is not PrestaShop v2: a 400 or 404). An answer, not a failure: never counted as an
    error, and remembered by the caller rather than asked again."""

    reason = "unsupported"


class Unreachable(ApiError):
    """Connection refused or reset, DNS failure, timeout: no HTTP answer at all. The message
    says what happened (``connection refused``); ``retry`` is False where trying again at
    once cannot help (nothing listens at the address)."""

    reason = "unreachable"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        reason: str | None = None,
        retry: bool = True,
    ) -> None:
        super().__init__(message, status=status, reason=reason)
        self.retry = retry


#: Reasons of answers that arrived but could not be used (the shipped rule
#: SendcloudAPIInvalidAnswers counts them); their counters start at 0 for every account.
INVALID_ANSWER_REASONS = (
    "invalid_json",
    "invalid_record",
    "invalid_field",
    "id_mismatch",
    "body_too_large",
    "link_loop",
    "foreign_link",
    "invalid_link",
    "unexpected_status",
    "not_found",
)
#: The reason a poll cycle is counted with when it failed inside the monitor (a bug, or an
#: answer no error class covers): sendcloud_api_errors_total{endpoint="poll"}.
INTERNAL_ERROR = "internal_error"
