"""The resolved configuration: frozen :class:`AccountConfig` and :class:`WebhookConfig` with
defaults applied and secret files read — what the rest of the daemon works from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from pydantic import SecretStr

from monitor.config_errors import ConfigError
from monitor.health import DEFAULT_CLOCK_SKEW_TOLERANCE_SECONDS
from monitor.logs import basic_credential
from monitor.notify.receivers import url_problem
from monitor.sendcloud.oauth import DEFAULT_TOKEN_URL
from monitor.settings.addresses import require_https

if TYPE_CHECKING:
    from monitor.settings.models import (
        AccountSettings,
        Defaults,
        ReceiverSettings,
        WebhookSettings,
    )


@dataclass(frozen=True)
class WebhookConfig:
    name: str
    url: SecretStr
    hmac_secret: SecretStr | None
    slack: bool
    timeout_seconds: float
    max_attempts: int
    queue_size: int


@dataclass(frozen=True)
class ReceiverConfig:
    name: str
    url: SecretStr  # an Apprise URL
    timeout_seconds: float
    max_attempts: int
    queue_size: int


@dataclass(frozen=True)
class Outbound:
    """Where notifications go, secret files read: the webhooks and the Apprise receivers (a
    reload that changes any of them rebuilds the delivery)."""

    webhooks: tuple[WebhookConfig, ...] = ()
    receivers: tuple[ReceiverConfig, ...] = ()


@dataclass(frozen=True)
class AccountConfig:
    """A fully resolved account: what the client, poller and collector work from."""

    name: str
    api_url: str
    public_key: SecretStr
    secret_key: SecretStr
    integration_ids: tuple[int, ...] | None  # None: every integration of the account
    poll_interval_seconds: float
    stale_after_seconds: float
    max_concurrency: int
    request_timeout_seconds: float
    stale_overrides: Mapping[int, float] = field(default_factory=dict)
    max_requests_per_minute: int = 900
    auth_retry_seconds: float = 300.0
    exception_logs_max_pages: int = 3  # 0: the stream is off
    exception_logs_first_read_seconds: float = 3600.0
    auth: str = "basic"  # or "oauth2": client credentials at oauth2_token_url
    oauth2_token_url: str = DEFAULT_TOKEN_URL
    oauth2_scope: str = "api"
    clock_skew_tolerance_seconds: float = DEFAULT_CLOCK_SKEW_TOLERANCE_SECONDS
    #: configuration checks switched off: for every integration, and for some
    ignored_checks: frozenset[str] = frozenset()
    ignored_checks_by_integration: Mapping[int, frozenset[str]] = field(default_factory=dict)

    def ignored(self, integration_id: int) -> frozenset[str]:
        """The checks switched off for one integration (the account's and its own)."""
        own = self.ignored_checks_by_integration.get(integration_id)
        return self.ignored_checks | own if own else self.ignored_checks

    def stale_after(self, integration_id: int) -> float:
        """The stale threshold for one integration (its override, else the account's)."""
        return self.stale_overrides.get(integration_id, self.stale_after_seconds)

    def secrets(self) -> tuple[str, ...]:
        """Every secret string of this account, for log and output scrubbing: the keys and
        their Basic credential, as it travels on the wire."""
        public, secret = self.public_key.get_secret_value(), self.secret_key.get_secret_value()
        return (public, secret, basic_credential(public, secret))


def _first(value: float | None, default: float) -> float:
    return default if value is None else value


def resolve_account(account: AccountSettings, defaults: Defaults) -> AccountConfig:
    where = f"account '{account.name}'"
    if account.public_key is None or not account.public_key.get_secret_value():
        raise ConfigError(
            f"{where}: no Sendcloud public key; set SENDCLOUD_PUBLIC_KEY or public_key in the file"
        )
    secret = _one_secret(account.secret_key, account.secret_key_file, "secret_key", where)
    if secret is None or not secret.get_secret_value():
        raise ConfigError(
            f"{where}: no Sendcloud secret key; set SENDCLOUD_SECRET_KEY, "
            "SENDCLOUD_SECRET_KEY_FILE, or secret_key / secret_key_file in the file"
        )
    ids = account.integration_ids
    return AccountConfig(
        name=account.name,
        api_url=account.api_url,
        public_key=account.public_key,
        secret_key=secret,
        integration_ids=None if ids == "all" else tuple(ids),
        poll_interval_seconds=account.poll_interval_seconds or defaults.poll_interval_seconds,
        stale_after_seconds=account.stale_after_seconds or defaults.stale_after_seconds,
        max_concurrency=account.max_concurrency or defaults.max_concurrency,
        request_timeout_seconds=account.request_timeout_seconds or defaults.request_timeout_seconds,
        max_requests_per_minute=max(
            1,
            int(
                (account.max_requests_per_minute or defaults.max_requests_per_minute)
                * defaults.budget_share
            ),
        ),
        auth_retry_seconds=_first(account.auth_retry_seconds, defaults.auth_retry_seconds),
        exception_logs_max_pages=defaults.exception_logs_max_pages,
        exception_logs_first_read_seconds=defaults.exception_logs_first_read_seconds,
        clock_skew_tolerance_seconds=_first(
            account.clock_skew_tolerance_seconds, defaults.clock_skew_tolerance_seconds
        ),
        auth=account.auth,
        oauth2_token_url=account.oauth2_token_url,
        oauth2_scope=account.oauth2_scope,
        stale_overrides={
            integration_id: override.stale_after_seconds
            for integration_id, override in account.integrations.items()
            if override.stale_after_seconds is not None
        },
        ignored_checks=frozenset(account.checks.ignore),
        ignored_checks_by_integration={
            integration_id: frozenset(override.checks.ignore)
            for integration_id, override in account.integrations.items()
            if override.checks.ignore
        },
    )


def resolve_webhook(webhook: WebhookSettings) -> WebhookConfig:
    where = f"webhook '{webhook.name}'"
    url = _one_secret(webhook.url, webhook.url_file, "url", where)
    if url is None:
        raise ConfigError(f"{where}: set url or url_file")
    if not url.get_secret_value().startswith(("http://", "https://")):
        raise ConfigError(f"{where}: the url must start with http:// or https://")
    try:
        require_https(url.get_secret_value(), "url", allowed=webhook.allow_insecure_http)
    except httpx.InvalidURL:
        raise ConfigError(f"{where}: the url is not a valid URL") from None
    except ValueError as exc:  # the message names the field, never the (secret) URL
        raise ConfigError(f"{where}: {exc}") from None
    return WebhookConfig(
        name=webhook.name,
        url=url,
        hmac_secret=_one_secret(
            webhook.hmac_secret, webhook.hmac_secret_file, "hmac_secret", where
        ),
        slack=webhook.format == "slack",
        timeout_seconds=webhook.timeout_seconds,
        max_attempts=webhook.max_attempts,
        queue_size=webhook.queue_size,
    )


def resolve_receiver(receiver: ReceiverSettings) -> ReceiverConfig:
    where = f"receiver '{receiver.name}'"
    url = _one_secret(receiver.url, receiver.url_file, "url", where)
    if url is None or not url.get_secret_value():
        raise ConfigError(f"{where}: set url or url_file (an Apprise URL)")
    problem = url_problem(url.get_secret_value())
    if problem is not None:  # names the scheme at most, never the (secret) URL
        raise ConfigError(f"{where}: {problem}")
    return ReceiverConfig(
        name=receiver.name,
        url=url,
        timeout_seconds=receiver.timeout_seconds,
        max_attempts=receiver.max_attempts,
        queue_size=receiver.queue_size,
    )


def one_secret(
    value: SecretStr | None, file: Path | None, name: str, where: str
) -> SecretStr | None:
    """A secret given inline or as ``NAME_file`` (read now), never both; raises ConfigError."""
    return _one_secret(value, file, name, where)


def _one_secret(
    value: SecretStr | None, file: Path | None, name: str, where: str
) -> SecretStr | None:
    if value is not None and file is not None:
        raise ConfigError(f"{where}: set either {name} or {name}_file, not both")
    return _read_secret_file(file, where, f"{name}_file") if file is not None else value


def _read_secret_file(path: Path, where: str, what: str) -> SecretStr:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {what} {path}: {exc.strerror}") from None
    return SecretStr(text.strip())
