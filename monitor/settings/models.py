"""The configuration as written: pydantic models of the YAML file and the environment,
validated strictly (unknown keys are errors, secrets are ``SecretStr``)."""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from monitor.alerting.rules import AlertRules
from monitor.checks import CHECKS, DEFAULT_MAPPING_TYPES
from monitor.config_errors import ConfigError
from monitor.notify.grouping import GROUP_WAIT_SECONDS
from monitor.notify.quiet import (
    MONTHS,
    WEEKDAYS,
    TimeInterval,
    TimeRange,
    Window,
    parse_minutes,
    parse_ranges,
)
from monitor.notify.receivers import secret_parts
from monitor.notify.routes import Matchers, RouteTree
from monitor.sendcloud.oauth import DEFAULT_TOKEN_URL
from monitor.settings.addresses import parse_listen_address, parse_shard, require_https, shard_of
from monitor.settings.resolved import (
    AccountConfig,
    Outbound,
    ReceiverConfig,
    WebhookConfig,
    one_secret,
    resolve_account,
    resolve_receiver,
    resolve_webhook,
)
from monitor.settings.sources import EnvSource, FileSource, LoadContext, load_context

DEFAULT_API_URL = "https://panel.sendcloud.sc/api/v3"
DEFAULT_LISTEN_ADDRESS = "0.0.0.0:9877"
DEFAULT_API_URL = "https://panel.sendcloud.sc/api/v3"


_ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class ChecksSettings(_Strict):
    """Configuration checks switched off where what they flag is intended."""

    ignore: list[str] = Field(default_factory=list)

    @field_validator("ignore")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in CHECKS]
        if unknown:
            raise ValueError(
                f"unknown check {', '.join(unknown)}; the checks are: {', '.join(CHECKS)}"
            )
        return sorted(set(value))


class IntegrationOverride(_Strict):
    """Per-integration settings, e.g. a longer stale threshold for a shop that syncs nightly."""

    stale_after_seconds: PositiveFloat | None = None
    checks: ChecksSettings = Field(default_factory=ChecksSettings)


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
    #: Pages (100 logs each) of the account's exception-log stream read a cycle; 0: off.
    exception_logs_max_pages: int = Field(default=3, ge=0, le=20)
    #: How far back a first start reads the stream.
    exception_logs_first_read_seconds: float = Field(default=3600.0, ge=0, le=86400)


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
    #: Configuration checks switched off for every integration of the account.
    checks: ChecksSettings = Field(default_factory=ChecksSettings)
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
        """``all``, one ID, a list or a comma-separated string of IDs; anything else is one
        plain error (not one per form the field accepts, in pydantic's type names)."""
        expected = "expected a comma-separated list of integration IDs, or all"
        if isinstance(value, str):
            text = value.strip()
            if text.lower() == "all":
                return "all"
            value = [part.strip() for part in text.split(",") if part.strip()]
        elif isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list) or not value:
            raise ValueError(expected)
        ids = []
        for item in value:
            text = str(item).strip() if isinstance(item, int | str) else ""
            if isinstance(item, bool) or not text.isdigit() or int(text) <= 0:
                raise ValueError(f"{expected} ({item!r} is not a positive integer)")
            ids.append(int(text))
        return ids

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


class ReceiverSettings(_Strict):
    """A notification receiver: one Apprise URL (e-mail, Teams, Discord, Telegram, PagerDuty,
    Opsgenie, ntfy, Mattermost, ...). The URL is treated as a secret."""

    name: str
    url: SecretStr | None = None
    url_file: Path | None = None
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    max_attempts: int = Field(default=3, ge=1, le=20)
    queue_size: int = Field(default=100, ge=1, le=10_000)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return AccountSettings._name(value)


class MatchSettings(_Strict):
    """Route matchers: globs on account, alert and integration_type; exact severity and ID."""

    account: str | None = None
    alert: str | None = None
    severity: Literal["warning", "critical"] | None = None
    integration_type: str | None = None
    integration_id: int | None = None

    def matchers(self) -> Matchers:
        return Matchers(**self.model_dump())


class RouteSettings(_Strict):
    """Events matching ``match`` go to ``receivers``; evaluation stops at the first route that
    matches unless it has ``continue: true``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    match: MatchSettings = Field(default_factory=MatchSettings)
    receivers: list[str] = Field(min_length=1)
    continue_: bool = Field(default=False, alias="continue")


class TimeRangeSettings(_Strict):
    start_time: str
    end_time: str

    @model_validator(mode="after")
    def _order(self) -> TimeRangeSettings:
        if parse_minutes(self.start_time) >= parse_minutes(self.end_time):
            raise ValueError("start_time must be before end_time (HH:MM, end up to 24:00)")
        return self


class MaintenanceSettings(_Strict):
    """A maintenance window: one-off (start, end) or recurring with the fields of
    Alertmanager's time_intervals; notifications of the alerts it matches are held."""

    name: str
    match: MatchSettings = Field(default_factory=MatchSettings)
    start: datetime | None = None
    end: datetime | None = None
    times: list[TimeRangeSettings] = Field(default_factory=list)
    weekdays: list[str] = Field(default_factory=list)
    days_of_month: list[str | int] = Field(default_factory=list)
    months: list[str | int] = Field(default_factory=list)
    years: list[str | int] = Field(default_factory=list)
    #: The IANA time zone the recurring fields are read in.
    location: str = "UTC"

    @model_validator(mode="after")
    def _shape(self) -> MaintenanceSettings:
        one_off = self.start is not None or self.end is not None
        recurring = any((self.times, self.weekdays, self.days_of_month, self.months, self.years))
        if one_off == recurring:
            raise ValueError(
                "give either start and end (a one-off window) or at least one of times, "
                "weekdays, days_of_month, months, years (a recurring one)"
            )
        if one_off:
            if self.start is None or self.end is None:
                raise ValueError("a one-off window needs both start and end")
            if self.start.tzinfo is None or self.end.tzinfo is None:
                raise ValueError("start and end need a time zone offset (e.g. Z)")
            if self.start >= self.end:
                raise ValueError("start must be before end")
        try:
            ZoneInfo(self.location)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.location!r} (an IANA name)") from None
        self.window()  # every range parses
        return self

    def window(self) -> Window:
        interval = None
        if self.start is None:
            interval = TimeInterval(
                times=tuple(
                    TimeRange(parse_minutes(t.start_time), parse_minutes(t.end_time))
                    for t in self.times
                ),
                weekdays=parse_ranges(self.weekdays, WEEKDAYS, 0, 6),
                days_of_month=parse_ranges([str(d) for d in self.days_of_month], (), 1, 31),
                months=parse_ranges([str(m) for m in self.months], MONTHS, 1, 12),
                years=parse_ranges([str(y) for y in self.years], (), 1970, 9999),
                location=self.location,
            )
        return Window(self.name, self.match.matchers(), self.start, self.end, interval)


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
    #: IntegrationErrorsRising: this many exception logs within the window, not failing.
    errors_rising_count: int = Field(default=5, ge=1, le=10_000)
    errors_rising_window_seconds: float = Field(default=900.0, ge=60, le=3600)
    webhooks: list[WebhookSettings] = Field(default_factory=list)
    alertmanager: AlertmanagerSettings | None = None
    #: Apprise receivers, reached through ``routes`` (all of them when there are no routes).
    receivers: list[ReceiverSettings] = Field(default_factory=list)
    routes: list[RouteSettings] = Field(default_factory=list)
    #: The default route's receivers: what no route takes. Default: every receiver when there
    #: are no routes, nobody when there are.
    default_receivers: list[str] | None = None
    #: How long a route gathers the events of every account into one message.
    group_wait_seconds: float = Field(default=GROUP_WAIT_SECONDS, ge=0, le=600)
    #: Planned quiet: notifications of the alerts a window matches are held while it lasts.
    maintenance: list[MaintenanceSettings] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_webhooks(self) -> AlertingSettings:
        names = [w.name for w in self.webhooks]
        if len(names) != len(set(names)):
            raise ValueError("webhook names must be unique")
        receivers = [r.name for r in self.receivers]
        if len(receivers) != len(set(receivers)):
            raise ValueError("receiver names must be unique")
        named = [
            (f"route {n}", r) for n, route in enumerate(self.routes, 1) for r in route.receivers
        ]
        named += [("default_receivers", r) for r in self.default_receivers or ()]
        unknown = [f"{where}: {name}" for where, name in named if name not in receivers]
        if unknown:
            raise ValueError(
                "routes name receivers that alerting.receivers does not define: "
                + "; ".join(unknown)
            )
        return self

    def windows(self) -> tuple[Window, ...]:
        return tuple(m.window() for m in self.maintenance)

    def route_tree(self) -> RouteTree:
        default = self.default_receivers
        if default is None:
            default = [] if self.routes else [r.name for r in self.receivers]
        return RouteTree.of(
            [(r.match.matchers(), r.receivers, r.continue_) for r in self.routes], default
        )

    def resolved_outbound(self) -> Outbound:
        """Webhooks and receivers with their secret files read; raises ConfigError."""
        return Outbound(tuple(self.resolved_webhooks()), tuple(self.resolved_receivers()))

    def resolved_receivers(self) -> list[ReceiverConfig]:
        """Receivers with their URL files read and their URLs checked; raises ConfigError."""
        return [resolve_receiver(r) for r in self.receivers]

    def rules(self, probes: ProbeSettings | None = None) -> AlertRules:
        """The alert rules; the shop alerts' thresholds come from ``probes``."""
        probes = probes or ProbeSettings()
        return AlertRules(
            certificate_warning_days=probes.certificate_warning_days,
            certificate_critical_days=probes.certificate_critical_days,
            change_window_seconds=probes.change_window_seconds,
            probes_enabled=probes.enabled,
            failing_for_seconds=self.failing_for_seconds,
            failing_critical_after_seconds=self.failing_critical_after_seconds,
            stale_for_seconds=self.stale_for_seconds,
            not_found_polls=self.not_found_polls,
            auth_failing_for_seconds=self.auth_failing_for_seconds,
            unreachable_for_seconds=self.unreachable_for_seconds,
            repeat_interval_seconds=self.repeat_interval_seconds,
            runbook_base_url=self.runbook_base_url.rstrip("#"),
            errors_rising_count=self.errors_rising_count,
            errors_rising_window_seconds=self.errors_rising_window_seconds,
        )

    def resolved_webhooks(self) -> list[WebhookConfig]:
        """Webhooks with their secret files read; raises ConfigError."""
        return [resolve_webhook(w) for w in self.webhooks]


class ProbeSettings(_Strict):
    """Shop probes and the Sendcloud reads made once per probe interval (status mappings,
    inventory walks); see README "Shop probes"."""

    #: false: no shop is probed, no status mapping read and no inventory walked
    enabled: bool = True
    #: Each distinct shop host and port is probed once per interval, however many integrations
    #: share it; status mappings and the inventory are read as often.
    interval_seconds: float = Field(default=3600.0, ge=10, le=7 * 86400)
    concurrency: int = Field(default=20, ge=1, le=500)
    #: One probe (lookup, connect, handshake) ends after this long: result timeout.
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    #: PEM file of the CA certificates shops are verified against instead of the system's.
    ca_file: Path | None = None
    #: Dangerous: lets probes connect to loopback, private, link-local (cloud metadata) and
    #: other non-public addresses that a shop URL resolves to.
    allow_private_addresses: bool = False
    #: IntegrationShopCertificateExpiring: warning under this many days left...
    certificate_warning_days: float = Field(default=14.0, gt=0, le=365)
    #: ...critical under this many.
    certificate_critical_days: float = Field(default=3.0, ge=0, le=365)
    #: An alert that fires within this long after the integration's updated_at says so.
    change_window_seconds: float = Field(default=86400.0, ge=0, le=30 * 86400)
    #: Integration types whose status mapping is read (the spec calls it PrestaShop v2 only).
    status_mapping_types: list[str] = Field(default_factory=lambda: list(DEFAULT_MAPPING_TYPES))

    @model_validator(mode="after")
    def _days(self) -> ProbeSettings:
        if self.certificate_critical_days >= self.certificate_warning_days:
            raise ValueError("certificate_critical_days must be less than certificate_warning_days")
        return self

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, value: Path | None) -> Path | None:
        """A CA file that cannot be used is an error now, not a probe failure later."""
        if value is None:
            return None
        try:
            ssl.create_default_context(cafile=str(value))
        except FileNotFoundError:
            raise ValueError(f"{value} does not exist") from None
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(
                f"{value} is not a usable PEM file of CA certificates ({exc})"
            ) from None
        return value


class HistorySettings(_Strict):
    """The history file: state intervals and alert episodes (see docs/history.md)."""

    #: Default: history.db beside the alert state file; without either, no history is kept.
    path: Path | None = None
    retention_days: int = Field(default=400, ge=1, le=3660)

    def resolved_path(self, state_file: Path | None) -> Path | None:
        if self.path is not None:
            return self.path
        return state_file.parent / "history.db" if state_file is not None else None


class BadgeSettings(_Strict):
    """Badges a merchant can embed while ``/metrics`` and the pages need credentials: each
    account's badges are also served, without credentials, under a key derived from this
    secret (``/public/badge/KEY/ID.svg``). Without it, no such URL exists."""

    secret: SecretStr | None = None
    secret_file: Path | None = None

    def resolved_secret(self) -> SecretStr | None:
        """The secret, its file read; raises ConfigError."""
        found = one_secret(self.secret, self.secret_file, "secret", "badges")
        if found is not None and len(found.get_secret_value()) < 16:
            raise ConfigError("badges: the secret must be at least 16 characters long")
        return found


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
    history: HistorySettings = Field(default_factory=HistorySettings)
    badges: BadgeSettings = Field(default_factory=BadgeSettings)
    probes: ProbeSettings = Field(default_factory=ProbeSettings)
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
        context = load_context.get() or LoadContext()
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            EnvSource(settings_cls, context.environ),
        ]
        if context.file_data:
            sources.append(FileSource(settings_cls, context.file_data))
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

    def effective(self) -> Settings:
        """What the daemon works from, as settings: the single-account block folded into
        ``accounts``, each account's unset values taken from ``defaults``, the history file
        beside the state file and the default route's receivers filled in."""
        inherited = set(Defaults.model_fields) & set(AccountSettings.model_fields)
        accounts = [
            account.model_copy(
                update={
                    name: getattr(self.defaults, name)
                    for name in inherited
                    if getattr(account, name) is None
                }
            )
            for account in self.account_settings()
        ]
        alerting = self.alerting.model_copy(
            update={"default_receivers": list(self.alerting.route_tree().default.receivers)}
        )
        history = self.history.model_copy(
            update={"path": self.history.resolved_path(self.alerting.state_file)}
        )
        return self.model_copy(
            update={
                "sendcloud": None,
                "accounts": accounts,
                "alerting": alerting,
                "history": history,
            }
        )

    def mute_problem(
        self, account: str, integration_id: int | None, *, force: bool = False
    ) -> str | None:
        """Why a mute for this account (and integration) would hold nothing here, or None:
        an account the configuration does not have, an integration it does not watch, or an
        account another shard polls (``force``: write it anyway)."""
        watched = {a.name: a.integration_ids for a in self.account_settings()}
        problem = mute_target_problem(watched, account, integration_id)
        if problem is not None or force:
            return problem
        shard = parse_shard(self.shard)
        if shard is not None and shard_of(account, shard[1]) != shard[0]:
            return (
                f"account {account!r} is polled by shard {shard_of(account, shard[1])}/"
                f"{shard[1]}, not by this one ({shard[0]}/{shard[1]}): mute it with that "
                "replica's history file, or give --force to write it here anyway"
            )
        return None

    def resolved_accounts(self) -> list[AccountConfig]:
        """Apply defaults, read secret files and check credentials (of this shard's accounts
        only); raises ConfigError."""
        shard = parse_shard(self.shard)
        return [
            resolve_account(account, self.defaults)
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
        return (*found, *self.outbound_secrets())

    def outbound_secrets(self) -> tuple[str, ...]:
        """The secrets of the webhooks and receivers (their files read)."""
        found: list[str] = []
        for webhook in self.alerting.resolved_webhooks():
            found += secret_parts(webhook.url.get_secret_value(), apprise=False)
            if webhook.hmac_secret is not None:
                found.append(webhook.hmac_secret.get_secret_value())
        for receiver in self.alerting.resolved_receivers():
            found += secret_parts(receiver.url.get_secret_value())
        badge_secret = self.badges.resolved_secret()
        if badge_secret is not None:
            found.append(badge_secret.get_secret_value())
        return tuple(found)


def mute_target_problem(
    watched: Mapping[str, Literal["all"] | Sequence[int] | None],
    account: str,
    integration_id: int | None,
) -> str | None:
    """Why a mute would hold nothing (an account that is not watched, an integration its
    configured IDs leave out), or None; ``watched`` maps each account to its integration IDs
    (``all`` or None: every integration of the account, so any ID)."""
    if account not in watched:
        known = ", ".join(sorted(watched)) or "none"
        return f"no account {account!r} is watched here (the configuration has: {known})"
    ids = watched[account]
    if integration_id is not None and ids not in (None, "all") and integration_id not in ids:
        listed = ", ".join(str(i) for i in ids)
        return (
            f"account {account!r} does not watch integration {integration_id} "
            f"(its integration_ids: {listed})"
        )
    return None


#: The parts of ``alerting`` that the reload summary names item by item.
_NAMED_PARTS = (
    "webhooks",
    "receivers",
    "alertmanager",
    "routes",
    "default_receivers",
    "maintenance",
)


def alerting_changes(
    old: AlertingSettings, new: AlertingSettings, old_outbound: Outbound, new_outbound: Outbound
) -> dict[str, dict[str, list[str]]]:
    """What a reload changes in alerting, by name: webhooks and receivers (as resolved: a
    rotated secret file changes them too), the Alertmanager, routes (``route N``, ``default``),
    maintenance windows, and the other settings (thresholds, timings) by field."""
    found = {
        "webhooks": _by_name(
            {w.name: w for w in old_outbound.webhooks}, {w.name: w for w in new_outbound.webhooks}
        ),
        "receivers": _by_name(
            {r.name: r for r in old_outbound.receivers},
            {r.name: r for r in new_outbound.receivers},
        ),
        "alertmanager": _by_name(
            {"alertmanager": old.alertmanager} if old.alertmanager else {},
            {"alertmanager": new.alertmanager} if new.alertmanager else {},
        ),
        "routes": _by_name(_routes(old), _routes(new)),
        "maintenance": _by_name(
            {m.name: m for m in old.maintenance}, {m.name: m for m in new.maintenance}
        ),
    }
    settings = [
        name
        for name in AlertingSettings.model_fields
        if name not in _NAMED_PARTS and getattr(old, name) != getattr(new, name)
    ]
    found["alerting"] = {"added": [], "removed": [], "changed": settings}
    return found


def _routes(alerting: AlertingSettings) -> dict[str, object]:
    tree = alerting.route_tree()
    return {r.key: r for r in (*tree.routes, tree.default)}


def _by_name(old: Mapping[str, object], new: Mapping[str, object]) -> dict[str, list[str]]:
    return {
        "added": [name for name in new if name not in old],
        "removed": [name for name in old if name not in new],
        "changed": [name for name in new if name in old and old[name] != new[name]],
    }
