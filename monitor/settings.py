"""Configuration: a YAML file overridden by environment variables, validated by pydantic.

The YAML file may describe several Sendcloud accounts. The documented environment variables
(``ENV_VARS``) fill the single-account ``sendcloud:`` block and the global ``defaults:``, so a
container can be configured with environment variables alone. Everything that reaches the rest
of the daemon is the resolved, frozen :class:`AccountConfig` — no optional fields to re-check.
"""

from __future__ import annotations

import contextvars
import hashlib
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from monitor.alerting.rules import AlertRules
from monitor.config_errors import ConfigError, describe
from monitor.health import DEFAULT_CLOCK_SKEW_TOLERANCE_SECONDS
from monitor.sendcloud.oauth import DEFAULT_TOKEN_URL

DEFAULT_API_URL = "https://panel.sendcloud.sc/api/v3"
DEFAULT_LISTEN_ADDRESS = "0.0.0.0:9877"
SECRET_FIELDS = frozenset({"public_key", "secret_key", "url", "hmac_secret"})

#: Environment variable -> path of the configuration key it sets (and overrides in the file).
ENV_VARS: dict[str, tuple[str, ...]] = {
    "SENDCLOUD_API_URL": ("sendcloud", "api_url"),
    "SENDCLOUD_PUBLIC_KEY": ("sendcloud", "public_key"),
    "SENDCLOUD_SECRET_KEY": ("sendcloud", "secret_key"),
    "SENDCLOUD_SECRET_KEY_FILE": ("sendcloud", "secret_key_file"),
    "SENDCLOUD_AUTH": ("sendcloud", "auth"),
    "SENDCLOUD_OAUTH2_TOKEN_URL": ("sendcloud", "oauth2_token_url"),
    "MONITOR_INTEGRATION_IDS": ("sendcloud", "integration_ids"),
    "MONITOR_POLL_INTERVAL_SECONDS": ("defaults", "poll_interval_seconds"),
    "MONITOR_STALE_AFTER_SECONDS": ("defaults", "stale_after_seconds"),
    "MONITOR_LISTEN_ADDRESS": ("listen_address",),
    "MONITOR_LOG_FORMAT": ("log_format",),
    "MONITOR_LOG_LEVEL": ("log_level",),
    "MONITOR_STATE_FILE": ("alerting", "state_file"),
    "MONITOR_SHARD": ("shard",),
    "MONITOR_BUDGET_SHARE": ("defaults", "budget_share"),
}
CONFIG_FILE_ENV = "MONITOR_CONFIG_FILE"
_ENV_BY_PATH = {path: name for name, path in ENV_VARS.items()}
_ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: traffic that never leaves the machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_https(url: str, field_name: str, *, allowed: bool) -> None:
    """Refuse a URL that would carry credentials or alert contents in clear text."""
    parsed = httpx.URL(url)
    if parsed.scheme == "https" or allowed or is_loopback(parsed.host):
        return
    raise ValueError(
        f"{field_name} must be https:// (it would carry credentials or alerts in clear text); "
        "http:// is accepted only for a loopback host (127.0.0.0/8, ::1, localhost) or with "
        "allow_insecure_http: true"
    )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class IntegrationOverride(_Strict):
    """Per-integration settings, e.g. a longer stale threshold for a shop that syncs nightly."""

    stale_after_seconds: PositiveFloat | None = None


class Defaults(_Strict):
    """Values every account inherits unless it sets its own."""

    poll_interval_seconds: float = Field(default=60.0, ge=5, le=86400)
    stale_after_seconds: PositiveFloat = 7200.0
    max_concurrency: int = Field(default=8, ge=1, le=64)
    request_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    max_requests_per_minute: int = Field(default=900, ge=1, le=1000)
    auth_retry_seconds: float = Field(default=300.0, ge=0, le=86400)
    clock_skew_tolerance_seconds: float = Field(default=60.0, ge=0, le=86400)
    #: This replica's share of each account's request budget (0.5 for two replicas that both
    #: poll, for high availability).
    budget_share: float = Field(default=1.0, gt=0, le=1)


class AccountSettings(_Strict):
    """One Sendcloud account as written in the file; unset fields come from ``defaults``."""

    name: str = "default"
    api_url: str = DEFAULT_API_URL
    public_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    secret_key_file: Path | None = None
    auth: Literal["basic", "oauth2"] = "basic"
    oauth2_token_url: str = DEFAULT_TOKEN_URL
    oauth2_scope: str = "api"
    integration_ids: Literal["all"] | list[PositiveInt] = "all"
    poll_interval_seconds: float | None = Field(default=None, ge=5, le=86400)
    stale_after_seconds: PositiveFloat | None = None
    max_concurrency: int | None = Field(default=None, ge=1, le=64)
    request_timeout_seconds: float | None = Field(default=None, gt=0, le=120)
    max_requests_per_minute: int | None = Field(default=None, ge=1, le=1000)
    auth_retry_seconds: float | None = Field(default=None, ge=0, le=86400)
    clock_skew_tolerance_seconds: float | None = Field(default=None, ge=0, le=86400)
    integrations: dict[PositiveInt, IntegrationOverride] = Field(default_factory=dict)
    #: Dangerous: lets api_url and oauth2_token_url use http:// to a non-loopback host.
    allow_insecure_http: bool = False

    @model_validator(mode="after")
    def _https(self) -> AccountSettings:
        require_https(self.api_url, "api_url", allowed=self.allow_insecure_http)
        require_https(self.oauth2_token_url, "oauth2_token_url", allowed=self.allow_insecure_http)
        return self

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _ACCOUNT_NAME.match(value):
            raise ValueError("use 1-64 letters, digits, '_', '.' or '-'")
        return value

    @field_validator("oauth2_token_url")
    @classmethod
    def _token_url(cls, value: str) -> str:
        """Checked like the API URL, but kept exactly: the token path ends in a slash."""
        cls._api_url(value)
        return value

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL as exc:
            raise ValueError(f"not a URL ({exc})") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("expected an http(s) URL such as " + DEFAULT_API_URL)
        if url.query or url.fragment:
            raise ValueError("the API URL takes no query string or fragment")
        return str(url).rstrip("/")

    @field_validator("integration_ids", mode="before")
    @classmethod
    def _ids(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.lower() == "all":
                return "all"
            parts = [part.strip() for part in text.split(",") if part.strip()]
            if not parts:
                raise ValueError("expected 'all' or comma-separated integration IDs")
            return parts
        if isinstance(value, int) and not isinstance(value, bool):
            return [value]
        return value

    @field_validator("integration_ids")
    @classmethod
    def _unique_ids(cls, value: Literal["all"] | list[int]) -> Literal["all"] | list[int]:
        if isinstance(value, list):
            if not value:
                raise ValueError("expected 'all' or at least one integration ID")
            return sorted(set(value))
        return value


class WebhookSettings(_Strict):
    """A generic webhook receiver of alert events. Its URL is treated as a secret."""

    name: str = "webhook"
    url: SecretStr | None = None
    url_file: Path | None = None
    hmac_secret: SecretStr | None = None
    hmac_secret_file: Path | None = None
    format: Literal["json", "slack"] = "json"
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    max_attempts: int = Field(default=5, ge=1, le=20)
    queue_size: int = Field(default=1000, ge=1, le=100_000)
    #: Dangerous: lets the webhook URL use http:// to a non-loopback host.
    allow_insecure_http: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return AccountSettings._name(value)


class AlertmanagerSettings(_Strict):
    """An Alertmanager to post alerts to (its base URL, e.g. http://alertmanager:9093)."""

    url: str
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    max_attempts: int = Field(default=3, ge=1, le=20)
    #: Every active alert is sent again this often, whatever the polls do (as Prometheus does).
    resend_interval_seconds: float = Field(default=60.0, ge=1, le=3600)
    #: Dangerous: lets the Alertmanager URL use http:// to a non-loopback host.
    allow_insecure_http: bool = False

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return AccountSettings._api_url(value)

    @model_validator(mode="after")
    def _https(self) -> AlertmanagerSettings:
        require_https(self.url, "alertmanager.url", allowed=self.allow_insecure_http)
        return self


class AlertingSettings(_Strict):
    """Alert rules, the state file and the delivery sinks (see docs/alerts.md)."""

    state_file: Path | None = None
    runbook_base_url: str = "docs/runbook.md"
    repeat_interval_seconds: float = Field(default=14400.0, ge=0)
    failing_for_seconds: float = Field(default=900.0, ge=0)
    failing_critical_after_seconds: float = Field(default=3600.0, ge=0)
    stale_for_seconds: float = Field(default=900.0, ge=0)
    not_found_polls: int = Field(default=2, ge=1)
    auth_failing_for_seconds: float = Field(default=0.0, ge=0)
    unreachable_for_seconds: float = Field(default=300.0, ge=0)
    cause_timeout_seconds: float = Field(default=3.0, gt=0, le=30)
    cause_logs_page_size: int = Field(default=10, ge=1, le=100)
    webhooks: list[WebhookSettings] = Field(default_factory=list)
    alertmanager: AlertmanagerSettings | None = None

    @model_validator(mode="after")
    def _unique_webhooks(self) -> AlertingSettings:
        names = [w.name for w in self.webhooks]
        if len(names) != len(set(names)):
            raise ValueError("webhook names must be unique")
        return self

    def rules(self) -> AlertRules:
        return AlertRules(
            failing_for_seconds=self.failing_for_seconds,
            failing_critical_after_seconds=self.failing_critical_after_seconds,
            stale_for_seconds=self.stale_for_seconds,
            not_found_polls=self.not_found_polls,
            auth_failing_for_seconds=self.auth_failing_for_seconds,
            unreachable_for_seconds=self.unreachable_for_seconds,
            repeat_interval_seconds=self.repeat_interval_seconds,
            runbook_base_url=self.runbook_base_url.rstrip("#"),
        )

    def resolved_webhooks(self) -> list[WebhookConfig]:
        """Webhooks with their secret files read; raises ConfigError."""
        return [_resolve_webhook(w) for w in self.webhooks]


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
    auth: str = "basic"  # or "oauth2": client credentials at oauth2_token_url
    oauth2_token_url: str = DEFAULT_TOKEN_URL
    oauth2_scope: str = "api"
    clock_skew_tolerance_seconds: float = DEFAULT_CLOCK_SKEW_TOLERANCE_SECONDS

    def stale_after(self, integration_id: int) -> float:
        """The stale threshold for one integration (its override, else the account's)."""
        return self.stale_overrides.get(integration_id, self.stale_after_seconds)

    def secrets(self) -> tuple[str, ...]:
        """Every secret string of this account, for log and output scrubbing."""
        return (self.public_key.get_secret_value(), self.secret_key.get_secret_value())


class _EnvSource(PydanticBaseSettingsSource):
    """Reads exactly the documented variables of ``ENV_VARS`` into their nested places."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ builds the whole mapping

    def __call__(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name, path in ENV_VARS.items():
            value = self._environ.get(name)
            if value is None or value == "":
                continue
            node = data
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = value
        return data


class Settings(BaseSettings):
    """The whole configuration as validated from file and environment."""

    model_config = SettingsConfigDict(extra="forbid", hide_input_in_errors=True)

    listen_address: str = DEFAULT_LISTEN_ADDRESS
    #: "i/n": this replica polls the accounts whose name hashes to i of n (0 <= i < n).
    shard: str | None = None
    log_format: Literal["json", "console"] | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    defaults: Defaults = Field(default_factory=Defaults)
    alerting: AlertingSettings = Field(default_factory=AlertingSettings)
    sendcloud: AccountSettings | None = None
    accounts: list[AccountSettings] = Field(default_factory=list)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment over YAML over defaults; which file and environment: see load_settings."""
        context = _load_context.get() or _LoadContext()
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            _EnvSource(settings_cls, context.environ),
        ]
        if context.config_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, context.config_file))
        return tuple(sources)

    @field_validator("listen_address")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen_address(value)
        return value

    @model_validator(mode="after")
    def _accounts(self) -> Settings:
        names = [account.name for account in self.accounts]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"account names must be unique, repeated: {', '.join(duplicates)}")
        if self.sendcloud is not None and len(self.accounts) > 1:
            raise ValueError(
                "the single-account 'sendcloud' settings (and SENDCLOUD_* / "
                "MONITOR_INTEGRATION_IDS variables) cannot be combined with several accounts; "
                "set credentials and integration_ids per account"
            )
        return self

    def account_settings(self) -> list[AccountSettings]:
        """The accounts as written, with the single-account block folded in."""
        if not self.accounts:
            return [self.sendcloud or AccountSettings()]
        if self.sendcloud is None:
            return list(self.accounts)
        merged = self.accounts[0].model_dump(exclude_unset=True)
        merged.update(self.sendcloud.model_dump(exclude_unset=True))
        return [AccountSettings.model_validate(merged)]

    def resolved_accounts(self) -> list[AccountConfig]:
        """Apply defaults, read secret files and check credentials (of this shard's accounts
        only); raises ConfigError."""
        shard = parse_shard(self.shard)
        return [
            _resolve(account, self.defaults)
            for account in self.account_settings()
            if shard is None or shard_of(account.name, shard[1]) == shard[0]
        ]

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str | None) -> str | None:
        parse_shard(value)
        return value

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for scrubbing logs."""
        found = [s for account in self.resolved_accounts() for s in account.secrets()]
        for webhook in self.alerting.resolved_webhooks():
            found.append(webhook.url.get_secret_value())
            if webhook.hmac_secret is not None:
                found.append(webhook.hmac_secret.get_secret_value())
        return tuple(found)


@dataclass(frozen=True)
class _LoadContext:
    """What one load_settings call reads (pydantic-settings picks sources per class)."""

    environ: Mapping[str, str] = field(default_factory=dict)
    config_file: Path | None = None


_load_context: contextvars.ContextVar[_LoadContext | None] = contextvars.ContextVar(
    "settings_load_context", default=None
)


def parse_shard(value: str | None) -> tuple[int, int] | None:
    """``"i/n"`` as (i, n), checked."""
    if value is None or value == "":
        return None
    index, sep, count = value.partition("/")
    if not sep or not index.strip().isdigit() or not count.strip().isdigit():
        raise ValueError("expected i/n, e.g. 0/3 for the first of three replicas")
    i, n = int(index), int(count)
    if n < 1 or not 0 <= i < n:
        raise ValueError("expected 0 <= i < n in i/n")
    return i, n


def shard_of(account: str, count: int) -> int:
    """The shard of an account, the same in every replica: rendezvous (highest random weight)
    hashing of its name over the ``count`` shards. Going from n to n + 1 replicas moves only
    the accounts the new shard wins, about 1/(n + 1) of them (a modulo moves n/(n + 1))."""

    def weight(shard: int) -> int:
        digest = hashlib.sha256(f"{shard}\0{account}".encode()).digest()
        return int.from_bytes(digest[:8], "big")

    return max(range(count), key=weight)


def parse_listen_address(value: str) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:9877`` for IPv6) and check the port."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError("expected host:port, e.g. 0.0.0.0:9877")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError("port must be between 0 and 65535")
    return host.strip("[]") or "0.0.0.0", port


def config_file_from(cli_value: str | None, environ: Mapping[str, str]) -> Path | None:
    """The YAML file named by ``--config`` or MONITOR_CONFIG_FILE; it must exist."""
    named = cli_value or environ.get(CONFIG_FILE_ENV) or None
    if named is None:
        return None
    path = Path(named)
    if not path.is_file():
        raise ConfigError(f"configuration file {named} does not exist or is not a file")
    return path


def load_settings(
    config_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> tuple[Settings, list[AccountConfig]]:
    """Load, validate and resolve the configuration, or raise one readable ConfigError."""
    if config_file is not None:
        _check_yaml_shape(config_file)
    token = _load_context.set(_LoadContext(os.environ if environ is None else environ, config_file))
    try:
        settings = Settings()
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    except (OSError, ValueError, yaml.YAMLError) as exc:  # a file that changed under us
        raise ConfigError(f"cannot read configuration file {config_file}: {exc}") from None
    finally:
        _load_context.reset(token)
    return settings, settings.resolved_accounts()


def _first(value: float | None, default: float) -> float:
    return default if value is None else value


def _check_yaml_shape(path: Path) -> None:
    """YAML syntax and a mapping at the top, checked first for a clearer message."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(
            f"configuration file {path}: the top level must be a mapping of keys "
            "(listen_address:, defaults:, accounts:, ...)"
        )


def _resolve(account: AccountSettings, defaults: Defaults) -> AccountConfig:
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
    )


def _resolve_webhook(webhook: WebhookSettings) -> WebhookConfig:
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


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem, naming the environment variable where one sets the field."""
    return describe(exc, env_by_path=_ENV_BY_PATH, secret_fields=SECRET_FIELDS)


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
            }
            for account in accounts
        ],
    }
