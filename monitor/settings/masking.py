"""What may be printed of a configuration: validation errors without secrets or the input of
a whole block, and the effective configuration with every secret masked."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from monitor.config_errors import describe
from monitor.settings.models import Settings
from monitor.settings.resolved import AccountConfig
from monitor.settings.sources import ENV_BY_PATH

SECRET_FIELDS = frozenset({"public_key", "secret_key", "url", "hmac_secret"})


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem, naming the environment variable where one sets the field."""
    return describe(exc, env_by_path=ENV_BY_PATH, secret_fields=SECRET_FIELDS)


def masked_dump(settings: Settings, accounts: list[AccountConfig]) -> dict[str, Any]:
    """The effective configuration with every secret masked, for ``validate-config``."""
    return {
        "listen_address": settings.listen_address,
        "shard": settings.shard,
        "log_format": settings.log_format or "auto",
        "accounts": [
            {
                "name": account.name,
                "api_url": account.api_url,
                "auth": account.auth,
                "oauth2_token_url": account.oauth2_token_url,
                "public_key": "********",
                "secret_key": "********",
                "integration_ids": list(account.integration_ids)
                if account.integration_ids is not None
                else "all",
                "poll_interval_seconds": account.poll_interval_seconds,
                "stale_after_seconds": account.stale_after_seconds,
                "max_concurrency": account.max_concurrency,
                "request_timeout_seconds": account.request_timeout_seconds,
                "max_requests_per_minute": account.max_requests_per_minute,
                "auth_retry_seconds": account.auth_retry_seconds,
                "clock_skew_tolerance_seconds": account.clock_skew_tolerance_seconds,
                "integrations": {
                    str(i): {"stale_after_seconds": s} for i, s in account.stale_overrides.items()
                },
                "checks_ignored": sorted(account.ignored_checks),
            }
            for account in accounts
        ],
        "receivers": [
            {
                "name": receiver.name,
                "url": "********",
                "timeout_seconds": receiver.timeout_seconds,
                "max_attempts": receiver.max_attempts,
            }
            for receiver in settings.alerting.receivers
        ],
        "group_wait_seconds": settings.alerting.group_wait_seconds,
        "probes": settings.probes.model_dump(mode="json"),
    }
